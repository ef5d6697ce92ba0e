//! Asking other servers about their users and aliases, for the client API: a remote user's
//! profile, a remote room alias. Their "not found" stays "not found", as does a server name
//! that does not resolve; a server we cannot reach or that answers nonsense is a 502, as in
//! Synapse.

use http::StatusCode;
use myelin_federation::client::ClientError;
use myelin_federation::discovery::DiscoveryError;
use ruma::api::error::ErrorKind;
use ruma::api::federation::query::{get_profile_information, get_room_information};
use ruma::profile::{ProfileFieldName, UserProfile};
use ruma::{OwnedRoomId, OwnedServerName, RoomAliasId, UserId};

use crate::api::error::ApiError;
use crate::state::AppState;

/// Largest profile or directory answer read.
const MAX_QUERY_RESPONSE: usize = 64 * 1024;

pub(crate) fn remote_error(e: &ClientError, not_found: String, failed: &str) -> ApiError {
    tracing::info!(error = %e, "federation query failed");
    // A server name that does not resolve names no server, so nothing of it exists; an
    // existing server we cannot reach right now is a gateway failure.
    if let ClientError::Discovery {
        source: DiscoveryError::Dns(_) | DiscoveryError::InvalidServerName(_),
        ..
    } = e
    {
        return ApiError::not_found(not_found);
    }
    match e.remote_status() {
        Some(StatusCode::NOT_FOUND) => ApiError::not_found(not_found),
        // The remote refused to tell: pass its refusal on.
        Some(StatusCode::FORBIDDEN) => ApiError::forbidden(failed.to_owned()),
        _ => ApiError::new(
            StatusCode::BAD_GATEWAY,
            ErrorKind::Unknown,
            failed.to_owned(),
        ),
    }
}

/// `user_id`'s profile from its server (only `field` when given).
pub async fn remote_profile(
    state: &AppState,
    user_id: &UserId,
    field: Option<ProfileFieldName>,
) -> Result<UserProfile, ApiError> {
    let mut request = get_profile_information::v1::Request::new(user_id.to_owned());
    request.field = field;
    state
        .federation()
        .client()
        .send_with_limit(user_id.server_name(), request, MAX_QUERY_RESPONSE)
        .await
        .map(|r| r.data)
        .map_err(|e| {
            remote_error(
                &e,
                "Profile was not found".to_owned(),
                "Failed to fetch profile",
            )
        })
}

/// The room `alias` points to and the servers in it, from the alias's server.
pub async fn remote_alias(
    state: &AppState,
    alias: &RoomAliasId,
) -> Result<(OwnedRoomId, Vec<OwnedServerName>), ApiError> {
    let request = get_room_information::v1::Request::new(alias.to_owned());
    state
        .federation()
        .client()
        .send_with_limit(alias.server_name(), request, MAX_QUERY_RESPONSE)
        .await
        .map(|r| (r.room_id, r.servers))
        .map_err(|e| {
            remote_error(
                &e,
                format!("Room alias {alias} not found"),
                "Failed to fetch alias",
            )
        })
}
