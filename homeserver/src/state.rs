//! What every request handler shares: configuration, the database, the
//! signing keys, metrics. Cheap to clone (one `Arc`).

use std::sync::Arc;

use myelin_proto::signing::KeyPair;
use ruma::{OwnedServerName, ServerName};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::rooms::RoomService;
use crate::storage::Db;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    config: Config,
    server_name: OwnedServerName,
    db: Db,
    keys: Vec<KeyPair>,
    metrics: Metrics,
    rooms: RoomService,
}

impl AppState {
    /// `keys` must not be empty; the first one signs.
    pub fn new(
        config: Config,
        server_name: OwnedServerName,
        db: Db,
        keys: Vec<KeyPair>,
        metrics: Metrics,
    ) -> Self {
        assert!(!keys.is_empty(), "at least one signing key");
        Self(Arc::new(Inner {
            config,
            server_name,
            db,
            keys,
            metrics,
            rooms: RoomService::new(),
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

    /// Room write locks, the timeline stream and its notifier.
    pub fn rooms(&self) -> &RoomService {
        &self.0.rooms
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
