//! Server-side key backups: `/room_keys/version` (create, read, update,
//! delete backup versions) and `/room_keys/keys` (encrypted session keys
//! for all rooms, one room, or one session). Only the current (latest)
//! version accepts keys; writing to another is `403
//! M_WRONG_ROOM_KEYS_VERSION` with `current_version`, as the spec says.

use std::collections::BTreeMap;

use axum::extract::State;
use http::StatusCode;
use ruma::api::client::backup::{
    BackupAlgorithm, KeyBackupData, RoomKeyBackup, add_backup_keys, add_backup_keys_for_room,
    add_backup_keys_for_session, create_backup_version, delete_backup_keys,
    delete_backup_keys_for_room, delete_backup_keys_for_session, delete_backup_version,
    get_backup_info, get_backup_keys, get_backup_keys_for_room, get_backup_keys_for_session,
    get_latest_backup_info, update_backup_version,
};
use ruma::api::error::{ErrorKind, WrongRoomKeysVersionErrorData};
use ruma::serde::Raw;
use ruma::{OwnedRoomId, UInt};
use serde_json::{Value, json};

use super::from_json;
use crate::api::auth::Authed;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::state::AppState;
use crate::storage::Tx;
use crate::storage::key_backup::{self, SessionKey, Version};

/// The largest `auth_data` or session key accepted (they are small: keys
/// and signatures).
const MAX_ITEM_BYTES: usize = 64 * 1024;

fn version_not_found(version: &str) -> ApiError {
    ApiError::not_found(format!("Unknown backup version {version:?}"))
}

/// A version number from the client; anything else names no version.
fn parse_version(version: &str) -> Option<i64> {
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    version.parse().ok()
}

/// `algorithm` and `auth_data` of an uploaded version, checked.
fn algorithm_parts(raw: &Raw<BackupAlgorithm>) -> Result<(String, String), ApiError> {
    if raw.json().get().len() > MAX_ITEM_BYTES {
        return Err(ApiError::too_large("backup auth_data is too large"));
    }
    let value: Value =
        serde_json::from_str(raw.json().get()).map_err(|e| ApiError::bad_json(e.to_string()))?;
    let algorithm = value
        .get("algorithm")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_json("missing algorithm"))?;
    let auth_data = value
        .get("auth_data")
        .filter(|a| a.is_object())
        .ok_or_else(|| ApiError::bad_json("auth_data must be an object"))?;
    Ok((algorithm.to_owned(), auth_data.to_string()))
}

fn algorithm_raw(v: &Version) -> Result<Raw<BackupAlgorithm>, ApiError> {
    let auth_data: Value = serde_json::from_str(&v.auth_data)
        .map_err(|e| ApiError::internal("stored auth_data", e))?;
    from_json(&json!({ "algorithm": v.algorithm, "auth_data": auth_data }))
}

/// `POST /_matrix/client/v3/room_keys/version`: a new version, which
/// becomes the current one.
pub async fn create_version(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<create_backup_version::v3::Request>,
) -> Result<RumaResponse<create_backup_version::v3::Response>, ApiError> {
    let (algorithm, auth_data) = algorithm_parts(&req.algorithm)?;
    let tx = state.db().begin_write().await?;
    let version = key_backup::create(&tx, auth.user_id.as_str(), &algorithm, &auth_data).await?;
    tx.commit().await?;
    Ok(RumaResponse(create_backup_version::v3::Response::new(
        version.to_string(),
    )))
}

async fn version_info(
    tx: &Tx,
    user: &str,
    v: &Version,
) -> Result<(Raw<BackupAlgorithm>, UInt, String), ApiError> {
    let count = key_backup::count(tx, user, v.version).await?;
    Ok((
        algorithm_raw(v)?,
        UInt::try_from(count).unwrap_or(UInt::MAX),
        v.etag.to_string(),
    ))
}

/// `GET /_matrix/client/v3/room_keys/version`
pub async fn latest_version(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(_): Ruma<get_latest_backup_info::v3::Request>,
) -> Result<RumaResponse<get_latest_backup_info::v3::Response>, ApiError> {
    let user = auth.user_id.as_str();
    let tx = state.db().begin_write().await?;
    let v = key_backup::current(&tx, user)
        .await?
        .ok_or_else(|| ApiError::not_found("No current backup version"))?;
    let (algorithm, count, etag) = version_info(&tx, user, &v).await?;
    Ok(RumaResponse(get_latest_backup_info::v3::Response::new(
        algorithm,
        count,
        etag,
        v.version.to_string(),
    )))
}

