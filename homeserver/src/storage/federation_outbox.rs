//! Owner of `federation_outbox` and `federation_destinations`: our own room
//! events waiting for each remote server, and each server's delivery
//! health (the retry back-off).
//!
//! An event is queued for its destinations in the transaction that stores
//! it ([`enqueue`]), so an event we acknowledged to a client is never
//! acknowledged without also being on its way to the servers in the room,
//! across crashes and restarts. Rows go when the destination accepts the
//! transaction that carried them ([`remove_sent`]).

use sea_orm::{DbErr, Value};

use super::{Db, Tx, insert_rows};
use crate::storage::Sql as _;

/// One queued event for one destination.
#[derive(Debug, Clone)]
pub struct QueuedPdu {
    pub stream_ordering: i64,
    /// The event as we hold it (canonical JSON).
    pub json: String,
}

/// A destination's delivery health.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Health {
    /// Failed attempts since the last success.
    pub failures: i32,
    /// The current back-off interval (0 when healthy).
    pub retry_interval_ms: i64,
    /// No attempt before this instant (0 when healthy).
    pub retry_at_ts: i64,
}

/// Queues events for other servers: `(destinations, stream_ordering)` of
/// events of `room_id`.
pub async fn enqueue(tx: &Tx, room_id: &str, events: &[(&[String], i64)]) -> Result<(), DbErr> {
    let mut values: Vec<Value> = Vec::new();
    for (destinations, stream_ordering) in events {
        for destination in *destinations {
            values.push(destination.as_str().into());
            values.push((*stream_ordering).into());
            values.push(room_id.into());
        }
    }
    insert_rows(
        tx,
        "INSERT INTO federation_outbox (destination, stream_ordering, room_id)",
        "ON CONFLICT (destination, stream_ordering) DO NOTHING",
        3,
        values,
    )
    .await
}

/// The oldest `limit` events waiting for `destination`.
pub async fn pending(db: &Db, destination: &str, limit: i64) -> Result<Vec<QueuedPdu>, DbErr> {
    let sql = format!(
        "SELECT o.stream_ordering, e.json FROM federation_outbox o \
         JOIN events e ON e.stream_ordering = o.stream_ordering \
         WHERE o.destination = $1 ORDER BY o.stream_ordering {}",
        super::limit(limit)
    );
    db.query_all(&sql, [destination.into()])
        .await?
        .iter()
        .map(|r| {
            Ok(QueuedPdu {
                stream_ordering: r.try_get("", "stream_ordering")?,
                json: r.try_get("", "json")?,
            })
        })
        .collect()
}

/// How many events wait for `destination`.
pub async fn pending_count(db: &Db, destination: &str) -> Result<i64, DbErr> {
    let row = db
        .query_one(
            "SELECT COUNT(*) AS n FROM federation_outbox WHERE destination = $1",
            [destination.into()],
        )
        .await?;
    Ok(match row {
        Some(r) => r.try_get("", "n")?,
        None => 0,
    })
}

/// Keeps only the newest waiting event of each room for `destination`:
/// after a long outage the destination fetches what lies between with
/// `get_missing_events` and the state, as with Synapse's catch-up, instead
/// of us replaying every event. Returns how many were dropped.
pub async fn keep_newest_per_room(db: &Db, destination: &str) -> Result<u64, DbErr> {
    db.execute(
        "DELETE FROM federation_outbox WHERE destination = $1 AND stream_ordering NOT IN \
         (SELECT MAX(stream_ordering) FROM federation_outbox WHERE destination = $1 \
          GROUP BY room_id)",
        [destination.into()],
    )
    .await
}

/// Forgets the events `destination` has accepted.
pub async fn remove_sent(db: &Db, destination: &str, sent: &[i64]) -> Result<(), DbErr> {
    super::delete_in_chunks(
        db,
        "DELETE FROM federation_outbox WHERE destination = $1 AND stream_ordering IN (",
        destination,
        sent,
    )
    .await
}

/// Servers with events waiting (their senders resume at start-up).
pub async fn destinations_with_backlog(db: &Db) -> Result<Vec<String>, DbErr> {
    db.query_all(
        "SELECT DISTINCT destination FROM federation_outbox",
        Vec::<Value>::new(),
    )
    .await?
    .iter()
    .map(|r| r.try_get("", "destination"))
    .collect()
}

