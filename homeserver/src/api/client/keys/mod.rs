//! The end-to-end encryption endpoints: device and one-time keys
//! (`/keys/upload`, `/keys/query`, `/keys/claim`, `/keys/changes`),
//! cross-signing (`/keys/device_signing/upload`,
//! `/keys/signatures/upload`), send-to-device messages, server-side key
//! backups (`/room_keys`) and MSC3814 dehydrated devices. The logic they
//! share is in `crate::e2ee`.

use axum::Router;
use ruma::api::client as c;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::error::ApiError;
use crate::api::route;
use crate::state::AppState;

pub mod backup;
pub mod cross_signing;
pub mod dehydrated_device;
pub mod device_keys;
pub mod to_device;

/// Every E2EE endpoint.
pub fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = route::<c::keys::upload_keys::v3::Request, _, _>(r, device_keys::upload);
    let r = route::<c::keys::get_keys::v3::Request, _, _>(r, device_keys::query);
    let r = route::<c::keys::claim_keys::v3::Request, _, _>(r, device_keys::claim);
    let r = route::<c::keys::get_key_changes::v3::Request, _, _>(r, device_keys::changes);
    let r = route::<c::keys::upload_signing_keys::v3::Request, _, _>(r, cross_signing::upload_keys);
    let r =
        route::<c::keys::upload_signatures::v3::Request, _, _>(r, cross_signing::upload_signatures);
    let r = route::<c::to_device::send_event_to_device::v3::Request, _, _>(r, to_device::send);
    let r = dehydrated_device_routes(r);
    let r = route::<c::backup::create_backup_version::v3::Request, _, _>(r, backup::create_version);
    let r =
        route::<c::backup::get_latest_backup_info::v3::Request, _, _>(r, backup::latest_version);
    let r = route::<c::backup::get_backup_info::v3::Request, _, _>(r, backup::get_version);
    let r = route::<c::backup::update_backup_version::v3::Request, _, _>(r, backup::update_version);
    let r = route::<c::backup::delete_backup_version::v3::Request, _, _>(r, backup::delete_version);
    let r = route::<c::backup::add_backup_keys::v3::Request, _, _>(r, backup::put_all);
    let r = route::<c::backup::add_backup_keys_for_room::v3::Request, _, _>(r, backup::put_room);
    let r =
        route::<c::backup::add_backup_keys_for_session::v3::Request, _, _>(r, backup::put_session);
    let r = route::<c::backup::get_backup_keys::v3::Request, _, _>(r, backup::get_all);
    let r = route::<c::backup::get_backup_keys_for_room::v3::Request, _, _>(r, backup::get_room);
    let r =
        route::<c::backup::get_backup_keys_for_session::v3::Request, _, _>(r, backup::get_session);
    let r = route::<c::backup::delete_backup_keys::v3::Request, _, _>(r, backup::delete_all);
    let r =
        route::<c::backup::delete_backup_keys_for_room::v3::Request, _, _>(r, backup::delete_room);
    route::<c::backup::delete_backup_keys_for_session::v3::Request, _, _>(r, backup::delete_session)
}

/// MSC3814 dehydrated devices (unstable paths).
fn dehydrated_device_routes(r: Router<AppState>) -> Router<AppState> {
    use c::dehydrated_device as d;
    let r = route::<d::put_dehydrated_device::unstable::Request, _, _>(r, dehydrated_device::put);
    let r = route::<d::get_dehydrated_device::unstable::Request, _, _>(r, dehydrated_device::get);
    let r =
        route::<d::delete_dehydrated_device::unstable::Request, _, _>(r, dehydrated_device::delete);
    route::<d::get_events::unstable::Request, _, _>(r, dehydrated_device::events)
}

/// Builds a ruma type from JSON we assembled (maps of stored key objects
/// are easiest to assemble as JSON). Going through text keeps the `Raw`
/// values inside intact.
fn from_json<T: DeserializeOwned>(value: &impl Serialize) -> Result<T, ApiError> {
    let text = serde_json::to_string(value).map_err(|e| ApiError::internal("encode", e))?;
    serde_json::from_str(&text).map_err(|e| ApiError::internal("decode", e))
}

/// A stored JSON object (text) as a `serde_json::Value`.
fn stored(text: &str) -> Result<serde_json::Value, ApiError> {
    serde_json::from_str(text).map_err(|e| ApiError::internal("stored key JSON", e))
}
