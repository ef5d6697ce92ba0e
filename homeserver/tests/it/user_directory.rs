//! Alice looks people up in the user directory: she finds those she
//! shares a room with and those in public rooms, by user ID or display
//! name in any case, never deactivated users, and (with
//! `search_all_users`) everyone.

use crate::common::{Backend, Client, TestServer, create_user, enc, password_auth};
use serde_json::{Value, json};

const V3: &str = "/_matrix/client/v3";

async fn search(client: &Client, body: Value) -> Value {
    let (status, resp) = client
        .post(&format!("{V3}/user_directory/search"), &body)
        .await;
    assert_eq!(status, 200, "{resp}");
    resp
}

fn found(resp: &Value) -> Vec<String> {
    resp["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|u| u["user_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn create_room(client: &Client, body: Value) -> String {
    let (status, resp) = client.post(&format!("{V3}/createRoom"), &body).await;
    assert_eq!(status, 200, "{resp}");
    resp["room_id"].as_str().expect("room_id").to_owned()
}

async fn join(client: &Client, room: &str) {
    let (status, resp) = client
        .post(&format!("{V3}/join/{}", enc(room)), &json!({}))
        .await;
    assert_eq!(status, 200, "{resp}");
}

async fn search_visibility(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice_id, alice_token) = create_user(&server, "alice").await;
    let (bob_id, bob_token) = create_user(&server, "bob").await;
    let (carol_id, carol_token) = create_user(&server, "carol").await;
    let (_dave_id, _) = create_user(&server, "dave").await;
    let (eve_id, eve_token) = create_user(&server, "eve").await;
    let alice = server.client().with_token(&alice_token);
    let bob = server.client().with_token(&bob_token);
    let carol = server.client().with_token(&carol_token);
    let eve = server.client().with_token(&eve_token);

    // Alice shares a private room with Bob and Eve; Carol sits alone in a
    // public room; Dave is in no room.
    let private = create_room(&alice, json!({"preset": "private_chat"})).await;
    for (client, id) in [(&bob, &bob_id), (&eve, &eve_id)] {
        let (status, _) = alice
            .post(
                &format!("{V3}/rooms/{}/invite", enc(&private)),
                &json!({"user_id": id}),
            )
            .await;
        assert_eq!(status, 200);
        join(client, &private).await;
    }
    create_room(&carol, json!({"preset": "public_chat"})).await;
    let (status, _) = bob
        .put(
            &format!("{V3}/profile/{}/displayname", enc(&bob_id)),
            &json!({"displayname": "Robert Tables"}),
        )
        .await;
    assert_eq!(status, 200);

    // By display name, case-insensitive, with the profile.
    let resp = search(&alice, json!({"search_term": "ROBERT"})).await;
    assert_eq!(found(&resp), [bob_id.as_str()]);
    assert_eq!(resp["results"][0]["display_name"], "Robert Tables");
    assert_eq!(resp["limited"], false);
    // By user ID; Carol is found through her public room.
    assert_eq!(
        found(&search(&alice, json!({"search_term": "carol"})).await),
        [carol_id.as_str()]
    );
    // Dave shares nothing with Alice and is in no public room.
    assert!(found(&search(&alice, json!({"search_term": "dave"})).await).is_empty());
    // Wildcards are literal.
    assert!(found(&search(&alice, json!({"search_term": "%"})).await).is_empty());
    assert!(found(&search(&alice, json!({"search_term": "  "})).await).is_empty());
    // Everyone visible matches the server name; `limit` cuts and says so.
    let all = search(&alice, json!({"search_term": "test.localhost"})).await;
    let mut everyone = found(&all);
    everyone.sort();
    let mut expected = vec![
        alice_id.clone(),
        bob_id.clone(),
        carol_id.clone(),
        eve_id.clone(),
    ];
    expected.sort();
    assert_eq!(everyone, expected);
    let limited = search(&alice, json!({"search_term": "test.localhost", "limit": 2})).await;
    assert_eq!(found(&limited).len(), 2);
    assert_eq!(limited["limited"], true);

    // Eve deactivates: she is gone from the directory.
    let path = format!("{V3}/account/deactivate");
    let (status, challenge) = eve.post(&path, &json!({})).await;
    assert_eq!(status, 401);
    let (status, body) = eve
        .post(
            &path,
            &json!({"auth": password_auth(&eve_id, "correct horse battery", &challenge["session"])}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(found(&search(&alice, json!({"search_term": "eve"})).await).is_empty());
}

async fn search_all_users(backend: Backend) {
    let server = TestServer::start_with(
        backend,
        &[("MYELIN__USER_DIRECTORY__SEARCH_ALL_USERS", "true")],
    )
    .await;
    let (_, alice_token) = create_user(&server, "alice").await;
    let (dave_id, _) = create_user(&server, "dave").await;
    let alice = server.client().with_token(&alice_token);
    assert_eq!(
        found(&search(&alice, json!({"search_term": "DAVE"})).await),
        [dave_id]
    );
    let (status, resp) = server
        .client()
        .post(
            &format!("{V3}/user_directory/search"),
            &json!({"search_term": "dave"}),
        )
        .await;
    assert_eq!(status, 401, "{resp}");
    let (status, resp) = alice
        .post(&format!("{V3}/user_directory/search"), &json!({"limit": 3}))
        .await;
    assert_eq!(
        (status.as_u16(), &resp["errcode"]),
        (400, &json!("M_BAD_JSON"))
    );
}

backend_tests!(search_visibility, search_all_users);
