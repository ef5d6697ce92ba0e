//! A user sets up a profile, changes the password (signing out elsewhere),
//! checks what the server allows, and finally deactivates the account,
//! whose ID then stays reserved.

use crate::common::{Backend, TestServer, assert_error, login, login_ok, password_auth, register};
use serde_json::json;

const WHOAMI: &str = "/_matrix/client/v3/account/whoami";

async fn change_password(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    let (_, here, device) = register(&client, "mia", "old-pw").await;
    let (elsewhere, _) = login_ok(&client, "mia", "old-pw").await;
    let me = client.with_token(&here);
    const PATH: &str = "/_matrix/client/v3/account/password";

    let (status, challenge) = me.post(PATH, &json!({ "new_password": "new-pw" })).await;
    assert_eq!(status, 401, "{challenge}");
    let (status, wrong) = me
        .post(
            PATH,
            &json!({ "new_password": "new-pw",
                     "auth": password_auth("mia", "bad", &challenge["session"]) }),
        )
        .await;
    assert_eq!(
        (status.as_u16(), &wrong["errcode"]),
        (401, &json!("M_FORBIDDEN"))
    );
    let (status, body) = me
        .post(
            PATH,
            &json!({ "new_password": "new-pw",
                     "auth": password_auth("mia", "old-pw", &challenge["session"]) }),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    assert_error(&login(&client, "mia", "old-pw").await, 403, "M_FORBIDDEN");
    login_ok(&client, "mia", "new-pw").await;
    // Other sessions are signed out; this one stays.
    assert_error(
        &client.with_token(&elsewhere).get(WHOAMI).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    let (status, whoami) = me.get(WHOAMI).await;
    assert_eq!(status, 200);
    assert_eq!(whoami["device_id"], device.as_str());

    // logout_devices: false keeps the others signed in.
    let (other, _) = login_ok(&client, "mia", "new-pw").await;
    let (_, challenge) = me.post(PATH, &json!({ "new_password": "third" })).await;
    let (status, _) = me
        .post(
            PATH,
            &json!({ "new_password": "third", "logout_devices": false,
                     "auth": password_auth("mia", "new-pw", &challenge["session"]) }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(client.with_token(&other).get(WHOAMI).await.0, 200);
}

async fn deactivate_account(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    let (user_id, token, _) = register(&client, "ned", "pw-ned").await;
    let (other, _) = login_ok(&client, "ned", "pw-ned").await;
    let me = client.with_token(&token);
    const PATH: &str = "/_matrix/client/v3/account/deactivate";

    let (status, challenge) = me.post(PATH, &json!({})).await;
    assert_eq!(status, 401);
    let (status, body) = me
        .post(
            PATH,
            &json!({ "auth": password_auth(&user_id, "pw-ned", &challenge["session"]) }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id_server_unbind_result"], "success");

    for t in [&token, &other] {
        assert_error(
            &client.with_token(t).get(WHOAMI).await,
            401,
            "M_UNKNOWN_TOKEN",
        );
    }
    assert_error(
        &login(&client, "ned", "pw-ned").await,
        403,
        "M_USER_DEACTIVATED",
    );
    assert_error(
        &client
            .get("/_matrix/client/v3/register/available?username=ned")
            .await,
        400,
        "M_USER_IN_USE",
    );
    assert_error(
        &client
            .post(
                "/_matrix/client/v3/register",
                &json!({ "username": "ned", "password": "x", "auth": { "type": "m.login.dummy" } }),
            )
            .await,
        400,
        "M_USER_IN_USE",
    );
}

async fn profile_get_and_set(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    let (user_id, token, _) = register(&client, "olga", "pw-olga").await;
    let (_, other_token, _) = register(&client, "pete", "pw-pete").await;
    let me = client.with_token(&token);
    let base = format!("/_matrix/client/v3/profile/{user_id}");

    // New accounts are named after their localpart, as in Synapse.
    let (status, profile) = client.get(&base).await;
    assert_eq!(status, 200);
    assert_eq!(profile, json!({ "displayname": "olga" }));

    let (status, _) = me
        .put(
            &format!("{base}/displayname"),
            &json!({ "displayname": "Olga K." }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = me
        .put(
            &format!("{base}/avatar_url"),
            &json!({ "avatar_url": "mxc://test.localhost/abc" }),
        )
        .await;
    assert_eq!(status, 200);
    let (_, name) = client.get(&format!("{base}/displayname")).await;
    assert_eq!(name, json!({ "displayname": "Olga K." }));
    let (_, avatar) = client.get(&format!("{base}/avatar_url")).await;
    assert_eq!(avatar, json!({ "avatar_url": "mxc://test.localhost/abc" }));
    let (_, profile) = client.get(&base).await;
    assert_eq!(
        profile,
        json!({ "displayname": "Olga K.", "avatar_url": "mxc://test.localhost/abc" })
    );

    // Only your own profile is yours to change.
    assert_error(
        &client
            .with_token(&other_token)
            .put(
                &format!("{base}/displayname"),
                &json!({ "displayname": "hacked" }),
            )
            .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &me.put(
            &format!("{base}/displayname"),
            &json!({ "displayname": "x".repeat(300) }),
        )
        .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &client
            .get("/_matrix/client/v3/profile/@nobody:test.localhost")
            .await,
        404,
        "M_NOT_FOUND",
    );
    // Clearing.
    let (status, _) = me
        .put(
            &format!("{base}/displayname"),
            &json!({ "displayname": null }),
        )
        .await;
    assert_eq!(status, 200);
    let (_, profile) = client.get(&base).await;
    assert_eq!(profile, json!({ "avatar_url": "mxc://test.localhost/abc" }));
}

async fn capabilities(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    let (_, token, _) = register(&client, "quinn", "pw").await;
    assert_error(
        &client.get("/_matrix/client/v3/capabilities").await,
        401,
        "M_MISSING_TOKEN",
    );
    let (status, body) = client
        .with_token(&token)
        .get("/_matrix/client/v3/capabilities")
        .await;
    assert_eq!(status, 200);
    let caps = &body["capabilities"];
    assert_eq!(caps["m.change_password"]["enabled"], true);
    assert_eq!(caps["m.set_displayname"]["enabled"], true);
    assert_eq!(caps["m.set_avatar_url"]["enabled"], true);
    assert_eq!(caps["m.3pid_changes"]["enabled"], false);
    assert_eq!(caps["m.room_versions"]["default"], "12");
    assert_eq!(
        caps["m.room_versions"]["available"],
        json!({ "10": "stable", "11": "stable", "12": "stable" })
    );
}

backend_tests!(
    change_password,
    deactivate_account,
    profile_get_and_set,
    capabilities,
);
