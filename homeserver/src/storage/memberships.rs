//! Owner of `room_memberships`: every user's current membership in every
//! room this server knows, with the event that set it and that event's
//! stream position. "Rooms U is joined to" and "members of R" are each one
//! indexed query; sync will read the stream position to know when a
//! membership changed. Written only by the event pipeline, in the same
//! transaction as the member event, so it never disagrees with
//! `current_state`.
//!
//! Each user's memberships, which every sync reads before anything else,
//! are cached ([`Cache`]); every write here drops the user's entry.

use std::sync::Arc;

use sea_orm::DbErr;

use super::{Db, Tx};
use crate::storage::Sql;

#[derive(Debug, Clone)]
pub struct MembershipRow {
    pub room_id: String,
    pub user_id: String,
    pub membership: String,
    pub event_id: String,
    pub stream_ordering: i64,
    pub forgotten: bool,
}

const COLS: &str = "room_id, user_id, membership, event_id, stream_ordering, forgotten";

fn row(r: &sea_orm::QueryResult) -> Result<MembershipRow, DbErr> {
    Ok(MembershipRow {
        room_id: r.try_get("", "room_id")?,
        user_id: r.try_get("", "user_id")?,
        membership: r.try_get("", "membership")?,
        event_id: r.try_get("", "event_id")?,
        stream_ordering: r.try_get("", "stream_ordering")?,
        forgotten: r.try_get("", "forgotten")?,
    })
}

/// Users whose memberships are cached at most.
const CACHED_USERS: usize = 10_000;

/// Every membership of recently syncing users, as [`all_of_user`] reads
/// them.
#[derive(Debug)]
pub(crate) struct Cache(super::cache::Cache<String, Arc<Vec<MembershipRow>>>);

impl Default for Cache {
    fn default() -> Self {
        Self(super::cache::Cache::new(CACHED_USERS))
    }
}

impl Cache {
    pub(crate) fn invalidate(&self, user_id: &str) {
        self.0.invalidate(user_id);
    }
}

pub async fn get(db: &Db, room_id: &str, user_id: &str) -> Result<Option<MembershipRow>, DbErr> {
    db.query_one(
        &format!("SELECT {COLS} FROM room_memberships WHERE room_id = $1 AND user_id = $2"),
        [room_id.into(), user_id.into()],
    )
    .await?
    .as_ref()
    .map(row)
    .transpose()
}

/// Records a member event. A new membership un-forgets the room.
pub async fn set(
    tx: &Tx,
    room_id: &str,
    user_id: &str,
    membership: &str,
    event_id: &str,
    stream_ordering: i64,
) -> Result<(), DbErr> {
    tx.changes_memberships(user_id);
    tx.execute(
        "INSERT INTO room_memberships \
         (room_id, user_id, membership, event_id, stream_ordering, forgotten) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership, \
         event_id = excluded.event_id, stream_ordering = excluded.stream_ordering, \
         forgotten = excluded.forgotten",
        [
            room_id.into(),
            user_id.into(),
            membership.into(),
            event_id.into(),
            stream_ordering.into(),
            false.into(),
        ],
    )
    .await?;
    Ok(())
}

/// Forgets a user's membership: state resolution removed their member
/// event from the room's current state.
pub async fn remove(tx: &Tx, room_id: &str, user_id: &str) -> Result<(), DbErr> {
    tx.changes_memberships(user_id);
    tx.execute(
        "DELETE FROM room_memberships WHERE room_id = $1 AND user_id = $2",
        [room_id.into(), user_id.into()],
    )
    .await?;
    Ok(())
}

/// Rooms where `user_id` has `membership`, oldest membership first.
pub async fn rooms_of_user(
    db: &Db,
    user_id: &str,
    membership: &str,
) -> Result<Vec<MembershipRow>, DbErr> {
    Ok(all_of_user(db, user_id)
        .await?
        .iter()
        .filter(|m| m.membership == membership)
        .cloned()
        .collect())
}

/// The servers of the room's joined members, sorted, each once: where the
/// room's events go. Takes a transaction too, to see the memberships an
/// event being written has just changed.
pub async fn joined_servers(conn: &impl Sql, room_id: &str) -> Result<Vec<String>, DbErr> {
    let rows = conn
        .query_all(
            "SELECT user_id FROM room_memberships WHERE room_id = $1 AND membership = 'join'",
            [room_id.into()],
        )
        .await?;
    let mut servers = std::collections::BTreeSet::new();
    for r in &rows {
        let user: String = r.try_get("", "user_id")?;
        // Stored user IDs are valid: `@localpart:server`, the server after
        // the first colon (it may carry a port).
        if let Some((_, server)) = user.split_once(':') {
            servers.insert(server.to_owned());
        }
    }
    Ok(servers.into_iter().collect())
}

/// Every membership of a room (all values), by user.
pub async fn members(db: &Db, room_id: &str) -> Result<Vec<MembershipRow>, DbErr> {
    db.query_all(
        &format!("SELECT {COLS} FROM room_memberships WHERE room_id = $1 ORDER BY user_id"),
        [room_id.into()],
    )
    .await?
    .iter()
    .map(row)
    .collect()
}

/// Marks a room forgotten by a user who is no longer in it. Returns false
/// when the user is joined, invited or knocking (nothing is changed).
pub async fn forget(db: &Db, room_id: &str, user_id: &str) -> Result<bool, DbErr> {
    let n = db
        .execute(
            "UPDATE room_memberships SET forgotten = $1 \
             WHERE room_id = $2 AND user_id = $3 AND membership IN ('leave', 'ban')",
            [true.into(), room_id.into(), user_id.into()],
        )
        .await?;
    db.memberships().invalidate(user_id);
    Ok(n > 0)
}

