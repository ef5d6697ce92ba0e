//! Other servers' signing keys: looked up in memory, then in `server_signing_keys`, then
//! fetched from the server itself (`GET /_matrix/key/v2/server`) or, when that fails, from
//! the notaries in `[federation] trusted_key_servers` (`POST /_matrix/key/v2/query`).
//!
//! Fetches for different servers run concurrently; concurrent lookups for one server share
//! one fetch. A key may verify an event sent up to its `valid_until_ts` (room versions 5+),
//! capped at 7 days after it was fetched; an old key (`old_verify_keys`) up to its
//! `expired_ts`. A request must be signed with a key still valid now.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use myelin_federation::client::FederationClient;
use myelin_federation::request_auth::{self, AuthError, SignedRequest};
use myelin_federation::server_keys::{self, ServerKeyDocument, TimedKey};
use myelin_proto::canonical_json::{self, Object, Value};
use myelin_proto::signing::{KeyPair, PublicKey};
use myelin_proto::verify::KeyRing;
use ruma::api::federation::authentication::XMatrix;
use ruma::api::federation::discovery::{get_remote_server_keys_batch, get_server_keys};
use ruma::{MilliSecondsSinceUnixEpoch, OwnedServerName, ServerName, UInt};
use tokio::sync::OnceCell;

use crate::storage::Db;
use crate::storage::server_keys::{self as store, StoredKey};
use crate::time::now_ms;

/// How long after a fetch another fetch for the same server is not tried, whatever it
/// returned: a flood of requests naming unknown keys must not become a flood of fetches.
const REFETCH_INTERVAL: Duration = Duration::from_secs(30);

/// Largest key document (or notary answer) read.
const MAX_KEY_RESPONSE: usize = 512 * 1024;

/// How long our own published keys are valid (Synapse's default refresh interval).
pub const OWN_KEY_VALIDITY_MS: i64 = 24 * 3600 * 1000;

/// What the fetcher knows of one server.
#[derive(Clone, Default)]
struct Known {
    keys: BTreeMap<String, TimedKey>,
    /// The signed documents the keys came from, by document `valid_until_ts`.
    documents: Vec<String>,
}

/// One server's keys for a set of lookups, usable synchronously (see [`KeyFetcher::keyring_for`]).
#[derive(Clone, Default, Debug)]
pub struct MemoryKeyRing {
    keys: HashMap<(OwnedServerName, String), TimedKey>,
}

impl MemoryKeyRing {
    /// Adds the keys of `other` (a later lookup's answers).
    pub fn extend(&mut self, other: MemoryKeyRing) {
        self.keys.extend(other.keys);
    }
}

/// A fixed ring: for calls that fetch nothing (a `send_join` is checked on
/// its own, with the keys of its signers).
impl crate::rooms::ingest::KeySource for MemoryKeyRing {}

impl KeyRing for MemoryKeyRing {
    fn key(&self, server: &ServerName, key_id: &str, origin_server_ts: i64) -> Option<PublicKey> {
        self.keys
            .get(&(server.to_owned(), key_id.to_owned()))
            .filter(|k| origin_server_ts <= k.valid_until_ts)
            .map(|k| k.key)
    }
}

/// Fetches and caches other servers' keys; cheap to clone.
#[derive(Clone)]
pub struct KeyFetcher {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    client: FederationClient,
    server_name: OwnedServerName,
    own_keys: Vec<KeyPair>,
    notaries: Vec<OwnedServerName>,
    known: RwLock<HashMap<OwnedServerName, Known>>,
    /// One fetch per server at a time; later callers await the same cell.
    in_flight: Mutex<HashMap<OwnedServerName, Arc<OnceCell<()>>>>,
    last_fetch: Mutex<HashMap<OwnedServerName, Instant>>,
}

