//! The EDUs of an inbound transaction. Each is handled on its own: a
//! malformed one, or one the origin may not send, is logged and skipped,
//! never failing the transaction (the sender would retry it forever).
//!
//! An origin only speaks for its own users: typing, receipts, to-device
//! messages and device list updates naming a user of another server are
//! ignored, as Synapse does. Typing and receipts also need the user to be
//! joined to the room and the room's ACL to let the origin in.
//!
//! - `m.typing`: the in-memory typing store, as local typing.
//! - `m.receipt`: `m.read` receipts stored like local ones (sync shows
//!   them); the receipted event must be one we hold in the room.
//! - `m.direct_to_device`: delivered to local devices' inboxes (`*`: every
//!   device), once per `message_id` (the sender's transaction ID, kept as
//!   local to-device transaction IDs are, under no device).
//! - `m.device_list_update`: applied to the cached device list of the
//!   remote user (`storage::remote_devices`) when it follows on from what
//!   we hold; otherwise the list is marked stale and refetched
//!   (`federation::remote_keys`). `m.signing_key_update`: the cached master
//!   and self-signing keys. Either is recorded as a change of the user's
//!   device list, so local users sharing a room see them in sync's
//!   `device_lists.changed` and query their keys again.
//! - `m.presence`: the presence of the origin's users who share a room
//!   with one of ours (`crate::presence`); others are skipped, and all of
//!   it when presence is off.

use std::time::Duration;

use ruma::api::federation::transactions::edu::{
    DeviceListUpdateContent, DirectDeviceContent, PresenceUpdate, ReceiptContent,
    SigningKeyUpdateContent, TypingContent,
};
use ruma::events::receipt::ReceiptThread;
use ruma::serde::Raw;
use ruma::to_device::DeviceIdOrAllDevices;
use ruma::{OwnedUserId, RoomId, ServerName, UserId};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::acl;
use crate::api::error::ApiError;
use crate::state::AppState;
use crate::storage::receipts::{self, NewReceipt};
use crate::storage::remote_devices::{self, CachedDevice, Decision};
use crate::storage::to_device::{self, InboxMessage};
use crate::storage::{accounts, device_lists, events, memberships};

/// How long a remote user is shown typing without a renewal (Synapse's
/// federation typing timeout).
const REMOTE_TYPING_TIMEOUT: Duration = Duration::from_secs(60);

/// Most users one `m.presence` EDU may update (each costs a lookup); the
/// rest are skipped.
const MAX_PRESENCE_UPDATES: usize = 1_000;

/// Most local devices one to-device EDU may reach (`*` expanded).
const MAX_TO_DEVICE_RECIPIENTS: usize = 10_000;

/// Handles the EDUs of one transaction from `origin`, in order. Only
/// database failures are errors; they end the transaction (a 500 makes the
/// origin retry it, and everything here is idempotent).
pub async fn handle(state: &AppState, origin: &ServerName, edus: &[Value]) -> Result<(), ApiError> {
    for edu in edus {
        let edu_type = edu.get("edu_type").and_then(Value::as_str).unwrap_or("");
        let content = edu.get("content").cloned().unwrap_or(Value::Null);
        let outcome = match edu_type {
            "m.typing" => match parse::<TypingContent>(content) {
                Ok(c) => typing(state, origin, c).await,
                Err(e) => Ok(Err(e)),
            },
            "m.receipt" => match parse::<ReceiptContent>(content) {
                Ok(c) => receipt(state, origin, c).await,
                Err(e) => Ok(Err(e)),
            },
            "m.direct_to_device" => match parse::<DirectDeviceContent>(content) {
                Ok(c) => direct_to_device(state, origin, c).await,
                Err(e) => Ok(Err(e)),
            },
            "m.device_list_update" => match parse::<DeviceListUpdateContent>(content) {
                Ok(c) => device_list_update(state, origin, c).await,
                Err(e) => Ok(Err(e)),
            },
            "m.signing_key_update" => match parse::<SigningKeyUpdateContent>(content) {
                Ok(c) => signing_key_update(state, origin, c).await,
                Err(e) => Ok(Err(e)),
            },
            "m.presence" => presence(state, origin, content).await,
            other => Ok(Err(format!("unknown EDU type {other:?}"))),
        };
        if let Err(reason) = outcome? {
            tracing::info!(%origin, edu_type, %reason, "EDU ignored");
        }
    }
    Ok(())
}

