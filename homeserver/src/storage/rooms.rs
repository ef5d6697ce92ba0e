//! Owner of the `rooms` and `forward_extremities` tables.
//!
//! `rooms` holds what never changes about a room (version, creator) and
//! the snapshot of its current state (`current_snapshot`, see
//! [`super::state`]). `forward_extremities` are the events of the room no
//! other event cites yet: the `prev_events` of the next local event. On one
//! server there is exactly one; federation will make forks.

use sea_orm::DbErr;

use super::{Db, Tx};
use crate::storage::Sql as _;

#[derive(Debug, Clone)]
pub struct RoomRow {
    pub room_id: String,
    pub room_version: String,
    pub creator: String,
    pub is_public: bool,
    pub current_snapshot: Option<i64>,
}

pub async fn get(db: &Db, room_id: &str) -> Result<Option<RoomRow>, DbErr> {
    let Some(row) = db
        .query_one(
            "SELECT room_id, room_version, creator, is_public, current_snapshot \
             FROM rooms WHERE room_id = $1",
            [room_id.into()],
        )
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(RoomRow {
        room_id: row.try_get("", "room_id")?,
        room_version: row.try_get("", "room_version")?,
        creator: row.try_get("", "creator")?,
        is_public: row.try_get("", "is_public")?,
        current_snapshot: row.try_get("", "current_snapshot")?,
    }))
}

pub async fn insert(
    tx: &Tx,
    room_id: &str,
    room_version: &str,
    creator: &str,
    is_public: bool,
    now_ms: i64,
) -> Result<(), DbErr> {
    tx.execute(
        "INSERT INTO rooms (room_id, room_version, creator, is_public, created_ts) \
         VALUES ($1, $2, $3, $4, $5)",
        [
            room_id.into(),
            room_version.into(),
            creator.into(),
            is_public.into(),
            now_ms.into(),
        ],
    )
    .await?;
    Ok(())
}

/// Publishes the room in the room directory or withdraws it; `false` if
/// there is no such room.
pub async fn set_public(db: &Db, room_id: &str, is_public: bool) -> Result<bool, DbErr> {
    let n = db
        .execute(
            "UPDATE rooms SET is_public = $1 WHERE room_id = $2",
            [is_public.into(), room_id.into()],
        )
        .await?;
    Ok(n > 0)
}

pub async fn set_current_snapshot(tx: &Tx, room_id: &str, snapshot: i64) -> Result<(), DbErr> {
    tx.execute(
        "UPDATE rooms SET current_snapshot = $1 WHERE room_id = $2",
        [snapshot.into(), room_id.into()],
    )
    .await?;
    Ok(())
}

/// The room's forward extremities with their depths, deepest first.
pub async fn forward_extremities(db: &Db, room_id: &str) -> Result<Vec<(String, i64)>, DbErr> {
    let rows = db
        .query_all(
            "SELECT f.event_id, e.depth FROM forward_extremities f \
             JOIN events e ON e.event_id = f.event_id \
             WHERE f.room_id = $1 ORDER BY e.depth DESC, e.event_nid DESC",
            [room_id.into()],
        )
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("", "event_id")?, r.try_get("", "depth")?)))
        .collect()
}

/// `events` stop being extremities (a new event cites them).
pub async fn drop_extremities(tx: &Tx, room_id: &str, events: &[String]) -> Result<(), DbErr> {
    for event_id in events {
        tx.execute(
            "DELETE FROM forward_extremities WHERE room_id = $1 AND event_id = $2",
            [room_id.into(), event_id.as_str().into()],
        )
        .await?;
    }
    Ok(())
}

/// `event_id` becomes an extremity.
pub async fn add_extremity(tx: &Tx, room_id: &str, event_id: &str) -> Result<(), DbErr> {
    tx.execute(
        "INSERT INTO forward_extremities (room_id, event_id) VALUES ($1, $2)",
        [room_id.into(), event_id.into()],
    )
    .await?;
    Ok(())
}

/// Forgets every forward extremity of a room: it is entered anew from a
/// resident server's graph (over federation), and what we held before (an
/// invite, the events up to our leave) is not where the room continues.
pub async fn clear_extremities(tx: &Tx, room_id: &str) -> Result<(), DbErr> {
    tx.execute(
        "DELETE FROM forward_extremities WHERE room_id = $1",
        [room_id.into()],
    )
    .await?;
    Ok(())
}
