//! Push rule evaluation for new room events: which local members an event
//! notifies or highlights, stored as push actions in the event's own
//! transaction (see [`crate::storage::push_actions`]), from which sync's
//! unread counts are counted.
//!
//! As in Synapse, every local joined member other than the sender is
//! evaluated against the room state before the event (so a joining user
//! is not evaluated for their own join). Invitees are not evaluated:
//! without push gateways, their only use would be counts in rooms they
//! are not in. Nor are members who ignore the sender (`m.ignored_user_list`),
//! except for state events, which they still see (Synapse skips them the
//! same way, so an ignored user's messages never count as unread).
//!
//! Sending is a hot path, so the work per event is three indexed queries
//! (members with their member events, the push rules and ignore list
//! versions of each, the create and power levels events) and one walk of
//! each member's ruleset over an event flattened once, in which the rules
//! all members share are evaluated once ([`shared`]). Parsed rulesets and
//! ignore lists are cached by user and by the account data
//! `stream_position` of their `m.push_rules` or `m.ignored_user_list`
//! (every change moves it), validated by the one query for all members; a
//! user without stored rules gets the server defaults.

pub mod context;
mod shared;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use myelin_proto::Pdu;
use myelin_proto::auth::PowerLevels;
use ruma::push::{FlattenedJson, Ruleset};
use ruma::serde::Raw;
use ruma::{OwnedRoomId, OwnedUserId, ServerName};
use sea_orm::DbErr;

use crate::api::error::ApiError;
use crate::rooms::pipeline::stored_pdu;
use crate::storage::push_actions::{self, PushAction};
use crate::storage::{self, Db, push_rules};
use shared::{PreparedRuleset, SharedMatches};

/// Most users whose parsed rulesets (or ignore lists) are cached.
const MAX_CACHED_RULESETS: usize = 50_000;

/// Parsed account data per user, each with the `stream_position` of the
/// account data it was parsed from: an entry serves only while that
/// version is current. Past [`MAX_CACHED_RULESETS`] users it starts over
/// (an entry is rebuilt from one row, so a miss is cheap).
struct ByVersion<V, T> {
    entries: Mutex<HashMap<OwnedUserId, (V, Arc<T>)>>,
}

impl<V: PartialEq, T> Default for ByVersion<V, T> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<V: PartialEq, T> ByVersion<V, T> {
    fn get(&self, user: &OwnedUserId, version: &V) -> Option<Arc<T>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(user)
            .filter(|(v, _)| v == version)
            .map(|(_, value)| value.clone())
    }

    fn put(&self, user: &OwnedUserId, version: V, value: Arc<T>) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_CACHED_RULESETS {
            entries.clear();
        }
        entries.insert(user.clone(), (version, value));
    }

    fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// What push evaluation reads about a room, for events that do not change
/// it (see [`PushEvaluator::room_inputs`]).
pub struct RoomInputs {
    member_count: usize,
    /// The joined members of this server, with their display names.
    local: Vec<(OwnedUserId, Option<String>)>,
    versions: push_actions::MemberVersions,
    /// The create and power-level events; not read for a room without
    /// local members.
    power: Option<(Option<Pdu>, Option<Pdu>)>,
}

/// The push rules cache and the evaluation of new events.
#[derive(Default)]
pub struct PushEvaluator {
    /// By the version of `m.push_rules` (`None`: the user has none stored,
    /// the defaults apply).
    rulesets: ByVersion<Option<i64>, PreparedRuleset>,
    /// By the version of `m.ignored_user_list`.
    ignore_lists: ByVersion<i64, HashSet<String>>,
}

impl PushEvaluator {
    pub fn new() -> Self {
        Self::default()
    }

