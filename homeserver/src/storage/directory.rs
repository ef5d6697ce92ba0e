//! Reads for the room directory and the user directory. Owns no table: it
//! reads `rooms`, `room_memberships`, `current_state`, `events` and
//! `users`, each query bounded (chunked `IN` lists, never one query per
//! room or per user).

use sea_orm::{DbBackend, DbErr};

use super::{Db, IN_CHUNK, Sql as _, in_list};

/// A room published in the directory, with its joined member count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedRoom {
    pub room_id: String,
    pub joined_members: i64,
}

/// Every published room, largest first (joined members, then room ID,
/// like Synapse's directory order).
pub async fn published_rooms(db: &Db) -> Result<Vec<PublishedRoom>, DbErr> {
    db.query_all(
        "SELECT r.room_id, COUNT(m.user_id) AS joined FROM rooms r \
         LEFT JOIN room_memberships m ON m.room_id = r.room_id AND m.membership = 'join' \
         WHERE r.is_public = $1 GROUP BY r.room_id ORDER BY joined DESC, r.room_id",
        [true.into()],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(PublishedRoom {
            room_id: r.try_get("", "room_id")?,
            joined_members: r.try_get("", "joined")?,
        })
    })
    .collect()
}

/// The current state events (empty state key) of `types` in `rooms`:
/// `(room_id, type, event JSON)`, in one query per [`IN_CHUNK`] rooms.
pub async fn current_state_of_rooms(
    db: &Db,
    rooms: &[&str],
    types: &[&str],
) -> Result<Vec<(String, String, String)>, DbErr> {
    let mut out = Vec::new();
    if types.is_empty() {
        return Ok(out);
    }
    for chunk in rooms.chunks(IN_CHUNK) {
        let sql = format!(
            "SELECT c.room_id, c.event_type, e.json FROM current_state c \
             JOIN events e ON e.event_nid = c.event_nid \
             WHERE c.state_key = '' AND c.event_type IN ({}) AND c.room_id IN ({})",
            in_list(1, types.len()),
            in_list(1 + types.len(), chunk.len())
        );
        let values = types.iter().chain(chunk.iter()).map(|s| (*s).into());
        for r in db.query_all(&sql, values).await? {
            out.push((
                r.try_get("", "room_id")?,
                r.try_get("", "event_type")?,
                r.try_get("", "json")?,
            ));
        }
    }
    Ok(out)
}

/// A user found in the user directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserHit {
    pub user_id: String,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

/// Escapes `%`, `_` and `\` for a `LIKE ... ESCAPE '\'` pattern.
fn like_escape(term: &str) -> String {
    let mut out = String::with_capacity(term.len() + 2);
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A top-level string field of an event's content, in SQL.
fn content_field(backend: DbBackend, field: &str) -> String {
    match backend {
        DbBackend::Postgres => format!("((e.json::jsonb) -> 'content' ->> '{field}')"),
        _ => format!("json_extract(e.json, '$.content.{field}')"),
    }
}

/// Local, active users whose user ID or display name contains `term`
/// (case-insensitive), at most `limit`. Unless `all_users`, only users
/// who share a room with `searcher` or are in a public room (join rule
/// `public` or history `world_readable`): Synapse's default visibility.
pub async fn search_users(
    db: &Db,
    searcher: &str,
    term: &str,
    limit: u64,
    all_users: bool,
) -> Result<Vec<UserHit>, DbErr> {
    let visible = if all_users {
        String::new()
    } else {
        let join_rule = content_field(db.backend(), "join_rule");
        let history = content_field(db.backend(), "history_visibility");
        format!(
            " AND EXISTS (SELECT 1 FROM room_memberships m \
               WHERE m.user_id = u.user_id AND m.membership = 'join' AND ( \
                 m.room_id IN (SELECT s.room_id FROM room_memberships s \
                   WHERE s.user_id = $3 AND s.membership = 'join') \
                 OR m.room_id IN (SELECT c.room_id FROM current_state c \
                   JOIN events e ON e.event_nid = c.event_nid WHERE c.state_key = '' AND ( \
                     (c.event_type = 'm.room.join_rules' AND {join_rule} = 'public') \
                     OR (c.event_type = 'm.room.history_visibility' \
                         AND {history} = 'world_readable')))))"
        )
    };
    let sql = format!(
        "SELECT u.user_id, u.displayname, u.avatar_url FROM users u \
         WHERE u.deactivated = $1 \
         AND (LOWER(u.user_id) LIKE $2 ESCAPE '\\' \
              OR LOWER(COALESCE(u.displayname, '')) LIKE $2 ESCAPE '\\'){visible} \
         ORDER BY CASE WHEN u.displayname IS NULL THEN 1 ELSE 0 END, \
         LOWER(COALESCE(u.displayname, u.user_id)), u.user_id {}",
        super::limit(limit)
    );
    let pattern = format!("%{}%", like_escape(&term.to_lowercase()));
    let mut values: Vec<sea_orm::Value> = vec![false.into(), pattern.into()];
    // PostgreSQL refuses a bound value no placeholder uses.
    if !all_users {
        values.push(searcher.into());
    }
    db.query_all(&sql, values)
        .await?
        .iter()
        .map(|r| {
            Ok(UserHit {
                user_id: r.try_get("", "user_id")?,
                displayname: r.try_get("", "displayname")?,
                avatar_url: r.try_get("", "avatar_url")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_match_wildcards_literally() {
        assert_eq!(like_escape("a%b_c\\d"), "a\\%b\\_c\\\\d");
        assert_eq!(like_escape("alice"), "alice");
    }
}
