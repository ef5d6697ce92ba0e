//! Server name resolution, exactly in the order of the server-server API's "Resolving server
//! names": IP literal, hostname with port, `/.well-known/matrix/server` delegation (then IP
//! literal, explicit port, SRV `_matrix-fed._tcp`, deprecated SRV `_matrix._tcp`, port 8448),
//! and without delegation SRV `_matrix-fed._tcp`, `_matrix._tcp`, then port 8448.
//!
//! The result says where to connect, which `Host` header to send and which name the TLS
//! certificate must be valid for; it is cached until the earliest expiry of the DNS answers
//! and the well-known response it came from.
//!
//! The spec's fixed ports (443 for the well-known fetch, 8448 for the fallback) are
//! [`DiscoveryConfig::well_known_port`] and [`DiscoveryConfig::fallback_port`], so tests can
//! run servers on free loopback ports; production keeps the defaults.

mod cache;
mod connect;
mod dns;
pub mod ip_filter;
pub mod server_name;
mod well_known;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{LookupIpStrategy, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use rustls::pki_types::ServerName as TlsName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use cache::TtlCache;
use server_name::{Host, InvalidServerName, ParsedServerName};

/// Why a server name could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error(transparent)]
    InvalidServerName(#[from] InvalidServerName),
    #[error("DNS lookup failed: {0}")]
    Dns(String),
    #[error("all addresses of {0} are private and private targets are not allowed")]
    PrivateAddress(String),
    #[error("could not connect: {0}")]
    Connect(String),
    #[error("resolver setup failed: {0}")]
    Setup(String),
}

/// Timings and limits of the well-known fetch; defaults are Synapse's.
#[derive(Clone, Debug)]
pub struct WellKnownPolicy {
    /// Cache period when the response has no caching headers (spec: "sensible default 24 h").
    pub default_cache_period: Duration,
    /// Lower bound for header-given periods (Synapse: 5 min).
    pub min_cache_period: Duration,
    /// Upper bound for header-given periods (spec: 48 h).
    pub max_cache_period: Duration,
    /// How long a failed or invalid fetch is cached (spec: "up to an hour").
    pub error_cache_period: Duration,
    /// How long a failure is cached when the domain had a valid well-known recently.
    pub error_cache_period_after_valid: Duration,
    /// How long after a valid entry expires we still remember the domain had one.
    pub remember_had_valid: Duration,
    /// Random spread applied to default and error periods (0.1 = ±10 %).
    pub jitter: f64,
    /// Largest body read (Synapse: 50 KiB); larger counts as a temporary failure.
    pub max_size: usize,
    /// Redirects followed before giving up (Twisted's `RedirectAgent`, used by Synapse: 20).
    pub max_redirects: u32,
    /// Timeout for connecting and for the whole request.
    pub request_timeout: Duration,
}

impl Default for WellKnownPolicy {
    fn default() -> Self {
        Self {
            default_cache_period: Duration::from_secs(24 * 3600),
            min_cache_period: Duration::from_secs(5 * 60),
            max_cache_period: Duration::from_secs(48 * 3600),
            error_cache_period: Duration::from_secs(3600),
            error_cache_period_after_valid: Duration::from_secs(2 * 60),
            remember_had_valid: Duration::from_secs(2 * 3600),
            jitter: 0.1,
            max_size: 50 * 1024,
            max_redirects: 20,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// How discovery reaches DNS, TLS and the network.
#[derive(Clone, Debug)]
pub struct DiscoveryConfig {
    /// DNS servers; `None` reads the system configuration (`/etc/resolv.conf`).
    pub dns: Option<ResolverConfig>,
    /// Trusted root certificates. [`DiscoveryConfig::default`] uses the Mozilla roots from
    /// `webpki-roots`, so the binary behaves the same on every host; add extra CAs here.
    pub roots: rustls::RootCertStore,
    /// Whether targets in private/loopback ranges may be contacted (see [`ip_filter`]).
    pub allow_private_addresses: bool,
    /// Port of `https://<hostname>/.well-known/matrix/server` (spec: 443).
    pub well_known_port: u16,
    /// Port used when neither the server name nor SRV gives one (spec: 8448).
    pub fallback_port: u16,
    /// Timeout for one TCP + TLS connection attempt in [`Resolver::connect`].
    pub connect_timeout: Duration,
    pub well_known: WellKnownPolicy,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            dns: None,
            roots: rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
            allow_private_addresses: false,
            well_known_port: 443,
            fallback_port: 8448,
            connect_timeout: Duration::from_secs(10),
            well_known: WellKnownPolicy::default(),
        }
    }
}

/// Where and how to reach a server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedServer {
    /// Addresses to try, in order of preference.
    pub addresses: Vec<SocketAddr>,
    /// The `Host` header to send.
    pub host_header: String,
    /// The name sent as SNI and that the certificate must be valid for: a DNS name, or an IP
    /// address (then matched against the certificate's IP SANs and no SNI is sent).
    pub tls_name: TlsName<'static>,
    /// When this answer stops being valid (earliest DNS TTL / well-known expiry).
    pub valid_until: Instant,
}

/// Resolves server names; cheap to clone (shared caches).
#[derive(Clone)]
pub struct Resolver {
    inner: Arc<Inner>,
}

struct Inner {
    config: DiscoveryConfig,
    dns: TokioResolver,
    tls: Arc<rustls::ClientConfig>,
    results: TtlCache<String, ResolvedServer>,
    well_known: TtlCache<String, well_known::CachedWellKnown>,
    had_valid_well_known: TtlCache<String, ()>,
}

/// A resolution before the private-address filter: addresses plus their expiry.
struct Addresses {
    addrs: Vec<SocketAddr>,
    valid_until: Instant,
}

impl Resolver {
    pub fn new(config: DiscoveryConfig) -> Result<Self, DiscoveryError> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = match &config.dns {
            Some(dns) => TokioResolver::builder_with_config(dns.clone(), provider),
            None => TokioResolver::builder(provider)
                .map_err(|e| DiscoveryError::Setup(format!("system DNS configuration: {e}")))?,
        };
        // Both families: a server with only IPv6 (or only IPv4) must stay reachable.
        builder.options_mut().ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        let dns = builder
            .build()
            .map_err(|e| DiscoveryError::Setup(e.to_string()))?;
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| DiscoveryError::Setup(e.to_string()))?
        .with_root_certificates(config.roots.clone())
        .with_no_client_auth();
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                dns,
                tls: Arc::new(tls),
                results: TtlCache::new(),
                well_known: TtlCache::new(),
                had_valid_well_known: TtlCache::new(),
            }),
        })
    }

    /// The TLS client configuration (roots from the config, ring provider), for callers that
    /// open their own connections.
    pub fn tls_config(&self) -> Arc<rustls::ClientConfig> {
        self.inner.tls.clone()
    }

    /// Resolves `server_name` following the spec's steps, from the cache when still valid.
    pub async fn resolve(&self, server_name: &str) -> Result<ResolvedServer, DiscoveryError> {
        if let Some(hit) = self.inner.results.get(&server_name.to_owned()) {
            return Ok(hit);
        }
        let parsed = ParsedServerName::parse(server_name)?;
        let (found, host_header, tls_name) = match (&parsed.host, parsed.port) {
            // Step 1: IP literal; the certificate must be valid for the IP.
            (Host::Ip(ip), port) => (
                self.ip_literal(*ip, port),
                parsed.authority(),
                TlsName::IpAddress((*ip).into()),
            ),
            // Step 2: hostname with explicit port.
            (Host::Name(name), Some(port)) => (
                self.addresses(name, port).await?,
                parsed.authority(),
                dns_name(name)?,
            ),
            // Steps 3-6.
            (Host::Name(name), None) => self.resolve_without_port(name).await?,
        };
        let resolved = ResolvedServer {
            addresses: self.filter_addresses(found.addrs)?,
            host_header,
            tls_name,
            valid_until: found.valid_until,
        };
        self.inner.results.insert(
            server_name.to_owned(),
            resolved.clone(),
            resolved.valid_until,
        );
        Ok(resolved)
    }

    /// Resolves and opens a TLS connection to the first reachable address, verifying the
    /// certificate against the name the spec requires.
    pub async fn connect(
        &self,
        server: &ResolvedServer,
    ) -> Result<TlsStream<TcpStream>, DiscoveryError> {
        connect::connect_tls(
            &self.inner.tls,
            &server.addresses,
            &server.tls_name,
            self.inner.config.connect_timeout,
        )
        .await
    }

    /// Steps 3 to 6 for a hostname without a port.
    async fn resolve_without_port(
        &self,
        hostname: &str,
    ) -> Result<(Addresses, String, TlsName<'static>), DiscoveryError> {
        let well_known = self.well_known(hostname).await;
        let delegated = well_known
            .delegated
            .as_deref()
            .and_then(|d| ParsedServerName::parse(d).ok());
        let (mut found, host_header, tls_name) = match delegated {
            Some(delegated) => match (&delegated.host, delegated.port) {
                // 3.1: delegated IP literal.
                (Host::Ip(ip), port) => (
                    self.ip_literal(*ip, port),
                    delegated.authority(),
                    TlsName::IpAddress((*ip).into()),
                ),
                // 3.2: delegated hostname with port.
                (Host::Name(name), Some(port)) => (
                    self.addresses(name, port).await?,
                    delegated.authority(),
                    dns_name(name)?,
                ),
                // 3.3-3.5: SRV for the delegated name, then 8448.
                (Host::Name(name), None) => (
                    self.srv_or_fallback(name).await?,
                    name.clone(),
                    dns_name(name)?,
                ),
            },
            // 4-6: SRV for the hostname itself, then 8448.
            None => (
                self.srv_or_fallback(hostname).await?,
                hostname.to_owned(),
                dns_name(hostname)?,
            ),
        };
        found.valid_until = found.valid_until.min(well_known.refresh_at);
        Ok((found, host_header, tls_name))
    }

    fn ip_literal(&self, ip: IpAddr, port: Option<u16>) -> Addresses {
        Addresses {
            addrs: vec![SocketAddr::new(
                ip,
                port.unwrap_or(self.inner.config.fallback_port),
            )],
            // Nothing to expire; a day keeps the cache from growing stale forever.
            valid_until: Instant::now() + Duration::from_secs(24 * 3600),
        }
    }

    /// A/AAAA of `host`, all on `port`.
    async fn addresses(&self, host: &str, port: u16) -> Result<Addresses, DiscoveryError> {
        let (ips, valid_until) = dns::lookup_ips(&self.inner.dns, host).await?;
        Ok(Addresses {
            addrs: ips
                .into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect(),
            valid_until,
        })
    }

    /// `_matrix-fed._tcp.<name>`, else the deprecated `_matrix._tcp.<name>`, else
    /// `<name>:8448`.
    async fn srv_or_fallback(&self, name: &str) -> Result<Addresses, DiscoveryError> {
        for service in ["_matrix-fed._tcp", "_matrix._tcp"] {
            let Some((targets, srv_valid_until)) =
                dns::lookup_srv(&self.inner.dns, &format!("{service}.{name}")).await?
            else {
                continue;
            };
            let mut found = Addresses {
                addrs: Vec::new(),
                valid_until: srv_valid_until,
            };
            let mut last_error = None;
            // A target without addresses is skipped; the others still work.
            for target in targets {
                match self.addresses(&target.host, target.port).await {
                    Ok(a) => {
                        found.addrs.extend(a.addrs);
                        found.valid_until = found.valid_until.min(a.valid_until);
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            if found.addrs.is_empty() {
                return Err(
                    last_error.unwrap_or_else(|| DiscoveryError::Dns(format!("{service}.{name}")))
                );
            }
            return Ok(found);
        }
        self.addresses(name, self.inner.config.fallback_port).await
    }

    /// Drops denied addresses; an error if none is left.
    fn filter_addresses(&self, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, DiscoveryError> {
        if self.inner.config.allow_private_addresses {
            return Ok(addrs);
        }
        let original = addrs.first().map(|a| a.to_string()).unwrap_or_default();
        let allowed: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| !ip_filter::is_private(a.ip()))
            .collect();
        if allowed.is_empty() {
            return Err(DiscoveryError::PrivateAddress(original));
        }
        Ok(allowed)
    }
}

fn dns_name(name: &str) -> Result<TlsName<'static>, DiscoveryError> {
    TlsName::try_from(name.to_owned())
        .map_err(|_| DiscoveryError::InvalidServerName(InvalidServerName(name.to_owned())))
}