    /// What evaluating events of `pdu`'s room reads about the room: its
    /// members, the versions of their rules and ignore lists, and its
    /// power levels. The same for every event that does not change them,
    /// so a batch of messages reads it once.
    pub async fn room_inputs(
        &self,
        db: &Db,
        server_name: &ServerName,
        pdu: &Pdu,
    ) -> Result<RoomInputs, ApiError> {
        let room_id = pdu.room_id();
        let members = push_actions::joined_members(db, room_id.as_str()).await?;
        let member_count = members.len();
        let local: Vec<(OwnedUserId, Option<String>)> = members
            .into_iter()
            .filter_map(|(user_id, member_json)| {
                let user_id = OwnedUserId::try_from(user_id).ok()?;
                (user_id.server_name() == server_name)
                    .then(|| (user_id, context::display_name(&member_json)))
            })
            .collect();
        let mut room = RoomInputs {
            member_count,
            local,
            versions: push_actions::MemberVersions::default(),
            power: None,
        };
        if room.local.is_empty() {
            return Ok(room);
        }
        let ids: Vec<&str> = room.local.iter().map(|(u, _)| u.as_str()).collect();
        room.versions = push_actions::member_versions(db, &ids).await?;
        let version = pdu.room_version();
        let keys = [
            ("m.room.create".to_owned(), String::new()),
            ("m.room.power_levels".to_owned(), String::new()),
        ];
        let (mut create, mut levels) = (None, None);
        for (event_type, _, state_json) in
            storage::state::current_events_for(db, room_id.as_str(), &keys).await?
        {
            let parsed = stored_pdu(version, &state_json)?;
            if event_type == "m.room.create" {
                create = Some(parsed);
            } else {
                levels = Some(parsed);
            }
        }
        room.power = Some((create, levels));
        Ok(room)
    }

    /// The push actions of `pdu` (whose canonical JSON is `json`) for each
    /// local joined member but its sender that it notifies or highlights,
    /// given what [`Self::room_inputs`] read about its room. Reads only:
    /// call it before the event's write transaction.
    pub async fn actions_for(
        &self,
        db: &Db,
        room: &RoomInputs,
        pdu: &Pdu,
        json: &str,
    ) -> Result<Vec<PushAction>, ApiError> {
        let mut recipients: Vec<&(OwnedUserId, Option<String>)> = room
            .local
            .iter()
            .filter(|(u, _)| u.as_str() != pdu.sender().as_str())
            .collect();
        let Some((create, levels)) = &room.power else {
            return Ok(Vec::new());
        };
        if recipients.is_empty() {
            return Ok(Vec::new());
        }
        let versions = &room.versions;
        if !versions.ignored_users.is_empty() {
            let mut ignoring = HashSet::new();
            for (user, _) in &recipients {
                let Some(&version) = versions.ignored_users.get(user.as_str()) else {
                    continue;
                };
                let ignored = self.ignore_list(db, user, version).await?;
                if crate::ignored_users::hides(&ignored, pdu.sender().as_str(), pdu.state_key()) {
                    ignoring.insert(user.clone());
                }
            }
            recipients.retain(|(u, _)| !ignoring.contains(u));
            if recipients.is_empty() {
                return Ok(Vec::new());
            }
        }
        let users: Vec<&OwnedUserId> = recipients.iter().map(|(u, _)| u).collect();
        let rulesets = self.rulesets(db, &users, &versions.push_rules).await?;

        // The sender's power to notify the room, from the state before the
        // event.
        let power = PowerLevels::new(pdu.room_version().rules(), create.as_ref(), levels.as_ref());
        let power_ctx = context::power_levels(
            pdu.sender(),
            power.user_level(pdu.sender()),
            power.notification_level("room"),
        );

        let raw: Raw<serde_json::Value> = Raw::from_json_string(json.to_owned())
            .map_err(|e| ApiError::internal("event JSON unreadable", e))?;
        let event = FlattenedJson::from_raw(&raw);
        let room_id: OwnedRoomId = pdu.room_id().to_owned();
        let mut shared = SharedMatches::default();
        let mut actions = Vec::new();
        for ((user_id, display_name), ruleset) in recipients.into_iter().zip(&rulesets) {
            let ctx = context::room_ctx(
                room_id.clone(),
                room.member_count,
                user_id.clone(),
                display_name.clone(),
                power_ctx.clone(),
            );
            let outcome = shared.evaluate(ruleset, &event, &ctx).await;
            if outcome.counts() {
                actions.push(PushAction {
                    user_id: user_id.to_string(),
                    notify: outcome.notify,
                    highlight: outcome.highlight,
                });
            }
        }
        Ok(actions)
    }