fn parse<T: DeserializeOwned>(content: Value) -> Result<T, String> {
    serde_json::from_value(content).map_err(|e| format!("malformed content: {e}"))
}

/// `Err` unless `user` belongs to `origin`.
fn of_origin(origin: &ServerName, user: &UserId) -> Result<(), String> {
    if user.server_name() == origin {
        Ok(())
    } else {
        Err(format!("{origin} cannot speak for {user}"))
    }
}

/// `Err` unless the room's ACL lets `origin` in and `user` is joined.
async fn joined_and_allowed(
    state: &AppState,
    origin: &ServerName,
    room_id: &RoomId,
    user: &UserId,
) -> Result<Result<(), String>, ApiError> {
    if !acl::allows(state, room_id.as_str(), origin).await? {
        return Ok(Err(format!("{origin} is denied by the ACL of {room_id}")));
    }
    let membership = memberships::get(state.db(), room_id.as_str(), user.as_str()).await?;
    if membership.is_none_or(|m| m.membership != "join") {
        return Ok(Err(format!("{user} is not joined to {room_id}")));
    }
    Ok(Ok(()))
}

async fn typing(
    state: &AppState,
    origin: &ServerName,
    c: TypingContent,
) -> Result<Result<(), String>, ApiError> {
    if let Err(e) = of_origin(origin, &c.user_id) {
        return Ok(Err(e));
    }
    if let Err(e) = joined_and_allowed(state, origin, &c.room_id, &c.user_id).await? {
        return Ok(Err(e));
    }
    if c.typing {
        state
            .typing()
            .start(&c.room_id, &c.user_id, REMOTE_TYPING_TIMEOUT);
    } else {
        state.typing().stop(&c.room_id, &c.user_id);
    }
    Ok(Ok(()))
}

/// Presence of the origin's users who share a room with ours. Each entry
/// stands alone: a malformed one is skipped, not the whole EDU, and one
/// without `last_active_ago` (which servers omit for users never active)
/// counts as active just now.
async fn presence(
    state: &AppState,
    origin: &ServerName,
    content: Value,
) -> Result<Result<(), String>, ApiError> {
    if !state.presence().enabled() {
        return Ok(Ok(()));
    }
    let Some(push) = content.get("push").and_then(Value::as_array) else {
        return Ok(Err("malformed content: no push list".to_owned()));
    };
    let mut skipped = Vec::new();
    let mut changed = Vec::new();
    let now = crate::time::now_ms();
    if push.len() > MAX_PRESENCE_UPDATES {
        skipped.push(format!(
            "{} presence updates past the first {MAX_PRESENCE_UPDATES}",
            push.len() - MAX_PRESENCE_UPDATES
        ));
    }
    for entry in push.iter().take(MAX_PRESENCE_UPDATES) {
        let mut entry = entry.clone();
        if let Some(obj) = entry.as_object_mut() {
            obj.entry("last_active_ago").or_insert(Value::from(0));
        }
        let u = match parse::<PresenceUpdate>(entry) {
            Ok(u) => u,
            Err(e) => {
                skipped.push(e);
                continue;
            }
        };
        if let Err(e) = of_origin(origin, &u.user_id) {
            skipped.push(e);
            continue;
        }
        if !remote_devices::shares_room_with_local(state.db(), u.user_id.as_str()).await? {
            skipped.push(format!("{} shares no room with us", u.user_id));
            continue;
        }
        let ago = i64::try_from(u64::from(u.last_active_ago)).unwrap_or(i64::MAX);
        if state.presence().remote(
            &u.user_id,
            u.presence,
            u.status_msg,
            ago,
            u.currently_active,
            now,
        ) {
            changed.push(u.user_id);
        }
    }
    crate::presence::changed(state, &changed).await;
    if skipped.is_empty() {
        Ok(Ok(()))
    } else {
        Ok(Err(skipped.join("; ")))
    }
}

