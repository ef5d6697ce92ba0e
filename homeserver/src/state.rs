//! What every request handler shares: configuration, the database, the
//! signing keys, metrics. Cheap to clone (one `Arc`).

use std::sync::Arc;
use std::time::Duration;

use myelin_proto::signing::KeyPair;
use ruma::{OwnedServerName, ServerName};

use crate::api::client::account::uiaa::UiaaSession;
use crate::config::Config;
use crate::expiring::ExpiringMap;
use crate::federation::FederationService;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::push::PushEvaluator;
use crate::ratelimit::RateLimiter;
use crate::rooms::RoomService;
use crate::storage::Db;
use crate::typing::Typing;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    config: Config,
    server_name: OwnedServerName,
    db: Db,
    keys: Vec<KeyPair>,
    metrics: Metrics,
    rooms: RoomService,
    notifier: Notifier,
    typing: Typing,
    push: PushEvaluator,
    rate_limiter: RateLimiter,
    /// Short-lived authentication state, kept in memory: losing it on a
    /// restart only makes a client restart a UIA flow or ask for a new
    /// login token or nonce.
    uiaa_sessions: ExpiringMap<UiaaSession>,
    /// Login tokens from `/login/get_token`, by token hash.
    login_tokens: ExpiringMap<ruma::OwnedUserId>,
    /// Nonces handed out by `GET /_synapse/admin/v1/register`.
    admin_nonces: ExpiringMap<()>,
    federation: FederationService,
    /// Refetches of remote users' cached device lists in progress.
    device_list_resyncs: crate::federation::remote_keys::Resyncs,
    /// Everyone's presence (in memory).
    presence: crate::presence::Presence,
    /// The lazy-loaded members each sync loop holds.
    lazy_members: crate::sync::lazy_members::LazyMembers,
}

/// Cap on each in-memory credential table (see [`ExpiringMap`]).
const MAX_EPHEMERAL_ENTRIES: usize = 100_000;

/// Synapse's lifetime for shared-secret registration nonces.
const ADMIN_NONCE_LIFETIME: Duration = Duration::from_secs(60);

impl AppState {
    /// `keys` must not be empty; the first one signs.
    pub fn new(
        config: Config,
        server_name: OwnedServerName,
        db: Db,
        keys: Vec<KeyPair>,
        metrics: Metrics,
        federation: FederationService,
    ) -> Self {
        assert!(!keys.is_empty(), "at least one signing key");
        let sessions = &config.sessions;
        let uiaa_sessions = ExpiringMap::new(
            Duration::from_millis(sessions.uia_session_lifetime_ms),
            MAX_EPHEMERAL_ENTRIES,
        );
        let login_tokens = ExpiringMap::new(
            Duration::from_millis(sessions.login_token_lifetime_ms),
            MAX_EPHEMERAL_ENTRIES,
        );
        let rate_limiter = RateLimiter::new(&config.rate_limits);
        let presence = crate::presence::Presence::new(&config.presence);
        let notifier = Notifier::new();
        Self(Arc::new(Inner {
            rate_limiter,
            uiaa_sessions,
            login_tokens,
            admin_nonces: ExpiringMap::new(ADMIN_NONCE_LIFETIME, MAX_EPHEMERAL_ENTRIES),
            config,
            server_name,
            db,
            keys,
            metrics,
            rooms: RoomService::new(notifier.clone()),
            typing: Typing::new(notifier.clone()),
            push: PushEvaluator::new(),
            notifier,
            federation,
            device_list_resyncs: crate::federation::remote_keys::Resyncs::default(),
            presence,
            lazy_members: Default::default(),
        }))
    }

    pub fn config(&self) -> &Config {
        &self.0.config
    }

    pub fn server_name(&self) -> &ServerName {
        &self.0.server_name
    }

    pub fn db(&self) -> &Db {
        &self.0.db
    }

    /// The key new events and requests are signed with.
    pub fn signing_key(&self) -> &KeyPair {
        &self.0.keys[0]
    }

    /// All keys, the signing one first, for publishing.
    pub fn keys(&self) -> &[KeyPair] {
        &self.0.keys
    }

    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// Room write locks and the timeline stream.
    pub fn rooms(&self) -> &RoomService {
        &self.0.rooms
    }

    /// Wakes long-polling `/sync` requests: every writer of something sync
    /// shows calls it after its change commits.
    pub fn notifier(&self) -> &Notifier {
        &self.0.notifier
    }

    /// Refetches of remote users' device lists (see `federation::remote_keys`).
    pub fn device_list_resyncs(&self) -> &crate::federation::remote_keys::Resyncs {
        &self.0.device_list_resyncs
    }

    /// Everyone's presence (see `crate::presence`).
    pub fn presence(&self) -> &crate::presence::Presence {
        &self.0.presence
    }

    /// The lazy-loaded members each sync loop holds (see
    /// `crate::sync::lazy_members`).
    pub fn lazy_members(&self) -> &crate::sync::lazy_members::LazyMembers {
        &self.0.lazy_members
    }

    /// Who is typing in which room (in memory).
    pub fn typing(&self) -> &Typing {
        &self.0.typing
    }

    /// Push rule evaluation of new events (with its rules cache).
    pub fn push(&self) -> &PushEvaluator {
        &self.0.push
    }

    /// The rate limiter: `state.rate_limiter().check(Limit::Message, user)?`.
    pub fn rate_limiter(&self) -> &RateLimiter {
        &self.0.rate_limiter
    }

    pub fn uiaa_sessions(&self) -> &ExpiringMap<UiaaSession> {
        &self.0.uiaa_sessions
    }

    pub fn login_tokens(&self) -> &ExpiringMap<ruma::OwnedUserId> {
        &self.0.login_tokens
    }

    pub fn admin_nonces(&self) -> &ExpiringMap<()> {
        &self.0.admin_nonces
    }

    /// Outbound federation (client and other servers' keys).
    pub fn federation(&self) -> &FederationService {
        &self.0.federation
    }

    /// Samples the database pool into the pool gauges.
    pub fn refresh_pool_metrics(&self) {
        let (size, idle) = self.0.db.pool_usage();
        self.0.metrics.db_pool_size.set(i64::from(size));
        self.0
            .metrics
            .db_pool_idle
            .set(i64::try_from(idle).unwrap_or(i64::MAX));
    }
}
