//! The inbound pipeline against a real database (SQLite, and PostgreSQL
//! when `MYELIN_TEST_POSTGRES` is set): a local room created through the
//! normal pipeline receives events genuinely signed by a second key acting
//! as `remote.test`, whose missing events a [`Remote`] serves from a map.

use std::collections::HashMap;
use std::sync::Mutex;

use myelin_proto::auth;
use myelin_proto::canonical_json::{Object, Value, parse_object};
use myelin_proto::signing::{KeyPair, PublicKey};
use myelin_proto::verify::KeyRing;
use myelin_proto::{Pdu, PduBuilder, RoomVersion};
use ruma::{EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, ServerName};
use serde_json::json;

use super::{
    BoxFuture, MAX_PDUS_PER_CALL, MISSING_EVENTS_LIMIT, Outcome, RemoteError, RemoteEvents,
    StateIds,
};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::rooms::EventSpec;
use crate::rooms::create::{CreateRoom, Preset, create_room};
use crate::state::AppState;
use crate::storage::{self, Db, events, memberships, rooms};

const REMOTE: &str = "remote.test";

/// Keys of both servers.
struct Keys(HashMap<(String, String), PublicKey>);

impl super::KeySource for Keys {}

impl KeyRing for Keys {
    fn key(&self, server: &ServerName, key_id: &str, _ts: i64) -> Option<PublicKey> {
        self.0
            .get(&(server.to_string(), key_id.to_owned()))
            .copied()
    }
}

/// What `remote.test` holds and was asked.
#[derive(Default)]
struct Remote {
    events: Mutex<HashMap<OwnedEventId, Pdu>>,
    state: Mutex<HashMap<OwnedEventId, StateIds>>,
    calls: Mutex<Vec<String>>,
}

impl Remote {
    fn add(&self, pdu: &Pdu) {
        self.events
            .lock()
            .expect("lock")
            .insert(pdu.event_id().to_owned(), pdu.clone());
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("lock").clone()
    }
}

impl RemoteEvents for Remote {
    fn missing_events<'a>(
        &'a self,
        _room_id: &'a RoomId,
        earliest: &'a [OwnedEventId],
        latest: &'a [OwnedEventId],
        limit: u32,
        _min_depth: i64,
    ) -> BoxFuture<'a, Result<Vec<Object>, RemoteError>> {
        Box::pin(async move {
            self.calls
                .lock()
                .expect("lock")
                .push(format!("missing_events limit={limit}"));
            let events = self.events.lock().expect("lock");
            // Walk back from `latest`, newest first, as servers answer.
            let mut out = Vec::new();
            let mut frontier: Vec<OwnedEventId> = latest
                .iter()
                .filter_map(|l| events.get(l))
                .flat_map(|p| p.prev_events().to_vec())
                .collect();
            while let Some(id) = frontier.pop() {
                if out.len() >= limit as usize || earliest.contains(&id) {
                    continue;
                }
                if let Some(p) = events.get(&id) {
                    out.push(p.json().clone());
                    frontier.extend(p.prev_events().iter().cloned());
                }
            }
            Ok(out)
        })
    }

    fn event<'a>(
        &'a self,
        _room_id: &'a RoomId,
        event_id: &'a EventId,
    ) -> BoxFuture<'a, Result<Object, RemoteError>> {
        Box::pin(async move {
            self.calls
                .lock()
                .expect("lock")
                .push(format!("event {event_id}"));
            self.events
                .lock()
                .expect("lock")
                .get(event_id)
                .map(|p| p.json().clone())
                .ok_or_else(|| RemoteError("404".into()))
        })
    }

    fn state_ids<'a>(
        &'a self,
        _room_id: &'a RoomId,
        event_id: &'a EventId,
    ) -> BoxFuture<'a, Result<StateIds, RemoteError>> {
        Box::pin(async move {
            self.calls
                .lock()
                .expect("lock")
                .push(format!("state_ids {event_id}"));
            self.state
                .lock()
                .expect("lock")
                .get(event_id)
                .cloned()
                .ok_or_else(|| RemoteError("404".into()))
        })
    }
}

