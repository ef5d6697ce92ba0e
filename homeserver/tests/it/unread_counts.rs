//! Alice writes to Bob; Bob's unread counts follow: every message counts,
//! the ones that mention him in `m.mentions` highlight (a display name in
//! the body no longer does: the spec's default rules dropped legacy
//! mentions in v1.17, MSC4210),
//! notices and membership changes do not count, his read receipts clear
//! what they cover, his own messages never count, and changing his push
//! rules changes what counts from the next message on. Counts are read
//! through `storage::push_actions::unread_counts` on the server's own
//! database, as sync does.

use crate::common::{Backend, Client, TestServer, enc, joined_room, users};
use myelin_homeserver::storage::push_actions::{UnreadCounts, unread_counts};
use myelin_homeserver::storage::{Db, Sql as _};
use serde_json::{Value, json};

const V3: &str = "/_matrix/client/v3";

async fn send(client: &Client, room: &str, txn: &str, content: Value) -> String {
    let (status, resp) = client
        .put(
            &format!("{V3}/rooms/{}/send/m.room.message/{txn}", enc(room)),
            &content,
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    resp["event_id"].as_str().expect("event_id").to_owned()
}

fn text(body: &str) -> Value {
    json!({"msgtype": "m.text", "body": body})
}

async fn counts(db: &Db, user: &str, room: &str) -> (u64, u64) {
    let c = unread_counts(db, user, &[room])
        .await
        .expect("counts")
        .get(room)
        .copied()
        .unwrap_or_default();
    (c.notification_count, c.highlight_count)
}

async fn read(client: &Client, room: &str, receipt_type: &str, event: &str) {
    let (status, resp) = client
        .post(
            &format!(
                "{V3}/rooms/{}/receipt/{receipt_type}/{}",
                enc(room),
                enc(event)
            ),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
}

async fn unread_story(backend: Backend) {
    let server = TestServer::start(backend).await;
    // Three members, so the one-to-one rules do not apply.
    let [(alice_id, alice), (bob_id, bob), (carol_id, carol)] =
        users(&server, ["alice", "bob", "carol"]).await;
    let db = Db::connect(&server.db_url, 2).await.expect("database");

    let (status, _) = bob
        .put(
            &format!("{V3}/profile/{}/displayname", enc(&bob_id)),
            &json!({"displayname": "Bobby Tables"}),
        )
        .await;
    assert_eq!(status, 200);
    let room = joined_room(&alice, &json!({"preset": "public_chat"}), &[&bob, &carol]).await;
    let r = enc(&room);
    assert_eq!(
        counts(&db, &bob_id, &room).await,
        (0, 0),
        "joins do not count"
    );

    let _m1 = send(&alice, &room, "t1", text("hello")).await;
    let m2 = send(
        &alice,
        &room,
        "t2",
        json!({
            "msgtype": "m.text", "body": "how are you, Bobby Tables?",
            "m.mentions": {"user_ids": [bob_id]},
        }),
    )
    .await;
    let m3 = send(&alice, &room, "t3", text("anyone?")).await;
    assert_eq!(counts(&db, &bob_id, &room).await, (3, 1));
    assert_eq!(counts(&db, &carol_id, &room).await, (3, 0));
    assert_eq!(counts(&db, &alice_id, &room).await, (0, 0), "own messages");

    // Bob reads up to the second: one left, and the highlight was read.
    read(&bob, &room, "m.read", &m2).await;
    assert_eq!(counts(&db, &bob_id, &room).await, (1, 0));
    // A receipt going backwards changes nothing.
    read(&bob, &room, "m.read", &_m1).await;
    assert_eq!(counts(&db, &bob_id, &room).await, (1, 0));

    // A display name alone does not highlight; a notice does not count.
    send(&alice, &room, "t4", text("ping Bobby Tables")).await;
    send(
        &alice,
        &room,
        "t5",
        json!({"msgtype": "m.notice", "body": "bot"}),
    )
    .await;
    assert_eq!(counts(&db, &bob_id, &room).await, (2, 0));

    // Bob's own message does not count for him, nor clear his counts (as
    // in Synapse: clients send a receipt); it counts for Alice.
    let b1 = send(&bob, &room, "b1", text("here")).await;
    assert_eq!(counts(&db, &bob_id, &room).await, (2, 0));
    assert_eq!(counts(&db, &alice_id, &room).await, (1, 0));

    // A private receipt clears as well as a public one.
    read(&bob, &room, "m.read.private", &b1).await;
    assert_eq!(counts(&db, &bob_id, &room).await, (0, 0));
    read(&alice, &room, "m.read", &b1).await;
    assert_eq!(counts(&db, &alice_id, &room).await, (0, 0));
    let _ = m3;

    // Bob turns plain messages off; mentions still highlight.
    let (status, _) = bob
        .put(
            &format!("{V3}/pushrules/global/underride/.m.rule.message/enabled"),
            &json!({"enabled": false}),
        )
        .await;
    assert_eq!(status, 200);
    send(&alice, &room, "t6", text("quiet")).await;
    assert_eq!(counts(&db, &bob_id, &room).await, (0, 0));
    send(
        &alice,
        &room,
        "t7",
        json!({
            "msgtype": "m.text", "body": "Bobby Tables!",
            "m.mentions": {"user_ids": [bob_id]},
        }),
    )
    .await;
    assert_eq!(counts(&db, &bob_id, &room).await, (1, 1));
    // Carol's rules are her own.
    assert_eq!(counts(&db, &carol_id, &room).await.0, 7);

    // Leaving forgets Carol's unread events; rejoining counts from the join.
    let (status, _) = carol
        .post(&format!("{V3}/rooms/{r}/leave"), &json!({}))
        .await;
    assert_eq!(status, 200);
    let rows = db
        .query_one(
            "SELECT COUNT(*) AS n FROM event_push_actions WHERE user_id = $1",
            [carol_id.as_str().into()],
        )
        .await
        .expect("count")
        .map(|row| row.try_get::<i64>("", "n").expect("n"));
    assert_eq!(rows, Some(0));
    let (status, _) = carol
        .post(&format!("{V3}/rooms/{r}/join"), &json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(counts(&db, &carol_id, &room).await, (0, 0));
    send(&alice, &room, "t8", text("welcome back")).await;
    assert_eq!(counts(&db, &carol_id, &room).await, (1, 0));

    // Rooms with nothing unread are absent from the answer.
    let all = unread_counts(&db, &bob_id, &[room.as_str(), "!other:test.localhost"])
        .await
        .expect("counts");
    assert_eq!(all.len(), 1);
    assert_eq!(
        all.get(&room).copied(),
        Some(UnreadCounts {
            notification_count: 1,
            highlight_count: 1
        })
    );
}

backend_tests!(unread_story);
