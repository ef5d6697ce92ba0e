//! End-to-end encryption through `/sync`, with real Olm and Megolm clients
//! (vodozemac) over HTTP, as Element does it:
//!
//! Alice and Bob publish their keys; Alice creates an encrypted room and
//! Bob joins. Alice claims Bob's one-time key, opens an Olm session and
//! shares a Megolm room key with him by `sendToDevice`; Bob, long-polling,
//! is woken with it, decrypts it and reads Alice's Megolm-encrypted
//! messages from his timeline. When Bob logs in a second device, Alice
//! learns it from `device_lists.changed`, shares the key with the new
//! device, which reads her next messages. The server stores no plaintext.
//! When Bob leaves, Alice sees him in `device_lists.left`.
//!
//! Also: to-device messages stay until the device syncs with a token past
//! them (a retried sync gets them again), and a full batch is cut at the
//! limit with the rest in the next sync.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::common::{Backend, Client, TestServer, enc, login_ok, register};
use crate::e2ee_support::{Device, signable};
use myelin_homeserver::storage::{Db, Sql as _};
use serde_json::{Value, json};
use vodozemac::megolm::{
    GroupSession, InboundGroupSession, MegolmMessage, SessionConfig as MegolmConfig, SessionKey,
};
use vodozemac::olm::{Message, OlmMessage, PreKeyMessage, Session, SessionConfig as OlmConfig};
use vodozemac::{Curve25519PublicKey, Ed25519PublicKey, Ed25519Signature};

const V3: &str = "/_matrix/client/v3";
const OLM: &str = "m.olm.v1.curve25519-aes-sha2";
const MEGOLM: &str = "m.megolm.v1.aes-sha2";
/// A long-poll timeout far beyond the test's waits: a response carrying
/// the data proves the request was woken, not timed out.
const LONG_MS: u64 = 20_000;

/// The positions of a sync token (`s<timeline>_..._<to-device>_<device
/// lists>`).
fn token_fields(token: &str) -> Vec<i64> {
    token
        .strip_prefix('s')
        .expect("a sync token")
        .split('_')
        .map(|f| f.parse().expect("a position"))
        .collect()
}

fn next_batch(resp: &Value) -> String {
    resp["next_batch"].as_str().expect("next_batch").to_owned()
}

async fn get_sync(client: &Client, since: Option<&str>, timeout_ms: u64) -> Value {
    let path = match since {
        Some(s) => format!("{V3}/sync?since={}&timeout={timeout_ms}", enc(s)),
        None => format!("{V3}/sync"),
    };
    let (status, resp) = client.get(&path).await;
    assert_eq!(status, 200, "{resp}");
    resp
}

