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
//!
//! Every sync reports a device's key counts ([`sync_counts`]), so they are
//! cached per device; every write of these tables, here and in
//! `device_keys`, drops the device's entry when its transaction commits.

use std::collections::BTreeMap;
use std::sync::Arc;

use sea_orm::{DbBackend, DbErr};

use super::{Db, Tx};
use crate::storage::Sql as _;

/// A device's one-time key counts by algorithm and its unused fallback key
/// algorithms, as sync reports them.
pub type SyncCounts = (BTreeMap<String, u64>, Vec<String>);

/// Devices whose counts are cached at most.
const CACHED_DEVICES: usize = 20_000;

/// [`sync_counts`] by user and device (see [`cached_sync_counts`]).
#[derive(Debug)]
pub(crate) struct Cache(super::cache::Cache<(String, String), Arc<SyncCounts>>);

impl Default for Cache {
    fn default() -> Self {
        Self(super::cache::Cache::new(CACHED_DEVICES))
    }
}

impl Cache {
    pub(crate) fn invalidate(&self, user_id: &str, device_id: &str) {
        self.0
            .invalidate(&(user_id.to_owned(), device_id.to_owned()));
    }
}

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
    tx.changes_key_counts(user_id, device_id);
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
pub async fn sync_counts(db: &Db, user_id: &str, device_id: &str) -> Result<SyncCounts, DbErr> {
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

/// [`sync_counts`], cached: what this process wrote is seen once its
/// transaction commits.
pub async fn cached_sync_counts(
    db: &Db,
    user_id: &str,
    device_id: &str,
) -> Result<Arc<SyncCounts>, DbErr> {
    let key = (user_id.to_owned(), device_id.to_owned());
    let (generation, cached) = db.key_counts().0.get(&key);
    if let Some(counts) = cached {
        return Ok(counts);
    }
    let counts = Arc::new(sync_counts(db, user_id, device_id).await?);
    db.key_counts().0.put(generation, key, counts.clone());
    Ok(counts)
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
    tx.changes_key_counts(user_id, device_id);
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
    tx.changes_key_counts(user_id, device_id);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_db;

    fn key(algorithm: &str, key_id: &str) -> Key {
        Key {
            algorithm: algorithm.to_owned(),
            key_id: key_id.to_owned(),
            key_json: format!("{{\"key\":\"{key_id}\"}}"),
        }
    }

    async fn cached(db: &Db) -> (u64, Vec<String>) {
        let counts = cached_sync_counts(db, "@u:x", "D").await.expect("counts");
        (counts.0["signed_curve25519"], counts.1.clone())
    }

    #[tokio::test]
    async fn cached_counts_follow_uploads_claims_and_deletion() {
        let db = test_db().await;
        assert_eq!(cached(&db).await, (0, vec![]));
        let tx = db.begin_write().await.expect("tx");
        let keys = [key("signed_curve25519", "a"), key("signed_curve25519", "b")];
        add(&tx, "@u:x", "D", &keys)
            .await
            .expect("add")
            .expect("new");
        set_fallback(&tx, "@u:x", "D", &key("signed_curve25519", "f"))
            .await
            .expect("fallback");
        // Not committed yet: the cache still answers from the database.
        assert_eq!(cached(&db).await, (0, vec![]));
        tx.commit().await.expect("commit");
        let fallback = vec!["signed_curve25519".to_owned()];
        assert_eq!(cached(&db).await, (2, fallback.clone()));
        claim(&db, "@u:x", "D", "signed_curve25519")
            .await
            .expect("claim");
        assert_eq!(cached(&db).await, (1, fallback.clone()));
        for _ in 0..2 {
            claim(&db, "@u:x", "D", "signed_curve25519")
                .await
                .expect("claim");
        }
        assert_eq!(cached(&db).await, (0, vec![]), "the fallback key is used");
        let tx = db.begin_write().await.expect("tx");
        add(&tx, "@u:x", "D", &[key("signed_curve25519", "c")])
            .await
            .expect("add")
            .expect("new");
        tx.commit().await.expect("commit");
        assert_eq!(cached(&db).await.0, 1);
        let tx = db.begin_write().await.expect("tx");
        crate::storage::device_keys::delete_device(&tx, "@u:x", "D")
            .await
            .expect("delete");
        tx.commit().await.expect("commit");
        assert_eq!(cached(&db).await, (0, vec![]));
    }
}
