//! Steps 1 to 4 of the checks on receipt, and the auth checks against a
//! state, as pure functions and small reads.

use std::collections::HashMap;

use myelin_proto::auth::{self, AuthError};
use myelin_proto::canonical_json::Object;
use myelin_proto::state_res::StateMap;
use myelin_proto::verify::{KeyRing, Verified, verify_pdus};
use myelin_proto::{Pdu, RoomVersion};
use ruma::RoomId;

use super::{Ingest, KeySource, parsed};
use crate::api::error::ApiError;
use crate::storage::{events, state as state_store};

/// A state's events by `(type, state_key)`, as the auth rules read them.
pub(super) type AuthState = HashMap<(String, String), Pdu>;

/// Step 1: a valid PDU of the room version, of this room.
pub(super) fn parse(version: RoomVersion, room_id: &RoomId, obj: Object) -> Result<Pdu, String> {
    let pdu = Pdu::from_object(version, obj).map_err(|e| format!("invalid PDU: {e}"))?;
    pdu.expect_room(room_id).map_err(|e| e.to_string())?;
    Ok(pdu)
}

/// Steps 2 and 3 for many events at once (one signature batch): each
/// event as it must be used from here on (redacted when its content hash
/// does not match), or why it is dropped.
pub(super) fn verify(pdus: Vec<Pdu>, keys: &impl KeyRing) -> Vec<Result<Pdu, String>> {
    let outcomes = verify_pdus(&pdus, keys);
    pdus.into_iter()
        .zip(outcomes)
        .map(|(pdu, outcome)| match outcome {
            Ok(Verified::All) => Ok(pdu),
            Ok(Verified::SignaturesOnly) => {
                tracing::info!(event_id = %pdu.event_id(), "content hash mismatch: redacting");
                Ok(pdu.into_redacted())
            }
            Err(e) => Err(format!("signature check failed: {e}")),
        })
        .collect()
}

/// The auth rules against a state given as its events.
pub(super) fn auth(pdu: &Pdu, state: &AuthState) -> Result<(), AuthError> {
    auth::check(pdu.rules(), pdu, |t, k| {
        state.get(&(t.to_owned(), k.to_owned()))
    })
}

/// The keys of a state the auth rules read for `pdu`: its auth event
/// selection and the create event.
fn auth_keys(pdu: &Pdu) -> Vec<(String, String)> {
    let mut keys = auth::auth_types_for_event(
        pdu.rules(),
        pdu.event_type(),
        pdu.sender(),
        pdu.state_key(),
        pdu.content(),
    );
    let create = ("m.room.create".to_owned(), String::new());
    if !keys.contains(&create) {
        keys.push(create);
    }
    keys
}

impl<K: KeySource> Ingest<'_, '_, K> {
    /// Step 4: the rules on the `auth_events` list and the auth rules
    /// against the state they form. Missing auth events are fetched first.
    /// `Err` carries the rejection reason.
    pub(super) async fn check_auth_events(
        &self,
        pdu: &Pdu,
    ) -> Result<Result<(), String>, ApiError> {
        let db = self.state.db();
        let ids: Vec<&str> = pdu.auth_events().iter().map(|e| e.as_str()).collect();
        let mut stored = events::statuses(db, &ids).await?;
        if stored.len() < ids.len() {
            let missing: Vec<String> = ids
                .iter()
                .filter(|id| !stored.iter().any(|s| s.event_id == **id))
                .map(|id| (*id).to_owned())
                .collect();
            if let Err(reason) = self.fetch_outliers(missing).await? {
                return Ok(Err(format!("missing auth events: {reason}")));
            }
            stored = events::statuses(db, &ids).await?;
        }
        let mut auth_events = Vec::with_capacity(ids.len());
        for id in &ids {
            let Some(status) = stored.iter().find(|s| s.event_id == *id) else {
                return Ok(Err(format!("auth event {id} is missing")));
            };
            if status.rejected_reason.is_some() {
                return Ok(Err(format!("auth event {id} was rejected")));
            }
            if status.room_id != self.room_id.as_str() {
                return Ok(Err(format!("auth event {id} is of another room")));
            }
            auth_events.push(parsed::stored(self.version, &status.json)?);
        }
        let create = self.room_create().await?;
        Ok(check_against_auth_events(
            pdu,
            &auth_events,
            create.as_ref(),
        ))
    }

    /// The room's create event (the room exists, so we hold it).
    pub(super) async fn room_create(&self) -> Result<Option<Pdu>, ApiError> {
        let key = [("m.room.create".to_owned(), String::new())];
        let db = self.state.db();
        let found = state_store::current_events_for(db, self.room_id.as_str(), &key).await?;
        found
            .into_iter()
            .next()
            .map(|(_, _, json)| parsed::stored(self.version, &json))
            .transpose()
    }

    /// The events of `map` the auth rules read for `pdu`.
    pub(super) async fn auth_state_of(
        &self,
        pdu: &Pdu,
        map: &StateMap,
    ) -> Result<AuthState, ApiError> {
        let keys = auth_keys(pdu);
        let ids: Vec<&str> = keys
            .iter()
            .filter_map(|k| map.get(k).map(|id| id.as_str()))
            .collect();
        let mut out = AuthState::new();
        for status in events::statuses(self.state.db(), &ids).await? {
            let event = parsed::stored(self.version, &status.json)?;
            if let Some(sk) = event.state_key() {
                out.insert((event.event_type().to_owned(), sk.to_owned()), event);
            }
        }
        Ok(out)
    }

    /// The events of the room's current state the auth rules read for
    /// `pdu` (step 6).
    pub(super) async fn current_auth_state(&self, pdu: &Pdu) -> Result<AuthState, ApiError> {
        let keys = auth_keys(pdu);
        let db = self.state.db();
        let mut out = AuthState::new();
        for (t, k, json) in
            state_store::current_events_for(db, self.room_id.as_str(), &keys).await?
        {
            out.insert((t, k), parsed::stored(self.version, &json)?);
        }
        Ok(out)
    }
}

/// The rules on the auth events list, then the auth rules against the
/// state the auth events form (with the room's create event, which v12
/// does not list).
pub(super) fn check_against_auth_events(
    pdu: &Pdu,
    auth_events: &[Pdu],
    create: Option<&Pdu>,
) -> Result<(), String> {
    let refs: Vec<&Pdu> = auth_events.iter().collect();
    auth::check_auth_events(pdu.rules(), pdu, &refs, create)
        .map_err(|e| format!("bad auth events: {e}"))?;
    let mut state = AuthState::new();
    if let Some(create) = create {
        state.insert(("m.room.create".to_owned(), String::new()), create.clone());
    }
    for event in auth_events {
        if let Some(sk) = event.state_key() {
            state.insert(
                (event.event_type().to_owned(), sk.to_owned()),
                event.clone(),
            );
        }
    }
    auth(pdu, &state).map_err(|e| format!("not allowed by its auth events: {e}"))
}
