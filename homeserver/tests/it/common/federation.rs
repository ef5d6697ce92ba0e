//! Several `myelin` servers that federate over real TLS and real DNS on loopback: a test CA
//! (rcgen) issues each server a certificate for its name, a DNS server (hickory-server)
//! answers `_matrix-fed._tcp.<name>` SRV and `<name>` A records, and every server trusts
//! the CA, asks that DNS server, and may contact loopback addresses.
//!
//! ```ignore
//! let fed = Federation::start(backend, &["alpha.test", "beta.test"]).await;
//! let alpha = &fed["alpha.test"];
//! ```

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hickory_server::Server;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::rr::rdata::{A, SOA, SRV};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::net::{TcpListener, UdpSocket};

use super::{Backend, TestServer, free_port, unique};

/// The DNS zone all test servers live in.
const ZONE: &str = "test.";

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ascii"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A certificate authority made for one test run.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    pub root: CertificateDer<'static>,
}

impl TestCa {
    pub fn new() -> Self {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Myelin federation test CA");
        let issuer = rcgen::CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        let root = issuer.der().clone();
        Self { issuer, root }
    }

    pub fn root_pem(&self) -> String {
        pem("CERTIFICATE", &self.root)
    }

    /// A leaf certificate for `name` (PEM chain and PEM PKCS#8 key); `serial` tells
    /// certificates for the same name apart.
    pub fn issue(&self, name: &str, serial: u64) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("leaf params");
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        (
            pem("CERTIFICATE", cert.der()) + &pem("CERTIFICATE", &self.root),
            pem("PRIVATE KEY", &key.serialize_der()),
        )
    }
}

