//! Entering a room of another server: the state and auth chain a resident
//! server answered `send_join` (or knock/leave paths) with, checked here
//! before anything of it is trusted, then stored through the one write
//! path: every event as an outlier (or rejected), the state as a snapshot,
//! and our own member event as the room's one timeline event and forward
//! extremity, with the room's current state and memberships.
//!
//! Checks: every event must be a valid PDU of this room and version, its
//! signatures must verify (a content hash mismatch redacts it), and it
//! must be allowed by its own auth events, which must be among the events
//! given. Events failing are left out of the state. The create event must
//! be in the state and name the room's version (in v12 its hash is the
//! room ID, which parsing checks). Our member event must be allowed by the
//! resulting state.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::AtomicUsize;

use myelin_proto::canonical_json::Object;
use myelin_proto::state_res::StateMap;
use myelin_proto::{Pdu, RoomVersion};
use ruma::{EventId, OwnedEventId, OwnedServerName, RoomId};

use super::check::{self, AuthState, check_against_auth_events};
use super::fetch::{BoxFuture, KeySource, RemoteError, RemoteEvents, StateIds, auth_order};
use super::state_at::{current_map, plan_snapshot};
use super::{Ingest, MAX_STATE_IDS};
use crate::api::error::ApiError;
use crate::rooms::RoomGuard;
use crate::rooms::pipeline::{CurrentUpdate, EventWrite, NewRoom, Status};
use crate::state::AppState;
use crate::storage::state::{self as state_store, NewSnapshot};
use crate::storage::{events, rooms};

/// Fetches nothing: a join's answer must be complete by itself.
pub struct NoRemote;

impl RemoteEvents for NoRemote {
    fn missing_events<'a>(
        &'a self,
        _room_id: &'a RoomId,
        _earliest: &'a [OwnedEventId],
        _latest: &'a [OwnedEventId],
        _limit: u32,
        _min_depth: i64,
    ) -> BoxFuture<'a, Result<Vec<Object>, RemoteError>> {
        Box::pin(async { Err(RemoteError("no fetching here".to_owned())) })
    }

    fn event<'a>(
        &'a self,
        _room_id: &'a RoomId,
        _event_id: &'a EventId,
    ) -> BoxFuture<'a, Result<Object, RemoteError>> {
        Box::pin(async { Err(RemoteError("no fetching here".to_owned())) })
    }

    fn state_ids<'a>(
        &'a self,
        _room_id: &'a RoomId,
        _event_id: &'a EventId,
    ) -> BoxFuture<'a, Result<StateIds, RemoteError>> {
        Box::pin(async { Err(RemoteError("no fetching here".to_owned())) })
    }
}

/// Most distinct servers whose signatures one room state answer may need.
/// Each member event needs its sender's server's signature, so a state
/// names every server that was ever in the room, and checking it means
/// fetching each one's keys: a hostile resident could name thousands of
/// servers (or made-up names) to set us fetching from all of them. Rooms
/// whose state fits in [`MAX_STATE_IDS`] events rarely span more than a
/// few thousand servers.
pub const MAX_SIGNING_SERVERS: usize = 5_000;

/// A room's state as a resident server gave it: the state before our
/// member event, its auth chain, and the member event itself.
pub struct RoomStateAnswer {
    pub state: Vec<Pdu>,
    pub auth_chain: Vec<Pdu>,
    pub member_event: Pdu,
}

impl RoomStateAnswer {
    /// The distinct servers whose signatures the answer's events need (the
    /// servers whose keys checking it fetches). `Err` says why the answer
    /// is refused: more than [`MAX_SIGNING_SERVERS`], checked before any
    /// key is fetched.
    pub fn signing_servers(&self) -> Result<BTreeSet<OwnedServerName>, String> {
        let mut servers = BTreeSet::new();
        let events = self
            .state
            .iter()
            .chain(&self.auth_chain)
            .chain([&self.member_event]);
        for pdu in events {
            servers.extend(pdu.required_signers());
            if servers.len() > MAX_SIGNING_SERVERS {
                return Err(format!(
                    "the room's state is signed by more than {MAX_SIGNING_SERVERS} servers"
                ));
            }
        }
        Ok(servers)
    }
}

