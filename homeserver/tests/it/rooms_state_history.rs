//! State over time: many state changes (past the snapshot chain cap) keep
//! both the current state and the state at old events right; history
//! visibility `joined` hides what was said before a user joined.

use crate::common::{Backend, TestServer, create_room, create_user, enc};
use serde_json::json;

const V3: &str = "/_matrix/client/v3";

async fn state_at_old_events_and_joined_visibility(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, alice_token) = create_user(&server, "alice").await;
    let (bob_id, bob_token) = create_user(&server, "bob").await;
    let alice = server.client().with_token(&alice_token);
    let bob = server.client().with_token(&bob_token);
    let room = create_room(
        &alice,
        &json!({"preset": "public_chat", "initial_state": [
            {"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}
        ]}),
    )
    .await;
    let r = enc(&room);

    // 80 topic changes, each followed by a message naming it.
    let mut marks = Vec::new();
    for i in 0..80 {
        let (status, resp) = alice
            .put(
                &format!("{V3}/rooms/{r}/state/m.room.topic"),
                &json!({"topic": format!("t{i}")}),
            )
            .await;
        assert_eq!(status, 200, "{resp}");
        let (status, resp) = alice
            .put(
                &format!("{V3}/rooms/{r}/send/m.room.message/m{i}"),
                &json!({"body": format!("under t{i}")}),
            )
            .await;
        assert_eq!(status, 200, "{resp}");
        marks.push(resp["event_id"].as_str().expect("event_id").to_owned());
    }
    let (_, topic) = alice
        .get(&format!("{V3}/rooms/{r}/state/m.room.topic"))
        .await;
    assert_eq!(topic["topic"], "t79");
    let (_, all) = alice.get(&format!("{V3}/rooms/{r}/state")).await;
    let topics = all
        .as_array()
        .expect("state")
        .iter()
        .filter(|e| e["type"] == "m.room.topic")
        .count();
    assert_eq!(topics, 1, "one topic in the current state");
    // The state at old events, read through snapshots of every depth.
    for i in [0, 5, 31, 32, 33, 64, 79] {
        let (status, ctx) = alice
            .get(&format!(
                "{V3}/rooms/{r}/context/{}?limit=0",
                enc(&marks[i])
            ))
            .await;
        assert_eq!(status, 200, "{ctx}");
        let topic = ctx["state"]
            .as_array()
            .expect("state")
            .iter()
            .find(|e| e["type"] == "m.room.topic")
            .expect("topic in state");
        assert_eq!(
            topic["content"]["topic"],
            format!("t{i}"),
            "state at message {i}"
        );
        if i > 0 {
            assert_eq!(
                topic["unsigned"]["prev_content"]["topic"],
                format!("t{}", i - 1)
            );
        }
    }

    // Bob joins now: with `joined` visibility he sees nothing from before.
    let (status, resp) = bob.post(&format!("{V3}/rooms/{r}/join"), &json!({})).await;
    assert_eq!(status, 200, "{resp}");
    let (status, resp) = alice
        .put(
            &format!("{V3}/rooms/{r}/send/m.room.message/late"),
            &json!({"body": "hi bob"}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let (status, msgs) = bob
        .get(&format!("{V3}/rooms/{r}/messages?dir=b&limit=1000"))
        .await;
    assert_eq!(status, 200, "{msgs}");
    let chunk = msgs["chunk"].as_array().expect("chunk");
    let bodies: Vec<&str> = chunk
        .iter()
        .filter_map(|e| e["content"]["body"].as_str())
        .collect();
    assert_eq!(bodies, vec!["hi bob"]);
    assert!(
        chunk.iter().any(|e| e["state_key"] == bob_id.as_str()),
        "bob sees his own join"
    );
    let (status, _) = bob
        .get(&format!("{V3}/rooms/{r}/event/{}", enc(&marks[3])))
        .await;
    assert_eq!(status, 404, "events before the join are hidden");
}

backend_tests!(state_at_old_events_and_joined_visibility);
