//! Building, authorising and durably storing one local event.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Instant;

use myelin_proto::auth::{self, PowerLevels};
use myelin_proto::canonical_json::{self, Object, Value};
use myelin_proto::pdu::{MAX_PREV_EVENTS, PduError};
use myelin_proto::{Pdu, PduBuilder, RoomVersion};
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, ServerName, UserId};
use tokio::sync::OwnedMutexGuard;

use super::RoomService;
use super::hosts::RoomHosts;
use crate::api::error::ApiError;
use crate::state::AppState;
use crate::storage::state::NewSnapshot;
use crate::storage::{self, Tx, events, federation_outbox, memberships, rooms, txn_ids};

/// What a client asks to send.
#[derive(Debug, Clone)]
pub struct EventSpec {
    pub event_type: String,
    pub state_key: Option<String>,
    pub content: Object,
    /// For `m.room.redaction`: placed where the room version wants it.
    pub redacts: Option<OwnedEventId>,
    /// Unsigned data stored with the event (e.g. `invite_room_state`).
    pub unsigned: Option<Object>,
}

impl EventSpec {
    pub fn new(event_type: impl Into<String>, state_key: Option<&str>, content: Object) -> Self {
        Self {
            event_type: event_type.into(),
            state_key: state_key.map(str::to_owned),
            content,
            redacts: None,
            unsigned: None,
        }
    }
}

/// A client transaction ID, scoped to the sending device and endpoint.
#[derive(Debug, Clone, Copy)]
pub struct TxnKey<'a> {
    pub device_id: &'a str,
    pub scope: txn_ids::Scope<'a>,
    pub txn_id: &'a str,
}

/// The write lock of one room: only its holder appends to the room.
pub struct RoomGuard<'a> {
    service: &'a RoomService,
    room_id: OwnedRoomId,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Drop for RoomGuard<'_> {
    fn drop(&mut self) {
        self.guard.take();
        self.service.release(&self.room_id);
    }
}

/// A room being created: its row is written with its create event.
pub struct NewRoom<'a> {
    pub creator: &'a str,
    pub is_public: bool,
}

pub(crate) fn pdu_error(e: PduError) -> ApiError {
    match e {
        PduError::TooLarge(_) => ApiError::too_large(e.to_string()),
        other => ApiError::bad_json(other.to_string()),
    }
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(what, e)
}

/// Parses a stored PDU (written by us, so failure is corruption).
pub(crate) fn stored_pdu(version: RoomVersion, json: &str) -> Result<Pdu, ApiError> {
    Pdu::from_json(version, json.as_bytes()).map_err(|e| corrupt("stored event unreadable", e))
}

pub(crate) fn room_version(s: &str) -> Result<RoomVersion, ApiError> {
    RoomVersion::from_str(s).map_err(|e| corrupt("stored room version unknown", e))
}

/// The version of a stored room.
pub(crate) async fn room_version_of(
    state: &AppState,
    room_id: &str,
) -> Result<RoomVersion, ApiError> {
    let room = rooms::get(state.db(), room_id)
        .await?
        .ok_or_else(|| ApiError::not_found("Unknown room"))?;
    room_version(&room.room_version)
}

impl<'a> RoomGuard<'a> {
    pub(super) fn new(
        service: &'a RoomService,
        room_id: OwnedRoomId,
        guard: OwnedMutexGuard<()>,
    ) -> Self {
        Self {
            service,
            room_id,
            guard: Some(guard),
        }
    }

    pub fn room_id(&self) -> &RoomId {
        &self.room_id
    }

