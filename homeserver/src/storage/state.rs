//! Owner of `state_keys`, `state_snapshots`, `state_snapshot_entries` and
//! `current_state`: room state, at every event and now.
//!
//! # Interning
//! Every `(event_type, state_key)` pair gets a small integer (`state_keys`),
//! and events are named by their `event_nid` (see [`super::events`]), so a
//! state entry is two integers.
//!
//! # Snapshots
//! A state is a `state_snapshots` row. A snapshot is either *full* (no
//! parent: its entries are the whole state) or a *delta* against a parent
//! snapshot: its entries are the keys that differ, an entry with a NULL
//! event removing the key (state resolution can drop keys). Reading a
//! snapshot walks the chain to the full one (one recursive query) and lets
//! the entry nearest the snapshot win.
//!
//! Storing a state event writes one delta of one entry: it never copies the
//! room's state. Chains are capped at [`MAX_CHAIN_DEPTH`] deltas: the next
//! snapshot past the cap is written full, which bounds every read to that
//! many levels at the price of one full copy per that many state changes.
//! Snapshots are shared: every message event between two state events
//! points at the same snapshot.
//!
//! Each event row records `state_before` and `state_after` (see
//! [`super::events`]); `rooms.current_snapshot` is the room's current
//! state. Federation will create snapshots for resolved states the same
//! way (a delta against the nearest parent).
//!
//! # Current state
//! `current_state` is the room's current state denormalised by
//! `(room_id, event_type, state_key)`, so reading the whole current state,
//! or one key of it, is one indexed query without walking snapshots.

use std::collections::HashMap;

use sea_orm::DbErr;

use super::{Db, IN_CHUNK, Tx, in_list, insert_rows};
use crate::storage::Sql as _;

/// Longest chain of deltas before a snapshot is written in full.
pub const MAX_CHAIN_DEPTH: i32 = 32;

/// The numbers of `keys`, creating those that do not exist yet. Interning
/// outside the event's transaction is harmless: a number without a user is
/// just unused.
pub async fn intern_keys(db: &Db, keys: &[(&str, &str)]) -> Result<Vec<i64>, DbErr> {
    let mut out = Vec::with_capacity(keys.len());
    for (event_type, state_key) in keys {
        if let Some(nid) = key_nid(db, event_type, state_key).await? {
            out.push(nid);
            continue;
        }
        db.execute(
            "INSERT INTO state_keys (event_type, state_key) VALUES ($1, $2) \
             ON CONFLICT (event_type, state_key) DO NOTHING",
            [(*event_type).into(), (*state_key).into()],
        )
        .await?;
        match key_nid(db, event_type, state_key).await? {
            Some(nid) => out.push(nid),
            None => return Err(DbErr::Custom("state key vanished after insert".into())),
        }
    }
    Ok(out)
}

/// The number of a key, if it was ever interned.
pub async fn key_nid(db: &Db, event_type: &str, state_key: &str) -> Result<Option<i64>, DbErr> {
    db.query_one(
        "SELECT state_key_nid FROM state_keys WHERE event_type = $1 AND state_key = $2",
        [event_type.into(), state_key.into()],
    )
    .await?
    .map(|r| r.try_get("", "state_key_nid"))
    .transpose()
}

/// One entry of a state: the key and the event holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEntry {
    pub key_nid: i64,
    pub event_type: String,
    pub state_key: String,
    pub event_nid: i64,
    pub event_id: String,
}

