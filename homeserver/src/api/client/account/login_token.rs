//! `POST /_matrix/client/v1/login/get_token`: a signed-in user mints a
//! short-lived, single-use token to sign in another device
//! (`m.login.token`). It grants a full session, so it needs the password
//! again (user-interactive auth), as in Synapse.

use std::time::Duration;

use axum::extract::State;
use ruma::api::client::session::get_login_token;

use super::uiaa;
use crate::api::auth::Authed;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::state::AppState;
use crate::storage::accounts;

/// `POST /_matrix/client/v1/login/get_token`
pub async fn get_token(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_login_token::v1::Request>,
) -> Result<RumaResponse<get_login_token::v1::Response>, ApiError> {
    uiaa::authenticate(
        &state,
        "get_login_token",
        Some(&auth.user_id),
        &uiaa::password_flows(),
        req.auth.as_ref(),
    )
    .await?;
    let token = crate::random::token("mlt_");
    // Only the hash is kept, as for every other token.
    state
        .login_tokens()
        .insert(accounts::hash_token(&token), auth.user_id);
    let lifetime: Duration = state.login_tokens().ttl();
    Ok(RumaResponse(get_login_token::v1::Response::new(
        lifetime, token,
    )))
}
