//! The measured scenarios. Each returns a JSON report.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::{Barrier, watch};
use tokio::task::JoinSet;

use crate::client::{ClientError, Homeserver, User};
use crate::procstat;
use crate::stats::{ms, over_send_time, quantile, summary};

pub(crate) const PASSWORD: &str = "loadgen-password-1";

/// What every scenario needs.
pub struct Setup {
    pub hs: Homeserver,
    pub shared_secret: Option<String>,
    /// The server's root process, if CPU and memory are measured.
    pub pid: Option<u32>,
    /// The database server's root process, counted in CPU figures.
    pub db_pid: Option<u32>,
    /// Makes user names unique per run, so runs can share a server.
    pub run_id: String,
    /// Record a `perf` profile of the server during the measured phase.
    pub perf_record: Option<std::path::PathBuf>,
}

/// A `perf record` attached to the server for the measured phase only.
struct Profiler(Option<std::process::Child>);

impl Profiler {
    fn start(setup: &Setup) -> Self {
        let (Some(pid), Some(out)) = (setup.pid, setup.perf_record.as_ref()) else {
            return Self(None);
        };
        // DWARF unwinding works from `.eh_frame` alone, so a release build
        // without debug info still gives call graphs.
        let child = std::process::Command::new("perf")
            .args(["record", "-q", "-F", "499", "--call-graph", "dwarf,16384"])
            .arg("-p")
            .arg(pid.to_string())
            .arg("-o")
            .arg(out)
            .stdout(std::process::Stdio::null())
            .spawn();
        match child {
            Ok(child) => Self(Some(child)),
            Err(e) => {
                eprintln!("loadgen: cannot start perf: {e}");
                Self(None)
            }
        }
    }

    /// Stops recording (SIGINT lets perf write its file) and waits for it.
    fn stop(mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = std::process::Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

pub fn run_id() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    format!("{:x}", ms % 0xffff_ffff)
}

impl Setup {
    /// Registers `count` users named `lg<run>_<tag><i>`, four at a time
    /// (password hashing is deliberately slow on every server).
    pub(crate) async fn register(&self, tag: &str, count: usize) -> Result<Vec<User>, ClientError> {
        let mut users = Vec::with_capacity(count);
        for chunk_start in (0..count).step_by(4) {
            let mut set = JoinSet::new();
            for i in chunk_start..(chunk_start + 4).min(count) {
                let hs = self.hs.clone();
                let secret = self.shared_secret.clone();
                let localpart = format!("lg{}_{tag}{i}", self.run_id);
                set.spawn(async move {
                    let user = hs.register(&localpart, PASSWORD, secret.as_deref()).await;
                    (i, user)
                });
            }
            let mut batch: Vec<(usize, User)> = Vec::new();
            while let Some(joined) = set.join_next().await {
                if let Ok((i, user)) = joined {
                    batch.push((i, user?));
                }
            }
            batch.sort_by_key(|(i, _)| *i);
            users.extend(batch.into_iter().map(|(_, u)| u));
        }
        Ok(users)
    }

    /// CPU seconds used so far by the server and its database server.
    pub(crate) fn cpu(&self) -> Option<f64> {
        let db = self.db_pid.map_or(0.0, procstat::cpu_seconds);
        self.pid.map(|pid| procstat::cpu_seconds(pid) + db)
    }
}

/// Samples the resident memory of the server's process tree until dropped.
pub(crate) struct MemorySampler {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<u64>,
}

impl MemorySampler {
    pub(crate) fn start(pid: Option<u32>) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let Some(pid) = pid else { return 0 };
            let mut peak = 0;
            loop {
                peak = peak.max(procstat::rss_bytes(pid));
                tokio::select! {
                    _ = stopped.changed() => return peak.max(procstat::rss_bytes(pid)),
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        });
        Self { stop, task }
    }

