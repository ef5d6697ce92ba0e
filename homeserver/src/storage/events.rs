//! Owner of `events` and `event_edges`: every room event this server holds.
//!
//! # Identity and streams
//! Each event gets an `event_nid` (a small integer, used by state
//! snapshots instead of the 44-byte event ID) and, when it is part of a
//! room's timeline on this server, a `stream_ordering`: a position in one
//! server-wide, strictly increasing stream of timeline events. It is what
//! sync will read ("everything after position N"), and `/messages` tokens
//! are positions in it. Positions are handed out by
//! [`crate::rooms::stream::StreamPositions`], which also tells readers up
//! to where every position is committed. Outliers (events fetched for auth
//! chains, by federation) will have an `event_nid` but no stream position.
//! History received through `/backfill` gets negative positions, below
//! everything sync reads (see `rooms::ingest::backfill`).
//!
//! # Content
//! `json` is the PDU in federation format, canonical JSON, exactly as
//! signed (or its redacted form once redacted). The columns beside it are
//! copies for queries. `redacts` names the target of a redaction event;
//! `redacted_by` the redaction applied to this event (its content is then
//! already stripped). `replaces_state` is the event this state event
//! replaced in the room's state (for `unsigned.prev_content`).
//! `state_before` / `state_after` are snapshots ([`super::state`]).
//! `rejected_reason`, `soft_failed` and `outlier` are for federation;
//! locally built events are always accepted.
//!
//! # Edges
//! `event_edges` lists `prev_events` and `auth_events` by target ID (the
//! target may not be known yet), for backfill and auth chain walks.

use std::collections::HashMap;

use sea_orm::DbErr;

use super::{Db, IN_CHUNK, Tx, in_list, insert_rows};
use crate::storage::Sql as _;

/// An event as stored.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub event_nid: i64,
    pub event_id: String,
    pub stream_ordering: Option<i64>,
    pub room_id: String,
    pub event_type: String,
    pub state_key: Option<String>,
    pub sender: String,
    pub origin_server_ts: i64,
    pub depth: i64,
    pub json: String,
    pub redacts: Option<String>,
    pub redacted_by: Option<String>,
    pub replaces_state: Option<String>,
    pub state_before: Option<i64>,
    pub state_after: Option<i64>,
}

const COLS: &str = "event_nid, event_id, stream_ordering, room_id, event_type, state_key, \
    sender, origin_server_ts, depth, json, redacts, redacted_by, replaces_state, state_before, \
    state_after";

fn row(r: &sea_orm::QueryResult) -> Result<EventRow, DbErr> {
    Ok(EventRow {
        event_nid: r.try_get("", "event_nid")?,
        event_id: r.try_get("", "event_id")?,
        stream_ordering: r.try_get("", "stream_ordering")?,
        room_id: r.try_get("", "room_id")?,
        event_type: r.try_get("", "event_type")?,
        state_key: r.try_get("", "state_key")?,
        sender: r.try_get("", "sender")?,
        origin_server_ts: r.try_get("", "origin_server_ts")?,
        depth: r.try_get("", "depth")?,
        json: r.try_get("", "json")?,
        redacts: r.try_get("", "redacts")?,
        redacted_by: r.try_get("", "redacted_by")?,
        replaces_state: r.try_get("", "replaces_state")?,
        state_before: r.try_get("", "state_before")?,
        state_after: r.try_get("", "state_after")?,
    })
}

pub async fn get(db: &Db, event_id: &str) -> Result<Option<EventRow>, DbErr> {
    db.query_one(
        &format!("SELECT {COLS} FROM events WHERE event_id = $1"),
        [event_id.into()],
    )
    .await?
    .as_ref()
    .map(row)
    .transpose()
}

/// The events among `ids` that exist, in no particular order.
pub async fn get_many(db: &Db, ids: &[&str]) -> Result<Vec<EventRow>, DbErr> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IN_CHUNK) {
        let sql = format!(
            "SELECT {COLS} FROM events WHERE event_id IN ({})",
            in_list(1, chunk.len())
        );
        let rows = db
            .query_all(&sql, chunk.iter().map(|id| (*id).into()))
            .await?;
        for r in &rows {
            out.push(row(r)?);
        }
    }
    Ok(out)
}

