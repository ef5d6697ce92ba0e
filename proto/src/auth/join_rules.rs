//! `m.room.join_rules`: the join rule the membership rules branch on, and
//! the `allow` conditions of restricted rooms (which the auth rules do not
//! evaluate: the resident server checks them before it signs a join).

use crate::canonical_json::Value;
use crate::pdu::Pdu;

/// A room's join rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JoinRule {
    Public,
    Invite,
    Knock,
    Restricted,
    KnockRestricted,
    /// Reserved by the spec without meaning; allows nothing.
    Private,
    /// A value the spec does not define (or not a string); allows nothing.
    Unknown,
}

impl JoinRule {
    /// Parses a `join_rule` value.
    pub fn parse(s: &str) -> Self {
        match s {
            "public" => JoinRule::Public,
            "invite" => JoinRule::Invite,
            "knock" => JoinRule::Knock,
            "restricted" => JoinRule::Restricted,
            "knock_restricted" => JoinRule::KnockRestricted,
            "private" => JoinRule::Private,
            _ => JoinRule::Unknown,
        }
    }

    /// The join rule a room state's `m.room.join_rules` event sets.
    ///
    /// The spec does not say what applies when the room has no join rules
    /// event, or the event has no `join_rule`; Synapse treats both as
    /// `invite`, and so do we (ruma-state-res rejects every join instead).
    pub fn of(join_rules_event: Option<&Pdu>) -> Self {
        match join_rules_event.map(|e| e.content().get("join_rule")) {
            None | Some(None) => JoinRule::Invite,
            Some(Some(Value::String(s))) => JoinRule::parse(s),
            Some(Some(_)) => JoinRule::Unknown,
        }
    }

    /// Whether joins may be authorised by a resident user (`restricted` or
    /// `knock_restricted`).
    pub fn is_restricted(self) -> bool {
        matches!(self, JoinRule::Restricted | JoinRule::KnockRestricted)
    }

    /// Whether users may knock (`knock` or `knock_restricted`).
    pub fn allows_knocking(self) -> bool {
        matches!(self, JoinRule::Knock | JoinRule::KnockRestricted)
    }
}

/// The rooms whose members may join a restricted room: the `room_id` of
/// each `allow` condition of type `m.room_membership`. Malformed conditions
/// are skipped: the spec makes a room with no usable condition invite-only.
pub fn restricted_allow_rooms(join_rules_event: &Pdu) -> impl Iterator<Item = &str> {
    join_rules_event
        .content()
        .get("allow")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_object)
        .filter(|c| c.get("type").and_then(Value::as_str) == Some("m.room_membership"))
        .filter_map(|c| c.get("room_id").and_then(Value::as_str))
        .filter(|id| id.starts_with('!'))
}
