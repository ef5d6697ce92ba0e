//! Authorization rules for room versions 10, 11 and 12 (the "Authorisation
//! rules" of `rooms/v10`, `v11` and `v12`).
//!
//! The rules split in two, as the checks on receipt of a PDU use them:
//!
//! - [`check_auth_events`]: the rules on an event's `auth_events` list
//!   (duplicates, selection, room), run once per event.
//! - [`check`]: every rule that depends on a room state (create event rules,
//!   `m.federate`, membership, power levels, ...), run against the state of
//!   the auth events, the state before the event and the current state.
//!
//! Every rejection names the rule's number in the room version checked.
//!
//! Signatures are not verified here: that happens on receipt, before auth.
//! Where a rule depends on a signature ("validly signed by the homeserver
//! of the authorising user"), the check is that a signature from that
//! server is present on the (already verified) event.
//!
//! Where the spec is silent, the rules follow Synapse; each such choice is
//! documented where it is made.
//!
//! Comments in this module number rules as room versions 10 and 11 do; v12
//! inserted rule 2 and rule 10.4, so from rule 2 on its numbers are one
//! higher (and rule 9.4 onwards becomes 10.5 onwards). [`AuthError::rule`]
//! always carries the number of the version checked.
//!
//! Choices where implementations differ (each tested):
//!
//! - No `m.room.join_rules` event, or one without `join_rule`: read as
//!   `invite`, as Synapse does (ruma-state-res rejects every join).
//! - Rule 9.5 compares the values a property has, not its defaults: adding
//!   `ban` below its default 50, or removing it, is judged on the one value
//!   that exists (spec wording, Synapse; ruma compares the defaults too).
//! - Only `m.federate: false` restricts a room (spec wording; Synapse also
//!   restricts on any other non-`true` value, ruma rejects every event).
//! - Rule 4.2 applies to every membership, as the spec words it (Synapse
//!   checks the authorising server's signature on joins only).
//! - A power levels event with a non-empty state key is compared with the
//!   room's power levels (spec wording, ruma; Synapse finds no previous
//!   event for that key and allows any change).
//!
//! Besides the checks, the module exposes what state resolution and the
//! server read from the auth state: [`PowerLevels`] (a user's
//! [`UserPowerLevel`], an event type's required level), [`RoomCreate`]
//! (creators, `m.federate`), [`JoinRule`] and [`Membership`].

mod create;
mod join_rules;
mod membership;
mod power_levels;
mod rule;
mod selection;
mod state;
mod third_party_invite;

use crate::pdu::Pdu;
use crate::room_version::RoomVersionRules;

pub use create::RoomCreate;
pub use join_rules::{JoinRule, restricted_allow_rooms};
pub use power_levels::{
    CREATOR_LEVEL_WITHOUT_POWER_LEVELS, LEVEL_FIELDS, PowerLevels, UserPowerLevel,
    validate_power_levels,
};
pub use selection::{auth_types_for_event, check_auth_events};
pub use state::Membership;
pub use third_party_invite::signed_by_any_key;

use power_levels::check_power_levels_event;
use rule::Rule;
use state::State;

/// Why an event is not allowed: the spec's rule number and a reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rejected by auth rule {rule}: {reason}")]
pub struct AuthError {
    /// The rule's number in the room version's list, e.g. `"5.3.2"`.
    pub rule: &'static str,
    pub reason: String,
}

/// Checks `event` against a room state: the state formed by its auth events,
/// the state before it, or the current state. `state(type, state_key)`
/// returns that state's event for the key, if any.
///
/// In v12 the create event is looked up as `state("m.room.create", "")`
/// like in other versions, and rule 2 (the room ID names it) is checked
/// against it. The state's events are trusted to be accepted events of the
/// event's room.
pub fn check<'a>(
    rules: &RoomVersionRules,
    event: &Pdu,
    state: impl Fn(&str, &str) -> Option<&'a Pdu>,
) -> Result<(), AuthError> {
    check_dyn(rules, event, State::new(&state))
}

fn check_dyn(rules: &RoomVersionRules, event: &Pdu, state: State<'_, '_>) -> Result<(), AuthError> {
    // Rule 1.
    if event.event_type() == "m.room.create" {
        return create::check_create_event(rules, event);
    }

    let create = state.get("m.room.create", "");
    if rules.room_id_from_create_event {
        // v12 rule 2.
        selection::check_room_id_names_create(rules, event, create)?;
    }
    let Some(create) = create else {
        // The state cannot hold what rule 2.4 requires of the auth events.
        return Err(Rule::AuthNoCreate.reject(rules, "the state has no m.room.create event"));
    };
    if create.room_id() != event.room_id() {
        return Err(Rule::AuthRoom.reject(
            rules,
            format!(
                "the state's create event is of room {}, not {}",
                create.room_id(),
                event.room_id()
            ),
        ));
    }
    let create = RoomCreate::new(rules, create);

    // Rule 3.
    if !create.federate() && create.event().sender().server_name() != event.sender().server_name() {
        return Err(Rule::Federate.reject(
            rules,
            format!(
                "the room is not federated and {} is not of {}",
                event.sender(),
                create.event().sender().server_name()
            ),
        ));
    }

    let power =
        power_levels::PowerLevels::from_parts(rules, create, state.get("m.room.power_levels", ""));

    // Rule 4.
    if event.event_type() == "m.room.member" {
        let cx = membership::Context {
            rules,
            state,
            create,
            power,
        };
        return membership::check(&cx, event);
    }

    let sender = event.sender().as_str();
    // Rule 5.
    if state.membership(sender) != Membership::Join {
        return Err(Rule::SenderNotJoined.reject(rules, format!("{sender} is not joined")));
    }
    let sender_level = power.user_level_str(sender);

    // Rule 6.
    if event.event_type() == "m.room.third_party_invite" {
        return if sender_level.at_least(power.invite()) {
            Ok(())
        } else {
            Err(Rule::ThirdPartyInviteLevel.reject(
                rules,
                format!(
                    "{sender} has level {sender_level}, below the invite level {}",
                    power.invite()
                ),
            ))
        };
    }

    // Rule 7.
    let required = power.event_level(event.event_type(), event.is_state());
    if !sender_level.at_least(required) {
        return Err(Rule::RequiredLevel.reject(
            rules,
            format!(
                "{sender} has level {sender_level}, below the {required} {} needs",
                event.event_type()
            ),
        ));
    }

    // Rule 8.
    if let Some(key) = event.state_key()
        && key.starts_with('@')
        && key != sender
    {
        return Err(Rule::StateKeyIsOtherUser.reject(
            rules,
            format!("{sender} cannot set state keyed by another user, {key}"),
        ));
    }

    // Rule 9. The power levels compared against are the room's (state key
    // ""), whatever the new event's state key: the spec speaks of "the
    // previous m.room.power_levels event in the room".
    if event.event_type() == "m.room.power_levels" {
        return check_power_levels_event(rules, event, create, &power, sender_level);
    }

    // Rule 10.
    Ok(())
}
