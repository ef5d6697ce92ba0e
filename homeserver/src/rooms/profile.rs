//! What room events copy from a user's profile (member events carry
//! `displayname` and `avatar_url`). Reads the accounts tables; never
//! writes them.

use sea_orm::DbErr;

use crate::storage::Db;
use crate::storage::Sql as _;

#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

/// The profile of a local user, or `None` when no such user exists.
pub async fn local_profile(db: &Db, user_id: &str) -> Result<Option<Profile>, DbErr> {
    let row = db
        .query_one(
            "SELECT displayname, avatar_url FROM users WHERE user_id = $1",
            [user_id.into()],
        )
        .await?;
    row.map(|r| {
        Ok(Profile {
            displayname: r.try_get("", "displayname")?,
            avatar_url: r.try_get("", "avatar_url")?,
        })
    })
    .transpose()
}
