//! `m.room.server_acl`: which servers may take part in a room. Every inbound
//! federation path that names a room (transactions' PDUs and EDUs, joins,
//! leaves, knocks, invites, backfill, state and event fetches) asks
//! [`check`] before doing anything for the origin, as the spec requires.
//!
//! The content is read leniently, as Synapse does: a missing or malformed
//! `allow` allows nobody, a missing or malformed `deny` denies nobody, a
//! non-boolean `allow_ip_literals` counts as its default (true), and entries
//! that are not strings are ignored. Matching (globs on the host, ports
//! ignored, case-insensitive) is ruma's.

use ruma::ServerName;
use ruma::events::room::server_acl::RoomServerAclEventContent;
use serde_json::Value;

use crate::api::error::ApiError;
use crate::state::AppState;
use crate::storage::state;

/// The ACL of one room, from its `m.room.server_acl` content.
pub fn from_content(content: &Value) -> RoomServerAclEventContent {
    let strings = |key: &str| -> Vec<String> {
        content
            .get(key)
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let allow_ip_literals = content
        .get("allow_ip_literals")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    RoomServerAclEventContent::new(allow_ip_literals, strings("allow"), strings("deny"))
}

/// Whether the room's current ACL lets `origin` in; a room without an ACL
/// lets everyone in.
pub async fn allows(
    state: &AppState,
    room_id: &str,
    origin: &ServerName,
) -> Result<bool, ApiError> {
    let acl = state::current_events_for(
        state.db(),
        room_id,
        &[("m.room.server_acl".to_owned(), String::new())],
    )
    .await?;
    let Some((_, _, json)) = acl.first() else {
        return Ok(true);
    };
    let event: Value = serde_json::from_str(json)
        .map_err(|e| ApiError::internal("corrupt event JSON in storage", e))?;
    let content = event.get("content").cloned().unwrap_or(Value::Null);
    Ok(from_content(&content).is_allowed(origin))
}

/// `403 M_FORBIDDEN` unless the room's ACL lets `origin` in.
pub async fn check(state: &AppState, room_id: &str, origin: &ServerName) -> Result<(), ApiError> {
    if allows(state, room_id, origin).await? {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "Server {origin} is denied by the room's server ACL"
        )))
    }
}

#[cfg(test)]
mod tests {
    use ruma::server_name;
    use serde_json::json;

    use super::from_content;

    #[test]
    fn globs_deny_first_and_ports_are_ignored() {
        let acl = from_content(&json!({
            "allow": ["*.example.org", "good.test"],
            "deny": ["evil.example.org"],
        }));
        assert!(acl.is_allowed(server_name!("a.example.org")));
        assert!(acl.is_allowed(server_name!("good.test:8448")));
        assert!(acl.is_allowed(server_name!("GOOD.test")));
        assert!(!acl.is_allowed(server_name!("evil.example.org")));
        assert!(!acl.is_allowed(server_name!("other.test")));
    }

    #[test]
    fn ip_literals_follow_their_flag() {
        let allowed = from_content(&json!({ "allow": ["*"] }));
        assert!(allowed.is_allowed(server_name!("127.0.0.1:8448")));
        assert!(allowed.is_allowed(server_name!("[::1]")));
        let denied = from_content(&json!({ "allow": ["*"], "allow_ip_literals": false }));
        assert!(!denied.is_allowed(server_name!("127.0.0.1")));
        assert!(denied.is_allowed(server_name!("name.test")));
    }

    #[test]
    fn malformed_content_is_read_like_synapse() {
        // No usable allow list: nobody is allowed.
        let no_allow = from_content(&json!({ "allow": "*", "deny": [] }));
        assert!(!no_allow.is_allowed(server_name!("any.test")));
        // A malformed deny list and flag: ignored, defaults apply.
        let lenient = from_content(&json!({
            "allow": ["*", 7, null],
            "deny": {"x": 1},
            "allow_ip_literals": "no",
        }));
        assert!(lenient.is_allowed(server_name!("any.test")));
        assert!(lenient.is_allowed(server_name!("10.0.0.1")));
    }
}
