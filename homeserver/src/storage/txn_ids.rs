//! Owner of `event_txn_ids`: the client's transaction ID of each event a
//! device sent, scoped as the spec scopes them: to the (user, device) and
//! the request path without the transaction ID (a [`scope`]). The same
//! transaction ID on another path (another room, event type or redacted
//! event) is a new request. It makes send and redact retries idempotent
//! and lets us echo `unsigned.transaction_id` to the sending device.

use std::collections::HashMap;

use sea_orm::DbErr;

use super::{Db, IN_CHUNK, Tx, in_list, insert_rows};
use crate::storage::Sql as _;

/// The endpoint part of a transaction ID's scope: the request path
/// without the version prefix and the transaction ID. Room and event IDs
/// contain no `/`, so distinct requests never share a scope.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// `PUT /rooms/{room_id}/send/{event_type}/{txn_id}`
    Send {
        room_id: &'a str,
        event_type: &'a str,
    },
    /// `PUT /rooms/{room_id}/redact/{event_id}/{txn_id}`
    Redact { room_id: &'a str, event_id: &'a str },
}

impl Scope<'_> {
    /// The stored form (also what migration m0007 derives for old rows).
    pub fn key(self) -> String {
        match self {
            Scope::Send {
                room_id,
                event_type,
            } => format!("rooms/{room_id}/send/{event_type}"),
            Scope::Redact { room_id, event_id } => format!("rooms/{room_id}/redact/{event_id}"),
        }
    }
}

/// The event a device already sent with this transaction ID on this path.
pub async fn get(
    db: &Db,
    user_id: &str,
    device_id: &str,
    scope: Scope<'_>,
    txn_id: &str,
) -> Result<Option<String>, DbErr> {
    let row = db
        .query_one(
            "SELECT event_id FROM event_txn_ids \
             WHERE user_id = $1 AND device_id = $2 AND scope = $3 AND txn_id = $4",
            [
                user_id.into(),
                device_id.into(),
                scope.key().into(),
                txn_id.into(),
            ],
        )
        .await?;
    row.map(|r| r.try_get("", "event_id")).transpose()
}