/// A PostgreSQL database of its own, when the suite has a cluster.
async fn postgres_db() -> Option<Db> {
    let base = std::env::var("MYELIN_TEST_POSTGRES").ok()?;
    use sea_orm::ConnectionTrait;
    let name = format!(
        "myelin_unit_ingest_{}_{}",
        std::process::id(),
        crate::random::lower_alnum(12)
    );
    let admin = sea_orm::Database::connect(format!("{base}/postgres"))
        .await
        .expect("connect to PostgreSQL");
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create database");
    admin.close().await.ok();
    let db = Db::connect(&format!("{base}/{name}"), 4)
        .await
        .expect("connect");
    db.migrate().await.expect("migrate");
    Some(db)
}

/// Runs a scenario on SQLite and, when available, PostgreSQL.
async fn on_each_backend<F, Fut>(scenario: F)
where
    F: Fn(Env) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    scenario(Env::new(storage::test_db().await).await).await;
    if let Some(db) = postgres_db().await {
        scenario(Env::new(db).await).await;
    }
}

struct Env {
    state: AppState,
    room: OwnedRoomId,
    alice: OwnedUserId,
    bob: OwnedUserId,
    remote_key: KeyPair,
    keys: Keys,
    remote: Remote,
}

fn object(v: serde_json::Value) -> Object {
    parse_object(v.to_string().as_bytes()).expect("object")
}

fn id(s: &str) -> OwnedEventId {
    OwnedEventId::try_from(s).expect("event id")
}

impl Env {
    async fn new(db: Db) -> Self {
        let config = Config::load_with_env(
            None,
            [("MYELIN__SERVER__NAME".to_owned(), "local.test".to_owned())],
        )
        .expect("config");
        let local_key = KeyPair::from_seed("1", &[1; 32]).expect("key");
        let remote_key = KeyPair::from_seed("1", &[2; 32]).expect("key");
        let keys = Keys(HashMap::from([
            (
                ("local.test".to_owned(), local_key.key_id().to_owned()),
                local_key.public_key(),
            ),
            (
                (REMOTE.to_owned(), remote_key.key_id().to_owned()),
                remote_key.public_key(),
            ),
        ]));
        let server_name = ServerName::parse("local.test").expect("name");
        let metrics = Metrics::new().expect("metrics");
        let federation = crate::federation::FederationService::new(
            &config,
            &server_name,
            std::slice::from_ref(&local_key),
            db.clone(),
            &metrics,
        )
        .expect("federation service");
        let state = AppState::new(
            config,
            server_name,
            db,
            vec![local_key],
            metrics,
            federation,
        );
        let alice = OwnedUserId::try_from("@alice:local.test").expect("user");
        let room = create_room(
            &state,
            &alice,
            CreateRoom {
                version: RoomVersion::DEFAULT,
                preset: Preset::PublicChat,
                is_public: true,
                creation_content: Object::new(),
                power_level_override: None,
                initial_state: Vec::new(),
                name: None,
                topic: None,
                invite: Vec::new(),
                is_direct: false,
                alias: None,
            },
        )
        .await
        .expect("create room");
        Self {
            state,
            room,
            alice,
            bob: OwnedUserId::try_from("@bob:remote.test").expect("user"),
            remote_key,
            keys,
            remote: Remote::default(),
        }
    }

    fn db(&self) -> &Db {
        self.state.db()
    }

    async fn current(&self) -> HashMap<(String, String), String> {
        storage::state::current_ids(self.db(), self.room.as_str(), None)
            .await
            .expect("current")
            .into_iter()
            .map(|(t, k, id)| ((t, k), id))
            .collect()
    }

