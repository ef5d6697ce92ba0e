//! The resident side of membership over federation: `make_join` /
//! `send_join`, `make_leave` / `send_leave`, `make_knock` / `send_knock`,
//! and `invite` (v2) for our users.
//!
//! A template (`make_*`) is the event we would build on our current state,
//! checked against the auth rules first: a join that would fail is refused
//! with 403 here, as Synapse does. A filled-in event (`send_*`) must be
//! exactly a member event of the right kind for a user of the requesting
//! server, named by the event ID in the path, of this room, signed by that
//! server with a matching content hash, and allowed by the current state;
//! only then do we add our signature (when a restricted join names our
//! user) and store it through the inbound pipeline.

use axum::extract::State;
use myelin_proto::canonical_json::{Object, Value};
use myelin_proto::verify::{Verified, verify_pdu};
use myelin_proto::{Pdu, RoomVersion, auth};
use ruma::api::federation::membership::create_knock_event::v1 as send_knock;
use ruma::api::federation::membership::prepare_knock_event::v1 as make_knock_template;
use ruma::api::federation::membership::{
    RawStrippedState, create_invite, create_join_event, create_leave_event, prepare_join_event,
    prepare_leave_event,
};
use ruma::{EventId, RoomId, RoomVersionId, ServerName, UserId};
use serde_json::value::RawValue;

use super::Origin;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::federation::acl;
use crate::federation::join::{incompatible, keyring_for, object_of, raw_pdu, template_of};
use crate::rooms::EventSpec;
use crate::rooms::ingest::{MAX_AUTH_CHAIN, NoRemote, Outcome};
use crate::rooms::membership::{strip, stripped_state_events};
use crate::rooms::pipeline::{room_version, stored_pdu};
use crate::state::AppState;
use crate::storage::{self, events, memberships, rooms};

/// Most entries of `invite_room_state` kept from an invite.
const MAX_INVITE_ROOM_STATE: usize = 50;

fn version_id(version: RoomVersion) -> Result<RoomVersionId, ApiError> {
    RoomVersionId::try_from(version.as_str())
        .map_err(|e| ApiError::internal("room version unnamed", e))
}

/// A room we hold, with its version: 404 otherwise.
async fn known_room(state: &AppState, room_id: &RoomId) -> Result<RoomVersion, ApiError> {
    let room = rooms::get(state.db(), room_id.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found("Unknown room"))?;
    room_version(&room.room_version)
}

/// The servers with joined members in a room, ours first when joined.
pub async fn servers_in_room(state: &AppState, room_id: &str) -> Result<Vec<String>, ApiError> {
    let mut servers: Vec<String> = Vec::new();
    let ours = state.server_name().as_str();
    for m in memberships::members(state.db(), room_id).await? {
        if m.membership != "join" {
            continue;
        }
        if let Ok(user) = UserId::parse(&m.user_id) {
            let server = user.server_name().as_str().to_owned();
            if !servers.contains(&server) {
                servers.push(server);
            }
        }
    }
    servers.sort_by_key(|s| s != ours);
    Ok(servers)
}

