//! A user keeps client settings as account data, globally and per room:
//! they read back what they wrote, overwrite it, cannot touch another
//! user's data or the types the server manages, and everything survives a
//! restart.

use crate::common::{Backend, TestServer, assert_error, register};
use serde_json::json;

async fn global_and_room_account_data(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let client = server.client();
    let (alice, alice_token, _) = register(&client, "alice", "pw-alice").await;
    let (bob, bob_token, _) = register(&client, "bob", "pw-bob").await;
    let as_alice = client.with_token(&alice_token);
    let as_bob = client.with_token(&bob_token);
    let global = format!("/_matrix/client/v3/user/{alice}/account_data/org.example.settings");
    let room = "!room:example.org";
    let in_room =
        format!("/_matrix/client/v3/user/{alice}/rooms/{room}/account_data/org.example.notes");

    // Nothing set yet.
    assert_error(&as_alice.get(&global).await, 404, "M_NOT_FOUND");
    assert_error(&as_alice.get(&in_room).await, 404, "M_NOT_FOUND");

    let (status, body) = as_alice.put(&global, &json!({"theme": "dark"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({}));
    let (status, body) = as_alice.get(&global).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"theme": "dark"}));

    // Overwriting replaces the whole object.
    let (status, _) = as_alice.put(&global, &json!({"font": 12})).await;
    assert_eq!(status, 200);
    assert_eq!(as_alice.get(&global).await.1, json!({"font": 12}));

    // Room data is separate from global data of the same type.
    let (status, _) = as_alice.put(&in_room, &json!({"text": "hi"})).await;
    assert_eq!(status, 200);
    assert_eq!(as_alice.get(&in_room).await.1, json!({"text": "hi"}));
    assert_error(
        &as_alice
            .get(&format!(
                "/_matrix/client/v3/user/{alice}/account_data/org.example.notes"
            ))
            .await,
        404,
        "M_NOT_FOUND",
    );

    // The legacy r0 path reaches the same data.
    assert_eq!(
        as_alice
            .get(&format!(
                "/_matrix/client/r0/user/{alice}/account_data/org.example.settings"
            ))
            .await
            .1,
        json!({"font": 12})
    );

    // Another user can neither read nor write it.
    assert_error(&as_bob.get(&global).await, 403, "M_FORBIDDEN");
    assert_error(&as_bob.put(&global, &json!({})).await, 403, "M_FORBIDDEN");
    assert_error(&as_bob.get(&in_room).await, 403, "M_FORBIDDEN");
    assert_error(&as_bob.put(&in_room, &json!({})).await, 403, "M_FORBIDDEN");
    // Bob's own data of the same type is his.
    assert_error(
        &as_bob
            .get(&format!(
                "/_matrix/client/v3/user/{bob}/account_data/org.example.settings"
            ))
            .await,
        404,
        "M_NOT_FOUND",
    );

    server.restart().await;
    assert_eq!(as_alice.get(&global).await.1, json!({"font": 12}));
    assert_eq!(as_alice.get(&in_room).await.1, json!({"text": "hi"}));
}

async fn bad_account_data_is_rejected(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    let (alice, token, _) = register(&client, "alice", "pw-alice").await;
    let as_alice = client.with_token(&token);
    let base = format!("/_matrix/client/v3/user/{alice}");

    // Server-managed types, globally and per room.
    for path in [
        format!("{base}/account_data/m.push_rules"),
        format!("{base}/account_data/m.fully_read"),
        format!("{base}/rooms/!r:example.org/account_data/m.fully_read"),
        format!("{base}/rooms/!r:example.org/account_data/m.push_rules"),
    ] {
        assert_error(
            &as_alice.put(&path, &json!({"event_id": "$x"})).await,
            405,
            "M_BAD_JSON",
        );
    }

    // Content must be a JSON object.
    let path = format!("{base}/account_data/org.example.x");
    assert_error(
        &as_alice.put(&path, &json!([1, 2])).await,
        400,
        "M_BAD_JSON",
    );
    assert_error(
        &as_alice.put(&path, &json!("text")).await,
        400,
        "M_BAD_JSON",
    );
    let (status, body) = as_alice
        .send_raw(reqwest::Method::PUT, &path, b"{not json".to_vec())
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errcode"], "M_NOT_JSON");

    // Bounded size.
    let big = "x".repeat(70 * 1024);
    assert_error(
        &as_alice.put(&path, &json!({ "big": big })).await,
        413,
        "M_TOO_LARGE",
    );
    assert_error(&as_alice.get(&path).await, 404, "M_NOT_FOUND");

    // The room ID must be one.
    assert_error(
        &as_alice
            .put(
                &format!("{base}/rooms/not-a-room/account_data/org.example.x"),
                &json!({}),
            )
            .await,
        400,
        "M_INVALID_PARAM",
    );

    // No token, no data.
    assert_error(&client.get(&path).await, 401, "M_MISSING_TOKEN");
}

backend_tests!(global_and_room_account_data, bad_account_data_is_rejected);
