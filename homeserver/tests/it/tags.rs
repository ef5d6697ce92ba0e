//! A user tags rooms (favourite, custom tags with an order), lists and
//! removes tags; tags are the room's `m.tag` account data and survive a
//! restart.

use crate::common::{Backend, TestServer, assert_error, register};
use serde_json::json;

async fn tag_rooms(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let client = server.client();
    let (alice, token, _) = register(&client, "alice", "pw-alice").await;
    let (_, bob_token, _) = register(&client, "bob", "pw-bob").await;
    let as_alice = client.with_token(&token);
    let as_bob = client.with_token(&bob_token);
    let tags = format!("/_matrix/client/v3/user/{alice}/rooms/!room:example.org/tags");

    let (status, body) = as_alice.get(&tags).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"tags": {}}));

    let (status, body) = as_alice
        .put(&format!("{tags}/m.favourite"), &json!({"order": 0.25}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = as_alice.put(&format!("{tags}/u.work"), &json!({})).await;
    assert_eq!(status, 200);
    let (_, body) = as_alice.get(&tags).await;
    assert_eq!(
        body,
        json!({"tags": {"m.favourite": {"order": 0.25}, "u.work": {}}})
    );

    // Re-tagging updates the order.
    let (status, _) = as_alice
        .put(&format!("{tags}/m.favourite"), &json!({"order": 0.5}))
        .await;
    assert_eq!(status, 200);

    // Tags are the room's m.tag account data.
    let (status, body) = as_alice
        .get(&format!(
            "/_matrix/client/v3/user/{alice}/rooms/!room:example.org/account_data/m.tag"
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"tags": {"m.favourite": {"order": 0.5}, "u.work": {}}})
    );

    let (status, _) = as_alice.delete(&format!("{tags}/u.work")).await;
    assert_eq!(status, 200);
    // Removing a tag the room does not have is not an error.
    let (status, _) = as_alice.delete(&format!("{tags}/u.never")).await;
    assert_eq!(status, 200);

    // Bad input and other users.
    assert_error(
        &as_alice
            .put(&format!("{tags}/u.x"), &json!({"order": 2.5}))
            .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &as_alice
            .put(&format!("{tags}/u.x"), &json!({"order": "high"}))
            .await,
        400,
        "M_BAD_JSON",
    );
    assert_error(&as_bob.get(&tags).await, 403, "M_FORBIDDEN");
    assert_error(
        &as_bob.put(&format!("{tags}/u.evil"), &json!({})).await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &as_bob.delete(&format!("{tags}/m.favourite")).await,
        403,
        "M_FORBIDDEN",
    );

    server.restart().await;
    let (_, body) = as_alice.get(&tags).await;
    assert_eq!(body, json!({"tags": {"m.favourite": {"order": 0.5}}}));
}

backend_tests!(tag_rooms);
