//! A real Synapse on loopback, federating with Myelin test servers over TLS.
//!
//! Synapse resolves names with the system resolver, so it cannot use the test DNS server
//! of [`Federation`]: both sides are named by IP literal and port (`127.0.0.1:<port>`),
//! and both certificates carry an IP-address SAN from the same test CA. Synapse trusts
//! only that CA (`federation_custom_ca_list`), fetches Myelin's signing keys from Myelin
//! itself (`trusted_key_servers: []`) and may contact loopback (a blacklist without it).
//!
//! Synapse comes from the virtualenv `MYELIN_SYNAPSE_VENV` (`ops/test.sh` installs it with
//! `ops/synapse/install.sh`). Without it the stories skip, except in CI (`CI` set), where a
//! skipped acceptance test must not look green.
//!
//! ```ignore
//! let Some(venv) = synapse::venv() else { return };
//! let fed = Federation::start_ip_literal(backend, &[]).await;
//! let synapse = Synapse::start(&venv, &fed).await;
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha1::Sha1;

use super::federation::Federation;
use super::{Client, free_port};

const SHARED_SECRET: &str = "interop-shared-secret";

/// The Synapse virtualenv, or `None` (with the reason printed) when the stories should
/// skip. Panics in CI when Synapse is missing.
pub fn venv() -> Option<PathBuf> {
    match std::env::var_os("MYELIN_SYNAPSE_VENV") {
        Some(v) => {
            let venv = PathBuf::from(v);
            assert!(
                venv.join("bin/python").exists(),
                "MYELIN_SYNAPSE_VENV={} has no bin/python; run ops/synapse/install.sh",
                venv.display()
            );
            Some(venv)
        }
        None if std::env::var_os("CI").is_some() => panic!(
            "CI is set but MYELIN_SYNAPSE_VENV is not: the Synapse interop stories cannot \
             run; run the suite through ops/test.sh, which installs Synapse"
        ),
        None => {
            eprintln!(
                "skipping a Synapse interop story: MYELIN_SYNAPSE_VENV is not set \
                 (ops/test.sh installs Synapse and sets it)"
            );
            None
        }
    }
}

/// A running Synapse.
pub struct Synapse {
    child: Option<Child>,
    venv: PathBuf,
    /// Its server name, `127.0.0.1:<federation port>`.
    pub name: String,
    pub client_port: u16,
    pub federation_port: u16,
    dir: PathBuf,
}

impl Synapse {
    /// Starts Synapse with a certificate from `fed`'s test CA, and waits until it serves
    /// the client API.
    pub async fn start(venv: &Path, fed: &Federation) -> Self {
        let dir = fed.dir().join("synapse");
        std::fs::create_dir_all(&dir).expect("synapse dir");
        let (cert, key) = fed.ca.issue("127.0.0.1", 2);
        std::fs::write(dir.join("tls.crt"), cert).expect("write cert");
        std::fs::write(dir.join("tls.key"), key).expect("write key");
        let signing = myelin_proto::signing::KeyPair::generate().expect("signing key");
        std::fs::write(dir.join("signing.key"), signing.to_line() + "\n").expect("signing key");
        std::fs::write(dir.join("log.yaml"), log_config(&dir)).expect("write log config");
        // The ports are free when picked, but only Synapse's once it binds them, after
        // seconds of start-up: a server another story starts meanwhile can take one first.
        // Synapse then exits at once, and starts again on other ports (and a new database,
        // since its server name names the port).
        const ATTEMPTS: usize = 5;
        for attempt in 1..=ATTEMPTS {
            for file in [
                "homeserver.db",
                "homeserver.db-wal",
                "homeserver.db-shm",
                "homeserver.log",
                "stdout.log",
            ] {
                std::fs::remove_file(dir.join(file)).ok();
            }
            let client_port = free_port();
            let federation_port = free_port();
            let name = format!("127.0.0.1:{federation_port}");
            std::fs::write(
                dir.join("homeserver.yaml"),
                config(&dir, &name, client_port, fed),
            )
            .expect("write config");
            let mut synapse = Self {
                child: None,
                venv: venv.to_owned(),
                name,
                client_port,
                federation_port,
                dir: dir.clone(),
            };
            match synapse.launch().await {
                Ok(()) => return synapse,
                Err(log) if attempt < ATTEMPTS && log.contains("Address already in use") => {}
                Err(log) => panic!("synapse exited on start:\n{log}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Starts Synapse and waits until it serves the client API; `Err` with the tail of
    /// its log if it exits first.
    async fn launch(&mut self) -> Result<(), String> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("stdout.log"))
            .expect("stdout log");
        let child = Command::new(self.venv.join("bin/python"))
            .args(["-m", "synapse.app.homeserver", "-c"])
            .arg(self.dir.join("homeserver.yaml"))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("start synapse");
        self.child = Some(child);
        self.wait_ready().await
    }

    /// Kills Synapse (SIGKILL: no goodbye to anyone).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// Starts Synapse again on the same data and ports (after [`Synapse::kill`]).
    pub async fn restart(&mut self) {
        self.kill();
        if let Err(log) = self.launch().await {
            panic!("synapse exited on restart:\n{log}");
        }
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let client = self.client();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!("exit status {status}\n{}", self.log_tail()));
            }
            if let Ok(resp) = reqwest::get(client.base.clone() + "/_matrix/client/versions").await
                && resp.status() == reqwest::StatusCode::OK
            {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "synapse did not start within 90 s:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A client of Synapse's client API, without a token.
    pub fn client(&self) -> Client {
        Client::new(&format!("http://127.0.0.1:{}", self.client_port))
    }

    /// Registers `localpart` with the shared secret (`/_synapse/admin/v1/register`) and
    /// returns `(user_id, access_token, device_id)`.
    pub async fn register(&self, localpart: &str, password: &str) -> (String, String, String) {
        const PATH: &str = "/_synapse/admin/v1/register";
        let client = self.client();
        let (status, body) = client.get(PATH).await;
        assert_eq!(status, 200, "{body}");
        let nonce = body["nonce"].as_str().expect("nonce").to_owned();
        let mut mac =
            <Hmac<Sha1> as KeyInit>::new_from_slice(SHARED_SECRET.as_bytes()).expect("hmac key");
        for part in [nonce.as_str(), localpart, password] {
            mac.update(part.as_bytes());
            mac.update(b"\0");
        }
        mac.update(b"notadmin");
        let mac: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let (status, body) = client
            .post(
                PATH,
                &json!({
                    "nonce": nonce, "username": localpart, "password": password,
                    "admin": false, "mac": mac,
                }),
            )
            .await;
        assert_eq!(status, 200, "registering {localpart} on synapse: {body}");
        let field = |k: &str| body[k].as_str().expect(k).to_owned();
        (field("user_id"), field("access_token"), field("device_id"))
    }

    /// The last lines of Synapse's log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.dir)
    }

    /// Synapse's whole log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("homeserver.log")).unwrap_or_default()
    }

