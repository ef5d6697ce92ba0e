//! The homeserver's side of federation: one [`FederationService`] in the application state
//! holds the outbound client (discovery, TLS, signed requests), the key fetcher (other
//! servers' signing keys, cached in memory and in `server_signing_keys`) and the
//! [`Sender`] that delivers our events and EDUs to the servers in our rooms.

pub mod acl;
pub mod announce;
pub mod backfill;
pub mod backoff;
pub mod edus;
pub mod invite;
pub mod join;
pub mod keys;
pub mod knock;
pub mod leave;
pub mod public_rooms;
pub mod query;
pub mod remote_events;
pub mod remote_keys;
pub mod sender;
pub mod server_visibility;
pub mod transaction;

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use myelin_federation::client::{ClientConfig, FederationClient};
use myelin_federation::discovery::{DiscoveryConfig, Resolver};
use myelin_proto::signing::KeyPair;
use ruma::{OwnedServerName, ServerName};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::storage::Db;
use backoff::RetryPolicy;
pub use keys::KeyFetcher;
pub use sender::Sender;

/// Why federation could not be set up from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("federation.ca_file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("federation.nameservers: {0:?} is not an ip:port address")]
    Nameserver(String),
    #[error("federation.trusted_key_servers: {0:?} is not a server name")]
    TrustedKeyServer(String),
    #[error("federation: {0}")]
    Discovery(#[from] myelin_federation::discovery::DiscoveryError),
    #[error("federation: no signing key")]
    NoSigningKey,
}

/// Outbound federation: the client and the key fetcher. Cheap to clone.
#[derive(Clone)]
pub struct FederationService {
    inner: Arc<Inner>,
}

struct Inner {
    client: FederationClient,
    keys: KeyFetcher,
    sender: Sender,
}

impl FederationService {
    pub fn new(
        config: &Config,
        server_name: &ServerName,
        keys: &[KeyPair],
        db: Db,
        metrics: &Metrics,
    ) -> Result<Self, SetupError> {
        let fed = &config.federation;
        let mut discovery = DiscoveryConfig {
            allow_private_addresses: fed.allow_private_addresses,
            ..DiscoveryConfig::default()
        };
        if !fed.ca_file.is_empty() {
            add_ca_file(&mut discovery.roots, &fed.ca_file)?;
        }
        if !fed.nameservers.is_empty() {
            discovery.dns = Some(nameservers(&fed.nameservers)?);
        }
        let resolver = Resolver::new(discovery)?;
        let signing = keys.first().cloned().ok_or(SetupError::NoSigningKey)?;
        let client = FederationClient::new(
            resolver,
            server_name.to_owned(),
            signing,
            ClientConfig::default(),
        );
        let notaries = fed
            .trusted_key_servers
            .iter()
            .map(|s| {
                OwnedServerName::try_from(s.as_str())
                    .map_err(|_| SetupError::TrustedKeyServer(s.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let sender = Sender::new(
            db.clone(),
            client.clone(),
            RetryPolicy::from_config(fed),
            metrics.clone(),
            // Others could not verify our transactions without our listener.
            !config.listen.federation.is_empty(),
        );
        let fetcher = KeyFetcher::new(db, client.clone(), server_name.to_owned(), keys, notaries);
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                keys: fetcher,
                sender,
            }),
        })
    }

    /// Signed requests to other servers.
    pub fn client(&self) -> &FederationClient {
        &self.inner.client
    }

    /// Other servers' signing keys: request verification and key rings for events.
    pub fn keys(&self) -> &KeyFetcher {
        &self.inner.keys
    }

    /// Delivery of our events and EDUs to other servers.
    pub fn sender(&self) -> &Sender {
        &self.inner.sender
    }
}

fn add_ca_file(roots: &mut rustls::RootCertStore, path: &str) -> Result<(), SetupError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let error = |reason: String| SetupError::CaFile {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(e.to_string()))?;
    if certs.is_empty() {
        return Err(error("no certificates in the file".to_owned()));
    }
    for cert in certs {
        roots.add(cert).map_err(|e| error(e.to_string()))?;
    }
    Ok(())
}

/// DNS servers given as `ip:port` (UDP and TCP on the same port).
fn nameservers(list: &[String]) -> Result<ResolverConfig, SetupError> {
    let servers = list
        .iter()
        .map(|s| {
            let addr: SocketAddr = s.parse().map_err(|_| SetupError::Nameserver(s.clone()))?;
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            Ok(NameServerConfig::new(addr.ip(), true, vec![udp, tcp]))
        })
        .collect::<Result<Vec<_>, SetupError>>()?;
    Ok(ResolverConfig::from_name_servers(servers))
}
