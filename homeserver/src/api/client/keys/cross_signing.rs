//! Cross-signing: `/keys/device_signing/upload` (a user's master,
//! self-signing and user-signing keys) and `/keys/signatures/upload`
//! (signatures on one's own devices and master key, and on other users'
//! master keys).

use std::collections::BTreeMap;

use axum::extract::State;
use http::StatusCode;
use myelin_proto::canonical_json::Object;
use ruma::api::client::keys::{upload_signatures, upload_signing_keys};
use ruma::api::error::ErrorKind;
use serde_json::{Value, json};

use super::from_json;
use crate::api::auth::Authed;
use crate::api::client::account::uiaa;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::e2ee::{self, signed};
use crate::state::AppState;
use crate::storage::cross_signing::{self, CrossSigningKey, Signature};
use crate::storage::device_list_outbox::{self, Change};
use crate::storage::{Tx, device_keys, device_lists};

/// `M_INVALID_SIGNATURE`, which ruma's `ErrorKind` has no variant for.
fn invalid_signature_kind() -> ErrorKind {
    serde_json::from_value(json!({ "errcode": "M_INVALID_SIGNATURE" }))
        .unwrap_or(ErrorKind::InvalidParam)
}

fn invalid_signature(message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, invalid_signature_kind(), message)
}

/// A cross-signing key as uploaded, checked for shape: owned by the
/// requester, with the expected usage and exactly one ed25519 key whose ID
/// names the key itself.
struct Uploaded {
    key_type: &'static str,
    obj: Object,
    public_key: String,
}

fn parse_key(
    raw: &serde_json::value::RawValue,
    key_type: &'static str,
    auth: &Authed,
) -> Result<Uploaded, ApiError> {
    serde_json::from_str::<ruma::encryption::CrossSigningKey>(raw.get())
        .map_err(|e| ApiError::bad_json(format!("invalid {key_type} key: {e}")))?;
    let value: Value =
        serde_json::from_str(raw.get()).map_err(|e| ApiError::bad_json(e.to_string()))?;
    let obj = signed::to_object(&value).map_err(ApiError::bad_json)?;
    if obj.get("user_id").and_then(|v| v.as_str()) != Some(auth.user_id.as_str()) {
        return Err(ApiError::invalid_param(format!(
            "{key_type} key is not for the authenticated user"
        )));
    }
    let has_usage = obj
        .get("usage")
        .and_then(|u| u.as_array())
        .is_some_and(|u| u.iter().any(|x| x.as_str() == Some(key_type)));
    if !has_usage {
        return Err(ApiError::invalid_param(format!(
            "{key_type} key must have usage {key_type:?}"
        )));
    }
    let keys = obj
        .get("keys")
        .and_then(|k| k.as_object())
        .ok_or_else(|| ApiError::bad_json("key has no keys"))?;
    let mut found = None;
    for (id, v) in keys {
        let name = id.strip_prefix("ed25519:");
        let b64 = v.as_str();
        match (name, b64, &found) {
            (Some(name), Some(b64), None) if name == b64 => found = Some(b64.to_owned()),
            _ => {
                return Err(ApiError::invalid_param(format!(
                    "{key_type} key must have exactly one ed25519 key, named by itself"
                )));
            }
        }
    }
    let public_key = found.ok_or_else(|| ApiError::invalid_param("key has no ed25519 key"))?;
    if signed::ed25519_key(&obj, &public_key).is_none() {
        return Err(ApiError::invalid_param("invalid ed25519 public key"));
    }
    Ok(Uploaded {
        key_type,
        obj,
        public_key,
    })
}

