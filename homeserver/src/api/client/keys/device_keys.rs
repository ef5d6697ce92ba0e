//! `/keys/upload`, `/keys/query`, `/keys/claim` and `/keys/changes`.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::State;
use http::StatusCode;
use ruma::api::client::keys::{claim_keys, get_key_changes, get_keys, upload_keys};
use ruma::api::error::ErrorKind;
use serde_json::{Value, json};

use super::{from_json, stored};
use crate::api::auth::Authed;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::e2ee::{self, signed};
use crate::state::AppState;
use crate::storage::device_list_outbox::{self, Change};
use crate::storage::device_lists;
use crate::storage::one_time_keys::{self, Key};
use crate::storage::{Tx, cross_signing, device_keys as stored_keys};
use crate::sync::SyncToken;

/// The most one-time or fallback keys one upload may carry: clients upload
/// tens at a time; the bound keeps one request's transaction small.
const MAX_KEYS_PER_UPLOAD: usize = 1000;

/// Checks uploaded device keys: the right user and device, an ed25519 key
/// for the device, and the device's own signature with it. Returns the
/// object to store (without `unsigned`).
fn check_device_keys(
    raw: &serde_json::value::RawValue,
    user_id: &str,
    device_id: &str,
) -> Result<myelin_proto::canonical_json::Object, ApiError> {
    // The shape first (required fields, types), with the spec's M_BAD_JSON.
    serde_json::from_str::<ruma::encryption::DeviceKeys>(raw.get())
        .map_err(|e| ApiError::bad_json(format!("invalid device_keys: {e}")))?;
    let value: Value =
        serde_json::from_str(raw.get()).map_err(|e| ApiError::bad_json(e.to_string()))?;
    let mut obj = signed::to_object(&value).map_err(ApiError::bad_json)?;
    obj.remove("unsigned");
    let field = |name: &str| obj.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    if field("user_id").as_deref() != Some(user_id) {
        return Err(ApiError::invalid_param(
            "user_id in device_keys does not match the authenticated user",
        ));
    }
    if field("device_id").as_deref() != Some(device_id) {
        return Err(ApiError::invalid_param(
            "device_id in device_keys does not match the device",
        ));
    }
    let key = signed::ed25519_key(&obj, device_id).ok_or_else(|| {
        ApiError::invalid_param("device_keys has no valid ed25519 key for this device")
    })?;
    if !signed::signed_by(&obj, user_id, device_id, &key) {
        return Err(ApiError::invalid_param(
            "device_keys is not signed by the device's ed25519 key",
        ));
    }
    Ok(obj)
}

/// `algorithm:key_id` and the key, canonicalised for storage.
fn to_key(id: &str, raw: &serde_json::value::RawValue) -> Result<Key, ApiError> {
    let (algorithm, key_id) = id
        .split_once(':')
        .filter(|(a, k)| !a.is_empty() && !k.is_empty())
        .ok_or_else(|| ApiError::bad_json(format!("invalid key ID {id:?}")))?;
    let value: Value =
        serde_json::from_str(raw.get()).map_err(|e| ApiError::bad_json(e.to_string()))?;
    let key_json = match &value {
        Value::String(_) => value.to_string(),
        Value::Object(_) => {
            signed::to_text(&signed::to_object(&value).map_err(ApiError::bad_json)?)
        }
        _ => {
            return Err(ApiError::bad_json(format!(
                "key {id:?} is not a string or object"
            )));
        }
    };
    Ok(Key {
        algorithm: algorithm.to_owned(),
        key_id: key_id.to_owned(),
        key_json,
    })
}

/// Keys uploaded for one device (by `/keys/upload`, or with a dehydrated
/// device), checked and ready to store.
pub(super) struct CheckedUpload {
    device_keys: Option<myelin_proto::canonical_json::Object>,
    one_time_keys: Vec<Key>,
    fallback_keys: Vec<Key>,
}

type KeyMap = BTreeMap<ruma::OwnedOneTimeKeyId, ruma::serde::Raw<ruma::encryption::OneTimeKey>>;