    async fn extremities(&self) -> Vec<String> {
        let mut ids: Vec<String> = rooms::forward_extremities(self.db(), self.room.as_str())
            .await
            .expect("extremities")
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        ids.sort();
        ids
    }

    async fn timeline(&self) -> Vec<String> {
        events::timeline_page(self.db(), self.room.as_str(), 0, i64::MAX, true, 1000)
            .await
            .expect("timeline")
            .into_iter()
            .map(|e| e.event_id)
            .collect()
    }

    async fn status(&self, event: &Pdu) -> Option<events::EventStatus> {
        events::statuses(self.db(), &[event.event_id().as_str()])
            .await
            .expect("status")
            .into_iter()
            .next()
    }

    /// The depth of an event, stored or held by the remote.
    async fn depth_of(&self, event_id: &EventId) -> i64 {
        if let Some(s) = events::statuses(self.db(), &[event_id.as_str()])
            .await
            .expect("status")
            .into_iter()
            .next()
        {
            return s.depth;
        }
        self.remote.events.lock().expect("lock")[event_id].depth()
    }

    /// An event signed by `sender`'s server key (`remote.test`'s unless
    /// `key` is given), with the auth events `auth_state` selects.
    #[allow(clippy::too_many_arguments)]
    async fn event_with(
        &self,
        key: &KeyPair,
        sender: &OwnedUserId,
        event_type: &str,
        state_key: Option<&str>,
        content: serde_json::Value,
        prevs: &[OwnedEventId],
        auth_state: &HashMap<(String, String), String>,
        ts: i64,
    ) -> Pdu {
        let content = object(content);
        let version = RoomVersion::DEFAULT;
        let auth_events =
            auth::auth_types_for_event(version.rules(), event_type, sender, state_key, &content)
                .iter()
                .filter_map(|k| auth_state.get(k).map(|s| id(s)))
                .collect();
        let mut depth = 0;
        for p in prevs {
            depth = depth.max(self.depth_of(p).await);
        }
        let mut builder = PduBuilder::new(event_type, state_key, content, sender, Some(&self.room));
        builder.prev_events = prevs.to_vec();
        builder.auth_events = auth_events;
        builder.depth = depth + 1;
        builder.origin_server_ts = ts;
        builder
            .build(version, sender.server_name().as_str(), key)
            .expect("build")
    }

    /// A `remote.test` event built on the room's current state and
    /// forward extremities.
    async fn event(
        &self,
        sender: &OwnedUserId,
        event_type: &str,
        state_key: Option<&str>,
        content: serde_json::Value,
    ) -> Pdu {
        let prevs: Vec<OwnedEventId> = self.extremities().await.iter().map(|s| id(s)).collect();
        let current = self.current().await;
        let ts = crate::time::now_ms();
        self.event_with(
            &self.remote_key,
            sender,
            event_type,
            state_key,
            content,
            &prevs,
            &current,
            ts,
        )
        .await
    }

    async fn message(&self, prevs: &[OwnedEventId], body: &str) -> Pdu {
        let current = self.current().await;
        self.event_with(
            &self.remote_key,
            &self.bob,
            "m.room.message",
            None,
            json!({ "msgtype": "m.text", "body": body }),
            prevs,
            &current,
            crate::time::now_ms(),
        )
        .await
    }

    async fn ingest(&self, pdus: Vec<Object>) -> Vec<(String, Outcome)> {
        let guard = self.state.rooms().lock(&self.room).await;
        guard
            .ingest(
                &self.state,
                &ServerName::parse(REMOTE).expect("name"),
                pdus,
                &self.keys,
                &self.remote,
            )
            .await
            .expect("ingest")
    }

    async fn ingest_one(&self, pdu: &Pdu) -> Outcome {
        self.ingest(vec![pdu.json().clone()]).await.remove(0).1
    }

