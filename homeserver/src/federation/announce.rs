//! Telling the other servers in a room what they would not otherwise
//! hear: our users' typing, public read receipts and presence, as the
//! `m.typing`, `m.receipt` and `m.presence` EDUs (best effort and in
//! memory, like Synapse: a newer notification of the same user in the same
//! room, or of the same user's presence, replaces a queued one),
//! that a user's devices or keys changed (`m.device_list_update` and
//! `m.signing_key_update`, built from the durable queue
//! `storage::device_list_outbox` when a transaction is assembled), and the
//! membership events we accepted from a server through `send_join`,
//! `send_leave` or `send_knock`, which only we have at first.

use std::collections::BTreeMap;

use ruma::{EventId, RoomId, ServerName, UserId};
use sea_orm::DbErr;
use serde_json::{Value, json};

use crate::api::error::ApiError;
use crate::api::federation::user_keys;
use crate::state::AppState;
use crate::storage::device_list_outbox::{self, Poke};
use crate::storage::{Db, accounts, events, federation_outbox, receipts};

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

/// Our user's presence (`crate::presence`), to the other servers in
/// `rooms` as `m.presence` (in memory; a newer one of the same user
/// replaces a queued one).
pub async fn presence(
    state: &AppState,
    rooms: &[&RoomId],
    snapshot: &crate::presence::Snapshot,
    now_ms: i64,
) {
    let mut destinations = std::collections::BTreeSet::new();
    for room in rooms {
        destinations.extend(others(state, room).await);
    }
    if destinations.is_empty() {
        return;
    }
    let mut update = json!({
        "user_id": snapshot.user_id,
        "presence": snapshot.presence.as_str(),
        "last_active_ago": (now_ms - snapshot.last_active_ms).max(0),
        "currently_active": snapshot.currently_active,
    });
    if let Some(msg) = &snapshot.status_msg {
        update["status_msg"] = json!(msg);
    }
    let edu = json!({ "edu_type": "m.presence", "content": { "push": [update] } });
    let destinations: Vec<String> = destinations.into_iter().collect();
    state.federation().sender().send_edu(
        &destinations,
        Some(format!("m.presence {}", snapshot.user_id)),
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
    federation_outbox::enqueue(&tx, room_id.as_str(), &[(&destinations, stream)]).await?;
    tx.commit().await?;
    state.federation().sender().wake_all(&destinations);
    Ok(())
}

/// The device-list changes queued for `destination` (at most `limit`,
/// oldest first) as the EDUs that carry them: `m.device_list_update` per
/// changed device (with its keys and name, or `deleted` when it is gone;
/// `prev_id` chained from the last update the destination accepted), and
/// `m.signing_key_update` for a change of the master or self-signing key.
/// Returns the EDUs and the changes to mark sent once it accepts them.
/// Keys are read now, not when the change was made, so a late update is
/// never older than what it replaces.
pub async fn device_list_edus(
    db: &Db,
    destination: &str,
    limit: usize,
) -> Result<(Vec<Value>, Vec<Poke>), DbErr> {
    if limit == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    let pokes = device_list_outbox::pending(db, destination, limit as i64).await?;
    let mut users: Vec<String> = pokes.iter().map(|p| p.user_id.clone()).collect();
    users.sort();
    users.dedup();
    let last_sent = device_list_outbox::last_sent(db, destination, &users).await?;
    let mut edus = Vec::with_capacity(pokes.len());
    for (poke, prev_id) in device_list_outbox::with_prev_ids(&last_sent, &pokes) {
        let user = poke.user_id.as_str();
        let Some(device_id) = &poke.device_id else {
            // Asking for no real device: only the cross-signing keys.
            let wanted = BTreeMap::from([(user.to_owned(), vec![String::new()])]);
            let mut keys = user_keys::local_keys(db, &wanted).await?;
            let mut content = json!({ "user_id": user });
            if let Some(master) = keys.master.remove(user) {
                content["master_key"] = master;
            }
            if let Some(self_signing) = keys.self_signing.remove(user) {
                content["self_signing_key"] = self_signing;
            }
            edus.push(json!({ "edu_type": "m.signing_key_update", "content": content }));
            continue;
        };
        let mut content = json!({
            "user_id": user,
            "device_id": device_id,
            "stream_id": poke.stream_id,
            "prev_id": prev_id,
        });
        match accounts::get_device(db, user, device_id).await? {
            None => content["deleted"] = json!(true),
            Some(device) => {
                content["deleted"] = json!(false);
                if let Some(name) = device.display_name {
                    content["device_display_name"] = json!(name);
                }
                let wanted = BTreeMap::from([(user.to_owned(), vec![device_id.clone()])]);
                let keys = user_keys::local_keys(db, &wanted).await?;
                if let Some(k) = keys.devices.get(user).and_then(|d| d.get(device_id)) {
                    content["keys"] = k.clone();
                }
            }
        }
        edus.push(json!({ "edu_type": "m.device_list_update", "content": content }));
    }
    Ok((edus, pokes))
}
