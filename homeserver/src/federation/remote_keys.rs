//! Keys of users on other servers, for our clients' `/keys/query` and
//! `/keys/claim`: asked of each user's server (`/user/keys/query`,
//! `/user/keys/claim`), all servers at once, within the client's timeout.
//!
//! Device lists (device keys, master and self-signing keys) of remote users
//! who share a room with one of ours are cached (`storage::remote_devices`)
//! and `/keys/query` answers from a fresh cache without asking. The cache
//! follows the owner's `m.device_list_update`s (`federation::edus`); when
//! one was missed, or the user is not tracked yet, the list is stale and
//! refetched whole with `/user/devices` ([`Resyncs`]: in the background,
//! one fetch per user at a time, [`MAX_CONCURRENT_RESYNCS`] at once; a
//! failed fetch stays stale and is retried every [`RETRY_INTERVAL`]). Until
//! then queries ask the server, as for users we do not track. A user who
//! shares no room with ours any more is forgotten.
//!
//! A server only speaks for its own users: anything in an answer about a
//! user of another server, or about a device or user that was not asked
//! for, is dropped. A server that fails or times out is listed in
//! `failures` (by server name, as the spec shows it) and the rest of the
//! answer stands.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ruma::api::OutgoingRequest;
use ruma::api::federation::device::get_devices;
use ruma::api::federation::keys::{claim_keys, get_keys};
use ruma::api::path_builder::SinglePath;
use ruma::{OneTimeKeyAlgorithm, OwnedDeviceId, OwnedServerName, OwnedUserId, UserId};
use sea_orm::DbErr;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::state::AppState;
use crate::storage::remote_devices::{self, CachedDevice, CachedList};

/// How long a client's request waits for other servers unless it says.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a client may make it wait.
const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest answer read from one server.
const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// What other servers said about their users' keys, as JSON for merging
/// into the client's answer.
#[derive(Default)]
pub struct QueriedKeys {
    pub device_keys: BTreeMap<String, BTreeMap<String, Value>>,
    pub master_keys: BTreeMap<String, Value>,
    pub self_signing_keys: BTreeMap<String, Value>,
    pub failures: BTreeMap<String, Value>,
}

fn json_of<T>(raw: &ruma::serde::Raw<T>) -> Option<Value> {
    serde_json::from_str(raw.json().get()).ok()
}

fn clamp(timeout: Option<Duration>) -> Duration {
    timeout.unwrap_or(DEFAULT_TIMEOUT).min(MAX_TIMEOUT)
}

/// The users of `wanted` that are not ours, by server.
fn by_server<V: Clone>(
    state: &AppState,
    wanted: &BTreeMap<OwnedUserId, V>,
) -> BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, V>> {
    let mut out: BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, V>> = BTreeMap::new();
    for (user, v) in wanted {
        if user.server_name() != state.server_name() {
            out.entry(user.server_name().to_owned())
                .or_default()
                .insert(user.clone(), v.clone());
        }
    }
    out
}

/// Asks the server of every remote user in `wanted` at once (`request`
/// builds one server's request from its users), each within `timeout`.
/// Returns each answer with the users it was asked about; servers that
/// fail or time out are added to `failures`.
async fn ask_servers<V, R>(
    state: &AppState,
    wanted: &BTreeMap<OwnedUserId, V>,
    timeout: Option<Duration>,
    request: impl Fn(BTreeMap<OwnedUserId, V>) -> R,
    failures: &mut BTreeMap<String, Value>,
) -> Vec<(BTreeMap<OwnedUserId, V>, R::IncomingResponse)>
where
    V: Clone + Send + 'static,
    R: OutgoingRequest<PathBuilder = SinglePath> + Send + 'static,
    R::IncomingResponse: Send + 'static,
    R::Body: Send,
{
    let timeout = clamp(timeout);
    let mut asks = tokio::task::JoinSet::new();
    for (server, users) in by_server(state, wanted) {
        let request = request(users.clone());
        let client = state.federation().client().clone();
        asks.spawn(async move {
            let answer = tokio::time::timeout(
                timeout,
                client.send_with_limit(&server, request, MAX_RESPONSE_BYTES),
            )
            .await;
            (server, users, answer)
        });
    }
    let mut answers = Vec::new();
    while let Some(joined) = asks.join_next().await {
        let Ok((server, users, answer)) = joined else {
            continue;
        };
        match answer {
            Ok(Ok(response)) => answers.push((users, response)),
            Ok(Err(e)) => {
                tracing::info!(%server, error = %e, "remote key request failed");
                failures.insert(server.to_string(), json!({}));
            }
            Err(_) => {
                tracing::info!(%server, "remote key request timed out");
                failures.insert(server.to_string(), json!({}));
            }
        }
    }
    answers
}

