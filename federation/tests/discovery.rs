//! Server discovery against a real DNS server (hickory-server, in-memory zone) and a real
//! HTTPS server (rustls with a test CA made by rcgen), both on loopback.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_server::Server;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::rr::rdata::{A, AAAA, SOA, SRV};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use myelin_federation::discovery::{DiscoveryConfig, DiscoveryError, Resolver, WellKnownPolicy};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

const ZONE: &str = "example.test.";
const FALLBACK: u16 = 18448;
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

// --- DNS ---------------------------------------------------------------------------------

struct Zone {
    records: Vec<Record>,
}

impl Zone {
    fn name(n: &str) -> Name {
        Name::from_str(&format!("{n}.{ZONE}")).unwrap()
    }
    fn a(&mut self, n: &str, ip: Ipv4Addr, ttl: u32) {
        self.records.push(Record::from_rdata(
            Self::name(n),
            ttl,
            RData::A(A::from(ip)),
        ));
    }
    fn aaaa(&mut self, n: &str, ip: Ipv6Addr) {
        self.records.push(Record::from_rdata(
            Self::name(n),
            300,
            RData::AAAA(AAAA::from(ip)),
        ));
    }
    fn srv(&mut self, n: &str, port: u16, target: &str) {
        let srv = SRV::new(10, 10, port, Self::name(target));
        self.records
            .push(Record::from_rdata(Self::name(n), 300, RData::SRV(srv)));
    }
}

/// Serves `zone` on 127.0.0.1 (UDP and TCP, same port) and returns the port.
async fn start_dns(zone: Zone) -> u16 {
    let origin = Name::from_str(ZONE).unwrap();
    let mut handler = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
        origin.clone(),
        ZoneType::Primary,
        AxfrPolicy::Deny,
    );
    let soa = SOA::new(
        Name::from_str("ns.example.test.").unwrap(),
        Name::from_str("admin.example.test.").unwrap(),
        1,
        3600,
        600,
        86400,
        60,
    );
    handler.upsert_mut(Record::from_rdata(origin.clone(), 3600, RData::SOA(soa)), 1);
    for record in zone.records {
        handler.upsert_mut(record, 1);
    }
    let mut catalog = Catalog::new();
    catalog.upsert(LowerName::new(&origin), vec![Arc::new(handler)]);

    // UDP first, then TCP on the same port (retrying if that port is taken for TCP).
    loop {
        let udp = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
        let port = udp.local_addr().unwrap().port();
        let Ok(tcp) = TcpListener::bind((LOOPBACK, port)).await else {
            continue;
        };
        let mut server = Server::new(catalog);
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 4096);
        tokio::spawn(async move {
            let _ = server.block_until_done().await;
        });
        return port;
    }
}

// --- TLS test CA ------------------------------------------------------------------------

struct TestCa {
    root: CertificateDer<'static>,
    server: Arc<rustls::ServerConfig>,
}

