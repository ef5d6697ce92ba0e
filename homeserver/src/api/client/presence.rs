//! `PUT` and `GET /presence/{userId}/status`: a user sets their own
//! presence; anyone sharing a room with a user (and the user) reads it.
//! The state lives in [`crate::presence`]. With presence off, setting is
//! accepted and ignored and everyone reads as offline (as Synapse).

use axum::Router;
use axum::extract::State;
use ruma::api::client::presence::{get_presence, set_presence};
use ruma::presence::PresenceState;
use std::time::Duration;

use crate::api::auth::Authed;
use crate::api::error::ApiError;
use crate::api::route;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::state::AppState;
use crate::storage::device_lists;

/// Registers the presence endpoints.
pub fn routes(mut r: Router<AppState>) -> Router<AppState> {
    r = route::<set_presence::v3::Request, _, _>(r, set_status);
    r = route::<get_presence::v3::Request, _, _>(r, get_status);
    r
}

async fn set_status(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<set_presence::v3::Request>,
) -> Result<RumaResponse<set_presence::v3::Response>, ApiError> {
    if req.user_id != auth.user_id {
        return Err(ApiError::forbidden("Cannot set another user's presence"));
    }
    if !matches!(
        req.presence,
        PresenceState::Online | PresenceState::Unavailable | PresenceState::Offline
    ) {
        return Err(ApiError::invalid_param(format!(
            "unknown presence {:?}",
            req.presence.as_str()
        )));
    }
    if state.presence().enabled()
        && state.presence().set(
            &auth.user_id,
            req.presence,
            req.status_msg,
            crate::time::now_ms(),
        )
    {
        crate::presence::changed(&state, std::slice::from_ref(&auth.user_id)).await;
    }
    Ok(RumaResponse(set_presence::v3::Response::new()))
}

async fn get_status(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_presence::v3::Request>,
) -> Result<RumaResponse<get_presence::v3::Response>, ApiError> {
    // Only the user and those sharing a room with them may look (Synapse).
    if req.user_id != auth.user_id
        && !device_lists::users_sharing_a_room(state.db(), auth.user_id.as_str())
            .await?
            .contains(req.user_id.as_str())
    {
        return Err(ApiError::forbidden(
            "You are not allowed to see their presence",
        ));
    }
    let snapshot = state
        .presence()
        .enabled()
        .then(|| state.presence().get(&req.user_id))
        .flatten();
    let Some(s) = snapshot else {
        return Ok(RumaResponse(get_presence::v3::Response::new(
            PresenceState::Offline,
        )));
    };
    let ago = (crate::time::now_ms() - s.last_active_ms).max(0);
    let mut resp = get_presence::v3::Response::new(s.presence.clone());
    resp.status_msg = s.status_msg;
    resp.last_active_ago = Some(Duration::from_millis(u64::try_from(ago).unwrap_or(0)));
    if s.presence == PresenceState::Online {
        resp.currently_active = Some(s.currently_active);
    }
    Ok(RumaResponse(resp))
}
