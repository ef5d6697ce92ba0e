//! Shared helpers for the `auth_*` tests: build rooms and events quickly.
//!
//! Events are built as federation JSON and parsed with `Pdu::from_object`,
//! which validates the format but not signatures; the auth rules only look
//! at which servers signed (signatures are verified before auth), so events
//! carry placeholder signatures of the servers named. This keeps building
//! thousands of events cheap in debug builds, where ed25519 is slow.
//! Included by the test files with `#[path]`; as a test target of its own
//! it has no tests.

#![allow(dead_code)]

use std::collections::BTreeMap;

use myelin_proto::auth::{self, AuthError};
use myelin_proto::canonical_json::{self, Object, Value};
use myelin_proto::{Pdu, RoomVersion, RoomVersionRules};
use ruma::{OwnedEventId, OwnedRoomId, UserId};

/// Parses a JSON object literal.
pub fn obj(json: &str) -> Object {
    canonical_json::parse_object(json.as_bytes()).expect("test JSON")
}

/// The server part of a user ID.
pub fn server_of(user: &str) -> &str {
    user.split_once(':').map_or(user, |(_, s)| s)
}

/// What goes into one event.
#[derive(Clone, Debug)]
pub struct Spec {
    pub event_type: String,
    pub state_key: Option<String>,
    pub sender: String,
    pub content: Object,
    /// `None`: the room's ID (none for a v12 create event).
    pub room_id: Option<String>,
    /// `None`: the room's create event, or nothing for a create event.
    pub prev_events: Option<Vec<OwnedEventId>>,
    pub auth_events: Vec<OwnedEventId>,
    /// Servers whose (placeholder) signatures the event carries; the
    /// sender's server is always added.
    pub signers: Vec<String>,
}

impl Spec {
    pub fn new(sender: &str, event_type: &str, state_key: Option<&str>, content: Object) -> Self {
        Self {
            event_type: event_type.to_owned(),
            state_key: state_key.map(str::to_owned),
            sender: sender.to_owned(),
            content,
            room_id: None,
            prev_events: None,
            auth_events: Vec::new(),
            signers: Vec::new(),
        }
    }
}

