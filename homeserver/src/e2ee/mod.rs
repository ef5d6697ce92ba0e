//! End-to-end encryption, server side. The server never sees plaintext:
//! it stores and relays what clients encrypted or signed, and checks
//! signatures only to refuse keys a client could not have made.
//!
//! The endpoints are in `api::client::keys`; the tables in
//! `storage::{device_keys, one_time_keys, to_device, device_lists,
//! cross_signing, key_backup}`. This module holds what several of them
//! share: signed-JSON checks ([`signed`]) and the device-list change
//! bookkeeping, plus the entry points sync calls (re-exported below).

use ruma::UserId;
use sea_orm::DbErr;

use crate::state::AppState;
use crate::storage::{Db, device_keys, device_lists, memberships};

pub mod signed;

/// For sync: the to-device messages of a device in a token range, and
/// deleting them once acknowledged. See the storage module for semantics.
pub use crate::storage::to_device::{acknowledge, for_sync as to_device_for_sync};

/// For sync: `device_lists.{changed,left}` between two tokens.
pub use crate::storage::device_lists::{Positions as DeviceListPositions, changes_for_sync};

/// For sync: `device_one_time_keys_count` and
/// `device_unused_fallback_key_types`.
pub use crate::storage::one_time_keys::{counts as one_time_key_counts, unused_fallback_key_types};

/// Wakes everyone who must learn that `user_id`'s device list changed:
/// every room the user is joined to (its members' syncs) and the user's
/// own other devices. Call after the change committed.
pub async fn device_lists_changed(state: &AppState, user_id: &UserId) -> Result<(), DbErr> {
    for room in memberships::rooms_of_user(state.db(), user_id.as_str(), "join").await? {
        if let Ok(room_id) = ruma::RoomId::parse(&room.room_id) {
            state.notifier().wake_room(&room_id);
        }
    }
    state.notifier().wake_user(user_id);
    Ok(())
}

/// Removes the E2EE data of every device of `user_id` that no longer
/// exists (keys, one-time and fallback keys, to-device inbox), records
/// one device-list change if there was any, and wakes the user's rooms.
///
/// Called once after each place that deletes devices (logout, logout/all,
/// device deletion, password change with logout, deactivation). Working
/// from "devices that are gone" rather than a list of IDs makes it
/// idempotent and correct whichever deletion path ran; a crash between the
/// device deletion and this call leaves orphaned rows that the next call
/// for the user removes.
pub async fn on_devices_deleted(state: &AppState, user_id: &UserId) -> Result<(), DbErr> {
    if remove_orphaned_device_data(state.db(), user_id.as_str()).await? {
        device_lists_changed(state, user_id).await?;
    }
    Ok(())
}

/// The storage part of [`on_devices_deleted`]: true if anything went.
pub async fn remove_orphaned_device_data(db: &Db, user_id: &str) -> Result<bool, DbErr> {
    let tx = db.begin_write().await?;
    let gone = device_keys::orphaned_devices(&tx, user_id).await?;
    if gone.is_empty() {
        return Ok(false);
    }
    for device_id in &gone {
        device_keys::delete_device(&tx, user_id, device_id).await?;
    }
    device_lists::record(db, &tx, user_id).await?;
    tx.commit().await?;
    Ok(true)
}
