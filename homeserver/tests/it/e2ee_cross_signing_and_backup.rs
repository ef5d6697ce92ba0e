//! Alice sets up cross-signing (no password needed the first time, the
//! password to replace her keys), signs her device with her self-signing
//! key, and Bob signs her master key with his user-signing key; everyone
//! sees what they may in `/keys/query`. Then Alice backs up room keys: the
//! server keeps the better key for each session and refuses writes to an
//! old backup version.

use crate::common::{Backend, Client, TestServer, assert_error, enc, password_auth, register};
use crate::e2ee_support::{Device, SigningKey};
use serde_json::{Value, json};

const UPLOAD: &str = "/_matrix/client/v3/keys/device_signing/upload";
const SIGNATURES: &str = "/_matrix/client/v3/keys/signatures/upload";

/// Master, self-signing and user-signing keys for `user`, each signed as
/// the spec requires.
struct CrossSigning {
    master: SigningKey,
    self_signing: SigningKey,
    user_signing: SigningKey,
}

impl CrossSigning {
    fn new() -> Self {
        Self {
            master: SigningKey::new(),
            self_signing: SigningKey::new(),
            user_signing: SigningKey::new(),
        }
    }

    fn upload_body(&self, user: &str) -> Value {
        let master = self.master.key_object(user, "master");
        let mut ssk = self.self_signing.key_object(user, "self_signing");
        self.master.sign(user, &mut ssk);
        let mut usk = self.user_signing.key_object(user, "user_signing");
        self.master.sign(user, &mut usk);
        json!({ "master_key": master, "self_signing_key": ssk, "user_signing_key": usk })
    }
}

