//! Room creation (`POST /createRoom`): the initial events in Synapse's
//! order — create, the creator's join, power levels, canonical alias (with
//! `room_alias_name`), join rules, history visibility, guest access,
//! `initial_state`, name, topic, then invites —
//! with Synapse's defaults per preset:
//!
//! | preset                 | join rule | history | guest access | invitees' level |
//! |------------------------|-----------|---------|--------------|-----------------|
//! | `private_chat`         | invite    | shared  | can_join     | default         |
//! | `trusted_private_chat` | invite    | shared  | can_join     | 100             |
//! | `public_chat`          | public    | shared  | (none)       | default         |
//!
//! The room's write lock is held from the create event to the last invite,
//! so nothing interleaves with the initial events.
//!
//! The alias is claimed once the room ID is known and before anything of
//! the room is stored: a taken alias fails the request with nothing
//! created, and a failure while creating releases the alias again.

use std::str::FromStr;

use myelin_proto::auth;
use myelin_proto::canonical_json::{self, Object, Value};
use myelin_proto::{PduBuilder, RoomVersion};
use ruma::{OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde_json::json;

use super::membership::set_membership_locked;
use super::pipeline::{EventSpec, NewRoom, pdu_error};
use crate::api::error::ApiError;
use crate::state::AppState;
use crate::storage::aliases;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    PrivateChat,
    TrustedPrivateChat,
    PublicChat,
}

/// A createRoom request, its JSON parts already parsed strictly.
#[derive(Debug, Clone)]
pub struct CreateRoom {
    pub version: RoomVersion,
    pub preset: Preset,
    pub is_public: bool,
    pub creation_content: Object,
    pub power_level_override: Option<Object>,
    /// `(type, state_key, content)`.
    pub initial_state: Vec<(String, String, Object)>,
    pub name: Option<String>,
    pub topic: Option<String>,
    pub invite: Vec<OwnedUserId>,
    pub is_direct: bool,
    /// The room's alias (`#room_alias_name:ourserver`), checked by the caller.
    pub alias: Option<OwnedRoomAliasId>,
}

/// The error for a `room_alias_name` someone already has.
pub fn alias_taken() -> ApiError {
    ApiError::new(
        http::StatusCode::BAD_REQUEST,
        ruma::api::error::ErrorKind::RoomInUse,
        "Room alias already taken",
    )
}

/// Parses a room version a client asked for.
pub fn parse_version(v: Option<&str>) -> Result<RoomVersion, ApiError> {
    match v {
        None => Ok(RoomVersion::DEFAULT),
        Some(v) => RoomVersion::from_str(v).map_err(|_| {
            ApiError::new(
                http::StatusCode::BAD_REQUEST,
                ruma::api::error::ErrorKind::UnsupportedRoomVersion,
                format!("room version {v:?} is not supported"),
            )
        }),
    }
}

fn object(v: serde_json::Value) -> Object {
    match canonical_json::from_json(v) {
        Ok(Value::Object(o)) => o,
        // Only called on literals built here.
        _ => Object::new(),
    }
}

fn random_localpart() -> Result<String, ApiError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut bytes = [0u8; 18];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::internal("no randomness", e))?;
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect())
}

/// Synapse's default power levels for a new room.
fn default_power_levels(req: &CreateRoom, creator: &UserId) -> Object {
    let rules = req.version.rules();
    let mut users = serde_json::Map::new();
    // v12: creators have infinite power and may not be listed.
    if !rules.creators_have_infinite_power {
        users.insert(creator.to_string(), json!(100));
    }
    let additional: Vec<&str> = req
        .creation_content
        .get("additional_creators")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if req.preset == Preset::TrustedPrivateChat {
        for invitee in &req.invite {
            if invitee.as_str() != creator.as_str() && !additional.contains(&invitee.as_str()) {
                users.insert(invitee.to_string(), json!(100));
            }
        }
    }
    let tombstone = if rules.creators_have_infinite_power {
        150
    } else {
        100
    };
    object(json!({
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": tombstone,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 50,
        "historical": 100,
    }))
}

