//! The public room directory: `GET`/`PUT /directory/list/room/{roomId}`
//! (whether a room is published) and `GET`/`POST /publicRooms`.
//!
//! Listing reads every published room's member count in one query and
//! the state the directory shows in one query per 500 rooms, then filters
//! and pages in memory. As in Synapse, a published room is listed only
//! while someone is joined and it is joinable or previewable (join rule
//! `public`, `knock` or `knock_restricted`, or `world_readable` history);
//! rooms come largest first. `since` tokens are offsets into that order.

use std::collections::HashMap;

use axum::extract::State;
use myelin_proto::canonical_json::{self, Object, Value};
use ruma::UInt;
use ruma::api::client::directory::{
    get_public_rooms, get_public_rooms_filtered, get_room_visibility, set_room_visibility,
};
use ruma::api::client::room::Visibility;
use ruma::directory::{
    Filter, PublicRoomsChunk, PublicRoomsChunkInit, RoomNetwork, RoomTypeFilter,
};
use ruma::room::{JoinRuleKind, RoomType};
use ruma::{OwnedMxcUri, OwnedRoomAliasId, OwnedRoomId, ServerName};

use super::{needs_federation, power};
use crate::api::auth::Authed;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::state::AppState;
use crate::storage::{directory, rooms};

/// `GET /_matrix/client/v3/directory/list/room/{roomId}`
pub async fn get_visibility(
    State(state): State<AppState>,
    Ruma(req): Ruma<get_room_visibility::v3::Request>,
) -> Result<RumaResponse<get_room_visibility::v3::Response>, ApiError> {
    let room = rooms::get(state.db(), req.room_id.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found("Unknown room"))?;
    let visibility = if room.is_public {
        Visibility::Public
    } else {
        Visibility::Private
    };
    Ok(RumaResponse(get_room_visibility::v3::Response::new(
        visibility,
    )))
}

/// `PUT /_matrix/client/v3/directory/list/room/{roomId}`: publishing
/// needs what Synapse asks, power to change the room's canonical alias.
pub async fn set_visibility(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<set_room_visibility::v3::Request>,
) -> Result<RumaResponse<set_room_visibility::v3::Response>, ApiError> {
    let is_public = match req.visibility {
        Visibility::Public => true,
        Visibility::Private => false,
        _ => return Err(ApiError::invalid_param("Unknown visibility")),
    };
    let db = state.db();
    let room_id = req.room_id.as_str();
    if rooms::get(db, room_id).await?.is_none() {
        return Err(ApiError::not_found("Unknown room"));
    }
    if !power::can_manage_room(&state, &auth, room_id).await? {
        return Err(ApiError::forbidden(
            "This user is not permitted to publish rooms to the room list",
        ));
    }
    rooms::set_public(db, room_id, is_public).await?;
    tracing::info!(room_id, is_public, user_id = %auth.user_id, "room directory visibility set");
    Ok(RumaResponse(set_room_visibility::v3::Response::new()))
}

/// `GET /_matrix/client/v3/publicRooms`
pub async fn public_rooms(
    State(state): State<AppState>,
    Ruma(req): Ruma<get_public_rooms::v3::Request>,
) -> Result<RumaResponse<get_public_rooms::v3::Response>, ApiError> {
    check_server(&state, req.server.as_deref())?;
    let page = list(&state, req.limit, req.since.as_deref(), &Filter::new()).await?;
    let mut resp = get_public_rooms::v3::Response::new(page.chunk);
    resp.next_batch = page.next_batch;
    resp.prev_batch = page.prev_batch;
    resp.total_room_count_estimate = Some(page.total);
    Ok(RumaResponse(resp))
}

/// `POST /_matrix/client/v3/publicRooms`
pub async fn public_rooms_filtered(
    State(state): State<AppState>,
    _auth: Authed,
    Ruma(req): Ruma<get_public_rooms_filtered::v3::Request>,
) -> Result<RumaResponse<get_public_rooms_filtered::v3::Response>, ApiError> {
    check_server(&state, req.server.as_deref())?;
    let mut resp = get_public_rooms_filtered::v3::Response::new();
    // Rooms bridged from third-party networks: there are none here.
    if let RoomNetwork::ThirdParty(_) = req.room_network {
        resp.total_room_count_estimate = Some(UInt::MIN);
        return Ok(RumaResponse(resp));
    }
    let page = list(&state, req.limit, req.since.as_deref(), &req.filter).await?;
    resp.chunk = page.chunk;
    resp.next_batch = page.next_batch;
    resp.prev_batch = page.prev_batch;
    resp.total_room_count_estimate = Some(page.total);
    Ok(RumaResponse(resp))
}