/// `GET /_matrix/client/v3/room_keys/version/{version}`
pub async fn get_version(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_backup_info::v3::Request>,
) -> Result<RumaResponse<get_backup_info::v3::Response>, ApiError> {
    let user = auth.user_id.as_str();
    let tx = state.db().begin_write().await?;
    let v = existing(&tx, user, &req.version).await?;
    let (algorithm, count, etag) = version_info(&tx, user, &v).await?;
    Ok(RumaResponse(get_backup_info::v3::Response::new(
        algorithm,
        count,
        etag,
        v.version.to_string(),
    )))
}

/// A version that exists (not deleted), else 404.
async fn existing(tx: &Tx, user: &str, version: &str) -> Result<Version, ApiError> {
    let Some(n) = parse_version(version) else {
        return Err(version_not_found(version));
    };
    key_backup::get(tx, user, n)
        .await?
        .ok_or_else(|| version_not_found(version))
}

/// `PUT /_matrix/client/v3/room_keys/version/{version}`: new `auth_data`;
/// the algorithm cannot change (as Synapse).
pub async fn update_version(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<update_backup_version::v3::Request>,
) -> Result<RumaResponse<update_backup_version::v3::Response>, ApiError> {
    let user = auth.user_id.as_str();
    let (algorithm, auth_data) = algorithm_parts(&req.algorithm)?;
    let body: Value = serde_json::from_str(req.algorithm.json().get())
        .map_err(|e| ApiError::bad_json(e.to_string()))?;
    if let Some(v) = body.get("version")
        && v.as_str() != Some(req.version.as_str())
    {
        return Err(ApiError::invalid_param(
            "version in body does not match the path",
        ));
    }
    let tx = state.db().begin_write().await?;
    let v = existing(&tx, user, &req.version).await?;
    if v.algorithm != algorithm {
        return Err(ApiError::invalid_param("Algorithm does not match"));
    }
    key_backup::update_auth_data(&tx, user, v.version, &auth_data).await?;
    tx.commit().await?;
    Ok(RumaResponse(update_backup_version::v3::Response::new()))
}

/// `DELETE /_matrix/client/v3/room_keys/version/{version}`: the version
/// and its keys go. As in Synapse, the current version is then the latest
/// one left, if any.
pub async fn delete_version(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<delete_backup_version::v3::Request>,
) -> Result<RumaResponse<delete_backup_version::v3::Response>, ApiError> {
    let tx = state.db().begin_write().await?;
    let v = existing(&tx, auth.user_id.as_str(), &req.version).await?;
    key_backup::delete_version(&tx, auth.user_id.as_str(), v.version).await?;
    tx.commit().await?;
    Ok(RumaResponse(delete_backup_version::v3::Response::new()))
}

/// The version keys may be written to: the current one. No backup at all
/// is 404; another version is 403 `M_WRONG_ROOM_KEYS_VERSION`.
async fn writable(tx: &Tx, user: &str, version: &str) -> Result<Version, ApiError> {
    let current = key_backup::current(tx, user)
        .await?
        .ok_or_else(|| version_not_found(version))?;
    if parse_version(version) != Some(current.version) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorKind::WrongRoomKeysVersion(WrongRoomKeysVersionErrorData::new(
                current.version.to_string(),
            )),
            "Wrong backup version.",
        ));
    }
    Ok(current)
}

fn session_key(
    room_id: &str,
    session_id: &str,
    raw: &Raw<KeyBackupData>,
) -> Result<SessionKey, ApiError> {
    let text = raw.json().get();
    if text.len() > MAX_ITEM_BYTES {
        return Err(ApiError::too_large("backed-up session key is too large"));
    }
    let parsed: KeyBackupData = raw
        .deserialize()
        .map_err(|e| ApiError::bad_json(format!("invalid key backup data: {e}")))?;
    let int = |v: UInt| i64::try_from(u64::from(v)).unwrap_or(i64::MAX);
    Ok(SessionKey {
        room_id: room_id.to_owned(),
        session_id: session_id.to_owned(),
        first_message_index: int(parsed.first_message_index),
        forwarded_count: int(parsed.forwarded_count),
        is_verified: parsed.is_verified,
        data: text.to_owned(),
    })
}

/// The spec's rule for a session the backup already has a key for: keep
/// the verified one; then the one with the lower `first_message_index`;
/// then the one with the lower `forwarded_count`. `true` to replace.
pub fn should_replace(existing: &SessionKey, new: &SessionKey) -> bool {
    if existing.is_verified != new.is_verified {
        return new.is_verified;
    }
    if existing.first_message_index != new.first_message_index {
        return new.first_message_index < existing.first_message_index;
    }
    new.forwarded_count < existing.forwarded_count
}

