//! Checks on signed key objects (device keys, cross-signing keys) with the
//! spec's "Signing JSON" rules, via `myelin_proto::signing`.

use std::collections::BTreeMap;

use myelin_proto::canonical_json::{self, Object};
use myelin_proto::signing::{self, PublicKey};

/// A JSON object as the client sent it, in canonical form, for signature
/// checks and stable storage.
pub fn to_object(value: &serde_json::Value) -> Result<Object, String> {
    let canonical = canonical_json::from_json(value.clone()).map_err(|e| e.to_string())?;
    canonical
        .as_object()
        .cloned()
        .ok_or_else(|| "expected a JSON object".to_owned())
}

/// The canonical JSON text of an object (what is stored).
pub fn to_text(obj: &Object) -> String {
    canonical_json::Value::Object(obj.clone()).to_canonical_string()
}

/// The object without `signatures` and `unsigned`: two uploads of the same
/// key compare equal on this even if their signatures differ.
pub fn signed_part(obj: &Object) -> Object {
    let mut out = obj.clone();
    for k in signing::UNSIGNED_KEYS {
        out.remove(k);
    }
    out
}

/// The ed25519 key `ed25519:<name>` of a key object's `keys` map.
pub fn ed25519_key(obj: &Object, name: &str) -> Option<PublicKey> {
    let keys = obj.get("keys")?.as_object()?;
    let b64 = keys.get(&format!("ed25519:{name}"))?.as_str()?;
    PublicKey::from_base64(b64).ok()
}

/// True if `user_id` signed `obj` with the ed25519 key `key_name` (a device
/// ID or a cross-signing public key) whose public half is `key`.
pub fn signed_by(obj: &Object, user_id: &str, key_name: &str, key: &PublicKey) -> bool {
    let keys = BTreeMap::from([(format!("ed25519:{key_name}"), *key)]);
    signing::verify_json(obj, user_id, &keys).is_ok()
}

/// The signatures `user_id` put on `obj`: key ID to signature.
pub fn signatures_by(obj: &Object, user_id: &str) -> BTreeMap<String, String> {
    signing::signatures_of(obj, user_id)
        .map(|m| {
            m.into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Adds a signature to an object's `signatures`.
pub fn add_signature(obj: &mut serde_json::Value, user_id: &str, key_id: &str, signature: &str) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let sigs = map
        .entry("signatures")
        .or_insert_with(|| serde_json::json!({}));
    if !sigs.is_object() {
        *sigs = serde_json::json!({});
    }
    if let Some(sigs) = sigs.as_object_mut() {
        let mine = sigs.entry(user_id).or_insert_with(|| serde_json::json!({}));
        if let Some(mine) = mine.as_object_mut() {
            mine.insert(
                key_id.to_owned(),
                serde_json::Value::String(signature.to_owned()),
            );
        }
    }
}
