//! Owner of `event_push_actions`: per-user push actions of room events,
//! what the unread counts of sync are counted from (Synapse's table of the
//! same name), and of `push_unread_counts`, their running totals per user
//! and room, which sync reads (counting the rows made each sync cost as
//! much as the user's unread backlog).
//!
//! The event pipeline writes one row per local member whose push rules
//! make an event notify or highlight, in the event's own transaction, so
//! the counts of a sync never disagree with its timeline. A row is only
//! useful while it is after the member's read receipt: moving the receipt
//! forward deletes the rows it covers ([`prune_read`]), which keeps the
//! table proportional to what is actually unread, and makes the totals
//! the count of the rows stored: adding rows adds to them, deleting rows
//! counts the rest again.
//!
//! The counts are of the whole room after the user's latest unthreaded or
//! `main` read receipt (`m.read` or `m.read.private`, whichever is later);
//! per-thread counts (`unread_thread_notifications`) are not kept. As in
//! Synapse, a user's own messages are never counted and do not move their
//! read position (Synapse has no implicit receipt: matrix-org/synapse#14837);
//! clients send a receipt when they show the room.

use std::collections::HashMap;

use sea_orm::DbErr;

use super::receipts::{MAIN_THREAD, READ, READ_PRIVATE, UNTHREADED};
use super::{Db, IN_CHUNK, Tx, in_list, insert_rows};
use crate::storage::Sql as _;

/// A room's unread counts for one user: events after the user's read
/// receipt whose push actions notify, and those that also highlight.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnreadCounts {
    pub notification_count: u64,
    pub highlight_count: u64,
}

/// The push actions of one event for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushAction {
    pub user_id: String,
    pub notify: bool,
    pub highlight: bool,
}

/// Records the push actions of stored events, `(stream_ordering,
/// actions)` each, all in `room_id`, and adds them to the users' unread
/// totals there.
pub async fn insert(tx: &Tx, room_id: &str, events: &[(i64, &[PushAction])]) -> Result<(), DbErr> {
    let mut rows: Vec<sea_orm::Value> = Vec::new();
    let mut totals: HashMap<&str, (i64, i64)> = HashMap::new();
    for (stream_ordering, actions) in events {
        for a in *actions {
            rows.push(a.user_id.as_str().into());
            rows.push(room_id.into());
            rows.push((*stream_ordering).into());
            rows.push(a.notify.into());
            rows.push(a.highlight.into());
            let total = totals.entry(a.user_id.as_str()).or_default();
            total.0 += i64::from(a.notify);
            total.1 += i64::from(a.highlight);
        }
    }
    if rows.is_empty() {
        return Ok(());
    }
    // An event is written once, at a stream position of its own: the rows
    // are new, and the totals grow by exactly them.
    insert_rows(
        tx,
        "INSERT INTO event_push_actions (user_id, room_id, stream_ordering, notify, highlight)",
        "",
        5,
        rows,
    )
    .await?;
    let mut totals: Vec<(&str, (i64, i64))> = totals.into_iter().collect();
    // Rows locked in one order by every writer (PostgreSQL).
    totals.sort_unstable();
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(totals.len() * 4);
    for (user_id, (notify, highlight)) in totals {
        values.push(user_id.into());
        values.push(room_id.into());
        values.push(notify.into());
        values.push(highlight.into());
    }
    insert_rows(
        tx,
        "INSERT INTO push_unread_counts (user_id, room_id, notify_count, highlight_count)",
        "ON CONFLICT (user_id, room_id) DO UPDATE SET \
         notify_count = push_unread_counts.notify_count + excluded.notify_count, \
         highlight_count = push_unread_counts.highlight_count + excluded.highlight_count",
        4,
        values,
    )
    .await
}

/// Sets a member's totals in a room to the count of their stored rows,
/// after some were deleted.
async fn recount(tx: &Tx, user_id: &str, room_id: &str) -> Result<(), DbErr> {
    tx.execute(
        "UPDATE push_unread_counts SET \
         notify_count = (SELECT COUNT(*) FROM event_push_actions p \
           WHERE p.user_id = $1 AND p.room_id = $2 AND p.notify), \
         highlight_count = (SELECT COUNT(*) FROM event_push_actions p \
           WHERE p.user_id = $1 AND p.room_id = $2 AND p.highlight) \
         WHERE user_id = $1 AND room_id = $2",
        [user_id.into(), room_id.into()],
    )
    .await?;
    Ok(())
}

