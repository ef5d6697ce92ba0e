//! A new user registers through the user-interactive flow a real client
//! follows, checks names first, signs in from more places by localpart or
//! full user ID, and the server remembers all of it across a restart.

use crate::common::{Backend, TestServer, assert_error, login, login_ok, register};
use serde_json::json;

async fn register_with_the_dummy_flow(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();

    // First contact: the server describes the flows and opens a session.
    let (status, challenge) = client
        .post(
            "/_matrix/client/v3/register",
            &json!({ "username": "alice", "password": "wonderland" }),
        )
        .await;
    assert_eq!(status, 401, "{challenge}");
    assert_eq!(challenge["flows"], json!([{ "stages": ["m.login.dummy"] }]));
    let session = challenge["session"].as_str().expect("session").to_owned();
    assert!(challenge["params"].is_object());

    // Completing the dummy stage registers and signs in.
    let (status, body) = client
        .post(
            "/_matrix/client/v3/register",
            &json!({
                "username": "alice",
                "password": "wonderland",
                "initial_device_display_name": "Alice's phone",
                "auth": { "type": "m.login.dummy", "session": session },
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], "@alice:test.localhost");
    let token = body["access_token"].as_str().expect("token");
    assert!(token.len() >= 43, "tokens carry at least 32 random bytes");
    let device_id = body["device_id"].as_str().expect("device");
    assert!(body.get("refresh_token").is_none(), "not asked for");

    let me = client.with_token(token);
    let (status, whoami) = me.get("/_matrix/client/v3/account/whoami").await;
    assert_eq!(status, 200);
    assert_eq!(
        whoami,
        json!({ "user_id": "@alice:test.localhost", "device_id": device_id, "is_guest": false })
    );
    let (_, device) = me
        .get(&format!("/_matrix/client/v3/devices/{device_id}"))
        .await;
    assert_eq!(device["display_name"], "Alice's phone");

    // The session was used up by the successful registration.
    let (status, body) = client
        .post(
            "/_matrix/client/v3/register",
            &json!({
                "username": "alice2",
                "password": "x",
                "auth": { "type": "m.login.dummy", "session": session },
            }),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    // The name is now taken, whatever the case.
    assert_error(
        &client
            .post(
                "/_matrix/client/v3/register",
                &json!({ "username": "ALICE", "password": "x", "auth": { "type": "m.login.dummy" } }),
            )
            .await,
        400,
        "M_USER_IN_USE",
    );
}

async fn usernames_are_checked_before_the_flow(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    register(&client, "bob", "builder").await;

    let (status, body) = client
        .get("/_matrix/client/v3/register/available?username=carol")
        .await;
    assert_eq!((status.as_u16(), body), (200, json!({ "available": true })));
    assert_error(
        &client
            .get("/_matrix/client/v3/register/available?username=bob")
            .await,
        400,
        "M_USER_IN_USE",
    );
    for bad in ["b%20b", "_bridge", "1234", "Bob%3Ax", ""] {
        assert_error(
            &client
                .get(&format!(
                    "/_matrix/client/v3/register/available?username={bad}"
                ))
                .await,
            400,
            "M_INVALID_USERNAME",
        );
    }
    for bad in ["b b", "_bridge", "1234", "ali:ce", "é"] {
        assert_error(
            &client
                .post(
                    "/_matrix/client/v3/register",
                    &json!({ "username": bad, "password": "x" }),
                )
                .await,
            400,
            "M_INVALID_USERNAME",
        );
    }

    // No username: the server picks one. inhibit_login: no session.
    let (status, body) = client
        .post(
            "/_matrix/client/v3/register",
            &json!({ "password": "pw", "inhibit_login": true, "auth": { "type": "m.login.dummy" } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let user_id = body["user_id"].as_str().expect("generated user ID");
    assert!(user_id.ends_with(":test.localhost"), "{user_id}");
    assert!(body.get("access_token").is_none(), "{body}");
    login_ok(&client, user_id, "pw").await;

    // Guests are not allowed; a completed flow still needs a password.
    assert_error(
        &client
            .post("/_matrix/client/v3/register?kind=guest", &json!({}))
            .await,
        403,
        "M_GUEST_ACCESS_FORBIDDEN",
    );
    assert_error(
        &client
            .post(
                "/_matrix/client/v3/register",
                &json!({ "username": "dave", "auth": { "type": "m.login.dummy" } }),
            )
            .await,
        400,
        "M_MISSING_PARAM",
    );
}

async fn registration_can_be_disabled(backend: Backend) {
    let server =
        TestServer::start_with(backend, &[("MYELIN__REGISTRATION__ENABLED", "false")]).await;
    let client = server.client();
    assert_error(
        &client
            .post(
                "/_matrix/client/v3/register",
                &json!({ "username": "eve", "password": "x", "auth": { "type": "m.login.dummy" } }),
            )
            .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &client
            .get("/_matrix/client/v3/register/available?username=eve")
            .await,
        403,
        "M_FORBIDDEN",
    );
}

async fn login_by_localpart_or_user_id(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    let (user_id, _, first_device) = register(&client, "frank", "secret-pw").await;

    let (status, flows) = client.get("/_matrix/client/v3/login").await;
    assert_eq!(status, 200);
    let types: Vec<&str> = flows["flows"]
        .as_array()
        .expect("flows")
        .iter()
        .filter_map(|f| f["type"].as_str())
        .collect();
    assert_eq!(types, ["m.login.password", "m.login.token"]);

    let (status, by_localpart) = login(&client, "frank", "secret-pw").await;
    assert_eq!(status, 200, "{by_localpart}");
    assert_eq!(by_localpart["user_id"], user_id.as_str());
    assert_ne!(by_localpart["device_id"], first_device.as_str());
    let (by_mxid, _) = login_ok(&client, "@frank:test.localhost", "secret-pw").await;
    // The deprecated `user` field still works.
    let (status, legacy) = client
        .post(
            "/_matrix/client/v3/login",
            &json!({ "type": "m.login.password", "user": "frank", "password": "secret-pw" }),
        )
        .await;
    assert_eq!(status, 200, "{legacy}");
    let (status, _) = client
        .with_token(&by_mxid)
        .get("/_matrix/client/v3/account/whoami")
        .await;
    assert_eq!(status, 200);

    assert_error(&login(&client, "frank", "wrong").await, 403, "M_FORBIDDEN");
    assert_error(&login(&client, "nobody", "x").await, 403, "M_FORBIDDEN");
    assert_error(
        &login(&client, "@frank:elsewhere.org", "secret-pw").await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &client
            .post(
                "/_matrix/client/v3/login",
                &json!({ "type": "m.login.magic", "password": "x" }),
            )
            .await,
        400,
        "M_UNKNOWN",
    );

    // Logging in again to an existing device replaces its session.
    let (status, again) = client
        .post(
            "/_matrix/client/v3/login",
            &json!({
                "type": "m.login.password",
                "identifier": { "type": "m.id.user", "user": "frank" },
                "password": "secret-pw",
                "device_id": first_device,
            }),
        )
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["device_id"], first_device.as_str());
    let me = client.with_token(again["access_token"].as_str().expect("token"));
    let (_, devices) = me.get("/_matrix/client/v3/devices").await;
    let ids: Vec<&str> = devices["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .filter_map(|d| d["device_id"].as_str())
        .collect();
    assert_eq!(ids.iter().filter(|d| **d == first_device).count(), 1);
    assert_eq!(ids.len(), 4, "{devices}");
}

async fn restart_keeps_users_and_sessions(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let client = server.client();
    let (user_id, token, device_id) = register(&client, "grace", "hopper").await;
    server.kill();
    server.restart().await;
    let client = server.client();
    let (status, whoami) = client
        .with_token(&token)
        .get("/_matrix/client/v3/account/whoami")
        .await;
    assert_eq!(status, 200, "{whoami}");
    assert_eq!(whoami["user_id"], user_id.as_str());
    assert_eq!(whoami["device_id"], device_id.as_str());
    login_ok(&client, "grace", "hopper").await;
}

backend_tests!(
    register_with_the_dummy_flow,
    usernames_are_checked_before_the_flow,
    registration_can_be_disabled,
    login_by_localpart_or_user_id,
    restart_keeps_users_and_sessions,
);
