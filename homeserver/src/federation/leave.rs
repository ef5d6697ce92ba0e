//! Leaving a room over federation, when no other local user is in it (or
//! rejecting an invite to a room we are not in): `make_leave` and
//! `send_leave` on a resident server, then our leave stored like any
//! member event of ours.

use myelin_proto::RoomVersion;
use ruma::api::federation::membership::{create_leave_event, prepare_leave_event};
use ruma::{OwnedServerName, RoomId, RoomVersionId, ServerName, UserId};

use super::invite::store_member_event;
use super::join::{
    bad_answer, candidates, event_from_template, incompatible, member_content, object_of, raw_pdu,
    remote_failure, supported,
};
use crate::api::error::ApiError;
use crate::state::AppState;
use crate::storage::{events, memberships};

/// Largest template answer read.
const MAX_TEMPLATE_BYTES: usize = 256 * 1024;

/// The servers that may know the room: those of its joined members, the
/// sender of our user's invite or knock, and the room ID's server.
pub async fn resident_servers(
    state: &AppState,
    room_id: &RoomId,
    user_id: &UserId,
) -> Result<Vec<OwnedServerName>, ApiError> {
    let db = state.db();
    let mut servers: Vec<OwnedServerName> = Vec::new();
    if let Some(m) = memberships::get(db, room_id.as_str(), user_id.as_str()).await?
        && let Some(event) = events::get(db, &m.event_id).await?
        && let Ok(sender) = UserId::parse(&event.sender)
    {
        servers.push(sender.server_name().to_owned());
    }
    for m in memberships::members(db, room_id.as_str()).await? {
        if m.membership == "join"
            && let Ok(member) = UserId::parse(&m.user_id)
        {
            servers.push(member.server_name().to_owned());
        }
    }
    if let Some(server) = room_id.server_name() {
        servers.push(server.to_owned());
    }
    Ok(candidates(state, &servers))
}

/// `user_id` leaves (or declines an invite to) a room through a resident
/// server.
pub async fn leave_remote(
    state: &AppState,
    user_id: &UserId,
    room_id: &RoomId,
    reason: Option<&str>,
) -> Result<(), ApiError> {
    let servers = resident_servers(state, room_id, user_id).await?;
    super::join::first_that_answers(
        &servers,
        "No known servers to leave the room through",
        |server| leave_through(state, user_id, room_id, server, reason),
    )
    .await
}

async fn leave_through(
    state: &AppState,
    user_id: &UserId,
    room_id: &RoomId,
    server: &ServerName,
    reason: Option<&str>,
) -> Result<(), ApiError> {
    let client = state.federation().client();
    let request = prepare_leave_event::v1::Request::new(room_id.to_owned(), user_id.to_owned());
    let answer = client
        .send_with_limit(server, request, MAX_TEMPLATE_BYTES)
        .await
        .map_err(|e| remote_failure(server, &e))?;
    let version_id = answer.room_version.unwrap_or(RoomVersionId::V1);
    let version: RoomVersion =
        supported(&version_id).ok_or_else(|| incompatible(version_id.as_str()))?;
    let template = object_of(&answer.event).map_err(|e| bad_answer(server, e))?;
    let content = member_content(state, user_id, "leave", reason).await?;
    let pdu = event_from_template(
        state.server_name(),
        state.signing_key(),
        version,
        room_id,
        user_id,
        &template,
        content,
    )
    .map_err(|e| bad_answer(server, e))?;
    let request = create_leave_event::v2::Request::new(
        room_id.to_owned(),
        pdu.event_id().to_owned(),
        raw_pdu(&pdu)?,
    );
    client
        .send(server, request)
        .await
        .map_err(|e| remote_failure(server, &e))?;
    store_member_event(state, room_id, &pdu).await
}
