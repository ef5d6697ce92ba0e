//! Device management: list, get, rename, delete (one or many, behind
//! user-interactive auth). Deleting a device ends its session.

use axum::extract::State;
use ruma::MilliSecondsSinceUnixEpoch;
use ruma::api::client::device::{
    self as device_api, delete_device, delete_devices, get_device, get_devices, update_device,
};

use super::uiaa;
use crate::api::auth::Authed;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::state::AppState;
use crate::storage::accounts;

/// The longest device display name accepted (as Synapse).
const MAX_DEVICE_NAME_LEN: usize = 100;

fn to_api(d: accounts::Device) -> device_api::Device {
    let mut out = device_api::Device::new(d.device_id.into());
    out.display_name = d.display_name;
    out.last_seen_ip = d.last_seen_ip;
    out.last_seen_ts = d
        .last_seen_ts
        .and_then(|ts| u64::try_from(ts).ok())
        .and_then(|ts| ts.try_into().ok())
        .map(MilliSecondsSinceUnixEpoch);
    out
}

/// `GET /_matrix/client/v3/devices`
pub async fn list(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(_): Ruma<get_devices::v3::Request>,
) -> Result<RumaResponse<get_devices::v3::Response>, ApiError> {
    let devices = accounts::list_devices(state.db(), auth.user_id.as_str()).await?;
    Ok(RumaResponse(get_devices::v3::Response::new(
        devices.into_iter().map(to_api).collect(),
    )))
}

/// `GET /_matrix/client/v3/devices/{deviceId}`
pub async fn get(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_device::v3::Request>,
) -> Result<RumaResponse<get_device::v3::Response>, ApiError> {
    match accounts::get_device(state.db(), auth.user_id.as_str(), req.device_id.as_str()).await? {
        Some(d) => Ok(RumaResponse(get_device::v3::Response::new(to_api(d)))),
        None => Err(ApiError::not_found("Device not found")),
    }
}

/// `PUT /_matrix/client/v3/devices/{deviceId}`
pub async fn update(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<update_device::v3::Request>,
) -> Result<RumaResponse<update_device::v3::Response>, ApiError> {
    if req
        .display_name
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_DEVICE_NAME_LEN)
    {
        return Err(ApiError::invalid_param(format!(
            "Device display name is longer than {MAX_DEVICE_NAME_LEN} characters"
        )));
    }
    let found = accounts::rename_device(
        state.db(),
        auth.user_id.as_str(),
        req.device_id.as_str(),
        req.display_name.as_deref(),
    )
    .await?;
    if !found {
        return Err(ApiError::not_found("Device not found"));
    }
    crate::e2ee::device_lists_changed(&state, &auth.user_id).await?;
    Ok(RumaResponse(update_device::v3::Response::new()))
}

/// `DELETE /_matrix/client/v3/devices/{deviceId}`. Deleting a device that
/// does not exist succeeds, as in Synapse: the result is the same.
pub async fn delete(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<delete_device::v3::Request>,
) -> Result<RumaResponse<delete_device::v3::Response>, ApiError> {
    uiaa::authenticate(
        &state,
        "delete_device",
        Some(&auth.user_id),
        &uiaa::password_flows(),
        req.auth.as_ref(),
    )
    .await?;
    if accounts::delete_devices(
        state.db(),
        auth.user_id.as_str(),
        &[req.device_id.to_string()],
    )
    .await?
    {
        crate::e2ee::device_lists_changed(&state, &auth.user_id).await?;
    }
    Ok(RumaResponse(delete_device::v3::Response::new()))
}

/// `POST /_matrix/client/v3/delete_devices`
pub async fn delete_many(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<delete_devices::v3::Request>,
) -> Result<RumaResponse<delete_devices::v3::Response>, ApiError> {
    uiaa::authenticate(
        &state,
        "delete_devices",
        Some(&auth.user_id),
        &uiaa::password_flows(),
        req.auth.as_ref(),
    )
    .await?;
    let ids: Vec<String> = req.devices.iter().map(ToString::to_string).collect();
    if accounts::delete_devices(state.db(), auth.user_id.as_str(), &ids).await? {
        crate::e2ee::device_lists_changed(&state, &auth.user_id).await?;
    }
    Ok(RumaResponse(delete_devices::v3::Response::new()))
}