/// Device and cross-signing keys of the remote users in `wanted` (an
/// empty device list means all of the user's devices).
pub async fn query(
    state: &AppState,
    wanted: &BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
    timeout: Option<Duration>,
) -> QueriedKeys {
    let mut out = QueriedKeys::default();
    let wanted = match from_cache(state, wanted, &mut out).await {
        Ok(rest) => rest,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the device list cache");
            wanted.clone()
        }
    };
    let answers = ask_servers(
        state,
        &wanted,
        timeout,
        get_keys::v1::Request::new,
        &mut out.failures,
    )
    .await;
    for (users, response) in answers {
        for (user, devices) in &response.device_keys {
            let Some(asked) = users.get(user) else {
                continue;
            };
            for (device, keys) in devices {
                if !asked.is_empty() && !asked.contains(device) {
                    continue;
                }
                // The keys must be of the device they are filed under.
                let Some(keys) = json_of(keys)
                    .filter(|k| k["user_id"] == user.as_str() && k["device_id"] == device.as_str())
                else {
                    continue;
                };
                out.device_keys
                    .entry(user.to_string())
                    .or_default()
                    .insert(device.to_string(), keys);
            }
        }
        for (field, keys) in [
            (&mut out.master_keys, &response.master_keys),
            (&mut out.self_signing_keys, &response.self_signing_keys),
        ] {
            for (user, key) in keys {
                if let Some(key) = json_of(key).filter(|k| k["user_id"] == user.as_str())
                    && users.contains_key(user)
                {
                    field.insert(user.to_string(), key);
                }
            }
        }
    }
    out
}

/// Answers the remote users of `wanted` whose cached list is fresh into
/// `out`, and returns the others (to ask their servers). Users sharing a
/// room with ours that are not tracked yet, or stale, get a refetch; users
/// that no longer share one are forgotten.
async fn from_cache(
    state: &AppState,
    wanted: &BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
    out: &mut QueriedKeys,
) -> Result<BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>, DbErr> {
    let db = state.db();
    let remote: Vec<String> = wanted
        .keys()
        .filter(|u| u.server_name() != state.server_name())
        .map(ToString::to_string)
        .collect();
    let fresh = remote_devices::fresh_lists(db, &remote).await?;
    let mut rest = BTreeMap::new();
    for (user, devices) in wanted {
        if user.server_name() == state.server_name() {
            continue;
        }
        let shared = remote_devices::shares_room_with_local(db, user.as_str()).await?;
        match fresh.get(user.as_str()) {
            Some(list) if shared => {
                serve_cached(user.as_str(), devices, list, out);
                continue;
            }
            Some(_) => remote_devices::forget(db, user.as_str()).await?,
            None if shared => {
                if remote_devices::state(db, user.as_str()).await?.is_none() {
                    remote_devices::mark_stale(db, user.as_str()).await?;
                }
                state.device_list_resyncs().schedule(state, user.clone());
            }
            None => {}
        }
        rest.insert(user.clone(), devices.clone());
    }
    Ok(rest)
}

/// Adds a cached list to a `/keys/query` answer (only `devices` if any).
fn serve_cached(user: &str, devices: &[OwnedDeviceId], list: &CachedList, out: &mut QueriedKeys) {
    let mut keys = BTreeMap::new();
    for d in &list.devices {
        if !devices.is_empty() && !devices.iter().any(|w| w.as_str() == d.device_id) {
            continue;
        }
        let Some(mut obj) = d
            .keys_json
            .as_deref()
            .and_then(|k| serde_json::from_str::<Value>(k).ok())
            .filter(Value::is_object)
        else {
            continue;
        };
        if let Some(name) = &d.display_name {
            obj["unsigned"] = json!({ "device_display_name": name });
        }
        keys.insert(d.device_id.clone(), obj);
    }
    out.device_keys.insert(user.to_owned(), keys);
    for (field, key) in [
        (&mut out.master_keys, &list.master_key),
        (&mut out.self_signing_keys, &list.self_signing_key),
    ] {
        if let Some(key) = key.as_deref().and_then(|k| serde_json::from_str(k).ok()) {
            field.insert(user.to_owned(), key);
        }
    }
}

/// Refetches at most this many device lists at once.
pub const MAX_CONCURRENT_RESYNCS: usize = 4;
/// How often stale lists are refetched and lists of users who share no
/// room with ours any more dropped.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(60);
/// How long one `/user/devices` request may take.
const RESYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// The refetches of remote device lists in progress: at most one per user.
pub struct Resyncs {
    in_flight: Mutex<HashSet<OwnedUserId>>,
    permits: Arc<Semaphore>,
}

impl Default for Resyncs {
    fn default() -> Self {
        Self {
            in_flight: Mutex::new(HashSet::new()),
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT_RESYNCS)),
        }
    }
}

impl Resyncs {
    /// Refetches `user`'s list in the background, unless already under way.
    pub fn schedule(&self, state: &AppState, user: OwnedUserId) {
        let started = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(user.clone());
        if !started {
            return;
        }
        let state = state.clone();
        let permits = self.permits.clone();
        tokio::spawn(async move {
            if let Ok(_permit) = permits.acquire_owned().await
                && let Err(e) = resync(&state, &user).await
            {
                tracing::warn!(%user, error = %e, "cannot refetch a device list");
            }
            state
                .device_list_resyncs()
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&user);
        });
    }
}

