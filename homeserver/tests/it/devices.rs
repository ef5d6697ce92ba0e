//! A user signed in on two devices lists, inspects, renames and removes
//! them; removing one confirms the password and signs that device out.

use crate::common::{Backend, TestServer, assert_error, login_ok, password_auth, register};
use serde_json::json;

fn device_ids(body: &serde_json::Value) -> Vec<String> {
    let mut ids: Vec<String> = body["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .filter_map(|d| d["device_id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

async fn manage_two_devices(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    let (user_id, laptop_token, laptop) = register(&client, "heidi", "pw-heidi").await;
    let (phone_token, phone) = login_ok(&client, "heidi", "pw-heidi").await;
    let on_laptop = client.with_token(&laptop_token);
    let on_phone = client.with_token(&phone_token);

    let (status, list) = on_laptop.get("/_matrix/client/v3/devices").await;
    assert_eq!(status, 200);
    let mut both = vec![laptop.clone(), phone.clone()];
    both.sort();
    assert_eq!(device_ids(&list), both);
    let entry = list["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .find(|d| d["device_id"] == laptop.as_str())
        .expect("laptop listed");
    assert_eq!(entry["last_seen_ip"], "127.0.0.1");
    assert!(entry["last_seen_ts"].as_u64().is_some(), "{entry}");

    // Rename, then read back.
    let (status, _) = on_laptop
        .put(
            &format!("/_matrix/client/v3/devices/{phone}"),
            &json!({ "display_name": "Phone" }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, got) = on_phone
        .get(&format!("/_matrix/client/v3/devices/{phone}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(got["display_name"], "Phone");
    assert_error(
        &on_laptop.get("/_matrix/client/v3/devices/NOSUCHDEV").await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &on_laptop
            .put(
                "/_matrix/client/v3/devices/NOSUCHDEV",
                &json!({ "display_name": "x" }),
            )
            .await,
        404,
        "M_NOT_FOUND",
    );
    // Another user's device is not yours to see.
    let (_, mallory_token, _) = register(&client, "mallory", "pw-m").await;
    assert_error(
        &client
            .with_token(&mallory_token)
            .get(&format!("/_matrix/client/v3/devices/{phone}"))
            .await,
        404,
        "M_NOT_FOUND",
    );

    // Deleting asks for the password first.
    let path = format!("/_matrix/client/v3/devices/{phone}");
    let (status, challenge) = on_laptop.delete(&path).await;
    assert_eq!(status, 401, "{challenge}");
    assert_eq!(
        challenge["flows"],
        json!([{ "stages": ["m.login.password"] }])
    );
    let session = challenge["session"].clone();
    let delete_with = |auth: serde_json::Value| {
        let on_laptop = on_laptop.clone();
        let path = path.clone();
        async move {
            on_laptop
                .send_json(reqwest::Method::DELETE, &path, &json!({ "auth": auth }))
                .await
        }
    };
    let (status, wrong) = delete_with(password_auth(&user_id, "nope", &session)).await;
    assert_eq!(status, 401, "{wrong}");
    assert_eq!(wrong["errcode"], "M_FORBIDDEN");
    assert_eq!(wrong["session"], session);
    // The phone still works until the deletion succeeds.
    assert_eq!(
        on_phone.get("/_matrix/client/v3/account/whoami").await.0,
        200
    );
    let (status, body) = delete_with(password_auth("heidi", "pw-heidi", &session)).await;
    assert_eq!(status, 200, "{body}");
    assert_error(
        &on_phone.get("/_matrix/client/v3/account/whoami").await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    let (_, list) = on_laptop.get("/_matrix/client/v3/devices").await;
    assert_eq!(device_ids(&list), vec![laptop.clone()]);

    // A session completed for one operation cannot be replayed.
    let (status, _) = delete_with(password_auth("heidi", "pw-heidi", &session)).await;
    assert_eq!(status, 400);
}

async fn delete_several_devices(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    let (_, token, main) = register(&client, "ivan", "pw-ivan").await;
    let (t1, d1) = login_ok(&client, "ivan", "pw-ivan").await;
    let (t2, d2) = login_ok(&client, "ivan", "pw-ivan").await;
    let me = client.with_token(&token);

    let (status, challenge) = me
        .post(
            "/_matrix/client/v3/delete_devices",
            &json!({ "devices": [d1, d2] }),
        )
        .await;
    assert_eq!(status, 401);
    // A session started for deleting devices cannot deactivate the account.
    let (status, body) = me
        .post(
            "/_matrix/client/v3/account/deactivate",
            &json!({ "auth": password_auth("ivan", "pw-ivan", &challenge["session"]) }),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = me
        .post(
            "/_matrix/client/v3/delete_devices",
            &json!({
                "devices": [d1, d2, "NOSUCHDEV"],
                "auth": password_auth("ivan", "pw-ivan", &challenge["session"]),
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for t in [t1, t2] {
        assert_error(
            &client
                .with_token(&t)
                .get("/_matrix/client/v3/account/whoami")
                .await,
            401,
            "M_UNKNOWN_TOKEN",
        );
    }
    let (_, list) = me.get("/_matrix/client/v3/devices").await;
    assert_eq!(device_ids(&list), vec![main]);
}

backend_tests!(manage_two_devices, delete_several_devices);
