//! Fetching what a received event needs from other servers: auth events,
//! missing prev events, the state at a prev event. Every fetched event is
//! checked like a received one (format, room, ID, signatures, content
//! hash) before it is used; events stored from here are outliers, or go
//! through the whole pipeline (missing prev events).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;

use myelin_proto::Pdu;
use myelin_proto::canonical_json::Object;
use myelin_proto::state_res::StateMap;
use myelin_proto::verify::KeyRing;
use ruma::{EventId, OwnedEventId, RoomId};

use super::check::{self, check_against_auth_events};
use super::{Fetch, Ingest, MAX_STATE_IDS, MISSING_EVENTS_LIMIT};
use crate::api::error::ApiError;
use crate::rooms::pipeline::stored_pdu;
use crate::storage::{events, rooms};

/// A boxed, sendable future (the trait below is object-safe with it).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A failed request to another server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RemoteError(pub String);

/// The answer of `/state_ids`: the state before an event and the auth
/// chain of that state.
#[derive(Debug, Clone, Default)]
pub struct StateIds {
    pub pdu_ids: Vec<OwnedEventId>,
    pub auth_chain_ids: Vec<OwnedEventId>,
}

/// How the inbound pipeline asks other servers for events (implemented
/// by the federation client; the pipeline does not care how). Answers are
/// PDUs as received: the pipeline checks everything itself.
pub trait RemoteEvents: Send + Sync {
    /// `POST /get_missing_events/{room_id}`: events before `latest` and
    /// after `earliest`, at most `limit`, none below `min_depth`.
    fn missing_events<'a>(
        &'a self,
        room_id: &'a RoomId,
        earliest: &'a [OwnedEventId],
        latest: &'a [OwnedEventId],
        limit: u32,
        min_depth: i64,
    ) -> BoxFuture<'a, Result<Vec<Object>, RemoteError>>;

    /// `GET /event/{event_id}`: one event.
    fn event<'a>(
        &'a self,
        room_id: &'a RoomId,
        event_id: &'a EventId,
    ) -> BoxFuture<'a, Result<Object, RemoteError>>;

    /// `GET /state_ids/{room_id}?event_id=`: the state before an event.
    fn state_ids<'a>(
        &'a self,
        room_id: &'a RoomId,
        event_id: &'a EventId,
    ) -> BoxFuture<'a, Result<StateIds, RemoteError>>;
}