/// The state a snapshot stands for, or only the given keys of it.
pub async fn load_snapshot(
    db: &Db,
    snapshot: i64,
    only_keys: Option<&[i64]>,
) -> Result<Vec<StateEntry>, DbErr> {
    let mut values: Vec<sea_orm::Value> = vec![snapshot.into()];
    let key_filter = match only_keys {
        None => String::new(),
        Some([]) => return Ok(Vec::new()),
        Some(keys) => {
            values.extend(keys.iter().map(|k| (*k).into()));
            format!(" AND s.state_key_nid IN ({})", in_list(2, keys.len()))
        }
    };
    let sql = format!(
        "WITH RECURSIVE chain(nid, parent, lvl) AS ( \
           SELECT snapshot_nid, parent, 0 FROM state_snapshots WHERE snapshot_nid = $1 \
           UNION ALL \
           SELECT p.snapshot_nid, p.parent, c.lvl + 1 FROM state_snapshots p \
             JOIN chain c ON p.snapshot_nid = c.parent \
         ) \
         SELECT c.lvl, s.state_key_nid, s.event_nid, k.event_type, k.state_key, e.event_id \
         FROM chain c JOIN state_snapshot_entries s ON s.snapshot_nid = c.nid \
         JOIN state_keys k ON k.state_key_nid = s.state_key_nid \
         LEFT JOIN events e ON e.event_nid = s.event_nid \
         WHERE 1 = 1{key_filter}"
    );
    let rows = db.query_all(&sql, values).await?;
    // The entry of the lowest level (nearest the snapshot) wins.
    let mut best: HashMap<i64, (i32, Option<StateEntry>)> = HashMap::new();
    for r in rows {
        let lvl: i32 = r.try_get("", "lvl")?;
        let key_nid: i64 = r.try_get("", "state_key_nid")?;
        if best.get(&key_nid).is_some_and(|(l, _)| *l <= lvl) {
            continue;
        }
        let event_nid: Option<i64> = r.try_get("", "event_nid")?;
        let entry = match event_nid {
            None => None,
            Some(event_nid) => Some(StateEntry {
                key_nid,
                event_type: r.try_get("", "event_type")?,
                state_key: r.try_get("", "state_key")?,
                event_nid,
                event_id: r.try_get("", "event_id")?,
            }),
        };
        best.insert(key_nid, (lvl, entry));
    }
    let mut out: Vec<StateEntry> = best.into_values().filter_map(|(_, e)| e).collect();
    out.sort_by(|a, b| (&a.event_type, &a.state_key).cmp(&(&b.event_type, &b.state_key)));
    Ok(out)
}

/// The chain depth of a snapshot (0 for a full one).
pub async fn chain_depth(db: &Db, snapshot: i64) -> Result<i32, DbErr> {
    let row = db
        .query_one(
            "SELECT chain_depth FROM state_snapshots WHERE snapshot_nid = $1",
            [snapshot.into()],
        )
        .await?;
    match row {
        Some(r) => r.try_get("", "chain_depth"),
        None => Err(DbErr::Custom(format!("missing state snapshot {snapshot}"))),
    }
}

/// How a new snapshot is written: as a delta on a parent, or in full.
#[derive(Debug, Clone)]
pub enum NewSnapshot {
    Delta {
        parent: i64,
        parent_depth: i32,
        changes: Vec<(i64, Option<i64>)>,
    },
    Full(Vec<(i64, i64)>),
}

impl NewSnapshot {
    /// A snapshot that will start as `parent`'s state: a delta unless the
    /// chain would grow past [`MAX_CHAIN_DEPTH`], then a full copy of the
    /// state (read here, before the write transaction starts). Changes are
    /// added with [`NewSnapshot::set`].
    pub async fn plan(db: &Db, parent: Option<i64>) -> Result<Self, DbErr> {
        let Some(parent) = parent else {
            return Ok(NewSnapshot::Full(Vec::new()));
        };
        let parent_depth = chain_depth(db, parent).await?;
        if parent_depth < MAX_CHAIN_DEPTH {
            return Ok(NewSnapshot::Delta {
                parent,
                parent_depth,
                changes: Vec::new(),
            });
        }
        let full = load_snapshot(db, parent, None)
            .await?
            .into_iter()
            .map(|e| (e.key_nid, e.event_nid))
            .collect();
        Ok(NewSnapshot::Full(full))
    }

    /// Sets (or with `None` removes) one key.
    pub fn set(&mut self, key_nid: i64, event_nid: Option<i64>) {
        match self {
            NewSnapshot::Delta { changes, .. } => {
                changes.retain(|(k, _)| *k != key_nid);
                changes.push((key_nid, event_nid));
            }
            NewSnapshot::Full(all) => {
                all.retain(|(k, _)| *k != key_nid);
                if let Some(e) = event_nid {
                    all.push((key_nid, e));
                }
            }
        }
    }

