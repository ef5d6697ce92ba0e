//! Signing JSON (spec appendix "Signing JSON"): server signing keys in the
//! format operators know from Synapse, signing and verifying objects, and
//! batch verification for ingesting many events at once.

use std::collections::BTreeMap;
use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::base64;
use crate::canonical_json::{Object, Value, object_bytes_without};

/// The only signing algorithm the spec defines.
pub const ED25519: &str = "ed25519";

/// Top-level keys that signatures do not cover.
pub const UNSIGNED_KEYS: [&str; 2] = ["signatures", "unsigned"];

/// A signing key pair with its key ID (`ed25519:<version>`).
#[derive(Clone)]
pub struct KeyPair {
    version: String,
    key_id: String,
    signing: SigningKey,
}

/// Why a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("line {line}: expected `ed25519 <version> <base64 seed>`")]
    Format { line: usize },
    #[error("line {line}: unsupported algorithm {algorithm:?}")]
    Algorithm { line: usize, algorithm: String },
    #[error("line {line}: key version {version:?} must be non-empty [a-zA-Z0-9_]")]
    Version { line: usize, version: String },
    #[error("line {line}: the seed is not 32 bytes of base64")]
    Seed { line: usize },
    #[error("no signing key in the key file")]
    Empty,
    #[error("could not get random bytes from the operating system")]
    Random,
    #[error("public key is not 32 bytes of base64 or not a valid ed25519 point")]
    PublicKey,
}

fn valid_version(version: &str) -> bool {
    !version.is_empty()
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl KeyPair {
    /// A key pair from a 32-byte seed.
    pub fn from_seed(version: &str, seed: &[u8; 32]) -> Result<Self, KeyError> {
        if !valid_version(version) {
            return Err(KeyError::Version {
                line: 1,
                version: version.to_owned(),
            });
        }
        Ok(Self {
            version: version.to_owned(),
            key_id: format!("{ED25519}:{version}"),
            signing: SigningKey::from_bytes(seed),
        })
    }

    /// A fresh key pair from the operating system's random source, with a
    /// random version string as Synapse generates (`a_` + 4 random letters).
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|_| KeyError::Random)?;
        let mut v = [0u8; 4];
        getrandom::fill(&mut v).map_err(|_| KeyError::Random)?;
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let version: String = std::iter::once("a_".to_owned())
            .chain(
                v.iter()
                    .map(|b| (ALPHABET[*b as usize % ALPHABET.len()] as char).to_string()),
            )
            .collect();
        Self::from_seed(&version, &seed)
    }

    /// Parses one line of a key file: `ed25519 <version> <base64 seed>`.
    pub fn parse_line(line: &str, line_no: usize) -> Result<Self, KeyError> {
        let mut parts = line.split_whitespace();
        let (Some(alg), Some(version), Some(seed), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(KeyError::Format { line: line_no });
        };
        if alg != ED25519 {
            return Err(KeyError::Algorithm {
                line: line_no,
                algorithm: alg.to_owned(),
            });
        }
        if !valid_version(version) {
            return Err(KeyError::Version {
                line: line_no,
                version: version.to_owned(),
            });
        }
        let seed =
            base64::decode_array::<32>(seed).map_err(|_| KeyError::Seed { line: line_no })?;
        Self::from_seed(version, &seed)
    }

    /// The key file line for this key: `ed25519 <version> <base64 seed>`.
    pub fn to_line(&self) -> String {
        format!(
            "{ED25519} {} {}",
            self.version,
            base64::encode(self.signing.to_bytes())
        )
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key())
    }

    /// Signs raw bytes; returns the unpadded base64 signature.
    pub fn sign_bytes(&self, message: &[u8]) -> String {
        base64::encode(self.signing.sign(message).to_bytes())
    }

    /// Signs `obj` (without its `signatures` and `unsigned`) and adds the
    /// signature under `signatures.<entity>.<key_id>`, keeping other signatures.
    pub fn sign_json(&self, entity: &str, obj: &mut Object) {
        let signature = self.sign_bytes(&object_bytes_without(obj, &UNSIGNED_KEYS));
        add_signature(obj, entity, &self.key_id, signature);
    }
}

impl fmt::Debug for KeyPair {
    // Never print the seed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("key_id", &self.key_id)
            .field("public_key", &self.public_key())
            .finish()
    }
}

