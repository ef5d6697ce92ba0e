//! A signed-in user ends sessions one at a time or all at once, keeps a
//! short-lived session going with refresh tokens, and signs in a new
//! device with a login token from an existing one.

use std::time::Duration;

use crate::common::{Backend, TestServer, assert_error, login_ok, password_auth, register};
use serde_json::json;

const WHOAMI: &str = "/_matrix/client/v3/account/whoami";

async fn logout_and_logout_all(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    let (_, first, _) = register(&client, "judy", "pw-judy").await;
    let (second, _) = login_ok(&client, "judy", "pw-judy").await;
    let (third, _) = login_ok(&client, "judy", "pw-judy").await;

    let (status, _) = client
        .with_token(&first)
        .post("/_matrix/client/v3/logout", &json!({}))
        .await;
    assert_eq!(status, 200);
    assert_error(
        &client.with_token(&first).get(WHOAMI).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    assert_eq!(client.with_token(&second).get(WHOAMI).await.0, 200);
    let (_, devices) = client
        .with_token(&second)
        .get("/_matrix/client/v3/devices")
        .await;
    assert_eq!(devices["devices"].as_array().map(Vec::len), Some(2));

    let (status, _) = client
        .with_token(&second)
        .post("/_matrix/client/v3/logout/all", &json!({}))
        .await;
    assert_eq!(status, 200);
    for token in [&second, &third] {
        let resp = client.with_token(token).get(WHOAMI).await;
        assert_error(&resp, 401, "M_UNKNOWN_TOKEN");
        // A hard logout: soft_logout absent (false by default).
        assert_ne!(resp.1["soft_logout"], json!(true), "{}", resp.1);
    }
    assert_error(&client.get(WHOAMI).await, 401, "M_MISSING_TOKEN");
    // The account itself is fine.
    login_ok(&client, "judy", "pw-judy").await;
}

async fn refresh_tokens_rotate_and_expire(backend: Backend) {
    let server = TestServer::start_with(
        backend,
        &[(
            "MYELIN__SESSIONS__REFRESHABLE_ACCESS_TOKEN_LIFETIME_MS",
            "1500",
        )],
    )
    .await;
    let client = server.client();
    register(&client, "ken", "pw-ken").await;
    let (status, body) = client
        .post(
            "/_matrix/client/v3/login",
            &json!({
                "type": "m.login.password",
                "identifier": { "type": "m.id.user", "user": "ken" },
                "password": "pw-ken",
                "refresh_token": true,
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in_ms"], 1500);
    let access = body["access_token"].as_str().expect("access").to_owned();
    let refresh = body["refresh_token"].as_str().expect("refresh").to_owned();
    assert_eq!(client.with_token(&access).get(WHOAMI).await.0, 200);

    // Expired: a soft logout, the client should refresh.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let resp = client.with_token(&access).get(WHOAMI).await;
    assert_error(&resp, 401, "M_UNKNOWN_TOKEN");
    assert_eq!(resp.1["soft_logout"], true, "{}", resp.1);

    let (status, renewed) = client
        .post(
            "/_matrix/client/v3/refresh",
            &json!({ "refresh_token": refresh }),
        )
        .await;
    assert_eq!(status, 200, "{renewed}");
    let new_access = renewed["access_token"].as_str().expect("access");
    let new_refresh = renewed["refresh_token"].as_str().expect("refresh");
    assert_eq!(renewed["expires_in_ms"], 1500);
    assert_ne!(new_refresh, refresh);
    assert_eq!(client.with_token(new_access).get(WHOAMI).await.0, 200);

    // The old refresh token was rotated out.
    let reused = client
        .post(
            "/_matrix/client/v3/refresh",
            &json!({ "refresh_token": refresh }),
        )
        .await;
    assert_error(&reused, 401, "M_UNKNOWN_TOKEN");
    assert_error(
        &client
            .post(
                "/_matrix/client/v3/refresh",
                &json!({ "refresh_token": "garbage" }),
            )
            .await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    // And the new one works again.
    let (status, _) = client
        .post(
            "/_matrix/client/v3/refresh",
            &json!({ "refresh_token": new_refresh }),
        )
        .await;
    assert_eq!(status, 200);

    // Registration can also start a refreshable session.
    let (status, body) = client
        .post(
            "/_matrix/client/v3/register",
            &json!({ "username": "ken2", "password": "pw", "refresh_token": true,
                     "auth": { "type": "m.login.dummy" } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["refresh_token"].is_string(), "{body}");
    assert_eq!(body["expires_in_ms"], 1500);
}

async fn sign_in_with_a_login_token(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    let (user_id, token, _) = register(&client, "leo", "pw-leo").await;
    let me = client.with_token(&token);
    const GET_TOKEN: &str = "/_matrix/client/v1/login/get_token";

    let (status, challenge) = me.post(GET_TOKEN, &json!({})).await;
    assert_eq!(status, 401, "{challenge}");
    let (status, issued) = me
        .post(
            GET_TOKEN,
            &json!({ "auth": password_auth("leo", "pw-leo", &challenge["session"]) }),
        )
        .await;
    assert_eq!(status, 200, "{issued}");
    assert!(issued["expires_in_ms"].as_u64().is_some_and(|ms| ms > 0));
    let login_token = issued["login_token"].as_str().expect("login_token");

    let with_token = json!({ "type": "m.login.token", "token": login_token });
    let (status, body) = client.post("/_matrix/client/v3/login", &with_token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], user_id.as_str());
    let new_token = body["access_token"].as_str().expect("token");
    assert_eq!(client.with_token(new_token).get(WHOAMI).await.0, 200);

    // Single use.
    assert_error(
        &client.post("/_matrix/client/v3/login", &with_token).await,
        403,
        "M_FORBIDDEN",
    );
}

backend_tests!(
    logout_and_logout_all,
    refresh_tokens_rotate_and_expire,
    sign_in_with_a_login_token,
);