    /// Builds, authorises, signs and stores an event of `sender` in this
    /// room; returns its ID once it is durable. With a transaction ID that
    /// this device used before, returns the event sent then, sending
    /// nothing.
    pub async fn append(
        &self,
        state: &AppState,
        sender: &UserId,
        spec: EventSpec,
        txn: Option<TxnKey<'_>>,
    ) -> Result<OwnedEventId, ApiError> {
        let started = Instant::now();
        let db = state.db();
        if let Some(t) = txn
            && let Some(id) =
                txn_ids::get(db, sender.as_str(), t.device_id, t.scope, t.txn_id).await?
        {
            return OwnedEventId::try_from(id).map_err(|e| corrupt("stored event ID", e));
        }
        let (pdu, current_snapshot) = self.build_checked(state, sender, spec).await?;
        self.persist(
            state,
            &pdu,
            current_snapshot,
            txn.map(|t| (sender, t)),
            None,
        )
        .await?;
        state
            .metrics()
            .event_persist_seconds
            .with_label_values(&["local"])
            .observe(started.elapsed().as_secs_f64());
        Ok(pdu.event_id().to_owned())
    }

    /// Builds, authorises and signs an event of `sender` on the room's
    /// current state and forward extremities, without storing it; returns
    /// it with the room's current snapshot (the state before it). Used by
    /// [`Self::append`] and by membership over federation (templates for
    /// other servers, invites a remote server must counter-sign first).
    pub(crate) async fn build_checked(
        &self,
        state: &AppState,
        sender: &UserId,
        spec: EventSpec,
    ) -> Result<(Pdu, Option<i64>), ApiError> {
        let ctx = self
            .build_context(state, [(sender, &spec)].into_iter())
            .await?;
        if spec.event_type == "m.room.redaction" {
            self.check_redaction(state, ctx.version, sender, &spec, &ctx.auth_state)
                .await?;
        }
        let pdu = ctx.build(state, sender, spec)?;
        Ok((pdu, ctx.current_snapshot))
    }

