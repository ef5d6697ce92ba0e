//! Who may manage a room's aliases and directory listing. Synapse's rule:
//! server admins, and members joined to the room with the power to send
//! `m.room.canonical_alias` (in practice, the room's moderators).

use myelin_proto::auth::PowerLevels;
use ruma::UserId;

use crate::api::auth::Authed;
use crate::api::error::ApiError;
use crate::rooms::pipeline::{room_version_of, stored_pdu};
use crate::state::AppState;
use crate::storage::{memberships, state as state_store};

/// Whether `user` may send `m.room.canonical_alias` in the room now.
pub async fn can_send_canonical_alias(
    state: &AppState,
    room_id: &str,
    user: &UserId,
) -> Result<bool, ApiError> {
    let db = state.db();
    let version = room_version_of(state, room_id).await?;
    let keys = [
        ("m.room.create".to_owned(), String::new()),
        ("m.room.power_levels".to_owned(), String::new()),
    ];
    let mut create = None;
    let mut power_levels = None;
    for (event_type, _, json) in state_store::current_events_for(db, room_id, &keys).await? {
        let pdu = stored_pdu(version, &json)?;
        if event_type == "m.room.create" {
            create = Some(pdu);
        } else {
            power_levels = Some(pdu);
        }
    }
    let power = PowerLevels::new(version.rules(), create.as_ref(), power_levels.as_ref());
    Ok(power
        .user_level(user)
        .at_least(power.event_level("m.room.canonical_alias", true)))
}

/// Synapse's "can change the room list": an admin, or a joined member who
/// may send `m.room.canonical_alias`.
pub async fn can_manage_room(
    state: &AppState,
    auth: &Authed,
    room_id: &str,
) -> Result<bool, ApiError> {
    if auth.is_admin {
        return Ok(true);
    }
    let joined = memberships::get(state.db(), room_id, auth.user_id.as_str())
        .await?
        .is_some_and(|m| m.membership == "join");
    Ok(joined && can_send_canonical_alias(state, room_id, &auth.user_id).await?)
}
