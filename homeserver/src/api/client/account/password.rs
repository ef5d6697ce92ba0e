//! `POST /account/password`: change the password after confirming the
//! current one (user-interactive auth).

use axum::extract::State;
use ruma::api::client::account::change_password;

use super::uiaa;
use crate::api::auth::Authed;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::state::AppState;
use crate::storage::accounts;

/// `POST /_matrix/client/v3/account/password`. The endpoint also allows
/// unauthenticated resets proven by email; with no email support, an
/// access token is required.
pub async fn change(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<change_password::v3::Request>,
) -> Result<RumaResponse<change_password::v3::Response>, ApiError> {
    if req.new_password.is_empty() {
        return Err(ApiError::missing_param("Missing param: new_password"));
    }
    if req.new_password.len() > crate::password::MAX_PASSWORD_LEN {
        return Err(ApiError::invalid_param("Password is too long"));
    }
    uiaa::authenticate(
        &state,
        "change_password",
        Some(&auth.user_id),
        &uiaa::password_flows(),
        req.auth.as_ref(),
    )
    .await?;
    let hash = crate::password::hash(req.new_password).await?;
    // `logout_devices` (default true) ends every other session; the device
    // making the change stays signed in, as the spec and Synapse do.
    let keep = req.logout_devices.then(|| auth.device_id.to_string());
    if accounts::set_password(state.db(), auth.user_id.as_str(), &hash, keep.as_deref()).await? {
        crate::e2ee::device_lists_changed(&state, &auth.user_id).await?;
    }
    tracing::info!(user_id = %auth.user_id, "password changed");
    Ok(RumaResponse(change_password::v3::Response::new()))
}