    /// Reads what building events of these senders and specs on the
    /// room's current state needs.
    pub(crate) async fn build_context(
        &self,
        state: &AppState,
        specs: impl Iterator<Item = (&UserId, &EventSpec)>,
    ) -> Result<BuildContext, ApiError> {
        let db = state.db();
        let room_id = self.room_id.as_str();
        let room = rooms::get(db, room_id)
            .await?
            .ok_or_else(|| ApiError::not_found("Unknown room"))?;
        let version = room_version(&room.room_version)?;
        let rules = version.rules();

        // The current state's events of every selection of auth events.
        let mut lookup_keys = vec![("m.room.create".to_owned(), String::new())];
        for (sender, spec) in specs {
            for key in auth::auth_types_for_event(
                rules,
                &spec.event_type,
                sender,
                spec.state_key.as_deref(),
                &spec.content,
            ) {
                if !lookup_keys.contains(&key) {
                    lookup_keys.push(key);
                }
            }
        }
        let mut auth_state: HashMap<(String, String), Pdu> = HashMap::new();
        for (t, k, json) in storage::state::current_events_for(db, room_id, &lookup_keys).await? {
            auth_state.insert((t, k), stored_pdu(version, &json)?);
        }

        let extremities = rooms::forward_extremities(db, room_id).await?;
        let Some(max_depth) = extremities.iter().map(|(_, d)| *d).max() else {
            return Err(ApiError::internal(
                "room has no forward extremities",
                room_id,
            ));
        };
        let prev_events = extremities
            .into_iter()
            .take(MAX_PREV_EVENTS)
            .map(|(id, _)| OwnedEventId::try_from(id))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| corrupt("stored event ID", e))?;
        Ok(BuildContext {
            room_id: self.room_id.clone(),
            version,
            auth_state,
            prev_events,
            depth: max_depth.saturating_add(1),
            current_snapshot: room.current_snapshot,
        })
    }

    /// Client-server rule on redactions (the auth rules leave it to the
    /// server): redacting someone else's event needs the `redact` level.
    async fn check_redaction(
        &self,
        state: &AppState,
        version: RoomVersion,
        sender: &UserId,
        spec: &EventSpec,
        auth_state: &HashMap<(String, String), Pdu>,
    ) -> Result<(), ApiError> {
        let Some(target_id) = &spec.redacts else {
            return Err(ApiError::bad_json("a redaction needs `redacts`"));
        };
        let target = events::get(state.db(), target_id.as_str())
            .await?
            .filter(|t| t.room_id == self.room_id.as_str())
            .ok_or_else(|| ApiError::not_found("Event not found"))?;
        if target.sender == sender.as_str() {
            return Ok(());
        }
        let create = auth_state.get(&("m.room.create".to_owned(), String::new()));
        let pl = auth_state.get(&("m.room.power_levels".to_owned(), String::new()));
        let power = PowerLevels::new(version.rules(), create, pl);
        if power.user_level(sender).at_least(power.redact()) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "You don't have permission to redact other users' events",
            ))
        }
    }

    /// Stores an authorised local event and everything it changes in one
    /// transaction: the event and its edges, the new state snapshot,
    /// current state, membership, forward extremities, the transaction ID,
    /// and the redaction it applies. `new_room` creates the room row (for
    /// its create event).
    pub(crate) async fn persist(
        &self,
        state: &AppState,
        pdu: &Pdu,
        state_before: Option<i64>,
        txn: Option<(&UserId, TxnKey<'_>)>,
        new_room: Option<NewRoom<'_>>,
    ) -> Result<i64, ApiError> {
        let db = state.db();
        let room_id = pdu.room_id().as_str();

        // Everything read is read before the write transaction: the room
        // lock keeps it current, and the transaction stays short.
        let mut own_state = None;
        let mut replaces_state = None;
        let mut current = None;
        if let Some(sk) = pdu.state_key() {
            let key_nid = storage::state::intern_keys(db, &[(pdu.event_type(), sk)]).await?[0];
            replaces_state =
                storage::state::current_event_id(db, room_id, pdu.event_type(), sk).await?;
            own_state = Some((key_nid, NewSnapshot::plan(db, state_before).await?));
            current = Some(CurrentUpdate {
                snapshot: None,
                changes: vec![StateChange {
                    event_type: pdu.event_type().to_owned(),
                    state_key: sk.to_owned(),
                    holder: Some(Holder::This),
                }],
            });
        }
        let redaction = match pdu.redacts() {
            Some(target) if pdu.event_type() == "m.room.redaction" => {
                redaction_of(db, pdu.room_version(), room_id, target.as_str()).await?
            }
            _ => None,
        };
        let write = EventWrite {
            pdu,
            status: Status::Timeline,
            state_before,
            own_state,
            replaces_state,
            current,
            redaction,
            txn,
            new_room,
            relay_from: None,
        };
        let stream = self.write(state, write).await?;
        Ok(stream.unwrap_or_default())
    }

    /// The one write path of every event, local or received: stores the
    /// event as `write.status` says with everything it changes in one
    /// transaction, then wakes sync for timeline events. Returns the
    /// event's stream position (timeline events only).
    pub(crate) async fn write(
        &self,
        state: &AppState,
        write: EventWrite<'_>,
    ) -> Result<Option<i64>, ApiError> {
        let mut streams = self.write_all(state, vec![write]).await?;
        Ok(streams.pop().flatten())
    }

    /// Stores events in order in one transaction, so they share one commit
    /// (one disk flush): each as [`Self::write`] stores it. All are stored
    /// or none. Returns their stream positions.
    ///
    /// All are in one room. What each write reads before the transaction
    /// (push rule inputs, the room's servers) is read for all of them
    /// before the first is stored, so only the last may change the room's
    /// state or membership.
    pub(crate) async fn write_all(
        &self,
        state: &AppState,
        writes: Vec<EventWrite<'_>>,
    ) -> Result<Vec<Option<i64>>, ApiError> {
        // What push evaluation reads about the room is then the same for
        // all of them: read once, if any goes on the timeline.
        let push_inputs = match writes.iter().find(|w| w.status == Status::Timeline) {
            Some(w) => Some(
                state
                    .push()
                    .room_inputs(state.db(), state.server_name(), w.pdu)
                    .await?,
            ),
            None => None,
        };
        let mut prepared = Vec::with_capacity(writes.len());
        for write in writes {
            prepared.push(self.prepare(state, write, push_inputs.as_ref()).await?);
        }
        // A chain of events each citing only the one before it (a batch of
        // messages) moves the extremity once: from what the first cites to
        // the last, not through every event in between.
        let cites_previous: Vec<bool> = (0..prepared.len())
            .map(|i| {
                i > 0
                    && prepared[i].write.pdu.prev_events()
                        == [prepared[i - 1].write.pdu.event_id().to_owned()]
            })
            .collect();
        let tx = state.db().begin_write().await?;
        let now = crate::time::now_ms();
        for p in &prepared {
            if let Some(new_room) = &p.write.new_room {
                let pdu = p.write.pdu;
                rooms::insert(
                    &tx,
                    pdu.room_id().as_str(),
                    pdu.room_version().as_str(),
                    new_room.creator,
                    new_room.is_public,
                    now,
                )
                .await?;
            }
        }
        // The events' rows first, all in one statement (or a few): a batch
        // of messages took one statement per message here.
        let rows: Vec<events::NewEvent<'_>> = prepared.iter().map(|p| p.row(now)).collect();
        let event_nids = events::insert_many(&tx, &rows).await?;
        drop(rows);
        let mut stored = Vec::with_capacity(prepared.len());
        let mut deferred = Deferred::default();
        for (i, (p, event_nid)) in prepared.into_iter().zip(event_nids).enumerate() {
            let chain = Chain {
                cites_previous: cites_previous[i],
                cited_by_next: cites_previous.get(i + 1).copied().unwrap_or(false),
            };
            stored.push(
                self.store(state, &tx, p, event_nid, chain, &mut deferred)
                    .await?,
            );
        }
        deferred.flush(&tx, self.room_id.as_str()).await?;
        tx.commit().await?;
        Ok(stored.into_iter().map(|s| self.finish(state, s)).collect())
    }

    /// What an event's write reads before its transaction.
    async fn prepare<'w>(
        &self,
        state: &AppState,
        write: EventWrite<'w>,
        // The room's push inputs: present when `write` is a timeline event.
        push_inputs: Option<&crate::push::RoomInputs>,
    ) -> Result<Prepared<'w>, ApiError> {
        let db = state.db();
        let pdu = write.pdu;
        let json = String::from_utf8(pdu.to_canonical_bytes())
            .map_err(|e| corrupt("canonical JSON is not UTF-8", e))?;
        let timeline = matches!(write.status, Status::Timeline);
        let push_actions = match push_inputs.filter(|_| timeline) {
            Some(room) => state.push().actions_for(db, room, pdu, &json).await?,
            None => Vec::new(),
        };
        // Our own timeline events go to the other servers in the room: the
        // hosts as they are now, refreshed below if this event changes them.
        let ours = pdu.sender().server_name() == state.server_name();
        let hosts_before = if timeline && (ours || write.relay_from.is_some()) {
            Some(self.service.hosts.get(db, pdu.room_id()).await?)
        } else {
            None
        };
        let reservation = if timeline {
            Some(
                self.service
                    .streams(db)
                    .await?
                    .reserve(pdu.state_key().is_some()),
            )
        } else {
            None
        };
        Ok(Prepared {
            write,
            json,
            push_actions,
            hosts_before,
            reservation,
        })
    }

    /// Writes what one prepared event changes inside `tx`, its row
    /// (`event_nid`) stored already.
    async fn store<'w>(
        &self,
        state: &AppState,
        tx: &Tx,
        p: Prepared<'w>,
        event_nid: i64,
        chain: Chain,
        deferred: &mut Deferred<'w>,
    ) -> Result<Stored, ApiError> {
        let stream = p.stream();
        let Prepared {
            write,
            json: _,
            push_actions,
            hosts_before,
            reservation,
        } = p;
        let pdu = write.pdu;
        let event_id = pdu.event_id().as_str();
        let room_id = pdu.room_id().as_str();
        let timeline = matches!(write.status, Status::Timeline);
        let prev_events: Vec<String> = pdu.prev_events().iter().map(ToString::to_string).collect();
        let auth_events: Vec<String> = pdu.auth_events().iter().map(ToString::to_string).collect();
        deferred
            .edges
            .push((event_nid, prev_events.clone(), auth_events));
        if let (true, Some(stream)) = (timeline, stream) {
            deferred.push_actions.push((stream, push_actions));
            if pdu.membership().is_some() {
                // A membership recounts the member's unread totals.
                deferred.flush(tx, room_id).await?;
                storage::push_actions::on_membership(tx, room_id, stream, pdu).await?;
            }
        }
        let mut state_after = write.state_before;
        if let Some((key_nid, mut snap)) = write.own_state {
            snap.set(key_nid, Some(event_nid));
            let snapshot_nid = snap.write(tx, room_id).await?;
            events::set_state_after(tx, event_nid, snapshot_nid).await?;
            state_after = Some(snapshot_nid);
        }
        let mut members_changed = Vec::new();
        if let (Some(update), Some(stream)) = (write.current, stream) {
            let snapshot = match update.snapshot {
                None => state_after,
                Some((mut snap, own_key)) => {
                    if let Some(key_nid) = own_key {
                        snap.set(key_nid, Some(event_nid));
                    }
                    Some(snap.write(tx, room_id).await?)
                }
            };
            if let Some(snapshot) = snapshot {
                rooms::set_current_snapshot(tx, room_id, snapshot).await?;
            }
            for change in &update.changes {
                let (t, k) = (change.event_type.as_str(), change.state_key.as_str());
                let holder = match &change.holder {
                    None => None,
                    Some(Holder::This) => Some((event_nid, event_id, pdu.membership())),
                    Some(Holder::Stored {
                        event_nid,
                        event_id,
                        membership,
                    }) => Some((*event_nid, event_id.as_str(), membership.as_deref())),
                };
                match holder {
                    Some((nid, id, membership)) => {
                        storage::state::set_current(tx, room_id, t, k, nid, id).await?;
                        if t == "m.room.member"
                            && let Some(membership) = membership
                        {
                            memberships::set(tx, room_id, k, membership, id, stream).await?;
                            members_changed.push(k.to_owned());
                        }
                    }
                    None => {
                        storage::state::remove_current(tx, room_id, t, k).await?;
                        if t == "m.room.member" {
                            memberships::remove(tx, room_id, k).await?;
                            members_changed.push(k.to_owned());
                        }
                    }
                }
            }
        }
        if timeline {
            if !chain.cites_previous {
                rooms::drop_extremities(tx, room_id, &prev_events).await?;
            }
            if !chain.cited_by_next {
                rooms::add_extremity(tx, room_id, event_id).await?;
            }
        }
        let fresh_hosts = if members_changed.is_empty() {
            None
        } else {
            Some(RoomHosts::read_in(tx, pdu.room_id()).await?)
        };
        let destinations = match (&hosts_before, stream) {
            (Some(before), Some(stream)) => {
                let hosts = fresh_hosts.as_ref().unwrap_or(before);
                let mut destinations = destinations_of(pdu, hosts, state.server_name());
                if let Some(origin) = write.relay_from {
                    destinations.retain(|h| h.as_str() != origin.as_str());
                }
                deferred.outbox.push((destinations.clone(), stream));
                destinations
            }
            _ => Vec::new(),
        };
        if let Some((user, t)) = write.txn {
            deferred.txns.push(txn_ids::NewTxn {
                user_id: user.as_str(),
                device_id: t.device_id,
                scope: t.scope,
                txn_id: t.txn_id,
                event_id: pdu.event_id().as_str(),
            });
        }
        if let Some((target, redacted)) = &write.redaction {
            events::apply_redaction(tx, target, redacted, event_id).await?;
        }
        Ok(Stored {
            room_id: pdu.room_id().to_owned(),
            timeline,
            stream,
            reservation,
            fresh_hosts,
            destinations,
            members_changed,
        })
    }

    /// What follows an event's commit: its stream position is released to
    /// readers, then federation and sync are woken.
    fn finish(&self, state: &AppState, stored: Stored) -> Option<i64> {
        let Stored {
            room_id,
            timeline,
            stream,
            reservation,
            fresh_hosts,
            destinations,
            members_changed,
        } = stored;
        drop(reservation);
        if fresh_hosts.is_some() {
            self.service.hosts.installed(&room_id, fresh_hosts);
        }
        state.federation().sender().wake_all(&destinations);

        state.metrics().events_persisted.inc();
        if timeline {
            self.service.notify(&room_id, None);
            // Members whose membership changed, an invitee or a user the
            // state resolution moved included, may not be in the room yet.
            for user in members_changed {
                if let Ok(user) = OwnedUserId::try_from(user) {
                    self.service.notifier.wake_user(&user);
                }
            }
        }
        stream
    }
}

