//! Test harness: runs the real `myelin` binary on a free loopback port with
//! its own data directory, against a SQLite file or a fresh PostgreSQL
//! database, and talks to it over HTTP like a client does.
//!
//! PostgreSQL tests need `MYELIN_TEST_POSTGRES` (e.g.
//! `postgres://postgres@127.0.0.1:5433`, as `ops/test.sh` sets up). Without
//! it they fail, unless `MYELIN_TEST_SKIP_POSTGRES=1` says to skip them, so
//! a missing database never passes silently.

#![allow(dead_code)]

pub mod federation;
pub mod synapse;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs `$name(backend)` once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => { $(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::common::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::common::skip_postgres() {
                    return;
                }
                super::$name($crate::common::Backend::Postgres).await
            }
        }
    )* };
}

pub fn skip_postgres() -> bool {
    if std::env::var("MYELIN_TEST_POSTGRES").is_ok() {
        return false;
    }
    if std::env::var("MYELIN_TEST_SKIP_POSTGRES").as_deref() == Ok("1") {
        eprintln!("skipping a PostgreSQL test: MYELIN_TEST_SKIP_POSTGRES=1");
        return true;
    }
    panic!(
        "MYELIN_TEST_POSTGRES is not set: run the suite through ops/test.sh, \
         or set MYELIN_TEST_SKIP_POSTGRES=1 to skip PostgreSQL tests"
    );
}

static NEXT: AtomicU32 = AtomicU32::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    )
}

/// Why a launch did not come up.
enum Launch {
    /// The port was taken between picking it and binding it.
    PortTaken,
    Failed(String),
}

/// A loopback port that is free now and that no other caller in this process
/// will be given.
///
/// Ports come from below the kernel's ephemeral range, walking a counter.
/// Asking the kernel for port 0 instead hands out an ephemeral port, and
/// between releasing it and the server binding it, any outgoing connection
/// of the suite (to PostgreSQL, to another test server) may take it as its
/// local port. A federation port is also written into the other servers'
/// DNS records, so a server cannot move to another one after a clash.
pub fn free_port() -> u16 {
    static NEXT_PORT: std::sync::OnceLock<std::sync::atomic::AtomicU32> =
        std::sync::OnceLock::new();
    let (low, high) = port_range();
    let span = u32::from(high - low);
    let next = NEXT_PORT.get_or_init(|| {
        // Test binaries run one after another; a per-process start keeps
        // one that exited from leaving its ports in TIME_WAIT for the next.
        std::sync::atomic::AtomicU32::new(std::process::id().wrapping_mul(7919) % span)
    });
    for _ in 0..span {
        let offset = next.fetch_add(1, Ordering::Relaxed) % span;
        let port = low + u16::try_from(offset).expect("offset within span");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {low}..{high}");
}

/// The ports [`free_port`] hands out: the 10,000 just below the ephemeral
/// range (`ip_local_port_range`, 32768 by default), and above 1024.
fn port_range() -> (u16, u16) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let high = ephemeral_low.max(2024);
    (high.saturating_sub(10_000).max(1024), high)
}

async fn create_postgres_database() -> String {
    let base = std::env::var("MYELIN_TEST_POSTGRES").expect("MYELIN_TEST_POSTGRES");
    let name = unique("myelin_test");
    let admin = sea_orm::Database::connect(format!("{base}/postgres"))
        .await
        .expect("connect to PostgreSQL");
    use sea_orm::ConnectionTrait;
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create database");
    admin.close().await.ok();
    format!("{base}/{name}")
}

/// A running `myelin` process.
pub struct TestServer {
    child: Option<Child>,
    pub port: u16,
    pub data_dir: PathBuf,
    pub backend: Backend,
    /// The database the server uses, for [`create_user`].
    pub db_url: String,
    env: Vec<(String, String)>,
    http: reqwest::Client,
}

