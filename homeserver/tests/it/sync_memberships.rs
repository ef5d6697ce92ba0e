//! Memberships as Bob's sync sees them: an invite with its stripped state,
//! the join moving the room to `join`, leaving, being kicked and banned
//! moving it to `leave` (and `include_leave` keeping it there in initial
//! syncs), and history from before his join staying hidden in a room whose
//! history is visible to joined members only.

use crate::common::{Backend, Client, TestServer, create_user, enc};
use serde_json::{Value, json};

const V3: &str = "/_matrix/client/v3";

async fn sync(client: &Client, query: &str) -> Value {
    let (status, resp) = client.get(&format!("{V3}/sync?{query}")).await;
    assert_eq!(status, 200, "{resp}");
    resp
}

fn since(token: &str) -> String {
    format!("since={}", enc(token))
}

fn next_batch(resp: &Value) -> String {
    resp["next_batch"].as_str().expect("next_batch").to_owned()
}

fn section<'a>(resp: &'a Value, name: &str, room: &str) -> Option<&'a Value> {
    resp["rooms"][name].get(room)
}

async fn ok(resp: (reqwest::StatusCode, Value)) -> Value {
    assert_eq!(resp.0, 200, "{}", resp.1);
    resp.1
}

async fn send(client: &Client, room: &str, txn: &str, body: &str) {
    ok(client
        .put(
            &format!("{V3}/rooms/{}/send/m.room.message/{txn}", enc(room)),
            &json!({"msgtype": "m.text", "body": body}),
        )
        .await)
    .await;
}

