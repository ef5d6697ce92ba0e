//! Leaving a room over federation, when no other local user is in it (or
//! rejecting an invite to a room we are not in): `make_leave` and
//! `send_leave` on a resident server, then our leave stored like any
//! member event of ours. When no resident server answers, an invite or a
//! knock is rejected locally, as Synapse does.

use myelin_proto::canonical_json;
use myelin_proto::{Pdu, PduBuilder, RoomVersion};
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
/// sender of our user's invite or knock and of the stripped state kept
/// with it (a knock's sender is our user; room IDs of v12 name no
/// server), and the room ID's server.
pub async fn resident_servers(
    state: &AppState,
    room_id: &RoomId,
    user_id: &UserId,
) -> Result<Vec<OwnedServerName>, ApiError> {
    let db = state.db();
    let mut servers: Vec<OwnedServerName> = Vec::new();
    if let Some(m) = memberships::get(db, room_id.as_str(), user_id.as_str()).await?
        && let Some(event) = events::get(db, &m.event_id).await?
    {
        let senders = stripped_state_senders(&event.json);
        for sender in
            std::iter::once(event.sender.as_str()).chain(senders.iter().map(String::as_str))
        {
            if let Ok(sender) = UserId::parse(sender) {
                servers.push(sender.server_name().to_owned());
            }
        }
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

/// The senders of the stripped state an invite or knock of ours carries
/// (`unsigned.invite_room_state` / `knock_room_state`), in order.
fn stripped_state_senders(event_json: &str) -> Vec<String> {
    let Ok(event) = serde_json::from_str::<serde_json::Value>(event_json) else {
        return Vec::new();
    };
    ["invite_room_state", "knock_room_state"]
        .iter()
        .filter_map(|key| event["unsigned"][key].as_array())
        .flatten()
        .filter_map(|e| e["sender"].as_str().map(str::to_owned))
        .collect()
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
    let remote = super::join::first_that_answers(
        &servers,
        "No known servers to leave the room through",
        |server| leave_through(state, user_id, room_id, server, reason),
    )
    .await;
    let Err(e) = remote else {
        return Ok(());
    };
    // As Synapse: an invite (or a knock) that no resident server takes
    // back is still rejected here, so the user is not stuck with it.
    match out_of_band_leave(state, user_id, room_id, reason).await? {
        true => {
            tracing::info!(%room_id, %user_id, error = ?e, "invite rejected locally");
            Ok(())
        }
        false => Err(e),
    }
}

/// Rejects `user_id`'s pending invite or knock in `room_id` on this server
/// only: a leave of ours citing the invite (or knock) as its prev and auth
/// event, stored like the invite was, and never sent (the other servers
/// would not accept it; Synapse's "out-of-band" leave). `false` when the
/// user has no pending invite or knock here.
async fn out_of_band_leave(
    state: &AppState,
    user_id: &UserId,
    room_id: &RoomId,
    reason: Option<&str>,
) -> Result<bool, ApiError> {
    let db = state.db();
    let Some(m) = memberships::get(db, room_id.as_str(), user_id.as_str()).await? else {
        return Ok(false);
    };
    if !matches!(m.membership.as_str(), "invite" | "knock") {
        return Ok(false);
    }
    let Some(row) = events::get(db, &m.event_id).await? else {
        return Ok(false);
    };
    // We may hold nothing else of the room: its version is the one under
    // which the stored event has the ID it was stored with.
    let Some(pending) = RoomVersion::ALL.into_iter().find_map(|version| {
        let obj = canonical_json::parse_object(row.json.as_bytes()).ok()?;
        let pdu = Pdu::from_object(version, obj).ok()?;
        (pdu.event_id().as_str() == row.event_id).then_some(pdu)
    }) else {
        return Ok(false);
    };
    let content = member_content(state, user_id, "leave", reason).await?;
    let mut builder = PduBuilder::new(
        "m.room.member",
        Some(user_id.as_str()),
        content,
        user_id,
        Some(room_id),
    );
    builder.prev_events = vec![pending.event_id().to_owned()];
    builder.auth_events = vec![pending.event_id().to_owned()];
    builder.depth = pending.depth().saturating_add(1);
    builder.origin_server_ts = crate::time::now_ms();
    let leave = builder
        .build(
            pending.room_version(),
            state.server_name().as_str(),
            state.signing_key(),
        )
        .map_err(|e| ApiError::internal("out-of-band leave", e))?;
    store_member_event(state, room_id, &leave).await?;
    Ok(true)
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
