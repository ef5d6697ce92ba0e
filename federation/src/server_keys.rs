//! Server key documents (server-server API "Retrieving server keys"): the JSON a server
//! publishes at `/_matrix/key/v2/server`, signed by its own keys, and that notaries pass on
//! with their own signature added.
//!
//! [`own_document`] builds ours; [`ServerKeyDocument::parse`] checks one received from
//! anyone: it names the server we asked about, every key it lists under `verify_keys` is a
//! valid ed25519 key, and it is signed by at least one of them.

use std::collections::BTreeMap;

use myelin_proto::canonical_json::{self, Object, Value};
use myelin_proto::signing::{KeyPair, PublicKey, verify_json};
use ruma::ServerName;

/// The longest a fetched key may be trusted for, whatever `valid_until_ts` says: the spec
/// (room versions 5+) has servers use the lesser of it and 7 days from now.
pub const MAX_VALIDITY_MS: i64 = 7 * 24 * 3600 * 1000;

/// Why a key document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyDocumentError {
    #[error("not a JSON object: {0}")]
    Json(String),
    #[error("missing or malformed field {0}")]
    Field(&'static str),
    #[error("document is for {found}, not {expected}")]
    WrongServer { expected: String, found: String },
    #[error("key {0} is not a valid ed25519 key")]
    BadKey(String),
    #[error("document is not signed by a key it lists: {0}")]
    NotSelfSigned(String),
    #[error("notary signature does not verify: {0}")]
    BadNotarySignature(String),
}

/// A public key with the last instant (ms) it may verify something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedKey {
    pub key: PublicKey,
    /// `valid_until_ts` of the document for current keys, `expired_ts` for old ones.
    pub valid_until_ts: i64,
    /// Whether the key was listed under `old_verify_keys`.
    pub old: bool,
}

/// A checked key document.
#[derive(Debug, Clone)]
pub struct ServerKeyDocument {
    pub server_name: String,
    pub valid_until_ts: i64,
    /// Every key the document lists, current and old, by key ID.
    pub keys: BTreeMap<String, TimedKey>,
    /// The document as received, signatures included (what a notary passes on).
    pub raw: Object,
}

fn verify_key_of(entry: &Value, key_id: &str) -> Result<PublicKey, KeyDocumentError> {
    let encoded = entry
        .as_object()
        .and_then(|o| o.get("key"))
        .and_then(Value::as_str)
        .ok_or_else(|| KeyDocumentError::BadKey(key_id.to_owned()))?;
    PublicKey::from_base64(encoded).map_err(|_| KeyDocumentError::BadKey(key_id.to_owned()))
}

fn is_ed25519(key_id: &str) -> bool {
    key_id.starts_with("ed25519:")
}

impl ServerKeyDocument {
    /// Parses and checks a document that should describe `expected`.
    pub fn parse(expected: &ServerName, raw: Object) -> Result<Self, KeyDocumentError> {
        let server_name = raw
            .get("server_name")
            .and_then(Value::as_str)
            .ok_or(KeyDocumentError::Field("server_name"))?
            .to_owned();
        if server_name != expected.as_str() {
            return Err(KeyDocumentError::WrongServer {
                expected: expected.to_string(),
                found: server_name,
            });
        }
        let valid_until_ts = raw
            .get("valid_until_ts")
            .and_then(Value::as_integer)
            .ok_or(KeyDocumentError::Field("valid_until_ts"))?;
        let verify_keys = raw
            .get("verify_keys")
            .and_then(Value::as_object)
            .ok_or(KeyDocumentError::Field("verify_keys"))?;
        let mut keys = BTreeMap::new();
        let mut current = BTreeMap::new();
        // Keys of algorithms we do not know are skipped, not errors.
        for (key_id, entry) in verify_keys.iter().filter(|(id, _)| is_ed25519(id)) {
            let key = verify_key_of(entry, key_id)?;
            current.insert(key_id.clone(), key);
            keys.insert(
                key_id.clone(),
                TimedKey {
                    key,
                    valid_until_ts,
                    old: false,
                },
            );
        }
        if let Some(old) = raw.get("old_verify_keys") {
            let old = old
                .as_object()
                .ok_or(KeyDocumentError::Field("old_verify_keys"))?;
            for (key_id, entry) in old.iter().filter(|(id, _)| is_ed25519(id)) {
                let key = verify_key_of(entry, key_id)?;
                let expired_ts = entry
                    .as_object()
                    .and_then(|o| o.get("expired_ts"))
                    .and_then(Value::as_integer)
                    .ok_or(KeyDocumentError::Field("old_verify_keys.expired_ts"))?;
                // A key listed both ways is current.
                keys.entry(key_id.clone()).or_insert(TimedKey {
                    key,
                    valid_until_ts: expired_ts,
                    old: true,
                });
            }
        }
        // Signed by the server itself with the keys it lists (spec: "must be signed by all
        // of the keys in verify_keys"; Synapse and ruma accept one of them and check every
        // signature made by a listed key, which verify_json does).
        verify_json(&raw, expected.as_str(), &current)
            .map_err(|e| KeyDocumentError::NotSelfSigned(e.to_string()))?;
        Ok(Self {
            server_name,
            valid_until_ts,
            keys,
            raw,
        })
    }

    /// Parses bytes of a document (a `/_matrix/key/v2/server` body).
    pub fn parse_bytes(expected: &ServerName, body: &[u8]) -> Result<Self, KeyDocumentError> {
        let raw = canonical_json::parse_object(body)
            .map_err(|e| KeyDocumentError::Json(e.to_string()))?;
        Self::parse(expected, raw)
    }