/// Where an event stands among the events stored with it.
#[derive(Debug, Clone, Copy)]
struct Chain {
    /// Its only `prev_event` is the event stored just before it.
    cites_previous: bool,
    /// The event stored just after it cites it alone.
    cited_by_next: bool,
}

/// Rows of a write's events that nothing in its transaction reads before
/// the commit (but the unread recount of a membership, which flushes them
/// first), inserted together at its end: a batch of messages costs a few
/// statements for them, not a few per message.
#[derive(Default)]
struct Deferred<'w> {
    /// `(event_nid, prev_events, auth_events)`.
    edges: Vec<(i64, Vec<String>, Vec<String>)>,
    /// `(stream_ordering, actions)`.
    push_actions: Vec<(i64, Vec<storage::push_actions::PushAction>)>,
    /// `(destinations, stream_ordering)`.
    outbox: Vec<(Vec<String>, i64)>,
    txns: Vec<txn_ids::NewTxn<'w>>,
}

impl Deferred<'_> {
    /// Inserts what was deferred, all of `room_id`'s events.
    async fn flush(&mut self, tx: &Tx, room_id: &str) -> Result<(), sea_orm::DbErr> {
        let edges: Vec<(i64, &[String], &[String])> = self
            .edges
            .iter()
            .map(|(nid, prev, auth)| (*nid, prev.as_slice(), auth.as_slice()))
            .collect();
        events::insert_edges(tx, &edges).await?;
        let push_actions: Vec<(i64, &[storage::push_actions::PushAction])> = self
            .push_actions
            .iter()
            .map(|(stream, actions)| (*stream, actions.as_slice()))
            .collect();
        storage::push_actions::insert(tx, room_id, &push_actions).await?;
        let outbox: Vec<(&[String], i64)> = self
            .outbox
            .iter()
            .map(|(destinations, stream)| (destinations.as_slice(), *stream))
            .collect();
        federation_outbox::enqueue(tx, room_id, &outbox).await?;
        txn_ids::insert(tx, &self.txns, crate::time::now_ms()).await?;
        self.edges.clear();
        self.push_actions.clear();
        self.outbox.clear();
        self.txns.clear();
        Ok(())
    }
}

