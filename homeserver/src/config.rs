//! Configuration: the documented defaults in `conf/default.toml` (compiled
//! in), then an optional TOML file, then `MYELIN__SECTION__KEY` environment
//! variables. Unknown keys are errors, so a typo names itself instead of
//! being silently ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The defaults, documented, as shipped in `conf/default.toml`.
pub const DEFAULT_CONFIG: &str = include_str!("../../conf/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub listen: ListenConfig,
    pub database: DatabaseConfig,
    pub registration: RegistrationConfig,
    pub sessions: SessionsConfig,
    pub limits: LimitsConfig,
    pub rate_limits: RateLimitsConfig,
    pub user_directory: UserDirectoryConfig,
    pub metrics: MetricsConfig,
    pub logging: LoggingConfig,
    pub federation: FederationConfig,
    pub presence: PresenceConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub signing_key_path: String,
    pub public_baseurl: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    pub client: SocketAddr,
    /// The federation API over HTTPS; empty: no federation listener.
    pub federation: String,
}

/// Talking to other servers (see `conf/default.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationConfig {
    pub tls_certificate_path: String,
    pub tls_private_key_path: String,
    pub allow_private_addresses: bool,
    pub ca_file: String,
    pub nameservers: Vec<String>,
    pub trusted_key_servers: Vec<String>,
    pub destination_min_retry_interval_ms: u64,
    pub destination_max_retry_interval_ms: u64,
    pub destination_retry_multiplier: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: String,
    /// Unset: see [`Config::database_connections`].
    pub max_connections: Option<u32>,
    /// Connections kept open even when idle, opened at start-up: a burst
    /// of requests then finds them ready instead of waiting for new ones
    /// (a PostgreSQL connection starts a server process). Unset: 1.
    pub min_connections: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationConfig {
    pub enabled: bool,
    pub shared_secret: String,
}

/// Lifetimes of the short-lived credentials the accounts API hands out.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsConfig {
    pub refreshable_access_token_lifetime_ms: u64,
    pub login_token_lifetime_ms: u64,
    pub uia_session_lifetime_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub max_request_bytes: usize,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsConfig {
    pub registration: RateLimit,
    pub login: RateLimit,
    pub message: RateLimit,
}

/// Who `/user_directory/search` finds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserDirectoryConfig {
    pub search_all_users: bool,
}

/// Presence (`crate::presence`): online, unavailable, offline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceConfig {
    pub enabled: bool,
    /// Online users without activity for this long become unavailable.
    pub idle_timeout_ms: u64,
    /// Users who stopped syncing this long ago become offline.
    pub offline_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    pub enabled: bool,
    pub listen: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    pub filter: String,
    pub format: LogFormat,
}

