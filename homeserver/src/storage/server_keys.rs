//! Owner of `server_signing_keys`: other servers' public signing keys, each with the last
//! instant it may verify something, and the signed document it was last seen in (what our
//! notary endpoints pass on).

use sea_orm::DbErr;

use super::{Db, Sql};

/// One stored key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub server_name: String,
    pub key_id: String,
    /// Unpadded base64, as published.
    pub public_key: String,
    /// The document's `valid_until_ts` (capped), or `expired_ts` for an old key.
    pub valid_until_ts: i64,
    /// Set when the server listed the key under `old_verify_keys`.
    pub expired_ts: Option<i64>,
    pub fetched_ts: i64,
    pub key_json: String,
}

fn row(r: &sea_orm::QueryResult) -> Result<StoredKey, DbErr> {
    Ok(StoredKey {
        server_name: r.try_get("", "server_name")?,
        key_id: r.try_get("", "key_id")?,
        public_key: r.try_get("", "public_key")?,
        valid_until_ts: r.try_get("", "valid_until_ts")?,
        expired_ts: r.try_get("", "expired_ts")?,
        fetched_ts: r.try_get("", "fetched_ts")?,
        key_json: r.try_get("", "key_json")?,
    })
}

const COLUMNS: &str =
    "server_name, key_id, public_key, valid_until_ts, expired_ts, fetched_ts, key_json";

/// Every key we hold for `server_name`.
pub async fn for_server(db: &Db, server_name: &str) -> Result<Vec<StoredKey>, DbErr> {
    db.query_all(
        &format!(
            "SELECT {COLUMNS} FROM server_signing_keys WHERE server_name = $1 ORDER BY key_id"
        ),
        [server_name.into()],
    )
    .await?
    .iter()
    .map(row)
    .collect()
}

/// Stores the keys of one fetched document in one transaction. A key already stored keeps
/// the later of its validity and the new one: an older document (from a notary's cache, say)
/// never shortens what we know.
pub async fn store(db: &Db, keys: &[StoredKey]) -> Result<(), DbErr> {
    let tx = db.begin_write().await?;
    for k in keys {
        tx.execute(
            &format!(
                "INSERT INTO server_signing_keys ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (server_name, key_id) DO UPDATE SET \
                 public_key = excluded.public_key, valid_until_ts = excluded.valid_until_ts, \
                 expired_ts = excluded.expired_ts, fetched_ts = excluded.fetched_ts, \
                 key_json = excluded.key_json \
                 WHERE excluded.valid_until_ts >= server_signing_keys.valid_until_ts \
                 OR excluded.public_key <> server_signing_keys.public_key"
            ),
            [
                k.server_name.clone().into(),
                k.key_id.clone().into(),
                k.public_key.clone().into(),
                k.valid_until_ts.into(),
                k.expired_ts.into(),
                k.fetched_ts.into(),
                k.key_json.clone().into(),
            ],
        )
        .await?;
    }
    tx.commit().await
}
