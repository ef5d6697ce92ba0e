//! Owner of the `filters` table: sync filters a client uploads once and
//! then names by ID. IDs count up per user, as in Synapse; uploading a
//! filter identical to a stored one returns the stored ID, so clients that
//! upload their filter on every start do not grow the table.

use sea_orm::{DbErr, SqlErr};

use super::Db;
use crate::storage::Sql as _;

/// How often a create is retried when a concurrent create took the same ID.
const ATTEMPTS: usize = 3;

/// Stores `definition` (JSON text) for `user_id` and returns its ID.
pub async fn create(db: &Db, user_id: &str, definition: &str) -> Result<i64, DbErr> {
    let mut last_err = None;
    for _ in 0..ATTEMPTS {
        if let Some(row) = db
            .query_one(
                "SELECT filter_id FROM filters WHERE user_id = $1 AND definition = $2",
                [user_id.into(), definition.into()],
            )
            .await?
        {
            return row.try_get("", "filter_id");
        }
        let next: i64 = db
            .query_one(
                "SELECT COALESCE(MAX(filter_id), -1) + 1 AS next FROM filters WHERE user_id = $1",
                [user_id.into()],
            )
            .await?
            .map(|r| r.try_get("", "next"))
            .transpose()?
            .unwrap_or(0);
        match db
            .execute(
                "INSERT INTO filters (user_id, filter_id, definition) VALUES ($1, $2, $3)",
                [user_id.into(), next.into(), definition.into()],
            )
            .await
        {
            Ok(_) => return Ok(next),
            // Another request of the same user took this ID: count again.
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                last_err = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| DbErr::Custom("cannot allocate a filter ID".to_owned())))
}

/// The definition (JSON text) of one of the user's filters.
pub async fn get(db: &Db, user_id: &str, filter_id: i64) -> Result<Option<String>, DbErr> {
    db.query_one(
        "SELECT definition FROM filters WHERE user_id = $1 AND filter_id = $2",
        [user_id.into(), filter_id.into()],
    )
    .await?
    .map(|r| r.try_get("", "definition"))
    .transpose()
}
