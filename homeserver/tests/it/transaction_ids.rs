//! Transaction IDs make retries idempotent, scoped as the spec says: to the
//! device and the request path. The same ID on the same path is a retry
//! (the first event is returned, nothing is sent); on another room, event
//! type or redacted event, or from another device, it is a new request.

use crate::common::{Backend, Client, TestServer, create_user, enc};
use serde_json::{Value, json};

const V3: &str = "/_matrix/client/v3";

async fn create_room(client: &Client) -> String {
    let (status, resp) = client
        .post(
            &format!("{V3}/createRoom"),
            &json!({"preset": "private_chat"}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    resp["room_id"].as_str().expect("room_id").to_owned()
}

async fn send(client: &Client, room: &str, event_type: &str, txn: &str, body: &str) -> String {
    let (status, resp) = client
        .put(
            &format!("{V3}/rooms/{}/send/{event_type}/{txn}", enc(room)),
            &json!({"msgtype": "m.text", "body": body}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    resp["event_id"].as_str().expect("event_id").to_owned()
}

async fn redact(client: &Client, room: &str, event_id: &str, txn: &str) -> String {
    let (status, resp) = client
        .put(
            &format!("{V3}/rooms/{}/redact/{}/{txn}", enc(room), enc(event_id)),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    resp["event_id"].as_str().expect("event_id").to_owned()
}

/// Bodies of the room's `m.room.message`-like events sent by anyone,
/// oldest first.
async fn bodies(client: &Client, room: &str) -> Vec<String> {
    let (status, resp) = client
        .get(&format!(
            "{V3}/rooms/{}/messages?dir=f&limit=100",
            enc(room)
        ))
        .await;
    assert_eq!(status, 200, "{resp}");
    resp["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

async fn transaction_id_scope(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, token) = create_user(&server, "alice").await;
    let alice = server.client().with_token(&token);
    let room_a = create_room(&alice).await;
    let room_b = create_room(&alice).await;

    // A retry on the same path returns the first event and sends nothing.
    let first = send(&alice, &room_a, "m.room.message", "t1", "one").await;
    let retry = send(&alice, &room_a, "m.room.message", "t1", "one again").await;
    assert_eq!(first, retry);

    // The same ID in another room, or for another event type, is new.
    let other_room = send(&alice, &room_b, "m.room.message", "t1", "two").await;
    assert_ne!(other_room, first);
    let other_type = send(&alice, &room_a, "org.example.note", "t1", "three").await;
    assert_ne!(other_type, first);
    assert_eq!(bodies(&alice, &room_a).await, ["one", "three"]);
    assert_eq!(bodies(&alice, &room_b).await, ["two"]);

    // Redactions: the same ID for another target is a new redaction; a
    // retry for the same target is not.
    let r1 = redact(&alice, &room_a, &first, "t1").await;
    assert_eq!(redact(&alice, &room_a, &first, "t1").await, r1);
    let r2 = redact(&alice, &room_a, &other_type, "t1").await;
    assert_ne!(r1, r2);
    assert_eq!(bodies(&alice, &room_a).await, Vec::<String>::new());

    // Another device of the same user has its own transaction IDs.
    let (status, login) = server
        .client()
        .post(
            &format!("{V3}/login"),
            &json!({
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "alice"},
                "password": "correct horse battery",
            }),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    let second = server
        .client()
        .with_token(login["access_token"].as_str().expect("token"));
    let from_second = send(&second, &room_b, "m.room.message", "t1", "four").await;
    assert_ne!(from_second, other_room);
    assert_eq!(bodies(&alice, &room_b).await, ["two", "four"]);

    // The echo of the transaction ID goes to the sending device only.
    let (status, event) = second
        .get(&format!(
            "{V3}/rooms/{}/event/{}",
            enc(&room_b),
            enc(&from_second)
        ))
        .await;
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["unsigned"]["transaction_id"], Value::from("t1"));
}

backend_tests!(transaction_id_scope);