/// Puts a signature into `obj.signatures[entity][key_id]`, replacing a
/// `signatures` member that is not an object.
pub fn add_signature(obj: &mut Object, entity: &str, key_id: &str, signature: String) {
    let sigs = obj
        .entry("signatures".to_owned())
        .or_insert_with(|| Value::Object(Object::new()));
    if !matches!(sigs, Value::Object(_)) {
        *sigs = Value::Object(Object::new());
    }
    if let Value::Object(sigs) = sigs {
        let entry = sigs
            .entry(entity.to_owned())
            .or_insert_with(|| Value::Object(Object::new()));
        if !matches!(entry, Value::Object(_)) {
            *entry = Value::Object(Object::new());
        }
        if let Value::Object(entry) = entry {
            entry.insert(key_id.to_owned(), Value::String(signature));
        }
    }
}

/// Reads a key file: one key per line; the first is the key we sign with,
/// the rest are older keys still published for verification. Blank lines and
/// `#` comments are skipped.
pub fn parse_key_file(text: &str) -> Result<Vec<KeyPair>, KeyError> {
    let keys = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(i, l)| KeyPair::parse_line(l, i + 1))
        .collect::<Result<Vec<_>, _>>()?;
    if keys.is_empty() {
        return Err(KeyError::Empty);
    }
    Ok(keys)
}

/// An ed25519 public (verify) key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Parses an unpadded base64 public key as published in `verify_keys`.
    /// Small-order keys are refused: nobody can have signed with them.
    pub fn from_base64(s: &str) -> Result<Self, KeyError> {
        let bytes = base64::decode_array::<32>(s).map_err(|_| KeyError::PublicKey)?;
        Self::from_bytes(&bytes)
    }

    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::PublicKey)?;
        if key.is_weak() {
            return Err(KeyError::PublicKey);
        }
        Ok(Self(key))
    }

    pub fn to_base64(&self) -> String {
        base64::encode(self.0.as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// Verifies a base64 signature over `message`.
    pub fn verify(&self, message: &[u8], signature_b64: &str) -> Result<(), VerifyError> {
        let sig = decode_signature(signature_b64)?;
        self.0
            .verify_strict(message, &sig)
            .map_err(|_| VerifyError::BadSignature)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

/// Why a signature check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("no signatures from {0}")]
    NotSigned(String),
    #[error("no ed25519 signature from {0} with a known key")]
    NoKnownKey(String),
    #[error("signature is not 64 bytes of base64")]
    MalformedSignature,
    #[error("signature does not match")]
    BadSignature,
    #[error("`signatures` is not an object of objects of strings")]
    MalformedSignatures,
}

fn decode_signature(s: &str) -> Result<Signature, VerifyError> {
    let bytes = base64::decode_array::<64>(s).map_err(|_| VerifyError::MalformedSignature)?;
    Ok(Signature::from_bytes(&bytes))
}

/// The `ed25519` signatures `entity` put on `obj`: key ID to base64 signature.
/// Signatures with algorithms we do not know are left out (spec step 2).
pub fn signatures_of<'a>(
    obj: &'a Object,
    entity: &str,
) -> Result<BTreeMap<&'a str, &'a str>, VerifyError> {
    let sigs = match obj.get("signatures") {
        None => return Err(VerifyError::NotSigned(entity.to_owned())),
        Some(Value::Object(s)) => s,
        Some(_) => return Err(VerifyError::MalformedSignatures),
    };
    let Some(mine) = sigs.get(entity) else {
        return Err(VerifyError::NotSigned(entity.to_owned()));
    };
    let mine = mine.as_object().ok_or(VerifyError::MalformedSignatures)?;
    let mut out = BTreeMap::new();
    for (key_id, sig) in mine {
        let sig = sig.as_str().ok_or(VerifyError::MalformedSignatures)?;
        if key_id
            .split_once(':')
            .is_some_and(|(alg, _)| alg == ED25519)
        {
            out.insert(key_id.as_str(), sig);
        }
    }
    Ok(out)
}

/// Checks that `entity` signed `obj` with at least one of `keys` (key ID to
/// public key), following the spec's "Checking for a Signature". Every
/// signature made with a key we know must verify; signatures with keys we do
/// not know are ignored; at least one must be checked.
pub fn verify_json(
    obj: &Object,
    entity: &str,
    keys: &BTreeMap<String, PublicKey>,
) -> Result<(), VerifyError> {
    verify_json_canonical(
        obj,
        entity,
        keys,
        &object_bytes_without(obj, &UNSIGNED_KEYS),
    )
}

/// [`verify_json`] with the canonical bytes already computed, for callers
/// that check several entities' signatures over one object.
pub fn verify_json_canonical(
    obj: &Object,
    entity: &str,
    keys: &BTreeMap<String, PublicKey>,
    message: &[u8],
) -> Result<(), VerifyError> {
    let sigs = signatures_of(obj, entity)?;
    let mut checked = false;
    for (key_id, sig) in sigs {
        if let Some(key) = keys.get(key_id) {
            key.verify(message, sig)?;
            checked = true;
        }
    }
    if checked {
        Ok(())
    } else {
        Err(VerifyError::NoKnownKey(entity.to_owned()))
    }
}

/// One signature to check in a batch.
pub struct BatchItem<'a> {
    pub message: &'a [u8],
    pub signature: &'a str,
    pub key: &'a PublicKey,
}