/// Waits until `n` sync requests are waiting in their long-poll (the
/// server's own gauge), so what the test does next happens during the
/// wait.
async fn until_waiting(server: &TestServer, n: u32) {
    let want = format!("myelin_sync_waiting {n}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, text) = server.client().get_text("/metrics").await;
        if text.lines().any(|l| l == want) {
            return;
        }
        assert!(Instant::now() < deadline, "no sync is waiting:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One client device: its HTTP session, its Olm account and sessions, the
/// Megolm sessions it received, and its sync token.
pub(crate) struct Peer {
    pub(crate) http: Client,
    pub(crate) device: Device,
    pub(crate) since: Option<String>,
    olm: HashMap<String, Session>,
    megolm: HashMap<String, InboundGroupSession>,
}

impl Peer {
    pub(crate) fn new(http: Client, user_id: &str, device_id: &str) -> Self {
        Self {
            http,
            device: Device::new(user_id, device_id),
            since: None,
            olm: HashMap::new(),
            megolm: HashMap::new(),
        }
    }

    pub(crate) fn user(&self) -> &str {
        &self.device.user_id
    }

    pub(crate) fn curve(&self) -> String {
        self.device.account.identity_keys().curve25519.to_base64()
    }

    pub(crate) fn ed(&self) -> String {
        self.device.account.identity_keys().ed25519.to_base64()
    }

    /// Publishes the device keys, `n` one-time keys and a fallback key.
    pub(crate) async fn publish_keys(&mut self, n: usize) {
        let body = json!({
            "device_keys": self.device.device_keys(),
            "one_time_keys": self.device.one_time_keys(n),
            "fallback_keys": self.device.fallback_key(),
        });
        let (status, resp) = self.http.post(&format!("{V3}/keys/upload"), &body).await;
        assert_eq!(status, 200, "{resp}");
        assert_eq!(
            resp["one_time_key_counts"]["signed_curve25519"], n,
            "{resp}"
        );
    }

    /// Syncs from the last token without waiting, and keeps the new one.
    pub(crate) async fn sync(&mut self) -> Value {
        let resp = get_sync(&self.http, self.since.as_deref(), 0).await;
        self.since = Some(next_batch(&resp));
        resp
    }

    /// The device keys of `user`'s devices, as `/keys/query` gives them.
    pub(crate) async fn query(&self, user: &str) -> serde_json::Map<String, Value> {
        let (status, resp) = self
            .http
            .post(
                &format!("{V3}/keys/query"),
                &json!({ "device_keys": { user: [] } }),
            )
            .await;
        assert_eq!(status, 200, "{resp}");
        resp["device_keys"][user]
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    /// Claims a one-time key of a device and checks the device signed it,
    /// as clients do before trusting it.
    pub(crate) async fn claim(
        &self,
        user: &str,
        device: &str,
        device_ed: &str,
    ) -> Curve25519PublicKey {
        let (status, resp) = self
            .http
            .post(
                &format!("{V3}/keys/claim"),
                &json!({ "one_time_keys": { user: { device: "signed_curve25519" } } }),
            )
            .await;
        assert_eq!(status, 200, "{resp}");
        let keys = resp["one_time_keys"][user][device]
            .as_object()
            .unwrap_or_else(|| panic!("a key for {device}: {resp}"));
        let (id, key) = keys.iter().next().expect("one key");
        assert!(id.starts_with("signed_curve25519:"), "{resp}");
        let signature = key["signatures"][user][format!("ed25519:{device}")]
            .as_str()
            .expect("signed");
        Ed25519PublicKey::from_base64(device_ed)
            .expect("ed25519 key")
            .verify(
                signable(key).as_bytes(),
                &Ed25519Signature::from_base64(signature).expect("signature"),
            )
            .expect("the one-time key is signed by the device");
        Curve25519PublicKey::from_base64(key["key"].as_str().expect("key")).expect("curve key")
    }

    /// Shares a Megolm room key with one device of another user over a new
    /// Olm session (an `m.room_key` inside `m.room.encrypted`). Returns the
    /// session key shared.
    pub(crate) async fn share_room_key(
        &mut self,
        to: (&str, &str),
        to_keys: (&str, &str),
        otk: Curve25519PublicKey,
        room: &str,
        group: &GroupSession,
        txn: &str,
    ) -> String {
        let (user, device) = to;
        let (their_curve, their_ed) = to_keys;
        let curve = Curve25519PublicKey::from_base64(their_curve).expect("curve key");
        let mut session = self
            .device
            .account
            .create_outbound_session(OlmConfig::version_1(), curve, otk)
            .expect("outbound Olm session");
        let session_key = group.session_key().to_base64();
        let payload = json!({
            "type": "m.room_key",
            "content": {
                "algorithm": MEGOLM,
                "room_id": room,
                "session_id": group.session_id(),
                "session_key": session_key,
            },
            "sender": self.user(),
            "sender_device": self.device.device_id,
            "keys": { "ed25519": self.ed() },
            "recipient": user,
            "recipient_keys": { "ed25519": their_ed },
        });
        let (kind, body) = match session.encrypt(payload.to_string()).expect("encrypt") {
            OlmMessage::PreKey(m) => (0, m.to_base64()),
            OlmMessage::Normal(m) => (1, m.to_base64()),
        };
        self.olm.insert(their_curve.to_owned(), session);
        let content = json!({
            "algorithm": OLM,
            "sender_key": self.curve(),
            "ciphertext": { their_curve: { "type": kind, "body": body } },
        });
        let (status, resp) = self
            .http
            .put(
                &format!("{V3}/sendToDevice/m.room.encrypted/{}", enc(txn)),
                &json!({ "messages": { user: { device: content } } }),
            )
            .await;
        assert_eq!(status, 200, "{resp}");
        session_key
    }

    /// Decrypts the Olm-encrypted to-device events of a sync response and
    /// keeps the room keys among them. Returns the decrypted payloads.
    pub(crate) fn receive_to_device(&mut self, resp: &Value) -> Vec<Value> {
        let mut out = Vec::new();
        let events = resp["to_device"]["events"].as_array().cloned();
        for event in events.unwrap_or_default() {
            assert_eq!(event["type"], "m.room.encrypted", "{event}");
            let content = &event["content"];
            assert_eq!(content["algorithm"], OLM, "{event}");
            let sender_key = content["sender_key"].as_str().expect("sender_key");
            let mine = &content["ciphertext"][self.curve()];
            let body = mine["body"].as_str().expect("ciphertext for this device");
            let plaintext = if mine["type"] == 0 {
                let pre_key = PreKeyMessage::from_base64(body).expect("pre-key message");
                let created = self
                    .device
                    .account
                    .create_inbound_session(
                        OlmConfig::version_1(),
                        Curve25519PublicKey::from_base64(sender_key).expect("curve key"),
                        &pre_key,
                    )
                    .expect("inbound Olm session");
                self.olm.insert(sender_key.to_owned(), created.session);
                created.plaintext
            } else {
                let message = Message::from_base64(body).expect("Olm message");
                self.olm
                    .get_mut(sender_key)
                    .expect("a session with the sender")
                    .decrypt(&OlmMessage::Normal(message))
                    .expect("decrypt")
            };
            let payload: Value = serde_json::from_slice(&plaintext).expect("JSON payload");
            // What clients check before trusting a room key.
            assert_eq!(payload["sender"], event["sender"], "{payload}");
            assert_eq!(payload["recipient"], self.user(), "{payload}");
            assert_eq!(payload["recipient_keys"]["ed25519"], self.ed(), "{payload}");
            if payload["type"] == "m.room_key" {
                let key = &payload["content"];
                assert_eq!(key["algorithm"], MEGOLM);
                let session_key =
                    SessionKey::from_base64(key["session_key"].as_str().expect("session_key"))
                        .expect("session key");
                let inbound = InboundGroupSession::new(&session_key, MegolmConfig::version_1());
                assert_eq!(inbound.session_id(), key["session_id"], "{payload}");
                self.megolm.insert(inbound.session_id(), inbound);
            }
            out.push(payload);
        }
        out
    }

    /// Decrypts a Megolm-encrypted room event: its payload, or `None` when
    /// this device holds no key for the message.
    pub(crate) fn decrypt(&mut self, event: &Value) -> Option<Value> {
        let content = &event["content"];
        assert_eq!(event["type"], "m.room.encrypted", "{event}");
        assert_eq!(content["algorithm"], MEGOLM, "{event}");
        assert!(content.get("body").is_none(), "no plaintext: {event}");
        let session = self
            .megolm
            .get_mut(content["session_id"].as_str().expect("session_id"))?;
        let message =
            MegolmMessage::from_base64(content["ciphertext"].as_str().expect("ciphertext"))
                .expect("Megolm message");
        let decrypted = session.decrypt(&message).ok()?;
        Some(serde_json::from_slice(&decrypted.plaintext).expect("JSON payload"))
    }
}

/// Sends a Megolm-encrypted message to `room`; returns its ciphertext.
pub(crate) async fn send_encrypted(
    alice: &Peer,
    group: &mut GroupSession,
    room: &str,
    txn: &str,
    body: &str,
) -> String {
    let payload = json!({
        "type": "m.room.message",
        "content": { "msgtype": "m.text", "body": body },
        "room_id": room,
    });
    let ciphertext = group.encrypt(payload.to_string()).to_base64();
    let (status, resp) = alice
        .http
        .put(
            &format!(
                "{V3}/rooms/{}/send/m.room.encrypted/{}",
                enc(room),
                enc(txn)
            ),
            &json!({
                "algorithm": MEGOLM,
                "sender_key": alice.curve(),
                "ciphertext": ciphertext,
                "session_id": group.session_id(),
                "device_id": alice.device.device_id,
            }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    ciphertext
}

/// The decrypted bodies of the encrypted messages in a room's timeline
/// (`None` for those the device cannot decrypt).
pub(crate) fn read_timeline(peer: &mut Peer, resp: &Value, room: &str) -> Vec<Option<String>> {
    let events = resp["rooms"]["join"][room]["timeline"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    events
        .iter()
        .filter(|e| e["type"] == "m.room.encrypted")
        .map(|e| {
            peer.decrypt(e).map(|p| {
                assert_eq!(p["room_id"], room, "{p}");
                p["content"]["body"].as_str().expect("body").to_owned()
            })
        })
        .collect()
}

fn users(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

async fn encrypted_room_story(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    let (alice_id, alice_token, alice_dev) = register(&client, "alice", "pw-alice").await;
    let (bob_id, bob_token, bob_dev) = register(&client, "bob", "pw-bob").await;
    let mut alice = Peer::new(client.with_token(&alice_token), &alice_id, &alice_dev);
    let mut bob = Peer::new(client.with_token(&bob_token), &bob_id, &bob_dev);
    alice.publish_keys(5).await;
    bob.publish_keys(5).await;

    // Initial syncs: key counts and fallback key types, no device lists.
    let resp = bob.sync().await;
    assert_eq!(resp["device_one_time_keys_count"]["signed_curve25519"], 5);
    assert_eq!(
        resp["device_unused_fallback_key_types"],
        json!(["signed_curve25519"])
    );
    assert!(resp.get("device_lists").is_none(), "{resp}");
    let fields = token_fields(bob.since.as_deref().expect("token"));
    // Six streams up to the device lists; later streams (presence) follow.
    assert!(fields.len() >= 6, "{fields:?}");
    assert!(fields[5] > 0, "device-list position in {fields:?}");
    alice.sync().await;

    // Alice creates an encrypted room and invites Bob, who joins.
    let (status, resp) = alice
        .http
        .post(
            &format!("{V3}/createRoom"),
            &json!({
                "preset": "private_chat",
                "invite": [bob_id],
                "initial_state": [{
                    "type": "m.room.encryption", "state_key": "",
                    "content": { "algorithm": MEGOLM },
                }],
            }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let room = resp["room_id"].as_str().expect("room_id").to_owned();
    let resp = bob.sync().await;
    assert!(resp["rooms"]["invite"].get(&room).is_some(), "{resp}");
    let (status, resp) = bob
        .http
        .post(&format!("{V3}/join/{}", enc(&room)), &json!({}))
        .await;
    assert_eq!(status, 200, "{resp}");

    // Each learns that the other's devices are new to them.
    let resp = alice.sync().await;
    assert_eq!(users(&resp["device_lists"]["changed"]), [bob_id.as_str()]);
    let resp = bob.sync().await;
    assert!(
        users(&resp["device_lists"]["changed"]).contains(&alice_id.as_str()),
        "{resp}"
    );
    // Bob's client sees the room is encrypted (in its state or timeline).
    let joined = &resp["rooms"]["join"][&room];
    let events: Vec<Value> = ["state", "timeline"]
        .iter()
        .flat_map(|s| joined[s]["events"].as_array().cloned().unwrap_or_default())
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "m.room.encryption" && e["content"]["algorithm"] == MEGOLM),
        "{resp}"
    );

    // Alice finds Bob's device and claims a one-time key: Bob's count drops.
    let devices = alice.query(&bob_id).await;
    let bob_keys = &devices[&bob_dev]["keys"];
    let bob_curve = bob_keys[format!("curve25519:{bob_dev}")]
        .as_str()
        .expect("curve25519")
        .to_owned();
    let bob_ed = bob_keys[format!("ed25519:{bob_dev}")]
        .as_str()
        .expect("ed25519")
        .to_owned();
    assert_eq!(
        (bob_curve.as_str(), bob_ed.as_str()),
        (&*bob.curve(), &*bob.ed())
    );
    let otk = alice.claim(&bob_id, &bob_dev, &bob_ed).await;
    let resp = bob.sync().await;
    assert_eq!(resp["device_one_time_keys_count"]["signed_curve25519"], 4);

    // Bob long-polls; Alice's room key reaches him in that very request.
    let old_token = bob.since.clone().expect("token");
    let waiting = {
        let http = bob.http.clone();
        let since = old_token.clone();
        tokio::spawn(async move { get_sync(&http, Some(&since), LONG_MS).await })
    };
    until_waiting(&server, 1).await;
    let mut group = GroupSession::new(MegolmConfig::version_1());
    let mut shared_keys = Vec::new();
    let shared = alice
        .share_room_key(
            (bob_id.as_str(), bob_dev.as_str()),
            (bob_curve.as_str(), bob_ed.as_str()),
            otk,
            &room,
            &group,
            "key-1",
        )
        .await;
    shared_keys.push(shared);
    let woken = waiting.await.expect("long-poll");
    let delivered = woken["to_device"]["events"].clone();
    assert_eq!(delivered.as_array().map(Vec::len), Some(1), "{woken}");
    assert_eq!(delivered[0]["sender"], alice_id);
    let new_token = next_batch(&woken);
    assert!(
        token_fields(&new_token)[4] > token_fields(&old_token)[4],
        "{new_token} after {old_token}"
    );

    // Not acknowledged yet: a retry with the old token gets it again.
    let retried = get_sync(&bob.http, Some(&old_token), 0).await;
    assert_eq!(retried["to_device"]["events"], delivered, "{retried}");
    let payloads = bob.receive_to_device(&retried);
    assert_eq!(payloads.len(), 1);
    assert_eq!(payloads[0]["type"], "m.room_key");
    assert_eq!(payloads[0]["content"]["room_id"], room);
    // The new token acknowledges it: gone for good.
    bob.since = Some(new_token);
    let resp = bob.sync().await;
    assert!(resp.get("to_device").is_none(), "{resp}");
    assert!(get_sync(&bob.http, Some(&old_token), 0).await["to_device"].is_null());

    // Alice's encrypted messages: Bob reads them from his timeline.
    let mut ciphertexts = Vec::new();
    let mut secrets = Vec::new();
    for (i, body) in ["the tea is at five", "bring the good cups"]
        .into_iter()
        .enumerate()
    {
        ciphertexts.push(send_encrypted(&alice, &mut group, &room, &format!("m{i}"), body).await);
        secrets.push(body.to_owned());
    }
    let resp = bob.sync().await;
    assert_eq!(
        read_timeline(&mut bob, &resp, &room),
        [Some(secrets[0].clone()), Some(secrets[1].clone())]
    );

    // Bob logs in a second device and publishes its keys.
    let (bob2_token, bob2_dev) = login_ok(&client, "bob", "pw-bob").await;
    let mut bob2 = Peer::new(client.with_token(&bob2_token), &bob_id, &bob2_dev);
    bob2.publish_keys(3).await;
    let resp = alice.sync().await;
    assert_eq!(
        users(&resp["device_lists"]["changed"]),
        [bob_id.as_str()],
        "{resp}"
    );
    let resp = bob.sync().await;
    assert!(
        users(&resp["device_lists"]["changed"]).contains(&bob_id.as_str()),
        "Bob's own new device: {resp}"
    );

    // Alice queries Bob again, finds the new device and shares the key.
    let devices = alice.query(&bob_id).await;
    assert_eq!(devices.len(), 2, "{devices:?}");
    let bob2_keys = &devices[&bob2_dev]["keys"];
    let bob2_curve = bob2_keys[format!("curve25519:{bob2_dev}")]
        .as_str()
        .expect("curve25519")
        .to_owned();
    let bob2_ed = bob2_keys[format!("ed25519:{bob2_dev}")]
        .as_str()
        .expect("ed25519")
        .to_owned();
    let otk = alice.claim(&bob_id, &bob2_dev, &bob2_ed).await;
    let shared = alice
        .share_room_key(
            (bob_id.as_str(), bob2_dev.as_str()),
            (bob2_curve.as_str(), bob2_ed.as_str()),
            otk,
            &room,
            &group,
            "key-2",
        )
        .await;
    shared_keys.push(shared);
    let third = "the cups are in the blue cupboard";
    ciphertexts.push(send_encrypted(&alice, &mut group, &room, "m2", third).await);
    secrets.push(third.to_owned());

    // The new device gets the key (only for what follows) and reads the
    // new message; the first device reads it too.
    let resp = bob2.sync().await;
    assert_eq!(resp["device_one_time_keys_count"]["signed_curve25519"], 2);
    let payloads = bob2.receive_to_device(&resp);
    assert_eq!(payloads.len(), 1, "{resp}");
    assert_eq!(
        read_timeline(&mut bob2, &resp, &room),
        [None, None, Some(third.to_owned())]
    );
    let resp = bob.sync().await;
    assert!(resp.get("to_device").is_none(), "{resp}");
    assert_eq!(
        read_timeline(&mut bob, &resp, &room),
        [Some(third.to_owned())]
    );

    // The server stored ciphertext only: no message, no room key in clear.
    let db = Db::connect(&server.db_url, 2).await.expect("db");
    let mut stored = String::new();
    for (table, column) in [("events", "json"), ("to_device_inbox", "content")] {
        for row in db
            .query_all(&format!("SELECT {column} AS v FROM {table}"), [])
            .await
            .expect("read")
        {
            stored.push_str(&row.try_get::<String>("", "v").expect("text"));
            stored.push('\n');
        }
    }
    for ciphertext in &ciphertexts {
        assert!(stored.contains(ciphertext.as_str()), "events were read");
    }
    // (Whole sentences and keys: a short word could occur in base64.)
    for secret in secrets.iter().chain(&shared_keys) {
        assert!(
            !stored.contains(secret.as_str()),
            "{secret:?} is stored in clear"
        );
    }

    // Bob leaves the only room he shares with Alice: she stops tracking him.
    let (status, resp) = bob
        .http
        .post(&format!("{V3}/rooms/{}/leave", enc(&room)), &json!({}))
        .await;
    assert_eq!(status, 200, "{resp}");
    let resp = alice.sync().await;
    assert_eq!(users(&resp["device_lists"]["left"]), [bob_id.as_str()]);
    assert!(
        !users(&resp["device_lists"]["changed"]).contains(&bob_id.as_str()),
        "{resp}"
    );
}

async fn to_device_batches_and_acknowledgement(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    let (alice_id, alice_token, alice_dev) = register(&client, "alice", "pw-alice").await;
    let (_, bob_token, _) = register(&client, "bob", "pw-bob").await;
    let as_alice = client.with_token(&alice_token);
    let as_bob = client.with_token(&bob_token);

    // More messages than one response carries.
    const SENT: usize = 105;
    for n in 0..SENT {
        let (status, resp) = as_bob
            .put(
                &format!("{V3}/sendToDevice/org.example.ping/t{n}"),
                &json!({ "messages": { alice_id.clone(): { alice_dev.clone(): { "n": n } } } }),
            )
            .await;
        assert_eq!(status, 200, "{resp}");
    }
    let ns = |resp: &Value| -> Vec<u64> {
        resp["to_device"]["events"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| e["content"]["n"].as_u64().expect("n"))
                    .collect()
            })
            .unwrap_or_default()
    };

    // The first batch is cut at 100; the token points just after it.
    let first = get_sync(&as_alice, None, 0).await;
    assert_eq!(ns(&first), (0..100).collect::<Vec<u64>>());
    assert_eq!(first["to_device"]["events"][0]["type"], "org.example.ping");
    let cut = next_batch(&first);
    // The rest comes at once, even to a request willing to wait.
    let second = get_sync(&as_alice, Some(&cut), LONG_MS).await;
    assert_eq!(ns(&second), (100..SENT as u64).collect::<Vec<u64>>());
    assert!(token_fields(&next_batch(&second))[4] > token_fields(&cut)[4]);

    // Retrying the first token repeats the rest; the first batch is gone,
    // acknowledged by that token.
    let again = get_sync(&as_alice, Some(&cut), 0).await;
    assert_eq!(ns(&again), ns(&second));
    let initial = get_sync(&as_alice, None, 0).await;
    assert_eq!(ns(&initial), ns(&second), "only the unacknowledged rest");

    // The last token acknowledges everything.
    let done = get_sync(&as_alice, Some(&next_batch(&second)), 0).await;
    assert!(ns(&done).is_empty(), "{done}");
    assert!(ns(&get_sync(&as_alice, None, 0).await).is_empty());
    // Key counts are in every response, also with no keys at all.
    assert_eq!(
        done["device_one_time_keys_count"],
        json!({"signed_curve25519": 0})
    );
    assert_eq!(done["device_unused_fallback_key_types"], json!([]));

    // A bad token is refused before anything is acknowledged.
    let (status, resp) = as_alice.get(&format!("{V3}/sync?since=s1_x")).await;
    assert_eq!(status, 400, "{resp}");
    assert_eq!(resp["errcode"], "M_INVALID_PARAM");
    let (status, resp) = as_alice
        .get(&format!("{V3}/keys/changes?from=nope&to={}", enc(&cut)))
        .await;
    assert_eq!(status, 400, "{resp}");
    assert_eq!(resp["errcode"], "M_INVALID_PARAM");
}

backend_tests!(encrypted_room_story, to_device_batches_and_acknowledgement);
