//! `GET /_matrix/federation/v1/query/profile` and `/query/directory`: what other servers
//! ask about our users and room aliases.

use axum::extract::State;
use ruma::api::federation::query::{get_profile_information, get_room_information};
use ruma::profile::ProfileFieldName;
use ruma::{RoomId, UserId};

use super::Origin;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::state::AppState;
use crate::storage::{accounts, aliases};

fn not_ours(user_id: &UserId) -> ApiError {
    ApiError::invalid_param(format!("User {user_id} is not hosted on this homeserver"))
}

/// `GET /_matrix/federation/v1/query/profile`
pub async fn profile(
    State(state): State<AppState>,
    Origin(origin): Origin,
    Ruma(req): Ruma<get_profile_information::v1::Request>,
) -> Result<RumaResponse<get_profile_information::v1::Response>, ApiError> {
    if req.user_id.server_name() != state.server_name() {
        return Err(not_ours(&req.user_id));
    }
    tracing::debug!(%origin, user_id = %req.user_id, "profile query");
    let profile = accounts::get_profile(state.db(), req.user_id.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found("Profile was not found"))?;
    let want = |field: ProfileFieldName| req.field.as_ref().is_none_or(|f| *f == field);
    let mut resp = get_profile_information::v1::Response::new();
    if let Some(name) = profile.displayname
        && want(ProfileFieldName::DisplayName)
    {
        resp.data.set("displayname".to_owned(), name.into());
    }
    if let Some(url) = profile.avatar_url
        && want(ProfileFieldName::AvatarUrl)
    {
        resp.data.set("avatar_url".to_owned(), url.into());
    }
    Ok(RumaResponse(resp))
}

/// `GET /_matrix/federation/v1/query/directory`
pub async fn directory(
    State(state): State<AppState>,
    Origin(origin): Origin,
    Ruma(req): Ruma<get_room_information::v1::Request>,
) -> Result<RumaResponse<get_room_information::v1::Response>, ApiError> {
    if req.room_alias.server_name() != state.server_name() {
        return Err(ApiError::invalid_param(format!(
            "Room alias {} is not hosted on this homeserver",
            req.room_alias
        )));
    }
    tracing::debug!(%origin, alias = %req.room_alias, "directory query");
    let row = aliases::get(state.db(), req.room_alias.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Room alias {} not found", req.room_alias)))?;
    let room_id = RoomId::parse(&row.room_id)
        .map_err(|e| ApiError::internal("corrupt room ID in storage", e))?;
    // The servers with joined members, ours first; ours alone for a room
    // nobody is in (an alias may outlive its room's members).
    let mut servers: Vec<ruma::OwnedServerName> =
        super::membership::servers_in_room(&state, room_id.as_str())
            .await?
            .into_iter()
            .filter_map(|s| ruma::OwnedServerName::try_from(s).ok())
            .collect();
    if servers.is_empty() {
        servers.push(state.server_name().to_owned());
    }
    Ok(RumaResponse(get_room_information::v1::Response::new(
        room_id, servers,
    )))
}
