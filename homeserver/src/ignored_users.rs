//! Ignored users (`m.ignored_user_list` in a user's global account data).
//!
//! The spec's server rules: events from an ignored user are no longer sent to
//! the user who ignores them, except state events (so the room name and the
//! like look the same to everyone), and invites from them are not sent. The
//! list is read when a response is built, so a change applies to the next
//! `/sync` or `/messages` at once; events missed while a user was ignored are
//! not sent later (the client does a fresh sync for them, as the spec says).
//!
//! As in Synapse, ignoring changes what is *sent*: nothing is rejected on the
//! ignored user's side, and invites are dropped from sync rather than refused.

use std::collections::HashSet;

use sea_orm::{DbErr, Value};

use crate::storage::{Db, account_data};

/// The account data type holding the list.
pub const EVENT_TYPE: &str = "m.ignored_user_list";

/// The users `user_id` ignores (empty when none, or when the content is not
/// the spec's shape: clients write it, the server only reads it).
pub async fn of(db: &Db, user_id: &str) -> Result<HashSet<String>, DbErr> {
    let content = account_data::get(db, user_id, None, EVENT_TYPE).await?;
    Ok(content.as_deref().map(parse).unwrap_or_default())
}

fn parse(content: &str) -> HashSet<String> {
    serde_json::from_str::<serde_json::Value>(content)
        .ok()
        .and_then(|v| {
            v.get("ignored_users")?
                .as_object()
                .map(|m| m.keys().cloned().collect())
        })
        .unwrap_or_default()
}

/// Whether an event of `sender` (a state event when `state_key` is set) is
/// withheld from someone ignoring `ignored`.
pub fn hides(ignored: &HashSet<String>, sender: &str, state_key: Option<&str>) -> bool {
    state_key.is_none() && ignored.contains(sender)
}

/// Adds "not a non-state event of an ignored user" to a timeline condition
/// over the `events` columns (placeholders numbered from `first`, as
/// [`crate::sync::filter::timeline_sql`] numbers them).
pub fn exclude_from_timeline(
    cond: Option<(String, Vec<Value>)>,
    ignored: &HashSet<String>,
    first: usize,
) -> Option<(String, Vec<Value>)> {
    if ignored.is_empty() {
        return cond;
    }
    let (mut sql, mut values) = cond.unwrap_or_else(|| ("1 = 1".to_owned(), Vec::new()));
    let start = first + values.len();
    let mut users: Vec<&String> = ignored.iter().collect();
    users.sort();
    values.extend(users.iter().map(|u| Value::from(u.as_str())));
    sql = format!(
        "({sql}) AND NOT (state_key IS NULL AND sender IN ({}))",
        crate::storage::in_list(start, users.len())
    );
    Some((sql, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_spec_shape_and_ignores_anything_else() {
        let list = parse(r#"{"ignored_users": {"@a:x": {}, "@b:y": {"extra": 1}}}"#);
        assert_eq!(list, HashSet::from(["@a:x".to_owned(), "@b:y".to_owned()]));
        assert!(parse(r#"{"ignored_users": ["@a:x"]}"#).is_empty());
        assert!(parse("not json").is_empty());
        assert!(parse("{}").is_empty());
    }

    #[test]
    fn state_events_of_ignored_users_are_still_sent() {
        let ignored = HashSet::from(["@a:x".to_owned()]);
        assert!(hides(&ignored, "@a:x", None));
        assert!(!hides(&ignored, "@a:x", Some("")));
        assert!(!hides(&ignored, "@b:x", None));
    }

    #[test]
    fn the_condition_extends_the_filter_with_numbered_placeholders() {
        let ignored = HashSet::from(["@b:x".to_owned(), "@a:x".to_owned()]);
        assert!(exclude_from_timeline(None, &HashSet::new(), 4).is_none());
        let (sql, values) = exclude_from_timeline(
            Some(("event_type = $4".to_owned(), vec!["m.room.message".into()])),
            &ignored,
            4,
        )
        .expect("a condition");
        assert_eq!(
            sql,
            "(event_type = $4) AND NOT (state_key IS NULL AND sender IN ($5, $6))"
        );
        assert_eq!(
            values,
            vec![
                Value::from("m.room.message"),
                Value::from("@a:x"),
                Value::from("@b:x")
            ]
        );
    }
}
