//! Bob keeps a dehydrated device (MSC3814) while he has no device signed
//! in: Alice finds it in `/keys/query`, claims one of its one-time keys
//! and sends it an Olm-encrypted to-device message. Bob's next device
//! fetches the dehydrated device's data, restores its Olm account, pages
//! through the messages waiting for it and decrypts them. Replacing or
//! deleting the dehydrated device takes its keys and messages with it.

use crate::common::{Backend, Client, TestServer, assert_error, enc, login_ok, register};
use crate::e2ee_support::Device;
use serde_json::{Value, json};
use vodozemac::Curve25519PublicKey;
use vodozemac::olm::{Account, AccountPickle, OlmMessage, PreKeyMessage, SessionConfig};

const DEHYDRATED: &str = "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device";
const OLM: &str = "m.olm.v1.curve25519-aes-sha2";
/// The key the test's "secret storage" holds for the device pickle.
const PICKLE_KEY: [u8; 32] = [7; 32];

/// A new dehydrated device for `user`: its ID is its Curve25519 key, as
/// the MSC requires, and its keys say `dehydrated: true` under its own
/// signature.
fn new_dehydrated(user: &str) -> Device {
    let account = Account::new();
    let device_id = account.identity_keys().curve25519.to_base64();
    Device {
        user_id: user.to_owned(),
        device_id,
        account,
    }
}

fn dehydrated_keys(device: &Device) -> Value {
    let mut keys = device.device_keys();
    let obj = keys.as_object_mut().expect("object");
    obj.remove("signatures");
    obj.insert("dehydrated".to_owned(), Value::Bool(true));
    device.sign(&mut keys);
    keys
}

/// The `PUT` body: the encrypted pickle as device data, and the keys.
fn put_body(device: &mut Device) -> Value {
    let one_time_keys = device.one_time_keys(3);
    let fallback_keys = device.fallback_key();
    json!({
        "device_id": device.device_id,
        "initial_device_display_name": "Backup device",
        "device_data": {
            "algorithm": "org.matrix.msc3814.v2",
            "device_pickle": device.account.pickle().encrypt(&PICKLE_KEY),
            "nonce": "unused-by-this-test",
        },
        "device_keys": dehydrated_keys(device),
        "one_time_keys": one_time_keys,
        "fallback_keys": fallback_keys,
    })
}

async fn events(client: &Client, device: &str, next_batch: Option<&str>) -> (Vec<Value>, String) {
    let body = match next_batch {
        Some(t) => json!({ "next_batch": t }),
        None => json!({}),
    };
    let (status, resp) = client
        .post(&format!("{DEHYDRATED}/{}/events", enc(device)), &body)
        .await;
    assert_eq!(status, 200, "{resp}");
    let events = resp["events"].as_array().expect("events").clone();
    let next = resp["next_batch"].as_str().expect("next_batch").to_owned();
    (events, next)
}

