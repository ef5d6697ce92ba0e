//! The outbound federation queue, end to end between two real servers
//! (TLS, DNS, signed requests): alice on alpha sends to-device messages to
//! bob on beta. They arrive; while beta is down they wait in alpha's queue
//! through a crash and restart of alpha, with alpha backing off; when beta
//! is back and talks to alpha, alpha retries at once and delivers them in
//! order.

use std::time::{Duration, Instant};

use crate::common::federation::Federation;
use crate::common::{Backend, Client, create_user, register};
use serde_json::json;

const V3: &str = "/_matrix/client/v3";

/// Sends `{"n": n}` from alice to bob's device.
async fn send_to_bob(alice: &Client, device: &str, txn: &str, n: u64) {
    let (status, body) = alice
        .put(
            &format!("{V3}/sendToDevice/org.example.ping/{txn}"),
            &json!({ "messages": { "@bob:beta.test": { device: { "n": n } } } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Syncs bob until he has received `want` to-device messages (in all) or
/// `within` passes; returns their `n`s in order.
async fn bob_receives(
    bob: &Client,
    since: &mut Option<String>,
    want: usize,
    within: Duration,
) -> Vec<u64> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < want && Instant::now() < deadline {
        let path = match since.as_deref() {
            Some(s) => format!("{V3}/sync?timeout=1000&since={s}"),
            None => format!("{V3}/sync?timeout=0"),
        };
        let (status, body) = bob.get(&path).await;
        assert_eq!(status, 200, "{body}");
        *since = body["next_batch"].as_str().map(str::to_owned);
        for event in body["to_device"]["events"].as_array().into_iter().flatten() {
            assert_eq!(event["sender"], "@alice:alpha.test", "{event}");
            assert_eq!(event["type"], "org.example.ping", "{event}");
            got.push(event["content"]["n"].as_u64().expect("n"));
        }
    }
    got
}

/// The value of an unlabelled metric, or of one label set (`{result="x"}`).
fn metric(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn to_device_survives_outage_and_restart(backend: Backend) {
    // A long back-off: within this test only beta's own request to alpha
    // can end it, which is what the spec's "the server is back" wants.
    let fed = Federation::start_with(
        backend,
        &["alpha.test", "beta.test"],
        &[(
            "MYELIN__FEDERATION__DESTINATION_MIN_RETRY_INTERVAL_MS",
            "600000",
        )],
    )
    .await;
    let (_, alice_token) = create_user(&fed["alpha.test"], "alice").await;
    let (_, bob_token, dev) = register(&fed["beta.test"].client(), "bob", "pw-bob-1234").await;
    let alice = fed["alpha.test"].client().with_token(&alice_token);
    let bob = fed["beta.test"].client().with_token(&bob_token);
    let mut since = None;
    let soon = Duration::from_secs(30);
    assert!(bob_receives(&bob, &mut since, 0, soon).await.is_empty());

    // Both up: delivered.
    send_to_bob(&alice, &dev, "t0", 0).await;
    assert_eq!(bob_receives(&bob, &mut since, 1, soon).await, [0]);

    // Beta down: alpha fails, backs off, and keeps the messages.
    let mut fed = fed;
    let beta_index = fed
        .servers
        .iter()
        .position(|s| s.name == "beta.test")
        .expect("beta");
    fed.servers[beta_index].server.kill();
    for n in 1..=3 {
        send_to_bob(&alice, &dev, &format!("t{n}"), n).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, exposition) = fed["alpha.test"].client().get_text("/metrics").await;
        if metric(&exposition, "myelin_federation_destinations_backing_off") >= 1.0 {
            assert!(
                metric(
                    &exposition,
                    "myelin_federation_transactions_total{result=\"failed\"}"
                ) >= 1.0,
                "{exposition}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alpha never backed off:\n{exposition}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Alpha crashes and comes back: the queue and the back-off are on disk.
    let alpha_index = fed
        .servers
        .iter()
        .position(|s| s.name == "alpha.test")
        .expect("alpha");
    fed.servers[alpha_index].server.restart().await;
    fed.servers[beta_index].server.restart().await;
    // Nothing arrives while alpha waits out its (long) back-off...
    let early = bob_receives(&bob, &mut since, 1, Duration::from_secs(3)).await;
    assert!(early.is_empty(), "{early:?}");

    // ...until beta talks to alpha (bob looks up alice's profile): alpha
    // knows beta is back and delivers everything, in order.
    let (status, body) = bob.get(&format!("{V3}/profile/@alice:alpha.test")).await;
    assert!(status == 200 || status == 404, "{status} {body}");
    assert_eq!(bob_receives(&bob, &mut since, 3, soon).await, [1, 2, 3]);
}

backend_tests!(to_device_survives_outage_and_restart);
