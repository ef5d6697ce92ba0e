//! Alpha's user joins Bob's public room on beta and talks in it, through
//! beta's `PUT /send` (the test plays alpha with alpha's real signing key;
//! beta fetches that key from alpha). Bob sees the join, the messages,
//! alpha's typing and to-device messages in `/sync`. A retransmitted
//! transaction changes nothing; oversized transactions are refused; a
//! forged event and an event alpha cannot speak for are errors in the
//! answer and are not stored; alpha's read receipts and device list
//! changes reach Bob's sync; once the room's ACL denies alpha, its PDUs and
//! EDUs for the room are refused. Events whose content was changed after
//! signing are stored redacted and leave the room's state intact; an event
//! from a user who is not in the room is rejected. A banned user's message citing the
//! events before the ban is soft-failed: stored, never shown, never cited by beta.

use crate::common::federation::{ActAs, Federation, RoomView, pdu_json};
use crate::common::{Backend, Client, create_user, enc};
use myelin_proto::signing::KeyPair;
use serde_json::{Value, json};

const V3: &str = "/_matrix/client/v3";

async fn sync(client: &Client, since: Option<&str>) -> Value {
    let path = match since {
        Some(s) => format!("{V3}/sync?timeout=0&since={}", enc(s)),
        None => format!("{V3}/sync?timeout=0"),
    };
    let (status, body) = client.get(&path).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn timeline_ids(sync: &Value, room: &str) -> Vec<String> {
    sync["rooms"]["join"][room]["timeline"]["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn typing_users(sync: &Value, room: &str) -> Option<Vec<String>> {
    sync["rooms"]["join"][room]["ephemeral"]["events"]
        .as_array()?
        .iter()
        .find(|e| e["type"] == "m.typing")
        .map(|e| {
            e["content"]["user_ids"]
                .as_array()
                .expect("user_ids")
                .iter()
                .map(|u| u.as_str().expect("user id").to_owned())
                .collect()
        })
}

async fn latest_event(client: &Client, room: &str) -> String {
    let (status, body) = client
        .get(&format!("{V3}/rooms/{}/messages?dir=b&limit=1", enc(room)))
        .await;
    assert_eq!(status, 200, "{body}");
    body["chunk"][0]["event_id"]
        .as_str()
        .expect("event id")
        .to_owned()
}

/// Whether beta holds the event (alpha, in the room, asks for it).
async fn beta_has(fed: &Federation, alpha: &ActAs, event_id: &str) -> bool {
    let uri = format!("/_matrix/federation/v1/event/{}", enc(event_id));
    let (status, body) = alpha
        .request(fed, &fed["beta.test"], "GET", &uri, None)
        .await;
    assert!(status == 200 || status == 404, "{status} {body}");
    status == 200
}

fn strings_of(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|l| {
            l.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn pdu_result<'a>(body: &'a Value, event_id: &str) -> &'a Value {
    &body["pdus"][event_id]
}

async fn remote_user_talks_in_a_local_room(backend: Backend) {
    let fed = Federation::start(backend, &["alpha.test", "beta.test"]).await;
    let beta = &fed["beta.test"];
    let alpha = ActAs::new(&fed["alpha.test"]);
    let (bob_id, bob_token) = create_user(beta, "bob").await;
    let bob = beta.client().with_token(&bob_token);
    let (status, body) = bob
        .post(
            &format!("{V3}/createRoom"),
            &json!({"preset": "public_chat"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let room = body["room_id"].as_str().expect("room id").to_owned();
    let before = sync(&bob, None).await;
    let since = before["next_batch"].as_str().expect("token").to_owned();

    // The join and a message, in one transaction.
    let mut view = RoomView::read(&bob, &room).await;
    let a = "@a:alpha.test";
    let prev = latest_event(&bob, &room).await;
    let join = view.event(
        &alpha,
        a,
        "m.room.member",
        Some(a),
        json!({"membership": "join"}),
        &[prev],
        50,
    );
    view.state.insert(
        ("m.room.member".into(), a.into()),
        join.event_id().to_string(),
    );
    let hello = view.event(
        &alpha,
        a,
        "m.room.message",
        None,
        json!({"msgtype": "m.text", "body": "hello from alpha"}),
        &[join.event_id().to_string()],
        51,
    );
    let (status, body) = alpha
        .send_txn(&fed, beta, "t1", &[pdu_json(&join), pdu_json(&hello)], &[])
        .await;
    assert_eq!(status, 200, "{body}\n{}", beta.log());
    assert_eq!(
        pdu_result(&body, join.event_id().as_str()),
        &json!({}),
        "{body}"
    );
    assert_eq!(
        pdu_result(&body, hello.event_id().as_str()),
        &json!({}),
        "{body}"
    );

    let after = sync(&bob, Some(&since)).await;
    let ids = timeline_ids(&after, &room);
    assert_eq!(
        ids,
        vec![join.event_id().to_string(), hello.event_id().to_string()],
        "{after}"
    );
    let events = &after["rooms"]["join"][room.as_str()]["timeline"]["events"];
    assert_eq!(events[1]["sender"], a);
    assert_eq!(events[1]["content"]["body"], "hello from alpha");
    let since = after["next_batch"].as_str().expect("token").to_owned();

    // A retransmission of t1, even with other content, is answered as
    // before and processes nothing.
    let sneaky = view.event(
        &alpha,
        a,
        "m.room.message",
        None,
        json!({"msgtype": "m.text", "body": "smuggled"}),
        &[hello.event_id().to_string()],
        52,
    );
    let (status, replay) = alpha
        .send_txn(&fed, beta, "t1", &[pdu_json(&sneaky)], &[])
        .await;
    assert_eq!(status, 200, "{replay}");
    assert_eq!(replay, body, "the stored answer");
    assert!(!beta_has(&fed, &alpha, sneaky.event_id().as_str()).await);

    // Oversized transactions are refused whole.
    let many: Vec<Value> = (0..51).map(|_| pdu_json(&sneaky)).collect();
    let (status, body) = alpha.send_txn(&fed, beta, "big1", &many, &[]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errcode"], "M_BAD_JSON");
    let edus: Vec<Value> = (0..101)
        .map(|_| json!({"edu_type": "m.presence", "content": {"push": []}}))
        .collect();
    let (status, body) = alpha.send_txn(&fed, beta, "big2", &[], &edus).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errcode"], "M_BAD_JSON");
    assert!(!beta_has(&fed, &alpha, sneaky.event_id().as_str()).await);

    // A forged signature (alpha's key ID, another key) and an event alpha
    // cannot speak for (Bob's, signed by alpha) are errors, not stored.
    let stranger = ActAs {
        name: alpha.name.clone(),
        key: KeyPair::from_seed(alpha.key.version(), &[42u8; 32]).expect("key"),
    };
    let forged = view.event(
        &stranger,
        a,
        "m.room.message",
        None,
        json!({"msgtype": "m.text", "body": "forged"}),
        &[hello.event_id().to_string()],
        52,
    );
    let impostor = view.event(
        &alpha,
        &bob_id,
        "m.room.message",
        None,
        json!({"msgtype": "m.text", "body": "I am bob"}),
        &[hello.event_id().to_string()],
        52,
    );
    // Alpha's user starts typing and sends Bob a to-device message; a
    // typing notice for a beta user and a malformed EDU are ignored.
    let edus = vec![
        json!({"edu_type": "m.typing", "content": {"room_id": room, "user_id": a, "typing": true}}),
        json!({"edu_type": "m.typing", "content": {"room_id": room, "user_id": bob_id, "typing": true}}),
        json!({"edu_type": "m.typing", "content": {"nonsense": 1}}),
        json!({"edu_type": "m.direct_to_device", "content": {
            "sender": a, "type": "m.test.ping", "message_id": "m1",
            "messages": {bob_id.as_str(): {"*": {"n": 1}}},
        }}),
    ];
    let (status, body) = alpha
        .send_txn(
            &fed,
            beta,
            "t2",
            &[pdu_json(&forged), pdu_json(&impostor)],
            &edus,
        )
        .await;
    assert_eq!(status, 200, "{body}\n{}", beta.log());
    for bad in [&forged, &impostor] {
        let result = pdu_result(&body, bad.event_id().as_str());
        assert!(result["error"].is_string(), "{body}");
        assert!(!beta_has(&fed, &alpha, bad.event_id().as_str()).await);
    }
    let after = sync(&bob, Some(&since)).await;
    assert!(timeline_ids(&after, &room).is_empty(), "{after}");
    assert_eq!(
        typing_users(&after, &room),
        Some(vec![a.to_owned()]),
        "{after}"
    );
    let to_device = after["to_device"]["events"].as_array().expect("to_device");
    assert_eq!(to_device.len(), 1, "{after}");
    assert_eq!(to_device[0]["sender"], a);
    assert_eq!(to_device[0]["type"], "m.test.ping");
    assert_eq!(to_device[0]["content"], json!({"n": 1}));
    let since = after["next_batch"].as_str().expect("token").to_owned();

    // The same to-device message again (same message_id, new
    // transaction) is delivered once only. Alpha's user reads the hello
    // and changes devices; a receipt alpha cannot speak for is ignored.
    let receipt = |user: &str| {
        json!({"edu_type": "m.receipt", "content": {room.as_str(): {"m.read": {user: {
            "event_ids": [hello.event_id().to_string()], "data": {"ts": 1234},
        }}}}})
    };
    let device_update = json!({"edu_type": "m.device_list_update", "content": {
        "user_id": a, "device_id": "NEWDEVICE", "stream_id": 2, "prev_id": [1],
    }});
    let t3 = [edus[3].clone(), receipt(a), receipt(&bob_id), device_update];
    let (status, _) = alpha.send_txn(&fed, beta, "t3", &[], &t3).await;
    assert_eq!(status, 200);
    let after = sync(&bob, Some(&since)).await;
    assert!(
        after["to_device"]["events"]
            .as_array()
            .is_none_or(|e| e.is_empty()),
        "{after}"
    );
    let ephemeral = &after["rooms"]["join"][room.as_str()]["ephemeral"]["events"];
    let receipt = ephemeral
        .as_array()
        .and_then(|list| list.iter().find(|e| e["type"] == "m.receipt"))
        .unwrap_or_else(|| panic!("no receipt: {after}"));
    let readers = &receipt["content"][hello.event_id().as_str()]["m.read"];
    assert_eq!(readers[a]["ts"], 1234, "{after}");
    assert!(readers.get(bob_id.as_str()).is_none(), "{after}");
    let changed = strings_of(&after["device_lists"]["changed"]);
    assert_eq!(changed, vec![a.to_owned()], "{after}");
    let since = after["next_batch"].as_str().expect("token").to_owned();

    // Bob's room denies alpha: its PDUs and EDUs for the room are refused.
    let (status, body) = bob
        .put(
            &format!("{V3}/rooms/{}/state/m.room.server_acl/", enc(&room)),
            &json!({"allow": ["*"], "deny": ["alpha.test"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let acl_id = body["event_id"].as_str().expect("id").to_owned();
    let denied = view.event(
        &alpha,
        a,
        "m.room.message",
        None,
        json!({"msgtype": "m.text", "body": "after the ACL"}),
        &[acl_id],
        60,
    );
    let stop = json!({"edu_type": "m.typing", "content": {"room_id": room, "user_id": a, "typing": false}});
    let (status, body) = alpha
        .send_txn(&fed, beta, "t4", &[pdu_json(&denied)], &[stop])
        .await;
    assert_eq!(status, 200, "{body}");
    let result = pdu_result(&body, denied.event_id().as_str());
    assert!(
        result["error"].as_str().is_some_and(|e| e.contains("ACL")),
        "{body}"
    );
    let after = sync(&bob, Some(&since)).await;
    let ids = timeline_ids(&after, &room);
    assert!(!ids.contains(&denied.event_id().to_string()), "{after}");
    // The stop was refused: Alpha's user is still shown typing.
    assert_eq!(
        typing_users(&after, &room),
        None,
        "no typing change: {after}"
    );
    let full = sync(&bob, None).await;
    assert_eq!(
        typing_users(&full, &room),
        Some(vec![a.to_owned()]),
        "{full}"
    );
}

backend_tests!(remote_user_talks_in_a_local_room);

/// The state of a room as `client` reads it: `(type, state_key)` to content.
async fn state_contents(
    client: &Client,
    room: &str,
) -> std::collections::BTreeMap<(String, String), Value> {
    let (status, body) = client.get(&format!("{V3}/rooms/{}/state", enc(room))).await;
    assert_eq!(status, 200, "{body}");
    body.as_array()
        .expect("state")
        .iter()
        .map(|e| {
            let key = (
                e["type"].as_str().expect("type").to_owned(),
                e["state_key"].as_str().expect("state_key").to_owned(),
            );
            (key, e["content"].clone())
        })
        .collect()
}

/// Alpha sends beta events whose content was changed after signing (the signatures still
/// hold: they cover the redacted form) and an event from a user who is not in the room.
/// The tampered events are stored redacted, as the spec says, and the room goes on with its
/// state intact; the outsider's event is rejected and never shown.
async fn tampered_and_outsider_events(backend: Backend) {
    let fed = Federation::start(backend, &["alpha.test", "beta.test"]).await;
    let beta = &fed["beta.test"];
    let alpha = ActAs::new(&fed["alpha.test"]);
    let (_, bob_token) = create_user(beta, "bob").await;
    let bob = beta.client().with_token(&bob_token);
    let (status, body) = bob
        .post(
            &format!("{V3}/createRoom"),
            &json!({"preset": "public_chat", "name": "Intact"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let room = body["room_id"].as_str().expect("room id").to_owned();
    let a = "@a:alpha.test";
    let (mut view, join) =
        crate::common::federation::join_via_send(&fed, beta, &alpha, &bob, &room, a).await;
    let state_before = state_contents(&bob, &room).await;
    let since = sync(&bob, None).await["next_batch"]
        .as_str()
        .expect("token")
        .to_owned();

    // A message and a member event (a display name), each changed after signing.
    let message = view.event(
        &alpha,
        a,
        "m.room.message",
        None,
        json!({"msgtype": "m.text", "body": "as signed"}),
        &[join.event_id().to_string()],
        51,
    );
    let mut tampered_message = pdu_json(&message);
    tampered_message["content"]["body"] = json!("changed on the way");
    let rename = view.event(
        &alpha,
        a,
        "m.room.member",
        Some(a),
        json!({"membership": "join", "displayname": "Alpha A"}),
        &[message.event_id().to_string()],
        52,
    );
    let mut tampered_rename = pdu_json(&rename);
    tampered_rename["content"]["displayname"] = json!("Mallory");
    // @c is not in the room.
    let outsider = view.event(
        &alpha,
        "@c:alpha.test",
        "m.room.message",
        None,
        json!({"msgtype": "m.text", "body": "let me in"}),
        &[rename.event_id().to_string()],
        53,
    );
    let (status, body) = alpha
        .send_txn(
            &fed,
            beta,
            "hostile1",
            &[tampered_message, tampered_rename, pdu_json(&outsider)],
            &[],
        )
        .await;
    assert_eq!(status, 200, "{body}\n{}", beta.log());
    // Redacted, but accepted: the event IDs are those of the signed events.
    for ok in [&message, &rename] {
        assert_eq!(
            pdu_result(&body, ok.event_id().as_str()),
            &json!({}),
            "{body}"
        );
    }
    let refused = pdu_result(&body, outsider.event_id().as_str());
    assert!(refused["error"].is_string(), "{body}");

    // Bob reads the two events with their content stripped, and not the outsider's.
    let after = sync(&bob, Some(&since)).await;
    assert_eq!(
        timeline_ids(&after, &room),
        [
            message.event_id().to_string(),
            rename.event_id().to_string()
        ],
        "{after}"
    );
    let events = &after["rooms"]["join"][room.as_str()]["timeline"]["events"];
    assert_eq!(events[0]["content"], json!({}), "{after}");
    assert_eq!(
        events[1]["content"],
        json!({"membership": "join"}),
        "{after}"
    );
    let (status, body) = bob
        .get(&format!(
            "{V3}/rooms/{}/event/{}",
            enc(&room),
            enc(message.event_id().as_str())
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["content"], json!({}));
    let (status, _) = bob
        .get(&format!(
            "{V3}/rooms/{}/event/{}",
            enc(&room),
            enc(outsider.event_id().as_str())
        ))
        .await;
    assert_eq!(status, 404);

    // The room's state: only @a's member event changed (to its redacted form); @c is
    // nowhere; the room still works for both sides.
    let state_after = state_contents(&bob, &room).await;
    let member_a = ("m.room.member".to_owned(), a.to_owned());
    assert_eq!(state_after[&member_a], json!({"membership": "join"}));
    let mut expected = state_before.clone();
    expected.insert(member_a, json!({"membership": "join"}));
    assert_eq!(state_after, expected);
    view.state.insert(
        ("m.room.member".into(), a.into()),
        rename.event_id().to_string(),
    );
    let fine = view.event(
        &alpha,
        a,
        "m.room.message",
        None,
        json!({"msgtype": "m.text", "body": "still here"}),
        &[rename.event_id().to_string()],
        54,
    );
    let (status, body) = alpha
        .send_txn(&fed, beta, "hostile2", &[pdu_json(&fine)], &[])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        pdu_result(&body, fine.event_id().as_str()),
        &json!({}),
        "{body}"
    );
    let (status, body) = bob
        .put(
            &format!("{V3}/rooms/{}/send/m.room.message/b1", enc(&room)),
            &json!({"msgtype": "m.text", "body": "hello"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

backend_tests!(tampered_and_outsider_events);

/// The `prev_events` of `event_id` as beta serves it over federation (asked as alpha).
async fn prev_events_on_beta(fed: &Federation, alpha: &ActAs, event_id: &str) -> Vec<String> {
    let uri = format!("/_matrix/federation/v1/event/{}", enc(event_id));
    let (status, body) = alpha
        .request(fed, &fed["beta.test"], "GET", &uri, None)
        .await;
    assert_eq!(status, 200, "{body}");
    let mut prevs = strings_of(&body["pdus"][0]["prev_events"]);
    prevs.sort();
    prevs
}

/// The event IDs `/messages` gives `client`, newest first.
async fn messages_ids(client: &Client, room: &str) -> Vec<String> {
    let (status, body) = client
        .get(&format!("{V3}/rooms/{}/messages?dir=b&limit=50", enc(room)))
        .await;
    assert_eq!(status, 200, "{body}");
    body["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
        .collect()
}

/// Spec "Soft failure": Bob bans @a of alpha; alpha then sends a message of @a citing the
/// event before the ban. It is allowed by the state before it but not by the room's
/// current state, so beta stores it soft-failed: it is accepted in the transaction, but
/// never shown to Bob (`/sync`, `/messages`) and never cited by beta's next event. An
/// event of @b (also of alpha) citing both beta's event and the soft-failed one is handled
/// as normal: shown, with @a still banned, and the only event beta's next one cites.
async fn soft_failed_events_stay_out_of_sight(backend: Backend) {
    let fed = Federation::start(backend, &["alpha.test", "beta.test"]).await;
    let beta = &fed["beta.test"];
    let alpha = ActAs::new(&fed["alpha.test"]);
    let (_, bob_token) = create_user(beta, "bob").await;
    let bob = beta.client().with_token(&bob_token);
    let (status, body) = bob
        .post(
            &format!("{V3}/createRoom"),
            &json!({"preset": "public_chat", "name": "Soft"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let room = body["room_id"].as_str().expect("room id").to_owned();
    let (a, b) = ("@a:alpha.test", "@b:alpha.test");
    crate::common::federation::join_via_send(&fed, beta, &alpha, &bob, &room, a).await;
    let (view, join_b) =
        crate::common::federation::join_via_send(&fed, beta, &alpha, &bob, &room, b).await;

    let (status, body) = bob
        .post(
            &format!("{V3}/rooms/{}/ban", enc(&room)),
            &json!({"user_id": a, "reason": "enough"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let ban = latest_event(&bob, &room).await;
    let since = sync(&bob, None).await["next_batch"]
        .as_str()
        .expect("token")
        .to_owned();

    // @a evades the ban: a message citing the events before it (the view still has her
    // join, so the message's auth events are those of the state before it).
    let evading = view.event(
        &alpha,
        a,
        "m.room.message",
        None,
        json!({"msgtype": "m.text", "body": "still talking"}),
        &[join_b.event_id().to_string()],
        52,
    );
    let (status, body) = alpha
        .send_txn(&fed, beta, "soft1", &[pdu_json(&evading)], &[])
        .await;
    assert_eq!(status, 200, "{body}\n{}", beta.log());
    assert_eq!(
        pdu_result(&body, evading.event_id().as_str()),
        &json!({}),
        "soft failure is not an error: {body}"
    );
    // Stored (other servers may fetch it), but Bob never sees it.
    assert!(beta_has(&fed, &alpha, evading.event_id().as_str()).await);
    let after = sync(&bob, Some(&since)).await;
    assert!(
        !timeline_ids(&after, &room).contains(&evading.event_id().to_string()),
        "{after}"
    );
    let full = sync(&bob, None).await;
    assert!(
        !timeline_ids(&full, &room).contains(&evading.event_id().to_string()),
        "{full}"
    );
    let seen = messages_ids(&bob, &room).await;
    assert!(!seen.contains(&evading.event_id().to_string()), "{seen:?}");
    assert_eq!(seen[0], ban, "{seen:?}");
    let since = after["next_batch"].as_str().expect("token").to_owned();

    // Beta's next event follows the ban alone, not the soft-failed message.
    let (status, body) = bob
        .put(
            &format!("{V3}/rooms/{}/send/m.room.message/s1", enc(&room)),
            &json!({"msgtype": "m.text", "body": "after the ban"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let bobs = body["event_id"].as_str().expect("event id").to_owned();
    assert_eq!(prev_events_on_beta(&fed, &alpha, &bobs).await, [ban]);

    // @b's event cites Bob's message and the soft-failed one: handled as normal.
    let merge = view.event(
        &alpha,
        b,
        "m.room.message",
        None,
        json!({"msgtype": "m.text", "body": "merging"}),
        &[bobs.clone(), evading.event_id().to_string()],
        54,
    );
    let (status, body) = alpha
        .send_txn(&fed, beta, "soft2", &[pdu_json(&merge)], &[])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        pdu_result(&body, merge.event_id().as_str()),
        &json!({}),
        "{body}\n{}",
        beta.log()
    );
    let after = sync(&bob, Some(&since)).await;
    let ids = timeline_ids(&after, &room);
    assert!(ids.contains(&merge.event_id().to_string()), "{after}");
    assert!(!ids.contains(&evading.event_id().to_string()), "{after}");
    let seen = messages_ids(&bob, &room).await;
    assert_eq!(seen[0], merge.event_id().to_string(), "{seen:?}");
    assert!(!seen.contains(&evading.event_id().to_string()), "{seen:?}");
    // The ban holds in the state that merged both branches.
    let state = state_contents(&bob, &room).await;
    assert_eq!(
        state[&("m.room.member".to_owned(), a.to_owned())]["membership"],
        "ban"
    );
    // And beta's next event cites only @b's.
    let (status, body) = bob
        .put(
            &format!("{V3}/rooms/{}/send/m.room.message/s2", enc(&room)),
            &json!({"msgtype": "m.text", "body": "and on"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let next = body["event_id"].as_str().expect("event id");
    assert_eq!(
        prev_events_on_beta(&fed, &alpha, next).await,
        [merge.event_id().to_string()]
    );
}

backend_tests!(soft_failed_events_stay_out_of_sight);
