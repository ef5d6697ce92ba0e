//! What ending a session takes with it: logging a device out or deleting
//! it removes the pushers that device set up (Synapse does the same), and
//! a refresh token whose response got lost can be used again until the
//! new access token is first used.

use crate::common::{Backend, Client, TestServer, assert_error, login_ok, password_auth, register};
use serde_json::{Value, json};

const V3: &str = "/_matrix/client/v3";
const WHOAMI: &str = "/_matrix/client/v3/account/whoami";

fn pusher(pushkey: &str) -> Value {
    json!({
        "app_id": "im.vector.app", "pushkey": pushkey, "kind": "http",
        "app_display_name": "Element", "device_display_name": pushkey, "lang": "en",
        "data": {"url": "https://push.example.org/_matrix/push/v1/notify"}
    })
}

async fn pushkeys(client: &Client) -> Vec<String> {
    let (status, body) = client.get(&format!("{V3}/pushers")).await;
    assert_eq!(status, 200, "{body}");
    let mut keys: Vec<String> = body["pushers"]
        .as_array()
        .expect("pushers")
        .iter()
        .map(|p| p["pushkey"].as_str().unwrap_or_default().to_owned())
        .collect();
    keys.sort();
    keys
}

async fn signing_out_removes_the_devices_pushers(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    let (user_id, laptop_token, _) = register(&client, "ann", "pw-ann").await;
    let (phone_token, _) = login_ok(&client, "ann", "pw-ann").await;
    let (tablet_token, tablet) = login_ok(&client, "ann", "pw-ann").await;
    let laptop = client.with_token(&laptop_token);
    let phone = client.with_token(&phone_token);
    let on_tablet = client.with_token(&tablet_token);
    for (device, key) in [
        (&laptop, "laptop"),
        (&phone, "phone"),
        (&on_tablet, "tablet"),
    ] {
        let (status, body) = device
            .post(&format!("{V3}/pushers/set"), &pusher(key))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(pushkeys(&laptop).await, ["laptop", "phone", "tablet"]);

    // Logging the phone out takes its pusher.
    let (status, _) = phone.post(&format!("{V3}/logout"), &json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(pushkeys(&laptop).await, ["laptop", "tablet"]);

    // So does deleting the tablet from the laptop.
    let path = format!("{V3}/devices/{tablet}");
    let (status, challenge) = laptop.delete(&path).await;
    assert_eq!(status, 401);
    let (status, body) = laptop
        .send_json(
            reqwest::Method::DELETE,
            &path,
            &json!({"auth": password_auth(&user_id, "pw-ann", &challenge["session"])}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(pushkeys(&laptop).await, ["laptop"]);

    // logout/all takes every device's pushers.
    let (again_token, _) = login_ok(&client, "ann", "pw-ann").await;
    let (status, _) = laptop.post(&format!("{V3}/logout/all"), &json!({})).await;
    assert_eq!(status, 200);
    let (fresh_token, _) = login_ok(&client, "ann", "pw-ann").await;
    assert!(pushkeys(&client.with_token(&fresh_token)).await.is_empty());
    assert_error(
        &client.with_token(&again_token).get(WHOAMI).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
}

async fn refresh(client: &Client, token: &str) -> (u16, Value) {
    let (status, body) = client
        .post(&format!("{V3}/refresh"), &json!({"refresh_token": token}))
        .await;
    (status.as_u16(), body)
}

fn tokens(body: &Value) -> (String, String) {
    (
        body["access_token"].as_str().expect("access").to_owned(),
        body["refresh_token"].as_str().expect("refresh").to_owned(),
    )
}

async fn a_lost_refresh_can_be_retried(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    register(&client, "ken", "pw-ken").await;
    let (status, body) = client
        .post(
            &format!("{V3}/login"),
            &json!({
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "ken"},
                "password": "pw-ken",
                "refresh_token": true,
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (access1, refresh1) = tokens(&body);

    // The first refresh's response is "lost"...
    let (status, body) = refresh(&client, &refresh1).await;
    assert_eq!(status, 200, "{body}");
    let (lost_access, lost_refresh) = tokens(&body);
    // ...so the client retries with the same refresh token, and gets a
    // new session that replaces the lost one.
    let (status, body) = refresh(&client, &refresh1).await;
    assert_eq!(status, 200, "{body}");
    let (access3, refresh3) = tokens(&body);
    assert_ne!(access3, lost_access);
    for gone in [&access1, &lost_access] {
        assert_error(
            &client.with_token(gone).get(WHOAMI).await,
            401,
            "M_UNKNOWN_TOKEN",
        );
    }
    assert_eq!(refresh(&client, &lost_refresh).await.0, 401);

    // Using the new access token spends the old refresh token.
    assert_eq!(client.with_token(&access3).get(WHOAMI).await.0, 200);
    let resp = refresh(&client, &refresh1).await;
    assert_eq!(resp.0, 401, "{}", resp.1);
    assert_eq!(resp.1["errcode"], "M_UNKNOWN_TOKEN");
    // The access token keeps working, and the new refresh token works.
    assert_eq!(client.with_token(&access3).get(WHOAMI).await.0, 200);
    let (status, body) = refresh(&client, &refresh3).await;
    assert_eq!(status, 200, "{body}");
}

backend_tests!(
    signing_out_removes_the_devices_pushers,
    a_lost_refresh_can_be_retried
);
