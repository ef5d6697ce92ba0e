//! Room aliases: `PUT`, `GET` and `DELETE /directory/room/{roomAlias}`,
//! `GET /rooms/{roomId}/aliases`, and the checks on the aliases an
//! `m.room.canonical_alias` event advertises.
//!
//! Only aliases of this server are stored. Deleting an alias is allowed to
//! its creator and to whoever may manage the room (see [`super::power`]);
//! deleting the room's canonical alias also takes it out of the room's
//! `m.room.canonical_alias` event, as Synapse does.

use axum::extract::State;
use myelin_proto::canonical_json::{self, Object, Value};
use ruma::api::client::alias::{create_alias, delete_alias, get_alias};
use ruma::api::client::room::aliases as room_aliases;
use ruma::api::error::ErrorKind;
use ruma::{OwnedRoomAliasId, RoomAliasId, RoomId, UserId};

use super::power;
use crate::api::auth::Authed;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::rooms::EventSpec;
use crate::rooms::visibility::{self, Access};
use crate::state::AppState;
use crate::storage::{Db, aliases, events, memberships, rooms, state as state_store};

/// Synapse's longest alias.
const MAX_ALIAS_LEN: usize = 255;

/// Checks an alias this server is asked to create: local, at most 255
/// bytes, and a localpart without whitespace or `:` (Synapse's rules on
/// top of the grammar ruma checked).
pub fn check_new_alias(state: &AppState, alias: &RoomAliasId) -> Result<(), ApiError> {
    if alias.server_name() != state.server_name() {
        return Err(ApiError::invalid_param("Room alias must be local"));
    }
    check_alias_localpart(alias.alias())?;
    if alias.as_str().len() > MAX_ALIAS_LEN {
        return Err(ApiError::invalid_param(format!(
            "Can't create aliases longer than {MAX_ALIAS_LEN} characters"
        )));
    }
    Ok(())
}

/// The localpart of a new alias: not empty, no whitespace, no `:`.
pub fn check_alias_localpart(localpart: &str) -> Result<(), ApiError> {
    if localpart.is_empty() {
        return Err(ApiError::invalid_param("Room alias localpart is empty"));
    }
    if localpart.chars().any(char::is_whitespace) {
        return Err(ApiError::invalid_param("Invalid characters in room alias"));
    }
    if localpart.contains(':') {
        return Err(ApiError::invalid_param(
            "Invalid character in room alias localpart: ':'",
        ));
    }
    Ok(())
}

fn bad_alias(message: String) -> ApiError {
    ApiError::new(http::StatusCode::BAD_REQUEST, ErrorKind::BadAlias, message)
}

fn unknown_alias(alias: &RoomAliasId) -> ApiError {
    ApiError::not_found(format!("Room alias {alias} not found"))
}

/// `PUT /_matrix/client/v3/directory/room/{roomAlias}`
pub async fn create(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<create_alias::v3::Request>,
) -> Result<RumaResponse<create_alias::v3::Response>, ApiError> {
    check_new_alias(&state, &req.room_alias)?;
    let db = state.db();
    let room_id = req.room_id.as_str();
    // Synapse: only members (or server admins) alias a room.
    if !auth.is_admin {
        let joined = memberships::get(db, room_id, auth.user_id.as_str())
            .await?
            .is_some_and(|m| m.membership == "join");
        if !joined {
            return Err(ApiError::forbidden(
                "You must be in the room to create an alias for it",
            ));
        }
    }
    if rooms::get(db, room_id).await?.is_none() {
        return Err(ApiError::not_found("Unknown room"));
    }
    if !aliases::create(db, req.room_alias.as_str(), room_id, auth.user_id.as_str()).await? {
        return Err(ApiError::new(
            http::StatusCode::CONFLICT,
            ErrorKind::RoomInUse,
            format!("Room alias {} already exists", req.room_alias),
        ));
    }
    tracing::info!(alias = %req.room_alias, room_id, user_id = %auth.user_id, "alias created");
    Ok(RumaResponse(create_alias::v3::Response::new()))
}

