//! Differential tests against ruma: canonical JSON, content and reference
//! hashes, event IDs, redaction and signatures must agree byte for byte on
//! thousands of generated events. A disagreement is a bug on one side; the
//! spec decides which.

use std::collections::BTreeMap;

use myelin_proto::canonical_json::{self, Object, Value};
use myelin_proto::room_version::{RedactionRules, RoomVersion};
use myelin_proto::signing::{KeyPair, PublicKey, verify_json_canonical};
use myelin_proto::{base64, hashes, redaction};
use proptest::prelude::*;
use ruma::CanonicalJsonObject;
use ruma::room_version_rules::RoomVersionRules as RumaRules;
use ruma::signatures::{Ed25519KeyPair, Verified as RumaVerified};

fn to_ruma(obj: &Object) -> CanonicalJsonObject {
    let json = serde_json::Value::from(Value::Object(obj.clone()));
    serde_json::from_value(json).expect("our canonical JSON is ruma canonical JSON")
}

fn from_ruma(obj: &CanonicalJsonObject) -> Object {
    let json = serde_json::to_vec(obj).expect("serialize");
    canonical_json::parse_object(&json).expect("ruma canonical JSON is ours")
}

fn ruma_rules(version: RoomVersion) -> RumaRules {
    match version {
        RoomVersion::V10 => RumaRules::V10,
        RoomVersion::V11 => RumaRules::V11,
        RoomVersion::V12 => RumaRules::V12,
    }
}

// ---------------------------------------------------------------------------
// Generators

fn json_string() -> impl Strategy<Value = String> {
    prop_oneof![
        // Arbitrary Unicode, including control characters and astral planes.
        any::<String>(),
        "[a-z_.]{0,12}",
        Just("\u{0}\u{1f}\"\\\u{7f}\u{2028}😀".to_owned()),
    ]
}

fn json_int() -> impl Strategy<Value = i64> {
    prop_oneof![
        -1000i64..1000,
        Just(canonical_json::MAX_SAFE_INT),
        Just(canonical_json::MIN_SAFE_INT),
        canonical_json::MIN_SAFE_INT..=canonical_json::MAX_SAFE_INT,
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        json_int().prop_map(Value::Integer),
        json_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(json_string(), inner, 0..6).prop_map(Value::Object),
        ]
    })
}

/// Keys that redaction treats specially somewhere, so generated content
/// exercises every keep/strip decision.
const CONTENT_KEYS: &[&str] = &[
    "membership",
    "join_authorised_via_users_server",
    "third_party_invite",
    "creator",
    "join_rule",
    "allow",
    "ban",
    "events",
    "events_default",
    "invite",
    "kick",
    "redact",
    "state_default",
    "users",
    "users_default",
    "notifications",
    "history_visibility",
    "redacts",
    "body",
    "aliases",
    "m.federate",
    "room_version",
    "additional_creators",
];

const EVENT_TYPES: &[&str] = &[
    "m.room.member",
    "m.room.create",
    "m.room.join_rules",
    "m.room.power_levels",
    "m.room.history_visibility",
    "m.room.redaction",
    "m.room.message",
    "m.room.aliases",
    "m.room.server_acl",
    "org.example.custom",
];

const TOP_LEVEL_EXTRAS: &[&str] = &[
    "origin",
    "membership",
    "prev_state",
    "unsigned",
    "event_id",
    "age_ts",
    "redacts",
    "state_key",
    "x_custom",
];

fn content() -> impl Strategy<Value = Object> {
    let keyed = prop::collection::btree_map(
        prop::sample::select(CONTENT_KEYS).prop_map(str::to_owned),
        json_value(),
        0..8,
    );
    let third_party = prop::option::of(json_value());
    let random = prop::collection::btree_map(json_string(), json_value(), 0..3);
    (keyed, third_party, random).prop_map(|(mut c, signed, random)| {
        if let Some(signed) = signed {
            let mut tpi = Object::new();
            tpi.insert("signed".into(), signed);
            tpi.insert("display_name".into(), Value::String("x".into()));
            c.insert("third_party_invite".into(), Value::Object(tpi));
        }
        c.extend(random);
        c
    })
}

