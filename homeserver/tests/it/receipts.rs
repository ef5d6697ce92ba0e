//! Bob reads Alice's messages: his read receipts are stored and only move
//! forward, his private receipts are hidden from Alice, threaded receipts
//! keep their thread, his fully read marker lands in his room account
//! data; bad receipts get the spec's errors. What sync will show is read
//! through `storage::receipts::for_sync` on the server's own database.

use crate::common::{Backend, Client, TestServer, assert_error, enc, joined_room, users};
use myelin_homeserver::storage::streams::{self, Stream};
use myelin_homeserver::storage::{Db, receipts};
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

/// The `m.receipt` content sync would give `viewer` after `since`.
async fn seen_by(db: &Db, viewer: &str, room: &str, since: i64) -> Value {
    let until = streams::current_position(db, Stream::Receipts)
        .await
        .expect("position");
    receipts::for_sync(db, viewer, &[room], since, until)
        .await
        .expect("for_sync")
        .into_iter()
        .find(|(r, _)| r == room)
        .map(|(_, content)| content)
        .unwrap_or(Value::Null)
}

/// The receipts of one user in a content object: `(event, type, thread)`.
fn receipts_of(content: &Value, user: &str) -> Vec<(String, String, Option<String>)> {
    let mut out = Vec::new();
    if let Some(events) = content.as_object() {
        for (event, types) in events {
            for (receipt_type, users) in types.as_object().into_iter().flatten() {
                if let Some(r) = users.get(user) {
                    assert!(r["ts"].is_u64(), "{r}");
                    out.push((
                        event.clone(),
                        receipt_type.clone(),
                        r["thread_id"].as_str().map(str::to_owned),
                    ));
                }
            }
        }
    }
    out.sort();
    out
}

async fn receipt(
    client: &Client,
    room: &str,
    receipt_type: &str,
    event: &str,
    body: Value,
) -> (reqwest::StatusCode, Value) {
    client
        .post(
            &format!(
                "{V3}/rooms/{}/receipt/{receipt_type}/{}",
                enc(room),
                enc(event)
            ),
            &body,
        )
        .await
}

