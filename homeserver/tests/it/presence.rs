//! Presence. Alice and Carol are on alpha, Bob on beta, all in one room;
//! Dave, on alpha too, shares no room with them. The servers drop a user
//! who stopped syncing to offline after 1.5 s.
//!
//! - Alice sets herself online with a status message: Carol's sync shows
//!   it, and so does Bob's on beta (alpha sends `m.presence`); both can
//!   read it with `GET /presence/{userId}/status`, Dave cannot, and nobody
//!   sets another user's presence.
//! - Bob's own syncing makes him online on beta, which tells alpha: Carol
//!   sees him online.
//! - Alice's client syncs until she closes it: after the timeout she is
//!   offline, which wakes Carol's waiting long-poll and reaches Bob; her
//!   status message stays. Sending a message brings her back online.

use std::time::{Duration, Instant};

use crate::common::federation::Federation;
use crate::common::{Backend, Client, assert_error, create_room, enc, register};
use serde_json::{Value, json};

const V3: &str = "/_matrix/client/v3";

/// The presence events of a sync response, by sender.
fn presence_of(resp: &Value, user: &str) -> Option<Value> {
    resp["presence"]["events"]
        .as_array()?
        .iter()
        .filter(|e| e["type"] == "m.presence" && e["sender"] == user)
        .map(|e| e["content"].clone())
        .next_back()
}

/// Syncs (long-polling from `since`) until `user`'s presence is `want`;
/// returns the content seen and the token to go on from.
async fn sync_until(
    client: &Client,
    since: &mut Option<String>,
    user: &str,
    want: &str,
    what: &str,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let path = match since.as_deref() {
            Some(s) => format!("{V3}/sync?timeout=5000&since={}", enc(s)),
            None => format!("{V3}/sync"),
        };
        let (status, resp) = client.get(&path).await;
        assert_eq!(status, 200, "{resp}");
        *since = resp["next_batch"].as_str().map(str::to_owned);
        if let Some(content) = presence_of(&resp, user)
            && content["presence"] == want
        {
            return content;
        }
        assert!(Instant::now() < deadline, "{what}");
    }
}