/// Timeline events of a room strictly after stream position `after` and at
/// most `until`, oldest first (`forward`) or newest first.
pub async fn timeline_page(
    db: &Db,
    room_id: &str,
    after: i64,
    until: i64,
    forward: bool,
    limit: u64,
) -> Result<Vec<EventRow>, DbErr> {
    let order = if forward { "ASC" } else { "DESC" };
    let sql = format!(
        "SELECT {COLS} FROM events WHERE room_id = $1 AND stream_ordering > $2 \
         AND stream_ordering <= $3 ORDER BY stream_ordering {order} {}",
        super::limit(limit)
    );
    db.query_all(&sql, [room_id.into(), after.into(), until.into()])
        .await?
        .iter()
        .map(row)
        .collect()
}

/// The highest stream position of a room's timeline (0 when empty).
pub async fn max_stream_in_room(db: &Db, room_id: &str) -> Result<i64, DbErr> {
    let row = db
        .query_one(
            "SELECT MAX(stream_ordering) AS m FROM events WHERE room_id = $1",
            [room_id.into()],
        )
        .await?;
    Ok(row
        .map(|r| r.try_get::<Option<i64>>("", "m"))
        .transpose()?
        .flatten()
        .unwrap_or(0))
}

/// The room's backward extremities as seen from its oldest timeline
/// events: the `prev_events` of its `oldest` lowest-positioned timeline
/// events that are not timeline events here (missing, or held only as
/// outliers or rejected). Where `/backfill` continues from. Only the
/// oldest events are looked at, so the cost does not grow with history.
pub async fn backward_extremities(
    db: &Db,
    room_id: &str,
    oldest: u64,
) -> Result<Vec<String>, DbErr> {
    let sql = format!(
        "SELECT DISTINCT g.target_event_id AS id FROM \
         (SELECT event_nid FROM events WHERE room_id = $1 AND stream_ordering IS NOT NULL \
          ORDER BY stream_ordering {}) AS o \
         JOIN event_edges g ON g.event_nid = o.event_nid AND g.is_auth = $2 \
         LEFT JOIN events p ON p.event_id = g.target_event_id \
         WHERE p.event_nid IS NULL OR p.stream_ordering IS NULL \
         ORDER BY g.target_event_id",
        super::limit(oldest)
    );
    let rows = db.query_all(&sql, [room_id.into(), false.into()]).await?;
    rows.iter().map(|r| r.try_get("", "id")).collect()
}

/// The highest stream position ever used, to resume numbering at start-up.
pub async fn max_stream(db: &Db) -> Result<i64, DbErr> {
    let row = db
        .query_one("SELECT MAX(stream_ordering) AS m FROM events", [])
        .await?;
    Ok(row
        .map(|r| r.try_get::<Option<i64>>("", "m"))
        .transpose()?
        .flatten()
        .unwrap_or(0))
}

