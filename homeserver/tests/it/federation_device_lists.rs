//! Device lists across servers. Alice is on alpha, Bob on beta, in one room.
//!
//! - Alpha queues its users' device-list changes durably: a new device of
//!   Alice's, made while beta is down, reaches beta after alpha crashed and
//!   restarted, and Bob's sync names Alice in `device_lists.changed`.
//! - Alpha keeps a cache of Bob's devices: once it has fetched them, Bob's
//!   new device arrives as an incremental `m.device_list_update` and Alice
//!   reads it from alpha with beta stopped. An update whose `prev_id` alpha
//!   never saw makes alpha fetch the whole list again, which undoes a
//!   forged device. A new cross-signing key reaches the other server too.
//!   When Bob leaves the room they shared, alpha drops his cached list.

use std::time::{Duration, Instant};

use crate::common::federation::{ActAs, Federation};
use crate::common::{Backend, Client, create_room, enc, login_ok, register};
use crate::e2ee_sync_story::Peer;
use serde_json::json;

const V3: &str = "/_matrix/client/v3";

/// Servers that retry a failed destination quickly.
async fn start(backend: Backend) -> Federation {
    Federation::start_with(
        backend,
        &["alpha.test", "beta.test"],
        &[(
            "MYELIN__FEDERATION__DESTINATION_MIN_RETRY_INTERVAL_MS",
            "200",
        )],
    )
    .await
}

