//! Building rooms for tests and benchmarks: events with the right shape,
//! IDs and auth events, but dummy hashes and signatures (state resolution
//! never looks at those, and real signing would dominate test run time).
//! Not part of the API.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ruma::{EventId, OwnedEventId, OwnedRoomId, RoomId};

use super::{EventSource, StateMap};
use crate::canonical_json::{self, Object, Value};
use crate::pdu::Pdu;
use crate::room_version::RoomVersion;

/// Canonical JSON object from a `serde_json` value (must be an object).
pub fn object(json: serde_json::Value) -> Object {
    match canonical_json::from_json(json) {
        Ok(Value::Object(o)) => o,
        other => panic!("test content must be a JSON object, got {other:?}"),
    }
}

/// An in-memory event store.
#[derive(Default, Clone, Debug)]
pub struct Store {
    pub events: HashMap<OwnedEventId, Arc<Pdu>>,
    pub rejected: HashSet<OwnedEventId>,
}

impl EventSource for Store {
    fn event(&self, id: &EventId) -> Option<Arc<Pdu>> {
        self.events.get(id).cloned()
    }

    fn is_rejected(&self, id: &EventId) -> bool {
        self.rejected.contains(id)
    }
}

/// What a new event should look like; see [`Room::send`].
pub struct Ev<'a> {
    pub ty: &'a str,
    pub state_key: Option<&'a str>,
    pub sender: &'a str,
    pub content: serde_json::Value,
}

/// `Ev` for a state event.
pub fn state(ty: &str, state_key: &str, sender: &str, content: serde_json::Value) -> Ev<'static>
where
{
    Ev {
        ty: leak(ty),
        state_key: Some(leak(state_key)),
        sender: leak(sender),
        content,
    }
}

fn leak(s: &str) -> &'static str {
    // Test-only convenience: a few bytes per event in short-lived test
    // processes, in exchange for a lifetime-free builder API.
    Box::leak(s.to_owned().into_boxed_str())
}

/// `Ev` for a membership event.
pub fn member(target: &str, sender: &str, membership: &str) -> Ev<'static> {
    state(
        "m.room.member",
        target,
        sender,
        serde_json::json!({ "membership": membership }),
    )
}

/// A room being built: its events, and a clock.
pub struct Room {
    pub version: RoomVersion,
    pub room_id: OwnedRoomId,
    pub create: Arc<Pdu>,
    pub store: Store,
    pub ts: i64,
}

impl Room {
    /// A room with only its create event, sent by `creator`; returns it
    /// and the state after the create event.
    pub fn new(version: RoomVersion, creator: &str) -> (Room, StateMap) {
        Self::with_create_content(version, creator, serde_json::json!({}))
    }

    pub fn with_create_content(
        version: RoomVersion,
        creator: &str,
        mut extra: serde_json::Value,
    ) -> (Room, StateMap) {
        let rules = version.rules();
        if let Some(o) = extra.as_object_mut() {
            o.insert("room_version".into(), version.as_str().into());
            if rules.create_requires_creator {
                o.insert("creator".into(), creator.into());
            }
        }
        let room_id = if rules.room_id_from_create_event {
            None
        } else {
            Some(RoomId::parse("!room:example.org").expect("room id"))
        };
        let pdu = build(
            version,
            room_id.as_deref(),
            "m.room.create",
            Some(""),
            creator,
            object(extra),
            &[],
            &[],
            0,
            0,
        );
        let pdu = Arc::new(pdu);
        let mut store = Store::default();
        store
            .events
            .insert(pdu.event_id().to_owned(), Arc::clone(&pdu));
        let mut st = StateMap::default();
        st.insert(
            ("m.room.create".into(), String::new()),
            pdu.event_id().to_owned(),
        );
        (
            Room {
                version,
                room_id: pdu.room_id().to_owned(),
                create: pdu,
                store,
                ts: 0,
            },
            st,
        )
    }

    /// The auth events a new event needs (server-server API "Auth events
    /// selection"), taken from `state`.
    pub fn auth_events_for(&self, state: &StateMap, ev: &Ev<'_>) -> Vec<OwnedEventId> {
        let rules = self.version.rules();
        let mut keys: Vec<(String, String)> = vec![
            ("m.room.power_levels".into(), String::new()),
            ("m.room.member".into(), ev.sender.into()),
        ];
        if !rules.room_id_from_create_event {
            keys.push(("m.room.create".into(), String::new()));
        }
        if ev.ty == "m.room.member"
            && let Some(target) = ev.state_key
        {
            keys.push(("m.room.member".into(), target.into()));
            let membership = ev.content.get("membership").and_then(|m| m.as_str());
            if matches!(membership, Some("join" | "invite" | "knock")) {
                keys.push(("m.room.join_rules".into(), String::new()));
            }
        }
        let mut out: Vec<OwnedEventId> = Vec::new();
        for k in keys {
            if let Some(id) = state.get(&k)
                && !out.contains(id)
            {
                out.push(id.clone());
            }
        }
        out
    }