/// A local member who may invite (for `join_authorised_via_users_server`)
/// when the join needs one: restricted join rules and a user neither
/// invited nor joined. `Err` when the join cannot be authorised.
async fn authorising_user(
    state: &AppState,
    version: RoomVersion,
    room_id: &RoomId,
    user_id: &UserId,
) -> Result<Option<String>, ApiError> {
    let db = state.db();
    let keys = [
        ("m.room.create".to_owned(), String::new()),
        ("m.room.join_rules".to_owned(), String::new()),
        ("m.room.power_levels".to_owned(), String::new()),
    ];
    let mut found: Vec<Option<Pdu>> = vec![None, None, None];
    for (t, k, json) in storage::state::current_events_for(db, room_id.as_str(), &keys).await? {
        if let Some(i) = keys.iter().position(|key| key.0 == t && key.1 == k) {
            found[i] = Some(stored_pdu(version, &json)?);
        }
    }
    let (create, join_rules, power) = (&found[0], &found[1], &found[2]);
    let Some(join_rules) = join_rules else {
        return Ok(None);
    };
    if !auth::JoinRule::of(Some(join_rules)).is_restricted() {
        return Ok(None);
    }
    let current = memberships::get(db, room_id.as_str(), user_id.as_str()).await?;
    if matches!(
        current.as_ref().map(|m| m.membership.as_str()),
        Some("join" | "invite")
    ) {
        return Ok(None);
    }
    let mut allowed = false;
    for allow_room in auth::restricted_allow_rooms(join_rules) {
        if memberships::get(db, allow_room, user_id.as_str())
            .await?
            .is_some_and(|m| m.membership == "join")
        {
            allowed = true;
            break;
        }
    }
    if !allowed {
        return Err(ApiError::forbidden(
            "You do not belong to any of the rooms required to join this room",
        ));
    }
    let levels = auth::PowerLevels::new(version.rules(), create.as_ref(), power.as_ref());
    for m in memberships::members(db, room_id.as_str()).await? {
        let Ok(member) = UserId::parse(&m.user_id) else {
            continue;
        };
        if m.membership == "join"
            && member.server_name() == state.server_name()
            && levels.user_level(&member).at_least(levels.invite())
        {
            return Ok(Some(m.user_id));
        }
    }
    Err(ApiError::new(
        http::StatusCode::BAD_REQUEST,
        ruma::api::error::ErrorKind::UnableToGrantJoin,
        "No user of this server can authorise the join",
    ))
}

/// `make_*`: the member event `user_id` would send with `membership`,
/// built and auth-checked on our current state, as a template.
async fn make(
    state: &AppState,
    origin: &ServerName,
    room_id: &RoomId,
    user_id: &UserId,
    membership: &str,
    ver: Option<&[RoomVersionId]>,
) -> Result<(RoomVersion, Object), ApiError> {
    if user_id.server_name() != origin {
        return Err(ApiError::forbidden(format!(
            "{user_id} is not a user of {origin}"
        )));
    }
    acl::check(state, room_id.as_str(), origin).await?;
    let version = known_room(state, room_id).await?;
    if servers_in_room(state, room_id.as_str())
        .await?
        .first()
        .is_none_or(|s| s != state.server_name().as_str())
    {
        return Err(ApiError::not_found("This server is not in the room"));
    }
    if let Some(ver) = ver
        && !ver.iter().any(|v| v.as_str() == version.as_str())
    {
        return Err(incompatible(version.as_str()));
    }
    let mut content = Object::new();
    content.insert("membership".into(), Value::from(membership));
    if membership == "join"
        && let Some(via) = authorising_user(state, version, room_id, user_id).await?
    {
        content.insert("join_authorised_via_users_server".into(), Value::from(via));
    }
    let spec = EventSpec::new("m.room.member", Some(user_id.as_str()), content);
    let guard = state.rooms().lock(room_id).await;
    let (pdu, _) = guard.build_checked(state, user_id, spec).await?;
    Ok((version, template_of(&pdu)))
}

