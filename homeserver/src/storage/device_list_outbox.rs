//! Owner of `device_list_outbox` and `device_list_outbound_sent`: our
//! users' device-list changes on their way to the other servers that share
//! a room with them (migration m0013).
//!
//! A change is queued, one row per destination, in the transaction that
//! makes it ([`record`]), so a crash or a restart never loses one. Each
//! change has its own position of the device-list stream (the same position
//! the change takes in `device_list_changes`), which is the `stream_id` of
//! the EDU built from it: increasing per user, as the spec asks. When a
//! destination accepts the transaction carrying a user's updates,
//! [`mark_sent`] deletes the rows and remembers the last `stream_id` sent,
//! which becomes the next update's `prev_id` ([`with_prev_ids`]): the
//! receiver applies an update whose `prev_id` it holds and refetches the
//! whole list otherwise.

use std::collections::{BTreeSet, HashMap};

use sea_orm::DbErr;

use super::{Db, IN_CHUNK, Tx, in_list};
use crate::storage::Sql as _;

/// What changed for a user.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    /// These devices were added, deleted, renamed or got new keys.
    Devices(&'a [String]),
    /// The master or self-signing key changed (`m.signing_key_update`; a
    /// user-signing key is never shown to other servers).
    SigningKeys,
}

/// One queued change for one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poke {
    pub stream_id: i64,
    pub user_id: String,
    /// `None`: the user's cross-signing keys changed.
    pub device_id: Option<String>,
}

/// Records a change of our user `user_id`'s device list in the caller's
/// transaction: a device-list stream position per changed device (or one
/// for the cross-signing keys), each queued for every other server with
/// members in a room the user is joined to. Wake the sender after the
/// commit (`e2ee::device_lists_changed` does).
pub async fn record(tx: &Tx, user_id: &str, change: Change<'_>) -> Result<(), DbErr> {
    let destinations = destinations_of(tx, user_id).await?;
    let devices: Vec<Option<&str>> = match change {
        Change::Devices(ids) => ids.iter().map(|d| Some(d.as_str())).collect(),
        Change::SigningKeys => vec![None],
    };
    for device in devices {
        let stream_id = super::device_lists::record(tx, user_id).await?;
        for destination in &destinations {
            tx.execute(
                "INSERT INTO device_list_outbox (destination, stream_id, user_id, device_id) \
                 VALUES ($1, $2, $3, $4)",
                [
                    destination.as_str().into(),
                    stream_id.into(),
                    user_id.into(),
                    device.map(str::to_owned).into(),
                ],
            )
            .await?;
        }
    }
    Ok(())
}

/// The other servers with joined members in the rooms `user_id` is joined
/// to, as the transaction sees them (the user's own server excluded).
async fn destinations_of(tx: &Tx, user_id: &str) -> Result<BTreeSet<String>, DbErr> {
    let rows = tx
        .query_all(
            "SELECT DISTINCT o.user_id FROM room_memberships me \
             JOIN room_memberships o ON o.room_id = me.room_id \
             WHERE me.user_id = $1 AND me.membership = 'join' AND o.membership = 'join'",
            [user_id.into()],
        )
        .await?;
    let own = user_id.split_once(':').map(|(_, s)| s).unwrap_or("");
    let mut out = BTreeSet::new();
    for r in &rows {
        let member: String = r.try_get("", "user_id")?;
        if let Some((_, server)) = member.split_once(':')
            && server != own
        {
            out.insert(server.to_owned());
        }
    }
    Ok(out)
}

/// The oldest `limit` changes waiting for `destination`.
pub async fn pending(db: &Db, destination: &str, limit: i64) -> Result<Vec<Poke>, DbErr> {
    let sql = format!(
        "SELECT stream_id, user_id, device_id FROM device_list_outbox \
         WHERE destination = $1 ORDER BY stream_id {}",
        super::limit(limit)
    );
    db.query_all(&sql, [destination.into()])
        .await?
        .iter()
        .map(|r| {
            Ok(Poke {
                stream_id: r.try_get("", "stream_id")?,
                user_id: r.try_get("", "user_id")?,
                device_id: r.try_get("", "device_id")?,
            })
        })
        .collect()
}

