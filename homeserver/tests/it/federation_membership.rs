//! Room membership across servers, alpha.test and beta.test over real TLS and DNS: Alice on
//! alpha joins Bob's rooms on beta (room versions 11 and 12) and leaves again; Bob invites
//! Alice, she sees the invite on alpha and accepts it by joining through beta. After each
//! step both servers hold the same room state (the same event IDs). Beta refuses hostile
//! `make_join` / `send_join` requests and stores nothing of them. A join beta accepts
//! through `send_join` reaches the room's other servers, also one that was down; an invite
//! whose server is gone is still rejected, locally, and so is a knock withdrawn.

use std::collections::BTreeSet;

use crate::common::federation::{Federation, signing_key};
use crate::common::{Backend, Client, assert_error, create_user, enc};
use myelin_proto::canonical_json::{self, Object, Value as CValue};
use myelin_proto::{PduBuilder, RoomVersion};
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use serde_json::{Value, json};

const V3: &str = "/_matrix/client/v3";
const FED: &str = "/_matrix/federation";

async fn create_room(client: &Client, body: Value) -> String {
    let (status, resp) = client.post(&format!("{V3}/createRoom"), &body).await;
    assert_eq!(status, 200, "{resp}");
    resp["room_id"].as_str().expect("room_id").to_owned()
}

/// The event IDs of the room's current state as `client` sees it.
async fn state_ids(client: &Client, room: &str) -> BTreeSet<String> {
    let (status, resp) = client.get(&format!("{V3}/rooms/{}/state", enc(room))).await;
    assert_eq!(status, 200, "{resp}");
    resp.as_array()
        .expect("state array")
        .iter()
        .map(|e| e["event_id"].as_str().expect("event_id").to_owned())
        .collect()
}

/// The member event of `user` in the room's current state.
async fn member_event(client: &Client, room: &str, user: &str) -> Value {
    let (status, resp) = client.get(&format!("{V3}/rooms/{}/state", enc(room))).await;
    assert_eq!(status, 200, "{resp}");
    resp.as_array()
        .expect("state array")
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == user)
        .cloned()
        .unwrap_or(Value::Null)
}

async fn joined_members(client: &Client, room: &str) -> BTreeSet<String> {
    let (status, resp) = client
        .get(&format!("{V3}/rooms/{}/joined_members", enc(room)))
        .await;
    assert_eq!(status, 200, "{resp}");
    resp["joined"]
        .as_object()
        .expect("joined")
        .keys()
        .cloned()
        .collect()
}

async fn initial_sync(client: &Client) -> Value {
    let (status, resp) = client.get(&format!("{V3}/sync?timeout=0")).await;
    assert_eq!(status, 200, "{resp}");
    resp
}

/// Alice on alpha joins `room` (through `server_name` when given) and both servers then
/// agree on the room's state; her sync shows the room with her join in the timeline.
async fn join_and_compare(
    alice: &Client,
    bob: &Client,
    room: &str,
    server_name: Option<&str>,
) -> String {
    let query = server_name.map_or(String::new(), |s| format!("?server_name={s}"));
    let (status, resp) = alice
        .post(&format!("{V3}/join/{}{query}", enc(room)), &json!({}))
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["room_id"], room);

    let on_alpha = state_ids(alice, room).await;
    let on_beta = state_ids(bob, room).await;
    assert_eq!(on_alpha, on_beta, "alpha and beta disagree on the state");
    let beta_members = joined_members(bob, room).await;
    assert!(
        beta_members.contains("@alice:alpha.test"),
        "{beta_members:?}"
    );
    assert!(beta_members.contains("@bob:beta.test"));
    assert_eq!(joined_members(alice, room).await, beta_members);

    let join = member_event(alice, room, "@alice:alpha.test").await;
    assert_eq!(join["content"]["membership"], "join");
    let join_id = join["event_id"].as_str().expect("event_id").to_owned();
    let sync = initial_sync(alice).await;
    let joined = &sync["rooms"]["join"][room];
    let timeline: Vec<&str> = joined["timeline"]["events"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    assert!(timeline.contains(&join_id.as_str()), "{joined}");
    let state_types: BTreeSet<&str> = joined["state"]["events"]
        .as_array()
        .expect("state")
        .iter()
        .chain(joined["timeline"]["events"].as_array().expect("timeline"))
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(state_types.contains("m.room.create"), "{joined}");
    assert!(state_types.contains("m.room.name"), "{joined}");
    join_id
}

