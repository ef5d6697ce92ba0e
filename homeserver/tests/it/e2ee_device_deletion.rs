//! Deleting devices takes their E2EE data with them, atomically: the
//! storage call that deletes a device also deletes its keys, one-time keys
//! and to-device inbox and records the device-list change, in one
//! transaction, so no crash can leave keys behind a deleted device that
//! others would keep encrypting to. Deactivation also removes the user's
//! cross-signing keys and announces it.

use crate::common::{Backend, Client, TestServer, login_ok, password_auth, register};
use crate::e2ee_support::{Device, SigningKey};
use myelin_homeserver::storage::{Db, Sql as _, accounts};
use serde_json::{Value, json};

async fn upload_keys(client: &Client, device: &mut Device) {
    let (status, resp) = client
        .post(
            "/_matrix/client/v3/keys/upload",
            &json!({ "device_keys": device.device_keys(), "one_time_keys": device.one_time_keys(2) }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
}

/// Rows for `device` of `user` in each E2EE table.
async fn e2ee_rows(db: &Db, user: &str, device: &str) -> Vec<(&'static str, i64)> {
    let mut out = Vec::new();
    for table in ["e2e_device_keys", "e2e_one_time_keys", "to_device_inbox"] {
        let row = db
            .query_one(
                &format!("SELECT COUNT(*) AS n FROM {table} WHERE user_id = $1 AND device_id = $2"),
                [user.into(), device.into()],
            )
            .await
            .expect("count")
            .expect("a row");
        out.push((table, row.try_get::<i64>("", "n").expect("n")));
    }
    out
}

async fn device_list_changes(db: &Db, user: &str) -> i64 {
    db.query_one(
        "SELECT COUNT(*) AS n FROM device_list_changes WHERE user_id = $1",
        [user.into()],
    )
    .await
    .expect("count")
    .expect("a row")
    .try_get::<i64>("", "n")
    .expect("n")
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

async fn device_deletion_removes_keys_in_one_transaction(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    let (alice_id, token1, dev1) = register(&client, "alice", "pw-alice").await;
    let (token2, dev2) = login_ok(&client, "alice", "pw-alice").await;
    let (_, bob_token, _) = register(&client, "bob", "pw-bob").await;
    let as_bob = client.with_token(&bob_token);
    let mut phone = Device::new(&alice_id, &dev1);
    let mut laptop = Device::new(&alice_id, &dev2);
    upload_keys(&client.with_token(&token1), &mut phone).await;
    upload_keys(&client.with_token(&token2), &mut laptop).await;
    let (status, _) = as_bob
        .put(
            "/_matrix/client/v3/sendToDevice/org.example.ping/t1",
            &json!({ "messages": { alice_id.clone(): { "*": { "hi": 1 } } } }),
        )
        .await;
    assert_eq!(status, 200);

    let db = Db::connect(&server.db_url, 2).await.expect("db");
    let expected_before = vec![
        ("e2e_device_keys", 1),
        ("e2e_one_time_keys", 2),
        ("to_device_inbox", 1),
    ];
    assert_eq!(e2ee_rows(&db, &alice_id, &dev2).await, expected_before);
    let changes = device_list_changes(&db, &alice_id).await;

    // The one storage call that deletes the device is all it takes: no
    // second step that a crash could skip.
    let changed = accounts::delete_devices(&db, &alice_id, std::slice::from_ref(&dev2))
        .await
        .expect("delete");
    assert!(changed, "the device list changed");
    let nothing = vec![
        ("e2e_device_keys", 0),
        ("e2e_one_time_keys", 0),
        ("to_device_inbox", 0),
    ];
    assert_eq!(e2ee_rows(&db, &alice_id, &dev2).await, nothing);
    assert_eq!(e2ee_rows(&db, &alice_id, &dev1).await, expected_before);
    assert_eq!(device_list_changes(&db, &alice_id).await, changes + 1);
    let devices = &query(&as_bob, &alice_id).await["device_keys"][&alice_id];
    assert!(devices.get(&dev2).is_none(), "{devices}");
    assert!(devices.get(&dev1).is_some(), "{devices}");

    // Deleting a device without keys is no device-list change.
    let (_, dev3) = login_ok(&client, "alice", "pw-alice").await;
    let changed = accounts::delete_devices(&db, &alice_id, &[dev3])
        .await
        .expect("delete");
    assert!(!changed);
    assert_eq!(device_list_changes(&db, &alice_id).await, changes + 1);
}

async fn deactivation_removes_cross_signing_keys(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    let (alice_id, token, dev) = register(&client, "alice", "pw-alice").await;
    let (_, bob_token, _) = register(&client, "bob", "pw-bob").await;
    let as_alice = client.with_token(&token);
    let as_bob = client.with_token(&bob_token);
    upload_keys(&as_alice, &mut Device::new(&alice_id, &dev)).await;
    let master = SigningKey::new();
    let self_signing = SigningKey::new();
    let mut ssk = self_signing.key_object(&alice_id, "self_signing");
    master.sign(&alice_id, &mut ssk);
    let (status, resp) = as_alice
        .post(
            "/_matrix/client/v3/keys/device_signing/upload",
            &json!({ "master_key": master.key_object(&alice_id, "master"), "self_signing_key": ssk }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let resp = query(&as_bob, &alice_id).await;
    assert!(resp["master_keys"].get(&alice_id).is_some(), "{resp}");

    let db = Db::connect(&server.db_url, 2).await.expect("db");
    let changes = device_list_changes(&db, &alice_id).await;
    let path = "/_matrix/client/v3/account/deactivate";
    let (status, challenge) = as_alice.post(path, &json!({})).await;
    assert_eq!(status, 401, "{challenge}");
    let (status, resp) = as_alice
        .post(
            path,
            &json!({ "auth": password_auth(&alice_id, "pw-alice", &challenge["session"]) }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");

    // Nobody can find a key to encrypt to or an identity to trust, and
    // the change is in the device-list stream for others to notice.
    let resp = query(&as_bob, &alice_id).await;
    assert!(resp["master_keys"].get(&alice_id).is_none(), "{resp}");
    assert!(resp["self_signing_keys"].get(&alice_id).is_none(), "{resp}");
    assert!(
        resp["device_keys"][&alice_id]
            .as_object()
            .is_none_or(|d| d.is_empty()),
        "{resp}"
    );
    assert!(device_list_changes(&db, &alice_id).await > changes);
    let row = db
        .query_one(
            "SELECT COUNT(*) AS n FROM e2e_cross_signing_keys WHERE user_id = $1",
            [alice_id.as_str().into()],
        )
        .await
        .expect("count")
        .expect("a row");
    assert_eq!(row.try_get::<i64>("", "n").expect("n"), 0);
}

backend_tests!(
    device_deletion_removes_keys_in_one_transaction,
    deactivation_removes_cross_signing_keys,
);
