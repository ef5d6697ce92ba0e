//! Owner of the `account_data` table: per-user JSON objects keyed by event
//! type, global (`room_id = ''`) or for one room. Tags (`m.tag`, per room)
//! and push rules (`m.push_rules`, global) live here too, so sync delivers
//! them like any other account data.
//!
//! Every write takes a new [`Stream::AccountData`] position in the same
//! transaction, and the row records it: sync asks [`changed_since`] for the
//! rows of a user written after the position its token holds.
//!
//! Global account data read by [`get`] is cached (every sync reads the
//! ignored-user list); [`update`], the only writer, drops what it changes.

use std::sync::Arc;

use sea_orm::DbErr;

use super::Db;
use super::streams::{self, Stream};
use crate::storage::Sql as _;

/// The `room_id` of global account data.
const GLOBAL: &str = "";

/// One piece of account data as sync delivers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountDataRow {
    /// `None` for global account data.
    pub room_id: Option<String>,
    pub event_type: String,
    /// The content, a JSON object, as text.
    pub content: String,
    pub stream_position: i64,
}

fn room_key(room_id: Option<&str>) -> &str {
    room_id.unwrap_or(GLOBAL)
}

fn rows(found: Vec<sea_orm::QueryResult>) -> Result<Vec<AccountDataRow>, DbErr> {
    found
        .into_iter()
        .map(|row| {
            let room_id: String = row.try_get("", "room_id")?;
            Ok(AccountDataRow {
                room_id: (room_id != GLOBAL).then_some(room_id),
                event_type: row.try_get("", "type")?,
                content: row.try_get("", "content")?,
                stream_position: row.try_get("", "stream_position")?,
            })
        })
        .collect()
}

/// Global account data entries cached at most.
const CACHED_ENTRIES: usize = 20_000;

/// Global account data by user and type (`None`: not set), as [`get`]
/// reads it.
#[derive(Debug)]
pub(crate) struct Cache(super::cache::Cache<(String, String), Option<Arc<str>>>);

impl Default for Cache {
    fn default() -> Self {
        Self(super::cache::Cache::new(CACHED_ENTRIES))
    }
}

impl Cache {
    pub(crate) fn invalidate(&self, user_id: &str, event_type: &str) {
        self.0
            .invalidate(&(user_id.to_owned(), event_type.to_owned()));
    }
}

/// The content of one piece of account data, if set.
pub async fn get(
    db: &Db,
    user_id: &str,
    room_id: Option<&str>,
    event_type: &str,
) -> Result<Option<String>, DbErr> {
    let cache = &db.account_data().0;
    let global = match room_id {
        Some(_) => None,
        None => {
            let key = (user_id.to_owned(), event_type.to_owned());
            match cache.get(&key) {
                (_, Some(content)) => return Ok(content.map(|c| c.to_string())),
                (generation, None) => Some((generation, key)),
            }
        }
    };
    let content: Option<String> = db
        .query_one(
            "SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND type = $3",
            [user_id.into(), room_key(room_id).into(), event_type.into()],
        )
        .await?
        .map(|r| r.try_get("", "content"))
        .transpose()?;
    if let Some((generation, key)) = global {
        cache.put(generation, key, content.as_deref().map(Arc::from));
    }
    Ok(content)
}

/// Sets one piece of account data, replacing any previous content, and
/// returns the stream position of the change.
pub async fn set(
    db: &Db,
    user_id: &str,
    room_id: Option<&str>,
    event_type: &str,
    content: &str,
) -> Result<i64, DbErr> {
    update(db, user_id, room_id, event_type, |_| {
        Ok::<_, DbErr>(content.to_owned())
    })
    .await
}

/// Replaces one piece of account data by `change(current content)`, as one
/// atomic read-modify-write (tags and push rules are edited this way), and
/// returns the stream position of the change. If `change` fails nothing is
/// written.
///
/// The stream position is taken first: that serialises all account data
/// writers (see `streams`), so two concurrent edits of the same content
/// cannot both start from the same old value and lose one of them.
pub async fn update<E, F>(
    db: &Db,
    user_id: &str,
    room_id: Option<&str>,
    event_type: &str,
    change: F,
) -> Result<i64, E>
where
    E: From<DbErr>,
    F: FnOnce(Option<String>) -> Result<String, E>,
{
    let tx = db.begin_write().await?;
    let position = streams::next_position(&tx, Stream::AccountData).await?;
    let current = tx
        .query_one(
            "SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND type = $3",
            [user_id.into(), room_key(room_id).into(), event_type.into()],
        )
        .await?
        .map(|r| r.try_get::<String>("", "content"))
        .transpose()?;
    // On error the transaction is dropped, which rolls it back.
    let content = change(current)?;
    tx.execute(
        "INSERT INTO account_data (user_id, room_id, type, content, stream_position) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (user_id, room_id, type) \
         DO UPDATE SET content = excluded.content, stream_position = excluded.stream_position",
        [
            user_id.into(),
            room_key(room_id).into(),
            event_type.into(),
            content.into(),
            position.into(),
        ],
    )
    .await?;
    if room_id.is_none() {
        tx.changes_global_account_data(user_id, event_type);
    }
    tx.commit().await?;
    Ok(position)
}

/// All global account data of a user (for an initial sync).
pub async fn global(db: &Db, user_id: &str) -> Result<Vec<AccountDataRow>, DbErr> {
    rows(
        db.query_all(
            "SELECT room_id, type, content, stream_position FROM account_data \
             WHERE user_id = $1 AND room_id = $2 ORDER BY stream_position",
            [user_id.into(), GLOBAL.into()],
        )
        .await?,
    )
}

