//! `POST /account/deactivate`: close the account for good, after
//! confirming the password (user-interactive auth).

use axum::extract::State;
use ruma::api::client::account::{ThirdPartyIdRemovalStatus, deactivate};

use super::uiaa;
use crate::api::auth::Authed;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::state::AppState;
use crate::storage::accounts;

/// `POST /_matrix/client/v3/account/deactivate`. All sessions end, the
/// password and profile are removed, and the user ID stays reserved.
/// (Leaving rooms is for the room service to do once it exists.)
pub async fn deactivate(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<deactivate::v3::Request>,
) -> Result<RumaResponse<deactivate::v3::Response>, ApiError> {
    uiaa::authenticate(
        &state,
        "deactivate",
        Some(&auth.user_id),
        &uiaa::password_flows(),
        req.auth.as_ref(),
    )
    .await?;
    accounts::deactivate(state.db(), auth.user_id.as_str()).await?;
    crate::e2ee::on_devices_deleted(&state, &auth.user_id).await?;
    tracing::info!(user_id = %auth.user_id, "account deactivated");
    // No third-party identifiers are ever bound, so there was nothing to
    // unbind: Synapse reports that as success.
    Ok(RumaResponse(deactivate::v3::Response::new(
        ThirdPartyIdRemovalStatus::Success,
    )))
}