/// `destination`'s health; a server never tried is healthy.
pub async fn health(db: &Db, destination: &str) -> Result<Health, DbErr> {
    let row = db
        .query_one(
            "SELECT failures, retry_interval_ms, retry_at_ts FROM federation_destinations \
             WHERE destination = $1",
            [destination.into()],
        )
        .await?;
    Ok(match row {
        Some(r) => Health {
            failures: r.try_get("", "failures")?,
            retry_interval_ms: r.try_get("", "retry_interval_ms")?,
            retry_at_ts: r.try_get("", "retry_at_ts")?,
        },
        None => Health::default(),
    })
}

/// Records `destination`'s health after an attempt (or a reset).
pub async fn set_health(
    db: &Db,
    destination: &str,
    health: Health,
    success_ts: Option<i64>,
) -> Result<(), DbErr> {
    db.execute(
        "INSERT INTO federation_destinations \
         (destination, failures, retry_interval_ms, retry_at_ts, last_success_ts) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (destination) DO UPDATE SET failures = $2, retry_interval_ms = $3, \
         retry_at_ts = $4, \
         last_success_ts = COALESCE($5, federation_destinations.last_success_ts)",
        [
            destination.into(),
            health.failures.into(),
            health.retry_interval_ms.into(),
            health.retry_at_ts.into(),
            success_ts.into(),
        ],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_db;

    async fn queue(db: &Db, destination: &str, stream: i64, room: &str) {
        let tx = db.begin_write().await.expect("begin");
        enqueue(&tx, room, &[(&[destination.to_owned()], stream)])
            .await
            .expect("enqueue");
        tx.commit().await.expect("commit");
    }

    async fn waiting(db: &Db, destination: &str) -> Vec<i64> {
        db.query_all(
            "SELECT stream_ordering FROM federation_outbox WHERE destination = $1 \
             ORDER BY stream_ordering",
            [destination.into()],
        )
        .await
        .expect("query")
        .iter()
        .map(|r| r.try_get("", "stream_ordering").expect("column"))
        .collect()
    }

    #[tokio::test]
    async fn catch_up_keeps_the_newest_event_of_each_room() {
        let db = test_db().await;
        for (stream, room) in [(1, "!a"), (2, "!b"), (3, "!a"), (4, "!a"), (5, "!b")] {
            queue(&db, "one.test", stream, room).await;
        }
        queue(&db, "two.test", 1, "!a").await;
        queue(&db, "two.test", 3, "!a").await;
        assert_eq!(keep_newest_per_room(&db, "one.test").await.expect("cut"), 3);
        assert_eq!(waiting(&db, "one.test").await, [4, 5]);
        // Other destinations keep their own backlog.
        assert_eq!(waiting(&db, "two.test").await, [1, 3]);
        remove_sent(&db, "one.test", &[4]).await.expect("remove");
        assert_eq!(waiting(&db, "one.test").await, [5]);
        assert_eq!(pending_count(&db, "two.test").await.expect("count"), 2);
        let mut backlog = destinations_with_backlog(&db).await.expect("destinations");
        backlog.sort();
        assert_eq!(backlog, ["one.test", "two.test"]);
    }

    #[tokio::test]
    async fn health_is_upserted_and_keeps_the_last_success() {
        let db = test_db().await;
        assert_eq!(
            health(&db, "x.test").await.expect("health"),
            Health::default()
        );
        set_health(&db, "x.test", Health::default(), Some(100))
            .await
            .expect("success");
        let failing = Health {
            failures: 2,
            retry_interval_ms: 20,
            retry_at_ts: 300,
        };
        set_health(&db, "x.test", failing, None)
            .await
            .expect("failure");
        assert_eq!(health(&db, "x.test").await.expect("health"), failing);
        let last: Option<i64> = db
            .query_one(
                "SELECT last_success_ts FROM federation_destinations WHERE destination = $1",
                ["x.test".into()],
            )
            .await
            .expect("query")
            .expect("row")
            .try_get("", "last_success_ts")
            .expect("column");
        assert_eq!(last, Some(100));
    }
}
