//! Storing a received event as its checks decided, through the one write
//! path local events use ([`crate::rooms::RoomGuard::write`]), and the
//! room's new current state after an accepted event.

use myelin_proto::Pdu;
use myelin_proto::auth::PowerLevels;
use myelin_proto::state_res::StateMap;
use ruma::OwnedEventId;

use super::KeySource;
use super::check::AuthState;
use super::state_at::{StateAt, current_map, differing_keys, load_map, plan_snapshot, resolve};
use super::{Ingest, parsed};
use crate::api::error::ApiError;
use crate::rooms::pipeline::{
    CurrentUpdate, EventWrite, Holder, StateChange, Status, redaction_of, stored_pdu,
};
use crate::storage::state::{self as state_store, NewSnapshot};
use crate::storage::{events, rooms};

impl<K: KeySource> Ingest<'_, '_, K> {
    pub(super) fn write_of<'p>(
        &'p self,
        pdu: &'p Pdu,
        status: Status,
        before: Option<&StateAt>,
    ) -> EventWrite<'p> {
        EventWrite {
            pdu,
            status,
            state_before: before.map(|b| b.snapshot),
            own_state: None,
            replaces_state: None,
            current: None,
            redaction: None,
            txn: None,
            new_room: None,
            relay_from: self.relay_from,
        }
    }

    /// For a state event placed in the graph: its key and the snapshot
    /// after it, and the event it replaced in the state before it.
    pub(super) async fn own_state(
        &self,
        pdu: &Pdu,
        before: &StateAt,
    ) -> Result<(Option<(i64, NewSnapshot)>, Option<String>), ApiError> {
        let Some(sk) = pdu.state_key() else {
            return Ok((None, None));
        };
        let db = self.state.db();
        let key_nid = state_store::intern_keys(db, &[(pdu.event_type(), sk)]).await?[0];
        let replaces = before
            .map
            .get(&(pdu.event_type().to_owned(), sk.to_owned()))
            .map(ToString::to_string);
        let plan = NewSnapshot::plan(db, Some(before.snapshot)).await?;
        Ok((Some((key_nid, plan)), replaces))
    }

    pub(super) async fn store_outlier_event(&self, pdu: &Pdu) -> Result<(), ApiError> {
        let write = self.write_of(pdu, Status::Outlier, None);
        self.guard.write(self.state, write).await?;
        Ok(())
    }

    /// Stores a rejected event; with the state before it when known (its
    /// state after it is the same: a rejected event is never state).
    pub(super) async fn store_rejected(
        &self,
        pdu: &Pdu,
        reason: String,
        before: Option<&StateAt>,
    ) -> Result<(), ApiError> {
        let write = self.write_of(pdu, Status::Rejected(reason), before);
        self.guard.write(self.state, write).await?;
        Ok(())
    }

    /// Stores a soft-failed event with its state, outside the timeline.
    pub(super) async fn store_soft_failed(
        &self,
        pdu: &Pdu,
        before: &StateAt,
    ) -> Result<(), ApiError> {
        let mut write = self.write_of(pdu, Status::SoftFailed, Some(before));
        (write.own_state, write.replaces_state) = self.own_state(pdu, before).await?;
        self.guard.write(self.state, write).await?;
        Ok(())
    }

    /// Stores an accepted event in the timeline with the room's new
    /// current state and the redaction it applies. `at_current`: the state
    /// before it is the room's current state.
    pub(super) async fn store_accepted(
        &self,
        pdu: &Pdu,
        before: &StateAt,
        before_auth: &AuthState,
        at_current: bool,
    ) -> Result<(), ApiError> {
        let mut write = self.write_of(pdu, Status::Timeline, Some(before));
        (write.own_state, write.replaces_state) = self.own_state(pdu, before).await?;
        write.current = match self.new_current_state(pdu, before, at_current).await? {
            Ok(update) => Some(update),
            Err(reason) => {
                // The event is fine; only the room's state could not be
                // recomputed within bounds. Keep the current state.
                tracing::warn!(event_id = %pdu.event_id(), %reason, "current state not updated");
                None
            }
        };
        if let Some(target) = pdu.redacts()
            && pdu.event_type() == "m.room.redaction"
            && self.may_redact(pdu, target.as_str(), before_auth).await?
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
        Ok(())
    }

    /// Whether a received redaction may be applied (the spec leaves this
    /// to servers; as Synapse): the redacter's server sent the target, or
    /// the redacter has the `redact` level in the state before it.
    pub(super) async fn may_redact(
        &self,
        pdu: &Pdu,
        target: &str,
        before_auth: &AuthState,
    ) -> Result<bool, ApiError> {
        let Some(target) = events::get(self.state.db(), target).await? else {
            return Ok(false);
        };
        let target = stored_pdu(self.version, &target.json)?;
        if target.sender().server_name() == pdu.sender().server_name() {
            return Ok(true);
        }
        let create = before_auth.get(&("m.room.create".to_owned(), String::new()));
        let pl = before_auth.get(&("m.room.power_levels".to_owned(), String::new()));
        let power = PowerLevels::new(self.version.rules(), create, pl);
        Ok(power.user_level(pdu.sender()).at_least(power.redact()))
    }

    /// The room's current state once `pdu` is accepted: the state after it
    /// when it becomes the only forward extremity, else the resolution of
    /// the states after every forward extremity.
    async fn new_current_state(
        &self,
        pdu: &Pdu,
        before: &StateAt,
        at_current: bool,
    ) -> Result<Result<CurrentUpdate, String>, ApiError> {
        let db = self.state.db();
        let room_id = self.room_id.as_str();
        let mut after = before.map.clone();
        if let Some(sk) = pdu.state_key() {
            after.insert(
                (pdu.event_type().to_owned(), sk.to_owned()),
                pdu.event_id().to_owned(),
            );
        }
        let others: Vec<String> = rooms::forward_extremities(db, room_id)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .filter(|id| !pdu.prev_events().iter().any(|p| p.as_str() == id))
            .collect();
        // The current state is not read again when it is the state before.
        let old = if at_current {
            before.map.clone()
        } else {
            current_map(db, room_id).await?
        };
        let (new, snapshot) = if others.is_empty() {
            (after, None)
        } else {
            let refs: Vec<&str> = others.iter().map(String::as_str).collect();
            let mut maps = vec![after];
            for status in events::statuses(db, &refs).await? {
                if let Some(s) = status.state_after {
                    maps.push(load_map(db, s).await?);
                }
            }
            let new = match resolve(db, self.version, &maps, &[pdu]).await? {
                Ok(new) => new,
                Err(reason) => return Ok(Err(reason)),
            };
            let room = rooms::get(db, room_id).await?;
            let candidates: Vec<(i64, &StateMap)> = room
                .and_then(|r| r.current_snapshot)
                .map(|s| (s, &old))
                .into_iter()
                .collect();
            let plan = plan_snapshot(db, &new, &candidates, Some(pdu.event_id())).await?;
            (new, Some(plan))
        };
        let changes = self.changes(pdu, &old, &new).await?;
        Ok(Ok(CurrentUpdate { snapshot, changes }))
    }

    /// The keys of the current state that change from `old` to `new`.
    pub(super) async fn changes(
        &self,
        pdu: &Pdu,
        old: &StateMap,
        new: &StateMap,
    ) -> Result<Vec<StateChange>, ApiError> {
        let keys = differing_keys(new, old);
        let ids: Vec<&str> = keys
            .iter()
            .filter_map(|k| new.get(*k))
            .filter(|id| id.as_str() != pdu.event_id().as_str())
            .map(|id| id.as_str())
            .collect();
        let stored = events::statuses(self.state.db(), &ids).await?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let holder = match new.get(key) {
                None => None,
                Some(id) if id.as_str() == pdu.event_id().as_str() => Some(Holder::This),
                Some(id) => Some(self.holder(&stored, id)?),
            };
            out.push(StateChange {
                event_type: key.0.clone(),
                state_key: key.1.clone(),
                holder,
            });
        }
        Ok(out)
    }

    fn holder(
        &self,
        stored: &[events::EventStatus],
        id: &OwnedEventId,
    ) -> Result<Holder, ApiError> {
        let status = stored
            .iter()
            .find(|s| s.event_id == id.as_str())
            .ok_or_else(|| ApiError::internal("state event not stored", id))?;
        let event = parsed::stored(self.version, &status.json)?;
        Ok(Holder::Stored {
            event_nid: status.event_nid,
            event_id: status.event_id.clone(),
            membership: event.membership().map(str::to_owned),
        })
    }
}