    async fn join_bob(&self) -> Pdu {
        let bob = self.bob.as_str();
        let join = self
            .event(
                &self.bob,
                "m.room.member",
                Some(bob),
                json!({ "membership": "join" }),
            )
            .await;
        assert_eq!(self.ingest_one(&join).await, Outcome::Accepted);
        join
    }

    async fn local(
        &self,
        event_type: &str,
        state_key: Option<&str>,
        content: serde_json::Value,
    ) -> OwnedEventId {
        self.state
            .rooms()
            .lock(&self.room)
            .await
            .append(
                &self.state,
                &self.alice,
                EventSpec::new(event_type, state_key, object(content)),
                None,
            )
            .await
            .expect("append")
    }

    async fn prev_events_of(&self, event_id: &EventId) -> Vec<String> {
        let row = events::get(self.db(), event_id.as_str())
            .await
            .expect("get")
            .expect("stored");
        let pdu = Pdu::from_json(RoomVersion::DEFAULT, row.json.as_bytes()).expect("pdu");
        let mut prevs: Vec<String> = pdu.prev_events().iter().map(ToString::to_string).collect();
        prevs.sort();
        prevs
    }

    async fn content_of(&self, event_id: &str) -> serde_json::Value {
        let row = events::get(self.db(), event_id)
            .await
            .expect("get")
            .expect("stored");
        let v: serde_json::Value = serde_json::from_str(&row.json).expect("json");
        v["content"].clone()
    }
}

fn key(t: &str, k: &str) -> (String, String) {
    (t.to_owned(), k.to_owned())
}

#[tokio::test]
async fn remote_join_and_messages_enter_timeline_and_state() {
    on_each_backend(|env| async move {
        let bob = env.bob.as_str();
        let join = env
            .event(
                &env.bob,
                "m.room.member",
                Some(bob),
                json!({ "membership": "join" }),
            )
            .await;
        env.remote.add(&join);
        // Sent in the same batch, so built on a state the room has not
        // seen yet: the one after the join.
        let mut after_join = env.current().await;
        after_join.insert(key("m.room.member", bob), join.event_id().to_string());
        let msg = env
            .event_with(
                &env.remote_key.clone(),
                &env.bob,
                "m.room.message",
                None,
                json!({ "msgtype": "m.text", "body": "hello" }),
                &[join.event_id().to_owned()],
                &after_join,
                crate::time::now_ms(),
            )
            .await;
        let out = env
            .ingest(vec![msg.json().clone(), join.json().clone()])
            .await;
        assert_eq!(
            out,
            vec![
                (msg.event_id().to_string(), Outcome::Accepted),
                (join.event_id().to_string(), Outcome::Accepted)
            ]
        );
        let membership = memberships::get(env.db(), env.room.as_str(), bob)
            .await
            .expect("get")
            .expect("member");
        assert_eq!(membership.membership, "join");
        assert_eq!(
            env.current().await.get(&key("m.room.member", bob)),
            Some(&join.event_id().to_string())
        );
        let timeline = env.timeline().await;
        assert_eq!(
            timeline[timeline.len() - 2..],
            [join.event_id().to_string(), msg.event_id().to_string()]
        );
        assert_eq!(env.extremities().await, vec![msg.event_id().to_string()]);

        // Receiving it again changes nothing.
        assert_eq!(env.ingest_one(&msg).await, Outcome::Accepted);
        assert_eq!(env.timeline().await, timeline);

        // The next local event builds on it.
        let reply = env
            .local(
                "m.room.message",
                None,
                json!({ "msgtype": "m.text", "body": "hi bob" }),
            )
            .await;
        assert_eq!(
            env.prev_events_of(&reply).await,
            vec![msg.event_id().to_string()]
        );

        // Read-side helpers: the auth chain and the state at an event.
        let chain = events::auth_chain_ids(env.db(), &[msg.event_id().as_str()], 1000)
            .await
            .expect("chain")
            .expect("bounded");
        let current = env.current().await;
        for k in [
            key("m.room.member", bob),
            key("m.room.power_levels", ""),
            key("m.room.join_rules", ""),
            key("m.room.member", env.alice.as_str()),
        ] {
            assert!(chain.contains(&current[&k]), "{k:?} not in {chain:?}");
        }
        assert_eq!(
            events::auth_chain_ids(env.db(), &[msg.event_id().as_str()], 2)
                .await
                .expect("chain"),
            None
        );
        let before = storage::state::state_at_event(env.db(), msg.event_id().as_str(), false)
            .await
            .expect("state")
            .expect("has state");
        assert!(
            before
                .iter()
                .any(|e| e.event_id == join.event_id().as_str())
        );
        let before_join = storage::state::state_at_event(env.db(), join.event_id().as_str(), false)
            .await
            .expect("state")
            .expect("has state");
        assert!(!before_join.iter().any(|e| e.state_key == bob));
    })
    .await;
}

