//! Alice changes her display name and avatar: every room she is joined to
//! gets an updated member event (keeping what else it said), rooms she
//! left do not, and members see the change.

use crate::common::{Backend, Client, TestServer, create_room, create_user, enc};
use serde_json::{Value, json};

const V3: &str = "/_matrix/client/v3";

async fn member(client: &Client, room: &str, user: &str) -> Value {
    let (status, resp) = client
        .get(&format!(
            "{V3}/rooms/{}/state/m.room.member/{}",
            enc(room),
            enc(user)
        ))
        .await;
    assert_eq!(status, 200, "{resp}");
    resp
}

async fn member_events(client: &Client, room: &str, user: &str) -> usize {
    let (status, resp) = client
        .get(&format!(
            "{V3}/rooms/{}/messages?dir=b&limit=100",
            enc(room)
        ))
        .await;
    assert_eq!(status, 200, "{resp}");
    resp["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .filter(|e| e["type"] == "m.room.member" && e["state_key"] == user)
        .count()
}

async fn profile_changes_reach_rooms(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice_id, alice_token) = create_user(&server, "alice").await;
    let (_, bob_token) = create_user(&server, "bob").await;
    let alice = server.client().with_token(&alice_token);
    let bob = server.client().with_token(&bob_token);

    let bobs_room = create_room(&bob, &json!({"preset": "public_chat"})).await;
    // Alice joins with a reason, which her member event keeps.
    let (status, _) = alice
        .post(
            &format!("{V3}/join/{}", enc(&bobs_room)),
            &json!({"reason": "hello"}),
        )
        .await;
    assert_eq!(status, 200);
    let own_room = create_room(&alice, &json!({"preset": "private_chat"})).await;
    let left_room = create_room(&alice, &json!({"preset": "private_chat"})).await;
    let (status, _) = alice
        .post(&format!("{V3}/rooms/{}/leave", enc(&left_room)), &json!({}))
        .await;
    assert_eq!(status, 200);

    let (status, resp) = alice
        .put(
            &format!("{V3}/profile/{}/displayname", enc(&alice_id)),
            &json!({"displayname": "Alice Liddell"}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    for room in [&bobs_room, &own_room] {
        let content = member(&alice, room, &alice_id).await;
        assert_eq!(content["membership"], "join");
        assert_eq!(content["displayname"], "Alice Liddell");
    }
    // Bob sees it, and the join reason stayed.
    let content = member(&bob, &bobs_room, &alice_id).await;
    assert_eq!(content["displayname"], "Alice Liddell");
    assert_eq!(content["reason"], "hello");
    assert_eq!(member_events(&bob, &bobs_room, &alice_id).await, 2);
    // The room she left gets nothing.
    assert_eq!(member_events(&alice, &left_room, &alice_id).await, 2);

    let (status, _) = alice
        .put(
            &format!("{V3}/profile/{}/avatar_url", enc(&alice_id)),
            &json!({"avatar_url": "mxc://test.localhost/alice"}),
        )
        .await;
    assert_eq!(status, 200);
    let content = member(&bob, &bobs_room, &alice_id).await;
    assert_eq!(content["avatar_url"], "mxc://test.localhost/alice");
    assert_eq!(content["displayname"], "Alice Liddell");
    assert_eq!(member_events(&bob, &bobs_room, &alice_id).await, 3);

    // Setting the same name again sends nothing new.
    let (status, _) = alice
        .put(
            &format!("{V3}/profile/{}/displayname", enc(&alice_id)),
            &json!({"displayname": "Alice Liddell"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(member_events(&bob, &bobs_room, &alice_id).await, 3);

    // Clearing the name removes it from the member events.
    let (status, _) = alice
        .put(
            &format!("{V3}/profile/{}/displayname", enc(&alice_id)),
            &json!({"displayname": ""}),
        )
        .await;
    assert_eq!(status, 200);
    let content = member(&bob, &bobs_room, &alice_id).await;
    assert_eq!(content.get("displayname"), None, "{content}");
    assert_eq!(content["avatar_url"], "mxc://test.localhost/alice");
}

backend_tests!(profile_changes_reach_rooms);
