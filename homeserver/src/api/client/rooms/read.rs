//! Reading history: `GET /rooms/{roomId}/event/{eventId}`, `/messages`,
//! `/context/{eventId}`, `/members`, `/joined_members` and
//! `GET /joined_rooms`.
//!
//! # Pagination tokens
//! A token `t<N>` is a position in the timeline stream between the events
//! at stream positions `N` and `N + 1`: paginating backwards from it
//! returns events at `N` and below, forwards events above `N`. Sync's
//! `prev_batch` for a timeline starting at position `S` is `t<S-1>`. A
//! sync token (`s<N>_...`) is accepted too, as the position `N`.
//! Reads never go past the stream position every writer has committed
//! ([`crate::rooms::stream::StreamPositions::current`]). Positions can be
//! negative: history backfilled from other servers sits below 0
//! (`rooms::ingest::backfill`).
//!
//! # Backfill
//! A backwards `/messages` without `to` that runs out of events asks the
//! other servers of the room for older history
//! ([`crate::federation::backfill`]) and, when some came, goes on reading
//! it (at most [`MAX_BACKFILLS`] times per request).

use std::collections::{BTreeMap, HashSet};

use axum::extract::State;
use ruma::api::Direction;
use ruma::api::client::context::get_context::v3 as get_context;
use ruma::api::client::filter::RoomEventFilter;
use ruma::api::client::membership::{
    get_member_events::v3 as get_member_events, joined_members::v3 as joined_members,
    joined_rooms::v3 as joined_rooms,
};
use ruma::api::client::message::get_message_events::v3 as get_message_events;
use ruma::api::client::room::get_room_event::v3 as get_room_event;
use ruma::{OwnedRoomId, OwnedUserId};

use super::state::{rows_in_order, state_at_event, visible_state};
use crate::api::auth::Authed;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::ignored_users;
use crate::rooms::format::{self, Viewer};
use crate::rooms::visibility::{self, Access};
use crate::state::AppState;
use crate::storage::events::{self, EventRow};
use crate::storage::{memberships, state as state_store};

/// Most events one `/messages` or `/context` page returns.
const MAX_LIMIT: u64 = 1000;
/// Database batches one page may scan for visible, filter-matching events.
const MAX_BATCHES: usize = 10;
/// Backfill attempts one `/messages` request may make.
const MAX_BACKFILLS: usize = 2;
/// Below every stream position: the start of a room's timeline.
const BOTTOM: i64 = i64::MIN;

fn viewer(auth: &Authed) -> Viewer<'_> {
    Viewer {
        user_id: auth.user_id.as_str(),
        device_id: auth.device_id.as_str(),
    }
}

/// A `/messages` token, or a sync token (clients pass `next_batch` as
/// `from`), whose timeline position is the same kind of position.
fn parse_token(token: &str) -> Result<i64, ApiError> {
    token
        .strip_prefix('t')
        .and_then(|n| n.parse::<i64>().ok())
        .or_else(|| crate::sync::SyncToken::parse(token).map(|t| t.timeline))
        .filter(|n| *n > BOTTOM)
        .ok_or_else(|| ApiError::invalid_param(format!("invalid pagination token {token:?}")))
}

fn token(position: i64) -> String {
    format!("t{position}")
}

/// Whether an event passes the filter's type, sender and URL conditions.
fn matches_filter(filter: &RoomEventFilter, row: &EventRow) -> bool {
    let type_matches = |pattern: &String| match pattern.strip_suffix('*') {
        Some(prefix) => row.event_type.starts_with(prefix),
        None => *pattern == row.event_type,
    };
    if filter.not_types.iter().any(type_matches) {
        return false;
    }
    if let Some(types) = &filter.types
        && !types.iter().any(type_matches)
    {
        return false;
    }
    if filter.not_senders.iter().any(|s| s.as_str() == row.sender) {
        return false;
    }
    if let Some(senders) = &filter.senders
        && !senders.iter().any(|s| s.as_str() == row.sender)
    {
        return false;
    }
    if let Some(want_url) = filter.url_filter {
        let has_url = serde_json::from_str::<serde_json::Value>(&row.json)
            .ok()
            .and_then(|v| {
                v.get("content")?
                    .get("url")
                    .map(serde_json::Value::is_string)
            })
            .unwrap_or(false);
        let want = matches!(
            want_url,
            ruma::api::client::filter::UrlFilter::EventsWithUrl
        );
        if has_url != want {
            return false;
        }
    }
    true
}

