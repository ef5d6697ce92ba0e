//! A client uploads its sync filter and reads it back by ID; filters are
//! private to their user, validated, and survive a restart.

use crate::common::{Backend, TestServer, assert_error, register};
use serde_json::json;

async fn create_and_get_filters(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let client = server.client();
    let (alice, token, _) = register(&client, "alice", "pw-alice").await;
    let (bob, bob_token, _) = register(&client, "bob", "pw-bob").await;
    let as_alice = client.with_token(&token);
    let as_bob = client.with_token(&bob_token);
    let filters = format!("/_matrix/client/v3/user/{alice}/filter");

    let filter = json!({
        "event_fields": ["type", "content", "sender"],
        "event_format": "client",
        "presence": {"not_senders": ["@spam:example.org"]},
        "room": {
            "timeline": {"limit": 10, "types": ["m.room.message"]},
            "state": {"lazy_load_members": true}
        }
    });
    let (status, body) = as_alice.post(&filters, &filter).await;
    assert_eq!(status, 200, "{body}");
    let id = body["filter_id"].as_str().expect("filter_id").to_owned();

    let (status, body) = as_alice.get(&format!("{filters}/{id}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["room"]["timeline"]["limit"], 10);
    assert_eq!(body["room"]["timeline"]["types"], json!(["m.room.message"]));
    assert_eq!(body["room"]["state"]["lazy_load_members"], true);
    assert_eq!(body["event_fields"], json!(["type", "content", "sender"]));

    // The same filter again gets the same ID; another one a new ID.
    let (_, again) = as_alice.post(&filters, &filter).await;
    assert_eq!(again["filter_id"], id.as_str());
    let (status, other) = as_alice.post(&filters, &json!({})).await;
    assert_eq!(status, 200);
    let other_id = other["filter_id"].as_str().expect("filter_id").to_owned();
    assert_ne!(other_id, id);
    assert_eq!(
        as_alice.get(&format!("{filters}/{other_id}")).await.1,
        json!({})
    );

    // Unknown IDs.
    assert_error(
        &as_alice.get(&format!("{filters}/999")).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &as_alice.get(&format!("{filters}/abc")).await,
        404,
        "M_NOT_FOUND",
    );

    // Another user's filters: neither through their path nor by ID.
    assert_error(
        &as_bob.get(&format!("{filters}/{id}")).await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(&as_bob.post(&filters, &json!({})).await, 403, "M_FORBIDDEN");
    assert_error(
        &as_bob
            .get(&format!("/_matrix/client/v3/user/{bob}/filter/{id}"))
            .await,
        404,
        "M_NOT_FOUND",
    );

    server.restart().await;
    let (status, body) = as_alice.get(&format!("{filters}/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(body["room"]["timeline"]["limit"], 10);
}

async fn invalid_filters_are_rejected(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    let (alice, token, _) = register(&client, "alice", "pw-alice").await;
    let as_alice = client.with_token(&token);
    let filters = format!("/_matrix/client/v3/user/{alice}/filter");

    assert_error(
        &as_alice
            .post(&filters, &json!({"room": {"timeline": {"limit": "ten"}}}))
            .await,
        400,
        "M_BAD_JSON",
    );
    assert_error(
        &as_alice
            .post(&filters, &json!({"room": {"rooms": "!a:b"}}))
            .await,
        400,
        "M_BAD_JSON",
    );
    assert_error(
        &as_alice.post(&filters, &json!([1])).await,
        400,
        "M_BAD_JSON",
    );
    assert_error(
        &as_alice.post_raw(&filters, b"{nope".to_vec()).await,
        400,
        "M_NOT_JSON",
    );
}

backend_tests!(create_and_get_filters, invalid_filters_are_rejected);
