//! `POST /rooms/{roomId}/read_markers`.

use axum::extract::State;
use ruma::api::client::read_marker::set_read_marker::v3 as set_read_marker;

use super::{ReceiptRequest, apply_fully_read, apply_receipt, require_joined, timeline_position};
use crate::api::auth::Authed;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::state::AppState;
use crate::storage::receipts;

pub async fn set_read_markers(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<set_read_marker::Request>,
) -> Result<RumaResponse<set_read_marker::Response>, ApiError> {
    require_joined(&state, &req.room_id, &auth.user_id).await?;
    // Every event is checked before anything is written, so a bad one
    // leaves all three markers where they were.
    let mut positions = Vec::with_capacity(3);
    for event_id in [
        &req.fully_read,
        &req.read_receipt,
        &req.private_read_receipt,
    ] {
        positions.push(match event_id {
            Some(id) => Some((id, timeline_position(&state, &req.room_id, id).await?)),
            None => None,
        });
    }
    let [fully_read, read, private] = [positions[0], positions[1], positions[2]];
    if let Some((event_id, position)) = fully_read {
        apply_fully_read(&state, &req.room_id, &auth.user_id, event_id, position).await?;
    }
    for (receipt_type, marker) in [(receipts::READ, read), (receipts::READ_PRIVATE, private)] {
        if let Some((event_id, event_position)) = marker {
            apply_receipt(
                &state,
                ReceiptRequest {
                    room: &req.room_id,
                    user: &auth.user_id,
                    receipt_type,
                    thread_id: receipts::UNTHREADED,
                    event_id,
                    event_position,
                },
            )
            .await?;
        }
    }
    Ok(RumaResponse(set_read_marker::Response::new()))
}
