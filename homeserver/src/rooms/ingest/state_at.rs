//! The state before a received event (the state after its prev events,
//! resolved when they differ), state resolution over stored events, and
//! writing a computed state as a snapshot.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use myelin_proto::state_res::{self, EventSource, StateMap};
use myelin_proto::{Pdu, RoomVersion};
use ruma::{EventId, OwnedEventId};

use super::KeySource;
use super::{Fetch, Ingest, MAX_AUTH_CHAIN};
use crate::api::error::ApiError;
use crate::rooms::pipeline::stored_pdu;
use crate::storage::state::{self as state_store, NewSnapshot};
use crate::storage::{Db, events};

/// A state computed for an event: its snapshot and its map.
pub(super) struct StateAt {
    pub snapshot: i64,
    pub map: StateMap,
}

/// The events a resolution may read, loaded up front (resolution is
/// synchronous), with which of them were rejected.
pub(super) struct Loaded {
    events: HashMap<OwnedEventId, Arc<Pdu>>,
    rejected: HashSet<OwnedEventId>,
}

impl EventSource for Loaded {
    fn event(&self, id: &EventId) -> Option<Arc<Pdu>> {
        self.events.get(id).cloned()
    }

    fn is_rejected(&self, id: &EventId) -> bool {
        self.rejected.contains(id)
    }
}

/// A snapshot's state as a map.
pub(super) async fn load_map(db: &Db, snapshot: i64) -> Result<StateMap, ApiError> {
    let mut map = StateMap::default();
    for entry in state_store::load_snapshot(db, snapshot, None).await? {
        let id = OwnedEventId::try_from(entry.event_id)
            .map_err(|e| ApiError::internal("stored event ID", e))?;
        map.insert((entry.event_type, entry.state_key), id);
    }
    Ok(map)
}

/// The room's current state as a map (the `current_state` rows mirror
/// `rooms.current_snapshot`).
pub(super) async fn current_map(db: &Db, room_id: &str) -> Result<StateMap, ApiError> {
    let mut map = StateMap::default();
    for (t, k, id) in state_store::current_ids(db, room_id, None).await? {
        let id =
            OwnedEventId::try_from(id).map_err(|e| ApiError::internal("stored event ID", e))?;
        map.insert((t, k), id);
    }
    Ok(map)
}

/// Loads the events of `maps` and their auth chains (and `extra`, events
/// not stored yet, with theirs). `Err` when the auth chains are over
/// [`MAX_AUTH_CHAIN`].
async fn load_for_resolution(
    db: &Db,
    version: RoomVersion,
    maps: &[StateMap],
    extra: &[&Pdu],
) -> Result<Result<Loaded, String>, ApiError> {
    let mut ids: HashSet<String> = maps
        .iter()
        .flat_map(|m| m.values().map(ToString::to_string))
        .collect();
    for pdu in extra {
        ids.remove(pdu.event_id().as_str());
        ids.extend(pdu.auth_events().iter().map(ToString::to_string));
    }
    let roots: Vec<&str> = ids.iter().map(String::as_str).collect();
    let Some(chain) = events::auth_chain_ids(db, &roots, MAX_AUTH_CHAIN).await? else {
        return Ok(Err(format!(
            "auth chains over {MAX_AUTH_CHAIN} events: not resolving"
        )));
    };
    let mut all: Vec<&str> = roots;
    all.extend(chain.iter().map(String::as_str));
    let mut loaded = Loaded {
        events: HashMap::with_capacity(all.len() + extra.len()),
        rejected: HashSet::new(),
    };
    for status in events::statuses(db, &all).await? {
        let pdu = stored_pdu(version, &status.json)?;
        let id = pdu.event_id().to_owned();
        if status.rejected_reason.is_some() {
            loaded.rejected.insert(id.clone());
        }
        loaded.events.insert(id, Arc::new(pdu));
    }
    for pdu in extra {
        loaded
            .events
            .insert(pdu.event_id().to_owned(), Arc::new((*pdu).clone()));
    }
    Ok(Ok(loaded))
}

/// State resolution of `maps` over stored events (and `extra`).
pub(super) async fn resolve(
    db: &Db,
    version: RoomVersion,
    maps: &[StateMap],
    extra: &[&Pdu],
) -> Result<Result<StateMap, String>, ApiError> {
    let loaded = match load_for_resolution(db, version, maps, extra).await? {
        Ok(loaded) => loaded,
        Err(reason) => return Ok(Err(reason)),
    };
    Ok(state_res::resolve(version.rules(), maps, &loaded)
        .map_err(|e| format!("state resolution failed: {e}")))
}

/// Keys whose holder differs between two states.
pub(super) fn differing_keys<'m>(a: &'m StateMap, b: &'m StateMap) -> Vec<&'m (String, String)> {
    let mut keys: Vec<&(String, String)> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .map(|(k, _)| k)
        .collect();
    keys.extend(b.keys().filter(|k| !a.contains_key(*k)));
    keys
}

