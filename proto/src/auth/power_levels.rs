//! `m.room.power_levels`: reading levels out of the room state, validating
//! a new power levels event (rules 9.1 to 9.3, v12 10.4) and the rules on
//! changing them (9.5 to 9.9).
//!
//! Levels are read straight from the event's canonical JSON: state
//! resolution asks for levels hundreds of thousands of times, and a lookup
//! in the content's `BTreeMap` costs less than building any parsed copy.

use std::cmp::Ordering;
use std::fmt;

use ruma::UserId;

use super::AuthError;
use super::create::RoomCreate;
use super::rule::Rule;
use crate::canonical_json::{Object, Value};
use crate::pdu::Pdu;
use crate::room_version::RoomVersionRules;

/// The top-level integer properties and their defaults (server-server API
/// "Definitions"; `m.room.power_levels` schema).
pub const LEVEL_FIELDS: [(&str, i64); 7] = [
    ("users_default", 0),
    ("events_default", 0),
    ("state_default", 50),
    ("ban", 50),
    ("redact", 50),
    ("kick", 50),
    ("invite", 0),
];

/// The level the room creator has while the room has no power levels event
/// (v10 and v11).
pub const CREATOR_LEVEL_WITHOUT_POWER_LEVELS: i64 = 100;

/// A user's power level. Room creators in v12 outrank every integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UserPowerLevel {
    Finite(i64),
    /// A v12 room creator.
    Infinite,
}

impl UserPowerLevel {
    /// Whether this level meets a required level.
    pub fn at_least(self, required: i64) -> bool {
        self >= UserPowerLevel::Finite(required)
    }
}

impl From<i64> for UserPowerLevel {
    fn from(n: i64) -> Self {
        UserPowerLevel::Finite(n)
    }
}

impl PartialEq<i64> for UserPowerLevel {
    fn eq(&self, other: &i64) -> bool {
        *self == UserPowerLevel::Finite(*other)
    }
}

impl PartialOrd<i64> for UserPowerLevel {
    fn partial_cmp(&self, other: &i64) -> Option<Ordering> {
        Some(self.cmp(&UserPowerLevel::Finite(*other)))
    }
}

impl fmt::Display for UserPowerLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserPowerLevel::Finite(n) => write!(f, "{n}"),
            UserPowerLevel::Infinite => f.write_str("infinite (room creator)"),
        }
    }
}

/// The power levels in force in a room state: its `m.room.power_levels`
/// event, if any, and its create event (for the creators' levels).
///
/// Reads are lenient: a state power levels event passed rules 9.1 to 9.3
/// when it was accepted, so every value is an integer; should one not be,
/// it is read as absent and its default applies.
#[derive(Clone, Copy, Debug)]
pub struct PowerLevels<'a> {
    rules: &'a RoomVersionRules,
    create: Option<RoomCreate<'a>>,
    content: Option<&'a Object>,
}

impl<'a> PowerLevels<'a> {
    /// Power levels from a state's create and power levels events. Without
    /// a create event nobody gets a creator's level.
    pub fn new(
        rules: &'a RoomVersionRules,
        create: Option<&'a Pdu>,
        power_levels: Option<&'a Pdu>,
    ) -> Self {
        Self {
            rules,
            create: create.map(|c| RoomCreate::new(rules, c)),
            content: power_levels.map(Pdu::content),
        }
    }

    pub(super) fn from_parts(
        rules: &'a RoomVersionRules,
        create: RoomCreate<'a>,
        power_levels: Option<&'a Pdu>,
    ) -> Self {
        Self {
            rules,
            create: Some(create),
            content: power_levels.map(Pdu::content),
        }
    }

    /// Whether the room has a power levels event.
    pub fn exists(&self) -> bool {
        self.content.is_some()
    }

    /// A top-level level (`ban`, `kick`, ...), or its default when absent.
    /// Unknown names default to 0.
    pub fn level(&self, field: &str) -> i64 {
        self.content
            .and_then(|c| c.get(field))
            .and_then(Value::as_integer)
            .unwrap_or_else(|| default_of(field))
    }

    pub fn invite(&self) -> i64 {
        self.level("invite")
    }

    pub fn kick(&self) -> i64 {
        self.level("kick")
    }

    pub fn ban(&self) -> i64 {
        self.level("ban")
    }

