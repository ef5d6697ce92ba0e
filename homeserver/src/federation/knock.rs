//! Knocking on a room of another server: `make_knock` and `send_knock` on
//! a resident server, then our knock stored like any member event of ours,
//! with the room's stripped state the resident answered in its
//! `unsigned.knock_room_state` (what the knocker's sync shows).

use myelin_proto::Pdu;
use myelin_proto::canonical_json::{Object, Value};
use ruma::api::federation::membership::create_knock_event::v1 as send_knock;
use ruma::api::federation::membership::prepare_knock_event::v1 as make_knock;
use ruma::{OwnedServerName, RoomId, ServerName, UserId};

use super::invite::store_member_event;
use super::join::{
    bad_answer, candidates, event_from_template, first_that_answers, incompatible, member_content,
    object_of, raw_pdu, remote_failure, supported, supported_version_ids,
};
use crate::api::error::ApiError;
use crate::api::federation::membership::stripped_from_remote;
use crate::state::AppState;

/// Largest template answer read.
const MAX_TEMPLATE_BYTES: usize = 256 * 1024;
/// Largest `send_knock` answer read (stripped state).
const MAX_KNOCK_ANSWER: usize = 1024 * 1024;

/// `user_id` knocks on a room of other servers, asking `servers` in turn.
pub async fn knock_remote(
    state: &AppState,
    user_id: &UserId,
    room_id: &RoomId,
    servers: &[OwnedServerName],
    reason: Option<&str>,
) -> Result<(), ApiError> {
    let servers = candidates(state, servers);
    first_that_answers(&servers, "No known servers to knock through", |server| {
        knock_through(state, user_id, room_id, server, reason)
    })
    .await
}

async fn knock_through(
    state: &AppState,
    user_id: &UserId,
    room_id: &RoomId,
    server: &ServerName,
    reason: Option<&str>,
) -> Result<(), ApiError> {
    let client = state.federation().client();
    let mut request = make_knock::Request::new(room_id.to_owned(), user_id.to_owned());
    request.ver = supported_version_ids();
    let answer = client
        .send_with_limit(server, request, MAX_TEMPLATE_BYTES)
        .await
        .map_err(|e| remote_failure(server, &e))?;
    let version = supported(&answer.room_version)
        .ok_or_else(|| incompatible(answer.room_version.as_str()))?;
    let template = object_of(&answer.event).map_err(|e| bad_answer(server, e))?;
    let content = member_content(state, user_id, "knock", reason).await?;
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
    let request = send_knock::Request::new(
        room_id.to_owned(),
        pdu.event_id().to_owned(),
        raw_pdu(&pdu)?,
    );
    let answer = client
        .send_with_limit(server, request, MAX_KNOCK_ANSWER)
        .await
        .map_err(|e| remote_failure(server, &e))?;
    // We hold none of the room's state: keep the resident's description
    // of the room with our knock, for the knocker's sync (as invites keep
    // theirs).
    let stripped = stripped_from_remote(&answer.knock_room_state);
    let mut obj = pdu.into_json();
    let mut unsigned = Object::new();
    unsigned.insert("knock_room_state".into(), Value::Array(stripped));
    obj.insert("unsigned".into(), Value::Object(unsigned));
    let pdu = Pdu::from_object(version, obj).map_err(|e| ApiError::internal("knock", e))?;
    store_member_event(state, room_id, &pdu).await
}