/// Serves SRV and A records for `servers` (name, federation port) on 127.0.0.1, UDP and
/// TCP on one port, for as long as the test's runtime lives. Returns the port.
pub async fn start_dns(servers: &[(String, u16)]) -> u16 {
    let origin = Name::from_str(ZONE).expect("zone");
    let mut handler = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
        origin.clone(),
        ZoneType::Primary,
        AxfrPolicy::Deny,
    );
    let soa = SOA::new(
        Name::from_str("ns.test.").expect("ns"),
        Name::from_str("admin.test.").expect("admin"),
        1,
        3600,
        600,
        86400,
        60,
    );
    handler.upsert_mut(Record::from_rdata(origin.clone(), 3600, RData::SOA(soa)), 1);
    for (name, port) in servers {
        let host = Name::from_str(&format!("{name}.")).expect("host name");
        let srv_name = Name::from_str(&format!("_matrix-fed._tcp.{name}.")).expect("srv name");
        handler.upsert_mut(
            Record::from_rdata(host.clone(), 300, RData::A(A::from(Ipv4Addr::LOCALHOST))),
            1,
        );
        handler.upsert_mut(
            Record::from_rdata(srv_name, 300, RData::SRV(SRV::new(10, 10, *port, host))),
            1,
        );
    }
    let mut catalog = Catalog::new();
    catalog.upsert(LowerName::new(&origin), vec![Arc::new(handler)]);
    loop {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("dns udp");
        let port = udp.local_addr().expect("addr").port();
        let Ok(tcp) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await else {
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

/// The host part of a server name (`127.0.0.1:8448` -> `127.0.0.1`): what its certificate
/// names and what TLS verifies.
pub fn tls_host(name: &str) -> &str {
    name.rsplit_once(':').map_or(name, |(host, _)| host)
}

/// One server of a [`Federation`].
pub struct FedServer {
    pub name: String,
    pub server: TestServer,
    /// Port of the HTTPS federation listener on 127.0.0.1.
    pub federation_port: u16,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl std::ops::Deref for FedServer {
    type Target = TestServer;
    fn deref(&self) -> &TestServer {
        &self.server
    }
}

/// Servers that reach each other by name over TLS.
pub struct Federation {
    pub ca: TestCa,
    pub servers: Vec<FedServer>,
    pub dns_port: u16,
    dir: PathBuf,
}

impl std::ops::Index<&str> for Federation {
    type Output = FedServer;
    fn index(&self, name: &str) -> &FedServer {
        self.servers
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no server {name}"))
    }
}

impl Federation {
    /// Starts one server per name (all in [`ZONE`], e.g. `alpha.test`).
    pub async fn start(backend: Backend, names: &[&str]) -> Self {
        Self::start_with(backend, names, &[]).await
    }

    /// [`Federation::start`] with extra configuration for every server.
    pub async fn start_with(backend: Backend, names: &[&str], extra_env: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(unique("myelin_fed"));
        std::fs::create_dir_all(&dir).expect("federation dir");
        let ca = TestCa::new();
        let ca_path = dir.join("ca.pem");
        std::fs::write(&ca_path, ca.root_pem()).expect("write CA");
        let ports: Vec<(String, u16)> = names
            .iter()
            .map(|n| ((*n).to_owned(), free_port()))
            .collect();
        Self::launch(backend, dir, ca, ports, extra_env).await
    }

    /// One server named by an IP literal with its port, `127.0.0.1:<port>`, which needs no
    /// DNS: how other homeservers that only use the system resolver (Synapse) reach it.
    pub async fn start_ip_literal(backend: Backend, extra_env: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(unique("myelin_fed"));
        std::fs::create_dir_all(&dir).expect("federation dir");
        let ca = TestCa::new();
        std::fs::write(dir.join("ca.pem"), ca.root_pem()).expect("write CA");
        let port = free_port();
        let ports = vec![(format!("127.0.0.1:{port}"), port)];
        Self::launch(backend, dir, ca, ports, extra_env).await
    }

    async fn launch(
        backend: Backend,
        dir: PathBuf,
        ca: TestCa,
        ports: Vec<(String, u16)>,
        extra_env: &[(&str, &str)],
    ) -> Self {
        let ca_path = dir.join("ca.pem");
        let named: Vec<(String, u16)> = ports
            .iter()
            .filter(|(name, _)| !name.contains(':'))
            .cloned()
            .collect();
        let dns_port = start_dns(&named).await;
        let mut servers = Vec::new();
        for (name, port) in ports {
            let file = name.replace(':', "_");
            let cert_path = dir.join(format!("{file}.crt"));
            let key_path = dir.join(format!("{file}.key"));
            let (cert, key) = ca.issue(tls_host(&name), 1);
            std::fs::write(&cert_path, cert).expect("write cert");
            std::fs::write(&key_path, key).expect("write key");
            let listen = format!("127.0.0.1:{port}");
            let nameserver = format!("127.0.0.1:{dns_port}");
            let cert_s = cert_path.display().to_string();
            let key_s = key_path.display().to_string();
            let ca_s = ca_path.display().to_string();
            let mut env: Vec<(&str, &str)> = vec![
                ("MYELIN__SERVER__NAME", name.as_str()),
                ("MYELIN__LISTEN__FEDERATION", listen.as_str()),
                ("MYELIN__FEDERATION__TLS_CERTIFICATE_PATH", cert_s.as_str()),
                ("MYELIN__FEDERATION__TLS_PRIVATE_KEY_PATH", key_s.as_str()),
                ("MYELIN__FEDERATION__CA_FILE", ca_s.as_str()),
                ("MYELIN__FEDERATION__NAMESERVERS", nameserver.as_str()),
                ("MYELIN__FEDERATION__ALLOW_PRIVATE_ADDRESSES", "true"),
            ];
            env.extend_from_slice(extra_env);
            let server = TestServer::start_with(backend, &env).await;
            servers.push(FedServer {
                name,
                server,
                federation_port: port,
                cert_path,
                key_path,
            });
        }
        let fed = Self {
            ca,
            servers,
            dns_port,
            dir,
        };
        for s in &fed.servers {
            fed.wait_for_federation_listener(s).await;
        }
        fed
    }

    async fn wait_for_federation_listener(&self, server: &FedServer) {
        for _ in 0..200 {
            if let Ok((status, _)) = self
                .try_request(server, "GET", "/_matrix/federation/v1/version", &[], None)
                .await
                && status == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "federation listener of {} did not come up:\n{}",
            server.name,
            server.log()
        );
    }

    fn tls_connector(&self) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.root.clone()).expect("root");
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    async fn connect(
        &self,
        server: &FedServer,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let tcp =
            tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, server.federation_port)).await?;
        let name = ServerName::try_from(tls_host(&server.name).to_owned()).expect("tls name");
        self.tls_connector().connect(name, tcp).await
    }

    /// Sends one request over a new HTTPS connection to `server`'s federation listener (as
    /// another server would, but with whatever headers the test wants) and returns the status
    /// and JSON body.
    pub async fn request(
        &self,
        server: &FedServer,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> (u16, Value) {
        self.try_request(server, method, path_and_query, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path_and_query} to {}: {e}", server.name))
    }

    async fn try_request(
        &self,
        server: &FedServer,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Value), String> {
        use http_body_util::{BodyExt, Full};
        let tls = self.connect(server).await.map_err(|e| e.to_string())?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut req = http::Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(
                "host",
                format!("{}:{}", tls_host(&server.name), server.federation_port),
            );
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let req = req
            .body(Full::new(bytes::Bytes::from(body.unwrap_or_default())))
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok((status, json))
    }

    /// Where test files (CA, certificates) live.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opens a TLS connection to `server`'s federation port trusting the test CA, and
    /// returns the leaf certificate it presented.
    pub async fn presented_certificate(&self, server: &FedServer) -> CertificateDer<'static> {
        let tls = self.connect(server).await.expect("TLS handshake");
        tls.get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .expect("a certificate")
            .clone()
            .into_owned()
    }
}

