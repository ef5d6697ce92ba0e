//! Public room directories over federation (`/_matrix/federation/v1/publicRooms`, `GET`
//! and `POST`). Bob on beta browses the room directory of alpha: his client asks beta with
//! `server=alpha.test`, beta asks alpha over federation, and Alice's published room comes
//! back, filtered and paged as alpha's own clients see it. And the server endpoint itself:
//! the search filter and paging, an empty list for a third-party network, and nothing for
//! an unsigned request.

use crate::common::federation::Federation;
use crate::common::{Backend, create_room, create_user};
use serde_json::{Value, json};

const V3: &str = "/_matrix/client/v3";
const PUBLIC_ROOMS: &str = "/_matrix/federation/v1/publicRooms";

fn ids(resp: &Value) -> Vec<String> {
    resp["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .filter_map(|r| r["room_id"].as_str().map(str::to_owned))
        .collect()
}

async fn directory_of_another_server(backend: Backend) {
    let fed = Federation::start(backend, &["alpha.test", "beta.test"]).await;
    let (_, alice_token) = create_user(&fed["alpha.test"], "alice").await;
    let (_, bob_token) = create_user(&fed["beta.test"], "bob").await;
    let alice = fed["alpha.test"].client().with_token(&alice_token);
    let bob = fed["beta.test"].client().with_token(&bob_token);

    let mut rooms = Vec::new();
    for name in ["Alpha lobby", "Alpha garden"] {
        let (status, resp) = alice
            .post(
                &format!("{V3}/createRoom"),
                &json!({ "preset": "public_chat", "visibility": "public", "name": name }),
            )
            .await;
        assert_eq!(status, 200, "{resp}");
        rooms.push(resp["room_id"].as_str().expect("room_id").to_owned());
    }
    // A private room stays out of the directory.
    let (status, resp) = alice
        .post(
            &format!("{V3}/createRoom"),
            &json!({ "name": "Alpha secret" }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");

    // GET with server=alpha.test: alpha's rooms, not beta's (empty) directory.
    let (status, resp) = bob
        .get(&format!("{V3}/publicRooms?server=alpha.test"))
        .await;
    assert_eq!(status, 200, "{resp}");
    let mut got = ids(&resp);
    got.sort();
    let mut want = rooms.clone();
    want.sort();
    assert_eq!(got, want, "{resp}");
    assert_eq!(resp["total_room_count_estimate"], 2, "{resp}");
    let lobby = resp["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .find(|r| r["room_id"] == rooms[0].as_str())
        .expect("lobby listed");
    assert_eq!(lobby["name"], "Alpha lobby");
    assert_eq!(lobby["num_joined_members"], 1);

    // Paging through alpha's directory with its own `since` tokens.
    let (status, first) = bob
        .get(&format!("{V3}/publicRooms?server=alpha.test&limit=1"))
        .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(ids(&first).len(), 1);
    let since = first["next_batch"].as_str().expect("next_batch");
    let (status, second) = bob
        .get(&format!(
            "{V3}/publicRooms?server=alpha.test&limit=1&since={since}"
        ))
        .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(ids(&second).len(), 1);
    assert_ne!(ids(&first), ids(&second));

    // POST: the filter travels to alpha.
    let (status, resp) = bob
        .post(
            &format!("{V3}/publicRooms?server=alpha.test"),
            &json!({ "filter": { "generic_search_term": "garden" } }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(ids(&resp), [rooms[1].clone()]);
    let (status, resp) = bob
        .post(
            &format!("{V3}/publicRooms?server=alpha.test"),
            &json!({ "include_all_networks": true, "limit": 10 }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(ids(&resp).len(), 2, "{resp}");

    // Our own name is the local directory; a server that does not exist is not found.
    let (status, resp) = bob.get(&format!("{V3}/publicRooms?server=beta.test")).await;
    assert_eq!(status, 200, "{resp}");
    assert!(ids(&resp).is_empty(), "{resp}");
    let (status, resp) = bob
        .get(&format!("{V3}/publicRooms?server=nowhere.test"))
        .await;
    assert_eq!(status, 404, "{resp}");
    assert_eq!(resp["errcode"], "M_NOT_FOUND");
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
        &json!({ "preset": "public_chat", "visibility": "public", "name": "Rust talk",
                "topic": "borrowing" }),
    )
    .await;
    let python = create_room(
        &bob,
        &json!({ "preset": "public_chat", "visibility": "public", "name": "Python talk" }),
    )
    .await;
    // Published nowhere: never listed.
    let hidden = create_room(
        &bob,
        &json!({ "preset": "public_chat", "name": "Rust secret" }),
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

backend_tests!(directory_of_another_server, directory_over_federation);