/// A CA and a server certificate for `*.example.test` and 127.0.0.1, made fresh per test.
fn test_ca() -> TestCa {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Myelin test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();

    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_params =
        rcgen::CertificateParams::new(vec!["*.example.test".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)
    .unwrap();
    TestCa {
        root: ca.der().clone(),
        server: Arc::new(server),
    }
}

// --- HTTPS well-known server -----------------------------------------------------------

/// What the server answers for one `Host` and path.
#[derive(Clone)]
struct Reply {
    status: StatusCode,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn json(m_server: &str, cache_control: Option<&str>) -> Reply {
    Reply {
        status: StatusCode::OK,
        headers: cache_control
            .map(|c| vec![("cache-control", c.to_owned())])
            .unwrap_or_default(),
        body: format!(r#"{{"m.server": "{m_server}"}}"#),
    }
}

fn status(status: StatusCode) -> Reply {
    Reply {
        status,
        headers: vec![],
        body: String::new(),
    }
}

fn redirect(location: String) -> Reply {
    Reply {
        status: StatusCode::FOUND,
        headers: vec![("location", location)],
        body: String::new(),
    }
}

type Replies = HashMap<(String, String), Reply>;

#[derive(Clone, Default)]
struct WellKnownServer {
    /// Keyed by `Host` header and path; anything else is a 404.
    replies: Arc<Mutex<Replies>>,
    /// Requests seen per `Host` header.
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl WellKnownServer {
    fn set(&self, host: &str, path: &str, reply: Reply) {
        self.replies
            .lock()
            .unwrap()
            .insert((host.to_owned(), path.to_owned()), reply);
    }
    fn well_known(&self, host: &str, reply: Reply) {
        self.set(host, "/.well-known/matrix/server", reply);
    }
    fn hits(&self, host: &str) -> usize {
        self.hits.lock().unwrap().get(host).copied().unwrap_or(0)
    }

    fn answer(&self, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_owned();
        *self.hits.lock().unwrap().entry(host.clone()).or_default() += 1;
        let reply = self
            .replies
            .lock()
            .unwrap()
            .get(&(host, req.uri().path().to_owned()))
            .cloned()
            .unwrap_or_else(|| status(StatusCode::NOT_FOUND));
        let mut response = Response::builder().status(reply.status);
        for (k, v) in &reply.headers {
            response = response.header(*k, v);
        }
        response.body(Full::new(Bytes::from(reply.body))).unwrap()
    }

    /// Serves HTTPS on a free loopback port, returning the port.
    async fn start(&self, tls: Arc<rustls::ServerConfig>) -> u16 {
        let listener = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let this = this.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |req| {
                        let response = this.answer(&req);
                        async move { Ok::<_, std::convert::Infallible>(response) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        port
    }
}

// --- Fixture ----------------------------------------------------------------------------

struct Fixture {
    web: WellKnownServer,
    web_port: u16,
    resolver: Resolver,
}

fn config(dns_port: u16, web_port: u16, ca: &TestCa) -> DiscoveryConfig {
    let mut udp = ConnectionConfig::udp();
    udp.port = dns_port;
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = dns_port;
    let dns = ResolverConfig::from_name_servers(vec![NameServerConfig::new(
        LOOPBACK,
        true,
        vec![udp, tcp],
    )]);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.root.clone()).unwrap();
    DiscoveryConfig {
        dns: Some(dns),
        roots,
        allow_private_addresses: true,
        well_known_port: web_port,
        fallback_port: FALLBACK,
        well_known: WellKnownPolicy {
            // Lets tests see expiry within seconds.
            min_cache_period: Duration::ZERO,
            jitter: 0.0,
            request_timeout: Duration::from_secs(5),
            ..WellKnownPolicy::default()
        },
        ..DiscoveryConfig::default()
    }
}

/// The zone every test serves; all web-facing names point at 127.0.0.1.
fn zone() -> Zone {
    let mut z = Zone { records: vec![] };
    for name in [
        "deleg-port",
        "deleg-srv",
        "deleg-plain",
        "deleg-ip",
        "invalid-json",
        "bad-server",
        "notfound",
        "redirect",
        "redirect-loop",
        "oversized",
        "short",
        "broken",
        "plain",
        "fallback",
        "target",
        "srvhost",
        "fed",
        "legacy",
    ] {
        z.a(name, Ipv4Addr::LOCALHOST, 300);
    }
    z.aaaa("fallback", Ipv6Addr::LOCALHOST);
    z.a("private", Ipv4Addr::new(10, 1, 2, 3), 300);
    z.a("mixed", Ipv4Addr::new(10, 1, 2, 3), 300);
    z.a("mixed", Ipv4Addr::new(8, 8, 8, 8), 300);
    z.a("delegated-target", Ipv4Addr::new(127, 0, 0, 2), 300);
    z.a("fed-target", Ipv4Addr::new(127, 0, 0, 3), 300);
    z.a("legacy-target", Ipv4Addr::new(127, 0, 0, 4), 300);
    z.a("ttl1", Ipv4Addr::new(127, 0, 0, 9), 1);
    // A delegated name with an SRV record.
    z.srv("_matrix-fed._tcp.srvhost", 7002, "delegated-target");
    // Both SRV kinds on `fed`: `_matrix-fed` must win.
    z.srv("_matrix-fed._tcp.fed", 7010, "fed-target");
    z.srv("_matrix._tcp.fed", 7011, "legacy-target");
    // Only the deprecated SRV on `legacy`.
    z.srv("_matrix._tcp.legacy", 7012, "legacy-target");
    z
}

async fn fixture() -> Fixture {
    fixture_with(|_| {}).await
}

async fn fixture_with(tweak: impl FnOnce(&mut DiscoveryConfig)) -> Fixture {
    let ca = test_ca();
    let dns_port = start_dns(zone()).await;
    let web = WellKnownServer::default();
    let web_port = web.start(ca.server.clone()).await;
    let mut cfg = config(dns_port, web_port, &ca);
    tweak(&mut cfg);
    Fixture {
        web,
        web_port,
        resolver: Resolver::new(cfg).unwrap(),
    }
}

fn addr(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

fn dns(name: &str) -> ServerName<'static> {
    ServerName::try_from(name.to_owned()).unwrap()
}

fn ip_name(ip: &str) -> ServerName<'static> {
    ServerName::IpAddress(ip.parse::<IpAddr>().unwrap().into())
}

fn host(n: &str) -> String {
    format!("{n}.example.test")
}

fn sorted(mut addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    addrs.sort();
    addrs
}

// --- Steps 1 and 2 -----------------------------------------------------------------------

#[tokio::test]
async fn ip_literals_use_the_ip_and_the_default_or_given_port() {
    let f = fixture().await;
    let r = f.resolver.resolve("127.0.0.1").await.unwrap();
    assert_eq!(r.addresses, vec![addr("127.0.0.1", FALLBACK)]);
    assert_eq!(r.host_header, "127.0.0.1");
    assert_eq!(r.tls_name, ip_name("127.0.0.1"));

    let r = f.resolver.resolve("127.0.0.1:8000").await.unwrap();
    assert_eq!(r.addresses, vec![addr("127.0.0.1", 8000)]);
    assert_eq!(r.host_header, "127.0.0.1:8000");

    let r = f.resolver.resolve("[::1]:8001").await.unwrap();
    assert_eq!(r.addresses, vec![addr("::1", 8001)]);
    assert_eq!(r.host_header, "[::1]:8001");
    assert_eq!(r.tls_name, ip_name("::1"));
    // No well-known fetch for IP literals.
    assert_eq!(f.web.hits("127.0.0.1"), 0);
}

#[tokio::test]
async fn hostname_with_port_uses_address_records_and_skips_well_known() {
    let f = fixture().await;
    let name = format!("{}:9000", host("fallback"));
    let r = f.resolver.resolve(&name).await.unwrap();
    assert_eq!(
        sorted(r.addresses.clone()),
        vec![addr("127.0.0.1", 9000), addr("::1", 9000)]
    );
    assert_eq!(r.host_header, name);
    assert_eq!(r.tls_name, dns(&host("fallback")));
    assert_eq!(f.web.hits(&host("fallback")), 0);
}

// --- Step 3: delegation -------------------------------------------------------------------

#[tokio::test]
async fn well_known_delegation_to_a_name_with_port() {
    let f = fixture().await;
    f.web.well_known(
        &host("deleg-port"),
        json(&format!("{}:7001", host("delegated-target")), None),
    );
    let r = f.resolver.resolve(&host("deleg-port")).await.unwrap();
    assert_eq!(r.addresses, vec![addr("127.0.0.2", 7001)]);
    assert_eq!(r.host_header, format!("{}:7001", host("delegated-target")));
    assert_eq!(r.tls_name, dns(&host("delegated-target")));
}

#[tokio::test]
async fn well_known_delegation_to_an_ip_literal() {
    let f = fixture().await;
    f.web
        .well_known(&host("deleg-ip"), json("[::1]:7003", None));
    let r = f.resolver.resolve(&host("deleg-ip")).await.unwrap();
    assert_eq!(r.addresses, vec![addr("::1", 7003)]);
    assert_eq!(r.host_header, "[::1]:7003");
    assert_eq!(r.tls_name, ip_name("::1"));
}

#[tokio::test]
async fn well_known_delegation_then_srv_of_the_delegated_name() {
    let f = fixture().await;
    f.web
        .well_known(&host("deleg-srv"), json(&host("srvhost"), None));
    let r = f.resolver.resolve(&host("deleg-srv")).await.unwrap();
    assert_eq!(r.addresses, vec![addr("127.0.0.2", 7002)]);
    // Host header and certificate name are the delegated name, not the SRV target.
    assert_eq!(r.host_header, host("srvhost"));
    assert_eq!(r.tls_name, dns(&host("srvhost")));
}

#[tokio::test]
async fn well_known_delegation_without_srv_falls_back_to_8448() {
    let f = fixture().await;
    f.web
        .well_known(&host("deleg-plain"), json(&host("plain"), None));
    let r = f.resolver.resolve(&host("deleg-plain")).await.unwrap();
    assert_eq!(r.addresses, vec![addr("127.0.0.1", FALLBACK)]);
    assert_eq!(r.host_header, host("plain"));
    assert_eq!(r.tls_name, dns(&host("plain")));
}

#[tokio::test]
async fn redirects_are_followed() {
    let f = fixture().await;
    f.web
        .well_known(&host("redirect"), redirect("/moved".to_owned()));
    f.web.set(
        &host("redirect"),
        "/moved",
        redirect(format!("https://{}:{}/final", host("target"), f.web_port)),
    );
    f.web.set(
        &format!("{}:{}", host("target"), f.web_port),
        "/final",
        json(&format!("{}:7004", host("delegated-target")), None),
    );
    let r = f.resolver.resolve(&host("redirect")).await.unwrap();
    assert_eq!(r.addresses, vec![addr("127.0.0.2", 7004)]);
}

#[tokio::test]
async fn redirect_loops_end_as_no_well_known() {
    let f = fixture().await;
    f.web.well_known(
        &host("redirect-loop"),
        redirect("/.well-known/matrix/server".to_owned()),
    );
    let r = f.resolver.resolve(&host("redirect-loop")).await.unwrap();
    assert_eq!(r.addresses, vec![addr("127.0.0.1", FALLBACK)]);
    assert_eq!(r.host_header, host("redirect-loop"));
    // The first request plus the 20 redirects Synapse follows.
    assert_eq!(f.web.hits(&host("redirect-loop")), 21);
}

#[tokio::test]
async fn invalid_well_known_responses_are_treated_as_absent() {
    let f = fixture().await;
    let invalid_json = Reply {
        status: StatusCode::OK,
        headers: vec![],
        body: "{not json".into(),
    };
    // Valid JSON, but over the 50 KiB cap.
    let oversized = Reply {
        status: StatusCode::OK,
        headers: vec![],
        body: format!(
            r#"{{"m.server": "{}:1", "pad": "{}"}}"#,
            host("delegated-target"),
            "x".repeat(60 * 1024)
        ),
    };
    let cases = [
        ("invalid-json", invalid_json),
        ("bad-server", json("not a server name!", None)),
        ("notfound", status(StatusCode::NOT_FOUND)),
        ("oversized", oversized),
    ];
    for (name, reply) in cases {
        f.web.well_known(&host(name), reply);
        let r = f.resolver.resolve(&host(name)).await.unwrap();
        assert_eq!(r.addresses, vec![addr("127.0.0.1", FALLBACK)], "{name}");
        assert_eq!(r.host_header, host(name), "{name}");
        assert_eq!(r.tls_name, dns(&host(name)), "{name}");
        assert_eq!(f.web.hits(&host(name)), 1, "{name}");
    }
}

// --- Steps 4-6: no delegation -------------------------------------------------------------

#[tokio::test]
async fn matrix_fed_srv_is_preferred_over_matrix_srv() {
    let f = fixture().await;
    let r = f.resolver.resolve(&host("fed")).await.unwrap();
    assert_eq!(r.addresses, vec![addr("127.0.0.3", 7010)]);
    assert_eq!(r.host_header, host("fed"));
    assert_eq!(r.tls_name, dns(&host("fed")));
}

#[tokio::test]
async fn deprecated_matrix_srv_is_used_when_it_is_the_only_one() {
    let f = fixture().await;
    let r = f.resolver.resolve(&host("legacy")).await.unwrap();
    assert_eq!(r.addresses, vec![addr("127.0.0.4", 7012)]);
    assert_eq!(r.host_header, host("legacy"));
}

#[tokio::test]
async fn no_well_known_and_no_srv_falls_back_to_8448() {
    let f = fixture().await;
    let r = f.resolver.resolve(&host("fallback")).await.unwrap();
    assert_eq!(
        sorted(r.addresses.clone()),
        vec![addr("127.0.0.1", FALLBACK), addr("::1", FALLBACK)]
    );
    assert_eq!(r.host_header, host("fallback"));
    assert_eq!(f.web.hits(&host("fallback")), 1);
}

#[tokio::test]
async fn bad_names_and_unknown_hosts_are_errors() {
    let f = fixture().await;
    let err = f.resolver.resolve(&host("nowhere")).await.unwrap_err();
    assert!(matches!(err, DiscoveryError::Dns(_)), "{err:?}");
    let err = f.resolver.resolve("not a name").await.unwrap_err();
    assert!(
        matches!(err, DiscoveryError::InvalidServerName(_)),
        "{err:?}"
    );
}

// --- Caching -------------------------------------------------------------------------------

#[tokio::test]
async fn well_known_is_cached_and_refetched_after_expiry() {
    let f = fixture().await;
    let target = host("delegated-target");
    f.web.well_known(
        &host("short"),
        json(&format!("{target}:7005"), Some("max-age=1")),
    );
    let first = f.resolver.resolve(&host("short")).await.unwrap();
    assert_eq!(first.addresses, vec![addr("127.0.0.2", 7005)]);
    let second = f.resolver.resolve(&host("short")).await.unwrap();
    assert_eq!(second, first);
    assert_eq!(
        f.web.hits(&host("short")),
        1,
        "second resolution hit the server"
    );

    // The new answer is seen once the first one expires.
    f.web.well_known(
        &host("short"),
        json(&format!("{target}:7006"), Some("max-age=1")),
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let third = f.resolver.resolve(&host("short")).await.unwrap();
    assert_eq!(third.addresses, vec![addr("127.0.0.2", 7006)]);
    assert_eq!(f.web.hits(&host("short")), 2);
}

#[tokio::test]
async fn temporary_failure_keeps_the_previous_answer_until_it_expires() {
    let f = fixture().await;
    let target = host("delegated-target");
    f.web.well_known(
        &host("short"),
        json(&format!("{target}:7005"), Some("max-age=2")),
    );
    f.resolver.resolve(&host("short")).await.unwrap();
    // In the refresh window (last 20 % of 2 s) the server is down (503).
    f.web
        .well_known(&host("short"), status(StatusCode::SERVICE_UNAVAILABLE));
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let r = f.resolver.resolve(&host("short")).await.unwrap();
    assert_eq!(
        f.web.hits(&host("short")),
        2,
        "no refetch in the refresh window"
    );
    assert_eq!(r.addresses, vec![addr("127.0.0.2", 7005)]);
    // Once the old answer has expired, the failure counts: no delegation.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = f.resolver.resolve(&host("short")).await.unwrap();
    assert_eq!(f.web.hits(&host("short")), 3);
    assert_eq!(r.addresses, vec![addr("127.0.0.1", FALLBACK)]);
}

#[tokio::test]
async fn dns_ttl_bounds_the_cached_result() {
    let f = fixture().await;
    f.web.well_known(
        &host("deleg-port"),
        json(&format!("{}:7001", host("ttl1")), None),
    );
    let r = f.resolver.resolve(&host("deleg-port")).await.unwrap();
    // The A record's 1 s TTL, not the well-known's 24 h default, bounds the result.
    let left = r.valid_until.saturating_duration_since(Instant::now());
    assert!(left <= Duration::from_secs(1), "{left:?}");
    // The well-known itself stays cached.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = f.resolver.resolve(&host("deleg-port")).await.unwrap();
    assert_eq!(again.addresses, vec![addr("127.0.0.9", 7001)]);
    assert_eq!(f.web.hits(&host("deleg-port")), 1);
}

#[tokio::test]
async fn failures_are_cached_with_back_off() {
    let f = fixture_with(|c| {
        c.well_known.error_cache_period = Duration::from_secs(1);
    })
    .await;
    f.web
        .well_known(&host("broken"), status(StatusCode::INTERNAL_SERVER_ERROR));
    let r = f.resolver.resolve(&host("broken")).await.unwrap();
    assert_eq!(r.addresses, vec![addr("127.0.0.1", FALLBACK)]);
    f.resolver.resolve(&host("broken")).await.unwrap();
    assert_eq!(f.web.hits(&host("broken")), 1, "the error was not cached");

    // After the error period the server is asked again, and a fixed well-known is used.
    f.web.well_known(
        &host("broken"),
        json(&format!("{}:7007", host("delegated-target")), None),
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = f.resolver.resolve(&host("broken")).await.unwrap();
    assert_eq!(r.addresses, vec![addr("127.0.0.2", 7007)]);
    assert_eq!(f.web.hits(&host("broken")), 2);
}

#[tokio::test]
async fn failure_after_a_valid_well_known_is_cached_briefly() {
    let f = fixture_with(|c| {
        // Recognisably different from the 1 h default for a never-valid domain.
        c.well_known.error_cache_period_after_valid = Duration::from_secs(1);
    })
    .await;
    f.web.well_known(
        &host("short"),
        json(
            &format!("{}:7005", host("delegated-target")),
            Some("max-age=1"),
        ),
    );
    f.resolver.resolve(&host("short")).await.unwrap();
    f.web
        .well_known(&host("short"), status(StatusCode::NOT_FOUND));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = f.resolver.resolve(&host("short")).await.unwrap();
    assert_eq!(r.addresses, vec![addr("127.0.0.1", FALLBACK)]);
    assert_eq!(f.web.hits(&host("short")), 2);
    f.resolver.resolve(&host("short")).await.unwrap();
    assert_eq!(f.web.hits(&host("short")), 2, "the error was not cached");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    f.resolver.resolve(&host("short")).await.unwrap();
    assert_eq!(
        f.web.hits(&host("short")),
        3,
        "the error was cached too long"
    );
}

// --- Private addresses ---------------------------------------------------------------------

#[tokio::test]
async fn private_targets_are_denied_when_configured() {
    let f = fixture_with(|c| c.allow_private_addresses = false).await;
    for name in ["127.0.0.1:8448", "[::1]", "10.0.0.1"] {
        let err = f.resolver.resolve(name).await.unwrap_err();
        assert!(
            matches!(err, DiscoveryError::PrivateAddress(_)),
            "{name}: {err:?}"
        );
    }
    let err = f
        .resolver
        .resolve(&format!("{}:8448", host("private")))
        .await
        .unwrap_err();
    assert!(matches!(err, DiscoveryError::PrivateAddress(_)), "{err:?}");
    // A name's public addresses stay; its private ones are dropped.
    let r = f
        .resolver
        .resolve(&format!("{}:8448", host("mixed")))
        .await
        .unwrap();
    assert_eq!(r.addresses, vec![addr("8.8.8.8", 8448)]);
    // The well-known fetch is filtered too: it never reaches the loopback server.
    f.web.well_known(
        &host("deleg-port"),
        json(&format!("{}:7001", host("mixed")), None),
    );
    let _ = f.resolver.resolve(&host("deleg-port")).await;
    assert_eq!(f.web.hits(&host("deleg-port")), 0);
}

// --- Real TLS to the resolved target -------------------------------------------------------

#[tokio::test]
async fn connect_verifies_the_certificate_for_the_resolved_name() {
    let f = fixture().await;
    f.web.well_known(
        &host("deleg-port"),
        json(&format!("{}:{}", host("target"), f.web_port), None),
    );
    let r = f.resolver.resolve(&host("deleg-port")).await.unwrap();
    assert_eq!(r.tls_name, dns(&host("target")));
    let mut stream = f.resolver.connect(&r).await.unwrap();
    let request = format!(
        "GET /.well-known/matrix/server HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        r.host_header
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    assert_eq!(f.web.hits(&r.host_header), 1);

    // An IP literal is checked against the certificate's IP address.
    let r = f
        .resolver
        .resolve(&format!("127.0.0.1:{}", f.web_port))
        .await
        .unwrap();
    f.resolver.connect(&r).await.unwrap();

    // A name the certificate does not cover is refused.
    let mut wrong = r.clone();
    wrong.tls_name = dns("other.invalid");
    let err = f.resolver.connect(&wrong).await.unwrap_err();
    assert!(matches!(err, DiscoveryError::Connect(_)), "{err:?}");
}
