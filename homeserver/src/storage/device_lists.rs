//! Owner of `device_list_changes`: one row per change of a user's device
//! list or of the keys on it (new or changed device keys, a deleted
//! device, new cross-signing keys, new signatures), at a
//! [`Stream::DeviceLists`] position taken in the transaction that made the
//! change. Other users' clients learn from it (via sync's
//! `device_lists.changed` and `/keys/changes`) that they must query the
//! user's keys again.
//!
//! ## Which tokens' positions are used
//!
//! A sync token carries a timeline position (`stream_ordering` of room
//! events, which is also what `room_memberships.stream_ordering` records)
//! and a device-list position. "What changed between two tokens" uses
//! both ranges ([`Positions`]):
//!
//! - device-list rows in `(since.device_lists, until.device_lists]` of users
//!   who share a joined room with the syncing user now: their keys changed;
//! - memberships written in `(since.timeline, until.timeline]`: someone
//!   joining a room the syncing user is in (or the syncing user joining a
//!   room, making all its members new to them) means their device list is
//!   new to the syncer, so they are `changed` too; someone leaving or being
//!   banned (or the syncer leaving) means that user is `left` if they no
//!   longer share any joined room.
//!
//! `room_memberships` holds only the current membership of each user in
//! each room, so a join and a leave both inside the range count as the
//! leave, which is what the client needs to know.

use std::collections::BTreeSet;

use sea_orm::DbErr;

use super::streams::{self, Stream};
use super::{Db, Tx};
use crate::storage::Sql as _;

/// The two stream positions of a sync token that device-list changes
/// depend on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Positions {
    /// The room timeline's `stream_ordering`.
    pub timeline: i64,
    /// The [`Stream::DeviceLists`] position.
    pub device_lists: i64,
}

/// Records that `user_id`'s devices or keys changed, in the caller's
/// transaction, and returns the change's position. Wake the user's rooms
/// once it commits (`e2ee::device_lists_changed`).
pub async fn record(tx: &Tx, user_id: &str) -> Result<i64, DbErr> {
    let position = streams::next_position(tx, Stream::DeviceLists).await?;
    tx.execute(
        "INSERT INTO device_list_changes (stream_position, user_id) VALUES ($1, $2)",
        [position.into(), user_id.into()],
    )
    .await?;
    Ok(position)
}

/// Users who share a joined room with `user_id` now, `user_id` included.
pub async fn users_sharing_a_room(db: &Db, user_id: &str) -> Result<BTreeSet<String>, DbErr> {
    let rows = db
        .query_all(
            "SELECT DISTINCT o.user_id FROM room_memberships me \
             JOIN room_memberships o ON o.room_id = me.room_id \
             WHERE me.user_id = $1 AND me.membership = 'join' AND o.membership = 'join'",
            [user_id.into()],
        )
        .await?;
    let mut out: BTreeSet<String> = rows
        .iter()
        .map(|r| r.try_get("", "user_id"))
        .collect::<Result<_, _>>()?;
    out.insert(user_id.to_owned());
    Ok(out)
}

/// Users among `candidates` whose device list changed at a position in
/// `(since, until]`.
async fn changed_in_range(db: &Db, since: i64, until: i64) -> Result<BTreeSet<String>, DbErr> {
    let rows = db
        .query_all(
            "SELECT DISTINCT user_id FROM device_list_changes \
             WHERE stream_position > $1 AND stream_position <= $2",
            [since.into(), until.into()],
        )
        .await?;
    rows.iter().map(|r| r.try_get("", "user_id")).collect()
}

