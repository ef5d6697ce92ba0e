//! A client registers its device for push notifications, updates and
//! removes the pusher; pushers are per user and survive a restart.

use crate::common::{Backend, TestServer, assert_error, register};
use serde_json::{Value, json};

fn pusher(app_id: &str, pushkey: &str, device: &str) -> Value {
    json!({
        "app_id": app_id,
        "pushkey": pushkey,
        "kind": "http",
        "app_display_name": "Element",
        "device_display_name": device,
        "lang": "en",
        "data": {"url": "https://push.example.org/_matrix/push/v1/notify", "format": "event_id_only"}
    })
}

async fn set_list_and_delete_pushers(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let client = server.client();
    let (_, token, _) = register(&client, "alice", "pw-alice").await;
    let (_, bob_token, _) = register(&client, "bob", "pw-bob").await;
    let as_alice = client.with_token(&token);
    let as_bob = client.with_token(&bob_token);

    let (status, body) = as_alice.get("/_matrix/client/v3/pushers").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"pushers": []}));

    let (status, body) = as_alice
        .post(
            "/_matrix/client/v3/pushers/set",
            &pusher("im.vector.app", "key-1", "phone"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = as_alice.get("/_matrix/client/v3/pushers").await;
    let list = body["pushers"].as_array().expect("pushers");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["pushkey"], "key-1");
    assert_eq!(list[0]["device_display_name"], "phone");
    assert_eq!(list[0]["data"]["format"], "event_id_only");

    // Same app ID and pushkey: updated in place.
    as_alice
        .post(
            "/_matrix/client/v3/pushers/set",
            &pusher("im.vector.app", "key-1", "renamed phone"),
        )
        .await;
    let (_, body) = as_alice.get("/_matrix/client/v3/pushers").await;
    assert_eq!(body["pushers"].as_array().map(Vec::len), Some(1));
    assert_eq!(body["pushers"][0]["device_display_name"], "renamed phone");

    // Bob registers the same pushkey without append: it moves to him.
    let (status, _) = as_bob
        .post(
            "/_matrix/client/v3/pushers/set",
            &pusher("im.vector.app", "key-1", "bob's phone"),
        )
        .await;
    assert_eq!(status, 200);
    let (_, body) = as_alice.get("/_matrix/client/v3/pushers").await;
    assert_eq!(body, json!({"pushers": []}));

    // With append, both users keep it.
    let mut appended = pusher("im.vector.app", "key-1", "phone");
    appended["append"] = json!(true);
    as_alice
        .post("/_matrix/client/v3/pushers/set", &appended)
        .await;
    as_alice
        .post(
            "/_matrix/client/v3/pushers/set",
            &pusher("im.vector.app", "key-2", "tablet"),
        )
        .await;
    let (_, body) = as_alice.get("/_matrix/client/v3/pushers").await;
    assert_eq!(body["pushers"].as_array().map(Vec::len), Some(2));
    let (_, body) = as_bob.get("/_matrix/client/v3/pushers").await;
    assert_eq!(body["pushers"].as_array().map(Vec::len), Some(1));

    // kind: null deletes.
    let (status, body) = as_alice
        .post(
            "/_matrix/client/v3/pushers/set",
            &json!({"app_id": "im.vector.app", "pushkey": "key-1", "kind": null}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Bad input.
    let mut no_url = pusher("im.vector.app", "key-3", "x");
    no_url["data"] = json!({});
    let (status, _) = as_alice
        .post("/_matrix/client/v3/pushers/set", &no_url)
        .await;
    assert_eq!(status, 400);
    assert_error(
        &as_alice
            .post(
                "/_matrix/client/v3/pushers/set",
                &pusher(&"a".repeat(65), "key-3", "x"),
            )
            .await,
        400,
        "M_INVALID_PARAM",
    );

    server.restart().await;
    let (_, body) = as_alice.get("/_matrix/client/v3/pushers").await;
    let list = body["pushers"].as_array().expect("pushers");
    assert_eq!(list.len(), 1, "{body}");
    assert_eq!(list[0]["pushkey"], "key-2");
    let (_, body) = as_bob.get("/_matrix/client/v3/pushers").await;
    assert_eq!(body["pushers"][0]["device_display_name"], "bob's phone");
}

backend_tests!(set_list_and_delete_pushers);
