//! `PUT /rooms/{roomId}/redact/{eventId}/{txnId}`.

use axum::extract::State;
use myelin_proto::canonical_json::{Object, Value};
use ruma::api::client::redact::redact_event::v3 as redact_event;

use super::send::{append_with_txn, previous_txn, require_joined};
use crate::api::auth::Authed;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::rooms::EventSpec;
use crate::state::AppState;
use crate::storage::txn_ids;

pub async fn redact(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<redact_event::Request>,
) -> Result<RumaResponse<redact_event::Response>, ApiError> {
    let scope = txn_ids::Scope::Redact {
        room_id: req.room_id.as_str(),
        event_id: req.event_id.as_str(),
    };
    if let Some(id) = previous_txn(&state, &auth, scope, req.txn_id.as_str()).await? {
        return Ok(RumaResponse(redact_event::Response::new(id)));
    }
    // Retries (answered above) are not rate limited; new events are.
    state
        .rate_limiter()
        .check(crate::ratelimit::Limit::Message, auth.user_id.as_str())?;
    require_joined(&state, &auth, req.room_id.as_str()).await?;
    let mut content = Object::new();
    if let Some(reason) = &req.reason {
        content.insert("reason".into(), Value::from(reason.as_str()));
    }
    let mut spec = EventSpec::new("m.room.redaction", None, content);
    spec.redacts = Some(req.event_id.clone());
    let event_id = append_with_txn(
        &state,
        &auth,
        &req.room_id,
        spec,
        scope,
        req.txn_id.as_str(),
    )
    .await?;
    Ok(RumaResponse(redact_event::Response::new(event_id)))
}