impl KeyFetcher {
    pub fn new(
        db: Db,
        client: FederationClient,
        server_name: OwnedServerName,
        own_keys: &[KeyPair],
        notaries: Vec<OwnedServerName>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                client,
                server_name,
                own_keys: own_keys.to_vec(),
                notaries,
                known: RwLock::new(HashMap::new()),
                in_flight: Mutex::new(HashMap::new()),
                last_fetch: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Our own key document, valid for a day, signed by every key we hold.
    pub fn own_document(&self) -> Object {
        server_keys::own_document(
            &self.inner.server_name,
            &self.inner.own_keys,
            now_ms() + OWN_KEY_VALIDITY_MS,
        )
    }

    /// A key ring holding every key in `needed` (`(server, key_id, origin_server_ts)`) that
    /// could be found, fetching what is missing (servers concurrently). Keys that cannot be
    /// found are simply absent: verification then fails for the events that need them.
    pub async fn keyring_for(&self, needed: &[(OwnedServerName, String, i64)]) -> MemoryKeyRing {
        let mut by_server: BTreeMap<OwnedServerName, Vec<(String, i64)>> = BTreeMap::new();
        for (server, key_id, ts) in needed {
            by_server
                .entry(server.clone())
                .or_default()
                .push((key_id.clone(), *ts));
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (server, wanted) in by_server {
            let this = self.clone();
            tasks.spawn(async move {
                let mut found = Vec::new();
                for (key_id, ts) in wanted {
                    if let Some(key) = this.lookup(&server, &key_id, ts).await {
                        found.push(((server.clone(), key_id), key));
                    }
                }
                found
            });
        }
        let mut ring = MemoryKeyRing::default();
        while let Some(result) = tasks.join_next().await {
            match result {
                Ok(found) => ring.keys.extend(found),
                Err(e) => tracing::error!(error = %e, "key lookup task failed"),
            }
        }
        ring
    }

    /// The key `server` published as `key_id`, valid at `at_ts` (ms), fetching it when it
    /// is unknown or known only as valid before `at_ts`.
    pub async fn lookup(&self, server: &ServerName, key_id: &str, at_ts: i64) -> Option<TimedKey> {
        if server == self.inner.server_name {
            return self.own_key(key_id);
        }
        let usable = |k: &TimedKey| at_ts <= k.valid_until_ts;
        if let Some(k) = self.cached(server, key_id).await
            && usable(&k)
        {
            return Some(k);
        }
        self.fetch(server).await;
        self.cached(server, key_id).await.filter(usable)
    }

    /// Verifies an inbound request's `X-Matrix` header: destination is us, the origin's key
    /// is known (fetched if needed) and valid now, and the signature matches.
    pub async fn verify_request(
        &self,
        header: &XMatrix,
        request: SignedRequest<'_>,
    ) -> Result<(), AuthError> {
        request_auth::check_destination(header, &self.inner.server_name)?;
        let key = self
            .lookup(&header.origin, header.key.as_str(), now_ms())
            .await
            .ok_or_else(|| AuthError::UnknownKey(header.key.to_string()))?;
        request_auth::verify_request(header, &self.inner.server_name, request, &key.key)
    }

    /// The signed key documents of `server` for a notary answer: those we hold whose
    /// `valid_until_ts` reaches `minimum_valid_until_ts`, fetching fresh ones when none
    /// does. Our own server's document is made fresh.
    pub async fn documents_for(
        &self,
        server: &ServerName,
        minimum_valid_until_ts: i64,
    ) -> Vec<Object> {
        if server == self.inner.server_name {
            return vec![self.own_document()];
        }
        let fresh_enough = |docs: &[Object]| {
            docs.iter().any(|d| {
                d.get("valid_until_ts")
                    .and_then(Value::as_integer)
                    .is_some_and(|ts| ts >= minimum_valid_until_ts)
            })
        };
        let mut docs = self.stored_documents(server).await;
        if !fresh_enough(&docs) {
            self.fetch(server).await;
            docs = self.stored_documents(server).await;
        }
        docs
    }

    fn own_key(&self, key_id: &str) -> Option<TimedKey> {
        self.inner
            .own_keys
            .iter()
            .find(|k| k.key_id() == key_id)
            .map(|k| TimedKey {
                key: k.public_key(),
                valid_until_ts: i64::MAX,
                old: false,
            })
    }

    /// A key from memory, else from the database (then remembered).
    async fn cached(&self, server: &ServerName, key_id: &str) -> Option<TimedKey> {
        if let Some(known) = self.read_known(server) {
            return known.keys.get(key_id).copied();
        }
        let known = self.load(server).await;
        let key = known.keys.get(key_id).copied();
        self.write_known(server, known);
        key
    }

    fn read_known(&self, server: &ServerName) -> Option<Known> {
        self.inner
            .known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(server)
            .cloned()
    }

    fn write_known(&self, server: &ServerName, known: Known) {
        self.inner
            .known
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(server.to_owned(), known);
    }

    async fn load(&self, server: &ServerName) -> Known {
        let rows = match store::for_server(&self.inner.db, server.as_str()).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(%server, error = %e, "cannot read stored server keys");
                return Known::default();
            }
        };
        let mut known = Known::default();
        for row in rows {
            let Ok(key) = PublicKey::from_base64(&row.public_key) else {
                continue;
            };
            known.keys.insert(
                row.key_id,
                TimedKey {
                    key,
                    valid_until_ts: row.valid_until_ts,
                    old: row.expired_ts.is_some(),
                },
            );
            if !known.documents.contains(&row.key_json) {
                known.documents.push(row.key_json);
            }
        }
        known
    }