impl TestServer {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, &[]).await
    }

    /// Starts a server; `extra_env` sets configuration (`MYELIN__...`).
    pub async fn start_with(backend: Backend, extra_env: &[(&str, &str)]) -> Self {
        let data_dir = std::env::temp_dir().join(unique("myelin_data"));
        std::fs::create_dir_all(&data_dir).expect("data dir");
        let port = free_port();
        let mut env = vec![
            (
                "MYELIN__SERVER__NAME".to_owned(),
                "test.localhost".to_owned(),
            ),
            (
                "MYELIN__SERVER__DATA_DIR".to_owned(),
                data_dir.display().to_string(),
            ),
            (
                "MYELIN__LISTEN__CLIENT".to_owned(),
                format!("127.0.0.1:{port}"),
            ),
            // Tests measure behaviour, not rate limits, unless they ask.
            (
                "MYELIN__RATE_LIMITS__REGISTRATION__PER_SECOND".to_owned(),
                "0".to_owned(),
            ),
            (
                "MYELIN__RATE_LIMITS__LOGIN__PER_SECOND".to_owned(),
                "0".to_owned(),
            ),
            (
                "MYELIN__RATE_LIMITS__MESSAGE__PER_SECOND".to_owned(),
                "0".to_owned(),
            ),
            ("MYELIN__LOGGING__FILTER".to_owned(), "info".to_owned()),
        ];
        let db_url = if backend == Backend::Postgres {
            let url = create_postgres_database().await;
            env.push(("MYELIN__DATABASE__URL".to_owned(), url.clone()));
            url
        } else {
            format!("sqlite://{}?mode=rwc", data_dir.join("myelin.db").display())
        };
        for (k, v) in extra_env {
            env.retain(|(key, _)| key != k);
            env.push(((*k).to_owned(), (*v).to_owned()));
        }
        let mut server = Self {
            child: None,
            port,
            data_dir,
            backend,
            db_url,
            env,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
        };
        // The port was free when picked, but another test's server may take
        // it before ours binds: then ours exits, and it starts again on
        // another port.
        for _ in 0..5 {
            match server.launch().await {
                Ok(()) => return server,
                Err(Launch::PortTaken) => {
                    server.port = free_port();
                    let listen = format!("127.0.0.1:{}", server.port);
                    for (k, v) in &mut server.env {
                        if k == "MYELIN__LISTEN__CLIENT" {
                            v.clone_from(&listen);
                        }
                    }
                }
                Err(Launch::Failed(why)) => panic!("{why}"),
            }
        }
        panic!("myelin found no free port in 5 tries:\n{}", server.log());
    }

    /// Starts the binary and waits until it answers. Ready means this
    /// process logged that it listens, not just that the port answers:
    /// another test's server may hold the port this one failed to bind.
    async fn launch(&mut self) -> Result<(), Launch> {
        let log_start = self.log().len();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.join("server.log"))
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_myelin"))
            .arg("serve")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start myelin");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        let this_launch = |log: String| log.get(log_start..).unwrap_or_default().to_owned();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                let log = this_launch(self.log());
                if log.contains("cannot listen on") {
                    return Err(Launch::PortTaken);
                }
                return Err(Launch::Failed(format!(
                    "myelin exited with {status} on start:\n{log}"
                )));
            }
            if this_launch(self.log()).contains("myelin is listening")
                && let Ok(resp) = self
                    .http
                    .get(self.url("/_matrix/client/versions"))
                    .send()
                    .await
                && resp.status() == StatusCode::OK
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Launch::Failed(format!(
                    "myelin did not start within 60 s:\n{}",
                    self.log()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("server.log")).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Kills the process with SIGKILL: no shutdown, no flushing.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// Starts the server again on the same data (after [`TestServer::kill`]).
    pub async fn restart(&mut self) {
        self.kill();
        match self.launch().await {
            Ok(()) => {}
            Err(Launch::PortTaken) => panic!("another server took the port:\n{}", self.log()),
            Err(Launch::Failed(why)) => panic!("{why}"),
        }
    }

    /// Runs a `myelin` subcommand on this server's configuration and data
    /// (for operator commands like `register-user`).
    pub fn run_cli(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_myelin"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run myelin");
        // The pipe is closed (dropped) either way, so the command sees EOF.
        if let (Some(mut pipe), Some(input)) = (child.stdin.take(), stdin) {
            pipe.write_all(input.as_bytes()).expect("stdin");
        }
        child.wait_with_output().expect("myelin output")
    }

    /// A client without an access token.
    pub fn client(&self) -> Client {
        Client {
            http: self.http.clone(),
            base: self.url(""),
            token: None,
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            std::fs::remove_dir_all(&self.data_dir).ok();
        } else {
            eprintln!("server data and log kept in {}", self.data_dir.display());
        }
    }
}

/// A client-server API client for tests: JSON in, status and JSON out.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    pub base: String,
    pub token: Option<String>,
}

impl Client {
    /// A client of any server's client API at `base` (e.g. another homeserver's).
    pub fn new(base: &str) -> Client {
        Client {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
            base: base.to_owned(),
            token: None,
        }
    }

