//! Storing history received from `/backfill`: events older than anything
//! this server has of the room, which clients reach by paging `/messages`
//! backwards (a room joined over federation starts with our join as its
//! only timeline event).
//!
//! Each event is checked like a received one (module docs of
//! [`super`]): format and room, signatures (keys of every required signer
//! fetched), content hash (redacted on mismatch), the auth rules against
//! its own auth events (fetched when missing) and against the state
//! before it (the state after its prev events, or `/state_ids` at a prev
//! event we lack). Rejected events are stored as such and never shown;
//! events that cannot be checked are not stored. There is no soft-fail
//! check: the room's current state says nothing about old events (as in
//! Synapse, which skips it for backfilled events).
//!
//! # Positions
//! Accepted events become timeline events at *negative* stream positions
//! (Synapse does the same): every page takes a fresh block of the
//! `backfill` stream and uses it negated, oldest event lowest, so each page
//! sits below the previous one and `/messages` returns the history in
//! order, before the join. Sync only ever reads positions above 0 (an
//! initial sync reads `(0, now]`), so backfilled events never show up as
//! new. They are not forward extremities, do not change the current state,
//! get no push actions and wake nobody.

use std::collections::HashSet;
use std::sync::atomic::AtomicUsize;

use myelin_proto::Pdu;
use myelin_proto::canonical_json::Object;
use ruma::ServerName;

use super::check;
use super::{Fetch, Ingest, KeySource, Outcome, RemoteEvents};
use crate::api::error::ApiError;
use crate::rooms::RoomGuard;
use crate::rooms::pipeline::{Status, redaction_of, room_version};
use crate::state::AppState;
use crate::storage::streams::{self, Stream};
use crate::storage::{events, rooms};

/// Most events taken from one `/backfill` answer (the spec's servers cap
/// at 100, as Synapse asks for).
pub const MAX_BACKFILL_PDUS: usize = 100;

impl RoomGuard<'_> {
    /// Checks and stores one `/backfill` answer from `origin` (see the
    /// module docs); returns how many events became new timeline events.
    /// `remote` fetches what the checks need (normally from `origin`).
    pub async fn ingest_backfill<K: KeySource>(
        &self,
        state: &AppState,
        origin: &ServerName,
        pdus: Vec<Object>,
        keys: &K,
        remote: &dyn RemoteEvents,
    ) -> Result<usize, ApiError> {
        let db = state.db();
        let Some(room) = rooms::get(db, self.room_id().as_str()).await? else {
            return Ok(0);
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
            relay_from: None,
        };

        let mut parsed = Vec::new();
        for obj in pdus.into_iter().take(MAX_BACKFILL_PDUS) {
            match check::parse(version, self.room_id(), obj) {
                Ok(pdu) => parsed.push(pdu),
                Err(reason) => {
                    tracing::info!(%origin, %reason, "backfilled event dropped");
                }
            }
        }
        // Only what we lack: an event we hold (as an outlier too) stays as
        // it is.
        let ids: Vec<&str> = parsed.iter().map(|p| p.event_id().as_str()).collect();
        let held: HashSet<String> = events::statuses(db, &ids)
            .await?
            .into_iter()
            .map(|s| s.event_id)
            .collect();
        parsed.retain(|p| !held.contains(p.event_id().as_str()));
        parsed.sort_by(|a, b| a.event_id().cmp(b.event_id()));
        parsed.dedup_by(|a, b| a.event_id() == b.event_id());

        keys.prepare(&parsed).await;
        let mut ready: Vec<Pdu> = Vec::with_capacity(parsed.len());
        for checked in check::verify(parsed, keys) {
            match checked {
                Ok(pdu) => ready.push(pdu),
                Err(reason) => tracing::info!(%origin, %reason, "backfilled event dropped"),
            }
        }
        if ready.is_empty() {
            return Ok(0);
        }
        // Oldest first: each event's prev events are then stored before it.
        ready.sort_by_key(Pdu::depth);

        let n = i64::try_from(ready.len()).unwrap_or(i64::MAX);
        let tx = db.begin_write().await?;
        let top = streams::take_positions(&tx, Stream::Backfill, n).await?;
        tx.commit().await?;

        let mut stored = 0;
        for (i, pdu) in ready.into_iter().enumerate() {
            // The oldest gets `-top`, the newest `-(top - n + 1)`.
            let position = -(top - i64::try_from(i).unwrap_or(0));
            let outcome = cx.process_backfilled(&pdu, position).await?;
            match outcome {
                Outcome::Accepted => stored += 1,
                other => tracing::info!(
                    room_id = %self.room_id(), %origin, event_id = %pdu.event_id(),
                    outcome = ?other, "backfilled event not accepted"
                ),
            }
        }
        Ok(stored)
    }
}

impl<K: KeySource> Ingest<'_, '_, K> {
    /// Steps 4 and 5 for one backfilled event; stores it at `position`
    /// when it passes.
    async fn process_backfilled(&self, pdu: &Pdu, position: i64) -> Result<Outcome, ApiError> {
        if let Err(reason) = self.check_auth_events(pdu).await? {
            let before = self.state_before_known(pdu).await?;
            self.store_rejected(pdu, reason.clone(), before.as_ref())
                .await?;
            return Ok(Outcome::Rejected(reason));
        }
        let before = match self.state_before(pdu, Fetch::StateOnly).await? {
            Ok(before) => before,
            Err(reason) => return Ok(Outcome::Dropped(reason)),
        };
        let before_auth = self.auth_state_of(pdu, &before.map).await?;
        if let Err(e) = check::auth(pdu, &before_auth) {
            let reason = format!("not allowed by the state before it: {e}");
            self.store_rejected(pdu, reason.clone(), Some(&before))
                .await?;
            return Ok(Outcome::Rejected(reason));
        }
        let mut write = self.write_of(pdu, Status::Backfilled(position), Some(&before));
        (write.own_state, write.replaces_state) = self.own_state(pdu, &before).await?;
        if let Some(target) = pdu.redacts()
            && pdu.event_type() == "m.room.redaction"
            && self.may_redact(pdu, target.as_str(), &before_auth).await?
        {
            write.redaction = redaction_of(
                self.state.db(),
                self.version,
                self.room_id.as_str(),
                target.as_str(),
            )
            .await?;
        }
        self.guard.write(self.state, write).await?;
        Ok(Outcome::Accepted)
    }
}
