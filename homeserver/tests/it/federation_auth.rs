//! Beta's federation listener refuses every request whose `X-Matrix` authentication does not
//! hold (401 M_UNAUTHORIZED before any handler runs) and accepts a correctly signed one; and
//! a replaced certificate is served to new connections without a restart.

use std::time::{Duration, Instant};

use crate::common::federation::{FedServer, Federation};
use crate::common::{Backend, create_user};
use http::HeaderValue;
use myelin_federation::request_auth::{SignedRequest, sign_request};
use myelin_proto::signing::{KeyPair, parse_key_file};
use ruma::ServerName;
use rustls::pki_types::pem::PemObject;
use serde_json::json;

/// The signing key a test server generated in its data directory.
fn signing_key(server: &FedServer) -> KeyPair {
    let text = std::fs::read_to_string(server.data_dir.join("signing.key")).expect("key file");
    parse_key_file(&text).expect("key").remove(0)
}

fn name(s: &str) -> &ServerName {
    <&ServerName>::try_from(s).expect("server name")
}

fn x_matrix(
    key: &KeyPair,
    origin: &str,
    destination: &str,
    method: &str,
    uri: &str,
) -> (&'static str, String) {
    let header: HeaderValue = sign_request(
        key,
        name(origin),
        name(destination),
        SignedRequest {
            method,
            uri,
            body: b"",
        },
    )
    .expect("sign");
    (
        "authorization",
        header.to_str().expect("ascii header").to_owned(),
    )
}

async fn hostile_requests_are_refused(backend: Backend) {
    let fed = Federation::start(backend, &["alpha.test", "beta.test"]).await;
    let (alpha, beta) = (&fed["alpha.test"], &fed["beta.test"]);
    create_user(beta, "bob").await;
    let uri = "/_matrix/federation/v1/query/profile?user_id=%40bob%3Abeta.test";
    let alpha_key = signing_key(alpha);

    // Control: alpha's real key, signing for beta, is accepted (so the refusals below are
    // about what each one changes).
    let good = x_matrix(&alpha_key, "alpha.test", "beta.test", "GET", uri);
    let (status, body) = fed
        .request(beta, "GET", uri, std::slice::from_ref(&good), None)
        .await;
    assert_eq!(status, 200, "{body}\n{}", beta.log());

    let refused = |label: &'static str| {
        move |(status, body): (u16, serde_json::Value)| {
            assert_eq!(status, 401, "{label}: {body}");
            assert_eq!(body["errcode"], "M_UNAUTHORIZED", "{label}: {body}");
        }
    };
    // No Authorization header at all, and one that is not X-Matrix.
    refused("no header")(fed.request(beta, "GET", uri, &[], None).await);
    refused("bearer")(
        fed.request(
            beta,
            "GET",
            uri,
            &[("authorization", "Bearer abc".to_owned())],
            None,
        )
        .await,
    );
    // Alpha's name and key ID, but signed with another key.
    let stranger = KeyPair::from_seed(alpha_key.version(), &[42u8; 32]).expect("key");
    let forged = x_matrix(&stranger, "alpha.test", "beta.test", "GET", uri);
    refused("forged")(fed.request(beta, "GET", uri, &[forged], None).await);
    // A genuine signature over another URI.
    let other_uri = x_matrix(
        &alpha_key,
        "alpha.test",
        "beta.test",
        "GET",
        "/_matrix/federation/v1/query/profile?user_id=%40eve%3Abeta.test",
    );
    refused("other uri")(fed.request(beta, "GET", uri, &[other_uri], None).await);
    // Genuinely alpha's, but for another destination.
    let elsewhere = x_matrix(&alpha_key, "alpha.test", "gamma.test", "GET", uri);
    refused("wrong destination")(fed.request(beta, "GET", uri, &[elsewhere], None).await);
    // A key ID alpha never published.
    let unknown = KeyPair::from_seed("never_published", &[43u8; 32]).expect("key");
    let unknown = x_matrix(&unknown, "alpha.test", "beta.test", "GET", uri);
    refused("unknown key")(fed.request(beta, "GET", uri, &[unknown], None).await);
    // An origin whose keys cannot be fetched (its name does not resolve).
    let ghost = KeyPair::from_seed("1", &[44u8; 32]).expect("key");
    let ghost = x_matrix(&ghost, "ghost.test", "beta.test", "GET", uri);
    refused("unfetchable origin")(fed.request(beta, "GET", uri, &[ghost], None).await);
    // Garbage in the header.
    refused("garbage")(
        fed.request(
            beta,
            "GET",
            uri,
            &[("authorization", "X-Matrix origin=\"unterminated".to_owned())],
            None,
        )
        .await,
    );
    // The directory query is behind the same check.
    let dir_uri = "/_matrix/federation/v1/query/directory?room_alias=%23x%3Abeta.test";
    refused("directory")(fed.request(beta, "GET", dir_uri, &[], None).await);

    // The unauthenticated endpoints stay open.
    let (status, body) = fed
        .request(beta, "GET", "/_matrix/federation/v1/version", &[], None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["server"]["name"], "Myelin");
    // And the good request still works afterwards.
    let (status, body) = fed.request(beta, "GET", uri, &[good], None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"displayname": "bob"}));
}

async fn certificate_is_reloaded_without_restart(backend: Backend) {
    let fed = Federation::start(backend, &["beta.test"]).await;
    let beta = &fed["beta.test"];
    let before = fed.presented_certificate(beta).await;

    let (cert, key) = fed.ca.issue("beta.test", 2);
    // Key first, then certificate: a reload between the two writes fails to load a
    // mismatched pair and keeps the old certificate; the next change completes it.
    std::fs::write(&beta.key_path, key).expect("write key");
    std::fs::write(&beta.cert_path, &cert).expect("write cert");

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = fed.presented_certificate(beta).await;
        if now != before {
            let expected = rustls::pki_types::CertificateDer::pem_slice_iter(cert.as_bytes())
                .next()
                .expect("a certificate")
                .expect("PEM");
            assert_eq!(now, expected, "the new certificate is served");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was not picked up:\n{}",
            beta.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Still the same process: the client API answers as before.
    let (status, _) = beta.client().get("/_matrix/client/versions").await;
    assert_eq!(status, 200);
}

backend_tests!(
    hostile_requests_are_refused,
    certificate_is_reloaded_without_restart
);
