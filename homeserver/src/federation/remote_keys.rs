//! Keys of users on other servers, for our clients' `/keys/query` and
//! `/keys/claim`: asked of each user's server (`/user/keys/query`,
//! `/user/keys/claim`), all servers at once, within the client's timeout.
//! Nothing is cached yet, so answers are always current.
//!
//! A server only speaks for its own users: anything in an answer about a
//! user of another server, or about a device or user that was not asked
//! for, is dropped. A server that fails or times out is listed in
//! `failures` (by server name, as the spec shows it) and the rest of the
//! answer stands.

use std::collections::BTreeMap;
use std::time::Duration;

use ruma::api::OutgoingRequest;
use ruma::api::federation::keys::{claim_keys, get_keys};
use ruma::api::path_builder::SinglePath;
use ruma::{OneTimeKeyAlgorithm, OwnedDeviceId, OwnedServerName, OwnedUserId};
use serde_json::{Value, json};

use crate::state::AppState;

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
    let answers = ask_servers(
        state,
        wanted,
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
