//! Owner of the `users`, `devices`, `access_tokens` and `refresh_tokens`
//! tables: accounts, their devices, the sessions devices hold, and
//! profiles. Every change that touches more than one row runs in a
//! transaction, so a failure never leaves, say, a user without the device
//! it was registered with.
//!
//! A device holds at most one session (one access token, and with it at
//! most one refresh token): logging in again to a device, or refreshing,
//! replaces the session. Tokens are stored only as hashes.
//!
//! A refresh token stays usable after its first use until the access token
//! that use issued is first used (`access_tokens.pending_refresh`), as in
//! Synapse: a client whose `/refresh` response was lost can retry.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, Value};
use sha2::{Digest, Sha256};

use super::{Db, Tx};
use crate::api::auth::Authed;
use crate::storage::Sql as _;
use crate::time::now_ms;

/// SHA-256 of a token, hex-encoded: tokens are stored only as hashes.
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

pub enum TokenLookup {
    Valid(Authed),
    Expired,
    Unknown,
}

/// The sessions of access tokens looked up lately, so that a request does
/// not cost a query to authenticate (every sync and send would). Anything
/// that revokes tokens or sessions drops them, before its write and again
/// after its commit: a login or a refresh the sessions of its device, the
/// rest (logout, device deletion, deactivation, password change) all of
/// them. A lookup caches what it read only if nothing was dropped
/// meanwhile. Only this process writes the tables.
pub(crate) struct TokenCache(super::cache::Cache<String, CachedSession>);

#[derive(Clone)]
struct CachedSession {
    authed: Authed,
    expires_ts: Option<i64>,
}

impl std::fmt::Debug for TokenCache {
    // Never the sessions: they hold token hashes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache").finish_non_exhaustive()
    }
}

/// Sessions cached at most; past it the cache starts again.
const TOKEN_CACHE_SIZE: usize = 50_000;

impl Default for TokenCache {
    fn default() -> Self {
        Self(super::cache::Cache::new(TOKEN_CACHE_SIZE))
    }
}

impl TokenCache {
    /// Drops the cached sessions of one device: what a login or a refresh
    /// on it revokes. Other users' sessions stay cached, so a login does
    /// not send every other request to the database.
    fn invalidate_device(&self, user_id: &str, device_id: &str) {
        self.0.invalidate_where(|s| {
            s.authed.user_id.as_str() == user_id && s.authed.device_id.as_str() == device_id
        });
    }

    /// Drops every cached session.
    pub(crate) fn invalidate(&self) {
        self.0.invalidate_all();
    }
}

impl CachedSession {
    fn lookup(self) -> TokenLookup {
        if self.expires_ts.is_some_and(|e| e <= now_ms()) {
            TokenLookup::Expired
        } else {
            TokenLookup::Valid(self.authed)
        }
    }
}

/// Finds the live session an access token belongs to.
pub async fn lookup_access_token(db: &Db, token: &str) -> Result<TokenLookup, DbErr> {
    let hash = hash_token(token);
    let (generation, cached) = db.tokens().0.get(&hash);
    if let Some(session) = cached {
        return Ok(session.lookup());
    }
    let row = db
        .query_one(
            "SELECT t.user_id, t.device_id, t.expires_ts, t.pending_refresh, u.is_admin, \
             u.deactivated FROM access_tokens t JOIN users u ON u.user_id = t.user_id \
             WHERE t.token_hash = $1",
            [hash.clone().into()],
        )
        .await?;
    let Some(row) = row else {
        return Ok(TokenLookup::Unknown);
    };
    let user_id: String = row.try_get("", "user_id")?;
    let device_id: String = row.try_get("", "device_id")?;
    let expires_ts: Option<i64> = row.try_get("", "expires_ts")?;
    let is_admin: bool = row.try_get("", "is_admin")?;
    let deactivated: bool = row.try_get("", "deactivated")?;
    if deactivated {
        return Ok(TokenLookup::Unknown);
    }
    if expires_ts.is_some_and(|e| e <= now_ms()) {
        return Ok(TokenLookup::Expired);
    }
    let pending_refresh: Option<String> = row.try_get("", "pending_refresh")?;
    if let Some(old_refresh) = &pending_refresh {
        retire_refresh_token(db, &hash, old_refresh).await?;
    }
    let user_id = parse_user_id(&user_id)?;
    let device_id = ruma::OwnedDeviceId::from(device_id.as_str());
    let authed = Authed {
        user_id,
        device_id,
        is_admin,
        token_hash: hash.clone(),
    };
    if pending_refresh.is_none() {
        let session = CachedSession {
            authed: authed.clone(),
            expires_ts,
        };
        db.tokens().0.put(generation, hash, session);
    }
    Ok(TokenLookup::Valid(authed))
}

