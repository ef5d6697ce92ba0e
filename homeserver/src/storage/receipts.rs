//! Owner of the `receipts` table: read receipts (`m.read`,
//! `m.read.private`), one row per (room, user, receipt type, thread), and
//! their stream.
//!
//! A receipt only ever moves forward in the timeline: one for an event at
//! or before the user's current receipt of the same type and thread is
//! ignored (as Synapse does), so a client that sends receipts out of order
//! cannot rewind anyone's read position. Each change takes a position in
//! [`Stream::Receipts`] in its own write transaction, which also prunes
//! the push actions the new read position makes irrelevant (see
//! [`super::push_actions`]).

use std::collections::BTreeMap;

use sea_orm::DbErr;
use serde_json::{Map, Value, json};

use super::streams::{self, Stream};
use super::{Db, IN_CHUNK, in_list, push_actions};
use crate::storage::Sql as _;

pub const READ: &str = "m.read";
pub const READ_PRIVATE: &str = "m.read.private";

/// The `thread_id` column of an unthreaded receipt.
pub const UNTHREADED: &str = "";

/// The thread ID of the main timeline.
pub const MAIN_THREAD: &str = "main";

/// A receipt to store.
#[derive(Debug, Clone)]
pub struct NewReceipt<'a> {
    pub room_id: &'a str,
    pub user_id: &'a str,
    /// [`READ`] or [`READ_PRIVATE`].
    pub receipt_type: &'a str,
    /// [`UNTHREADED`], [`MAIN_THREAD`] or a thread root's event ID.
    pub thread_id: &'a str,
    pub event_id: &'a str,
    /// The receipted event's `stream_ordering`.
    pub event_stream_ordering: i64,
    pub ts: i64,
}

impl NewReceipt<'_> {
    /// Whether this receipt sets where the user has read up to in the room
    /// as a whole: unread counts start after the latest of these.
    fn reads_main_timeline(&self) -> bool {
        matches!(self.receipt_type, READ | READ_PRIVATE)
            && matches!(self.thread_id, UNTHREADED | MAIN_THREAD)
    }
}

/// Stores a receipt, unless the user's receipt of the same type and thread
/// is already at this event or a later one. Returns the stream position of
/// the change, or `None` when nothing changed.
pub async fn set(db: &Db, r: &NewReceipt<'_>) -> Result<Option<i64>, DbErr> {
    let tx = db.begin_write().await?;
    // Taking the position first serialises receipt writers (see `streams`),
    // so the comparison below cannot race with another writer of the row.
    let position = streams::next_position(&tx, Stream::Receipts).await?;
    let current = tx
        .query_one(
            "SELECT event_stream_ordering FROM receipts \
             WHERE room_id = $1 AND user_id = $2 AND receipt_type = $3 AND thread_id = $4",
            [
                r.room_id.into(),
                r.user_id.into(),
                r.receipt_type.into(),
                r.thread_id.into(),
            ],
        )
        .await?
        .map(|row| row.try_get::<i64>("", "event_stream_ordering"))
        .transpose()?;
    if current.is_some_and(|c| c >= r.event_stream_ordering) {
        // Dropping the transaction rolls the position back too.
        return Ok(None);
    }
    tx.execute(
        "INSERT INTO receipts (room_id, user_id, receipt_type, thread_id, event_id, \
         event_stream_ordering, ts, stream_position) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (room_id, user_id, receipt_type, thread_id) DO UPDATE SET \
         event_id = excluded.event_id, event_stream_ordering = excluded.event_stream_ordering, \
         ts = excluded.ts, stream_position = excluded.stream_position",
        [
            r.room_id.into(),
            r.user_id.into(),
            r.receipt_type.into(),
            r.thread_id.into(),
            r.event_id.into(),
            r.event_stream_ordering.into(),
            r.ts.into(),
            position.into(),
        ],
    )
    .await?;
    if r.reads_main_timeline() {
        push_actions::prune_read(&tx, r.user_id, r.room_id, r.event_stream_ordering).await?;
    }
    tx.commit().await?;
    Ok(Some(position))
}

