//! Owner of `e2e_one_time_keys` and `e2e_fallback_keys`: the keys other
//! devices claim to start an Olm session with a device.
//!
//! A one-time key is handed out exactly once: [`claim`] deletes the row it
//! returns, inside a write transaction. On SQLite that transaction holds the
//! database write lock from its start; on PostgreSQL the row is chosen with
//! `FOR UPDATE SKIP LOCKED`, so two concurrent claims lock different rows
//! and never return the same key. When none is left, the device's fallback
//! key is returned (and stays, marked used) until the device uploads a new
//! one.

use std::collections::BTreeMap;

use sea_orm::{DbBackend, DbErr};

use super::{Db, Tx};
use crate::storage::Sql as _;

/// One key as uploaded: `algorithm:key_id` and its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub algorithm: String,
    pub key_id: String,
    pub key_json: String,
}

/// An upload reused a key ID for a different key.
#[derive(Debug)]
pub struct KeyIdReused {
    pub key: Key,
    pub existing_json: String,
}

/// Adds one-time keys. Re-uploading an identical key is a no-op (clients
/// retry uploads); the same ID with different content is refused and
/// nothing is written by the caller's transaction.
pub async fn add(
    tx: &Tx,
    user_id: &str,
    device_id: &str,
    keys: &[Key],
) -> Result<Result<(), KeyIdReused>, DbErr> {
    for key in keys {
        let existing = tx
            .query_one(
                "SELECT key_json FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2 \
                 AND algorithm = $3 AND key_id = $4",
                [
                    user_id.into(),
                    device_id.into(),
                    key.algorithm.as_str().into(),
                    key.key_id.as_str().into(),
                ],
            )
            .await?;
        if let Some(row) = existing {
            let existing_json: String = row.try_get("", "key_json")?;
            if existing_json != key.key_json {
                return Ok(Err(KeyIdReused {
                    key: key.clone(),
                    existing_json,
                }));
            }
            continue;
        }
        tx.execute(
            "INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json) \
             VALUES ($1, $2, $3, $4, $5)",
            [
                user_id.into(),
                device_id.into(),
                key.algorithm.as_str().into(),
                key.key_id.as_str().into(),
                key.key_json.as_str().into(),
            ],
        )
        .await?;
    }
    Ok(Ok(()))
}

/// How many unclaimed one-time keys a device has, by algorithm. This is
/// `one_time_key_counts` of `/keys/upload` and `device_one_time_keys_count`
/// of sync. `signed_curve25519` is always present (0 when none are left),
/// as in Synapse, so clients know to upload more.
pub async fn counts(
    db: &Db,
    user_id: &str,
    device_id: &str,
) -> Result<BTreeMap<String, u64>, DbErr> {
    let rows = db
        .query_all(
            "SELECT algorithm, COUNT(*) AS n FROM e2e_one_time_keys \
             WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm",
            [user_id.into(), device_id.into()],
        )
        .await?;
    let mut out = BTreeMap::from([("signed_curve25519".to_owned(), 0)]);
    for r in rows {
        let n: i64 = r.try_get("", "n")?;
        out.insert(r.try_get("", "algorithm")?, u64::try_from(n).unwrap_or(0));
    }
    Ok(out)
}

/// What every sync response carries about a device's keys, in one read:
/// its [`counts`] and the algorithms of its unused fallback keys (sorted).
pub async fn sync_counts(
    db: &Db,
    user_id: &str,
    device_id: &str,
) -> Result<(BTreeMap<String, u64>, Vec<String>), DbErr> {
    let rows = db
        .query_all(
            "SELECT 0 AS fallback, algorithm, COUNT(*) AS n FROM e2e_one_time_keys \
             WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm \
             UNION ALL \
             SELECT 1 AS fallback, algorithm, 0 AS n FROM e2e_fallback_keys \
             WHERE user_id = $1 AND device_id = $2 AND used = $3",
            [user_id.into(), device_id.into(), false.into()],
        )
        .await?;
    let mut counts = BTreeMap::from([("signed_curve25519".to_owned(), 0)]);
    let mut fallback = Vec::new();
    for r in rows {
        let algorithm: String = r.try_get("", "algorithm")?;
        if r.try_get::<i32>("", "fallback")? == 1 {
            fallback.push(algorithm);
        } else {
            let n: i64 = r.try_get("", "n")?;
            counts.insert(algorithm, u64::try_from(n).unwrap_or(0));
        }
    }
    fallback.sort_unstable();
    Ok((counts, fallback))
}

/// Claims one key of `algorithm` for a device: a one-time key (deleted, so
/// never handed out again) or else the fallback key (marked used). `None`
/// when the device has neither. See the module doc for atomicity.
pub async fn claim(
    db: &Db,
    user_id: &str,
    device_id: &str,
    algorithm: &str,
) -> Result<Option<Key>, DbErr> {
    let tx = db.begin_write().await?;
    let lock = match db.backend() {
        DbBackend::Postgres => " FOR UPDATE SKIP LOCKED",
        _ => "",
    };
    let row = tx
        .query_one(
            &format!(
                "SELECT key_id, key_json FROM e2e_one_time_keys \
                 WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 \
                 ORDER BY key_id LIMIT 1{lock}"
            ),
            [user_id.into(), device_id.into(), algorithm.into()],
        )
        .await?;
    if let Some(row) = row {
        let key = Key {
            algorithm: algorithm.to_owned(),
            key_id: row.try_get("", "key_id")?,
            key_json: row.try_get("", "key_json")?,
        };
        let deleted = tx
            .execute(
                "DELETE FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2 \
                 AND algorithm = $3 AND key_id = $4",
                [
                    user_id.into(),
                    device_id.into(),
                    algorithm.into(),
                    key.key_id.as_str().into(),
                ],
            )
            .await?;
        if deleted == 1 {
            tx.commit().await?;
            return Ok(Some(key));
        }
        // Unreachable with the row lock held; fall through to the fallback
        // rather than hand out a key someone else deleted.
    }
    let fallback = tx
        .query_one(
            "UPDATE e2e_fallback_keys SET used = $4 \
             WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 \
             RETURNING key_id, key_json",
            [
                user_id.into(),
                device_id.into(),
                algorithm.into(),
                true.into(),
            ],
        )
        .await?;
    let key = fallback
        .map(|row| -> Result<Key, DbErr> {
            Ok(Key {
                algorithm: algorithm.to_owned(),
                key_id: row.try_get("", "key_id")?,
                key_json: row.try_get("", "key_json")?,
            })
        })
        .transpose()?;
    tx.commit().await?;
    Ok(key)
}

/// Sets a device's fallback key for the key's algorithm, replacing the
/// previous one. Uploading the same key again keeps its "used" mark (as in
/// Synapse), a new key starts unused.
pub async fn set_fallback(tx: &Tx, user_id: &str, device_id: &str, key: &Key) -> Result<(), DbErr> {
    tx.execute(
        "INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET \
         used = CASE WHEN e2e_fallback_keys.key_id = excluded.key_id \
                      AND e2e_fallback_keys.key_json = excluded.key_json \
                THEN e2e_fallback_keys.used ELSE excluded.used END, \
         key_id = excluded.key_id, key_json = excluded.key_json",
        [
            user_id.into(),
            device_id.into(),
            key.algorithm.as_str().into(),
            key.key_id.as_str().into(),
            key.key_json.as_str().into(),
            false.into(),
        ],
    )
    .await?;
    Ok(())
}