#[tokio::test]
async fn bad_events_are_dropped_and_the_batch_goes_on() {
    on_each_backend(|env| async move {
        let bob = env.bob.as_str();
        let impostor = KeyPair::from_seed("1", &[9; 32]).expect("key");
        let current = env.current().await;
        let prevs: Vec<OwnedEventId> = env.extremities().await.iter().map(|s| id(s)).collect();
        let forged = env
            .event_with(
                &impostor,
                &env.bob,
                "m.room.member",
                Some(bob),
                json!({ "membership": "join" }),
                &prevs,
                &current,
                // An event ID leaves signatures out: built in the same
                // millisecond, the forgery would share the genuine join's ID.
                crate::time::now_ms() - 1_000,
            )
            .await;
        let mut malformed = forged.json().clone();
        malformed.remove("depth");
        let mut other_room = forged.json().clone();
        other_room.insert("room_id".into(), Value::from("!elsewhere:remote.test"));
        let join = env
            .event(
                &env.bob,
                "m.room.member",
                Some(bob),
                json!({ "membership": "join" }),
            )
            .await;

        let out = env
            .ingest(vec![
                forged.json().clone(),
                malformed,
                other_room,
                Object::new(),
                join.json().clone(),
            ])
            .await;
        assert!(
            matches!(&out[0].1, Outcome::Dropped(r) if r.contains("signature")),
            "{out:?}"
        );
        assert_eq!(out[0].0, forged.event_id().as_str());
        assert!(
            matches!(&out[1].1, Outcome::Dropped(r) if r.contains("depth")),
            "{out:?}"
        );
        assert!(matches!(&out[2].1, Outcome::Dropped(_)), "{out:?}");
        assert!(matches!(&out[3].1, Outcome::Dropped(_)), "{out:?}");
        assert_eq!(out[4], (join.event_id().to_string(), Outcome::Accepted));
        assert!(
            env.status(&forged).await.is_none(),
            "forged events are not stored"
        );
    })
    .await;
}

#[tokio::test]
async fn content_hash_mismatch_is_stored_redacted() {
    on_each_backend(|env| async move {
        let join = env.join_bob().await;
        let msg = env.message(&[join.event_id().to_owned()], "original").await;
        let mut tampered = msg.json().clone();
        tampered.insert(
            "content".into(),
            Value::Object(object(json!({ "msgtype": "m.text", "body": "tampered" }))),
        );
        let out = env.ingest(vec![tampered]).await;
        assert_eq!(out, vec![(msg.event_id().to_string(), Outcome::Accepted)]);
        assert_eq!(env.content_of(msg.event_id().as_str()).await, json!({}));
        assert!(env.timeline().await.contains(&msg.event_id().to_string()));
    })
    .await;
}

