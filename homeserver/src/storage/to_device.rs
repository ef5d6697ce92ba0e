//! Owner of `to_device_inbox`, `to_device_outbox` and `to_device_txns`:
//! send-to-device messages waiting for a local device, messages for users
//! on other servers kept for federation, and the transaction IDs that make
//! `PUT /sendToDevice` idempotent per sending device.
//!
//! Every send takes one [`Stream::ToDevice`] position, shared by all the
//! messages it stores (a device gets at most one message per send), so a
//! device's inbox is ordered by position: the order in which sends
//! committed. Messages stay until the device acknowledges them by syncing
//! with a token past their position ([`acknowledge`]).

use sea_orm::DbErr;

use super::streams::{self, Stream};
use super::{Db, Tx};
use crate::storage::Sql as _;

/// One message for one local device.
#[derive(Debug, Clone)]
pub struct InboxMessage {
    pub user_id: String,
    pub device_id: String,
    /// The content, a JSON object, as text.
    pub content: String,
}

/// Messages of one send for one remote server, as the `m.direct_to_device`
/// EDU will carry them (`messages` is `{user: {device or "*": content}}`).
#[derive(Debug, Clone)]
pub struct OutboxMessage {
    pub destination: String,
    pub message_id: String,
    pub messages: String,
}

/// How long a send's transaction ID is remembered: 24 hours, as long as
/// Synapse keeps the transaction IDs of sent events. Clients retry a failed
/// request within seconds or minutes (Synapse's response cache for
/// to-device sends lasts only 30 minutes); a retry after a day is a new
/// send, and at worst delivers an Olm message twice, which the recipient's
/// Olm session rejects as a replay.
pub const TXN_RETENTION_MS: i64 = 24 * 60 * 60 * 1000;

/// Records the transaction ID of a send; `false` if this device already
/// used it within [`TXN_RETENTION_MS`] (the send was done: store nothing
/// again).
///
/// Also forgets this device's transaction IDs older than the retention:
/// pruning on each send keeps the table at one day of sends per active
/// device without a background job (a device's rows all go when the
/// device is deleted), and the delete only touches that device's rows.
pub async fn claim_txn(
    tx: &Tx,
    user_id: &str,
    device_id: &str,
    txn_id: &str,
) -> Result<bool, DbErr> {
    prune_txns(
        tx,
        user_id,
        device_id,
        crate::time::now_ms() - TXN_RETENTION_MS,
    )
    .await?;
    let n = tx
        .execute(
            "INSERT INTO to_device_txns (user_id, device_id, txn_id, created_ts) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, device_id, txn_id) DO NOTHING",
            [
                user_id.into(),
                device_id.into(),
                txn_id.into(),
                crate::time::now_ms().into(),
            ],
        )
        .await?;
    Ok(n == 1)
}

/// Forgets the transaction IDs a device used before `before` (ms).
pub async fn prune_txns(
    tx: &Tx,
    user_id: &str,
    device_id: &str,
    before: i64,
) -> Result<u64, DbErr> {
    tx.execute(
        "DELETE FROM to_device_txns WHERE user_id = $1 AND device_id = $2 AND created_ts < $3",
        [user_id.into(), device_id.into(), before.into()],
    )
    .await
}

/// Stores the messages of one send from `sender` and returns their stream
/// position, in the caller's transaction.
pub async fn store(
    tx: &Tx,
    sender: &str,
    event_type: &str,
    local: &[InboxMessage],
    remote: &[OutboxMessage],
) -> Result<i64, DbErr> {
    let position = streams::next_position(tx, Stream::ToDevice).await?;
    for m in local {
        tx.execute(
            "INSERT INTO to_device_inbox \
             (stream_position, user_id, device_id, sender, event_type, content) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (user_id, device_id, stream_position) DO NOTHING",
            [
                position.into(),
                m.user_id.as_str().into(),
                m.device_id.as_str().into(),
                sender.into(),
                event_type.into(),
                m.content.as_str().into(),
            ],
        )
        .await?;
    }
    for m in remote {
        // One row per destination, each with its own outbox position.
        tx.execute(
            "INSERT INTO to_device_outbox \
             (stream_position, destination, sender, event_type, message_id, messages) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            [
                streams::next_position(tx, Stream::ToDeviceOutbox)
                    .await?
                    .into(),
                m.destination.as_str().into(),
                sender.into(),
                event_type.into(),
                m.message_id.as_str().into(),
                m.messages.as_str().into(),
            ],
        )
        .await?;
    }
    Ok(position)
}

