//! The PDU (persistent data unit): a room event as servers exchange it.
//!
//! A [`Pdu`] keeps the event's full JSON exactly as signed (unknown keys
//! included: hashes and signatures cover them) next to typed copies of the
//! fields every check needs, validated once at parse time. It can only be
//! built by [`Pdu::from_json`] / [`Pdu::from_object`] (which enforce the
//! format rules of the room version) or by [`PduBuilder`] (which hashes and
//! signs a new local event).

use std::fmt;

use ruma::{OwnedEventId, OwnedRoomId, OwnedServerName, OwnedUserId, ServerName, UserId};

use crate::canonical_json::{self, Object, Value};
use crate::hashes;
use crate::room_version::{RoomVersion, RoomVersionRules};
use crate::signing::KeyPair;

/// Largest event, in bytes of canonical JSON with signatures (spec "Size limits").
pub const MAX_PDU_BYTES: usize = 65_536;
/// Largest `type` and `state_key`, in bytes.
pub const MAX_KEY_BYTES: usize = 255;
/// Most `prev_events` a PDU may cite (room versions 4+).
pub const MAX_PREV_EVENTS: usize = 20;
/// Most `auth_events` a PDU may cite (room versions 4+).
pub const MAX_AUTH_EVENTS: usize = 10;

/// Why bytes or JSON are not a valid PDU for a room version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PduError {
    #[error("event is {0} bytes, over the {MAX_PDU_BYTES} byte limit")]
    TooLarge(usize),
    #[error(transparent)]
    Json(#[from] canonical_json::Error),
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("field `{0}` has the wrong type")]
    WrongType(&'static str),
    #[error("field `{field}` is not a valid identifier: {value:?}")]
    InvalidId { field: &'static str, value: String },
    #[error("field `{0}` is longer than {MAX_KEY_BYTES} bytes")]
    TooLong(&'static str),
    #[error("{field} lists {count} events, more than the {max} allowed")]
    TooManyReferences {
        field: &'static str,
        count: usize,
        max: usize,
    },
    #[error("`depth` must be between 0 and 2^53-1")]
    Depth,
    #[error("a create event in this room version must not have a `room_id`")]
    CreateWithRoomId,
    #[error("event belongs to room {found}, not {expected}")]
    WrongRoom { expected: String, found: String },
}

/// A validated room event.
#[derive(Clone, PartialEq, Eq)]
pub struct Pdu {
    version: RoomVersion,
    event_id: OwnedEventId,
    room_id: OwnedRoomId,
    sender: OwnedUserId,
    event_type: String,
    state_key: Option<String>,
    prev_events: Vec<OwnedEventId>,
    auth_events: Vec<OwnedEventId>,
    depth: i64,
    origin_server_ts: i64,
    redacts: Option<OwnedEventId>,
    json: Object,
}

impl fmt::Debug for Pdu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pdu")
            .field("event_id", &self.event_id.as_str())
            .field("type", &self.event_type)
            .field("state_key", &self.state_key)
            .field("sender", &self.sender.as_str())
            .finish_non_exhaustive()
    }
}