#[tokio::test]
async fn event_failing_auth_is_rejected_and_changes_nothing() {
    on_each_backend(|env| async move {
        let join = env.join_bob().await;
        let carol = OwnedUserId::try_from("@carol:remote.test").expect("user");
        let name = env
            .event(
                &carol,
                "m.room.name",
                Some(""),
                json!({ "name": "taken over" }),
            )
            .await;
        let before = env.current().await;
        let outcome = env.ingest_one(&name).await;
        assert!(
            matches!(&outcome, Outcome::Rejected(r) if r.contains("not joined")),
            "{outcome:?}"
        );
        assert_eq!(env.current().await, before);
        assert_eq!(env.extremities().await, vec![join.event_id().to_string()]);
        assert!(!env.timeline().await.contains(&name.event_id().to_string()));
        let status = env.status(&name).await.expect("stored");
        assert!(status.rejected_reason.is_some());
        // Again: still rejected, nothing more stored.
        assert!(matches!(env.ingest_one(&name).await, Outcome::Rejected(_)));

        // An event citing the rejected one is still processed.
        let msg = env.message(&[name.event_id().to_owned()], "after").await;
        assert_eq!(env.ingest_one(&msg).await, Outcome::Accepted);
        assert!(env.timeline().await.contains(&msg.event_id().to_string()));
        assert_eq!(
            env.current().await,
            before,
            "the rejected event is not state"
        );
    })
    .await;
}

#[tokio::test]
async fn message_from_a_locally_banned_user_is_soft_failed() {
    on_each_backend(|env| async move {
        let join = env.join_bob().await;
        let pre_ban = env.current().await;
        let ban = env
            .local(
                "m.room.member",
                Some(env.bob.as_str()),
                json!({ "membership": "ban" }),
            )
            .await;
        let msg = env
            .event_with(
                &env.remote_key.clone(),
                &env.bob,
                "m.room.message",
                None,
                json!({ "msgtype": "m.text", "body": "you can't ban me" }),
                &[join.event_id().to_owned()],
                &pre_ban,
                crate::time::now_ms(),
            )
            .await;
        assert_eq!(env.ingest_one(&msg).await, Outcome::SoftFailed);
        let status = env.status(&msg).await.expect("stored");
        assert!(status.soft_failed && status.rejected_reason.is_none());
        assert!(!env.timeline().await.contains(&msg.event_id().to_string()));
        assert_eq!(env.extremities().await, vec![ban.to_string()]);
        let membership = memberships::get(env.db(), env.room.as_str(), env.bob.as_str())
            .await
            .expect("get")
            .expect("member");
        assert_eq!(membership.membership, "ban");
    })
    .await;
}

/// The room's power levels content with `change` applied.
async fn power_levels_with(
    env: &Env,
    change: impl FnOnce(&mut serde_json::Value),
) -> serde_json::Value {
    let current = env.current().await;
    let mut content = env
        .content_of(&current[&key("m.room.power_levels", "")])
        .await;
    change(&mut content);
    content
}

#[tokio::test]
async fn concurrent_power_level_changes_are_resolved() {
    on_each_backend(|env| async move {
        let bob = env.bob.to_string();
        env.join_bob().await;
        let promote = power_levels_with(&env, |c| c["users"][&bob] = json!(100)).await;
        let p1 = env.local("m.room.power_levels", Some(""), promote).await;
        let at_p1 = env.current().await;

        // Remote and local both change the power levels on P1; the remote
        // event is older by its timestamp.
        let remote_change = power_levels_with(&env, |c| c["kick"] = json!(70)).await;
        let local_change = power_levels_with(&env, |c| c["ban"] = json!(60)).await;
        let p2 = env
            .local("m.room.power_levels", Some(""), local_change)
            .await;
        let p3 = env
            .event_with(
                &env.remote_key.clone(),
                &env.bob,
                "m.room.power_levels",
                Some(""),
                remote_change,
                std::slice::from_ref(&p1),
                &at_p1,
                crate::time::now_ms() - 60_000,
            )
            .await;
        assert_eq!(env.ingest_one(&p3).await, Outcome::Accepted);

        let mut both = vec![p2.to_string(), p3.event_id().to_string()];
        both.sort();
        assert_eq!(env.extremities().await, both);
        // v2.1: alice (the creator, infinite power) sorts before bob, so
        // bob's change is applied last and wins, though it is older (a
        // "newest wins" merge would keep P2).
        assert_eq!(
            env.current().await[&key("m.room.power_levels", "")],
            p3.event_id().as_str()
        );

        // The next local event merges the fork.
        let merge = env
            .local(
                "m.room.message",
                None,
                json!({ "msgtype": "m.text", "body": "merged" }),
            )
            .await;
        assert_eq!(env.prev_events_of(&merge).await, both);
        assert_eq!(env.extremities().await, vec![merge.to_string()]);
    })
    .await;
}

