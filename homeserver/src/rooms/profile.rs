//! What room events copy from a user's profile (member events carry
//! `displayname` and `avatar_url`), and the member events a profile change
//! sends. Reads the accounts tables; never writes them.

use myelin_proto::canonical_json::{self, Object, Value};
use ruma::{RoomId, UserId};
use sea_orm::DbErr;

use super::pipeline::EventSpec;
use crate::api::error::ApiError;
use crate::state::AppState;
use crate::storage::Sql as _;
use crate::storage::{Db, events, memberships, state as state_store};

#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

/// The profile of a local user, or `None` when no such user exists.
pub async fn local_profile(db: &Db, user_id: &str) -> Result<Option<Profile>, DbErr> {
    let row = db
        .query_one(
            "SELECT displayname, avatar_url FROM users WHERE user_id = $1",
            [user_id.into()],
        )
        .await?;
    row.map(|r| {
        Ok(Profile {
            displayname: r.try_get("", "displayname")?,
            avatar_url: r.try_get("", "avatar_url")?,
        })
    })
    .transpose()
}

/// Sends `user`'s new profile into every room they are joined to, as a
/// new join event (what Synapse does, and what clients render member
/// names from). Each room is its own event: a room that refuses it (say,
/// the user is not allowed to send member events there) is logged and
/// skipped, never failing the profile change. Returns how many rooms got
/// an update.
pub async fn propagate(state: &AppState, user: &UserId) -> Result<usize, ApiError> {
    let db = state.db();
    let Some(profile) = local_profile(db, user.as_str()).await? else {
        return Ok(0);
    };
    let mut updated = 0;
    for row in memberships::rooms_of_user(db, user.as_str(), "join").await? {
        let Ok(room_id) = RoomId::parse(&row.room_id) else {
            continue;
        };
        match update_member_event(state, &room_id, user, &profile).await {
            Ok(true) => updated += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(%room_id, user_id = %user, error = ?e,
                    "profile change not sent to a room");
            }
        }
    }
    Ok(updated)
}

/// Sends one room's updated join event, keeping the other fields of the
/// current one; `false` when nothing changes or the user left meanwhile.
async fn update_member_event(
    state: &AppState,
    room_id: &RoomId,
    user: &UserId,
    profile: &Profile,
) -> Result<bool, ApiError> {
    let db = state.db();
    let guard = state.rooms().lock(room_id).await;
    let Some(event_id) =
        state_store::current_event_id(db, room_id.as_str(), "m.room.member", user.as_str()).await?
    else {
        return Ok(false);
    };
    let Some(row) = events::get(db, &event_id).await? else {
        return Ok(false);
    };
    let mut event = canonical_json::parse_object(row.json.as_bytes())
        .map_err(|e| ApiError::internal("stored event unreadable", e))?;
    let Some(Value::Object(current)) = event.remove("content") else {
        return Ok(false);
    };
    if current.get("membership").and_then(Value::as_str) != Some("join") {
        return Ok(false);
    }
    let content = with_profile(&current, profile);
    if content == current {
        return Ok(false);
    }
    let spec = EventSpec::new("m.room.member", Some(user.as_str()), content);
    guard.append(state, user, spec, None).await?;
    Ok(true)
}

/// The member content with the profile's fields set (or removed when
/// unset). A restricted join's authorising server is dropped: it vouched
/// for that join, not for this update, and the auth rules would want its
/// signature.
fn with_profile(current: &Object, profile: &Profile) -> Object {
    let mut content = current.clone();
    content.remove("join_authorised_via_users_server");
    for (key, value) in [
        ("displayname", &profile.displayname),
        ("avatar_url", &profile.avatar_url),
    ] {
        match value {
            Some(v) => {
                content.insert(key.into(), Value::from(v.as_str()));
            }
            None => {
                content.remove(key);
            }
        }
    }
    content
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_update_keeps_other_member_fields() {
        let Ok(Value::Object(current)) = canonical_json::from_json(serde_json::json!({
            "membership": "join",
            "displayname": "old",
            "avatar_url": "mxc://x/old",
            "reason": "hi",
            "join_authorised_via_users_server": "@mod:x",
        })) else {
            panic!("not an object");
        };
        let updated = with_profile(
            &current,
            &Profile {
                displayname: Some("new".into()),
                avatar_url: None,
            },
        );
        assert_eq!(
            updated.get("displayname").and_then(Value::as_str),
            Some("new")
        );
        assert!(!updated.contains_key("avatar_url"));
        assert!(!updated.contains_key("join_authorised_via_users_server"));
        assert_eq!(updated.get("reason").and_then(Value::as_str), Some("hi"));
        assert_eq!(
            updated.get("membership").and_then(Value::as_str),
            Some("join")
        );
    }
}