    /// Writes the snapshot; returns its number.
    pub async fn write(&self, tx: &Tx, room_id: &str) -> Result<i64, DbErr> {
        let (parent, depth) = match self {
            NewSnapshot::Delta {
                parent,
                parent_depth,
                ..
            } => (Some(*parent), parent_depth + 1),
            NewSnapshot::Full(_) => (None, 0),
        };
        let row = tx
            .query_one(
                "INSERT INTO state_snapshots (room_id, parent, chain_depth) \
                 VALUES ($1, $2, $3) RETURNING snapshot_nid",
                [room_id.into(), parent.into(), depth.into()],
            )
            .await?
            .ok_or_else(|| DbErr::Custom("INSERT ... RETURNING returned nothing".into()))?;
        let nid: i64 = row.try_get("", "snapshot_nid")?;
        let entries: Vec<(i64, Option<i64>)> = match self {
            NewSnapshot::Delta { changes, .. } => changes.clone(),
            NewSnapshot::Full(all) => all.iter().map(|(k, e)| (*k, Some(*e))).collect(),
        };
        let mut values: Vec<sea_orm::Value> = Vec::with_capacity(entries.len() * 3);
        for (k, e) in entries {
            values.push(nid.into());
            values.push(k.into());
            values.push(e.into());
        }
        insert_rows(
            tx,
            "INSERT INTO state_snapshot_entries (snapshot_nid, state_key_nid, event_nid)",
            "",
            3,
            values,
        )
        .await?;
        Ok(nid)
    }
}

/// Sets one key of a room's current state.
pub async fn set_current(
    tx: &Tx,
    room_id: &str,
    event_type: &str,
    state_key: &str,
    event_nid: i64,
    event_id: &str,
) -> Result<(), DbErr> {
    tx.execute(
        "INSERT INTO current_state (room_id, event_type, state_key, event_nid, event_id) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (room_id, event_type, state_key) \
         DO UPDATE SET event_nid = excluded.event_nid, event_id = excluded.event_id",
        [
            room_id.into(),
            event_type.into(),
            state_key.into(),
            event_nid.into(),
            event_id.into(),
        ],
    )
    .await?;
    Ok(())
}

/// Removes one key from a room's current state (state resolution can drop
/// keys).
pub async fn remove_current(
    tx: &Tx,
    room_id: &str,
    event_type: &str,
    state_key: &str,
) -> Result<(), DbErr> {
    tx.execute(
        "DELETE FROM current_state WHERE room_id = $1 AND event_type = $2 AND state_key = $3",
        [room_id.into(), event_type.into(), state_key.into()],
    )
    .await?;
    Ok(())
}

/// The state before (`after == false`) or after an event, for federation
/// reads (`/state_ids`, `/state`). `None` when the event is unknown or has
/// no state: outliers, and rejected events we never placed.
pub async fn state_at_event(
    db: &Db,
    event_id: &str,
    after: bool,
) -> Result<Option<Vec<StateEntry>>, DbErr> {
    let Some(row) = db
        .query_one(
            "SELECT state_before, state_after FROM events WHERE event_id = $1",
            [event_id.into()],
        )
        .await?
    else {
        return Ok(None);
    };
    let snapshot: Option<i64> =
        row.try_get("", if after { "state_after" } else { "state_before" })?;
    match snapshot {
        Some(s) => load_snapshot(db, s, None).await.map(Some),
        None => Ok(None),
    }
}

/// The event IDs of the room's current state, optionally of one type.
pub async fn current_ids(
    db: &Db,
    room_id: &str,
    event_type: Option<&str>,
) -> Result<Vec<(String, String, String)>, DbErr> {
    let rows = match event_type {
        None => {
            db.query_all(
                "SELECT event_type, state_key, event_id FROM current_state WHERE room_id = $1 \
                 ORDER BY event_type, state_key",
                [room_id.into()],
            )
            .await?
        }
        Some(t) => {
            db.query_all(
                "SELECT event_type, state_key, event_id FROM current_state \
                 WHERE room_id = $1 AND event_type = $2 ORDER BY state_key",
                [room_id.into(), t.into()],
            )
            .await?
        }
    };
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("", "event_type")?,
                r.try_get("", "state_key")?,
                r.try_get("", "event_id")?,
            ))
        })
        .collect()
}