#[tokio::test]
async fn missing_prev_events_are_fetched() {
    on_each_backend(|env| async move {
        let join = env.join_bob().await;
        let m1 = env.message(&[join.event_id().to_owned()], "one").await;
        env.remote.add(&m1);
        let m2 = env.message(&[m1.event_id().to_owned()], "two").await;
        env.remote.add(&m2);
        assert_eq!(env.ingest_one(&m2).await, Outcome::Accepted);
        let status = env.status(&m1).await.expect("fetched");
        assert!(!status.outlier && status.rejected_reason.is_none());
        let timeline = env.timeline().await;
        assert_eq!(
            timeline[timeline.len() - 2..],
            [m1.event_id().to_string(), m2.event_id().to_string()]
        );
        assert_eq!(env.extremities().await, vec![m2.event_id().to_string()]);
        assert_eq!(
            env.remote.calls(),
            vec![format!("missing_events limit={MISSING_EVENTS_LIMIT}")]
        );
    })
    .await;
}

#[tokio::test]
async fn a_deep_gap_is_bridged_with_the_state_at_it() {
    on_each_backend(|env| async move {
        let join = env.join_bob().await;
        let state_ids = StateIds {
            pdu_ids: env.current().await.values().map(|s| id(s)).collect(),
            auth_chain_ids: Vec::new(),
        };
        let mut chain = Vec::new();
        let mut prev = join.event_id().to_owned();
        for i in 0..30 {
            let m = env.message(&[prev.clone()], &format!("m{i}")).await;
            env.remote.add(&m);
            env.remote
                .state
                .lock()
                .expect("lock")
                .insert(m.event_id().to_owned(), state_ids.clone());
            prev = m.event_id().to_owned();
            chain.push(m);
        }
        let last = chain.last().expect("chain").clone();
        assert_eq!(env.ingest_one(&last).await, Outcome::Accepted);

        // One bounded get_missing_events (the 10 before the last), then
        // the state at the oldest prev still missing.
        let gap_end = &chain[30 - 2 - MISSING_EVENTS_LIMIT as usize];
        assert_eq!(
            env.remote.calls(),
            vec![
                format!("missing_events limit={MISSING_EVENTS_LIMIT}"),
                format!("state_ids {}", gap_end.event_id()),
                format!("event {}", gap_end.event_id()),
            ]
        );
        assert!(env.status(gap_end).await.expect("stored").outlier);
        for older in &chain[..30 - 2 - MISSING_EVENTS_LIMIT as usize] {
            assert!(env.status(older).await.is_none(), "beyond the bound");
        }
        for fetched in &chain[30 - 1 - MISSING_EVENTS_LIMIT as usize..] {
            assert!(
                env.timeline()
                    .await
                    .contains(&fetched.event_id().to_string())
            );
        }
        assert!(
            env.extremities()
                .await
                .contains(&last.event_id().to_string())
        );
    })
    .await;
}

