//! Lazy-loaded members are sent to a sync loop once: Bob's incremental
//! syncs carry a sender's member event until a response carrying it is
//! acknowledged (by syncing from its token), then no more. A member change
//! Bob's response left out (in the timeline, or in a gap, for a member
//! who did not speak) makes the member's next message carry it again.
//! Going back to an older token, or asking for redundant members, sends
//! them every time.

use crate::common::{Backend, Client, TestServer, enc, joined_room, users};
use serde_json::{Value, json};

const V3: &str = "/_matrix/client/v3";

/// Bob's filter: lazy-loading, three events per timeline.
fn lazy(redundant: bool) -> String {
    let filter = json!({"room": {
        "timeline": {"limit": 3},
        "state": {"lazy_load_members": true, "include_redundant_members": redundant},
    }});
    format!("filter={}", enc(&filter.to_string()))
}

/// One sync of Bob's loop: the room's state members (sorted, with their
/// display names), and the next token.
async fn sync(
    bob: &Client,
    filter: &str,
    since: Option<&str>,
    room: &str,
) -> (Vec<(String, Value)>, String) {
    let since = since.map_or(String::new(), |s| format!("&since={}", enc(s)));
    let (status, resp) = bob.get(&format!("{V3}/sync?{filter}{since}")).await;
    assert_eq!(status, 200, "{resp}");
    let state = &resp["rooms"]["join"][room]["state"]["events"];
    let mut members: Vec<(String, Value)> = state
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"] == "m.room.member")
        .map(|e| {
            let user = e["state_key"].as_str().unwrap_or_default().to_owned();
            (user, e["content"]["displayname"].clone())
        })
        .collect();
    members.sort_by(|a, b| a.0.cmp(&b.0));
    let next = resp["next_batch"].as_str().expect("next_batch").to_owned();
    (members, next)
}

fn user_ids(members: &[(String, Value)]) -> Vec<&str> {
    members.iter().map(|(u, _)| u.as_str()).collect()
}

async fn say(client: &Client, room: &str, txn: &str) {
    let (status, resp) = client
        .put(
            &format!("{V3}/rooms/{}/send/m.room.message/{txn}", enc(room)),
            &json!({"msgtype": "m.text", "body": txn}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
}

async fn rename(client: &Client, user: &str, name: &str) {
    let (status, resp) = client
        .put(
            &format!("{V3}/profile/{}/displayname", enc(user)),
            &json!({"displayname": name}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
}

async fn lazy_members(backend: Backend) {
    let server = TestServer::start_with(backend, &[("MYELIN__PRESENCE__ENABLED", "false")]).await;
    let [(alice_id, alice), (_, bob), (carol_id, carol)] =
        users(&server, ["alice", "bob", "carol"]).await;
    let body = json!({"preset": "public_chat", "name": "lazy"});
    let room = joined_room(&alice, &body, &[&bob, &carol]).await;
    let filter = lazy(false);
    let (_, t0) = sync(&bob, &filter, None, &room).await;

    // Carol speaks: her member comes along, once.
    say(&carol, &room, "c1").await;
    let (members, t1) = sync(&bob, &filter, Some(&t0), &room).await;
    assert_eq!(user_ids(&members), [carol_id.as_str()]);
    say(&carol, &room, "c2").await;
    let (members, _) = sync(&bob, &filter, Some(&t1), &room).await;
    assert!(members.is_empty(), "{members:?}");
    // Bob goes back to an older token: the loop starts over.
    say(&carol, &room, "c3").await;
    let (members, t3) = sync(&bob, &filter, Some(&t0), &room).await;
    assert_eq!(user_ids(&members), [carol_id.as_str()]);
    // From there on, held again.
    say(&carol, &room, "c4").await;
    let (members, t4) = sync(&bob, &filter, Some(&t3), &room).await;
    assert!(members.is_empty(), "{members:?}");

    // Carol's rename reaches Bob in the timeline, not in the state; her
    // next message carries her (new) member event again.
    rename(&carol, &carol_id, "Caroline").await;
    let (members, t5) = sync(&bob, &filter, Some(&t4), &room).await;
    assert!(members.is_empty(), "{members:?}");
    say(&carol, &room, "c5").await;
    let (members, t6) = sync(&bob, &filter, Some(&t5), &room).await;
    assert_eq!(members, [(carol_id.clone(), json!("Caroline"))]);

    // Alice speaks (her member is held), then renames herself in a gap:
    // four messages of Carol push the rename out of Bob's timeline, and
    // Alice, not speaking, is not in the response's state. When she
    // speaks again her new name comes along.
    say(&alice, &room, "a1").await;
    let (members, t7) = sync(&bob, &filter, Some(&t6), &room).await;
    assert_eq!(user_ids(&members), [alice_id.as_str()]);
    say(&carol, &room, "c6").await;
    let (_, t8) = sync(&bob, &filter, Some(&t7), &room).await;
    rename(&alice, &alice_id, "Alicia").await;
    for txn in ["c7", "c8", "c9", "c10"] {
        say(&carol, &room, txn).await;
    }
    let (members, t9) = sync(&bob, &filter, Some(&t8), &room).await;
    assert!(members.is_empty(), "{members:?}");
    say(&alice, &room, "a2").await;
    let (members, _) = sync(&bob, &filter, Some(&t9), &room).await;
    assert_eq!(members, [(alice_id.clone(), json!("Alicia"))]);

    // Asking for redundant members: Carol's member every time.
    let redundant = lazy(true);
    let (_, r0) = sync(&bob, &redundant, None, &room).await;
    say(&carol, &room, "c11").await;
    let (members, r1) = sync(&bob, &redundant, Some(&r0), &room).await;
    assert_eq!(user_ids(&members), [carol_id.as_str()]);
    say(&carol, &room, "c12").await;
    let (members, _) = sync(&bob, &redundant, Some(&r1), &room).await;
    assert_eq!(user_ids(&members), [carol_id.as_str()]);
}

backend_tests!(lazy_members);
