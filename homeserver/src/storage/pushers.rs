//! Owner of the `pushers` table: where to send a user's push
//! notifications, one row per (user, app ID, pushkey). The pusher is kept
//! as the JSON the client-server API shows, so fields the API adds later
//! round-trip without a migration.
//!
//! A pusher belongs to the device that created it (`device_id`): logging
//! that device out, deleting it or deactivating the account removes it, as
//! Synapse does, so a phone that signed out stops getting notifications.

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr};

use super::Db;
use crate::storage::Sql as _;
use crate::time::now_ms;

/// A stored pusher's key and its JSON.
#[derive(Clone, Debug)]
pub struct StoredPusher {
    pub app_id: String,
    pub pushkey: String,
    pub pusher: String,
}

/// Creates or replaces the user's pusher for (`app_id`, `pushkey`), made
/// by `device_id`. Unless `append`, the same app ID and pushkey is removed
/// from other users first (the device now belongs to this user), in the
/// same transaction.
pub async fn set(
    db: &Db,
    user_id: &str,
    device_id: Option<&str>,
    pusher: &StoredPusher,
    append: bool,
) -> Result<(), DbErr> {
    let txn = db.begin_immediate().await?;
    if !append {
        txn.execute_raw(db.stmt(
            "DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id <> $3",
            [
                pusher.app_id.clone().into(),
                pusher.pushkey.clone().into(),
                user_id.into(),
            ],
        ))
        .await?;
    }
    txn.execute_raw(db.stmt(
        "INSERT INTO pushers (user_id, app_id, pushkey, pusher, created_ts, device_id) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET pusher = excluded.pusher, \
         device_id = excluded.device_id",
        [
            user_id.into(),
            pusher.app_id.clone().into(),
            pusher.pushkey.clone().into(),
            pusher.pusher.clone().into(),
            now_ms().into(),
            device_id.map(str::to_owned).into(),
        ],
    ))
    .await?;
    txn.commit().await
}

/// Removes one of the user's pushers; removing one that does not exist is
/// not an error.
pub async fn delete(db: &Db, user_id: &str, app_id: &str, pushkey: &str) -> Result<(), DbErr> {
    db.execute(
        "DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3",
        [user_id.into(), app_id.into(), pushkey.into()],
    )
    .await?;
    Ok(())
}

/// The user's pushers, oldest first.
pub async fn list(db: &Db, user_id: &str) -> Result<Vec<StoredPusher>, DbErr> {
    db.query_all(
        "SELECT app_id, pushkey, pusher FROM pushers WHERE user_id = $1 \
         ORDER BY created_ts, app_id, pushkey",
        [user_id.into()],
    )
    .await?
    .into_iter()
    .map(|r| {
        Ok(StoredPusher {
            app_id: r.try_get("", "app_id")?,
            pushkey: r.try_get("", "pushkey")?,
            pusher: r.try_get("", "pusher")?,
        })
    })
    .collect()
}

/// Removes the pushers `device_ids` of the user created, inside the
/// transaction that deletes those devices.
pub async fn delete_for_devices(
    db: &Db,
    txn: &DatabaseTransaction,
    user_id: &str,
    device_ids: &[String],
) -> Result<(), DbErr> {
    for device_id in device_ids {
        txn.execute_raw(db.stmt(
            "DELETE FROM pushers WHERE user_id = $1 AND device_id = $2",
            [user_id.into(), device_id.as_str().into()],
        ))
        .await?;
    }
    Ok(())
}

/// Removes the pushers of every device of the user but `keep` (of every
/// device if `None`), inside the transaction that deletes those devices.
/// Pushers not tied to a device are kept.
pub async fn delete_for_other_devices(
    db: &Db,
    txn: &DatabaseTransaction,
    user_id: &str,
    keep: Option<&str>,
) -> Result<(), DbErr> {
    txn.execute_raw(db.stmt(
        "DELETE FROM pushers WHERE user_id = $1 AND device_id IS NOT NULL AND device_id <> $2",
        [user_id.into(), keep.unwrap_or("").into()],
    ))
    .await?;
    Ok(())
}

/// Removes every pusher of the user (account deactivation).
pub async fn delete_all_in(db: &Db, txn: &DatabaseTransaction, user_id: &str) -> Result<(), DbErr> {
    txn.execute_raw(db.stmt("DELETE FROM pushers WHERE user_id = $1", [user_id.into()]))
        .await?;
    Ok(())
}