    async fn stored_documents(&self, server: &ServerName) -> Vec<Object> {
        let known = match self.read_known(server) {
            Some(k) => k,
            None => {
                let k = self.load(server).await;
                self.write_known(server, k.clone());
                k
            }
        };
        known
            .documents
            .iter()
            .filter_map(|d| canonical_json::parse_object(d.as_bytes()).ok())
            .collect()
    }

    /// Fetches `server`'s keys unless another caller is already doing so (then waits for
    /// that fetch) or one finished less than [`REFETCH_INTERVAL`] ago.
    async fn fetch(&self, server: &ServerName) {
        let cell = {
            let mut in_flight = self
                .inner
                .in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            in_flight
                .entry(server.to_owned())
                .or_insert_with(|| Arc::new(OnceCell::new()))
                .clone()
        };
        cell.get_or_init(|| async {
            let recent = self
                .inner
                .last_fetch
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(server)
                .is_some_and(|t| t.elapsed() < REFETCH_INTERVAL);
            if !recent {
                self.fetch_now(server).await;
                self.inner
                    .last_fetch
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(server.to_owned(), Instant::now());
            }
        })
        .await;
        let mut in_flight = self
            .inner
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if in_flight.get(server).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            in_flight.remove(server);
        }
    }

    /// Directly from the server, else from each notary in turn; stores what it gets.
    async fn fetch_now(&self, server: &ServerName) {
        match self.fetch_direct(server).await {
            Ok(doc) => {
                self.remember(server, vec![doc]).await;
                return;
            }
            Err(e) => {
                tracing::info!(%server, error = %e, "cannot fetch keys from the server itself")
            }
        }
        for notary in &self.inner.notaries {
            match self.fetch_from_notary(notary, server).await {
                Ok(docs) if !docs.is_empty() => {
                    self.remember(server, docs).await;
                    return;
                }
                Ok(_) => tracing::info!(%server, %notary, "notary has no keys for the server"),
                Err(e) => {
                    tracing::info!(%server, %notary, error = %e, "cannot fetch keys from notary")
                }
            }
        }
    }

    async fn fetch_direct(&self, server: &ServerName) -> Result<ServerKeyDocument, String> {
        let response = self
            .inner
            .client
            .send_with_limit(
                server,
                get_server_keys::v2::Request::new(),
                MAX_KEY_RESPONSE,
            )
            .await
            .map_err(|e| e.to_string())?;
        let doc =
            ServerKeyDocument::parse_bytes(server, response.server_key.json().get().as_bytes())
                .map_err(|e| e.to_string())?;
        check_sane(&doc)?;
        Ok(doc)
    }

    /// Asks `notary` for `server`'s keys; each document must be signed by `server` itself
    /// and by the notary (whose own keys we fetch from it directly).
    async fn fetch_from_notary(
        &self,
        notary: &ServerName,
        server: &ServerName,
    ) -> Result<Vec<ServerKeyDocument>, String> {
        let notary_keys: BTreeMap<String, PublicKey> = if notary == self.inner.server_name {
            return Err("we are the notary".to_owned());
        } else {
            let doc = self.fetch_direct(notary).await?;
            doc.keys
                .iter()
                .filter(|(_, k)| !k.old)
                .map(|(id, k)| (id.clone(), k.key))
                .collect()
        };
        let mut criteria = BTreeMap::new();
        criteria.insert(server.to_owned(), BTreeMap::new());
        let request = get_remote_server_keys_batch::v2::Request::new(criteria);
        let response = self
            .inner
            .client
            .send_with_limit(notary, request, MAX_KEY_RESPONSE)
            .await
            .map_err(|e| e.to_string())?;
        let mut docs = Vec::new();
        for raw in response.server_keys {
            let doc = ServerKeyDocument::parse_bytes(server, raw.json().get().as_bytes())
                .map_err(|e| e.to_string())?;
            server_keys::verify_notary_signature(&doc, notary, &notary_keys)
                .map_err(|e| e.to_string())?;
            check_sane(&doc)?;
            docs.push(doc);
        }
        Ok(docs)
    }

    /// Stores fetched documents and refreshes the memory cache from the database.
    async fn remember(&self, server: &ServerName, docs: Vec<ServerKeyDocument>) {
        let now = now_ms();
        let mut rows = Vec::new();
        for doc in docs {
            let valid_until = doc.capped_valid_until(now);
            let json = Value::Object(doc.raw.clone()).to_canonical_string();
            for (key_id, key) in &doc.keys {
                rows.push(StoredKey {
                    server_name: server.to_string(),
                    key_id: key_id.clone(),
                    public_key: key.key.to_base64(),
                    valid_until_ts: if key.old {
                        key.valid_until_ts
                    } else {
                        valid_until
                    },
                    expired_ts: key.old.then_some(key.valid_until_ts),
                    fetched_ts: now,
                    key_json: json.clone(),
                });
            }
        }
        if let Err(e) = store::store(&self.inner.db, &rows).await {
            tracing::error!(%server, error = %e, "cannot store fetched server keys");
        }
        let known = self.load(server).await;
        self.write_known(server, known);
    }
}

