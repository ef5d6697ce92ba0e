//! Telling the other servers in a room what our users do that is not a
//! room event: typing and public read receipts, as the `m.typing` and
//! `m.receipt` EDUs. Best effort and in memory, like Synapse: a newer
//! notification of the same user in the same room replaces a queued one.

use ruma::{RoomId, UserId};
use serde_json::json;

use crate::state::AppState;
use crate::storage::receipts;

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
