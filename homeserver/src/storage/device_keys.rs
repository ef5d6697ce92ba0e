//! Owner of `e2e_device_keys`: each device's identity keys as the device
//! uploaded and signed them (the JSON object of `/keys/upload`'s
//! `device_keys`, without `unsigned`). Signatures others add later live in
//! `e2e_signatures` (see `cross_signing`) and are merged in on query.

use sea_orm::DbErr;

use super::{Db, IN_CHUNK, Tx, in_list};
use crate::storage::Sql as _;

/// One device's keys as `/keys/query` shows them.
#[derive(Debug, Clone)]
pub struct StoredDeviceKeys {
    pub user_id: String,
    pub device_id: String,
    pub key_json: String,
    pub display_name: Option<String>,
}

/// The keys a device uploaded, if any.
pub async fn get(tx: &Tx, user_id: &str, device_id: &str) -> Result<Option<String>, DbErr> {
    tx.query_one(
        "SELECT key_json FROM e2e_device_keys WHERE user_id = $1 AND device_id = $2",
        [user_id.into(), device_id.into()],
    )
    .await?
    .map(|r| r.try_get("", "key_json"))
    .transpose()
}

/// Stores (or replaces) a device's keys.
pub async fn set(tx: &Tx, user_id: &str, device_id: &str, key_json: &str) -> Result<(), DbErr> {
    tx.execute(
        "INSERT INTO e2e_device_keys (user_id, device_id, key_json) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json",
        [user_id.into(), device_id.into(), key_json.into()],
    )
    .await?;
    Ok(())
}

/// The keys of every device of `users` that still exists, with the
/// device's display name.
pub async fn of_users(db: &Db, users: &[String]) -> Result<Vec<StoredDeviceKeys>, DbErr> {
    let mut out = Vec::new();
    for chunk in users.chunks(IN_CHUNK) {
        let rows = db
            .query_all(
                &format!(
                    "SELECT k.user_id, k.device_id, k.key_json, d.display_name \
                     FROM e2e_device_keys k JOIN devices d \
                     ON d.user_id = k.user_id AND d.device_id = k.device_id \
                     WHERE k.user_id IN ({}) ORDER BY k.user_id, k.device_id",
                    in_list(1, chunk.len())
                ),
                chunk.iter().map(|u| u.as_str().into()),
            )
            .await?;
        for r in rows {
            out.push(StoredDeviceKeys {
                user_id: r.try_get("", "user_id")?,
                device_id: r.try_get("", "device_id")?,
                key_json: r.try_get("", "key_json")?,
                display_name: r.try_get("", "display_name")?,
            });
        }
    }
    Ok(out)
}

/// Devices of `user_id` that have E2EE data (keys, one-time or fallback
/// keys, a to-device inbox, a dehydrated device record) but no longer
/// exist in `devices`.
pub async fn orphaned_devices(tx: &Tx, user_id: &str) -> Result<Vec<String>, DbErr> {
    let rows = tx
        .query_all(
            "SELECT device_id FROM ( \
               SELECT device_id FROM e2e_device_keys WHERE user_id = $1 \
               UNION SELECT device_id FROM e2e_one_time_keys WHERE user_id = $1 \
               UNION SELECT device_id FROM e2e_fallback_keys WHERE user_id = $1 \
               UNION SELECT device_id FROM to_device_inbox WHERE user_id = $1 \
               UNION SELECT device_id FROM dehydrated_devices WHERE user_id = $1 \
             ) AS e WHERE NOT EXISTS \
             (SELECT 1 FROM devices d WHERE d.user_id = $1 AND d.device_id = e.device_id)",
            [user_id.into()],
        )
        .await?;
    rows.iter().map(|r| r.try_get("", "device_id")).collect()
}

/// Removes the E2EE data of every device of `user_id` that no longer
/// exists ([`orphaned_devices`]), in the transaction that deleted the
/// devices (`accounts` calls it). Returns the devices that were gone: the
/// device list changed, and the caller records that.
pub async fn remove_deleted_devices(tx: &Tx, user_id: &str) -> Result<Vec<String>, DbErr> {
    let gone = orphaned_devices(tx, user_id).await?;
    for device_id in &gone {
        delete_device(tx, user_id, device_id).await?;
        super::dehydrated_devices::forget(tx, user_id, device_id).await?;
    }
    Ok(gone)
}

/// Deletes everything E2EE stores for one device: its keys, one-time and
/// fallback keys, to-device inbox and transaction IDs, and signatures
/// made on its keys.
pub async fn delete_device(tx: &Tx, user_id: &str, device_id: &str) -> Result<(), DbErr> {
    tx.changes_key_counts(user_id, device_id);
    for table in [
        "e2e_device_keys",
        "e2e_one_time_keys",
        "e2e_fallback_keys",
        "to_device_inbox",
        "to_device_txns",
    ] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE user_id = $1 AND device_id = $2"),
            [user_id.into(), device_id.into()],
        )
        .await?;
    }
    tx.execute(
        "DELETE FROM e2e_signatures WHERE target_user_id = $1 AND target_key_id = $2",
        [user_id.into(), device_id.into()],
    )
    .await?;
    Ok(())
}
