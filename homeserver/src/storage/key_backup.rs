//! Owner of `key_backup_versions` and `key_backup_sessions`: encrypted
//! room-key backups. A user has numbered backup versions; the highest one
//! not deleted is the current one, and only it accepts keys. Each version
//! has an `etag` that changes whenever its keys change, and holds at most
//! one (encrypted) session key per room and session.

use sea_orm::DbErr;

use super::Tx;
use crate::storage::Sql as _;

/// A backup version's metadata.
#[derive(Debug, Clone)]
pub struct Version {
    pub version: i64,
    pub algorithm: String,
    /// The `auth_data` object as text.
    pub auth_data: String,
    pub etag: i64,
}

/// One backed-up session key.
#[derive(Debug, Clone)]
pub struct SessionKey {
    pub room_id: String,
    pub session_id: String,
    pub first_message_index: i64,
    pub forwarded_count: i64,
    pub is_verified: bool,
    /// The `KeyBackupData` object as text.
    pub data: String,
}

fn version_row(r: &sea_orm::QueryResult) -> Result<Version, DbErr> {
    Ok(Version {
        version: r.try_get("", "version")?,
        algorithm: r.try_get("", "algorithm")?,
        auth_data: r.try_get("", "auth_data")?,
        etag: r.try_get("", "etag")?,
    })
}

/// The current (latest, not deleted) version, read in `tx`.
pub async fn current(tx: &Tx, user_id: &str) -> Result<Option<Version>, DbErr> {
    tx.query_one(
        "SELECT version, algorithm, auth_data, etag FROM key_backup_versions \
         WHERE user_id = $1 AND deleted = $2 ORDER BY version DESC LIMIT 1",
        [user_id.into(), false.into()],
    )
    .await?
    .as_ref()
    .map(version_row)
    .transpose()
}

/// One version, unless deleted.
pub async fn get(tx: &Tx, user_id: &str, version: i64) -> Result<Option<Version>, DbErr> {
    tx.query_one(
        "SELECT version, algorithm, auth_data, etag FROM key_backup_versions \
         WHERE user_id = $1 AND version = $2 AND deleted = $3",
        [user_id.into(), version.into(), false.into()],
    )
    .await?
    .as_ref()
    .map(version_row)
    .transpose()
}

/// Creates a new version (one above any that ever existed) and returns
/// its number.
pub async fn create(
    tx: &Tx,
    user_id: &str,
    algorithm: &str,
    auth_data: &str,
) -> Result<i64, DbErr> {
    let row = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) AS v FROM key_backup_versions WHERE user_id = $1",
            [user_id.into()],
        )
        .await?;
    let version = match row {
        Some(r) => r.try_get::<i64>("", "v")? + 1,
        None => 1,
    };
    tx.execute(
        "INSERT INTO key_backup_versions (user_id, version, algorithm, auth_data, etag, deleted) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        [
            user_id.into(),
            version.into(),
            algorithm.into(),
            auth_data.into(),
            0i64.into(),
            false.into(),
        ],
    )
    .await?;
    Ok(version)
}

/// Replaces a version's `auth_data`.
pub async fn update_auth_data(
    tx: &Tx,
    user_id: &str,
    version: i64,
    auth_data: &str,
) -> Result<(), DbErr> {
    tx.execute(
        "UPDATE key_backup_versions SET auth_data = $3 WHERE user_id = $1 AND version = $2",
        [user_id.into(), version.into(), auth_data.into()],
    )
    .await?;
    Ok(())
}

/// Marks a version deleted and drops its keys; `false` if there was none.
pub async fn delete_version(tx: &Tx, user_id: &str, version: i64) -> Result<bool, DbErr> {
    let n = tx
        .execute(
            "UPDATE key_backup_versions SET deleted = $3 \
             WHERE user_id = $1 AND version = $2 AND deleted = $4",
            [user_id.into(), version.into(), true.into(), false.into()],
        )
        .await?;
    tx.execute(
        "DELETE FROM key_backup_sessions WHERE user_id = $1 AND version = $2",
        [user_id.into(), version.into()],
    )
    .await?;
    Ok(n > 0)
}

