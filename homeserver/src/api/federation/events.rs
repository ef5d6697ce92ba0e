//! What other servers read of our rooms' event graph: `GET /event`,
//! `/state`, `/state_ids`, `/event_auth`, `/backfill` and
//! `POST /get_missing_events`.
//!
//! Every endpoint checks the room's server ACL and that the origin may
//! read the room ([`server_visibility::require_in_room`]). Rejected
//! events are never served (as if unknown); soft-failed ones are, as
//! Synapse does (they are valid events, only not allowed by our current
//! state). Outliers have no state: `/state` and `/state_ids` at one are
//! 404. Auth chains include the room's create event, which room version 12
//! leaves out of `auth_events`. Events the origin may not see
//! (history visibility) are served redacted in `/backfill` and
//! `/get_missing_events`, and are 404 for `/event`.

use std::collections::{BTreeSet, BinaryHeap, HashSet};

use axum::extract::State;
use myelin_proto::canonical_json::{self, Value};
use ruma::api::federation::authorization::get_event_authorization;
use ruma::api::federation::backfill::get_backfill;
use ruma::api::federation::event::{
    get_event, get_missing_events, get_room_state, get_room_state_ids,
};
use ruma::{OwnedEventId, RoomId};
use serde_json::value::RawValue;

use super::Origin;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::federation::acl;
use crate::federation::keys::to_ruma_ts;
use crate::federation::server_visibility::{ServerView, require_in_room};
use crate::rooms::pipeline::{room_version_of, stored_pdu};
use crate::state::AppState;
use crate::storage::events::{self, EventStatus};
use crate::storage::state as state_store;

/// Most events one `/backfill` returns.
const MAX_BACKFILL: usize = 100;
/// Most events one `/get_missing_events` returns (Synapse caps at 20 too).
const MAX_MISSING: usize = 20;
/// Most starting events `/backfill` and `/get_missing_events` accept.
const MAX_START_EVENTS: usize = 20;
/// Most events in an auth chain served (a hostile room can make them long;
/// past this the answer would be too large to be useful).
const MAX_AUTH_CHAIN: usize = 50_000;

fn not_found(event_id: &str) -> ApiError {
    ApiError::not_found(format!("Event {event_id} not found"))
}

/// The ACL and room membership checks every endpoint starts with.
async fn allowed(
    state: &AppState,
    room_id: &RoomId,
    origin: &ruma::ServerName,
) -> Result<(), ApiError> {
    acl::check(state, room_id.as_str(), origin).await?;
    require_in_room(state, room_id.as_str(), origin).await
}

/// An event of `room_id` we may serve (stored, not rejected).
async fn servable(
    state: &AppState,
    room_id: &str,
    event_id: &str,
) -> Result<EventStatus, ApiError> {
    events::statuses(state.db(), &[event_id])
        .await?
        .into_iter()
        .next()
        .filter(|s| s.room_id == room_id && s.rejected_reason.is_none())
        .ok_or_else(|| not_found(event_id))
}

fn raw(json: String) -> Result<Box<RawValue>, ApiError> {
    RawValue::from_string(json).map_err(|e| ApiError::internal("corrupt event JSON in storage", e))
}

/// The stored events of `ids` that may be served (not rejected, of this
/// room), as raw JSON.
async fn raw_events(
    state: &AppState,
    room_id: &str,
    ids: &[String],
) -> Result<Vec<Box<RawValue>>, ApiError> {
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    events::statuses(state.db(), &refs)
        .await?
        .into_iter()
        .filter(|s| s.room_id == room_id && s.rejected_reason.is_none())
        .map(|s| raw(s.json))
        .collect()
}

/// The auth chain of `ids`: their auth events, recursively (an event of
/// `ids` that is an auth event of another is part of it, as in Synapse),
/// plus the room's create event, which room version 12 events do not cite.
async fn auth_chain(
    state: &AppState,
    room_id: &str,
    ids: &[&str],
) -> Result<Vec<String>, ApiError> {
    let db = state.db();
    let mut direct: BTreeSet<String> = BTreeSet::new();
    for status in events::statuses(db, ids).await? {
        direct.extend(id_list(&status.json, "auth_events"));
    }
    let direct: Vec<String> = {
        let refs: Vec<&str> = direct.iter().map(String::as_str).collect();
        // Only what we hold: the chain is what we can serve.
        events::statuses(db, &refs)
            .await?
            .into_iter()
            .map(|s| s.event_id)
            .collect()
    };
    let refs: Vec<&str> = direct.iter().map(String::as_str).collect();
    let mut chain = events::auth_chain_ids(db, &refs, MAX_AUTH_CHAIN)
        .await?
        .ok_or_else(|| ApiError::internal("auth chain too large to serve", room_id))?;
    chain.extend(direct);
    if let Some(create) = state_store::current_event_id(db, room_id, "m.room.create", "").await?
        && !chain.contains(&create)
    {
        chain.push(create);
    }
    Ok(chain)
}

