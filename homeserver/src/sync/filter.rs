//! The sync filter: given by ID (stored with `POST /user/{userId}/filter`)
//! or inline as JSON, and what it selects.
//!
//! Event filters match on type (a trailing `*` matches any suffix, as in
//! Synapse) and sender. The timeline filter's conditions are also turned
//! into SQL, so that "the last N events per room" counts only events the
//! filter keeps.

use ruma::api::client::filter::{FilterDefinition, RoomEventFilter};
use ruma::api::client::sync::sync_events::v3 as sync_events;
use ruma::{RoomId, UInt};
use sea_orm::Value;

use crate::api::error::ApiError;
use crate::storage::{Db, filters};

/// Timeline events per room when the filter sets no limit (Synapse's).
pub const DEFAULT_TIMELINE_LIMIT: u64 = 10;
/// The most timeline events per room a filter may ask for (Synapse's
/// `filter_timeline_limit` default).
pub const MAX_TIMELINE_LIMIT: u64 = 100;

/// The filter of a sync request, resolved. Errors follow Synapse: an
/// inline filter that is not JSON is `M_NOT_JSON`, one of the wrong shape
/// `M_BAD_JSON`, an unknown filter ID `400 M_INVALID_PARAM`.
pub async fn resolve(
    db: &Db,
    user_id: &str,
    filter: Option<sync_events::Filter>,
) -> Result<FilterDefinition, ApiError> {
    match filter {
        None => Ok(FilterDefinition::default()),
        Some(sync_events::Filter::FilterDefinition(def)) => Ok(def),
        // ruma falls back to an ID when the inline JSON did not parse as a
        // filter; IDs are decimal numbers, so a `{` means bad inline JSON.
        Some(sync_events::Filter::FilterId(id)) if id.trim_start().starts_with('{') => {
            if serde_json::from_str::<serde::de::IgnoredAny>(&id).is_err() {
                Err(ApiError::not_json("the filter is not valid JSON"))
            } else {
                Err(ApiError::bad_json("the filter is not a valid filter"))
            }
        }
        Some(sync_events::Filter::FilterId(id)) => {
            let unknown = || ApiError::invalid_param(format!("no such filter: {id:?}"));
            let nid: i64 = id.parse().map_err(|_| unknown())?;
            let definition = filters::get(db, user_id, nid).await?.ok_or_else(unknown)?;
            serde_json::from_str(&definition)
                .map_err(|e| ApiError::internal("corrupt stored filter", e))
        }
        Some(_) => Err(ApiError::invalid_param("unsupported filter")),
    }
}

/// The timeline limit a filter asks for, capped.
pub fn timeline_limit(filter: &FilterDefinition) -> u64 {
    filter
        .room
        .timeline
        .limit
        .map_or(DEFAULT_TIMELINE_LIMIT, u64::from)
        .min(MAX_TIMELINE_LIMIT)
}

fn room_listed(
    rooms: Option<&Vec<ruma::OwnedRoomId>>,
    not_rooms: &[ruma::OwnedRoomId],
    room: &RoomId,
) -> bool {
    !not_rooms.iter().any(|r| r == room) && rooms.is_none_or(|l| l.iter().any(|r| r == room))
}

/// Whether the filter's `room.rooms` / `room.not_rooms` let a room in.
pub fn room_allowed(filter: &FilterDefinition, room: &RoomId) -> bool {
    room_listed(filter.room.rooms.as_ref(), &filter.room.not_rooms, room)
}

/// Whether one of the room filter's event filters lets this room in.
pub fn event_filter_allows_room(filter: &RoomEventFilter, room: &RoomId) -> bool {
    room_listed(filter.rooms.as_ref(), &filter.not_rooms, room)
}

fn type_matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => event_type.starts_with(prefix),
        None => pattern == event_type,
    }
}

/// Type and sender conditions, shared by room event filters and the
/// global account data / presence filters.
pub fn matches(
    types: Option<&[String]>,
    not_types: &[String],
    senders: Option<&[ruma::OwnedUserId]>,
    not_senders: &[ruma::OwnedUserId],
    event_type: &str,
    sender: Option<&str>,
) -> bool {
    if not_types.iter().any(|p| type_matches(p, event_type)) {
        return false;
    }
    if types.is_some_and(|t| !t.iter().any(|p| type_matches(p, event_type))) {
        return false;
    }
    if let Some(sender) = sender {
        if not_senders.iter().any(|s| s.as_str() == sender) {
            return false;
        }
        if senders.is_some_and(|l| !l.iter().any(|s| s.as_str() == sender)) {
            return false;
        }
    }
    true
}

/// Whether a room event filter keeps an event of this type and sender.
pub fn event_matches(filter: &RoomEventFilter, event_type: &str, sender: Option<&str>) -> bool {
    matches(
        filter.types.as_deref(),
        &filter.not_types,
        filter.senders.as_deref(),
        &filter.not_senders,
        event_type,
        sender,
    )
}

