//! Alice syncs: an initial sync shows her room with its state, timeline
//! and summary; incremental syncs show only what is new; a limited
//! timeline's `prev_batch` pages back with `/messages`; a garbage token is
//! the spec's error; an old token still works after a restart.

use crate::common::{Backend, Client, TestServer, assert_error, create_room, create_user, enc};
use serde_json::{Value, json};

const V3: &str = "/_matrix/client/v3";

async fn sync(client: &Client, query: &str) -> Value {
    let (status, resp) = client.get(&format!("{V3}/sync?{query}")).await;
    assert_eq!(status, 200, "{resp}");
    assert!(resp["next_batch"].is_string(), "{resp}");
    resp
}

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

fn types(events: &Value) -> Vec<String> {
    events
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
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

fn filter_param(filter: &Value) -> String {
    format!("filter={}", enc(&filter.to_string()))
}

async fn initial_and_incremental(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let (_alice_id, alice_token) = create_user(&server, "alice").await;
    let (bob_id, _bob_token) = create_user(&server, "bob").await;
    let alice = server.client().with_token(&alice_token);

    let room = create_room(
        &alice,
        &json!({"preset": "private_chat", "name": "Tea", "invite": [bob_id]}),
    )
    .await;
    let first = send(&alice, &room, "t1", "one").await;
    send(&alice, &room, "t2", "two").await;
    let (status, resp) = alice
        .put(
            &format!("{V3}/user/{}/account_data/x.colour", enc(&_alice_id)),
            &json!({"colour": "green"}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");

    // Initial sync, default filter: everything fits in 10 events.
    let resp = sync(&alice, "").await;
    let joined = &resp["rooms"]["join"][&room];
    let timeline = &joined["timeline"];
    assert_eq!(bodies(&timeline["events"]), ["one", "two"], "{joined}");
    let all_types: Vec<String> = types(&joined["state"]["events"])
        .into_iter()
        .chain(types(&timeline["events"]))
        .collect();
    for t in [
        "m.room.create",
        "m.room.name",
        "m.room.power_levels",
        "m.room.member",
    ] {
        assert!(all_types.contains(&t.to_owned()), "{t} missing: {joined}");
    }
    assert_eq!(joined["summary"]["m.joined_member_count"], 1, "{joined}");
    assert_eq!(joined["summary"]["m.invited_member_count"], 1, "{joined}");
    assert_eq!(joined["summary"]["m.heroes"], json!([bob_id]), "{joined}");
    assert_eq!(joined["unread_notifications"]["notification_count"], 0);
    assert!(
        timeline["events"][0].get("room_id").is_none(),
        "sync events carry no room_id"
    );
    let own = timeline["events"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["event_id"] == first.as_str()))
        .expect("own event");
    assert_eq!(own["unsigned"]["transaction_id"], "t1", "{own}");
    let ad = &resp["account_data"]["events"];
    assert!(types(ad).contains(&"x.colour".to_owned()), "{ad}");
    assert!(types(ad).contains(&"m.push_rules".to_owned()), "{ad}");
    let token = resp["next_batch"].as_str().expect("next_batch").to_owned();

    // A limited timeline: state carries what came before it, prev_batch
    // pages back through /messages.
    let limited = sync(
        &alice,
        &filter_param(&json!({"room": {"timeline": {"limit": 2}}})),
    )
    .await;
    let joined = &limited["rooms"]["join"][&room];
    assert_eq!(bodies(&joined["timeline"]["events"]), ["one", "two"]);
    assert_eq!(joined["timeline"]["limited"], true);
    let state_types = types(&joined["state"]["events"]);
    for t in [
        "m.room.create",
        "m.room.name",
        "m.room.join_rules",
        "m.room.member",
    ] {
        assert!(state_types.contains(&t.to_owned()), "{t} missing: {joined}");
    }
    let prev = joined["timeline"]["prev_batch"]
        .as_str()
        .expect("prev_batch");
    let (status, page) = alice
        .get(&format!(
            "{V3}/rooms/{}/messages?dir=b&limit=3&from={}",
            enc(&room),
            enc(prev)
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    let older = types(&page["chunk"]);
    assert_eq!(older.len(), 3, "{page}");
    assert!(!older.contains(&"m.room.message".to_owned()), "{page}");
    // Newest first: Bob's invite, then the name (createRoom's order).
    assert_eq!(older[..2], ["m.room.member", "m.room.name"], "{page}");

    // Incremental: only what is new.
    send(&alice, &room, "t3", "three").await;
    let resp = sync(&alice, &format!("since={}", enc(&token))).await;
    let joined = &resp["rooms"]["join"][&room];
    assert_eq!(bodies(&joined["timeline"]["events"]), ["three"], "{resp}");
    assert_ne!(joined["timeline"]["limited"], true, "{joined}");
    assert!(types(&joined["state"]["events"]).is_empty(), "{joined}");
    assert!(
        resp["account_data"]["events"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{resp}"
    );
    let token = resp["next_batch"].as_str().expect("next_batch").to_owned();

    // A sync token works as a /messages token.
    let (status, page) = alice
        .get(&format!(
            "{V3}/rooms/{}/messages?dir=b&limit=1&from={}",
            enc(&room),
            enc(&token)
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(bodies(&page["chunk"]), ["three"]);

    // Nothing new: an empty response with an equal token.
    let resp = sync(&alice, &format!("since={}&timeout=0", enc(&token))).await;
    assert!(
        resp.get("rooms")
            .is_none_or(|r| r["join"].as_object().is_none_or(|j| j.is_empty())),
        "{resp}"
    );
    assert_eq!(resp["next_batch"], token.as_str());

    // Changed account data alone.
    alice
        .put(
            &format!("{V3}/user/{}/account_data/x.colour", enc(&_alice_id)),
            &json!({"colour": "blue"}),
        )
        .await;
    let resp = sync(&alice, &format!("since={}", enc(&token))).await;
    assert_eq!(
        resp["account_data"]["events"][0]["content"]["colour"], "blue",
        "{resp}"
    );
    assert_eq!(
        resp["account_data"]["events"].as_array().map(Vec::len),
        Some(1)
    );

    // Garbage tokens are the spec's error, never a 500.
    for bad in ["garbage", "s1_x", "s-4", ""] {
        assert_error(
            &alice.get(&format!("{V3}/sync?since={}", enc(bad))).await,
            400,
            "M_INVALID_PARAM",
        );
    }

    // After a restart an old token still works and sees new events.
    server.restart().await;
    let alice = server.client().with_token(&alice_token);
    send(&alice, &room, "t4", "four").await;
    let resp = sync(&alice, &format!("since={}", enc(&token))).await;
    assert_eq!(
        bodies(&resp["rooms"]["join"][&room]["timeline"]["events"]),
        ["four"],
        "{resp}"
    );
}

/// Many rooms in one sync: every room with its own newest events, and an
/// incremental sync naming exactly the rooms that changed; `full_state`
/// sends a room whole again.
async fn many_rooms(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_alice_id, alice_token) = create_user(&server, "alice").await;
    let alice = server.client().with_token(&alice_token);
    let mut rooms = Vec::new();
    for i in 0..12 {
        let room = create_room(&alice, &json!({"name": format!("room {i}")})).await;
        send(&alice, &room, &format!("m{i}"), &format!("hello {i}")).await;
        rooms.push(room);
    }
    let resp = sync(
        &alice,
        &filter_param(&json!({"room": {"timeline": {"limit": 1}}})),
    )
    .await;
    let join = resp["rooms"]["join"].as_object().expect("join");
    assert_eq!(join.len(), rooms.len());
    for (i, room) in rooms.iter().enumerate() {
        let timeline = &join[room]["timeline"];
        assert_eq!(
            bodies(&timeline["events"]),
            [format!("hello {i}")],
            "{room}"
        );
        assert_eq!(timeline["limited"], true);
        assert!(types(&join[room]["state"]["events"]).contains(&"m.room.name".to_owned()));
    }
    let token = resp["next_batch"].as_str().expect("next_batch").to_owned();
    for i in [2, 7, 11] {
        send(
            &alice,
            &rooms[i],
            &format!("again{i}"),
            &format!("again {i}"),
        )
        .await;
    }
    let resp = sync(&alice, &format!("since={}", enc(&token))).await;
    let join = resp["rooms"]["join"].as_object().expect("join");
    let mut changed: Vec<&String> = join.keys().collect();
    changed.sort();
    let mut expected = vec![&rooms[2], &rooms[7], &rooms[11]];
    expected.sort();
    assert_eq!(changed, expected, "{resp}");
    assert_eq!(bodies(&join[&rooms[7]]["timeline"]["events"]), ["again 7"]);

    // full_state: every room, whole, even with nothing new.
    let next = resp["next_batch"].as_str().expect("next_batch").to_owned();
    let resp = sync(&alice, &format!("since={}&full_state=true", enc(&next))).await;
    let join = resp["rooms"]["join"].as_object().expect("join");
    assert_eq!(join.len(), rooms.len(), "{resp}");
    let state = types(&join[&rooms[0]]["state"]["events"]);
    let timeline = types(&join[&rooms[0]]["timeline"]["events"]);
    assert!(
        state.iter().chain(&timeline).any(|t| t == "m.room.create"),
        "{resp}"
    );
}

backend_tests!(initial_and_incremental, many_rooms);
