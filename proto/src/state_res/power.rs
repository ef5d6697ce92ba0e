//! The power level of an event's sender as its own auth events say, for the
//! reverse topological power ordering.
//!
//! Read straight from the `content` objects (a `users` lookup in a sorted
//! map) instead of parsing whole power levels events: a room with thousands
//! of members has thousands of `users` entries and we need one.

use crate::canonical_json::Value;
use crate::room_version::RoomVersionRules;

use super::StateResError;
use super::graph::{Ev, EventGraph};
use super::{EventSource, T_CREATE, T_POWER_LEVELS};

/// A user's power level. Room creators in room version 12 outrank every
/// integer (`Int < Infinite` by the derived order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Power {
    Int(i64),
    Infinite,
}

/// Power of a room creator when there is no power levels event (v10/v11).
const CREATOR_DEFAULT: i64 = 100;

/// Whether `user` is a room creator according to `create`.
pub(crate) fn is_creator(rules: &RoomVersionRules, create: &crate::Pdu, user: &str) -> bool {
    if rules.create_requires_creator {
        // Room version 10 names the creator in `content.creator`; a create
        // event without it is rejected, so the sender is only a fallback.
        let creator = create
            .content()
            .get("creator")
            .and_then(Value::as_str)
            .unwrap_or(create.sender().as_str());
        return creator == user;
    }
    if create.sender().as_str() == user {
        return true;
    }
    rules.creators_have_infinite_power
        && create
            .content()
            .get("additional_creators")
            .and_then(Value::as_array)
            .is_some_and(|list| list.iter().any(|v| v.as_str() == Some(user)))
}

/// The sender's power level from the power levels and create events among
/// `ev`'s auth events (`room_create` stands in for the create event in room
/// version 12, where events no longer cite it). `ev`'s auth events must
/// have been interned.
pub(crate) fn sender_power<S: EventSource + ?Sized>(
    g: &EventGraph<'_, S>,
    rules: &RoomVersionRules,
    ev: Ev,
    room_create: Option<Ev>,
) -> Result<Power, StateResError> {
    let pdu = g.pdu(ev);
    let sender = pdu.sender().as_str();
    let create = if rules.room_id_from_create_event {
        room_create
    } else {
        g.auth_event_of_type(ev, T_CREATE, "")
    };
    let creator = create.is_some_and(|c| is_creator(rules, g.pdu(c), sender));
    if creator && rules.creators_have_infinite_power {
        return Ok(Power::Infinite);
    }
    let Some(pl) = g.auth_event_of_type(ev, T_POWER_LEVELS, "") else {
        return Ok(Power::Int(if creator { CREATOR_DEFAULT } else { 0 }));
    };
    let pl = g.pdu(pl);
    let invalid = || StateResError::InvalidPowerLevels(pl.event_id().to_owned());
    let content = pl.content();
    let from_users = match content.get("users") {
        None => None,
        Some(Value::Object(users)) => users.get(sender),
        Some(_) => return Err(invalid()),
    };
    // Room versions 10+ require integers; anything else could only come
    // from an event the auth rules rejected, which must not be here.
    match from_users.or_else(|| content.get("users_default")) {
        None => Ok(Power::Int(0)),
        Some(Value::Integer(n)) => Ok(Power::Int(*n)),
        Some(_) => Err(invalid()),
    }
}
