//! `POST /refresh`: a new access token for a refresh token (rotating both).

use std::time::Duration;

use axum::extract::State;
use ruma::api::client::session::refresh_token;

use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::state::AppState;
use crate::storage::accounts;

/// `POST /_matrix/client/v3/refresh`
pub async fn refresh(
    State(state): State<AppState>,
    Ruma(req): Ruma<refresh_token::v3::Request>,
) -> Result<RumaResponse<refresh_token::v3::Response>, ApiError> {
    let lifetime =
        Duration::from_millis(state.config().sessions.refreshable_access_token_lifetime_ms);
    let Some(session) = accounts::refresh(state.db(), &req.refresh_token, lifetime).await? else {
        // The spec's answer for a refresh token that is unknown or used:
        // the client must log in again (not a soft logout).
        return Err(ApiError::unknown_token(false));
    };
    let mut resp = refresh_token::v3::Response::new(session.access_token);
    resp.refresh_token = session.refresh_token;
    resp.expires_in_ms = session.expires_in;
    Ok(RumaResponse(resp))
}
