//! Checking received events: signatures from every server that must have
//! signed them, then the content hash (server-server API "Validating hashes
//! and signatures on received events"). Ingest verifies many events at once,
//! so [`verify_pdus`] batches every signature of a transaction into one
//! ed25519 batch verification.

use ruma::ServerName;

use crate::pdu::Pdu;
use crate::signing::{BatchItem, PublicKey, VerifyError, signatures_of, verify_batch};

/// Where verification looks up other servers' keys.
pub trait KeyRing {
    /// The public key `server` published under `key_id`, if we know it and
    /// it was valid at `origin_server_ts` (keys that expired before the event
    /// are skipped, as the spec asks, by returning `None`).
    fn key(&self, server: &ServerName, key_id: &str, origin_server_ts: i64) -> Option<PublicKey>;
}

/// A good outcome of checking a received event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// Signatures and content hash are good: use the event as received.
    All,
    /// Signatures are good but the content hash does not match: the event
    /// must be replaced by its redacted form before anything uses it.
    SignaturesOnly,
}

/// One signature that must be checked for an event: message index into the
/// caller's bytes, the signature and the key.
struct Pending<'a> {
    event: usize,
    signature: &'a str,
    key: PublicKey,
}

/// Collects the signatures of `pdu` that must verify. Every signature from
/// a known key of a required server must be valid, and each required server
/// must have at least one.
fn pending_for<'a>(
    index: usize,
    pdu: &'a Pdu,
    keys: &impl KeyRing,
    out: &mut Vec<Pending<'a>>,
) -> Result<(), VerifyError> {
    for server in pdu.required_signers() {
        let sigs = signatures_of(pdu.json(), server.as_str())?;
        let before = out.len();
        for (key_id, signature) in sigs {
            if let Some(key) = keys.key(&server, key_id, pdu.origin_server_ts()) {
                out.push(Pending {
                    event: index,
                    signature,
                    key,
                });
            }
        }
        if out.len() == before {
            return Err(VerifyError::NoKnownKey(server.to_string()));
        }
    }
    Ok(())
}

fn hash_outcome(pdu: &Pdu) -> Verified {
    if pdu.content_hash_matches() {
        Verified::All
    } else {
        Verified::SignaturesOnly
    }
}

/// Checks one received event.
pub fn verify_pdu(pdu: &Pdu, keys: &impl KeyRing) -> Result<Verified, VerifyError> {
    let mut pending = Vec::with_capacity(2);
    pending_for(0, pdu, keys, &mut pending)?;
    let message = pdu.signed_bytes();
    for p in &pending {
        p.key.verify(&message, p.signature)?;
    }
    Ok(hash_outcome(pdu))
}

