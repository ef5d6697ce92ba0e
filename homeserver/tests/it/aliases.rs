//! Alice gives her room aliases (directly and through createRoom's
//! `room_alias_name`), Bob resolves one and joins through it; the
//! canonical alias can only name aliases that point to the room; deleting
//! the canonical alias takes it out of the room's state; and every
//! misuse gets the spec's error.

use crate::common::{Backend, Client, TestServer, assert_error, create_user, enc};
use serde_json::{Value, json};

const V3: &str = "/_matrix/client/v3";

fn alias_path(alias: &str) -> String {
    format!("{V3}/directory/room/{}", enc(alias))
}

async fn create_room(client: &Client, body: Value) -> String {
    let (status, resp) = client.post(&format!("{V3}/createRoom"), &body).await;
    assert_eq!(status, 200, "{resp}");
    resp["room_id"].as_str().expect("room_id").to_owned()
}

async fn canonical_alias(client: &Client, room: &str) -> (u16, Value) {
    let (status, body) = client
        .get(&format!(
            "{V3}/rooms/{}/state/m.room.canonical_alias",
            enc(room)
        ))
        .await;
    (status.as_u16(), body)
}

async fn aliases_story(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, alice_token) = create_user(&server, "alice").await;
    let (bob_id, bob_token) = create_user(&server, "bob").await;
    let alice = server.client().with_token(&alice_token);
    let bob = server.client().with_token(&bob_token);
    let anonymous = server.client();

    // createRoom with room_alias_name: the alias and the canonical alias
    // event come with the room.
    let room = create_room(
        &alice,
        json!({"preset": "public_chat", "room_alias_name": "tea"}),
    )
    .await;
    let (status, resp) = anonymous.get(&alias_path("#tea:test.localhost")).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["room_id"], room);
    assert_eq!(resp["servers"], json!(["test.localhost"]));
    assert_eq!(
        canonical_alias(&alice, &room).await,
        (200, json!({"alias": "#tea:test.localhost"}))
    );
    // The canonical alias comes right after the power levels (spec order).
    let (_, state) = alice
        .get(&format!(
            "{V3}/rooms/{}/messages?dir=f&limit=20",
            enc(&room)
        ))
        .await;
    let types: Vec<&str> = state["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    let pl = types.iter().position(|t| *t == "m.room.power_levels");
    let ca = types.iter().position(|t| *t == "m.room.canonical_alias");
    let jr = types.iter().position(|t| *t == "m.room.join_rules");
    assert!(pl < ca && ca < jr, "{types:?}");

    // A taken room_alias_name fails before any room is created.
    let (_, before) = alice.get(&format!("{V3}/joined_rooms")).await;
    assert_error(
        &alice
            .post(
                &format!("{V3}/createRoom"),
                &json!({"room_alias_name": "tea"}),
            )
            .await,
        400,
        "M_ROOM_IN_USE",
    );
    for bad in ["has space", "has:colon", ""] {
        assert_error(
            &alice
                .post(
                    &format!("{V3}/createRoom"),
                    &json!({"room_alias_name": bad}),
                )
                .await,
            400,
            "M_INVALID_PARAM",
        );
    }
    let (_, after) = alice.get(&format!("{V3}/joined_rooms")).await;
    assert_eq!(before, after, "no half-created room");

    // Bob joins by alias.
    let (status, resp) = bob
        .post(
            &format!("{V3}/join/{}", enc("#tea:test.localhost")),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["room_id"], room);
    assert_error(
        &bob.post(
            &format!("{V3}/join/{}", enc("#nope:test.localhost")),
            &json!({}),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );

    // Bob (a member, power 0) adds an alias of his own.
    let (status, resp) = bob
        .put(
            &alias_path("#bobs:test.localhost"),
            &json!({"room_id": room}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_error(
        &alice
            .put(
                &alias_path("#bobs:test.localhost"),
                &json!({"room_id": room}),
            )
            .await,
        409,
        "M_ROOM_IN_USE",
    );
    assert_error(
        &alice
            .put(&alias_path("#x:other.example"), &json!({"room_id": room}))
            .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &alice
            .put(&alias_path("no-hash"), &json!({"room_id": room}))
            .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &alice
            .put(
                &alias_path("#a b:test.localhost"),
                &json!({"room_id": room}),
            )
            .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &alice
            .put(&alias_path("#y:test.localhost"), &json!({"room": room}))
            .await,
        400,
        "M_BAD_JSON",
    );
    // Only members alias a room.
    let private = create_room(&alice, json!({"preset": "private_chat"})).await;
    assert_error(
        &bob.put(
            &alias_path("#sneaky:test.localhost"),
            &json!({"room_id": private}),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );

    // The room's aliases: members see them, non-members of a room that is
    // not world_readable do not.
    let (status, resp) = bob.get(&format!("{V3}/rooms/{}/aliases", enc(&room))).await;
    assert_eq!(status, 200, "{resp}");
    let mut listed: Vec<&str> = resp["aliases"]
        .as_array()
        .expect("aliases")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    listed.sort_unstable();
    assert_eq!(listed, ["#bobs:test.localhost", "#tea:test.localhost"]);
    assert_error(
        &bob.get(&format!("{V3}/rooms/{}/aliases", enc(&private)))
            .await,
        403,
        "M_FORBIDDEN",
    );

    // Unknown, remote and malformed aliases.
    assert_error(
        &anonymous.get(&alias_path("#unknown:test.localhost")).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &anonymous.get(&alias_path("#x:other.example")).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &anonymous.get(&alias_path("no-hash")).await,
        400,
        "M_INVALID_PARAM",
    );

    // The canonical alias may only name aliases pointing to the room.
    let (status, resp) = alice
        .put(
            &format!("{V3}/rooms/{}/state/m.room.canonical_alias", enc(&room)),
            &json!({"alias": "#tea:test.localhost", "alt_aliases": ["#bobs:test.localhost"]}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let private_alias = "#private:test.localhost";
    let (status, _) = alice
        .put(&alias_path(private_alias), &json!({"room_id": private}))
        .await;
    assert_eq!(status, 200);
    for content in [
        json!({"alias": private_alias}),
        json!({"alias": "#tea:test.localhost", "alt_aliases": ["#nope:test.localhost"]}),
        json!({"alias": "#x:other.example"}),
    ] {
        assert_error(
            &alice
                .put(
                    &format!("{V3}/rooms/{}/state/m.room.canonical_alias", enc(&room)),
                    &content,
                )
                .await,
            400,
            "M_BAD_ALIAS",
        );
    }
    for content in [
        json!({"alias": "not an alias"}),
        json!({"alt_aliases": "#tea:test.localhost"}),
    ] {
        assert_error(
            &alice
                .put(
                    &format!("{V3}/rooms/{}/state/m.room.canonical_alias", enc(&room)),
                    &content,
                )
                .await,
            400,
            "M_INVALID_PARAM",
        );
    }

    // Deleting: Bob may not delete Alice's alias (no power), Alice may
    // delete Bob's (she is a moderator), Bob may delete his own.
    assert_error(
        &bob.delete(&alias_path("#tea:test.localhost")).await,
        403,
        "M_FORBIDDEN",
    );
    let (status, resp) = bob.delete(&alias_path("#bobs:test.localhost")).await;
    assert_eq!(status, 200, "{resp}");
    // Bob may not change the canonical alias event, so (as in Synapse) it
    // keeps naming the deleted alias.
    assert_eq!(
        canonical_alias(&alice, &room).await,
        (
            200,
            json!({"alias": "#tea:test.localhost", "alt_aliases": ["#bobs:test.localhost"]})
        )
    );
    let (status, _) = bob
        .put(
            &alias_path("#bobs2:test.localhost"),
            &json!({"room_id": room}),
        )
        .await;
    assert_eq!(status, 200);
    // Only newly named aliases are checked: the stale one may stay.
    let (status, resp) = alice
        .put(
            &format!("{V3}/rooms/{}/state/m.room.canonical_alias", enc(&room)),
            &json!({
                "alias": "#tea:test.localhost",
                "alt_aliases": ["#bobs:test.localhost", "#bobs2:test.localhost"],
            }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    // Alice, a moderator, deletes Bob's alias: it leaves the alternatives.
    let (status, _) = alice.delete(&alias_path("#bobs2:test.localhost")).await;
    assert_eq!(status, 200);
    assert_eq!(
        canonical_alias(&alice, &room).await,
        (
            200,
            json!({"alias": "#tea:test.localhost", "alt_aliases": ["#bobs:test.localhost"]})
        )
    );
    // Deleting the canonical alias removes it from the event.
    let (status, _) = alice.delete(&alias_path("#tea:test.localhost")).await;
    assert_eq!(status, 200);
    assert_eq!(
        canonical_alias(&alice, &room).await,
        (200, json!({"alt_aliases": ["#bobs:test.localhost"]}))
    );
    assert_error(
        &alice.delete(&alias_path("#tea:test.localhost")).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &anonymous.get(&alias_path("#tea:test.localhost")).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &alice.delete(&alias_path("#x:other.example")).await,
        400,
        "M_INVALID_PARAM",
    );
    // A canonical alias in createRoom's initial_state may only name the
    // new room's own alias.
    assert_error(
        &alice
            .post(
                &format!("{V3}/createRoom"),
                &json!({"initial_state": [{
                    "type": "m.room.canonical_alias",
                    "content": {"alias": private_alias},
                }]}),
            )
            .await,
        400,
        "M_BAD_ALIAS",
    );
    let coffee = create_room(
        &alice,
        json!({
            "room_alias_name": "coffee",
            "initial_state": [{
                "type": "m.room.canonical_alias",
                "content": {"alias": "#coffee:test.localhost"},
            }],
        }),
    )
    .await;
    assert_eq!(
        canonical_alias(&alice, &coffee).await,
        (200, json!({"alias": "#coffee:test.localhost"}))
    );

    // An alias of a server that does not exist names no room.
    let (status, _) = bob
        .post(
            &format!("{V3}/join/{}", enc("#x:other.example")),
            &json!({}),
        )
        .await;
    assert_eq!(status, 404);

    // Anyone may list the aliases of a world_readable room.
    let readable = create_room(
        &alice,
        json!({"initial_state": [{
            "type": "m.room.history_visibility",
            "content": {"history_visibility": "world_readable"},
        }]}),
    )
    .await;
    let (status, resp) = bob
        .get(&format!("{V3}/rooms/{}/aliases", enc(&readable)))
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp, json!({"aliases": []}));

    // Once free, the name can be used again.
    let again = create_room(&alice, json!({"room_alias_name": "tea"})).await;
    let (_, resp) = anonymous.get(&alias_path("#tea:test.localhost")).await;
    assert_eq!(resp["room_id"], again);
    let _ = bob_id;
}

backend_tests!(aliases_story);
