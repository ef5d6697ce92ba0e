//! Two servers, alpha.test and beta.test, reach each other over real TLS and DNS: Alice on
//! alpha looks up Bob's profile and a room alias of beta through her own server (alpha asks
//! beta with a signed request, beta fetches alpha's keys to check it); alpha's notary
//! endpoints hand out beta's own key document signed by beta and by alpha.

use std::collections::BTreeMap;

use crate::common::federation::Federation;
use crate::common::{Backend, assert_error, create_user, enc};
use myelin_proto::canonical_json::{self, Object};
use myelin_proto::signing::{PublicKey, verify_json};
use serde_json::{Value, json};

const V3: &str = "/_matrix/client/v3";

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("ms")
}

/// The `verify_keys` of a key document, parsed.
fn verify_keys(doc: &Value) -> BTreeMap<String, PublicKey> {
    doc["verify_keys"]
        .as_object()
        .expect("verify_keys")
        .iter()
        .map(|(id, k)| {
            (
                id.clone(),
                PublicKey::from_base64(k["key"].as_str().expect("key")).expect("public key"),
            )
        })
        .collect()
}

fn object(doc: &Value) -> Object {
    match canonical_json::from_json(doc.clone()).expect("canonical JSON") {
        canonical_json::Value::Object(o) => o,
        other => panic!("not an object: {other}"),
    }
}

async fn profile_and_alias_of_a_remote_server(backend: Backend) {
    let fed = Federation::start(backend, &["alpha.test", "beta.test"]).await;
    let (alpha, beta) = (&fed["alpha.test"], &fed["beta.test"]);
    let (_, alice_token) = create_user(alpha, "alice").await;
    let (bob_id, bob_token) = create_user(beta, "bob").await;
    assert_eq!(bob_id, "@bob:beta.test");
    let alice = alpha.client().with_token(&alice_token);
    let bob = beta.client().with_token(&bob_token);

    let (status, body) = bob
        .put(
            &format!("{V3}/profile/{}/displayname", enc(&bob_id)),
            &json!({"displayname": "Bob of Beta"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = bob
        .put(
            &format!("{V3}/profile/{}/avatar_url", enc(&bob_id)),
            &json!({"avatar_url": "mxc://beta.test/bob"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Alice asks her own server; it asks beta over federation.
    let (status, body) = alice.get(&format!("{V3}/profile/{}", enc(&bob_id))).await;
    assert_eq!(status, 200, "{body}\n{}", alpha.log());
    assert_eq!(body["displayname"], "Bob of Beta");
    assert_eq!(body["avatar_url"], "mxc://beta.test/bob");
    let (status, body) = alice
        .get(&format!("{V3}/profile/{}/displayname", enc(&bob_id)))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"displayname": "Bob of Beta"}));
    let (status, body) = alice
        .get(&format!("{V3}/profile/{}/avatar_url", enc(&bob_id)))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"avatar_url": "mxc://beta.test/bob"}));
    // Beta's "no such user" comes back as the spec's 404.
    assert_error(
        &alice
            .get(&format!("{V3}/profile/{}", enc("@nobody:beta.test")))
            .await,
        404,
        "M_NOT_FOUND",
    );

    // A room alias of beta, resolved through alpha.
    let (status, body) = bob
        .post(
            &format!("{V3}/createRoom"),
            &json!({"room_alias_name": "lounge", "preset": "public_chat"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let room_id = body["room_id"].as_str().expect("room_id").to_owned();
    let (status, body) = alice
        .get(&format!("{V3}/directory/room/{}", enc("#lounge:beta.test")))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["room_id"], room_id.as_str());
    assert_eq!(body["servers"], json!(["beta.test"]));
    assert_error(
        &alice
            .get(&format!("{V3}/directory/room/{}", enc("#nope:beta.test")))
            .await,
        404,
        "M_NOT_FOUND",
    );
    // A server name that resolves nowhere has no aliases.
    assert_error(
        &alice
            .get(&format!("{V3}/directory/room/{}", enc("#x:nowhere.test")))
            .await,
        404,
        "M_NOT_FOUND",
    );
}

async fn notary_returns_keys_signed_by_origin_and_notary(backend: Backend) {
    let fed = Federation::start(backend, &["alpha.test", "beta.test"]).await;
    let (alpha, beta) = (&fed["alpha.test"], &fed["beta.test"]);

    // Each server's own document is self-signed and valid for about a day.
    let (status, beta_doc) = fed
        .request(beta, "GET", "/_matrix/key/v2/server", &[], None)
        .await;
    assert_eq!(status, 200, "{beta_doc}");
    assert_eq!(beta_doc["server_name"], "beta.test");
    let beta_keys = verify_keys(&beta_doc);
    assert!(!beta_keys.is_empty());
    verify_json(&object(&beta_doc), "beta.test", &beta_keys).expect("beta signed its keys");
    let valid_until = beta_doc["valid_until_ts"].as_i64().expect("valid_until_ts");
    let day = 24 * 3600 * 1000;
    assert!(
        (valid_until - now_ms() - day).abs() < 60_000,
        "{valid_until}"
    );
    let (status, alpha_doc) = fed
        .request(alpha, "GET", "/_matrix/key/v2/server", &[], None)
        .await;
    assert_eq!(status, 200, "{alpha_doc}");
    let alpha_keys = verify_keys(&alpha_doc);

    let check = |answer: &Value| {
        let docs = answer["server_keys"].as_array().expect("server_keys");
        assert!(!docs.is_empty(), "{answer}");
        for doc in docs {
            assert_eq!(doc["server_name"], "beta.test");
            assert_eq!(verify_keys(doc), beta_keys);
            let obj = object(doc);
            verify_json(&obj, "beta.test", &beta_keys).expect("signed by beta");
            verify_json(&obj, "alpha.test", &alpha_keys).expect("counter-signed by alpha");
        }
    };
    // GET, asking for keys valid for the next hour.
    let (status, answer) = fed
        .request(
            alpha,
            "GET",
            &format!(
                "/_matrix/key/v2/query/beta.test?minimum_valid_until_ts={}",
                now_ms() + 3_600_000
            ),
            &[],
            None,
        )
        .await;
    assert_eq!(status, 200, "{answer}\n{}", alpha.log());
    check(&answer);
    // POST, for a named key and for all keys, plus an unknown server (no documents).
    let key_id = beta_keys.keys().next().expect("a key").clone();
    for criteria in [json!({ key_id.clone(): {} }), json!({})] {
        let (status, answer) = fed
            .request(
                alpha,
                "POST",
                "/_matrix/key/v2/query",
                &[],
                Some(
                    serde_json::to_vec(&json!({"server_keys": {"beta.test": criteria}}))
                        .expect("json"),
                ),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        check(&answer);
    }
    let (status, answer) = fed
        .request(
            alpha,
            "POST",
            "/_matrix/key/v2/query",
            &[],
            Some(serde_json::to_vec(&json!({"server_keys": {"nowhere.test": {}}})).expect("json")),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["server_keys"], json!([]));
    // Malformed queries get the spec's errors.
    let (status, answer) = fed
        .request(
            alpha,
            "POST",
            "/_matrix/key/v2/query",
            &[],
            Some(b"{".to_vec()),
        )
        .await;
    assert_eq!(
        (status, answer["errcode"].clone()),
        (400, json!("M_NOT_JSON"))
    );
}

backend_tests!(
    profile_and_alias_of_a_remote_server,
    notary_returns_keys_signed_by_origin_and_notary
);
