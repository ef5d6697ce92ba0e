//! The operator's monitoring kit (`ops/monitoring/`) watches metrics this
//! server really exports: every `myelin_*` name the alert rules and the
//! Grafana dashboard query must appear on `/metrics` once the server has
//! done some work. A renamed metric fails here, not silently in production.

use std::collections::BTreeSet;
use std::path::Path;

use crate::common::{Backend, TestServer, create_user};
use serde_json::json;

/// The `myelin_*` metric names a file mentions.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("myelin_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// The metric names of a Prometheus text exposition (sample lines).
fn exported_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

fn kit_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ops/monitoring")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

async fn kit_names_exist(backend: Backend) {
    let server = TestServer::start(backend).await;
    // Work that makes every labelled metric appear: requests, a room
    // (events persisted), an initial and an incremental sync.
    let (_, token) = create_user(&server, "operator").await;
    let client = server.client().with_token(&token);
    let (status, _) = client
        .post("/_matrix/client/v3/createRoom", &json!({ "name": "ops" }))
        .await;
    assert_eq!(status, 200);
    let (status, body) = client.get("/_matrix/client/v3/sync").await;
    assert_eq!(status, 200);
    let since = body["next_batch"].as_str().expect("next_batch");
    let (status, _) = client
        .get(&format!("/_matrix/client/v3/sync?since={since}&timeout=0"))
        .await;
    assert_eq!(status, 200);

    let (status, exposition) = server.client().get_text("/metrics").await;
    assert_eq!(status, 200);
    let exported = exported_names(&exposition);

    let mut wanted = metric_names(&kit_file("alerts.yml"));
    wanted.extend(metric_names(&kit_file("grafana-dashboard.json")));
    assert!(
        wanted.len() >= 8,
        "the kit should watch the server's main metrics: {wanted:?}"
    );
    let missing: Vec<_> = wanted.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "the monitoring kit queries metrics the server does not export: {missing:?}\n{exposition}"
    );
}

backend_tests!(kit_names_exist);

#[test]
fn names_are_found_in_queries() {
    let names = metric_names(
        r#"rate(myelin_http_requests_total{status=~"5.."}[5m]) / up{job="myelin"} + myelin_a_bucket"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["myelin_a_bucket", "myelin_http_requests_total"]
    );
}