fn check_server(state: &AppState, server: Option<&ServerName>) -> Result<(), ApiError> {
    match server {
        Some(s) if s != state.server_name() => {
            Err(needs_federation("listing the rooms of other servers"))
        }
        _ => Ok(()),
    }
}

/// One page of the directory (also served to other servers, `api::federation::public_rooms`).
pub(crate) struct Page {
    pub(crate) chunk: Vec<PublicRoomsChunk>,
    pub(crate) next_batch: Option<String>,
    pub(crate) prev_batch: Option<String>,
    pub(crate) total: UInt,
}

/// The state events the directory shows.
const DIRECTORY_TYPES: &[&str] = &[
    "m.room.create",
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
];

fn parse_since(since: Option<&str>) -> Result<usize, ApiError> {
    match since {
        None => Ok(0),
        Some(token) => token
            .strip_prefix('o')
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| ApiError::invalid_param("Invalid since token")),
    }
}

pub(crate) async fn list(
    state: &AppState,
    limit: Option<UInt>,
    since: Option<&str>,
    filter: &Filter,
) -> Result<Page, ApiError> {
    let offset = parse_since(since)?;
    let db = state.db();
    let published = directory::published_rooms(db).await?;
    let ids: Vec<&str> = published.iter().map(|r| r.room_id.as_str()).collect();
    let mut contents: HashMap<String, HashMap<String, Object>> = HashMap::new();
    for (room_id, event_type, json) in
        directory::current_state_of_rooms(db, &ids, DIRECTORY_TYPES).await?
    {
        let mut event = canonical_json::parse_object(json.as_bytes())
            .map_err(|e| ApiError::internal("stored event unreadable", e))?;
        if let Some(Value::Object(content)) = event.remove("content") {
            contents
                .entry(room_id)
                .or_default()
                .insert(event_type, content);
        }
    }
    let term = filter
        .generic_search_term
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase);
    let empty = HashMap::new();
    let mut listed = Vec::new();
    for room in &published {
        if room.joined_members <= 0 {
            continue;
        }
        let state_of = contents.get(&room.room_id).unwrap_or(&empty);
        let Some(chunk) = chunk_for(&room.room_id, room.joined_members, state_of) else {
            continue;
        };
        if !matches_room_types(&chunk, &filter.room_types) {
            continue;
        }
        if let Some(term) = &term
            && !matches_term(&chunk, term)
        {
            continue;
        }
        listed.push(chunk);
    }

    let total = UInt::try_from(listed.len()).unwrap_or(UInt::MAX);
    let limit = limit.map(|l| usize::try_from(u64::from(l)).unwrap_or(usize::MAX));
    let start = offset.min(listed.len());
    let end = match limit {
        Some(l) => start.saturating_add(l).min(listed.len()),
        None => listed.len(),
    };
    let next_batch = (end < listed.len()).then(|| format!("o{end}"));
    let prev_batch = (start > 0).then(|| {
        let back = limit.map_or(0, |l| start.saturating_sub(l));
        format!("o{back}")
    });
    let chunk = listed.drain(start..end).collect();
    Ok(Page {
        chunk,
        next_batch,
        prev_batch,
        total,
    })
}

fn str_field<'a>(
    state: &'a HashMap<String, Object>,
    event_type: &str,
    key: &str,
) -> Option<&'a str> {
    state.get(event_type)?.get(key)?.as_str()
}

