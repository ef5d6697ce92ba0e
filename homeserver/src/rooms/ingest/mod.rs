//! Receiving room events from other servers: the server-server API's
//! "Checks performed on receipt of a PDU", in the spec's order.
//!
//! [`RoomGuard::ingest`] takes the PDUs of one room as received (a `/send`
//! transaction, a backfill page) while holding the room's lock, so inbound
//! events of one room are processed one at a time. For each PDU:
//!
//! 1. It must be a valid PDU of the room's version, for this room: else it
//!    is dropped (not stored).
//! 2. Its signatures must verify (one batch over the whole call): else it
//!    is dropped.
//! 3. If its content hash does not match, the redacted event is used from
//!    here on (and stored).
//! 4. It must pass the auth rules against its own `auth_events`. Missing
//!    auth events are fetched through [`RemoteEvents`], verified the same
//!    way and stored as outliers (auth-checked against their own auth
//!    events). A missing or rejected auth event rejects the event.
//! 5. It must pass the auth rules against the state before it: the state
//!    after its `prev_events` (their resolution when there are several).
//!    Unknown prev events are first asked for with `get_missing_events`
//!    (bounded); a prev still unknown after that is fetched with the
//!    state at it (`/state_ids`, every event verified and stored as an
//!    outlier). Failing: rejected.
//! 6. It must pass the auth rules against the room's current state, else
//!    it is soft-failed: stored with its state, but not in the timeline,
//!    not a forward extremity, never sent to clients, and it does not
//!    change the current state.
//!
//! Accepted events get a timeline position and push actions, replace their
//! prev events as forward extremities and wake sync, like local events.
//! The room's new current state is the state after the event when it is
//! the only forward extremity, else the resolution (v2 / v2.1) of the
//! states after every extremity. Everything an event changes is written in
//! its one transaction ([`RoomGuard::write`], shared with local events).
//!
//! Rejected events are stored with their reason and never used as state
//! nor as forward extremities; events citing one as a prev event are still
//! processed (its state is the state before it). Events already stored are
//! no-ops reporting how they were stored. An event is never promoted from
//! outlier to timeline event by arriving again.
//!
//! Bounds, so a hostile server cannot make us work without limit:
//! [`MAX_PDUS_PER_CALL`] PDUs per call, [`MISSING_EVENTS_LIMIT`] events per
//! `get_missing_events` and one such request per received PDU,
//! [`MAX_FETCHED_PER_CALL`] events fetched per call, [`MAX_STATE_IDS`]
//! entries in a fetched state, [`MAX_AUTH_CHAIN`] events in the auth
//! chains a resolution loads. A PDU that cannot be processed within them
//! (or whose missing state the remote cannot give) is dropped with the
//! reason, so the sender may offer it again. One bad PDU never stops the
//! others: only database errors end the call.

mod backfill;
mod check;
mod fetch;
mod joined;
mod parsed;
mod persist;
mod state_at;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicUsize, Ordering};

use myelin_proto::canonical_json::{Object, Value};
use myelin_proto::{Pdu, RoomVersion};
use ruma::{RoomId, ServerName};

use super::RoomGuard;
use super::pipeline::room_version;
use crate::api::error::ApiError;
use crate::state::AppState;
use crate::storage::{events, rooms};

pub use backfill::MAX_BACKFILL_PDUS;
pub use fetch::{BoxFuture, KeySource, RemoteError, RemoteEvents, StateIds};
pub use joined::{NoRemote, RoomStateAnswer};

/// Most PDUs handled per call (the spec's limit per transaction).
pub const MAX_PDUS_PER_CALL: usize = 50;
/// Most events asked for in one `get_missing_events` (Synapse's value).
pub const MISSING_EVENTS_LIMIT: u32 = 10;
/// Most events fetched from other servers per call, all paths together.
pub const MAX_FETCHED_PER_CALL: usize = 1000;
/// Most entries (state or auth chain) accepted from one `/state_ids`.
pub const MAX_STATE_IDS: usize = 20_000;
/// Most events in the auth chains one state resolution loads.
pub const MAX_AUTH_CHAIN: usize = 50_000;

/// What became of one received PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// In the timeline (or already stored as accepted).
    Accepted,
    /// Stored, but hidden: the current state does not allow it.
    SoftFailed,
    /// Stored as rejected, with the reason.
    Rejected(String),
    /// Not stored: malformed, badly signed, or not processable now.
    Dropped(String),
}