/// One page of a room's timeline: up to `limit` events the user may see
/// and the filter accepts, strictly after `after` and at most `until`,
/// newest first unless `forward`. Returns the events and the position the
/// scan stopped at, or `None` when the range is exhausted.
/// Who reads which room, with which filter.
struct Reader<'a> {
    state: &'a AppState,
    auth: &'a Authed,
    room_id: &'a str,
    access: &'a Access,
    filter: &'a RoomEventFilter,
    /// The reader's ignored users, whose non-state events are withheld.
    ignored: HashSet<String>,
}

async fn page(
    reader: &Reader<'_>,
    (mut after, mut until): (i64, i64),
    forward: bool,
    limit: u64,
) -> Result<(Vec<EventRow>, Option<i64>), ApiError> {
    let Reader {
        state,
        auth,
        room_id,
        access,
        filter,
        ignored,
    } = reader;
    let db = state.db();
    let mut out = Vec::new();
    for _ in 0..MAX_BATCHES {
        let want = limit - out.len() as u64;
        if want == 0 || after >= until {
            break;
        }
        let batch = events::timeline_page(db, room_id, after, until, forward, want).await?;
        let exhausted = (batch.len() as u64) < want;
        if let Some(last) = batch.last().and_then(|r| r.stream_ordering) {
            if forward {
                after = last;
            } else {
                until = last - 1;
            }
        }
        let batch: Vec<EventRow> = batch
            .into_iter()
            .filter(|r| matches_filter(filter, r))
            .filter(|r| !ignored_users::hides(ignored, &r.sender, r.state_key.as_deref()))
            .collect();
        out.extend(visibility::filter_events(db, auth.user_id.as_str(), access, batch).await?);
        if exhausted {
            after = until;
            break;
        }
    }
    let next = if after >= until {
        None
    } else if forward {
        Some(after)
    } else {
        Some(until)
    };
    Ok((out, next))
}

/// The highest position a user may read in a room right now.
async fn read_bound(state: &AppState, access: &Access) -> Result<i64, ApiError> {
    let committed = state.rooms().streams(state.db()).await?.current();
    Ok(access.until().map_or(committed, |u| u.min(committed)))
}

/// Current member events of `senders` (lazy-loading members).
async fn member_state_for(
    state: &AppState,
    room_id: &str,
    senders: &HashSet<&str>,
) -> Result<Vec<EventRow>, ApiError> {
    let members = state_store::current_ids(state.db(), room_id, Some("m.room.member")).await?;
    let ids: Vec<&str> = members
        .iter()
        .filter(|(_, k, _)| senders.contains(k.as_str()))
        .map(|(_, _, id)| id.as_str())
        .collect();
    rows_in_order(state, &ids).await
}

pub async fn get_event(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_room_event::Request>,
) -> Result<RumaResponse<get_room_event::Response>, ApiError> {
    let db = state.db();
    let access = visibility::room_access(db, req.room_id.as_str(), auth.user_id.as_str()).await?;
    let not_found = || ApiError::not_found("Event not found");
    // Only timeline events: outliers, soft-failed and rejected events
    // received over federation are never shown to clients.
    let row = events::get(db, req.event_id.as_str())
        .await?
        .filter(|r| r.room_id == req.room_id.as_str() && r.stream_ordering.is_some())
        .ok_or_else(not_found)?;
    let visible = visibility::filter_events(db, auth.user_id.as_str(), &access, vec![row]).await?;
    let events = format::client_events(db, Some(viewer(&auth)), &visible).await?;
    let event = events.first().ok_or_else(not_found)?;
    Ok(RumaResponse(get_room_event::Response::new(format::raw(
        event,
    )?)))
}

