//! Rule matches shared between the members an event is evaluated for.
//!
//! An event in a room of N local members walks N rulesets, each a copy of
//! the server defaults for most users, and ruma evaluates each condition
//! afresh (lowercasing the value and the pattern each time). But whether
//! a rule applies depends on the member only through their user ID and
//! display name: the sender, the room, its member count and the sender's
//! power are the same for all of them. Rules that read neither (no
//! `contains_display_name` condition, no user ID in their JSON) are the
//! same rule in every copy. So each rule is keyed by its JSON when the
//! ruleset is parsed, and an event's evaluation remembers, by key, which
//! rules applied: each shared rule is evaluated once per event. Rules
//! naming the member (`invite_for_me`, `is_user_mention`, the user name
//! content rule) carry the user ID in their JSON and so are keyed per
//! member.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use ruma::push::{AnyPushRuleRef, FlattenedJson, PushCondition, PushConditionRoomCtx, Ruleset};

use super::context::Outcome;

/// A parsed ruleset, with the key of each rule (in walk order) under which
/// whether it applies is shared.
pub struct PreparedRuleset {
    ruleset: Ruleset,
    keys: Vec<Option<RuleKey>>,
}

/// A rule's kind and JSON, and their hash.
struct RuleKey {
    hash: u64,
    text: String,
}

impl PreparedRuleset {
    pub fn new(ruleset: Ruleset) -> Self {
        let keys = ruleset.iter().map(rule_key).collect();
        Self { ruleset, keys }
    }

    #[cfg(test)]
    pub fn ruleset(&self) -> &Ruleset {
        &self.ruleset
    }
}

/// Whether a condition reads nothing of the member evaluated but their
/// user ID (which only the sender check reads, the same for every member
/// but the sender). Anything newer or unknown is evaluated per member.
fn member_independent(condition: &PushCondition) -> bool {
    matches!(
        condition,
        PushCondition::EventMatch(_)
            | PushCondition::EventPropertyIs(_)
            | PushCondition::EventPropertyContains(_)
            | PushCondition::RoomMemberCount(_)
            | PushCondition::SenderNotificationPermission(_)
    )
}

/// The key of a rule whose match can be shared, `None` for one evaluated
/// per member.
fn rule_key(rule: AnyPushRuleRef<'_>) -> Option<RuleKey> {
    let (kind, json) = match rule {
        AnyPushRuleRef::Override(r) | AnyPushRuleRef::Underride(r) => {
            if !r.conditions.iter().all(member_independent) {
                return None;
            }
            ("conditional", serde_json::to_string(r))
        }
        AnyPushRuleRef::Content(r) => ("content", serde_json::to_string(r)),
        AnyPushRuleRef::Room(r) => ("room", serde_json::to_string(r)),
        AnyPushRuleRef::Sender(r) => ("sender", serde_json::to_string(r)),
        _ => return None,
    };
    let text = format!("{kind} {}", json.ok()?);
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    Some(RuleKey {
        hash: hasher.finish(),
        text,
    })
}

/// Which shared rules applied to one event, in one room context.
#[derive(Default)]
pub struct SharedMatches<'a> {
    known: HashMap<u64, (&'a str, bool)>,
}

impl<'a> SharedMatches<'a> {
    /// The outcome of the first rule of `prepared` that applies to `event`
    /// for the member of `ctx`: what ruma's `Ruleset::get_actions` gives,
    /// with shared rules evaluated once. Every call must be for the same
    /// event and the same room (member count, sender's power).
    pub async fn evaluate(
        &mut self,
        prepared: &'a PreparedRuleset,
        event: &FlattenedJson,
        ctx: &PushConditionRoomCtx,
    ) -> Outcome {
        // No rule applies to the sender's own event; the shared matches
        // are those of everyone else.
        if event.get_str("sender") == Some(ctx.user_id.as_str()) {
            return Outcome::default();
        }
        for (rule, key) in prepared.ruleset.iter().zip(&prepared.keys) {
            let applies = match key {
                None => rule.applies(event, ctx).await,
                Some(key) => match self.known.get(&key.hash) {
                    Some(&(text, applies)) if text == key.text => applies,
                    _ => {
                        let applies = rule.applies(event, ctx).await;
                        self.known.insert(key.hash, (&key.text, applies));
                        applies
                    }
                },
            };
            if applies {
                return Outcome::of(rule.actions());
            }
        }
        Outcome::default()
    }
}

