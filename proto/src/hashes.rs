//! Event hashes (server-server API "Calculating the content hash" and
//! "Calculating the reference hash"), event IDs, v12 room IDs, and signing
//! events: the content hash goes into `hashes`, then the *redacted* event is
//! signed, so that a redacted copy still verifies.

use sha2::{Digest, Sha256};

use crate::base64;
use crate::canonical_json::{Object, Value, object_bytes_without};
use crate::redaction::redact;
use crate::room_version::RedactionRules;
use crate::signing::{KeyPair, UNSIGNED_KEYS};

/// Keys the content hash does not cover.
const NOT_IN_CONTENT_HASH: [&str; 3] = ["unsigned", "signatures", "hashes"];
/// Keys the reference hash does not cover (after redaction).
const NOT_IN_REFERENCE_HASH: [&str; 3] = ["signatures", "unsigned", "age_ts"];

/// SHA-256 of the event without `unsigned`, `signatures` and `hashes`.
pub fn content_hash(event: &Object) -> [u8; 32] {
    Sha256::digest(object_bytes_without(event, &NOT_IN_CONTENT_HASH)).into()
}

/// Whether `hashes.sha256` matches the event's content hash. An event that
/// fails must be redacted before it is used (server-server API "Checks
/// performed on receipt of a PDU"); a missing or malformed hash fails too.
pub fn content_hash_matches(event: &Object) -> bool {
    let claimed = match event.get("hashes") {
        Some(Value::Object(h)) => h.get("sha256").and_then(Value::as_str),
        _ => None,
    };
    claimed
        .and_then(|c| base64::decode_array::<32>(c).ok())
        .is_some_and(|c| c == content_hash(event))
}

/// SHA-256 of the redacted event without `signatures`, `unsigned`, `age_ts`.
pub fn reference_hash(rules: RedactionRules, event: &Object) -> [u8; 32] {
    let redacted = redact(rules, event);
    Sha256::digest(object_bytes_without(&redacted, &NOT_IN_REFERENCE_HASH)).into()
}

/// The event ID of an event (room versions 4+): `$` + URL-safe reference hash.
pub fn event_id(rules: RedactionRules, event: &Object) -> String {
    format!("${}", base64::encode_url_safe(reference_hash(rules, event)))
}

/// The room ID a v12 create event names: `!` + URL-safe reference hash.
pub fn room_id_from_create(rules: RedactionRules, create_event: &Object) -> String {
    format!(
        "!{}",
        base64::encode_url_safe(reference_hash(rules, create_event))
    )
}

/// The bytes an event's signatures cover: the redacted event without
/// `signatures` and `unsigned`, canonically encoded.
pub fn signed_bytes(rules: RedactionRules, event: &Object) -> Vec<u8> {
    object_bytes_without(&redact(rules, event), &UNSIGNED_KEYS)
}

/// Adds the content hash and this server's signature to an event, as the
/// server-server API's "Signing events" describes.
pub fn hash_and_sign_event(rules: RedactionRules, origin: &str, key: &KeyPair, event: &mut Object) {
    let hash = base64::encode(content_hash(event));
    let mut hashes = Object::new();
    hashes.insert("sha256".to_owned(), Value::String(hash));
    event.insert("hashes".to_owned(), Value::Object(hashes));
    sign_event(rules, origin, key, event);
}

/// Adds this server's signature to an event that already carries its hashes
/// (e.g. co-signing a join built by another server).
pub fn sign_event(rules: RedactionRules, origin: &str, key: &KeyPair, event: &mut Object) {
    let signature = key.sign_bytes(&signed_bytes(rules, event));
    crate::signing::add_signature(event, origin, key.key_id(), signature);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical_json::parse_object;
    use crate::signing::{PublicKey, verify_json};
    use std::collections::BTreeMap;

    fn spec_key() -> KeyPair {
        let seed = base64::decode_array::<32>("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")
            .expect("spec seed");
        KeyPair::from_seed("1", &seed).expect("key")
    }

    fn signature(event: &Object) -> String {
        let sigs = crate::signing::signatures_of(event, "domain").expect("signed");
        sigs["ed25519:1"].to_owned()
    }

    fn hash(event: &Object) -> &str {
        event["hashes"].as_object().expect("hashes")["sha256"]
            .as_str()
            .expect("string")
    }

    /// The spec's "Event Signing" test vectors. They predate room version 11
    /// (the second keeps `origin` through redaction), so they are checked with
    /// the v9/v10 redaction rules.
    #[test]
    fn spec_event_signing_vectors() {
        let key = spec_key();
        let mut minimal = parse_object(
            br#"{"room_id":"!x:domain","sender":"@a:domain","origin":"domain","origin_server_ts":1000000,
                "signatures":{},"hashes":{},"type":"X","content":{},"prev_events":[],"auth_events":[],
                "depth":3,"unsigned":{"age_ts":1000000}}"#,
        )
        .expect("json");
        hash_and_sign_event(RedactionRules::V9, "domain", &key, &mut minimal);
        assert_eq!(
            hash(&minimal),
            "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"
        );
        assert_eq!(
            signature(&minimal),
            "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"
        );
        assert!(content_hash_matches(&minimal));

        let mut message = parse_object(
            br#"{"content":{"body":"Here is the message content"},"event_id":"$0:domain","origin":"domain",
                "origin_server_ts":1000000,"type":"m.room.message","room_id":"!r:domain","sender":"@u:domain",
                "signatures":{},"unsigned":{"age_ts":1000000}}"#,
        )
        .expect("json");
        hash_and_sign_event(RedactionRules::V9, "domain", &key, &mut message);
        assert_eq!(
            hash(&message),
            "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"
        );
        assert_eq!(
            signature(&message),
            "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA"
        );

        // The signature covers the redacted event: it still verifies after
        // redaction, and the content hash no longer matches.
        let redacted = redact(RedactionRules::V9, &message);
        let keys = BTreeMap::from([("ed25519:1".to_owned(), key.public_key())]);
        assert_eq!(verify_json(&redacted, "domain", &keys), Ok(()));
        assert!(!content_hash_matches(&redacted));
        let _: PublicKey = key.public_key();
    }

    #[test]
    fn tampering_breaks_the_content_hash_and_not_the_reference_hash_of_content() {
        let key = spec_key();
        let mut ev = parse_object(
            br#"{"type":"m.room.message","content":{"body":"hi"},"room_id":"!r:d","sender":"@u:d",
                "origin_server_ts":1,"depth":1,"prev_events":[],"auth_events":[]}"#,
        )
        .expect("json");
        hash_and_sign_event(RedactionRules::V11, "d", &key, &mut ev);
        let id = event_id(RedactionRules::V11, &ev);
        assert!(id.starts_with('$') && id.len() == 44);
        let mut tampered = ev.clone();
        tampered.insert(
            "content".into(),
            parse_object(br#"{"body":"bye"}"#).expect("json").into(),
        );
        assert!(!content_hash_matches(&tampered));
        // Message content is redacted away, so the reference hash is the same.
        assert_eq!(event_id(RedactionRules::V11, &tampered), id);
        // unsigned never counts.
        tampered.insert("unsigned".into(), Value::Integer(1));
        assert_eq!(event_id(RedactionRules::V11, &tampered), id);
        tampered.insert("depth".into(), Value::Integer(2));
        assert_ne!(event_id(RedactionRules::V11, &tampered), id);
    }
}
