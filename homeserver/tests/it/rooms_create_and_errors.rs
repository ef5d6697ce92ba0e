//! Room creation per preset and version, knocking, and the spec's errors
//! for bad input.

use crate::common::{Backend, Client, TestServer, assert_error, create_room, create_user, enc};
use serde_json::{Value, json};

const V3: &str = "/_matrix/client/v3";

async fn state_event(client: &Client, room: &str, event_type: &str) -> Value {
    let (status, resp) = client
        .get(&format!(
            "{V3}/rooms/{}/state/{event_type}/?format=event",
            enc(room)
        ))
        .await;
    assert_eq!(status, 200, "{event_type}: {resp}");
    resp
}

async fn presets_and_versions(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice_id, token) = create_user(&server, "alice").await;
    let (bob_id, _) = create_user(&server, "bob").await;
    let alice = server.client().with_token(&token);
    for version in ["10", "11", "12"] {
        for preset in ["private_chat", "public_chat", "trusted_private_chat"] {
            let (status, resp) = alice
                .post(
                    &format!("{V3}/createRoom"),
                    &json!({"preset": preset, "room_version": version, "invite": [bob_id],
                            "is_direct": true,
                            "creation_content": {"m.federate": false}}),
                )
                .await;
            assert_eq!(status, 200, "{version} {preset}: {resp}");
            let room = resp["room_id"].as_str().expect("room_id").to_owned();
            let create = state_event(&alice, &room, "m.room.create").await;
            assert_eq!(create["content"]["room_version"], version);
            assert_eq!(create["content"]["m.federate"], false);
            assert_eq!(create["room_id"], room.as_str());
            let pl = state_event(&alice, &room, "m.room.power_levels").await;
            let users = &pl["content"]["users"];
            if version == "12" {
                assert!(
                    users.get(&alice_id).is_none(),
                    "v12 creators are not listed: {pl}"
                );
            } else {
                assert_eq!(users[&alice_id], 100, "{pl}");
            }
            let invitee_ops = preset == "trusted_private_chat";
            assert_eq!(users.get(&bob_id).is_some(), invitee_ops, "{preset}: {pl}");
            let jr = state_event(&alice, &room, "m.room.join_rules").await;
            let expected = if preset == "public_chat" {
                "public"
            } else {
                "invite"
            };
            assert_eq!(jr["content"]["join_rule"], expected);
            let hv = state_event(&alice, &room, "m.room.history_visibility").await;
            assert_eq!(hv["content"]["history_visibility"], "shared");
            let (status, _) = alice
                .get(&format!(
                    "{V3}/rooms/{}/state/m.room.guest_access",
                    enc(&room)
                ))
                .await;
            assert_eq!(
                status == 200,
                preset != "public_chat",
                "{preset} guest access"
            );
            let (_, members) = alice
                .get(&format!(
                    "{V3}/rooms/{}/members?membership=invite",
                    enc(&room)
                ))
                .await;
            let invite = &members["chunk"][0];
            assert_eq!(invite["state_key"], bob_id.as_str(), "{members}");
            assert_eq!(invite["content"]["is_direct"], true);
            assert!(
                invite["unsigned"]["invite_room_state"].is_array(),
                "{invite}"
            );
            // The initial events in Synapse's order.
            let (_, msgs) = alice
                .get(&format!(
                    "{V3}/rooms/{}/messages?dir=f&limit=20",
                    enc(&room)
                ))
                .await;
            let types: Vec<&str> = msgs["chunk"]
                .as_array()
                .expect("chunk")
                .iter()
                .filter_map(|e| e["type"].as_str())
                .collect();
            let mut expected = vec![
                "m.room.create",
                "m.room.member",
                "m.room.power_levels",
                "m.room.join_rules",
                "m.room.history_visibility",
            ];
            if preset != "public_chat" {
                expected.push("m.room.guest_access");
            }
            expected.push("m.room.member");
            assert_eq!(types, expected);
        }
    }
    // initial_state, name, topic and a power levels override.
    let room = create_room(
        &alice,
        &json!({
            "name": "N", "topic": "T",
            "initial_state": [
                {"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}},
                {"type": "org.example.custom", "state_key": "k", "content": {"a": 1}}
            ],
            "power_level_content_override": {"events_default": 10}
        }),
    )
    .await;
    let hv = state_event(&alice, &room, "m.room.history_visibility").await;
    assert_eq!(hv["content"]["history_visibility"], "joined");
    let pl = state_event(&alice, &room, "m.room.power_levels").await;
    assert_eq!(pl["content"]["events_default"], 10);
    assert_eq!(pl["content"]["ban"], 50);
    let (_, custom) = alice
        .get(&format!(
            "{V3}/rooms/{}/state/org.example.custom/k",
            enc(&room)
        ))
        .await;
    assert_eq!(custom, json!({"a": 1}));
    assert_eq!(
        state_event(&alice, &room, "m.room.topic").await["content"]["topic"],
        "T"
    );
}

