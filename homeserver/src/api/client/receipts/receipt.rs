//! `POST /rooms/{roomId}/receipt/{receiptType}/{eventId}`.

use axum::body::Body;
use axum::extract::{FromRequest, Request, State};
use ruma::api::client::receipt::create_receipt::v3 as create_receipt;
use ruma::events::receipt::ReceiptThread;

use super::{ReceiptRequest, apply_fully_read, apply_receipt, require_joined, timeline_position};
use crate::api::auth::Authed;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::state::AppState;
use crate::storage::receipts;

/// The spec's error for a `thread_id` that is not a string is
/// `M_INVALID_PARAM` (as Synapse answers), where a body of the wrong shape
/// would otherwise be `M_BAD_JSON`: checked on the raw body first.
async fn parse(state: &AppState, request: Request) -> Result<create_receipt::Request, ApiError> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, state.config().limits.max_request_bytes)
        .await
        .map_err(|_| ApiError::too_large("Request body is too large"))?;
    if let Ok(serde_json::Value::Object(body)) = serde_json::from_slice(&bytes)
        && body.get("thread_id").is_some_and(|t| !t.is_string())
    {
        return Err(ApiError::invalid_param(
            "thread_id field must be a non-empty string",
        ));
    }
    let Ruma(req) =
        Ruma::from_request(Request::from_parts(parts, Body::from(bytes)), state).await?;
    Ok(req)
}

pub async fn create_receipt(
    State(state): State<AppState>,
    auth: Authed,
    request: Request,
) -> Result<RumaResponse<create_receipt::Response>, ApiError> {
    let req = parse(&state, request).await?;
    let receipt_type = match req.receipt_type {
        create_receipt::ReceiptType::Read => Some(receipts::READ),
        create_receipt::ReceiptType::ReadPrivate => Some(receipts::READ_PRIVATE),
        // The fully read marker, as `/read_markers` sets it.
        create_receipt::ReceiptType::FullyRead => None,
        _ => {
            return Err(ApiError::invalid_param(
                "Receipt type must be m.read, m.read.private or m.fully_read",
            ));
        }
    };
    let thread_id = match &req.thread {
        ReceiptThread::Unthreaded => receipts::UNTHREADED,
        ReceiptThread::Main => receipts::MAIN_THREAD,
        ReceiptThread::Thread(root) => root.as_str(),
        _ => {
            return Err(ApiError::invalid_param(
                "thread_id field must be a non-empty string",
            ));
        }
    };
    if receipt_type.is_none() && thread_id != receipts::UNTHREADED {
        return Err(ApiError::invalid_param(
            "m.fully_read does not support thread_id",
        ));
    }
    require_joined(&state, &req.room_id, &auth.user_id).await?;
    let event_position = timeline_position(&state, &req.room_id, &req.event_id).await?;
    // Activity, marked before the receipt is visible (as for a message).
    crate::presence::active(&state, &auth.user_id).await;
    match receipt_type {
        Some(receipt_type) => {
            apply_receipt(
                &state,
                ReceiptRequest {
                    room: &req.room_id,
                    user: &auth.user_id,
                    receipt_type,
                    thread_id,
                    event_id: &req.event_id,
                    event_position,
                },
            )
            .await?;
        }
        None => {
            apply_fully_read(
                &state,
                &req.room_id,
                &auth.user_id,
                &req.event_id,
                event_position,
            )
            .await?;
        }
    }
    Ok(RumaResponse(create_receipt::Response::new()))
}
