//! A client discovers the server, gets spec errors for what it does not
//! know, and operators scrape metrics; the server keeps its identity and
//! schema across a hard kill.

use crate::common::{Backend, TestServer, assert_error};

async fn discovery_errors_and_metrics(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let client = server.client();

    let (status, versions) = client.get("/_matrix/client/versions").await;
    assert_eq!(status, 200);
    let list = versions["versions"].as_array().expect("versions list");
    assert!(list.iter().any(|v| v == "v1.1"), "{versions}");
    // Element looks for this before using dehydrated devices.
    assert_eq!(
        versions["unstable_features"]["org.matrix.msc3814"], true,
        "{versions}"
    );

    assert_error(
        &client.get("/_matrix/client/v3/no/such/endpoint").await,
        404,
        "M_UNRECOGNIZED",
    );
    assert_error(
        &client
            .post("/_matrix/client/versions", &serde_json::json!({}))
            .await,
        405,
        "M_UNRECOGNIZED",
    );
    // Without public_baseurl there is no client discovery to announce.
    assert_error(
        &client.get("/.well-known/matrix/client").await,
        404,
        "M_NOT_FOUND",
    );

    let (status, metrics) = client.get_text("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains(r#"myelin_http_requests_total{endpoint="/_matrix/client/versions",method="GET",status="200"}"#),
        "{metrics}"
    );
    assert!(metrics.contains("myelin_db_pool_connections"), "{metrics}");

    let key_before = std::fs::read_to_string(server.data_dir.join("signing.key")).expect("key");
    server.kill();
    server.restart().await;
    let key_after = std::fs::read_to_string(server.data_dir.join("signing.key")).expect("key");
    assert_eq!(key_before, key_after, "the signing key survives a restart");
}

async fn well_known_client_when_configured(backend: Backend) {
    let server = TestServer::start_with(
        backend,
        &[(
            "MYELIN__SERVER__PUBLIC_BASEURL",
            "https://matrix.example.org/",
        )],
    )
    .await;
    let (status, body) = server.client().get("/.well-known/matrix/client").await;
    assert_eq!(status, 200);
    assert_eq!(
        body["m.homeserver"]["base_url"],
        "https://matrix.example.org/"
    );
}

backend_tests!(
    discovery_errors_and_metrics,
    well_known_client_when_configured
);
