//! Event ingest speed against the raw ed25519 limit.
//!
//! Run with `cargo bench -p myelin-proto --bench ingest`. Every case handles
//! the same 256 signed message events (about 450 bytes each) and reports
//! events per second:
//! - `raw_verify` / `raw_verify_batch`: ed25519-dalek alone on precomputed
//!   message bytes, the ceiling for any implementation;
//! - `ingest` / `ingest_batch`: what a server does per received event: parse
//!   canonical JSON, validate the PDU, compute its event ID (redaction +
//!   reference hash), redact again for the signed bytes, verify the
//!   signature, and check the content hash.

use std::collections::BTreeMap;

use divan::counter::ItemsCount;
use ed25519_dalek::{Signature, VerifyingKey};
use myelin_proto::base64;
use myelin_proto::canonical_json::parse_object;
use myelin_proto::pdu::{Pdu, PduBuilder};
use myelin_proto::room_version::RoomVersion;
use myelin_proto::signing::{KeyPair, PublicKey, signatures_of};
use myelin_proto::verify::{KeyRing, verify_pdu, verify_pdus};
use ruma::{OwnedServerName, RoomId, ServerName, UserId};

const EVENTS: usize = 256;

fn main() {
    divan::main();
}

struct Keys(BTreeMap<(OwnedServerName, String), PublicKey>);

impl KeyRing for Keys {
    fn key(&self, server: &ServerName, key_id: &str, _ts: i64) -> Option<PublicKey> {
        self.0.get(&(server.to_owned(), key_id.to_owned())).copied()
    }
}

struct Fixture {
    wire: Vec<Vec<u8>>,
    pdus: Vec<Pdu>,
    keys: Keys,
    raw: Vec<(Vec<u8>, Signature)>,
    raw_key: VerifyingKey,
}

fn fixture() -> Fixture {
    let key = KeyPair::from_seed("1", &[42; 32]).expect("key");
    let room = RoomId::parse(format!("!{}", "R".repeat(43))).expect("room");
    let sender = UserId::parse("@alice:a.test").expect("user");
    // The first event cites a made-up predecessor; only the format matters.
    let mut prev = format!("${}", "A".repeat(43));
    let mut pdus = Vec::with_capacity(EVENTS);
    for i in 0..EVENTS {
        let content = parse_object(
            format!(
                r#"{{"body":"message number {i}: the quick brown fox jumps over the lazy dog","msgtype":"m.text","m.mentions":{{}}}}"#
            )
            .as_bytes(),
        )
        .expect("content");
        let mut b = PduBuilder::new("m.room.message", None, content, &sender, Some(&room));
        b.prev_events = vec![prev.as_str().try_into().expect("id")];
        b.auth_events = vec![prev.as_str().try_into().expect("id")];
        b.depth = i as i64 + 1;
        b.origin_server_ts = 1_700_000_000_000 + i as i64;
        let pdu = b.build(RoomVersion::V12, "a.test", &key).expect("build");
        prev = pdu.event_id().to_string();
        pdus.push(pdu);
    }
    let wire = pdus.iter().map(Pdu::to_canonical_bytes).collect();
    let raw = pdus
        .iter()
        .map(|p| {
            let sig = signatures_of(p.json(), "a.test").expect("signed")["ed25519:1"];
            let sig = Signature::from_bytes(&base64::decode_array::<64>(sig).expect("sig"));
            (p.signed_bytes(), sig)
        })
        .collect();
    let keys = Keys(BTreeMap::from([(
        (
            ServerName::parse("a.test").expect("sn"),
            "ed25519:1".to_owned(),
        ),
        key.public_key(),
    )]));
    let raw_key = VerifyingKey::from_bytes(key.public_key().as_bytes()).expect("key");
    Fixture {
        wire,
        pdus,
        keys,
        raw,
        raw_key,
    }
}

#[divan::bench]
fn raw_verify(bencher: divan::Bencher) {
    let f = fixture();
    bencher.counter(ItemsCount::new(EVENTS)).bench(|| {
        for (msg, sig) in &f.raw {
            f.raw_key.verify_strict(msg, sig).expect("valid");
        }
    });
}

#[divan::bench]
fn raw_verify_batch(bencher: divan::Bencher) {
    let f = fixture();
    let messages: Vec<&[u8]> = f.raw.iter().map(|(m, _)| m.as_slice()).collect();
    let signatures: Vec<Signature> = f.raw.iter().map(|(_, s)| *s).collect();
    let keys = vec![f.raw_key; EVENTS];
    bencher.counter(ItemsCount::new(EVENTS)).bench(|| {
        ed25519_dalek::verify_batch(&messages, &signatures, &keys).expect("valid");
    });
}

#[divan::bench]
fn ingest(bencher: divan::Bencher) {
    let f = fixture();
    bencher.counter(ItemsCount::new(EVENTS)).bench(|| {
        for bytes in &f.wire {
            let pdu = Pdu::from_json(RoomVersion::V12, bytes).expect("parse");
            verify_pdu(&pdu, &f.keys).expect("valid");
        }
    });
}

#[divan::bench]
fn ingest_batch(bencher: divan::Bencher) {
    let f = fixture();
    bencher.counter(ItemsCount::new(EVENTS)).bench(|| {
        let pdus: Vec<Pdu> = f
            .wire
            .iter()
            .map(|b| Pdu::from_json(RoomVersion::V12, b).expect("parse"))
            .collect();
        for r in verify_pdus(&pdus, &f.keys) {
            r.expect("valid");
        }
    });
}

/// Parsing and hashing alone, to show where ingest time goes.
#[divan::bench]
fn parse_only(bencher: divan::Bencher) {
    let f = fixture();
    let _ = &f.pdus;
    bencher.counter(ItemsCount::new(EVENTS)).bench(|| {
        for bytes in &f.wire {
            divan::black_box(Pdu::from_json(RoomVersion::V12, bytes).expect("parse"));
        }
    });
}
