//! Real end-to-end crypto for the E2EE tests: vodozemac accounts play the
//! clients and sign their keys exactly as Element does.

#![allow(dead_code)]

use myelin_proto::canonical_json;
use serde_json::{Value, json};
use vodozemac::olm::Account;
use vodozemac::{Ed25519PublicKey, Ed25519SecretKey};

/// The canonical JSON a signature covers: the object without
/// `signatures` and `unsigned`.
pub fn signable(obj: &Value) -> String {
    let mut obj = obj.clone();
    if let Some(map) = obj.as_object_mut() {
        map.remove("signatures");
        map.remove("unsigned");
    }
    canonical_json::from_json(obj)
        .expect("canonical JSON")
        .to_canonical_string()
}

/// Adds `user`'s signature with key `key_id` to `obj`.
pub fn add_signature(obj: &mut Value, user: &str, key_id: &str, signature: String) {
    let sigs = obj
        .as_object_mut()
        .expect("object")
        .entry("signatures")
        .or_insert_with(|| json!({}));
    sigs.as_object_mut()
        .expect("signatures object")
        .entry(user)
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("user signatures")
        .insert(key_id.to_owned(), Value::String(signature));
}

/// A client device: an Olm account for one user and device.
pub struct Device {
    pub user_id: String,
    pub device_id: String,
    pub account: Account,
}

impl Device {
    pub fn new(user_id: &str, device_id: &str) -> Self {
        Self {
            user_id: user_id.to_owned(),
            device_id: device_id.to_owned(),
            account: Account::new(),
        }
    }

    pub fn sign(&self, obj: &mut Value) {
        let sig = self.account.sign(signable(obj)).to_base64();
        add_signature(
            obj,
            &self.user_id,
            &format!("ed25519:{}", self.device_id),
            sig,
        );
    }

    /// The device keys as `/keys/upload` takes them, self-signed.
    pub fn device_keys(&self) -> Value {
        let keys = self.account.identity_keys();
        let mut obj = json!({
            "user_id": self.user_id,
            "device_id": self.device_id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {
                format!("curve25519:{}", self.device_id): keys.curve25519.to_base64(),
                format!("ed25519:{}", self.device_id): keys.ed25519.to_base64(),
            },
        });
        self.sign(&mut obj);
        obj
    }

    /// `n` new signed one-time keys, as `/keys/upload` takes them.
    pub fn one_time_keys(&mut self, n: usize) -> Value {
        self.account.generate_one_time_keys(n);
        let mut out = serde_json::Map::new();
        for (id, key) in self.account.one_time_keys() {
            let mut obj = json!({ "key": key.to_base64() });
            self.sign(&mut obj);
            out.insert(format!("signed_curve25519:{}", id.to_base64()), obj);
        }
        self.account.mark_keys_as_published();
        Value::Object(out)
    }

    /// A new signed fallback key, as `/keys/upload` takes it.
    pub fn fallback_key(&mut self) -> Value {
        self.account.generate_fallback_key();
        let mut out = serde_json::Map::new();
        for (id, key) in self.account.fallback_key() {
            let mut obj = json!({ "key": key.to_base64(), "fallback": true });
            self.sign(&mut obj);
            out.insert(format!("signed_curve25519:{}", id.to_base64()), obj);
        }
        Value::Object(out)
    }
}

/// A cross-signing key pair.
pub struct SigningKey {
    pub secret: Ed25519SecretKey,
}

impl SigningKey {
    pub fn new() -> Self {
        Self {
            secret: Ed25519SecretKey::new(),
        }
    }

    pub fn public(&self) -> Ed25519PublicKey {
        self.secret.public_key()
    }

    pub fn public_b64(&self) -> String {
        self.public().to_base64()
    }

    pub fn key_id(&self) -> String {
        format!("ed25519:{}", self.public_b64())
    }

    /// Signs `obj` as `user`.
    pub fn sign(&self, user: &str, obj: &mut Value) {
        let sig = self.secret.sign(signable(obj).as_bytes()).to_base64();
        add_signature(obj, user, &self.key_id(), sig);
    }

    /// The cross-signing key object for `user` with `usage`.
    pub fn key_object(&self, user: &str, usage: &str) -> Value {
        json!({
            "user_id": user,
            "usage": [usage],
            "keys": { self.key_id(): self.public_b64() },
        })
    }
}
