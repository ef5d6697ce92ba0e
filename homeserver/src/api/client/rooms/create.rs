//! `POST /createRoom`.

use axum::extract::State;
use myelin_proto::canonical_json::{Object, Value};
use ruma::OwnedRoomAliasId;
use ruma::api::client::room::create_room::v3 as create_room;
use ruma::api::client::room::{Visibility, create_room::v3::RoomPreset};

use super::strict_object;
use crate::api::auth::Authed;
use crate::api::client::directory::aliases;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::rooms::create::{self, CreateRoom, Preset};
use crate::rooms::profile;
use crate::state::AppState;

/// The alias `room_alias_name` asks for, checked like any new alias, and
/// refused (`M_ROOM_IN_USE`) if taken before anything is created.
async fn room_alias(
    state: &AppState,
    name: Option<&str>,
) -> Result<Option<OwnedRoomAliasId>, ApiError> {
    let Some(name) = name else {
        return Ok(None);
    };
    aliases::check_alias_localpart(name)?;
    let alias = OwnedRoomAliasId::try_from(format!("#{name}:{}", state.server_name()))
        .map_err(|e| ApiError::invalid_param(format!("Invalid room_alias_name: {e}")))?;
    aliases::check_new_alias(state, &alias)?;
    if crate::storage::aliases::get(state.db(), alias.as_str())
        .await?
        .is_some()
    {
        return Err(create::alias_taken());
    }
    Ok(Some(alias))
}

pub async fn create_room(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<create_room::Request>,
) -> Result<RumaResponse<create_room::Response>, ApiError> {
    let version = create::parse_version(req.room_version.as_ref().map(|v| v.as_str()))?;
    let is_public = req.visibility == Visibility::Public;
    let preset = match &req.preset {
        Some(RoomPreset::PrivateChat) => Preset::PrivateChat,
        Some(RoomPreset::TrustedPrivateChat) => Preset::TrustedPrivateChat,
        Some(RoomPreset::PublicChat) => Preset::PublicChat,
        Some(other) => {
            return Err(ApiError::invalid_param(format!(
                "unknown preset {:?}",
                other.as_str()
            )));
        }
        None if is_public => Preset::PublicChat,
        None => Preset::PrivateChat,
    };
    let creation_content = match &req.creation_content {
        Some(raw) => strict_object(raw.json())?,
        None => Object::new(),
    };
    let power_level_override = req
        .power_level_content_override
        .as_ref()
        .map(|raw| strict_object(raw.json()))
        .transpose()?;
    let mut initial_state = Vec::with_capacity(req.initial_state.len());
    for raw in &req.initial_state {
        let mut ev = strict_object(raw.json())?;
        let Some(Value::String(event_type)) = ev.remove("type") else {
            return Err(ApiError::bad_json(
                "initial_state events need a string `type`",
            ));
        };
        let state_key = match ev.remove("state_key") {
            None => String::new(),
            Some(Value::String(k)) => k,
            Some(_) => return Err(ApiError::bad_json("`state_key` must be a string")),
        };
        let Some(Value::Object(content)) = ev.remove("content") else {
            return Err(ApiError::bad_json(
                "initial_state events need an object `content`",
            ));
        };
        if matches!(event_type.as_str(), "m.room.create" | "m.room.member") {
            return Err(ApiError::bad_json(format!(
                "{event_type} cannot be part of initial_state"
            )));
        }
        initial_state.push((event_type, state_key, content));
    }
    let alias = room_alias(&state, req.room_alias_name.as_deref()).await?;
    // A canonical alias in initial_state may only name the room's new
    // alias: no other alias can point to a room that does not exist yet.
    for (event_type, _, content) in &initial_state {
        if event_type == "m.room.canonical_alias" {
            let (main, alt) = aliases::advertised_aliases(content)?;
            if let Some(other) = main.iter().chain(&alt).find(|a| {
                alias
                    .as_ref()
                    .is_none_or(|ours| ours.as_str() != a.as_str())
            }) {
                return Err(ApiError::new(
                    http::StatusCode::BAD_REQUEST,
                    ruma::api::error::ErrorKind::BadAlias,
                    format!("The alias '{other}' does not point to this room."),
                ));
            }
        }
    }
    let mut invite = Vec::new();
    let mut remote_invite = Vec::new();
    for user in &req.invite {
        if user == &auth.user_id || invite.contains(user) || remote_invite.contains(user) {
            continue;
        }
        if user.server_name() != state.server_name() {
            remote_invite.push(user.clone());
            continue;
        }
        if profile::local_profile(state.db(), user.as_str())
            .await?
            .is_none()
        {
            return Err(ApiError::not_found(format!("unknown user {user}")));
        }
        invite.push(user.clone());
    }
    let room_id = create::create_room(
        &state,
        &auth.user_id,
        CreateRoom {
            version,
            preset,
            is_public,
            creation_content,
            power_level_override,
            initial_state,
            name: req.name.clone(),
            topic: req.topic.clone(),
            invite,
            is_direct: req.is_direct,
            alias,
        },
    )
    .await?;
    for user in &remote_invite {
        // As Synapse: a server that refuses or cannot be reached does not
        // undo the room.
        if let Err(e) = crate::federation::invite::invite_remote(
            &state,
            &room_id,
            &auth.user_id,
            user,
            None,
            req.is_direct,
        )
        .await
        {
            tracing::warn!(%room_id, %user, error = ?e, "inviting a remote user failed");
        }
    }
    Ok(RumaResponse(create_room::Response::new(room_id)))
}