/// `GET /_matrix/client/v3/directory/room/{roomAlias}`
pub async fn get(
    State(state): State<AppState>,
    Ruma(req): Ruma<get_alias::v3::Request>,
) -> Result<RumaResponse<get_alias::v3::Response>, ApiError> {
    if req.room_alias.server_name() != state.server_name() {
        let (room_id, servers) =
            crate::federation::query::remote_alias(&state, &req.room_alias).await?;
        return Ok(RumaResponse(get_alias::v3::Response::new(room_id, servers)));
    }
    let row = aliases::get(state.db(), req.room_alias.as_str())
        .await?
        .ok_or_else(|| unknown_alias(&req.room_alias))?;
    let room_id = RoomId::parse(&row.room_id)
        .map_err(|e| ApiError::internal("corrupt room ID in storage", e))?;
    // Every member of a room on this server is local: we are its only
    // server.
    Ok(RumaResponse(get_alias::v3::Response::new(
        room_id,
        vec![state.server_name().to_owned()],
    )))
}

/// The room a local alias points to, for joining by alias.
pub async fn resolve_local(db: &Db, alias: &RoomAliasId) -> Result<ruma::OwnedRoomId, ApiError> {
    let row = aliases::get(db, alias.as_str())
        .await?
        .ok_or_else(|| unknown_alias(alias))?;
    RoomId::parse(&row.room_id).map_err(|e| ApiError::internal("corrupt room ID in storage", e))
}

/// `DELETE /_matrix/client/v3/directory/room/{roomAlias}`
pub async fn delete(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<delete_alias::v3::Request>,
) -> Result<RumaResponse<delete_alias::v3::Response>, ApiError> {
    if req.room_alias.server_name() != state.server_name() {
        return Err(ApiError::invalid_param("Room alias must be local"));
    }
    let db = state.db();
    let row = aliases::get(db, req.room_alias.as_str())
        .await?
        .ok_or_else(|| unknown_alias(&req.room_alias))?;
    let allowed = row.creator == auth.user_id.as_str()
        || power::can_manage_room(&state, &auth, &row.room_id).await?;
    if !allowed {
        return Err(ApiError::forbidden(
            "You don't have permission to delete the alias",
        ));
    }
    if !aliases::delete(db, req.room_alias.as_str(), &row.room_id).await? {
        return Err(unknown_alias(&req.room_alias));
    }
    tracing::info!(alias = %req.room_alias, room_id = row.room_id, user_id = %auth.user_id, "alias deleted");
    let room_id = RoomId::parse(&row.room_id)
        .map_err(|e| ApiError::internal("corrupt room ID in storage", e))?;
    // The alias is gone whatever happens next; a canonical alias event
    // the user may not change keeps the stale alias (Synapse logs it too).
    if let Err(e) =
        remove_from_canonical_alias(&state, &room_id, &auth.user_id, req.room_alias.as_str()).await
    {
        tracing::info!(alias = %req.room_alias, error = ?e, "canonical alias event not updated");
    }
    Ok(RumaResponse(delete_alias::v3::Response::new()))
}

/// The current content of the room's `m.room.canonical_alias`, if any.
async fn canonical_alias_content(db: &Db, room_id: &str) -> Result<Option<Object>, ApiError> {
    let Some(id) = state_store::current_event_id(db, room_id, "m.room.canonical_alias", "").await?
    else {
        return Ok(None);
    };
    let Some(row) = events::get(db, &id).await? else {
        return Ok(None);
    };
    let mut event = canonical_json::parse_object(row.json.as_bytes())
        .map_err(|e| ApiError::internal("stored event unreadable", e))?;
    Ok(match event.remove("content") {
        Some(Value::Object(content)) => Some(content),
        _ => None,
    })
}

/// Sends a new `m.room.canonical_alias` without `alias` when it is the
/// canonical alias or one of the alternatives.
async fn remove_from_canonical_alias(
    state: &AppState,
    room_id: &RoomId,
    sender: &UserId,
    alias: &str,
) -> Result<(), ApiError> {
    let guard = state.rooms().lock(room_id).await;
    let Some(mut content) = canonical_alias_content(state.db(), room_id.as_str()).await? else {
        return Ok(());
    };
    let mut changed = false;
    if content.get("alias").and_then(Value::as_str) == Some(alias) {
        content.remove("alias");
        changed = true;
    }
    if let Some(Value::Array(alt)) = content.get_mut("alt_aliases") {
        let before = alt.len();
        alt.retain(|a| a.as_str() != Some(alias));
        changed |= alt.len() != before;
        if alt.is_empty() {
            content.remove("alt_aliases");
        }
    }
    if !changed {
        return Ok(());
    }
    let spec = EventSpec::new("m.room.canonical_alias", Some(""), content);
    guard.append(state, sender, spec, None).await?;
    Ok(())
}