/// Advances a version's etag: called in every transaction that changes its
/// keys.
pub async fn bump_etag(tx: &Tx, user_id: &str, version: i64) -> Result<(), DbErr> {
    tx.execute(
        "UPDATE key_backup_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2",
        [user_id.into(), version.into()],
    )
    .await?;
    Ok(())
}

/// The number of keys in a version.
pub async fn count(tx: &Tx, user_id: &str, version: i64) -> Result<u64, DbErr> {
    let row = tx
        .query_one(
            "SELECT COUNT(*) AS n FROM key_backup_sessions WHERE user_id = $1 AND version = $2",
            [user_id.into(), version.into()],
        )
        .await?;
    let n: i64 = match row {
        Some(r) => r.try_get("", "n")?,
        None => 0,
    };
    Ok(u64::try_from(n).unwrap_or(0))
}

/// One stored session key.
pub async fn session(
    tx: &Tx,
    user_id: &str,
    version: i64,
    room_id: &str,
    session_id: &str,
) -> Result<Option<SessionKey>, DbErr> {
    Ok(
        sessions(tx, user_id, version, Some(room_id), Some(session_id))
            .await?
            .into_iter()
            .next(),
    )
}

/// The keys of a version: all, one room's, or one session's.
pub async fn sessions(
    tx: &Tx,
    user_id: &str,
    version: i64,
    room_id: Option<&str>,
    session_id: Option<&str>,
) -> Result<Vec<SessionKey>, DbErr> {
    let rows = tx
        .query_all(
            "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, \
             session_data FROM key_backup_sessions WHERE user_id = $1 AND version = $2 \
             AND ($3 = '' OR room_id = $3) AND ($4 = '' OR session_id = $4) \
             ORDER BY room_id, session_id",
            [
                user_id.into(),
                version.into(),
                room_id.unwrap_or("").into(),
                session_id.unwrap_or("").into(),
            ],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(SessionKey {
                room_id: r.try_get("", "room_id")?,
                session_id: r.try_get("", "session_id")?,
                first_message_index: r.try_get("", "first_message_index")?,
                forwarded_count: r.try_get("", "forwarded_count")?,
                is_verified: r.try_get("", "is_verified")?,
                data: r.try_get("", "session_data")?,
            })
        })
        .collect()
}

/// Stores (or replaces) one session key.
pub async fn put_session(
    tx: &Tx,
    user_id: &str,
    version: i64,
    key: &SessionKey,
) -> Result<(), DbErr> {
    tx.execute(
        "INSERT INTO key_backup_sessions (user_id, version, room_id, session_id, \
         first_message_index, forwarded_count, is_verified, session_data) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET \
         first_message_index = excluded.first_message_index, \
         forwarded_count = excluded.forwarded_count, is_verified = excluded.is_verified, \
         session_data = excluded.session_data",
        [
            user_id.into(),
            version.into(),
            key.room_id.as_str().into(),
            key.session_id.as_str().into(),
            key.first_message_index.into(),
            key.forwarded_count.into(),
            key.is_verified.into(),
            key.data.as_str().into(),
        ],
    )
    .await?;
    Ok(())
}

/// Deletes keys of a version: all, one room's, or one session's. Returns
/// how many went.
pub async fn delete_sessions(
    tx: &Tx,
    user_id: &str,
    version: i64,
    room_id: Option<&str>,
    session_id: Option<&str>,
) -> Result<u64, DbErr> {
    tx.execute(
        "DELETE FROM key_backup_sessions WHERE user_id = $1 AND version = $2 \
         AND ($3 = '' OR room_id = $3) AND ($4 = '' OR session_id = $4)",
        [
            user_id.into(),
            version.into(),
            room_id.unwrap_or("").into(),
            session_id.unwrap_or("").into(),
        ],
    )
    .await
}
