//! Dehydrated devices (MSC3814, unstable prefix `org.matrix.msc3814.v1`):
//! a device the user's client uploads encrypted, so that room keys sent
//! while no device of the user is online reach a device the next client
//! can rehydrate. `PUT`/`GET`/`DELETE /dehydrated_device` and
//! `POST /dehydrated_device/{device_id}/events`.
//!
//! The device is an ordinary device without a session: it has device keys
//! and one-time keys (uploaded with the `PUT`, as `/keys/upload` stores
//! them, so `/keys/query` shows it with the `dehydrated: true` its client
//! signed into the keys), and to-device messages for it wait in its inbox
//! until a rehydrating client fetches them through `/events`.

use axum::extract::State;
use ruma::api::client::dehydrated_device::{
    delete_dehydrated_device, get_dehydrated_device, get_events, put_dehydrated_device,
};

use super::device_keys::{check_upload, store_upload};
use super::from_json;
use crate::api::auth::Authed;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::e2ee;
use crate::state::AppState;
use crate::storage::streams::{self, Stream};
use crate::storage::{accounts, dehydrated_devices, to_device};

/// The most to-device messages one `/events` response carries, as a sync
/// response does.
const EVENTS_PER_BATCH: usize = 100;

fn none_found() -> ApiError {
    ApiError::not_found("No dehydrated device available")
}

/// `PUT /_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device`.
/// Replaces the user's dehydrated device: the previous one is deleted with
/// its keys and undelivered messages, and the new device, its record and
/// its keys are written, all in one transaction. The device ID must not be
/// one of the user's other devices.
pub async fn put(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<put_dehydrated_device::unstable::Request>,
) -> Result<RumaResponse<put_dehydrated_device::unstable::Response>, ApiError> {
    let user = auth.user_id.as_str();
    let device = req.device_id.as_str();
    let device_data: serde_json::Value = serde_json::from_str(req.device_data.json().get())
        .map_err(|e| ApiError::bad_json(format!("invalid device_data: {e}")))?;
    if !device_data.is_object() {
        return Err(ApiError::bad_json("device_data must be a JSON object"));
    }
    let upload = check_upload(
        user,
        device,
        Some(req.device_keys.json()),
        &req.one_time_keys,
        &req.fallback_keys,
    )?;

    let db = state.db();
    let tx = db.begin_write().await?;
    let mut list_changed = false;
    if let Some(old) = dehydrated_devices::get_in(&tx, user).await? {
        list_changed |= accounts::delete_devices_in(db, &tx, user, &[old.device_id]).await?;
    }
    let display_name = req.initial_device_display_name.as_deref();
    if !accounts::add_sessionless_device(db, &tx, user, device, display_name).await? {
        // Dropping the transaction undoes the deletion above.
        return Err(ApiError::invalid_param(
            "device_id is already used by another device of this user",
        ));
    }
    dehydrated_devices::set(&tx, user, device, &device_data.to_string()).await?;
    list_changed |= store_upload(&tx, user, device, &upload).await?;
    tx.commit().await?;
    if list_changed {
        e2ee::device_lists_changed(&state, &auth.user_id).await?;
    }
    Ok(RumaResponse(
        put_dehydrated_device::unstable::Response::new(req.device_id),
    ))
}

/// `GET /_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device`:
/// the device ID and data as uploaded; `M_NOT_FOUND` when there is none.
pub async fn get(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(_): Ruma<get_dehydrated_device::unstable::Request>,
) -> Result<RumaResponse<get_dehydrated_device::unstable::Response>, ApiError> {
    let stored = dehydrated_devices::get(state.db(), auth.user_id.as_str())
        .await?
        .ok_or_else(none_found)?;
    let device_data = serde_json::value::RawValue::from_string(stored.device_data)
        .map_err(|e| ApiError::internal("stored device_data", e))?;
    Ok(RumaResponse(
        get_dehydrated_device::unstable::Response::new(
            stored.device_id.into(),
            ruma::serde::Raw::from_json(device_data),
        ),
    ))
}

/// `DELETE /_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device`:
/// deletes the device with its keys and messages; `M_NOT_FOUND` when there
/// is none.
pub async fn delete(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(_): Ruma<delete_dehydrated_device::unstable::Request>,
) -> Result<RumaResponse<delete_dehydrated_device::unstable::Response>, ApiError> {
    let user = auth.user_id.as_str();
    let db = state.db();
    let tx = db.begin_write().await?;
    let stored = dehydrated_devices::get_in(&tx, user)
        .await?
        .ok_or_else(none_found)?;
    let list_changed =
        accounts::delete_devices_in(db, &tx, user, std::slice::from_ref(&stored.device_id)).await?;
    tx.commit().await?;
    if list_changed {
        e2ee::device_lists_changed(&state, &auth.user_id).await?;
    }
    Ok(RumaResponse(
        delete_dehydrated_device::unstable::Response::new(stored.device_id.into()),
    ))
}

/// `POST /_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device/{device_id}/events`:
/// the to-device messages sent to the dehydrated device, oldest first, in
/// batches of [`EVENTS_PER_BATCH`]. `next_batch` is a to-device stream
/// position; passing it back fetches the next batch and, as Synapse does,
/// deletes the messages up to it (the client has them). The last batch's
/// `next_batch` returns no events: the client has everything. Any device
/// but the user's dehydrated device is `M_FORBIDDEN`.
pub async fn events(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_events::unstable::Request>,
) -> Result<RumaResponse<get_events::unstable::Response>, ApiError> {
    let user = auth.user_id.as_str();
    let db = state.db();
    let is_dehydrated = dehydrated_devices::get(db, user)
        .await?
        .is_some_and(|d| d.device_id == req.device_id.as_str());
    if !is_dehydrated {
        return Err(ApiError::forbidden(
            "device_id is not the user's dehydrated device",
        ));
    }
    let device = req.device_id.as_str();
    let since = match req.next_batch.as_deref() {
        None => 0,
        Some(token) => token
            .parse::<i64>()
            .ok()
            .filter(|p| *p >= 0)
            .ok_or_else(|| ApiError::invalid_param("invalid next_batch"))?,
    };
    if since > 0 {
        to_device::acknowledge(db, user, device, since).await?;
    }
    let until = streams::current_position(db, Stream::ToDevice).await?;
    let (events, next) =
        to_device::for_sync(db, user, device, since, until, EVENTS_PER_BATCH).await?;
    let mut response = get_events::unstable::Response::new(from_json(&events)?);
    response.next_batch = Some(next.to_string());
    Ok(RumaResponse(response))
}
