//! Bob on beta joins a room Alice on alpha has been talking in. Beta starts the room with
//! Bob's join only; when Bob pages `/messages` backwards past it, beta backfills the history
//! from alpha and Bob reads every earlier message, in order, page by page through the `end`
//! tokens, while his `/sync` never reports the old messages as new. With `joined` history
//! visibility the same paging shows him none of them.

use crate::common::federation::Federation;
use crate::common::{Backend, Client, create_room, create_user, enc};
use serde_json::{Value, json};

const V3: &str = "/_matrix/client/v3";

/// Alice creates a room with `history` visibility and sends `count` messages; Bob joins.
async fn room_with_history(alice: &Client, bob: &Client, history: &str, count: usize) -> String {
    let room = create_room(
        alice,
        &json!({
            "preset": "public_chat",
            "initial_state": [{
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": { "history_visibility": history },
            }],
        }),
    )
    .await;
    for i in 0..count {
        let (status, resp) = alice
            .put(
                &format!("{V3}/rooms/{}/send/m.room.message/t{i}", enc(&room)),
                &json!({ "msgtype": "m.text", "body": format!("m{i}") }),
            )
            .await;
        assert_eq!(status, 200, "{resp}");
    }
    let (status, resp) = bob
        .post(
            &format!("{V3}/join/{}?server_name=alpha.test", enc(&room)),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    room
}

/// Pages `/messages` backwards from the newest event with `limit` per page, following `end`
/// until there is none; returns every event read, newest first, and the number of pages.
async fn page_back(client: &Client, room: &str, limit: u32) -> (Vec<Value>, usize) {
    let mut from: Option<String> = None;
    let mut out = Vec::new();
    for pages in 1..=20 {
        let mut path = format!("{V3}/rooms/{}/messages?dir=b&limit={limit}", enc(room));
        if let Some(from) = &from {
            path.push_str(&format!("&from={}", enc(from)));
        }
        let (status, resp) = client.get(&path).await;
        assert_eq!(status, 200, "{resp}");
        let chunk = resp["chunk"].as_array().expect("chunk");
        assert!(chunk.len() <= limit as usize, "{resp}");
        out.extend(chunk.iter().cloned());
        match resp["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => return (out, pages),
        }
    }
    panic!("pagination did not end: {} events", out.len());
}

fn message_bodies(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

async fn shared_history_is_backfilled_in_order(backend: Backend) {
    let fed = Federation::start(backend, &["alpha.test", "beta.test"]).await;
    let (_, alice_token) = create_user(&fed["alpha.test"], "alice").await;
    let (bob_id, bob_token) = create_user(&fed["beta.test"], "bob").await;
    let alice = fed["alpha.test"].client().with_token(&alice_token);
    let bob = fed["beta.test"].client().with_token(&bob_token);
    let room = room_with_history(&alice, &bob, "shared", 30).await;

    let (status, sync) = bob.get(&format!("{V3}/sync?timeout=0")).await;
    assert_eq!(status, 200, "{sync}");
    let since = sync["next_batch"].as_str().expect("next_batch").to_owned();
    let timeline = &sync["rooms"]["join"][room.as_str()]["timeline"];
    assert!(
        message_bodies(timeline["events"].as_array().expect("events")).is_empty(),
        "before backfill beta has none of the history: {timeline}"
    );

    // From sync's prev_batch, as a client does; pages of 7.
    let prev_batch = timeline["prev_batch"].as_str().expect("prev_batch");
    let (status, first) = bob
        .get(&format!(
            "{V3}/rooms/{}/messages?dir=b&limit=7&from={}",
            enc(&room),
            enc(prev_batch)
        ))
        .await;
    assert_eq!(status, 200, "{first}");
    let got = message_bodies(first["chunk"].as_array().expect("chunk"));
    assert_eq!(got, ["m29", "m28", "m27", "m26", "m25", "m24", "m23"]);
    assert!(first["end"].is_string(), "{first}");

    let (events, pages) = page_back(&bob, &room, 7).await;
    let mut bodies = message_bodies(&events);
    bodies.reverse();
    let want: Vec<String> = (0..30).map(|i| format!("m{i}")).collect();
    assert_eq!(bodies, want);
    assert!(
        pages >= 5,
        "30 messages take at least 5 pages of 7: {pages}"
    );
    let joins: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "m.room.member" && e["state_key"] == bob_id.as_str())
        .collect();
    assert_eq!(joins.len(), 1, "bob's join once, newest: {events:?}");
    assert_eq!(events[0]["state_key"], bob_id.as_str());

    // Forwards from the start reads the same history in order.
    let (status, resp) = bob
        .get(&format!(
            "{V3}/rooms/{}/messages?dir=f&limit=100",
            enc(&room)
        ))
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(
        message_bodies(resp["chunk"].as_array().expect("chunk")),
        want
    );

    // The backfilled history is not news to Bob's sync.
    let (status, sync) = bob
        .get(&format!("{V3}/sync?timeout=0&since={}", enc(&since)))
        .await;
    assert_eq!(status, 200, "{sync}");
    let events = sync["rooms"]["join"][room.as_str()]["timeline"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(message_bodies(&events).is_empty(), "{sync}");
    let (status, sync) = bob.get(&format!("{V3}/sync?timeout=0")).await;
    assert_eq!(status, 200, "{sync}");
    let events = sync["rooms"]["join"][room.as_str()]["timeline"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(message_bodies(&events).is_empty(), "{sync}");

    // Alice keeps talking: the new message comes live, after the history.
    let (status, resp) = alice
        .put(
            &format!("{V3}/rooms/{}/send/m.room.message/late", enc(&room)),
            &json!({ "msgtype": "m.text", "body": "late" }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (events, _) = page_back(&bob, &room, 50).await;
        let bodies = message_bodies(&events);
        if bodies.first().map(String::as_str) == Some("late") {
            assert_eq!(bodies.len(), 31, "{bodies:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{bodies:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

backend_tests!(shared_history_is_backfilled_in_order);

async fn joined_history_stays_hidden(backend: Backend) {
    let fed = Federation::start(backend, &["alpha.test", "beta.test"]).await;
    let (_, alice_token) = create_user(&fed["alpha.test"], "alice").await;
    let (bob_id, bob_token) = create_user(&fed["beta.test"], "bob").await;
    let alice = fed["alpha.test"].client().with_token(&alice_token);
    let bob = fed["beta.test"].client().with_token(&bob_token);
    let room = room_with_history(&alice, &bob, "joined", 12).await;

    let (events, _) = page_back(&bob, &room, 5).await;
    assert!(message_bodies(&events).is_empty(), "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "m.room.member" && e["state_key"] == bob_id.as_str()),
        "bob still reads his own join: {events:?}"
    );
    // A message sent after the join is visible.
    let (status, resp) = alice
        .put(
            &format!("{V3}/rooms/{}/send/m.room.message/after", enc(&room)),
            &json!({ "msgtype": "m.text", "body": "after" }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (events, _) = page_back(&bob, &room, 5).await;
        let bodies = message_bodies(&events);
        if !bodies.is_empty() {
            assert_eq!(bodies, ["after"]);
            break;
        }
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

backend_tests!(joined_history_stays_hidden);