/// What sync's `device_lists` (and `/keys/changes`) reports to `user_id`
/// for the range between two tokens: `(changed, left)`, each sorted.
///
/// `changed`: users sharing a joined room with `user_id` now whose device
/// list changed in the device-list range, or who joined a room shared with
/// `user_id` in the timeline range, or every member of a room `user_id`
/// joined in the timeline range; `user_id` itself when its own devices
/// changed. `left`: users whose membership in a room shared with `user_id`
/// ended in the timeline range (or members of a room `user_id` left in
/// that range) and who share no joined room with `user_id` any more. A
/// user is never in both.
pub async fn changes_for_sync(
    db: &Db,
    user_id: &str,
    since: Positions,
    until: Positions,
) -> Result<(Vec<String>, Vec<String>), DbErr> {
    // Each read is skipped when its stream did not move (the common case
    // of a long-poll woken by a message), and the users sharing a room are
    // read only when there is a candidate to check against them.
    let mut changed: BTreeSet<String> = if since.device_lists < until.device_lists {
        changed_in_range(db, since.device_lists, until.device_lists)
            .await?
            .into_iter()
            .collect()
    } else {
        BTreeSet::new()
    };

    // Membership changes in the timeline range in rooms the user is in now
    // or was in at the start of the range (its own row changed in range).
    let rows = if since.timeline >= until.timeline {
        Vec::new()
    } else {
        db.query_all(
            "SELECT o.user_id, o.membership AS theirs, me.membership AS mine, \
             me.stream_ordering AS my_ordering, o.stream_ordering AS their_ordering \
             FROM room_memberships me JOIN room_memberships o ON o.room_id = me.room_id \
             WHERE me.user_id = $1 AND o.user_id <> $1 \
             AND (me.membership = 'join' OR (me.stream_ordering > $2 AND me.stream_ordering <= $3)) \
             AND ((o.stream_ordering > $2 AND o.stream_ordering <= $3) \
                  OR (me.stream_ordering > $2 AND me.stream_ordering <= $3))",
            [user_id.into(), since.timeline.into(), until.timeline.into()],
        )
        .await?
    };
    let in_range = |p: i64| p > since.timeline && p <= until.timeline;
    let mut maybe_left = BTreeSet::new();
    for r in &rows {
        let other: String = r.try_get("", "user_id")?;
        let theirs: String = r.try_get("", "theirs")?;
        let mine: String = r.try_get("", "mine")?;
        let my_ordering: i64 = r.try_get("", "my_ordering")?;
        let their_ordering: i64 = r.try_get("", "their_ordering")?;
        let i_joined = mine == "join" && in_range(my_ordering);
        let i_left = mine != "join" && in_range(my_ordering);
        let they_joined = theirs == "join" && in_range(their_ordering);
        let they_left = theirs != "join" && in_range(their_ordering);
        if mine == "join" && theirs == "join" && (i_joined || they_joined) {
            changed.insert(other);
        } else if (mine == "join" && they_left) || (i_left && theirs == "join") {
            maybe_left.insert(other);
        }
    }
    if changed.is_empty() && maybe_left.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let sharing = users_sharing_a_room(db, user_id).await?;
    let left: Vec<String> = maybe_left
        .into_iter()
        .filter(|u| !sharing.contains(u))
        .collect();
    changed.retain(|u| sharing.contains(u));
    Ok((changed.into_iter().collect(), left))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn member(db: &Db, room: &str, user: &str, membership: &str, ordering: i64) {
        let tx = db.begin_write().await.expect("begin");
        crate::storage::memberships::set(
            &tx,
            room,
            user,
            membership,
            &format!("$e{ordering}"),
            ordering,
        )
        .await
        .expect("set membership");
        tx.commit().await.expect("commit");
    }

    async fn change(db: &Db, user: &str) -> i64 {
        let tx = db.begin_write().await.expect("begin");
        let p = record(&tx, user).await.expect("record");
        tx.commit().await.expect("commit");
        p
    }

    fn pos(timeline: i64, device_lists: i64) -> Positions {
        Positions {
            timeline,
            device_lists,
        }
    }

    #[tokio::test]
    async fn changes_joins_and_leaves_between_tokens() {
        let db = crate::storage::test_db().await;
        // Rooms need rows in `rooms` only through foreign keys; memberships
        // reference events by ID as text, so no events are needed.
        member(&db, "!r:x", "@a:x", "join", 1).await;
        member(&db, "!r:x", "@b:x", "join", 2).await;
        member(&db, "!s:x", "@c:x", "join", 3).await;
        let d1 = change(&db, "@b:x").await;
        let _ = change(&db, "@c:x").await;

        // b shares a room with a and changed keys; c shares none.
        let (changed, left) = changes_for_sync(&db, "@a:x", pos(2, 0), pos(3, d1 + 1))
            .await
            .expect("changes");
        assert_eq!(changed, vec!["@b:x".to_owned()]);
        assert!(left.is_empty());

        // b joined in the timeline range: changed even with no key change.
        let (changed, _) = changes_for_sync(&db, "@a:x", pos(1, 10), pos(3, 10))
            .await
            .expect("changes");
        assert_eq!(changed, vec!["@b:x".to_owned()]);

        // a joins c's room: c is new to a.
        member(&db, "!s:x", "@a:x", "join", 4).await;
        let (changed, _) = changes_for_sync(&db, "@a:x", pos(3, 10), pos(4, 10))
            .await
            .expect("changes");
        assert_eq!(changed, vec!["@c:x".to_owned()]);

        // b leaves the only shared room: left, not changed.
        member(&db, "!r:x", "@b:x", "leave", 5).await;
        let d2 = change(&db, "@b:x").await;
        let (changed, left) = changes_for_sync(&db, "@a:x", pos(4, d2 - 1), pos(5, d2))
            .await
            .expect("changes");
        assert!(changed.is_empty(), "{changed:?}");
        assert_eq!(left, vec!["@b:x".to_owned()]);

        // a leaves c's room: c is left for a.
        member(&db, "!s:x", "@a:x", "leave", 6).await;
        let (_, left) = changes_for_sync(&db, "@a:x", pos(5, d2), pos(6, d2))
            .await
            .expect("changes");
        assert_eq!(left, vec!["@c:x".to_owned()]);

        // Own changes are reported to oneself.
        let d3 = change(&db, "@a:x").await;
        let (changed, _) = changes_for_sync(&db, "@a:x", pos(6, d2), pos(6, d3))
            .await
            .expect("changes");
        assert_eq!(changed, vec!["@a:x".to_owned()]);
    }
}
