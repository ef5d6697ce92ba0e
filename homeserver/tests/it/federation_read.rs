//! Alpha, once its user has joined Bob's room on beta, reads the room's
//! graph from beta: `/state_ids` and `/event_auth` give complete auth
//! chains (the create event included, though room version 12 events do not
//! cite it), `/backfill` pages backwards within its limit, and
//! `/get_missing_events` gives the events between two points. A room
//! alpha has no member in is refused with 403.

use std::collections::HashSet;

use crate::common::federation::{ActAs, Federation, join_via_send, latest_event};
use crate::common::{Backend, create_user, enc};
use serde_json::{Value, json};

const V3: &str = "/_matrix/client/v3";
const F1: &str = "/_matrix/federation/v1";

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string").to_owned())
        .collect()
}

fn ids_of(events: &Value) -> Vec<String> {
    events
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            // Room versions 3+ carry no event_id: it is the reference
            // hash, which beta's /event answers under.
            e["event_id"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| reference_id(e))
        })
        .collect()
}

fn reference_id(e: &Value) -> String {
    let obj = myelin_proto::canonical_json::parse_object(e.to_string().as_bytes()).expect("obj");
    myelin_proto::hashes::event_id(myelin_proto::RoomVersion::DEFAULT.rules().redaction, &obj)
}

