//! What push rule conditions are evaluated against: the room context of
//! one member (member count, their display name, the sender's power to
//! notify the room), and what a matching rule means for unread counts.

use std::collections::BTreeMap;

use myelin_proto::auth::UserPowerLevel;
use ruma::power_levels::NotificationPowerLevels;
use ruma::push::{Action, PushConditionPowerLevelsCtx, PushConditionRoomCtx};
use ruma::room_version_rules::{AuthorizationRules, RoomPowerLevelsRules};
use ruma::{Int, OwnedRoomId, OwnedUserId, UInt, UserId};
use serde::Deserialize;

/// What an event's push actions mean for unread counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    pub notify: bool,
    pub highlight: bool,
}

impl Outcome {
    /// What a matching rule's actions mean.
    pub fn of(actions: &[Action]) -> Self {
        Self {
            notify: actions.iter().any(Action::should_notify),
            highlight: actions.iter().any(Action::is_highlight),
        }
    }

    /// Whether the event counts at all (a row is stored).
    pub fn counts(self) -> bool {
        self.notify || self.highlight
    }
}

/// The power levels context of an event's push evaluation. The only
/// condition that reads power levels is `sender_notification_permission`,
/// which asks about the sender alone, so the context holds the sender's
/// level and the room's notification levels rather than every user's.
pub fn power_levels(
    sender: &UserId,
    sender_level: UserPowerLevel,
    room_notification_level: i64,
) -> PushConditionPowerLevelsCtx {
    let level = match sender_level {
        UserPowerLevel::Finite(n) => Int::new_saturating(n),
        // A v12 creator outranks any notification level.
        UserPowerLevel::Infinite => Int::MAX,
    };
    let mut users = BTreeMap::new();
    users.insert(sender.to_owned(), level);
    let mut notifications = NotificationPowerLevels::new();
    notifications.room = Int::new_saturating(room_notification_level);
    PushConditionPowerLevelsCtx::new(
        users,
        Int::from(0u8),
        notifications,
        // Creators are already given the highest level above.
        RoomPowerLevelsRules::new(&AuthorizationRules::V10, []),
    )
}

/// The room context of one member.
pub fn room_ctx(
    room_id: OwnedRoomId,
    member_count: usize,
    user_id: OwnedUserId,
    display_name: Option<String>,
    power_levels: PushConditionPowerLevelsCtx,
) -> PushConditionRoomCtx {
    // Without a display name the user ID stands in: an empty name would
    // make `contains_display_name` match an empty body.
    let display_name = display_name.unwrap_or_else(|| user_id.to_string());
    PushConditionRoomCtx::new(
        room_id,
        UInt::try_from(member_count).unwrap_or(UInt::MAX),
        user_id,
        display_name,
    )
    .with_power_levels(power_levels)
}

#[derive(Deserialize)]
struct MemberEvent {
    content: MemberContent,
}

#[derive(Deserialize)]
struct MemberContent {
    displayname: Option<String>,
}