/// Keeps a member's push actions in step with their membership, in the
/// member event's transaction (at stream position `stream`):
/// - a member who leaves (or is kicked or banned) has none: sync shows no
///   unread counts for rooms one is not in, and a rejoin counts from the
///   join;
/// - without a read receipt, counts start after the member's latest
///   membership event (as Synapse's do), so a join, or a change of
///   profile, drops the rows before it.
pub async fn on_membership(
    tx: &Tx,
    room_id: &str,
    stream: i64,
    pdu: &myelin_proto::Pdu,
) -> Result<(), DbErr> {
    let (Some(membership), Some(user_id)) = (pdu.membership(), pdu.state_key()) else {
        return Ok(());
    };
    match membership {
        "leave" | "ban" => {
            for table in ["event_push_actions", "push_unread_counts"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE user_id = $1 AND room_id = $2"),
                    [user_id.into(), room_id.into()],
                )
                .await?;
            }
        }
        "join" => {
            let dropped = tx
                .execute(
                    "DELETE FROM event_push_actions \
                     WHERE user_id = $1 AND room_id = $2 AND stream_ordering <= $3 \
                     AND NOT EXISTS (SELECT 1 FROM receipts r \
                       WHERE r.room_id = $2 AND r.user_id = $1 \
                       AND r.receipt_type IN ($4, $5) AND r.thread_id IN ($6, $7))",
                    [
                        user_id.into(),
                        room_id.into(),
                        stream.into(),
                        READ.into(),
                        READ_PRIVATE.into(),
                        UNTHREADED.into(),
                        MAIN_THREAD.into(),
                    ],
                )
                .await?;
            if dropped > 0 {
                recount(tx, user_id, room_id).await?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Deletes the push actions of a user in a room up to and including
/// `up_to` (a read receipt moved there: they can never count again).
pub async fn prune_read(tx: &Tx, user_id: &str, room_id: &str, up_to: i64) -> Result<(), DbErr> {
    let dropped = tx
        .execute(
            "DELETE FROM event_push_actions \
             WHERE user_id = $1 AND room_id = $2 AND stream_ordering <= $3",
            [user_id.into(), room_id.into(), up_to.into()],
        )
        .await?;
    if dropped > 0 {
        recount(tx, user_id, room_id).await?;
    }
    Ok(())
}

/// The unread counts of `user_id` in each of `rooms` (rooms with nothing
/// unread may be absent, meaning zero).
///
/// Counted after the latest unthreaded or `main` read receipt; without
/// one, after the user's membership event (their join), as Synapse does.
pub async fn unread_counts(
    db: &Db,
    user_id: &str,
    rooms: &[&str],
) -> Result<HashMap<String, UnreadCounts>, DbErr> {
    let mut out = HashMap::new();
    for chunk in rooms.chunks(IN_CHUNK) {
        let mut values: Vec<sea_orm::Value> = vec![user_id.into()];
        values.extend(chunk.iter().map(|r| (*r).into()));
        let sql = format!(
            "SELECT room_id, notify_count, highlight_count FROM push_unread_counts \
             WHERE user_id = $1 AND room_id IN ({})",
            in_list(2, chunk.len())
        );
        for row in db.query_all(&sql, values).await? {
            let room_id: String = row.try_get("", "room_id")?;
            let notify: i64 = row.try_get("", "notify_count")?;
            let highlight: i64 = row.try_get("", "highlight_count")?;
            let counts = UnreadCounts {
                notification_count: u64::try_from(notify).unwrap_or(0),
                highlight_count: u64::try_from(highlight).unwrap_or(0),
            };
            if counts != UnreadCounts::default() {
                out.insert(room_id, counts);
            }
        }
    }
    Ok(out)
}

/// What push rule evaluation needs to know about the joined members of a
/// room: each member's ID and the JSON of their current member event (for
/// their display name). Reads `room_memberships` and `events` (owned by
/// their modules) in one query.
pub async fn joined_members(db: &Db, room_id: &str) -> Result<Vec<(String, String)>, DbErr> {
    db.query_all(
        "SELECT m.user_id, e.json FROM room_memberships m \
         JOIN events e ON e.event_id = m.event_id \
         WHERE m.room_id = $1 AND m.membership = $2",
        [room_id.into(), "join".into()],
    )
    .await?
    .iter()
    .map(|r| Ok((r.try_get("", "user_id")?, r.try_get("", "json")?)))
    .collect()
}

/// The account data stream positions of what push evaluation reads per
/// member: `m.push_rules` and `m.ignored_user_list`.
#[derive(Debug, Default)]
pub struct MemberVersions {
    pub push_rules: HashMap<String, i64>,
    pub ignored_users: HashMap<String, i64>,
}

/// The account data stream position of the stored `m.push_rules` and
/// `m.ignored_user_list` of each of `users` that has them: what the parsed
/// push rules and ignore lists are cached by. Reads `account_data` (owned
/// by its module) with one query.
pub async fn member_versions(db: &Db, users: &[&str]) -> Result<MemberVersions, DbErr> {
    let mut out = MemberVersions::default();
    for chunk in users.chunks(IN_CHUNK) {
        let mut values: Vec<sea_orm::Value> = vec![
            "".into(),
            super::push_rules::EVENT_TYPE.into(),
            crate::ignored_users::EVENT_TYPE.into(),
        ];
        values.extend(chunk.iter().map(|u| (*u).into()));
        let sql = format!(
            "SELECT user_id, type, stream_position FROM account_data \
             WHERE room_id = $1 AND type IN ($2, $3) AND user_id IN ({})",
            in_list(4, chunk.len())
        );
        for row in db.query_all(&sql, values).await? {
            let event_type: String = row.try_get("", "type")?;
            let map = if event_type == super::push_rules::EVENT_TYPE {
                &mut out.push_rules
            } else {
                &mut out.ignored_users
            };
            map.insert(
                row.try_get("", "user_id")?,
                row.try_get("", "stream_position")?,
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::receipts::{self, NewReceipt};
    use crate::storage::test_db;

    fn action(user_id: &str, highlight: bool) -> PushAction {
        PushAction {
            user_id: user_id.to_owned(),
            notify: true,
            highlight,
        }
    }

    async fn counts(db: &Db, user_id: &str) -> UnreadCounts {
        unread_counts(db, user_id, &["!r:x"])
            .await
            .expect("counts")
            .get("!r:x")
            .copied()
            .unwrap_or_default()
    }

    async fn read(db: &Db, receipt_type: &str, thread_id: &str, at: i64) {
        receipts::set(
            db,
            &NewReceipt {
                room_id: "!r:x",
                user_id: "@b:x",
                receipt_type,
                thread_id,
                event_id: "$e",
                event_stream_ordering: at,
                ts: 0,
            },
        )
        .await
        .expect("receipt");
    }

    #[tokio::test]
    async fn many_events_actions_and_totals_are_stored_in_one_call() {
        let db = test_db().await;
        // 300 events (more than one statement's rows), each notifying @b
        // and every third highlighting; @c is notified by the first 7.
        let actions: Vec<Vec<PushAction>> = (0..300)
            .map(|i| {
                let mut a = vec![action("@b:x", i % 3 == 0)];
                if i < 7 {
                    a.push(action("@c:x", false));
                }
                a
            })
            .collect();
        let events: Vec<(i64, &[PushAction])> = actions
            .iter()
            .enumerate()
            .map(|(i, a)| (100 + i64::try_from(i).expect("small"), a.as_slice()))
            .collect();
        let tx = db.begin_write().await.expect("tx");
        insert(&tx, "!r:x", &events).await.expect("insert");
        tx.commit().await.expect("commit");
        let rows = db
            .query_one("SELECT COUNT(*) AS n FROM event_push_actions", [])
            .await
            .expect("count")
            .expect("row");
        assert_eq!(rows.try_get::<i64>("", "n").expect("n"), 307);
        assert_eq!(
            counts(&db, "@b:x").await,
            UnreadCounts {
                notification_count: 300,
                highlight_count: 100
            }
        );
        assert_eq!(counts(&db, "@c:x").await.notification_count, 7);
    }

    #[tokio::test]
    async fn counts_start_after_the_latest_main_timeline_read_receipt() {
        let db = test_db().await;
        for (so, highlight) in [(10, false), (11, true), (12, false), (13, true)] {
            let tx = db.begin_write().await.expect("tx");
            insert(&tx, "!r:x", &[(so, &[action("@b:x", highlight)])])
                .await
                .expect("insert");
            tx.commit().await.expect("commit");
        }
        assert_eq!(
            counts(&db, "@b:x").await,
            UnreadCounts {
                notification_count: 4,
                highlight_count: 2
            }
        );
        assert_eq!(counts(&db, "@a:x").await, UnreadCounts::default());
        // A receipt in a thread does not clear the room's counts.
        read(&db, READ, "$root", 13).await;
        assert_eq!(counts(&db, "@b:x").await.notification_count, 4);
        read(&db, READ_PRIVATE, UNTHREADED, 11).await;
        assert_eq!(
            counts(&db, "@b:x").await,
            UnreadCounts {
                notification_count: 2,
                highlight_count: 1
            }
        );
        // A public receipt behind the private one does not rewind.
        read(&db, READ, MAIN_THREAD, 10).await;
        assert_eq!(counts(&db, "@b:x").await.notification_count, 2);
        read(&db, READ, MAIN_THREAD, 12).await;
        assert_eq!(
            counts(&db, "@b:x").await,
            UnreadCounts {
                notification_count: 1,
                highlight_count: 1
            }
        );
        // The rows a receipt covers are gone.
        let left = db
            .query_one(
                "SELECT COUNT(*) AS n FROM event_push_actions WHERE user_id = $1",
                ["@b:x".into()],
            )
            .await
            .expect("count")
            .map(|r| r.try_get::<i64>("", "n").expect("n"));
        assert_eq!(left, Some(1));
    }
}
