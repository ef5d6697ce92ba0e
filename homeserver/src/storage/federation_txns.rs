//! Owner of `federation_txns`: our answer to each transaction another
//! server sent (`PUT /send/{txnId}`), by origin and transaction ID, so a
//! retransmission gets the same answer without being processed again.
//! Answers are kept for [`RETENTION_MS`]; a server retries a transaction
//! within minutes, so after a day the same ID is a new transaction.

use sea_orm::DbErr;

use super::Db;
use crate::storage::Sql as _;

/// How long an answer is kept.
pub const RETENTION_MS: i64 = 24 * 60 * 60 * 1000;

/// The answer stored for `origin`'s transaction `txn_id`, if it is less
/// than [`RETENTION_MS`] old.
pub async fn get(db: &Db, origin: &str, txn_id: &str, now: i64) -> Result<Option<String>, DbErr> {
    let row = db
        .query_one(
            "SELECT response FROM federation_txns \
             WHERE origin = $1 AND txn_id = $2 AND created_ts >= $3",
            [origin.into(), txn_id.into(), (now - RETENTION_MS).into()],
        )
        .await?;
    row.map(|r| r.try_get("", "response")).transpose()
}

/// Stores the answer to a processed transaction (replacing one older than
/// the retention), and forgets answers past the retention: one indexed
/// delete per transaction keeps the table at a day of transactions
/// without a background job.
pub async fn store(
    db: &Db,
    origin: &str,
    txn_id: &str,
    response: &str,
    now: i64,
) -> Result<(), DbErr> {
    let tx = db.begin_write().await?;
    tx.execute(
        "DELETE FROM federation_txns WHERE created_ts < $1",
        [(now - RETENTION_MS).into()],
    )
    .await?;
    tx.execute(
        "INSERT INTO federation_txns (origin, txn_id, response, created_ts) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (origin, txn_id) DO UPDATE SET \
         response = excluded.response, created_ts = excluded.created_ts",
        [origin.into(), txn_id.into(), response.into(), now.into()],
    )
    .await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_are_kept_per_origin_for_a_day() {
        let db = crate::storage::test_db().await;
        let now = 10 * RETENTION_MS;
        store(&db, "a.test", "t1", "{\"pdus\":{}}", now)
            .await
            .expect("store");
        assert_eq!(
            get(&db, "a.test", "t1", now).await.expect("get").as_deref(),
            Some("{\"pdus\":{}}")
        );
        // Another origin's transaction of the same ID is another one.
        assert_eq!(get(&db, "b.test", "t1", now).await.expect("get"), None);
        // A day later it is forgotten, and pruned by the next store.
        let later = now + RETENTION_MS + 1;
        assert_eq!(get(&db, "a.test", "t1", later).await.expect("get"), None);
        store(&db, "a.test", "t2", "{}", later)
            .await
            .expect("store");
        let n = db
            .query_one("SELECT COUNT(*) AS n FROM federation_txns", [])
            .await
            .expect("count")
            .map(|r| r.try_get::<i64>("", "n").expect("n"));
        assert_eq!(n, Some(1));
    }
}
