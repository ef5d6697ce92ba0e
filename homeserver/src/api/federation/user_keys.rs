//! What other servers ask about our users' end-to-end encryption keys:
//! `GET /user/devices/{userId}`, `POST /user/keys/query` and
//! `POST /user/keys/claim`, answered from the same storage as the client
//! API's `/keys/*`.
//!
//! Only signatures the key owners made themselves are shown (no other
//! server's user has a user-signing key of ours), and the user-signing key
//! is never shown to another server, as the spec says. Users of other
//! servers, unknown users and devices without keys are simply absent.

use std::collections::BTreeMap;

use axum::extract::State;
use ruma::api::federation::device::get_devices;
use ruma::api::federation::keys::{claim_keys, get_keys};
use ruma::{OwnedDeviceId, UInt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Origin;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::e2ee::signed;
use crate::state::AppState;
use crate::storage::{Db, cross_signing, device_keys, device_list_outbox};
use sea_orm::DbErr;

/// The most users one query may name (a claim's bound is
/// [`crate::e2ee::MAX_CLAIMS`]).
const MAX_USERS: usize = 1000;

fn convert<T: DeserializeOwned>(value: &impl Serialize) -> Result<T, ApiError> {
    let text = serde_json::to_string(value).map_err(|e| ApiError::internal("encode", e))?;
    serde_json::from_str(&text).map_err(|e| ApiError::internal("decode", e))
}

fn stored(text: &str) -> Result<Value, DbErr> {
    serde_json::from_str(text).map_err(|e| DbErr::Custom(format!("stored key JSON: {e}")))
}

/// The local users' keys a server may see: device keys (only `devices`
/// when given and not empty), and master and self-signing keys, each with
/// its owner's signatures merged in.
/// Also what our `m.device_list_update` and `m.signing_key_update` EDUs carry.
pub(crate) struct LocalKeys {
    /// user -> device -> device keys (with `unsigned.device_display_name`).
    pub devices: BTreeMap<String, BTreeMap<String, Value>>,
    pub master: BTreeMap<String, Value>,
    pub self_signing: BTreeMap<String, Value>,
}

pub(crate) async fn local_keys(
    db: &Db,
    wanted: &BTreeMap<String, Vec<String>>,
) -> Result<LocalKeys, DbErr> {
    let users: Vec<String> = wanted.keys().cloned().collect();
    // No viewer of ours: only the owners' own signatures match.
    let sigs = cross_signing::signatures_on(db, &users, "").await?;
    let merge = |obj: &mut Value, user: &str, key_id: &str| {
        for s in sigs
            .iter()
            .filter(|s| s.target_user_id == user && s.target_key_id == key_id)
        {
            signed::add_signature(obj, &s.signer_user_id, &s.signer_key_id, &s.signature);
        }
    };
    let mut out = LocalKeys {
        devices: BTreeMap::new(),
        master: BTreeMap::new(),
        self_signing: BTreeMap::new(),
    };
    for d in device_keys::of_users(db, &users).await? {
        if wanted
            .get(&d.user_id)
            .is_some_and(|w| !w.is_empty() && !w.contains(&d.device_id))
        {
            continue;
        }
        let mut obj = stored(&d.key_json)?;
        merge(&mut obj, &d.user_id, &d.device_id);
        if let (Some(map), Some(name)) = (obj.as_object_mut(), &d.display_name) {
            map.insert(
                "unsigned".to_owned(),
                serde_json::json!({ "device_display_name": name }),
            );
        }
        out.devices
            .entry(d.user_id.clone())
            .or_default()
            .insert(d.device_id.clone(), obj);
    }
    for k in cross_signing::of_users(db, &users).await? {
        let target = match k.key_type.as_str() {
            "master" => &mut out.master,
            "self_signing" => &mut out.self_signing,
            _ => continue,
        };
        let mut obj = stored(&k.key_json)?;
        merge(&mut obj, &k.user_id, &k.public_key);
        target.insert(k.user_id.clone(), obj);
    }
    Ok(out)
}

/// `GET /_matrix/federation/v1/user/devices/{userId}`
pub async fn devices(
    State(state): State<AppState>,
    Origin(origin): Origin,
    Ruma(req): Ruma<get_devices::v1::Request>,
) -> Result<RumaResponse<get_devices::v1::Response>, ApiError> {
    if req.user_id.server_name() != state.server_name() {
        return Err(ApiError::invalid_param(format!(
            "User {} is not hosted on this homeserver",
            req.user_id
        )));
    }
    tracing::debug!(%origin, user_id = %req.user_id, "device list query");
    let user = req.user_id.to_string();
    let wanted = BTreeMap::from([(user.clone(), Vec::new())]);
    let mut keys = local_keys(state.db(), &wanted).await?;
    // The stream ID of the user's newest change: updates queued for the
    // asking server up to it are then skipped, and the next applies.
    let position = device_list_outbox::latest_stream_id(state.db(), &user).await?;
    let mut resp = get_devices::v1::Response::new(
        req.user_id.clone(),
        UInt::try_from(position.max(0)).unwrap_or(UInt::MAX),
    );
    for (device_id, obj) in keys.devices.remove(&user).unwrap_or_default() {
        let name = obj["unsigned"]["device_display_name"]
            .as_str()
            .map(str::to_owned);
        let mut device =
            get_devices::v1::UserDevice::new(OwnedDeviceId::from(device_id), convert(&obj)?);
        device.device_display_name = name;
        resp.devices.push(device);
    }
    resp.master_key = keys.master.remove(&user).map(|k| convert(&k)).transpose()?;
    resp.self_signing_key = keys
        .self_signing
        .remove(&user)
        .map(|k| convert(&k))
        .transpose()?;
    Ok(RumaResponse(resp))
}

/// `POST /_matrix/federation/v1/user/keys/query`
pub async fn query(
    State(state): State<AppState>,
    Origin(_origin): Origin,
    Ruma(req): Ruma<get_keys::v1::Request>,
) -> Result<RumaResponse<get_keys::v1::Response>, ApiError> {
    if req.device_keys.len() > MAX_USERS {
        return Err(ApiError::too_large(format!(
            "at most {MAX_USERS} users per query"
        )));
    }
    let wanted: BTreeMap<String, Vec<String>> = req
        .device_keys
        .iter()
        .filter(|(u, _)| u.server_name() == state.server_name())
        .map(|(u, d)| (u.to_string(), d.iter().map(ToString::to_string).collect()))
        .collect();
    let keys = local_keys(state.db(), &wanted).await?;
    let mut resp = get_keys::v1::Response::new(convert(&keys.devices)?);
    resp.master_keys = convert(&keys.master)?;
    resp.self_signing_keys = convert(&keys.self_signing)?;
    Ok(RumaResponse(resp))
}

/// `POST /_matrix/federation/v1/user/keys/claim`: one key per requested
/// device, a one-time key handed out once, else the fallback key.
pub async fn claim(
    State(state): State<AppState>,
    Origin(_origin): Origin,
    Ruma(req): Ruma<claim_keys::v1::Request>,
) -> Result<RumaResponse<claim_keys::v1::Response>, ApiError> {
    let out = crate::e2ee::claim_local(&state, &req.one_time_keys).await?;
    Ok(RumaResponse(claim_keys::v1::Response::new(convert(&out)?)))
}