/// The directory entry of a room, or `None` when the room is neither
/// joinable nor previewable.
fn chunk_for(
    room_id: &str,
    joined: i64,
    state: &HashMap<String, Object>,
) -> Option<PublicRoomsChunk> {
    // No join rules event: the spec's default, invite.
    let join_rule = str_field(state, "m.room.join_rules", "join_rule").unwrap_or("invite");
    let world_readable = str_field(state, "m.room.history_visibility", "history_visibility")
        == Some("world_readable");
    let joinable = matches!(join_rule, "public" | "knock" | "knock_restricted");
    if !joinable && !world_readable {
        return None;
    }
    let room_id = OwnedRoomId::try_from(room_id).ok()?;
    let mut chunk: PublicRoomsChunk = PublicRoomsChunkInit {
        num_joined_members: UInt::try_from(joined).unwrap_or(UInt::MIN),
        room_id,
        world_readable,
        guest_can_join: str_field(state, "m.room.guest_access", "guest_access") == Some("can_join"),
    }
    .into();
    chunk.join_rule = JoinRuleKind::from(join_rule);
    chunk.name = str_field(state, "m.room.name", "name")
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    chunk.topic = str_field(state, "m.room.topic", "topic")
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    chunk.avatar_url = str_field(state, "m.room.avatar", "url")
        .filter(|u| !u.is_empty())
        .map(OwnedMxcUri::from);
    chunk.canonical_alias = str_field(state, "m.room.canonical_alias", "alias")
        .and_then(|a| OwnedRoomAliasId::try_from(a).ok());
    chunk.room_type = str_field(state, "m.room.create", "type").map(RoomType::from);
    Some(chunk)
}

/// `room_types`: empty means every type; `null` (Default) is rooms
/// without a type.
fn matches_room_types(chunk: &PublicRoomsChunk, wanted: &[RoomTypeFilter]) -> bool {
    if wanted.is_empty() {
        return true;
    }
    wanted.iter().any(|f| match (f, &chunk.room_type) {
        (RoomTypeFilter::Default, None) => true,
        (RoomTypeFilter::Default, Some(_)) | (_, None) => false,
        (f, Some(t)) => f.as_str() == Some(t.as_str()),
    })
}

/// Synapse's generic search: a case-insensitive substring of the name,
/// topic or canonical alias.
fn matches_term(chunk: &PublicRoomsChunk, term: &str) -> bool {
    let has = |s: Option<&str>| s.is_some_and(|s| s.to_lowercase().contains(term));
    has(chunk.name.as_deref())
        || has(chunk.topic.as_deref())
        || has(chunk.canonical_alias.as_ref().map(|a| a.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(events: &[(&str, serde_json::Value)]) -> HashMap<String, Object> {
        events
            .iter()
            .map(|(t, c)| {
                let Ok(Value::Object(o)) = canonical_json::from_json(c.clone()) else {
                    panic!("not an object");
                };
                ((*t).to_owned(), o)
            })
            .collect()
    }

    #[test]
    fn only_joinable_or_previewable_rooms_are_listed() {
        let invite_only = state(&[(
            "m.room.join_rules",
            serde_json::json!({"join_rule": "invite"}),
        )]);
        assert!(chunk_for("!a:x", 1, &invite_only).is_none());
        assert!(chunk_for("!a:x", 1, &HashMap::new()).is_none());
        let readable = state(&[
            (
                "m.room.join_rules",
                serde_json::json!({"join_rule": "invite"}),
            ),
            (
                "m.room.history_visibility",
                serde_json::json!({"history_visibility": "world_readable"}),
            ),
        ]);
        let chunk = chunk_for("!a:x", 1, &readable).expect("test");
        assert!(chunk.world_readable);
        assert_eq!(chunk.join_rule, JoinRuleKind::Invite);
    }

    #[test]
    fn room_type_and_term_filters() {
        let space = state(&[
            (
                "m.room.join_rules",
                serde_json::json!({"join_rule": "public"}),
            ),
            ("m.room.create", serde_json::json!({"type": "m.space"})),
            ("m.room.name", serde_json::json!({"name": "Rust Space"})),
        ]);
        let chunk = chunk_for("!s:x", 2, &space).expect("test");
        assert!(matches_room_types(&chunk, &[RoomTypeFilter::Space]));
        assert!(!matches_room_types(&chunk, &[RoomTypeFilter::Default]));
        assert!(matches_room_types(&chunk, &[]));
        assert!(matches_term(&chunk, "rust"));
        assert!(!matches_term(&chunk, "python"));
    }

    #[test]
    fn since_tokens_are_offsets() {
        assert_eq!(parse_since(None).expect("test"), 0);
        assert_eq!(parse_since(Some("o20")).expect("test"), 20);
        assert!(parse_since(Some("20")).is_err());
        assert!(parse_since(Some("o-1")).is_err());
    }
}