/// The state before `event_id` (404 for outliers, rejected and unknown
/// events) and the auth chain of that state.
async fn state_and_chain(
    state: &AppState,
    room_id: &RoomId,
    event_id: &str,
) -> Result<(Vec<String>, Vec<String>), ApiError> {
    servable(state, room_id.as_str(), event_id).await?;
    let entries = state_store::state_at_event(state.db(), event_id, false)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("No state is known at event {event_id}")))?;
    let pdu_ids: Vec<String> = entries.into_iter().map(|e| e.event_id).collect();
    let refs: Vec<&str> = pdu_ids.iter().map(String::as_str).collect();
    let chain = auth_chain(state, room_id.as_str(), &refs).await?;
    Ok((pdu_ids, chain))
}

/// `GET /_matrix/federation/v1/event/{eventId}`
pub async fn event(
    State(state): State<AppState>,
    Origin(origin): Origin,
    Ruma(req): Ruma<get_event::v1::Request>,
) -> Result<RumaResponse<get_event::v1::Response>, ApiError> {
    let status = events::statuses(state.db(), &[req.event_id.as_str()])
        .await?
        .into_iter()
        .next()
        .filter(|s| s.rejected_reason.is_none())
        .ok_or_else(|| not_found(req.event_id.as_str()))?;
    let room_id = RoomId::parse(&status.room_id)
        .map_err(|e| ApiError::internal("corrupt room ID in storage", e))?;
    allowed(&state, &room_id, &origin).await?;
    if !ServerView::new(&state, &origin)
        .may_see(&status.room_id, status.state_before)
        .await?
    {
        return Err(not_found(req.event_id.as_str()));
    }
    Ok(RumaResponse(get_event::v1::Response::new(
        state.server_name().to_owned(),
        to_ruma_ts(crate::time::now_ms()),
        raw(status.json)?,
    )))
}

/// `GET /_matrix/federation/v1/state_ids/{roomId}?event_id=`
pub async fn state_ids(
    State(state): State<AppState>,
    Origin(origin): Origin,
    Ruma(req): Ruma<get_room_state_ids::v1::Request>,
) -> Result<RumaResponse<get_room_state_ids::v1::Response>, ApiError> {
    allowed(&state, &req.room_id, &origin).await?;
    let (pdus, chain) = state_and_chain(&state, &req.room_id, req.event_id.as_str()).await?;
    let ids = |v: Vec<String>| -> Vec<OwnedEventId> {
        v.into_iter()
            .filter_map(|id| OwnedEventId::try_from(id).ok())
            .collect()
    };
    Ok(RumaResponse(get_room_state_ids::v1::Response::new(
        ids(chain),
        ids(pdus),
    )))
}

/// `GET /_matrix/federation/v1/state/{roomId}?event_id=`
pub async fn state(
    State(state): State<AppState>,
    Origin(origin): Origin,
    Ruma(req): Ruma<get_room_state::v1::Request>,
) -> Result<RumaResponse<get_room_state::v1::Response>, ApiError> {
    allowed(&state, &req.room_id, &origin).await?;
    let (pdus, chain) = state_and_chain(&state, &req.room_id, req.event_id.as_str()).await?;
    let room = req.room_id.as_str();
    Ok(RumaResponse(get_room_state::v1::Response::new(
        raw_events(&state, room, &chain).await?,
        raw_events(&state, room, &pdus).await?,
    )))
}

/// `GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}`
pub async fn event_auth(
    State(state): State<AppState>,
    Origin(origin): Origin,
    Ruma(req): Ruma<get_event_authorization::v1::Request>,
) -> Result<RumaResponse<get_event_authorization::v1::Response>, ApiError> {
    allowed(&state, &req.room_id, &origin).await?;
    let room = req.room_id.as_str();
    servable(&state, room, req.event_id.as_str()).await?;
    let mut chain = auth_chain(&state, room, &[req.event_id.as_str()]).await?;
    // The create event has no auth chain.
    chain.retain(|id| id.as_str() != req.event_id.as_str());
    Ok(RumaResponse(get_event_authorization::v1::Response::new(
        raw_events(&state, room, &chain).await?,
    )))
}

/// An event as served to a server: as stored, or redacted when the server
/// may not see it.
async fn as_seen(
    view: &mut ServerView<'_>,
    version: myelin_proto::RoomVersion,
    status: EventStatus,
) -> Result<Box<RawValue>, ApiError> {
    if view.may_see(&status.room_id, status.state_before).await? {
        return raw(status.json);
    }
    let redacted = stored_pdu(version, &status.json)?.redacted();
    raw(Value::Object(redacted.into_json()).to_canonical_string())
}

/// The `prev_events` of a stored event's JSON.
fn prev_events(json: &str) -> Vec<String> {
    id_list(json, "prev_events")
}