    /// `valid_until_ts` as we use it: at most [`MAX_VALIDITY_MS`] after `now_ms`.
    pub fn capped_valid_until(&self, now_ms: i64) -> i64 {
        self.valid_until_ts
            .min(now_ms.saturating_add(MAX_VALIDITY_MS))
    }
}

/// Our own key document: every key we hold under `verify_keys` (the first signs new things,
/// the others still verify what they signed), valid until `valid_until_ts`, signed by each.
pub fn own_document(server_name: &ServerName, keys: &[KeyPair], valid_until_ts: i64) -> Object {
    let mut verify_keys = Object::new();
    for key in keys {
        let mut entry = Object::new();
        entry.insert("key".to_owned(), Value::from(key.public_key().to_base64()));
        verify_keys.insert(key.key_id().to_owned(), Value::Object(entry));
    }
    let mut doc = Object::new();
    doc.insert("server_name".to_owned(), Value::from(server_name.as_str()));
    doc.insert("verify_keys".to_owned(), Value::Object(verify_keys));
    doc.insert("old_verify_keys".to_owned(), Value::Object(Object::new()));
    doc.insert(
        "valid_until_ts".to_owned(),
        Value::integer(valid_until_ts).unwrap_or(Value::Integer(0)),
    );
    for key in keys {
        key.sign_json(server_name.as_str(), &mut doc);
    }
    doc
}

/// A notary's answer entry: `doc` with the notary's signature added next to the origin's.
pub fn countersign(doc: &Object, notary: &ServerName, key: &KeyPair) -> Object {
    let mut signed = doc.clone();
    key.sign_json(notary.as_str(), &mut signed);
    signed
}

/// Checks the notary's signature on a document it passed on, with the notary's keys.
pub fn verify_notary_signature(
    doc: &ServerKeyDocument,
    notary: &ServerName,
    notary_keys: &BTreeMap<String, PublicKey>,
) -> Result<(), KeyDocumentError> {
    verify_json(&doc.raw, notary.as_str(), notary_keys)
        .map_err(|e| KeyDocumentError::BadNotarySignature(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> &ServerName {
        <&ServerName>::try_from(s).expect("server name")
    }

    fn key(seed: u8, version: &str) -> KeyPair {
        KeyPair::from_seed(version, &[seed; 32]).expect("key")
    }

    #[test]
    fn own_document_parses_and_is_countersigned() {
        let keys = [key(1, "new"), key(2, "old")];
        let doc = own_document(name("a.test"), &keys, 1_000);
        let parsed = ServerKeyDocument::parse(name("a.test"), doc.clone()).expect("valid");
        assert_eq!(parsed.valid_until_ts, 1_000);
        assert_eq!(parsed.keys.len(), 2);
        assert_eq!(parsed.keys["ed25519:new"].key, keys[0].public_key());
        // ruma reads the same document as a valid signed ServerSigningKeys.
        let json = Value::Object(doc.clone()).to_canonical_string();
        let typed: ruma::api::federation::discovery::ServerSigningKeys =
            serde_json::from_str(&json).expect("ruma type");
        assert_eq!(typed.server_name.as_str(), "a.test");

        let notary = key(3, "n");
        let signed = countersign(&doc, name("n.test"), &notary);
        let again = ServerKeyDocument::parse(name("a.test"), signed).expect("still valid");
        let notary_keys = BTreeMap::from([("ed25519:n".to_owned(), notary.public_key())]);
        verify_notary_signature(&again, name("n.test"), &notary_keys).expect("notary signed");
        assert!(verify_notary_signature(&parsed, name("n.test"), &notary_keys).is_err());
    }

    #[test]
    fn wrong_server_missing_signature_and_bad_keys_are_refused() {
        let doc = own_document(name("a.test"), &[key(1, "k")], 1_000);
        assert!(matches!(
            ServerKeyDocument::parse(name("b.test"), doc.clone()),
            Err(KeyDocumentError::WrongServer { .. })
        ));
        let mut unsigned = doc.clone();
        unsigned.remove("signatures");
        assert!(matches!(
            ServerKeyDocument::parse(name("a.test"), unsigned),
            Err(KeyDocumentError::NotSelfSigned(_))
        ));
        // Signed by a key the document does not list.
        let mut forged = own_document(name("a.test"), &[key(1, "k")], 1_000);
        forged.remove("signatures");
        key(9, "k").sign_json("a.test", &mut forged);
        assert!(matches!(
            ServerKeyDocument::parse(name("a.test"), forged),
            Err(KeyDocumentError::NotSelfSigned(_))
        ));
        // Content changed after signing.
        let mut tampered = doc.clone();
        tampered.insert("valid_until_ts".to_owned(), Value::Integer(9_999_999));
        assert!(ServerKeyDocument::parse(name("a.test"), tampered).is_err());
        for body in [
            &b"[]"[..],
            br#"{"server_name":"a.test"}"#,
            br#"{"server_name":"a.test","valid_until_ts":1,"verify_keys":{"ed25519:x":{"key":"nope"}}}"#,
            br#"{"server_name":"a.test","valid_until_ts":1.5,"verify_keys":{}}"#,
        ] {
            assert!(ServerKeyDocument::parse_bytes(name("a.test"), body).is_err());
        }
    }

    #[test]
    fn validity_is_capped_at_seven_days() {
        let doc = own_document(name("a.test"), &[key(1, "k")], i64::from(i32::MAX) * 1000);
        let parsed = ServerKeyDocument::parse(name("a.test"), doc).expect("valid");
        assert_eq!(parsed.capped_valid_until(0), MAX_VALIDITY_MS);
        let doc = own_document(name("a.test"), &[key(1, "k")], 5);
        let parsed = ServerKeyDocument::parse(name("a.test"), doc).expect("valid");
        assert_eq!(parsed.capped_valid_until(0), 5);
    }
}
