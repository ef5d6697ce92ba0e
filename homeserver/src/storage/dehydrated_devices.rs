//! Owner of `dehydrated_devices`: which device of a user is their
//! dehydrated device (MSC3814), with the encrypted device data the client
//! uploaded (JSON text, served back as uploaded). At most one per user.
//!
//! The device itself is a row of `devices` without a session, so its keys,
//! one-time keys and to-device inbox work as for any device. Deleting the
//! device (through `accounts`) forgets this row in the same transaction
//! (`device_keys::remove_deleted_devices` calls [`forget`]).

use sea_orm::DbErr;

use super::{Db, Tx};
use crate::storage::Sql as _;

/// A user's dehydrated device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DehydratedDevice {
    pub device_id: String,
    /// The `device_data` object, as JSON text.
    pub device_data: String,
}

fn from_row(r: &sea_orm::QueryResult) -> Result<DehydratedDevice, DbErr> {
    Ok(DehydratedDevice {
        device_id: r.try_get("", "device_id")?,
        device_data: r.try_get("", "device_data")?,
    })
}

/// The user's dehydrated device, if any.
pub async fn get(db: &Db, user_id: &str) -> Result<Option<DehydratedDevice>, DbErr> {
    db.query_one(
        "SELECT device_id, device_data FROM dehydrated_devices WHERE user_id = $1",
        [user_id.into()],
    )
    .await?
    .as_ref()
    .map(from_row)
    .transpose()
}

/// The user's dehydrated device, read in the caller's write transaction.
pub async fn get_in(tx: &Tx, user_id: &str) -> Result<Option<DehydratedDevice>, DbErr> {
    tx.query_one(
        "SELECT device_id, device_data FROM dehydrated_devices WHERE user_id = $1",
        [user_id.into()],
    )
    .await?
    .as_ref()
    .map(from_row)
    .transpose()
}

/// Makes `device_id` the user's dehydrated device (replacing the record of
/// a previous one; the caller deletes that device).
pub async fn set(tx: &Tx, user_id: &str, device_id: &str, device_data: &str) -> Result<(), DbErr> {
    tx.execute(
        "INSERT INTO dehydrated_devices (user_id, device_id, device_data, created_ts) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (user_id) DO UPDATE SET \
         device_id = excluded.device_id, device_data = excluded.device_data, \
         created_ts = excluded.created_ts",
        [
            user_id.into(),
            device_id.into(),
            device_data.into(),
            crate::time::now_ms().into(),
        ],
    )
    .await?;
    Ok(())
}

/// Forgets that `device_id` is the user's dehydrated device (it was
/// deleted). No-op for any other device.
pub async fn forget(tx: &Tx, user_id: &str, device_id: &str) -> Result<(), DbErr> {
    tx.execute(
        "DELETE FROM dehydrated_devices WHERE user_id = $1 AND device_id = $2",
        [user_id.into(), device_id.into()],
    )
    .await?;
    Ok(())
}