    /// The warnings and errors Synapse logged, apart from [`SYNAPSE_NOISE`]: how it reports
    /// what it refused or failed to process from Myelin, which a story's own checks may not
    /// notice.
    pub fn complaints(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| {
                l.contains(" WARNING ") || l.contains(" ERROR ") || l.contains(" CRITICAL ")
            })
            .filter(|l| !SYNAPSE_NOISE.iter().any(|noise| l.contains(noise)))
            .map(str::to_owned)
            .collect()
    }

    /// Reads [`Synapse::log_tail`] whenever called, without borrowing `self`.
    pub fn log_reader(&self) -> impl Fn() -> String + use<> {
        let dir = self.dir.clone();
        move || log_tail(&dir)
    }
}

/// Warnings Synapse logs about itself, never about what Myelin sent; everything else it
/// logs at WARNING or above fails a story unless the story expects it.
const SYNAPSE_NOISE: &[&str] = &[
    // The start-up banner (version, licence, "STARTING SERVER") is logged as warnings.
    " synapse.config.logger ",
];

impl Drop for Synapse {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
            eprintln!("synapse files kept in {}", self.dir.display());
        }
    }
}

fn log_tail(dir: &Path) -> String {
    let mut text = String::new();
    for file in ["stdout.log", "homeserver.log"] {
        let log = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let from = lines.len().saturating_sub(150);
        text.push_str(&format!("--- synapse {file} (last lines)\n"));
        text.push_str(&lines[from..].join("\n"));
        text.push('\n');
    }
    text
}

/// `homeserver.yaml`: SQLite, shared-secret registration, rate limits out of the way, a
/// TLS federation listener, and federation trust limited to the test CA.
fn config(dir: &Path, name: &str, client_port: u16, fed: &Federation) -> String {
    let d = dir.display();
    let ca = fed.dir().join("ca.pem");
    let ca = ca.display();
    let federation_port = name.rsplit_once(':').map_or("8448", |(_, p)| p);
    let unlimited = "{per_second: 100000, burst_count: 100000}";
    format!(
        r#"server_name: "{name}"
pid_file: {d}/homeserver.pid
listeners:
  - {{port: {client_port}, bind_addresses: ['127.0.0.1'], type: http, tls: false, x_forwarded: false, resources: [{{names: [client], compress: false}}]}}
  - {{port: {federation_port}, bind_addresses: ['127.0.0.1'], type: http, tls: true, resources: [{{names: [federation, keys], compress: false}}]}}
tls_certificate_path: {d}/tls.crt
tls_private_key_path: {d}/tls.key
federation_verify_certificates: true
federation_custom_ca_list: ["{ca}"]
database:
  name: sqlite3
  args: {{database: {d}/homeserver.db}}
log_config: {d}/log.yaml
media_store_path: {d}/media
signing_key_path: {d}/signing.key
registration_shared_secret: {SHARED_SECRET}
# Password hashing at its cheapest: each registration or login otherwise costs about a
# second of CPU, which the stories do not measure.
bcrypt_rounds: 4
report_stats: false
trusted_key_servers: []
suppress_key_server_warning: true
# Not `ip_range_whitelist`: Synapse checks IP-literal server names against the blacklist
# alone, so loopback must be off the blacklist (this one only blocks a documentation range).
ip_range_blacklist: ['192.0.2.0/24']
default_room_version: "12"
presence: {{enabled: false}}
rc_message: {unlimited}
rc_registration: {unlimited}
rc_login:
  address: {unlimited}
  account: {unlimited}
  failed_attempts: {unlimited}
rc_joins:
  local: {unlimited}
  remote: {unlimited}
rc_joins_per_room: {unlimited}
rc_room_creation: {unlimited}
rc_invites:
  per_room: {unlimited}
  per_user: {unlimited}
  per_issuer: {unlimited}
rc_key_requests: {unlimited}
rc_federation: {{window_size: 1000, sleep_limit: 10000, sleep_delay: 0, reject_limit: 10000, concurrent: 100}}
"#
    )
}

fn log_config(dir: &Path) -> String {
    format!(
        "version: 1
formatters: {{plain: {{format: '%(asctime)s %(levelname)s %(name)s %(request)s %(message)s'}}}}
filters: {{context: {{(): synapse.logging.context.LoggingContextFilter}}}}
handlers: {{file: {{class: logging.FileHandler, filename: {}/homeserver.log, formatter: plain, filters: [context]}}}}
root: {{level: INFO, handlers: [file]}}
disable_existing_loggers: false
",
        dir.display()
    )
}
