//! Invites across servers: a local user inviting a user of another server
//! (the invitee's server counter-signs the invite before we store it), and
//! storing an invite or another member event of ours that a remote server
//! accepted for a room we may not be in.

use myelin_proto::Pdu;
use myelin_proto::canonical_json::{Object, Value};
use myelin_proto::signing::{PublicKey, signatures_of};
use ruma::api::federation::membership::create_invite;
use ruma::{RoomId, UserId};

use super::join::{bad_answer, object_of, raw_object, remote_failure};
use crate::api::error::ApiError;
use crate::rooms::EventSpec;
use crate::rooms::membership::stripped_state;
use crate::state::AppState;
use crate::storage::{events, rooms};

/// Largest answer read from `invite` (one event).
const MAX_INVITE_ANSWER: usize = 256 * 1024;

/// Stores a member event a remote server accepted (an invite of one of
/// our users, our leave or knock) as a timeline event on the room's
/// current state, if we hold one: the invitee's membership follows it and
/// sync shows it. Stored once: a repeated event changes nothing.
pub async fn store_member_event(
    state: &AppState,
    room_id: &RoomId,
    pdu: &Pdu,
) -> Result<(), ApiError> {
    let db = state.db();
    let guard = state.rooms().lock(room_id).await;
    if !events::statuses(db, &[pdu.event_id().as_str()])
        .await?
        .is_empty()
    {
        return Ok(());
    }
    let snapshot = rooms::get(db, room_id.as_str())
        .await?
        .and_then(|r| r.current_snapshot);
    guard.persist(state, pdu, snapshot, None, None).await?;
    Ok(())
}

/// Whether `server` signed `pdu` with a key we can find, and every such
/// signature verifies.
async fn signed_by(state: &AppState, pdu: &Pdu, server: &ruma::ServerName) -> bool {
    let Ok(sigs) = signatures_of(pdu.json(), server.as_str()) else {
        return false;
    };
    let message = pdu.signed_bytes();
    let mut any = false;
    for (key_id, signature) in sigs {
        let Some(key) = state
            .federation()
            .keys()
            .lookup(server, key_id, pdu.origin_server_ts())
            .await
        else {
            continue;
        };
        let key: PublicKey = key.key;
        if key.verify(&message, signature).is_err() {
            return false;
        }
        any = true;
    }
    any
}

/// `sender` invites `target`, a user of another server: the invite is
/// built and auth-checked on our state, sent to the invitee's server with
/// the room's stripped state, and stored once it comes back counter-signed
/// (and otherwise unchanged).
pub async fn invite_remote(
    state: &AppState,
    room_id: &RoomId,
    sender: &UserId,
    target: &UserId,
    reason: Option<&str>,
    is_direct: bool,
) -> Result<(), ApiError> {
    let db = state.db();
    let mut content = Object::new();
    content.insert("membership".into(), Value::from("invite"));
    if is_direct {
        content.insert("is_direct".into(), Value::Bool(true));
    }
    if let Some(reason) = reason {
        content.insert("reason".into(), Value::from(reason));
    }
    let spec = EventSpec::new("m.room.member", Some(target.as_str()), content);
    let guard = state.rooms().lock(room_id).await;
    let (pdu, snapshot) = guard.build_checked(state, sender, spec).await?;
    let stripped = stripped_state(db, room_id.as_str()).await?;
    let invite_room_state =
        crate::api::federation::membership::stripped_state_pdus(state, room_id.as_str()).await?;
    let version = pdu.room_version();
    let version_id = ruma::RoomVersionId::try_from(version.as_str())
        .map_err(|e| ApiError::internal("room version unnamed", e))?;
    let request = create_invite::v2::Request::new(
        room_id.to_owned(),
        pdu.event_id().to_owned(),
        version_id,
        raw_object(pdu.json())?,
        invite_room_state,
    );
    let server = target.server_name();
    let answer = state
        .federation()
        .client()
        .send_with_limit(server, request, MAX_INVITE_ANSWER)
        .await
        .map_err(|e| remote_failure(server, &e))?;
    let obj = object_of(&answer.event).map_err(|e| bad_answer(server, e))?;
    let mut signed = Pdu::from_object(version, obj).map_err(|e| bad_answer(server, e))?;
    if signed.event_id() != pdu.event_id() {
        return Err(bad_answer(server, "the invite came back changed"));
    }
    if !signed_by(state, &signed, server).await {
        return Err(bad_answer(server, "the invite is not signed by it"));
    }
    // Keep the stripped state with our copy, as for local invites.
    let mut obj = signed.into_json();
    let mut unsigned = Object::new();
    unsigned.insert("invite_room_state".into(), Value::Array(stripped));
    obj.insert("unsigned".into(), Value::Object(unsigned));
    signed = Pdu::from_object(version, obj).map_err(|e| ApiError::internal("invite", e))?;
    guard.persist(state, &signed, snapshot, None, None).await?;
    Ok(())
}
