//! Two organisations chat across servers: Bob on beta joins Alice's room on alpha; messages
//! each of them sends reach the other's server through the outbound transaction queue and
//! the receiver's `/send`, in order, and show up in the other's `/sync`. Beta goes down
//! while Alice keeps writing; when it is back and talks to alpha, alpha catches it up.

use std::time::{Duration, Instant};

use crate::common::federation::Federation;
use crate::common::{Backend, Client, create_room, create_user, enc};
use serde_json::{Value, json};

const V3: &str = "/_matrix/client/v3";

async fn send(client: &Client, room: &str, txn: &str, body: &str) -> String {
    let (status, resp) = client
        .put(
            &format!("{V3}/rooms/{}/send/m.room.message/{txn}", enc(room)),
            &json!({ "msgtype": "m.text", "body": body }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    resp["event_id"].as_str().expect("event_id").to_owned()
}

/// The bodies of the room's messages as `client` reads them, oldest first.
async fn bodies(client: &Client, room: &str) -> Vec<String> {
    let (status, resp) = client
        .get(&format!(
            "{V3}/rooms/{}/messages?dir=b&limit=100",
            enc(room)
        ))
        .await;
    assert_eq!(status, 200, "{resp}");
    let mut out: Vec<String> = resp["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect();
    out.reverse();
    out
}

/// Waits until `client` reads exactly `want` as the room's messages.
async fn wait_for_bodies(client: &Client, room: &str, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = bodies(client, room).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "expected {want:?}, read {got:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn chat_both_ways_and_catch_up(backend: Backend) {
    let mut fed = Federation::start_with(
        backend,
        &["alpha.test", "beta.test"],
        // Retry soon: this story waits for a retry after beta's outage.
        &[(
            "MYELIN__FEDERATION__DESTINATION_MIN_RETRY_INTERVAL_MS",
            "300",
        )],
    )
    .await;
    let (_, alice_token) = create_user(&fed["alpha.test"], "alice").await;
    let (_, bob_token) = create_user(&fed["beta.test"], "bob").await;
    let alice = fed["alpha.test"].client().with_token(&alice_token);
    let bob = fed["beta.test"].client().with_token(&bob_token);

    let room = create_room(
        &alice,
        &json!({ "preset": "public_chat", "name": "Across" }),
    )
    .await;
    let (status, resp) = bob
        .post(
            &format!("{V3}/join/{}?server_name=alpha.test", enc(&room)),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");

    // Both ways, in order.
    send(&alice, &room, "a1", "hello bob").await;
    wait_for_bodies(&bob, &room, &["hello bob"]).await;
    send(&bob, &room, "b1", "hi alice").await;
    send(&bob, &room, "b2", "how are you").await;
    let both = ["hello bob", "hi alice", "how are you"];
    wait_for_bodies(&alice, &room, &both).await;
    wait_for_bodies(&bob, &room, &both).await;

    // Bob's /sync on beta shows Alice's message as a timeline event.
    let (status, sync) = bob.get(&format!("{V3}/sync?timeout=0")).await;
    assert_eq!(status, 200, "{sync}");
    let timeline = &sync["rooms"]["join"][room.as_str()]["timeline"]["events"];
    assert!(
        timeline
            .as_array()
            .expect("timeline")
            .iter()
            .any(|e| e["sender"] == "@alice:alpha.test" && e["content"]["body"] == "hello bob"),
        "{timeline}"
    );

    // Beta goes down; Alice keeps writing; beta comes back.
    let beta_index = fed
        .servers
        .iter()
        .position(|s| s.name == "beta.test")
        .expect("beta");
    fed.servers[beta_index].server.kill();
    for (i, body) in ["while you were out", "still here"].iter().enumerate() {
        send(&alice, &room, &format!("a-out{i}"), body).await;
    }
    fed.servers[beta_index].server.restart().await;
    let bob = fed["beta.test"].client().with_token(&bob_token);
    let all = [
        "hello bob",
        "hi alice",
        "how are you",
        "while you were out",
        "still here",
    ];
    wait_for_bodies(&bob, &room, &all).await;
    // And the room stays one room: both sides hold the same state.
    let state = |c: &Client| {
        let c = c.clone();
        let room = room.clone();
        async move {
            let (status, resp) = c.get(&format!("{V3}/rooms/{}/state", enc(&room))).await;
            assert_eq!(status, 200, "{resp}");
            let mut ids: Vec<Value> = resp
                .as_array()
                .expect("state")
                .iter()
                .map(|e| e["event_id"].clone())
                .collect();
            ids.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            ids
        }
    };
    assert_eq!(state(&alice).await, state(&bob).await);
}

backend_tests!(chat_both_ways_and_catch_up);

/// The room's current state as `client` reads it: event IDs, sorted.
async fn state_ids(client: &Client, room: &str) -> Vec<String> {
    let (status, resp) = client.get(&format!("{V3}/rooms/{}/state", enc(room))).await;
    assert_eq!(status, 200, "{resp}");
    let mut ids: Vec<String> = resp
        .as_array()
        .expect("state")
        .iter()
        .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

async fn power_levels(client: &Client, room: &str) -> Value {
    let (status, resp) = client
        .get(&format!(
            "{V3}/rooms/{}/state/m.room.power_levels/",
            enc(room)
        ))
        .await;
    assert_eq!(status, 200, "{resp}");
    resp
}

/// Alice (alpha) and Bob (beta), both room admins, change the power levels at the same
/// moment, each on their own server's state: the two events fork the room. Once each
/// server has the other's event, state resolution gives both the same current state.
async fn concurrent_power_changes_converge(backend: Backend) {
    let fed = Federation::start(backend, &["alpha.test", "beta.test"]).await;
    let (_, alice_token) = create_user(&fed["alpha.test"], "alice").await;
    let (_, bob_token) = create_user(&fed["beta.test"], "bob").await;
    let alice = fed["alpha.test"].client().with_token(&alice_token);
    let bob = fed["beta.test"].client().with_token(&bob_token);
    let room = create_room(&alice, &json!({ "preset": "public_chat" })).await;
    let (status, resp) = bob
        .post(
            &format!("{V3}/join/{}?server_name=alpha.test", enc(&room)),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let mut levels = power_levels(&alice, &room).await;
    levels["users"]["@bob:beta.test"] = json!(100);
    let (status, resp) = alice
        .put(
            &format!("{V3}/rooms/{}/state/m.room.power_levels/", enc(&room)),
            &levels,
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while power_levels(&bob, &room).await["users"]["@bob:beta.test"] != 100 {
        assert!(Instant::now() < deadline, "bob never became admin on beta");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The same moment, each from the state their server has.
    let mut from_alice = levels.clone();
    from_alice["events_default"] = json!(10);
    let mut from_bob = levels.clone();
    from_bob["state_default"] = json!(60);
    let put = |client: &Client, content: &Value| {
        let (client, content, room) = (client.clone(), content.clone(), room.clone());
        async move {
            client
                .put(
                    &format!("{V3}/rooms/{}/state/m.room.power_levels/", enc(&room)),
                    &content,
                )
                .await
        }
    };
    let (a, b) = tokio::join!(put(&alice, &from_alice), put(&bob, &from_bob));
    assert_eq!(a.0, 200, "{}", a.1);
    assert_eq!(b.0, 200, "{}", b.1);

    // Both servers end up with the same state, whichever change resolution keeps.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (on_alpha, on_beta) = (state_ids(&alice, &room).await, state_ids(&bob, &room).await);
        if on_alpha == on_beta {
            let winner = power_levels(&alice, &room).await;
            assert_eq!(winner, power_levels(&bob, &room).await);
            assert!(winner == from_alice || winner == from_bob, "{winner}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the servers never converged:\nalpha {on_alpha:?}\nbeta {on_beta:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And a message after the fork lands on both (it references both branches).
    send(&alice, &room, "after", "after the fork").await;
    wait_for_bodies(&bob, &room, &["after the fork"]).await;
}

backend_tests!(concurrent_power_changes_converge);

/// Three servers: Bob (beta) and then Carol (gamma) join Alice's room through alpha. Beta
/// hears of Carol's join only from alpha, the resident server that accepted it, and from
/// then on sends Bob's messages to gamma too; Carol's reach beta.
async fn three_servers_share_a_room(backend: Backend) {
    let fed = Federation::start(backend, &["alpha.test", "beta.test", "gamma.test"]).await;
    let (_, alice_token) = create_user(&fed["alpha.test"], "alice").await;
    let (_, bob_token) = create_user(&fed["beta.test"], "bob").await;
    let (_, carol_token) = create_user(&fed["gamma.test"], "carol").await;
    let alice = fed["alpha.test"].client().with_token(&alice_token);
    let bob = fed["beta.test"].client().with_token(&bob_token);
    let carol = fed["gamma.test"].client().with_token(&carol_token);
    let room = create_room(&alice, &json!({ "preset": "public_chat" })).await;
    for user in [&bob, &carol] {
        let (status, resp) = user
            .post(
                &format!("{V3}/join/{}?server_name=alpha.test", enc(&room)),
                &json!({}),
            )
            .await;
        assert_eq!(status, 200, "{resp}");
    }
    // Beta learns of Carol's join from alpha.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, resp) = bob
            .get(&format!("{V3}/rooms/{}/joined_members", enc(&room)))
            .await;
        assert_eq!(status, 200, "{resp}");
        if resp["joined"].get("@carol:gamma.test").is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "beta never saw carol join: {resp}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    send(&bob, &room, "b1", "from beta").await;
    wait_for_bodies(&carol, &room, &["from beta"]).await;
    send(&carol, &room, "c1", "from gamma").await;
    wait_for_bodies(&bob, &room, &["from beta", "from gamma"]).await;
    wait_for_bodies(&alice, &room, &["from beta", "from gamma"]).await;
}

backend_tests!(three_servers_share_a_room);

/// Waits until `client`'s incremental sync from `since` shows `room` under `leave` with a
/// membership event for `user` whose membership is `membership`; returns that event.
async fn wait_for_leave(
    client: &Client,
    since: &str,
    room: &str,
    user: &str,
    membership: &str,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, sync) = client
            .get(&format!("{V3}/sync?timeout=1000&since={since}"))
            .await;
        assert_eq!(status, 200, "{sync}");
        let found = sync["rooms"]["leave"][room]["timeline"]["events"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| {
                e["type"] == "m.room.member"
                    && e["state_key"] == user
                    && e["content"]["membership"] == membership
            })
            .cloned();
        if let Some(event) = found {
            assert!(
                sync["rooms"]["join"].get(room).is_none(),
                "{room} is still joined: {sync}"
            );
            return event;
        }
        assert!(
            Instant::now() < deadline,
            "no {membership} of {user} in {room} reached this sync"
        );
    }
}

async fn next_batch(client: &Client) -> String {
    let (status, sync) = client.get(&format!("{V3}/sync?timeout=0")).await;
    assert_eq!(status, 200, "{sync}");
    sync["next_batch"].as_str().expect("next_batch").to_owned()
}

/// Moderation across servers. Alice on alpha bans Bob, the only member from beta: the ban
/// still reaches beta (the target's server gets it even though it is no longer in the
/// room), Bob's sync on beta shows it, beta refuses his messages, and alpha refuses his
/// rejoin. After an unban he rejoins and chats; a kick then removes him the same way.
async fn kick_and_ban_across_servers(backend: Backend) {
    let fed = Federation::start(backend, &["alpha.test", "beta.test"]).await;
    let (_, alice_token) = create_user(&fed["alpha.test"], "alice").await;
    let (bob_id, bob_token) = create_user(&fed["beta.test"], "bob").await;
    let alice = fed["alpha.test"].client().with_token(&alice_token);
    let bob = fed["beta.test"].client().with_token(&bob_token);
    let room = create_room(&alice, &json!({ "preset": "public_chat" })).await;
    let join = |bob: Client| {
        let room = room.clone();
        async move {
            bob.post(
                &format!("{V3}/join/{}?server_name=alpha.test", enc(&room)),
                &json!({}),
            )
            .await
        }
    };
    let (status, resp) = join(bob.clone()).await;
    assert_eq!(status, 200, "{resp}");
    send(&bob, &room, "b1", "hello").await;
    wait_for_bodies(&alice, &room, &["hello"]).await;

    // The ban.
    let since = next_batch(&bob).await;
    let (status, resp) = alice
        .post(
            &format!("{V3}/rooms/{}/ban", enc(&room)),
            &json!({ "user_id": bob_id, "reason": "spam" }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let ban = wait_for_leave(&bob, &since, &room, &bob_id, "ban").await;
    assert_eq!(ban["sender"], "@alice:alpha.test", "{ban}");
    assert_eq!(ban["content"]["reason"], "spam", "{ban}");
    let (status, resp) = bob
        .put(
            &format!("{V3}/rooms/{}/send/m.room.message/b2", enc(&room)),
            &json!({ "msgtype": "m.text", "body": "let me in" }),
        )
        .await;
    assert_eq!(status, 403, "a banned user's message was accepted: {resp}");
    assert_eq!(resp["errcode"], "M_FORBIDDEN", "{resp}");
    let refused = join(bob.clone()).await;
    assert_eq!(refused.0, 403, "a banned user rejoined: {}", refused.1);
    assert_eq!(refused.1["errcode"], "M_FORBIDDEN", "{}", refused.1);
    // Nothing of Bob's got into alpha's room.
    wait_for_bodies(&alice, &room, &["hello"]).await;

    // Unban, rejoin, chat.
    let (status, resp) = alice
        .post(
            &format!("{V3}/rooms/{}/unban", enc(&room)),
            &json!({ "user_id": bob_id }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let (status, resp) = join(bob.clone()).await;
    assert_eq!(status, 200, "the unbanned user could not rejoin: {resp}");
    send(&bob, &room, "b3", "thanks").await;
    wait_for_bodies(&alice, &room, &["hello", "thanks"]).await;

    // The kick.
    let since = next_batch(&bob).await;
    let (status, resp) = alice
        .post(
            &format!("{V3}/rooms/{}/kick", enc(&room)),
            &json!({ "user_id": bob_id, "reason": "enough" }),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let kick = wait_for_leave(&bob, &since, &room, &bob_id, "leave").await;
    assert_eq!(kick["sender"], "@alice:alpha.test", "{kick}");
    assert_eq!(kick["content"]["reason"], "enough", "{kick}");
    let (status, resp) = bob
        .put(
            &format!("{V3}/rooms/{}/send/m.room.message/b4", enc(&room)),
            &json!({ "msgtype": "m.text", "body": "again" }),
        )
        .await;
    assert_eq!(status, 403, "a kicked user's message was accepted: {resp}");
}

backend_tests!(kick_and_ban_across_servers);