/// [`COLS`] qualified by a table alias, for joins.
fn cols_of(alias: &str) -> String {
    COLS.split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rooms per statement of the per-room reads below.
const ROOMS_PER_QUERY: usize = 100;

/// The first placeholder a [`latest_per_room`] condition may use.
pub const LATEST_PER_ROOM_FIRST_PARAM: usize = 3;

/// For each of `rooms`, its newest (at most `per_room`) timeline events at
/// stream positions in `(after, until]` that satisfy `condition` (SQL over
/// `events` columns with placeholders from [`LATEST_PER_ROOM_FIRST_PARAM`]),
/// oldest first. One
/// statement per [`ROOMS_PER_QUERY`] rooms: a `UNION ALL` of one
/// index-ordered, limited scan per room, so the cost follows the events
/// returned, not the rooms' history (a window function over all of a
/// room's events would read them all).
pub async fn latest_per_room(
    db: &Db,
    rooms: &[&str],
    (after, until): (i64, i64),
    per_room: u64,
    condition: Option<&(String, Vec<sea_orm::Value>)>,
) -> Result<Vec<EventRow>, DbErr> {
    let mut out = Vec::new();
    if per_room == 0 {
        return Ok(out);
    }
    let limit = super::limit(per_room);
    let (cond_sql, cond_values) = match condition {
        Some((sql, values)) => (format!(" AND {sql}"), values.clone()),
        None => (String::new(), Vec::new()),
    };
    for chunk in rooms.chunks(ROOMS_PER_QUERY) {
        let first_room = LATEST_PER_ROOM_FIRST_PARAM + cond_values.len();
        let branches: Vec<String> = (0..chunk.len())
            .map(|i| {
                format!(
                    "SELECT * FROM (SELECT {COLS} FROM events WHERE room_id = ${} \
                     AND stream_ordering > $1 AND stream_ordering <= $2{cond_sql} \
                     ORDER BY stream_ordering DESC {limit}) AS b{i}",
                    first_room + i
                )
            })
            .collect();
        let sql = branches.join(" UNION ALL ");
        let mut values: Vec<sea_orm::Value> = vec![after.into(), until.into()];
        values.extend(cond_values.iter().cloned());
        values.extend(chunk.iter().map(|r| (*r).into()));
        for r in &db.query_all(&sql, values).await? {
            out.push(row(r)?);
        }
    }
    out.sort_by_key(|r| r.stream_ordering);
    Ok(out)
}

/// The events of `nids`, in no particular order.
pub async fn get_many_by_nid(db: &Db, nids: &[i64]) -> Result<Vec<EventRow>, DbErr> {
    let mut out = Vec::with_capacity(nids.len());
    for chunk in nids.chunks(IN_CHUNK) {
        let sql = format!(
            "SELECT {COLS} FROM events WHERE event_nid IN ({})",
            in_list(1, chunk.len())
        );
        for r in &db
            .query_all(&sql, chunk.iter().map(|n| (*n).into()))
            .await?
        {
            out.push(row(r)?);
        }
    }
    Ok(out)
}

/// The current member events of `users` in `rooms` (those that have one),
/// read with the state entries that point at them.
pub async fn current_member_events(
    db: &Db,
    rooms: &[&str],
    users: &[&str],
) -> Result<Vec<EventRow>, DbErr> {
    let select = format!(
        "SELECT {} FROM current_state c JOIN events e ON e.event_nid = c.event_nid",
        cols_of("e")
    );
    super::state::select_current_members(db, &select, rooms, users, row).await
}

/// The state events of `rooms` sent at positions in `(after, until]` that
/// are still part of their room's current state: what changed in the
/// rooms' state over that range, by the events that hold it now.
pub async fn current_state_changed_in(
    db: &Db,
    rooms: &[&str],
    (after, until): (i64, i64),
) -> Result<Vec<EventRow>, DbErr> {
    let mut out = Vec::new();
    let cols = cols_of("e");
    for chunk in rooms.chunks(IN_CHUNK) {
        let sql = format!(
            "SELECT {cols} FROM events e JOIN current_state c ON c.event_nid = e.event_nid \
             WHERE e.room_id IN ({}) AND e.stream_ordering > $1 AND e.stream_ordering <= $2 \
             ORDER BY e.stream_ordering",
            in_list(3, chunk.len())
        );
        let mut values: Vec<sea_orm::Value> = vec![after.into(), until.into()];
        values.extend(chunk.iter().map(|r| (*r).into()));
        for r in &db.query_all(&sql, values).await? {
            out.push(row(r)?);
        }
    }
    Ok(out)
}

/// The `m.room.history_visibility` events ever sent in each of `rooms`
/// (their JSON, by room), to tell rooms whose history was always shared
/// from those that need a per-event visibility check.
pub async fn history_visibility_events(
    db: &Db,
    rooms: &[&str],
) -> Result<Vec<(String, String)>, DbErr> {
    let mut out = Vec::new();
    for chunk in rooms.chunks(IN_CHUNK) {
        let sql = format!(
            "SELECT room_id, json FROM events WHERE event_type = 'm.room.history_visibility' \
             AND state_key = '' AND room_id IN ({})",
            in_list(1, chunk.len())
        );
        for r in db
            .query_all(&sql, chunk.iter().map(|r| (*r).into()))
            .await?
        {
            out.push((r.try_get("", "room_id")?, r.try_get("", "json")?));
        }
    }
    Ok(out)
}

/// A new event's row.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub event_id: &'a str,
    /// `None` for events outside the timeline: outliers, soft-failed and
    /// rejected events. Every timeline reader selects by stream position,
    /// so those are never shown to clients.
    pub stream_ordering: Option<i64>,
    pub room_id: &'a str,
    pub event_type: &'a str,
    pub state_key: Option<&'a str>,
    pub sender: &'a str,
    pub origin_server_ts: i64,
    pub depth: i64,
    pub json: &'a str,
    pub redacts: Option<&'a str>,
    pub replaces_state: Option<&'a str>,
    pub state_before: Option<i64>,
    pub received_ts: i64,
    pub outlier: bool,
    pub soft_failed: bool,
    pub rejected_reason: Option<&'a str>,
}