/// Checks an upload of `user_id`'s device `device_id`: the device keys
/// (see [`check_device_keys`]), and at most [`MAX_KEYS_PER_UPLOAD`]
/// well-formed one-time and fallback keys.
pub(super) fn check_upload(
    user_id: &str,
    device_id: &str,
    device_keys: Option<&serde_json::value::RawValue>,
    one_time_keys: &KeyMap,
    fallback_keys: &KeyMap,
) -> Result<CheckedUpload, ApiError> {
    let device_keys = device_keys
        .map(|raw| check_device_keys(raw, user_id, device_id))
        .transpose()?;
    if one_time_keys.len() > MAX_KEYS_PER_UPLOAD || fallback_keys.len() > MAX_KEYS_PER_UPLOAD {
        return Err(ApiError::too_large(format!(
            "at most {MAX_KEYS_PER_UPLOAD} keys per upload"
        )));
    }
    let to_keys = |keys: &KeyMap| {
        keys.iter()
            .map(|(id, raw)| to_key(id.as_str(), raw.json()))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(CheckedUpload {
        device_keys,
        one_time_keys: to_keys(one_time_keys)?,
        fallback_keys: to_keys(fallback_keys)?,
    })
}

/// Writes a checked upload in the caller's write transaction; a refused
/// part (a reused one-time key ID) is an error, and the caller's
/// transaction is dropped with nothing written. New or changed device keys
/// are a device-list change, recorded here: `true` means wake the user's
/// rooms (`e2ee::device_lists_changed`) after the commit.
pub(super) async fn store_upload(
    tx: &Tx,
    user: &str,
    device: &str,
    upload: &CheckedUpload,
) -> Result<bool, ApiError> {
    let mut list_changed = false;
    if let Some(obj) = &upload.device_keys {
        let text = signed::to_text(obj);
        if stored_keys::get(tx, user, device).await?.as_deref() != Some(text.as_str()) {
            stored_keys::set(tx, user, device, &text).await?;
            let device = [device.to_owned()];
            device_list_outbox::record(tx, user, Change::Devices(&device)).await?;
            list_changed = true;
        }
    }
    if let Err(reused) = one_time_keys::add(tx, user, device, &upload.one_time_keys).await? {
        // As Synapse: the same key ID with other content is a client bug
        // that would make two sessions disagree on the key.
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorKind::Unknown,
            format!(
                "One time key {}:{} already exists. Old key: {}; new key: {}",
                reused.key.algorithm, reused.key.key_id, reused.existing_json, reused.key.key_json
            ),
        ));
    }
    for key in &upload.fallback_keys {
        one_time_keys::set_fallback(tx, user, device, key).await?;
    }
    Ok(list_changed)
}

/// `POST /_matrix/client/v3/keys/upload`. Device keys, one-time keys and
/// fallback keys are written in one transaction: a refused part leaves
/// nothing written. New or changed device keys are a device-list change.
/// Re-uploading different device keys for the device replaces them, as in
/// Synapse (clients that lost their keys re-create them).
pub async fn upload(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<upload_keys::v3::Request>,
) -> Result<RumaResponse<upload_keys::v3::Response>, ApiError> {
    let user = auth.user_id.as_str();
    let device = auth.device_id.as_str();
    let upload = check_upload(
        user,
        device,
        req.device_keys.as_ref().map(|raw| raw.json()),
        &req.one_time_keys,
        &req.fallback_keys,
    )?;
    let tx = state.db().begin_write().await?;
    let list_changed = store_upload(&tx, user, device, &upload).await?;
    tx.commit().await?;
    if list_changed {
        e2ee::device_lists_changed(&state, &auth.user_id).await?;
    }
    let counts = one_time_keys::counts(state.db(), user, device).await?;
    Ok(RumaResponse(upload_keys::v3::Response::new(from_json(
        &counts,
    )?)))
}

/// Merges stored signatures into the `signatures` of a key object.
fn merge_signatures<'a>(obj: &mut Value, sigs: impl Iterator<Item = &'a cross_signing::Signature>) {
    for s in sigs {
        signed::add_signature(obj, &s.signer_user_id, &s.signer_key_id, &s.signature);
    }
}