/// Creates the room; returns its ID.
pub async fn create_room(
    state: &AppState,
    creator: &UserId,
    req: CreateRoom,
) -> Result<OwnedRoomId, ApiError> {
    let version = req.version;
    let rules = version.rules();
    let server = state.server_name().as_str();

    let mut create_content = req.creation_content.clone();
    create_content.insert("room_version".into(), Value::from(version.as_str()));
    if rules.create_requires_creator {
        create_content.insert("creator".into(), Value::from(creator.as_str()));
    }
    let room_id = if rules.room_id_from_create_event {
        None
    } else {
        let id = format!("!{}:{server}", random_localpart()?);
        Some(OwnedRoomId::try_from(id).map_err(|e| ApiError::internal("room ID", e))?)
    };
    let mut builder = PduBuilder::new(
        "m.room.create",
        Some(""),
        create_content,
        creator,
        room_id.as_deref(),
    );
    builder.origin_server_ts = crate::time::now_ms();
    let create = builder
        .build(version, server, state.signing_key())
        .map_err(pdu_error)?;
    auth::check(rules, &create, |_, _| None)
        .map_err(|e| ApiError::bad_json(format!("invalid creation_content: {e}")))?;
    let room_id = create.room_id().to_owned();

    if let Some(alias) = &req.alias
        && !aliases::create(
            state.db(),
            alias.as_str(),
            room_id.as_str(),
            creator.as_str(),
        )
        .await?
    {
        return Err(alias_taken());
    }
    let result = create_events(state, creator, &req, &room_id, &create).await;
    if result.is_err()
        && let Some(alias) = &req.alias
        && let Err(e) = aliases::delete(state.db(), alias.as_str(), room_id.as_str()).await
    {
        tracing::warn!(%alias, error = %e, "alias of a failed room creation not released");
    }
    result.map(|()| room_id)
}

/// Stores the create event and sends the initial events.
async fn create_events(
    state: &AppState,
    creator: &UserId,
    req: &CreateRoom,
    room_id: &RoomId,
    create: &myelin_proto::Pdu,
) -> Result<(), ApiError> {
    let guard = state.rooms().lock(room_id).await;
    guard
        .persist(
            state,
            create,
            None,
            None,
            Some(NewRoom {
                creator: creator.as_str(),
                is_public: req.is_public,
            }),
        )
        .await?;

    set_membership_locked(state, &guard, creator, creator, "join", None, Object::new()).await?;

    let overridden = |t: &str| {
        req.initial_state
            .iter()
            .any(|(et, sk, _)| et == t && sk.is_empty())
    };
    let send = |event_type: &str, content: Object| EventSpec::new(event_type, Some(""), content);

    if !overridden("m.room.power_levels") {
        let mut pl = default_power_levels(req, creator);
        if let Some(over) = &req.power_level_override {
            for (k, v) in over {
                pl.insert(k.clone(), v.clone());
            }
        }
        append_initial(state, &guard, creator, send("m.room.power_levels", pl)).await?;
    }
    if let Some(alias) = &req.alias
        && !overridden("m.room.canonical_alias")
    {
        let content = object(json!({ "alias": alias }));
        append_initial(
            state,
            &guard,
            creator,
            send("m.room.canonical_alias", content),
        )
        .await?;
    }
    let join_rule = if req.preset == Preset::PublicChat {
        "public"
    } else {
        "invite"
    };
    if !overridden("m.room.join_rules") {
        let content = object(json!({ "join_rule": join_rule }));
        append_initial(state, &guard, creator, send("m.room.join_rules", content)).await?;
    }
    if !overridden("m.room.history_visibility") {
        let content = object(json!({ "history_visibility": "shared" }));
        append_initial(
            state,
            &guard,
            creator,
            send("m.room.history_visibility", content),
        )
        .await?;
    }
    if req.preset != Preset::PublicChat && !overridden("m.room.guest_access") {
        let content = object(json!({ "guest_access": "can_join" }));
        append_initial(state, &guard, creator, send("m.room.guest_access", content)).await?;
    }
    for (event_type, state_key, content) in &req.initial_state {
        let spec = EventSpec::new(event_type.clone(), Some(state_key), content.clone());
        append_initial(state, &guard, creator, spec).await?;
    }
    if let Some(name) = &req.name {
        let content = object(json!({ "name": name }));
        append_initial(state, &guard, creator, send("m.room.name", content)).await?;
    }
    if let Some(topic) = &req.topic {
        let content = object(json!({
            "topic": topic,
            "m.topic": [{ "body": topic, "mimetype": "text/plain" }],
        }));
        append_initial(state, &guard, creator, send("m.room.topic", content)).await?;
    }
    for invitee in &req.invite {
        let mut extra = Object::new();
        if req.is_direct {
            extra.insert("is_direct".into(), Value::Bool(true));
        }
        set_membership_locked(state, &guard, creator, invitee, "invite", None, extra).await?;
    }
    Ok(())
}

/// Appends one initial event. A rejection here comes from the request's
/// own content (an override or initial state the rules refuse), so it is
/// the client's error, reported as 400.
async fn append_initial(
    state: &AppState,
    guard: &super::RoomGuard<'_>,
    creator: &UserId,
    spec: EventSpec,
) -> Result<(), ApiError> {
    match guard.append(state, creator, spec, None).await {
        Ok(_) => Ok(()),
        Err(ApiError::Matrix {
            status, message, ..
        }) if status == http::StatusCode::FORBIDDEN => Err(ApiError::invalid_param(format!(
            "the room's initial state is not allowed: {message}"
        ))),
        Err(e) => Err(e),
    }
}