/// Checks many received events at once, with one batch verification over
/// all their signatures. Returns one outcome per event, in order.
pub fn verify_pdus(pdus: &[Pdu], keys: &impl KeyRing) -> Vec<Result<Verified, VerifyError>> {
    let mut outcomes: Vec<Result<Verified, VerifyError>> = Vec::with_capacity(pdus.len());
    let mut pending = Vec::with_capacity(pdus.len() + 4);
    for (i, pdu) in pdus.iter().enumerate() {
        let before = pending.len();
        match pending_for(i, pdu, keys, &mut pending) {
            Ok(()) => outcomes.push(Ok(Verified::All)),
            Err(e) => {
                pending.truncate(before);
                outcomes.push(Err(e));
            }
        }
    }
    let messages: Vec<Vec<u8>> = pdus
        .iter()
        .zip(&outcomes)
        .map(|(pdu, o)| {
            if o.is_ok() {
                pdu.signed_bytes()
            } else {
                Vec::new()
            }
        })
        .collect();
    let items: Vec<BatchItem<'_>> = pending
        .iter()
        .map(|p| BatchItem {
            message: &messages[p.event],
            signature: p.signature,
            key: &p.key,
        })
        .collect();
    for (p, result) in pending.iter().zip(verify_batch(&items)) {
        if let Err(e) = result
            && outcomes[p.event].is_ok()
        {
            outcomes[p.event] = Err(e);
        }
    }
    for (pdu, outcome) in pdus.iter().zip(outcomes.iter_mut()) {
        if outcome.is_ok() {
            *outcome = Ok(hash_outcome(pdu));
        }
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical_json::{Object, Value, parse_object};
    use crate::pdu::PduBuilder;
    use crate::room_version::RoomVersion;
    use crate::signing::KeyPair;
    use ruma::{OwnedServerName, UserId};
    use std::collections::BTreeMap;

    struct Keys(BTreeMap<(OwnedServerName, String), PublicKey>);

    impl KeyRing for Keys {
        fn key(&self, server: &ServerName, key_id: &str, _ts: i64) -> Option<PublicKey> {
            self.0.get(&(server.to_owned(), key_id.to_owned())).copied()
        }
    }

    fn key(server: u8) -> KeyPair {
        KeyPair::from_seed("1", &[server; 32]).expect("key")
    }

    fn keyring() -> Keys {
        Keys(BTreeMap::from([
            (
                (
                    ServerName::parse("a.test").expect("sn"),
                    "ed25519:1".to_owned(),
                ),
                key(1).public_key(),
            ),
            (
                (
                    ServerName::parse("b.test").expect("sn"),
                    "ed25519:1".to_owned(),
                ),
                key(2).public_key(),
            ),
        ]))
    }

    fn message(body: &str, origin: &str, k: &KeyPair) -> Pdu {
        let content = parse_object(format!(r#"{{"body":"{body}"}}"#).as_bytes()).expect("json");
        PduBuilder::new(
            "m.room.message",
            None,
            content,
            &UserId::parse(format!("@u:{origin}")).expect("user"),
            Some(&ruma::RoomId::parse("!r:a.test").expect("room")),
        )
        .build(RoomVersion::V11, origin, k)
        .expect("build")
    }

    fn tamper(pdu: &Pdu, f: impl FnOnce(&mut Object)) -> Pdu {
        let mut json = pdu.json().clone();
        f(&mut json);
        Pdu::from_object(RoomVersion::V11, json).expect("still well-formed")
    }

    #[test]
    fn single_and_batch_agree() {
        let keys = keyring();
        let good = message("hello", "a.test", &key(1));
        let forged = message("hello", "a.test", &key(9)); // a.test's name, wrong key
        let unknown = message("hi", "c.test", &key(3)); // no key known for c.test
        let edited = tamper(&good, |j| {
            j.insert(
                "content".into(),
                Value::Object(parse_object(br#"{"body":"edited"}"#).expect("json")),
            );
        });
        let changed_depth = tamper(&good, |j| {
            j.insert("depth".into(), Value::Integer(99));
        });
        let pdus = vec![
            good.clone(),
            forged,
            unknown,
            edited,
            changed_depth,
            message("x", "b.test", &key(2)),
        ];
        let expected = vec![
            Ok(Verified::All),
            Err(VerifyError::BadSignature),
            Err(VerifyError::NoKnownKey("c.test".into())),
            Ok(Verified::SignaturesOnly),
            Err(VerifyError::BadSignature),
            Ok(Verified::All),
        ];
        let single: Vec<_> = pdus.iter().map(|p| verify_pdu(p, &keys)).collect();
        assert_eq!(single, expected);
        assert_eq!(verify_pdus(&pdus, &keys), expected);
    }

    #[test]
    fn restricted_join_needs_the_authorising_server() {
        let keys = keyring();
        let content = parse_object(
            br#"{"membership":"join","join_authorised_via_users_server":"@admin:b.test"}"#,
        )
        .expect("json");
        let join = PduBuilder::new(
            "m.room.member",
            Some("@u:a.test"),
            content,
            &UserId::parse("@u:a.test").expect("user"),
            Some(&ruma::RoomId::parse("!r:a.test").expect("room")),
        )
        .build(RoomVersion::V11, "a.test", &key(1))
        .expect("build");
        assert_eq!(
            verify_pdu(&join, &keys),
            Err(VerifyError::NotSigned("b.test".into()))
        );
        let mut json = join.json().clone();
        crate::hashes::sign_event(
            crate::room_version::RedactionRules::V11,
            "b.test",
            &key(2),
            &mut json,
        );
        let cosigned = Pdu::from_object(RoomVersion::V11, json).expect("pdu");
        assert_eq!(verify_pdu(&cosigned, &keys), Ok(Verified::All));
        assert_eq!(verify_pdus(&[cosigned], &keys), vec![Ok(Verified::All)]);

        // The auth rules check the key on every membership, so a leave that
        // carries it needs that server's signature too.
        let leave = PduBuilder::new(
            "m.room.member",
            Some("@u:a.test"),
            parse_object(
                br#"{"membership":"leave","join_authorised_via_users_server":"@admin:b.test"}"#,
            )
            .expect("json"),
            &UserId::parse("@u:a.test").expect("user"),
            Some(&ruma::RoomId::parse("!r:a.test").expect("room")),
        )
        .build(RoomVersion::V11, "a.test", &key(1))
        .expect("build");
        assert_eq!(
            verify_pdu(&leave, &keys),
            Err(VerifyError::NotSigned("b.test".into()))
        );
    }
}