fn get_str<'a>(obj: &'a Object, field: &'static str) -> Result<&'a str, PduError> {
    match obj.get(field) {
        None => Err(PduError::Missing(field)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(PduError::WrongType(field)),
    }
}

fn get_int(obj: &Object, field: &'static str) -> Result<i64, PduError> {
    match obj.get(field) {
        None => Err(PduError::Missing(field)),
        Some(Value::Integer(n)) => Ok(*n),
        Some(_) => Err(PduError::WrongType(field)),
    }
}

/// An event ID of room version 4+: `$` and 43 characters of URL-safe base64.
pub fn parse_event_id(field: &'static str, s: &str) -> Result<OwnedEventId, PduError> {
    let ok = s.len() == 44
        && s.starts_with('$')
        && s.bytes()
            .skip(1)
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let invalid = || PduError::InvalidId {
        field,
        value: s.chars().take(300).collect(),
    };
    if !ok {
        return Err(invalid());
    }
    OwnedEventId::try_from(s).map_err(|_| invalid())
}

fn event_id_list(
    obj: &Object,
    field: &'static str,
    max: usize,
) -> Result<Vec<OwnedEventId>, PduError> {
    let list = match obj.get(field) {
        None => return Err(PduError::Missing(field)),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(PduError::WrongType(field)),
    };
    if list.len() > max {
        return Err(PduError::TooManyReferences {
            field,
            count: list.len(),
            max,
        });
    }
    list.iter()
        .map(|v| match v {
            Value::String(s) => parse_event_id(field, s),
            _ => Err(PduError::WrongType(field)),
        })
        .collect()
}

/// A room ID as this room version writes them: `!<43 url-safe base64>` in
/// v12, `!opaque:server` before.
fn parse_room_id(rules: &RoomVersionRules, s: &str) -> Result<OwnedRoomId, PduError> {
    let invalid = || PduError::InvalidId {
        field: "room_id",
        value: s.chars().take(300).collect(),
    };
    let shape_ok = if rules.room_id_from_create_event {
        s.len() == 44
            && s.starts_with('!')
            && s.bytes()
                .skip(1)
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    } else {
        s.len() <= 255 && s.contains(':')
    };
    if !shape_ok {
        return Err(invalid());
    }
    OwnedRoomId::try_from(s).map_err(|_| invalid())
}

impl Pdu {
    /// Parses and validates a PDU received as bytes (federation format).
    pub fn from_json(version: RoomVersion, bytes: &[u8]) -> Result<Self, PduError> {
        // Canonical JSON is never longer than the JSON it came from, so only
        // inputs over the limit need their canonical size measured; refuse
        // absurd inputs before parsing them at all.
        if bytes.len() > 16 * MAX_PDU_BYTES {
            return Err(PduError::TooLarge(bytes.len()));
        }
        let obj = canonical_json::parse_object(bytes)?;
        if bytes.len() > MAX_PDU_BYTES {
            Self::from_object(version, obj)
        } else {
            Self::from_object_unchecked_size(version, obj)
        }
    }

    /// Validates a PDU given as a canonical JSON object (federation format).
    /// An `event_id` key, which older formats and some peers include, is
    /// dropped: the ID is always computed from the reference hash.
    pub fn from_object(version: RoomVersion, obj: Object) -> Result<Self, PduError> {
        let size = canonical_json::object_bytes_without(&obj, &[]).len();
        if size > MAX_PDU_BYTES {
            return Err(PduError::TooLarge(size));
        }
        Self::from_object_unchecked_size(version, obj)
    }

    fn from_object_unchecked_size(version: RoomVersion, mut obj: Object) -> Result<Self, PduError> {
        let rules = version.rules();
        obj.remove("event_id");

        let event_type = get_str(&obj, "type")?;
        if event_type.len() > MAX_KEY_BYTES {
            return Err(PduError::TooLong("type"));
        }
        let event_type = event_type.to_owned();
        let state_key = match obj.get("state_key") {
            None => None,
            Some(Value::String(s)) if s.len() > MAX_KEY_BYTES => {
                return Err(PduError::TooLong("state_key"));
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(PduError::WrongType("state_key")),
        };
        let sender_str = get_str(&obj, "sender")?;
        let sender = UserId::parse(sender_str).map_err(|_| PduError::InvalidId {
            field: "sender",
            value: sender_str.chars().take(300).collect(),
        })?;
        match obj.get("content") {
            Some(Value::Object(_)) => {}
            None => return Err(PduError::Missing("content")),
            Some(_) => return Err(PduError::WrongType("content")),
        }
        match obj.get("hashes") {
            Some(Value::Object(_)) => {}
            None => return Err(PduError::Missing("hashes")),
            Some(_) => return Err(PduError::WrongType("hashes")),
        }
        match obj.get("signatures") {
            Some(Value::Object(_)) => {}
            None => return Err(PduError::Missing("signatures")),
            Some(_) => return Err(PduError::WrongType("signatures")),
        }
        let depth = get_int(&obj, "depth")?;
        if depth < 0 {
            return Err(PduError::Depth);
        }
        let origin_server_ts = get_int(&obj, "origin_server_ts")?;
        let prev_events = event_id_list(&obj, "prev_events", MAX_PREV_EVENTS)?;
        let auth_events = event_id_list(&obj, "auth_events", MAX_AUTH_EVENTS)?;

        let is_v12_create = rules.room_id_from_create_event
            && event_type == "m.room.create"
            && state_key.as_deref() == Some("");
        let event_id_str = hashes::event_id(rules.redaction, &obj);
        let event_id =
            OwnedEventId::try_from(event_id_str.as_str()).map_err(|_| PduError::InvalidId {
                field: "event_id",
                value: event_id_str.clone(),
            })?;
        let room_id = if is_v12_create {
            if obj.contains_key("room_id") {
                return Err(PduError::CreateWithRoomId);
            }
            // The room is named by the create event's own reference hash.
            let id = format!("!{}", &event_id_str[1..]);
            parse_room_id(rules, &id)?
        } else {
            parse_room_id(rules, get_str(&obj, "room_id")?)?
        };

        let redacts = if event_type == "m.room.redaction" {
            let holder = if rules.redacts_in_content {
                obj.get("content").and_then(Value::as_object)
            } else {
                Some(&obj)
            };
            // A redaction whose target is missing or malformed is kept (it
            // is authorised like any event) but redacts nothing.
            holder
                .and_then(|h| h.get("redacts"))
                .and_then(Value::as_str)
                .and_then(|s| parse_event_id("redacts", s).ok())
        } else {
            None
        };

        Ok(Self {
            version,
            event_id,
            room_id,
            sender,
            event_type,
            state_key,
            prev_events,
            auth_events,
            depth,
            origin_server_ts,
            redacts,
            json: obj,
        })
    }

    /// Refuses an event that claims a room other than the one it arrived for.
    pub fn expect_room(&self, room_id: &ruma::RoomId) -> Result<(), PduError> {
        if self.room_id == room_id {
            Ok(())
        } else {
            Err(PduError::WrongRoom {
                expected: room_id.to_string(),
                found: self.room_id.to_string(),
            })
        }
    }

    pub fn room_version(&self) -> RoomVersion {
        self.version
    }

    pub fn rules(&self) -> &'static RoomVersionRules {
        self.version.rules()
    }

    pub fn event_id(&self) -> &ruma::EventId {
        &self.event_id
    }

    pub fn room_id(&self) -> &ruma::RoomId {
        &self.room_id
    }

    pub fn sender(&self) -> &UserId {
        &self.sender
    }

    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    pub fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }

    pub fn is_state(&self) -> bool {
        self.state_key.is_some()
    }

    /// Whether this is the state event `(event_type, state_key)`.
    pub fn is_state_of(&self, event_type: &str, state_key: &str) -> bool {
        self.event_type == event_type && self.state_key.as_deref() == Some(state_key)
    }

    pub fn prev_events(&self) -> &[OwnedEventId] {
        &self.prev_events
    }

    pub fn auth_events(&self) -> &[OwnedEventId] {
        &self.auth_events
    }

    pub fn depth(&self) -> i64 {
        self.depth
    }

    pub fn origin_server_ts(&self) -> i64 {
        self.origin_server_ts
    }

    /// The event an `m.room.redaction` redacts, wherever this room version
    /// keeps it.
    pub fn redacts(&self) -> Option<&ruma::EventId> {
        self.redacts.as_deref()
    }

    pub fn content(&self) -> &Object {
        // Checked to be an object at parse time.
        static EMPTY: Object = Object::new();
        self.json
            .get("content")
            .and_then(Value::as_object)
            .unwrap_or(&EMPTY)
    }

    /// `content.membership` of an `m.room.member` event.
    pub fn membership(&self) -> Option<&str> {
        if self.event_type == "m.room.member" {
            self.content().get("membership").and_then(Value::as_str)
        } else {
            None
        }
    }

    /// The event as signed, in federation format (no `event_id`).
    pub fn json(&self) -> &Object {
        &self.json
    }

    pub fn into_json(self) -> Object {
        self.json
    }

    /// Canonical JSON of the federation format, as sent to other servers.
    pub fn to_canonical_bytes(&self) -> Vec<u8> {
        canonical_json::object_bytes_without(&self.json, &[])
    }

    /// Whether `hashes.sha256` matches the content. A PDU that fails this
    /// must be stored and used in its redacted form.
    pub fn content_hash_matches(&self) -> bool {
        hashes::content_hash_matches(&self.json)
    }

    /// This event after redaction: same ID, same signatures, content stripped.
    pub fn redacted(&self) -> Pdu {
        let mut json = self.json.clone();
        crate::redaction::redact_in_place(self.rules().redaction, &mut json);
        Pdu {
            json,
            ..self.clone()
        }
    }

    /// The bytes this event's signatures cover.
    pub fn signed_bytes(&self) -> Vec<u8> {
        hashes::signed_bytes(self.rules().redaction, &self.json)
    }

    /// The servers that must have signed this event (server-server API
    /// "Validating hashes and signatures on received events"): the sender's
    /// server, and for a restricted join the server of the user who
    /// authorised it.
    pub fn required_signers(&self) -> Vec<OwnedServerName> {
        let mut servers = vec![self.sender.server_name().to_owned()];
        if self.membership() == Some("join")
            && let Some(Value::String(via)) = self.content().get("join_authorised_via_users_server")
            && let Ok(via) = UserId::parse(via)
            && !servers.iter().any(|s| s == via.server_name())
        {
            servers.push(via.server_name().to_owned());
        }
        servers
    }

    /// Whether the JSON carries a signature entry from `server` (not whether
    /// it verifies: that is checked on receipt, before auth).
    pub fn has_signature_from(&self, server: &ServerName) -> bool {
        matches!(self.json.get("signatures"), Some(Value::Object(s)) if s.contains_key(server.as_str()))
    }
}

