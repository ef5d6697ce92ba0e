//! Authorization rules for room versions 10, 11 and 12 (the `rooms/vN`
//! sections of the spec). INTERFACE STUB: the rules are being written; the
//! signatures below are the contract state resolution and the servers use.

use ruma::UserId;

use crate::canonical_json::Object;
use crate::pdu::Pdu;
use crate::room_version::RoomVersionRules;

/// Why an event is not allowed: the spec's rule number and a reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rejected by auth rule {rule}: {reason}")]
pub struct AuthError {
    /// The rule's number in the room version's list, e.g. `"5.3.2"`.
    pub rule: &'static str,
    pub reason: String,
}

/// The `(event_type, state_key)` pairs an event's `auth_events` are chosen
/// from (server-server API "Auth events selection").
pub fn auth_types_for_event(
    rules: &RoomVersionRules,
    event_type: &str,
    sender: &UserId,
    state_key: Option<&str>,
    content: &Object,
) -> Vec<(String, String)> {
    let _ = (rules, event_type, sender, state_key, content);
    Vec::new()
}

/// Checks the `auth_events` list itself (v12 rules 2 and 3; the same checks
/// in v10/v11): no duplicate `(type, state_key)`, nothing outside the auth
/// events selection, all in the event's room, and (v12) the room ID names
/// the create event. `auth_events` are the events the list cites; whether
/// any of them was rejected is the caller's knowledge and checked there.
pub fn check_auth_events(
    rules: &RoomVersionRules,
    event: &Pdu,
    auth_events: &[&Pdu],
    create_event: Option<&Pdu>,
) -> Result<(), AuthError> {
    let _ = (rules, event, auth_events, create_event);
    Ok(())
}

/// Checks `event` against a room state: the state formed by its auth events,
/// the state before it, or the current state. `state(type, state_key)`
/// returns that state's event for the key, if any.
pub fn check<'a>(
    rules: &RoomVersionRules,
    event: &Pdu,
    state: impl Fn(&str, &str) -> Option<&'a Pdu>,
) -> Result<(), AuthError> {
    let _ = (rules, event, state);
    Ok(())
}
