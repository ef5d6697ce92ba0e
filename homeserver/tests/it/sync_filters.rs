//! Sync filters: stored by ID or inline, narrowing the timeline, leaving
//! rooms out, lazy-loading members; bad filters are the spec's errors.

use crate::common::{Backend, Client, TestServer, assert_error, create_user, enc};
use serde_json::{Value, json};

const V3: &str = "/_matrix/client/v3";

async fn sync(client: &Client, query: &str) -> Value {
    let (status, resp) = client.get(&format!("{V3}/sync?{query}")).await;
    assert_eq!(status, 200, "{resp}");
    resp
}

fn inline(filter: &Value) -> String {
    format!("filter={}", enc(&filter.to_string()))
}

async fn ok(resp: (reqwest::StatusCode, Value)) -> Value {
    assert_eq!(resp.0, 200, "{}", resp.1);
    resp.1
}

fn types(events: &Value) -> Vec<String> {
    events
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn members(events: &Value) -> Vec<String> {
    let mut out: Vec<String> = events
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["type"] == "m.room.member")
                .map(|e| e["state_key"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

async fn create_room(client: &Client, body: Value) -> String {
    ok(client.post(&format!("{V3}/createRoom"), &body).await).await["room_id"]
        .as_str()
        .expect("room_id")
        .to_owned()
}

async fn filters(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice_id, alice_token) = create_user(&server, "alice").await;
    let (bob_id, bob_token) = create_user(&server, "bob").await;
    let (carol_id, carol_token) = create_user(&server, "carol").await;
    let alice = server.client().with_token(&alice_token);
    let bob = server.client().with_token(&bob_token);
    let carol = server.client().with_token(&carol_token);
    let room = create_room(&alice, json!({"preset": "public_chat", "name": "Big"})).await;
    let other = create_room(&alice, json!({"preset": "public_chat", "name": "Other"})).await;
    for c in [&bob, &carol] {
        ok(
            c.post(&format!("{V3}/rooms/{}/join", enc(&room)), &json!({}))
                .await,
        )
        .await;
    }
    ok(carol
        .post(&format!("{V3}/rooms/{}/join", enc(&other)), &json!({}))
        .await)
    .await;
    for i in 0..3 {
        ok(bob
            .put(
                &format!("{V3}/rooms/{}/send/m.room.message/b{i}", enc(&room)),
                &json!({"msgtype": "m.text", "body": format!("bob {i}")}),
            )
            .await)
        .await;
    }

    // Lazy-loading: Carol gets the members of the timeline's senders and
    // her own, not Alice's (her events are all before the timeline).
    let lazy = json!({"room": {
        "timeline": {"limit": 3},
        "state": {"lazy_load_members": true},
    }});
    let resp = sync(&carol, &inline(&lazy)).await;
    let joined = &resp["rooms"]["join"][&room];
    assert_eq!(
        members(&joined["state"]["events"]),
        [bob_id.clone(), carol_id.clone()],
        "{joined}"
    );
    assert!(types(&joined["state"]["events"]).contains(&"m.room.name".to_owned()));
    assert_eq!(joined["summary"]["m.joined_member_count"], 3, "{joined}");
    // Without lazy-loading every member is there.
    let resp = sync(
        &carol,
        &inline(&json!({"room": {"timeline": {"limit": 3}}})),
    )
    .await;
    let all = members(&resp["rooms"]["join"][&room]["state"]["events"]);
    assert_eq!(all, [alice_id.clone(), bob_id.clone(), carol_id.clone()]);
    // Incremental with lazy-loading: the sender's member comes along.
    let token = resp["next_batch"].as_str().expect("next_batch").to_owned();
    ok(alice
        .put(
            &format!("{V3}/rooms/{}/send/m.room.message/a1", enc(&room)),
            &json!({"msgtype": "m.text", "body": "alice speaks"}),
        )
        .await)
    .await;
    let resp = sync(&carol, &format!("{}&since={}", inline(&lazy), enc(&token))).await;
    let joined = &resp["rooms"]["join"][&room];
    assert_eq!(
        members(&joined["state"]["events"]),
        [alice_id.as_str()],
        "{joined}"
    );

    // A stored filter: messages only, one room left out.
    let definition = json!({"room": {
        "not_rooms": [other],
        "timeline": {"types": ["m.room.message"], "limit": 2},
    }});
    let created = ok(carol
        .post(&format!("{V3}/user/{}/filter", enc(&carol_id)), &definition)
        .await)
    .await;
    let id = created["filter_id"].as_str().expect("filter_id").to_owned();
    for query in [format!("filter={id}"), inline(&definition)] {
        let resp = sync(&carol, &query).await;
        let rooms = resp["rooms"]["join"].as_object().expect("join");
        assert!(!rooms.contains_key(&other), "{resp}");
        let timeline = &rooms[&room]["timeline"];
        assert_eq!(
            types(&timeline["events"]),
            ["m.room.message", "m.room.message"],
            "{resp}"
        );
        assert_eq!(timeline["events"][1]["content"]["body"], "alice speaks");
        assert_eq!(timeline["limited"], true);
    }
    // Senders.
    let only_bob = json!({"room": {"timeline": {"senders": [bob_id], "limit": 5}}});
    let resp = sync(&carol, &inline(&only_bob)).await;
    let events = &resp["rooms"]["join"][&room]["timeline"]["events"];
    assert!(
        events
            .as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(|e| e["sender"] == bob_id.as_str())),
        "{events}"
    );

    // Bad filters.
    assert_error(
        &carol.get(&format!("{V3}/sync?filter=999")).await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &carol.get(&format!("{V3}/sync?filter=abc")).await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &carol
            .get(&format!("{V3}/sync?filter={}", enc("{not json")))
            .await,
        400,
        "M_NOT_JSON",
    );
    assert_error(
        &carol
            .get(&format!(
                "{V3}/sync?{}",
                inline(&json!({"room": {"timeline": {"limit": "x"}}}))
            ))
            .await,
        400,
        "M_BAD_JSON",
    );
    // Another user's filter ID is not Carol's.
    assert_error(
        &bob.get(&format!("{V3}/sync?filter={id}")).await,
        400,
        "M_INVALID_PARAM",
    );
}

backend_tests!(filters);