impl RoomGuard<'_> {
    /// Checks a room state a resident server answered with (see the module
    /// docs) and stores it with our member event as the room's current
    /// state. `keys` must hold the keys of every server that signed one of
    /// the events. `Ok(Err(reason))`: the answer is not acceptable and
    /// nothing of it was stored as state.
    pub async fn enter_room<K: KeySource>(
        &self,
        state: &AppState,
        version: RoomVersion,
        answer: RoomStateAnswer,
        keys: &K,
    ) -> Result<Result<(), String>, ApiError> {
        if answer.state.len() > MAX_STATE_IDS || answer.auth_chain.len() > MAX_STATE_IDS {
            return Ok(Err("the room's state is too large".to_owned()));
        }
        // Callers check this before fetching keys; checked again here so
        // no answer over the bound is ever taken.
        if let Err(reason) = answer.signing_servers() {
            return Ok(Err(reason));
        }
        let cx = Ingest {
            guard: self,
            state,
            room_id: self.room_id(),
            version,
            keys,
            remote: &NoRemote,
            fetched: AtomicUsize::new(0),
            relay_from: None,
        };
        cx.enter(answer).await
    }
}

impl<K: KeySource> Ingest<'_, '_, K> {
    async fn enter(&self, answer: RoomStateAnswer) -> Result<Result<(), String>, ApiError> {
        let RoomStateAnswer {
            state,
            auth_chain,
            member_event,
        } = answer;
        let state_ids: HashSet<OwnedEventId> =
            state.iter().map(|p| p.event_id().to_owned()).collect();

        // Every event once, verified (badly signed ones are left out).
        let mut unique: HashMap<OwnedEventId, Pdu> = HashMap::new();
        for pdu in state.into_iter().chain(auth_chain) {
            if pdu.expect_room(self.room_id).is_ok() {
                unique.insert(pdu.event_id().to_owned(), pdu);
            }
        }
        let mut verified = Vec::with_capacity(unique.len());
        for checked in check::verify(unique.into_values().collect(), self.keys) {
            match checked {
                Ok(pdu) => verified.push(pdu),
                Err(reason) => {
                    tracing::info!(room_id = %self.room_id, %reason, "state event dropped")
                }
            }
        }

        // The create event anchors everything.
        let Some(create) = verified
            .iter()
            .find(|p| p.is_state_of("m.room.create", "") && state_ids.contains(p.event_id()))
            .cloned()
        else {
            return Ok(Err("the state has no create event".to_owned()));
        };
        let create_version = create
            .content()
            .get("room_version")
            .and_then(|v| v.as_str())
            .unwrap_or("1");
        if create_version != self.version.as_str() {
            return Ok(Err(format!(
                "the create event is of room version {create_version}, not {}",
                self.version.as_str()
            )));
        }

        // Auth checks, each event against its own auth events.
        let mut accepted: HashMap<OwnedEventId, Pdu> = HashMap::new();
        let mut rejected: Vec<(Pdu, String)> = Vec::new();
        for pdu in auth_order(verified) {
            let verdict = if pdu.event_id() == create.event_id() {
                check::auth(&pdu, &AuthState::new()).map_err(|e| e.to_string())
            } else {
                let mut auth_events = Vec::with_capacity(pdu.auth_events().len());
                let mut missing = None;
                for id in pdu.auth_events() {
                    match accepted.get(id) {
                        Some(e) => auth_events.push(e.clone()),
                        None => missing = Some(format!("auth event {id} missing or rejected")),
                    }
                }
                match missing {
                    Some(reason) => Err(reason),
                    None => check_against_auth_events(&pdu, &auth_events, Some(&create)),
                }
            };
            match verdict {
                Ok(()) => {
                    accepted.insert(pdu.event_id().to_owned(), pdu);
                }
                Err(reason) => rejected.push((pdu, reason)),
            }
        }

        // The state: accepted state events of the answer's state.
        let mut map = StateMap::default();
        let mut auth_state = AuthState::new();
        for id in &state_ids {
            if let Some(pdu) = accepted.get(id)
                && let Some(sk) = pdu.state_key()
            {
                let key = (pdu.event_type().to_owned(), sk.to_owned());
                map.insert(key.clone(), pdu.event_id().to_owned());
                auth_state.insert(key, pdu.clone());
            }
        }
        if let Err(e) = check::auth(&member_event, &auth_state) {
            return Ok(Err(format!(
                "our member event is not allowed by the room's state: {e}"
            )));
        }

        // Store: outliers first (auth order), then the state, then our event.
        let db = self.state.db();
        let all: Vec<Pdu> = accepted.into_values().collect();
        let ids: Vec<&str> = all
            .iter()
            .map(|p| p.event_id().as_str())
            .chain(rejected.iter().map(|(p, _)| p.event_id().as_str()))
            .collect();
        let stored: HashSet<String> = events::statuses(db, &ids)
            .await?
            .into_iter()
            .map(|s| s.event_id)
            .collect();
        for pdu in auth_order(all) {
            if !stored.contains(pdu.event_id().as_str()) {
                self.store_outlier_event(&pdu).await?;
            }
        }
        for (pdu, reason) in rejected {
            if !stored.contains(pdu.event_id().as_str()) {
                tracing::info!(event_id = %pdu.event_id(), %reason, "state event rejected");
                self.store_rejected(&pdu, reason, None).await?;
            }
        }
        self.store_entered(&member_event, &create, &map).await?;
        Ok(Ok(()))
    }