    /// The rulesets of `users`, in order: cached ones whose version is
    /// current, the others parsed (and cached) again.
    async fn rulesets(
        &self,
        db: &Db,
        users: &[&OwnedUserId],
        versions: &HashMap<String, i64>,
    ) -> Result<Vec<Arc<PreparedRuleset>>, DbErr> {
        let mut out = Vec::with_capacity(users.len());
        for user in users {
            let version = versions.get(user.as_str()).copied();
            let rules = match self.rulesets.get(user, &version) {
                Some(rules) => rules,
                None => {
                    let rules = Arc::new(PreparedRuleset::new(match version {
                        // Merges in the server defaults, like every reader.
                        // Unreadable rules must not stop the room's events:
                        // that user gets the defaults until they fix them.
                        Some(_) => push_rules::get(db, user).await.unwrap_or_else(|e| {
                            tracing::warn!(user = %user, error = %e, "push rules unreadable");
                            Ruleset::server_default(user)
                        }),
                        None => Ruleset::server_default(user),
                    }));
                    self.rulesets.put(user, version, rules.clone());
                    rules
                }
            };
            out.push(rules);
        }
        Ok(out)
    }

    /// The users `user` ignores, as of `version` (the `stream_position` of
    /// their `m.ignored_user_list`): cached, or read and cached again.
    async fn ignore_list(
        &self,
        db: &Db,
        user: &OwnedUserId,
        version: i64,
    ) -> Result<Arc<HashSet<String>>, DbErr> {
        if let Some(list) = self.ignore_lists.get(user, &version) {
            return Ok(list);
        }
        let list = Arc::new(crate::ignored_users::of(db, user.as_str()).await?);
        self.ignore_lists.put(user, version, list.clone());
        Ok(list)
    }

    /// Users whose rulesets are cached (for tests).
    pub fn cached_rulesets(&self) -> usize {
        self.rulesets.len()
    }
}

#[cfg(test)]
mod tests {
    use ruma::push::{PredefinedUnderrideRuleId, RuleKind};
    use ruma::user_id;

    use super::*;
    use crate::storage::Sql as _;

    /// Rulesets are parsed once per version of the user's `m.push_rules`:
    /// reused while it is unchanged, parsed again after any change.
    #[tokio::test]
    async fn rulesets_are_cached_by_push_rules_version() {
        let db = storage::test_db().await;
        let alice = user_id!("@alice:x").to_owned();
        let bob = user_id!("@bob:x").to_owned();
        for user in [&alice, &bob] {
            db.execute(
                "INSERT INTO users (user_id, created_ts) VALUES ($1, 0)",
                [user.as_str().into()],
            )
            .await
            .expect("user");
        }
        // Bob has stored rules, Alice has none (the defaults apply).
        push_rules::get(&db, &bob).await.expect("rules");
        let evaluator = PushEvaluator::new();
        let versions = || async {
            push_actions::member_versions(&db, &[alice.as_str(), bob.as_str()])
                .await
                .expect("versions")
                .push_rules
        };
        let first = evaluator
            .rulesets(&db, &[&alice, &bob], &versions().await)
            .await
            .expect("rules");
        let again = evaluator
            .rulesets(&db, &[&alice, &bob], &versions().await)
            .await
            .expect("rules");
        assert_eq!(evaluator.cached_rulesets(), 2);
        assert!(Arc::ptr_eq(&first[0], &again[0]));
        assert!(Arc::ptr_eq(&first[1], &again[1]));

        push_rules::update(&db, &bob, |rules| {
            rules
                .set_enabled(
                    RuleKind::Underride,
                    PredefinedUnderrideRuleId::Message.as_str(),
                    false,
                )
                .map_err(|e| DbErr::Custom(e.to_string()))
        })
        .await
        .expect("update");
        let changed = evaluator
            .rulesets(&db, &[&alice, &bob], &versions().await)
            .await
            .expect("rules");
        assert!(Arc::ptr_eq(&first[0], &changed[0]));
        assert!(!Arc::ptr_eq(&first[1], &changed[1]));
        let message = changed[1]
            .ruleset()
            .get(
                RuleKind::Underride,
                PredefinedUnderrideRuleId::Message.as_str(),
            )
            .expect("the message rule");
        assert!(!message.enabled());
    }
}
