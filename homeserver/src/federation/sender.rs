//! The outbound federation sender: delivers our room events (PDUs) and
//! EDUs to the other servers in our rooms, one transaction at a time per
//! destination, in order.
//!
//! - **Durable.** Our events are queued per destination in the transaction
//!   that stores them (`storage::federation_outbox`), and to-device
//!   messages in `to_device_outbox` and our users' device-list changes in
//!   `device_list_outbox`, so nothing acknowledged to a client is lost to
//!   a failure or a restart: [`Sender::resume`] restarts every
//!   destination with a backlog. Typing notifications and read receipts
//!   are kept in memory only, as in Synapse: they are worth little once
//!   stale.
//! - **One worker per destination**, started when there is something to
//!   send and ending when its queue is empty. It sends up to
//!   [`MAX_PDUS`] PDUs and [`MAX_EDUS`] EDUs per transaction (the limits
//!   receivers enforce), and deletes what the destination accepted.
//! - **Back-off.** A destination that cannot be reached (network errors,
//!   timeouts, 5xx, 429, 401, 404 `M_UNRECOGNIZED`) is retried after an
//!   exponentially growing, jittered wait ([`RetryPolicy`]); its health is
//!   stored, so a restart does not hammer it. Any request from that
//!   server ends the wait at once ([`Sender::on_inbound`]): it is back.
//!   Any other 4xx answer is a refusal of the transaction itself, which
//!   repeating would not change: its contents are dropped (logged), as
//!   Synapse does, so one bad event cannot block a destination forever.
//! - **Catch-up.** When more than [`CATCH_UP_BACKLOG`] events wait for a
//!   destination (a long outage), only the newest of each room is sent;
//!   the destination fetches what lies between with `get_missing_events`
//!   and the state endpoints, as it does after a Synapse outage.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::StatusCode;
use myelin_federation::client::{ClientError, FederationClient};
use ruma::api::federation::transactions::send_transaction_message;
use ruma::serde::Raw;
use ruma::{MilliSecondsSinceUnixEpoch, OwnedServerName, OwnedTransactionId, ServerName};
use sea_orm::DbErr;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::Notify;

use super::announce;
use super::backoff::RetryPolicy;
use crate::metrics::Metrics;
use crate::storage::Db;
use crate::storage::device_list_outbox;
use crate::storage::federation_outbox::{self, Health, QueuedPdu};
use crate::storage::to_device::{self, QueuedToDevice};

/// PDUs per transaction (the spec's limit).
pub const MAX_PDUS: usize = 50;
/// EDUs per transaction (the spec's limit).
pub const MAX_EDUS: usize = 100;
/// Queued events past which a destination is caught up with the newest
/// event of each room only.
pub const CATCH_UP_BACKLOG: i64 = 500;
/// In-memory EDUs kept per destination; the oldest go first.
const MAX_QUEUED_EDUS: usize = 1_000;
/// Largest transaction response read (a map of event IDs to errors).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// An EDU in memory, with the key of what it supersedes: a newer typing
/// notification or receipt of the same user in the same room replaces the
/// queued one.
struct QueuedEdu {
    key: Option<String>,
    edu: Value,
}

#[derive(Default)]
struct Queue {
    edus: VecDeque<QueuedEdu>,
    /// A worker runs for this destination.
    running: bool,
    /// Something was queued since the worker last looked.
    dirty: bool,
    /// Wakes a worker waiting out a back-off.
    wake: Arc<Notify>,
}

struct Inner {
    db: Db,
    client: FederationClient,
    origin: OwnedServerName,
    policy: RetryPolicy,
    metrics: Metrics,
    /// Whether transactions are sent at all: a server without a federation
    /// listener cannot be verified by others, so it does not send.
    enabled: bool,
    queues: Mutex<HashMap<String, Queue>>,
    /// Destinations waiting out a back-off (mirrors their stored health).
    backing_off: Mutex<HashSet<String>>,
    txn_seq: AtomicU64,
}

/// Cheap to clone.
#[derive(Clone)]
pub struct Sender(Arc<Inner>);

enum Sent {
    /// Accepted, or refused for good: either way done with.
    Done,
    /// Not delivered: retry after a back-off.
    Failed,
}

impl Sender {
    pub fn new(
        db: Db,
        client: FederationClient,
        policy: RetryPolicy,
        metrics: Metrics,
        enabled: bool,
    ) -> Self {
        let origin = client.origin().to_owned();
        Self(Arc::new(Inner {
            db,
            client,
            origin,
            policy,
            metrics,
            enabled,
            queues: Mutex::new(HashMap::new()),
            backing_off: Mutex::new(HashSet::new()),
            txn_seq: AtomicU64::new(0),
        }))
    }

