//! Many members sending to one room at once (their messages are stored in
//! batches sharing one commit): every message is stored once, in one
//! chain (each follows exactly one event, and the room ends with one
//! forward extremity), each sender's messages in the order sent; a
//! transaction ID sent twice at once is one event; a muted member is
//! refused while the others' messages go through.

use std::collections::HashSet;

use crate::common::{Backend, Client, TestServer, assert_error, create_user, enc};
use myelin_homeserver::storage::{Db, events, rooms};
use serde_json::{Value, json};
use tokio::task::JoinSet;

const V3: &str = "/_matrix/client/v3";
const PER_SENDER: usize = 12;

async fn send(client: &Client, room: &str, txn: &str, body: &str) -> (u16, Value) {
    let (status, resp) = client
        .put(
            &format!("{V3}/rooms/{}/send/m.room.message/{txn}", enc(room)),
            &json!({"msgtype": "m.text", "body": body}),
        )
        .await;
    (status.as_u16(), resp)
}

async fn join(client: &Client, room: &str) {
    let (status, resp) = client
        .post(&format!("{V3}/join/{}", enc(room)), &json!({}))
        .await;
    assert_eq!(status, 200, "{resp}");
}

async fn concurrent_sends(backend: Backend) {
    let server = TestServer::start(backend).await;
    let db = Db::connect(&server.db_url, 2).await.expect("database");
    let mut senders = Vec::new();
    for name in ["alice", "bob", "carol", "dave"] {
        let (id, token) = create_user(&server, name).await;
        senders.push((id, server.client().with_token(&token)));
    }
    let (mallory_id, mallory_token) = create_user(&server, "mallory").await;
    let mallory = server.client().with_token(&mallory_token);
    let (status, resp) = senders[0]
        .1
        .post(
            &format!("{V3}/createRoom"),
            &json!({"preset": "public_chat",
                    "power_level_content_override": {"users": {mallory_id.clone(): -1}}}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let room = resp["room_id"].as_str().expect("room_id").to_owned();
    for (_, client) in &senders[1..] {
        join(client, &room).await;
    }
    join(&mallory, &room).await;

    // Each member sends its messages one after another, all members at
    // once; alice also sends one transaction twice at the same time, and
    // mallory (below the level to send) tries too.
    let mut tasks = JoinSet::new();
    for (i, (_, client)) in senders.iter().enumerate() {
        let (client, room) = (client.clone(), room.clone());
        tasks.spawn(async move {
            let mut ids = Vec::new();
            for n in 0..PER_SENDER {
                let (status, resp) =
                    send(&client, &room, &format!("t{n}"), &format!("{i}:{n}")).await;
                assert_eq!(status, 200, "{resp}");
                ids.push(resp["event_id"].as_str().expect("event_id").to_owned());
            }
            (i, ids)
        });
    }
    let twice = [senders[0].1.clone(), senders[0].1.clone()].map(|client| {
        let room = room.clone();
        tokio::spawn(async move { send(&client, &room, "same", "once").await })
    });
    let refused = {
        let (mallory, room) = (mallory.clone(), room.clone());
        tokio::spawn(async move { send(&mallory, &room, "m1", "let me in").await })
    };
    let mut sent: Vec<Vec<String>> = vec![Vec::new(); senders.len()];
    while let Some(done) = tasks.join_next().await {
        let (i, ids) = done.expect("sender task");
        sent[i] = ids;
    }
    let [a, b] = twice;
    let (a, b) = (a.await.expect("send"), b.await.expect("send"));
    assert_eq!((a.0, b.0), (200, 200), "{a:?} {b:?}");
    assert_eq!(
        a.1["event_id"], b.1["event_id"],
        "one transaction, one event"
    );
    let (status, resp) = refused.await.expect("send");
    assert_error(
        &(http::StatusCode::from_u16(status).expect("status"), resp),
        403,
        "M_FORBIDDEN",
    );

    // Every message once, each sender's in the order sent.
    let (status, resp) = senders[0]
        .1
        .get(&format!(
            "{V3}/rooms/{}/messages?dir=f&limit=200",
            enc(&room)
        ))
        .await;
    assert_eq!(status, 200, "{resp}");
    let bodies: Vec<&str> = resp["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .filter_map(|e| e["content"]["body"].as_str())
        .collect();
    assert_eq!(bodies.len(), senders.len() * PER_SENDER + 1, "{bodies:?}");
    assert_eq!(bodies.iter().filter(|b| **b == "once").count(), 1);
    for i in 0..senders.len() {
        let own: Vec<String> = bodies
            .iter()
            .filter(|b| b.starts_with(&format!("{i}:")))
            .map(|b| (*b).to_owned())
            .collect();
        let expected: Vec<String> = (0..PER_SENDER).map(|n| format!("{i}:{n}")).collect();
        assert_eq!(own, expected);
    }
    let all: HashSet<&String> = sent.iter().flatten().collect();
    assert_eq!(all.len(), senders.len() * PER_SENDER, "distinct event IDs");

    // One chain: each message follows exactly one event, and the room has
    // one forward extremity.
    for id in &all {
        let event = events::get(&db, id).await.expect("read").expect("stored");
        let json: Value = serde_json::from_str(&event.json).expect("json");
        let prevs = json["prev_events"].as_array().expect("prev_events");
        assert_eq!(prevs.len(), 1, "{id}: {prevs:?}");
    }
    let extremities = rooms::forward_extremities(&db, &room).await.expect("read");
    assert_eq!(extremities.len(), 1, "{extremities:?}");
}

backend_tests!(concurrent_sends);