/// Builds, hashes and signs a new event of this server.
#[derive(Clone, Debug)]
pub struct PduBuilder {
    pub event_type: String,
    pub state_key: Option<String>,
    pub content: Object,
    pub sender: OwnedUserId,
    /// `None` only for a v12 create event, whose room ID is its own hash.
    pub room_id: Option<OwnedRoomId>,
    pub prev_events: Vec<OwnedEventId>,
    pub auth_events: Vec<OwnedEventId>,
    pub depth: i64,
    pub origin_server_ts: i64,
    /// For `m.room.redaction`: put at the top level or in `content` as the
    /// room version wants.
    pub redacts: Option<OwnedEventId>,
    pub unsigned: Option<Object>,
}

impl PduBuilder {
    /// A builder with the fields every event needs; the rest default empty.
    pub fn new(
        event_type: impl Into<String>,
        state_key: Option<&str>,
        content: Object,
        sender: &UserId,
        room_id: Option<&ruma::RoomId>,
    ) -> Self {
        Self {
            event_type: event_type.into(),
            state_key: state_key.map(str::to_owned),
            content,
            sender: sender.to_owned(),
            room_id: room_id.map(ToOwned::to_owned),
            prev_events: Vec::new(),
            auth_events: Vec::new(),
            depth: 1,
            origin_server_ts: 0,
            redacts: None,
            unsigned: None,
        }
    }

