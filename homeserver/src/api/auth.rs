//! Access-token authentication: the token comes from `Authorization: Bearer`
//! (or the deprecated `access_token` query parameter), is hashed, and looked
//! up. Handlers that need a user take [`Authed`].

use axum::extract::FromRequestParts;
use http::request::Parts;
use ruma::{OwnedDeviceId, OwnedUserId};

use super::error::ApiError;
use crate::state::AppState;
use crate::storage::accounts::{self, TokenLookup};

/// The user and device behind a request's access token.
#[derive(Debug, Clone)]
pub struct Authed {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub is_admin: bool,
    /// The hash of the token used, to log out exactly this session.
    pub token_hash: String,
}

/// The access token a request carries, if any.
pub fn access_token(parts: &Parts) -> Option<&str> {
    if let Some(value) = parts.headers.get(http::header::AUTHORIZATION)
        && let Ok(value) = value.to_str()
        && let Some(token) = value.strip_prefix("Bearer ")
    {
        return Some(token.trim());
    }
    parts.uri.query().and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "access_token")
            .map(|(_, v)| v)
    })
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = access_token(parts).ok_or_else(ApiError::missing_token)?;
        match accounts::lookup_access_token(state.db(), token).await? {
            TokenLookup::Valid(found) => Ok(found),
            TokenLookup::Expired => Err(ApiError::unknown_token(true)),
            TokenLookup::Unknown => Err(ApiError::unknown_token(false)),
        }
    }
}