/// A configuration that cannot be used, with the key at fault in the message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl Config {
    /// Loads defaults, then `file` (if any), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(file, std::env::vars())
    }

    /// [`Config::load`] with the environment given explicitly (for tests).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_CONFIG,
            config::FileFormat::Toml,
        ));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            builder = builder.add_source(
                config::File::from(path)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("MYELIN__"))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("MYELIN")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                // Lists come from the environment comma-separated.
                .list_separator(",")
                .with_list_parse_key("federation.nameservers")
                .with_list_parse_key("federation.trusted_key_servers")
                .source(Some(env)),
        );
        let raw = builder
            .build()
            .map_err(|e| ConfigError(format!("cannot read configuration: {e}")))?;
        let config: Config = raw
            .try_deserialize()
            .map_err(|e| ConfigError(format!("invalid configuration: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what types alone cannot.
    fn validate(&self) -> Result<(), ConfigError> {
        if ruma::ServerName::parse(&self.server.name).is_err() {
            return Err(ConfigError(format!(
                "invalid configuration: server.name {:?} is not a valid server name",
                self.server.name
            )));
        }
        let url = &self.database.url;
        if !(url.is_empty()
            || url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(ConfigError(
                "invalid configuration: database.url must start with sqlite: or postgres://"
                    .to_owned(),
            ));
        }
        if self.database.max_connections == Some(0) {
            return Err(ConfigError(
                "invalid configuration: database.max_connections must be at least 1".to_owned(),
            ));
        }
        if self
            .database
            .min_connections
            .is_some_and(|min| min > self.database_connections())
        {
            return Err(ConfigError(
                "invalid configuration: database.min_connections is more than max_connections"
                    .to_owned(),
            ));
        }
        if !self.metrics.listen.is_empty() && self.metrics.listen.parse::<SocketAddr>().is_err() {
            return Err(ConfigError(format!(
                "invalid configuration: metrics.listen {:?} is not an address:port",
                self.metrics.listen
            )));
        }
        if !self.listen.federation.is_empty() {
            if self.listen.federation.parse::<SocketAddr>().is_err() {
                return Err(ConfigError(format!(
                    "invalid configuration: listen.federation {:?} is not an address:port",
                    self.listen.federation
                )));
            }
            if self.federation.tls_certificate_path.is_empty()
                || self.federation.tls_private_key_path.is_empty()
            {
                return Err(ConfigError(
                    "invalid configuration: listen.federation needs \
                     federation.tls_certificate_path and federation.tls_private_key_path"
                        .to_owned(),
                ));
            }
        }
        for (name, value) in [
            (
                "refreshable_access_token_lifetime_ms",
                self.sessions.refreshable_access_token_lifetime_ms,
            ),
            (
                "login_token_lifetime_ms",
                self.sessions.login_token_lifetime_ms,
            ),
            (
                "uia_session_lifetime_ms",
                self.sessions.uia_session_lifetime_ms,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError(format!(
                    "invalid configuration: sessions.{name} must be at least 1"
                )));
            }
        }
        for (name, limit) in [
            ("registration", self.rate_limits.registration),
            ("login", self.rate_limits.login),
            ("message", self.rate_limits.message),
        ] {
            if !limit.per_second.is_finite() || limit.per_second < 0.0 {
                return Err(ConfigError(format!(
                    "invalid configuration: rate_limits.{name}.per_second must be 0 or more"
                )));
            }
        }
        Ok(())
    }

    /// The size of the database pool: as configured, or on SQLite one per
    /// core between 2 and 4, on PostgreSQL 16.
    pub fn database_connections(&self) -> u32 {
        if let Some(n) = self.database.max_connections {
            return n;
        }
        if self.database_url().starts_with("postgres") {
            16
        } else {
            let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
            u32::try_from(cores.clamp(2, 4)).unwrap_or(2)
        }
    }

    /// Connections the pool keeps open at least.
    pub fn database_min_connections(&self) -> u32 {
        self.database.min_connections.unwrap_or(1)
    }

    /// The database URL, defaulting to SQLite in the data directory.
    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            format!(
                "sqlite://{}?mode=rwc",
                self.server.data_dir.join("myelin.db").display()
            )
        } else {
            self.database.url.clone()
        }
    }

    /// Where the signing key lives.
    pub fn signing_key_path(&self) -> PathBuf {
        if self.server.signing_key_path.is_empty() {
            self.server.data_dir.join("signing.key")
        } else {
            PathBuf::from(&self.server.signing_key_path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_load_and_env_overrides() {
        let c = Config::load_with_env(None, env(&[])).expect("defaults");
        assert_eq!(c.server.name, "localhost");
        assert_eq!(c.listen.client, "127.0.0.1:8008".parse().expect("addr"));
        assert!(c.database_url().starts_with("sqlite://"));
        assert!((2..=4).contains(&c.database_connections()));
        let pg = Config::load_with_env(
            None,
            env(&[("MYELIN__DATABASE__URL", "postgres://u@127.0.0.1/db")]),
        )
        .expect("postgres");
        assert_eq!(pg.database_connections(), 16);
        let c = Config::load_with_env(
            None,
            env(&[
                ("MYELIN__SERVER__NAME", "example.org"),
                ("MYELIN__DATABASE__MAX_CONNECTIONS", "4"),
                ("MYELIN__REGISTRATION__ENABLED", "false"),
                ("OTHER__SERVER__NAME", "ignored.org"),
            ]),
        )
        .expect("env");
        assert_eq!(c.server.name, "example.org");
        assert_eq!(c.database_connections(), 4);
        assert_eq!(c.database_min_connections(), 1);
        assert!(!c.registration.enabled);
        assert!(c.listen.federation.is_empty());
        assert!(c.federation.nameservers.is_empty());
        let c = Config::load_with_env(
            None,
            env(&[
                ("MYELIN__FEDERATION__NAMESERVERS", "127.0.0.1:53,[::1]:5353"),
                ("MYELIN__FEDERATION__TRUSTED_KEY_SERVERS", "matrix.org"),
                ("MYELIN__FEDERATION__ALLOW_PRIVATE_ADDRESSES", "true"),
            ]),
        )
        .expect("federation lists from the environment");
        assert_eq!(c.federation.nameservers, ["127.0.0.1:53", "[::1]:5353"]);
        assert_eq!(c.federation.trusted_key_servers, ["matrix.org"]);
        assert!(c.federation.allow_private_addresses);
        let err = Config::load_with_env(
            None,
            env(&[("MYELIN__LISTEN__FEDERATION", "127.0.0.1:8448")]),
        )
        .expect_err("federation listener without a certificate");
        assert!(err.to_string().contains("tls_certificate_path"), "{err}");
        let pool = [
            ("MYELIN__DATABASE__MAX_CONNECTIONS", "8"),
            ("MYELIN__DATABASE__MIN_CONNECTIONS", "5"),
        ];
        let c = Config::load_with_env(None, env(&pool)).expect("a warm pool");
        assert_eq!(c.database_min_connections(), 5);
        let err = Config::load_with_env(
            None,
            env(&[
                ("MYELIN__DATABASE__MAX_CONNECTIONS", "4"),
                ("MYELIN__DATABASE__MIN_CONNECTIONS", "5"),
            ]),
        )
        .expect_err("more kept open than allowed");
        assert!(err.to_string().contains("min_connections"), "{err}");
    }

    /// The example an operator copies must load as it is (every key known,
    /// every value valid), or the guide in the README misleads them.
    #[test]
    fn production_example_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/production.example.toml");
        let c = Config::load_with_env(Some(&path), env(&[])).expect("production example");
        assert!(c.database_url().starts_with("postgres"));
        assert!(!c.listen.federation.is_empty());
        assert!(!c.federation.tls_certificate_path.is_empty());
    }

    #[test]
    fn bad_config_names_the_key() {
        let dir = std::env::temp_dir().join(format!("myelin-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("bad.toml");
        std::fs::write(&file, "[database]\nmax_connections = \"many\"\n").expect("write");
        let err = Config::load_with_env(Some(&file), env(&[])).expect_err("bad type");
        assert!(err.to_string().contains("max_connections"), "{err}");
        std::fs::write(&file, "[server]\nnmae = \"typo.org\"\n").expect("write");
        let err = Config::load_with_env(Some(&file), env(&[])).expect_err("unknown key");
        assert!(err.to_string().contains("nmae"), "{err}");
        let err = Config::load_with_env(None, env(&[("MYELIN__SERVER__NAME", "bad name!")]))
            .expect_err("invalid server name");
        assert!(err.to_string().contains("server.name"), "{err}");
        let err = Config::load_with_env(Some(&dir.join("missing.toml")), env(&[]))
            .expect_err("missing file");
        assert!(err.to_string().contains("does not exist"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