/// Every membership of a user, whatever its value (sync sorts them), in
/// the order of their stream positions. Cached: a membership written
/// through this module is seen here once its transaction commits.
pub async fn all_of_user(db: &Db, user_id: &str) -> Result<Arc<Vec<MembershipRow>>, DbErr> {
    let (generation, cached) = db.memberships().0.get(user_id);
    if let Some(rows) = cached {
        return Ok(rows);
    }
    let rows: Vec<MembershipRow> = db
        .query_all(
            &format!(
                "SELECT {COLS} FROM room_memberships WHERE user_id = $1 ORDER BY stream_ordering"
            ),
            [user_id.into()],
        )
        .await?
        .iter()
        .map(row)
        .collect::<Result<_, _>>()?;
    let rows = Arc::new(rows);
    db.memberships()
        .0
        .put(generation, user_id.to_owned(), rows.clone());
    Ok(rows)
}

/// Joined and invited member counts of each of `rooms` (absent: none).
pub async fn member_counts(
    db: &Db,
    rooms: &[&str],
) -> Result<std::collections::HashMap<String, (u64, u64)>, DbErr> {
    let mut out: std::collections::HashMap<String, (u64, u64)> = std::collections::HashMap::new();
    for chunk in rooms.chunks(super::IN_CHUNK) {
        let sql = format!(
            "SELECT room_id, membership, COUNT(*) AS n FROM room_memberships \
             WHERE room_id IN ({}) AND membership IN ('join', 'invite') \
             GROUP BY room_id, membership",
            super::in_list(1, chunk.len())
        );
        for r in db
            .query_all(&sql, chunk.iter().map(|r| (*r).into()))
            .await?
        {
            let room: String = r.try_get("", "room_id")?;
            let membership: String = r.try_get("", "membership")?;
            let n: i64 = r.try_get("", "n")?;
            let n = u64::try_from(n).unwrap_or(0);
            let entry = out.entry(room).or_default();
            if membership == "join" {
                entry.0 = n;
            } else {
                entry.1 = n;
            }
        }
    }
    Ok(out)
}

/// For each of `rooms`, up to `per_room` members other than `user_id`
/// ordered as Synapse picks room heroes: joined before invited before
/// departed, then by when their membership was set. Rows are
/// `(room_id, user_id, membership)`.
pub async fn hero_candidates(
    db: &Db,
    rooms: &[&str],
    user_id: &str,
    per_room: i64,
) -> Result<Vec<(String, String, String)>, DbErr> {
    let mut out = Vec::new();
    for chunk in rooms.chunks(super::IN_CHUNK) {
        let sql = format!(
            "SELECT room_id, user_id, membership FROM ( \
               SELECT room_id, user_id, membership, stream_ordering, ROW_NUMBER() OVER ( \
                 PARTITION BY room_id ORDER BY CASE membership WHEN 'join' THEN 1 \
                 WHEN 'invite' THEN 2 ELSE 3 END, stream_ordering) AS rn \
               FROM room_memberships WHERE room_id IN ({}) AND user_id <> $1 \
                 AND membership IN ('join', 'invite', 'leave', 'ban')) ranked \
             WHERE rn <= $2 ORDER BY room_id, rn",
            super::in_list(3, chunk.len())
        );
        let mut values: Vec<sea_orm::Value> = vec![user_id.into(), per_room.into()];
        values.extend(chunk.iter().map(|r| (*r).into()));
        for r in db.query_all(&sql, values).await? {
            out.push((
                r.try_get("", "room_id")?,
                r.try_get("", "user_id")?,
                r.try_get("", "membership")?,
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_db;

    async fn of(db: &Db, user_id: &str) -> Vec<(String, String, bool)> {
        all_of_user(db, user_id)
            .await
            .expect("memberships")
            .iter()
            .map(|m| (m.room_id.clone(), m.membership.clone(), m.forgotten))
            .collect()
    }

    async fn write(db: &Db, room_id: &str, membership: &str, stream: i64, commit: bool) {
        let tx = db.begin_write().await.expect("tx");
        set(&tx, room_id, "@u:x", membership, "$e", stream)
            .await
            .expect("set");
        if commit {
            tx.commit().await.expect("commit");
        }
    }

    #[tokio::test]
    async fn cached_memberships_follow_every_committed_change() {
        let db = test_db().await;
        assert_eq!(of(&db, "@u:x").await, []);
        write(&db, "!a:x", "join", 1, true).await;
        let joined = vec![("!a:x".to_owned(), "join".to_owned(), false)];
        assert_eq!(of(&db, "@u:x").await, joined);
        // Served from the cache now; a rolled-back change leaves it as is.
        write(&db, "!a:x", "leave", 2, false).await;
        assert_eq!(of(&db, "@u:x").await, joined);
        write(&db, "!a:x", "leave", 2, true).await;
        assert_eq!(
            of(&db, "@u:x").await,
            [("!a:x".to_owned(), "leave".to_owned(), false)]
        );
        assert!(forget(&db, "!a:x", "@u:x").await.expect("forget"));
        assert_eq!(
            of(&db, "@u:x").await,
            [("!a:x".to_owned(), "leave".to_owned(), true)]
        );
        let tx = db.begin_write().await.expect("tx");
        remove(&tx, "!a:x", "@u:x").await.expect("remove");
        tx.commit().await.expect("commit");
        assert_eq!(of(&db, "@u:x").await, []);
    }
}
