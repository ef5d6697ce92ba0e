//! Global profiles: display name and avatar URL of local users (remote users' come from
//! their server). A change
//! is sent into every room the user is joined to as an updated member
//! event (see [`crate::rooms::profile::propagate`]).

use axum::extract::State;
use ruma::api::client::profile::{
    get_avatar_url, get_display_name, get_profile, set_avatar_url, set_display_name,
};
use ruma::profile::ProfileFieldName;
use ruma::{OwnedMxcUri, UserId};

use crate::api::auth::Authed;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::state::AppState;
use crate::storage::accounts::{self, Profile};

/// Synapse's limits on profile fields.
const MAX_DISPLAYNAME_LEN: usize = 256;
const MAX_AVATAR_URL_LEN: usize = 1000;

/// The profile of a user: ours from storage, a remote one from its server (only `field`
/// when the client asked for one field).
async fn load(
    state: &AppState,
    user_id: &UserId,
    field: Option<ProfileFieldName>,
) -> Result<Profile, ApiError> {
    if user_id.server_name() != state.server_name() {
        let remote = crate::federation::query::remote_profile(state, user_id, field).await?;
        let text = |name: &str| remote.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        return Ok(Profile {
            displayname: text("displayname"),
            avatar_url: text("avatar_url"),
        });
    }
    accounts::get_profile(state.db(), user_id.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found("Profile was not found"))
}

fn own_profile_only(auth: &Authed, user_id: &UserId) -> Result<(), ApiError> {
    if auth.user_id != user_id {
        return Err(ApiError::forbidden("Cannot set another user's profile"));
    }
    Ok(())
}

fn avatar(profile: &Profile) -> Option<OwnedMxcUri> {
    profile.avatar_url.as_deref().map(OwnedMxcUri::from)
}

/// `GET /_matrix/client/v3/profile/{userId}`
pub async fn get(
    State(state): State<AppState>,
    Ruma(req): Ruma<get_profile::v3::Request>,
) -> Result<RumaResponse<get_profile::v3::Response>, ApiError> {
    let profile = load(&state, &req.user_id, None).await?;
    let mut resp = get_profile::v3::Response::new();
    if let Some(name) = profile.displayname {
        resp.set("displayname".to_owned(), name.into());
    }
    if let Some(url) = profile.avatar_url {
        resp.set("avatar_url".to_owned(), url.into());
    }
    Ok(RumaResponse(resp))
}

/// `GET /_matrix/client/v3/profile/{userId}/displayname`
pub async fn get_displayname(
    State(state): State<AppState>,
    Ruma(req): Ruma<get_display_name::v3::Request>,
) -> Result<RumaResponse<get_display_name::v3::Response>, ApiError> {
    let profile = load(&state, &req.user_id, Some(ProfileFieldName::DisplayName)).await?;
    Ok(RumaResponse(get_display_name::v3::Response::new(
        profile.displayname,
    )))
}

/// `GET /_matrix/client/v3/profile/{userId}/avatar_url`
pub async fn get_avatar(
    State(state): State<AppState>,
    Ruma(req): Ruma<get_avatar_url::v3::Request>,
) -> Result<RumaResponse<get_avatar_url::v3::Response>, ApiError> {
    let profile = load(&state, &req.user_id, Some(ProfileFieldName::AvatarUrl)).await?;
    Ok(RumaResponse(get_avatar_url::v3::Response::new(avatar(
        &profile,
    ))))
}

/// `PUT /_matrix/client/v3/profile/{userId}/displayname`
pub async fn set_displayname(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<set_display_name::v3::Request>,
) -> Result<RumaResponse<set_display_name::v3::Response>, ApiError> {
    own_profile_only(&auth, &req.user_id)?;
    // An empty name is how clients clear it.
    let name = req.displayname.filter(|n| !n.is_empty());
    if name
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_DISPLAYNAME_LEN)
    {
        return Err(ApiError::invalid_param(format!(
            "displayname is too long (max {MAX_DISPLAYNAME_LEN})"
        )));
    }
    accounts::set_displayname(state.db(), auth.user_id.as_str(), name.as_deref()).await?;
    crate::rooms::profile::propagate(&state, &auth.user_id).await?;
    Ok(RumaResponse(set_display_name::v3::Response::new()))
}

/// `PUT /_matrix/client/v3/profile/{userId}/avatar_url`
pub async fn set_avatar(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<set_avatar_url::v3::Request>,
) -> Result<RumaResponse<set_avatar_url::v3::Response>, ApiError> {
    own_profile_only(&auth, &req.user_id)?;
    let url = req.avatar_url.map(|u| u.to_string());
    if url.as_ref().is_some_and(|u| u.len() > MAX_AVATAR_URL_LEN) {
        return Err(ApiError::invalid_param(format!(
            "avatar_url is too long (max {MAX_AVATAR_URL_LEN})"
        )));
    }
    accounts::set_avatar_url(state.db(), auth.user_id.as_str(), url.as_deref()).await?;
    crate::rooms::profile::propagate(&state, &auth.user_id).await?;
    Ok(RumaResponse(set_avatar_url::v3::Response::new()))
}