#[tokio::test]
async fn an_oversized_batch_is_cut_at_the_limit() {
    on_each_backend(|env| async move {
        let join = env.join_bob().await;
        let mut prev = join.event_id().to_owned();
        let mut batch = Vec::new();
        for i in 0..MAX_PDUS_PER_CALL + 3 {
            let m = env.message(&[prev.clone()], &format!("m{i}")).await;
            env.remote.add(&m);
            prev = m.event_id().to_owned();
            batch.push(m.json().clone());
        }
        let out = env.ingest(batch).await;
        assert!(
            out[..MAX_PDUS_PER_CALL]
                .iter()
                .all(|(_, o)| *o == Outcome::Accepted)
        );
        assert!(
            out[MAX_PDUS_PER_CALL..]
                .iter()
                .all(|(_, o)| matches!(o, Outcome::Dropped(r) if r.contains("limit")))
        );
        assert!(env.remote.calls().is_empty());
    })
    .await;
}

/// A key ring that learns the keys of servers it lacks from `directory`
/// when the pipeline asks for them ([`super::KeySource::prepare`]), as the
/// federation ring fetches them.
struct LearningKeys {
    known: Mutex<HashMap<(String, String), PublicKey>>,
    directory: HashMap<(String, String), PublicKey>,
    asked: Mutex<Vec<String>>,
}

impl KeyRing for LearningKeys {
    fn key(&self, server: &ServerName, key_id: &str, _ts: i64) -> Option<PublicKey> {
        self.known
            .lock()
            .expect("lock")
            .get(&(server.to_string(), key_id.to_owned()))
            .copied()
    }
}

impl super::KeySource for LearningKeys {
    fn prepare<'a>(&'a self, pdus: &'a [Pdu]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            for pdu in pdus {
                for server in pdu.required_signers() {
                    self.asked.lock().expect("lock").push(server.to_string());
                    for ((s, k), key) in &self.directory {
                        if *s == server.as_str() {
                            self.known
                                .lock()
                                .expect("lock")
                                .insert((s.clone(), k.clone()), *key);
                        }
                    }
                }
            }
        })
    }
}

/// A missing prev event sent by a third server's user is verified with
/// that server's key, which the ring is asked to get first: it is then
/// processed (rejected here: Carol never joined), not dropped, and the
/// event citing it is accepted.
#[tokio::test]
async fn fetched_events_of_a_third_server_get_their_keys() {
    on_each_backend(|env| async move {
        let join = env.join_bob().await;
        let third_key = KeyPair::from_seed("1", &[3; 32]).expect("key");
        let carol = OwnedUserId::try_from("@carol:third.test").expect("user");
        let current = env.current().await;
        let theirs = env
            .event_with(
                &third_key,
                &carol,
                "m.room.message",
                None,
                json!({ "msgtype": "m.text", "body": "from a third server" }),
                &[join.event_id().to_owned()],
                &current,
                crate::time::now_ms(),
            )
            .await;
        env.remote.add(&theirs);
        let m = env.message(&[theirs.event_id().to_owned()], "after").await;
        env.remote.add(&m);
        let keys = LearningKeys {
            known: Mutex::new(env.keys.0.clone()),
            directory: HashMap::from([(
                ("third.test".to_owned(), third_key.key_id().to_owned()),
                third_key.public_key(),
            )]),
            asked: Mutex::new(Vec::new()),
        };
        let outcome = env
            .state
            .rooms()
            .lock(&env.room)
            .await
            .ingest(
                &env.state,
                &ServerName::parse(REMOTE).expect("name"),
                vec![m.json().clone()],
                &keys,
                &env.remote,
            )
            .await
            .expect("ingest");
        assert_eq!(outcome[0].1, Outcome::Accepted);
        assert!(
            keys.asked
                .lock()
                .expect("lock")
                .contains(&"third.test".to_owned())
        );
        let status = env.status(&theirs).await.expect("fetched and stored");
        assert!(status.rejected_reason.is_some(), "{status:?}");
    })
    .await;
}