/// The content of the `m.receipt` event sync shows for each of `rooms`
/// whose receipts changed at a position in `(since, until]` (with `since`
/// 0: every room with receipts), as `viewer` may see them: other users'
/// `m.read.private` receipts are never shown. The content is the spec's
/// `{event_id: {receipt_type: {user_id: {ts, thread_id?}}}}` object,
/// holding only the changed receipts in an incremental sync.
pub async fn for_sync(
    db: &Db,
    viewer: &str,
    rooms: &[&str],
    since: i64,
    until: i64,
) -> Result<Vec<(String, serde_json::Value)>, DbErr> {
    // Ordered by room so the answer does not depend on the query plan.
    let mut by_room: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for chunk in rooms.chunks(IN_CHUNK) {
        let mut values: Vec<sea_orm::Value> = vec![
            since.into(),
            until.into(),
            READ_PRIVATE.into(),
            viewer.into(),
        ];
        values.extend(chunk.iter().map(|r| (*r).into()));
        let sql = format!(
            "SELECT room_id, user_id, receipt_type, thread_id, event_id, ts FROM receipts \
             WHERE stream_position > $1 AND stream_position <= $2 \
             AND (receipt_type <> $3 OR user_id = $4) AND room_id IN ({}) \
             ORDER BY stream_position",
            in_list(5, chunk.len())
        );
        for row in db.query_all(&sql, values).await? {
            let room_id: String = row.try_get("", "room_id")?;
            let user_id: String = row.try_get("", "user_id")?;
            let receipt_type: String = row.try_get("", "receipt_type")?;
            let thread_id: String = row.try_get("", "thread_id")?;
            let event_id: String = row.try_get("", "event_id")?;
            let ts: i64 = row.try_get("", "ts")?;
            let mut receipt = json!({ "ts": ts });
            if thread_id != UNTHREADED {
                receipt["thread_id"] = Value::String(thread_id);
            }
            let by_type = by_room
                .entry(room_id)
                .or_default()
                .entry(event_id)
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(by_type) = by_type
                && let Value::Object(by_user) = by_type
                    .entry(receipt_type)
                    .or_insert_with(|| Value::Object(Map::new()))
            {
                by_user.insert(user_id, receipt);
            }
        }
    }
    Ok(by_room
        .into_iter()
        .map(|(room, content)| (room, Value::Object(content)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_db;

    fn receipt<'a>(
        user_id: &'a str,
        receipt_type: &'a str,
        thread_id: &'a str,
        event_id: &'a str,
        event_stream_ordering: i64,
    ) -> NewReceipt<'a> {
        NewReceipt {
            room_id: "!r:x",
            user_id,
            receipt_type,
            thread_id,
            event_id,
            event_stream_ordering,
            ts: 1000 + event_stream_ordering,
        }
    }

    async fn sync(db: &Db, viewer: &str, since: i64) -> Value {
        let until = streams::current_position(db, Stream::Receipts)
            .await
            .expect("position");
        let found = for_sync(db, viewer, &["!r:x", "!other:x"], since, until)
            .await
            .expect("for_sync");
        assert!(found.len() <= 1, "{found:?}");
        found
            .into_iter()
            .next()
            .map(|(room, content)| {
                assert_eq!(room, "!r:x");
                content
            })
            .unwrap_or(Value::Null)
    }

    #[tokio::test]
    async fn receipts_move_forward_only_and_private_ones_stay_private() {
        let db = test_db().await;
        let p1 = set(&db, &receipt("@a:x", READ, UNTHREADED, "$e2", 2))
            .await
            .expect("set")
            .expect("stored");
        // Older or the same event: ignored, no new position.
        assert_eq!(
            set(&db, &receipt("@a:x", READ, UNTHREADED, "$e1", 1))
                .await
                .expect("set"),
            None
        );
        assert_eq!(
            set(&db, &receipt("@a:x", READ, UNTHREADED, "$e2", 2))
                .await
                .expect("set"),
            None
        );
        assert_eq!(
            streams::current_position(&db, Stream::Receipts).await.ok(),
            Some(p1)
        );
        // Another thread or type is its own row.
        let p2 = set(&db, &receipt("@a:x", READ, MAIN_THREAD, "$e1", 1))
            .await
            .expect("set")
            .expect("stored");
        let p3 = set(&db, &receipt("@b:x", READ_PRIVATE, UNTHREADED, "$e3", 3))
            .await
            .expect("set")
            .expect("stored");
        assert!(p1 < p2 && p2 < p3);

        let all = sync(&db, "@a:x", 0).await;
        assert_eq!(
            all,
            json!({
                "$e2": {"m.read": {"@a:x": {"ts": 1002}}},
                "$e1": {"m.read": {"@a:x": {"ts": 1001, "thread_id": "main"}}},
            })
        );
        // Bob sees his own private receipt.
        let bobs = sync(&db, "@b:x", p2).await;
        assert_eq!(
            bobs,
            json!({"$e3": {"m.read.private": {"@b:x": {"ts": 1003}}}})
        );
        // Incremental: only what changed after the position.
        assert_eq!(sync(&db, "@a:x", p2).await, Value::Null);
        let p4 = set(&db, &receipt("@a:x", READ, UNTHREADED, "$e5", 5))
            .await
            .expect("set")
            .expect("stored");
        assert_eq!(
            sync(&db, "@b:x", p3).await,
            json!({"$e5": {"m.read": {"@a:x": {"ts": 1005}}}})
        );
        // The upper bound is respected.
        assert!(
            for_sync(&db, "@b:x", &["!r:x"], p3, p3)
                .await
                .expect("for_sync")
                .is_empty()
        );
        assert!(p4 > p3);
    }
}