    pub fn redact(&self) -> i64 {
        self.level("redact")
    }

    /// The power level of `user`.
    pub fn user_level(&self, user: &UserId) -> UserPowerLevel {
        self.user_level_str(user.as_str())
    }

    pub(super) fn user_level_str(&self, user: &str) -> UserPowerLevel {
        // v12: creators outrank everything, power levels event or not.
        if self.create.is_some_and(|c| c.has_infinite_power(user)) {
            return UserPowerLevel::Infinite;
        }
        match self.content {
            Some(content) => UserPowerLevel::Finite(
                content
                    .get("users")
                    .and_then(Value::as_object)
                    .and_then(|users| users.get(user))
                    .and_then(Value::as_integer)
                    .unwrap_or_else(|| self.level("users_default")),
            ),
            None => {
                // Before v12 the creator has 100 until power levels exist
                // (`m.room.power_levels` schema); v12 creators returned above.
                let is_creator = !self.rules.creators_have_infinite_power
                    && self.create.and_then(|c| c.creator()) == Some(user);
                UserPowerLevel::Finite(if is_creator {
                    CREATOR_LEVEL_WITHOUT_POWER_LEVELS
                } else {
                    0
                })
            }
        }
    }

    /// The *required power level* of an event type: `events[type]`, else
    /// `state_default` for state events and `events_default` for others.
    pub fn event_level(&self, event_type: &str, is_state: bool) -> i64 {
        self.content
            .and_then(|c| c.get("events"))
            .and_then(Value::as_object)
            .and_then(|events| events.get(event_type))
            .and_then(Value::as_integer)
            .unwrap_or_else(|| {
                self.level(if is_state {
                    "state_default"
                } else {
                    "events_default"
                })
            })
    }

    /// The level needed to trigger a notification of kind `key` (`room`
    /// defaults to 50). Not used by the auth rules; for push rules.
    pub fn notification_level(&self, key: &str) -> i64 {
        self.content
            .and_then(|c| c.get("notifications"))
            .and_then(Value::as_object)
            .and_then(|n| n.get(key))
            .and_then(Value::as_integer)
            .unwrap_or(if key == "room" { 50 } else { 0 })
    }
}

fn default_of(field: &str) -> i64 {
    LEVEL_FIELDS
        .iter()
        .find(|(name, _)| *name == field)
        .map_or(0, |(_, d)| *d)
}

/// Rules 9.1 to 9.3 (v12: 10.1 to 10.4): the shape every power levels
/// content must have. `create` is needed for v12's "no creators in
/// `users`"; before v12 it may be `None`. Useful to refuse a client's
/// power levels before building an event from them.
pub fn validate_power_levels(
    rules: &RoomVersionRules,
    content: &Object,
    create: Option<&Pdu>,
) -> Result<(), AuthError> {
    // 9.1: room versions 10+ refuse the old "stringy" levels.
    for (field, _) in LEVEL_FIELDS {
        if let Some(v) = content.get(field)
            && v.as_integer().is_none()
        {
            return Err(
                Rule::PlIntegerFields.reject(rules, format!("{field} is {v}, not an integer"))
            );
        }
    }
    // 9.2
    for field in ["events", "notifications"] {
        if let Some(v) = content.get(field) {
            let ok = v
                .as_object()
                .is_some_and(|m| m.values().all(|l| l.as_integer().is_some()));
            if !ok {
                return Err(Rule::PlIntegerMaps
                    .reject(rules, format!("{field} is not an object of integers")));
            }
        }
    }
    // 9.3: `users` may be absent; when present it must be well-formed.
    if let Some(users) = content.get("users") {
        let Some(users) = users.as_object() else {
            return Err(Rule::PlUsers.reject(rules, "users is not an object"));
        };
        for (user, level) in users {
            if <&UserId>::try_from(user.as_str()).is_err() {
                return Err(
                    Rule::PlUsers.reject(rules, format!("users key {user:?} is not a user ID"))
                );
            }
            if level.as_integer().is_none() {
                return Err(Rule::PlUsers
                    .reject(rules, format!("level of {user} is {level}, not an integer")));
            }
        }
        // 10.4 (v12): creators' power is fixed and may not be listed.
        if rules.creators_have_infinite_power {
            let Some(create) = create else {
                return Err(Rule::PlCreatorListed.reject(
                    rules,
                    "cannot tell the room creators without the create event",
                ));
            };
            let create = RoomCreate::new(rules, create);
            if let Some(c) = create.creators().find(|c| users.contains_key(*c)) {
                return Err(Rule::PlCreatorListed.reject(
                    rules,
                    format!("room creator {c} may not be listed in users"),
                ));
            }
        }
    }
    Ok(())
}

