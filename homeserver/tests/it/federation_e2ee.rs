//! Encrypted chat across servers with real Olm and Megolm clients (vodozemac): Alice on
//! alpha and Bob on beta share an encrypted room. Alice reads Bob's device keys through
//! her own server (which asks beta), claims one of his one-time keys the same way (claimed
//! exactly once on beta), shares a Megolm room key with him in an Olm to-device message
//! that alpha's queue delivers to beta, and Bob decrypts her messages from his timeline on
//! beta. Neither server stores the plaintext. When Bob adds a device, beta tells alpha
//! (`m.device_list_update`): Alice sees Bob in `device_lists.changed` and reads the new
//! device's keys.

use std::time::{Duration, Instant};

use crate::common::federation::Federation;
use crate::common::{Backend, enc, login_ok, register};
use crate::e2ee_sync_story::{Peer, read_timeline, send_encrypted};
use serde_json::json;
use vodozemac::megolm::{GroupSession, SessionConfig as MegolmConfig};

const V3: &str = "/_matrix/client/v3";

async fn encrypted_chat_across_servers(backend: Backend) {
    let fed = Federation::start_with(
        backend,
        &["alpha.test", "beta.test"],
        &[(
            "MYELIN__FEDERATION__DESTINATION_MIN_RETRY_INTERVAL_MS",
            "300",
        )],
    )
    .await;
    let (alice_id, alice_token, alice_dev) =
        register(&fed["alpha.test"].client(), "alice", "pw-alice-1").await;
    let (bob_id, bob_token, bob_dev) =
        register(&fed["beta.test"].client(), "bob", "pw-bob-1234").await;
    let mut alice = Peer::new(
        fed["alpha.test"].client().with_token(&alice_token),
        &alice_id,
        &alice_dev,
    );
    let mut bob = Peer::new(
        fed["beta.test"].client().with_token(&bob_token),
        &bob_id,
        &bob_dev,
    );
    alice.publish_keys(2).await;
    bob.publish_keys(3).await;

    let (status, resp) = alice
        .http
        .post(
            &format!("{V3}/createRoom"),
            &json!({
                "preset": "public_chat",
                "initial_state": [{
                    "type": "m.room.encryption", "state_key": "",
                    "content": { "algorithm": "m.megolm.v1.aes-sha2" },
                }],
            }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let room = resp["room_id"].as_str().expect("room_id").to_owned();
    let (status, resp) = bob
        .http
        .post(
            &format!("{V3}/join/{}?server_name=alpha.test", enc(&room)),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    bob.sync().await;

    // Bob's keys, read and claimed through alpha.
    let bob_keys = alice.query(&bob_id).await;
    let bob_device = bob_keys[&bob_dev].clone();
    let bob_curve = bob_device["keys"][format!("curve25519:{bob_dev}")]
        .as_str()
        .expect("curve25519")
        .to_owned();
    let bob_ed = bob_device["keys"][format!("ed25519:{bob_dev}")]
        .as_str()
        .expect("ed25519")
        .to_owned();
    assert_eq!((bob_curve.clone(), bob_ed.clone()), (bob.curve(), bob.ed()));
    let otk = alice.claim(&bob_id, &bob_dev, &bob_ed).await;
    let resp = bob.sync().await;
    assert_eq!(
        resp["device_one_time_keys_count"]["signed_curve25519"], 2,
        "claimed once, on beta: {resp}"
    );

    // The room key travels alpha -> beta as an Olm to-device message.
    let group = GroupSession::new(MegolmConfig::version_1());
    let mut group = group;
    alice
        .share_room_key(
            (bob_id.as_str(), bob_dev.as_str()),
            (bob_curve.as_str(), bob_ed.as_str()),
            otk,
            &room,
            &group,
            "key-1",
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp = bob.sync().await;
        let payloads = bob.receive_to_device(&resp);
        if payloads.iter().any(|p| p["type"] == "m.room_key") {
            break;
        }
        assert!(Instant::now() < deadline, "the room key never reached beta");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Alice's encrypted messages reach beta; Bob decrypts them.
    let secrets = ["meet at the north gate", "bring the blue folder"];
    let mut ciphertexts = Vec::new();
    for (i, body) in secrets.iter().enumerate() {
        ciphertexts.push(send_encrypted(&alice, &mut group, &room, &format!("m{i}"), body).await);
    }
    let mut read = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while read.len() < secrets.len() {
        let resp = bob.sync().await;
        read.extend(read_timeline(&mut bob, &resp, &room));
        assert!(Instant::now() < deadline, "bob read only {read:?} on beta");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        read,
        secrets
            .iter()
            .map(|s| Some((*s).to_owned()))
            .collect::<Vec<_>>()
    );

    // Bob adds a device: beta tells alpha, Alice's sync says so, and she reads its keys.
    alice.sync().await;
    let (bob2_token, bob2_dev) = login_ok(&fed["beta.test"].client(), "bob", "pw-bob-1234").await;
    let mut bob2 = Peer::new(
        fed["beta.test"].client().with_token(&bob2_token),
        &bob_id,
        &bob2_dev,
    );
    bob2.publish_keys(1).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp = alice.sync().await;
        let changed = resp["device_lists"]["changed"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if changed.iter().any(|u| u == bob_id.as_str()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alpha never heard of bob's new device"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let devices = alice.query(&bob_id).await;
    assert!(devices.contains_key(&bob2_dev), "{devices:?}");
    assert_eq!(devices.len(), 2, "{devices:?}");

    // No plaintext on either server: the stored events carry the ciphertext only.
    for server in ["alpha.test", "beta.test"] {
        let db = myelin_homeserver::storage::Db::connect(&fed[server].db_url, 1)
            .await
            .expect("db");
        use myelin_homeserver::storage::Sql as _;
        let rows = db
            .query_all(
                "SELECT json FROM events WHERE event_type = 'm.room.encrypted'",
                Vec::<sea_orm::Value>::new(),
            )
            .await
            .expect("events");
        assert_eq!(rows.len(), secrets.len(), "{server}");
        for row in rows {
            let json: String = row.try_get("", "json").expect("json");
            for secret in secrets {
                assert!(!json.contains(secret), "{server} stored plaintext: {json}");
            }
            assert!(
                ciphertexts.iter().any(|c| json.contains(c.as_str())),
                "{json}"
            );
        }
    }
}

backend_tests!(encrypted_chat_across_servers);