impl NewEvent<'_> {
    /// The row's values, in the columns' order of [`insert_many`].
    fn values(&self) -> [sea_orm::Value; 17] {
        [
            self.event_id.into(),
            self.stream_ordering.into(),
            self.room_id.into(),
            self.event_type.into(),
            self.state_key.into(),
            self.sender.into(),
            self.origin_server_ts.into(),
            self.depth.into(),
            self.json.into(),
            self.redacts.into(),
            self.replaces_state.into(),
            self.state_before.into(),
            // `state_after` starts as `state_before`.
            self.state_before.into(),
            self.received_ts.into(),
            self.outlier.into(),
            self.soft_failed.into(),
            self.rejected_reason.into(),
        ]
    }
}

/// Inserts events in order, a batch of messages in one statement or a few;
/// returns their `event_nid`s in the same order. `state_after` starts
/// equal to `state_before`; a state event sets its own with
/// [`set_state_after`].
pub async fn insert_many(tx: &Tx, events: &[NewEvent<'_>]) -> Result<Vec<i64>, DbErr> {
    const HEAD: &str = "INSERT INTO events (event_id, stream_ordering, room_id, event_type, \
        state_key, sender, origin_server_ts, depth, json, redacts, replaces_state, state_before, \
        state_after, received_ts, outlier, soft_failed, rejected_reason)";
    let mut nids = Vec::with_capacity(events.len());
    let mut rest = events;
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(super::rows_per_insert(rest.len()));
        let sql = super::multi_row_insert(HEAD, "RETURNING event_id, event_nid", 17, chunk.len());
        let values: Vec<sea_orm::Value> = chunk.iter().flat_map(NewEvent::values).collect();
        // Neither database promises the order of `RETURNING` rows of a
        // multi-row insert: they are matched by event ID.
        let mut by_id = HashMap::with_capacity(chunk.len());
        for row in tx.query_all(&sql, values).await? {
            let id: String = row.try_get("", "event_id")?;
            by_id.insert(id, row.try_get::<i64>("", "event_nid")?);
        }
        for ev in chunk {
            nids.push(by_id.remove(ev.event_id).ok_or_else(|| {
                DbErr::Custom(format!("INSERT ... RETURNING left out {}", ev.event_id))
            })?);
        }
        rest = after;
    }
    Ok(nids)
}

/// How a stored event was received, for the inbound pipeline: whether it
/// can serve as an auth event (not rejected) and whether it has a state
/// (`state_after`; outliers have none).
#[derive(Debug, Clone)]
pub struct EventStatus {
    pub event_nid: i64,
    pub event_id: String,
    pub room_id: String,
    pub json: String,
    pub depth: i64,
    pub outlier: bool,
    pub soft_failed: bool,
    pub rejected_reason: Option<String>,
    pub state_before: Option<i64>,
    pub state_after: Option<i64>,
}

/// The statuses of the events among `ids` that are stored.
pub async fn statuses(db: &Db, ids: &[&str]) -> Result<Vec<EventStatus>, DbErr> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IN_CHUNK) {
        let sql = format!(
            "SELECT event_nid, event_id, room_id, json, depth, outlier, soft_failed, \
             rejected_reason, state_before, state_after FROM events WHERE event_id IN ({})",
            in_list(1, chunk.len())
        );
        for r in db
            .query_all(&sql, chunk.iter().map(|id| (*id).into()))
            .await?
        {
            out.push(EventStatus {
                event_nid: r.try_get("", "event_nid")?,
                event_id: r.try_get("", "event_id")?,
                room_id: r.try_get("", "room_id")?,
                json: r.try_get("", "json")?,
                depth: r.try_get("", "depth")?,
                outlier: r.try_get("", "outlier")?,
                soft_failed: r.try_get("", "soft_failed")?,
                rejected_reason: r.try_get("", "rejected_reason")?,
                state_before: r.try_get("", "state_before")?,
                state_after: r.try_get("", "state_after")?,
            });
        }
    }
    Ok(out)
}