async fn auth_chains_backfill_and_gaps(backend: Backend) {
    let fed = Federation::start(backend, &["alpha.test", "beta.test"]).await;
    let beta = &fed["beta.test"];
    let alpha = ActAs::new(&fed["alpha.test"]);
    let (_, bob_token) = create_user(beta, "bob").await;
    let bob = beta.client().with_token(&bob_token);
    let (status, body) = bob
        .post(
            &format!("{V3}/createRoom"),
            &json!({"preset": "public_chat"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let room = body["room_id"].as_str().expect("room").to_owned();
    let (status, body) = bob
        .post(
            &format!("{V3}/createRoom"),
            &json!({"preset": "private_chat"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let private = body["room_id"].as_str().expect("room").to_owned();

    // Before its user joins, alpha may read nothing of the room.
    let last_before = latest_event(&bob, &room).await;
    let uri = format!(
        "{F1}/state_ids/{}?event_id={}",
        enc(&room),
        enc(&last_before)
    );
    let (status, body) = alpha.request(&fed, beta, "GET", &uri, None).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["errcode"], "M_FORBIDDEN");

    let (view, _join) = join_via_send(&fed, beta, &alpha, &bob, &room, "@a:alpha.test").await;
    let mut messages = Vec::new();
    for i in 0..5 {
        let (status, body) = bob
            .put(
                &format!("{V3}/rooms/{}/send/m.room.message/m{i}", enc(&room)),
                &json!({"msgtype": "m.text", "body": format!("m{i}")}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        messages.push(body["event_id"].as_str().expect("id").to_owned());
    }
    let create = view.state[&("m.room.create".to_owned(), String::new())].clone();

    // /state_ids at the last message: the room's state, and an auth chain
    // that holds every auth event of the state and of itself.
    let last = messages.last().expect("last").clone();
    let uri = format!("{F1}/state_ids/{}?event_id={}", enc(&room), enc(&last));
    let (status, body) = alpha.request(&fed, beta, "GET", &uri, None).await;
    assert_eq!(status, 200, "{body}");
    let pdu_ids: HashSet<String> = strings(&body["pdu_ids"]).into_iter().collect();
    let chain: HashSet<String> = strings(&body["auth_chain_ids"]).into_iter().collect();
    let state_ids: HashSet<String> = view.state.values().cloned().collect();
    assert_eq!(pdu_ids, state_ids, "{body}");
    assert!(chain.contains(&create), "create event in the chain: {body}");
    for id in pdu_ids.iter().chain(&chain) {
        let uri = format!("{F1}/event/{}", enc(id));
        let (status, event) = alpha.request(&fed, beta, "GET", &uri, None).await;
        assert_eq!(status, 200, "{event}");
        for auth in strings(&event["pdus"][0]["auth_events"]) {
            assert!(
                chain.contains(&auth),
                "{auth} of {id} missing from the chain"
            );
        }
    }

    // /state gives the same as full events.
    let uri = format!("{F1}/state/{}?event_id={}", enc(&room), enc(&last));
    let (status, body) = alpha.request(&fed, beta, "GET", &uri, None).await;
    assert_eq!(status, 200, "{body}");
    let got: HashSet<String> = ids_of(&body["pdus"]).into_iter().collect();
    assert_eq!(got, state_ids);
    let got: HashSet<String> = ids_of(&body["auth_chain"]).into_iter().collect();
    assert_eq!(got, chain);

    // /event_auth of a message: its whole auth chain, create included.
    let uri = format!("{F1}/event_auth/{}/{}", enc(&room), enc(&last));
    let (status, body) = alpha.request(&fed, beta, "GET", &uri, None).await;
    assert_eq!(status, 200, "{body}");
    let auth: HashSet<String> = ids_of(&body["auth_chain"]).into_iter().collect();
    assert!(auth.contains(&create), "{body}");
    let power = &view.state[&("m.room.power_levels".to_owned(), String::new())];
    let bob_member = view
        .state
        .iter()
        .find(|((t, k), _)| t == "m.room.member" && k.starts_with("@bob:"))
        .map(|(_, id)| id.clone())
        .expect("bob's membership");
    assert!(auth.contains(power) && auth.contains(&bob_member), "{body}");
    for event in body["auth_chain"].as_array().expect("chain") {
        for a in strings(&event["auth_events"]) {
            assert!(auth.contains(&a), "{a} missing from /event_auth");
        }
    }

    // /backfill from the last message, two at a time, backwards.
    let uri = format!("{F1}/backfill/{}?v={}&limit=2", enc(&room), enc(&last));
    let (status, body) = alpha.request(&fed, beta, "GET", &uri, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        ids_of(&body["pdus"]),
        vec![messages[4].clone(), messages[3].clone()]
    );
    let uri = format!(
        "{F1}/backfill/{}?v={}&limit=3",
        enc(&room),
        enc(&messages[3])
    );
    let (status, body) = alpha.request(&fed, beta, "GET", &uri, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        ids_of(&body["pdus"]),
        vec![
            messages[3].clone(),
            messages[2].clone(),
            messages[1].clone()
        ]
    );
    // The limit is capped, not refused; the walk ends at the create event.
    let uri = format!("{F1}/backfill/{}?v={}&limit=1000", enc(&room), enc(&last));
    let (status, body) = alpha.request(&fed, beta, "GET", &uri, None).await;
    assert_eq!(status, 200, "{body}");
    let all = ids_of(&body["pdus"]);
    assert_eq!(all.last(), Some(&create), "{body}");
    assert!(all.len() <= 100);

    // /get_missing_events between the first and the last message: the
    // three between, oldest first.
    let uri = format!("{F1}/get_missing_events/{}", enc(&room));
    let req = json!({"earliest_events": [messages[0]], "latest_events": [last], "limit": 10});
    let (status, body) = alpha.request(&fed, beta, "POST", &uri, Some(&req)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids_of(&body["events"]), messages[1..4].to_vec());
    let req = json!({"earliest_events": [messages[0]], "latest_events": [last], "limit": 2});
    let (status, body) = alpha.request(&fed, beta, "POST", &uri, Some(&req)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids_of(&body["events"]), messages[2..4].to_vec());

    // A room alpha has no member in: 403 everywhere; unknown events: 404.
    let private_last = latest_event(&bob, &private).await;
    for uri in [
        format!(
            "{F1}/state_ids/{}?event_id={}",
            enc(&private),
            enc(&private_last)
        ),
        format!("{F1}/event_auth/{}/{}", enc(&private), enc(&private_last)),
        format!(
            "{F1}/backfill/{}?v={}&limit=5",
            enc(&private),
            enc(&private_last)
        ),
        format!("{F1}/event/{}", enc(&private_last)),
    ] {
        let (status, body) = alpha.request(&fed, beta, "GET", &uri, None).await;
        assert_eq!(status, 403, "{uri}: {body}");
    }
    let uri = format!("{F1}/event/{}", enc("$unknown"));
    let (status, body) = alpha.request(&fed, beta, "GET", &uri, None).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["errcode"], "M_NOT_FOUND");
}

backend_tests!(auth_chains_backfill_and_gaps);
