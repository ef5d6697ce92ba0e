//! Owner of the `stream_positions` table: one monotonically increasing
//! counter per stream of changes sync delivers incrementally. A writer takes
//! the next position inside the transaction that makes the change, so the
//! change and its position commit together or not at all.
//!
//! Taking a position updates the stream's single row, which holds that row's
//! lock (PostgreSQL) or the database write lock (SQLite) until the writer's
//! transaction ends. Writers of one stream therefore commit in position
//! order: once a reader sees position P committed, no change with a
//! position below P can still appear, and "changed after P" never misses
//! a late commit.

use sea_orm::{ConnectionTrait, DbErr};

use super::Db;
use crate::storage::Sql as _;

/// A stream of changes with its own positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Global and per-room account data, including tags and push rules.
    AccountData,
    /// Read receipts (`m.read`, `m.read.private`).
    Receipts,
    /// Send-to-device messages for local devices.
    ToDevice,
    /// Send-to-device messages queued for remote servers.
    ToDeviceOutbox,
    /// Changes of a user's devices or their keys (incl. cross-signing).
    DeviceLists,
    /// Positions of backfilled history, used negated as its
    /// `stream_ordering` (see `rooms::ingest::backfill`).
    Backfill,
}

impl Stream {
    fn key(self) -> &'static str {
        match self {
            Stream::AccountData => "account_data",
            Stream::Receipts => "receipts",
            Stream::ToDevice => "to_device",
            Stream::ToDeviceOutbox => "to_device_outbox",
            Stream::DeviceLists => "device_lists",
            Stream::Backfill => "backfill",
        }
    }
}

/// Advances `stream` and returns its new position (the first is 1), as part
/// of the caller's transaction `txn`. An upsert with `RETURNING`, which both
/// SQLite (3.35+) and PostgreSQL run in one statement, so the row need not
/// exist beforehand.
pub async fn next_position(
    db: &Db,
    txn: &impl ConnectionTrait,
    stream: Stream,
) -> Result<i64, DbErr> {
    let row = txn
        .query_one_raw(db.stmt(
            "INSERT INTO stream_positions (stream, position) VALUES ($1, 1) \
             ON CONFLICT (stream) DO UPDATE SET position = stream_positions.position + 1 \
             RETURNING position",
            [stream.key().into()],
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("stream position upsert returned no row".to_owned()))?;
    row.try_get("", "position")
}

/// Advances `stream` by `n` (at least 1) at once and returns its new
/// position: the positions `new - n + 1 ..= new` are the caller's.
pub async fn take_positions(
    db: &Db,
    txn: &impl ConnectionTrait,
    stream: Stream,
    n: i64,
) -> Result<i64, DbErr> {
    let n = n.max(1);
    let row = txn
        .query_one_raw(db.stmt(
            "INSERT INTO stream_positions (stream, position) VALUES ($1, $2) \
             ON CONFLICT (stream) DO UPDATE SET position = stream_positions.position + $2 \
             RETURNING position",
            [stream.key().into(), n.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("stream position upsert returned no row".to_owned()))?;
    row.try_get("", "position")
}

/// The latest committed positions of `wanted`, in order, from one read of
/// the table (a handful of rows): a sync token needs several at once, on
/// every sync.
pub async fn current_positions<const N: usize>(
    db: &Db,
    wanted: [Stream; N],
) -> Result<[i64; N], DbErr> {
    let rows = db
        .query_all("SELECT stream, position FROM stream_positions", [])
        .await?;
    let mut out = [0; N];
    for row in rows {
        let stream: String = row.try_get("", "stream")?;
        if let Some(i) = wanted.iter().position(|w| w.key() == stream) {
            out[i] = row.try_get("", "position")?;
        }
    }
    Ok(out)
}

/// The latest committed position of `stream` (0 before any change): what a
/// sync token records so the next sync can ask for changes after it.
pub async fn current_position(db: &Db, stream: Stream) -> Result<i64, DbErr> {
    let row = db
        .query_one(
            "SELECT position FROM stream_positions WHERE stream = $1",
            [stream.key().into()],
        )
        .await?;
    match row {
        Some(row) => row.try_get("", "position"),
        None => Ok(0),
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    /// Concurrent writers, each taking positions in its own transactions,
    /// get every position exactly once and each sees its own increase.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn positions_are_unique_and_increasing_under_concurrent_writers() {
        let db = crate::storage::test_db().await;
        assert_eq!(
            current_position(&db, Stream::AccountData).await.ok(),
            Some(0)
        );
        const WRITERS: i64 = 6;
        const EACH: i64 = 20;
        let mut tasks = Vec::new();
        for _ in 0..WRITERS {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                let mut taken = Vec::new();
                for _ in 0..EACH {
                    let txn = db.begin_immediate().await.expect("begin");
                    let p = next_position(&db, &txn, Stream::AccountData)
                        .await
                        .expect("next position");
                    txn.commit().await.expect("commit");
                    taken.push(p);
                }
                taken
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            let taken = task.await.expect("writer");
            assert!(taken.windows(2).all(|w| w[0] < w[1]), "{taken:?}");
            all.extend(taken);
        }
        all.sort_unstable();
        assert_eq!(all, (1..=WRITERS * EACH).collect::<Vec<_>>());
        assert_eq!(
            current_position(&db, Stream::AccountData).await.ok(),
            Some(WRITERS * EACH)
        );

        // A rolled-back transaction does not advance the stream.
        let txn = db.begin_immediate().await.expect("begin");
        next_position(&db, &txn, Stream::AccountData)
            .await
            .expect("next position");
        txn.rollback().await.expect("rollback");
        assert_eq!(
            current_position(&db, Stream::AccountData).await.ok(),
            Some(WRITERS * EACH)
        );
    }
}