/// Whether the global account data filter keeps a type.
pub fn global_account_data_matches(filter: &FilterDefinition, event_type: &str) -> bool {
    let f = &filter.account_data;
    matches(
        f.types.as_deref(),
        &f.not_types,
        None,
        &[],
        event_type,
        None,
    ) && f.limit.is_none_or(|l| l > UInt::MIN)
}

/// Escapes a `LIKE` pattern's wildcards (the escape character is `\`).
fn like_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

fn type_condition(patterns: &[String], values: &mut Vec<Value>, first: usize) -> String {
    let mut parts = Vec::with_capacity(patterns.len());
    for p in patterns {
        let n = first + values.len();
        match p.strip_suffix('*') {
            Some(prefix) => {
                parts.push(format!("event_type LIKE ${n} ESCAPE '\\'"));
                values.push(like_prefix(prefix).into());
            }
            None => {
                parts.push(format!("event_type = ${n}"));
                values.push(p.as_str().into());
            }
        }
    }
    if parts.is_empty() {
        "1 = 0".to_owned()
    } else {
        format!("({})", parts.join(" OR "))
    }
}

fn sender_condition(
    senders: &[ruma::OwnedUserId],
    values: &mut Vec<Value>,
    first: usize,
) -> String {
    if senders.is_empty() {
        return "1 = 0".to_owned();
    }
    let start = first + values.len();
    values.extend(senders.iter().map(|s| s.as_str().into()));
    format!(
        "sender IN ({})",
        crate::storage::in_list(start, senders.len())
    )
}

/// The filter's type and sender conditions as SQL over the `events`
/// columns `event_type` and `sender`, with placeholders numbered from
/// `first`; `None` when the filter keeps everything.
pub fn timeline_sql(filter: &RoomEventFilter, first: usize) -> Option<(String, Vec<Value>)> {
    let mut values = Vec::new();
    let mut conds = Vec::new();
    if let Some(types) = &filter.types {
        conds.push(type_condition(types, &mut values, first));
    }
    if !filter.not_types.is_empty() {
        let c = type_condition(&filter.not_types, &mut values, first);
        conds.push(format!("NOT {c}"));
    }
    if let Some(senders) = &filter.senders {
        conds.push(sender_condition(senders, &mut values, first));
    }
    if !filter.not_senders.is_empty() {
        let c = sender_condition(&filter.not_senders, &mut values, first);
        conds.push(format!("NOT ({c})"));
    }
    (!conds.is_empty()).then(|| (conds.join(" AND "), values))
}

#[cfg(test)]
mod tests {
    use ruma::{owned_user_id, room_id};

    use super::*;

    #[test]
    fn types_and_senders() {
        let mut f = RoomEventFilter::default();
        f.types = Some(vec!["m.room.*".to_owned(), "x.y".to_owned()]);
        f.not_senders = vec![owned_user_id!("@spam:x")];
        assert!(event_matches(&f, "m.room.message", Some("@a:x")));
        assert!(event_matches(&f, "x.y", Some("@a:x")));
        assert!(!event_matches(&f, "x.yz", Some("@a:x")));
        assert!(!event_matches(&f, "m.room.message", Some("@spam:x")));
        f.not_types = vec!["m.room.member".to_owned()];
        assert!(!event_matches(&f, "m.room.member", Some("@a:x")));
    }

    #[test]
    fn sql_conditions_number_their_placeholders() {
        let mut f = RoomEventFilter::default();
        assert!(timeline_sql(&f, 4).is_none());
        f.types = Some(vec!["m.room.*".to_owned(), "a_b".to_owned()]);
        f.not_senders = vec![owned_user_id!("@spam:x")];
        let (sql, values) = timeline_sql(&f, 4).expect("conditions");
        assert_eq!(
            sql,
            "(event_type LIKE $4 ESCAPE '\\' OR event_type = $5) AND NOT (sender IN ($6))"
        );
        assert_eq!(values.len(), 3);
        assert_eq!(like_prefix("a_b%"), "a\\_b\\%%");
        f.types = Some(vec![]);
        let (sql, _) = timeline_sql(&f, 1).expect("conditions");
        assert!(sql.starts_with("1 = 0"), "{sql}");
    }

    #[test]
    fn rooms_and_limits() {
        let mut f = FilterDefinition::default();
        assert_eq!(timeline_limit(&f), DEFAULT_TIMELINE_LIMIT);
        f.room.timeline.limit = Some(UInt::from(5000u32));
        assert_eq!(timeline_limit(&f), MAX_TIMELINE_LIMIT);
        f.room.not_rooms = vec![room_id!("!no:x").to_owned()];
        assert!(!room_allowed(&f, room_id!("!no:x")));
        assert!(room_allowed(&f, room_id!("!yes:x")));
        f.room.rooms = Some(vec![room_id!("!only:x").to_owned()]);
        assert!(!room_allowed(&f, room_id!("!yes:x")));
        assert!(room_allowed(&f, room_id!("!only:x")));
    }
}
