//! Alice creates a room, invites Bob, they chat; Bob pages through the
//! history; Alice redacts, sets state, kicks, bans and unbans Bob; Bob
//! leaves and forgets. Everything survives a restart.

use crate::common::{Backend, Client, TestServer, assert_error, create_room, create_user, enc};
use serde_json::{Value, json};

const V3: &str = "/_matrix/client/v3";

async fn send(client: &Client, room: &str, txn: &str, body: &str) -> String {
    let (status, resp) = client
        .put(
            &format!("{V3}/rooms/{}/send/m.room.message/{txn}", enc(room)),
            &json!({"msgtype": "m.text", "body": body}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    resp["event_id"].as_str().expect("event_id").to_owned()
}

fn bodies(chunk: &Value) -> Vec<String> {
    chunk
        .as_array()
        .expect("chunk")
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| {
            e["content"]["body"]
                .as_str()
                .unwrap_or("<redacted>")
                .to_owned()
        })
        .collect()
}

async fn joined_rooms(client: &Client) -> Vec<String> {
    let (status, resp) = client.get(&format!("{V3}/joined_rooms")).await;
    assert_eq!(status, 200, "{resp}");
    resp["joined_rooms"]
        .as_array()
        .expect("joined_rooms")
        .iter()
        .map(|r| r.as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn chat_story(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let (alice_id, alice_token) = create_user(&server, "alice").await;
    let (bob_id, bob_token) = create_user(&server, "bob").await;
    let alice = server.client().with_token(&alice_token);
    let bob = server.client().with_token(&bob_token);

    let room = create_room(
        &alice,
        &json!({"preset": "private_chat", "name": "Tea", "topic": "Leaves"}),
    )
    .await;
    let r = enc(&room);
    assert_eq!(joined_rooms(&alice).await, vec![room.clone()]);

    // Bob cannot join an invite-only room uninvited, nor send to it.
    assert_error(
        &bob.post(&format!("{V3}/rooms/{r}/join"), &json!({})).await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &bob.put(
            &format!("{V3}/rooms/{r}/send/m.room.message/x1"),
            &json!({"body": "hi"}),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    // Nor read it.
    assert_error(
        &bob.get(&format!("{V3}/rooms/{r}/messages?dir=b")).await,
        403,
        "M_FORBIDDEN",
    );

    let (status, resp) = alice
        .post(
            &format!("{V3}/rooms/{r}/invite"),
            &json!({"user_id": bob_id}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let (status, resp) = bob.post(&format!("{V3}/join/{r}"), &json!({})).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["room_id"], room);
    assert_eq!(joined_rooms(&bob).await, vec![room.clone()]);

    let (status, resp) = bob.get(&format!("{V3}/rooms/{r}/joined_members")).await;
    assert_eq!(status, 200, "{resp}");
    let joined = resp["joined"].as_object().expect("joined");
    assert!(
        joined.contains_key(&alice_id) && joined.contains_key(&bob_id),
        "{resp}"
    );

    // They chat; the same transaction ID twice is one event.
    let mut ids = Vec::new();
    for i in 0..10 {
        let (who, txn) = if i % 2 == 0 {
            (&alice, format!("a{i}"))
        } else {
            (&bob, format!("b{i}"))
        };
        ids.push(send(who, &room, &txn, &format!("msg {i}")).await);
    }
    assert_eq!(send(&alice, &room, "a0", "msg 0 again").await, ids[0]);

    // Bob pages backwards in pages of 4, then forwards from the start.
    let mut seen = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let path = match &from {
            Some(t) => format!("{V3}/rooms/{r}/messages?dir=b&limit=4&from={t}"),
            None => format!("{V3}/rooms/{r}/messages?dir=b&limit=4"),
        };
        let (status, resp) = bob.get(&path).await;
        assert_eq!(status, 200, "{resp}");
        seen.extend(bodies(&resp["chunk"]));
        match resp["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..10).rev().map(|i| format!("msg {i}")).collect();
    assert_eq!(seen, expected, "newest first, each message once");

    let (status, resp) = bob
        .get(&format!("{V3}/rooms/{r}/messages?dir=f&limit=100"))
        .await;
    assert_eq!(status, 200, "{resp}");
    let chunk = resp["chunk"].as_array().expect("chunk");
    assert_eq!(
        chunk[0]["type"], "m.room.create",
        "history starts at the create event"
    );
    let forward = bodies(&resp["chunk"]);
    assert_eq!(
        forward,
        (0..10).map(|i| format!("msg {i}")).collect::<Vec<_>>()
    );
    // Alice's own event carries her transaction ID, for her only.
    let (_, resp) = alice
        .get(&format!("{V3}/rooms/{r}/event/{}", enc(&ids[0])))
        .await;
    assert_eq!(resp["unsigned"]["transaction_id"], "a0", "{resp}");
    let (_, resp) = bob
        .get(&format!("{V3}/rooms/{r}/event/{}", enc(&ids[0])))
        .await;
    assert!(resp["unsigned"].get("transaction_id").is_none(), "{resp}");
    // A filter by sender.
    let filter = enc(&json!({"senders": [bob_id]}).to_string());
    let (_, resp) = bob
        .get(&format!(
            "{V3}/rooms/{r}/messages?dir=b&limit=100&filter={filter}"
        ))
        .await;
    assert_eq!(
        bodies(&resp["chunk"]),
        vec!["msg 9", "msg 7", "msg 5", "msg 3", "msg 1"]
    );

    // Context around msg 5.
    let (status, resp) = bob
        .get(&format!("{V3}/rooms/{r}/context/{}?limit=4", enc(&ids[5])))
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["event"]["content"]["body"], "msg 5");
    assert_eq!(bodies(&resp["events_before"]), vec!["msg 4", "msg 3"]);
    assert_eq!(bodies(&resp["events_after"]), vec!["msg 6", "msg 7"]);
    let (status, resp) = bob
        .get(&format!(
            "{V3}/rooms/{r}/messages?dir=f&limit=2&from={}",
            resp["end"].as_str().expect("end")
        ))
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(
        bodies(&resp["chunk"]),
        vec!["msg 8", "msg 9"],
        "context's end token continues"
    );

    // Alice redacts Bob's message: content gone, redacted_because present.
    let (status, resp) = alice
        .put(
            &format!("{V3}/rooms/{r}/redact/{}/red1", enc(&ids[1])),
            &json!({"reason": "spoilers"}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let redaction_id = resp["event_id"].as_str().expect("event_id").to_owned();
    let (status, resp) = bob
        .get(&format!("{V3}/rooms/{r}/event/{}", enc(&ids[1])))
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["content"], json!({}), "{resp}");
    assert_eq!(
        resp["unsigned"]["redacted_because"]["event_id"],
        redaction_id
    );
    assert_eq!(
        resp["unsigned"]["redacted_because"]["redacts"],
        ids[1].as_str()
    );
    // Bob may not redact Alice's message (redact level 50).
    assert_error(
        &bob.put(
            &format!("{V3}/rooms/{r}/redact/{}/red2", enc(&ids[0])),
            &json!({}),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );

    // State: read the name, set the topic, Bob may not rename.
    let (status, resp) = bob.get(&format!("{V3}/rooms/{r}/state/m.room.name")).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp, json!({"name": "Tea"}));
    let (status, first) = alice
        .put(
            &format!("{V3}/rooms/{r}/state/m.room.topic/"),
            &json!({"topic": "Oolong"}),
        )
        .await;
    assert_eq!(status, 200, "{first}");
    let (_, again) = alice
        .put(
            &format!("{V3}/rooms/{r}/state/m.room.topic"),
            &json!({"topic": "Oolong"}),
        )
        .await;
    assert_eq!(
        first["event_id"], again["event_id"],
        "identical state is not sent twice"
    );
    let (_, resp) = bob
        .get(&format!("{V3}/rooms/{r}/state/m.room.topic/"))
        .await;
    assert_eq!(resp["topic"], "Oolong");
    assert_error(
        &bob.put(
            &format!("{V3}/rooms/{r}/state/m.room.name"),
            &json!({"name": "Coffee"}),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    let (status, resp) = bob.get(&format!("{V3}/rooms/{r}/state")).await;
    assert_eq!(status, 200, "{resp}");
    let types: Vec<&str> = resp
        .as_array()
        .expect("state")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    for t in [
        "m.room.create",
        "m.room.power_levels",
        "m.room.join_rules",
        "m.room.name",
    ] {
        assert!(types.contains(&t), "{t} in {types:?}");
    }
    assert_error(
        &bob.get(&format!("{V3}/rooms/{r}/state/m.room.avatar"))
            .await,
        404,
        "M_NOT_FOUND",
    );

    // Kick, ban (rejoin refused), unban.
    let (status, resp) = alice
        .post(
            &format!("{V3}/rooms/{r}/kick"),
            &json!({"user_id": bob_id, "reason": "nap"}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    assert!(joined_rooms(&bob).await.is_empty());
    let (_, resp) = alice
        .get(&format!("{V3}/rooms/{r}/members?membership=leave"))
        .await;
    assert_eq!(resp["chunk"][0]["state_key"], bob_id.as_str(), "{resp}");
    assert_eq!(resp["chunk"][0]["content"]["reason"], "nap");
    let (status, resp) = alice
        .post(&format!("{V3}/rooms/{r}/ban"), &json!({"user_id": bob_id}))
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_error(
        &bob.post(&format!("{V3}/rooms/{r}/join"), &json!({})).await,
        403,
        "M_FORBIDDEN",
    );
    let (status, resp) = alice
        .post(
            &format!("{V3}/rooms/{r}/unban"),
            &json!({"user_id": bob_id}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let (_, resp) = alice
        .get(&format!("{V3}/rooms/{r}/members?not_membership=join"))
        .await;
    assert_eq!(resp["chunk"][0]["content"]["membership"], "leave", "{resp}");

    // Bob, gone, still reads the history up to his kick, not after it.
    send(&alice, &room, "after-kick", "secret").await;
    let (status, resp) = bob
        .get(&format!("{V3}/rooms/{r}/messages?dir=b&limit=100"))
        .await;
    assert_eq!(status, 200, "{resp}");
    let seen = bodies(&resp["chunk"]);
    assert!(
        seen.contains(&"msg 9".to_owned()) && !seen.contains(&"secret".to_owned()),
        "{seen:?}"
    );

    // Bob forgets the room: no more history.
    let (status, resp) = bob
        .post(&format!("{V3}/rooms/{r}/forget"), &json!({}))
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_error(
        &bob.get(&format!("{V3}/rooms/{r}/messages?dir=b")).await,
        403,
        "M_FORBIDDEN",
    );
    // Alice cannot forget a room she is in.
    assert_error(
        &alice
            .post(&format!("{V3}/rooms/{r}/forget"), &json!({}))
            .await,
        400,
        "M_UNKNOWN",
    );

    // Alice leaves; after a hard kill and restart everything is there.
    let (status, resp) = alice
        .post(&format!("{V3}/rooms/{r}/leave"), &json!({}))
        .await;
    assert_eq!(status, 200, "{resp}");
    assert!(joined_rooms(&alice).await.is_empty());
    server.kill();
    server.restart().await;
    let alice = server.client().with_token(&alice_token);
    let (status, resp) = alice
        .get(&format!("{V3}/rooms/{r}/messages?dir=b&limit=100"))
        .await;
    assert_eq!(status, 200, "{resp}");
    let seen = bodies(&resp["chunk"]);
    assert_eq!(seen.len(), 11, "{seen:?}");
    assert_eq!(seen[0], "secret");
    // She left an invite-only room: no way back in.
    assert_error(
        &alice
            .post(&format!("{V3}/rooms/{r}/join"), &json!({}))
            .await,
        403,
        "M_FORBIDDEN",
    );
    // New events continue the stream after the restart.
    let (status, resp) = alice.post(&format!("{V3}/createRoom"), &json!({})).await;
    assert_eq!(status, 200, "{resp}");
    let room2 = resp["room_id"].as_str().expect("room_id").to_owned();
    send(&alice, &room2, "post-restart", "back").await;
    let (_, resp) = alice
        .get(&format!(
            "{V3}/rooms/{}/messages?dir=b&limit=1",
            enc(&room2)
        ))
        .await;
    assert_eq!(bodies(&resp["chunk"]), vec!["back"]);
}

backend_tests!(chat_story);