/// `POST /_matrix/client/v3/keys/device_signing/upload`. As the spec
/// (v1.11+) and Synapse: no user-interactive auth when the user has no
/// master key yet, or when the request re-uploads exactly the stored keys
/// (master included); otherwise the password flow. Self-signing and
/// user-signing keys must be signed by the master key (the uploaded one,
/// else the stored one).
pub async fn upload_keys(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<upload_signing_keys::v3::Request>,
) -> Result<RumaResponse<upload_signing_keys::v3::Response>, ApiError> {
    let user = auth.user_id.as_str();
    let mut uploads = Vec::new();
    for (raw, key_type) in [
        (&req.master_key, "master"),
        (&req.self_signing_key, "self_signing"),
        (&req.user_signing_key, "user_signing"),
    ] {
        if let Some(raw) = raw {
            uploads.push(parse_key(raw.json(), key_type, &auth)?);
        }
    }

    // Is anything new? Read outside the write transaction for UIA (which
    // may wait for a password check); re-checked inside.
    let existing_master = cross_signing::master_key(state.db(), user).await?;
    let stored = cross_signing::of_users(state.db(), &[user.to_owned()]).await?;
    let same_as_stored = |u: &Uploaded| {
        stored
            .iter()
            .any(|s| s.key_type == u.key_type && s.key_json == signed::to_text(&u.obj))
    };
    let replays_master = uploads.iter().any(|u| u.key_type == "master");
    let nothing_new = replays_master && uploads.iter().all(same_as_stored);
    if existing_master.is_some() && !nothing_new {
        uiaa::authenticate(
            &state,
            "upload_cross_signing_keys",
            Some(&auth.user_id),
            &uiaa::password_flows(),
            req.auth.as_ref(),
        )
        .await?;
    }
    if uploads.is_empty() || nothing_new {
        return Ok(RumaResponse(upload_signing_keys::v3::Response::new()));
    }

    let tx = state.db().begin_write().await?;
    let master = match uploads.iter().find(|u| u.key_type == "master") {
        Some(m) => Some(m.public_key.clone()),
        None => cross_signing::get(&tx, user, "master")
            .await?
            .map(|m| m.public_key),
    };
    for u in uploads.iter().filter(|u| u.key_type != "master") {
        let Some(master) = &master else {
            return Err(ApiError::missing_param(
                "Must provide master cross-signing key",
            ));
        };
        let signed_by_master = myelin_proto::signing::PublicKey::from_base64(master)
            .is_ok_and(|key| signed::signed_by(&u.obj, user, master, &key));
        if !signed_by_master {
            return Err(invalid_signature(&format!(
                "{} key is not signed by the master key",
                u.key_type
            )));
        }
    }
    for u in &uploads {
        cross_signing::set(
            &tx,
            &CrossSigningKey {
                user_id: user.to_owned(),
                key_type: u.key_type.to_owned(),
                public_key: u.public_key.clone(),
                key_json: signed::to_text(&u.obj),
            },
        )
        .await?;
    }
    // Other servers see the master and self-signing keys only.
    if uploads.iter().any(|u| u.key_type != "user_signing") {
        device_list_outbox::record(&tx, user, Change::SigningKeys).await?;
    } else {
        device_lists::record(&tx, user).await?;
    }
    tx.commit().await?;
    e2ee::device_lists_changed(&state, &auth.user_id).await?;
    Ok(RumaResponse(upload_signing_keys::v3::Response::new()))
}

/// Why one uploaded signature was refused, as the spec's `failures` shows
/// it (with Synapse's `status`).
fn failure(status: u16, errcode: &str, error: &str) -> Value {
    json!({ "status": status, "errcode": errcode, "error": error })
}

/// The stored key object a signature upload names, and who must have
/// signed it with which key.
enum Target {
    /// One of the requester's devices: signed by their self-signing key.
    OwnDevice {
        stored: Object,
        self_signing: CrossSigningKey,
    },
    /// The requester's master key: signed by one of their devices.
    OwnMaster { stored: Object },
    /// Another user's master key: signed by the requester's user-signing key.
    OtherMaster {
        stored: Object,
        user_signing: CrossSigningKey,
    },
}

fn parse_stored(text: &str) -> Result<Object, ApiError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| ApiError::internal("stored key", e))?;
    signed::to_object(&value).map_err(|e| ApiError::internal("stored key", e))
}

async fn target(
    tx: &Tx,
    signer: &str,
    target_user: &str,
    key_id: &str,
) -> Result<Result<Target, Value>, ApiError> {
    let not_found = || failure(404, "M_NOT_FOUND", "Unknown key");
    if target_user == signer {
        if let Some(text) = device_keys::get(tx, target_user, key_id).await? {
            let Some(self_signing) = cross_signing::get(tx, signer, "self_signing").await? else {
                return Ok(Err(failure(
                    400,
                    "M_INVALID_SIGNATURE",
                    "No self-signing key",
                )));
            };
            return Ok(Ok(Target::OwnDevice {
                stored: parse_stored(&text)?,
                self_signing,
            }));
        }
        return Ok(match cross_signing::get(tx, signer, "master").await? {
            Some(m) if m.public_key == key_id => Ok(Target::OwnMaster {
                stored: parse_stored(&m.key_json)?,
            }),
            _ => Err(not_found()),
        });
    }
    let Some(master) = cross_signing::get(tx, target_user, "master").await? else {
        return Ok(Err(not_found()));
    };
    if master.public_key != key_id {
        return Ok(Err(not_found()));
    }
    let Some(user_signing) = cross_signing::get(tx, signer, "user_signing").await? else {
        return Ok(Err(failure(
            400,
            "M_INVALID_SIGNATURE",
            "No user-signing key",
        )));
    };
    Ok(Ok(Target::OtherMaster {
        stored: parse_stored(&master.key_json)?,
        user_signing,
    }))
}

