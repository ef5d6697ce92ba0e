//! Alpha asks beta about Bob's end-to-end keys: his device list with its
//! keys (`/user/devices`), the same through `/user/keys/query`, and claims
//! one of his one-time keys (`/user/keys/claim`), which is then gone.
//! Users of other servers are absent from the answers.

use crate::common::federation::{ActAs, Federation};
use crate::common::{Backend, enc, register};
use crate::e2ee_support::Device;
use serde_json::json;

const F1: &str = "/_matrix/federation/v1";

async fn remote_server_reads_and_claims_keys(backend: Backend) {
    let fed = Federation::start(backend, &["alpha.test", "beta.test"]).await;
    let beta = &fed["beta.test"];
    let alpha = ActAs::new(&fed["alpha.test"]);
    let (bob_id, bob_token, bob_dev) = register(&beta.client(), "bob", "pw-bob").await;
    let bob = beta.client().with_token(&bob_token);
    let mut device = Device::new(&bob_id, &bob_dev);
    let (status, body) = bob
        .post(
            "/_matrix/client/v3/keys/upload",
            &json!({"device_keys": device.device_keys(), "one_time_keys": device.one_time_keys(1)}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let uri = format!("{F1}/user/devices/{}", enc(&bob_id));
    let (status, body) = alpha.request(&fed, beta, "GET", &uri, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], bob_id.as_str());
    let devices = body["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 1, "{body}");
    assert_eq!(devices[0]["device_id"], bob_dev.as_str());
    assert_eq!(devices[0]["keys"]["keys"], device.device_keys()["keys"]);

    let query = json!({"device_keys": {bob_id.as_str(): [], "@x:alpha.test": []}});
    let (status, body) = alpha
        .request(
            &fed,
            beta,
            "POST",
            &format!("{F1}/user/keys/query"),
            Some(&query),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let keys = &body["device_keys"][bob_id.as_str()][bob_dev.as_str()];
    assert_eq!(keys["keys"], device.device_keys()["keys"], "{body}");
    assert!(body["device_keys"].get("@x:alpha.test").is_none(), "{body}");

    let claim =
        json!({"one_time_keys": {bob_id.as_str(): {bob_dev.as_str(): "signed_curve25519"}}});
    let uri = format!("{F1}/user/keys/claim");
    let (status, body) = alpha.request(&fed, beta, "POST", &uri, Some(&claim)).await;
    assert_eq!(status, 200, "{body}");
    let claimed = body["one_time_keys"][bob_id.as_str()][bob_dev.as_str()]
        .as_object()
        .expect("a key");
    assert_eq!(claimed.len(), 1, "{body}");
    // The only one-time key is handed out once.
    let (status, body) = alpha.request(&fed, beta, "POST", &uri, Some(&claim)).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["one_time_keys"][bob_id.as_str()]
            .get(bob_dev.as_str())
            .is_none(),
        "{body}"
    );
}

backend_tests!(remote_server_reads_and_claims_keys);