/// `send_*`: checks a filled-in member event (see the module docs) and
/// stores it. Returns the event as stored (with our signature when we
/// authorised the join) and the state before it.
async fn accept(
    state: &AppState,
    origin: &ServerName,
    room_id: &RoomId,
    event_id: &EventId,
    raw: &RawValue,
    membership: &str,
) -> Result<(Pdu, Vec<String>), ApiError> {
    acl::check(state, room_id.as_str(), origin).await?;
    let version = known_room(state, room_id).await?;
    let obj = object_of(raw).map_err(ApiError::bad_json)?;
    let mut pdu = Pdu::from_object(version, obj).map_err(|e| ApiError::bad_json(e.to_string()))?;
    pdu.expect_room(room_id)
        .map_err(|e| ApiError::bad_json(e.to_string()))?;
    if pdu.event_id() != event_id {
        return Err(ApiError::bad_json(format!(
            "The event's ID is {}, not {event_id}",
            pdu.event_id()
        )));
    }
    if pdu.event_type() != "m.room.member"
        || pdu.state_key() != Some(pdu.sender().as_str())
        || pdu.membership() != Some(membership)
    {
        return Err(ApiError::bad_json(format!(
            "Not a {membership} event of its sender"
        )));
    }
    if pdu.sender().server_name() != origin {
        return Err(ApiError::forbidden(format!(
            "{} is not a user of {origin}",
            pdu.sender()
        )));
    }
    // A restricted join naming our user needs our signature (the auth
    // rules then check that user may invite).
    let via_us = pdu
        .content()
        .get("join_authorised_via_users_server")
        .and_then(Value::as_str)
        .and_then(|u| UserId::parse(u).ok())
        .is_some_and(|u| u.server_name() == state.server_name());
    if membership == "join" && via_us {
        let mut obj = pdu.into_json();
        myelin_proto::hashes::sign_event(
            version.rules().redaction,
            state.server_name().as_str(),
            state.signing_key(),
            &mut obj,
        );
        pdu = Pdu::from_object(version, obj).map_err(|e| ApiError::bad_json(e.to_string()))?;
    }
    let keys = keyring_for(state, [&pdu]).await;
    match verify_pdu(&pdu, &keys) {
        Ok(Verified::All) => {}
        Ok(Verified::SignaturesOnly) => {
            return Err(ApiError::bad_json(
                "The event's content hash does not match",
            ));
        }
        Err(e) => {
            return Err(ApiError::forbidden(format!("Signature check failed: {e}")));
        }
    }

    let db = state.db();
    let guard = state.rooms().lock(room_id).await;
    let state_before: Vec<String> = storage::state::current_ids(db, room_id.as_str(), None)
        .await?
        .into_iter()
        .map(|(_, _, id)| id)
        .collect();
    if let Some(stored) = events::statuses(db, &[pdu.event_id().as_str()])
        .await?
        .into_iter()
        .next()
    {
        if stored.rejected_reason.is_none() && !stored.soft_failed {
            crate::federation::announce::relay(state, room_id, pdu.event_id(), origin).await?;
            return Ok((stored_pdu(version, &stored.json)?, state_before));
        }
        return Err(ApiError::forbidden("The event was refused before"));
    }
    // Refused before anything is stored when the current state does not
    // allow it (the inbound pipeline would store it as rejected).
    check_current(state, version, room_id, &pdu).await?;
    // Accepted, it is queued for the room's other servers in the same
    // transaction.
    let outcome = guard
        .ingest_relayed(state, origin, vec![pdu.json().clone()], &keys, &NoRemote)
        .await?;
    match outcome.into_iter().next().map(|(_, o)| o) {
        Some(Outcome::Accepted) => Ok((pdu, state_before)),
        Some(other) => Err(ApiError::forbidden(format!(
            "Event not accepted: {other:?}"
        ))),
        None => Err(ApiError::internal("ingest", "no outcome")),
    }
}

/// 403 unless the room's current state allows `pdu`.
async fn check_current(
    state: &AppState,
    version: RoomVersion,
    room_id: &RoomId,
    pdu: &Pdu,
) -> Result<(), ApiError> {
    let mut keys = auth::auth_types_for_event(
        version.rules(),
        pdu.event_type(),
        pdu.sender(),
        pdu.state_key(),
        pdu.content(),
    );
    keys.push(("m.room.create".to_owned(), String::new()));
    let mut current = std::collections::HashMap::new();
    for (t, k, json) in
        storage::state::current_events_for(state.db(), room_id.as_str(), &keys).await?
    {
        current.insert((t, k), stored_pdu(version, &json)?);
    }
    auth::check(version.rules(), pdu, |t, k| {
        current.get(&(t.to_owned(), k.to_owned()))
    })
    .map_err(|e| ApiError::forbidden(e.to_string()))
}