    /// Writes `map` as a snapshot and our member event on it, as the
    /// room's only forward extremity, with the current state following.
    async fn store_entered(&self, pdu: &Pdu, create: &Pdu, map: &StateMap) -> Result<(), ApiError> {
        let db = self.state.db();
        let room_id = self.room_id.as_str();
        let room = rooms::get(db, room_id).await?;
        let old = current_map(db, room_id).await?;
        let candidates: Vec<(i64, &StateMap)> = room
            .as_ref()
            .and_then(|r| r.current_snapshot)
            .map(|s| (s, &old))
            .into_iter()
            .collect();
        let (plan, _) = plan_snapshot(db, map, &candidates, None).await?;
        // Like a resolved state before an event: a snapshot nothing points
        // at yet is harmless, so it is written in its own transaction, with
        // the room's stale extremities (an invite we received, a room we
        // left) cleared: our event follows the resident's graph.
        let tx = db.begin_write().await?;
        let snapshot = plan.write(&tx, room_id).await?;
        rooms::clear_extremities(&tx, room_id).await?;
        tx.commit().await?;

        let sk = pdu.state_key().unwrap_or_default();
        let key = (pdu.event_type().to_owned(), sk.to_owned());
        let key_nid = state_store::intern_keys(db, &[(pdu.event_type(), sk)]).await?[0];
        let mut after = map.clone();
        after.insert(key.clone(), pdu.event_id().to_owned());
        let changes = self.changes(pdu, &old, &after).await?;
        let creator = create.sender().as_str();
        let write = EventWrite {
            pdu,
            status: Status::Timeline,
            state_before: Some(snapshot),
            own_state: Some((key_nid, NewSnapshot::plan(db, Some(snapshot)).await?)),
            replaces_state: map.get(&key).map(ToString::to_string),
            current: Some(CurrentUpdate {
                snapshot: None,
                changes,
            }),
            redaction: None,
            txn: None,
            new_room: room.is_none().then_some(NewRoom {
                creator,
                is_public: false,
            }),
            relay_from: None,
        };
        self.guard.write(self.state, write).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use myelin_proto::canonical_json::{Object, Value, parse_object};
    use myelin_proto::signing::{KeyPair, PublicKey};
    use myelin_proto::verify::KeyRing;
    use myelin_proto::{Pdu, PduBuilder, RoomVersion};
    use ruma::{OwnedRoomId, OwnedUserId, ServerName};

    use super::RoomStateAnswer;
    use crate::config::Config;
    use crate::metrics::Metrics;
    use crate::state::AppState;
    use crate::storage::{self, events, memberships, rooms};

    struct Keys(HashMap<String, PublicKey>);

    impl super::KeySource for Keys {}

    impl KeyRing for Keys {
        fn key(&self, server: &ServerName, _key_id: &str, _ts: i64) -> Option<PublicKey> {
            self.0.get(server.as_str()).copied()
        }
    }

    /// A room of `remote.test` (v12) as its resident would answer a join
    /// of `@alice:local.test`, whose server signs her join.
    struct Room {
        remote_key: KeyPair,
        local_key: KeyPair,
        create: Pdu,
        state: Vec<Pdu>,
        join: Pdu,
    }

    fn content(v: serde_json::Value) -> Object {
        parse_object(v.to_string().as_bytes()).expect("object")
    }

    fn user(s: &str) -> OwnedUserId {
        OwnedUserId::try_from(s).expect("user")
    }

    /// One event of the test room (the arguments are its fields).
    #[allow(clippy::too_many_arguments)]
    fn build(
        key: &KeyPair,
        room: Option<&OwnedRoomId>,
        sender: &str,
        event_type: &str,
        state_key: &str,
        c: serde_json::Value,
        prev: &[&Pdu],
        auth: &[&Pdu],
    ) -> Pdu {
        let sender = user(sender);
        let mut b = PduBuilder::new(
            event_type,
            Some(state_key),
            content(c),
            &sender,
            room.map(|r| &**r),
        );
        b.prev_events = prev.iter().map(|p| p.event_id().to_owned()).collect();
        b.auth_events = auth.iter().map(|p| p.event_id().to_owned()).collect();
        b.depth = prev.iter().map(|p| p.depth()).max().unwrap_or(0) + 1;
        b.origin_server_ts = 1;
        b.build(RoomVersion::V12, sender.server_name().as_str(), key)
            .expect("build")
    }

    impl Room {
        fn new(create_version: &str) -> Self {
            let remote_key = KeyPair::from_seed("1", &[2; 32]).expect("key");
            let local_key = KeyPair::from_seed("1", &[1; 32]).expect("key");
            let bob = "@bob:remote.test";
            let create = build(
                &remote_key,
                None,
                bob,
                "m.room.create",
                "",
                serde_json::json!({"room_version": create_version}),
                &[],
                &[],
            );
            let room = create.room_id().to_owned();
            let member = build(
                &remote_key,
                Some(&room),
                bob,
                "m.room.member",
                bob,
                serde_json::json!({"membership": "join"}),
                &[&create],
                &[],
            );
            let power = build(
                &remote_key,
                Some(&room),
                bob,
                "m.room.power_levels",
                "",
                serde_json::json!({"users": {}}),
                &[&member],
                &[&member],
            );
            let rules = build(
                &remote_key,
                Some(&room),
                bob,
                "m.room.join_rules",
                "",
                serde_json::json!({"join_rule": "public"}),
                &[&power],
                &[&member, &power],
            );
            let alice = "@alice:local.test";
            let join = build(
                &local_key,
                Some(&room),
                alice,
                "m.room.member",
                alice,
                serde_json::json!({"membership": "join"}),
                &[&rules],
                &[&power, &rules],
            );
            Self {
                remote_key,
                local_key,
                state: vec![create.clone(), member, power, rules],
                create,
                join,
            }
        }

        fn keys(&self) -> Keys {
            Keys(HashMap::from([
                ("remote.test".to_owned(), self.remote_key.public_key()),
                ("local.test".to_owned(), self.local_key.public_key()),
            ]))
        }

        fn answer(&self) -> RoomStateAnswer {
            RoomStateAnswer {
                state: self.state.clone(),
                auth_chain: self.state.clone(),
                member_event: self.join.clone(),
            }
        }
    }

    async fn joiner(key: &KeyPair) -> AppState {
        let db = storage::test_db().await;
        let config = Config::load_with_env(
            None,
            [("MYELIN__SERVER__NAME".to_owned(), "local.test".to_owned())],
        )
        .expect("config");
        let name = ServerName::parse("local.test").expect("name");
        let metrics = Metrics::new().expect("metrics");
        let federation = crate::federation::FederationService::new(
            &config,
            &name,
            std::slice::from_ref(key),
            db.clone(),
            &metrics,
        )
        .expect("federation");
        AppState::new(config, name, db, vec![key.clone()], metrics, federation)
    }

    async fn enter(state: &AppState, room: &Room, answer: RoomStateAnswer) -> Result<(), String> {
        let guard = state.rooms().lock(room.create.room_id()).await;
        guard
            .enter_room(state, RoomVersion::V12, answer, &room.keys())
            .await
            .expect("database")
    }

    #[tokio::test]
    async fn a_checked_state_becomes_the_room() {
        let room = Room::new("12");
        let state = joiner(&room.local_key).await;
        enter(&state, &room, room.answer()).await.expect("entered");
        let room_id = room.create.room_id().as_str();
        let db = state.db();
        assert!(rooms::get(db, room_id).await.expect("room").is_some());
        let current = storage::state::current_ids(db, room_id, None)
            .await
            .expect("current");
        assert_eq!(current.len(), 5);
        let alice = memberships::get(db, room_id, "@alice:local.test")
            .await
            .expect("membership")
            .expect("alice");
        assert_eq!(alice.membership, "join");
        assert_eq!(alice.event_id, room.join.event_id().as_str());
        let extremities: Vec<String> = rooms::forward_extremities(db, room_id)
            .await
            .expect("extremities")
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(extremities, vec![room.join.event_id().to_string()]);
        // The state events are outliers: only the join is in the timeline.
        let timeline = events::timeline_page(db, room_id, 0, i64::MAX, true, 100)
            .await
            .expect("timeline");
        assert_eq!(timeline.len(), 1);
    }

    async fn refused(room: &Room, answer: RoomStateAnswer, why: &str) {
        let state = joiner(&room.local_key).await;
        let result = enter(&state, room, answer).await;
        let reason = result.expect_err(why);
        assert!(reason.contains(why), "{reason}");
        let room_id = room.create.room_id().as_str();
        assert!(
            rooms::get(state.db(), room_id)
                .await
                .expect("room")
                .is_none()
        );
        assert!(
            memberships::get(state.db(), room_id, "@alice:local.test")
                .await
                .expect("membership")
                .is_none()
        );
    }

    #[tokio::test]
    async fn answers_that_do_not_hold_are_refused() {
        let room = Room::new("12");
        // Without the create event.
        let mut answer = room.answer();
        answer.state.retain(|p| p.event_type() != "m.room.create");
        answer.auth_chain.clear();
        refused(&room, answer, "no create event").await;

        // The join rules with a forged signature: left out, so the join is not allowed.
        let mut answer = room.answer();
        let forger = KeyPair::from_seed("1", &[9; 32]).expect("key");
        let rules = answer.state[3].clone();
        let mut obj = rules.into_json();
        obj.remove("signatures");
        myelin_proto::hashes::sign_event(
            RoomVersion::V12.rules().redaction,
            "remote.test",
            &forger,
            &mut obj,
        );
        let forged = Pdu::from_object(RoomVersion::V12, obj).expect("pdu");
        answer.state[3] = forged.clone();
        answer.auth_chain[3] = forged;
        refused(&room, answer, "not allowed").await;

        // A create event of another version than the room's.
        let other = Room::new("11");
        refused(&other, other.answer(), "room version 11").await;

        // A state event of another room is not part of this one.
        let mut answer = room.answer();
        let other_room =
            OwnedRoomId::try_from("!aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").expect("room");
        let stranger = build(
            &room.remote_key,
            Some(&other_room),
            "@bob:remote.test",
            "m.room.join_rules",
            "",
            serde_json::json!({"join_rule": "public"}),
            &[&answer.state[2]],
            &[&answer.state[1], &answer.state[2]],
        );
        answer
            .state
            .retain(|p| p.event_type() != "m.room.join_rules");
        answer
            .auth_chain
            .retain(|p| p.event_type() != "m.room.join_rules");
        answer.state.push(stranger);
        refused(&room, answer, "not allowed").await;
    }

    /// A resident naming more servers than we fetch keys from: the answer
    /// is refused on its signers alone, at the bound and not below it.
    #[tokio::test]
    async fn an_answer_signed_by_too_many_servers_is_refused() {
        let room = Room::new("12");
        let room_id = room.create.room_id().to_owned();
        let rules = room.state[3].clone();
        let template = build(
            &room.remote_key,
            Some(&room_id),
            "@u:s.test",
            "m.room.member",
            "@u:s.test",
            serde_json::json!({"membership": "leave"}),
            &[&rules],
            &[&rules],
        );
        // Member events of as many other servers (unsigned: the bound holds
        // before any signature is looked at). Servers already named:
        // remote.test (the state) and local.test (our join).
        let strangers = |n: usize| -> Vec<Pdu> {
            (0..n)
                .map(|i| {
                    let sender = format!("@u:s{i}.test");
                    let mut obj = template.json().clone();
                    obj.insert("sender".into(), Value::from(sender.as_str()));
                    obj.insert("state_key".into(), Value::from(sender.as_str()));
                    Pdu::from_object(RoomVersion::V12, obj).expect("pdu")
                })
                .collect()
        };
        let mut answer = room.answer();
        answer
            .auth_chain
            .extend(strangers(super::MAX_SIGNING_SERVERS - 2));
        let servers = answer.signing_servers().expect("at the bound");
        assert_eq!(servers.len(), super::MAX_SIGNING_SERVERS);

        let mut answer = room.answer();
        answer
            .auth_chain
            .extend(strangers(super::MAX_SIGNING_SERVERS - 1));
        refused(&room, answer, "more than 5000 servers").await;
    }
}
