//! Beta's public room directory read by alpha over federation
//! (`/_matrix/federation/v1/publicRooms`, `GET` and `POST`): the rooms published on beta,
//! with the generic search filter and paging of the client API's directory, an empty list
//! for a third-party network, and nothing for an unsigned request.

use crate::common::federation::Federation;
use crate::common::{Backend, Client, create_user};
use serde_json::{Value, json};

const V3: &str = "/_matrix/client/v3";
const PUBLIC_ROOMS: &str = "/_matrix/federation/v1/publicRooms";

async fn create_room(client: &Client, body: Value) -> String {
    let (status, resp) = client.post(&format!("{V3}/createRoom"), &body).await;
    assert_eq!(status, 200, "{resp}");
    resp["room_id"].as_str().expect("room_id").to_owned()
}

/// The room IDs of a directory page.
fn room_ids(page: &Value) -> Vec<&str> {
    page["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .map(|r| r["room_id"].as_str().expect("room_id"))
        .collect()
}

async fn directory_over_federation(backend: Backend) {
    let fed = Federation::start(backend, &["alpha.test", "beta.test"]).await;
    let (alpha, beta) = (&fed["alpha.test"], &fed["beta.test"]);
    let (_, bob_token) = create_user(beta, "bob").await;
    let bob = beta.client().with_token(&bob_token);
    let rust = create_room(
        &bob,
        json!({ "preset": "public_chat", "visibility": "public", "name": "Rust talk",
                "topic": "borrowing" }),
    )
    .await;
    let python = create_room(
        &bob,
        json!({ "preset": "public_chat", "visibility": "public", "name": "Python talk" }),
    )
    .await;
    // Published nowhere: never listed.
    let hidden = create_room(
        &bob,
        json!({ "preset": "public_chat", "name": "Rust secret" }),
    )
    .await;

    let (status, page) = fed
        .signed_request(alpha, beta, "GET", PUBLIC_ROOMS, None)
        .await;
    assert_eq!(status, 200, "{page}");
    let mut all = room_ids(&page);
    all.sort_unstable();
    let mut want = vec![rust.as_str(), python.as_str()];
    want.sort_unstable();
    assert_eq!(all, want, "{page}");
    assert_eq!(page["total_room_count_estimate"], 2, "{page}");
    let entry = page["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .find(|r| r["room_id"] == rust.as_str())
        .expect("the rust room");
    assert_eq!(entry["name"], "Rust talk");
    assert_eq!(entry["topic"], "borrowing");
    assert_eq!(entry["num_joined_members"], 1);
    // `join_rule` may be left out: the spec's default is `public`.
    assert_eq!(entry["join_rule"].as_str().unwrap_or("public"), "public");

    // Paging: one room a page, the second page by the first one's token.
    let (status, first) = fed
        .signed_request(alpha, beta, "GET", &format!("{PUBLIC_ROOMS}?limit=1"), None)
        .await;
    assert_eq!(status, 200, "{first}");
    let next = first["next_batch"].as_str().expect("next_batch");
    let (status, second) = fed
        .signed_request(
            alpha,
            beta,
            "GET",
            &format!("{PUBLIC_ROOMS}?limit=1&since={next}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{second}");
    let mut paged = [room_ids(&first), room_ids(&second)].concat();
    paged.sort_unstable();
    assert_eq!(paged, want);

    // The search filter (POST), which never finds the unpublished room.
    let (status, found) = fed
        .signed_request(
            alpha,
            beta,
            "POST",
            PUBLIC_ROOMS,
            Some(&json!({ "filter": { "generic_search_term": "rust" } })),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(room_ids(&found), vec![rust.as_str()], "{found}");
    assert!(!room_ids(&found).contains(&hidden.as_str()));

    // No third-party networks are bridged here.
    let (status, bridged) = fed
        .signed_request(
            alpha,
            beta,
            "POST",
            PUBLIC_ROOMS,
            Some(&json!({ "third_party_instance_id": "irc" })),
        )
        .await;
    assert_eq!(status, 200, "{bridged}");
    assert_eq!(room_ids(&bridged), Vec::<&str>::new(), "{bridged}");

    // Only for servers that sign their request.
    let (status, body) = fed.request(beta, "GET", PUBLIC_ROOMS, &[], None).await;
    assert_eq!(status, 401, "{body}");
}

backend_tests!(directory_over_federation);