async fn join_a_room_of_another_server_and_leave(backend: Backend) {
    let fed = Federation::start(backend, &["alpha.test", "beta.test"]).await;
    let (alpha, beta) = (&fed["alpha.test"], &fed["beta.test"]);
    let (_, alice_token) = create_user(alpha, "alice").await;
    let (_, bob_token) = create_user(beta, "bob").await;
    let alice = alpha.client().with_token(&alice_token);
    let bob = beta.client().with_token(&bob_token);

    // A version 11 room, found through its alias on beta.
    let room = create_room(
        &bob,
        json!({"preset": "public_chat", "room_version": "11", "name": "Beta lounge",
               "room_alias_name": "lounge"}),
    )
    .await;
    let (status, resp) = alice
        .get(&format!("{V3}/directory/room/{}", enc("#lounge:beta.test")))
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["servers"], json!(["beta.test"]));
    let (status, resp) = alice
        .post(
            &format!("{V3}/join/{}", enc("#lounge:beta.test")),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{resp}\n{}", alpha.log());
    assert_eq!(resp["room_id"], room.as_str());
    assert_eq!(state_ids(&alice, &room).await, state_ids(&bob, &room).await);
    assert!(
        joined_members(&bob, &room)
            .await
            .contains("@alice:alpha.test")
    );
    // The alias's server now names both servers as in the room.
    let (status, resp) = alice
        .get(&format!("{V3}/directory/room/{}", enc("#lounge:beta.test")))
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["servers"], json!(["beta.test", "alpha.test"]));
    let sync = initial_sync(&alice).await;
    assert!(sync["rooms"]["join"][&room].is_object(), "{sync}");

    // Joining again changes nothing.
    let before = state_ids(&alice, &room).await;
    let (status, _) = alice
        .post(&format!("{V3}/rooms/{}/join", enc(&room)), &json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(state_ids(&alice, &room).await, before);

    // Alice leaves: alpha asks beta, and both hold the same leave.
    let since = initial_sync(&alice).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    let (status, resp) = alice
        .post(
            &format!("{V3}/rooms/{}/leave", enc(&room)),
            &json!({"reason": "bye"}),
        )
        .await;
    assert_eq!(status, 200, "{resp}\n{}", alpha.log());
    let on_beta = member_event(&bob, &room, "@alice:alpha.test").await;
    assert_eq!(on_beta["content"]["membership"], "leave", "{on_beta}");
    assert_eq!(on_beta["content"]["reason"], "bye");
    assert_eq!(
        joined_members(&bob, &room).await,
        BTreeSet::from(["@bob:beta.test".to_owned()])
    );
    let (status, sync) = alice
        .get(&format!("{V3}/sync?timeout=0&since={}", enc(&since)))
        .await;
    assert_eq!(status, 200, "{sync}");
    assert!(sync["rooms"]["join"].get(&room).is_none(), "{sync}");
    // Alice's server stored the same leave event.
    let left: Vec<&Value> = sync["rooms"]["leave"][&room]["timeline"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{sync}"))
        .iter()
        .collect();
    assert!(
        left.iter().any(|e| e["event_id"] == on_beta["event_id"]),
        "{sync}"
    );

    // And she can come back: joining a room alpha already holds goes through beta again.
    join_and_compare(&alice, &bob, &room, None).await;
}

async fn join_a_version_12_room(backend: Backend) {
    let fed = Federation::start(backend, &["alpha.test", "beta.test"]).await;
    let (alpha, beta) = (&fed["alpha.test"], &fed["beta.test"]);
    let (_, alice_token) = create_user(alpha, "alice").await;
    let (_, bob_token) = create_user(beta, "bob").await;
    let alice = alpha.client().with_token(&alice_token);
    let bob = beta.client().with_token(&bob_token);

    let room = create_room(
        &bob,
        json!({"preset": "public_chat", "room_version": "12", "name": "Twelve"}),
    )
    .await;
    assert!(!room.contains(':'), "a v12 room ID names no server: {room}");
    // Without a server to ask, alpha knows nowhere to join through.
    assert_error(
        &alice
            .post(&format!("{V3}/join/{}", enc(&room)), &json!({}))
            .await,
        404,
        "M_NOT_FOUND",
    );
    join_and_compare(&alice, &bob, &room, Some("beta.test")).await;
}

async fn invite_a_user_of_another_server(backend: Backend) {
    let fed = Federation::start(backend, &["alpha.test", "beta.test"]).await;
    let (alpha, beta) = (&fed["alpha.test"], &fed["beta.test"]);
    let (_, alice_token) = create_user(alpha, "alice").await;
    let (_, bob_token) = create_user(beta, "bob").await;
    let alice = alpha.client().with_token(&alice_token);
    let bob = beta.client().with_token(&bob_token);

    let room = create_room(&bob, json!({"preset": "private_chat", "name": "Secret"})).await;
    // Alice cannot join an invite-only room uninvited: beta refuses the template.
    assert_error(
        &alice
            .post(
                &format!("{V3}/join/{}?server_name=beta.test", enc(&room)),
                &json!({}),
            )
            .await,
        403,
        "M_FORBIDDEN",
    );
    // Inviting a user beta's server does not have fails on alpha's answer.
    let (status, _) = bob
        .post(
            &format!("{V3}/rooms/{}/invite", enc(&room)),
            &json!({"user_id": "@nobody:alpha.test"}),
        )
        .await;
    assert_eq!(status, 404);

    let (status, resp) = bob
        .post(
            &format!("{V3}/rooms/{}/invite", enc(&room)),
            &json!({"user_id": "@alice:alpha.test", "reason": "join us"}),
        )
        .await;
    assert_eq!(status, 200, "{resp}\n{}", beta.log());
    let invite = member_event(&bob, &room, "@alice:alpha.test").await;
    assert_eq!(invite["content"]["membership"], "invite");

    // Alpha shows the invite with the room's stripped state.
    let sync = initial_sync(&alice).await;
    let invited = &sync["rooms"]["invite"][&room]["invite_state"]["events"];
    let events = invited.as_array().unwrap_or_else(|| panic!("{sync}"));
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Secret"),
        "{invited}"
    );
    let own = events
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == "@alice:alpha.test")
        .expect("the invite itself");
    assert_eq!(own["sender"], "@bob:beta.test");
    assert_eq!(own["content"]["membership"], "invite");

    // She accepts by joining: alpha knows to ask the inviter's server.
    join_and_compare(&alice, &bob, &room, None).await;
    let sync = initial_sync(&alice).await;
    assert!(sync["rooms"]["invite"].get(&room).is_none(), "{sync}");

    // A second invite, declined: alpha rejects it through beta.
    let other = create_room(&bob, json!({"preset": "private_chat"})).await;
    let (status, _) = bob
        .post(
            &format!("{V3}/rooms/{}/invite", enc(&other)),
            &json!({"user_id": "@alice:alpha.test"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, resp) = alice
        .post(&format!("{V3}/rooms/{}/leave", enc(&other)), &json!({}))
        .await;
    assert_eq!(status, 200, "{resp}\n{}", alpha.log());
    let declined = member_event(&bob, &other, "@alice:alpha.test").await;
    assert_eq!(declined["content"]["membership"], "leave", "{declined}");
    let sync = initial_sync(&alice).await;
    assert!(sync["rooms"]["invite"].get(&other).is_none(), "{sync}");

    // A direct chat created with Alice invited: she is invited on alpha, as a DM.
    let dm = create_room(
        &bob,
        json!({"preset": "trusted_private_chat", "is_direct": true,
               "invite": ["@alice:alpha.test"]}),
    )
    .await;
    let sync = initial_sync(&alice).await;
    let own = sync["rooms"]["invite"][&dm]["invite_state"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{sync}"))
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == "@alice:alpha.test")
        .cloned()
        .expect("the invite");
    assert_eq!(own["content"]["is_direct"], true, "{own}");
}

async fn knock_on_a_room_of_another_server(backend: Backend) {
    let fed = Federation::start(backend, &["alpha.test", "beta.test"]).await;
    let (alpha, beta) = (&fed["alpha.test"], &fed["beta.test"]);
    let (_, alice_token) = create_user(alpha, "alice").await;
    let (_, bob_token) = create_user(beta, "bob").await;
    let alice = alpha.client().with_token(&alice_token);
    let bob = beta.client().with_token(&bob_token);

    let room = create_room(
        &bob,
        json!({"preset": "private_chat", "name": "Knock knock", "initial_state": [
            {"type": "m.room.join_rules", "content": {"join_rule": "knock"}}]}),
    )
    .await;
    let (status, resp) = alice
        .post(
            &format!("{V3}/knock/{}?server_name=beta.test", enc(&room)),
            &json!({"reason": "let me in"}),
        )
        .await;
    assert_eq!(status, 200, "{resp}\n{}", alpha.log());
    assert_eq!(resp["room_id"], room.as_str());
    let knock = member_event(&bob, &room, "@alice:alpha.test").await;
    assert_eq!(knock["content"]["membership"], "knock", "{knock}");
    assert_eq!(knock["content"]["reason"], "let me in");
    let sync = initial_sync(&alice).await;
    let knocked = &sync["rooms"]["knock"][&room]["knock_state"]["events"];
    let knocked = knocked.as_array().unwrap_or_else(|| panic!("{sync}"));
    assert!(
        knocked
            .iter()
            .any(|e| e["type"] == "m.room.member" && e["content"]["membership"] == "knock"),
        "{knocked:?}"
    );
    // The room as beta described it in its send_knock answer: alpha holds none of its state.
    assert!(
        knocked
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Knock knock"),
        "{knocked:?}"
    );
    assert!(
        knocked
            .iter()
            .any(|e| e["type"] == "m.room.join_rules" && e["content"]["join_rule"] == "knock"),
        "{knocked:?}"
    );
    assert!(
        knocked
            .iter()
            .all(|e| e.get("event_id").is_none() && e.get("signatures").is_none()),
        "stripped state only: {knocked:?}"
    );

    // Bob lets her in by inviting her; she joins through beta.
    let (status, resp) = bob
        .post(
            &format!("{V3}/rooms/{}/invite", enc(&room)),
            &json!({"user_id": "@alice:alpha.test"}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    join_and_compare(&alice, &bob, &room, None).await;
}

async fn join_a_restricted_room_of_another_server(backend: Backend) {
    let fed = Federation::start(backend, &["alpha.test", "beta.test"]).await;
    let (alpha, beta) = (&fed["alpha.test"], &fed["beta.test"]);
    let (_, alice_token) = create_user(alpha, "alice").await;
    let (_, bob_token) = create_user(beta, "bob").await;
    let alice = alpha.client().with_token(&alice_token);
    let bob = beta.client().with_token(&bob_token);

    let space = create_room(&bob, json!({"preset": "public_chat", "name": "Space"})).await;
    let room = create_room(
        &bob,
        json!({"preset": "private_chat", "name": "Members only", "initial_state": [
            {"type": "m.room.join_rules", "content": {"join_rule": "restricted",
             "allow": [{"type": "m.room_membership", "room_id": space}]}}]}),
    )
    .await;
    // Not in the space yet: beta cannot let her in.
    assert_error(
        &alice
            .post(
                &format!("{V3}/join/{}?server_name=beta.test", enc(&room)),
                &json!({}),
            )
            .await,
        403,
        "M_FORBIDDEN",
    );
    join_and_compare(&alice, &bob, &space, Some("beta.test")).await;
    // A member of the space: Bob's server authorises the join and signs it.
    join_and_compare(&alice, &bob, &room, Some("beta.test")).await;
    let join = member_event(&bob, &room, "@alice:alpha.test").await;
    assert_eq!(
        join["content"]["join_authorised_via_users_server"], "@bob:beta.test",
        "{join}"
    );
}

fn object(v: &Value) -> Object {
    match canonical_json::from_json(v.clone()).expect("canonical JSON") {
        CValue::Object(o) => o,
        other => panic!("not an object: {other}"),
    }
}

fn to_json(o: &Object) -> Value {
    serde_json::from_slice(&CValue::Object(o.clone()).to_canonical_bytes()).expect("json")
}

/// A join of `user` built on a `make_join` template and signed with `key` as `origin`.
fn fill_template(
    template: &Value,
    user: &str,
    key: &myelin_proto::signing::KeyPair,
    origin: &str,
) -> Value {
    let room_id: OwnedRoomId = template["room_id"]
        .as_str()
        .expect("room_id")
        .try_into()
        .expect("room");
    let user_id: OwnedUserId = user.try_into().expect("user");
    let ids = |field: &str| -> Vec<OwnedEventId> {
        template[field]
            .as_array()
            .expect(field)
            .iter()
            .map(|v| v.as_str().expect("id").try_into().expect("event id"))
            .collect()
    };
    let mut builder = PduBuilder::new(
        "m.room.member",
        Some(user),
        object(&json!({"membership": "join"})),
        &user_id,
        Some(&room_id),
    );
    builder.prev_events = ids("prev_events");
    builder.auth_events = ids("auth_events");
    builder.depth = template["depth"].as_i64().expect("depth");
    builder.origin_server_ts = template["origin_server_ts"].as_i64().expect("ts");
    let pdu = builder.build(RoomVersion::V11, origin, key).expect("build");
    to_json(pdu.json())
}

fn event_id_of(event: &Value) -> String {
    let pdu = myelin_proto::Pdu::from_object(RoomVersion::V11, object(event)).expect("pdu");
    pdu.event_id().to_string()
}

async fn hostile_joins_are_refused(backend: Backend) {
    let fed = Federation::start(backend, &["alpha.test", "beta.test"]).await;
    let (alpha, beta) = (&fed["alpha.test"], &fed["beta.test"]);
    let (_, bob_token) = create_user(beta, "bob").await;
    let bob = beta.client().with_token(&bob_token);
    let room = create_room(&bob, json!({"preset": "public_chat", "room_version": "11"})).await;
    let alpha_key = signing_key(alpha);
    let eve = "@eve:alpha.test";
    let make_join = |user: &str, ver: &str| {
        format!("{FED}/v1/make_join/{}/{}?ver={ver}", enc(&room), enc(user))
    };
    let send_join =
        |room: &str, event_id: &str| format!("{FED}/v2/send_join/{}/{}", enc(room), enc(event_id));
    let before = state_ids(&bob, &room).await;

    // Templates: only for the origin's own users, in a version the origin speaks, of a room
    // beta is in.
    let (status, body) = fed
        .signed_request(
            alpha,
            beta,
            "GET",
            &make_join("@mallory:gamma.test", "11"),
            None,
        )
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "{body}"
    );
    let (status, body) = fed
        .signed_request(alpha, beta, "GET", &make_join(eve, "1"), None)
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errcode"], "M_INCOMPATIBLE_ROOM_VERSION");
    assert_eq!(body["room_version"], "11");
    let unknown = "!nothere:beta.test";
    let (status, body) = fed
        .signed_request(
            alpha,
            beta,
            "GET",
            &format!("{FED}/v1/make_join/{}/{}?ver=11", enc(unknown), enc(eve)),
            None,
        )
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (404, Some("M_NOT_FOUND")),
        "{body}"
    );

    let (status, body) = fed
        .signed_request(alpha, beta, "GET", &make_join(eve, "11"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["room_version"], "11");
    let template = &body["event"];
    assert_eq!(template["content"]["membership"], "join");
    assert_eq!(template["sender"], eve);
    let join = fill_template(template, eve, &alpha_key, "alpha.test");
    let join_id = event_id_of(&join);

    // The event ID in the path must be the event's.
    let other_id = event_id_of(&fill_template(
        template,
        "@eve2:alpha.test",
        &alpha_key,
        "alpha.test",
    ));
    let (status, body) = fed
        .signed_request(
            alpha,
            beta,
            "PUT",
            &send_join(&room, &other_id),
            Some(&join),
        )
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_BAD_JSON")),
        "{body}"
    );

    // A join of another server's user, signed by alpha.
    let mallory = fill_template(
        &json!({"room_id": room, "prev_events": template["prev_events"],
                "auth_events": template["auth_events"], "depth": template["depth"],
                "origin_server_ts": template["origin_server_ts"]}),
        "@mallory:gamma.test",
        &alpha_key,
        "alpha.test",
    );
    let (status, body) = fed
        .signed_request(
            alpha,
            beta,
            "PUT",
            &send_join(&room, &event_id_of(&mallory)),
            Some(&mallory),
        )
        .await;
    assert_eq!(status, 403, "{body}");

    // A forged signature: the event signed by a key that is not alpha's.
    let forger = myelin_proto::signing::KeyPair::from_seed(
        signing_key(alpha).key_id().trim_start_matches("ed25519:"),
        &[9; 32],
    )
    .expect("key");
    let forged = fill_template(template, eve, &forger, "alpha.test");
    let (status, body) = fed
        .signed_request(
            alpha,
            beta,
            "PUT",
            &send_join(&room, &event_id_of(&forged)),
            Some(&forged),
        )
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "{body}"
    );

    // A room beta does not know.
    let (status, body) = fed
        .signed_request(
            alpha,
            beta,
            "PUT",
            &send_join(unknown, &join_id),
            Some(&join),
        )
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (404, Some("M_NOT_FOUND")),
        "{body}"
    );

    // An invite in a room version alpha does not speak.
    let (status, body) = fed
        .signed_request(
            beta,
            alpha,
            "PUT",
            &format!("{FED}/v2/invite/{}/{}", enc(&room), enc(&join_id)),
            Some(&json!({"room_version": "1", "event": join, "invite_room_state": []})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errcode"], "M_INCOMPATIBLE_ROOM_VERSION");
    // A member event that is not an invite.
    let (status, body) = fed
        .signed_request(
            beta,
            alpha,
            "PUT",
            &format!("{FED}/v2/invite/{}/{}", enc(&room), enc(&join_id)),
            Some(&json!({"room_version": "11", "event": join, "invite_room_state": []})),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    // Nothing of it changed the room.
    assert_eq!(state_ids(&bob, &room).await, before);
    assert_eq!(
        joined_members(&bob, &room).await,
        BTreeSet::from(["@bob:beta.test".to_owned()])
    );

    // The genuine join goes through, and beta answers with the room's state and auth chain.
    let (status, body) = fed
        .signed_request(alpha, beta, "PUT", &send_join(&room, &join_id), Some(&join))
        .await;
    assert_eq!(status, 200, "{body}\n{}", beta.log());
    assert!(!body["members_omitted"].as_bool().unwrap_or(false));
    let ids = |list: &Value| -> BTreeSet<String> {
        list.as_array()
            .expect("list")
            .iter()
            .map(event_id_of)
            .collect()
    };
    assert_eq!(ids(&body["state"]), before);
    assert!(!ids(&body["auth_chain"]).is_empty());
    assert_eq!(event_id_of(&body["event"]), join_id);
    assert_eq!(body["servers_in_room"][0], "beta.test");
    assert!(joined_members(&bob, &room).await.contains(eve));
}

/// Carol on gamma joins Bob's room on beta while alpha, also in the room, is down. Beta
/// relays her join, which only beta has, to alpha in the transaction that stores it; alpha
/// gets it once it is back.
async fn a_join_through_send_join_reaches_the_other_servers(backend: Backend) {
    let mut fed = Federation::start_with(
        backend,
        &["alpha.test", "beta.test", "gamma.test"],
        &[(
            "MYELIN__FEDERATION__DESTINATION_MIN_RETRY_INTERVAL_MS",
            "300",
        )],
    )
    .await;
    let (_, alice_token) = create_user(&fed["alpha.test"], "alice").await;
    let (_, bob_token) = create_user(&fed["beta.test"], "bob").await;
    let (_, carol_token) = create_user(&fed["gamma.test"], "carol").await;
    let bob = fed["beta.test"].client().with_token(&bob_token);
    let alice = fed["alpha.test"].client().with_token(&alice_token);
    let carol = fed["gamma.test"].client().with_token(&carol_token);
    let room = create_room(&bob, json!({"preset": "public_chat", "name": "Three"})).await;
    join_and_compare(&alice, &bob, &room, Some("beta.test")).await;

    let alpha_index = fed
        .servers
        .iter()
        .position(|s| s.name == "alpha.test")
        .expect("alpha");
    fed.servers[alpha_index].server.kill();
    let (status, resp) = carol
        .post(
            &format!("{V3}/join/{}?server_name=beta.test", enc(&room)),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    assert!(
        joined_members(&bob, &room)
            .await
            .contains("@carol:gamma.test")
    );

    fed.servers[alpha_index].server.restart().await;
    let alice = fed["alpha.test"].client().with_token(&alice_token);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if joined_members(&alice, &room)
            .await
            .contains("@carol:gamma.test")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "alpha never got carol's join\n{}",
            fed["beta.test"].log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(state_ids(&alice, &room).await, state_ids(&bob, &room).await);
}

/// Bob on beta invites Alice on alpha; beta goes away. Alice still declines: no resident
/// server answers, so alpha rejects the invite locally (as Synapse does) and it leaves her
/// sync. Once beta is back, Bob can invite her again and she joins.
async fn reject_an_invite_when_its_server_is_gone(backend: Backend) {
    let mut fed = Federation::start(backend, &["alpha.test", "beta.test"]).await;
    let (_, alice_token) = create_user(&fed["alpha.test"], "alice").await;
    let (_, bob_token) = create_user(&fed["beta.test"], "bob").await;
    let alice = fed["alpha.test"].client().with_token(&alice_token);
    let bob = fed["beta.test"].client().with_token(&bob_token);
    let room = create_room(&bob, json!({"preset": "private_chat", "name": "Gone"})).await;
    let (status, resp) = bob
        .post(
            &format!("{V3}/rooms/{}/invite", enc(&room)),
            &json!({"user_id": "@alice:alpha.test"}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let sync = initial_sync(&alice).await;
    assert!(sync["rooms"]["invite"].get(&room).is_some(), "{sync}");
    let since = sync["next_batch"].as_str().expect("next_batch").to_owned();

    let beta_index = fed
        .servers
        .iter()
        .position(|s| s.name == "beta.test")
        .expect("beta");
    fed.servers[beta_index].server.kill();
    let (status, resp) = alice
        .post(&format!("{V3}/rooms/{}/leave", enc(&room)), &json!({}))
        .await;
    assert_eq!(status, 200, "{resp}\n{}", fed["alpha.test"].log());

    let sync = initial_sync(&alice).await;
    assert!(sync["rooms"]["invite"].get(&room).is_none(), "{sync}");
    let (status, later) = alice
        .get(&format!("{V3}/sync?timeout=0&since={}", enc(&since)))
        .await;
    assert_eq!(status, 200, "{later}");
    assert!(later["rooms"]["invite"].get(&room).is_none(), "{later}");
    assert!(later["rooms"]["leave"].get(&room).is_some(), "{later}");
    // Leaving again changes nothing.
    let (status, resp) = alice
        .post(&format!("{V3}/rooms/{}/leave", enc(&room)), &json!({}))
        .await;
    assert_eq!(status, 200, "{resp}");
    let since = later["next_batch"].as_str().expect("next_batch").to_owned();

    // Beta is back (it never heard of the rejection): Bob invites her again, she sees the
    // new invite and joins through beta.
    fed.servers[beta_index].server.restart().await;
    let bob = fed["beta.test"].client().with_token(&bob_token);
    let (status, resp) = bob
        .post(
            &format!("{V3}/rooms/{}/invite", enc(&room)),
            &json!({"user_id": "@alice:alpha.test", "reason": "second try"}),
        )
        .await;
    assert_eq!(status, 200, "{resp}\n{}", fed["beta.test"].log());
    let (status, again) = alice
        .get(&format!("{V3}/sync?timeout=0&since={}", enc(&since)))
        .await;
    assert_eq!(status, 200, "{again}");
    let invite = &again["rooms"]["invite"][&room]["invite_state"]["events"];
    assert!(
        invite.as_array().is_some_and(|events| events
            .iter()
            .any(|e| { e["type"] == "m.room.member" && e["content"]["reason"] == "second try" })),
        "{again}"
    );
    let (status, resp) = alice
        .post(&format!("{V3}/join/{}", enc(&room)), &json!({}))
        .await;
    assert_eq!(status, 200, "{resp}\n{}", fed["alpha.test"].log());
    assert!(
        joined_members(&bob, &room)
            .await
            .contains("@alice:alpha.test")
    );
    assert_eq!(state_ids(&alice, &room).await, state_ids(&bob, &room).await);
}

/// Alice on alpha knocks on Bob's room on beta; beta goes away. She withdraws the knock:
/// no resident server answers, so alpha withdraws it locally and the room moves from
/// `knock` to `leave` in her sync. Once beta is back, a knock is withdrawn through it.
async fn withdraw_a_knock_when_its_server_is_gone(backend: Backend) {
    let mut fed = Federation::start(backend, &["alpha.test", "beta.test"]).await;
    let (_, alice_token) = create_user(&fed["alpha.test"], "alice").await;
    let (_, bob_token) = create_user(&fed["beta.test"], "bob").await;
    let alice = fed["alpha.test"].client().with_token(&alice_token);
    let bob = fed["beta.test"].client().with_token(&bob_token);
    let room = create_room(
        &bob,
        json!({"preset": "private_chat", "initial_state": [
            {"type": "m.room.join_rules", "content": {"join_rule": "knock"}}]}),
    )
    .await;
    let (status, resp) = alice
        .post(
            &format!("{V3}/knock/{}?server_name=beta.test", enc(&room)),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let sync = initial_sync(&alice).await;
    assert!(sync["rooms"]["knock"].get(&room).is_some(), "{sync}");
    let since = sync["next_batch"].as_str().expect("next_batch").to_owned();

    let beta_index = fed
        .servers
        .iter()
        .position(|s| s.name == "beta.test")
        .expect("beta");
    fed.servers[beta_index].server.kill();
    let (status, resp) = alice
        .post(&format!("{V3}/rooms/{}/leave", enc(&room)), &json!({}))
        .await;
    assert_eq!(status, 200, "{resp}\n{}", fed["alpha.test"].log());
    let later = alice
        .get(&format!("{V3}/sync?timeout=0&since={}", enc(&since)))
        .await
        .1;
    assert!(later["rooms"]["knock"].get(&room).is_none(), "{later}");
    assert!(later["rooms"]["leave"].get(&room).is_some(), "{later}");
    let sync = initial_sync(&alice).await;
    assert!(sync["rooms"]["knock"].get(&room).is_none(), "{sync}");

    // Beta is back: she knocks again and withdraws it through beta this time.
    fed.servers[beta_index].server.restart().await;
    let bob = fed["beta.test"].client().with_token(&bob_token);
    let (status, resp) = alice
        .post(
            &format!("{V3}/knock/{}?server_name=beta.test", enc(&room)),
            &json!({"reason": "again"}),
        )
        .await;
    assert_eq!(status, 200, "{resp}\n{}", fed["alpha.test"].log());
    let (status, resp) = alice
        .post(&format!("{V3}/rooms/{}/leave", enc(&room)), &json!({}))
        .await;
    assert_eq!(status, 200, "{resp}");
    let member = member_event(&bob, &room, "@alice:alpha.test").await;
    assert_eq!(member["content"]["membership"], "leave", "{member}");
}

backend_tests!(
    a_join_through_send_join_reaches_the_other_servers,
    reject_an_invite_when_its_server_is_gone,
    withdraw_a_knock_when_its_server_is_gone,
    join_a_room_of_another_server_and_leave,
    join_a_version_12_room,
    invite_a_user_of_another_server,
    hostile_joins_are_refused,
    knock_on_a_room_of_another_server,
    join_a_restricted_room_of_another_server,
);
