//! `GET`/`PUT /user/{userId}[/rooms/{roomId}]/account_data/{type}`: opaque
//! JSON objects clients store per account or per room. Types the server
//! manages itself (`m.fully_read`, `m.push_rules`) can be read here but
//! only written through their own APIs.

use axum::extract::State;
use http::StatusCode;
use ruma::api::client::config::{
    get_global_account_data, get_room_account_data, set_global_account_data, set_room_account_data,
};
use ruma::api::error::ErrorKind;
use ruma::serde::Raw;
use serde_json::{Map, Value};

use super::{MAX_KEY_BYTES, check_size, own_data_only};
use crate::api::auth::Authed;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::state::AppState;
use crate::storage::{account_data, push_rules};

/// Account data types only the server writes (spec: "Server Behaviour").
const SERVER_MANAGED: [&str; 2] = ["m.fully_read", "m.push_rules"];

const WHAT: &str = "account data";

/// The checks every write passes: the type is the client's to set, and the
/// content is a JSON object of bounded size. Returns the content compacted.
fn validate(event_type: &str, raw: &str) -> Result<String, ApiError> {
    if SERVER_MANAGED.contains(&event_type) {
        // The spec's status and errcode for this case.
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::BadJson,
            format!("Cannot set {event_type} through this API."),
        ));
    }
    if event_type.is_empty() || event_type.len() > MAX_KEY_BYTES {
        return Err(ApiError::invalid_param(format!(
            "The account data type must be 1 to {MAX_KEY_BYTES} bytes"
        )));
    }
    check_size(raw)?;
    let object: Map<String, Value> = serde_json::from_str(raw)
        .map_err(|_| ApiError::bad_json("Content must be a JSON object."))?;
    serde_json::to_string(&object).map_err(|e| ApiError::internal("cannot encode JSON", e))
}

/// Stored content as the raw JSON ruma responses carry.
fn to_raw<T>(content: &str) -> Result<Raw<T>, ApiError> {
    serde_json::from_str(content).map_err(|e| ApiError::internal("corrupt account data", e))
}

/// The stored content of a type, or 404. `m.push_rules` is materialised on
/// first access, so it is readable here before the client ever edited it.
async fn load(
    state: &AppState,
    auth: &Authed,
    room_id: Option<&str>,
    event_type: &str,
) -> Result<String, ApiError> {
    if room_id.is_none() && event_type == push_rules::EVENT_TYPE {
        push_rules::ensure_stored(state.db(), &auth.user_id).await?;
    }
    let found = account_data::get(state.db(), auth.user_id.as_str(), room_id, event_type).await?;
    found.ok_or_else(|| ApiError::not_found("Account data not found"))
}

/// `PUT /_matrix/client/v3/user/{userId}/account_data/{type}`
pub async fn set_global(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<set_global_account_data::v3::Request>,
) -> Result<RumaResponse<set_global_account_data::v3::Response>, ApiError> {
    own_data_only(&auth, &req.user_id, WHAT)?;
    let event_type = req.event_type.to_string();
    let content = validate(&event_type, req.data.json().get())?;
    account_data::set(
        state.db(),
        auth.user_id.as_str(),
        None,
        &event_type,
        &content,
    )
    .await?;
    // Long-polling syncs of the user deliver the change at once.
    state.notifier().wake_user(&auth.user_id);
    Ok(RumaResponse(set_global_account_data::v3::Response::new()))
}

/// `GET /_matrix/client/v3/user/{userId}/account_data/{type}`
pub async fn get_global(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_global_account_data::v3::Request>,
) -> Result<RumaResponse<get_global_account_data::v3::Response>, ApiError> {
    own_data_only(&auth, &req.user_id, WHAT)?;
    let content = load(&state, &auth, None, &req.event_type.to_string()).await?;
    Ok(RumaResponse(get_global_account_data::v3::Response::new(
        to_raw(&content)?,
    )))
}

/// `PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}`
///
/// Membership is not checked: like Synapse, a user may keep data for any
/// room, including one they have not joined (yet).
pub async fn set_room(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<set_room_account_data::v3::Request>,
) -> Result<RumaResponse<set_room_account_data::v3::Response>, ApiError> {
    own_data_only(&auth, &req.user_id, WHAT)?;
    let event_type = req.event_type.to_string();
    let content = validate(&event_type, req.data.json().get())?;
    account_data::set(
        state.db(),
        auth.user_id.as_str(),
        Some(req.room_id.as_str()),
        &event_type,
        &content,
    )
    .await?;
    // Long-polling syncs of the user deliver the change at once.
    state.notifier().wake_user(&auth.user_id);
    Ok(RumaResponse(set_room_account_data::v3::Response::new()))
}

/// `GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}`
pub async fn get_room(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_room_account_data::v3::Request>,
) -> Result<RumaResponse<get_room_account_data::v3::Response>, ApiError> {
    own_data_only(&auth, &req.user_id, WHAT)?;
    let content = load(
        &state,
        &auth,
        Some(req.room_id.as_str()),
        &req.event_type.to_string(),
    )
    .await?;
    Ok(RumaResponse(get_room_account_data::v3::Response::new(
        to_raw(&content)?,
    )))
}
