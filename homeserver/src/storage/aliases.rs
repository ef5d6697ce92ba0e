//! Owner of `room_aliases`: this server's room aliases (`#name:ourserver`),
//! the room each points to and who created it. An alias points to one
//! room; a room has any number of aliases.

use sea_orm::DbErr;

use super::{Db, Sql};
use crate::time::now_ms;

/// A stored alias mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasRow {
    pub room_id: String,
    pub creator: String,
}

/// The room `alias` points to, and its creator.
pub async fn get(db: &Db, alias: &str) -> Result<Option<AliasRow>, DbErr> {
    db.query_one(
        "SELECT room_id, creator FROM room_aliases WHERE room_alias = $1",
        [alias.into()],
    )
    .await?
    .map(|r| {
        Ok(AliasRow {
            room_id: r.try_get("", "room_id")?,
            creator: r.try_get("", "creator")?,
        })
    })
    .transpose()
}

/// Creates the alias; `false` (and nothing written) when it is taken,
/// also by a concurrent request: the primary key decides.
pub async fn create(
    db: &impl Sql,
    alias: &str,
    room_id: &str,
    creator: &str,
) -> Result<bool, DbErr> {
    let n = db
        .execute(
            "INSERT INTO room_aliases (room_alias, room_id, creator, created_ts) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (room_alias) DO NOTHING",
            [
                alias.into(),
                room_id.into(),
                creator.into(),
                now_ms().into(),
            ],
        )
        .await?;
    Ok(n > 0)
}

/// Deletes the alias if it still points to `room_id`; `false` if it did
/// not (deleted or re-pointed meanwhile).
pub async fn delete(db: &Db, alias: &str, room_id: &str) -> Result<bool, DbErr> {
    let n = db
        .execute(
            "DELETE FROM room_aliases WHERE room_alias = $1 AND room_id = $2",
            [alias.into(), room_id.into()],
        )
        .await?;
    Ok(n > 0)
}

/// The aliases of a room, oldest first.
pub async fn for_room(db: &Db, room_id: &str) -> Result<Vec<String>, DbErr> {
    db.query_all(
        "SELECT room_alias FROM room_aliases WHERE room_id = $1 \
         ORDER BY created_ts, room_alias",
        [room_id.into()],
    )
    .await?
    .iter()
    .map(|r| r.try_get("", "room_alias"))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_alias_is_created_once_and_deleted_only_for_its_room() {
        let db = crate::storage::test_db().await;
        assert!(create(&db, "#a:x", "!r:x", "@u:x").await.expect("test"));
        assert!(!create(&db, "#a:x", "!other:x", "@v:x").await.expect("test"));
        assert_eq!(
            get(&db, "#a:x").await.expect("test"),
            Some(AliasRow {
                room_id: "!r:x".into(),
                creator: "@u:x".into()
            })
        );
        assert!(create(&db, "#b:x", "!r:x", "@u:x").await.expect("test"));
        assert_eq!(
            for_room(&db, "!r:x").await.expect("test"),
            vec!["#a:x", "#b:x"]
        );
        assert!(!delete(&db, "#a:x", "!other:x").await.expect("test"));
        assert!(delete(&db, "#a:x", "!r:x").await.expect("test"));
        assert_eq!(get(&db, "#a:x").await.expect("test"), None);
    }
}