impl Drop for Federation {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            std::fs::remove_dir_all(&self.dir).ok();
        }
    }
}

/// A test playing one server of a [`Federation`] towards another: it signs requests and
/// builds PDUs with that server's real signing key (read from its data directory), so the
/// receiver fetches the key from the real server.
pub struct ActAs {
    pub name: String,
    pub key: myelin_proto::signing::KeyPair,
}

impl ActAs {
    pub fn new(server: &FedServer) -> Self {
        let text = std::fs::read_to_string(server.data_dir.join("signing.key")).expect("key file");
        let key = myelin_proto::signing::parse_key_file(&text)
            .expect("key")
            .remove(0);
        Self {
            name: server.name.clone(),
            key,
        }
    }

    /// Sends a request signed as this server (X-Matrix over the JSON body) to `to`.
    pub async fn request(
        &self,
        fed: &Federation,
        to: &FedServer,
        method: &str,
        uri: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let bytes = body.map(|b| serde_json::to_vec(b).expect("json"));
        let header = myelin_federation::request_auth::sign_request(
            &self.key,
            <&ruma::ServerName>::try_from(self.name.as_str()).expect("name"),
            <&ruma::ServerName>::try_from(to.name.as_str()).expect("name"),
            myelin_federation::request_auth::SignedRequest {
                method,
                uri,
                body: bytes.as_deref().unwrap_or(b""),
            },
        )
        .expect("sign");
        let header = header.to_str().expect("ascii").to_owned();
        fed.request(to, method, uri, &[("authorization", header)], bytes)
            .await
    }

