//! Clients that send garbage get the spec's error codes (never a crash or
//! a hang), and clients that hammer registration or login get throttled.

use crate::common::{Backend, TestServer, assert_error, register};
use serde_json::json;

async fn bad_input_gets_spec_errors(backend: Backend) {
    let server =
        TestServer::start_with(backend, &[("MYELIN__LIMITS__MAX_REQUEST_BYTES", "4096")]).await;
    let client = server.client();
    for path in ["/_matrix/client/v3/register", "/_matrix/client/v3/login"] {
        assert_error(
            &client.post_raw(path, b"{\"username\": ".to_vec()).await,
            400,
            "M_NOT_JSON",
        );
        assert_error(
            &client.post_raw(path, vec![b'x'; 10_000]).await,
            413,
            "M_TOO_LARGE",
        );
    }
    assert_error(
        &client
            .post("/_matrix/client/v3/register", &json!({ "username": 42 }))
            .await,
        400,
        "M_BAD_JSON",
    );
    // Login bodies without a usable `type`.
    for body in [json!({}), json!({ "type": 7 }), json!([1, 2])] {
        assert_error(
            &client.post("/_matrix/client/v3/login", &body).await,
            400,
            "M_BAD_JSON",
        );
    }
    assert_error(
        &client
            .post(
                "/_matrix/client/v3/login",
                &json!({ "type": "m.login.password", "password": "x" }),
            )
            .await,
        400,
        "M_MISSING_PARAM",
    );
    assert_error(
        &client
            .post(
                "/_matrix/client/v3/register",
                &json!({ "username": "Not Valid!", "password": "x" }),
            )
            .await,
        400,
        "M_INVALID_USERNAME",
    );
    assert_error(
        &client.get("/_matrix/client/v3/devices").await,
        401,
        "M_MISSING_TOKEN",
    );
    assert_error(
        &client
            .with_token("not-a-token")
            .get("/_matrix/client/v3/devices")
            .await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    // UIA with a session nobody issued.
    let (_, token, _) = register(&client, "rita", "pw").await;
    let (status, body) = client
        .with_token(&token)
        .post(
            "/_matrix/client/v3/delete_devices",
            &json!({ "devices": [], "auth": { "type": "m.login.dummy", "session": "forged" } }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    // The server is still fine.
    assert_eq!(client.get("/_matrix/client/versions").await.0, 200);
}

async fn login_and_registration_are_rate_limited(backend: Backend) {
    let server = TestServer::start_with(
        backend,
        &[
            ("MYELIN__RATE_LIMITS__LOGIN__PER_SECOND", "0.5"),
            ("MYELIN__RATE_LIMITS__LOGIN__BURST", "3"),
            ("MYELIN__RATE_LIMITS__REGISTRATION__PER_SECOND", "0.5"),
            ("MYELIN__RATE_LIMITS__REGISTRATION__BURST", "2"),
        ],
    )
    .await;
    let client = server.client();
    let attempt = json!({
        "type": "m.login.password",
        "identifier": { "type": "m.id.user", "user": "nobody" },
        "password": "x",
    });
    for _ in 0..3 {
        assert_error(
            &client.post("/_matrix/client/v3/login", &attempt).await,
            403,
            "M_FORBIDDEN",
        );
    }
    let limited = client.post("/_matrix/client/v3/login", &attempt).await;
    assert_error(&limited, 429, "M_LIMIT_EXCEEDED");
    let retry = limited.1["retry_after_ms"]
        .as_u64()
        .expect("retry_after_ms");
    assert!(retry > 0 && retry <= 2000, "{retry}");

    // Registration has its own bucket.
    register(&client, "sam", "pw").await;
    register(&client, "tom", "pw").await;
    assert_error(
        &client
            .post(
                "/_matrix/client/v3/register",
                &json!({ "username": "uma", "password": "pw", "auth": { "type": "m.login.dummy" } }),
            )
            .await,
        429,
        "M_LIMIT_EXCEEDED",
    );

    // After the advertised wait, login works again.
    tokio::time::sleep(std::time::Duration::from_millis(retry + 100)).await;
    assert_error(
        &client.post("/_matrix/client/v3/login", &attempt).await,
        403,
        "M_FORBIDDEN",
    );
}

backend_tests!(
    bad_input_gets_spec_errors,
    login_and_registration_are_rate_limited,
);
