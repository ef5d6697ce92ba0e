//! Runs the real `myelin` binary for the SDK tests, the way the server's
//! own integration tests do (`homeserver/tests/common/mod.rs`): a free
//! loopback port, a temporary data directory, configuration through
//! `MYELIN__...` variables, and a SQLite file or a fresh PostgreSQL
//! database.
//!
//! `MYELIN_BIN` names the binary (ops/test.sh builds it and sets it).
//! PostgreSQL runs need `MYELIN_TEST_POSTGRES`; without it they fail unless
//! `MYELIN_TEST_SKIP_POSTGRES=1` says to skip them, as in the server's tests.

#![allow(dead_code)]

use std::future::IntoFuture;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

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
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name(super::support::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                if super::support::skip_postgres() {
                    return;
                }
                super::$name(super::support::Backend::Postgres).await
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

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{nanos}", std::process::id())
}

async fn create_postgres_database() -> String {
    let base = std::env::var("MYELIN_TEST_POSTGRES").expect("MYELIN_TEST_POSTGRES");
    let name = unique("myelin_sdk_test");
    let (client, connection) =
        tokio_postgres::connect(&format!("{base}/postgres"), tokio_postgres::NoTls)
            .await
            .expect("connect to PostgreSQL");
    let driver = tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create database");
    drop(client);
    driver.await.ok();
    format!("{base}/{name}")
}

/// A running `myelin` process; killed when dropped. When the test panics,
/// the end of the server's log is printed to help find out why.
pub struct Server {
    child: Child,
    pub port: u16,
    data_dir: TempDir,
}

impl Server {
    pub async fn start(backend: Backend) -> Self {
        let bin = std::env::var("MYELIN_BIN").unwrap_or_else(|_| {
            panic!(
                "MYELIN_BIN is not set: build the server (cargo build -p myelin-homeserver \
                 --bin myelin) and point MYELIN_BIN at the binary, or run ops/test.sh"
            )
        });
        let data_dir = tempfile::Builder::new()
            .prefix("myelin_sdk_data")
            .tempdir()
            .expect("data dir");
        let port = free_port();
        let mut cmd = Command::new(&bin);
        cmd.arg("serve")
            .env("MYELIN__SERVER__NAME", "sdk.localhost")
            .env("MYELIN__SERVER__DATA_DIR", data_dir.path())
            .env("MYELIN__LISTEN__CLIENT", format!("127.0.0.1:{port}"))
            // The story logs in four times and sends bursts of messages and
            // to-device requests: it tests behaviour, not rate limits.
            .env("MYELIN__RATE_LIMITS__REGISTRATION__PER_SECOND", "0")
            .env("MYELIN__RATE_LIMITS__LOGIN__PER_SECOND", "0")
            .env("MYELIN__RATE_LIMITS__MESSAGE__PER_SECOND", "0")
            .env("MYELIN__LOGGING__FILTER", "info");
        if backend == Backend::Postgres {
            cmd.env("MYELIN__DATABASE__URL", create_postgres_database().await);
        }
        let log = std::fs::File::create(data_dir.path().join("server.log")).expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin}: {e}"));
        let mut server = Self {
            child,
            port,
            data_dir,
        };
        server.wait_until_up().await;
        server
    }

    async fn wait_until_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("myelin exited with {status} on start:\n{}", self.log());
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "myelin did not start within 60 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's request counters (`endpoint`, `method`, `status`
    /// labels) from its Prometheus metrics, one line each.
    pub async fn request_counts(&self) -> Vec<String> {
        let response = bounded(
            "read /metrics",
            matrix_sdk::reqwest::get(format!("{}/metrics", self.url())),
        )
        .await
        .expect("GET /metrics");
        let text = bounded("read /metrics", response.text())
            .await
            .expect("metrics body");
        text.lines()
            .filter(|l| l.starts_with("myelin_http_requests_total{"))
            .map(str::to_owned)
            .collect()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            eprintln!("---- last lines of the server log ----");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// A temporary directory for one client's stores.
pub fn store_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("myelin_sdk_store")
        .tempdir()
        .expect("store dir")
}

/// How long any one step of a story may take before the test fails.
pub const STEP: Duration = Duration::from_secs(60);

/// Evaluates `$check` (an `Option`, typically `async { .. }.await`) every
/// 100 ms until it is `Some`, for at most [`STEP`], and yields the value;
/// panics naming what it waited for otherwise. A macro rather than a
/// function so the check can borrow whatever it likes.
#[macro_export]
macro_rules! wait_for {
    ($what:expr, $check:expr $(,)?) => {{
        let deadline = std::time::Instant::now() + $crate::support::STEP;
        loop {
            if let Some(value) = $check {
                break value;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {}",
                $what
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }};
}

/// Runs `step`, failing the test if it takes longer than [`STEP`].
pub async fn bounded<T>(what: &str, step: impl IntoFuture<Output = T>) -> T {
    tokio::time::timeout(STEP, step)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}
