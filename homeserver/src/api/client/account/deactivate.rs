//! `POST /account/deactivate`: close the account for good, after
//! confirming the password (user-interactive auth).
//!
//! With `erase: true` the account is marked erased. Synapse then also
//! serves the user's past events redacted to users who join later; that
//! part is not done yet (the mark is what it will read).

use axum::extract::State;
use myelin_proto::canonical_json::Object;
use ruma::api::client::account::{ThirdPartyIdRemovalStatus, deactivate};
use ruma::{RoomId, UserId};

use super::uiaa;
use crate::api::auth::Authed;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::rooms::membership::set_membership;
use crate::state::AppState;
use crate::storage::{accounts, memberships};

/// `POST /_matrix/client/v3/account/deactivate`. All sessions and pushers
/// end, the password and profile are removed, and the user ID stays
/// reserved; then the user leaves every room they are joined to, invited
/// to or knocking on, and so drops out of the user directory.
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
    if accounts::deactivate(state.db(), auth.user_id.as_str(), req.erase).await? {
        crate::e2ee::device_lists_changed(&state, &auth.user_id).await?;
    }
    tracing::info!(user_id = %auth.user_id, erase = req.erase, "account deactivated");
    leave_all_rooms(&state, &auth.user_id).await?;
    // No third-party identifiers are ever bound, so there was nothing to
    // unbind: Synapse reports that as success.
    Ok(RumaResponse(deactivate::v3::Response::new(
        ThirdPartyIdRemovalStatus::Success,
    )))
}

/// Leaves (or rejects the invite to, or retracts the knock on) every room.
/// The account is already closed, so one room refusing the leave is
/// logged and the others still happen.
async fn leave_all_rooms(state: &AppState, user: &UserId) -> Result<(), ApiError> {
    for membership in ["join", "invite", "knock"] {
        for row in memberships::rooms_of_user(state.db(), user.as_str(), membership).await? {
            let Ok(room_id) = RoomId::parse(&row.room_id) else {
                continue;
            };
            if let Err(e) =
                set_membership(state, &room_id, user, user, "leave", None, Object::new()).await
            {
                tracing::warn!(%room_id, user_id = %user, error = ?e,
                    "a deactivated user could not leave a room");
            }
        }
    }
    Ok(())
}
