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

use ruma::UserId;
use sea_orm::DbErr;

use crate::state::AppState;
use crate::storage::memberships;

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