/// Builds a PDU from parts; `ts` makes otherwise equal events distinct.
pub fn build(version: RoomVersion, spec: &Spec, room_id: Option<&str>, ts: i64) -> Pdu {
    let ids =
        |l: &[OwnedEventId]| Value::Array(l.iter().map(|i| Value::String(i.to_string())).collect());
    let mut o = Object::new();
    o.insert("type".into(), spec.event_type.as_str().into());
    if let Some(sk) = &spec.state_key {
        o.insert("state_key".into(), sk.as_str().into());
    }
    o.insert("sender".into(), spec.sender.as_str().into());
    o.insert("content".into(), Value::Object(spec.content.clone()));
    if let Some(room) = spec.room_id.as_deref().or(room_id) {
        o.insert("room_id".into(), room.into());
    }
    o.insert(
        "prev_events".into(),
        ids(spec.prev_events.as_deref().unwrap_or(&[])),
    );
    o.insert("auth_events".into(), ids(&spec.auth_events));
    o.insert("depth".into(), Value::Integer(ts + 1));
    o.insert("origin_server_ts".into(), Value::Integer(ts));
    o.insert(
        "hashes".into(),
        Value::Object(obj(r#"{"sha256":"placeholder"}"#)),
    );
    let mut sigs = Object::new();
    for server in
        std::iter::once(server_of(&spec.sender)).chain(spec.signers.iter().map(String::as_str))
    {
        sigs.insert(
            server.to_owned(),
            Value::Object(obj(r#"{"ed25519:1":"placeholder"}"#)),
        );
    }
    o.insert("signatures".into(), Value::Object(sigs));
    Pdu::from_object(version, o).expect("test event is well-formed")
}

/// A room: its create event and a state map.
#[derive(Clone, Debug)]
pub struct Room {
    pub version: RoomVersion,
    pub rules: &'static RoomVersionRules,
    pub room_id: OwnedRoomId,
    pub create: Pdu,
    pub state: BTreeMap<(String, String), Pdu>,
    ts: i64,
}

impl Room {
    /// A room created by `creator`. In v10 `creator` is added to the create
    /// content unless `create_content` sets it.
    pub fn new(version: RoomVersion, creator: &str, create_content: &str) -> Self {
        let mut content = obj(create_content);
        content
            .entry("room_version".into())
            .or_insert_with(|| version.as_str().into());
        if version == RoomVersion::V10 {
            content
                .entry("creator".into())
                .or_insert_with(|| creator.into());
        }
        let spec = Spec::new(creator, "m.room.create", Some(""), content);
        Self::with_create(version, &spec)
    }

    /// A room from an explicit create event spec.
    pub fn with_create(version: RoomVersion, spec: &Spec) -> Self {
        let room_id = if version == RoomVersion::V12 {
            None
        } else {
            Some(format!("!room:{}", server_of(&spec.sender)))
        };
        let create = build(version, spec, room_id.as_deref(), 0);
        let mut state = BTreeMap::new();
        state.insert(("m.room.create".to_owned(), String::new()), create.clone());
        Self {
            version,
            rules: version.rules(),
            room_id: create.room_id().to_owned(),
            create,
            state,
            ts: 1,
        }
    }

    /// Builds an event of this room (not added to the state).
    pub fn event(&mut self, spec: &Spec) -> Pdu {
        let mut spec = spec.clone();
        if spec.prev_events.is_none() {
            spec.prev_events = Some(vec![self.create.event_id().to_owned()]);
        }
        self.ts += 1;
        build(self.version, &spec, Some(self.room_id.as_str()), self.ts)
    }

    /// Builds a simple event.
    pub fn ev(
        &mut self,
        sender: &str,
        event_type: &str,
        state_key: Option<&str>,
        content: &str,
    ) -> Pdu {
        self.event(&Spec::new(sender, event_type, state_key, obj(content)))
    }

    /// Puts a state event into the state.
    pub fn put(&mut self, pdu: Pdu) -> Pdu {
        let key = (
            pdu.event_type().to_owned(),
            pdu.state_key().expect("state event").to_owned(),
        );
        self.state.insert(key, pdu.clone());
        pdu
    }

    /// Builds a state event and puts it into the state.
    pub fn set(&mut self, sender: &str, event_type: &str, state_key: &str, content: &str) -> Pdu {
        let pdu = self.ev(sender, event_type, Some(state_key), content);
        self.put(pdu)
    }

    /// Sets `user`'s membership in the state.
    pub fn member(&mut self, user: &str, membership: &str) -> Pdu {
        self.set(
            user,
            "m.room.member",
            user,
            &format!(r#"{{"membership":"{membership}"}}"#),
        )
    }

    pub fn power_levels(&mut self, sender: &str, content: &str) -> Pdu {
        self.set(sender, "m.room.power_levels", "", content)
    }

    pub fn join_rule(&mut self, rule: &str) -> Pdu {
        let creator = self.create.sender().to_string();
        self.set(
            &creator,
            "m.room.join_rules",
            "",
            &format!(r#"{{"join_rule":"{rule}"}}"#),
        )
    }

    pub fn get(&self, event_type: &str, state_key: &str) -> Option<&Pdu> {
        self.state
            .get(&(event_type.to_owned(), state_key.to_owned()))
    }

    /// `auth::check` against this room's state.
    pub fn check(&self, pdu: &Pdu) -> Result<(), AuthError> {
        auth::check(self.rules, pdu, |t, k| self.get(t, k))
    }

    /// The rule number `check` rejects with, or `None` when it allows.
    pub fn rejected_by(&self, pdu: &Pdu) -> Option<&'static str> {
        self.check(pdu).err().map(|e| e.rule)
    }
}

pub fn user_id(s: &str) -> &UserId {
    <&UserId>::try_from(s).expect("user ID")
}