pub async fn messages(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_message_events::Request>,
) -> Result<RumaResponse<get_message_events::Response>, ApiError> {
    let db = state.db();
    let room_id = req.room_id.as_str();
    let access = visibility::room_access(db, room_id, auth.user_id.as_str()).await?;
    let bound = read_bound(&state, &access).await?;
    let limit = u64::from(req.limit).clamp(1, MAX_LIMIT);
    let forward = req.dir == Direction::Forward;
    let from = req.from.as_deref().map(parse_token).transpose()?;
    let to = req.to.as_deref().map(parse_token).transpose()?;
    let (range, start) = if forward {
        let from = from.unwrap_or(BOTTOM);
        ((from, to.unwrap_or(bound).min(bound)), from)
    } else {
        let from = from.unwrap_or(bound).min(bound);
        ((to.unwrap_or(BOTTOM), from), from)
    };
    let reader = Reader {
        state: &state,
        auth: &auth,
        room_id,
        access: &access,
        filter: &req.filter,
        ignored: ignored_users::of(state.db(), auth.user_id.as_str()).await?,
    };
    let (mut rows, mut next) = page(&reader, range, forward, limit).await?;
    let mut backfills = 0;
    while !forward && to.is_none() && next.is_none() && (rows.len() as u64) < limit {
        if backfills == MAX_BACKFILLS
            || crate::federation::backfill::backfill_room(&state, &req.room_id).await? == 0
        {
            break;
        }
        backfills += 1;
        // Backfilled events sit below everything read so far.
        let resume = rows
            .last()
            .and_then(|r| r.stream_ordering)
            .map_or(range.1, |s| s - 1);
        let (more, more_next) =
            page(&reader, (BOTTOM, resume), false, limit - rows.len() as u64).await?;
        rows.extend(more);
        next = more_next;
    }
    let mut resp = get_message_events::Response::new();
    resp.start = token(start);
    resp.end = next.map(token);
    resp.chunk = format::raw_events(db, Some(viewer(&auth)), &rows).await?;
    if !req.filter.lazy_load_options.is_disabled() {
        let senders: HashSet<&str> = rows.iter().map(|r| r.sender.as_str()).collect();
        let members = member_state_for(&state, room_id, &senders).await?;
        resp.state = format::raw_events(db, Some(viewer(&auth)), &members).await?;
    }
    Ok(RumaResponse(resp))
}

pub async fn context(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_context::Request>,
) -> Result<RumaResponse<get_context::Response>, ApiError> {
    let db = state.db();
    let room_id = req.room_id.as_str();
    let access = visibility::room_access(db, room_id, auth.user_id.as_str()).await?;
    let not_found = || ApiError::not_found("Event not found");
    let row = events::get(db, req.event_id.as_str())
        .await?
        .filter(|r| r.room_id == room_id)
        .ok_or_else(not_found)?;
    let position = row.stream_ordering.ok_or_else(not_found)?;
    let visible = visibility::filter_events(db, auth.user_id.as_str(), &access, vec![row]).await?;
    let event = visible.into_iter().next().ok_or_else(not_found)?;
    let bound = read_bound(&state, &access).await?;
    let limit = u64::from(req.limit).min(MAX_LIMIT);
    // Half before, the rest after (Synapse splits the same way).
    let before_limit = limit / 2;
    let after_limit = limit - before_limit;
    let reader = Reader {
        state: &state,
        auth: &auth,
        room_id,
        access: &access,
        filter: &req.filter,
        ignored: ignored_users::of(state.db(), auth.user_id.as_str()).await?,
    };
    let (before, _) = page(&reader, (BOTTOM, position - 1), false, before_limit).await?;
    let (after, _) = page(&reader, (position, bound), true, after_limit).await?;
    let start = before
        .last()
        .and_then(|r| r.stream_ordering)
        .map_or(position - 1, |s| s - 1);
    let end = after
        .last()
        .and_then(|r| r.stream_ordering)
        .unwrap_or(position);
    let last_id = after
        .last()
        .map_or(event.event_id.clone(), |r| r.event_id.clone());
    let state_ids = state_at_event(&state, &last_id).await?;
    let ids: Vec<&str> = state_ids.iter().map(|(_, _, id)| id.as_str()).collect();
    let state_rows = rows_in_order(&state, &ids).await?;
    let v = Some(viewer(&auth));
    let mut resp = get_context::Response::new();
    resp.start = Some(token(start));
    resp.end = Some(token(end));
    resp.events_before = format::raw_events(db, v, &before).await?;
    resp.event = format::raw_events(db, v, std::slice::from_ref(&event))
        .await?
        .pop();
    resp.events_after = format::raw_events(db, v, &after).await?;
    resp.state = format::raw_events(db, v, &state_rows).await?;
    Ok(RumaResponse(resp))
}

