//! Bob deactivates his account (asking to be erased): he leaves every
//! room he was joined to, rejects his pending invite, withdraws his
//! knock, and can no longer sign in; the rooms carry on.

use crate::common::{
    Backend, Client, TestServer, assert_error, create_user, enc, login, password_auth,
};
use serde_json::{Value, json};

const V3: &str = "/_matrix/client/v3";
const PASSWORD: &str = "correct horse battery";

async fn create_room(client: &Client, body: Value) -> String {
    let (status, resp) = client.post(&format!("{V3}/createRoom"), &body).await;
    assert_eq!(status, 200, "{resp}");
    resp["room_id"].as_str().expect("room_id").to_owned()
}

async fn membership(client: &Client, room: &str, user: &str) -> Value {
    let (status, resp) = client
        .get(&format!(
            "{V3}/rooms/{}/state/m.room.member/{}",
            enc(room),
            enc(user)
        ))
        .await;
    assert_eq!(status, 200, "{resp}");
    resp["membership"].clone()
}

async fn deactivation_leaves_rooms(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, alice_token) = create_user(&server, "alice").await;
    let (bob_id, bob_token) = create_user(&server, "bob").await;
    let alice = server.client().with_token(&alice_token);
    let bob = server.client().with_token(&bob_token);

    let joined = create_room(&alice, json!({"preset": "public_chat"})).await;
    let (status, _) = bob
        .post(&format!("{V3}/join/{}", enc(&joined)), &json!({}))
        .await;
    assert_eq!(status, 200);
    let invited = create_room(&alice, json!({"preset": "private_chat"})).await;
    let (status, _) = alice
        .post(
            &format!("{V3}/rooms/{}/invite", enc(&invited)),
            &json!({"user_id": bob_id}),
        )
        .await;
    assert_eq!(status, 200);
    let knocked = create_room(
        &alice,
        json!({"initial_state": [{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}]}),
    )
    .await;
    let (status, resp) = bob
        .post(&format!("{V3}/knock/{}", enc(&knocked)), &json!({}))
        .await;
    assert_eq!(status, 200, "{resp}");
    let pusher = json!({
        "app_id": "im.vector.app", "pushkey": "bob-key", "kind": "http",
        "app_display_name": "Element", "device_display_name": "phone", "lang": "en",
        "data": {"url": "https://push.example.org/_matrix/push/v1/notify"}
    });
    let (status, _) = bob.post(&format!("{V3}/pushers/set"), &pusher).await;
    assert_eq!(status, 200);

    let path = format!("{V3}/account/deactivate");
    let (status, challenge) = bob.post(&path, &json!({"erase": true})).await;
    assert_eq!(status, 401, "{challenge}");
    let (status, body) = bob
        .post(
            &path,
            &json!({"erase": true, "auth": password_auth(&bob_id, PASSWORD, &challenge["session"])}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id_server_unbind_result"], "success");

    for room in [&joined, &invited, &knocked] {
        assert_eq!(membership(&alice, room, &bob_id).await, "leave", "{room}");
    }
    let (_, members) = alice
        .get(&format!("{V3}/rooms/{}/joined_members", enc(&joined)))
        .await;
    assert!(members["joined"].get(&bob_id).is_none(), "{members}");
    // The rooms carry on without him.
    let (status, _) = alice
        .put(
            &format!("{V3}/rooms/{}/send/m.room.message/t1", enc(&joined)),
            &json!({"msgtype": "m.text", "body": "bye bob"}),
        )
        .await;
    assert_eq!(status, 200);

    assert_error(
        &bob.get(&format!("{V3}/account/whoami")).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    assert_error(
        &login(&server.client(), "bob", PASSWORD).await,
        403,
        "M_USER_DEACTIVATED",
    );
    // His ID stays reserved.
    let (status, _) = server
        .client()
        .get(&format!("{V3}/register/available?username=bob"))
        .await;
    assert_eq!(status, 400);
}

backend_tests!(deactivation_leaves_rooms);