/// The display name in a member event's JSON, if set and not empty. Only
/// the name is decoded: the rest of the event is skipped unparsed.
pub fn display_name(member_event_json: &str) -> Option<String> {
    serde_json::from_str::<MemberEvent>(member_event_json)
        .ok()
        .and_then(|e| e.content.displayname)
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use ruma::push::{FlattenedJson, Ruleset};
    use ruma::serde::Raw;
    use ruma::{owned_room_id, owned_user_id, user_id};
    use serde_json::{Value, json};

    use super::*;
    use crate::push::shared::{PreparedRuleset, SharedMatches};

    async fn evaluate(
        rules: &Ruleset,
        event: &FlattenedJson,
        ctx: &PushConditionRoomCtx,
    ) -> Outcome {
        let prepared = PreparedRuleset::new(rules.clone());
        SharedMatches::default()
            .evaluate(&prepared, event, ctx)
            .await
    }

    fn flat(event: Value) -> FlattenedJson {
        let raw: Raw<Value> = Raw::new(&event).expect("raw");
        FlattenedJson::from_raw(&raw)
    }

    fn message(content: Value) -> FlattenedJson {
        flat(json!({
            "type": "m.room.message",
            "sender": "@alice:x",
            "room_id": "!r:x",
            "content": content,
        }))
    }

    async fn outcome(event: &FlattenedJson, member_count: usize, sender_level: i64) -> Outcome {
        let bob = owned_user_id!("@bob:x");
        let rules = Ruleset::server_default(&bob);
        let ctx = room_ctx(
            owned_room_id!("!r:x"),
            member_count,
            bob,
            display_name(r#"{"content":{"membership":"join","displayname":"Bobby"}}"#),
            power_levels(user_id!("@alice:x"), sender_level.into(), 50),
        );
        evaluate(&rules, event, &ctx).await
    }

    const NOTIFY: Outcome = Outcome {
        notify: true,
        highlight: false,
    };
    const HIGHLIGHT: Outcome = Outcome {
        notify: true,
        highlight: true,
    };

    #[tokio::test]
    async fn default_rules_in_a_group_room() {
        let plain = message(json!({"msgtype": "m.text", "body": "hello"}));
        assert_eq!(outcome(&plain, 5, 0).await, NOTIFY);
        // The spec's defaults dropped legacy display name mentions (v1.17).
        let by_name = message(json!({"msgtype": "m.text", "body": "hi Bobby!"}));
        assert_eq!(outcome(&by_name, 5, 0).await, NOTIFY);
        let mentioned = message(json!({
            "msgtype": "m.text", "body": "hi",
            "m.mentions": {"user_ids": ["@bob:x"]},
        }));
        assert_eq!(outcome(&mentioned, 5, 0).await, HIGHLIGHT);
        let notice = message(json!({"msgtype": "m.notice", "body": "bot says"}));
        assert_eq!(outcome(&notice, 5, 0).await, Outcome::default());
    }

    #[tokio::test]
    async fn a_users_own_rule_can_match_their_display_name() {
        let rules: Ruleset = serde_json::from_value(json!({
            "override": [{
                "rule_id": "name", "default": false, "enabled": true,
                "conditions": [{"kind": "contains_display_name"}],
                "actions": ["notify", {"set_tweak": "highlight"}],
            }],
        }))
        .expect("ruleset");
        let ctx = |name: Option<&str>| {
            room_ctx(
                owned_room_id!("!r:x"),
                5,
                owned_user_id!("@bob:x"),
                name.map(str::to_owned),
                power_levels(user_id!("@alice:x"), 0.into(), 50),
            )
        };
        let by_name = message(json!({"msgtype": "m.text", "body": "hi Bobby!"}));
        assert_eq!(
            evaluate(&rules, &by_name, &ctx(Some("Bobby"))).await,
            HIGHLIGHT
        );
        assert_eq!(
            evaluate(&rules, &by_name, &ctx(Some("Rob"))).await,
            Outcome::default()
        );
        // Without a display name the user ID stands in; an empty body
        // matches nothing.
        let empty = message(json!({"msgtype": "m.text", "body": ""}));
        assert_eq!(
            evaluate(&rules, &empty, &ctx(None)).await,
            Outcome::default()
        );
        let by_id = message(json!({"msgtype": "m.text", "body": "hi @bob:x"}));
        assert_eq!(evaluate(&rules, &by_id, &ctx(None)).await, HIGHLIGHT);
    }

    #[tokio::test]
    async fn one_to_one_rooms_notify() {
        let plain = message(json!({"msgtype": "m.text", "body": "hello"}));
        assert_eq!(outcome(&plain, 2, 0).await, NOTIFY);
    }

    #[tokio::test]
    async fn room_mentions_need_the_senders_power() {
        let room = message(json!({
            "msgtype": "m.text", "body": "everyone",
            "m.mentions": {"room": true},
        }));
        assert_eq!(outcome(&room, 5, 50).await, HIGHLIGHT);
        assert_eq!(outcome(&room, 5, 0).await, NOTIFY);
        let ctx = room_ctx(
            owned_room_id!("!r:x"),
            5,
            owned_user_id!("@bob:x"),
            None,
            power_levels(user_id!("@alice:x"), UserPowerLevel::Infinite, 50),
        );
        let rules = Ruleset::server_default(user_id!("@bob:x"));
        assert_eq!(evaluate(&rules, &room, &ctx).await, HIGHLIGHT);
    }

    #[tokio::test]
    async fn member_events_do_not_notify_but_invites_of_the_user_do() {
        let join = flat(json!({
            "type": "m.room.member", "state_key": "@carol:x", "sender": "@carol:x",
            "room_id": "!r:x", "content": {"membership": "join"},
        }));
        assert_eq!(outcome(&join, 5, 0).await, Outcome::default());
        let invite = flat(json!({
            "type": "m.room.member", "state_key": "@bob:x", "sender": "@alice:x",
            "room_id": "!r:x", "content": {"membership": "invite"},
        }));
        assert!(outcome(&invite, 5, 0).await.notify);
    }

    #[test]
    fn display_names_are_read_from_member_events() {
        assert_eq!(
            display_name(
                r#"{"type":"m.room.member","content":{"displayname":"B","avatar_url":"mxc://x/y"}}"#
            ),
            Some("B".to_owned())
        );
        assert_eq!(display_name(r#"{"content":{"displayname":""}}"#), None);
        assert_eq!(display_name(r#"{"content":{}}"#), None);
        assert_eq!(display_name("not json"), None);
    }
}
