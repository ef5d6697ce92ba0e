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
//!
//! The committed positions are also kept in memory ([`Committed`]): a
//! transaction that took positions publishes them once it commits, so
//! sync reads its token without a query (every sync does, and a long-poll
//! that finds nothing new does nothing else). This holds because this
//! process is the database's only writer.

use std::sync::atomic::{AtomicI64, Ordering};

use sea_orm::DbErr;
use tokio::sync::OnceCell;

use super::{Db, Tx};
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
    const ALL: [Stream; 6] = [
        Stream::AccountData,
        Stream::Receipts,
        Stream::ToDevice,
        Stream::ToDeviceOutbox,
        Stream::DeviceLists,
        Stream::Backfill,
    ];

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

/// The latest committed position of each stream, shared by every handle
/// of one [`Db`].
#[derive(Debug, Default)]
pub(crate) struct Committed {
    positions: [AtomicI64; Stream::ALL.len()],
    /// Set once the table was read (on first use).
    loaded: OnceCell<()>,
}

impl Committed {
    /// Records positions whose transaction committed. Writers of a stream
    /// commit in position order, but may publish out of it: the maximum
    /// is what is committed.
    pub(crate) fn publish(&self, stream: Stream, position: i64) {
        self.positions[stream as usize].fetch_max(position, Ordering::AcqRel);
    }

    async fn current(&self, db: &Db, stream: Stream) -> Result<i64, DbErr> {
        self.loaded
            .get_or_try_init(|| async {
                for row in db
                    .query_all("SELECT stream, position FROM stream_positions", [])
                    .await?
                {
                    let key: String = row.try_get("", "stream")?;
                    if let Some(stream) = Stream::ALL.into_iter().find(|s| s.key() == key) {
                        self.publish(stream, row.try_get("", "position")?);
                    }
                }
                Ok::<_, DbErr>(())
            })
            .await?;
        Ok(self.positions[stream as usize].load(Ordering::Acquire))
    }
}

/// Advances `stream` and returns its new position (the first is 1), as part
/// of the caller's transaction `txn`. An upsert with `RETURNING`, which both
/// SQLite (3.35+) and PostgreSQL run in one statement, so the row need not
/// exist beforehand.
pub async fn next_position(tx: &Tx, stream: Stream) -> Result<i64, DbErr> {
    take_positions(tx, stream, 1).await
}

/// Advances `stream` by `n` (at least 1) at once and returns its new
/// position: the positions `new - n + 1 ..= new` are the caller's.
pub async fn take_positions(tx: &Tx, stream: Stream, n: i64) -> Result<i64, DbErr> {
    let n = n.max(1);
    let row = tx
        .query_one(
            "INSERT INTO stream_positions (stream, position) VALUES ($1, $2) \
             ON CONFLICT (stream) DO UPDATE SET position = stream_positions.position + $2 \
             RETURNING position",
            [stream.key().into(), n.into()],
        )
        .await?
        .ok_or_else(|| DbErr::Custom("stream position upsert returned no row".to_owned()))?;
    let position = row.try_get("", "position")?;
    tx.publishes_position(stream, position);
    Ok(position)
}

/// The latest committed positions of `wanted`, in order, from memory: a
/// sync token needs several at once, on every sync. Only what this
/// process committed (besides what the table held at the first call).
pub async fn committed_positions<const N: usize>(
    db: &Db,
    wanted: [Stream; N],
) -> Result<[i64; N], DbErr> {
    let mut out = [0; N];
    for (slot, stream) in out.iter_mut().zip(wanted) {
        *slot = db.committed_positions().current(db, stream).await?;
    }
    Ok(out)
}

/// The latest committed position of `stream` (0 before any change), read
/// from the table.
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
                    let tx = db.begin_write().await.expect("begin");
                    let p = next_position(&tx, Stream::AccountData)
                        .await
                        .expect("next position");
                    tx.commit().await.expect("commit");
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

        // A position is not current before its transaction commits, and
        // a rolled-back transaction does not advance the stream.
        let tx = db.begin_write().await.expect("begin");
        next_position(&tx, Stream::AccountData)
            .await
            .expect("next position");
        assert_eq!(
            committed_positions(&db, [Stream::AccountData]).await.ok(),
            Some([WRITERS * EACH])
        );
        drop(tx);
        let tx = db.begin_write().await.expect("begin");
        let top = take_positions(&tx, Stream::AccountData, 5)
            .await
            .expect("positions");
        assert_eq!(top, WRITERS * EACH + 5);
        tx.commit().await.expect("commit");
        assert_eq!(
            committed_positions(&db, [Stream::AccountData]).await.ok(),
            Some([top])
        );
        assert_eq!(
            current_position(&db, Stream::AccountData).await.ok(),
            Some(top)
        );
    }

    /// Positions kept in memory start from the table: a restarted server
    /// goes on from what was committed before.
    #[tokio::test]
    async fn a_new_handle_reads_the_committed_positions_from_the_table() {
        let (db, url) = crate::storage::test_db_with_url().await;
        for stream in [Stream::Receipts, Stream::Receipts, Stream::ToDevice] {
            let tx = db.begin_write().await.expect("begin");
            next_position(&tx, stream).await.expect("position");
            tx.commit().await.expect("commit");
        }
        let again = Db::connect(&url, 2).await.expect("connect");
        assert_eq!(
            committed_positions(
                &again,
                [Stream::Receipts, Stream::ToDevice, Stream::DeviceLists]
            )
            .await
            .ok(),
            Some([2, 1, 0])
        );
    }
}