/// An event ready to store: what its write reads before the transaction.
struct Prepared<'w> {
    write: EventWrite<'w>,
    json: String,
    push_actions: Vec<storage::push_actions::PushAction>,
    hosts_before: Option<std::sync::Arc<[String]>>,
    reservation: Option<super::stream::Reservation>,
}

impl Prepared<'_> {
    /// The event's stream position: backfilled events come with theirs,
    /// timeline events have one reserved.
    fn stream(&self) -> Option<i64> {
        match self.write.status {
            Status::Backfilled(position) => Some(position),
            _ => self.reservation.as_ref().map(|r| r.position),
        }
    }

    /// The event's row, received at `now`.
    fn row(&self, now: i64) -> events::NewEvent<'_> {
        let write = &self.write;
        let pdu = write.pdu;
        events::NewEvent {
            event_id: pdu.event_id().as_str(),
            stream_ordering: self.stream(),
            room_id: pdu.room_id().as_str(),
            event_type: pdu.event_type(),
            state_key: pdu.state_key(),
            sender: pdu.sender().as_str(),
            origin_server_ts: pdu.origin_server_ts(),
            depth: pdu.depth(),
            json: &self.json,
            redacts: pdu.redacts().map(|r| r.as_str()),
            replaces_state: write.replaces_state.as_deref(),
            state_before: write.state_before,
            received_ts: now,
            outlier: matches!(write.status, Status::Outlier),
            soft_failed: matches!(write.status, Status::SoftFailed),
            rejected_reason: match &write.status {
                Status::Rejected(reason) => Some(reason.as_str()),
                _ => None,
            },
        }
    }
}

