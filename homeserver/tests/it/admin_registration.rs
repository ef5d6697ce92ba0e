//! An operator creates accounts without the public registration flow:
//! over HTTP with Synapse's shared-secret scheme (as admin tools do), or
//! with `myelin register-user` on the server's machine.

use crate::common::{Backend, TestServer, assert_error, login, login_ok};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha1::Sha1;

const PATH: &str = "/_synapse/admin/v1/register";
const SECRET: &str = "s3cr3t-shared";

fn mac(secret: &str, nonce: &str, user: &str, password: &str, admin: bool) -> String {
    let mut m = <Hmac<Sha1> as KeyInit>::new_from_slice(secret.as_bytes()).expect("key");
    m.update(nonce.as_bytes());
    m.update(b"\0");
    m.update(user.as_bytes());
    m.update(b"\0");
    m.update(password.as_bytes());
    m.update(b"\0");
    m.update(if admin { b"admin" } else { b"notadmin" });
    m.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn shared_secret_registration(backend: Backend) {
    let server = TestServer::start_with(
        backend,
        &[
            ("MYELIN__REGISTRATION__SHARED_SECRET", SECRET),
            // Works even with public registration off.
            ("MYELIN__REGISTRATION__ENABLED", "false"),
        ],
    )
    .await;
    let client = server.client();
    let nonce = || async {
        let (status, body) = client.get(PATH).await;
        assert_eq!(status, 200, "{body}");
        body["nonce"].as_str().expect("nonce").to_owned()
    };

    let n = nonce().await;
    let request = json!({
        "nonce": n, "username": "root", "password": "pw-root", "admin": true,
        "mac": mac(SECRET, &n, "root", "pw-root", true),
    });
    let (status, body) = client.post(PATH, &request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], "@root:test.localhost");
    assert_eq!(body["home_server"], "test.localhost");
    assert!(body["device_id"].is_string());
    let token = body["access_token"].as_str().expect("token");
    assert_eq!(
        client
            .with_token(token)
            .get("/_matrix/client/v3/account/whoami")
            .await
            .0,
        200
    );
    login_ok(&client, "root", "pw-root").await;

    // A nonce is single-use.
    assert_error(&client.post(PATH, &request).await, 400, "M_UNKNOWN");

    // A MAC over other values (here: claiming admin) is refused, and the
    // nonce is spent anyway.
    let n = nonce().await;
    let forged = json!({
        "nonce": n, "username": "sneaky", "password": "pw", "admin": true,
        "mac": mac(SECRET, &n, "sneaky", "pw", false),
    });
    assert_error(&client.post(PATH, &forged).await, 403, "M_FORBIDDEN");
    let retry = json!({
        "nonce": n, "username": "sneaky", "password": "pw", "admin": false,
        "mac": mac(SECRET, &n, "sneaky", "pw", false),
    });
    assert_error(&client.post(PATH, &retry).await, 400, "M_UNKNOWN");
    assert_error(&login(&client, "sneaky", "pw").await, 403, "M_FORBIDDEN");

    // Wrong secret, unknown nonce, taken name.
    let n = nonce().await;
    let wrong_key = json!({
        "nonce": n, "username": "x1", "password": "pw",
        "mac": mac("guess", &n, "x1", "pw", false),
    });
    assert_error(&client.post(PATH, &wrong_key).await, 403, "M_FORBIDDEN");
    let made_up = json!({
        "nonce": "made-up", "username": "x2", "password": "pw",
        "mac": mac(SECRET, "made-up", "x2", "pw", false),
    });
    assert_error(&client.post(PATH, &made_up).await, 400, "M_UNKNOWN");
    let n = nonce().await;
    let taken = json!({
        "nonce": n, "username": "root", "password": "pw",
        "mac": mac(SECRET, &n, "root", "pw", false),
    });
    assert_error(&client.post(PATH, &taken).await, 400, "M_USER_IN_USE");
    assert_error(
        &client.post_raw(PATH, b"{nope".to_vec()).await,
        400,
        "M_NOT_JSON",
    );
}

async fn shared_secret_off_by_default(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    assert_error(&client.get(PATH).await, 400, "M_UNKNOWN");
    assert_error(
        &client
            .post(
                PATH,
                &json!({ "nonce": "n", "username": "u", "password": "p", "mac": "00" }),
            )
            .await,
        400,
        "M_UNKNOWN",
    );
}

async fn register_user_command(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();

    let out = server.run_cli(
        &[
            "register-user",
            "admin",
            "--password",
            "pw-admin",
            "--admin",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("@admin:test.localhost"));
    let (status, body) = login(&client, "admin", "pw-admin").await;
    assert_eq!(status, 200, "{body}");

    // From a file, and from standard input.
    let file = server.data_dir.join("pw.txt");
    std::fs::write(&file, "pw-file\n").expect("write");
    let out = server.run_cli(
        &[
            "register-user",
            "filed",
            "--password-file",
            &file.display().to_string(),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    login_ok(&client, "filed", "pw-file").await;
    let out = server.run_cli(&["register-user", "piped"], Some("pw-stdin\n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    login_ok(&client, "piped", "pw-stdin").await;

    // Taken and invalid names fail with a message and no account.
    let out = server.run_cli(&["register-user", "admin", "--password", "x"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let out = server.run_cli(&["register-user", "bad name", "--password", "x"], None);
    assert!(!out.status.success());
}

backend_tests!(
    shared_secret_registration,
    shared_secret_off_by_default,
    register_user_command,
);