/// All account data of a user for one room (for an initial sync).
pub async fn for_room(db: &Db, user_id: &str, room_id: &str) -> Result<Vec<AccountDataRow>, DbErr> {
    rows(
        db.query_all(
            "SELECT room_id, type, content, stream_position FROM account_data \
             WHERE user_id = $1 AND room_id = $2 ORDER BY stream_position",
            [user_id.into(), room_id.into()],
        )
        .await?,
    )
}

/// The account data of a user, global and per room, written after stream
/// position `since` (exclusive), oldest change first. Each row holds the
/// latest content: sync delivers the current state, not every change.
pub async fn changed_since(
    db: &Db,
    user_id: &str,
    since: i64,
) -> Result<Vec<AccountDataRow>, DbErr> {
    rows(
        db.query_all(
            "SELECT room_id, type, content, stream_position FROM account_data \
             WHERE user_id = $1 AND stream_position > $2 ORDER BY stream_position",
            [user_id.into(), since.into()],
        )
        .await?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{push_rules, test_db};

    #[tokio::test]
    async fn cached_global_reads_follow_every_update() {
        let db = test_db().await;
        user(&db, "@u:x").await;
        let read = || get(&db, "@u:x", None, "t");
        assert_eq!(read().await.expect("get"), None);
        set(&db, "@u:x", None, "t", r#"{"a":1}"#)
            .await
            .expect("set");
        assert_eq!(read().await.expect("get").as_deref(), Some(r#"{"a":1}"#));
        set(&db, "@u:x", None, "t", r#"{"a":2}"#)
            .await
            .expect("set");
        assert_eq!(read().await.expect("get").as_deref(), Some(r#"{"a":2}"#));
        // A refused change writes nothing, and the read stays right.
        let refused = update(&db, "@u:x", None, "t", |_| {
            Err::<String, DbErr>(DbErr::Custom("no".to_owned()))
        })
        .await;
        assert!(refused.is_err());
        assert_eq!(read().await.expect("get").as_deref(), Some(r#"{"a":2}"#));
        // Room account data of the same type is another entry.
        set(&db, "@u:x", Some("!r:x"), "t", r#"{"room":1}"#)
            .await
            .expect("set");
        assert_eq!(read().await.expect("get").as_deref(), Some(r#"{"a":2}"#));
    }

    async fn user(db: &Db, user_id: &str) {
        db.execute(
            "INSERT INTO users (user_id, created_ts) VALUES ($1, 0)",
            [user_id.into()],
        )
        .await
        .expect("user");
    }

    /// What sync relies on: every write has a higher position than every
    /// earlier one, and `changed_since` returns exactly the rows written
    /// after a position, with their latest content.
    #[tokio::test]
    async fn changes_are_found_by_position() {
        let db = test_db().await;
        user(&db, "@a:x").await;
        user(&db, "@b:x").await;
        let p1 = set(&db, "@a:x", None, "t.one", r#"{"v":1}"#)
            .await
            .expect("set");
        let p2 = set(&db, "@a:x", Some("!r:x"), "t.one", r#"{"v":2}"#)
            .await
            .expect("set");
        let p3 = set(&db, "@b:x", None, "t.one", r#"{"v":3}"#)
            .await
            .expect("set");
        assert!(p1 < p2 && p2 < p3);
        assert_eq!(
            streams::current_position(&db, Stream::AccountData)
                .await
                .ok(),
            Some(p3)
        );

        let since = changed_since(&db, "@a:x", p1).await.expect("changes");
        assert_eq!(since.len(), 1);
        assert_eq!(since[0].room_id.as_deref(), Some("!r:x"));
        assert_eq!(since[0].stream_position, p2);
        assert!(
            changed_since(&db, "@a:x", p3)
                .await
                .expect("changes")
                .is_empty()
        );

        // Rewriting moves the row past the reader's position.
        let p4 = set(&db, "@a:x", None, "t.one", r#"{"v":4}"#)
            .await
            .expect("set");
        let since = changed_since(&db, "@a:x", p3).await.expect("changes");
        assert_eq!(since.len(), 1);
        assert_eq!(since[0].room_id, None);
        assert_eq!(since[0].content, r#"{"v":4}"#);
        assert_eq!(since[0].stream_position, p4);

        assert_eq!(global(&db, "@a:x").await.expect("global").len(), 1);
        assert_eq!(for_room(&db, "@a:x", "!r:x").await.expect("room").len(), 1);
        assert!(
            for_room(&db, "@b:x", "!r:x")
                .await
                .expect("room")
                .is_empty()
        );

        // A failed update writes nothing and leaves the content alone.
        let failed = update(&db, "@a:x", None, "t.one", |_| {
            Err::<String, DbErr>(DbErr::Custom("no".to_owned()))
        })
        .await;
        assert!(failed.is_err());
        assert_eq!(
            get(&db, "@a:x", None, "t.one")
                .await
                .expect("get")
                .as_deref(),
            Some(r#"{"v":4}"#)
        );
        assert!(
            changed_since(&db, "@a:x", p4)
                .await
                .expect("changes")
                .is_empty()
        );
    }

    /// The default push rules are stored on first access only: reading them
    /// again does not produce a change for sync to deliver.
    #[tokio::test]
    async fn push_rules_are_stored_once() {
        let db = test_db().await;
        user(&db, "@a:x").await;
        let user_id = ruma::UserId::parse("@a:x").expect("user ID");
        push_rules::get(&db, &user_id).await.expect("rules");
        let first = changed_since(&db, "@a:x", 0).await.expect("changes");
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].event_type, "m.push_rules");
        push_rules::get(&db, &user_id).await.expect("rules");
        assert!(
            changed_since(&db, "@a:x", first[0].stream_position)
                .await
                .expect("changes")
                .is_empty()
        );
    }
}