async fn query_devices(client: &Client, user: &str) -> Value {
    let (status, resp) = client
        .post(
            "/_matrix/client/v3/keys/query",
            &json!({ "device_keys": { user: [] } }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    resp["device_keys"][user].clone()
}

async fn dehydrated_device_story(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    let (alice_id, alice_token, alice_dev) = register(&client, "alice", "pw-alice").await;
    let (bob_id, bob_token, bob_dev) = register(&client, "bob", "pw-bob").await;
    let as_alice = client.with_token(&alice_token);
    let as_bob = client.with_token(&bob_token);

    // No dehydrated device yet.
    assert_error(&as_bob.get(DEHYDRATED).await, 404, "M_NOT_FOUND");
    assert_error(&as_bob.delete(DEHYDRATED).await, 404, "M_NOT_FOUND");

    // Bob's client dehydrates a device.
    let mut dehydrated = new_dehydrated(&bob_id);
    let body = put_body(&mut dehydrated);
    let (status, resp) = as_bob.put(DEHYDRATED, &body).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["device_id"], dehydrated.device_id.as_str());
    let (status, resp) = as_bob.get(DEHYDRATED).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["device_id"], dehydrated.device_id.as_str());
    assert_eq!(resp["device_data"], body["device_data"]);

    // Alice sees it beside Bob's device, marked dehydrated, as signed.
    let devices = query_devices(&as_alice, &bob_id).await;
    let keys = &devices[&dehydrated.device_id];
    assert_eq!(keys["dehydrated"], true, "{devices}");
    assert_eq!(keys["unsigned"]["device_display_name"], "Backup device");
    assert!(
        keys["signatures"][&bob_id][format!("ed25519:{}", dehydrated.device_id)].is_string(),
        "{keys}"
    );
    assert!(
        devices.get(&bob_dev).is_none(),
        "bob's device uploaded no keys"
    );

    // Bob signs out: the dehydrated device stays.
    let (status, _) = as_bob.post("/_matrix/client/v3/logout", &json!({})).await;
    assert_eq!(status, 200);
    let devices = query_devices(&as_alice, &bob_id).await;
    assert!(devices.get(&dehydrated.device_id).is_some(), "{devices}");

    // Alice starts an Olm session with it and sends it a secret, then a
    // message to all of Bob's devices.
    let alice = Device::new(&alice_id, &alice_dev);
    let (status, resp) = as_alice
        .post(
            "/_matrix/client/v3/keys/claim",
            &json!({ "one_time_keys": { bob_id.clone(): { dehydrated.device_id.clone(): "signed_curve25519" } } }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let claimed = resp["one_time_keys"][&bob_id][&dehydrated.device_id]
        .as_object()
        .expect("a key")
        .values()
        .next()
        .expect("one key")["key"]
        .as_str()
        .expect("key")
        .to_owned();
    let their_curve = dehydrated.account.identity_keys().curve25519;
    let mut session = alice
        .account
        .create_outbound_session(
            SessionConfig::version_1(),
            their_curve,
            Curve25519PublicKey::from_base64(&claimed).expect("otk"),
        )
        .expect("session");
    let OlmMessage::PreKey(message) = session.encrypt("the room key").expect("encrypt") else {
        panic!("a pre-key message first");
    };
    let content = json!({
        "algorithm": OLM,
        "sender_key": alice.account.identity_keys().curve25519.to_base64(),
        "ciphertext": { their_curve.to_base64(): { "type": 0, "body": message.to_base64() } },
    });
    let (status, resp) = as_alice
        .put(
            "/_matrix/client/v3/sendToDevice/m.room.encrypted/t1",
            &json!({ "messages": { bob_id.clone(): { dehydrated.device_id.clone(): content } } }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let (status, _) = as_alice
        .put(
            "/_matrix/client/v3/sendToDevice/org.example.ping/t2",
            &json!({ "messages": { bob_id.clone(): { "*": { "n": 1 } } } }),
        )
        .await;
    assert_eq!(status, 200);

    // Bob signs in on a new device and rehydrates.
    let (token, new_dev) = login_ok(&client, "bob", "pw-bob").await;
    let as_bob = client.with_token(&token);
    let (status, resp) = as_bob.get(DEHYDRATED).await;
    assert_eq!(status, 200, "{resp}");
    let pickle = resp["device_data"]["device_pickle"]
        .as_str()
        .expect("pickle");
    let mut restored = Account::from_pickle(
        AccountPickle::from_encrypted(pickle, &PICKLE_KEY).expect("decrypt the pickle"),
    );
    // Only the dehydrated device's messages can be fetched this way.
    assert_error(
        &as_bob
            .post(&format!("{DEHYDRATED}/{new_dev}/events"), &json!({}))
            .await,
        403,
        "M_FORBIDDEN",
    );
    let (batch, next) = events(&as_bob, &dehydrated.device_id, None).await;
    assert_eq!(batch.len(), 2, "{batch:?}");
    assert_eq!(batch[0]["sender"], alice_id);
    assert_eq!(batch[0]["type"], "m.room.encrypted");
    assert_eq!(batch[1]["content"]["n"], 1);
    let body = batch[0]["content"]["ciphertext"][their_curve.to_base64()]["body"]
        .as_str()
        .expect("body");
    let inbound = restored
        .create_inbound_session(
            SessionConfig::version_1(),
            alice.account.identity_keys().curve25519,
            &PreKeyMessage::from_base64(body).expect("pre-key message"),
        )
        .expect("decrypt");
    assert_eq!(inbound.plaintext, b"the room key");
    // The last batch's token gives nothing more, and the fetched messages
    // are gone once the token came back.
    let (batch, last) = events(&as_bob, &dehydrated.device_id, Some(&next)).await;
    assert!(batch.is_empty(), "{batch:?}");
    let (batch, _) = events(&as_bob, &dehydrated.device_id, Some(&last)).await;
    assert!(batch.is_empty());
    let (batch, _) = events(&as_bob, &dehydrated.device_id, None).await;
    assert!(batch.is_empty(), "acknowledged messages are deleted");
    assert_error(
        &as_bob
            .post(
                &format!("{DEHYDRATED}/{}/events", enc(&dehydrated.device_id)),
                &json!({ "next_batch": "not-a-token" }),
            )
            .await,
        400,
        "M_INVALID_PARAM",
    );

    // Many messages come in batches, in order.
    for i in 0..105 {
        let (status, _) = as_alice
            .put(
                &format!("/_matrix/client/v3/sendToDevice/org.example.ping/many{i}"),
                &json!({ "messages": { bob_id.clone(): { dehydrated.device_id.clone(): { "n": i } } } }),
            )
            .await;
        assert_eq!(status, 200);
    }
    let (first, next) = events(&as_bob, &dehydrated.device_id, None).await;
    assert_eq!(first.len(), 100);
    let (second, next) = events(&as_bob, &dehydrated.device_id, Some(&next)).await;
    let ns: Vec<i64> = first
        .iter()
        .chain(&second)
        .map(|e| e["content"]["n"].as_i64().expect("n"))
        .collect();
    assert_eq!(ns, (0..105).collect::<Vec<_>>());
    let (rest, _) = events(&as_bob, &dehydrated.device_id, Some(&next)).await;
    assert!(rest.is_empty());

    // A device ID that is one of Bob's devices is refused, and the refused
    // request changed nothing.
    let mut clash = new_dehydrated(&bob_id);
    clash.device_id = new_dev.clone();
    let clash_body = put_body(&mut clash);
    assert_error(
        &as_bob.put(DEHYDRATED, &clash_body).await,
        400,
        "M_INVALID_PARAM",
    );
    let (_, resp) = as_bob.get(DEHYDRATED).await;
    assert_eq!(resp["device_id"], dehydrated.device_id.as_str());
    // Keys signed for another device are refused.
    let mut wrong = put_body(&mut new_dehydrated(&bob_id));
    wrong["device_id"] = json!("SOMEOTHERDEVICE");
    assert_error(
        &as_bob.put(DEHYDRATED, &wrong).await,
        400,
        "M_INVALID_PARAM",
    );

    // A new dehydrated device replaces the old one, its keys and inbox.
    let (status, _) = as_alice
        .put(
            "/_matrix/client/v3/sendToDevice/org.example.ping/late",
            &json!({ "messages": { bob_id.clone(): { dehydrated.device_id.clone(): { "n": 0 } } } }),
        )
        .await;
    assert_eq!(status, 200);
    let mut replacement = new_dehydrated(&bob_id);
    let (status, resp) = as_bob.put(DEHYDRATED, &put_body(&mut replacement)).await;
    assert_eq!(status, 200, "{resp}");
    let devices = query_devices(&as_alice, &bob_id).await;
    assert!(devices.get(&dehydrated.device_id).is_none(), "{devices}");
    assert_eq!(devices[&replacement.device_id]["dehydrated"], true);
    assert_error(
        &as_bob
            .post(
                &format!("{DEHYDRATED}/{}/events", enc(&dehydrated.device_id)),
                &json!({}),
            )
            .await,
        403,
        "M_FORBIDDEN",
    );
    let (batch, _) = events(&as_bob, &replacement.device_id, None).await;
    assert!(
        batch.is_empty(),
        "the old device's messages are not inherited"
    );

    // Deleting it removes the device and its keys.
    let (status, resp) = as_bob.delete(DEHYDRATED).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["device_id"], replacement.device_id.as_str());
    assert_error(&as_bob.get(DEHYDRATED).await, 404, "M_NOT_FOUND");
    let devices = query_devices(&as_alice, &bob_id).await;
    assert!(devices.get(&replacement.device_id).is_none(), "{devices}");
    let (status, resp) = as_alice
        .post(
            "/_matrix/client/v3/keys/claim",
            &json!({ "one_time_keys": { bob_id.clone(): { replacement.device_id.clone(): "signed_curve25519" } } }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    assert!(
        resp["one_time_keys"][&bob_id]
            .get(&replacement.device_id)
            .is_none(),
        "{resp}"
    );
}

backend_tests!(dehydrated_device_story);
