//! The path every event from another server takes: parse as a PDU of some
//! room version, compute IDs and hashes, redact, and verify signatures. Any
//! input must give a typed error or a result, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use myelin_proto::pdu::Pdu;
use myelin_proto::room_version::RoomVersion;
use myelin_proto::signing::{KeyPair, PublicKey};
use myelin_proto::verify::{KeyRing, verify_pdu, verify_pdus};
use ruma::ServerName;

struct OneKey(PublicKey);

impl KeyRing for OneKey {
    fn key(&self, _server: &ServerName, key_id: &str, _ts: i64) -> Option<PublicKey> {
        (key_id == "ed25519:1").then_some(self.0)
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, json)) = data.split_first() else {
        return;
    };
    let version = RoomVersion::ALL[selector as usize % RoomVersion::ALL.len()];
    let Ok(pdu) = Pdu::from_json(version, json) else {
        return;
    };
    let keys = OneKey(
        KeyPair::from_seed("1", &[1; 32])
            .expect("fixed seed")
            .public_key(),
    );
    let single = verify_pdu(&pdu, &keys);
    let batch = verify_pdus(std::slice::from_ref(&pdu), &keys);
    assert_eq!(batch, vec![single]);
    let redacted = pdu.redacted();
    assert_eq!(redacted.event_id(), pdu.event_id());
    let again = Pdu::from_json(version, &pdu.to_canonical_bytes()).expect("round trip");
    assert_eq!(again, pdu);
    let _ = (pdu.required_signers(), pdu.content_hash_matches(), pdu.signed_bytes());
});
