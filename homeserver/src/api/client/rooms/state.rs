//! Room state: `GET /rooms/{roomId}/state`, `GET` and `PUT
//! /rooms/{roomId}/state/{eventType}/{stateKey}`.
//!
//! Members read the current state; users who left read the state as it
//! was when they left; non-members of `world_readable` rooms read the
//! current state.

use axum::extract::State;
use ruma::api::client::state::{
    get_state_event_for_key::v3 as get_state_event_for_key,
    get_state_events::v3 as get_state_events, send_state_event::v3 as send_state_event,
};

use super::send::require_joined;
use super::strict_object;
use crate::api::auth::Authed;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::rooms::format::{self, Viewer};
use crate::rooms::visibility::{self, Access};
use crate::rooms::{EventSpec, pipeline};
use crate::state::AppState;
use crate::storage::events::{self, EventRow};
use crate::storage::{memberships, state as state_store};

/// The state a user may see: `(type, state_key, event_id)`, sorted.
pub(super) async fn visible_state(
    state: &AppState,
    auth: &Authed,
    room_id: &str,
) -> Result<Vec<(String, String, String)>, ApiError> {
    let db = state.db();
    match visibility::room_access(db, room_id, auth.user_id.as_str()).await? {
        Access::Joined | Access::Guest => Ok(state_store::current_ids(db, room_id, None).await?),
        Access::Departed { .. } => {
            let m = memberships::get(db, room_id, auth.user_id.as_str())
                .await?
                .ok_or_else(|| ApiError::forbidden("You are not a member of this room"))?;
            state_at_event(state, &m.event_id).await
        }
    }
}

/// The state after an event.
pub(super) async fn state_at_event(
    state: &AppState,
    event_id: &str,
) -> Result<Vec<(String, String, String)>, ApiError> {
    let db = state.db();
    let Some(snapshot) = events::get(db, event_id).await?.and_then(|e| e.state_after) else {
        return Ok(Vec::new());
    };
    Ok(state_store::load_snapshot(db, snapshot, None)
        .await?
        .into_iter()
        .map(|e| (e.event_type, e.state_key, e.event_id))
        .collect())
}

/// The events of `ids`, in the order of `ids`.
pub(super) async fn rows_in_order(
    state: &AppState,
    ids: &[&str],
) -> Result<Vec<EventRow>, ApiError> {
    let mut found: std::collections::HashMap<String, EventRow> = events::get_many(state.db(), ids)
        .await?
        .into_iter()
        .map(|r| (r.event_id.clone(), r))
        .collect();
    Ok(ids.iter().filter_map(|id| found.remove(*id)).collect())
}

fn viewer(auth: &Authed) -> Viewer<'_> {
    Viewer {
        user_id: auth.user_id.as_str(),
        device_id: auth.device_id.as_str(),
    }
}

pub async fn get_state(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_state_events::Request>,
) -> Result<RumaResponse<get_state_events::Response>, ApiError> {
    let ids = visible_state(&state, &auth, req.room_id.as_str()).await?;
    let ids: Vec<&str> = ids.iter().map(|(_, _, id)| id.as_str()).collect();
    let rows = rows_in_order(&state, &ids).await?;
    let raw = format::raw_events(state.db(), Some(viewer(&auth)), &rows).await?;
    Ok(RumaResponse(get_state_events::Response::new(raw)))
}

pub async fn get_state_key(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_state_event_for_key::Request>,
) -> Result<RumaResponse<get_state_event_for_key::Response>, ApiError> {
    let event_type = req.event_type.to_string();
    let ids = visible_state(&state, &auth, req.room_id.as_str()).await?;
    let not_found = || ApiError::not_found("Event not found");
    let (_, _, event_id) = ids
        .iter()
        .find(|(t, k, _)| *t == event_type && *k == req.state_key)
        .ok_or_else(not_found)?;
    let rows = rows_in_order(&state, &[event_id.as_str()]).await?;
    let mut events = format::client_events(state.db(), Some(viewer(&auth)), &rows).await?;
    let mut event = events.pop().ok_or_else(not_found)?;
    let body = if matches!(req.format, get_state_event_for_key::StateEventFormat::Event) {
        event
    } else {
        event
            .get_mut("content")
            .map(serde_json::Value::take)
            .unwrap_or_default()
    };
    let raw = serde_json::value::to_raw_value(&body)
        .map_err(|e| ApiError::internal("cannot serialise", e))?;
    Ok(RumaResponse(get_state_event_for_key::Response::new(raw)))
}

pub async fn put_state(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<send_state_event::Request>,
) -> Result<RumaResponse<send_state_event::Response>, ApiError> {
    state
        .rate_limiter()
        .check(crate::ratelimit::Limit::Message, auth.user_id.as_str())?;
    let content = strict_object(req.body.json())?;
    let event_type = req.event_type.to_string();
    let room_id = req.room_id.as_str();
    require_joined(&state, &auth, room_id).await?;
    let guard = state.rooms().lock(&req.room_id).await;
    // Checked under the room lock: it compares with the current event.
    if event_type == "m.room.canonical_alias" {
        crate::api::client::directory::aliases::check_canonical_alias(&state, room_id, &content)
            .await?;
    }
    // Setting state to what it already is (same sender, same content)
    // returns the existing event, as Synapse does: clients retry PUTs.
    if let Some(current) =
        state_store::current_event_id(state.db(), room_id, &event_type, &req.state_key).await?
        && let Some(row) = events::get(state.db(), &current).await?
        && row.sender == auth.user_id.as_str()
        && row.redacted_by.is_none()
    {
        let version = pipeline::room_version_of(&state, room_id).await?;
        let pdu = pipeline::stored_pdu(version, &row.json)?;
        if pdu.content() == &content {
            let id = pdu.event_id().to_owned();
            return Ok(RumaResponse(send_state_event::Response::new(id)));
        }
    }
    let spec = EventSpec::new(event_type, Some(&req.state_key), content);
    let event_id = guard.append(&state, &auth.user_id, spec, None).await?;
    Ok(RumaResponse(send_state_event::Response::new(event_id)))
}