/// The first use of an access token issued by `/refresh` proves the
/// client has it: the refresh token it was issued for stops working.
/// Only this first use writes.
async fn retire_refresh_token(db: &Db, access_hash: &str, refresh_hash: &str) -> Result<(), DbErr> {
    let txn = db.begin_immediate().await?;
    exec(
        db,
        &txn,
        "DELETE FROM refresh_tokens WHERE token_hash = $1",
        [refresh_hash.into()],
    )
    .await?;
    exec(
        db,
        &txn,
        "UPDATE access_tokens SET pending_refresh = NULL WHERE token_hash = $1",
        [access_hash.into()],
    )
    .await?;
    txn.commit().await
}

fn parse_user_id(s: &str) -> Result<ruma::OwnedUserId, DbErr> {
    // Only ever written by us from validated IDs.
    ruma::UserId::parse(s).map_err(|_| DbErr::Custom(format!("corrupt user ID in storage: {s}")))
}

/// Runs `sql` (PostgreSQL placeholders) inside `txn`.
async fn exec(
    db: &Db,
    txn: &DatabaseTransaction,
    sql: &str,
    values: impl IntoIterator<Item = Value>,
) -> Result<u64, DbErr> {
    Ok(txn.execute_raw(db.stmt(sql, values)).await?.rows_affected())
}

/// An account as login and authentication need it.
#[derive(Debug, Clone)]
pub struct User {
    pub user_id: ruma::OwnedUserId,
    pub password_hash: Option<String>,
    pub is_admin: bool,
    pub deactivated: bool,
}

/// The account `user_id`, deactivated or not.
pub async fn get_user(db: &Db, user_id: &str) -> Result<Option<User>, DbErr> {
    let Some(row) = db
        .query_one(
            "SELECT user_id, password_hash, is_admin, deactivated FROM users WHERE user_id = $1",
            [user_id.into()],
        )
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(User {
        user_id: parse_user_id(&row.try_get::<String>("", "user_id")?)?,
        password_hash: row.try_get("", "password_hash")?,
        is_admin: row.try_get("", "is_admin")?,
        deactivated: row.try_get("", "deactivated")?,
    }))
}

/// Whether the user ID is taken. Deactivated accounts keep their ID
/// forever, so that nobody can impersonate a former user.
pub async fn user_exists(db: &Db, user_id: &str) -> Result<bool, DbErr> {
    Ok(db
        .query_one(
            "SELECT 1 AS one FROM users WHERE user_id = $1",
            [user_id.into()],
        )
        .await?
        .is_some())
}

/// What a new session is for: the device and how its tokens behave.
#[derive(Debug, Clone)]
pub struct SessionRequest {
    pub device_id: String,
    /// The device's display name; `None` keeps an existing device's name.
    pub display_name: Option<String>,
    pub ip: Option<String>,
    /// `Some(lifetime)`: the access token expires and comes with a refresh
    /// token. `None`: a non-expiring access token and no refresh token.
    pub refreshable: Option<Duration>,
}

