//! The room state an event is checked against, seen through the caller's
//! lookup function, and users' memberships in it.

use crate::canonical_json::Value;
use crate::pdu::Pdu;

/// A user's membership as the auth rules compare it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Membership {
    Join,
    Invite,
    Leave,
    Ban,
    Knock,
    /// Any other value. No rule allows anything on an unknown membership,
    /// and a user with one is neither joined, invited, knocking nor banned.
    Unknown,
}

impl Membership {
    /// Parses a `membership` value as the spec spells it.
    pub fn parse(s: &str) -> Self {
        match s {
            "join" => Membership::Join,
            "invite" => Membership::Invite,
            "leave" => Membership::Leave,
            "ban" => Membership::Ban,
            "knock" => Membership::Knock,
            _ => Membership::Unknown,
        }
    }

    /// The membership an `m.room.member` state event gives its user; no
    /// event means the user never had a membership, which the rules treat
    /// as `leave`.
    pub fn of(member_event: Option<&Pdu>) -> Self {
        match member_event {
            None => Membership::Leave,
            Some(ev) => match ev.content().get("membership") {
                Some(Value::String(s)) => Membership::parse(s),
                // An accepted member event always has a string membership
                // (rule 4.1); a malformed one grants nothing.
                _ => Membership::Unknown,
            },
        }
    }
}

/// Room state as the caller's lookup function exposes it. Kept as a trait
/// object so the rule code is compiled once, not once per closure type.
#[derive(Clone, Copy)]
pub(crate) struct State<'a, 's> {
    lookup: &'s dyn Fn(&str, &str) -> Option<&'a Pdu>,
}

impl<'a, 's> State<'a, 's> {
    pub(crate) fn new(lookup: &'s dyn Fn(&str, &str) -> Option<&'a Pdu>) -> Self {
        Self { lookup }
    }

    pub(crate) fn get(&self, event_type: &str, state_key: &str) -> Option<&'a Pdu> {
        (self.lookup)(event_type, state_key)
    }

    pub(crate) fn member(&self, user: &str) -> Option<&'a Pdu> {
        self.get("m.room.member", user)
    }

    pub(crate) fn membership(&self, user: &str) -> Membership {
        Membership::of(self.member(user))
    }
}
