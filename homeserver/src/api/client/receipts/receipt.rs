//! `POST /rooms/{roomId}/receipt/{receiptType}/{eventId}`.

use axum::extract::State;
use ruma::api::client::receipt::create_receipt::v3 as create_receipt;
use ruma::events::receipt::ReceiptThread;

use super::{ReceiptRequest, apply_fully_read, apply_receipt, require_joined, timeline_position};
use crate::api::auth::Authed;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::state::AppState;
use crate::storage::receipts;

pub async fn create_receipt(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<create_receipt::Request>,
) -> Result<RumaResponse<create_receipt::Response>, ApiError> {
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
