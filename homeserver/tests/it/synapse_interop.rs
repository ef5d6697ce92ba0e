//! Myelin federates with a real Synapse (see `common::synapse`): Mia uses Myelin, Sam uses
//! Synapse, both servers on loopback with real TLS and real signing keys.
//!
//! - Sam creates a room on Synapse (room version 12) and invites Mia; she declines the first
//!   invite and joins by the room's alias after the second, through Synapse. Messages flow
//!   both ways and show in each side's `/sync`. Sam gives Mia power; she sets the topic, he
//!   renames the room, and both servers' state agrees, also after two forks (both set the
//!   topic at once; he demotes her while she renames). He redacts her message, kicks her,
//!   and she knocks to come back.
//! - Mia creates a room on Myelin and publishes it; Sam finds it in Myelin's public room
//!   directory through Synapse, is invited, joins by its alias through Myelin and reads the
//!   history from before he came (Synapse backfills from Myelin). Messages, typing and read
//!   receipts flow both ways, each server reads the other's profiles; Synapse goes down while
//!   Mia writes and Myelin's queue catches it up; Sam leaves, both sides see it, and he
//!   knocks.
//! - Encrypted chat both ways: each reads the other's device and cross-signing keys and
//!   claims a one-time key across the servers, shares a Megolm key in an Olm to-device
//!   message, and decrypts the other's messages.
//! - Rooms of versions 10 and 11 made on either side; a room upgraded to version 12 on
//!   Synapse, whose tombstone Mia follows to the replacement.
//! - Restricted rooms on each side, joined through the resident server once the user is in
//!   the space that grants access.
//! - Device lists: a second device of either user (a new login publishing its keys), and
//!   later cross-signing keys, show in the other's `device_lists.changed` and `/keys/query`.
//! - A server ACL set on either side (denying a third server) and redactions of state events
//!   on either side apply alike on both servers.
//! - Myelin and then Synapse go down while Sam writes: Synapse's catch-up sends Myelin the
//!   newest event alone and Myelin fetches the rest from Synapse (`get_missing_events`).
//! - Every story ends by checking that neither server logged a warning or refused an event
//!   the other sent, apart from what the story provokes on purpose.

use std::time::{Duration, Instant};

use crate::common::federation::Federation;
use crate::common::synapse::{self, Synapse};
use crate::common::{Backend, Client, create_room, enc, login_ok, register};
use crate::e2ee_support::SigningKey;
use crate::e2ee_sync_story::{Peer, read_timeline, send_encrypted};
use serde_json::{Value, json};
use vodozemac::megolm::{GroupSession, SessionConfig as MegolmConfig};

const V3: &str = "/_matrix/client/v3";
/// How long anything may take to cross from one server to the other.
const CROSSING: Duration = Duration::from_secs(30);

/// Myelin (one server named `127.0.0.1:<port>`) and Synapse, or `None` when the story skips.
async fn start(backend: Backend) -> Option<(Federation, Synapse)> {
    let venv = synapse::venv()?;
    let fed = Federation::start_ip_literal(
        backend,
        // Retry soon if the first attempt reaches Synapse before it is ready.
        &[(
            "MYELIN__FEDERATION__DESTINATION_MIN_RETRY_INTERVAL_MS",
            "300",
        )],
    )
    .await;
    let synapse = Synapse::start(&venv, &fed).await;
    Some((fed, synapse))
}

/// A `/sync` client that keeps its token.
struct Syncer {
    client: Client,
    since: Option<String>,
}

impl Syncer {
    fn new(client: Client) -> Self {
        Self {
            client,
            since: None,
        }
    }

    async fn sync(&mut self) -> Value {
        let path = match &self.since {
            Some(s) => format!("{V3}/sync?since={}&timeout=0", enc(s)),
            None => format!("{V3}/sync?timeout=0"),
        };
        let (status, resp) = self.client.get(&path).await;
        assert_eq!(status, 200, "{resp}");
        self.since = Some(resp["next_batch"].as_str().expect("next_batch").to_owned());
        resp
    }

    /// Syncs until `found` picks something out of a response; `what` names it for the
    /// failure message, `logs` explains a failure.
    async fn until<T>(
        &mut self,
        what: &str,
        logs: &dyn Fn() -> String,
        mut found: impl FnMut(&Value) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + CROSSING;
        loop {
            let resp = self.sync().await;
            if let Some(t) = found(&resp) {
                return t;
            }
            assert!(Instant::now() < deadline, "never saw {what}\n{}", logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Syncs until `room`'s timeline shows the message with `body`, and returns it.
    async fn until_message(&mut self, room: &str, body: &str, logs: &dyn Fn() -> String) -> Value {
        self.until(&format!("the message {body:?}"), logs, |r| {
            message(r, room, body).cloned()
        })
        .await
    }
}

/// The timeline events of `room` in a sync response.
fn timeline<'a>(resp: &'a Value, room: &str) -> Vec<&'a Value> {
    resp["rooms"]["join"][room]["timeline"]["events"]
        .as_array()
        .map(|events| events.iter().collect())
        .unwrap_or_default()
}

/// The ephemeral event of `event_type` for `room` in a sync response.
fn ephemeral<'a>(resp: &'a Value, room: &str, event_type: &str) -> Option<&'a Value> {
    resp["rooms"]["join"][room]["ephemeral"]["events"]
        .as_array()?
        .iter()
        .find(|e| e["type"] == event_type)
}

/// The users an `m.typing` event lists (each side also lists its own user while typing).
fn typing_users(event: &Value) -> Vec<&str> {
    event["content"]["user_ids"]
        .as_array()
        .map(|ids| ids.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The event of `room`'s timeline in a sync response that is a message with `body`.
fn message<'a>(resp: &'a Value, room: &str, body: &str) -> Option<&'a Value> {
    timeline(resp, room)
        .into_iter()
        .find(|e| e["type"] == "m.room.message" && e["content"]["body"] == body)
}