/// Plans `target` as a snapshot: a delta against the nearest of
/// `candidates` (the one it differs least from), or in full. An entry
/// held by `own` (an event not stored yet) is left out and its key
/// returned, for the writer to set once the event has its number.
pub(super) async fn plan_snapshot(
    db: &Db,
    target: &StateMap,
    candidates: &[(i64, &StateMap)],
    own: Option<&EventId>,
) -> Result<(NewSnapshot, Option<i64>), ApiError> {
    let nearest = candidates
        .iter()
        .min_by_key(|(_, map)| differing_keys(target, map).len());
    let (mut plan, changed): (NewSnapshot, Vec<&(String, String)>) = match nearest {
        Some((parent, map)) => (
            NewSnapshot::plan(db, Some(*parent)).await?,
            differing_keys(target, map),
        ),
        None => (NewSnapshot::plan(db, None).await?, target.keys().collect()),
    };
    let key_refs: Vec<(&str, &str)> = changed
        .iter()
        .map(|(t, k)| (t.as_str(), k.as_str()))
        .collect();
    let key_nids = state_store::intern_keys(db, &key_refs).await?;
    let ids: Vec<&str> = changed
        .iter()
        .filter_map(|k| target.get(*k))
        .map(|id| id.as_str())
        .collect();
    let nids: HashMap<String, i64> = events::statuses(db, &ids)
        .await?
        .into_iter()
        .map(|s| (s.event_id, s.event_nid))
        .collect();
    let mut own_key = None;
    for (key, key_nid) in changed.iter().zip(key_nids) {
        match target.get(*key) {
            None => plan.set(key_nid, None),
            Some(id) if own.is_some_and(|o| o.as_str() == id.as_str()) => own_key = Some(key_nid),
            Some(id) => match nids.get(id.as_str()) {
                Some(nid) => plan.set(key_nid, Some(*nid)),
                None => return Err(ApiError::internal("state event not stored", id)),
            },
        }
    }
    Ok((plan, own_key))
}

impl<K: KeySource> Ingest<'_, '_, K> {
    /// The state before `pdu` if every prev event is stored with a state
    /// (no fetching); used to place events rejected at step 4.
    pub(super) async fn state_before_known(&self, pdu: &Pdu) -> Result<Option<StateAt>, ApiError> {
        let db = self.state.db();
        let ids: Vec<&str> = pdu.prev_events().iter().map(|e| e.as_str()).collect();
        let stored = events::statuses(db, &ids).await?;
        let mut states = Vec::with_capacity(ids.len());
        for id in &ids {
            match stored
                .iter()
                .find(|s| s.event_id == *id)
                .and_then(|s| s.state_after)
            {
                Some(snapshot) => states.push((Some(snapshot), load_map(db, snapshot).await?)),
                None => return Ok(None),
            }
        }
        Ok(self.combine(pdu, states).await?.ok())
    }

    /// Step 5's state: the state after each prev event (fetching what is
    /// missing, as `fetch` allows), resolved when they differ, stored as
    /// a snapshot. `Err` says why it cannot be had.
    pub(super) async fn state_before(
        &self,
        pdu: &Pdu,
        fetch: Fetch,
    ) -> Result<Result<StateAt, String>, ApiError> {
        let db = self.state.db();
        let ids: Vec<&str> = pdu.prev_events().iter().map(|e| e.as_str()).collect();
        let mut stored = events::statuses(db, &ids).await?;
        if fetch == Fetch::Missing && stored.len() < ids.len() {
            self.fetch_missing(pdu).await?;
            stored = events::statuses(db, &ids).await?;
        }
        let mut states = Vec::with_capacity(ids.len());
        for prev in pdu.prev_events() {
            let known = stored
                .iter()
                .find(|s| s.event_id == prev.as_str())
                .and_then(|s| s.state_after);
            match known {
                Some(snapshot) => states.push((Some(snapshot), load_map(db, snapshot).await?)),
                None => match self.state_from_remote(prev).await? {
                    Ok(map) => states.push((None, map)),
                    Err(reason) => return Ok(Err(reason)),
                },
            }
        }
        self.combine(pdu, states).await
    }

    /// One state out of the prev events' states, as a snapshot: a prev's
    /// own snapshot when there is one state, else the resolution written
    /// as a delta against the nearest known snapshot.
    async fn combine(
        &self,
        pdu: &Pdu,
        states: Vec<(Option<i64>, StateMap)>,
    ) -> Result<Result<StateAt, String>, ApiError> {
        let db = self.state.db();
        if let [(Some(snapshot), map)] = states.as_slice() {
            return Ok(Ok(StateAt {
                snapshot: *snapshot,
                map: map.clone(),
            }));
        }
        let target = if states.len() == 1 {
            states[0].1.clone()
        } else {
            let maps: Vec<StateMap> = states.iter().map(|(_, m)| m.clone()).collect();
            match resolve(db, self.version, &maps, &[]).await? {
                Ok(map) => map,
                Err(reason) => return Ok(Err(reason)),
            }
        };
        let room = crate::storage::rooms::get(db, self.room_id.as_str()).await?;
        let current = match room.and_then(|r| r.current_snapshot) {
            Some(s) => Some((s, current_map(db, self.room_id.as_str()).await?)),
            None => None,
        };
        let mut candidates: Vec<(i64, &StateMap)> = states
            .iter()
            .filter_map(|(s, m)| s.map(|s| (s, m)))
            .collect();
        if let Some((s, m)) = &current {
            candidates.push((*s, m));
        }
        if let Some((snapshot, _)) = candidates
            .iter()
            .find(|(_, m)| differing_keys(&target, m).is_empty())
        {
            return Ok(Ok(StateAt {
                snapshot: *snapshot,
                map: target,
            }));
        }
        let (plan, _) = plan_snapshot(db, &target, &candidates, None).await?;
        // A snapshot nothing points at yet is harmless (like an interned
        // key), so it is written in its own short transaction.
        let tx = db.begin_write().await?;
        let snapshot = plan.write(&tx, self.room_id.as_str()).await?;
        tx.commit().await?;
        tracing::debug!(event_id = %pdu.event_id(), snapshot, "state before event resolved");
        Ok(Ok(StateAt {
            snapshot,
            map: target,
        }))
    }
}