    pub(crate) async fn peak(self) -> u64 {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

/// Sends between senders and observers: when each message was sent.
pub(crate) type SendTimes = Arc<Mutex<HashMap<String, Instant>>>;

/// U users send M messages each into one room, all at once; observers
/// long-poll `/sync` and note when each message reaches them.
pub async fn messages(
    setup: &Setup,
    users: usize,
    messages: usize,
    observers: usize,
    deadline: Duration,
) -> Result<Value, ClientError> {
    let users = setup.register("m", users.max(1)).await?;
    let room = users[0].create_room("loadgen").await?;
    for u in &users[1..] {
        u.join(&room).await?;
    }
    let total = users.len() * messages;
    let filter = observer_filter(&room);
    let observer_tokens = catch_up(&users[..observers.min(users.len())], &filter).await?;

    let sampler = MemorySampler::start(setup.pid);
    let baseline_rss = setup.pid.map(procstat::rss_bytes);
    let profiler = Profiler::start(setup);
    let cpu_before = setup.cpu();
    let sent: SendTimes = Arc::new(Mutex::new(HashMap::with_capacity(total)));
    let give_up = Instant::now() + deadline;

    let mut observer_set = JoinSet::new();
    for (u, since) in observer_tokens {
        let filter = filter.clone();
        observer_set.spawn(observe(u, since, filter, total, give_up));
    }

    let mut sends = send_concurrently(&users, &room, messages, &sent).await?;
    let send_seconds = sends.seconds;
    let heard = hear(observer_set, total, &sent).await?;
    let mut latencies = heard.latencies;
    let cpu = cpu_before.zip(setup.cpu()).map(|(b, a)| a - b);
    profiler.stop();
    let peak_rss = sampler.peak().await;

    let [median, p99, max] = [0.5, 0.99, 1.0].map(|q| quantile(&mut latencies, q).map(ms));
    Ok(json!({
        "scenario": "messages",
        "users": users.len(),
        "messages_per_user": messages,
        "messages": total,
        "observers": observers,
        "send_seconds": send_seconds,
        "messages_per_second": if send_seconds > 0.0 { total as f64 / send_seconds } else { 0.0 },
        "latency_ms": {
            "median": median,
            "p99": p99,
            "max": max,
            "samples": latencies.len(),
            "missing": heard.missing,
            "limited_timelines": heard.limited,
            "by_send_time": over_send_time(&heard.by_send_time, 10),
        },
        "send_round_trip_ms": summary(&mut sends.round_trips),
        "cpu_seconds": cpu,
        "cpu_ms_per_message": cpu.map(|c| c * 1000.0 / total.max(1) as f64),
        "baseline_rss_bytes": baseline_rss,
        "peak_rss_bytes": setup.pid.map(|_| peak_rss),
    }))
}

/// The `/sync` filter observers use: `room`'s messages only.
pub(crate) fn observer_filter(room: &str) -> String {
    json!({
        "room": {
            "rooms": [room],
            "timeline": { "limit": 100, "types": ["m.room.message"] },
            "state": { "lazy_load_members": true },
        },
        "presence": { "types": [] },
        "account_data": { "types": [] },
    })
    .to_string()
}

/// Observers first catch up, so that they then wait for new events only:
/// each with its `since` token.
pub(crate) async fn catch_up(
    observers: &[User],
    filter: &str,
) -> Result<Vec<(User, String)>, ClientError> {
    let mut tokens = Vec::with_capacity(observers.len());
    for u in observers {
        let body = u.sync(None, 0, Some(filter)).await?;
        let next = body["next_batch"]
            .as_str()
            .ok_or(ClientError::Missing("sync", "next_batch"))?
            .to_owned();
        tokens.push((u.clone(), next));
    }
    Ok(tokens)
}

/// How a round of concurrent sends went.
pub(crate) struct Sends {
    /// From the first send to the last answer.
    pub(crate) seconds: f64,
    /// Each send request's time to its answer.
    pub(crate) round_trips: Vec<Duration>,
}

/// Every user sends `messages` messages into `room`, all starting at once,
/// noting in `sent` when each body went out.
pub(crate) async fn send_concurrently(
    users: &[User],
    room: &str,
    messages: usize,
    sent: &SendTimes,
) -> Result<Sends, ClientError> {
    let start_line = Arc::new(Barrier::new(users.len()));
    let mut sender_set = JoinSet::new();
    for (i, u) in users.iter().cloned().enumerate() {
        let room = room.to_owned();
        let sent = sent.clone();
        let start_line = start_line.clone();
        sender_set.spawn(async move {
            start_line.wait().await;
            let first = Instant::now();
            let mut round_trips = Vec::with_capacity(messages);
            for n in 0..messages {
                let body = format!("loadgen {i} {n}");
                let at = Instant::now();
                if let Ok(mut times) = sent.lock() {
                    times.insert(body.clone(), at);
                }
                u.send_text(&room, &format!("lg{i}-{n}"), &body).await?;
                round_trips.push(at.elapsed());
            }
            Ok::<_, ClientError>((first, Instant::now(), round_trips))
        });
    }
    let mut first_send: Option<Instant> = None;
    let mut last_send: Option<Instant> = None;
    let mut all_round_trips = Vec::new();
    while let Some(joined) = sender_set.join_next().await {
        if let Ok(result) = joined {
            let (first, last, round_trips) = result?;
            first_send = Some(first_send.map_or(first, |f| f.min(first)));
            last_send = Some(last_send.map_or(last, |l| l.max(last)));
            all_round_trips.extend(round_trips);
        }
    }
    Ok(Sends {
        seconds: match (first_send, last_send) {
            (Some(f), Some(l)) => l.duration_since(f).as_secs_f64(),
            _ => 0.0,
        },
        round_trips: all_round_trips,
    })
}

/// What all observers saw of the `total` messages in `sent`.
pub(crate) struct Heard {
    /// Send-to-sync latency of every message at every observer.
    pub(crate) latencies: Vec<Duration>,
    /// The same, each with when its message was sent.
    pub(crate) by_send_time: Vec<(Instant, Duration)>,
    /// Messages some observer never saw before its deadline.
    pub(crate) missing: usize,
    /// Sync responses whose timeline was cut short.
    pub(crate) limited: usize,
    /// When the last message reached the last observer.
    pub(crate) last_seen: Option<Instant>,
}

/// Waits for the observers and matches what they saw with `sent`.
pub(crate) async fn hear(
    mut observers: JoinSet<Result<Seen, ClientError>>,
    total: usize,
    sent: &SendTimes,
) -> Result<Heard, ClientError> {
    let sent = sent.lock().map(|m| m.clone()).unwrap_or_default();
    let mut heard = Heard {
        latencies: Vec::with_capacity(total * observers.len()),
        by_send_time: Vec::with_capacity(total * observers.len()),
        missing: 0,
        limited: 0,
        last_seen: None,
    };
    while let Some(joined) = observers.join_next().await {
        if let Ok(result) = joined {
            let seen = result?;
            heard.limited += seen.limited;
            heard.missing += total.saturating_sub(seen.at.len());
            for (body, at) in seen.at {
                if let Some(sent_at) = sent.get(&body) {
                    let latency = at.saturating_duration_since(*sent_at);
                    heard.latencies.push(latency);
                    heard.by_send_time.push((*sent_at, latency));
                    heard.last_seen = Some(heard.last_seen.map_or(at, |l| l.max(at)));
                }
            }
        }
    }
    Ok(heard)
}

/// What one observer saw: when each message body first reached it.
pub(crate) struct Seen {
    pub(crate) at: HashMap<String, Instant>,
    pub(crate) limited: usize,
}

pub(crate) async fn observe(
    user: User,
    mut since: String,
    filter: String,
    expect: usize,
    give_up: Instant,
) -> Result<Seen, ClientError> {
    let mut seen = Seen {
        at: HashMap::with_capacity(expect),
        limited: 0,
    };
    while seen.at.len() < expect && Instant::now() < give_up {
        let body = user.sync(Some(&since), 30_000, Some(&filter)).await?;
        let now = Instant::now();
        if let Some(next) = body["next_batch"].as_str() {
            since = next.to_owned();
        }
        let Some(rooms) = body["rooms"]["join"].as_object() else {
            continue;
        };
        for (room_id, room) in rooms {
            for event in room["timeline"]["events"].as_array().into_iter().flatten() {
                if let Some(text) = event["content"]["body"].as_str() {
                    seen.at.entry(text.to_owned()).or_insert(now);
                }
            }
            if room["timeline"]["limited"] == json!(true) {
                // A gap: what the timeline left out reached the client
                // now too, as a real client pages it in from `prev_batch`.
                seen.limited += 1;
                if let Some(from) = room["timeline"]["prev_batch"].as_str() {
                    fill_gap(&user, room_id, from, now, &mut seen).await?;
                }
            }
        }
    }
    Ok(seen)
}

/// Pages back through a timeline gap from `from` (a `prev_batch`) until a
/// page brings nothing the observer has not seen, noting the new messages
/// as seen `at`. Bounded, so a broken server cannot keep it paging.
async fn fill_gap(
    user: &User,
    room: &str,
    from: &str,
    at: Instant,
    seen: &mut Seen,
) -> Result<(), ClientError> {
    const MAX_PAGES: usize = 50;
    let mut from = from.to_owned();
    for _ in 0..MAX_PAGES {
        let page = user.messages_before(room, &from, 100).await?;
        let chunk = page["chunk"].as_array().cloned().unwrap_or_default();
        let mut new = 0;
        for event in &chunk {
            if let Some(text) = event["content"]["body"].as_str()
                && !seen.at.contains_key(text)
            {
                seen.at.insert(text.to_owned(), at);
                new += 1;
            }
        }
        // Events can reach a server out of order (fetched history lands
        // after newer events), so one known event does not end the gap: a
        // page of nothing new does.
        match page["end"].as_str() {
            Some(end) if new > 0 => from = end.to_owned(),
            _ => break,
        }
    }
    Ok(())
}

/// One user in `rooms` rooms of `per_room` messages; times full initial
/// syncs, each from a freshly logged-in device (servers may cache a
/// device's sync responses).
pub async fn initial_sync(
    setup: &Setup,
    rooms: usize,
    per_room: usize,
    repeats: usize,
) -> Result<Value, ClientError> {
    let user = setup
        .register("s", 1)
        .await?
        .pop()
        .ok_or(ClientError::Missing("register", "user"))?;
    for r in 0..rooms {
        let room = user.create_room(&format!("room {r}")).await?;
        for n in 0..per_room {
            user.send_text(
                &room,
                &format!("is{r}-{n}"),
                &format!("message {n} in room {r}"),
            )
            .await?;
        }
    }
    let mut times = Vec::with_capacity(repeats);
    let mut rooms_seen = 0;
    let mut bytes = 0;
    // Only the syncs are counted: each login's password check would
    // otherwise dominate the CPU figure.
    let mut cpu: Option<f64> = Some(0.0);
    for _ in 0..repeats.max(1) {
        let device = setup.hs.login(&user.user_id, PASSWORD).await?;
        let cpu_before = setup.cpu();
        let started = Instant::now();
        let body = device.sync(None, 0, None).await?;
        times.push(started.elapsed());
        let used = cpu_before.zip(setup.cpu()).map(|(b, a)| a - b);
        cpu = cpu.zip(used).map(|(sum, c)| sum + c);
        rooms_seen = body["rooms"]["join"].as_object().map_or(0, |m| m.len());
        bytes = body.to_string().len();
    }
    let [min, median, max] = [0.0, 0.5, 1.0].map(|q| quantile(&mut times, q).map(ms));
    Ok(json!({
        "scenario": "initial-sync",
        "rooms": rooms,
        "messages_per_room": per_room,
        "rooms_in_response": rooms_seen,
        "response_bytes": bytes,
        "repeats": times.len(),
        "ms": { "min": min, "median": median, "max": max },
        "cpu_seconds_per_sync": cpu.map(|c| c / times.len().max(1) as f64),
    }))
}