/// Stripped state a remote server sent (an invite's or a knock's room
/// state, as full PDUs or, from older servers, stripped events): at most
/// [`MAX_INVITE_ROOM_STATE`] entries, each reduced to `{type, state_key,
/// content, sender}`; what is not an object is skipped. Only ever shown to
/// our user as the remote's description of the room.
pub fn stripped_from_remote(raw: &[RawStrippedState]) -> Vec<Value> {
    raw.iter()
        .take(MAX_INVITE_ROOM_STATE)
        .filter_map(|raw| {
            #[allow(deprecated)]
            let json = match raw {
                RawStrippedState::Stripped(e) => e.json(),
                RawStrippedState::Pdu(p) => p,
                _ => return None,
            };
            object_of(json).ok()
        })
        .map(strip)
        .collect()
}

/// The room's stripped state as full PDUs (as federation sends it).
pub async fn stripped_state_pdus(
    state: &AppState,
    room_id: &str,
) -> Result<Vec<RawStrippedState>, ApiError> {
    stripped_state_events(state.db(), room_id)
        .await?
        .into_iter()
        .map(|json| {
            RawValue::from_string(json)
                .map(RawStrippedState::Pdu)
                .map_err(|e| ApiError::internal("stored event unreadable", e))
        })
        .collect()
}

/// Stored events as raw PDUs.
async fn raw_events(state: &AppState, ids: &[&str]) -> Result<Vec<Box<RawValue>>, ApiError> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(storage::IN_CHUNK) {
        for row in events::get_many(state.db(), chunk).await? {
            out.push(
                RawValue::from_string(row.json)
                    .map_err(|e| ApiError::internal("stored event unreadable", e))?,
            );
        }
    }
    Ok(out)
}

/// `GET /_matrix/federation/v1/make_join/{roomId}/{userId}`
pub async fn make_join(
    State(state): State<AppState>,
    Origin(origin): Origin,
    Ruma(req): Ruma<prepare_join_event::v1::Request>,
) -> Result<RumaResponse<prepare_join_event::v1::Response>, ApiError> {
    // No `ver` means version 1 only, which we do not speak.
    let (version, template) = make(
        &state,
        &origin,
        &req.room_id,
        &req.user_id,
        "join",
        Some(&req.ver),
    )
    .await?;
    let mut resp =
        prepare_join_event::v1::Response::new(crate::federation::join::raw_object(&template)?);
    resp.room_version = Some(version_id(version)?);
    Ok(RumaResponse(resp))
}

