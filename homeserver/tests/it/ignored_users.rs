//! Alice ignores Bob (`m.ignored_user_list`): from her next sync on she gets none of his
//! messages, in `/sync`, `/messages` or `/context`, but still his state events (the room
//! looks the same to everyone), and not his invites. Carol's messages are unaffected. When
//! she stops ignoring him, his new messages come through again.

use crate::common::{Backend, Client, TestServer, create_room, enc, joined_room, users};
use serde_json::{Value, json};

const V3: &str = "/_matrix/client/v3";

async fn send(client: &Client, room: &str, txn: &str, body: &str) -> String {
    let (status, resp) = client
        .put(
            &format!("{V3}/rooms/{}/send/m.room.message/{txn}", enc(room)),
            &json!({ "msgtype": "m.text", "body": body }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    resp["event_id"].as_str().expect("event_id").to_owned()
}

async fn sync(client: &Client, since: Option<&str>) -> Value {
    let path = match since {
        Some(s) => format!("{V3}/sync?timeout=0&since={s}"),
        None => format!("{V3}/sync?timeout=0"),
    };
    let (status, resp) = client.get(&path).await;
    assert_eq!(status, 200, "{resp}");
    resp
}

/// `(sender, type)` of the room's timeline events in a sync response.
fn timeline(sync: &Value, room: &str) -> Vec<(String, String)> {
    sync["rooms"]["join"][room]["timeline"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["sender"].as_str().unwrap_or_default().to_owned(),
                e["type"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn ignore(client: &Client, user_id: &str, ignored: &[&str]) {
    let list: serde_json::Map<String, Value> = ignored
        .iter()
        .map(|u| ((*u).to_owned(), json!({})))
        .collect();
    let (status, resp) = client
        .put(
            &format!(
                "{V3}/user/{}/account_data/m.ignored_user_list",
                enc(user_id)
            ),
            &json!({ "ignored_users": list }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
}

async fn ignoring_a_user(backend: Backend) {
    let server = TestServer::start(backend).await;
    let [(alice_id, alice), (bob_id, bob), (carol_id, carol)] =
        users(&server, ["alice", "bob", "carol"]).await;
    let body =
        json!({ "preset": "public_chat", "power_level_content_override": { "state_default": 0 } });
    let room = joined_room(&alice, &body, &[&bob, &carol]).await;
    send(&bob, &room, "b0", "before").await;

    let since = sync(&alice, None).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    ignore(&alice, &alice_id, &[bob_id.as_str()]).await;
    let hidden = send(&bob, &room, "b1", "you can't see me").await;
    let (status, resp) = bob
        .put(
            &format!("{V3}/rooms/{}/state/m.room.topic/", enc(&room)),
            &json!({ "topic": "bob's topic" }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let carols = send(&carol, &room, "c1", "hello").await;

    // Sync: Bob's topic and Carol's message, not Bob's message.
    let incremental = sync(&alice, Some(&since)).await;
    assert_eq!(
        timeline(&incremental, &room),
        [
            (bob_id.clone(), "m.room.topic".to_owned()),
            (carol_id.clone(), "m.room.message".to_owned())
        ],
        "{incremental}"
    );
    // His message does not count as unread for her (his earlier one and
    // Carol's do; the topic notifies no one).
    assert_eq!(
        incremental["rooms"]["join"][&room]["unread_notifications"]["notification_count"], 2,
        "{incremental}"
    );
    // The ignore list itself reached her account data.
    assert!(
        incremental["account_data"]["events"]
            .as_array()
            .expect("account_data")
            .iter()
            .any(|e| e["type"] == "m.ignored_user_list"),
        "{incremental}"
    );
    // An initial sync withholds his old message too.
    let initial = sync(&alice, None).await;
    let tl = timeline(&initial, &room);
    assert!(
        !tl.contains(&(bob_id.clone(), "m.room.message".to_owned())),
        "{tl:?}"
    );
    assert!(
        tl.contains(&(bob_id.clone(), "m.room.topic".to_owned())),
        "{tl:?}"
    );
    // Bob and Carol still see everything.
    let carol_tl = timeline(&sync(&carol, None).await, &room);
    assert!(
        carol_tl.contains(&(bob_id.clone(), "m.room.message".to_owned())),
        "{carol_tl:?}"
    );

    // /messages and /context.
    let (status, messages) = alice
        .get(&format!(
            "{V3}/rooms/{}/messages?dir=b&limit=50",
            enc(&room)
        ))
        .await;
    assert_eq!(status, 200, "{messages}");
    let chunk = messages["chunk"].as_array().expect("chunk");
    assert!(
        !chunk
            .iter()
            .any(|e| e["sender"] == bob_id.as_str() && e["type"] == "m.room.message"),
        "{messages}"
    );
    assert!(
        chunk.iter().any(|e| e["type"] == "m.room.topic"),
        "{messages}"
    );
    assert!(
        chunk.iter().any(|e| e["event_id"] == carols.as_str()),
        "{messages}"
    );
    let (status, context) = alice
        .get(&format!(
            "{V3}/rooms/{}/context/{}?limit=10",
            enc(&room),
            enc(&carols)
        ))
        .await;
    assert_eq!(status, 200, "{context}");
    assert!(
        !context["events_before"]
            .as_array()
            .expect("events_before")
            .iter()
            .any(|e| e["event_id"] == hidden.as_str()),
        "{context}"
    );

    // His invites do not reach her.
    let since = incremental["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    let invited_room = create_room(&bob, &json!({ "invite": [alice_id] })).await;
    let after_invite = sync(&alice, Some(&since)).await;
    assert!(
        after_invite["rooms"]["invite"].get(&invited_room).is_none(),
        "{after_invite}"
    );
    assert!(
        sync(&alice, None).await["rooms"]["invite"]
            .get(&invited_room)
            .is_none()
    );

    // No longer ignored: his new messages come through.
    let since = after_invite["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    ignore(&alice, &alice_id, &[]).await;
    send(&bob, &room, "b2", "back").await;
    let again = sync(&alice, Some(&since)).await;
    assert_eq!(
        timeline(&again, &room),
        [(bob_id.clone(), "m.room.message".to_owned())],
        "{again}"
    );
    assert_eq!(
        again["rooms"]["join"][&room]["unread_notifications"]["notification_count"], 3,
        "{again}"
    );
    // Missed events are not sent late; a fresh sync has his invite again.
    assert!(
        again["rooms"]["invite"].get(&invited_room).is_none(),
        "{again}"
    );
    let fresh = sync(&alice, None).await;
    assert!(
        fresh["rooms"]["invite"].get(&invited_room).is_some(),
        "{fresh}"
    );
}

backend_tests!(ignoring_a_user);
