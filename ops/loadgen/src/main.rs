//! Load generator for Matrix homeservers (Myelin, Synapse, any other):
//! drives a server through the client-server API only and measures what
//! operators size machines by. See `ops/bench/` for the side-by-side runs.
//!
//! - `messages`: U users in one room each send M messages concurrently
//!   while observers long-poll `/sync`; reports messages per second,
//!   send-to-sync latency (median, p99), CPU seconds per message of the
//!   server's process tree and its peak resident memory.
//! - `initial-sync`: one user in R rooms of N messages each; reports the
//!   time of a full initial `/sync` from fresh devices.
//! - `federation`: U users of one server send M messages each into a room
//!   that O users of another server joined over federation and long-poll;
//!   reports delivered messages per second, send-to-sync latency across
//!   the two servers, and each server's CPU per message and peak memory.

mod client;
mod federation;
mod procstat;
mod scenarios;
mod stats;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "loadgen", about = "Load and measure a Matrix homeserver")]
struct Cli {
    /// The client API's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8008")]
    url: String,
    /// Register users through `/_synapse/admin/v1/register` with this
    /// shared secret (otherwise through open registration).
    #[arg(long)]
    shared_secret: Option<String>,
    /// PID of the server's root process, for CPU and memory figures.
    #[arg(long)]
    pid: Option<u32>,
    /// PID of the database server's root process (PostgreSQL's
    /// postmaster): its CPU time is counted as the server's too, since
    /// an SQLite server does that work in its own process.
    #[arg(long)]
    db_pid: Option<u32>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Record a `perf record --call-graph dwarf` profile of `--pid` during
    /// the measured phase into this file.
    #[arg(long)]
    perf_record: Option<std::path::PathBuf>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Concurrent senders in one room, observers long-polling /sync.
    Messages {
        #[arg(long, default_value_t = 20)]
        users: usize,
        #[arg(long, default_value_t = 50)]
        messages: usize,
        /// How many of the users also long-poll /sync (latency is measured
        /// by every observer for every message).
        #[arg(long, default_value_t = 5)]
        observers: usize,
        /// Give up waiting for observers after this many seconds.
        #[arg(long, default_value_t = 300)]
        deadline_secs: u64,
    },
    /// Initial sync of a user in many rooms.
    InitialSync {
        #[arg(long, default_value_t = 50)]
        rooms: usize,
        #[arg(long, default_value_t = 20)]
        messages_per_room: usize,
        /// Timed initial syncs, each from a new device.
        #[arg(long, default_value_t = 5)]
        repeats: usize,
    },
    /// Senders on this server (`--url`), observers on another that joins
    /// the room over federation.
    Federation {
        /// The other server's client API base URL.
        #[arg(long)]
        remote_url: String,
        /// PID of the other server's root process.
        #[arg(long)]
        remote_pid: Option<u32>,
        #[arg(long, default_value_t = 10)]
        users: usize,
        #[arg(long, default_value_t = 50)]
        messages: usize,
        #[arg(long, default_value_t = 3)]
        observers: usize,
        #[arg(long, default_value_t = 300)]
        deadline_secs: u64,
    },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let hs = client::Homeserver::new(&cli.url);
    let setup = scenarios::Setup {
        hs,
        shared_secret: cli.shared_secret,
        pid: cli.pid,
        db_pid: cli.db_pid,
        run_id: scenarios::run_id(),
        perf_record: cli.perf_record,
    };
    let report = match cli.scenario {
        Scenario::Messages {
            users,
            messages,
            observers,
            deadline_secs,
        } => {
            scenarios::messages(
                &setup,
                users,
                messages,
                observers,
                std::time::Duration::from_secs(deadline_secs),
            )
            .await
        }
        Scenario::InitialSync {
            rooms,
            messages_per_room,
            repeats,
        } => scenarios::initial_sync(&setup, rooms, messages_per_room, repeats).await,
        Scenario::Federation {
            remote_url,
            remote_pid,
            users,
            messages,
            observers,
            deadline_secs,
        } => {
            let remote = scenarios::Setup {
                hs: client::Homeserver::new(&remote_url),
                shared_secret: setup.shared_secret.clone(),
                pid: remote_pid,
                db_pid: None,
                run_id: setup.run_id.clone(),
                perf_record: None,
            };
            federation::throughput(
                &setup,
                &remote,
                users,
                messages,
                observers,
                std::time::Duration::from_secs(deadline_secs),
            )
            .await
        }
    };
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(1);
        }
    };
    let text = serde_json::to_string_pretty(&report).unwrap_or_default();
    println!("{text}");
    if let Some(path) = cli.json
        && let Err(e) = std::fs::write(&path, text + "\n")
    {
        eprintln!("loadgen: cannot write {}: {e}", path.display());
        std::process::exit(1);
    }
}
