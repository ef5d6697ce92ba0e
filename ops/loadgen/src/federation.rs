//! Federation throughput: senders on one server, observers on another.
//!
//! U users of the origin server share a public room with O users of the
//! remote server, who join it over federation. The senders send M messages
//! each, all at once; the observers long-poll `/sync` on the remote server.
//! What is measured is the whole path between two servers: the origin
//! persisting and queueing each event, its federation sender batching it
//! into transactions, the remote checking signatures, hashes and auth and
//! persisting it, and the remote's sync waking. Works for any pair of
//! servers that can federate with each other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::client::ClientError;
use crate::scenarios::{
    MemorySampler, SendTimes, Setup, catch_up, hear, observe, observer_filter, send_concurrently,
};
use crate::stats::{ms, over_send_time, quantile};

/// The server name in a user ID: everything after the localpart's colon
/// (which keeps a port, as in `@a:127.0.0.1:8448`).
fn server_of(user_id: &str) -> Option<&str> {
    user_id.split_once(':').map(|(_, server)| server)
}

pub async fn throughput(
    origin: &Setup,
    remote: &Setup,
    users: usize,
    messages: usize,
    observers: usize,
    deadline: Duration,
) -> Result<Value, ClientError> {
    let senders = origin.register("f", users.max(1)).await?;
    let watchers = remote.register("o", observers.max(1)).await?;
    let room = senders[0].create_room("loadgen federation").await?;
    let origin_name = server_of(&senders[0].user_id)
        .ok_or(ClientError::Missing("register", "a server name in user_id"))?
        .to_owned();
    for u in &senders[1..] {
        u.join(&room).await?;
    }
    let joined_at = Instant::now();
    for u in &watchers {
        u.join_via(&room, &origin_name).await?;
    }
    let join_seconds = joined_at.elapsed().as_secs_f64() / watchers.len() as f64;

    let total = senders.len() * messages;
    let filter = observer_filter(&room);
    let tokens = catch_up(&watchers, &filter).await?;

    let origin_memory = MemorySampler::start(origin.pid);
    let remote_memory = MemorySampler::start(remote.pid);
    let cpu_before = (origin.cpu(), remote.cpu());
    let sent: SendTimes = Arc::new(Mutex::new(HashMap::with_capacity(total)));
    let give_up = Instant::now() + deadline;
    let mut observer_set = JoinSet::new();
    for (u, since) in tokens {
        observer_set.spawn(observe(u, since, filter.clone(), total, give_up));
    }

    let started = Instant::now();
    let send_seconds = send_concurrently(&senders, &room, messages, &sent)
        .await?
        .seconds;
    let heard = hear(observer_set, total, &sent).await?;
    let cpu_origin = cpu_before.0.zip(origin.cpu()).map(|(b, a)| a - b);
    let cpu_remote = cpu_before.1.zip(remote.cpu()).map(|(b, a)| a - b);
    let peak_origin = origin_memory.peak().await;
    let peak_remote = remote_memory.peak().await;

    // Throughput is what reaches the other side: messages over the time
    // from the first send until the last observer saw the last message.
    let delivered_seconds = heard
        .last_seen
        .map_or(0.0, |t| t.saturating_duration_since(started).as_secs_f64());
    let mut latencies = heard.latencies;
    let [median, p99, max] = [0.5, 0.99, 1.0].map(|q| quantile(&mut latencies, q).map(ms));
    let per_message = |cpu: Option<f64>| cpu.map(|c| c * 1000.0 / total.max(1) as f64);
    Ok(json!({
        "scenario": "federation",
        "users": senders.len(),
        "messages_per_user": messages,
        "messages": total,
        "observers": watchers.len(),
        "remote_join_seconds": join_seconds,
        "send_seconds": send_seconds,
        "delivered_seconds": delivered_seconds,
        // Only meaningful when nothing is `missing`.
        "messages_per_second": if delivered_seconds > 0.0 { total as f64 / delivered_seconds } else { 0.0 },
        "latency_ms": {
            "median": median,
            "p99": p99,
            "max": max,
            "samples": latencies.len(),
            "missing": heard.missing,
            "limited_timelines": heard.limited,
            "by_send_time": over_send_time(&heard.by_send_time, 10),
        },
        "origin": {
            "cpu_seconds": cpu_origin,
            "cpu_ms_per_message": per_message(cpu_origin),
            "peak_rss_bytes": origin.pid.map(|_| peak_origin),
        },
        "remote": {
            "cpu_seconds": cpu_remote,
            "cpu_ms_per_message": per_message(cpu_remote),
            "peak_rss_bytes": remote.pid.map(|_| peak_remote),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::server_of;

    #[test]
    fn server_names_keep_their_port() {
        assert_eq!(server_of("@a:example.org"), Some("example.org"));
        assert_eq!(server_of("@a:127.0.0.1:8448"), Some("127.0.0.1:8448"));
        assert_eq!(server_of("@a:[::1]:8448"), Some("[::1]:8448"));
        assert_eq!(server_of("nonsense"), None);
    }
}