#[cfg(test)]
mod tests {
    use ruma::push::{FlattenedJson, PushConditionRoomCtx, Ruleset};
    use ruma::serde::Raw;
    use ruma::{OwnedUserId, owned_room_id, user_id};
    use serde_json::{Value, json};

    use super::*;
    use crate::push::context::{power_levels, room_ctx};

    fn ctx(user: &str, name: Option<&str>, members: usize) -> PushConditionRoomCtx {
        room_ctx(
            owned_room_id!("!r:x"),
            members,
            OwnedUserId::try_from(user).expect("user ID"),
            name.map(str::to_owned),
            power_levels(user_id!("@alice:x"), 50.into(), 50),
        )
    }

    /// Rulesets of members: the defaults of several users, and users who
    /// changed theirs in every way a rule can read the event or the member.
    fn members() -> Vec<(PushConditionRoomCtx, Ruleset)> {
        let mut out = Vec::new();
        for (user, name) in [
            ("@bob:x", Some("Bobby")),
            ("@carol:x", None),
            ("@dave:x", Some("Dave")),
        ] {
            let user_id = OwnedUserId::try_from(user).expect("user ID");
            out.push((ctx(user, name, 4), Ruleset::server_default(&user_id)));
        }
        // The user's own rules, with the defaults merged in (as stored
        // rules are read).
        let custom = |user: &str, name: Option<&str>, rules: Value| {
            let user_id = OwnedUserId::try_from(user).expect("user ID");
            let mut ruleset: Ruleset = serde_json::from_value(rules).expect("ruleset");
            ruleset.update_with_server_default(Ruleset::server_default(&user_id));
            (ctx(user, name, 4), ruleset)
        };
        out.push(custom(
            "@erin:x",
            Some("Erin"),
            json!({
                "override": [
                    {"rule_id": "name", "default": false, "enabled": true,
                     "conditions": [{"kind": "contains_display_name"}],
                     "actions": ["notify", {"set_tweak": "highlight"}]},
                    {"rule_id": "big", "default": false, "enabled": true,
                     "conditions": [{"kind": "room_member_count", "is": ">3"},
                                    {"kind": "event_match", "key": "content.msgtype", "pattern": "m.emote"}],
                     "actions": ["notify"]},
                ],
                "content": [
                    {"rule_id": "cake", "default": false, "enabled": true, "pattern": "cake",
                     "actions": ["notify", {"set_tweak": "highlight"}]},
                ],
                "room": [
                    {"rule_id": "!other:x", "default": false, "enabled": true, "actions": ["notify"]},
                ],
                "sender": [
                    {"rule_id": "@alice:x", "default": false, "enabled": true,
                     "actions": ["notify", {"set_tweak": "highlight"}]},
                ],
            }),
        ));
        out.push(custom(
            "@frank:x",
            Some("Frank"),
            json!({
                "override": [
                    {"rule_id": "name", "default": false, "enabled": true,
                     "conditions": [{"kind": "contains_display_name"}],
                     "actions": ["notify", {"set_tweak": "highlight"}]},
                    // Erin's rule, disabled here: not the same rule.
                    {"rule_id": "big", "default": false, "enabled": false,
                     "conditions": [{"kind": "room_member_count", "is": ">3"},
                                    {"kind": "event_match", "key": "content.msgtype", "pattern": "m.emote"}],
                     "actions": ["notify"]},
                    {"rule_id": "power", "default": false, "enabled": true,
                     "conditions": [{"kind": "sender_notification_permission", "key": "room"},
                                    {"kind": "event_property_is", "key": "content.urgent", "value": true}],
                     "actions": ["notify", {"set_tweak": "highlight"}]},
                ],
                "underride": [
                    {"rule_id": "any", "default": false, "enabled": true, "conditions": [],
                     "actions": ["notify"]},
                ],
            }),
        ));
        out
    }