/// Fetches `user`'s whole device list and stores it, unless it went stale
/// again meanwhile (then again, a few times). A failed request leaves it
/// stale for the next retry. Local users sharing a room are told the list
/// changed, so their clients query it again.
async fn resync(state: &AppState, user: &UserId) -> Result<(), DbErr> {
    let db = state.db();
    for _ in 0..3 {
        let Some(held) = remote_devices::state(db, user.as_str()).await? else {
            return Ok(());
        };
        if !held.stale {
            return Ok(());
        }
        let request = get_devices::v1::Request::new(user.to_owned());
        let client = state.federation().client();
        let answer = tokio::time::timeout(
            RESYNC_TIMEOUT,
            client.send_with_limit(user.server_name(), request, MAX_RESPONSE_BYTES),
        )
        .await;
        let response = match answer {
            Ok(Ok(r)) if r.user_id == user => r,
            Ok(Ok(_)) => {
                tracing::info!(%user, "device list answer for another user");
                return Ok(());
            }
            Ok(Err(e)) => {
                tracing::info!(%user, error = %e, "device list request failed");
                return Ok(());
            }
            Err(_) => {
                tracing::info!(%user, "device list request timed out");
                return Ok(());
            }
        };
        let list = fetched_list(user, &response);
        if remote_devices::replace(db, user.as_str(), held.generation, &list).await? {
            let tx = db.begin_write().await?;
            crate::storage::device_lists::record(&tx, user.as_str()).await?;
            tx.commit().await?;
            crate::e2ee::device_lists_changed(state, user).await?;
            return Ok(());
        }
    }
    Ok(())
}

/// A `/user/devices` answer as a cached list: keys not of the device they
/// are filed under, or of another user, are dropped.
fn fetched_list(user: &UserId, response: &get_devices::v1::Response) -> CachedList {
    let devices = response
        .devices
        .iter()
        .map(|d| CachedDevice {
            device_id: d.device_id.to_string(),
            display_name: d.device_display_name.clone(),
            keys_json: json_of(&d.keys)
                .filter(|k| k["user_id"] == user.as_str() && k["device_id"] == d.device_id.as_str())
                .map(|k| k.to_string()),
        })
        .collect();
    let key = |raw: &Option<ruma::serde::Raw<_>>| {
        raw.as_ref()
            .and_then(json_of)
            .filter(|k| k["user_id"] == user.as_str())
            .map(|k| k.to_string())
    };
    CachedList {
        stream_id: i64::try_from(u64::from(response.stream_id)).unwrap_or(i64::MAX),
        devices,
        master_key: key(&response.master_key),
        self_signing_key: key(&response.self_signing_key),
    }
}

/// Every [`RETRY_INTERVAL`]: refetches stale lists and forgets users who
/// share no room with ours any more.
pub fn spawn_maintenance(state: AppState) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(RETRY_INTERVAL).await;
            if let Err(e) = maintain(&state).await {
                tracing::warn!(error = %e, "device list cache maintenance failed");
            }
        }
    });
}

async fn maintain(state: &AppState) -> Result<(), DbErr> {
    for user in remote_devices::no_longer_shared(state.db()).await? {
        remote_devices::forget(state.db(), &user).await?;
    }
    for user in remote_devices::stale_users(state.db()).await? {
        if let Ok(user) = OwnedUserId::try_from(user) {
            state.device_list_resyncs().schedule(state, user);
        }
    }
    Ok(())
}

/// One-time keys claimed from the remote users' servers:
/// `{user: {device: {algorithm:key_id: key}}}`, and the failures.
pub async fn claim(
    state: &AppState,
    wanted: &BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, OneTimeKeyAlgorithm>>,
    timeout: Option<Duration>,
) -> (
    BTreeMap<String, BTreeMap<String, BTreeMap<String, Value>>>,
    BTreeMap<String, Value>,
) {
    let mut keys: BTreeMap<String, BTreeMap<String, BTreeMap<String, Value>>> = BTreeMap::new();
    let mut failures = BTreeMap::new();
    let answers = ask_servers(
        state,
        wanted,
        timeout,
        claim_keys::v1::Request::new,
        &mut failures,
    )
    .await;
    for (users, response) in answers {
        for (user, devices) in &response.one_time_keys {
            let Some(asked) = users.get(user) else {
                continue;
            };
            for (device, claimed) in devices {
                if !asked.contains_key(device) {
                    continue;
                }
                for (key_id, key) in claimed {
                    if let Some(key) = json_of(key) {
                        keys.entry(user.to_string())
                            .or_default()
                            .entry(device.to_string())
                            .or_default()
                            .insert(key_id.to_string(), key);
                    }
                }
            }
        }
    }
    (keys, failures)
}