/// A generated event in federation shape. Only the fields the hashing and
/// redaction code looks at have to be right; everything else is random.
fn event() -> impl Strategy<Value = Object> {
    (
        prop::sample::select(EVENT_TYPES),
        content(),
        prop::collection::btree_map(
            prop::sample::select(TOP_LEVEL_EXTRAS).prop_map(str::to_owned),
            json_value(),
            0..5,
        ),
        0i64..1_000_000,
        json_int(),
    )
        .prop_map(|(ty, content, extras, depth, ts)| {
            let mut ev = extras;
            ev.insert("type".into(), Value::String(ty.to_owned()));
            ev.insert("content".into(), Value::Object(content));
            ev.insert("sender".into(), Value::String("@alice:a.test".into()));
            ev.insert("room_id".into(), Value::String("!room:a.test".into()));
            ev.insert("depth".into(), Value::Integer(depth));
            ev.insert("origin_server_ts".into(), Value::Integer(ts));
            ev.insert("prev_events".into(), Value::Array(vec![]));
            ev.insert("auth_events".into(), Value::Array(vec![]));
            ev
        })
}

/// Known divergence: for a member event whose `content.third_party_invite`
/// is not an object, ruma keeps it through v11+ redaction, Synapse and we
/// drop it. The spec only says "the `signed` key of the `third_party_invite`
/// key" survives, which a non-object cannot have; Synapse's behaviour is the
/// one every room on the network was hashed with.
fn ruma_keeps_non_object_third_party_invite(rules: RedactionRules, ev: &Object) -> bool {
    rules == RedactionRules::V11
        && ev.get("type").and_then(Value::as_str) == Some("m.room.member")
        && ev["content"]
            .as_object()
            .and_then(|c| c.get("third_party_invite"))
            .is_some_and(|t| t.as_object().is_none())
}

/// Known divergences in choosing the servers whose signatures are required:
/// - ruma refuses to check a member event without a string `membership` (or
///   with a non-object `third_party_invite` on an invite), since it looks at
///   them to pick the signers. We check the signature and leave malformed
///   content to the auth rules, which reject it.
/// - ruma requires the signature of `join_authorised_via_users_server`'s
///   server on *any* event whose content has that key, and fails when the
///   value is not a user ID. The auth rules (v10 4.2, v12 5.2) apply it to
///   `m.room.member` events, which is where we require it; a value that is
///   not a user ID is rejected by that same auth rule, not by signature
///   checking.
fn signer_rules_differ(ev: &Object) -> bool {
    let content = ev["content"].as_object();
    let get = |k: &str| content.and_then(|c| c.get(k));
    let is_member = ev.get("type").and_then(Value::as_str) == Some("m.room.member");
    if let Some(via) = get("join_authorised_via_users_server") {
        let valid_user = via.as_str().is_some_and(|v| ruma::UserId::parse(v).is_ok());
        if !is_member || !valid_user {
            return true;
        }
    }
    if !is_member {
        return false;
    }
    match get("membership") {
        Some(Value::String(m)) => {
            m == "invite" && get("third_party_invite").is_some_and(|t| t.as_object().is_none())
        }
        _ => true,
    }
}

fn version() -> impl Strategy<Value = RoomVersion> {
    prop::sample::select(RoomVersion::ALL.to_vec())
}

fn seed_key(seed: [u8; 32]) -> (KeyPair, Ed25519KeyPair) {
    let ours = KeyPair::from_seed("1", &seed).expect("key");
    // PKCS#8 v1 wrapping of an ed25519 seed (RFC 8410).
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&seed);
    let theirs = Ed25519KeyPair::from_der(&der, "1".into()).expect("ruma key");
    (ours, theirs)
}