/// A stored event, for what follows its commit.
struct Stored {
    room_id: OwnedRoomId,
    timeline: bool,
    stream: Option<i64>,
    /// Held until the commit, so readers do not read past it before.
    reservation: Option<super::stream::Reservation>,
    fresh_hosts: Option<std::sync::Arc<[String]>>,
    destinations: Vec<String>,
    members_changed: Vec<String>,
}

/// The servers one of our events goes to: every other server with a
/// joined member after it, and the server of a member it removes (a
/// leave, kick or ban), who is no longer joined but must learn of it.
fn destinations_of(pdu: &Pdu, hosts: &[String], us: &ServerName) -> Vec<String> {
    let mut out: Vec<String> = hosts
        .iter()
        .filter(|h| h.as_str() != us.as_str())
        .cloned()
        .collect();
    if pdu.event_type() == "m.room.member"
        && matches!(pdu.membership(), Some("leave" | "ban"))
        && let Some((_, server)) = pdu.state_key().and_then(|k| k.split_once(':'))
        && server != us.as_str()
        && !out.iter().any(|h| h == server)
    {
        out.push(server.to_owned());
    }
    out
}

/// The redaction an event applies: its target (stored, in the room, not
/// redacted yet) and the target's redacted JSON.
pub(crate) async fn redaction_of(
    db: &storage::Db,
    version: RoomVersion,
    room_id: &str,
    target: &str,
) -> Result<Option<(String, String)>, ApiError> {
    let Some(target) = events::get(db, target)
        .await?
        .filter(|t| t.room_id == room_id && t.redacted_by.is_none())
    else {
        return Ok(None);
    };
    let mut obj = canonical_json::parse_object(target.json.as_bytes())
        .map_err(|e| corrupt("stored event unreadable", e))?;
    myelin_proto::redaction::redact_in_place(version.rules().redaction, &mut obj);
    Ok(Some((
        target.event_id,
        Value::Object(obj).to_canonical_string(),
    )))
}