/// `m.read` receipts only: private receipts never cross servers.
async fn receipt(
    state: &AppState,
    origin: &ServerName,
    c: ReceiptContent,
) -> Result<Result<(), String>, ApiError> {
    let mut skipped = Vec::new();
    for (room_id, map) in &c.receipts {
        let mut changed = false;
        for (user_id, data) in &map.read {
            if let Err(e) = of_origin(origin, user_id) {
                skipped.push(e);
                continue;
            }
            if let Err(e) = joined_and_allowed(state, origin, room_id, user_id).await? {
                skipped.push(e);
                continue;
            }
            let thread_id = match &data.data.thread {
                ReceiptThread::Unthreaded => receipts::UNTHREADED,
                ReceiptThread::Main => receipts::MAIN_THREAD,
                ReceiptThread::Thread(root) => root.as_str(),
                _ => {
                    skipped.push(format!("bad thread_id in {user_id}'s receipt"));
                    continue;
                }
            };
            // The first receipted event we hold in the timeline of this
            // room (a receipt names one event; Synapse reads the first).
            let Some(event_id) = data.event_ids.first() else {
                continue;
            };
            let Some(event) = events::get(state.db(), event_id.as_str()).await? else {
                skipped.push(format!("receipt for unknown event {event_id}"));
                continue;
            };
            let Some(position) = event.stream_ordering.filter(|_| event.room_id == *room_id) else {
                skipped.push(format!(
                    "receipt for {event_id}, not in {room_id}'s timeline"
                ));
                continue;
            };
            let ts = data
                .data
                .ts
                .map(|t| i64::try_from(u64::from(t.0)).unwrap_or(i64::MAX))
                .unwrap_or_else(crate::time::now_ms);
            let new = NewReceipt {
                room_id: room_id.as_str(),
                user_id: user_id.as_str(),
                receipt_type: receipts::READ,
                thread_id,
                event_id: event_id.as_str(),
                event_stream_ordering: position,
                ts,
            };
            changed |= receipts::set(state.db(), &new).await?.is_some();
        }
        if changed {
            state.notifier().wake_room(room_id);
        }
    }
    if skipped.is_empty() {
        Ok(Ok(()))
    } else {
        Ok(Err(skipped.join("; ")))
    }
}

async fn direct_to_device(
    state: &AppState,
    origin: &ServerName,
    c: DirectDeviceContent,
) -> Result<Result<(), String>, ApiError> {
    if let Err(e) = of_origin(origin, &c.sender) {
        return Ok(Err(e));
    }
    let mut local = Vec::new();
    let mut recipients: Vec<OwnedUserId> = Vec::new();
    for (user, by_device) in &c.messages {
        if user.server_name() != state.server_name() {
            continue;
        }
        let existing: Vec<String> = accounts::list_devices(state.db(), user.as_str())
            .await?
            .into_iter()
            .map(|d| d.device_id)
            .collect();
        for (device, content) in by_device {
            let Some(content) = object_json(content) else {
                continue;
            };
            let targets: Vec<&String> = match device {
                DeviceIdOrAllDevices::AllDevices => existing.iter().collect(),
                DeviceIdOrAllDevices::DeviceId(d) => existing
                    .iter()
                    .filter(|e| e.as_str() == d.as_str())
                    .collect(),
            };
            for target in targets {
                local.push(InboxMessage {
                    user_id: user.to_string(),
                    device_id: target.clone(),
                    content: content.clone(),
                });
            }
        }
        if local.len() > MAX_TO_DEVICE_RECIPIENTS {
            return Ok(Err("too many recipient devices".to_owned()));
        }
        recipients.push(user.clone());
    }
    let tx = state.db().begin_write().await?;
    // The remote sender has no local device: its message IDs are kept
    // under the empty device ID, which no real device has.
    if !to_device::claim_txn(&tx, c.sender.as_str(), "", c.message_id.as_str()).await? {
        return Ok(Ok(()));
    }
    if !local.is_empty() {
        to_device::store(&tx, c.sender.as_str(), &c.ev_type.to_string(), &local, &[]).await?;
    }
    tx.commit().await?;
    for user in &recipients {
        state.notifier().wake_user(user);
    }
    Ok(Ok(()))
}