/// A document whose validity is not a plausible timestamp is refused outright.
fn check_sane(doc: &ServerKeyDocument) -> Result<(), String> {
    if doc.valid_until_ts < 0 {
        return Err(format!("valid_until_ts {} is negative", doc.valid_until_ts));
    }
    Ok(())
}

/// `minimum_valid_until_ts` of a notary query as milliseconds.
pub fn ms(ts: Option<MilliSecondsSinceUnixEpoch>) -> i64 {
    ts.map(|t| i64::try_from(u64::from(t.0)).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Milliseconds as a ruma timestamp (negative values become 0).
pub fn to_ruma_ts(ms: i64) -> MilliSecondsSinceUnixEpoch {
    MilliSecondsSinceUnixEpoch(UInt::try_from(ms.max(0)).unwrap_or(UInt::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> PublicKey {
        KeyPair::from_seed("k", &[seed; 32])
            .expect("key")
            .public_key()
    }

    /// Room versions 5+: a key verifies events sent up to its `valid_until_ts`, an old key
    /// up to its `expired_ts`; nothing after, and nothing of another server.
    #[test]
    fn keyring_applies_validity_per_key() {
        let a = OwnedServerName::try_from("a.test").expect("name");
        let b = OwnedServerName::try_from("b.test").expect("name");
        let mut ring = MemoryKeyRing::default();
        ring.keys.insert(
            (a.clone(), "ed25519:new".to_owned()),
            TimedKey {
                key: key(1),
                valid_until_ts: 1_000,
                old: false,
            },
        );
        ring.keys.insert(
            (a.clone(), "ed25519:old".to_owned()),
            TimedKey {
                key: key(2),
                valid_until_ts: 500,
                old: true,
            },
        );
        assert_eq!(ring.key(&a, "ed25519:new", 1_000), Some(key(1)));
        assert_eq!(ring.key(&a, "ed25519:new", 1_001), None);
        assert_eq!(ring.key(&a, "ed25519:old", 500), Some(key(2)));
        assert_eq!(ring.key(&a, "ed25519:old", 501), None);
        assert_eq!(ring.key(&b, "ed25519:new", 0), None);
        assert_eq!(ring.key(&a, "ed25519:other", 0), None);
    }
}
