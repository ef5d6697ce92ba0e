//! The auth events selection (server-server API "Auth events selection")
//! and the rules on an event's `auth_events` list (rule 2; v12 rules 2
//! and 3).

use ruma::UserId;

use super::AuthError;
use super::rule::Rule;
use crate::canonical_json::{Object, Value};
use crate::pdu::Pdu;
use crate::room_version::RoomVersionRules;

/// The `(event_type, state_key)` pairs an event's `auth_events` are chosen
/// from, without duplicates. Fields of `content` that are missing or of the
/// wrong type select nothing (such events fail the auth rules themselves).
pub fn auth_types_for_event(
    rules: &RoomVersionRules,
    event_type: &str,
    sender: &UserId,
    state_key: Option<&str>,
    content: &Object,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    visit_auth_types(rules, event_type, sender, state_key, content, |t, k| {
        out.push((t.to_owned(), k.to_owned()));
    });
    out
}

/// Calls `f` once for each pair of [`auth_types_for_event`], without
/// allocating.
fn visit_auth_types(
    rules: &RoomVersionRules,
    event_type: &str,
    sender: &UserId,
    state_key: Option<&str>,
    content: &Object,
    mut f: impl FnMut(&str, &str),
) {
    // The create event's auth_events are empty.
    if event_type == "m.room.create" {
        return;
    }
    // v12 never selects the create event: the room ID names it.
    if rules.create_in_auth_events {
        f("m.room.create", "");
    }
    f("m.room.power_levels", "");
    f("m.room.member", sender.as_str());
    if event_type != "m.room.member" {
        return;
    }
    if let Some(target) = state_key
        && target != sender.as_str()
    {
        f("m.room.member", target);
    }
    let membership = content.get("membership").and_then(Value::as_str);
    if matches!(membership, Some("join" | "invite" | "knock")) {
        f("m.room.join_rules", "");
    }
    if membership == Some("invite")
        && let Some(token) = content
            .get("third_party_invite")
            .and_then(Value::as_object)
            .and_then(|t| t.get("signed"))
            .and_then(Value::as_object)
            .and_then(|s| s.get("token"))
            .and_then(Value::as_str)
    {
        f("m.room.third_party_invite", token);
    }
    // Every supported version (8+) has restricted rooms.
    if membership == Some("join")
        && let Some(via) = content
            .get("join_authorised_via_users_server")
            .and_then(Value::as_str)
        && via != sender.as_str()
        && Some(via) != state_key
    {
        f("m.room.member", via);
    }
}

/// Whether `(event_type, state_key)` is in the auth events selection of
/// `event`.
fn is_selected(rules: &RoomVersionRules, event: &Pdu, event_type: &str, state_key: &str) -> bool {
    let mut found = false;
    visit_auth_types(
        rules,
        event.event_type(),
        event.sender(),
        event.state_key(),
        event.content(),
        |t, k| found |= t == event_type && k == state_key,
    );
    found
}

/// The rules on the `auth_events` list itself: v10/v11 rules 2.1, 2.2, 2.4
/// and 2.5; v12 rules 2, 3.1, 3.2 and 3.5. Rule 2.3 (no rejected auth
/// events), and in v12 that the create event was not rejected, are the
/// caller's knowledge and checked there.
///
/// `auth_events` are the events `event.auth_events()` cites, fetched.
/// `create_event` is the room's create event: in v12 it is required (rule
/// 2: the room ID must be its ID); in v10 and v11 it is optional, and when
/// given, the create event the list cites must be that one.
///
/// Create events have no auth events to check: rule 1 decides them.
pub fn check_auth_events(
    rules: &RoomVersionRules,
    event: &Pdu,
    auth_events: &[&Pdu],
    create_event: Option<&Pdu>,
) -> Result<(), AuthError> {
    if event.event_type() == "m.room.create" {
        return Ok(());
    }
    if rules.room_id_from_create_event {
        check_room_id_names_create(rules, event, create_event)?;
    }
    let mut cited_create = None;
    for (i, auth) in auth_events.iter().enumerate() {
        let Some(state_key) = auth.state_key() else {
            return Err(Rule::AuthSelection.reject(
                rules,
                format!("auth event {} is not a state event", auth.event_id()),
            ));
        };
        let key = (auth.event_type(), state_key);
        // 2.1
        if auth_events[..i]
            .iter()
            .any(|a| (a.event_type(), a.state_key()) == (key.0, Some(key.1)))
        {
            return Err(Rule::AuthDuplicate.reject(
                rules,
                format!("two auth events for ({}, {:?})", key.0, key.1),
            ));
        }
        // 2.2
        if !is_selected(rules, event, key.0, key.1) {
            return Err(Rule::AuthSelection.reject(
                rules,
                format!(
                    "auth event {} for ({}, {:?}) is not in the auth events selection",
                    auth.event_id(),
                    key.0,
                    key.1
                ),
            ));
        }
        if key == ("m.room.create", "") {
            cited_create = Some(*auth);
        }
    }
    // 2.4
    if rules.create_in_auth_events {
        let Some(cited) = cited_create else {
            return Err(Rule::AuthNoCreate.reject(rules, "no m.room.create among the auth events"));
        };
        if let Some(room_create) = create_event
            && cited.event_id() != room_create.event_id()
        {
            return Err(Rule::AuthNoCreate.reject(
                rules,
                format!(
                    "cites create event {}, not the room's {}",
                    cited.event_id(),
                    room_create.event_id()
                ),
            ));
        }
    }
    // 2.5
    if let Some(other) = auth_events.iter().find(|a| a.room_id() != event.room_id()) {
        return Err(Rule::AuthRoom.reject(
            rules,
            format!(
                "auth event {} is in room {}, not {}",
                other.event_id(),
                other.room_id(),
                event.room_id()
            ),
        ));
    }
    Ok(())
}

/// v12 rule 2: the room ID is the create event's ID with `!` for `$`.
pub(super) fn check_room_id_names_create(
    rules: &RoomVersionRules,
    event: &Pdu,
    create: Option<&Pdu>,
) -> Result<(), AuthError> {
    let Some(create) = create else {
        return Err(Rule::RoomIdIsCreate.reject(
            rules,
            format!("the create event of room {} is unknown", event.room_id()),
        ));
    };
    let named = event.room_id().as_str().get(1..) == create.event_id().as_str().get(1..);
    if !named || !create.is_state_of("m.room.create", "") {
        return Err(Rule::RoomIdIsCreate.reject(
            rules,
            format!(
                "room ID {} does not name create event {}",
                event.room_id(),
                create.event_id()
            ),
        ));
    }
    Ok(())
}