/// Stores keys into the current version (per the replacement rule) and
/// answers with the new etag and count.
async fn put_keys(
    state: &AppState,
    user: &str,
    version: &str,
    keys: Vec<SessionKey>,
) -> Result<(String, UInt), ApiError> {
    let tx = state.db().begin_write().await?;
    let v = writable(&tx, user, version).await?;
    let mut changed = false;
    for key in &keys {
        let current =
            key_backup::session(&tx, user, v.version, &key.room_id, &key.session_id).await?;
        if current.as_ref().is_none_or(|c| should_replace(c, key)) {
            key_backup::put_session(&tx, user, v.version, key).await?;
            changed = true;
        }
    }
    commit_change(tx, user, &v, changed).await
}

/// Ends a change of a backup's keys: a new etag when anything changed, and
/// the etag and key count clients are answered with.
async fn commit_change(
    tx: Tx,
    user: &str,
    v: &Version,
    changed: bool,
) -> Result<(String, UInt), ApiError> {
    let mut etag = v.etag;
    if changed {
        key_backup::bump_etag(&tx, user, v.version).await?;
        etag += 1;
    }
    let count = key_backup::count(&tx, user, v.version).await?;
    tx.commit().await?;
    Ok((etag.to_string(), UInt::try_from(count).unwrap_or(UInt::MAX)))
}

/// `PUT /_matrix/client/v3/room_keys/keys`
pub async fn put_all(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<add_backup_keys::v3::Request>,
) -> Result<RumaResponse<add_backup_keys::v3::Response>, ApiError> {
    let mut keys = Vec::new();
    for (room, backup) in &req.rooms {
        for (session, raw) in &backup.sessions {
            keys.push(session_key(room.as_str(), session, raw)?);
        }
    }
    let (etag, count) = put_keys(&state, auth.user_id.as_str(), &req.version, keys).await?;
    Ok(RumaResponse(add_backup_keys::v3::Response::new(
        etag, count,
    )))
}

/// `PUT /_matrix/client/v3/room_keys/keys/{roomId}`
pub async fn put_room(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<add_backup_keys_for_room::v3::Request>,
) -> Result<RumaResponse<add_backup_keys_for_room::v3::Response>, ApiError> {
    let keys = req
        .sessions
        .iter()
        .map(|(session, raw)| session_key(req.room_id.as_str(), session, raw))
        .collect::<Result<Vec<_>, _>>()?;
    let (etag, count) = put_keys(&state, auth.user_id.as_str(), &req.version, keys).await?;
    Ok(RumaResponse(add_backup_keys_for_room::v3::Response::new(
        etag, count,
    )))
}

/// `PUT /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}`
pub async fn put_session(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<add_backup_keys_for_session::v3::Request>,
) -> Result<RumaResponse<add_backup_keys_for_session::v3::Response>, ApiError> {
    let key = session_key(req.room_id.as_str(), &req.session_id, &req.session_data)?;
    let (etag, count) = put_keys(&state, auth.user_id.as_str(), &req.version, vec![key]).await?;
    Ok(RumaResponse(
        add_backup_keys_for_session::v3::Response::new(etag, count),
    ))
}

/// Keys of an existing version: all, one room's, or one session's.
async fn read_keys(
    state: &AppState,
    user: &str,
    version: &str,
    room: Option<&str>,
    session: Option<&str>,
) -> Result<Vec<SessionKey>, ApiError> {
    let tx = state.db().begin_write().await?;
    let v = existing(&tx, user, version).await?;
    Ok(key_backup::sessions(&tx, user, v.version, room, session).await?)
}

fn raw_data(key: &SessionKey) -> Result<Raw<KeyBackupData>, ApiError> {
    serde_json::from_str(&key.data).map_err(|e| ApiError::internal("stored session key", e))
}

/// `GET /_matrix/client/v3/room_keys/keys`
pub async fn get_all(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_backup_keys::v3::Request>,
) -> Result<RumaResponse<get_backup_keys::v3::Response>, ApiError> {
    let keys = read_keys(&state, auth.user_id.as_str(), &req.version, None, None).await?;
    let mut rooms: BTreeMap<OwnedRoomId, BTreeMap<String, Raw<KeyBackupData>>> = BTreeMap::new();
    for key in &keys {
        let Ok(room) = OwnedRoomId::try_from(key.room_id.as_str()) else {
            continue;
        };
        rooms
            .entry(room)
            .or_default()
            .insert(key.session_id.clone(), raw_data(key)?);
    }
    Ok(RumaResponse(get_backup_keys::v3::Response::new(
        rooms
            .into_iter()
            .map(|(room, sessions)| (room, RoomKeyBackup::new(sessions)))
            .collect(),
    )))
}