pub async fn members(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_member_events::Request>,
) -> Result<RumaResponse<get_member_events::Response>, ApiError> {
    let db = state.db();
    let room_id = req.room_id.as_str();
    let mut ids = visible_state(&state, &auth, room_id).await?;
    if let Some(at) = req.at.as_deref() {
        // The state as of a pagination token, within what the user may see.
        let access = visibility::room_access(db, room_id, auth.user_id.as_str()).await?;
        let at = parse_token(at)?.min(read_bound(&state, &access).await?);
        if let Some(ev) = events::timeline_page(db, room_id, -1, at, false, 1)
            .await?
            .into_iter()
            .next()
        {
            ids = state_at_event(&state, &ev.event_id).await?;
        }
    }
    let ids: Vec<&str> = ids
        .iter()
        .filter(|(t, _, _)| t == "m.room.member")
        .map(|(_, _, id)| id.as_str())
        .collect();
    let rows = rows_in_order(&state, &ids).await?;
    let mut chunk = Vec::with_capacity(rows.len());
    for ev in format::client_events(db, Some(viewer(&auth)), &rows).await? {
        let membership = ev
            .get("content")
            .and_then(|c| c.get("membership"))
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        if req
            .membership
            .as_ref()
            .is_some_and(|m| m.as_str() != membership)
            || req
                .not_membership
                .as_ref()
                .is_some_and(|m| m.as_str() == membership)
        {
            continue;
        }
        chunk.push(format::raw(&ev)?);
    }
    Ok(RumaResponse(get_member_events::Response::new(chunk)))
}

pub async fn joined_members(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<joined_members::Request>,
) -> Result<RumaResponse<joined_members::Response>, ApiError> {
    let db = state.db();
    let room_id = req.room_id.as_str();
    super::send::require_joined(&state, &auth, room_id).await?;
    let joined: Vec<memberships::MembershipRow> = memberships::members(db, room_id)
        .await?
        .into_iter()
        .filter(|m| m.membership == "join")
        .collect();
    let ids: Vec<&str> = joined.iter().map(|m| m.event_id.as_str()).collect();
    let rows = rows_in_order(&state, &ids).await?;
    let mut out = BTreeMap::new();
    for ev in format::client_events(db, None, &rows).await? {
        let Some(user) = ev
            .get("state_key")
            .and_then(serde_json::Value::as_str)
            .and_then(|s| OwnedUserId::try_from(s).ok())
        else {
            continue;
        };
        let content = ev.get("content");
        let field = |k: &str| {
            content
                .and_then(|c| c.get(k))
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        let mut member = joined_members::RoomMember::new();
        member.display_name = field("displayname");
        member.avatar_url = field("avatar_url").map(Into::into);
        out.insert(user, member);
    }
    Ok(RumaResponse(joined_members::Response::new(out)))
}

pub async fn joined_rooms(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(_req): Ruma<joined_rooms::Request>,
) -> Result<RumaResponse<joined_rooms::Response>, ApiError> {
    let rooms = memberships::rooms_of_user(state.db(), auth.user_id.as_str(), "join")
        .await?
        .into_iter()
        .filter_map(|m| OwnedRoomId::try_from(m.room_id).ok())
        .collect();
    Ok(RumaResponse(joined_rooms::Response::new(rooms)))
}