/// Where the pipeline finds the keys to verify events with. The keys of
/// received PDUs are gathered before the call; events fetched on the way
/// may be signed by other servers, so the ring may have to grow.
pub trait KeySource: KeyRing + Sync {
    /// Makes the keys that `pdus` need answer [`KeyRing::key`], fetching
    /// what is missing. The default: the ring already knows every key.
    fn prepare<'a>(&'a self, _pdus: &'a [Pdu]) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// `pdus` ordered so that each comes after those of its auth events that
/// are among them. Events in an auth cycle come last (their auth events
/// will be found missing, which rejects them).
pub(super) fn auth_order(pdus: Vec<Pdu>) -> Vec<Pdu> {
    let ids: HashSet<OwnedEventId> = pdus.iter().map(|p| p.event_id().to_owned()).collect();
    let mut done: HashSet<OwnedEventId> = HashSet::new();
    let mut rest = pdus;
    rest.sort_by_key(Pdu::depth);
    let mut out = Vec::with_capacity(rest.len());
    loop {
        let before = rest.len();
        let (ready, waiting): (Vec<Pdu>, Vec<Pdu>) = rest.into_iter().partition(|p| {
            p.auth_events()
                .iter()
                .all(|a| !ids.contains(a) || done.contains(a))
        });
        for p in &ready {
            done.insert(p.event_id().to_owned());
        }
        out.extend(ready);
        rest = waiting;
        if rest.is_empty() || rest.len() == before {
            break;
        }
    }
    out.extend(rest);
    out
}

impl<K: KeySource> Ingest<'_, '_, K> {
    /// Fetches the events of `ids` we lack, checks them, and stores them
    /// as outliers (each auth-checked against its own auth events, which
    /// are fetched too). `Err` says why some could not be had.
    pub(super) async fn fetch_outliers(
        &self,
        ids: Vec<String>,
    ) -> Result<Result<(), String>, ApiError> {
        let db = self.state.db();
        let mut fetched: HashMap<OwnedEventId, Pdu> = HashMap::new();
        let mut wanted = ids;
        let mut failure = None;
        while !wanted.is_empty() {
            let refs: Vec<&str> = wanted.iter().map(String::as_str).collect();
            let stored: HashSet<String> = events::statuses(db, &refs)
                .await?
                .into_iter()
                .map(|s| s.event_id)
                .collect();
            let missing: Vec<OwnedEventId> = wanted
                .iter()
                .filter(|id| !stored.contains(*id))
                .filter_map(|id| OwnedEventId::try_from(id.as_str()).ok())
                .filter(|id| !fetched.contains_key(id))
                .collect();
            if missing.is_empty() {
                break;
            }
            if let Err(reason) = self.charge(missing.len()) {
                failure = Some(reason);
                break;
            }
            let mut got = Vec::with_capacity(missing.len());
            for id in &missing {
                match self.fetch_one(id).await {
                    Ok(pdu) => got.push(pdu),
                    Err(reason) => failure = Some(reason),
                }
            }
            let mut next = Vec::new();
            self.keys.prepare(&got).await;
            for checked in check::verify(got, self.keys) {
                match checked {
                    Ok(pdu) => {
                        next.extend(pdu.auth_events().iter().map(ToString::to_string));
                        fetched.insert(pdu.event_id().to_owned(), pdu);
                    }
                    Err(reason) => failure = Some(reason),
                }
            }
            wanted = next;
        }
        for pdu in auth_order(fetched.into_values().collect()) {
            self.store_outlier(&pdu).await?;
        }
        Ok(match failure {
            Some(reason) => Err(reason),
            None => Ok(()),
        })
    }

    /// One event from the remote, checked to be the event asked for, of
    /// this room, well-formed (signatures are checked by the caller, in a
    /// batch).
    async fn fetch_one(&self, id: &EventId) -> Result<Pdu, String> {
        let obj = self
            .remote
            .event(self.room_id, id)
            .await
            .map_err(|e| format!("fetching {id}: {e}"))?;
        let pdu = check::parse(self.version, self.room_id, obj)?;
        if pdu.event_id() != id {
            return Err(format!("asked for {id}, got {}", pdu.event_id()));
        }
        Ok(pdu)
    }

    /// Stores a fetched event as an outlier: rejected if its own auth
    /// events are missing, rejected, or do not allow it.
    async fn store_outlier(&self, pdu: &Pdu) -> Result<(), ApiError> {
        let db = self.state.db();
        let ids: Vec<&str> = pdu.auth_events().iter().map(|e| e.as_str()).collect();
        let stored = events::statuses(db, &ids).await?;
        let mut verdict = Ok(());
        let mut auth_events = Vec::with_capacity(ids.len());
        for id in &ids {
            match stored.iter().find(|s| s.event_id == *id) {
                None => verdict = Err(format!("auth event {id} is missing")),
                Some(s) if s.rejected_reason.is_some() => {
                    verdict = Err(format!("auth event {id} was rejected"));
                }
                Some(s) if s.room_id != self.room_id.as_str() => {
                    verdict = Err(format!("auth event {id} is of another room"));
                }
                Some(s) => auth_events.push(stored_pdu(self.version, &s.json)?),
            }
        }
        if verdict.is_ok() {
            let create = self.room_create().await?;
            verdict = check_against_auth_events(pdu, &auth_events, create.as_ref());
        }
        match verdict {
            Ok(()) => self.store_outlier_event(pdu).await,
            Err(reason) => self.store_rejected(pdu, reason, None).await,
        }
    }