/// A list of event IDs (`prev_events`, `auth_events`) of a stored event.
fn id_list(json: &str, field: &str) -> Vec<String> {
    let Ok(obj) = canonical_json::parse_object(json.as_bytes()) else {
        return Vec::new();
    };
    match obj.get(field) {
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// Events of the room's graph (not outliers, not rejected) among `ids`.
async fn graph_events(
    state: &AppState,
    room_id: &str,
    ids: &[String],
) -> Result<Vec<EventStatus>, ApiError> {
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    Ok(events::statuses(state.db(), &refs)
        .await?
        .into_iter()
        .filter(|s| s.room_id == room_id && !s.outlier && s.rejected_reason.is_none())
        .collect())
}

/// `GET /_matrix/federation/v1/backfill/{roomId}?v=&limit=`: the given
/// events and those before them, walking `prev_events` deepest first (as
/// Synapse does), at most `limit` (capped at [`MAX_BACKFILL`]).
pub async fn backfill(
    State(state): State<AppState>,
    Origin(origin): Origin,
    Ruma(req): Ruma<get_backfill::v1::Request>,
) -> Result<RumaResponse<get_backfill::v1::Response>, ApiError> {
    allowed(&state, &req.room_id, &origin).await?;
    let room = req.room_id.as_str();
    let version = room_version_of(&state, room).await?;
    let limit = usize::try_from(u64::from(req.limit))
        .unwrap_or(usize::MAX)
        .min(MAX_BACKFILL);
    let start: Vec<String> = req
        .v
        .iter()
        .take(MAX_START_EVENTS)
        .map(ToString::to_string)
        .collect();
    let mut seen: HashSet<String> = start.iter().cloned().collect();
    let mut queue: BinaryHeap<(i64, String)> = graph_events(&state, room, &start)
        .await?
        .into_iter()
        .map(|s| (s.depth, s.event_id))
        .collect();
    let mut view = ServerView::new(&state, &origin);
    let mut out = Vec::new();
    while out.len() < limit {
        let Some((_, id)) = queue.pop() else { break };
        let Some(status) = graph_events(&state, room, std::slice::from_ref(&id))
            .await?
            .into_iter()
            .next()
        else {
            continue;
        };
        let prevs: Vec<String> = prev_events(&status.json)
            .into_iter()
            .filter(|p| seen.insert(p.clone()))
            .collect();
        for prev in graph_events(&state, room, &prevs).await? {
            queue.push((prev.depth, prev.event_id));
        }
        out.push(as_seen(&mut view, version, status).await?);
    }
    Ok(RumaResponse(get_backfill::v1::Response::new(
        state.server_name().to_owned(),
        to_ruma_ts(crate::time::now_ms()),
        out,
    )))
}

/// `POST /_matrix/federation/v1/get_missing_events/{roomId}`: the events
/// before `latest_events` back to `earliest_events` (neither included),
/// breadth first, at most `limit` (default 10, capped at
/// [`MAX_MISSING`]), none below `min_depth`; oldest first.
pub async fn missing_events(
    State(state): State<AppState>,
    Origin(origin): Origin,
    Ruma(req): Ruma<get_missing_events::v1::Request>,
) -> Result<RumaResponse<get_missing_events::v1::Response>, ApiError> {
    allowed(&state, &req.room_id, &origin).await?;
    let room = req.room_id.as_str();
    let version = room_version_of(&state, room).await?;
    let limit = usize::try_from(u64::from(req.limit))
        .unwrap_or(usize::MAX)
        .min(MAX_MISSING);
    let min_depth = i64::try_from(u64::from(req.min_depth)).unwrap_or(i64::MAX);
    let mut seen: BTreeSet<String> = req
        .earliest_events
        .iter()
        .take(MAX_START_EVENTS)
        .map(ToString::to_string)
        .collect();
    let latest: Vec<String> = req
        .latest_events
        .iter()
        .take(MAX_START_EVENTS)
        .map(ToString::to_string)
        .filter(|id| seen.insert(id.clone()))
        .collect();
    let mut front = graph_events(&state, room, &latest).await?;
    let mut found: Vec<EventStatus> = Vec::new();
    while !front.is_empty() && found.len() < limit {
        let prevs: Vec<String> = front
            .iter()
            .flat_map(|s| prev_events(&s.json))
            .filter(|p| seen.insert(p.clone()))
            .collect();
        let mut next = graph_events(&state, room, &prevs).await?;
        next.retain(|s| s.depth >= min_depth);
        next.sort_by(|a, b| b.depth.cmp(&a.depth).then(a.event_id.cmp(&b.event_id)));
        next.truncate(limit - found.len());
        found.extend(next.iter().cloned());
        front = next;
    }
    found.sort_by(|a, b| a.depth.cmp(&b.depth).then(a.event_id.cmp(&b.event_id)));
    let mut view = ServerView::new(&state, &origin);
    let mut out = Vec::with_capacity(found.len());
    for status in found {
        out.push(as_seen(&mut view, version, status).await?);
    }
    Ok(RumaResponse(get_missing_events::v1::Response::new(out)))
}