/// `PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}`
pub async fn send_join(
    State(state): State<AppState>,
    Origin(origin): Origin,
    Ruma(req): Ruma<create_join_event::v2::Request>,
) -> Result<RumaResponse<create_join_event::v2::Response>, ApiError> {
    let (pdu, state_ids) = accept(
        &state,
        &origin,
        &req.room_id,
        &req.event_id,
        &req.pdu,
        "join",
    )
    .await?;
    let version = pdu.room_version();
    let db = state.db();
    let roots: Vec<&str> = state_ids.iter().map(String::as_str).collect();
    // The auth chain: the state's auth events and theirs, state events
    // among them included (the joining server checks each event against
    // its auth events from this list).
    let mut chain: Vec<String> = Vec::new();
    for chunk in roots.chunks(storage::IN_CHUNK) {
        for row in events::get_many(db, chunk).await? {
            for id in stored_pdu(version, &row.json)?.auth_events() {
                if !chain.iter().any(|c| c == id.as_str()) {
                    chain.push(id.to_string());
                }
            }
        }
    }
    let direct: Vec<&str> = chain.iter().map(String::as_str).collect();
    let deeper = events::auth_chain_ids(db, &direct, MAX_AUTH_CHAIN)
        .await?
        .ok_or_else(|| ApiError::internal("auth chain", "too large to send"))?;
    for id in deeper {
        if !chain.contains(&id) {
            chain.push(id);
        }
    }
    // v12 events do not list the create event; the joining server needs it.
    if version.rules().room_id_from_create_event
        && let Some(create) =
            storage::state::current_event_id(db, req.room_id.as_str(), "m.room.create", "").await?
        && !chain.contains(&create)
    {
        chain.push(create);
    }
    let chain_refs: Vec<&str> = chain.iter().map(String::as_str).collect();
    let mut room_state = create_join_event::v2::RoomState::new();
    room_state.state = raw_events(&state, &roots).await?;
    room_state.auth_chain = raw_events(&state, &chain_refs).await?;
    room_state.event = Some(raw_pdu(&pdu)?);
    room_state.members_omitted = false;
    room_state.servers_in_room = Some(servers_in_room(&state, req.room_id.as_str()).await?);
    Ok(RumaResponse(create_join_event::v2::Response::new(
        room_state,
    )))
}

/// `GET /_matrix/federation/v1/make_leave/{roomId}/{userId}`
pub async fn make_leave(
    State(state): State<AppState>,
    Origin(origin): Origin,
    Ruma(req): Ruma<prepare_leave_event::v1::Request>,
) -> Result<RumaResponse<prepare_leave_event::v1::Response>, ApiError> {
    let (version, template) =
        make(&state, &origin, &req.room_id, &req.user_id, "leave", None).await?;
    Ok(RumaResponse(prepare_leave_event::v1::Response::new(
        Some(version_id(version)?),
        crate::federation::join::raw_object(&template)?,
    )))
}

/// `PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}`
pub async fn send_leave(
    State(state): State<AppState>,
    Origin(origin): Origin,
    Ruma(req): Ruma<create_leave_event::v2::Request>,
) -> Result<RumaResponse<create_leave_event::v2::Response>, ApiError> {
    accept(
        &state,
        &origin,
        &req.room_id,
        &req.event_id,
        &req.pdu,
        "leave",
    )
    .await?;
    Ok(RumaResponse(create_leave_event::v2::Response::new()))
}

/// `GET /_matrix/federation/v1/make_knock/{roomId}/{userId}`
pub async fn make_knock(
    State(state): State<AppState>,
    Origin(origin): Origin,
    Ruma(req): Ruma<make_knock_template::Request>,
) -> Result<RumaResponse<make_knock_template::Response>, ApiError> {
    let (version, template) = make(
        &state,
        &origin,
        &req.room_id,
        &req.user_id,
        "knock",
        Some(&req.ver),
    )
    .await?;
    Ok(RumaResponse(make_knock_template::Response::new(
        version_id(version)?,
        crate::federation::join::raw_object(&template)?,
    )))
}

/// `PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}`
pub async fn send_knock(
    State(state): State<AppState>,
    Origin(origin): Origin,
    Ruma(req): Ruma<send_knock::Request>,
) -> Result<RumaResponse<send_knock::Response>, ApiError> {
    accept(
        &state,
        &origin,
        &req.room_id,
        &req.event_id,
        &req.pdu,
        "knock",
    )
    .await?;
    let stripped = stripped_state_pdus(&state, req.room_id.as_str()).await?;
    Ok(RumaResponse(send_knock::Response::new(stripped)))
}

