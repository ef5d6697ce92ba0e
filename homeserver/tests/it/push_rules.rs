//! A user starts with the spec's predefined push rules, adds their own
//! (placed before others), disables and re-targets predefined rules,
//! deletes their own but not predefined ones; the rules are the user's
//! `m.push_rules` account data and survive a restart.

use crate::common::{Backend, TestServer, assert_error, register};
use serde_json::{Value, json};

const RULES: &str = "/_matrix/client/v3/pushrules";

fn ids(rules: &Value, kind: &str) -> Vec<String> {
    rules["global"][kind]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["rule_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn predefined_rules(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    let (alice, token, _) = register(&client, "alice", "pw-alice").await;
    let as_alice = client.with_token(&token);

    let (status, all) = as_alice.get(&format!("{RULES}/")).await;
    assert_eq!(status, 200, "{all}");
    let overrides = ids(&all, "override");
    assert_eq!(overrides[0], ".m.rule.master");
    for id in [
        ".m.rule.suppress_notices",
        ".m.rule.invite_for_me",
        ".m.rule.member_event",
        ".m.rule.is_user_mention",
        ".m.rule.is_room_mention",
        ".m.rule.tombstone",
        ".m.rule.reaction",
    ] {
        assert!(overrides.contains(&id.to_owned()), "{id} in {overrides:?}");
    }
    let underrides = ids(&all, "underride");
    for id in [
        ".m.rule.call",
        ".m.rule.room_one_to_one",
        ".m.rule.message",
        ".m.rule.encrypted",
    ] {
        assert!(
            underrides.contains(&id.to_owned()),
            "{id} in {underrides:?}"
        );
    }
    let master = &all["global"]["override"][0];
    assert_eq!(master["enabled"], false);
    assert_eq!(master["default"], true);
    // Rules that depend on the user name them.
    let invite = all["global"]["override"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["rule_id"] == ".m.rule.invite_for_me"))
        .expect("invite rule");
    assert!(invite.to_string().contains(&alice), "{invite}");

    let (status, global) = as_alice.get(&format!("{RULES}/global/")).await;
    assert_eq!(status, 200);
    assert_eq!(global, all["global"]);

    let (status, rule) = as_alice
        .get(&format!("{RULES}/global/underride/.m.rule.message"))
        .await;
    assert_eq!(status, 200, "{rule}");
    assert_eq!(rule["rule_id"], ".m.rule.message");
    assert_eq!(rule["enabled"], true);

    // The rules are also the user's m.push_rules account data.
    let (status, data) = as_alice
        .get(&format!(
            "/_matrix/client/v3/user/{alice}/account_data/m.push_rules"
        ))
        .await;
    assert_eq!(status, 200, "{data}");
    assert_eq!(data["global"], all["global"]);
}

