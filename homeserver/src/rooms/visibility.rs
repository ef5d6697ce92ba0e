//! Who may read which events of a room (client-server API "History
//! visibility"), decided from the room's `m.room.history_visibility` and
//! the reader's membership *at each event* (the state after it, so that a
//! user sees their own join), plus their membership now:
//!
//! - `world_readable`: everyone, members or not.
//! - `shared`: members see all history, also from before they joined; a
//!   user who left keeps seeing it up to their leave, if they had joined.
//! - `invited`: from the reader's invite on.
//! - `joined`: only what was sent while they were joined.
//!
//! Users who left or were banned see nothing after their membership ended
//! (the caller bounds reads by [`Access::Departed::until`]). A user's own
//! membership events are always visible to them. A missing history
//! visibility reads as `shared` (the spec's default); an unknown value as
//! `joined`, the most restrictive.

use std::collections::HashMap;

use myelin_proto::canonical_json;

use crate::api::error::ApiError;
use crate::storage::events::EventRow;
use crate::storage::{Db, events, memberships, state};

/// How a user may read a room now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Joined: everything their membership at each event allows.
    Joined,
    /// Left or banned: events up to stream position `until`.
    Departed { until: i64, was_joined: bool },
    /// Not a member of a `world_readable` room.
    Guest,
}

impl Access {
    /// The highest stream position the user may read, if bounded.
    pub fn until(&self) -> Option<i64> {
        match self {
            Access::Departed { until, .. } => Some(*until),
            _ => None,
        }
    }
}

fn content_field(row: &EventRow, field: &str) -> Option<String> {
    let obj = canonical_json::parse_object(row.json.as_bytes()).ok()?;
    obj.get("content")?
        .as_object()?
        .get(field)?
        .as_str()
        .map(str::to_owned)
}

/// The room's current history visibility.
pub async fn current_history_visibility(db: &Db, room_id: &str) -> Result<String, ApiError> {
    let Some(id) = state::current_event_id(db, room_id, "m.room.history_visibility", "").await?
    else {
        return Ok("shared".to_owned());
    };
    Ok(events::get(db, &id)
        .await?
        .and_then(|r| content_field(&r, "history_visibility"))
        .unwrap_or_else(|| "joined".to_owned()))
}

/// How `user_id` may read `room_id`, or 403 when not at all. Unknown rooms
/// get the same 403 as rooms the user is not in, so room IDs cannot be
/// probed.
pub async fn room_access(db: &Db, room_id: &str, user_id: &str) -> Result<Access, ApiError> {
    let forbidden = || ApiError::forbidden("You are not a member of this room");
    let membership = memberships::get(db, room_id, user_id).await?;
    match membership {
        Some(m) if m.membership == "join" => return Ok(Access::Joined),
        Some(m) if matches!(m.membership.as_str(), "leave" | "ban") && !m.forgotten => {
            let was_joined = match events::get(db, &m.event_id).await? {
                Some(ev) => match ev.replaces_state {
                    Some(prev) => events::get(db, &prev)
                        .await?
                        .and_then(|p| content_field(&p, "membership"))
                        .is_some_and(|m| m == "join"),
                    None => false,
                },
                None => false,
            };
            return Ok(Access::Departed {
                until: m.stream_ordering,
                was_joined,
            });
        }
        _ => {}
    }
    if crate::storage::rooms::get(db, room_id).await?.is_none() {
        return Err(forbidden());
    }
    if current_history_visibility(db, room_id).await? == "world_readable" {
        Ok(Access::Guest)
    } else {
        Err(forbidden())
    }
}

/// The visibility rule for one event.
pub fn visible(
    history_visibility: &str,
    membership_at_event: Option<&str>,
    access: &Access,
    own_membership_event: bool,
) -> bool {
    if own_membership_event || history_visibility == "world_readable" {
        return true;
    }
    if membership_at_event == Some("join") {
        return true;
    }
    match history_visibility {
        "shared" => match access {
            Access::Joined => true,
            Access::Departed { was_joined, .. } => *was_joined,
            Access::Guest => false,
        },
        "invited" => membership_at_event == Some("invite"),
        _ => false,
    }
}

/// The events of `rows` (all of one room) that `user_id` may see.
pub async fn filter_events(
    db: &Db,
    user_id: &str,
    access: &Access,
    rows: Vec<EventRow>,
) -> Result<Vec<EventRow>, ApiError> {
    let hv_key = state::key_nid(db, "m.room.history_visibility", "").await?;
    let member_key = state::key_nid(db, "m.room.member", user_id).await?;
    let keys: Vec<i64> = [hv_key, member_key].into_iter().flatten().collect();
    // Many events share a snapshot: look each up once.
    let mut at_snapshot: HashMap<i64, (String, Option<String>)> = HashMap::new();
    let mut content_cache: HashMap<String, Option<String>> = HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        if access
            .until()
            .is_some_and(|u| row.stream_ordering.is_none_or(|s| s > u))
        {
            continue;
        }
        let own = row.event_type == "m.room.member" && row.state_key.as_deref() == Some(user_id);
        let Some(snapshot) = row.state_after else {
            continue;
        };
        let cached = at_snapshot.get(&snapshot).cloned();
        let (hv, membership) = if let Some(found) = cached {
            found
        } else {
            let entries = state::load_snapshot(db, snapshot, Some(&keys)).await?;
            let mut hv = "shared".to_owned();
            let mut membership = None;
            for e in entries {
                let field = if e.event_type == "m.room.history_visibility" {
                    "history_visibility"
                } else {
                    "membership"
                };
                let value = match content_cache.get(&e.event_id) {
                    Some(v) => v.clone(),
                    None => {
                        let v = events::get(db, &e.event_id)
                            .await?
                            .and_then(|r| content_field(&r, field));
                        content_cache.insert(e.event_id.clone(), v.clone());
                        v
                    }
                };
                if field == "history_visibility" {
                    hv = value.unwrap_or_else(|| "joined".to_owned());
                } else {
                    membership = value;
                }
            }
            at_snapshot.insert(snapshot, (hv.clone(), membership.clone()));
            (hv, membership)
        };
        if visible(&hv, membership.as_deref(), access, own) {
            out.push(row);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_visibility_rules() {
        let joined = Access::Joined;
        let left = Access::Departed {
            until: 10,
            was_joined: true,
        };
        let guest = Access::Guest;
        assert!(visible("world_readable", None, &guest, false));
        assert!(!visible("shared", None, &guest, false));
        assert!(
            visible("shared", None, &joined, false),
            "shared: history before the join"
        );
        assert!(visible("shared", None, &left, false));
        assert!(!visible("joined", None, &joined, false));
        assert!(visible("joined", Some("join"), &joined, false));
        assert!(visible("invited", Some("invite"), &joined, false));
        assert!(!visible("invited", None, &joined, false));
        assert!(
            visible("joined", Some("leave"), &left, true),
            "own leave event"
        );
        assert!(!visible("unknown", Some("invite"), &joined, false));
    }
}