    /// `PUT /send/{txn_id}` to `to` with these PDUs and EDUs.
    pub async fn send_txn(
        &self,
        fed: &Federation,
        to: &FedServer,
        txn_id: &str,
        pdus: &[Value],
        edus: &[Value],
    ) -> (u16, Value) {
        let body = serde_json::json!({
            "origin": self.name,
            "origin_server_ts": now_ms(),
            "pdus": pdus,
            "edus": edus,
        });
        let uri = format!("/_matrix/federation/v1/send/{txn_id}");
        self.request(fed, to, "PUT", &uri, Some(&body)).await
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A room on another server as a test sees it through the client API, to build PDUs that
/// fit it: its version and the IDs of its current state events.
pub struct RoomView {
    pub room_id: String,
    pub version: myelin_proto::RoomVersion,
    pub state: std::collections::HashMap<(String, String), String>,
}

impl RoomView {
    /// Reads the room's current state with a member's client.
    pub async fn read(client: &super::Client, room_id: &str) -> Self {
        let (status, events) = client
            .get(&format!(
                "/_matrix/client/v3/rooms/{}/state",
                super::enc(room_id)
            ))
            .await;
        assert_eq!(status, 200, "{events}");
        let mut state = std::collections::HashMap::new();
        let mut version = myelin_proto::RoomVersion::DEFAULT;
        for e in events.as_array().expect("state list") {
            let t = e["type"].as_str().expect("type").to_owned();
            let k = e["state_key"].as_str().expect("state_key").to_owned();
            if t == "m.room.create" {
                let v = e["content"]["room_version"].as_str().unwrap_or("1");
                version = v.parse().expect("known room version");
            }
            state.insert((t, k), e["event_id"].as_str().expect("id").to_owned());
        }
        Self {
            room_id: room_id.to_owned(),
            version,
            state,
        }
    }

    /// An event signed by `actor`, sent by `sender`, citing the auth events the room's
    /// state (as read, plus what the test added) selects for it.
    #[allow(clippy::too_many_arguments)]
    pub fn event(
        &self,
        actor: &ActAs,
        sender: &str,
        event_type: &str,
        state_key: Option<&str>,
        content: Value,
        prevs: &[String],
        depth: i64,
    ) -> myelin_proto::Pdu {
        let content = myelin_proto::canonical_json::parse_object(content.to_string().as_bytes())
            .expect("object");
        let sender = ruma::OwnedUserId::try_from(sender).expect("user");
        let room_id = ruma::OwnedRoomId::try_from(self.room_id.as_str()).expect("room");
        let mut auth: Vec<ruma::OwnedEventId> = myelin_proto::auth::auth_types_for_event(
            self.version.rules(),
            event_type,
            &sender,
            state_key,
            &content,
        )
        .iter()
        .filter_map(|k| self.state.get(k))
        .map(|id| ruma::OwnedEventId::try_from(id.as_str()).expect("id"))
        .collect();
        auth.sort();
        auth.dedup();
        let mut builder =
            myelin_proto::PduBuilder::new(event_type, state_key, content, &sender, Some(&room_id));
        builder.prev_events = prevs
            .iter()
            .map(|p| ruma::OwnedEventId::try_from(p.as_str()).expect("id"))
            .collect();
        builder.auth_events = auth;
        builder.depth = depth;
        builder.origin_server_ts = now_ms();
        builder
            .build(self.version, &actor.name, &actor.key)
            .expect("build event")
    }
}

/// A PDU as JSON for a transaction body.
pub fn pdu_json(pdu: &myelin_proto::Pdu) -> Value {
    serde_json::from_slice(&pdu.to_canonical_bytes()).expect("json")
}

/// The newest event of a room, as a member's client sees it.
pub async fn latest_event(client: &super::Client, room: &str) -> String {
    let (status, body) = client
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1",
            super::enc(room)
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    body["chunk"][0]["event_id"]
        .as_str()
        .expect("event id")
        .to_owned()
}

/// Joins `user` (a user of `actor`'s server) to `room` on `to` by sending the join in a
/// transaction, as joins over federation would leave it. `member` is a local member's
/// client on `to`. Returns the room as seen after the join, and the join.
pub async fn join_via_send(
    fed: &Federation,
    to: &FedServer,
    actor: &ActAs,
    member: &super::Client,
    room: &str,
    user: &str,
) -> (RoomView, myelin_proto::Pdu) {
    let mut view = RoomView::read(member, room).await;
    let prev = latest_event(member, room).await;
    let join = view.event(
        actor,
        user,
        "m.room.member",
        Some(user),
        serde_json::json!({"membership": "join"}),
        &[prev],
        50,
    );
    let txn = format!("join-{}", join.event_id());
    let (status, body) = actor.send_txn(fed, to, &txn, &[pdu_json(&join)], &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["pdus"][join.event_id().as_str()],
        serde_json::json!({}),
        "{body}\n{}",
        to.log()
    );
    view.state.insert(
        ("m.room.member".into(), user.into()),
        join.event_id().to_string(),
    );
    (view, join)
}
/// The signing key a test server generated in its data directory.
pub fn signing_key(server: &FedServer) -> myelin_proto::signing::KeyPair {
    let text = std::fs::read_to_string(server.data_dir.join("signing.key")).expect("key file");
    myelin_proto::signing::parse_key_file(&text)
        .expect("key")
        .remove(0)
}

impl Federation {
    /// A request to `to` signed as `from` with `from`'s real key: what `from` itself would
    /// send, but with whatever body the test wants.
    pub async fn signed_request(
        &self,
        from: &FedServer,
        to: &FedServer,
        method: &str,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        use myelin_federation::request_auth::{SignedRequest, sign_request};
        let bytes = body.map(|b| serde_json::to_vec(b).expect("json"));
        let name = |s: &str| ruma::OwnedServerName::try_from(s).expect("server name");
        let header = sign_request(
            &signing_key(from),
            &name(&from.name),
            &name(&to.name),
            SignedRequest {
                method,
                uri: path_and_query,
                body: bytes.as_deref().unwrap_or_default(),
            },
        )
        .expect("sign");
        let header = header.to_str().expect("ascii header").to_owned();
        self.request(
            to,
            method,
            path_and_query,
            &[("authorization", header)],
            bytes,
        )
        .await
    }
}