async fn edit_push_rules(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let client = server.client();
    let (alice, token, _) = register(&client, "alice", "pw-alice").await;
    let as_alice = client.with_token(&token);
    let rule = |kind: &str, id: &str| format!("{RULES}/global/{kind}/{id}");
    let cond = json!({
        "conditions": [{"kind": "event_match", "key": "content.body", "pattern": "cake"}],
        "actions": ["notify", {"set_tweak": "sound", "value": "default"}]
    });

    let (status, body) = as_alice.put(&rule("override", "cake"), &cond).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = as_alice
        .put(&format!("{}?before=cake", rule("override", "pie")), &cond)
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, all) = as_alice.get(&format!("{RULES}/")).await;
    let overrides = ids(&all, "override");
    assert_eq!(
        overrides[..3],
        [".m.rule.master", "pie", "cake"],
        "{overrides:?}"
    );
    // After another rule.
    let (status, _) = as_alice
        .put(&format!("{}?after=cake", rule("override", "tart")), &cond)
        .await;
    assert_eq!(status, 200);
    let (_, all) = as_alice.get(&format!("{RULES}/")).await;
    assert_eq!(
        ids(&all, "override")[..4],
        [".m.rule.master", "pie", "cake", "tart"]
    );

    let (status, got) = as_alice.get(&rule("override", "cake")).await;
    assert_eq!(status, 200);
    assert_eq!(got["default"], false);
    assert_eq!(got["enabled"], true);
    assert_eq!(got["conditions"][0]["pattern"], "cake");

    // Other kinds.
    let (status, body) = as_alice
        .put(
            &rule("content", "words"),
            &json!({"pattern": "lunch", "actions": ["notify"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = as_alice
        .put(&rule("room", "!quiet:example.org"), &json!({"actions": []}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = as_alice
        .put(
            &rule("sender", "@loud:example.org"),
            &json!({"actions": []}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = as_alice.put(&rule("underride", "late"), &cond).await;
    assert_eq!(status, 200, "{body}");

    // Disable a predefined rule, change its actions.
    let enabled = rule("underride", ".m.rule.message") + "/enabled";
    let (status, _) = as_alice.put(&enabled, &json!({"enabled": false})).await;
    assert_eq!(status, 200);
    assert_eq!(as_alice.get(&enabled).await.1, json!({"enabled": false}));
    let actions = rule("underride", ".m.rule.message") + "/actions";
    let (status, _) = as_alice.put(&actions, &json!({"actions": []})).await;
    assert_eq!(status, 200);
    assert_eq!(as_alice.get(&actions).await.1, json!({"actions": []}));
    let master = rule("override", ".m.rule.master") + "/enabled";
    as_alice.put(&master, &json!({"enabled": true})).await;

    // Delete one's own rule; predefined ones stay.
    let (status, _) = as_alice.delete(&rule("override", "pie")).await;
    assert_eq!(status, 200);
    assert_error(
        &as_alice.get(&rule("override", "pie")).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &as_alice.delete(&rule("underride", ".m.rule.message")).await,
        400,
        "M_UNKNOWN",
    );
    assert_error(
        &as_alice.delete(&rule("override", "pie")).await,
        404,
        "M_NOT_FOUND",
    );

    // Rules that cannot be made.
    assert_error(
        &as_alice.put(&rule("override", ".m.rule.mine"), &cond).await,
        400,
        "M_UNKNOWN",
    );
    assert_error(
        &as_alice
            .put(&format!("{}?before=nothing", rule("override", "x")), &cond)
            .await,
        400,
        "M_UNKNOWN",
    );
    assert_error(
        &as_alice
            .put(
                &format!("{}?after=.m.rule.master", rule("override", "x")),
                &cond,
            )
            .await,
        400,
        "M_UNKNOWN",
    );
    let (status, _) = as_alice
        .put(&rule("content", "nopattern"), &json!({"actions": []}))
        .await;
    assert_eq!(status, 400);
    assert_error(
        &as_alice
            .put(
                &(rule("override", "missing") + "/enabled"),
                &json!({"enabled": true}),
            )
            .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &as_alice
            .get(&(rule("override", "missing") + "/actions"))
            .await,
        404,
        "M_NOT_FOUND",
    );
    // The failed requests changed nothing.
    assert_error(
        &as_alice.get(&rule("override", "x")).await,
        404,
        "M_NOT_FOUND",
    );

    // The account data sees the edits, and they survive a restart.
    let data_path = format!("/_matrix/client/v3/user/{alice}/account_data/m.push_rules");
    server.restart().await;
    let (_, all) = as_alice.get(&format!("{RULES}/")).await;
    assert_eq!(
        ids(&all, "override")[..3],
        [".m.rule.master", "cake", "tart"]
    );
    assert_eq!(all["global"]["override"][0]["enabled"], true);
    assert_eq!(ids(&all, "content"), ["words"]);
    assert_eq!(ids(&all, "room"), ["!quiet:example.org"]);
    assert_eq!(ids(&all, "sender"), ["@loud:example.org"]);
    assert_eq!(ids(&all, "underride")[0], "late");
    let message = all["global"]["underride"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["rule_id"] == ".m.rule.message"))
        .expect("message rule")
        .clone();
    assert_eq!(message["enabled"], false);
    assert_eq!(message["actions"], json!([]));
    assert_eq!(as_alice.get(&data_path).await.1["global"], all["global"]);
}

backend_tests!(predefined_rules, edit_push_rules);