async fn presence_across_servers(backend: Backend) {
    let fed = Federation::start_with(
        backend,
        &["alpha.test", "beta.test"],
        &[
            ("MYELIN__PRESENCE__OFFLINE_TIMEOUT_MS", "1500"),
            (
                "MYELIN__FEDERATION__DESTINATION_MIN_RETRY_INTERVAL_MS",
                "200",
            ),
        ],
    )
    .await;
    let alpha = fed["alpha.test"].client();
    let (alice_id, alice_token, _) = register(&alpha, "alice", "pw-alice-1").await;
    let (_, carol_token, _) = register(&alpha, "carol", "pw-carol-1").await;
    let (dave_id, dave_token, _) = register(&alpha, "dave", "pw-dave-12").await;
    let (bob_id, bob_token, _) = register(&fed["beta.test"].client(), "bob", "pw-bob-1234").await;
    let alice = alpha.with_token(&alice_token);
    let carol = alpha.with_token(&carol_token);
    let dave = alpha.with_token(&dave_token);
    let bob = fed["beta.test"].client().with_token(&bob_token);

    let room = create_room(&alice, &json!({ "preset": "public_chat" })).await;
    let (status, resp) = carol
        .post(&format!("{V3}/join/{}", enc(&room)), &json!({}))
        .await;
    assert_eq!(status, 200, "{resp}");
    let (status, resp) = bob
        .post(
            &format!("{V3}/join/{}?server_name=alpha.test", enc(&room)),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");

    // Alice's client keeps syncing (without it she would go offline
    // before the others look).
    let syncing = tokio::spawn({
        let alice = alice.clone();
        async move {
            let mut since: Option<String> = None;
            loop {
                let path = match since.as_deref() {
                    Some(s) => format!("{V3}/sync?timeout=300&since={}", enc(s)),
                    None => format!("{V3}/sync"),
                };
                let (_, resp) = alice.get(&path).await;
                since = resp["next_batch"].as_str().map(str::to_owned).or(since);
            }
        }
    });

    // Alice says where she is; nobody can say it for her.
    let status_path = |user: &str| format!("{V3}/presence/{}/status", enc(user));
    let (status, resp) = alice
        .put(
            &status_path(&alice_id),
            &json!({ "presence": "online", "status_msg": "at my desk" }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let refused = carol
        .put(&status_path(&alice_id), &json!({ "presence": "offline" }))
        .await;
    assert_error(&refused, 403, "M_FORBIDDEN");

    // Carol, locally, and Bob, on beta, see it in their syncs.
    let mut carol_since = None;
    let content = sync_until(
        &carol,
        &mut carol_since,
        &alice_id,
        "online",
        "carol never saw alice online",
    )
    .await;
    assert_eq!(content["status_msg"], "at my desk", "{content}");
    assert_eq!(content["currently_active"], true, "{content}");
    assert!(content["last_active_ago"].as_i64().is_some(), "{content}");
    let mut bob_since = None;
    let content = sync_until(
        &bob,
        &mut bob_since,
        &alice_id,
        "online",
        "alice's presence never reached beta",
    )
    .await;
    assert_eq!(content["status_msg"], "at my desk", "{content}");

    // And can read it directly; Dave, who shares no room with her, cannot.
    for (who, client) in [("carol", &carol), ("bob", &bob)] {
        let (status, resp) = client.get(&status_path(&alice_id)).await;
        assert_eq!(status, 200, "{who}: {resp}");
        assert_eq!(resp["presence"], "online", "{who}: {resp}");
        assert_eq!(resp["status_msg"], "at my desk", "{who}: {resp}");
    }
    let refused = dave.get(&status_path(&alice_id)).await;
    assert_error(&refused, 403, "M_FORBIDDEN");
    let (status, resp) = dave.get(&status_path(&dave_id)).await;
    assert_eq!(status, 200, "{resp}");

    // Bob's syncing made him online on beta, and beta told alpha.
    sync_until(
        &carol,
        &mut carol_since,
        &bob_id,
        "online",
        "bob's presence never reached alpha",
    )
    .await;
    let (status, resp) = carol.get(&status_path(&bob_id)).await;
    assert_eq!(
        (status.as_u16(), &resp["presence"]),
        (200, &json!("online")),
        "{resp}"
    );

    // Alice closes her client: she goes offline after the timeout. Carol's
    // long-poll is woken by it rather than running out.
    syncing.abort();
    let started = Instant::now();
    let path = format!(
        "{V3}/sync?timeout=20000&set_presence=offline&since={}",
        enc(carol_since.as_deref().expect("token"))
    );
    let (status, resp) = carol.get(&path).await;
    assert_eq!(status, 200, "{resp}");
    let content = presence_of(&resp, &alice_id);
    let mut carol_since = resp["next_batch"].as_str().map(str::to_owned);
    if content.as_ref().is_none_or(|c| c["presence"] != "offline") {
        // Something else (Bob's presence, say) woke it first.
        sync_until(
            &carol,
            &mut carol_since,
            &alice_id,
            "offline",
            "alice never went offline",
        )
        .await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the long-poll was not woken"
    );
    sync_until(
        &bob,
        &mut bob_since,
        &alice_id,
        "offline",
        "alice's offline never reached beta",
    )
    .await;
    let (status, resp) = carol.get(&status_path(&alice_id)).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["presence"], "offline", "{resp}");
    assert_eq!(
        resp["status_msg"], "at my desk",
        "the status message stays: {resp}"
    );

    // Sending a message is activity: she is online again for a while.
    let (status, resp) = alice
        .put(
            &format!("{V3}/rooms/{}/send/m.room.message/t1", enc(&room)),
            &json!({ "msgtype": "m.text", "body": "back" }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let content = sync_until(
        &carol,
        &mut carol_since,
        &alice_id,
        "online",
        "a message did not bring alice online",
    )
    .await;
    assert_eq!(content["currently_active"], true, "{content}");
}

backend_tests!(presence_across_servers);