    pub fn with_token(&self, token: &str) -> Client {
        Client {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let bytes = resp.bytes().await.expect("body");
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, json)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.delete(format!("{}{path}", self.base)))
            .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(self.http.put(format!("{}{path}", self.base)).json(body))
            .await
    }

    /// A PUT that reports a dead server instead of panicking.
    pub async fn try_put(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<(StatusCode, Value), reqwest::Error> {
        let req = self.http.put(format!("{}{path}", self.base)).json(body);
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// Any method with a JSON body (e.g. DELETE with UIA `auth`).
    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> (StatusCode, Value) {
        self.send(
            self.http
                .request(method, format!("{}{path}", self.base))
                .json(body),
        )
        .await
    }

    /// Sends raw bytes as the body (for malformed JSON tests).
    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/json")
                .body(body),
        )
        .await
    }

    /// Sends raw bytes as the body with any method (malformed JSON on PUT).
    pub async fn send_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        self.send(
            self.http
                .request(method, format!("{}{path}", self.base))
                .header("content-type", "application/json")
                .body(body),
        )
        .await
    }

    /// The raw text of a GET (for non-JSON endpoints like /metrics).
    pub async fn get_text(&self, path: &str) -> (StatusCode, String) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request");
        let status = resp.status();
        (status, resp.text().await.expect("text"))
    }
}

/// Asserts a spec error: status and `errcode`.
#[track_caller]
pub fn assert_error(resp: &(StatusCode, Value), status: u16, errcode: &str) {
    assert_eq!(
        resp.0.as_u16(),
        status,
        "unexpected status; body: {}",
        resp.1
    );
    assert_eq!(
        resp.1["errcode"], errcode,
        "unexpected errcode; body: {}",
        resp.1
    );
}

/// Registers a local user through the client API; returns the user ID
/// and an access token.
pub async fn create_user(server: &TestServer, localpart: &str) -> (String, String) {
    let (user_id, token, _) = register(&server.client(), localpart, "correct horse battery").await;
    (user_id, token)
}

/// [`create_user`] for each of `localparts`: each user's ID and a client
/// with their token.
pub async fn users<const N: usize>(
    server: &TestServer,
    localparts: [&str; N],
) -> [(String, Client); N] {
    let mut out = Vec::with_capacity(N);
    for localpart in localparts {
        let (user_id, token) = create_user(server, localpart).await;
        out.push((user_id, server.client().with_token(&token)));
    }
    match out.try_into() {
        Ok(users) => users,
        Err(_) => unreachable!("one user per localpart"),
    }
}

/// A room `creator` creates (`body` is the `createRoom` request): its ID.
pub async fn create_room(creator: &Client, body: &Value) -> String {
    let (status, resp) = creator.post("/_matrix/client/v3/createRoom", body).await;
    assert_eq!(status, 200, "{resp}");
    resp["room_id"].as_str().expect("room_id").to_owned()
}

/// A room `creator` creates (`body` is the `createRoom` request) and each
/// of `joiners` joins: its ID.
pub async fn joined_room(creator: &Client, body: &Value, joiners: &[&Client]) -> String {
    let room = create_room(creator, body).await;
    for joiner in joiners {
        let (status, resp) = joiner
            .post(
                &format!("/_matrix/client/v3/rooms/{}/join", enc(&room)),
                &serde_json::json!({}),
            )
            .await;
        assert_eq!(status, 200, "{resp}");
    }
    room
}

/// Percent-encodes a path segment (room and event IDs carry `!`, `$`, `:`).
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Registers `localpart` with `password` (the `m.login.dummy` flow) and
/// returns `(user_id, access_token, device_id)`.
pub async fn register(
    client: &Client,
    localpart: &str,
    password: &str,
) -> (String, String, String) {
    let (status, body) = client
        .post(
            "/_matrix/client/v3/register",
            &serde_json::json!({
                "username": localpart,
                "password": password,
                "auth": { "type": "m.login.dummy" },
            }),
        )
        .await;
    assert_eq!(status, 200, "registering {localpart}: {body}");
    (
        body["user_id"].as_str().expect("user_id").to_owned(),
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned(),
        body["device_id"].as_str().expect("device_id").to_owned(),
    )
}

/// Logs in with a password (`user` is a localpart or a user ID) and
/// returns the whole response body.
pub async fn login(client: &Client, user: &str, password: &str) -> (StatusCode, Value) {
    client
        .post(
            "/_matrix/client/v3/login",
            &serde_json::json!({
                "type": "m.login.password",
                "identifier": { "type": "m.id.user", "user": user },
                "password": password,
            }),
        )
        .await
}

/// Logs in with a password and returns `(access_token, device_id)`.
pub async fn login_ok(client: &Client, user: &str, password: &str) -> (String, String) {
    let (status, body) = login(client, user, password).await;
    assert_eq!(status, 200, "login as {user}: {body}");
    (
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned(),
        body["device_id"].as_str().expect("device_id").to_owned(),
    )
}

/// The `m.login.password` UIA stage for `user` in `session`.
pub fn password_auth(user: &str, password: &str, session: &Value) -> Value {
    serde_json::json!({
        "type": "m.login.password",
        "identifier": { "type": "m.id.user", "user": user },
        "password": password,
        "session": session,
    })
}
