//! `PUT /sendToDevice/{eventType}/{txnId}`.

use std::collections::BTreeMap;

use axum::extract::State;
use ruma::api::client::to_device::send_event_to_device;
use ruma::to_device::DeviceIdOrAllDevices;

use crate::api::auth::Authed;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::state::AppState;
use crate::storage::accounts;
use crate::storage::to_device::{self, InboxMessage, OutboxMessage};

/// The most message content one send may carry in total. Synapse bounds
/// to-device EDUs similarly; a message fans out to every device of every
/// recipient, so the request body limit alone is not enough.
const MAX_SEND_BYTES: usize = 1024 * 1024;

/// The most recipient devices (`*` expanded) of one send.
const MAX_RECIPIENTS: usize = 10_000;

/// Sends messages to devices. The transaction ID makes a retried send a
/// no-op (per sending device, as the spec says). `*` means every device of
/// that user. Messages to local devices that do not exist are dropped, as
/// in Synapse. Messages for users on other servers are kept in the
/// to-device outbox, grouped per destination as the `m.direct_to_device`
/// EDU will carry them, for the federation sender to deliver (it does not
/// exist yet, so they wait there).
pub async fn send(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<send_event_to_device::v3::Request>,
) -> Result<RumaResponse<send_event_to_device::v3::Response>, ApiError> {
    let total: usize = req
        .messages
        .values()
        .flat_map(|m| m.values())
        .map(|c| c.json().get().len())
        .sum();
    if total > MAX_SEND_BYTES {
        return Err(ApiError::too_large(format!(
            "to-device messages are limited to {MAX_SEND_BYTES} bytes per request"
        )));
    }
    let mut local = Vec::new();
    let mut remote: BTreeMap<String, serde_json::Map<String, serde_json::Value>> = BTreeMap::new();
    let mut recipients = Vec::new();
    for (user, by_device) in &req.messages {
        if user.server_name() != state.server_name() {
            let entry = remote
                .entry(user.server_name().to_string())
                .or_default()
                .entry(user.to_string())
                .or_insert_with(|| serde_json::json!({}));
            for (device, content) in by_device {
                let content: serde_json::Value = serde_json::from_str(content.json().get())
                    .map_err(|e| ApiError::bad_json(e.to_string()))?;
                if let Some(map) = entry.as_object_mut() {
                    map.insert(device.to_string(), content);
                }
            }
            continue;
        }
        let existing: Vec<String> = accounts::list_devices(state.db(), user.as_str())
            .await?
            .into_iter()
            .map(|d| d.device_id)
            .collect();
        for (device, content) in by_device {
            if !content.json().get().trim_start().starts_with('{') {
                return Err(ApiError::bad_json("message content must be a JSON object"));
            }
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
                    content: content.json().get().to_owned(),
                });
            }
        }
        if local.len() > MAX_RECIPIENTS {
            return Err(ApiError::too_large(format!(
                "at most {MAX_RECIPIENTS} recipient devices per request"
            )));
        }
        recipients.push(user.clone());
    }
    let outbox: Vec<OutboxMessage> = remote
        .into_iter()
        .map(|(destination, messages)| OutboxMessage {
            destination,
            message_id: crate::random::lower_alnum(16),
            messages: serde_json::Value::Object(messages).to_string(),
        })
        .collect();

    let tx = state.db().begin_write().await?;
    if !to_device::claim_txn(
        &tx,
        auth.user_id.as_str(),
        auth.device_id.as_str(),
        req.txn_id.as_str(),
    )
    .await?
    {
        // Already sent: the same answer, nothing stored twice.
        return Ok(RumaResponse(send_event_to_device::v3::Response::new()));
    }
    to_device::store(
        &tx,
        auth.user_id.as_str(),
        &req.event_type.to_string(),
        &local,
        &outbox,
    )
    .await?;
    tx.commit().await?;
    for user in &recipients {
        state.notifier().wake_user(user);
    }
    for message in &outbox {
        state.federation().sender().wake(&message.destination);
    }
    Ok(RumaResponse(send_event_to_device::v3::Response::new()))
}