/// How far processing one event may go to learn the state before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fetch {
    /// Ask for missing prev events, then for the state at those still
    /// missing.
    Missing,
    /// Only ask for the state at unknown prev events (events that came
    /// from `get_missing_events` themselves).
    StateOnly,
}

/// One call's context: the room, its version, the keys and the remote.
struct Ingest<'a, 'g, K> {
    guard: &'a RoomGuard<'g>,
    state: &'a AppState,
    room_id: &'a RoomId,
    version: RoomVersion,
    keys: &'a K,
    remote: &'a dyn RemoteEvents,
    /// Events fetched so far in this call (see [`MAX_FETCHED_PER_CALL`]).
    fetched: AtomicUsize,
    /// The origin of events accepted through a `send_*` endpoint, which
    /// we relay to the room's other servers (see [`RoomGuard::ingest_relayed`]).
    relay_from: Option<&'a ServerName>,
}

impl<K: KeySource> Ingest<'_, '_, K> {
    /// Takes `n` from the call's fetch budget, or says it is spent.
    fn charge(&self, n: usize) -> Result<(), String> {
        let before = self.fetched.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > MAX_FETCHED_PER_CALL {
            Err(format!(
                "more than {MAX_FETCHED_PER_CALL} events would have to be fetched"
            ))
        } else {
            Ok(())
        }
    }
}

/// The event ID of a received object, as well as it can be told: the ID
/// its reference hash gives (what the sender means by it), or its
/// `event_id` field.
fn best_effort_id(version: RoomVersion, obj: &Object) -> String {
    if obj.contains_key("hashes") {
        return myelin_proto::hashes::event_id(version.rules().redaction, obj);
    }
    match obj.get("event_id") {
        Some(Value::String(s)) => s.chars().take(255).collect(),
        _ => String::new(),
    }
}

impl RoomGuard<'_> {
    /// Processes PDUs of this room received from `origin` (see the module
    /// docs); returns each PDU's event ID (best effort for malformed ones)
    /// with its outcome, in the order given. `keys` must know the keys of
    /// the servers that signed `pdus`; events fetched on the way may be
    /// signed by others, whose keys [`KeySource::prepare`] gets first.
    /// `remote` fetches what is missing (normally from `origin`). An `Err`
    /// is a local failure (database); events processed before it stay
    /// stored.
    pub async fn ingest<K: KeySource>(
        &self,
        state: &AppState,
        origin: &ServerName,
        pdus: Vec<Object>,
        keys: &K,
        remote: &dyn RemoteEvents,
    ) -> Result<Vec<(String, Outcome)>, ApiError> {
        self.ingest_with(state, origin, pdus, keys, remote, false)
            .await
    }

    /// [`Self::ingest`] for an event `origin` gave us through `send_join`,
    /// `send_leave` or `send_knock`: only we, the resident server, can
    /// tell the room's other servers, so an accepted event is queued for
    /// them in the transaction that stores it (a crash cannot lose it).
    pub async fn ingest_relayed<K: KeySource>(
        &self,
        state: &AppState,
        origin: &ServerName,
        pdus: Vec<Object>,
        keys: &K,
        remote: &dyn RemoteEvents,
    ) -> Result<Vec<(String, Outcome)>, ApiError> {
        self.ingest_with(state, origin, pdus, keys, remote, true)
            .await
    }

    async fn ingest_with<K: KeySource>(
        &self,
        state: &AppState,
        origin: &ServerName,
        pdus: Vec<Object>,
        keys: &K,
        remote: &dyn RemoteEvents,
        relay: bool,
    ) -> Result<Vec<(String, Outcome)>, ApiError> {
        let Some(room) = rooms::get(state.db(), self.room_id().as_str()).await? else {
            return Ok(pdus
                .iter()
                .map(|obj| {
                    let id = match obj.get("event_id") {
                        Some(Value::String(s)) => s.chars().take(255).collect(),
                        _ => String::new(),
                    };
                    (id, Outcome::Dropped("unknown room".into()))
                })
                .collect());
        };
        let version = room_version(&room.room_version)?;
        let cx = Ingest {
            guard: self,
            state,
            room_id: self.room_id(),
            version,
            keys,
            remote,
            fetched: AtomicUsize::new(0),
            relay_from: relay.then_some(origin),
        };
        let started = std::time::Instant::now();

        let mut out: Vec<(String, Outcome)> = Vec::with_capacity(pdus.len());
        let mut parsed: Vec<(usize, Pdu)> = Vec::new();
        for (i, obj) in pdus.into_iter().enumerate() {
            let id = best_effort_id(version, &obj);
            if i >= MAX_PDUS_PER_CALL {
                let reason = format!("over the limit of {MAX_PDUS_PER_CALL} PDUs per call");
                out.push((id, Outcome::Dropped(reason)));
                continue;
            }
            match check::parse(version, self.room_id(), obj) {
                Ok(pdu) => {
                    out.push((pdu.event_id().to_string(), Outcome::Accepted));
                    parsed.push((i, pdu));
                }
                Err(reason) => out.push((id, Outcome::Dropped(reason))),
            }
        }

        // Step 2 and 3: one signature batch for the whole call.
        let (indices, pdus): (Vec<usize>, Vec<Pdu>) = parsed.into_iter().unzip();
        let mut ready = Vec::with_capacity(pdus.len());
        for (i, checked) in indices.into_iter().zip(check::verify(pdus, keys)) {
            match checked {
                Ok(pdu) => ready.push((i, pdu)),
                Err(reason) => out[i].1 = Outcome::Dropped(reason),
            }
        }

        // Oldest first, so that a batch carrying a chain needs no fetching.
        ready.sort_by_key(|(i, p)| (p.depth(), *i));
        for (i, pdu) in ready {
            let outcome = cx.process(pdu, Fetch::Missing).await?;
            if outcome != Outcome::Accepted {
                tracing::info!(
                    room_id = %self.room_id(), %origin, event_id = %out[i].0,
                    ?outcome, "received event not accepted"
                );
            }
            out[i].1 = outcome;
        }
        state
            .metrics()
            .event_persist_seconds
            .with_label_values(&["remote"])
            .observe(started.elapsed().as_secs_f64());
        Ok(out)
    }
}

