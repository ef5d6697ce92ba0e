//! Telling the other servers in a room what they would not otherwise
//! hear: our users' typing and public read receipts, as the `m.typing` and
//! `m.receipt` EDUs (best effort and in memory, like Synapse: a newer
//! notification of the same user in the same room replaces a queued one),
//! that a user's devices or keys changed (`m.device_list_update`),
//! and the membership events we accepted from a server through `send_join`,
//! `send_leave` or `send_knock`, which only we have at first.

use ruma::{EventId, OwnedRoomId, RoomId, ServerName, UserId};
use serde_json::json;

use crate::api::error::ApiError;
use crate::state::AppState;
use crate::storage::streams::{self, Stream};
use crate::storage::{events, federation_outbox, receipts};

/// The other servers in `room_id`, or none when it cannot be told.
async fn others(state: &AppState, room_id: &RoomId) -> Vec<String> {
    match state.rooms().hosts().get(state.db(), room_id).await {
        Ok(hosts) => hosts
            .iter()
            .filter(|h| h.as_str() != state.server_name().as_str())
            .cloned()
            .collect(),
        Err(e) => {
            tracing::warn!(%room_id, error = %e, "cannot read the servers in a room");
            Vec::new()
        }
    }
}

/// `user_id` started or stopped typing in `room_id`.
pub async fn typing(state: &AppState, room_id: &RoomId, user_id: &UserId, typing: bool) {
    let destinations = others(state, room_id).await;
    if destinations.is_empty() {
        return;
    }
    let edu = json!({
        "edu_type": "m.typing",
        "content": { "room_id": room_id, "user_id": user_id, "typing": typing },
    });
    state.federation().sender().send_edu(
        &destinations,
        Some(format!("m.typing {room_id} {user_id}")),
        &edu,
    );
}

/// `user_id` read up to `event_id` in `room_id` (a public `m.read`
/// receipt; private ones never leave the server).
pub async fn receipt(
    state: &AppState,
    room_id: &RoomId,
    user_id: &UserId,
    thread_id: &str,
    event_id: &str,
    ts: i64,
) {
    let destinations = others(state, room_id).await;
    if destinations.is_empty() {
        return;
    }
    let mut data = json!({ "ts": ts });
    if thread_id != receipts::UNTHREADED {
        data["thread_id"] = json!(thread_id);
    }
    let edu = json!({
        "edu_type": "m.receipt",
        "content": {
            room_id.as_str(): {
                receipts::READ: {
                    user_id.as_str(): { "event_ids": [event_id], "data": data },
                },
            },
        },
    });
    state.federation().sender().send_edu(
        &destinations,
        Some(format!("m.receipt {room_id} {user_id} {thread_id}")),
        &edu,
    );
}

/// Queues `event_id`, accepted from `origin` through a `send_*` endpoint
/// before, for the other servers in the room again: a retried `send_join`
/// (the first relay went out in the transaction that stored the event,
/// see [`crate::rooms::RoomGuard::ingest_relayed`]). Queuing again is
/// harmless: receivers ignore events they hold.
pub async fn relay(
    state: &AppState,
    room_id: &RoomId,
    event_id: &EventId,
    origin: &ServerName,
) -> Result<(), ApiError> {
    let Some(stream) = events::get(state.db(), event_id.as_str())
        .await?
        .and_then(|e| e.stream_ordering)
    else {
        return Ok(());
    };
    let destinations: Vec<String> = others(state, room_id)
        .await
        .into_iter()
        .filter(|h| h.as_str() != origin.as_str())
        .collect();
    if destinations.is_empty() {
        return Ok(());
    }
    let tx = state.db().begin_write().await?;
    federation_outbox::enqueue(&tx, &destinations, stream, room_id.as_str()).await?;
    tx.commit().await?;
    state.federation().sender().wake_all(&destinations);
    Ok(())
}

/// Tells the other servers sharing a room with our user `user_id` that
/// the user's device list or keys changed. The update carries no
/// `prev_id`, which makes the receiver fetch the whole list again
/// (`/user/devices`, with the cross-signing keys): always complete,
/// deletions included, at the price of one request per change. Like
/// typing, it is kept in memory; a newer update of the same user replaces
/// a queued one.
pub async fn device_list_update(
    state: &AppState,
    user_id: &UserId,
    rooms: &[OwnedRoomId],
) -> Result<(), sea_orm::DbErr> {
    let mut destinations = std::collections::BTreeSet::new();
    for room in rooms {
        destinations.extend(others(state, room).await);
    }
    if destinations.is_empty() {
        return Ok(());
    }
    let stream_id = streams::current_position(state.db(), Stream::DeviceLists).await?;
    // The EDU names one device; with no `prev_id` the receiver refetches
    // them all, so which one does not matter.
    let device_id = crate::storage::device_keys::of_users(state.db(), &[user_id.to_string()])
        .await?
        .into_iter()
        .next()
        .map(|d| d.device_id)
        .unwrap_or_default();
    let edu = json!({
        "edu_type": "m.device_list_update",
        "content": {
            "user_id": user_id,
            "device_id": device_id,
            "stream_id": stream_id,
            "prev_id": [],
            "deleted": false,
        },
    });
    let destinations: Vec<String> = destinations.into_iter().collect();
    state.federation().sender().send_edu(
        &destinations,
        Some(format!("m.device_list_update {user_id}")),
        &edu,
    );
    Ok(())
}
