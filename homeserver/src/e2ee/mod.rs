//! End-to-end encryption, server side. The server never sees plaintext:
//! it stores and relays what clients encrypted or signed, and checks
//! signatures only to refuse keys a client could not have made.
//!
//! The endpoints are in `api::client::keys`; the tables in
//! `storage::{device_keys, one_time_keys, to_device, device_lists,
//! cross_signing, key_backup}`. This module holds what several of them
//! share: signed-JSON checks ([`signed`]) and the device-list change
//! wake-ups, plus the entry points sync calls (re-exported below).
//!
//! Deleting devices removes their E2EE data in the same transaction
//! (`storage::accounts` does it, whichever path deletes the devices); the
//! callers then wake the user's rooms with [`device_lists_changed`].

use std::collections::BTreeMap;

use ruma::{OneTimeKeyAlgorithm, OwnedDeviceId, OwnedUserId, UserId};
use sea_orm::DbErr;
use serde_json::Value;

use crate::api::error::ApiError;
use crate::state::AppState;
use crate::storage::{device_list_outbox, memberships, one_time_keys};

pub mod signed;

/// For sync: the to-device messages of a device in a token range, and
/// deleting them once acknowledged. See the storage module for semantics.
pub use crate::storage::to_device::{acknowledge, for_sync as to_device_for_sync};

/// For sync: `device_lists.{changed,left}` between two tokens.
pub use crate::storage::device_lists::{Positions as DeviceListPositions, changes_for_sync};

/// For sync: `device_one_time_keys_count` and
/// `device_unused_fallback_key_types`, together.
pub use crate::storage::one_time_keys::{
    cached_sync_counts as cached_sync_key_counts, sync_counts as sync_key_counts,
};

/// Wakes everyone who must learn that `user_id`'s device list changed:
/// every room the user is joined to (its members' syncs), the user's own
/// other devices and, for our own users, the sender of the updates queued
/// for the other servers in those rooms (`storage::device_list_outbox`).
/// Call after the change committed.
pub async fn device_lists_changed(state: &AppState, user_id: &UserId) -> Result<(), DbErr> {
    for room in memberships::rooms_of_user(state.db(), user_id.as_str(), "join").await? {
        if let Ok(room_id) = ruma::RoomId::parse(&room.room_id) {
            state.notifier().wake_room(&room_id);
        }
    }
    state.notifier().wake_user(user_id);
    if user_id.server_name() == state.server_name() {
        // The changes were queued durably with the change itself.
        let destinations =
            device_list_outbox::destinations_of_user(state.db(), user_id.as_str()).await?;
        state.federation().sender().wake_all(&destinations);
    }
    Ok(())
}

/// The most keys one claim (from a client or another server) may ask for.
pub const MAX_CLAIMS: usize = 10_000;

/// Claimed keys: `{user: {device: {"algorithm:key_id": key}}}`.
pub type ClaimedKeys = BTreeMap<String, BTreeMap<String, BTreeMap<String, Value>>>;

/// Claims one key per requested device of our own users (users of other
/// servers in `wanted` are skipped): a one-time key handed out exactly
/// once (see `storage::one_time_keys::claim`), else the fallback key.
/// Devices without keys are absent. Shared by `/keys/claim` and the
/// federation's `/user/keys/claim`.
pub async fn claim_local(
    state: &AppState,
    wanted: &BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, OneTimeKeyAlgorithm>>,
) -> Result<ClaimedKeys, ApiError> {
    let total: usize = wanted.values().map(BTreeMap::len).sum();
    if total > MAX_CLAIMS {
        return Err(ApiError::too_large(format!(
            "at most {MAX_CLAIMS} claims per request"
        )));
    }
    let mut out = ClaimedKeys::new();
    for (user, devices) in wanted {
        if user.server_name() != state.server_name() {
            continue;
        }
        for (device, algorithm) in devices {
            let Some(key) = one_time_keys::claim(
                state.db(),
                user.as_str(),
                device.as_str(),
                algorithm.as_str(),
            )
            .await?
            else {
                continue;
            };
            let json: Value = serde_json::from_str(&key.key_json)
                .map_err(|e| ApiError::internal("stored key JSON", e))?;
            out.entry(user.to_string())
                .or_default()
                .entry(device.to_string())
                .or_default()
                .insert(format!("{}:{}", key.algorithm, key.key_id), json);
        }
    }
    Ok(out)
}
