//! Alice and Bob, each with a real Olm account (vodozemac), publish their
//! device and one-time keys; Bob finds Alice's device, claims a one-time
//! key, starts an Olm session and sends her an encrypted to-device message,
//! which Alice's device reads (through the interface sync uses) and
//! decrypts. One-time keys are never handed out twice, even under
//! concurrent claims, and bad key uploads get the spec's errors.

use std::collections::BTreeSet;

use crate::common::{Backend, Client, TestServer, assert_error, enc, register};
use crate::e2ee_support::Device;
use myelin_homeserver::e2ee;
use myelin_homeserver::storage::Db;
use myelin_homeserver::storage::streams::{Stream, current_position};
use serde_json::{Value, json};
use vodozemac::Curve25519PublicKey;
use vodozemac::olm::{OlmMessage, PreKeyMessage, SessionConfig};

const OLM: &str = "m.olm.v1.curve25519-aes-sha2";

async fn upload(client: &Client, body: &Value) -> Value {
    let (status, resp) = client.post("/_matrix/client/v3/keys/upload", body).await;
    assert_eq!(status, 200, "{resp}");
    resp
}

async fn claim(client: &Client, user: &str, device: &str) -> (String, Value) {
    let (status, resp) = client
        .post(
            "/_matrix/client/v3/keys/claim",
            &json!({ "one_time_keys": { user: { device: "signed_curve25519" } } }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let keys = resp["one_time_keys"][user][device]
        .as_object()
        .unwrap_or_else(|| panic!("a key for {device}: {resp}"));
    assert_eq!(keys.len(), 1, "{resp}");
    let (id, key) = keys.iter().next().expect("one key");
    (id.clone(), key.clone())
}

async fn olm_session_over_the_server(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    let (alice_id, alice_token, alice_dev) = register(&client, "alice", "pw-alice").await;
    let (bob_id, bob_token, bob_dev) = register(&client, "bob", "pw-bob").await;
    let as_alice = client.with_token(&alice_token);
    let as_bob = client.with_token(&bob_token);
    let mut alice = Device::new(&alice_id, &alice_dev);
    let bob = Device::new(&bob_id, &bob_dev);

    let otks = alice.one_time_keys(5);
    let fallback = alice.fallback_key();
    let resp = upload(
        &as_alice,
        &json!({ "device_keys": alice.device_keys(), "one_time_keys": otks, "fallback_keys": fallback }),
    )
    .await;
    assert_eq!(resp["one_time_key_counts"]["signed_curve25519"], 5);
    upload(&as_bob, &json!({ "device_keys": bob.device_keys() })).await;

    // Retrying the same upload is harmless; reusing a key ID for another
    // key is refused.
    let resp = upload(&as_alice, &json!({ "one_time_keys": otks })).await;
    assert_eq!(resp["one_time_key_counts"]["signed_curve25519"], 5);
    let (first_id, _) = otks
        .as_object()
        .expect("keys")
        .iter()
        .next()
        .expect("a key");
    let resp = as_alice
        .post(
            "/_matrix/client/v3/keys/upload",
            &json!({ "one_time_keys": { first_id.clone(): { "key": "AAAA" } } }),
        )
        .await;
    assert_eq!(resp.0.as_u16(), 400, "{}", resp.1);

    // Bob sees Alice's device, signed by itself, with its display name.
    let (status, _) = as_alice
        .put(
            &format!("/_matrix/client/v3/devices/{alice_dev}"),
            &json!({ "display_name": "Alice's phone" }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, resp) = as_bob
        .post(
            "/_matrix/client/v3/keys/query",
            &json!({ "device_keys": { alice_id.clone(): [] , "@nobody:test.localhost": [] } }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let dev = &resp["device_keys"][&alice_id][&alice_dev];
    let ed_key = format!("ed25519:{alice_dev}");
    assert_eq!(
        dev["keys"][&ed_key],
        alice.account.identity_keys().ed25519.to_base64()
    );
    assert!(dev["signatures"][&alice_id][&ed_key].is_string(), "{resp}");
    assert_eq!(
        dev["unsigned"]["device_display_name"], "Alice's phone",
        "{resp}"
    );
    assert!(resp["device_keys"].get("@nobody:test.localhost").is_none());
    // Asking for one device that does not exist gives nothing for it.
    let (_, resp) = as_bob
        .post(
            "/_matrix/client/v3/keys/query",
            &json!({ "device_keys": { alice_id.clone(): ["NOSUCHDEVICE"] } }),
        )
        .await;
    assert!(
        resp["device_keys"][&alice_id].get(&alice_dev).is_none(),
        "{resp}"
    );

    // Bob claims a one-time key and starts an Olm session with it.
    let (key_id, key) = claim(&as_bob, &alice_id, &alice_dev).await;
    assert!(otks.get(&key_id).is_some(), "claimed an uploaded key");
    let alice_curve = alice.account.identity_keys().curve25519;
    let otk = Curve25519PublicKey::from_base64(key["key"].as_str().expect("key")).expect("otk");
    let mut session = bob
        .account
        .create_outbound_session(SessionConfig::version_1(), alice_curve, otk)
        .expect("outbound session");
    let OlmMessage::PreKey(message) = session.encrypt("hello alice").expect("encrypt") else {
        panic!("first message is a pre-key message");
    };
    let content = json!({
        "algorithm": OLM,
        "sender_key": bob.account.identity_keys().curve25519.to_base64(),
        "ciphertext": { alice_curve.to_base64(): { "type": 0, "body": message.to_base64() } },
    });
    let send = format!(
        "/_matrix/client/v3/sendToDevice/m.room.encrypted/{}",
        enc("txn1")
    );
    let body = json!({ "messages": { alice_id.clone(): { alice_dev.clone(): content } } });
    let (status, resp) = as_bob.put(&send, &body).await;
    assert_eq!(status, 200, "{resp}");
    // The same transaction again stores nothing new.
    let (status, _) = as_bob.put(&send, &body).await;
    assert_eq!(status, 200);

    // Alice's device reads it as sync will, and decrypts it.
    let db = Db::connect(&server.db_url, 2).await.expect("db");
    let until = current_position(&db, Stream::ToDevice)
        .await
        .expect("position");
    let (events, next) = e2ee::to_device_for_sync(&db, &alice_id, &alice_dev, 0, until, 100)
        .await
        .expect("for_sync");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(next, until);
    assert_eq!(events[0]["sender"], bob_id);
    assert_eq!(events[0]["type"], "m.room.encrypted");
    let body = events[0]["content"]["ciphertext"][alice_curve.to_base64()]["body"]
        .as_str()
        .expect("body");
    let pre_key = PreKeyMessage::from_base64(body).expect("pre-key message");
    let result = alice
        .account
        .create_inbound_session(
            SessionConfig::version_1(),
            bob.account.identity_keys().curve25519,
            &pre_key,
        )
        .expect("inbound session");
    assert_eq!(result.plaintext, b"hello alice");

    // Once acknowledged the message is gone; nothing for Bob's device.
    e2ee::acknowledge(&db, &alice_id, &alice_dev, next)
        .await
        .expect("ack");
    let (events, _) = e2ee::to_device_for_sync(&db, &alice_id, &alice_dev, 0, until, 100)
        .await
        .expect("for_sync");
    assert!(events.is_empty());
    let counts = e2ee::sync_key_counts(&db, &alice_id, &alice_dev)
        .await
        .expect("counts")
        .0;
    assert_eq!(counts.get("signed_curve25519"), Some(&4));

    // `*` reaches every device of the user, each in its own inbox, in order.
    let (second_token, second_dev) = crate::common::login_ok(&client, "alice", "pw-alice").await;
    let _ = second_token;
    for (i, txn) in ["a", "b"].iter().enumerate() {
        let (status, resp) = as_bob
            .put(
                &format!("/_matrix/client/v3/sendToDevice/org.example.ping/{txn}"),
                &json!({ "messages": { alice_id.clone(): { "*": { "n": i } } } }),
            )
            .await;
        assert_eq!(status, 200, "{resp}");
    }
    let until = current_position(&db, Stream::ToDevice)
        .await
        .expect("position");
    for dev in [&alice_dev, &second_dev] {
        let (events, _) = e2ee::to_device_for_sync(&db, &alice_id, dev, next, until, 100)
            .await
            .expect("for_sync");
        let ns: Vec<&Value> = events.iter().map(|e| &e["content"]["n"]).collect();
        assert_eq!(ns, [&json!(0), &json!(1)], "{dev}");
    }
    // Messages for users on other servers wait in the outbox, grouped by
    // destination as the federation EDU carries them.
    let (status, resp) = as_bob
        .put(
            "/_matrix/client/v3/sendToDevice/org.example.ping/remote1",
            &json!({ "messages": { "@zoe:remote.example": { "ZDEV": { "n": 9 } } } }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let queued = myelin_homeserver::storage::to_device::outbox(&db, "remote.example", 10)
        .await
        .expect("outbox");
    assert_eq!(queued.len(), 1);
    let messages: Value = serde_json::from_str(&queued[0].messages).expect("json");
    assert_eq!(messages["@zoe:remote.example"]["ZDEV"]["n"], 9);

    // A limit cuts the batch and says where to go on.
    let (events, cut) = e2ee::to_device_for_sync(&db, &alice_id, &second_dev, next, until, 1)
        .await
        .expect("for_sync");
    assert_eq!(events.len(), 1);
    assert!(cut < until);
    let (events, _) = e2ee::to_device_for_sync(&db, &alice_id, &second_dev, cut, until, 10)
        .await
        .expect("for_sync");
    assert_eq!(events[0]["content"]["n"], 1);

    // Logging out a device deletes its keys, inbox and one-time keys, and
    // is a device-list change.
    let before = current_position(&db, Stream::DeviceLists)
        .await
        .expect("position");
    let as_second = client.with_token(&second_token);
    let mut second = Device::new(&alice_id, &second_dev);
    upload(
        &as_second,
        &json!({ "device_keys": second.device_keys(), "one_time_keys": second.one_time_keys(2) }),
    )
    .await;
    let (status, _) = as_second
        .post("/_matrix/client/v3/logout", &json!({}))
        .await;
    assert_eq!(status, 200);
    assert!(
        current_position(&db, Stream::DeviceLists)
            .await
            .expect("position")
            >= before + 2
    );
    let (_, resp) = as_bob
        .post(
            "/_matrix/client/v3/keys/query",
            &json!({ "device_keys": { alice_id.clone(): [] } }),
        )
        .await;
    let devices: BTreeSet<&String> = resp["device_keys"][&alice_id]
        .as_object()
        .expect("devices")
        .keys()
        .collect();
    assert_eq!(devices, BTreeSet::from([&alice_dev]));
    let (events, _) = e2ee::to_device_for_sync(&db, &alice_id, &second_dev, 0, i64::MAX, 100)
        .await
        .expect("for_sync");
    assert!(events.is_empty());
    let counts = e2ee::sync_key_counts(&db, &alice_id, &second_dev)
        .await
        .expect("counts")
        .0;
    assert_eq!(counts.get("signed_curve25519"), Some(&0));
}

async fn concurrent_claims_never_share_a_key(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    let (alice_id, alice_token, alice_dev) = register(&client, "alice", "pw-alice").await;
    let (_, bob_token, _) = register(&client, "bob", "pw-bob").await;
    let as_alice = client.with_token(&alice_token);
    let mut alice = Device::new(&alice_id, &alice_dev);
    let otks = alice.one_time_keys(10);
    let fallback = alice.fallback_key();
    let (fallback_id, fallback_key) = fallback
        .as_object()
        .expect("fallback")
        .iter()
        .next()
        .map(|(id, key)| (id.clone(), key.clone()))
        .expect("one");
    upload(
        &as_alice,
        &json!({ "device_keys": alice.device_keys(), "one_time_keys": otks, "fallback_keys": fallback }),
    )
    .await;
    let db = Db::connect(&server.db_url, 2).await.expect("db");
    assert_eq!(
        e2ee::sync_key_counts(&db, &alice_id, &alice_dev)
            .await
            .expect("types")
            .1,
        vec!["signed_curve25519".to_owned()]
    );

    let mut tasks = Vec::new();
    for _ in 0..20 {
        let as_bob = client.with_token(&bob_token);
        let (alice_id, alice_dev) = (alice_id.clone(), alice_dev.clone());
        tasks.push(tokio::spawn(async move {
            claim(&as_bob, &alice_id, &alice_dev).await
        }));
    }
    let mut one_time = BTreeSet::new();
    let mut fallbacks = 0;
    for t in tasks {
        let (id, key) = t.await.expect("claim task");
        if key == fallback_key {
            assert_eq!(id, fallback_id);
            fallbacks += 1;
        } else {
            assert_eq!(otks.get(&id), Some(&key), "{id} was uploaded");
            assert!(one_time.insert(id.clone()), "{id} handed out twice");
        }
    }
    assert_eq!(one_time.len(), 10);
    assert_eq!(fallbacks, 10);
    let counts = e2ee::sync_key_counts(&db, &alice_id, &alice_dev)
        .await
        .expect("counts")
        .0;
    assert_eq!(counts.get("signed_curve25519"), Some(&0));
    // The fallback key stays, marked used, until a new one is uploaded.
    assert!(
        e2ee::sync_key_counts(&db, &alice_id, &alice_dev)
            .await
            .expect("types")
            .1
            .is_empty()
    );
    upload(&as_alice, &json!({ "fallback_keys": alice.fallback_key() })).await;
    assert_eq!(
        e2ee::sync_key_counts(&db, &alice_id, &alice_dev)
            .await
            .expect("types")
            .1
            .len(),
        1
    );
}

async fn bad_key_uploads_get_spec_errors(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    let (alice_id, alice_token, alice_dev) = register(&client, "alice", "pw-alice").await;
    let (bob_id, _, _) = register(&client, "bob", "pw-bob").await;
    let as_alice = client.with_token(&alice_token);
    let alice = Device::new(&alice_id, &alice_dev);
    let path = "/_matrix/client/v3/keys/upload";

    // Unsigned: no signatures at all is malformed, no signature by the
    // device is invalid.
    let mut keys = alice.device_keys();
    keys.as_object_mut().expect("object").remove("signatures");
    assert_error(
        &as_alice.post(path, &json!({ "device_keys": keys })).await,
        400,
        "M_BAD_JSON",
    );
    keys["signatures"] = json!({});
    assert_error(
        &as_alice.post(path, &json!({ "device_keys": keys })).await,
        400,
        "M_INVALID_PARAM",
    );
    // Signed by another key.
    let impostor = Device::new(&alice_id, &alice_dev);
    let mut keys = alice.device_keys();
    keys.as_object_mut().expect("object").remove("signatures");
    impostor.sign(&mut keys);
    assert_error(
        &as_alice.post(path, &json!({ "device_keys": keys })).await,
        400,
        "M_INVALID_PARAM",
    );
    // Someone else's user ID or device ID.
    let other = Device::new(&bob_id, &alice_dev);
    assert_error(
        &as_alice
            .post(path, &json!({ "device_keys": other.device_keys() }))
            .await,
        400,
        "M_INVALID_PARAM",
    );
    let other = Device::new(&alice_id, "OTHERDEVICE");
    assert_error(
        &as_alice
            .post(path, &json!({ "device_keys": other.device_keys() }))
            .await,
        400,
        "M_INVALID_PARAM",
    );
    // Malformed.
    assert_error(
        &as_alice.post(path, &json!({ "device_keys": "nope" })).await,
        400,
        "M_BAD_JSON",
    );
    assert_error(
        &as_alice
            .post(path, &json!({ "device_keys": { "user_id": alice_id } }))
            .await,
        400,
        "M_BAD_JSON",
    );
    assert_error(
        &as_alice.post_raw(path, b"{not json".to_vec()).await,
        400,
        "M_NOT_JSON",
    );
    assert_error(
        &as_alice
            .post(
                "/_matrix/client/v3/keys/claim",
                &json!({ "one_time_keys": "x" }),
            )
            .await,
        400,
        "M_BAD_JSON",
    );
    assert_error(
        &as_alice
            .get("/_matrix/client/v3/keys/changes?from=garbage&to=s1")
            .await,
        400,
        "M_INVALID_PARAM",
    );
    // Nothing was stored by the refused uploads.
    let (_, resp) = as_alice
        .post(
            "/_matrix/client/v3/keys/query",
            &json!({ "device_keys": { alice_id.clone(): [] } }),
        )
        .await;
    assert!(resp["device_keys"].get(&alice_id).is_none(), "{resp}");
    // No access token.
    assert_error(&client.post(path, &json!({})).await, 401, "M_MISSING_TOKEN");
}

async fn device_list_changes_between_tokens(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    let (alice_id, alice_token, alice_dev) = register(&client, "alice", "pw-alice").await;
    let (carol_id, carol_token, carol_dev) = register(&client, "carol", "pw-carol").await;
    let (_, bob_token, _) = register(&client, "bob", "pw-bob").await;
    let as_alice = client.with_token(&alice_token);
    let as_bob = client.with_token(&bob_token);
    let as_carol = client.with_token(&carol_token);
    let (status, resp) = as_alice
        .post(
            "/_matrix/client/v3/createRoom",
            &json!({ "preset": "public_chat" }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let room = resp["room_id"].as_str().expect("room").to_owned();
    let (status, resp) = as_bob
        .post(
            &format!("/_matrix/client/v3/join/{}", enc(&room)),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");

    let db = Db::connect(&server.db_url, 2).await.expect("db");
    let token = |dl: i64| format!("s999999_0_0_0_0_{dl}");
    let start = current_position(&db, Stream::DeviceLists)
        .await
        .expect("position");
    upload(
        &as_alice,
        &json!({ "device_keys": Device::new(&alice_id, &alice_dev).device_keys() }),
    )
    .await;
    upload(
        &as_carol,
        &json!({ "device_keys": Device::new(&carol_id, &carol_dev).device_keys() }),
    )
    .await;
    let end = current_position(&db, Stream::DeviceLists)
        .await
        .expect("position");
    let (status, resp) = as_bob
        .get(&format!(
            "/_matrix/client/v3/keys/changes?from={}&to={}",
            token(start),
            token(end)
        ))
        .await;
    assert_eq!(status, 200, "{resp}");
    // Alice shares a room with Bob; Carol does not.
    assert_eq!(resp["changed"], json!([alice_id]));
    assert_eq!(resp["left"], json!([]));
}

backend_tests!(
    olm_session_over_the_server,
    concurrent_claims_never_share_a_key,
    bad_key_uploads_get_spec_errors,
    device_list_changes_between_tokens,
);