/// `GET /_matrix/client/v3/rooms/{roomId}/aliases`: for members and, in
/// `world_readable` rooms, for everyone (spec).
pub async fn of_room(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<room_aliases::v3::Request>,
) -> Result<RumaResponse<room_aliases::v3::Response>, ApiError> {
    let db = state.db();
    let room_id = req.room_id.as_str();
    match visibility::room_access(db, room_id, auth.user_id.as_str()).await? {
        Access::Joined | Access::Guest => {}
        Access::Departed { .. } => {
            if visibility::current_history_visibility(db, room_id).await? != "world_readable" {
                return Err(ApiError::forbidden("You are not a member of this room"));
            }
        }
    }
    let list = aliases::for_room(db, room_id)
        .await?
        .into_iter()
        .filter_map(|a| OwnedRoomAliasId::try_from(a).ok())
        .collect();
    Ok(RumaResponse(room_aliases::v3::Response::new(list)))
}

/// The aliases an `m.room.canonical_alias` content names: `alias` (when a
/// non-empty string) and `alt_aliases` (a list of strings). Malformed
/// content or alias syntax is `M_INVALID_PARAM` (spec).
pub fn advertised_aliases(content: &Object) -> Result<(Option<String>, Vec<String>), ApiError> {
    let alias = match content.get("alias") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ApiError::invalid_param("'alias' must be a string")),
    };
    let alt = match content.get("alt_aliases") {
        None => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| ApiError::invalid_param("'alt_aliases' must hold strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ApiError::invalid_param(
                "The alt_aliases property must be a list",
            ));
        }
    };
    for a in alias.iter().chain(&alt) {
        RoomAliasId::parse(a)
            .map_err(|e| ApiError::invalid_param(format!("Invalid alias {a:?}: {e}")))?;
    }
    Ok((alias, alt))
}

/// Checks a new `m.room.canonical_alias` content for `room_id`: every
/// alias it newly advertises (not in the current event, as Synapse
/// checks) must be an alias of this server pointing to this room, else
/// `M_BAD_ALIAS`. Aliases of other servers cannot be checked without
/// federation, so they are refused too.
pub async fn check_canonical_alias(
    state: &AppState,
    room_id: &str,
    content: &Object,
) -> Result<(), ApiError> {
    let db = state.db();
    let (alias, alt) = advertised_aliases(content)?;
    let (old_alias, old_alt) = match canonical_alias_content(db, room_id).await? {
        // A current event we could not read imposes nothing.
        Some(old) => advertised_aliases(&old).unwrap_or_default(),
        None => (None, Vec::new()),
    };
    let new_alias = alias.filter(|a| Some(a) != old_alias.as_ref());
    let new_alt = alt.into_iter().filter(|a| !old_alt.contains(a));
    for a in new_alias.into_iter().chain(new_alt) {
        let points_here = match RoomAliasId::parse(&a) {
            Ok(parsed) if parsed.server_name() == state.server_name() => aliases::get(db, &a)
                .await?
                .is_some_and(|row| row.room_id == room_id),
            _ => false,
        };
        if !points_here {
            return Err(bad_alias(format!(
                "The alias '{a}' does not point to this room."
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(v: serde_json::Value) -> Object {
        match canonical_json::from_json(v) {
            Ok(Value::Object(o)) => o,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn advertised_aliases_are_read_and_checked() {
        let (a, alt) = advertised_aliases(&content(serde_json::json!({
            "alias": "#a:x", "alt_aliases": ["#b:x"]
        })))
        .expect("test");
        assert_eq!(a.as_deref(), Some("#a:x"));
        assert_eq!(alt, vec!["#b:x".to_owned()]);
        assert_eq!(
            advertised_aliases(&content(serde_json::json!({"alias": ""}))).expect("test"),
            (None, vec![])
        );
        for bad in [
            serde_json::json!({"alias": 3}),
            serde_json::json!({"alias": "no-hash:x"}),
            serde_json::json!({"alt_aliases": "#a:x"}),
            serde_json::json!({"alt_aliases": [1]}),
            serde_json::json!({"alt_aliases": ["#nocolon"]}),
        ] {
            assert!(advertised_aliases(&content(bad.clone())).is_err(), "{bad}");
        }
    }

    #[test]
    fn new_alias_localparts_follow_synapse() {
        assert!(check_alias_localpart("room").is_ok());
        assert!(check_alias_localpart("").is_err());
        assert!(check_alias_localpart("a b").is_err());
        assert!(check_alias_localpart("a:b").is_err());
    }
}