/// `POST /_matrix/client/v3/keys/query`: the device keys (with the
/// device's display name in `unsigned.device_display_name`) and
/// cross-signing keys of local users, with every signature the requester
/// may see merged in. The user-signing key is only shown to its owner.
/// Unknown users and devices are simply absent. Remote users' keys are
/// asked of their servers (see `federation::remote_keys`); servers that
/// cannot answer in time are listed in `failures`.
pub async fn query(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_keys::v3::Request>,
) -> Result<RumaResponse<get_keys::v3::Response>, ApiError> {
    let local: Vec<String> = req
        .device_keys
        .keys()
        .filter(|u| u.server_name() == state.server_name())
        .map(ToString::to_string)
        .collect();
    let sigs = cross_signing::signatures_on(state.db(), &local, auth.user_id.as_str()).await?;
    let mut device_keys: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for d in stored_keys::of_users(state.db(), &local).await? {
        let wanted = req
            .device_keys
            .iter()
            .find(|(u, _)| u.as_str() == d.user_id)
            .map(|(_, devices)| devices);
        if wanted.is_some_and(|w| !w.is_empty() && !w.iter().any(|x| x.as_str() == d.device_id)) {
            continue;
        }
        let mut obj = stored(&d.key_json)?;
        merge_signatures(
            &mut obj,
            sigs.iter()
                .filter(|s| s.target_user_id == d.user_id && s.target_key_id == d.device_id),
        );
        // As Synapse: the display name only when the device has one.
        if let (Some(map), Some(name)) = (obj.as_object_mut(), &d.display_name) {
            map.insert(
                "unsigned".to_owned(),
                json!({ "device_display_name": name }),
            );
        }
        device_keys
            .entry(d.user_id.clone())
            .or_default()
            .insert(d.device_id.clone(), obj);
    }
    let mut by_type: BTreeMap<&str, BTreeMap<String, Value>> = BTreeMap::new();
    for k in cross_signing::of_users(state.db(), &local).await? {
        let field = match k.key_type.as_str() {
            "master" => "master_keys",
            "self_signing" => "self_signing_keys",
            "user_signing" if k.user_id == auth.user_id.as_str() => "user_signing_keys",
            _ => continue,
        };
        let mut obj = stored(&k.key_json)?;
        merge_signatures(
            &mut obj,
            sigs.iter()
                .filter(|s| s.target_user_id == k.user_id && s.target_key_id == k.public_key),
        );
        by_type
            .entry(field)
            .or_default()
            .insert(k.user_id.clone(), obj);
    }
    let remote = crate::federation::remote_keys::query(&state, &req.device_keys, req.timeout).await;
    device_keys.extend(remote.device_keys);
    by_type
        .entry("master_keys")
        .or_default()
        .extend(remote.master_keys);
    by_type
        .entry("self_signing_keys")
        .or_default()
        .extend(remote.self_signing_keys);
    let mut resp = get_keys::v3::Response::new();
    resp.device_keys = from_json(&device_keys)?;
    for (field, keys) in by_type {
        match field {
            "master_keys" => resp.master_keys = from_json(&keys)?,
            "self_signing_keys" => resp.self_signing_keys = from_json(&keys)?,
            _ => resp.user_signing_keys = from_json(&keys)?,
        }
    }
    resp.failures = remote.failures;
    Ok(RumaResponse(resp))
}

/// `POST /_matrix/client/v3/keys/claim`: one key per requested device,
/// each one-time key handed out exactly once, the fallback key when none
/// is left (see [`e2ee::claim_local`]). Devices without keys are absent
/// from the answer. Remote users' keys are claimed from their servers;
/// those that fail are in `failures`.
pub async fn claim(
    State(state): State<AppState>,
    _auth: Authed,
    Ruma(req): Ruma<claim_keys::v3::Request>,
) -> Result<RumaResponse<claim_keys::v3::Response>, ApiError> {
    let mut out = crate::e2ee::claim_local(&state, &req.one_time_keys).await?;
    let (remote, failures) =
        crate::federation::remote_keys::claim(&state, &req.one_time_keys, req.timeout).await;
    out.extend(remote);
    let mut resp = claim_keys::v3::Response::new(from_json(&out)?);
    resp.failures = failures;
    Ok(RumaResponse(resp))
}

/// `GET /_matrix/client/v3/keys/changes?from&to`: users whose device lists
/// changed between two sync tokens, among users sharing a room with the
/// requester, and users who no longer share one (see
/// `storage::device_lists::changes_for_sync`).
pub async fn changes(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_key_changes::v3::Request>,
) -> Result<RumaResponse<get_key_changes::v3::Response>, ApiError> {
    let from = SyncToken::parse_param(&req.from)?.device_list_positions();
    let to = SyncToken::parse_param(&req.to)?.device_list_positions();
    let (changed, left) =
        device_lists::changes_for_sync(state.db(), auth.user_id.as_str(), from, to).await?;
    let unique = |v: Vec<String>| v.into_iter().collect::<BTreeSet<_>>();
    Ok(RumaResponse(get_key_changes::v3::Response::new(
        from_json(&unique(changed))?,
        from_json(&unique(left))?,
    )))
}