/// The events already sent with each of `keys` (user, device, scope,
/// transaction ID), by key; keys never used are absent. One query.
pub async fn get_many(
    db: &Db,
    keys: &[(&str, &str, Scope<'_>, &str)],
) -> Result<std::collections::HashMap<(String, String, String, String), String>, DbErr> {
    let mut out = std::collections::HashMap::new();
    // Four values per key, well under both backends' limits per chunk.
    for chunk in keys.chunks(200) {
        let mut values: Vec<sea_orm::Value> = Vec::with_capacity(chunk.len() * 4);
        let mut conditions = Vec::with_capacity(chunk.len());
        for (i, (user_id, device_id, scope, txn_id)) in chunk.iter().enumerate() {
            let n = 4 * i;
            conditions.push(format!(
                "(user_id = ${} AND device_id = ${} AND scope = ${} AND txn_id = ${})",
                n + 1,
                n + 2,
                n + 3,
                n + 4
            ));
            values.push((*user_id).into());
            values.push((*device_id).into());
            values.push(scope.key().into());
            values.push((*txn_id).into());
        }
        let sql = format!(
            "SELECT user_id, device_id, scope, txn_id, event_id FROM event_txn_ids WHERE {}",
            conditions.join(" OR ")
        );
        for row in db.query_all(&sql, values).await? {
            out.insert(
                (
                    row.try_get("", "user_id")?,
                    row.try_get("", "device_id")?,
                    row.try_get("", "scope")?,
                    row.try_get("", "txn_id")?,
                ),
                row.try_get("", "event_id")?,
            );
        }
    }
    Ok(out)
}

/// A transaction ID to record: the event `event_id` that `user_id`'s
/// `device_id` sent under `txn_id` at `scope`.
pub struct NewTxn<'a> {
    pub user_id: &'a str,
    pub device_id: &'a str,
    pub scope: Scope<'a>,
    pub txn_id: &'a str,
    pub event_id: &'a str,
}

/// Records transaction IDs, at `now_ms`.
pub async fn insert(tx: &Tx, txns: &[NewTxn<'_>], now_ms: i64) -> Result<(), DbErr> {
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(txns.len() * 6);
    for t in txns {
        values.push(t.user_id.into());
        values.push(t.device_id.into());
        values.push(t.scope.key().into());
        values.push(t.txn_id.into());
        values.push(t.event_id.into());
        values.push(now_ms.into());
    }
    insert_rows(
        tx,
        "INSERT INTO event_txn_ids (user_id, device_id, scope, txn_id, event_id, created_ts)",
        "",
        6,
        values,
    )
    .await
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

#[cfg(test)]
mod tests {
    use myelin_migrations::{Migrator, MigratorTrait};

    use super::*;

    /// A database from before transaction IDs were scoped keeps working
    /// retries: the upgrade gives each stored ID the scope of the endpoint
    /// that sent it.
    #[tokio::test]
    async fn upgrade_scopes_existing_transaction_ids() {
        let path = std::env::temp_dir().join(format!(
            "myelin_txn_upgrade_{}_{}.db",
            std::process::id(),
            crate::time::now_ms()
        ));
        let db = Db::connect(&format!("sqlite://{}?mode=rwc", path.display()), 2)
            .await
            .expect("connect");
        Migrator::up(db.conn(), Some(6))
            .await
            .expect("migrate to 6");
        for (event_id, event_type, redacts, txn) in [
            ("$msg", "m.room.message", None, "a"),
            ("$red", "m.room.redaction", Some("$msg"), "b"),
        ] {
            db.execute(
                "INSERT INTO events (event_id, room_id, event_type, sender, origin_server_ts, \
                 depth, json, redacts, outlier, soft_failed, received_ts) \
                 VALUES ($1, '!r:x', $2, '@u:x', 0, 1, '{}', $3, false, false, 0)",
                [event_id.into(), event_type.into(), redacts.into()],
            )
            .await
            .expect("event");
            db.execute(
                "INSERT INTO event_txn_ids (user_id, device_id, txn_id, event_id, created_ts) \
                 VALUES ('@u:x', 'D', $1, $2, 0)",
                [txn.into(), event_id.into()],
            )
            .await
            .expect("txn id");
        }
        db.migrate().await.expect("migrate");

        let send = Scope::Send {
            room_id: "!r:x",
            event_type: "m.room.message",
        };
        let redact = Scope::Redact {
            room_id: "!r:x",
            event_id: "$msg",
        };
        let got = |scope, txn: &'static str| {
            let db = db.clone();
            async move { get(&db, "@u:x", "D", scope, txn).await.expect("get") }
        };
        assert_eq!(got(send, "a").await.as_deref(), Some("$msg"));
        assert_eq!(got(redact, "b").await.as_deref(), Some("$red"));
        assert_eq!(got(redact, "a").await, None);
        let other_room = Scope::Send {
            room_id: "!other:x",
            event_type: "m.room.message",
        };
        assert_eq!(got(other_room, "a").await, None);

        // Many at once: the stored ones, by key.
        let found = get_many(
            &db,
            &[
                ("@u:x", "D", send, "a"),
                ("@u:x", "D", redact, "a"),
                ("@u:x", "E", send, "a"),
                ("@u:x", "D", redact, "b"),
            ],
        )
        .await
        .expect("get many");
        let key = |scope: Scope<'_>, txn: &str| {
            (
                "@u:x".to_owned(),
                "D".to_owned(),
                scope.key(),
                txn.to_owned(),
            )
        };
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found.get(&key(send, "a")).map(String::as_str), Some("$msg"));
        assert_eq!(
            found.get(&key(redact, "b")).map(String::as_str),
            Some("$red")
        );
        let _ = std::fs::remove_file(&path);
    }
}