/// `GET /_matrix/client/v3/room_keys/keys/{roomId}`: `{"sessions": {}}`
/// for a room without keys, as Synapse.
pub async fn get_room(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_backup_keys_for_room::v3::Request>,
) -> Result<RumaResponse<get_backup_keys_for_room::v3::Response>, ApiError> {
    let keys = read_keys(
        &state,
        auth.user_id.as_str(),
        &req.version,
        Some(req.room_id.as_str()),
        None,
    )
    .await?;
    let sessions = keys
        .iter()
        .map(|k| Ok((k.session_id.clone(), raw_data(k)?)))
        .collect::<Result<BTreeMap<_, _>, ApiError>>()?;
    Ok(RumaResponse(get_backup_keys_for_room::v3::Response::new(
        sessions,
    )))
}

/// `GET /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}`: 404 when
/// the backup has no key for the session.
pub async fn get_session(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_backup_keys_for_session::v3::Request>,
) -> Result<RumaResponse<get_backup_keys_for_session::v3::Response>, ApiError> {
    let keys = read_keys(
        &state,
        auth.user_id.as_str(),
        &req.version,
        Some(req.room_id.as_str()),
        Some(&req.session_id),
    )
    .await?;
    let key = keys
        .first()
        .ok_or_else(|| ApiError::not_found("No room_keys found"))?;
    Ok(RumaResponse(
        get_backup_keys_for_session::v3::Response::new(raw_data(key)?),
    ))
}

/// Deletes keys of an existing version and answers with etag and count.
async fn delete_keys(
    state: &AppState,
    user: &str,
    version: &str,
    room: Option<&str>,
    session: Option<&str>,
) -> Result<(String, UInt), ApiError> {
    let tx = state.db().begin_write().await?;
    let v = existing(&tx, user, version).await?;
    let changed = key_backup::delete_sessions(&tx, user, v.version, room, session).await? > 0;
    commit_change(tx, user, &v, changed).await
}

/// `DELETE /_matrix/client/v3/room_keys/keys`
pub async fn delete_all(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<delete_backup_keys::v3::Request>,
) -> Result<RumaResponse<delete_backup_keys::v3::Response>, ApiError> {
    let (etag, count) =
        delete_keys(&state, auth.user_id.as_str(), &req.version, None, None).await?;
    Ok(RumaResponse(delete_backup_keys::v3::Response::new(
        etag, count,
    )))
}

/// `DELETE /_matrix/client/v3/room_keys/keys/{roomId}`
pub async fn delete_room(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<delete_backup_keys_for_room::v3::Request>,
) -> Result<RumaResponse<delete_backup_keys_for_room::v3::Response>, ApiError> {
    let (etag, count) = delete_keys(
        &state,
        auth.user_id.as_str(),
        &req.version,
        Some(req.room_id.as_str()),
        None,
    )
    .await?;
    Ok(RumaResponse(
        delete_backup_keys_for_room::v3::Response::new(etag, count),
    ))
}

/// `DELETE /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}`
pub async fn delete_session(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<delete_backup_keys_for_session::v3::Request>,
) -> Result<RumaResponse<delete_backup_keys_for_session::v3::Response>, ApiError> {
    let (etag, count) = delete_keys(
        &state,
        auth.user_id.as_str(),
        &req.version,
        Some(req.room_id.as_str()),
        Some(&req.session_id),
    )
    .await?;
    Ok(RumaResponse(
        delete_backup_keys_for_session::v3::Response::new(etag, count),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(is_verified: bool, first_message_index: i64, forwarded_count: i64) -> SessionKey {
        SessionKey {
            room_id: "!r:x".to_owned(),
            session_id: "s".to_owned(),
            first_message_index,
            forwarded_count,
            is_verified,
            data: String::new(),
        }
    }

    #[test]
    fn replacement_prefers_verified_then_earlier_index_then_fewer_forwards() {
        assert!(should_replace(&key(false, 0, 0), &key(true, 5, 5)));
        assert!(!should_replace(&key(true, 5, 5), &key(false, 0, 0)));
        assert!(should_replace(&key(true, 5, 0), &key(true, 3, 9)));
        assert!(!should_replace(&key(true, 3, 0), &key(true, 5, 0)));
        assert!(should_replace(&key(false, 3, 2), &key(false, 3, 1)));
        assert!(!should_replace(&key(false, 3, 1), &key(false, 3, 1)));
        assert!(!should_replace(&key(false, 3, 1), &key(false, 3, 2)));
    }
}
