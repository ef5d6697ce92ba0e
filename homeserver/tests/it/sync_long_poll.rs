//! Bob long-polls `/sync`: he is woken with the data when Alice sends to
//! their room and when his account data changes; a wake-up for something
//! his filter drops keeps him waiting; a timeout with nothing new returns
//! an empty response with the same token. (Presence, which sending
//! changes too, is off there.) With presence on, a long-poll whose filter
//! drops presence is not even computed again for a presence change.

use std::time::Duration;

use crate::common::{Backend, Client, TestServer, enc, joined_room, users};
use serde_json::{Value, json};

const V3: &str = "/_matrix/client/v3";
/// Long enough that a response with the data proves the request was woken,
/// not timed out (the client's own timeout is 60 s).
const LONG: u64 = 20_000;

async fn sync(client: &Client, query: &str) -> Value {
    let (status, resp) = client.get(&format!("{V3}/sync?{query}")).await;
    assert_eq!(status, 200, "{resp}");
    resp
}

fn next_batch(resp: &Value) -> String {
    resp["next_batch"].as_str().expect("next_batch").to_owned()
}

/// Starts a long-poll and gives it time to register before returning.
async fn poll(client: &Client, since: &str, extra: &str) -> tokio::task::JoinHandle<Value> {
    let client = client.clone();
    let query = format!("since={}&timeout={LONG}{extra}", enc(since));
    let handle = tokio::spawn(async move { sync(&client, &query).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    if handle.is_finished() {
        let resp = handle.await.expect("poll");
        panic!("the long-poll returned before any change: {resp}");
    }
    handle
}

/// Alice and Bob, and a public room Alice creates and Bob joins.
async fn alice_bob_room(server: &TestServer) -> ([(String, Client); 2], String) {
    let [alice, bob] = users(server, ["alice", "bob"]).await;
    let room = joined_room(&alice.1, &json!({"preset": "public_chat"}), &[&bob.1]).await;
    ([alice, bob], room)
}

async fn long_poll(backend: Backend) {
    // Presence off: Alice's sending is activity, a change Bob would be
    // woken with besides the one each step waits for.
    let server = TestServer::start_with(backend, &[("MYELIN__PRESENCE__ENABLED", "false")]).await;
    let ([(_, alice), (bob_id, bob)], room) = alice_bob_room(&server).await;
    let token = next_batch(&sync(&bob, "").await);

    // Alice sends: Bob's poll wakes with the message.
    let waiting = poll(&bob, &token, "").await;
    let (status, resp) = alice
        .put(
            &format!("{V3}/rooms/{}/send/m.room.message/1", enc(&room)),
            &json!({"msgtype": "m.text", "body": "wake up"}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let resp = waiting.await.expect("poll");
    let events = &resp["rooms"]["join"][&room]["timeline"]["events"];
    assert_eq!(events[0]["content"]["body"], "wake up", "{resp}");
    let token = next_batch(&resp);

    // Bob's account data changes (from another request): woken with it.
    let waiting = poll(&bob, &token, "").await;
    let (status, resp) = bob
        .put(
            &format!("{V3}/user/{}/account_data/x.mood", enc(&bob_id)),
            &json!({"mood": "awake"}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let resp = waiting.await.expect("poll");
    assert_eq!(
        resp["account_data"]["events"][0]["type"], "x.mood",
        "{resp}"
    );
    let token = next_batch(&resp);

    // Room tags are account data too.
    let waiting = poll(&bob, &token, "").await;
    let (status, resp) = bob
        .put(
            &format!(
                "{V3}/user/{}/rooms/{}/tags/m.favourite",
                enc(&bob_id),
                enc(&room)
            ),
            &json!({"order": 0.5}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let resp = waiting.await.expect("poll");
    let room_ad = &resp["rooms"]["join"][&room]["account_data"]["events"];
    assert_eq!(room_ad[0]["type"], "m.tag", "{resp}");
    let token = next_batch(&resp);

    // A message Bob's filter drops wakes the request, which finds nothing
    // and waits on; the next message it keeps is delivered.
    let filter = json!({"room": {"timeline": {"not_types": ["x.noise"]}}});
    let extra = format!("&filter={}", enc(&filter.to_string()));
    let waiting = poll(&bob, &token, &extra).await;
    let (status, resp) = alice
        .put(
            &format!("{V3}/rooms/{}/send/x.noise/2", enc(&room)),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "a filtered event ended the long-poll"
    );
    alice
        .put(
            &format!("{V3}/rooms/{}/send/m.room.message/3", enc(&room)),
            &json!({"msgtype": "m.text", "body": "signal"}),
        )
        .await;
    let resp = waiting.await.expect("poll");
    let events = &resp["rooms"]["join"][&room]["timeline"]["events"];
    assert_eq!(events.as_array().map(Vec::len), Some(1), "{resp}");
    assert_eq!(events[0]["content"]["body"], "signal", "{resp}");
    let token = next_batch(&resp);

    // Nothing happens: the timeout ends the request, empty, same token.
    let resp = sync(&bob, &format!("since={}&timeout=300", enc(&token))).await;
    assert!(resp.get("rooms").is_none(), "{resp}");
    assert_eq!(next_batch(&resp), token);

    // Every finished poll left the waiting gauge.
    let (status, text) = server.client().get_text("/metrics").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.lines().any(|l| l == "myelin_sync_waiting 0"), "{text}");
    assert!(
        !text.lines().any(|l| l == "myelin_sync_woken_total 0"),
        "wake-ups are counted: {text}"
    );
}

backend_tests!(long_poll);

/// Incremental sync responses computed so far.
async fn incremental_computes(server: &TestServer) -> u64 {
    let (status, text) = server.client().get_text("/metrics").await;
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|l| {
            l.strip_prefix("myelin_sync_compute_duration_seconds_count{kind=\"incremental\"} ")
        })
        .map_or(0, |n| n.parse().expect("a count"))
}

async fn presence_filtered_out(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ([(alice_id, alice), (_, bob)], room) = alice_bob_room(&server).await;
    let filter = json!({"presence": {"types": []}});
    let extra = format!("&filter={}", enc(&filter.to_string()));
    let token = next_batch(&sync(&bob, &extra[1..]).await);

    let waiting = poll(&bob, &token, &extra).await;
    let computed = incremental_computes(&server).await;
    // Alice's presence changes wake Bob's request (they share a room),
    // which has nothing to compute: no stream it sees moved.
    for presence in ["online", "unavailable", "online"] {
        let (status, resp) = alice
            .put(
                &format!("{V3}/presence/{}/status", enc(&alice_id)),
                &json!({ "presence": presence }),
            )
            .await;
        assert_eq!(status, 200, "{resp}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "a presence change ended the poll");
    assert_eq!(
        incremental_computes(&server).await,
        computed,
        "a response was computed for a change the filter drops"
    );

    // A message is delivered, without the presence it dropped.
    let (status, resp) = alice
        .put(
            &format!("{V3}/rooms/{}/send/m.room.message/1", enc(&room)),
            &json!({"msgtype": "m.text", "body": "hello"}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    let resp = waiting.await.expect("poll");
    let events = &resp["rooms"]["join"][&room]["timeline"]["events"];
    assert_eq!(events[0]["content"]["body"], "hello", "{resp}");
    assert!(resp.get("presence").is_none(), "{resp}");
}

backend_tests!(presence_filtered_out);
