//! The `m.room.create` event: its own auth rules (rule 1) and what other
//! rules read from it (creators, `m.federate`).

use std::str::FromStr;

use ruma::UserId;

use super::AuthError;
use super::rule::Rule;
use crate::canonical_json::Value;
use crate::pdu::Pdu;
use crate::room_version::{RoomVersion, RoomVersionRules};

/// A room's create event, read the way the room version says.
#[derive(Clone, Copy, Debug)]
pub struct RoomCreate<'a> {
    rules: &'a RoomVersionRules,
    event: &'a Pdu,
}

impl<'a> RoomCreate<'a> {
    /// Wraps the room's create event. The event is trusted to be an accepted
    /// `m.room.create` of the room; nothing here re-checks that.
    pub fn new(rules: &'a RoomVersionRules, event: &'a Pdu) -> Self {
        Self { rules, event }
    }

    pub fn event(&self) -> &'a Pdu {
        self.event
    }

    /// The user rule 4.3.1 lets join right after the create event and who
    /// has power level 100 while the room has no power levels (v10 and v11):
    /// `content.creator` in v10, the sender from v11 on. `None` when a v10
    /// create event's `creator` is not a string: then nobody is the creator.
    pub fn creator(&self) -> Option<&'a str> {
        if self.rules.create_requires_creator {
            self.event.content().get("creator").and_then(Value::as_str)
        } else {
            Some(self.event.sender().as_str())
        }
    }

    /// `content.additional_creators` (v12 only; empty before). Entries that
    /// are not strings are skipped: an accepted create event has none.
    pub fn additional_creators(&self) -> impl Iterator<Item = &'a str> + 'a {
        let list = if self.rules.creators_have_infinite_power {
            self.event
                .content()
                .get("additional_creators")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
        } else {
            None
        };
        list.unwrap_or_default().iter().filter_map(Value::as_str)
    }

    /// Whether `user` is a room creator in the v12 sense (sender of the
    /// create event or listed in `additional_creators`), i.e. has infinite
    /// power. Always false before v12, where creators have no special power
    /// once the room has power levels.
    pub fn has_infinite_power(&self, user: &str) -> bool {
        self.rules.creators_have_infinite_power
            && (self.event.sender().as_str() == user
                || self.additional_creators().any(|c| c == user))
    }

    /// The v12 room creators: the sender, then `additional_creators`. Before
    /// v12, the one [`creator`](Self::creator), if any.
    pub fn creators(&self) -> impl Iterator<Item = &'a str> + 'a {
        let first = if self.rules.creators_have_infinite_power {
            Some(self.event.sender().as_str())
        } else {
            self.creator()
        };
        first.into_iter().chain(self.additional_creators())
    }

    /// Whether users of other servers may take part (`m.federate`, default
    /// true). The spec restricts the room only when the property is `false`;
    /// any other value, well-formed or not, leaves it federated.
    pub fn federate(&self) -> bool {
        !matches!(
            self.event.content().get("m.federate"),
            Some(Value::Bool(false))
        )
    }
}

/// Rule 1: the checks on an `m.room.create` event. None depend on state.
pub(super) fn check_create_event(rules: &RoomVersionRules, event: &Pdu) -> Result<(), AuthError> {
    // 1.1
    if !event.prev_events().is_empty() {
        return Err(Rule::CreatePrevEvents.reject(rules, "the create event has prev_events"));
    }
    // 1.2
    if rules.room_id_from_create_event {
        if event.json().contains_key("room_id") {
            return Err(Rule::CreateRoomId.reject(rules, "the create event has a room_id"));
        }
    } else {
        let room_server = event.room_id().server_name();
        if room_server != Some(event.sender().server_name()) {
            return Err(Rule::CreateRoomId.reject(
                rules,
                format!(
                    "room ID {} is not of the sender's server {}",
                    event.room_id(),
                    event.sender().server_name()
                ),
            ));
        }
    }
    // 1.3: "recognised" here means a version this room can be: the one whose
    // rules are being applied. A create event naming another version (even
    // one we support) is being checked with the wrong rules.
    if let Some(v) = event.content().get("room_version") {
        let ok = v
            .as_str()
            .and_then(|s| RoomVersion::from_str(s).ok())
            .is_some_and(|v| v == rules.version);
        if !ok {
            return Err(Rule::CreateRoomVersion.reject(
                rules,
                format!(
                    "room_version {v} is not recognised for a version {} room",
                    rules.version
                ),
            ));
        }
    }
    // 1.4 (v10): only presence is required; a `creator` that is not a user
    // ID makes nobody the creator (see `RoomCreate::creator`).
    if rules.create_requires_creator && !event.content().contains_key("creator") {
        return Err(Rule::CreateCreator.reject(rules, "the create event has no creator"));
    }
    // 1.4 (v12)
    if rules.creators_have_infinite_power
        && let Some(list) = event.content().get("additional_creators")
    {
        let Some(list) = list.as_array() else {
            return Err(
                Rule::CreateAdditionalCreators.reject(rules, "additional_creators is not an array")
            );
        };
        for entry in list {
            // The same validation the PDU parser applies to `sender`.
            let valid = entry
                .as_str()
                .is_some_and(|s| <&UserId>::try_from(s).is_ok());
            if !valid {
                return Err(Rule::CreateAdditionalCreators.reject(
                    rules,
                    format!("additional_creators entry {entry} is not a user ID"),
                ));
            }
        }
    }
    Ok(())
}