/// A message's content as JSON text, when it is an object.
fn object_json<T>(raw: &Raw<T>) -> Option<String> {
    let text = raw.json().get();
    text.trim_start().starts_with('{').then(|| text.to_owned())
}

/// The JSON of a key object of `user` (and of `device`, for device keys),
/// as text for the cache; `Err` if it is someone else's.
fn key_of<T>(raw: &Raw<T>, user: &UserId, device: Option<&str>) -> Result<String, String> {
    let value: Value = serde_json::from_str(raw.json().get()).map_err(|e| e.to_string())?;
    let device_ok = device.is_none_or(|d| value["device_id"] == d);
    if value["user_id"] == user.as_str() && device_ok {
        Ok(value.to_string())
    } else {
        Err(format!("keys of another user or device than {user}'s"))
    }
}

async fn device_list_update(
    state: &AppState,
    origin: &ServerName,
    c: DeviceListUpdateContent,
) -> Result<Result<(), String>, ApiError> {
    if let Err(e) = of_origin(origin, &c.user_id) {
        return Ok(Err(e));
    }
    let user = c.user_id.as_str();
    // Only users someone here shares a room with matter to us.
    if !remote_devices::shares_room_with_local(state.db(), user).await? {
        return Ok(Err(format!("{user} shares no room with us")));
    }
    let keys_json = match &c.keys {
        Some(raw) => match key_of(raw, &c.user_id, Some(c.device_id.as_str())) {
            Ok(k) => Some(k),
            Err(e) => return Ok(Err(e)),
        },
        None => None,
    };
    let held = remote_devices::state(state.db(), user).await?;
    let stream_id = i64::try_from(u64::from(c.stream_id)).unwrap_or(i64::MAX);
    let prev_ids: Vec<i64> = c
        .prev_id
        .iter()
        .map(|p| i64::try_from(u64::from(*p)).unwrap_or(i64::MAX))
        .collect();
    let applied = match (remote_devices::decide(held, stream_id, &prev_ids), held) {
        (Decision::Ignore, _) => return Ok(Ok(())),
        (Decision::Apply, Some(held)) => {
            let device = CachedDevice {
                device_id: c.device_id.to_string(),
                display_name: c.device_display_name.clone(),
                keys_json,
            };
            let deleted = c.deleted.unwrap_or(false);
            remote_devices::apply(
                state.db(),
                user,
                held.stream_id,
                stream_id,
                &device,
                deleted,
            )
            .await?
        }
        _ => false,
    };
    if !applied {
        remote_devices::mark_stale(state.db(), user).await?;
        state
            .device_list_resyncs()
            .schedule(state, c.user_id.clone());
    }
    device_list_changed(state, &c.user_id).await?;
    Ok(Ok(()))
}

async fn signing_key_update(
    state: &AppState,
    origin: &ServerName,
    c: SigningKeyUpdateContent,
) -> Result<Result<(), String>, ApiError> {
    if let Err(e) = of_origin(origin, &c.user_id) {
        return Ok(Err(e));
    }
    let user = c.user_id.as_str();
    if !remote_devices::shares_room_with_local(state.db(), user).await? {
        return Ok(Err(format!("{user} shares no room with us")));
    }
    let mut keys = Vec::new();
    for raw in [&c.master_key, &c.self_signing_key] {
        keys.push(match raw {
            Some(raw) => match key_of(raw, &c.user_id, None) {
                Ok(k) => Some(k),
                Err(e) => return Ok(Err(e)),
            },
            None => None,
        });
    }
    let self_signing = keys.pop().flatten();
    let master = keys.pop().flatten();
    remote_devices::set_signing_keys(state.db(), user, master, self_signing).await?;
    device_list_changed(state, &c.user_id).await?;
    Ok(Ok(()))
}

/// Records a change of a remote user's device list for local users' syncs.
async fn device_list_changed(state: &AppState, user: &UserId) -> Result<(), ApiError> {
    let tx = state.db().begin_write().await?;
    device_lists::record(&tx, user.as_str()).await?;
    tx.commit().await?;
    crate::e2ee::device_lists_changed(state, user).await?;
    Ok(())
}