    /// The state after a prev event we lack (or hold without a state),
    /// from `/state_ids` at it: the state before it plus itself, every
    /// event fetched, checked and stored as an outlier.
    pub(super) async fn state_from_remote(
        &self,
        prev: &EventId,
    ) -> Result<Result<StateMap, String>, ApiError> {
        if let Err(reason) = self.charge(1) {
            return Ok(Err(reason));
        }
        let ids = match self.remote.state_ids(self.room_id, prev).await {
            Ok(ids) => ids,
            Err(e) => return Ok(Err(format!("state at {prev} unavailable: {e}"))),
        };
        if ids.pdu_ids.len() > MAX_STATE_IDS || ids.auth_chain_ids.len() > MAX_STATE_IDS {
            return Ok(Err(format!("the state at {prev} is too large")));
        }
        let mut wanted: Vec<String> = ids
            .auth_chain_ids
            .iter()
            .chain(&ids.pdu_ids)
            .map(ToString::to_string)
            .collect();
        wanted.push(prev.to_string());
        if let Err(reason) = self.fetch_outliers(wanted).await? {
            return Ok(Err(format!("state at {prev} incomplete: {reason}")));
        }
        let mut state_ids: Vec<&str> = ids.pdu_ids.iter().map(|e| e.as_str()).collect();
        state_ids.push(prev.as_str());
        let db = self.state.db();
        let stored = events::statuses(db, &state_ids).await?;
        let mut map = StateMap::default();
        for id in &state_ids {
            let Some(status) = stored.iter().find(|s| s.event_id == *id) else {
                return Ok(Err(format!("state event {id} missing")));
            };
            // Rejected events are never state.
            if status.rejected_reason.is_some() || status.room_id != self.room_id.as_str() {
                continue;
            }
            let event = stored_pdu(self.version, &status.json)?;
            if let Some(sk) = event.state_key() {
                let key = (event.event_type().to_owned(), sk.to_owned());
                map.insert(key, event.event_id().to_owned());
            }
        }
        Ok(Ok(map))
    }

    /// Asks for the events between our forward extremities and `pdu` and
    /// processes those that come back, oldest first (one bounded request:
    /// what remains missing is bridged with the state at it).
    pub(super) async fn fetch_missing(&self, pdu: &Pdu) -> Result<(), ApiError> {
        if self.charge(MISSING_EVENTS_LIMIT as usize).is_err() {
            return Ok(());
        }
        let db = self.state.db();
        let extremities = rooms::forward_extremities(db, self.room_id.as_str()).await?;
        let min_depth = extremities.iter().map(|(_, d)| *d).min().unwrap_or(0);
        let earliest: Vec<OwnedEventId> = extremities
            .iter()
            .filter_map(|(id, _)| OwnedEventId::try_from(id.as_str()).ok())
            .collect();
        let latest = [pdu.event_id().to_owned()];
        let got = match self
            .remote
            .missing_events(
                self.room_id,
                &earliest,
                &latest,
                MISSING_EVENTS_LIMIT,
                min_depth,
            )
            .await
        {
            Ok(got) => got,
            Err(e) => {
                tracing::info!(event_id = %pdu.event_id(), error = %e, "get_missing_events failed");
                return Ok(());
            }
        };
        let parsed: Vec<Pdu> = got
            .into_iter()
            .take(MISSING_EVENTS_LIMIT as usize)
            .filter_map(|obj| check::parse(self.version, self.room_id, obj).ok())
            .filter(|p| p.event_id() != pdu.event_id())
            .collect();
        self.keys.prepare(&parsed).await;
        let mut checked: Vec<Pdu> = check::verify(parsed, self.keys)
            .into_iter()
            .filter_map(Result::ok)
            .collect();
        checked.sort_by_key(Pdu::depth);
        for event in checked {
            self.process_boxed(event, Fetch::StateOnly).await?;
        }
        Ok(())
    }
}