    fn queues(&self) -> MutexGuard<'_, HashMap<String, Queue>> {
        self.0.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Restarts delivery to every destination with a stored backlog.
    pub async fn resume(&self) -> Result<(), DbErr> {
        let mut destinations = federation_outbox::destinations_with_backlog(&self.0.db).await?;
        destinations.extend(to_device::outbox_destinations(&self.0.db).await?);
        destinations.extend(device_list_outbox::destinations_with_backlog(&self.0.db).await?);
        destinations.sort();
        destinations.dedup();
        tracing::info!(
            destinations = destinations.len(),
            "resuming federation delivery"
        );
        self.wake_all(&destinations);
        Ok(())
    }

    /// Something durable was queued for these destinations.
    pub fn wake_all(&self, destinations: &[String]) {
        for destination in destinations {
            self.wake(destination);
        }
    }

    /// Something durable was queued for `destination`.
    pub fn wake(&self, destination: &str) {
        self.queue(destination, None);
    }

    /// Queues an EDU (a whole `{"edu_type", "content"}` object) for each
    /// destination. `key` names what it supersedes (see [`QueuedEdu`]).
    pub fn send_edu(&self, destinations: &[String], key: Option<String>, edu: &Value) {
        for destination in destinations {
            if destination.as_str() != self.0.origin.as_str() {
                self.queue(
                    destination,
                    Some(QueuedEdu {
                        key: key.clone(),
                        edu: edu.clone(),
                    }),
                );
            }
        }
    }

    fn queue(&self, destination: &str, edu: Option<QueuedEdu>) {
        if !self.0.enabled || destination == self.0.origin.as_str() {
            return;
        }
        let start = {
            let mut queues = self.queues();
            let queue = queues.entry(destination.to_owned()).or_default();
            if let Some(edu) = edu {
                if let Some(key) = &edu.key {
                    queue.edus.retain(|q| q.key.as_ref() != Some(key));
                }
                if queue.edus.len() >= MAX_QUEUED_EDUS {
                    queue.edus.pop_front();
                }
                queue.edus.push_back(edu);
            }
            queue.dirty = true;
            !std::mem::replace(&mut queue.running, true)
        };
        if start {
            let sender = self.clone();
            let destination = destination.to_owned();
            tokio::spawn(async move { sender.run(destination).await });
        }
    }

    /// A request from `origin` arrived: if we were backing off from it, it
    /// is reachable again, so retry now.
    pub async fn on_inbound(&self, origin: &ServerName) {
        let was_backing_off = self
            .0
            .backing_off
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(origin.as_str());
        if !was_backing_off {
            return;
        }
        self.set_backing_off_gauge();
        tracing::info!(destination = %origin, "destination is back: retrying now");
        if let Err(e) =
            federation_outbox::set_health(&self.0.db, origin.as_str(), Health::default(), None)
                .await
        {
            tracing::warn!(destination = %origin, error = %e, "cannot reset the back-off");
        }
        let wake = self.queues().get(origin.as_str()).map(|q| q.wake.clone());
        match wake {
            Some(wake) => wake.notify_one(),
            None => self.wake(origin.as_str()),
        }
    }

    fn set_backing_off(&self, destination: &str, backing_off: bool) {
        {
            let mut set = self
                .0
                .backing_off
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if backing_off {
                set.insert(destination.to_owned());
            } else {
                set.remove(destination);
            }
        }
        self.set_backing_off_gauge();
    }