/// The last `stream_id` of each of `users` that `destination` accepted.
pub async fn last_sent(
    db: &Db,
    destination: &str,
    users: &[String],
) -> Result<HashMap<String, i64>, DbErr> {
    let mut out = HashMap::new();
    for chunk in users.chunks(IN_CHUNK) {
        let mut values: Vec<sea_orm::Value> = vec![destination.into()];
        values.extend(chunk.iter().map(|u| sea_orm::Value::from(u.as_str())));
        let rows = db
            .query_all(
                &format!(
                    "SELECT user_id, stream_id FROM device_list_outbound_sent \
                     WHERE destination = $1 AND user_id IN ({})",
                    in_list(2, chunk.len())
                ),
                values,
            )
            .await?;
        for r in &rows {
            out.insert(r.try_get("", "user_id")?, r.try_get("", "stream_id")?);
        }
    }
    Ok(out)
}

/// The device-list updates among `pokes` (in stream order) with their
/// `prev_id`s: each names the user's previous update to the destination,
/// the one sent before (`last_sent`) for the first of a batch. Cross-signing
/// changes carry no `prev_id` (they are a separate EDU) and do not move
/// the chain.
pub fn with_prev_ids<'a>(
    last_sent: &HashMap<String, i64>,
    pokes: &'a [Poke],
) -> Vec<(&'a Poke, Vec<i64>)> {
    let mut last: HashMap<&str, i64> = last_sent.iter().map(|(u, s)| (u.as_str(), *s)).collect();
    let mut out = Vec::with_capacity(pokes.len());
    for poke in pokes {
        if poke.device_id.is_none() {
            out.push((poke, Vec::new()));
            continue;
        }
        let prev = last
            .insert(poke.user_id.as_str(), poke.stream_id)
            .into_iter()
            .collect();
        out.push((poke, prev));
    }
    out
}

/// `destination` accepted the transaction carrying `sent`: forget them and
/// remember each user's last device update as the next `prev_id`.
pub async fn mark_sent(db: &Db, destination: &str, sent: &[Poke]) -> Result<(), DbErr> {
    if sent.is_empty() {
        return Ok(());
    }
    let mut newest: HashMap<&str, i64> = HashMap::new();
    for poke in sent.iter().filter(|p| p.device_id.is_some()) {
        let e = newest
            .entry(poke.user_id.as_str())
            .or_insert(poke.stream_id);
        *e = (*e).max(poke.stream_id);
    }
    let tx = db.begin_write().await?;
    for (user, stream_id) in newest {
        tx.execute(
            "INSERT INTO device_list_outbound_sent (destination, user_id, stream_id) \
             VALUES ($1, $2, $3) ON CONFLICT (destination, user_id) \
             DO UPDATE SET stream_id = excluded.stream_id \
             WHERE device_list_outbound_sent.stream_id < excluded.stream_id",
            [destination.into(), user.into(), stream_id.into()],
        )
        .await?;
    }
    let ids: Vec<i64> = sent.iter().map(|p| p.stream_id).collect();
    for chunk in ids.chunks(IN_CHUNK) {
        let mut values: Vec<sea_orm::Value> = vec![destination.into()];
        values.extend(chunk.iter().map(|id| sea_orm::Value::from(*id)));
        tx.execute(
            &format!(
                "DELETE FROM device_list_outbox WHERE destination = $1 AND stream_id IN ({})",
                in_list(2, chunk.len())
            ),
            values,
        )
        .await?;
    }
    tx.commit().await
}

/// Destinations with queued changes (to resume after a restart).
pub async fn destinations_with_backlog(db: &Db) -> Result<Vec<String>, DbErr> {
    db.query_all("SELECT DISTINCT destination FROM device_list_outbox", [])
        .await?
        .iter()
        .map(|r| r.try_get("", "destination"))
        .collect()
}

/// Destinations with queued changes of `user_id` (to wake after a change).
pub async fn destinations_of_user(db: &Db, user_id: &str) -> Result<Vec<String>, DbErr> {
    db.query_all(
        "SELECT DISTINCT destination FROM device_list_outbox WHERE user_id = $1",
        [user_id.into()],
    )
    .await?
    .iter()
    .map(|r| r.try_get("", "destination"))
    .collect()
}