/// Rule 9 for an `m.room.power_levels` event sent by a user whose level is
/// `sender_level`, given the power levels currently in force.
pub(super) fn check_power_levels_event(
    rules: &RoomVersionRules,
    event: &Pdu,
    create: RoomCreate<'_>,
    current: &PowerLevels<'_>,
    sender_level: UserPowerLevel,
) -> Result<(), AuthError> {
    let new = event.content();
    validate_power_levels(rules, new, Some(create.event()))?;
    // 9.4: the first power levels event may set anything.
    let Some(old) = current.content else {
        return Ok(());
    };
    let above_sender = |level: i64| UserPowerLevel::Finite(level) > sender_level;

    // 9.5: a property's *value* is compared, not its effective level: adding
    // or removing a property compares only the side that has a value. This
    // is the spec's wording and Synapse's behaviour.
    for (field, _) in LEVEL_FIELDS {
        let old_v = old.get(field).and_then(Value::as_integer);
        let new_v = new.get(field).and_then(Value::as_integer);
        if old_v == new_v {
            continue;
        }
        if let Some(o) = old_v.filter(|o| above_sender(*o)) {
            return Err(Rule::PlFieldCurrent.reject(
                rules,
                format!("{field} is {o}, above the sender's level {sender_level}"),
            ));
        }
        if let Some(n) = new_v.filter(|n| above_sender(*n)) {
            return Err(Rule::PlFieldNew.reject(
                rules,
                format!("{field} would be {n}, above the sender's level {sender_level}"),
            ));
        }
    }

    // 9.6 then 9.7, each over `events` and `notifications`, in the spec's order.
    for field in ["events", "notifications"] {
        let (old_map, new_map) = (map(old, field), map(new, field));
        if let Some(key) = first_changed(old_map, new_map, |_, level| above_sender(level)) {
            return Err(Rule::PlMapCurrent.reject(
                rules,
                format!("{field}[{key:?}] is above the sender's level {sender_level}"),
            ));
        }
    }
    for field in ["events", "notifications"] {
        let (old_map, new_map) = (map(old, field), map(new, field));
        if let Some(key) = first_changed(new_map, old_map, |_, level| above_sender(level)) {
            return Err(Rule::PlMapNew.reject(
                rules,
                format!("{field}[{key:?}] would be above the sender's level {sender_level}"),
            ));
        }
    }

    let (old_users, new_users) = (map(old, "users"), map(new, "users"));
    let sender = event.sender().as_str();
    // 9.8: nobody may change or remove a user at or above their own level,
    // except their own entry.
    if let Some(user) = first_changed(old_users, new_users, |user, level| {
        user != sender && UserPowerLevel::Finite(level) >= sender_level
    }) {
        return Err(Rule::PlUserCurrent.reject(
            rules,
            format!("{user} is at or above the sender's level {sender_level}"),
        ));
    }
    // 9.9
    if let Some(user) = first_changed(new_users, old_users, |_, level| above_sender(level)) {
        return Err(Rule::PlUserNew.reject(
            rules,
            format!("{user} would be above the sender's level {sender_level}"),
        ));
    }
    Ok(())
}

fn map<'c>(content: &'c Object, field: &str) -> Option<&'c Object> {
    content.get(field).and_then(Value::as_object)
}

/// The first key of `from` whose integer value differs from (or is missing
/// in) `other` and for which `bad(key, value_in_from)` holds. Called with
/// (old, new) it visits entries changed in or removed from the old map; with
/// (new, old), entries added to or changed in the new one.
fn first_changed<'m>(
    from: Option<&'m Object>,
    other: Option<&Object>,
    bad: impl Fn(&str, i64) -> bool,
) -> Option<&'m str> {
    let from = from?;
    from.iter().find_map(|(key, value)| {
        let value = value.as_integer()?;
        let unchanged = other.and_then(|o| o.get(key)).and_then(Value::as_integer) == Some(value);
        (!unchanged && bad(key, value)).then_some(key.as_str())
    })
}