/// What events are built on: the room's current state (the auth events
/// needed), its forward extremities and the depth after them.
pub(crate) struct BuildContext {
    room_id: OwnedRoomId,
    pub version: RoomVersion,
    auth_state: HashMap<(String, String), Pdu>,
    prev_events: Vec<OwnedEventId>,
    depth: i64,
    /// The room's current state snapshot: the state before the event.
    pub current_snapshot: Option<i64>,
}

impl BuildContext {
    /// Builds, signs and authorises an event of `sender` on the context.
    pub fn build(
        &self,
        state: &AppState,
        sender: &UserId,
        spec: EventSpec,
    ) -> Result<Pdu, ApiError> {
        let rules = self.version.rules();
        let auth_events: Vec<OwnedEventId> = auth::auth_types_for_event(
            rules,
            &spec.event_type,
            sender,
            spec.state_key.as_deref(),
            &spec.content,
        )
        .iter()
        .filter_map(|key| self.auth_state.get(key).map(|p| p.event_id().to_owned()))
        .collect();
        let mut builder = PduBuilder::new(
            spec.event_type,
            spec.state_key.as_deref(),
            spec.content,
            sender,
            Some(&self.room_id),
        );
        builder.prev_events = self.prev_events.clone();
        builder.auth_events = auth_events;
        builder.depth = self.depth;
        builder.origin_server_ts = crate::time::now_ms();
        builder.redacts = spec.redacts;
        builder.unsigned = spec.unsigned;
        let pdu = builder
            .build(
                self.version,
                state.server_name().as_str(),
                state.signing_key(),
            )
            .map_err(pdu_error)?;
        auth::check(rules, &pdu, |t, k| {
            self.auth_state.get(&(t.to_owned(), k.to_owned()))
        })
        .map_err(|e| ApiError::forbidden(e.to_string()))?;
        Ok(pdu)
    }