/// The `stream_id` of `user_id`'s newest device-list change (0 if none):
/// what `/user/devices` reports, so a receiver that fetched the list
/// skips the queued updates it already has and applies the next one.
pub async fn latest_stream_id(db: &Db, user_id: &str) -> Result<i64, DbErr> {
    let row = db
        .query_one(
            "SELECT MAX(stream_position) AS s FROM device_list_changes WHERE user_id = $1",
            [user_id.into()],
        )
        .await?;
    Ok(row
        .map(|r| r.try_get::<Option<i64>>("", "s"))
        .transpose()?
        .flatten()
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poke(stream_id: i64, user: &str, device: Option<&str>) -> Poke {
        Poke {
            stream_id,
            user_id: user.to_owned(),
            device_id: device.map(str::to_owned),
        }
    }

    #[test]
    fn prev_ids_chain_per_user_from_the_last_sent() {
        let last = HashMap::from([("@a:x".to_owned(), 3)]);
        let pokes = [
            poke(5, "@a:x", Some("D1")),
            poke(6, "@b:x", Some("D2")),
            poke(7, "@a:x", None),
            poke(8, "@a:x", Some("D3")),
            poke(9, "@b:x", Some("D2")),
        ];
        let chained: Vec<(i64, Vec<i64>)> = with_prev_ids(&last, &pokes)
            .into_iter()
            .map(|(p, prev)| (p.stream_id, prev))
            .collect();
        assert_eq!(
            chained,
            vec![
                (5, vec![3]),
                // Never sent before: no prev_id.
                (6, vec![]),
                // Cross-signing: not part of the chain.
                (7, vec![]),
                (8, vec![5]),
                (9, vec![6]),
            ]
        );
    }

    async fn joined(db: &Db, room: &str, user: &str, ordering: i64) {
        let tx = db.begin_write().await.expect("begin");
        crate::storage::memberships::set(
            &tx,
            room,
            user,
            "join",
            &format!("$e{ordering}"),
            ordering,
        )
        .await
        .expect("member");
        tx.commit().await.expect("commit");
    }

    #[tokio::test]
    async fn changes_are_queued_per_destination_and_forgotten_once_sent() {
        let db = crate::storage::test_db().await;
        joined(&db, "!r:here", "@a:here", 1).await;
        joined(&db, "!r:here", "@b:there", 2).await;
        joined(&db, "!r:here", "@c:third", 3).await;
        joined(&db, "!s:here", "@d:fourth", 4).await;

        let tx = db.begin_write().await.expect("begin");
        let devices = ["D1".to_owned(), "D2".to_owned()];
        record(&tx, "@a:here", Change::Devices(&devices))
            .await
            .expect("record");
        record(&tx, "@a:here", Change::SigningKeys)
            .await
            .expect("record");
        tx.commit().await.expect("commit");

        let mut with_backlog = destinations_with_backlog(&db).await.expect("backlog");
        with_backlog.sort();
        assert_eq!(with_backlog, vec!["there".to_owned(), "third".to_owned()]);
        let queued = pending(&db, "there", 10).await.expect("pending");
        assert_eq!(queued.len(), 3);
        assert_eq!(queued[0].device_id.as_deref(), Some("D1"));
        assert_eq!(queued[2].device_id, None);
        assert!(queued[0].stream_id < queued[1].stream_id);
        assert_eq!(
            latest_stream_id(&db, "@a:here").await.expect("latest"),
            queued[2].stream_id
        );

        mark_sent(&db, "there", &queued[..2]).await.expect("sent");
        let left = pending(&db, "there", 10).await.expect("pending");
        assert_eq!(left, vec![queued[2].clone()]);
        let last = last_sent(&db, "there", &["@a:here".to_owned()])
            .await
            .expect("last");
        assert_eq!(last.get("@a:here"), Some(&queued[1].stream_id));
        assert_eq!(pending(&db, "third", 10).await.expect("pending").len(), 3);
    }
}