/// The to-device messages for `device_id` of `user_id` with a position in
/// `(since, until]`, oldest first, at most `limit`, each as the event sync
/// delivers (`{"sender", "type", "content"}`), and the position sync must
/// put in its next token: the last delivered message's position when the
/// limit cut the batch short, else `until`.
///
/// Delivered messages are not deleted here: the client may never receive
/// this response. They go when the device syncs with the next token
/// ([`acknowledge`]), so a retried sync delivers them again.
pub async fn for_sync(
    db: &Db,
    user_id: &str,
    device_id: &str,
    since: i64,
    until: i64,
    limit: usize,
) -> Result<(Vec<serde_json::Value>, i64), DbErr> {
    let sql = format!(
        "SELECT stream_position, sender, event_type, content FROM to_device_inbox \
         WHERE user_id = $1 AND device_id = $2 AND stream_position > $3 \
         AND stream_position <= $4 ORDER BY stream_position {}",
        super::limit(limit)
    );
    let rows = db
        .query_all(
            &sql,
            [user_id.into(), device_id.into(), since.into(), until.into()],
        )
        .await?;
    let mut events = Vec::with_capacity(rows.len());
    let mut last = since;
    for r in &rows {
        let content: String = r.try_get("", "content")?;
        let content: serde_json::Value =
            serde_json::from_str(&content).map_err(|e| DbErr::Custom(e.to_string()))?;
        let sender: String = r.try_get("", "sender")?;
        let event_type: String = r.try_get("", "event_type")?;
        events.push(serde_json::json!({
            "sender": sender,
            "type": event_type,
            "content": content,
        }));
        last = r.try_get("", "stream_position")?;
    }
    let next = if rows.len() >= limit {
        last
    } else {
        until.max(since)
    };
    Ok((events, next))
}

/// Deletes the messages of a device up to position `up_to`: called when
/// the device syncs with a token whose to-device position is `up_to`, which
/// proves it received everything before.
pub async fn acknowledge(
    db: &Db,
    user_id: &str,
    device_id: &str,
    up_to: i64,
) -> Result<u64, DbErr> {
    db.execute(
        "DELETE FROM to_device_inbox WHERE user_id = $1 AND device_id = $2 \
         AND stream_position <= $3",
        [user_id.into(), device_id.into(), up_to.into()],
    )
    .await
}

/// One send's messages for one remote server, waiting in the outbox.
#[derive(Debug, Clone)]
pub struct QueuedToDevice {
    pub stream_position: i64,
    pub sender: String,
    pub event_type: String,
    pub message_id: String,
    /// `{user: {device or "*": content}}`, as JSON text.
    pub messages: String,
}

/// Messages waiting for `destination`, oldest first (for the federation
/// sender, which deletes them with [`remove_sent`] once delivered).
pub async fn outbox(db: &Db, destination: &str, limit: i64) -> Result<Vec<QueuedToDevice>, DbErr> {
    let sql = format!(
        "SELECT stream_position, sender, event_type, message_id, messages \
         FROM to_device_outbox WHERE destination = $1 \
         ORDER BY stream_position {}",
        super::limit(limit)
    );
    let rows = db.query_all(&sql, [destination.into()]).await?;
    rows.iter()
        .map(|r| {
            Ok(QueuedToDevice {
                stream_position: r.try_get("", "stream_position")?,
                sender: r.try_get("", "sender")?,
                event_type: r.try_get("", "event_type")?,
                message_id: r.try_get("", "message_id")?,
                messages: r.try_get("", "messages")?,
            })
        })
        .collect()
}

/// Forgets outbox messages `destination` has received.
pub async fn remove_sent(db: &Db, destination: &str, positions: &[i64]) -> Result<(), DbErr> {
    super::delete_in_chunks(
        db,
        "DELETE FROM to_device_outbox WHERE destination = $1 AND stream_position IN (",
        destination,
        positions,
    )
    .await
}

/// Servers with outbox messages waiting (their sender resumes at start-up).
pub async fn outbox_destinations(db: &Db) -> Result<Vec<String>, DbErr> {
    db.query_all(
        "SELECT DISTINCT destination FROM to_device_outbox",
        Vec::<sea_orm::Value>::new(),
    )
    .await?
    .iter()
    .map(|r| r.try_get("", "destination"))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn claim(db: &Db, device: &str, txn: &str) -> bool {
        let tx = db.begin_write().await.expect("begin");
        let fresh = claim_txn(&tx, "@u:x", device, txn).await.expect("claim");
        tx.commit().await.expect("commit");
        fresh
    }

    async fn age(db: &Db, txn: &str, by_ms: i64) {
        db.execute(
            "UPDATE to_device_txns SET created_ts = created_ts - $1 WHERE txn_id = $2",
            [by_ms.into(), txn.into()],
        )
        .await
        .expect("age");
    }

    async fn remembered(db: &Db) -> Vec<String> {
        db.query_all(
            "SELECT txn_id FROM to_device_txns ORDER BY txn_id",
            Vec::<sea_orm::Value>::new(),
        )
        .await
        .expect("txns")
        .iter()
        .map(|r| r.try_get("", "txn_id").expect("txn_id"))
        .collect()
    }

    #[tokio::test]
    async fn transaction_ids_are_forgotten_after_the_retention() {
        let db = crate::storage::test_db().await;
        assert!(claim(&db, "D1", "old").await);
        assert!(claim(&db, "D2", "other-device").await);
        assert!(!claim(&db, "D1", "old").await, "a retry within the day");
        age(&db, "old", TXN_RETENTION_MS + 1).await;
        age(&db, "other-device", TXN_RETENTION_MS + 1).await;
        // The device's next send forgets its own expired IDs only.
        assert!(claim(&db, "D1", "new").await);
        assert_eq!(remembered(&db).await, ["new", "other-device"]);
        // An expired ID is a new send again.
        assert!(claim(&db, "D2", "other-device").await);
        assert_eq!(remembered(&db).await, ["new", "other-device"]);
    }
}
