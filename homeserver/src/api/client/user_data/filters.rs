//! `POST /user/{userId}/filter` and `GET /user/{userId}/filter/{filterId}`:
//! sync filters stored server-side. ruma's `FilterDefinition` validates
//! the upload (malformed filters are `400 M_BAD_JSON` from parsing).

use axum::extract::State;
use ruma::api::client::filter::{FilterDefinition, create_filter, get_filter};

use super::{check_size, own_data_only};
use crate::api::auth::Authed;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::state::AppState;
use crate::storage::filters;

const WHAT: &str = "filters";

/// `POST /_matrix/client/v3/user/{userId}/filter`
pub async fn create(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<create_filter::v3::Request>,
) -> Result<RumaResponse<create_filter::v3::Response>, ApiError> {
    own_data_only(&auth, &req.user_id, WHAT)?;
    // Stored as ruma re-encodes it: normalised, so identical filters are
    // recognised as such.
    let definition = serde_json::to_string(&req.filter)
        .map_err(|e| ApiError::internal("cannot encode a filter", e))?;
    check_size(&definition)?;
    let id = filters::create(state.db(), auth.user_id.as_str(), &definition).await?;
    Ok(RumaResponse(create_filter::v3::Response::new(
        id.to_string(),
    )))
}

/// `GET /_matrix/client/v3/user/{userId}/filter/{filterId}`
pub async fn get(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_filter::v3::Request>,
) -> Result<RumaResponse<get_filter::v3::Response>, ApiError> {
    own_data_only(&auth, &req.user_id, WHAT)?;
    let not_found = || ApiError::not_found("No such filter");
    // IDs are ours, always decimal numbers: anything else names no filter.
    let id: i64 = req.filter_id.parse().map_err(|_| not_found())?;
    let definition = filters::get(state.db(), auth.user_id.as_str(), id)
        .await?
        .ok_or_else(not_found)?;
    let filter: FilterDefinition = serde_json::from_str(&definition)
        .map_err(|e| ApiError::internal("corrupt stored filter", e))?;
    Ok(RumaResponse(get_filter::v3::Response::new(filter)))
}