/// The new signatures of `signer` on `stored` found in `uploaded`, each
/// checked against the key that must have made it. `Err` is the failure.
async fn checked_signatures(
    tx: &Tx,
    signer: &str,
    target: &Target,
    uploaded: &Object,
) -> Result<Result<Vec<(String, String)>, Value>, ApiError> {
    let bad = || failure(400, "M_INVALID_SIGNATURE", "Invalid signature");
    // The signed content must be the stored key's: a signature on other
    // content would be shown on the stored key.
    let stored = match target {
        Target::OwnDevice { stored, .. }
        | Target::OwnMaster { stored }
        | Target::OtherMaster { stored, .. } => stored,
    };
    if signed::signed_part(stored) != signed::signed_part(uploaded) {
        return Ok(Err(failure(
            400,
            "M_INVALID_PARAM",
            "Key does not match the stored key",
        )));
    }
    let offered = signed::signatures_by(uploaded, signer);
    let mut out = Vec::new();
    match target {
        Target::OwnDevice { self_signing, .. }
        | Target::OtherMaster {
            user_signing: self_signing,
            ..
        } => {
            let name = &self_signing.public_key;
            let key_id = format!("ed25519:{name}");
            let Some(key) = myelin_proto::signing::PublicKey::from_base64(name).ok() else {
                return Ok(Err(bad()));
            };
            if !offered.contains_key(&key_id) || !signed::signed_by(uploaded, signer, name, &key) {
                return Ok(Err(bad()));
            }
            out.push((key_id.clone(), offered[&key_id].clone()));
        }
        Target::OwnMaster { .. } => {
            // Signatures by the user's devices: each must verify with that
            // device's stored ed25519 key.
            for (key_id, sig) in &offered {
                let Some(device) = key_id.strip_prefix("ed25519:") else {
                    continue;
                };
                let Some(text) = device_keys::get(tx, signer, device).await? else {
                    continue;
                };
                let device_obj = parse_stored(&text)?;
                let Some(key) = signed::ed25519_key(&device_obj, device) else {
                    continue;
                };
                if !signed::signed_by(uploaded, signer, device, &key) {
                    return Ok(Err(bad()));
                }
                out.push((key_id.clone(), sig.clone()));
            }
            if out.is_empty() {
                return Ok(Err(bad()));
            }
        }
    }
    Ok(Ok(out))
}

/// `POST /_matrix/client/v3/keys/signatures/upload`. Each signature is
/// checked on its own; refused ones are reported in `failures` by user and
/// key ID, the others stored. Any stored signature is a device-list change
/// of the signed key's owner.
pub async fn upload_signatures(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<upload_signatures::v3::Request>,
) -> Result<RumaResponse<upload_signatures::v3::Response>, ApiError> {
    let signer = auth.user_id.as_str();
    let mut failures: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    let mut changed_users = Vec::new();
    let tx = state.db().begin_write().await?;
    for (user, keys) in &req.signed_keys {
        let value = serde_json::to_value(keys).map_err(|e| ApiError::bad_json(e.to_string()))?;
        let Some(keys) = value.as_object() else {
            return Err(ApiError::bad_json("signed keys must be objects"));
        };
        let mut user_changed = false;
        // What other servers see change: signed devices, a signed master key.
        let mut signed_devices = Vec::new();
        let mut signed_master = false;
        for (key_id, obj) in keys {
            let mut fail = |f: Value| {
                failures
                    .entry(user.to_string())
                    .or_default()
                    .insert(key_id.clone(), f);
            };
            let Ok(uploaded) = signed::to_object(obj) else {
                fail(failure(400, "M_BAD_JSON", "Key must be a JSON object"));
                continue;
            };
            if user.server_name() != state.server_name() {
                fail(failure(
                    404,
                    "M_NOT_FOUND",
                    "Remote keys are not supported yet",
                ));
                continue;
            }
            let target = match target(&tx, signer, user.as_str(), key_id).await? {
                Ok(t) => t,
                Err(f) => {
                    fail(f);
                    continue;
                }
            };
            match checked_signatures(&tx, signer, &target, &uploaded).await? {
                Ok(sigs) => {
                    match target {
                        Target::OwnDevice { .. } => signed_devices.push(key_id.clone()),
                        Target::OwnMaster { .. } => signed_master = true,
                        Target::OtherMaster { .. } => {}
                    }
                    for (signer_key_id, signature) in sigs {
                        cross_signing::add_signature(
                            &tx,
                            &Signature {
                                target_user_id: user.to_string(),
                                target_key_id: key_id.clone(),
                                signer_user_id: signer.to_owned(),
                                signer_key_id,
                                signature,
                            },
                        )
                        .await?;
                    }
                    user_changed = true;
                }
                Err(f) => fail(f),
            }
        }
        if user_changed {
            if !signed_devices.is_empty() {
                let change = Change::Devices(&signed_devices);
                device_list_outbox::record(&tx, user.as_str(), change).await?;
            }
            if signed_master {
                let change = Change::SigningKeys;
                device_list_outbox::record(&tx, user.as_str(), change).await?;
            }
            if signed_devices.is_empty() && !signed_master {
                device_lists::record(&tx, user.as_str()).await?;
            }
            changed_users.push(user.clone());
        }
    }
    tx.commit().await?;
    for user in &changed_users {
        e2ee::device_lists_changed(&state, user).await?;
    }
    let mut resp = upload_signatures::v3::Response::new();
    resp.failures = from_json(&failures)?;
    Ok(RumaResponse(resp))
}