async fn receipts_story(backend: Backend) {
    let server = TestServer::start(backend).await;
    let [(alice_id, alice), (bob_id, bob), (_, carol)] =
        users(&server, ["alice", "bob", "carol"]).await;
    let db = Db::connect(&server.db_url, 2).await.expect("database");

    let room = joined_room(&alice, &json!({"preset": "public_chat"}), &[&bob]).await;
    let r = enc(&room);
    let e1 = send(&alice, &room, "t1", "one").await;
    let e2 = send(&alice, &room, "t2", "two").await;
    let e3 = send(&alice, &room, "t3", "three").await;

    // A public receipt: everyone sees it.
    let (status, resp) = receipt(&bob, &room, "m.read", &e2, json!({})).await;
    assert_eq!((status.as_u16(), resp), (200, json!({})));
    let m_read = |e: &str| (e.to_owned(), "m.read".to_owned(), None);
    assert_eq!(
        receipts_of(&seen_by(&db, &alice_id, &room, 0).await, &bob_id),
        vec![m_read(&e2)]
    );
    let after_e2 = streams::current_position(&db, Stream::Receipts)
        .await
        .expect("position");

    // Backwards, or the same event again: accepted, nothing changes.
    let (status, _) = receipt(&bob, &room, "m.read", &e1, json!({})).await;
    assert_eq!(status, 200);
    let (status, _) = receipt(&bob, &room, "m.read", &e2, json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(seen_by(&db, &alice_id, &room, after_e2).await, Value::Null);
    assert_eq!(
        receipts_of(&seen_by(&db, &alice_id, &room, 0).await, &bob_id),
        vec![m_read(&e2)]
    );

    // A private receipt: only Bob sees it, and only Bob's syncs are woken.
    let (status, _) = receipt(&bob, &room, "m.read.private", &e3, json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(seen_by(&db, &alice_id, &room, after_e2).await, Value::Null);
    assert_eq!(
        receipts_of(&seen_by(&db, &bob_id, &room, after_e2).await, &bob_id),
        vec![(e3.clone(), "m.read.private".to_owned(), None)]
    );

    // A threaded receipt is its own row and keeps its thread.
    let (status, _) = receipt(&bob, &room, "m.read", &e1, json!({"thread_id": "main"})).await;
    assert_eq!(status, 200);
    let mut expected = vec![
        (e1.clone(), "m.read".to_owned(), Some("main".to_owned())),
        m_read(&e2),
    ];
    expected.sort();
    assert_eq!(
        receipts_of(&seen_by(&db, &alice_id, &room, 0).await, &bob_id),
        expected
    );
    let (status, _) = receipt(&bob, &room, "m.read", &e3, json!({"thread_id": e1})).await;
    assert_eq!(status, 200);
    assert!(
        receipts_of(&seen_by(&db, &alice_id, &room, 0).await, &bob_id).contains(&(
            e3.clone(),
            "m.read".to_owned(),
            Some(e1.clone())
        ))
    );

    // The fully read marker goes to room account data, forward only.
    let fully_read_path = format!(
        "{V3}/user/{}/rooms/{r}/account_data/m.fully_read",
        enc(&bob_id)
    );
    let (status, _) = receipt(&bob, &room, "m.fully_read", &e2, json!({})).await;
    assert_eq!(status, 200);
    let (status, resp) = bob.get(&fully_read_path).await;
    assert_eq!((status.as_u16(), resp), (200, json!({"event_id": e2})));
    let (status, _) = bob
        .post(
            &format!("{V3}/rooms/{r}/read_markers"),
            &json!({"m.fully_read": e1}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(bob.get(&fully_read_path).await.1, json!({"event_id": e2}));
    // Clients cannot set it directly.
    let (status, _) = bob.put(&fully_read_path, &json!({"event_id": e1})).await;
    assert_eq!(status, 405);

    // `/read_markers` moves all three at once.
    let e4 = send(&alice, &room, "t4", "four").await;
    let (status, resp) = bob
        .post(
            &format!("{V3}/rooms/{r}/read_markers"),
            &json!({"m.fully_read": e4, "m.read": e4, "m.read.private": e4}),
        )
        .await;
    assert_eq!((status.as_u16(), resp), (200, json!({})));
    assert_eq!(bob.get(&fully_read_path).await.1, json!({"event_id": e4}));
    let bobs = receipts_of(&seen_by(&db, &bob_id, &room, 0).await, &bob_id);
    assert!(bobs.contains(&m_read(&e4)), "{bobs:?}");
    assert!(
        bobs.contains(&(e4.clone(), "m.read.private".to_owned(), None)),
        "{bobs:?}"
    );
    let alices_view = receipts_of(&seen_by(&db, &alice_id, &room, 0).await, &bob_id);
    assert!(
        alices_view.iter().all(|(_, t, _)| t != "m.read.private"),
        "{alices_view:?}"
    );

    // Errors.
    assert_error(
        &receipt(&bob, &room, "m.unknown", &e4, json!({})).await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &receipt(&bob, &room, "m.read", &e4, json!({"thread_id": ""})).await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &receipt(&bob, &room, "m.read", &e4, json!({"thread_id": "thread"})).await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &receipt(&bob, &room, "m.read", &e4, json!({"thread_id": 5})).await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &receipt(
            &bob,
            &room,
            "m.fully_read",
            &e4,
            json!({"thread_id": "main"}),
        )
        .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &receipt(&bob, &room, "m.read", "$unknown:test.localhost", json!({})).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &bob.post(
            &format!("{V3}/rooms/{r}/read_markers"),
            &json!({"m.fully_read": e4, "m.read": "$unknown:test.localhost"}),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    // Carol is not in the room; an event of another room is not found.
    assert_error(
        &receipt(&carol, &room, "m.read", &e4, json!({})).await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &carol
            .post(
                &format!("{V3}/rooms/{r}/read_markers"),
                &json!({"m.read": e4}),
            )
            .await,
        403,
        "M_FORBIDDEN",
    );
    let (status, resp) = carol.post(&format!("{V3}/createRoom"), &json!({})).await;
    assert_eq!(status, 200, "{resp}");
    let other = resp["room_id"].as_str().expect("room_id").to_owned();
    assert_error(
        &receipt(&carol, &other, "m.read", &e4, json!({})).await,
        404,
        "M_NOT_FOUND",
    );
}

backend_tests!(receipts_story);