impl<K: KeySource> Ingest<'_, '_, K> {
    /// Steps 4 to 6 for one parsed, verified event.
    async fn process(&self, pdu: Pdu, fetch: Fetch) -> Result<Outcome, ApiError> {
        let db = self.state.db();
        if let Some(stored) = events::statuses(db, &[pdu.event_id().as_str()])
            .await?
            .into_iter()
            .next()
        {
            return Ok(match stored.rejected_reason {
                Some(reason) => Outcome::Rejected(reason),
                None if stored.soft_failed => Outcome::SoftFailed,
                None => Outcome::Accepted,
            });
        }

        // Step 4.
        if let Err(reason) = self.check_auth_events(&pdu).await? {
            // Its state is still recorded when it needs no fetching: an
            // event citing this one as a prev event then has a state.
            let before = self.state_before_known(&pdu).await?;
            self.store_rejected(&pdu, reason.clone(), before.as_ref())
                .await?;
            return Ok(Outcome::Rejected(reason));
        }

        // Step 5.
        let before = match self.state_before(&pdu, fetch).await? {
            Ok(before) => before,
            Err(reason) => return Ok(Outcome::Dropped(reason)),
        };
        let before_auth = self.auth_state_of(&pdu, &before.map).await?;
        if let Err(e) = check::auth(&pdu, &before_auth) {
            let reason = format!("not allowed by the state before it: {e}");
            self.store_rejected(&pdu, reason.clone(), Some(&before))
                .await?;
            return Ok(Outcome::Rejected(reason));
        }

        // Step 6. In the common case the event extends our only forward
        // extremity, so the state before it is the current state (same
        // snapshot, and the room's lock keeps it so): the check against
        // the current state is the one just passed, and is not repeated.
        let current = rooms::get(self.state.db(), self.room_id.as_str())
            .await?
            .and_then(|r| r.current_snapshot);
        let at_current = current == Some(before.snapshot);
        if !at_current {
            let current_auth = self.current_auth_state(&pdu).await?;
            if let Err(e) = check::auth(&pdu, &current_auth) {
                tracing::info!(event_id = %pdu.event_id(), error = %e, "soft-failing event");
                self.store_soft_failed(&pdu, &before).await?;
                return Ok(Outcome::SoftFailed);
            }
        }
        self.store_accepted(&pdu, &before, &before_auth, at_current)
            .await?;
        Ok(Outcome::Accepted)
    }

    /// [`Self::process`] boxed: fetching missing events processes them,
    /// which may fetch again (bounded), so the future is recursive.
    fn process_boxed(&self, pdu: Pdu, fetch: Fetch) -> BoxFuture<'_, Result<Outcome, ApiError>> {
        Box::pin(self.process(pdu, fetch))
    }
}
