//! Owner of `remote_device_lists` and `remote_devices` (migration m0014):
//! the cached device lists of other servers' users who share a room with
//! one of ours. `federation::remote_keys` keeps them: it applies inbound
//! `m.device_list_update`s that follow on from what it holds ([`decide`]),
//! refetches a whole list when one was missed, and serves our clients'
//! `/keys/query` from lists that are not stale.

use std::collections::BTreeMap;

use sea_orm::DbErr;

use super::{Db, IN_CHUNK, in_list};
use crate::storage::Sql as _;

/// What we hold of a user's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListState {
    /// The `stream_id` of the last update applied (or of the fetched list).
    pub stream_id: i64,
    /// An update was missed: the list must be fetched again.
    pub stale: bool,
    /// Bumped whenever the list goes stale.
    pub generation: i64,
}

/// What to do with an inbound `m.device_list_update`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// We already have it.
    Ignore,
    /// It follows on from what we hold: apply it.
    Apply,
    /// We missed something, or do not hold the list: fetch it all again.
    Resync,
}

/// Whether an update `stream_id` with `prev_ids` follows on from `held`.
/// As in Synapse: an update at or below what we hold is old news; one whose
/// `prev_id`s we all hold (none at or below our position is missing, so an
/// empty list too: the sender never sent us this user before) applies;
/// anything else means we missed an update.
pub fn decide(held: Option<ListState>, stream_id: i64, prev_ids: &[i64]) -> Decision {
    match held {
        None => Decision::Resync,
        Some(h) if h.stale => Decision::Resync,
        Some(h) if stream_id <= h.stream_id => Decision::Ignore,
        Some(h) if prev_ids.iter().all(|p| *p <= h.stream_id) => Decision::Apply,
        Some(_) => Decision::Resync,
    }
}

/// A cached device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedDevice {
    pub device_id: String,
    pub display_name: Option<String>,
    /// The device keys (JSON), if the device has any.
    pub keys_json: Option<String>,
}

/// A whole cached list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CachedList {
    pub stream_id: i64,
    pub devices: Vec<CachedDevice>,
    pub master_key: Option<String>,
    pub self_signing_key: Option<String>,
}

/// What we hold of `user_id`'s list, if we track them.
pub async fn state(db: &Db, user_id: &str) -> Result<Option<ListState>, DbErr> {
    db.query_one(
        "SELECT stream_id, stale, generation FROM remote_device_lists WHERE user_id = $1",
        [user_id.into()],
    )
    .await?
    .map(|r| {
        Ok(ListState {
            stream_id: r.try_get("", "stream_id")?,
            stale: r.try_get("", "stale")?,
            generation: r.try_get("", "generation")?,
        })
    })
    .transpose()
}

/// Starts tracking `user_id` or marks the held list stale; returns the
/// new generation (a refetch started now may clear it).
pub async fn mark_stale(db: &Db, user_id: &str) -> Result<i64, DbErr> {
    let row = db
        .query_one(
            "INSERT INTO remote_device_lists (user_id, stream_id, stale, generation) \
             VALUES ($1, 0, $2, 1) ON CONFLICT (user_id) DO UPDATE \
             SET stale = $2, generation = remote_device_lists.generation + 1 \
             RETURNING generation",
            [user_id.into(), true.into()],
        )
        .await?;
    match row {
        Some(r) => r.try_get("", "generation"),
        None => Err(DbErr::RecordNotFound("remote_device_lists".to_owned())),
    }
}

/// Applies one device's update if the list is still fresh at
/// `held_stream_id` (a concurrent change makes it `false`: refetch).
/// `None` keys with `deleted` removes the device.
pub async fn apply(
    db: &Db,
    user_id: &str,
    held_stream_id: i64,
    stream_id: i64,
    device: &CachedDevice,
    deleted: bool,
) -> Result<bool, DbErr> {
    let tx = db.begin_write().await?;
    let updated = tx
        .execute(
            "UPDATE remote_device_lists SET stream_id = $3 \
             WHERE user_id = $1 AND stream_id = $2 AND stale = $4",
            [
                user_id.into(),
                held_stream_id.into(),
                stream_id.into(),
                false.into(),
            ],
        )
        .await?;
    if updated == 0 {
        return Ok(false);
    }
    tx.execute(
        "DELETE FROM remote_devices WHERE user_id = $1 AND device_id = $2",
        [user_id.into(), device.device_id.as_str().into()],
    )
    .await?;
    if !deleted {
        insert_device(&tx, user_id, device).await?;
    }
    tx.commit().await?;
    Ok(true)
}

