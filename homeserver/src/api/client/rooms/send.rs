//! `PUT /rooms/{roomId}/send/{eventType}/{txnId}`.

use axum::extract::State;
use myelin_proto::canonical_json::Value;
use ruma::OwnedEventId;
use ruma::api::client::message::send_message_event::v3 as send_message_event;

use super::strict_object;
use crate::api::auth::Authed;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::rooms::{EventSpec, RoomService, TxnKey};
use crate::state::AppState;
use crate::storage::txn_ids;

/// The event a retried transaction sent, if this is a retry.
pub(super) async fn previous_txn(
    state: &AppState,
    auth: &Authed,
    scope: txn_ids::Scope<'_>,
    txn_id: &str,
) -> Result<Option<OwnedEventId>, ApiError> {
    txn_ids::get(
        state.db(),
        auth.user_id.as_str(),
        auth.device_id.as_str(),
        scope,
        txn_id,
    )
    .await?
    .map(|id| OwnedEventId::try_from(id).map_err(|e| ApiError::internal("stored event ID", e)))
    .transpose()
}

/// Appends an event of the authenticated user with a transaction ID,
/// under the room's lock.
pub(super) async fn append_with_txn(
    state: &AppState,
    auth: &Authed,
    room_id: &ruma::RoomId,
    spec: EventSpec,
    scope: txn_ids::Scope<'_>,
    txn_id: &str,
) -> Result<OwnedEventId, ApiError> {
    let guard = state.rooms().lock(room_id).await;
    guard
        .append(
            state,
            &auth.user_id,
            spec,
            Some(TxnKey {
                device_id: auth.device_id.as_str(),
                scope,
                txn_id,
            }),
        )
        .await
}

/// A 403 unless the authenticated user is joined to `room_id`.
pub(super) async fn require_joined(
    state: &AppState,
    auth: &Authed,
    room_id: &str,
) -> Result<(), ApiError> {
    crate::rooms::membership::require_joined(state.db(), room_id, auth.user_id.as_str()).await
}

pub async fn send_message(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<send_message_event::Request>,
) -> Result<RumaResponse<send_message_event::Response>, ApiError> {
    let event_type = req.event_type.to_string();
    let scope = txn_ids::Scope::Send {
        room_id: req.room_id.as_str(),
        event_type: &event_type,
    };
    // New events are rate limited; a retry of one already sent is answered
    // with it even when the sender is limited (its first result stands,
    // even if things changed since). Retries not limited are found where
    // the event would be stored.
    if let Err(limited) = state
        .rate_limiter()
        .check(crate::ratelimit::Limit::Message, auth.user_id.as_str())
    {
        return match previous_txn(&state, &auth, scope, req.txn_id.as_str()).await? {
            Some(id) => Ok(RumaResponse(send_message_event::Response::new(id))),
            None => Err(limited),
        };
    }
    let content = strict_object(req.body.json())?;
    // Sending is activity. Marked first, so that whoever sees the message
    // sees the sender's presence with it (or before it).
    crate::presence::active(&state, &auth.user_id).await;
    let mut spec = EventSpec::new(event_type.clone(), None, content);
    let event_id = if spec.event_type == "m.room.redaction" {
        // v11+ redactions name their target in content.
        spec.redacts = spec
            .content
            .get("redacts")
            .and_then(Value::as_str)
            .and_then(|s| OwnedEventId::try_from(s).ok());
        require_joined(&state, &auth, req.room_id.as_str()).await?;
        append_with_txn(
            &state,
            &auth,
            &req.room_id,
            spec,
            scope,
            req.txn_id.as_str(),
        )
        .await?
    } else {
        // Messages sent to a busy room are stored together. Whether the
        // sender may send there is the auth rules' question, asked as each
        // is built.
        RoomService::send_message(
            &state,
            &req.room_id,
            auth.user_id.clone(),
            auth.device_id.clone(),
            req.txn_id.to_string(),
            spec,
        )
        .await?
    };
    Ok(RumaResponse(send_message_event::Response::new(event_id)))
}