/// The credentials of a new session, in the clear (the only time they are).
#[derive(Debug, Clone)]
pub struct Session {
    pub device_id: ruma::OwnedDeviceId,
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: Option<Duration>,
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Creates or takes over `req.device_id` and gives it a fresh session,
/// revoking whatever tokens it held.
async fn open_session(
    db: &Db,
    txn: &DatabaseTransaction,
    user_id: &str,
    req: SessionRequest,
) -> Result<Session, DbErr> {
    let now = now_ms();
    exec(
        db,
        txn,
        "INSERT INTO devices (user_id, device_id, display_name, last_seen_ts, last_seen_ip, created_ts) \
         VALUES ($1, $2, $3, $4, $5, $4) \
         ON CONFLICT (user_id, device_id) DO UPDATE SET \
         display_name = COALESCE(excluded.display_name, devices.display_name), \
         last_seen_ts = excluded.last_seen_ts, last_seen_ip = excluded.last_seen_ip",
        [
            user_id.into(),
            req.device_id.clone().into(),
            req.display_name.into(),
            now.into(),
            req.ip.into(),
        ],
    )
    .await?;
    revoke_device_tokens(db, txn, user_id, &req.device_id).await?;
    issue_tokens(db, txn, user_id, &req.device_id, req.refreshable).await
}

async fn revoke_device_tokens(
    db: &Db,
    txn: &DatabaseTransaction,
    user_id: &str,
    device_id: &str,
) -> Result<(), DbErr> {
    // The callers drop the device's sessions again after their commit.
    db.tokens().invalidate_device(user_id, device_id);
    for table in ["access_tokens", "refresh_tokens"] {
        exec(
            db,
            txn,
            &format!("DELETE FROM {table} WHERE user_id = $1 AND device_id = $2"),
            [user_id.into(), device_id.into()],
        )
        .await?;
    }
    Ok(())
}

async fn issue_tokens(
    db: &Db,
    txn: &DatabaseTransaction,
    user_id: &str,
    device_id: &str,
    refreshable: Option<Duration>,
) -> Result<Session, DbErr> {
    let now = now_ms();
    let access_token = crate::random::token("mat_");
    let expires_ts = refreshable.map(|d| now.saturating_add(duration_ms(d)));
    exec(
        db,
        txn,
        "INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts, expires_ts) \
         VALUES ($1, $2, $3, $4, $5)",
        [
            hash_token(&access_token).into(),
            user_id.into(),
            device_id.into(),
            now.into(),
            expires_ts.into(),
        ],
    )
    .await?;
    let refresh_token = match refreshable {
        None => None,
        Some(_) => {
            let token = crate::random::token("mrt_");
            exec(
                db,
                txn,
                "INSERT INTO refresh_tokens (token_hash, user_id, device_id, created_ts) \
                 VALUES ($1, $2, $3, $4)",
                [
                    hash_token(&token).into(),
                    user_id.into(),
                    device_id.into(),
                    now.into(),
                ],
            )
            .await?;
            Some(token)
        }
    };
    Ok(Session {
        device_id: device_id.into(),
        access_token,
        refresh_token,
        expires_in: refreshable,
    })
}

/// The user ID was taken (possibly by a concurrent registration).
#[derive(Debug)]
pub struct UserInUse;

/// Creates an account and, unless `session` is `None`, its first device
/// and session, atomically. The display name defaults to the localpart, as
/// Synapse does, so members show up with a readable name.
pub async fn create_user(
    db: &Db,
    user_id: &str,
    password_hash: Option<&str>,
    is_admin: bool,
    displayname: Option<&str>,
    session: Option<SessionRequest>,
) -> Result<Result<Option<Session>, UserInUse>, DbErr> {
    let txn = db.begin_immediate().await?;
    let inserted = exec(
        db,
        &txn,
        "INSERT INTO users (user_id, password_hash, is_admin, deactivated, displayname, created_ts) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id) DO NOTHING",
        [
            user_id.into(),
            password_hash.map(str::to_owned).into(),
            is_admin.into(),
            false.into(),
            displayname
                .map(str::to_owned)
                .unwrap_or_else(|| localpart(user_id).to_owned())
                .into(),
            now_ms().into(),
        ],
    )
    .await?;
    if inserted == 0 {
        txn.rollback().await?;
        return Ok(Err(UserInUse));
    }
    let session = match session {
        Some(req) => Some(open_session(db, &txn, user_id, req).await?),
        None => None,
    };
    txn.commit().await?;
    // A session opened on an existing device ID revoked its tokens.
    if let Some(session) = &session {
        db.tokens()
            .invalidate_device(user_id, session.device_id.as_str());
    }
    Ok(Ok(session))
}

fn localpart(user_id: &str) -> &str {
    user_id
        .strip_prefix('@')
        .and_then(|rest| rest.split_once(':'))
        .map_or(user_id, |(local, _)| local)
}

/// Logs `user_id` in on a new or existing device (an existing one loses
/// its old tokens).
pub async fn login(db: &Db, user_id: &str, req: SessionRequest) -> Result<Session, DbErr> {
    let txn = db.begin_immediate().await?;
    let session = open_session(db, &txn, user_id, req).await?;
    txn.commit().await?;
    // An existing device's old tokens were revoked.
    db.tokens()
        .invalidate_device(user_id, session.device_id.as_str());
    Ok(session)
}

/// Exchanges a refresh token for a new session on the same device. The old
/// access token stops working at once; the refresh token keeps working
/// until the new access token is first used, so a client that never got
/// the response can refresh again (which replaces the session the lost
/// response carried), as Synapse allows. After that it is spent: a stolen
/// refresh token is useful until the legitimate client next makes a
/// request, and its use logs that client out, which notices. `None` if the
/// token is unknown, spent, or its user deactivated.
pub async fn refresh(
    db: &Db,
    refresh_token: &str,
    lifetime: Duration,
) -> Result<Option<Session>, DbErr> {
    let hash = hash_token(refresh_token);
    let txn = db.begin_immediate().await?;
    let row = txn
        .query_one_raw(db.stmt(
            "SELECT r.user_id, r.device_id, u.deactivated FROM refresh_tokens r \
             JOIN users u ON u.user_id = r.user_id WHERE r.token_hash = $1",
            [hash.clone().into()],
        ))
        .await?;
    let Some(row) = row else {
        txn.rollback().await?;
        return Ok(None);
    };
    let user_id: String = row.try_get("", "user_id")?;
    let device_id: String = row.try_get("", "device_id")?;
    let deactivated: bool = row.try_get("", "deactivated")?;
    // Writing the row locks it (PostgreSQL; SQLite's transaction holds the
    // write lock already): two refreshes with the same token run one after
    // the other, and the second replaces what the first issued. Zero rows:
    // the token was spent meanwhile.
    let claimed = exec(
        db,
        &txn,
        "UPDATE refresh_tokens SET created_ts = created_ts WHERE token_hash = $1",
        [hash.clone().into()],
    )
    .await?;
    if claimed == 0 || deactivated {
        txn.rollback().await?;
        return Ok(None);
    }
    // Everything the device holds but this refresh token: the access token
    // it renews, and a session an earlier use of it issued.
    db.tokens().invalidate_device(&user_id, &device_id);
    exec(
        db,
        &txn,
        "DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2",
        [user_id.as_str().into(), device_id.as_str().into()],
    )
    .await?;
    exec(
        db,
        &txn,
        "DELETE FROM refresh_tokens WHERE user_id = $1 AND device_id = $2 AND token_hash <> $3",
        [
            user_id.as_str().into(),
            device_id.as_str().into(),
            hash.clone().into(),
        ],
    )
    .await?;
    let session = issue_tokens(db, &txn, &user_id, &device_id, Some(lifetime)).await?;
    exec(
        db,
        &txn,
        "UPDATE access_tokens SET pending_refresh = $1 WHERE token_hash = $2",
        [hash.into(), hash_token(&session.access_token).into()],
    )
    .await?;
    txn.commit().await?;
    // The renewed access token was revoked.
    db.tokens().invalidate_device(&user_id, &device_id);
    Ok(Some(session))
}

/// A device as the device-management API shows it.
#[derive(Debug, Clone)]
pub struct Device {
    pub device_id: String,
    pub display_name: Option<String>,
    pub last_seen_ip: Option<String>,
    pub last_seen_ts: Option<i64>,
}

fn device_from_row(row: &sea_orm::QueryResult) -> Result<Device, DbErr> {
    Ok(Device {
        device_id: row.try_get("", "device_id")?,
        display_name: row.try_get("", "display_name")?,
        last_seen_ip: row.try_get("", "last_seen_ip")?,
        last_seen_ts: row.try_get("", "last_seen_ts")?,
    })
}

pub async fn list_devices(db: &Db, user_id: &str) -> Result<Vec<Device>, DbErr> {
    db.query_all(
        "SELECT device_id, display_name, last_seen_ip, last_seen_ts FROM devices \
         WHERE user_id = $1 ORDER BY created_ts, device_id",
        [user_id.into()],
    )
    .await?
    .iter()
    .map(device_from_row)
    .collect()
}

pub async fn get_device(db: &Db, user_id: &str, device_id: &str) -> Result<Option<Device>, DbErr> {
    db.query_one(
        "SELECT device_id, display_name, last_seen_ip, last_seen_ts FROM devices \
         WHERE user_id = $1 AND device_id = $2",
        [user_id.into(), device_id.into()],
    )
    .await?
    .as_ref()
    .map(device_from_row)
    .transpose()
}

/// Renames a device; `false` if the user has no such device.
pub async fn rename_device(
    db: &Db,
    user_id: &str,
    device_id: &str,
    display_name: Option<&str>,
) -> Result<bool, DbErr> {
    let tx = db.begin_write().await?;
    let found = tx
        .execute(
            "UPDATE devices SET display_name = $3 WHERE user_id = $1 AND device_id = $2",
            [
                user_id.into(),
                device_id.into(),
                display_name.map(str::to_owned).into(),
            ],
        )
        .await?
        > 0;
    if found {
        // Other servers show the name too (`m.device_list_update`).
        let device = [device_id.to_owned()];
        let change = super::device_list_outbox::Change::Devices(&device);
        super::device_list_outbox::record(&tx, user_id, change).await?;
    }
    tx.commit().await?;
    Ok(found)
}

/// Creates a device that holds no session (a dehydrated device, which no
/// client runs), in the caller's write transaction. `false` if the user
/// already has a device with that ID (nothing is changed).
pub async fn add_sessionless_device(
    db: &Db,
    tx: &Tx,
    user_id: &str,
    device_id: &str,
    display_name: Option<&str>,
) -> Result<bool, DbErr> {
    let now = now_ms();
    let inserted = exec(
        db,
        tx.sql_connection(),
        "INSERT INTO devices (user_id, device_id, display_name, created_ts) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, device_id) DO NOTHING",
        [
            user_id.into(),
            device_id.into(),
            display_name.map(str::to_owned).into(),
            now.into(),
        ],
    )
    .await?;
    Ok(inserted == 1)
}

/// Deletes devices with their sessions, pushers and E2EE data (keys,
/// one-time keys, to-device inbox: see [`forget_deleted_devices`]).
/// Unknown device IDs are ignored. `true` if the user's device list
/// changed: wake their rooms with `e2ee::device_lists_changed` once this
/// returns.
pub async fn delete_devices(db: &Db, user_id: &str, device_ids: &[String]) -> Result<bool, DbErr> {
    let tx = db.begin_write().await?;
    let changed = delete_devices_in(db, &tx, user_id, device_ids).await?;
    tx.commit().await?;
    Ok(changed)
}

/// [`delete_devices`] in the caller's write transaction.
pub async fn delete_devices_in(
    db: &Db,
    tx: &Tx,
    user_id: &str,
    device_ids: &[String],
) -> Result<bool, DbErr> {
    tx.revokes_tokens();
    let txn = tx.sql_connection();
    super::pushers::delete_for_devices(db, txn, user_id, device_ids).await?;
    for device_id in device_ids {
        revoke_device_tokens(db, txn, user_id, device_id).await?;
        exec(
            db,
            txn,
            "DELETE FROM devices WHERE user_id = $1 AND device_id = $2",
            [user_id.into(), device_id.as_str().into()],
        )
        .await?;
    }
    forget_deleted_devices(tx, user_id).await
}

/// Removes the E2EE data of the user's devices that no longer exist, in
/// the transaction that deleted them, and records the device-list change:
/// a crash can never leave keys (which other users would keep encrypting
/// to) behind a deleted device. Working from "devices that are gone"
/// rather than a list of IDs also cleans up after any older deletion path.
async fn forget_deleted_devices(tx: &Tx, user_id: &str) -> Result<bool, DbErr> {
    let gone = super::device_keys::remove_deleted_devices(tx, user_id).await?;
    if !gone.is_empty() {
        let change = super::device_list_outbox::Change::Devices(&gone);
        super::device_list_outbox::record(tx, user_id, change).await?;
    }
    Ok(!gone.is_empty())
}

/// Deletes every device of the user but `keep` (all of them if `None`),
/// with their sessions, pushers and E2EE data. `true` if the device list
/// changed.
async fn delete_other_devices(
    db: &Db,
    tx: &Tx,
    user_id: &str,
    keep: Option<&str>,
) -> Result<bool, DbErr> {
    tx.revokes_tokens();
    let txn = tx.sql_connection();
    super::pushers::delete_for_other_devices(db, txn, user_id, keep).await?;
    // An empty string is never a device ID, so it keeps nothing.
    let keep = keep.unwrap_or("");
    for table in ["access_tokens", "refresh_tokens", "devices"] {
        exec(
            db,
            txn,
            &format!("DELETE FROM {table} WHERE user_id = $1 AND device_id <> $2"),
            [user_id.into(), keep.into()],
        )
        .await?;
    }
    forget_deleted_devices(tx, user_id).await
}

/// Logs out every device of the user (`/logout/all`). `true` if the device
/// list changed.
pub async fn delete_all_devices(db: &Db, user_id: &str) -> Result<bool, DbErr> {
    let tx = db.begin_write().await?;
    let changed = delete_other_devices(db, &tx, user_id, None).await?;
    tx.commit().await?;
    Ok(changed)
}

/// Sets a new password hash; with `logout_except`, also logs out every
/// device but that one. `true` if the device list changed.
pub async fn set_password(
    db: &Db,
    user_id: &str,
    password_hash: &str,
    logout_except: Option<&str>,
) -> Result<bool, DbErr> {
    let tx = db.begin_write().await?;
    exec(
        db,
        tx.sql_connection(),
        "UPDATE users SET password_hash = $2 WHERE user_id = $1",
        [user_id.into(), password_hash.into()],
    )
    .await?;
    let changed = match logout_except {
        Some(keep) => delete_other_devices(db, &tx, user_id, Some(keep)).await?,
        None => false,
    };
    tx.commit().await?;
    Ok(changed)
}

/// Deactivates an account for good: no password, no devices, sessions,
/// pushers or E2EE keys (device keys and cross-signing keys: nobody should
/// encrypt to or trust them any more), no profile; the row stays so the
/// user ID is never reissued. `erase` records the user's request to be
/// forgotten (GDPR erasure). `true` if the device list changed.
pub async fn deactivate(db: &Db, user_id: &str, erase: bool) -> Result<bool, DbErr> {
    let tx = db.begin_write().await?;
    let devices_changed = delete_other_devices(db, &tx, user_id, None).await?;
    let txn = tx.sql_connection();
    super::pushers::delete_all_in(db, txn, user_id).await?;
    exec(
        db,
        txn,
        "UPDATE users SET deactivated = $2, password_hash = NULL, displayname = NULL, \
         avatar_url = NULL, erased = (erased OR $3) WHERE user_id = $1",
        [user_id.into(), true.into(), erase.into()],
    )
    .await?;
    let keys_changed = super::cross_signing::delete_user_keys(&tx, user_id).await?;
    if keys_changed && !devices_changed {
        super::device_lists::record(&tx, user_id).await?;
    }
    tx.commit().await?;
    Ok(devices_changed || keys_changed)
}

/// A user's global profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

/// The profile of a local user; `None` if there is no such user.
pub async fn get_profile(db: &Db, user_id: &str) -> Result<Option<Profile>, DbErr> {
    db.query_one(
        "SELECT displayname, avatar_url FROM users WHERE user_id = $1",
        [user_id.into()],
    )
    .await?
    .map(|row| {
        Ok(Profile {
            displayname: row.try_get("", "displayname")?,
            avatar_url: row.try_get("", "avatar_url")?,
        })
    })
    .transpose()
}

/// Sets (or with `None` clears) the display name.
pub async fn set_displayname(db: &Db, user_id: &str, name: Option<&str>) -> Result<(), DbErr> {
    db.execute(
        "UPDATE users SET displayname = $2 WHERE user_id = $1",
        [user_id.into(), name.map(str::to_owned).into()],
    )
    .await
    .map(|_| ())
}

/// Sets (or with `None` clears) the avatar URL.
pub async fn set_avatar_url(db: &Db, user_id: &str, url: Option<&str>) -> Result<(), DbErr> {
    db.execute(
        "UPDATE users SET avatar_url = $2 WHERE user_id = $1",
        [user_id.into(), url.map(str::to_owned).into()],
    )
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::pushers::{self, StoredPusher};

    fn session(expires_ts: Option<i64>) -> CachedSession {
        CachedSession {
            authed: Authed {
                user_id: ruma::OwnedUserId::try_from("@a:x").expect("user ID"),
                device_id: "D".into(),
                is_admin: false,
                token_hash: "h".into(),
            },
            expires_ts,
        }
    }

    #[test]
    fn a_lookup_that_raced_a_revocation_is_not_cached() {
        let cache = TokenCache::default();
        let (generation, found) = cache.0.get("h");
        assert!(found.is_none());
        // A revocation commits while the lookup reads the database.
        cache.invalidate();
        cache.0.put(generation, "h".into(), session(None));
        assert!(cache.0.get("h").1.is_none());
        let (generation, _) = cache.0.get("h");
        cache.0.put(generation, "h".into(), session(None));
        assert!(matches!(
            cache.0.get("h").1.map(CachedSession::lookup),
            Some(TokenLookup::Valid(_))
        ));
        cache.invalidate();
        assert!(cache.0.get("h").1.is_none());
    }

    #[test]
    fn a_device_revocation_keeps_other_devices_cached() {
        let cache = TokenCache::default();
        let mut other = session(None);
        other.authed.device_id = "E".into();
        let (generation, _) = cache.0.get("h");
        cache.0.put(generation, "h".into(), session(None));
        cache.0.put(generation, "other".into(), other);
        let (in_flight, _) = cache.0.get("late");
        cache.invalidate_device("@a:x", "D");
        assert!(cache.0.get("h").1.is_none(), "the device's session stays");
        assert!(
            cache.0.get("other").1.is_some(),
            "another device was dropped"
        );
        // A lookup that began before the revocation is not cached.
        cache.0.put(in_flight, "late".into(), session(None));
        assert!(cache.0.get("late").1.is_none());
    }

    #[test]
    fn a_cached_session_still_expires() {
        let cache = TokenCache::default();
        let (generation, _) = cache.0.get("h");
        cache
            .0
            .put(generation, "h".into(), session(Some(now_ms() - 1)));
        assert!(matches!(
            cache.0.get("h").1.map(CachedSession::lookup),
            Some(TokenLookup::Expired)
        ));
    }

    fn pusher(key: &str) -> StoredPusher {
        StoredPusher {
            app_id: "app".into(),
            pushkey: key.into(),
            pusher: "{}".into(),
        }
    }

    async fn user_with_device(db: &Db, user: &str, device: &str) {
        let session = SessionRequest {
            device_id: device.into(),
            display_name: None,
            ip: None,
            refreshable: None,
        };
        create_user(db, user, None, false, None, Some(session))
            .await
            .expect("test")
            .expect("test");
    }

    #[tokio::test]
    async fn deleting_a_device_removes_only_its_pushers() {
        let db = crate::storage::test_db().await;
        user_with_device(&db, "@u:x", "D1").await;
        pushers::set(&db, "@u:x", Some("D1"), &pusher("k1"), false)
            .await
            .expect("test");
        pushers::set(&db, "@u:x", Some("D2"), &pusher("k2"), false)
            .await
            .expect("test");
        // Set up before pushers knew their device: kept.
        pushers::set(&db, "@u:x", None, &pusher("k3"), false)
            .await
            .expect("test");
        delete_devices(&db, "@u:x", &["D1".to_owned()])
            .await
            .expect("test");
        let keys: Vec<String> = pushers::list(&db, "@u:x")
            .await
            .expect("test")
            .into_iter()
            .map(|p| p.pushkey)
            .collect();
        assert_eq!(keys, ["k2", "k3"]);
        delete_all_devices(&db, "@u:x").await.expect("test");
        let keys: Vec<String> = pushers::list(&db, "@u:x")
            .await
            .expect("test")
            .into_iter()
            .map(|p| p.pushkey)
            .collect();
        assert_eq!(keys, ["k3"]);
    }

    #[tokio::test]
    async fn deactivation_removes_every_pusher_and_records_erasure() {
        let db = crate::storage::test_db().await;
        user_with_device(&db, "@u:x", "D1").await;
        user_with_device(&db, "@v:x", "D1").await;
        pushers::set(&db, "@u:x", None, &pusher("k1"), false)
            .await
            .expect("test");
        deactivate(&db, "@u:x", true).await.expect("test");
        deactivate(&db, "@v:x", false).await.expect("test");
        assert!(pushers::list(&db, "@u:x").await.expect("test").is_empty());
        let erased = |user: &'static str| {
            let db = db.clone();
            async move {
                db.query_one("SELECT erased FROM users WHERE user_id = $1", [user.into()])
                    .await
                    .expect("test")
                    .expect("test")
                    .try_get::<bool>("", "erased")
                    .expect("test")
            }
        };
        assert!(erased("@u:x").await);
        assert!(!erased("@v:x").await);
        assert!(
            get_user(&db, "@u:x")
                .await
                .expect("test")
                .expect("test")
                .deactivated
        );
    }
}