/// Alice creates a public room on alpha and Bob joins it from beta.
async fn shared_room(alice: &Client, bob: &Client) -> String {
    let room = create_room(alice, &json!({ "preset": "public_chat" })).await;
    let (status, resp) = bob
        .post(
            &format!("{V3}/join/{}?server_name=alpha.test", enc(&room)),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    room
}

/// Syncs `peer` until `user` is in `device_lists.changed`.
async fn wait_changed(peer: &mut Peer, user: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp = peer.sync().await;
        let changed = resp["device_lists"]["changed"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if changed.iter().any(|u| u == user) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Rows of one query on a server's database.
async fn db_rows(fed: &Federation, server: &str, sql: &str) -> Vec<sea_orm::QueryResult> {
    use myelin_homeserver::storage::Sql as _;
    let db = myelin_homeserver::storage::Db::connect(&fed[server].db_url, 1)
        .await
        .expect("db");
    db.query_all(sql, Vec::<sea_orm::Value>::new())
        .await
        .expect("query")
}

fn index(fed: &Federation, name: &str) -> usize {
    fed.servers
        .iter()
        .position(|s| s.name == name)
        .expect("server")
}

async fn updates_survive_an_outage_and_a_restart(backend: Backend) {
    let mut fed = start(backend).await;
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
    shared_room(&alice.http, &bob.http).await;
    alice.publish_keys(1).await;
    wait_changed(&mut bob, &alice_id, "beta never heard of alice's keys").await;
    assert_eq!(bob.query(&alice_id).await.len(), 1);

    // Beta goes down; Alice adds a device, renames the first one, and alpha
    // crashes with the updates queued.
    let beta = index(&fed, "beta.test");
    let alpha = index(&fed, "alpha.test");
    fed.servers[beta].server.kill();
    let (alice2_token, alice2_dev) =
        login_ok(&fed["alpha.test"].client(), "alice", "pw-alice-1").await;
    let mut alice2 = Peer::new(
        fed["alpha.test"].client().with_token(&alice2_token),
        &alice_id,
        &alice2_dev,
    );
    alice2.publish_keys(1).await;
    let (status, resp) = alice
        .http
        .put(
            &format!("{V3}/devices/{alice_dev}"),
            &json!({ "display_name": "Alice's phone" }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let queued = db_rows(
        &fed,
        "alpha.test",
        "SELECT stream_id FROM device_list_outbox WHERE destination = 'beta.test'",
    )
    .await;
    assert_eq!(queued.len(), 2, "one update per changed device");
    fed.servers[alpha].server.restart().await;
    fed.servers[beta].server.restart().await;
    // Beta talking to alpha ends alpha's back-off at once.
    let (status, body) = bob
        .http
        .get(&format!("{V3}/profile/{}", enc(&alice_id)))
        .await;
    assert!(status == 200 || status == 404, "{status} {body}");

    wait_changed(&mut bob, &alice_id, "alice's new device never reached beta").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let devices = bob.query(&alice_id).await;
        if devices.len() == 2
            && devices[&alice_dev]["unsigned"]["device_display_name"] == "Alice's phone"
        {
            assert!(devices.contains_key(&alice2_dev), "{devices:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{devices:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Delivered: nothing left queued, and the last stream ID sent is what
    // `/user/devices` reports, so beta's next update chains from it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !db_rows(
        &fed,
        "alpha.test",
        "SELECT stream_id FROM device_list_outbox",
    )
    .await
    .is_empty()
    {
        assert!(Instant::now() < deadline, "the queue was never emptied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sent = db_rows(
        &fed,
        "alpha.test",
        "SELECT stream_id FROM device_list_outbound_sent \
         WHERE destination = 'beta.test' AND user_id = '@alice:alpha.test'",
    )
    .await;
    let sent: i64 = sent[0].try_get("", "stream_id").expect("stream_id");
    let (status, devices) = ActAs::new(&fed["beta.test"])
        .request(
            &fed,
            &fed["alpha.test"],
            "GET",
            &format!("/_matrix/federation/v1/user/devices/{}", enc(&alice_id)),
            None,
        )
        .await;
    assert_eq!(status, 200, "{devices}");
    assert_eq!(devices["stream_id"], json!(sent), "{devices}");
    assert_eq!(devices["devices"].as_array().map(Vec::len), Some(2));
}

backend_tests!(updates_survive_an_outage_and_a_restart);

/// Polls `sql` (one row, one integer column `n`) on `server` until it is
/// `want`.
async fn wait_count(fed: &Federation, server: &str, sql: &str, want: i64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = db_rows(fed, server, sql).await;
        let n: i64 = rows
            .first()
            .map(|r| r.try_get("", "n").expect("n"))
            .unwrap_or(0);
        if n == want {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {n} != {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `stream_id` alpha holds for bob's list.
async fn held_stream_id(fed: &Federation) -> i64 {
    let rows = db_rows(
        fed,
        "alpha.test",
        "SELECT stream_id FROM remote_device_lists WHERE user_id = '@bob:beta.test'",
    )
    .await;
    rows[0].try_get("", "stream_id").expect("stream_id")
}

/// An `m.device_list_update` for bob's device `device`, as beta would send it.
fn update(device: &str, stream_id: i64, prev_id: &[i64]) -> serde_json::Value {
    json!({
        "edu_type": "m.device_list_update",
        "content": {
            "user_id": "@bob:beta.test",
            "device_id": device,
            "stream_id": stream_id,
            "prev_id": prev_id,
            "deleted": false,
            "keys": {
                "user_id": "@bob:beta.test",
                "device_id": device,
                "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
                "keys": { format!("ed25519:{device}"): "forged" },
                "signatures": {},
            },
        },
    })
}

async fn remote_lists_are_cached_and_resynced_after_a_gap(backend: Backend) {
    let mut fed = start(backend).await;
    let (alice_id, alice_token, alice_dev) =
        register(&fed["alpha.test"].client(), "alice", "pw-alice-1").await;
    let (bob_id, bob_token, bob_dev) =
        register(&fed["beta.test"].client(), "bob", "pw-bob-1234").await;
    let alice = Peer::new(
        fed["alpha.test"].client().with_token(&alice_token),
        &alice_id,
        &alice_dev,
    );
    let mut bob = Peer::new(
        fed["beta.test"].client().with_token(&bob_token),
        &bob_id,
        &bob_dev,
    );
    bob.publish_keys(1).await;
    let room = shared_room(&alice.http, &bob.http).await;

    // Alice's first query asks beta and starts tracking bob: alpha fetches
    // his list in the background.
    assert_eq!(alice.query(&bob_id).await.len(), 1);
    let fresh = "SELECT COUNT(*) AS n FROM remote_devices d JOIN remote_device_lists l \
                 ON l.user_id = d.user_id WHERE d.user_id = '@bob:beta.test' AND l.stale = false";
    wait_count(
        &fed,
        "alpha.test",
        fresh,
        1,
        "alpha never cached bob's list",
    )
    .await;

    // Bob adds a device: beta's update follows on from what alpha holds and
    // is applied as is. Then bob sets up cross-signing.
    let (bob2_token, bob2_dev) = login_ok(&fed["beta.test"].client(), "bob", "pw-bob-1234").await;
    let mut bob2 = Peer::new(
        fed["beta.test"].client().with_token(&bob2_token),
        &bob_id,
        &bob2_dev,
    );
    bob2.publish_keys(1).await;
    wait_count(
        &fed,
        "alpha.test",
        fresh,
        2,
        "bob's new device never reached alpha",
    )
    .await;
    let master = crate::e2ee_support::SigningKey::new();
    let self_signing = crate::e2ee_support::SigningKey::new();
    let mut ssk = self_signing.key_object(&bob_id, "self_signing");
    master.sign(&bob_id, &mut ssk);
    let (status, resp) = bob
        .http
        .post(
            &format!("{V3}/keys/device_signing/upload"),
            &json!({ "master_key": master.key_object(&bob_id, "master"), "self_signing_key": ssk }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    wait_count(
        &fed,
        "alpha.test",
        "SELECT COUNT(*) AS n FROM remote_device_lists WHERE master_key IS NOT NULL",
        1,
        "bob's master key never reached alpha",
    )
    .await;

    // With beta down, alice still reads all of it: from alpha's cache.
    let beta = index(&fed, "beta.test");
    fed.servers[beta].server.kill();
    let (status, resp) = alice
        .http
        .post(
            &format!("{V3}/keys/query"),
            &json!({ "device_keys": { &bob_id: [] } }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    // No failures (an empty `failures` is left out).
    assert!(
        resp.get("failures").is_none_or(|f| f == &json!({})),
        "{resp}"
    );
    let devices = resp["device_keys"][&bob_id].as_object().expect("devices");
    assert!(devices.contains_key(&bob_dev) && devices.contains_key(&bob2_dev));
    assert_eq!(devices.len(), 2, "{resp}");
    assert_eq!(
        resp["master_keys"][&bob_id]["keys"][master.key_id()],
        master.public_b64(),
        "{resp}"
    );
    assert_eq!(
        resp["self_signing_keys"][&bob_id]["keys"][self_signing.key_id()],
        self_signing.public_b64(),
        "{resp}"
    );

    // An update that follows on is applied without asking beta (which is
    // down): this one is forged, to tell.
    let as_beta = ActAs::new(&fed["beta.test"]);
    let held = held_stream_id(&fed).await;
    let (status, resp) = as_beta
        .send_txn(
            &fed,
            &fed["alpha.test"],
            "forged1",
            &[],
            &[update("FAKE", held + 10, &[held])],
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let devices = alice.query(&bob_id).await;
    assert!(devices.contains_key("FAKE"), "{devices:?}");
    assert_eq!(held_stream_id(&fed).await, held + 10);

    // An update naming a prev_id alpha never saw: it missed one, so it
    // fetches bob's whole list again from beta, and the forged device goes.
    fed.servers[beta].server.restart().await;
    let (status, resp) = as_beta
        .send_txn(
            &fed,
            &fed["alpha.test"],
            "forged2",
            &[],
            &[update("FAKE2", held + 30, &[held + 20])],
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let devices = alice.query(&bob_id).await;
        if !devices.contains_key("FAKE") && !devices.contains_key("FAKE2") && devices.len() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alpha never refetched: {devices:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_count(
        &fed,
        "alpha.test",
        fresh,
        2,
        "the refetched list is not cached",
    )
    .await;

    // Once Bob has left the only room they shared, alpha stops tracking
    // him: the next query asks beta and forgets the cached list.
    let (status, resp) = bob
        .http
        .post(&format!("{V3}/rooms/{}/leave", enc(&room)), &json!({}))
        .await;
    assert_eq!(status, 200, "{resp}");
    let tracked = "SELECT COUNT(*) AS n FROM remote_device_lists WHERE user_id = '@bob:beta.test'";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        alice.query(&bob_id).await;
        let rows = db_rows(&fed, "alpha.test", tracked).await;
        let n: i64 = rows[0].try_get("", "n").expect("n");
        if n == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "alpha still tracks bob");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rows = db_rows(
        &fed,
        "alpha.test",
        "SELECT COUNT(*) AS n FROM remote_devices WHERE user_id = '@bob:beta.test'",
    )
    .await;
    assert_eq!(rows[0].try_get::<i64>("", "n").expect("n"), 0);
}

backend_tests!(remote_lists_are_cached_and_resynced_after_a_gap);
