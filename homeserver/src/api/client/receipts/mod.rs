//! Client-server endpoints for what users tell a room without sending
//! events: typing notifications, read receipts and the fully read marker.
//! Typing lives in [`crate::typing`] (memory), receipts in
//! [`crate::storage::receipts`], the fully read marker in room account
//! data.

mod read_markers;
mod receipt;
mod typing;

use axum::Router;
use ruma::api::client as c;
use ruma::{OwnedEventId, RoomId, UserId};

use crate::api::error::ApiError;
use crate::api::route;
use crate::state::AppState;
use crate::storage::{self, account_data, receipts};

/// Registers the typing, receipt and read marker endpoints.
pub fn routes(mut r: Router<AppState>) -> Router<AppState> {
    r = route::<c::typing::create_typing_event::v3::Request, _, _>(r, typing::set_typing);
    r = route::<c::receipt::create_receipt::v3::Request, _, _>(r, receipt::create_receipt);
    r = route::<c::read_marker::set_read_marker::v3::Request, _, _>(
        r,
        read_markers::set_read_markers,
    );
    r
}

/// A 403 unless `user` is joined to `room` (unknown rooms look the same).
async fn require_joined(state: &AppState, room: &RoomId, user: &UserId) -> Result<(), ApiError> {
    crate::rooms::membership::require_joined(state.db(), room.as_str(), user.as_str()).await
}

/// The timeline position of an event of `room`; 404 for events not in the
/// room's timeline.
async fn timeline_position(
    state: &AppState,
    room: &RoomId,
    event_id: &OwnedEventId,
) -> Result<i64, ApiError> {
    storage::events::get(state.db(), event_id.as_str())
        .await?
        .filter(|e| e.room_id == room.as_str())
        .and_then(|e| e.stream_ordering)
        .ok_or_else(|| ApiError::not_found("Event not found"))
}

/// A read receipt to store, validated.
struct ReceiptRequest<'a> {
    room: &'a RoomId,
    user: &'a UserId,
    /// [`receipts::READ`] or [`receipts::READ_PRIVATE`].
    receipt_type: &'static str,
    thread_id: &'a str,
    event_id: &'a OwnedEventId,
    event_position: i64,
}

/// Stores a read receipt and wakes whoever sync shows it to: the room for
/// a public receipt, only the user for a private one.
async fn apply_receipt(state: &AppState, r: ReceiptRequest<'_>) -> Result<(), ApiError> {
    let ts = crate::time::now_ms();
    let changed = receipts::set(
        state.db(),
        &receipts::NewReceipt {
            room_id: r.room.as_str(),
            user_id: r.user.as_str(),
            receipt_type: r.receipt_type,
            thread_id: r.thread_id,
            event_id: r.event_id.as_str(),
            event_stream_ordering: r.event_position,
            ts,
        },
    )
    .await?;
    if changed.is_some() {
        if r.receipt_type == receipts::READ_PRIVATE {
            state.notifier().wake_user(r.user);
        } else {
            state.notifier().wake_room(r.room);
            crate::federation::announce::receipt(
                state,
                r.room,
                r.user,
                r.thread_id,
                r.event_id.as_str(),
                ts,
            )
            .await;
        }
    }
    Ok(())
}

/// The room account data type of the fully read marker.
const FULLY_READ: &str = "m.fully_read";

/// Moves the user's fully read marker to an event, unless it is already
/// there or later (as Synapse does), and wakes the user's syncs.
async fn apply_fully_read(
    state: &AppState,
    room: &RoomId,
    user: &UserId,
    event_id: &OwnedEventId,
    event_position: i64,
) -> Result<(), ApiError> {
    let db = state.db();
    let current = account_data::get(db, user.as_str(), Some(room.as_str()), FULLY_READ).await?;
    let current_event = current
        .as_deref()
        .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
        .and_then(|c| c.get("event_id")?.as_str().map(str::to_owned));
    if let Some(current_event) = current_event
        && let Some(current) = storage::events::get(db, &current_event).await?
        && current.room_id == room.as_str()
        && current.stream_ordering.is_some_and(|p| p >= event_position)
    {
        return Ok(());
    }
    let content = serde_json::json!({ "event_id": event_id }).to_string();
    account_data::set(db, user.as_str(), Some(room.as_str()), FULLY_READ, &content).await?;
    state.notifier().wake_user(user);
    Ok(())
}
