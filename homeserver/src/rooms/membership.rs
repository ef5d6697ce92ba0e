//! Membership changes in rooms this server is in: the member event's
//! content (profile, reason) and the stripped state an invite carries (as
//! stripped events for clients, as full events for other servers).

use myelin_proto::canonical_json::{self, Object, Value};
use ruma::{OwnedEventId, RoomId, UserId};

use super::pipeline::{EventSpec, RoomGuard};
use super::profile;
use crate::api::error::ApiError;
use crate::state::AppState;
use crate::storage::{self, Db, events};

/// State shown to an invitee before joining (spec "Stripped state").
const STRIPPED_TYPES: &[&str] = &[
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
    "m.room.topic",
];

/// The full events of the room's stripped state (federation sends them as
/// PDUs), as stored JSON.
pub async fn stripped_state_events(db: &Db, room_id: &str) -> Result<Vec<String>, ApiError> {
    let keys: Vec<(String, String)> = STRIPPED_TYPES
        .iter()
        .map(|t| ((*t).to_owned(), String::new()))
        .collect();
    Ok(storage::state::current_events_for(db, room_id, &keys)
        .await?
        .into_iter()
        .map(|(_, _, json)| json)
        .collect())
}

/// An event stripped to `{type, state_key, content, sender}`.
pub fn strip(event: Object) -> Value {
    Value::Object(
        event
            .into_iter()
            .filter(|(k, _)| matches!(k.as_str(), "type" | "state_key" | "content" | "sender"))
            .collect(),
    )
}

/// The room's stripped state: `{type, state_key, content, sender}` of the
/// events clients need to render an invite.
pub async fn stripped_state(db: &Db, room_id: &str) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    for json in stripped_state_events(db, room_id).await? {
        let obj = canonical_json::parse_object(json.as_bytes())
            .map_err(|e| ApiError::internal("stored event unreadable", e))?;
        out.push(strip(obj));
    }
    Ok(out)
}

/// Sends `target`'s member event with `membership`, as `sender`.
pub async fn set_membership(
    state: &AppState,
    room_id: &RoomId,
    sender: &UserId,
    target: &UserId,
    membership: &str,
    reason: Option<&str>,
    extra: Object,
) -> Result<OwnedEventId, ApiError> {
    let guard = state.rooms().lock(room_id).await;
    set_membership_locked(state, &guard, sender, target, membership, reason, extra).await
}

/// [`set_membership`] under a room lock the caller holds.
pub async fn set_membership_locked(
    state: &AppState,
    guard: &RoomGuard<'_>,
    sender: &UserId,
    target: &UserId,
    membership: &str,
    reason: Option<&str>,
    mut extra: Object,
) -> Result<OwnedEventId, ApiError> {
    let db = state.db();
    let room_id = guard.room_id();
    extra.insert("membership".into(), Value::from(membership));
    if let Some(reason) = reason {
        extra.insert("reason".into(), Value::from(reason));
    }
    if matches!(membership, "join" | "invite" | "knock")
        && target.server_name() == state.server_name()
        && let Some(p) = profile::local_profile(db, target.as_str()).await?
    {
        if let Some(name) = p.displayname {
            extra.insert("displayname".into(), Value::from(name));
        }
        if let Some(url) = p.avatar_url {
            extra.insert("avatar_url".into(), Value::from(url));
        }
    }
    let mut spec = EventSpec::new("m.room.member", Some(target.as_str()), extra);
    if membership == "invite" {
        let mut unsigned = Object::new();
        unsigned.insert(
            "invite_room_state".into(),
            Value::Array(stripped_state(db, room_id.as_str()).await?),
        );
        spec.unsigned = Some(unsigned);
    }
    guard.append(state, sender, spec, None).await
}

/// The membership `user` has in `room` now, if any.
pub async fn membership_of(
    db: &Db,
    room_id: &str,
    user_id: &str,
) -> Result<Option<String>, ApiError> {
    Ok(storage::memberships::get(db, room_id, user_id)
        .await?
        .map(|m| m.membership))
}

/// A 403 unless `user_id` is joined to `room_id`: nothing is done for
/// non-members, and unknown rooms look the same as rooms one is not in.
pub async fn require_joined(db: &Db, room_id: &str, user_id: &str) -> Result<(), ApiError> {
    if membership_of(db, room_id, user_id).await?.as_deref() == Some("join") {
        Ok(())
    } else {
        Err(ApiError::forbidden("You are not joined to this room"))
    }
}

/// Whether the event exists in this room.
pub async fn event_in_room(db: &Db, room_id: &str, event_id: &str) -> Result<bool, ApiError> {
    Ok(events::get(db, event_id)
        .await?
        .is_some_and(|e| e.room_id == room_id))
}
