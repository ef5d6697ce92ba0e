//! A 200 on send means the event is durable: several clients send
//! concurrently, the server is SIGKILLed mid-stream, and after a restart
//! every acknowledged event is there, exactly once, and transaction IDs
//! still deduplicate.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{Backend, TestServer, create_room, create_user, enc};
use serde_json::json;

const V3: &str = "/_matrix/client/v3";

async fn acknowledged_sends_survive_a_kill(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let mut tokens = Vec::new();
    for name in ["alice", "bob", "carol", "dan"] {
        tokens.push(create_user(&server, name).await);
    }
    let owner = server.client().with_token(&tokens[0].1);
    let room = create_room(&owner, &json!({"preset": "public_chat"})).await;
    // A second room, so writes to two rooms run in parallel.
    let (_, resp) = owner
        .post(
            &format!("{V3}/createRoom"),
            &json!({"preset": "public_chat"}),
        )
        .await;
    let room2 = resp["room_id"].as_str().expect("room_id").to_owned();
    for (_, token) in &tokens[1..] {
        let c = server.client().with_token(token);
        for r in [&room, &room2] {
            let (status, resp) = c
                .post(&format!("{V3}/rooms/{}/join", enc(r)), &json!({}))
                .await;
            assert_eq!(status, 200, "{resp}");
        }
    }

    // (room, txn, event_id) of every 200.
    let acked: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
    let mut tasks = Vec::new();
    for (i, (_, token)) in tokens.iter().enumerate() {
        for (j, r) in [&room, &room2].into_iter().enumerate() {
            let client = server.client().with_token(token);
            let acked = acked.clone();
            let r = r.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0..1000 {
                    let txn = format!("c{i}r{j}n{n}");
                    let path = format!("{V3}/rooms/{}/send/m.room.message/{txn}", enc(&r));
                    let body = json!({"msgtype": "m.text", "body": txn});
                    let Ok(resp) = client.try_put(&path, &body).await else {
                        return; // the server is gone
                    };
                    if resp.0 == 200 {
                        let id = resp.1["event_id"].as_str().expect("event_id").to_owned();
                        acked.lock().expect("lock").push((r.clone(), txn, id));
                    }
                }
            }));
        }
    }
    // Let the writers get going, then pull the plug.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while acked.lock().expect("lock").len() < 40 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill();
    for t in tasks {
        t.await.ok();
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() >= 40, "only {} sends acknowledged", acked.len());

    server.restart().await;
    let owner = server.client().with_token(&tokens[0].1);
    for r in [&room, &room2] {
        let mut stored = Vec::new();
        let mut from: Option<String> = None;
        loop {
            let path = match &from {
                Some(t) => format!("{V3}/rooms/{}/messages?dir=f&limit=500&from={t}", enc(r)),
                None => format!("{V3}/rooms/{}/messages?dir=f&limit=500", enc(r)),
            };
            let (status, resp) = owner.get(&path).await;
            assert_eq!(status, 200, "{resp}");
            for e in resp["chunk"].as_array().expect("chunk") {
                if e["type"] == "m.room.message" {
                    stored.push(e["event_id"].as_str().expect("event_id").to_owned());
                }
            }
            match resp["end"].as_str() {
                Some(end) => from = Some(end.to_owned()),
                None => break,
            }
        }
        let unique: HashSet<&String> = stored.iter().collect();
        assert_eq!(unique.len(), stored.len(), "no event stored twice");
        for (ar, _, id) in acked.iter().filter(|(ar, _, _)| ar == r) {
            assert!(unique.contains(id), "acknowledged {id} in {ar} is lost");
        }
    }
    // Retrying an acknowledged transaction after the restart returns the
    // same event and stores nothing new.
    let (room_of, txn, id) = acked
        .iter()
        .find(|(_, t, _)| t.starts_with("c0"))
        .expect("c0 ack");
    let path = format!("{V3}/rooms/{}/send/m.room.message/{txn}", enc(room_of));
    let (status, resp) = owner.put(&path, &json!({"body": "retry"})).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["event_id"], id.as_str());
    // And the room keeps working.
    let (status, resp) = owner
        .put(
            &format!("{V3}/rooms/{}/send/m.room.message/after", enc(&room)),
            &json!({"body": "after"}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
}

backend_tests!(acknowledged_sends_survive_a_kill);