    fn set_backing_off_gauge(&self) {
        let n = self
            .0
            .backing_off
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        self.0
            .metrics
            .federation_destinations_backing_off
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The worker of one destination: sends until nothing is left.
    async fn run(self, destination: String) {
        loop {
            match self.step(&destination).await {
                Ok(true) => continue,
                Ok(false) => {
                    // Stop, unless something was queued meanwhile (under the
                    // lock, so a wake-up cannot fall between check and stop).
                    let mut queues = self.queues();
                    let Some(queue) = queues.get_mut(&destination) else {
                        return;
                    };
                    if queue.dirty || !queue.edus.is_empty() {
                        continue;
                    }
                    queues.remove(&destination);
                    return;
                }
                Err(e) => {
                    // A database error: wait a little rather than spin.
                    tracing::warn!(%destination, error = %e, "federation sender database error");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        }
    }

    /// One round: waits out a back-off, then sends one transaction.
    /// `Ok(false)`: nothing was left to send.
    async fn step(&self, destination: &str) -> Result<bool, DbErr> {
        let db = &self.0.db;
        let health = federation_outbox::health(db, destination).await?;
        let now = crate::time::now_ms();
        if health.retry_at_ts > now {
            self.set_backing_off(destination, true);
            let wake = self
                .queues()
                .entry(destination.to_owned())
                .or_default()
                .wake
                .clone();
            let wait = Duration::from_millis(u64::try_from(health.retry_at_ts - now).unwrap_or(0));
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = wake.notified() => {}
            }
            return Ok(true);
        }

        let edus_in_memory: Vec<QueuedEdu> = {
            let mut queues = self.queues();
            let queue = queues.entry(destination.to_owned()).or_default();
            queue.dirty = false;
            let n = queue.edus.len().min(MAX_EDUS);
            queue.edus.drain(..n).collect()
        };
        if federation_outbox::pending_count(db, destination).await? > CATCH_UP_BACKLOG {
            let dropped = federation_outbox::keep_newest_per_room(db, destination).await?;
            tracing::info!(%destination, dropped, "catching up with the newest event of each room");
        }
        let pdus = federation_outbox::pending(db, destination, MAX_PDUS as i64).await?;
        let room_for_device_lists = MAX_EDUS - edus_in_memory.len();
        let (device_list_edus, device_list_changes) =
            announce::device_list_edus(db, destination, room_for_device_lists).await?;
        let room_for_to_device = room_for_device_lists - device_list_edus.len();
        let to_device = to_device::outbox(db, destination, room_for_to_device as i64).await?;
        if pdus.is_empty()
            && to_device.is_empty()
            && edus_in_memory.is_empty()
            && device_list_edus.is_empty()
        {
            return Ok(false);
        }

        match self
            .transmit(
                destination,
                &pdus,
                &to_device,
                &device_list_edus,
                &edus_in_memory,
            )
            .await
        {
            Sent::Done => {
                device_list_outbox::mark_sent(db, destination, &device_list_changes).await?;
                let sent: Vec<i64> = pdus.iter().map(|p| p.stream_ordering).collect();
                federation_outbox::remove_sent(db, destination, &sent).await?;
                let sent: Vec<i64> = to_device.iter().map(|m| m.stream_position).collect();
                to_device::remove_sent(db, destination, &sent).await?;
                federation_outbox::set_health(db, destination, Health::default(), Some(now))
                    .await?;
                self.set_backing_off(destination, false);
            }
            Sent::Failed => {
                // Receipts are worth sending late; typing is not.
                self.requeue(destination, edus_in_memory);
                let next = self
                    .0
                    .policy
                    .after_failure(health, now, crate::random::unit());
                federation_outbox::set_health(db, destination, next, None).await?;
                self.set_backing_off(destination, true);
                tracing::info!(
                    %destination,
                    failures = next.failures,
                    retry_in_ms = next.retry_at_ts - now,
                    "federation destination unreachable: backing off"
                );
            }
        }
        Ok(true)
    }

    fn requeue(&self, destination: &str, edus: Vec<QueuedEdu>) {
        let mut queues = self.queues();
        let queue = queues.entry(destination.to_owned()).or_default();
        for edu in edus.into_iter().rev() {
            let stale = edu.edu.get("edu_type").and_then(Value::as_str) == Some("m.typing");
            let superseded = edu
                .key
                .as_ref()
                .is_some_and(|k| queue.edus.iter().any(|q| q.key.as_ref() == Some(k)));
            if !stale && !superseded && queue.edus.len() < MAX_QUEUED_EDUS {
                queue.edus.push_front(edu);
            }
        }
    }

    async fn transmit(
        &self,
        destination: &str,
        pdus: &[QueuedPdu],
        to_device: &[QueuedToDevice],
        durable_edus: &[Value],
        edus: &[QueuedEdu],
    ) -> Sent {
        let metrics = &self.0.metrics;
        let Ok(server) = ServerName::parse(destination) else {
            tracing::warn!(%destination, "not a server name: dropping its queue");
            return Sent::Done;
        };
        let txn_id = format!(
            "{}.{}",
            crate::time::now_ms(),
            self.0.txn_seq.fetch_add(1, Ordering::Relaxed)
        );
        let mut request = send_transaction_message::v1::Request::new(
            OwnedTransactionId::from(txn_id.as_str()),
            self.0.origin.clone(),
            MilliSecondsSinceUnixEpoch::now(),
        );
        request.pdus = pdus
            .iter()
            .filter_map(|p| match RawValue::from_string(p.json.clone()) {
                Ok(raw) => Some(raw),
                Err(e) => {
                    tracing::error!(stream = p.stream_ordering, error = %e, "stored event is not JSON");
                    None
                }
            })
            .collect();
        request.edus = to_device
            .iter()
            .filter_map(to_device_edu)
            .chain(durable_edus.iter().cloned())
            .chain(edus.iter().map(|q| q.edu.clone()))
            .filter_map(|edu| serde_json::value::to_raw_value(&edu).ok())
            .map(Raw::from_json)
            .collect();
        let (n_pdus, n_edus) = (request.pdus.len(), request.edus.len());

        let started = std::time::Instant::now();
        let result = self
            .0
            .client
            .send_with_limit(&server, request, MAX_RESPONSE_BYTES)
            .await;
        metrics
            .federation_transaction_seconds
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(response) => {
                for (event_id, outcome) in &response.pdus {
                    if let Err(reason) = outcome {
                        tracing::info!(%destination, %event_id, %reason, "destination refused an event");
                    }
                }
                tracing::debug!(%destination, txn_id, n_pdus, n_edus, "transaction sent");
                metrics
                    .federation_transactions
                    .with_label_values(&["sent"])
                    .inc();
                metrics.federation_pdus_sent.inc_by(n_pdus as u64);
                metrics.federation_edus_sent.inc_by(n_edus as u64);
                Sent::Done
            }
            Err(e) if is_refusal(&e) => {
                tracing::warn!(%destination, txn_id, n_pdus, n_edus, error = %e,
                    "destination refused the transaction: dropping it");
                metrics
                    .federation_transactions
                    .with_label_values(&["refused"])
                    .inc();
                Sent::Done
            }
            Err(e) => {
                tracing::debug!(%destination, txn_id, error = %e, "transaction failed");
                metrics
                    .federation_transactions
                    .with_label_values(&["failed"])
                    .inc();
                Sent::Failed
            }
        }
    }
}

/// Whether an error is the destination refusing the transaction itself (a
/// 4xx it would answer again), rather than failing to take it now.
fn is_refusal(e: &ClientError) -> bool {
    let Some(status) = e.remote_status() else {
        return false;
    };
    status.is_client_error()
        && status != StatusCode::TOO_MANY_REQUESTS
        && status != StatusCode::REQUEST_TIMEOUT
        // Our key may not be fetchable by them yet: retry later.
        && status != StatusCode::UNAUTHORIZED
        // No federation API there (yet): retry later.
        && !(status == StatusCode::NOT_FOUND && e.errcode() == Some("M_UNRECOGNIZED"))
}

/// The `m.direct_to_device` EDU of one queued send.
fn to_device_edu(m: &QueuedToDevice) -> Option<Value> {
    let messages: Value = match serde_json::from_str(&m.messages) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(position = m.stream_position, error = %e, "queued to-device messages are not JSON");
            return None;
        }
    };
    Some(serde_json::json!({
        "edu_type": "m.direct_to_device",
        "content": {
            "sender": m.sender,
            "type": m.event_type,
            "message_id": m.message_id,
            "messages": messages,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(status: u16, errcode: Option<&str>) -> ClientError {
        ClientError::Remote {
            destination: "x.test".to_owned(),
            status: StatusCode::from_u16(status).expect("status"),
            errcode: errcode.map(str::to_owned),
            message: String::new(),
        }
    }

    #[test]
    fn only_lasting_refusals_drop_a_transaction() {
        assert!(is_refusal(&remote(400, Some("M_BAD_JSON"))));
        assert!(is_refusal(&remote(403, Some("M_FORBIDDEN"))));
        assert!(is_refusal(&remote(413, Some("M_TOO_LARGE"))));
        assert!(!is_refusal(&remote(401, Some("M_UNAUTHORIZED"))));
        assert!(!is_refusal(&remote(429, Some("M_LIMIT_EXCEEDED"))));
        assert!(!is_refusal(&remote(404, Some("M_UNRECOGNIZED"))));
        assert!(!is_refusal(&remote(500, None)));
        assert!(!is_refusal(&remote(502, None)));
        assert!(!is_refusal(&ClientError::Timeout("x.test".to_owned())));
    }

    #[test]
    fn to_device_edu_has_the_spec_shape() {
        let edu = to_device_edu(&QueuedToDevice {
            stream_position: 3,
            sender: "@a:here.test".to_owned(),
            event_type: "m.room.encrypted".to_owned(),
            message_id: "m1".to_owned(),
            messages: r#"{"@b:x.test":{"DEV":{"n":1}}}"#.to_owned(),
        })
        .expect("edu");
        assert_eq!(edu["edu_type"], "m.direct_to_device");
        assert_eq!(edu["content"]["sender"], "@a:here.test");
        assert_eq!(edu["content"]["type"], "m.room.encrypted");
        assert_eq!(edu["content"]["message_id"], "m1");
        assert_eq!(edu["content"]["messages"]["@b:x.test"]["DEV"]["n"], 1);
    }
}
