//! A signed-in client's own session: `whoami`, `logout`, `logout/all`.

use axum::Json;
use axum::extract::State;
use ruma::api::client::account::whoami;
use ruma::api::client::session::{logout, logout_all};

use serde_json::{Value, json};

use crate::api::auth::Authed;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::state::AppState;
use crate::storage::accounts;

/// `GET /_matrix/client/v3/account/whoami`. Rendered by hand because
/// ruma drops `is_guest: false`, which Synapse sends and some clients read.
pub async fn whoami(auth: Authed, Ruma(_): Ruma<whoami::v3::Request>) -> Json<Value> {
    Json(json!({
        "user_id": auth.user_id,
        "device_id": auth.device_id,
        "is_guest": false,
    }))
}

/// `POST /_matrix/client/v3/logout`: the device goes with its token, as in
/// Synapse (a logged-out device has nothing left to identify).
pub async fn logout(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(_): Ruma<logout::v3::Request>,
) -> Result<RumaResponse<logout::v3::Response>, ApiError> {
    if accounts::delete_devices(
        state.db(),
        auth.user_id.as_str(),
        &[auth.device_id.to_string()],
    )
    .await?
    {
        crate::e2ee::device_lists_changed(&state, &auth.user_id).await?;
    }
    Ok(RumaResponse(logout::v3::Response::new()))
}

/// `POST /_matrix/client/v3/logout/all`
pub async fn logout_all(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(_): Ruma<logout_all::v3::Request>,
) -> Result<RumaResponse<logout_all::v3::Response>, ApiError> {
    if accounts::delete_all_devices(state.db(), auth.user_id.as_str()).await? {
        crate::e2ee::device_lists_changed(&state, &auth.user_id).await?;
    }
    Ok(RumaResponse(logout_all::v3::Response::new()))
}