async fn insert_device(tx: &super::Tx, user_id: &str, d: &CachedDevice) -> Result<(), DbErr> {
    tx.execute(
        "INSERT INTO remote_devices (user_id, device_id, display_name, keys_json) \
         VALUES ($1, $2, $3, $4)",
        [
            user_id.into(),
            d.device_id.as_str().into(),
            d.display_name.clone().into(),
            d.keys_json.clone().into(),
        ],
    )
    .await?;
    Ok(())
}

/// Replaces the held list with a fetched one, fresh, unless it went stale
/// again (another generation) while it was being fetched. `false` then.
pub async fn replace(
    db: &Db,
    user_id: &str,
    generation: i64,
    list: &CachedList,
) -> Result<bool, DbErr> {
    let tx = db.begin_write().await?;
    let updated = tx
        .execute(
            "UPDATE remote_device_lists SET stream_id = $3, stale = $4, master_key = $5, \
             self_signing_key = $6 WHERE user_id = $1 AND generation = $2",
            [
                user_id.into(),
                generation.into(),
                list.stream_id.into(),
                false.into(),
                list.master_key.clone().into(),
                list.self_signing_key.clone().into(),
            ],
        )
        .await?;
    if updated == 0 {
        return Ok(false);
    }
    tx.execute(
        "DELETE FROM remote_devices WHERE user_id = $1",
        [user_id.into()],
    )
    .await?;
    for d in &list.devices {
        insert_device(&tx, user_id, d).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Sets the cross-signing keys given (`m.signing_key_update`) of a tracked
/// user; `false` if we do not track them.
pub async fn set_signing_keys(
    db: &Db,
    user_id: &str,
    master_key: Option<String>,
    self_signing_key: Option<String>,
) -> Result<bool, DbErr> {
    let mut updated = 0;
    for (column, key) in [
        ("master_key", master_key),
        ("self_signing_key", self_signing_key),
    ] {
        if let Some(key) = key {
            updated += db
                .execute(
                    &format!("UPDATE remote_device_lists SET {column} = $2 WHERE user_id = $1"),
                    [user_id.into(), key.into()],
                )
                .await?;
        }
    }
    Ok(updated > 0)
}

/// The lists of `users` that are tracked and fresh.
pub async fn fresh_lists(db: &Db, users: &[String]) -> Result<BTreeMap<String, CachedList>, DbErr> {
    let mut out: BTreeMap<String, CachedList> = BTreeMap::new();
    for chunk in users.chunks(IN_CHUNK) {
        let mut values: Vec<sea_orm::Value> = vec![false.into()];
        values.extend(chunk.iter().map(|u| sea_orm::Value::from(u.as_str())));
        let rows = db
            .query_all(
                &format!(
                    "SELECT user_id, stream_id, master_key, self_signing_key \
                     FROM remote_device_lists WHERE stale = $1 AND user_id IN ({})",
                    in_list(2, chunk.len())
                ),
                values,
            )
            .await?;
        for r in &rows {
            out.insert(
                r.try_get("", "user_id")?,
                CachedList {
                    stream_id: r.try_get("", "stream_id")?,
                    devices: Vec::new(),
                    master_key: r.try_get("", "master_key")?,
                    self_signing_key: r.try_get("", "self_signing_key")?,
                },
            );
        }
        let rows = db
            .query_all(
                &format!(
                    "SELECT user_id, device_id, display_name, keys_json FROM remote_devices \
                     WHERE user_id IN ({}) ORDER BY device_id",
                    in_list(1, chunk.len())
                ),
                chunk.iter().map(|u| sea_orm::Value::from(u.as_str())),
            )
            .await?;
        for r in &rows {
            let user: String = r.try_get("", "user_id")?;
            if let Some(list) = out.get_mut(&user) {
                list.devices.push(CachedDevice {
                    device_id: r.try_get("", "device_id")?,
                    display_name: r.try_get("", "display_name")?,
                    keys_json: r.try_get("", "keys_json")?,
                });
            }
        }
    }
    Ok(out)
}

/// Tracked users whose list is stale.
pub async fn stale_users(db: &Db) -> Result<Vec<String>, DbErr> {
    db.query_all(
        "SELECT user_id FROM remote_device_lists WHERE stale = $1",
        [true.into()],
    )
    .await?
    .iter()
    .map(|r| r.try_get("", "user_id"))
    .collect()
}

/// Tracked users who share no joined room with a local user any more.
pub async fn no_longer_shared(db: &Db) -> Result<Vec<String>, DbErr> {
    db.query_all(
        "SELECT l.user_id FROM remote_device_lists l WHERE NOT EXISTS (\
         SELECT 1 FROM room_memberships them \
         JOIN room_memberships us ON us.room_id = them.room_id \
         JOIN users u ON u.user_id = us.user_id \
         WHERE them.user_id = l.user_id AND them.membership = 'join' \
         AND us.membership = 'join')",
        [],
    )
    .await?
    .iter()
    .map(|r| r.try_get("", "user_id"))
    .collect()
}

/// Whether `user_id` shares a joined room with one of our users.
pub async fn shares_room_with_local(db: &Db, user_id: &str) -> Result<bool, DbErr> {
    Ok(db
        .query_one(
            "SELECT 1 AS one FROM room_memberships them \
             JOIN room_memberships us ON us.room_id = them.room_id \
             JOIN users u ON u.user_id = us.user_id \
             WHERE them.user_id = $1 AND them.membership = 'join' \
             AND us.membership = 'join' LIMIT 1",
            [user_id.into()],
        )
        .await?
        .is_some())
}

/// Stops tracking `user_id`: drops the cached list.
pub async fn forget(db: &Db, user_id: &str) -> Result<(), DbErr> {
    let tx = db.begin_write().await?;
    for table in ["remote_devices", "remote_device_lists"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE user_id = $1"),
            [user_id.into()],
        )
        .await?;
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(stream_id: i64, stale: bool) -> Option<ListState> {
        Some(ListState {
            stream_id,
            stale,
            generation: 1,
        })
    }

    #[test]
    fn updates_apply_only_when_nothing_was_missed() {
        // Not tracked, or already stale: fetch the whole list.
        assert_eq!(decide(None, 5, &[4]), Decision::Resync);
        assert_eq!(decide(held(4, true), 5, &[4]), Decision::Resync);
        // Old news.
        assert_eq!(decide(held(7, false), 5, &[4]), Decision::Ignore);
        assert_eq!(decide(held(5, false), 5, &[4]), Decision::Ignore);
        // Follows on from what we hold (or from before it).
        assert_eq!(decide(held(4, false), 5, &[4]), Decision::Apply);
        assert_eq!(decide(held(4, false), 9, &[3]), Decision::Apply);
        assert_eq!(decide(held(4, false), 5, &[]), Decision::Apply);
        // A prev_id we never saw: one update was missed.
        assert_eq!(decide(held(4, false), 9, &[6]), Decision::Resync);
        assert_eq!(decide(held(4, false), 9, &[4, 6]), Decision::Resync);
    }

    fn device(id: &str, keys: Option<&str>) -> CachedDevice {
        CachedDevice {
            device_id: id.to_owned(),
            display_name: None,
            keys_json: keys.map(str::to_owned),
        }
    }

    #[tokio::test]
    async fn a_refetch_that_raced_a_missed_update_leaves_the_list_stale() {
        let db = crate::storage::test_db().await;
        let user = "@b:there";
        let first = mark_stale(&db, user).await.expect("track");
        let list = CachedList {
            stream_id: 4,
            devices: vec![device("D1", Some("{}"))],
            ..CachedList::default()
        };
        // A newer miss arrives while the first refetch is on its way.
        let second = mark_stale(&db, user).await.expect("stale");
        assert!(!replace(&db, user, first, &list).await.expect("replace"));
        assert!(
            fresh_lists(&db, &[user.to_owned()])
                .await
                .expect("read")
                .is_empty()
        );
        assert!(replace(&db, user, second, &list).await.expect("replace"));
        assert_eq!(stale_users(&db).await.expect("stale"), Vec::<String>::new());

        // An update following on from 4 applies; a repeat does not.
        assert!(
            apply(&db, user, 4, 5, &device("D2", None), false)
                .await
                .expect("apply")
        );
        assert!(
            !apply(&db, user, 4, 5, &device("D2", None), false)
                .await
                .expect("apply")
        );
        assert!(
            apply(&db, user, 5, 6, &device("D1", None), true)
                .await
                .expect("apply")
        );
        let lists = fresh_lists(&db, &[user.to_owned()]).await.expect("read");
        assert_eq!(lists[user].stream_id, 6);
        assert_eq!(lists[user].devices, vec![device("D2", None)]);

        forget(&db, user).await.expect("forget");
        assert_eq!(state(&db, user).await.expect("state"), None);
    }
}