    fn events() -> Vec<Value> {
        let message = |content: Value| {
            json!({"type": "m.room.message", "sender": "@alice:x", "room_id": "!r:x",
                   "content": content})
        };
        vec![
            message(json!({"msgtype": "m.text", "body": "hello"})),
            message(json!({"msgtype": "m.notice", "body": "a bot"})),
            message(json!({"msgtype": "m.emote", "body": "waves"})),
            message(json!({"msgtype": "m.text", "body": "hi Erin, have some CAKE"})),
            message(json!({"msgtype": "m.text", "body": "hi Bobby and carol"})),
            message(json!({"msgtype": "m.text", "body": "x",
                           "m.mentions": {"user_ids": ["@dave:x", "@erin:x"]}})),
            message(json!({"msgtype": "m.text", "body": "all", "m.mentions": {"room": true}})),
            message(json!({"msgtype": "m.text", "body": "!", "urgent": true})),
            message(json!({"msgtype": "m.text", "body": "edit",
                           "m.relates_to": {"rel_type": "m.replace", "event_id": "$e"}})),
            json!({"type": "m.reaction", "sender": "@alice:x", "room_id": "!r:x",
                   "content": {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$e", "key": "+"}}}),
            json!({"type": "m.room.member", "sender": "@alice:x", "room_id": "!r:x",
                   "state_key": "@carol:x", "content": {"membership": "invite"}}),
            json!({"type": "m.room.encrypted", "sender": "@alice:x", "room_id": "!r:x",
                   "content": {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "..."}}),
            json!({"type": "m.room.tombstone", "sender": "@alice:x", "room_id": "!r:x",
                   "state_key": "", "content": {"body": "moved", "replacement_room": "!n:x"}}),
            // The sender's own event matches no rule of theirs.
            json!({"type": "m.room.message", "sender": "@bob:x", "room_id": "!r:x",
                   "content": {"msgtype": "m.text", "body": "hello Bobby"}}),
        ]
    }

    /// Differential: every member's outcome, evaluated one after another
    /// with matches shared, is what ruma's own walk of their ruleset gives.
    #[tokio::test]
    async fn shared_evaluation_agrees_with_ruma() {
        let members = members();
        let prepared: Vec<PreparedRuleset> = members
            .iter()
            .map(|(_, rules)| PreparedRuleset::new(rules.clone()))
            .collect();
        for event in events() {
            let raw: Raw<Value> = Raw::new(&event).expect("raw");
            let flat = FlattenedJson::from_raw(&raw);
            let mut shared = SharedMatches::default();
            for ((ctx, rules), prepared) in members.iter().zip(&prepared) {
                let ours = shared.evaluate(prepared, &flat, ctx).await;
                let theirs = Outcome::of(rules.get_actions(&raw, ctx).await);
                assert_eq!(ours, theirs, "{} for {event}", ctx.user_id);
            }
        }
    }

    /// The default rules not naming the member are evaluated once for all
    /// members with the defaults: three members cost less than twice one.
    #[tokio::test]
    async fn default_rules_are_shared_between_members() {
        let users = ["@bob:x", "@carol:x", "@dave:x"];
        let prepared: Vec<PreparedRuleset> = users
            .iter()
            .map(|u| {
                PreparedRuleset::new(Ruleset::server_default(
                    &OwnedUserId::try_from(*u).expect("user ID"),
                ))
            })
            .collect();
        let event = json!({"type": "m.room.message", "sender": "@alice:x", "room_id": "!r:x",
                           "content": {"msgtype": "m.text", "body": "hello"}});
        let raw: Raw<Value> = Raw::new(&event).expect("raw");
        let flat = FlattenedJson::from_raw(&raw);
        let mut shared = SharedMatches::default();
        let mut evaluated = Vec::new();
        for (user, prepared) in users.iter().zip(&prepared) {
            let outcome = shared.evaluate(prepared, &flat, &ctx(user, None, 4)).await;
            assert!(outcome.notify);
            evaluated.push(shared.known.len());
        }
        assert!(
            evaluated[2] < 2 * evaluated[0],
            "rules evaluated after each member: {evaluated:?}"
        );
    }
}