async fn query(client: &Client, user: &str) -> Value {
    let (status, resp) = client
        .post(
            "/_matrix/client/v3/keys/query",
            &json!({ "device_keys": { user: [] } }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    resp
}

async fn cross_signing_story(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    let (alice_id, alice_token, alice_dev) = register(&client, "alice", "pw-alice").await;
    let (bob_id, bob_token, _) = register(&client, "bob", "pw-bob").await;
    let as_alice = client.with_token(&alice_token);
    let as_bob = client.with_token(&bob_token);
    let alice_device = Device::new(&alice_id, &alice_dev);
    let (status, resp) = as_alice
        .post(
            "/_matrix/client/v3/keys/upload",
            &json!({ "device_keys": alice_device.device_keys() }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");

    // A self-signing key not signed by the master key is refused.
    let alice_keys = CrossSigning::new();
    let mut bad = alice_keys.upload_body(&alice_id);
    bad["self_signing_key"] = alice_keys
        .self_signing
        .key_object(&alice_id, "self_signing");
    assert_error(
        &as_alice.post(UPLOAD, &bad).await,
        400,
        "M_INVALID_SIGNATURE",
    );
    // Someone else's keys are refused.
    assert_error(
        &as_alice
            .post(UPLOAD, &CrossSigning::new().upload_body(&bob_id))
            .await,
        400,
        "M_INVALID_PARAM",
    );

    // The first upload needs no password; uploading the same keys again
    // neither (a retried request).
    let body = alice_keys.upload_body(&alice_id);
    let (status, resp) = as_alice.post(UPLOAD, &body).await;
    assert_eq!(status, 200, "{resp}");
    let (status, resp) = as_alice.post(UPLOAD, &body).await;
    assert_eq!(status, 200, "{resp}");

    // Replacing them does.
    let replacement = CrossSigning::new();
    let mut body = replacement.upload_body(&alice_id);
    let (status, challenge) = as_alice.post(UPLOAD, &body).await;
    assert_eq!(status, 401, "{challenge}");
    body["auth"] = password_auth("alice", "wrong", &challenge["session"]);
    let (status, _) = as_alice.post(UPLOAD, &body).await;
    assert_eq!(status, 401);
    body["auth"] = password_auth("alice", "pw-alice", &challenge["session"]);
    let (status, resp) = as_alice.post(UPLOAD, &body).await;
    assert_eq!(status, 200, "{resp}");
    let alice_keys = replacement;

    // Bob sets up his own, then everyone queries.
    let bob_keys = CrossSigning::new();
    let (status, resp) = as_bob.post(UPLOAD, &bob_keys.upload_body(&bob_id)).await;
    assert_eq!(status, 200, "{resp}");
    let seen_by_bob = query(&as_bob, &alice_id).await;
    assert_eq!(
        seen_by_bob["master_keys"][&alice_id]["keys"][alice_keys.master.key_id()],
        alice_keys.master.public_b64()
    );
    assert!(seen_by_bob["self_signing_keys"][&alice_id].is_object());
    assert!(
        seen_by_bob.get("user_signing_keys").is_none()
            || seen_by_bob["user_signing_keys"].get(&alice_id).is_none(),
        "only Alice sees her user-signing key: {seen_by_bob}"
    );
    let own = query(&as_alice, &alice_id).await;
    assert!(own["user_signing_keys"][&alice_id].is_object(), "{own}");

    // Alice signs her device with her self-signing key.
    let mut device_keys = own["device_keys"][&alice_id][&alice_dev].clone();
    device_keys
        .as_object_mut()
        .expect("object")
        .remove("unsigned");
    alice_keys.self_signing.sign(&alice_id, &mut device_keys);
    // A forged signature on her master key fails on its own.
    let mut master = own["master_keys"][&alice_id].clone();
    crate::e2ee_support::add_signature(
        &mut master,
        &alice_id,
        &format!("ed25519:{alice_dev}"),
        "a".repeat(86),
    );
    let (status, resp) = as_alice
        .post(
            SIGNATURES,
            &json!({ alice_id.clone(): {
                alice_dev.clone(): device_keys,
                alice_keys.master.public_b64(): master,
            } }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(
        resp["failures"][&alice_id][alice_keys.master.public_b64()]["errcode"],
        "M_INVALID_SIGNATURE",
        "{resp}"
    );
    assert!(
        resp["failures"][&alice_id].get(&alice_dev).is_none(),
        "{resp}"
    );
    let seen_by_bob = query(&as_bob, &alice_id).await;
    let sigs = &seen_by_bob["device_keys"][&alice_id][&alice_dev]["signatures"][&alice_id];
    assert!(
        sigs[alice_keys.self_signing.key_id()].is_string(),
        "{seen_by_bob}"
    );
    assert!(sigs[format!("ed25519:{alice_dev}")].is_string());

    // Bob verifies Alice: his user-signing key signs her master key. Bob
    // sees the signature, Carol (anyone else) does not.
    let mut master = seen_by_bob["master_keys"][&alice_id].clone();
    bob_keys.user_signing.sign(&bob_id, &mut master);
    let (status, resp) = as_bob
        .post(
            SIGNATURES,
            &json!({ alice_id.clone(): { alice_keys.master.public_b64(): master } }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    assert!(
        resp.get("failures")
            .is_none_or(|f| f.as_object().is_some_and(|f| f.is_empty())),
        "{resp}"
    );
    let seen_by_bob = query(&as_bob, &alice_id).await;
    assert!(
        seen_by_bob["master_keys"][&alice_id]["signatures"][&bob_id]
            [bob_keys.user_signing.key_id()]
        .is_string(),
        "{seen_by_bob}"
    );
    let (_, carol_token, _) = register(&client, "carol", "pw-carol").await;
    let seen_by_carol = query(&client.with_token(&carol_token), &alice_id).await;
    assert!(
        seen_by_carol["master_keys"][&alice_id]["signatures"]
            .get(&bob_id)
            .is_none(),
        "{seen_by_carol}"
    );

    // A signature with a key that is not Bob's user-signing key fails.
    let mut master = seen_by_bob["master_keys"][&alice_id].clone();
    SigningKey::new().sign(&bob_id, &mut master);
    if let Some(sigs) = master["signatures"][&bob_id].as_object_mut() {
        sigs.remove(&bob_keys.user_signing.key_id());
    }
    let (status, resp) = as_bob
        .post(
            SIGNATURES,
            &json!({ alice_id.clone(): { alice_keys.master.public_b64(): master } }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(
        resp["failures"][&alice_id][alice_keys.master.public_b64()]["errcode"],
        "M_INVALID_SIGNATURE"
    );
}

/// Unpadded base64, as the encrypted fields of backed-up keys are.
fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(s)
}

fn session_data(
    first_message_index: u64,
    forwarded_count: u64,
    is_verified: bool,
    tag: &str,
) -> Value {
    json!({
        "first_message_index": first_message_index,
        "forwarded_count": forwarded_count,
        "is_verified": is_verified,
        "session_data": { "ephemeral": b64(tag), "ciphertext": b64(tag), "mac": b64(tag) },
    })
}

async fn key_backup_story(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    let (_, token, _) = register(&client, "alice", "pw-alice").await;
    let (_, other_token, _) = register(&client, "mallory", "pw-mallory").await;
    let as_alice = client.with_token(&token);
    let algorithm = json!({
        "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2",
        "auth_data": { "public_key": "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo", "signatures": {} },
    });
    assert_error(
        &as_alice.get("/_matrix/client/v3/room_keys/version").await,
        404,
        "M_NOT_FOUND",
    );
    let (status, resp) = as_alice
        .post("/_matrix/client/v3/room_keys/version", &algorithm)
        .await;
    assert_eq!(status, 200, "{resp}");
    let v1 = resp["version"].as_str().expect("version").to_owned();
    let (status, info) = as_alice.get("/_matrix/client/v3/room_keys/version").await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["version"], v1);
    assert_eq!(info["count"], 0);
    assert_eq!(info["algorithm"], algorithm["algorithm"]);
    assert_eq!(info["auth_data"], algorithm["auth_data"]);
    let etag0 = info["etag"].as_str().expect("etag").to_owned();

    let room = "!room:test.localhost";
    let session_path = |v: &str, s: &str| {
        format!(
            "/_matrix/client/v3/room_keys/keys/{}/{s}?version={v}",
            enc(room)
        )
    };
    let (status, resp) = as_alice
        .put(
            &session_path(&v1, "s1"),
            &session_data(5, 1, false, "first"),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["count"], 1);
    let etag1 = resp["etag"].as_str().expect("etag").to_owned();
    assert_ne!(etag1, etag0);

    // A worse key (later first index) does not replace it; the etag stays.
    let (_, resp) = as_alice
        .put(
            &session_path(&v1, "s1"),
            &session_data(7, 0, false, "worse"),
        )
        .await;
    assert_eq!(resp["etag"], etag1);
    // A better one (earlier index) does; a verified one beats any unverified.
    let (_, resp) = as_alice
        .put(
            &session_path(&v1, "s1"),
            &session_data(2, 3, false, "better"),
        )
        .await;
    assert_ne!(resp["etag"], etag1);
    let (_, resp) = as_alice
        .put(
            &session_path(&v1, "s1"),
            &session_data(2, 1, false, "fewer forwards"),
        )
        .await;
    assert_eq!(resp["count"], 1);
    let (_, resp) = as_alice
        .put(
            &session_path(&v1, "s1"),
            &session_data(9, 9, true, "verified"),
        )
        .await;
    assert_eq!(resp["count"], 1);
    let (_, resp) = as_alice
        .put(
            &session_path(&v1, "s1"),
            &session_data(0, 0, false, "unverified"),
        )
        .await;
    assert_eq!(resp["count"], 1);
    let (status, key) = as_alice.get(&session_path(&v1, "s1")).await;
    assert_eq!(status, 200, "{key}");
    assert_eq!(key["session_data"]["ciphertext"], b64("verified"));

    // All rooms at once, then read back per room and in full.
    let (status, resp) = as_alice
        .put(
            &format!("/_matrix/client/v3/room_keys/keys?version={v1}"),
            &json!({ "rooms": { room: { "sessions": { "s2": session_data(0, 0, false, "two") } } } }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["count"], 2);
    let (_, all) = as_alice
        .get(&format!("/_matrix/client/v3/room_keys/keys?version={v1}"))
        .await;
    assert_eq!(
        all["rooms"][room]["sessions"].as_object().map(|s| s.len()),
        Some(2),
        "{all}"
    );
    let (_, in_room) = as_alice
        .get(&format!(
            "/_matrix/client/v3/room_keys/keys/{}?version={v1}",
            enc(room)
        ))
        .await;
    assert_eq!(
        in_room["sessions"]["s2"]["session_data"]["ciphertext"],
        b64("two")
    );
    assert_error(
        &as_alice.get(&session_path(&v1, "nope")).await,
        404,
        "M_NOT_FOUND",
    );

    // A new version becomes current; writing to the old one is refused.
    let (_, resp) = as_alice
        .post("/_matrix/client/v3/room_keys/version", &algorithm)
        .await;
    let v2 = resp["version"].as_str().expect("version").to_owned();
    assert_ne!(v1, v2);
    let resp = as_alice
        .put(&session_path(&v1, "s3"), &session_data(0, 0, false, "old"))
        .await;
    assert_error(&resp, 403, "M_WRONG_ROOM_KEYS_VERSION");
    assert_eq!(resp.1["current_version"], v2);
    assert_error(
        &as_alice
            .put(&session_path("999", "s3"), &session_data(0, 0, false, "x"))
            .await,
        403,
        "M_WRONG_ROOM_KEYS_VERSION",
    );
    let (_, info) = as_alice.get("/_matrix/client/v3/room_keys/version").await;
    assert_eq!(info["version"], v2);
    assert_eq!(info["count"], 0);

    // Deleting keys changes the etag; deleting the version removes it.
    let (_, before) = as_alice
        .get(&format!("/_matrix/client/v3/room_keys/version/{v1}"))
        .await;
    let (status, resp) = as_alice.delete(&session_path(&v1, "s1")).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["count"], 1);
    assert_ne!(resp["etag"], before["etag"]);
    let (status, _) = as_alice
        .delete(&format!("/_matrix/client/v3/room_keys/version/{v2}"))
        .await;
    assert_eq!(status, 200);
    let (_, info) = as_alice.get("/_matrix/client/v3/room_keys/version").await;
    assert_eq!(info["version"], v1, "the latest left is current again");
    assert_error(
        &as_alice
            .get(&format!("/_matrix/client/v3/room_keys/version/{v2}"))
            .await,
        404,
        "M_NOT_FOUND",
    );

    // Bad input and other users.
    assert_error(
        &as_alice
            .put(
                &session_path(&v1, "s4"),
                &json!({ "first_message_index": "x" }),
            )
            .await,
        400,
        "M_BAD_JSON",
    );
    assert_error(
        &client
            .with_token(&other_token)
            .get(&format!("/_matrix/client/v3/room_keys/version/{v1}"))
            .await,
        404,
        "M_NOT_FOUND",
    );
}

backend_tests!(cross_signing_story, key_backup_story);