/// The auth chain of `event_ids` (every stored event reachable through
/// `auth_events` edges, the starting events excluded), walked breadth
/// first with one query per level. `None` when it holds more than `max`
/// events: callers refuse rather than walk without bound (a hostile room
/// can make auth chains long).
pub async fn auth_chain_ids(
    db: &Db,
    event_ids: &[&str],
    max: usize,
) -> Result<Option<Vec<String>>, DbErr> {
    let mut seen: std::collections::HashSet<String> =
        event_ids.iter().map(|s| (*s).to_owned()).collect();
    let mut chain = Vec::new();
    let mut frontier: Vec<String> = seen.iter().cloned().collect();
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for chunk in frontier.chunks(IN_CHUNK) {
            // Only targets we hold: the chain is what we can serve.
            let sql = format!(
                "SELECT t.event_id AS target FROM events e \
                 JOIN event_edges ee ON ee.event_nid = e.event_nid \
                 JOIN events t ON t.event_id = ee.target_event_id \
                 WHERE ee.is_auth = $1 AND e.event_id IN ({})",
                in_list(2, chunk.len())
            );
            let mut values: Vec<sea_orm::Value> = vec![true.into()];
            values.extend(chunk.iter().map(|id| id.as_str().into()));
            for r in db.query_all(&sql, values).await? {
                let target: String = r.try_get("", "target")?;
                if seen.insert(target.clone()) {
                    chain.push(target.clone());
                    next.push(target);
                }
            }
            if chain.len() > max {
                return Ok(None);
            }
        }
        frontier = next;
    }
    Ok(Some(chain))
}

pub async fn set_state_after(tx: &Tx, event_nid: i64, snapshot: i64) -> Result<(), DbErr> {
    tx.execute(
        "UPDATE events SET state_after = $1 WHERE event_nid = $2",
        [snapshot.into(), event_nid.into()],
    )
    .await?;
    Ok(())
}

/// Records the `prev_events` and `auth_events` edges of stored events:
/// `(event_nid, prev_events, auth_events)` each.
pub async fn insert_edges(tx: &Tx, events: &[(i64, &[String], &[String])]) -> Result<(), DbErr> {
    let mut values: Vec<sea_orm::Value> = Vec::new();
    for (event_nid, prev_events, auth_events) in events {
        let edges = prev_events
            .iter()
            .map(|e| (e, false))
            .chain(auth_events.iter().map(|e| (e, true)));
        for (target, is_auth) in edges {
            values.push((*event_nid).into());
            values.push(target.as_str().into());
            values.push(is_auth.into());
        }
    }
    insert_rows(
        tx,
        "INSERT INTO event_edges (event_nid, target_event_id, is_auth)",
        "",
        3,
        values,
    )
    .await
}

/// Replaces an event's JSON with its redacted form and records which
/// redaction did it. The original content is not kept.
pub async fn apply_redaction(
    tx: &Tx,
    event_id: &str,
    redacted_json: &str,
    redaction_id: &str,
) -> Result<(), DbErr> {
    tx.execute(
        "UPDATE events SET json = $1, redacted_by = $2 WHERE event_id = $3",
        [redacted_json.into(), redaction_id.into(), event_id.into()],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_db;

    fn message<'a>(event_id: &'a str, stream: i64) -> NewEvent<'a> {
        NewEvent {
            event_id,
            stream_ordering: Some(stream),
            room_id: "!r:x",
            event_type: "m.room.message",
            state_key: None,
            sender: "@u:x",
            origin_server_ts: 1,
            depth: stream,
            json: "{}",
            redacts: None,
            replaces_state: None,
            state_before: Some(3),
            received_ts: 1,
            outlier: false,
            soft_failed: false,
            rejected_reason: None,
        }
    }

    #[tokio::test]
    async fn insert_many_answers_each_event_with_its_own_row() {
        let db = test_db().await;
        // Seven rows take three statements (four, two and one rows).
        let ids: Vec<String> = (0..7).map(|i| format!("$e{i}")).collect();
        let rows: Vec<NewEvent<'_>> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| message(id, 10 + i as i64))
            .collect();
        let tx = db.begin_write().await.expect("tx");
        let nids = insert_many(&tx, &rows).await.expect("insert");
        tx.commit().await.expect("commit");
        assert_eq!(nids.len(), 7);
        assert!(nids.windows(2).all(|w| w[0] < w[1]), "{nids:?}");
        for (i, (id, nid)) in ids.iter().zip(&nids).enumerate() {
            let row = get(&db, id).await.expect("get").expect("stored");
            assert_eq!(row.event_nid, *nid, "{id}");
            assert_eq!(row.stream_ordering, Some(10 + i as i64), "{id}");
            assert_eq!(row.state_after, Some(3), "{id}");
        }
        // A duplicate fails the whole statement: nothing half-written.
        let tx = db.begin_write().await.expect("tx");
        let again = [message("$new", 20), message("$e3", 21)];
        assert!(insert_many(&tx, &again).await.is_err());
        drop(tx);
        assert!(get(&db, "$new").await.expect("get").is_none());
    }
}