/// `PUT /_matrix/federation/v2/invite/{roomId}/{eventId}`: an invite of
/// one of our users, checked, counter-signed, stored (the invitee's sync
/// shows it with the stripped state it carries) and returned.
pub async fn invite(
    State(state): State<AppState>,
    Origin(origin): Origin,
    Ruma(req): Ruma<create_invite::v2::Request>,
) -> Result<RumaResponse<create_invite::v2::Response>, ApiError> {
    acl::check(&state, req.room_id.as_str(), &origin).await?;
    let version = crate::federation::join::supported(&req.room_version)
        .ok_or_else(|| incompatible(req.room_version.as_str()))?;
    // A room we hold is of the version we know.
    if let Some(room) = rooms::get(state.db(), req.room_id.as_str()).await?
        && room.room_version != version.as_str()
    {
        return Err(ApiError::bad_json(format!(
            "The room is of version {}",
            room.room_version
        )));
    }
    let obj = object_of(&req.event).map_err(ApiError::bad_json)?;
    let pdu = Pdu::from_object(version, obj).map_err(|e| ApiError::bad_json(e.to_string()))?;
    pdu.expect_room(&req.room_id)
        .map_err(|e| ApiError::bad_json(e.to_string()))?;
    if pdu.event_id() != req.event_id {
        return Err(ApiError::bad_json(format!(
            "The event's ID is {}, not {}",
            pdu.event_id(),
            req.event_id
        )));
    }
    let invitee = pdu
        .state_key()
        .and_then(|k| UserId::parse(k).ok())
        .filter(|_| pdu.event_type() == "m.room.member" && pdu.membership() == Some("invite"))
        .ok_or_else(|| ApiError::bad_json("Not an invite"))?;
    if invitee.server_name() != state.server_name() {
        return Err(ApiError::bad_json(format!(
            "{invitee} is not a user of this server"
        )));
    }
    if pdu.sender().server_name() != origin {
        return Err(ApiError::forbidden(format!(
            "{} is not a user of {origin}",
            pdu.sender()
        )));
    }
    if storage::accounts::get_profile(state.db(), invitee.as_str())
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(format!("Unknown user {invitee}")));
    }
    let keys = keyring_for(&state, [&pdu]).await;
    match verify_pdu(&pdu, &keys) {
        Ok(Verified::All) => {}
        Ok(Verified::SignaturesOnly) => {
            return Err(ApiError::bad_json(
                "The event's content hash does not match",
            ));
        }
        Err(e) => return Err(ApiError::forbidden(format!("Signature check failed: {e}"))),
    }

    let mut obj = pdu.into_json();
    obj.remove("unsigned");
    myelin_proto::hashes::sign_event(
        version.rules().redaction,
        state.server_name().as_str(),
        state.signing_key(),
        &mut obj,
    );
    let signed = Pdu::from_object(version, obj.clone())
        .map_err(|e| ApiError::internal("counter-signed invite", e))?;
    // What the invitee's client is shown of the room: stripped state only.
    let stripped = stripped_from_remote(&req.invite_room_state);
    let mut unsigned = Object::new();
    unsigned.insert("invite_room_state".into(), Value::Array(stripped));
    obj.insert("unsigned".into(), Value::Object(unsigned));
    let stored = Pdu::from_object(version, obj)
        .map_err(|e| ApiError::internal("counter-signed invite", e))?;
    crate::federation::invite::store_member_event(&state, &req.room_id, &stored).await?;
    Ok(RumaResponse(create_invite::v2::Response::new(raw_pdu(
        &signed,
    )?)))
}

/// The membership routes, behind the `X-Matrix` layer.
pub fn routes(r: axum::Router<AppState>) -> axum::Router<AppState> {
    use crate::api::route;
    let r = route::<prepare_join_event::v1::Request, _, _>(r, make_join);
    let r = route::<create_join_event::v2::Request, _, _>(r, send_join);
    let r = route::<prepare_leave_event::v1::Request, _, _>(r, make_leave);
    let r = route::<create_leave_event::v2::Request, _, _>(r, send_leave);
    let r = route::<make_knock_template::Request, _, _>(r, make_knock);
    let r = route::<send_knock::Request, _, _>(r, send_knock);
    route::<create_invite::v2::Request, _, _>(r, invite)
}