    /// Moves the context past `pdu`, a non-state event built on it: the
    /// next event follows it alone, on the same state.
    pub fn follow(&mut self, pdu: &Pdu) {
        self.prev_events = vec![pdu.event_id().to_owned()];
        self.depth = pdu.depth().saturating_add(1);
    }
}

/// How an event is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Status {
    /// Accepted into the timeline: a stream position, a forward extremity.
    Timeline,
    /// Allowed by the state before it but not by the current state: kept
    /// (with its state) but never shown, never an extremity.
    SoftFailed,
    /// Failed the auth rules: kept, never used as state.
    Rejected(String),
    /// Fetched for an auth chain or a state: no state, no timeline.
    Outlier,
    /// History from `/backfill`: at this (negative) stream position, with
    /// its state, but no push actions, no extremity, no current state.
    Backfilled(i64),
}

/// Who holds a key of the new current state.
#[derive(Debug, Clone)]
pub(crate) enum Holder {
    /// The event being written.
    This,
    /// A stored event (with its `membership`, for member events).
    Stored {
        event_nid: i64,
        event_id: String,
        membership: Option<String>,
    },
}

/// One key of the room's current state that changes (`holder: None`
/// removes it).
#[derive(Debug, Clone)]
pub(crate) struct StateChange {
    pub event_type: String,
    pub state_key: String,
    pub holder: Option<Holder>,
}

/// What a timeline event does to the room's current state.
#[derive(Debug, Clone)]
pub(crate) struct CurrentUpdate {
    /// The new current snapshot: `None` is the event's own state after
    /// it; otherwise a snapshot to write, with the key (if any) the event
    /// itself holds in it.
    pub snapshot: Option<(NewSnapshot, Option<i64>)>,
    pub changes: Vec<StateChange>,
}

/// Everything one event's write transaction stores.
pub(crate) struct EventWrite<'a> {
    pub pdu: &'a Pdu,
    pub status: Status,
    pub state_before: Option<i64>,
    /// For a state event placed in the graph: its key and the snapshot
    /// after it (planned on `state_before`; the event is set in it).
    pub own_state: Option<(i64, NewSnapshot)>,
    pub replaces_state: Option<String>,
    /// For timeline events that change the current state.
    pub current: Option<CurrentUpdate>,
    /// The target of a redaction this event applies, and its redacted JSON.
    pub redaction: Option<(String, String)>,
    pub txn: Option<(&'a UserId, TxnKey<'a>)>,
    pub new_room: Option<NewRoom<'a>>,
    /// A remote server's event we accepted through `send_join`,
    /// `send_leave` or `send_knock`: queued for the room's other servers
    /// (not this origin) in the same transaction, like our own events.
    pub relay_from: Option<&'a ServerName>,
}
