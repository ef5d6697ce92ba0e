//! Rooms get published in the room directory (at creation with
//! `visibility: public`, or later by a moderator), and anyone browses and
//! searches it: largest rooms first, paginated, filtered by search term
//! and room type, with what clients show for each room.

use crate::common::{Backend, Client, TestServer, assert_error, create_user, enc};
use serde_json::{Value, json};

const V3: &str = "/_matrix/client/v3";

async fn create_room(client: &Client, body: Value) -> String {
    let (status, resp) = client.post(&format!("{V3}/createRoom"), &body).await;
    assert_eq!(status, 200, "{resp}");
    resp["room_id"].as_str().expect("room_id").to_owned()
}

fn ids(resp: &Value) -> Vec<String> {
    resp["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .map(|c| c["room_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn public_rooms_story(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, alice_token) = create_user(&server, "alice").await;
    let (_, bob_token) = create_user(&server, "bob").await;
    let (_, carol_token) = create_user(&server, "carol").await;
    let alice = server.client().with_token(&alice_token);
    let bob = server.client().with_token(&bob_token);
    let carol = server.client().with_token(&carol_token);
    let anonymous = server.client();

    let (status, resp) = anonymous.get(&format!("{V3}/publicRooms")).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["chunk"], json!([]));
    assert_eq!(resp["total_room_count_estimate"], 0);

    // A big public room with everything clients show.
    let big = create_room(
        &alice,
        json!({
            "visibility": "public",
            "preset": "public_chat",
            "room_alias_name": "teahouse",
            "name": "The Tea House",
            "topic": "Oolong and more",
            "initial_state": [
                {"type": "m.room.avatar", "content": {"url": "mxc://test.localhost/tea"}},
                {"type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"}},
                {"type": "m.room.guest_access", "content": {"guest_access": "can_join"}},
            ],
        }),
    )
    .await;
    for client in [&bob, &carol] {
        let (status, _) = client
            .post(&format!("{V3}/rooms/{}/join", enc(&big)), &json!({}))
            .await;
        assert_eq!(status, 200);
    }
    // A public space with two members.
    let space = create_room(
        &bob,
        json!({
            "visibility": "public",
            "name": "Coffee space",
            "creation_content": {"type": "m.space"},
        }),
    )
    .await;
    let (status, _) = carol
        .post(&format!("{V3}/rooms/{}/join", enc(&space)), &json!({}))
        .await;
    assert_eq!(status, 200);
    // A small public room, published after creation.
    let small = create_room(
        &carol,
        json!({"preset": "public_chat", "name": "Water", "topic": "Still or sparkling"}),
    )
    .await;
    let (status, resp) = anonymous
        .get(&format!("{V3}/directory/list/room/{}", enc(&small)))
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp, json!({"visibility": "private"}));
    // Bob is no member: he may not publish it; Carol (its creator) may.
    assert_error(
        &bob.put(
            &format!("{V3}/directory/list/room/{}", enc(&small)),
            &json!({"visibility": "public"}),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    let (status, resp) = carol
        .put(
            &format!("{V3}/directory/list/room/{}", enc(&small)),
            &json!({"visibility": "public"}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let (_, resp) = anonymous
        .get(&format!("{V3}/directory/list/room/{}", enc(&small)))
        .await;
    assert_eq!(resp, json!({"visibility": "public"}));
    // Published but invite-only and not world_readable: not listed.
    let hidden = create_room(
        &alice,
        json!({"visibility": "public", "preset": "private_chat", "name": "Hidden"}),
    )
    .await;
    // A joined member without power may not change the listing.
    assert_error(
        &bob.put(
            &format!("{V3}/directory/list/room/{}", enc(&big)),
            &json!({"visibility": "private"}),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );

    // Largest first; the hidden room is not there.
    let (status, resp) = anonymous.get(&format!("{V3}/publicRooms")).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(ids(&resp), [big.as_str(), space.as_str(), small.as_str()]);
    assert!(!ids(&resp).contains(&hidden));
    assert_eq!(resp["total_room_count_estimate"], 3);
    let first = &resp["chunk"][0];
    assert_eq!(first["num_joined_members"], 3);
    assert_eq!(first["name"], "The Tea House");
    assert_eq!(first["topic"], "Oolong and more");
    assert_eq!(first["avatar_url"], "mxc://test.localhost/tea");
    assert_eq!(first["canonical_alias"], "#teahouse:test.localhost");
    assert_eq!(first["world_readable"], true);
    assert_eq!(first["guest_can_join"], true);
    assert_eq!(first.get("room_type"), None);
    assert_eq!(resp["chunk"][1]["room_type"], "m.space");
    assert_eq!(resp["chunk"][2]["world_readable"], false);
    assert_eq!(resp["chunk"][2]["guest_can_join"], false);

    // Pagination.
    let (status, page1) = anonymous.get(&format!("{V3}/publicRooms?limit=2")).await;
    assert_eq!(status, 200);
    assert_eq!(ids(&page1), [big.as_str(), space.as_str()]);
    assert_eq!(page1.get("prev_batch"), None);
    let next = page1["next_batch"].as_str().expect("next_batch");
    let (status, page2) = anonymous
        .get(&format!("{V3}/publicRooms?limit=2&since={next}"))
        .await;
    assert_eq!(status, 200, "{page2}");
    assert_eq!(ids(&page2), [small.as_str()]);
    assert_eq!(page2.get("next_batch"), None);
    let prev = page2["prev_batch"].as_str().expect("prev_batch");
    let (_, back) = anonymous
        .get(&format!("{V3}/publicRooms?limit=2&since={prev}"))
        .await;
    assert_eq!(ids(&back), [big.as_str(), space.as_str()]);
    assert_error(
        &anonymous
            .get(&format!("{V3}/publicRooms?since=garbage"))
            .await,
        400,
        "M_INVALID_PARAM",
    );

    // Filters (POST needs a token).
    let (status, resp) = bob
        .post(
            &format!("{V3}/publicRooms"),
            &json!({"filter": {"generic_search_term": "OOLONG"}}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(ids(&resp), [big.as_str()]);
    let (_, resp) = bob
        .post(
            &format!("{V3}/publicRooms"),
            &json!({"filter": {"generic_search_term": "teahouse"}}),
        )
        .await;
    assert_eq!(ids(&resp), [big.as_str()]);
    let (_, resp) = bob
        .post(
            &format!("{V3}/publicRooms"),
            &json!({"filter": {"generic_search_term": "sparkling"}, "limit": 5}),
        )
        .await;
    assert_eq!(ids(&resp), [small.as_str()]);
    assert_eq!(resp["total_room_count_estimate"], 1);
    let (_, resp) = bob
        .post(
            &format!("{V3}/publicRooms"),
            &json!({"filter": {"room_types": ["m.space"]}}),
        )
        .await;
    assert_eq!(ids(&resp), [space.as_str()]);
    let (_, resp) = bob
        .post(
            &format!("{V3}/publicRooms"),
            &json!({"filter": {"room_types": [null]}}),
        )
        .await;
    assert_eq!(ids(&resp), [big.as_str(), small.as_str()]);
    let (_, resp) = bob
        .post(
            &format!("{V3}/publicRooms"),
            &json!({"filter": {"generic_search_term": "nothing matches this"}}),
        )
        .await;
    assert_eq!(ids(&resp), Vec::<String>::new());
    assert_error(
        &anonymous
            .post(&format!("{V3}/publicRooms"), &json!({}))
            .await,
        401,
        "M_MISSING_TOKEN",
    );

    // Withdrawing from the directory, and rooms nobody is in any more.
    let (status, _) = alice
        .put(
            &format!("{V3}/directory/list/room/{}", enc(&big)),
            &json!({"visibility": "private"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = carol
        .post(&format!("{V3}/rooms/{}/leave", enc(&small)), &json!({}))
        .await;
    assert_eq!(status, 200);
    let (_, resp) = anonymous.get(&format!("{V3}/publicRooms")).await;
    assert_eq!(ids(&resp), [space.as_str()]);

    // Other servers' directories are asked over federation: a server that
    // does not exist is not found; unknown rooms.
    let (status, resp) = anonymous
        .get(&format!("{V3}/publicRooms?server=other.example"))
        .await;
    assert_eq!(status, 404, "{resp}");
    assert_error(
        &anonymous
            .get(&format!(
                "{V3}/directory/list/room/{}",
                enc("!nope:test.localhost")
            ))
            .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &alice
            .put(
                &format!("{V3}/directory/list/room/{}", enc("!nope:test.localhost")),
                &json!({"visibility": "public"}),
            )
            .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &alice
            .put(
                &format!("{V3}/directory/list/room/{}", enc(&space)),
                &json!({"visibility": 3}),
            )
            .await,
        400,
        "M_BAD_JSON",
    );
}

backend_tests!(public_rooms_story);
