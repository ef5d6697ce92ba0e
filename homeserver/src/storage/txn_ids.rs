//! Owner of `event_txn_ids`: the client's transaction ID of each event a
//! device sent, scoped to (user, device) as the spec scopes them. It makes
//! send, state and redact retries idempotent and lets us echo
//! `unsigned.transaction_id` to the sending device.

use std::collections::HashMap;

use sea_orm::DbErr;

use super::{Db, IN_CHUNK, Tx, in_list};
use crate::storage::Sql as _;

/// The event a device already sent with this transaction ID.
pub async fn get(
    db: &Db,
    user_id: &str,
    device_id: &str,
    txn_id: &str,
) -> Result<Option<String>, DbErr> {
    let row = db
        .query_one(
            "SELECT event_id FROM event_txn_ids \
             WHERE user_id = $1 AND device_id = $2 AND txn_id = $3",
            [user_id.into(), device_id.into(), txn_id.into()],
        )
        .await?;
    row.map(|r| r.try_get("", "event_id")).transpose()
}

pub async fn insert(
    tx: &Tx,
    user_id: &str,
    device_id: &str,
    txn_id: &str,
    event_id: &str,
    now_ms: i64,
) -> Result<(), DbErr> {
    tx.execute(
        "INSERT INTO event_txn_ids (user_id, device_id, txn_id, event_id, created_ts) \
         VALUES ($1, $2, $3, $4, $5)",
        [
            user_id.into(),
            device_id.into(),
            txn_id.into(),
            event_id.into(),
            now_ms.into(),
        ],
    )
    .await?;
    Ok(())
}

/// Transaction IDs of those of `event_ids` that this device sent.
pub async fn for_events(
    db: &Db,
    user_id: &str,
    device_id: &str,
    event_ids: &[&str],
) -> Result<HashMap<String, String>, DbErr> {
    let mut out = HashMap::new();
    for chunk in event_ids.chunks(IN_CHUNK) {
        let sql = format!(
            "SELECT event_id, txn_id FROM event_txn_ids \
             WHERE user_id = $1 AND device_id = $2 AND event_id IN ({})",
            in_list(3, chunk.len())
        );
        let mut values = vec![user_id.into(), device_id.into()];
        values.extend(chunk.iter().map(|id| (*id).into()));
        for row in db.query_all(&sql, values).await? {
            out.insert(row.try_get("", "event_id")?, row.try_get("", "txn_id")?);
        }
    }
    Ok(out)
}