/// Verifies many signatures at once. Batch verification costs about half of
/// checking each; when the batch fails, each item is checked alone so the
/// result names exactly which ones are bad. Returns one result per item.
pub fn verify_batch(items: &[BatchItem<'_>]) -> Vec<Result<(), VerifyError>> {
    let mut results: Vec<Result<(), VerifyError>> = Vec::with_capacity(items.len());
    let mut messages = Vec::with_capacity(items.len());
    let mut signatures = Vec::with_capacity(items.len());
    let mut keys = Vec::with_capacity(items.len());
    for item in items {
        match decode_signature(item.signature) {
            Ok(sig) => {
                messages.push(item.message);
                signatures.push(sig);
                keys.push(item.key.0);
                results.push(Ok(()));
            }
            Err(e) => results.push(Err(e)),
        }
    }
    if messages.len() >= 2
        && ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
        && all_strict_shape(&signatures)
    {
        return results;
    }
    // Slow path: find out which ones are wrong (or the batch was too small).
    for (item, result) in items.iter().zip(results.iter_mut()) {
        if result.is_ok() {
            *result = item.key.verify(item.message, item.signature);
        }
    }
    results
}

/// The batch equation is cofactored and so accepts signatures whose `R` is
/// a small-order point, which strict single verification refuses. Refuse
/// the fast path when any `R` is one of the small-order encodings (the
/// eight torsion points, with either sign bit). Comparing bytes costs
/// nothing next to decompressing every `R`. A mixed-order `R` still passes
/// the batch equation; only the key's owner can make such a signature.
fn all_strict_shape(signatures: &[Signature]) -> bool {
    signatures
        .iter()
        .all(|s| !SMALL_ORDER_ENCODINGS.contains(s.r_bytes()))
}

static SMALL_ORDER_ENCODINGS: std::sync::LazyLock<Vec<[u8; 32]>> = std::sync::LazyLock::new(|| {
    curve25519_dalek::constants::EIGHT_TORSION
        .iter()
        .flat_map(|p| {
            let canonical = p.compress().to_bytes();
            let mut flipped = canonical;
            flipped[31] ^= 0x80;
            [canonical, flipped]
        })
        .collect()
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical_json::parse_object;

    /// The seed of the spec's cryptographic test vectors.
    pub(crate) fn spec_key() -> KeyPair {
        let seed = base64::decode_array::<32>("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")
            .expect("spec seed");
        KeyPair::from_seed("1", &seed).expect("key")
    }

    fn sig_of(obj: &Object) -> &str {
        signatures_of(obj, "domain").expect("signed")["ed25519:1"]
    }

    #[test]
    fn spec_json_signing_vectors() {
        let key = spec_key();
        let mut empty = Object::new();
        key.sign_json("domain", &mut empty);
        assert_eq!(
            sig_of(&empty),
            "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
        );
        let mut data = parse_object(br#"{"one":1,"two":"Two"}"#).expect("json");
        key.sign_json("domain", &mut data);
        assert_eq!(
            sig_of(&data),
            "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"
        );
        let keys = BTreeMap::from([("ed25519:1".to_owned(), key.public_key())]);
        assert_eq!(verify_json(&data, "domain", &keys), Ok(()));
    }

    #[test]
    fn verification_failures_are_typed() {
        let key = spec_key();
        let keys = BTreeMap::from([("ed25519:1".to_owned(), key.public_key())]);
        let mut obj = parse_object(br#"{"a":1,"unsigned":{"x":1}}"#).expect("json");
        key.sign_json("domain", &mut obj);
        // unsigned is not covered by the signature.
        obj.insert("unsigned".into(), Value::Integer(5));
        assert_eq!(verify_json(&obj, "domain", &keys), Ok(()));
        assert_eq!(
            verify_json(&obj, "other", &keys),
            Err(VerifyError::NotSigned("other".into()))
        );
        obj.insert("a".into(), Value::Integer(2));
        assert_eq!(
            verify_json(&obj, "domain", &keys),
            Err(VerifyError::BadSignature)
        );
        let other_keys = BTreeMap::from([("ed25519:2".to_owned(), key.public_key())]);
        assert_eq!(
            verify_json(&obj, "domain", &other_keys),
            Err(VerifyError::NoKnownKey("domain".into()))
        );
        add_signature(&mut obj, "domain", "ed25519:1", "not base64!".into());
        assert_eq!(
            verify_json(&obj, "domain", &keys),
            Err(VerifyError::MalformedSignature)
        );
        obj.insert("signatures".into(), Value::Integer(1));
        assert_eq!(
            verify_json(&obj, "domain", &keys),
            Err(VerifyError::MalformedSignatures)
        );
    }

    #[test]
    fn key_file_round_trip() {
        let key = spec_key();
        assert_eq!(
            key.to_line(),
            "ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA0"
        );
        let generated = KeyPair::generate().expect("random");
        let file = format!("# keys\n{}\n\n{}\n", generated.to_line(), key.to_line());
        let keys = parse_key_file(&file).expect("parse");
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].key_id(), generated.key_id());
        assert_eq!(keys[0].public_key(), generated.public_key());
        assert!(generated.version().starts_with("a_"));
        assert_eq!(parse_key_file("").err(), Some(KeyError::Empty));
        assert_eq!(
            parse_key_file("ed25519 1").err(),
            Some(KeyError::Format { line: 1 })
        );
        assert_eq!(
            parse_key_file("\nrsa 1 AAAA").err(),
            Some(KeyError::Algorithm {
                line: 2,
                algorithm: "rsa".into()
            })
        );
        assert_eq!(
            parse_key_file("ed25519 a:b AAAA").err(),
            Some(KeyError::Version {
                line: 1,
                version: "a:b".into()
            })
        );
        assert_eq!(
            parse_key_file("ed25519 1 AAAA").err(),
            Some(KeyError::Seed { line: 1 })
        );
    }

    #[test]
    fn weak_public_keys_are_refused() {
        // The identity point encodes as 1 followed by zeros: small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(PublicKey::from_bytes(&identity), Err(KeyError::PublicKey));
    }

    #[test]
    fn small_order_r_never_takes_the_batch_path() {
        let mut identity_r = [0u8; 64];
        identity_r[0] = 1; // R = identity, s = 0
        assert!(!all_strict_shape(&[Signature::from_bytes(&identity_r)]));
        let key = spec_key();
        let good = key.sign_bytes(b"m");
        let good = Signature::from_bytes(&base64::decode_array::<64>(&good).expect("sig"));
        assert!(all_strict_shape(&[good]));
        assert_eq!(SMALL_ORDER_ENCODINGS.len(), 16);
    }

    #[test]
    fn batch_finds_the_bad_ones() {
        let a = spec_key();
        let b = KeyPair::generate().expect("random");
        let (pa, pb) = (a.public_key(), b.public_key());
        let msgs: Vec<Vec<u8>> = (0..8)
            .map(|i| format!("message {i}").into_bytes())
            .collect();
        let mut sigs: Vec<String> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| {
                if i % 2 == 0 {
                    a.sign_bytes(m)
                } else {
                    b.sign_bytes(m)
                }
            })
            .collect();
        let items = |sigs: &[String]| -> Vec<Result<(), VerifyError>> {
            let batch: Vec<BatchItem<'_>> = msgs
                .iter()
                .zip(sigs)
                .enumerate()
                .map(|(i, (m, s))| BatchItem {
                    message: m,
                    signature: s,
                    key: if i % 2 == 0 { &pa } else { &pb },
                })
                .collect();
            verify_batch(&batch)
        };
        assert!(items(&sigs).iter().all(Result::is_ok));
        sigs[3] = a.sign_bytes(&msgs[3]); // signed by the wrong key
        sigs[5] = "AAAA".into();
        let results = items(&sigs);
        for (i, r) in results.iter().enumerate() {
            match i {
                3 => assert_eq!(r, &Err(VerifyError::BadSignature)),
                5 => assert_eq!(r, &Err(VerifyError::MalformedSignature)),
                _ => assert_eq!(r, &Ok(())),
            }
        }
    }
}