/// The current state's events for `keys`: `(type, state_key, json)`.
pub async fn current_events_for(
    db: &Db,
    room_id: &str,
    keys: &[(String, String)],
) -> Result<Vec<(String, String, String)>, DbErr> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut values: Vec<sea_orm::Value> = vec![room_id.into()];
    let mut cond = Vec::with_capacity(keys.len());
    for (i, (t, k)) in keys.iter().enumerate() {
        cond.push(format!(
            "(c.event_type = ${} AND c.state_key = ${})",
            2 + 2 * i,
            3 + 2 * i
        ));
        values.push(t.as_str().into());
        values.push(k.as_str().into());
    }
    let sql = format!(
        "SELECT c.event_type, c.state_key, e.json FROM current_state c \
         JOIN events e ON e.event_nid = c.event_nid WHERE c.room_id = $1 AND ({})",
        cond.join(" OR ")
    );
    db.query_all(&sql, values)
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get("", "event_type")?,
                r.try_get("", "state_key")?,
                r.try_get("", "json")?,
            ))
        })
        .collect()
}

/// The current state's event for one key.
pub async fn current_event_id(
    db: &Db,
    room_id: &str,
    event_type: &str,
    state_key: &str,
) -> Result<Option<String>, DbErr> {
    db.query_one(
        "SELECT event_id FROM current_state \
         WHERE room_id = $1 AND event_type = $2 AND state_key = $3",
        [room_id.into(), event_type.into(), state_key.into()],
    )
    .await?
    .map(|r| r.try_get("", "event_id"))
    .transpose()
}

/// Every current state key of each of `rooms`, without event content:
/// `(room_id, type, state_key, event_nid)`. Sync picks the entries it
/// needs (filters, lazy-loaded members) before reading any event. With
/// `without_members`, member entries are left out (lazy-loading reads the
/// few it needs with [`current_members_of`]).
pub async fn current_keys_of_rooms(
    db: &Db,
    rooms: &[&str],
    without_members: bool,
) -> Result<Vec<(String, String, String, i64)>, DbErr> {
    let mut out = Vec::new();
    let members = if without_members {
        " AND event_type <> 'm.room.member'"
    } else {
        ""
    };
    for chunk in rooms.chunks(IN_CHUNK) {
        let sql = format!(
            "SELECT room_id, event_type, state_key, event_nid FROM current_state \
             WHERE room_id IN ({}){members}",
            in_list(1, chunk.len())
        );
        for r in db
            .query_all(&sql, chunk.iter().map(|r| (*r).into()))
            .await?
        {
            out.push((
                r.try_get("", "room_id")?,
                r.try_get("", "event_type")?,
                r.try_get("", "state_key")?,
                r.try_get("", "event_nid")?,
            ));
        }
    }
    Ok(out)
}

/// The current member entries of `users` in `rooms` (every pair that
/// exists): `(room_id, user_id, event_nid)`.
pub async fn current_members_of(
    db: &Db,
    rooms: &[&str],
    users: &[&str],
) -> Result<Vec<(String, String, i64)>, DbErr> {
    select_current_members(
        db,
        "SELECT c.room_id, c.state_key, c.event_nid FROM current_state c",
        rooms,
        users,
        |r| {
            Ok((
                r.try_get("", "room_id")?,
                r.try_get("", "state_key")?,
                r.try_get("", "event_nid")?,
            ))
        },
    )
    .await
}

/// Runs `select` (which reads `current_state` as `c`, and may join it)
/// for the current member entries of `users` in `rooms`, in chunks of
/// both lists, and maps each row with `row`.
pub(crate) async fn select_current_members<T>(
    db: &Db,
    select: &str,
    rooms: &[&str],
    users: &[&str],
    row: impl Fn(&sea_orm::QueryResult) -> Result<T, DbErr>,
) -> Result<Vec<T>, DbErr> {
    let mut out = Vec::new();
    for room_chunk in rooms.chunks(IN_CHUNK / 2) {
        for user_chunk in users.chunks(IN_CHUNK / 2) {
            let sql = format!(
                "{select} WHERE c.event_type = 'm.room.member' AND c.room_id IN ({}) \
                 AND c.state_key IN ({})",
                in_list(1, room_chunk.len()),
                in_list(1 + room_chunk.len(), user_chunk.len())
            );
            let values = room_chunk
                .iter()
                .chain(user_chunk.iter())
                .map(|v| (*v).into());
            for r in &db.query_all(&sql, values).await? {
                out.push(row(r)?);
            }
        }
    }
    Ok(out)
}