fn bodies(events: &Value) -> Vec<String> {
    events
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["type"] == "m.room.message")
                .map(|e| e["content"]["body"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn membership_of(events: &Value, user: &str) -> Option<String> {
    events.as_array()?.iter().rev().find_map(|e| {
        (e["type"] == "m.room.member" && e["state_key"] == user).then(|| {
            e["content"]["membership"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
    })
}

async fn invite_join_leave_kick_ban(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice_id, alice_token) = create_user(&server, "alice").await;
    let (bob_id, bob_token) = create_user(&server, "bob").await;
    let alice = server.client().with_token(&alice_token);
    let bob = server.client().with_token(&bob_token);
    let room = ok(alice
        .post(
            &format!("{V3}/createRoom"),
            &json!({"preset": "private_chat", "name": "Tea"}),
        )
        .await)
    .await["room_id"]
        .as_str()
        .expect("room_id")
        .to_owned();
    let r = enc(&room);
    let token = next_batch(&sync(&bob, "").await);

    // The invite, with stripped state ending in the invite itself.
    ok(alice
        .post(
            &format!("{V3}/rooms/{r}/invite"),
            &json!({"user_id": bob_id}),
        )
        .await)
    .await;
    let resp = sync(&bob, &since(&token)).await;
    let invite = section(&resp, "invite", &room).expect("invite section");
    let events = invite["invite_state"]["events"].as_array().expect("events");
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Tea"),
        "{invite}"
    );
    let last = events.last().expect("invite event");
    assert_eq!(last["type"], "m.room.member", "{invite}");
    assert_eq!(last["sender"], alice_id.as_str());
    assert_eq!(last["content"]["membership"], "invite");
    assert!(last.get("event_id").is_none(), "stripped: {last}");
    // An initial sync shows it too.
    assert!(section(&sync(&bob, "").await, "invite", &room).is_some());
    let token = next_batch(&resp);

    // Joining moves the room to `join`, with its state.
    ok(bob.post(&format!("{V3}/rooms/{r}/join"), &json!({})).await).await;
    let resp = sync(&bob, &since(&token)).await;
    assert!(section(&resp, "invite", &room).is_none(), "{resp}");
    let joined = section(&resp, "join", &room).expect("join section");
    let everything = [
        joined["state"]["events"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
        joined["timeline"]["events"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    ]
    .concat();
    assert!(
        everything.iter().any(|e| e["type"] == "m.room.create"),
        "{joined}"
    );
    assert_eq!(
        membership_of(&json!(everything), &bob_id).as_deref(),
        Some("join")
    );
    assert_eq!(joined["summary"]["m.joined_member_count"], 2, "{joined}");
    let token = next_batch(&resp);

    // Leaving: the room moves to `leave` with the leave in its timeline.
    send(&alice, &room, "1", "before bob leaves").await;
    ok(bob.post(&format!("{V3}/rooms/{r}/leave"), &json!({})).await).await;
    send(&alice, &room, "2", "after bob left").await;
    let resp = sync(&bob, &since(&token)).await;
    assert!(section(&resp, "join", &room).is_none(), "{resp}");
    let left = section(&resp, "leave", &room).expect("leave section");
    let timeline = &left["timeline"]["events"];
    assert_eq!(bodies(timeline), ["before bob leaves"], "{left}");
    assert_eq!(membership_of(timeline, &bob_id).as_deref(), Some("leave"));
    let token = next_batch(&resp);
    // Initial syncs show it only with include_leave.
    assert!(section(&sync(&bob, "").await, "leave", &room).is_none());
    let include_leave = format!(
        "filter={}",
        enc(&json!({"room": {"include_leave": true}}).to_string())
    );
    let resp = sync(&bob, &include_leave).await;
    let left = section(&resp, "leave", &room).expect("include_leave");
    assert!(!bodies(&left["timeline"]["events"]).contains(&"after bob left".to_owned()));

    // Kicked.
    ok(alice
        .post(
            &format!("{V3}/rooms/{r}/invite"),
            &json!({"user_id": bob_id}),
        )
        .await)
    .await;
    ok(bob.post(&format!("{V3}/rooms/{r}/join"), &json!({})).await).await;
    let token = next_batch(&sync(&bob, &since(&token)).await);
    ok(alice
        .post(&format!("{V3}/rooms/{r}/kick"), &json!({"user_id": bob_id}))
        .await)
    .await;
    let resp = sync(&bob, &since(&token)).await;
    assert!(section(&resp, "join", &room).is_none(), "{resp}");
    let left = section(&resp, "leave", &room).expect("kick in leave");
    assert_eq!(
        membership_of(&left["timeline"]["events"], &bob_id).as_deref(),
        Some("leave")
    );
    let token = next_batch(&resp);

    // Banned.
    ok(alice
        .post(&format!("{V3}/rooms/{r}/ban"), &json!({"user_id": bob_id}))
        .await)
    .await;
    let resp = sync(&bob, &since(&token)).await;
    let left = section(&resp, "leave", &room).expect("ban in leave");
    assert_eq!(
        membership_of(&left["timeline"]["events"], &bob_id).as_deref(),
        Some("ban")
    );
    assert!(section(&sync(&bob, "").await, "join", &room).is_none());

    // Alice's own syncs never showed Bob's room as anything but joined.
    assert!(section(&sync(&alice, "").await, "join", &room).is_some());
}

async fn joined_history_is_hidden_from_late_joiners(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_alice_id, alice_token) = create_user(&server, "alice").await;
    let (bob_id, bob_token) = create_user(&server, "bob").await;
    let alice = server.client().with_token(&alice_token);
    let bob = server.client().with_token(&bob_token);
    let room = ok(alice
        .post(
            &format!("{V3}/createRoom"),
            &json!({
                "preset": "private_chat",
                "initial_state": [{
                    "type": "m.room.history_visibility", "state_key": "",
                    "content": {"history_visibility": "joined"},
                }],
            }),
        )
        .await)
    .await["room_id"]
        .as_str()
        .expect("room_id")
        .to_owned();
    send(&alice, &room, "1", "secret").await;
    ok(alice
        .post(
            &format!("{V3}/rooms/{}/invite", enc(&room)),
            &json!({"user_id": bob_id}),
        )
        .await)
    .await;
    ok(bob
        .post(&format!("{V3}/rooms/{}/join", enc(&room)), &json!({}))
        .await)
    .await;
    send(&alice, &room, "2", "visible").await;

    let resp = sync(&bob, "").await;
    let timeline = &section(&resp, "join", &room).expect("joined")["timeline"]["events"];
    assert_eq!(bodies(timeline), ["visible"], "{resp}");
    // Alice, joined throughout, sees both.
    let resp = sync(&alice, "").await;
    let timeline = &section(&resp, "join", &room).expect("joined")["timeline"]["events"];
    assert_eq!(bodies(timeline), ["secret", "visible"], "{resp}");
}

async fn knocks_show_the_room(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_alice_id, alice_token) = create_user(&server, "alice").await;
    let (bob_id, bob_token) = create_user(&server, "bob").await;
    let alice = server.client().with_token(&alice_token);
    let bob = server.client().with_token(&bob_token);
    let room = ok(alice
        .post(
            &format!("{V3}/createRoom"),
            &json!({
                "name": "Door",
                "initial_state": [{
                    "type": "m.room.join_rules", "state_key": "",
                    "content": {"join_rule": "knock"},
                }],
            }),
        )
        .await)
    .await["room_id"]
        .as_str()
        .expect("room_id")
        .to_owned();
    let token = next_batch(&sync(&bob, "").await);
    ok(bob
        .post(
            &format!("{V3}/knock/{}", enc(&room)),
            &json!({"reason": "hi"}),
        )
        .await)
    .await;
    let resp = sync(&bob, &since(&token)).await;
    let knock = section(&resp, "knock", &room).expect("knock section");
    let events = knock["knock_state"]["events"].as_array().expect("events");
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "m.room.join_rules" && e["content"]["join_rule"] == "knock"),
        "{knock}"
    );
    let last = events.last().expect("knock event");
    assert_eq!(last["state_key"], bob_id.as_str(), "{knock}");
    assert_eq!(last["content"]["membership"], "knock", "{knock}");
    assert!(section(&resp, "join", &room).is_none());
}

backend_tests!(
    invite_join_leave_kick_ban,
    joined_history_is_hidden_from_late_joiners,
    knocks_show_the_room
);