    /// Hashes and signs the event as `origin` and validates the result.
    pub fn build(self, version: RoomVersion, origin: &str, key: &KeyPair) -> Result<Pdu, PduError> {
        let rules = version.rules();
        let ids = |list: Vec<OwnedEventId>| {
            Value::Array(
                list.into_iter()
                    .map(|id| Value::String(id.to_string()))
                    .collect(),
            )
        };
        let mut content = self.content;
        let mut obj = Object::new();
        if let Some(redacts) = &self.redacts {
            let holder = if rules.redacts_in_content {
                &mut content
            } else {
                &mut obj
            };
            holder.insert("redacts".to_owned(), Value::String(redacts.to_string()));
        }
        obj.insert("type".to_owned(), Value::String(self.event_type));
        if let Some(sk) = self.state_key {
            obj.insert("state_key".to_owned(), Value::String(sk));
        }
        obj.insert("content".to_owned(), Value::Object(content));
        obj.insert("sender".to_owned(), Value::String(self.sender.to_string()));
        if let Some(room_id) = self.room_id {
            obj.insert("room_id".to_owned(), Value::String(room_id.to_string()));
        }
        obj.insert("prev_events".to_owned(), ids(self.prev_events));
        obj.insert("auth_events".to_owned(), ids(self.auth_events));
        obj.insert(
            "depth".to_owned(),
            Value::integer(self.depth).map_err(|_| PduError::Depth)?,
        );
        obj.insert(
            "origin_server_ts".to_owned(),
            Value::integer(self.origin_server_ts)
                .map_err(|_| PduError::WrongType("origin_server_ts"))?,
        );
        hashes::hash_and_sign_event(rules.redaction, origin, key, &mut obj);
        if let Some(unsigned) = self.unsigned {
            obj.insert("unsigned".to_owned(), Value::Object(unsigned));
        }
        Pdu::from_object(version, obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::{PublicKey, verify_json_canonical};
    use std::collections::BTreeMap;

    fn key() -> KeyPair {
        KeyPair::from_seed("1", &[7; 32]).expect("key")
    }

    fn user(s: &str) -> OwnedUserId {
        UserId::parse(s).expect("user id")
    }

    fn content(json: &str) -> Object {
        canonical_json::parse_object(json.as_bytes()).expect("json")
    }

    fn create_v12() -> Pdu {
        PduBuilder::new(
            "m.room.create",
            Some(""),
            content(r#"{"room_version":"12"}"#),
            &user("@alice:a.test"),
            None,
        )
        .build(RoomVersion::V12, "a.test", &key())
        .expect("create")
    }

    #[test]
    fn v12_room_id_is_the_create_event_hash() {
        let create = create_v12();
        assert_eq!(
            &create.room_id().as_str()[1..],
            &create.event_id().as_str()[1..]
        );
        assert!(!create.json().contains_key("room_id"));
        // Round trip through bytes gives the same event.
        let again = Pdu::from_json(RoomVersion::V12, &create.to_canonical_bytes()).expect("parse");
        assert_eq!(again, create);
        // A v12 create carrying a room_id is refused.
        let mut bad = create.json().clone();
        bad.insert(
            "room_id".into(),
            Value::String(create.room_id().to_string()),
        );
        assert_eq!(
            Pdu::from_object(RoomVersion::V12, bad),
            Err(PduError::CreateWithRoomId)
        );
    }

    #[test]
    fn built_events_verify_and_carry_their_hash() {
        let create = create_v12();
        let mut b = PduBuilder::new(
            "m.room.message",
            None,
            content(r#"{"body":"hi","msgtype":"m.text"}"#),
            &user("@alice:a.test"),
            Some(create.room_id()),
        );
        b.prev_events = vec![create.event_id().to_owned()];
        b.depth = 2;
        b.origin_server_ts = 1_700_000_000_000;
        let msg = b.build(RoomVersion::V12, "a.test", &key()).expect("build");
        assert!(msg.content_hash_matches());
        let keys = BTreeMap::from([("ed25519:1".to_owned(), key().public_key())]);
        let _: &PublicKey = &keys["ed25519:1"];
        assert_eq!(
            verify_json_canonical(msg.json(), "a.test", &keys, &msg.signed_bytes()),
            Ok(())
        );
        // Redaction keeps the ID and the signature, loses the hash match.
        let redacted = msg.redacted();
        assert_eq!(redacted.event_id(), msg.event_id());
        assert!(!redacted.content_hash_matches());
        assert!(redacted.content().is_empty());
        assert_eq!(
            verify_json_canonical(redacted.json(), "a.test", &keys, &redacted.signed_bytes()),
            Ok(())
        );
        assert_eq!(
            msg.required_signers(),
            vec![ServerName::parse("a.test").expect("sn")]
        );
    }

    #[test]
    fn redacts_lives_where_the_version_wants_it() {
        let target: OwnedEventId = create_v12().event_id().to_owned();
        for (version, in_content) in [(RoomVersion::V10, false), (RoomVersion::V11, true)] {
            let mut b = PduBuilder::new(
                "m.room.redaction",
                None,
                Object::new(),
                &user("@alice:a.test"),
                Some(&ruma::RoomId::parse("!r:a.test").expect("room")),
            );
            b.redacts = Some(target.clone());
            let ev = b.build(version, "a.test", &key()).expect("build");
            assert_eq!(ev.redacts(), Some(&*target));
            assert_eq!(ev.content().contains_key("redacts"), in_content);
            assert_eq!(ev.json().contains_key("redacts"), !in_content);
        }
    }

    #[test]
    fn malformed_events_get_typed_errors() {
        let good = create_v12().into_json();
        let with = |k: &str, v: Value| {
            let mut o = good.clone();
            o.insert(k.to_owned(), v);
            Pdu::from_object(RoomVersion::V12, o)
        };
        let without = |k: &str| {
            let mut o = good.clone();
            o.remove(k);
            Pdu::from_object(RoomVersion::V12, o)
        };
        assert_eq!(without("sender"), Err(PduError::Missing("sender")));
        assert_eq!(without("hashes"), Err(PduError::Missing("hashes")));
        assert_eq!(
            with("depth", Value::String("1".into())),
            Err(PduError::WrongType("depth"))
        );
        assert_eq!(with("depth", Value::Integer(-1)), Err(PduError::Depth));
        assert_eq!(
            with("content", Value::Integer(1)),
            Err(PduError::WrongType("content"))
        );
        assert!(matches!(
            with("sender", Value::String("alice".into())),
            Err(PduError::InvalidId {
                field: "sender",
                ..
            })
        ));
        assert_eq!(
            with("type", Value::String("x".repeat(256))),
            Err(PduError::TooLong("type"))
        );
        assert!(matches!(
            with(
                "prev_events",
                Value::Array(vec![Value::String("$short".into())])
            ),
            Err(PduError::InvalidId {
                field: "prev_events",
                ..
            })
        ));
        let many = Value::Array(
            (0..21)
                .map(|i| Value::String(format!("${:0>43}", i)))
                .collect(),
        );
        assert!(matches!(
            with("prev_events", many),
            Err(PduError::TooManyReferences { count: 21, .. })
        ));
        assert!(matches!(
            with(
                "content",
                Value::Object(content(&format!(r#"{{"x":"{}"}}"#, "a".repeat(70_000))))
            ),
            Err(PduError::TooLarge(_))
        ));
        assert!(matches!(
            Pdu::from_json(RoomVersion::V12, br#"{"type":"m.room.create""#),
            Err(PduError::Json(_))
        ));
        let mut msg = good.clone();
        msg.insert("type".into(), Value::String("m.room.message".into()));
        msg.remove("state_key");
        msg.insert("room_id".into(), Value::String("!r:a.test".into()));
        assert!(matches!(
            Pdu::from_object(RoomVersion::V12, msg),
            Err(PduError::InvalidId {
                field: "room_id",
                ..
            })
        ));
    }

    #[test]
    fn events_for_another_room_are_refused() {
        let create = create_v12();
        let other = ruma::RoomId::parse(format!("!{}", "A".repeat(43))).expect("room");
        assert!(create.expect_room(create.room_id()).is_ok());
        assert!(matches!(
            create.expect_room(&other),
            Err(PduError::WrongRoom { .. })
        ));
    }
}