// ---------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Parsing any JSON text we accept and encoding it canonically gives the
    /// same bytes as ruma's canonical encoding of the same text.
    #[test]
    fn canonical_encoding_matches(value in json_value(), pretty in any::<bool>()) {
        let text = if pretty {
            serde_json::to_string_pretty(&serde_json::Value::from(value.clone()))
        } else {
            serde_json::to_string(&serde_json::Value::from(value.clone()))
        }.expect("serialize");
        let ours = canonical_json::parse(text.as_bytes()).expect("we accept it");
        let theirs: ruma::CanonicalJsonValue = serde_json::from_str(&text).expect("ruma accepts it");
        prop_assert_eq!(ours.to_canonical_string(), theirs.to_string());
        prop_assert_eq!(ours, value);
    }

    /// Content hash, reference hash (event ID) and redaction agree for every
    /// supported room version.
    #[test]
    fn hashes_and_redaction_match(ev in event(), version in version()) {
        let rules = version.rules().redaction;
        prop_assume!(!ruma_keeps_non_object_third_party_invite(rules, &ev));
        let theirs = to_ruma(&ev);
        let ruma_rules = ruma_rules(version);

        let ruma_content_hash = ruma::signatures::content_hash(&theirs).expect("ruma hash");
        prop_assert_eq!(base64::encode(hashes::content_hash(&ev)), ruma_content_hash.encode());

        let ruma_reference = ruma::signatures::reference_hash(&theirs, &ruma_rules).expect("ruma ref");
        prop_assert_eq!(base64::encode_url_safe(hashes::reference_hash(rules, &ev)), ruma_reference);

        let ruma_redacted = ruma::canonical_json::redact(theirs, &ruma_rules.redaction, None)
            .expect("ruma redacts");
        prop_assert_eq!(redaction::redact(rules, &ev), from_ruma(&ruma_redacted));
    }

    /// Signing is deterministic: both sides produce the same signature, and
    /// each verifies the other's. Tampering is caught by both alike.
    #[test]
    fn signatures_match(ev in event(), version in version(), seed in any::<[u8; 32]>(),
                        tamper_key in prop::sample::select(vec!["content", "depth", "origin_server_ts", "unsigned", "x_custom"])) {
        let rules = version.rules().redaction;
        prop_assume!(!ruma_keeps_non_object_third_party_invite(rules, &ev));
        prop_assume!(!signer_rules_differ(&ev));
        let ruma_rules = ruma_rules(version);
        let (ours_key, ruma_key) = seed_key(seed);

        let mut ours = ev.clone();
        ours.remove("signatures");
        ours.remove("hashes");
        let mut theirs = to_ruma(&ours);
        hashes::hash_and_sign_event(rules, "a.test", &ours_key, &mut ours);
        ruma::signatures::hash_and_sign_event("a.test", &ruma_key, &mut theirs, &ruma_rules.redaction)
            .expect("ruma signs");
        prop_assert_eq!(&ours, &from_ruma(&theirs));

        // Tamper with one field, then compare verdicts.
        let mut tampered = ours.clone();
        tampered.insert(tamper_key.to_owned(), Value::String("tampered".into()));
        let ruma_keys = BTreeMap::from([(
            "a.test".to_owned(),
            BTreeMap::from([(
                "ed25519:1".to_owned(),
                ruma::serde::Base64::new(ours_key.public_key().as_bytes().to_vec()),
            )]),
        )]);
        let our_keys = BTreeMap::from([("ed25519:1".to_owned(), ours_key.public_key())]);
        let _: &PublicKey = &our_keys["ed25519:1"];
        for candidate in [&ours, &tampered] {
            let our_verdict = verify_json_canonical(candidate, "a.test", &our_keys, &hashes::signed_bytes(rules, candidate))
                .map(|()| if hashes::content_hash_matches(candidate) { "all" } else { "signatures" });
            let ruma_verdict = ruma::signatures::verify_event(&ruma_keys, &to_ruma(candidate), &ruma_rules)
                .map(|v| match v { RumaVerified::All => "all", RumaVerified::Signatures => "signatures" });
            prop_assert_eq!(our_verdict.is_ok(), ruma_verdict.is_ok(), "verdicts differ on {:?}", candidate);
            if let (Ok(a), Ok(b)) = (our_verdict, ruma_verdict) {
                prop_assert_eq!(a, b);
            }
        }
    }
}

/// Inputs canonical JSON forbids: we must refuse each with a typed error.
/// (ruma parses through serde_json::Value, which keeps the last of duplicate
/// keys silently, so it is no oracle for these.)
#[test]
fn forbidden_inputs_are_refused() {
    use canonical_json::Error;
    for (input, expected) in [
        (&br#"{"a":1.5}"#[..], Error::Float),
        (br#"{"a":1e2}"#, Error::Float),
        (
            br#"{"a":9007199254740992}"#,
            Error::IntegerOutOfRange("9007199254740992".into()),
        ),
        (br#"{"a":1,"a":2}"#, Error::DuplicateKey("a".into())),
    ] {
        assert_eq!(canonical_json::parse(input), Err(expected));
    }
}