    /// Sends `ev` after `prev`, with auth events picked from `state` (the
    /// state before the event); returns the event and the state after it.
    pub fn send(
        &mut self,
        state: &StateMap,
        prev: &[OwnedEventId],
        ev: Ev<'_>,
    ) -> (Arc<Pdu>, StateMap) {
        let auth = self.auth_events_for(state, &ev);
        self.send_with_auth(state, prev, ev, &auth)
    }

    /// [`Self::send`] updating `state` in place (for large rooms, where
    /// copying the state per event would be quadratic).
    pub fn send_mut(
        &mut self,
        state: &mut StateMap,
        prev: &[OwnedEventId],
        ev: Ev<'_>,
    ) -> Arc<Pdu> {
        let auth = self.auth_events_for(state, &ev);
        let pdu = self.build_and_store(prev, ev, &auth);
        if let Some(sk) = pdu.state_key() {
            state.insert(
                (pdu.event_type().to_owned(), sk.to_owned()),
                pdu.event_id().to_owned(),
            );
        }
        pdu
    }

    /// [`Self::send`] with explicit auth events.
    pub fn send_with_auth(
        &mut self,
        state: &StateMap,
        prev: &[OwnedEventId],
        ev: Ev<'_>,
        auth: &[OwnedEventId],
    ) -> (Arc<Pdu>, StateMap) {
        let pdu = self.build_and_store(prev, ev, auth);
        let mut after = state.clone();
        if let Some(sk) = pdu.state_key() {
            after.insert(
                (pdu.event_type().to_owned(), sk.to_owned()),
                pdu.event_id().to_owned(),
            );
        }
        (pdu, after)
    }

    fn build_and_store(
        &mut self,
        prev: &[OwnedEventId],
        ev: Ev<'_>,
        auth: &[OwnedEventId],
    ) -> Arc<Pdu> {
        self.ts += 1;
        let depth = prev
            .iter()
            .filter_map(|p| self.store.events.get(p))
            .map(|p| p.depth())
            .max()
            .unwrap_or(0)
            + 1;
        let pdu = Arc::new(build(
            self.version,
            Some(&self.room_id),
            ev.ty,
            ev.state_key,
            ev.sender,
            object(ev.content),
            auth,
            prev,
            depth,
            self.ts,
        ));
        self.store
            .events
            .insert(pdu.event_id().to_owned(), Arc::clone(&pdu));
        pdu
    }
}

/// One event with dummy hashes and signatures.
#[allow(clippy::too_many_arguments)]
pub fn build(
    version: RoomVersion,
    room_id: Option<&RoomId>,
    ty: &str,
    state_key: Option<&str>,
    sender: &str,
    content: Object,
    auth_events: &[OwnedEventId],
    prev_events: &[OwnedEventId],
    depth: i64,
    ts: i64,
) -> Pdu {
    let ids =
        |l: &[OwnedEventId]| Value::Array(l.iter().map(|i| Value::String(i.to_string())).collect());
    let mut obj = Object::new();
    obj.insert("type".into(), Value::String(ty.into()));
    if let Some(sk) = state_key {
        obj.insert("state_key".into(), Value::String(sk.into()));
    }
    if let Some(r) = room_id {
        obj.insert("room_id".into(), Value::String(r.to_string()));
    }
    obj.insert("sender".into(), Value::String(sender.into()));
    obj.insert("content".into(), Value::Object(content));
    obj.insert("auth_events".into(), ids(auth_events));
    obj.insert("prev_events".into(), ids(prev_events));
    obj.insert("depth".into(), Value::Integer(depth));
    obj.insert("origin_server_ts".into(), Value::Integer(ts));
    obj.insert(
        "hashes".into(),
        Value::Object(object(serde_json::json!({ "sha256": "dummy" }))),
    );
    obj.insert("signatures".into(), Value::Object(Object::new()));
    Pdu::from_object(version, obj).expect("test event is well-formed")
}
