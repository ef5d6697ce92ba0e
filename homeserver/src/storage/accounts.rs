//! Owner of the `users`, `devices`, `access_tokens` and `refresh_tokens`
//! tables.

use sea_orm::DbErr;
use sha2::{Digest, Sha256};

use super::Db;
use crate::api::auth::Authed;

/// SHA-256 of a token, hex-encoded: tokens are stored only as hashes.
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

pub enum TokenLookup {
    Valid(Authed),
    Expired,
    Unknown,
}

/// Finds the live session an access token belongs to.
pub async fn lookup_access_token(db: &Db, token: &str) -> Result<TokenLookup, DbErr> {
    let hash = hash_token(token);
    let row = db
        .query_one(
            "SELECT t.user_id, t.device_id, t.expires_ts, u.is_admin, u.deactivated \
             FROM access_tokens t JOIN users u ON u.user_id = t.user_id WHERE t.token_hash = $1",
            [hash.clone().into()],
        )
        .await?;
    let Some(row) = row else {
        return Ok(TokenLookup::Unknown);
    };
    let user_id: String = row.try_get("", "user_id")?;
    let device_id: String = row.try_get("", "device_id")?;
    let expires_ts: Option<i64> = row.try_get("", "expires_ts")?;
    let is_admin: bool = row.try_get("", "is_admin")?;
    let deactivated: bool = row.try_get("", "deactivated")?;
    if deactivated {
        return Ok(TokenLookup::Unknown);
    }
    if expires_ts.is_some_and(|e| e <= crate::time::now_ms()) {
        return Ok(TokenLookup::Expired);
    }
    let Ok(user_id) = ruma::UserId::parse(&user_id) else {
        // Only ever written by us from validated IDs.
        return Err(DbErr::Custom(format!("corrupt session row for {user_id}")));
    };
    let device_id = ruma::OwnedDeviceId::from(device_id.as_str());
    Ok(TokenLookup::Valid(Authed {
        user_id,
        device_id,
        is_admin,
        token_hash: hash,
    }))
}