async fn knocking(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, alice_token) = create_user(&server, "alice").await;
    let (bob_id, bob_token) = create_user(&server, "bob").await;
    let alice = server.client().with_token(&alice_token);
    let bob = server.client().with_token(&bob_token);
    let room = create_room(&alice, &json!({"initial_state": [{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}]})).await;
    let r = enc(&room);
    let (status, resp) = bob
        .post(&format!("{V3}/knock/{r}"), &json!({"reason": "let me in"}))
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["room_id"], room.as_str());
    let (_, members) = alice
        .get(&format!("{V3}/rooms/{r}/members?membership=knock"))
        .await;
    assert_eq!(
        members["chunk"][0]["state_key"],
        bob_id.as_str(),
        "{members}"
    );
    // Alice lets Bob in by inviting him.
    let (status, resp) = alice
        .post(
            &format!("{V3}/rooms/{r}/invite"),
            &json!({"user_id": bob_id}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let (status, resp) = bob.post(&format!("{V3}/rooms/{r}/join"), &json!({})).await;
    assert_eq!(status, 200, "{resp}");
    // Knocking on an invite-only room is refused.
    let (_, resp) = alice.post(&format!("{V3}/createRoom"), &json!({})).await;
    let closed = enc(resp["room_id"].as_str().expect("room_id"));
    assert_error(
        &bob.post(&format!("{V3}/knock/{closed}"), &json!({})).await,
        403,
        "M_FORBIDDEN",
    );
}

async fn bad_input(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, alice_token) = create_user(&server, "alice").await;
    let (_, bob_token) = create_user(&server, "bob").await;
    let alice = server.client().with_token(&alice_token);
    let bob = server.client().with_token(&bob_token);
    let (_, resp) = alice.post(&format!("{V3}/createRoom"), &json!({})).await;
    let room = resp["room_id"].as_str().expect("room_id").to_owned();
    let r = enc(&room);

    assert_error(
        &server
            .client()
            .post(&format!("{V3}/createRoom"), &json!({}))
            .await,
        401,
        "M_MISSING_TOKEN",
    );
    assert_error(
        &alice
            .post_raw(&format!("{V3}/createRoom"), b"{not json".to_vec())
            .await,
        400,
        "M_NOT_JSON",
    );
    assert_error(
        &alice
            .post(&format!("{V3}/createRoom"), &json!({"room_version": "9"}))
            .await,
        400,
        "M_UNSUPPORTED_ROOM_VERSION",
    );
    assert_error(
        &alice
            .post(
                &format!("{V3}/createRoom"),
                &json!({"creation_content": {"x": 1.5}}),
            )
            .await,
        400,
        "M_BAD_JSON",
    );
    assert_error(
        &alice
            .put(
                &format!("{V3}/rooms/{r}/send/m.room.message/f1"),
                &json!({"body": 1.5}),
            )
            .await,
        400,
        "M_BAD_JSON",
    );
    assert_error(
        &alice
            .put(
                &format!("{V3}/rooms/{r}/send/m.room.message/f2"),
                &json!({"body": 9_007_199_254_740_993_i64}),
            )
            .await,
        400,
        "M_BAD_JSON",
    );
    let big = "x".repeat(70_000);
    assert_error(
        &alice
            .put(
                &format!("{V3}/rooms/{r}/send/m.room.message/big"),
                &json!({"body": big}),
            )
            .await,
        413,
        "M_TOO_LARGE",
    );
    // Nothing was stored by the failures.
    let (_, msgs) = alice
        .get(&format!("{V3}/rooms/{r}/messages?dir=b&limit=50"))
        .await;
    assert!(
        msgs["chunk"]
            .as_array()
            .expect("chunk")
            .iter()
            .all(|e| e["type"] != "m.room.message"),
        "{msgs}"
    );

    let unknown = enc("!nosuchroom:test.localhost");
    assert_error(
        &alice
            .put(
                &format!("{V3}/rooms/{unknown}/send/m.room.message/u1"),
                &json!({"body": "x"}),
            )
            .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &alice
            .post(&format!("{V3}/rooms/{unknown}/join"), &json!({}))
            .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &alice
            .post(
                &format!("{V3}/join/{}", enc("#nope:test.localhost")),
                &json!({}),
            )
            .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &alice.get(&format!("{V3}/rooms/{unknown}/state")).await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &alice
            .post(
                &format!("{V3}/join/{}", enc("!abc:elsewhere.example")),
                &json!({}),
            )
            .await,
        404,
        "M_NOT_FOUND",
    );
    // Non-members cannot send, read state or members.
    assert_error(
        &bob.put(
            &format!("{V3}/rooms/{r}/send/m.room.message/n1"),
            &json!({"body": "x"}),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &bob.get(&format!("{V3}/rooms/{r}/state")).await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &bob.get(&format!("{V3}/rooms/{r}/joined_members")).await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &alice
            .get(&format!("{V3}/rooms/{r}/messages?dir=b&from=garbage"))
            .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &alice
            .get(&format!(
                "{V3}/rooms/{r}/event/{}",
                enc("$aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
            ))
            .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &alice
            .post(
                &format!("{V3}/rooms/{r}/invite"),
                &json!({"user_id": "@ghost:test.localhost"}),
            )
            .await,
        404,
        "M_NOT_FOUND",
    );
}

backend_tests!(presets_and_versions, knocking, bad_input);
