//! Bob types in a room he is in; he cannot type for Alice, nor in a room
//! he is not in; bad bodies get the spec's errors. (What other members
//! see arrives through sync; the expiry of typing is unit-tested with
//! paused time in `typing.rs`.)

use crate::common::{Backend, TestServer, assert_error, create_room, enc, users};
use serde_json::json;

const V3: &str = "/_matrix/client/v3";

async fn typing_story(backend: Backend) {
    let server = TestServer::start(backend).await;
    let [(alice_id, alice), (bob_id, bob)] = users(&server, ["alice", "bob"]).await;
    let room = create_room(&alice, &json!({"preset": "public_chat"})).await;
    let r = enc(&room);
    let bob_path = format!("{V3}/rooms/{r}/typing/{}", enc(&bob_id));

    // Not joined yet.
    assert_error(
        &bob.put(&bob_path, &json!({"typing": true, "timeout": 30000}))
            .await,
        403,
        "M_FORBIDDEN",
    );
    let (status, resp) = bob.post(&format!("{V3}/rooms/{r}/join"), &json!({})).await;
    assert_eq!(status, 200, "{resp}");

    let (status, resp) = bob
        .put(&bob_path, &json!({"typing": true, "timeout": 30000}))
        .await;
    assert_eq!((status.as_u16(), resp.clone()), (200, json!({})));
    // Any timeout is accepted (and capped); renewing is fine.
    let (status, _) = bob
        .put(&bob_path, &json!({"typing": true, "timeout": 86_400_000}))
        .await;
    assert_eq!(status, 200);
    let (status, _) = bob.put(&bob_path, &json!({"typing": false})).await;
    assert_eq!(status, 200);
    // Stopping when not typing is not an error.
    let (status, _) = bob.put(&bob_path, &json!({"typing": false})).await;
    assert_eq!(status, 200);

    // Only for yourself.
    assert_error(
        &bob.put(
            &format!("{V3}/rooms/{r}/typing/{}", enc(&alice_id)),
            &json!({"typing": true, "timeout": 1000}),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    // Typing needs a timeout; `typing` must be a boolean.
    assert_error(
        &bob.put(&bob_path, &json!({"typing": true})).await,
        400,
        "M_BAD_JSON",
    );
    assert_error(
        &bob.put(&bob_path, &json!({"typing": "yes", "timeout": 1000}))
            .await,
        400,
        "M_BAD_JSON",
    );
    // After leaving, no more typing.
    let (status, _) = bob.post(&format!("{V3}/rooms/{r}/leave"), &json!({})).await;
    assert_eq!(status, 200);
    assert_error(
        &bob.put(&bob_path, &json!({"typing": true, "timeout": 1000}))
            .await,
        403,
        "M_FORBIDDEN",
    );
    // An unknown room looks like a room you are not in.
    assert_error(
        &bob.put(
            &format!(
                "{V3}/rooms/{}/typing/{}",
                enc("!nope:test.localhost"),
                enc(&bob_id)
            ),
            &json!({"typing": true, "timeout": 1000}),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
}

backend_tests!(typing_story);