async fn send_text(client: &Client, room: &str, txn: &str, body: &str) -> String {
    let (status, resp) = client
        .put(
            &format!("{V3}/rooms/{}/send/m.room.message/{txn}", enc(room)),
            &json!({ "msgtype": "m.text", "body": body }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    resp["event_id"].as_str().expect("event_id").to_owned()
}

async fn put_state(client: &Client, room: &str, event_type: &str, content: Value) -> String {
    let (status, resp) = client
        .put(
            &format!("{V3}/rooms/{}/state/{event_type}/", enc(room)),
            &content,
        )
        .await;
    assert_eq!(status, 200, "{event_type}: {resp}");
    resp["event_id"].as_str().expect("event_id").to_owned()
}

/// The room's current state as `client` reads it: `(type, state_key)` -> (event ID, content).
async fn state(
    client: &Client,
    room: &str,
) -> std::collections::BTreeMap<(String, String), (String, Value)> {
    let (status, events) = client.get(&format!("{V3}/rooms/{}/state", enc(room))).await;
    assert_eq!(status, 200, "{events}");
    events
        .as_array()
        .expect("state list")
        .iter()
        .map(|e| {
            (
                (
                    e["type"].as_str().expect("type").to_owned(),
                    e["state_key"].as_str().expect("state_key").to_owned(),
                ),
                (
                    e["event_id"].as_str().expect("event_id").to_owned(),
                    e["content"].clone(),
                ),
            )
        })
        .collect()
}

async fn room_version(client: &Client, room: &str) -> String {
    let (status, create) = client
        .get(&format!("{V3}/rooms/{}/state/m.room.create/", enc(room)))
        .await;
    assert_eq!(status, 200, "{create}");
    create["room_version"]
        .as_str()
        .expect("room_version")
        .to_owned()
}

/// Waits until both clients read the same current state of `room`, and returns it.
async fn agreed_state(
    a: &Client,
    b: &Client,
    room: &str,
    logs: &dyn Fn() -> String,
    done: impl Fn(&std::collections::BTreeMap<(String, String), (String, Value)>) -> bool,
) -> std::collections::BTreeMap<(String, String), (String, Value)> {
    let deadline = Instant::now() + CROSSING;
    loop {
        let (sa, sb) = (state(a, room).await, state(b, room).await);
        if sa == sb && done(&sa) {
            return sa;
        }
        assert!(
            Instant::now() < deadline,
            "the servers disagree on the state of {room}:\n{sa:#?}\n{sb:#?}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What Myelin logged about events or requests it refused or could not complete: warnings,
/// errors, and received events it did not accept (logged at `info`).
fn myelin_complaints(fed: &Federation) -> Vec<String> {
    fed.servers[0]
        .log()
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR ") || l.contains("not accepted"))
        .map(str::to_owned)
        .collect()
}

/// Each server processed everything the other sent without complaint, apart from what the
/// story provoked on purpose: each entry of `expected` lists the words of one such complaint
/// (in either server's log).
fn assert_content(fed: &Federation, synapse: &Synapse, expected: &[&[&str]]) {
    let unexpected = |lines: Vec<String>| -> Vec<String> {
        lines
            .into_iter()
            .filter(|line| {
                !expected
                    .iter()
                    .any(|words| words.iter().all(|w| line.contains(w)))
            })
            .collect()
    };
    let synapse_complaints = unexpected(synapse.complaints());
    let myelin_complaints = unexpected(myelin_complaints(fed));
    assert!(
        synapse_complaints.is_empty() && myelin_complaints.is_empty(),
        "Synapse complained:\n{}\nMyelin complained:\n{}",
        synapse_complaints.join("\n"),
        myelin_complaints.join("\n")
    );
}

/// Reads the tails of both servers' logs, to explain a failure.
fn logs(fed: &Federation, synapse: &Synapse) -> impl Fn() -> String + use<> {
    let myelin_log = fed.servers[0].data_dir.join("server.log");
    let synapse_tail = synapse.log_reader();
    move || {
        let myelin = std::fs::read_to_string(&myelin_log).unwrap_or_default();
        let from = myelin.lines().count().saturating_sub(150);
        let tail: Vec<&str> = myelin.lines().skip(from).collect();
        format!(
            "--- myelin log (last lines)\n{}\n{}",
            tail.join("\n"),
            synapse_tail()
        )
    }
}

/// An invited room in a sync response carries what a client shows before joining: the
/// room's name, its creator, and the invite itself.
fn assert_invite_state(invite: &Value, name: &str, inviter: &str) {
    let events = invite["invite_state"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no invite_state: {invite}"));
    let find = |t: &str| {
        events
            .iter()
            .find(|e| e["type"] == t)
            .unwrap_or_else(|| panic!("no {t} in {invite}"))
    };
    assert_eq!(find("m.room.name")["content"]["name"], name, "{invite}");
    assert_eq!(
        find("m.room.create")["content"]["room_version"],
        "12",
        "{invite}"
    );
    let member = events
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["content"]["membership"] == "invite")
        .unwrap_or_else(|| panic!("no invite event in {invite}"));
    assert_eq!(member["sender"], inviter, "{invite}");
}

/// `knocker` knocks on `room` through `via`; the member's sync shows the knock.
async fn knock_and_see(
    knocker: &Client,
    member_sync: &mut Syncer,
    room: &str,
    via: &str,
    knocker_id: &str,
    logs: &dyn Fn() -> String,
) {
    let (status, resp) = knocker
        .post(
            &format!("{V3}/knock/{}?server_name={}", enc(room), enc(via)),
            &json!({ "reason": "let me back in" }),
        )
        .await;
    assert_eq!(status, 200, "knocking: {resp}\n{}", logs());
    assert_eq!(resp["room_id"], room, "{resp}");
    member_sync
        .until("the knock", logs, |r| {
            timeline(r, room)
                .into_iter()
                .find(|e| {
                    e["type"] == "m.room.member"
                        && e["state_key"] == knocker_id
                        && e["content"]["membership"] == "knock"
                })
                .map(|_| ())
        })
        .await;
}

/// Sam's room on Synapse, joined by Mia from Myelin.
async fn myelin_user_joins_synapse_room(backend: Backend) {
    let Some((fed, synapse)) = start(backend).await else {
        return;
    };
    let myelin = &fed.servers[0];
    let logs = logs(&fed, &synapse);
    let (mia_id, mia_token, _) = register(&myelin.client(), "mia", "pw-mia-1234").await;
    let (sam_id, sam_token, _) = synapse.register("sam", "pw-sam-1234").await;
    assert!(sam_id.ends_with(&format!(":{}", synapse.name)), "{sam_id}");
    let mia = myelin.client().with_token(&mia_token);
    let sam = synapse.client().with_token(&sam_token);
    let mut mia_sync = Syncer::new(mia.clone());
    let mut sam_sync = Syncer::new(sam.clone());
    mia_sync.sync().await;
    sam_sync.sync().await;

    let (status, resp) = sam
        .post(
            &format!("{V3}/createRoom"),
            &json!({
                "preset": "private_chat", "name": "Made on Synapse", "room_alias_name": "lobby",
            }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let room = resp["room_id"].as_str().expect("room_id").to_owned();
    assert_eq!(room_version(&sam, &room).await, "12");

    // The invite crosses to Myelin, and Mia sees it in her sync. She declines the first
    // (her leave goes back through Synapse), and accepts the second.
    for round in ["declined", "accepted"] {
        let (status, resp) = sam
            .post(
                &format!("{V3}/rooms/{}/invite", enc(&room)),
                &json!({ "user_id": mia_id }),
            )
            .await;
        assert_eq!(status, 200, "{round}: {resp}\n{}", logs());
        let invite = mia_sync
            .until("the invite on Myelin", &logs, |r| {
                r["rooms"]["invite"][room.as_str()].as_object().cloned()
            })
            .await;
        assert_invite_state(&Value::Object(invite), "Made on Synapse", &sam_id);
        if round == "accepted" {
            break;
        }
        let (status, resp) = mia
            .post(&format!("{V3}/rooms/{}/leave", enc(&room)), &json!({}))
            .await;
        assert_eq!(status, 200, "declining: {resp}\n{}", logs());
        sam_sync
            .until("Mia's declined invite on Synapse", &logs, |r| {
                timeline(r, &room)
                    .into_iter()
                    .find(|e| {
                        e["type"] == "m.room.member"
                            && e["state_key"] == mia_id.as_str()
                            && e["content"]["membership"] == "leave"
                    })
                    .map(|_| ())
            })
            .await;
    }
    // By the room's alias on Synapse: Myelin asks Synapse's directory.
    let alias = format!("#lobby:{}", synapse.name);
    let (status, resp) = mia
        .get(&format!("{V3}/directory/room/{}", enc(&alias)))
        .await;
    assert_eq!(status, 200, "{resp}\n{}", logs());
    assert_eq!(resp["room_id"], room.as_str());
    assert!(
        resp["servers"]
            .as_array()
            .is_some_and(|s| s.contains(&json!(synapse.name))),
        "{resp}"
    );
    let (status, resp) = mia
        .post(&format!("{V3}/join/{}", enc(&alias)), &json!({}))
        .await;
    assert_eq!(status, 200, "{resp}\n{}", logs());
    assert_eq!(resp["room_id"], room.as_str());
    assert_eq!(room_version(&mia, &room).await, "12");
    sam_sync
        .until("Mia's join on Synapse", &logs, |r| {
            timeline(r, &room)
                .into_iter()
                .find(|e| {
                    e["type"] == "m.room.member"
                        && e["state_key"] == mia_id.as_str()
                        && e["content"]["membership"] == "join"
                })
                .map(|_| ())
        })
        .await;

    // Messages both ways.
    let from_sam = send_text(&sam, &room, "s1", "hello from synapse").await;
    let seen = mia_sync
        .until_message(&room, "hello from synapse", &logs)
        .await;
    assert_eq!(seen["event_id"], from_sam.as_str());
    assert_eq!(seen["sender"], sam_id.as_str());
    let from_mia = send_text(&mia, &room, "m1", "hello from myelin").await;
    let seen = sam_sync
        .until_message(&room, "hello from myelin", &logs)
        .await;
    assert_eq!(seen["event_id"], from_mia.as_str());
    assert_eq!(seen["sender"], mia_id.as_str());

    // State both ways: Sam gives Mia power, she sets the topic, he renames the room.
    let (status, mut levels) = sam
        .get(&format!(
            "{V3}/rooms/{}/state/m.room.power_levels/",
            enc(&room)
        ))
        .await;
    assert_eq!(status, 200, "{levels}");
    levels["users"][mia_id.as_str()] = json!(50);
    put_state(&sam, &room, "m.room.power_levels", levels).await;
    let deadline = Instant::now() + CROSSING;
    loop {
        let (status, levels) = mia
            .get(&format!(
                "{V3}/rooms/{}/state/m.room.power_levels/",
                enc(&room)
            ))
            .await;
        if status == 200 && levels["users"][mia_id.as_str()] == 50 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Mia never got power: {levels}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let topic = put_state(
        &mia,
        &room,
        "m.room.topic",
        json!({ "topic": "set on myelin" }),
    )
    .await;
    let name = put_state(
        &sam,
        &room,
        "m.room.name",
        json!({ "name": "Renamed on Synapse" }),
    )
    .await;
    let agreed = agreed_state(&mia, &sam, &room, &logs, |s| {
        s.get(&("m.room.topic".into(), String::new()))
            .is_some_and(|(id, _)| *id == topic)
            && s.get(&("m.room.name".into(), String::new()))
                .is_some_and(|(id, _)| *id == name)
    })
    .await;
    let content = |t: &str, k: &str| agreed[&(t.to_owned(), k.to_owned())].1.clone();
    assert_eq!(content("m.room.topic", "")["topic"], "set on myelin");
    assert_eq!(content("m.room.name", "")["name"], "Renamed on Synapse");
    assert_eq!(content("m.room.member", &mia_id)["membership"], "join");
    assert_eq!(content("m.room.member", &sam_id)["membership"], "join");

    // Both set the topic at once: the room forks, and both servers resolve the fork (state
    // resolution v2.1) to the same topic.
    let (a, b) = tokio::join!(
        put_state(
            &mia,
            &room,
            "m.room.topic",
            json!({ "topic": "mia's fork" })
        ),
        put_state(
            &sam,
            &room,
            "m.room.topic",
            json!({ "topic": "sam's fork" })
        ),
    );
    let agreed = agreed_state(&mia, &sam, &room, &logs, |s| {
        s.get(&("m.room.topic".into(), String::new()))
            .is_some_and(|(id, _)| *id == a || *id == b)
    })
    .await;
    // Messages sent after the fork merge it, and the servers still agree.
    send_text(&mia, &room, "m2", "after the fork (myelin)").await;
    send_text(&sam, &room, "s2", "after the fork (synapse)").await;
    sam_sync
        .until_message(&room, "after the fork (myelin)", &logs)
        .await;
    mia_sync
        .until_message(&room, "after the fork (synapse)", &logs)
        .await;
    let merged = agreed_state(&mia, &sam, &room, &logs, |_| true).await;
    assert_eq!(merged, agreed);

    // A harder fork: Sam takes Mia's power away while she renames the room. Both servers
    // resolve it the same way (the demotion is ordered first, so her rename loses).
    let mut levels = merged[&("m.room.power_levels".to_owned(), String::new())]
        .1
        .clone();
    levels["users"][mia_id.as_str()] = json!(0);
    let rename_path = format!("{V3}/rooms/{}/state/m.room.name/", enc(&room));
    let rename_body = json!({ "name": "Mia's name" });
    let rename = mia.put(&rename_path, &rename_body);
    let (demotion, (status, resp)) = tokio::join!(
        put_state(&sam, &room, "m.room.power_levels", levels),
        rename
    );
    // Refused outright if the demotion reached Myelin first; otherwise a fork.
    assert!(status == 200 || status == 403, "{status} renaming: {resp}");
    send_text(&sam, &room, "s3", "after the demotion").await;
    mia_sync
        .until_message(&room, "after the demotion", &logs)
        .await;
    let resolved = agreed_state(&mia, &sam, &room, &logs, |s| {
        s.get(&("m.room.power_levels".into(), String::new()))
            .is_some_and(|(id, _)| *id == demotion)
    })
    .await;
    assert_eq!(
        resolved[&("m.room.name".to_owned(), String::new())].1["name"],
        "Renamed on Synapse"
    );

    // Sam redacts Mia's message and kicks her: Myelin applies both.
    let (status, resp) = sam
        .put(
            &format!("{V3}/rooms/{}/redact/{}/r1", enc(&room), enc(&from_mia)),
            &json!({ "reason": "off topic" }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let deadline = Instant::now() + CROSSING;
    loop {
        let (status, event) = mia
            .get(&format!(
                "{V3}/rooms/{}/event/{}",
                enc(&room),
                enc(&from_mia)
            ))
            .await;
        assert_eq!(status, 200, "{event}");
        if event["content"] == json!({}) {
            assert!(event["unsigned"]["redacted_because"].is_object(), "{event}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never redacted on Myelin: {event}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, resp) = sam
        .post(
            &format!("{V3}/rooms/{}/kick", enc(&room)),
            &json!({ "user_id": mia_id, "reason": "bye" }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    mia_sync
        .until("the kick on Myelin", &logs, |r| {
            r["rooms"]["leave"][room.as_str()].as_object().map(|_| ())
        })
        .await;

    // The room turns to knocking; Mia knocks through Synapse and Sam sees it.
    put_state(
        &sam,
        &room,
        "m.room.join_rules",
        json!({ "join_rule": "knock" }),
    )
    .await;
    knock_and_see(&mia, &mut sam_sync, &room, &synapse.name, &mia_id, &logs).await;
    // Her rename against the demotion: Synapse soft-fails it, as it should (it is not
    // allowed by the room's current state there).
    assert_content(
        &fed,
        &synapse,
        &[&[
            "Soft-failing <Event",
            "type=m.room.name",
            "user_level (0) < send_level (50)",
        ]],
    );
}

/// Mia's room on Myelin, joined by Sam from Synapse; Sam leaves.
async fn synapse_user_joins_myelin_room(backend: Backend) {
    let Some((fed, mut synapse)) = start(backend).await else {
        return;
    };
    let myelin = &fed.servers[0];
    let logs = logs(&fed, &synapse);
    let (mia_id, mia_token, _) = register(&myelin.client(), "mia", "pw-mia-1234").await;
    let (sam_id, sam_token, _) = synapse.register("sam", "pw-sam-1234").await;
    let mia = myelin.client().with_token(&mia_token);
    let sam = synapse.client().with_token(&sam_token);
    let mut mia_sync = Syncer::new(mia.clone());
    let mut sam_sync = Syncer::new(sam.clone());
    mia_sync.sync().await;
    sam_sync.sync().await;

    let (status, resp) = mia
        .post(
            &format!("{V3}/createRoom"),
            &json!({
                "preset": "public_chat", "name": "Made on Myelin", "room_alias_name": "hall",
                "visibility": "public",
            }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let room = resp["room_id"].as_str().expect("room_id").to_owned();
    assert_eq!(room_version(&mia, &room).await, "12");
    // History from before Sam joins, which Synapse fetches from Myelin when he reads back.
    let earlier = send_text(&mia, &room, "m0", "before you came").await;

    let (status, resp) = mia
        .post(
            &format!("{V3}/rooms/{}/invite", enc(&room)),
            &json!({ "user_id": sam_id }),
        )
        .await;
    assert_eq!(status, 200, "{resp}\n{}", logs());
    let invite = sam_sync
        .until("the invite on Synapse", &logs, |r| {
            r["rooms"]["invite"][room.as_str()].as_object().cloned()
        })
        .await;
    assert_invite_state(&Value::Object(invite), "Made on Myelin", &mia_id);
    // He finds the room in Myelin's public room directory, listed and searched through
    // Synapse (which asks Myelin's `/publicRooms` over federation).
    let listed = |page: &Value| {
        page["chunk"].as_array().is_some_and(|rooms| {
            rooms
                .iter()
                .any(|r| r["room_id"] == room.as_str() && r["name"] == "Made on Myelin")
        })
    };
    let (status, page) = sam
        .get(&format!("{V3}/publicRooms?server={}", enc(&myelin.name)))
        .await;
    assert_eq!(status, 200, "{page}\n{}", logs());
    assert!(listed(&page), "{page}");
    let (status, page) = sam
        .post(
            &format!("{V3}/publicRooms?server={}", enc(&myelin.name)),
            &json!({ "filter": { "generic_search_term": "made on" } }),
        )
        .await;
    assert_eq!(status, 200, "{page}\n{}", logs());
    assert!(listed(&page), "{page}");
    // He accepts by the room's alias on Myelin: Synapse asks Myelin's directory.
    let alias = format!("#hall:{}", myelin.name);
    let (status, resp) = sam
        .post(&format!("{V3}/join/{}", enc(&alias)), &json!({}))
        .await;
    assert_eq!(status, 200, "{resp}\n{}", logs());
    assert_eq!(resp["room_id"], room.as_str());
    assert_eq!(room_version(&sam, &room).await, "12");
    let deadline = Instant::now() + CROSSING;
    loop {
        let (status, resp) = sam
            .get(&format!(
                "{V3}/rooms/{}/messages?dir=b&limit=50",
                enc(&room)
            ))
            .await;
        assert_eq!(status, 200, "{resp}");
        let chunk = resp["chunk"].as_array().expect("chunk");
        if chunk.iter().any(|e| e["event_id"] == earlier.as_str()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Synapse never read the earlier history: {resp}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    mia_sync
        .until("Sam's join on Myelin", &logs, |r| {
            timeline(r, &room)
                .into_iter()
                .find(|e| {
                    e["type"] == "m.room.member"
                        && e["state_key"] == sam_id.as_str()
                        && e["content"]["membership"] == "join"
                })
                .map(|_| ())
        })
        .await;
    let agreed = agreed_state(&mia, &sam, &room, &logs, |_| true).await;
    assert_eq!(
        agreed[&("m.room.name".to_owned(), String::new())].1["name"],
        "Made on Myelin"
    );

    // Messages both ways.
    let from_mia = send_text(&mia, &room, "m1", "welcome to myelin").await;
    let seen = sam_sync
        .until_message(&room, "welcome to myelin", &logs)
        .await;
    assert_eq!(seen["event_id"], from_mia.as_str());
    let from_sam = send_text(&sam, &room, "s1", "thanks from synapse").await;
    let seen = mia_sync
        .until_message(&room, "thanks from synapse", &logs)
        .await;
    assert_eq!(seen["event_id"], from_sam.as_str());
    assert_eq!(seen["sender"], sam_id.as_str());

    // Typing notices and read receipts (EDUs) cross both ways.
    let (status, resp) = sam
        .put(
            &format!("{V3}/rooms/{}/typing/{}", enc(&room), enc(&sam_id)),
            &json!({ "typing": true, "timeout": 20000 }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    mia_sync
        .until("Sam typing on Myelin", &logs, |r| {
            ephemeral(r, &room, "m.typing")
                .filter(|t| typing_users(t).contains(&sam_id.as_str()))
                .map(|_| ())
        })
        .await;
    let (status, resp) = mia
        .put(
            &format!("{V3}/rooms/{}/typing/{}", enc(&room), enc(&mia_id)),
            &json!({ "typing": true, "timeout": 20000 }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    sam_sync
        .until("Mia typing on Synapse", &logs, |r| {
            ephemeral(r, &room, "m.typing")
                .filter(|t| typing_users(t).contains(&mia_id.as_str()))
                .map(|_| ())
        })
        .await;
    let receipt = |client: &Client, event: &str| {
        let path = format!("{V3}/rooms/{}/receipt/m.read/{}", enc(&room), enc(event));
        let client = client.clone();
        async move {
            let (status, resp) = client.post(&path, &json!({})).await;
            assert_eq!(status, 200, "{resp}");
        }
    };
    receipt(&sam, &from_mia).await;
    mia_sync
        .until("Sam's receipt on Myelin", &logs, |r| {
            ephemeral(r, &room, "m.receipt")
                .filter(|e| e["content"][&from_mia]["m.read"][&sam_id].is_object())
                .map(|_| ())
        })
        .await;
    receipt(&mia, &from_sam).await;
    sam_sync
        .until("Mia's receipt on Synapse", &logs, |r| {
            ephemeral(r, &room, "m.receipt")
                .filter(|e| e["content"][&from_sam]["m.read"][&mia_id].is_object())
                .map(|_| ())
        })
        .await;

    // Each server reads the other's users' profiles.
    let (status, resp) = mia
        .put(
            &format!("{V3}/profile/{}/displayname", enc(&mia_id)),
            &json!({ "displayname": "Mia M" }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let (status, resp) = sam.get(&format!("{V3}/profile/{}", enc(&mia_id))).await;
    assert_eq!(status, 200, "{resp}\n{}", logs());
    assert_eq!(resp["displayname"], "Mia M");
    let (status, resp) = mia.get(&format!("{V3}/profile/{}", enc(&sam_id))).await;
    assert_eq!(status, 200, "{resp}\n{}", logs());
    assert_eq!(resp["displayname"], "sam");

    // Synapse goes down while Mia writes; once it is back, Myelin's queue catches it up.
    synapse.kill();
    let missed = ["while you were away 1", "while you were away 2"];
    for (i, body) in missed.iter().enumerate() {
        send_text(&mia, &room, &format!("away{i}"), body).await;
    }
    synapse.restart().await;
    // Synapse hears from Myelin again when Sam speaks: Myelin then retries at once.
    send_text(&sam, &room, "s-back", "back again").await;
    let deadline = Instant::now() + CROSSING;
    loop {
        let (status, resp) = sam
            .get(&format!(
                "{V3}/rooms/{}/messages?dir=b&limit=20",
                enc(&room)
            ))
            .await;
        assert_eq!(status, 200, "{resp}");
        let bodies: Vec<&str> = resp["chunk"]
            .as_array()
            .expect("chunk")
            .iter()
            .filter_map(|e| e["content"]["body"].as_str())
            .collect();
        if missed.iter().all(|m| bodies.contains(m)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Synapse never caught up: {bodies:?}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Sam leaves: Synapse files the room under `leave`, Myelin shows the leave.
    let (status, resp) = sam
        .post(&format!("{V3}/rooms/{}/leave", enc(&room)), &json!({}))
        .await;
    assert_eq!(status, 200, "{resp}\n{}", logs());
    sam_sync
        .until("the room under leave on Synapse", &logs, |r| {
            r["rooms"]["leave"][room.as_str()].as_object().map(|_| ())
        })
        .await;
    mia_sync
        .until("Sam's leave on Myelin", &logs, |r| {
            timeline(r, &room)
                .into_iter()
                .find(|e| {
                    e["type"] == "m.room.member"
                        && e["state_key"] == sam_id.as_str()
                        && e["content"]["membership"] == "leave"
                })
                .map(|_| ())
        })
        .await;
    // The room turns to knocking; Sam knocks through Myelin and Mia sees it.
    put_state(
        &mia,
        &room,
        "m.room.join_rules",
        json!({ "join_rule": "knock" }),
    )
    .await;
    knock_and_see(&sam, &mut mia_sync, &room, &myelin.name, &sam_id, &logs).await;
    let (status, members) = mia
        .get(&format!("{V3}/rooms/{}/joined_members", enc(&room)))
        .await;
    assert_eq!(status, 200, "{members}");
    let joined: Vec<&String> = members["joined"]
        .as_object()
        .expect("joined")
        .keys()
        .collect();
    assert_eq!(joined, vec![&mia_id]);
    assert_content(&fed, &synapse, &[]);
}

/// Sets up `peer`'s cross-signing keys (first upload: no password needed) and signs its
/// device with the self-signing key. Returns the master and self-signing keys.
async fn cross_sign(peer: &Peer) -> (SigningKey, SigningKey) {
    let user = peer.user();
    let (master, self_signing, user_signing) =
        (SigningKey::new(), SigningKey::new(), SigningKey::new());
    let mut ssk = self_signing.key_object(user, "self_signing");
    master.sign(user, &mut ssk);
    let mut usk = user_signing.key_object(user, "user_signing");
    master.sign(user, &mut usk);
    let (status, resp) = peer
        .http
        .post(
            &format!("{V3}/keys/device_signing/upload"),
            &json!({
                "master_key": master.key_object(user, "master"),
                "self_signing_key": ssk,
                "user_signing_key": usk,
            }),
        )
        .await;
    assert_eq!(status, 200, "{user}: {resp}");
    let mut device = peer.device.device_keys();
    self_signing.sign(user, &mut device);
    let (status, resp) = peer
        .http
        .post(
            &format!("{V3}/keys/signatures/upload"),
            &json!({ user: { peer.device.device_id.as_str(): device } }),
        )
        .await;
    assert_eq!(status, 200, "{user}: {resp}");
    assert!(
        resp["failures"].as_object().is_none_or(|f| f.is_empty()),
        "{user}: {resp}"
    );
    (master, self_signing)
}

/// Encrypted chat both ways between a Myelin and a Synapse user.
async fn encrypted_chat_both_ways(backend: Backend) {
    let Some((fed, synapse)) = start(backend).await else {
        return;
    };
    let myelin = &fed.servers[0];
    let logs = logs(&fed, &synapse);
    let (mia_id, mia_token, mia_dev) = register(&myelin.client(), "mia", "pw-mia-1234").await;
    let (sam_id, sam_token, sam_dev) = synapse.register("sam", "pw-sam-1234").await;
    let mut mia = Peer::new(myelin.client().with_token(&mia_token), &mia_id, &mia_dev);
    let mut sam = Peer::new(synapse.client().with_token(&sam_token), &sam_id, &sam_dev);
    mia.publish_keys(2).await;
    sam.publish_keys(2).await;
    let mia_cross = cross_sign(&mia).await;
    let sam_cross = cross_sign(&sam).await;
    mia.sync().await;
    sam.sync().await;

    let (status, resp) = mia
        .http
        .post(
            &format!("{V3}/createRoom"),
            &json!({
                "preset": "public_chat",
                "initial_state": [{
                    "type": "m.room.encryption", "state_key": "",
                    "content": { "algorithm": "m.megolm.v1.aes-sha2" },
                }],
            }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let room = resp["room_id"].as_str().expect("room_id").to_owned();
    let (status, resp) = sam
        .http
        .post(
            &format!("{V3}/join/{}?server_name={}", enc(&room), enc(&myelin.name)),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{resp}\n{}", logs());

    // Each reads the other's device keys through their own server, and claims a one-time key.
    let keys_of = |peer: &Peer, device_keys: &serde_json::Map<String, Value>, dev: &str| {
        let device = device_keys
            .get(dev)
            .unwrap_or_else(|| panic!("{dev} in {device_keys:?} for {}", peer.user()));
        let key = |alg: &str| {
            device["keys"][format!("{alg}:{dev}")]
                .as_str()
                .expect("key")
                .to_owned()
        };
        (key("curve25519"), key("ed25519"))
    };
    // Each also sees the other's cross-signing keys, and the device signed by its owner:
    // what a client needs to show the other's device as verified by its owner.
    for (reader, owner, dev, keys) in [
        (&mia, &sam_id, &sam_dev, &sam_cross),
        (&sam, &mia_id, &mia_dev, &mia_cross),
    ] {
        let (status, resp) = reader
            .http
            .post(
                &format!("{V3}/keys/query"),
                &json!({ "device_keys": { owner: [] } }),
            )
            .await;
        assert_eq!(status, 200, "{resp}");
        assert_eq!(
            resp["master_keys"][owner]["keys"][keys.0.key_id()],
            keys.0.public_b64(),
            "{resp}\n{}",
            logs()
        );
        assert_eq!(
            resp["self_signing_keys"][owner]["keys"][keys.1.key_id()],
            keys.1.public_b64(),
            "{resp}"
        );
        assert!(
            resp["device_keys"][owner][dev.as_str()]["signatures"][owner][keys.1.key_id()]
                .is_string(),
            "the owner's signature of the device: {resp}"
        );
    }
    let sam_keys = keys_of(&sam, &mia.query(&sam_id).await, &sam_dev);
    assert_eq!(sam_keys, (sam.curve(), sam.ed()));
    let mia_keys = keys_of(&mia, &sam.query(&mia_id).await, &mia_dev);
    assert_eq!(mia_keys, (mia.curve(), mia.ed()));
    let sam_otk = mia.claim(&sam_id, &sam_dev, &sam_keys.1).await;
    let mia_otk = sam.claim(&mia_id, &mia_dev, &mia_keys.1).await;

    // Megolm keys travel in Olm to-device messages, each way.
    let mut mia_group = GroupSession::new(MegolmConfig::version_1());
    let mut sam_group = GroupSession::new(MegolmConfig::version_1());
    mia.share_room_key(
        (&sam_id, &sam_dev),
        (&sam_keys.0, &sam_keys.1),
        sam_otk,
        &room,
        &mia_group,
        "key-m",
    )
    .await;
    sam.share_room_key(
        (&mia_id, &mia_dev),
        (&mia_keys.0, &mia_keys.1),
        mia_otk,
        &room,
        &sam_group,
        "key-s",
    )
    .await;
    for peer in [&mut mia, &mut sam] {
        let deadline = Instant::now() + CROSSING;
        loop {
            let resp = peer.sync().await;
            if peer
                .receive_to_device(&resp)
                .iter()
                .any(|p| p["type"] == "m.room_key")
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the room key never reached {}\n{}",
                peer.user(),
                logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Encrypted messages each way; each side decrypts the other's.
    send_encrypted(&mia, &mut mia_group, &room, "e-m1", "secret from myelin").await;
    send_encrypted(&sam, &mut sam_group, &room, "e-s1", "secret from synapse").await;
    for (peer, want) in [
        (&mut sam, "secret from myelin"),
        (&mut mia, "secret from synapse"),
    ] {
        let deadline = Instant::now() + CROSSING;
        loop {
            let resp = peer.sync().await;
            if read_timeline(peer, &resp, &room)
                .iter()
                .any(|b| b.as_deref() == Some(want))
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} never decrypted {want:?}\n{}",
                peer.user(),
                logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_content(&fed, &synapse, &[]);
}

/// A room only members of a space may join, on each side: the resident server authorises
/// the other's join (`join_authorised_via_users_server`) once the user is in the space.
async fn restricted_rooms_both_ways(backend: Backend) {
    let Some((fed, synapse)) = start(backend).await else {
        return;
    };
    let myelin = &fed.servers[0];
    let logs = logs(&fed, &synapse);
    let (mia_id, mia_token, _) = register(&myelin.client(), "mia", "pw-mia-1234").await;
    let (sam_id, sam_token, _) = synapse.register("sam", "pw-sam-1234").await;
    let mia = myelin.client().with_token(&mia_token);
    let sam = synapse.client().with_token(&sam_token);

    for (owner, owner_id, joiner, joiner_id, via) in [
        (&sam, &sam_id, &mia, &mia_id, &synapse.name),
        (&mia, &mia_id, &sam, &sam_id, &myelin.name),
    ] {
        let space = create_room(owner, &json!({ "preset": "public_chat", "name": "Space" })).await;
        let room = create_room(
            owner,
            &json!({
                "preset": "private_chat", "name": "Members only",
                "initial_state": [{
                    "type": "m.room.join_rules", "state_key": "",
                    "content": {
                        "join_rule": "restricted",
                        "allow": [{ "type": "m.room_membership", "room_id": space }],
                    },
                }],
            }),
        )
        .await;
        let join = |room: String| {
            let path = format!("{V3}/join/{}?server_name={}", enc(&room), enc(via));
            async move { joiner.post(&path, &json!({})).await }
        };
        // Not in the space yet: refused.
        let (status, resp) = join(room.clone()).await;
        assert_eq!(
            status,
            403,
            "{joiner_id} joined too early: {resp}\n{}",
            logs()
        );
        let (status, resp) = join(space.clone()).await;
        assert_eq!(
            status,
            200,
            "{joiner_id} joining the space: {resp}\n{}",
            logs()
        );
        let (status, resp) = join(room.clone()).await;
        assert_eq!(
            status,
            200,
            "{joiner_id} joining the room: {resp}\n{}",
            logs()
        );
        let (status, member) = owner
            .get(&format!(
                "{V3}/rooms/{}/state/m.room.member/{}",
                enc(&room),
                enc(joiner_id)
            ))
            .await;
        assert_eq!(status, 200, "{member}");
        assert_eq!(member["membership"], "join", "{member}");
        assert_eq!(
            member["join_authorised_via_users_server"],
            owner_id.as_str(),
            "{member}"
        );
    }
    // Sam's join before he was in the space: Myelin refused to make it.
    assert_content(&fed, &synapse, &[&["Request failed", "/make_join/", "403"]]);
}

/// Rooms of versions 10 and 11 (which name their server in the room ID and cite the create
/// event) work both ways too: a room made on each side, joined from the other, with a
/// message each way. Sam then upgrades his version 11 room to 12 and Mia follows him.
async fn older_room_versions(backend: Backend) {
    let Some((fed, synapse)) = start(backend).await else {
        return;
    };
    let myelin = &fed.servers[0];
    let logs = logs(&fed, &synapse);
    let (mia_id, mia_token, _) = register(&myelin.client(), "mia", "pw-mia-1234").await;
    let (sam_id, sam_token, _) = synapse.register("sam", "pw-sam-1234").await;
    let mia = myelin.client().with_token(&mia_token);
    let sam = synapse.client().with_token(&sam_token);
    let mut mia_sync = Syncer::new(mia.clone());
    let mut sam_sync = Syncer::new(sam.clone());
    mia_sync.sync().await;
    sam_sync.sync().await;

    let mut sams_v11 = None;
    for version in ["10", "11"] {
        for (owner, joiner, via) in [(&sam, &mia, &synapse.name), (&mia, &sam, &myelin.name)] {
            let body = json!({ "preset": "public_chat", "room_version": version });
            let room = create_room(owner, &body).await;
            assert_eq!(room_version(owner, &room).await, version);
            if version == "11" && via == &synapse.name {
                sams_v11 = Some(room.clone());
            }
            let (status, resp) = joiner
                .post(
                    &format!("{V3}/join/{}?server_name={}", enc(&room), enc(via)),
                    &json!({}),
                )
                .await;
            assert_eq!(status, 200, "v{version}: {resp}\n{}", logs());
            assert_eq!(room_version(joiner, &room).await, version);
            let from_mia = format!("v{version} from mia in {room}");
            let from_sam = format!("v{version} from sam in {room}");
            send_text(&mia, &room, &format!("m{version}{}", room.len()), &from_mia).await;
            send_text(&sam, &room, &format!("s{version}{}", room.len()), &from_sam).await;
            let seen = sam_sync.until_message(&room, &from_mia, &logs).await;
            assert_eq!(seen["sender"], mia_id.as_str());
            let seen = mia_sync.until_message(&room, &from_sam, &logs).await;
            assert_eq!(seen["sender"], sam_id.as_str());
        }
    }

    // Sam upgrades his version 11 room to 12 on Synapse: Mia sees the tombstone and follows
    // it to the replacement, which names the old room as its predecessor.
    let old = sams_v11.expect("Sam's version 11 room");
    let (status, resp) = sam
        .post(
            &format!("{V3}/rooms/{}/upgrade", enc(&old)),
            &json!({ "new_version": "12" }),
        )
        .await;
    assert_eq!(status, 200, "{resp}\n{}", logs());
    let new = resp["replacement_room"]
        .as_str()
        .expect("replacement_room")
        .to_owned();
    let tombstone = mia_sync
        .until("the tombstone on Myelin", &logs, |r| {
            timeline(r, &old)
                .into_iter()
                .find(|e| e["type"] == "m.room.tombstone")
                .cloned()
        })
        .await;
    assert_eq!(tombstone["content"]["replacement_room"], new.as_str());
    let (status, resp) = mia
        .post(
            &format!("{V3}/join/{}?server_name={}", enc(&new), enc(&synapse.name)),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{resp}\n{}", logs());
    assert_eq!(room_version(&mia, &new).await, "12");
    let (status, create) = mia
        .get(&format!("{V3}/rooms/{}/state/m.room.create/", enc(&new)))
        .await;
    assert_eq!(status, 200, "{create}");
    assert_eq!(create["predecessor"]["room_id"], old.as_str(), "{create}");
    send_text(&mia, &new, "m-upgraded", "followed the tombstone").await;
    let seen = sam_sync
        .until("Mia's message in the upgraded room", &logs, |r| {
            message(r, &new, "followed the tombstone").cloned()
        })
        .await;
    assert_eq!(seen["sender"], mia_id.as_str());
    assert_content(&fed, &synapse, &[]);
}

/// Mia's public room on Myelin with Sam from Synapse in it, both at power 100; returns the
/// room ID.
async fn shared_room(
    mia: &Client,
    sam: &Client,
    sam_id: &str,
    myelin_name: &str,
    logs: &dyn Fn() -> String,
) -> String {
    let room = create_room(
        mia,
        &json!({
            "preset": "public_chat",
            "power_level_content_override": { "users": { sam_id: 100 } },
        }),
    )
    .await;
    let (status, resp) = sam
        .post(
            &format!("{V3}/join/{}?server_name={}", enc(&room), enc(myelin_name)),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{resp}\n{}", logs());
    room
}

/// Whether a sync response lists `user` in `device_lists.changed`.
fn device_list_changed(resp: &Value, user: &str) -> bool {
    resp["device_lists"]["changed"]
        .as_array()
        .is_some_and(|users| users.iter().any(|u| u == user))
}

/// A new device (a second login that publishes its keys) reaches the other server both
/// ways: the other user's `/sync` lists its owner in `device_lists.changed`, and
/// `/keys/query` through the other server returns the new device's keys. So do
/// cross-signing keys set up afterwards.
async fn device_lists_both_ways(backend: Backend) {
    let Some((fed, synapse)) = start(backend).await else {
        return;
    };
    let myelin = &fed.servers[0];
    let logs = logs(&fed, &synapse);
    let (mia_id, mia_token, mia_dev) = register(&myelin.client(), "mia", "pw-mia-1234").await;
    let (sam_id, sam_token, sam_dev) = synapse.register("sam", "pw-sam-1234").await;
    let mut mia = Peer::new(myelin.client().with_token(&mia_token), &mia_id, &mia_dev);
    let mut sam = Peer::new(synapse.client().with_token(&sam_token), &sam_id, &sam_dev);
    mia.publish_keys(1).await;
    sam.publish_keys(1).await;
    shared_room(&mia.http, &sam.http, &sam_id, &myelin.name, &logs).await;
    // Each reads the other's first device once, as a client does on joining an encrypted
    // room: from then on its server tracks the other's device list.
    assert!(mia.query(&sam_id).await.contains_key(&sam_dev));
    assert!(sam.query(&mia_id).await.contains_key(&mia_dev));
    // Drain what joining the room changed (each lists the other once), so that a change
    // seen below is the new device's.
    mia.sync().await;
    sam.sync().await;

    for (owner, server, password, reader) in [
        (&sam_id, synapse.client(), "pw-sam-1234", &mut mia),
        (&mia_id, myelin.client(), "pw-mia-1234", &mut sam),
    ] {
        let (token, device_id) = login_ok(&server, owner, password).await;
        let mut second = Peer::new(server.with_token(&token), owner, &device_id);
        second.publish_keys(1).await;
        until_device_list_changed(reader, owner, &logs).await;
        let devices = reader.query(owner).await;
        let keys = &devices
            .get(&device_id)
            .unwrap_or_else(|| panic!("{device_id} of {owner} in {devices:?}\n{}", logs()))["keys"];
        assert_eq!(
            keys[format!("curve25519:{device_id}")],
            second.curve(),
            "{devices:?}"
        );
        assert_eq!(devices.len(), 2, "{devices:?}");
    }

    // Cross-signing keys set up after the other side started tracking: each then reads the
    // other's new master key through its own server.
    let sam_cross = cross_sign(&sam).await;
    until_device_list_changed(&mut mia, &sam_id, &logs).await;
    assert_master_key(&mia, &sam_id, &sam_cross.0, &logs).await;
    let mia_cross = cross_sign(&mia).await;
    until_device_list_changed(&mut sam, &mia_id, &logs).await;
    assert_master_key(&sam, &mia_id, &mia_cross.0, &logs).await;
    assert_content(&fed, &synapse, &[]);
}

/// Syncs `reader` until its `device_lists.changed` lists `owner`.
async fn until_device_list_changed(reader: &mut Peer, owner: &str, logs: &dyn Fn() -> String) {
    let deadline = Instant::now() + CROSSING;
    while !device_list_changed(&reader.sync().await, owner) {
        assert!(
            Instant::now() < deadline,
            "{} never saw {owner}'s device list change\n{}",
            reader.user(),
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `reader`'s `/keys/query` returns `master` as `owner`'s master key, within a few
/// seconds: Synapse announces a cross-signing upload in more than one update (one per
/// key), so the first change a client is told of may come before the master key has
/// arrived, and clients query again at the next change, as this does.
async fn assert_master_key(
    reader: &Peer,
    owner: &str,
    master: &SigningKey,
    logs: &dyn Fn() -> String,
) {
    let deadline = Instant::now() + CROSSING;
    loop {
        let (status, resp) = reader
            .http
            .post(
                &format!("{V3}/keys/query"),
                &json!({ "device_keys": { owner: [] } }),
            )
            .await;
        assert_eq!(status, 200, "{resp}");
        let got = &resp["master_keys"][owner]["keys"][master.key_id()];
        if *got == master.public_b64() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{owner}'s master key for {}: {resp}\n{}",
            reader.user(),
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The content of `room`'s `(event_type, "")` state as two clients agree on it.
async fn agreed_content(
    a: &Client,
    b: &Client,
    room: &str,
    event_type: &str,
    logs: &dyn Fn() -> String,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let key = (event_type.to_owned(), String::new());
    let agreed = agreed_state(a, b, room, logs, |s| {
        s.get(&key).is_some_and(|(_, c)| done(c))
    })
    .await;
    agreed[&key].1.clone()
}

/// Server ACLs and redactions of state events, each set on one side and applied alike on
/// the other: an ACL that denies a third server (and keeps allowing IP-literal names, which
/// both test servers are), and a topic and a name whose events are redacted.
async fn server_acl_and_state_redaction_both_ways(backend: Backend) {
    let Some((fed, synapse)) = start(backend).await else {
        return;
    };
    let myelin = &fed.servers[0];
    let logs = logs(&fed, &synapse);
    let (_, mia_token, _) = register(&myelin.client(), "mia", "pw-mia-1234").await;
    let (sam_id, sam_token, _) = synapse.register("sam", "pw-sam-1234").await;
    let mia = myelin.client().with_token(&mia_token);
    let sam = synapse.client().with_token(&sam_token);
    let room = shared_room(&mia, &sam, &sam_id, &myelin.name, &logs).await;

    for (setter, denied) in [(&sam, "evil.example.org"), (&mia, "worse.example.org")] {
        put_state(
            setter,
            &room,
            "m.room.server_acl",
            json!({ "allow": ["*"], "deny": [denied], "allow_ip_literals": true }),
        )
        .await;
        let acl = agreed_content(&mia, &sam, &room, "m.room.server_acl", &logs, |c| {
            c["deny"] == json!([denied])
        })
        .await;
        assert_eq!(acl["allow_ip_literals"], true, "{acl}");
    }
    // The ACL allows both servers: messages still cross both ways.
    send_text(&sam, &room, "s-acl", "still allowed (synapse)").await;
    send_text(&mia, &room, "m-acl", "still allowed (myelin)").await;
    let mut mia_sync = Syncer::new(mia.clone());
    let mut sam_sync = Syncer::new(sam.clone());
    mia_sync
        .until_message(&room, "still allowed (synapse)", &logs)
        .await;
    sam_sync
        .until_message(&room, "still allowed (myelin)", &logs)
        .await;

    // Sam sets the topic and Mia redacts it; Mia names the room and Sam redacts the name.
    for (setter, redacter, event_type, content) in [
        (&sam, &mia, "m.room.topic", json!({ "topic": "soon gone" })),
        (&mia, &sam, "m.room.name", json!({ "name": "soon gone" })),
    ] {
        let event = put_state(setter, &room, event_type, content).await;
        agreed_content(&mia, &sam, &room, event_type, &logs, |c| {
            c.as_object().is_some_and(|o| !o.is_empty())
        })
        .await;
        let (status, resp) = redacter
            .put(
                &format!(
                    "{V3}/rooms/{}/redact/{}/r-{event_type}",
                    enc(&room),
                    enc(&event)
                ),
                &json!({ "reason": "redacted state" }),
            )
            .await;
        assert_eq!(status, 200, "{resp}");
        let redacted = agreed_content(&mia, &sam, &room, event_type, &logs, |c| {
            c.as_object().is_some_and(|o| o.is_empty())
        })
        .await;
        assert_eq!(redacted, json!({}));
    }
    assert_content(&fed, &synapse, &[]);
}

/// The bodies of the messages in the last `limit` events of `room`, as `client` reads them
/// backwards with `/messages`.
async fn recent_bodies(client: &Client, room: &str, limit: u32) -> Vec<String> {
    let (status, resp) = client
        .get(&format!(
            "{V3}/rooms/{}/messages?dir=b&limit={limit}",
            enc(room)
        ))
        .await;
    assert_eq!(status, 200, "{resp}");
    resp["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

/// Myelin goes down while Sam writes on Synapse, and Synapse goes down too before it could
/// deliver: after its restart Synapse only knows that Myelin is behind. Once both are back
/// and Myelin sends Synapse something, Synapse catches Myelin up with the newest event of
/// the room alone, and Myelin fetches the ones before it from Synapse (`get_missing_events`).
async fn synapse_catches_up_myelin(backend: Backend) {
    let Some((mut fed, mut synapse)) = start(backend).await else {
        return;
    };
    let logs = logs(&fed, &synapse);
    let myelin_name = fed.servers[0].name.clone();
    let (_, mia_token, _) = register(&fed.servers[0].client(), "mia", "pw-mia-1234").await;
    let (sam_id, sam_token, _) = synapse.register("sam", "pw-sam-1234").await;
    let mia = fed.servers[0].client().with_token(&mia_token);
    let sam = synapse.client().with_token(&sam_token);
    let room = shared_room(&mia, &sam, &sam_id, &myelin_name, &logs).await;
    let mut mia_sync = Syncer::new(mia.clone());
    send_text(&sam, &room, "s0", "before the outage").await;
    mia_sync
        .until_message(&room, "before the outage", &logs)
        .await;

    fed.servers[0].server.kill();
    let missed = [
        "while myelin was down 1",
        "while myelin was down 2",
        "while myelin was down 3",
    ];
    for (i, body) in missed.iter().enumerate() {
        send_text(&sam, &room, &format!("down{i}"), body).await;
    }
    // Synapse has tried to deliver and failed; its retries die with it.
    let deadline = Instant::now() + CROSSING;
    while !synapse.log_tail().contains("ConnectionRefusedError") {
        assert!(
            Instant::now() < deadline,
            "Synapse never tried to reach the stopped Myelin\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    synapse.kill();
    fed.servers[0].server.restart().await;
    synapse.restart().await;
    send_text(&mia, &room, "m-back", "myelin is back").await;
    let deadline = Instant::now() + CROSSING;
    loop {
        let bodies = recent_bodies(&mia, &room, 20).await;
        if missed.iter().all(|m| bodies.iter().any(|b| b == m)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Myelin never caught up with Synapse: {bodies:?}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Synapse's catch-up sent the newest message alone: Myelin asked for the others.
    assert!(
        synapse
            .log()
            .contains("\"POST /_matrix/federation/v1/get_missing_events/"),
        "Myelin never fetched the missed events\n{}",
        logs()
    );
    assert_content(&fed, &synapse, &[]);
}

backend_tests!(
    older_room_versions,
    myelin_user_joins_synapse_room,
    synapse_user_joins_myelin_room,
    encrypted_chat_both_ways,
    restricted_rooms_both_ways,
    device_lists_both_ways,
    server_acl_and_state_redaction_both_ways,
    synapse_catches_up_myelin
);
