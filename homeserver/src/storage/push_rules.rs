//! A user's push rules, stored as the global `m.push_rules` account data
//! `{"global": ruleset}` so sync delivers them like the spec shows. There
//! is no table of its own: this module only gives the account data its
//! meaning.
//!
//! Users start with the spec's predefined rules. Every read and write
//! merges the current server defaults into the stored rules (keeping the
//! user's `enabled` and `actions` choices), so rules the spec adds later
//! reach existing users.

use ruma::UserId;
use ruma::push::Ruleset;
use sea_orm::DbErr;
use serde::{Deserialize, Serialize};

use super::Db;
use super::account_data;

pub const EVENT_TYPE: &str = "m.push_rules";

#[derive(Deserialize, Serialize)]
struct Content {
    global: Ruleset,
}

/// Parses stored content (or starts from nothing) and merges in the
/// server's defaults.
fn with_defaults(user_id: &UserId, stored: Option<&str>) -> Result<Ruleset, DbErr> {
    let mut rules = match stored {
        Some(text) => {
            serde_json::from_str::<Content>(text)
                .map_err(|e| DbErr::Custom(format!("corrupt push rules of {user_id}: {e}")))?
                .global
        }
        None => Ruleset::new(),
    };
    rules.update_with_server_default(Ruleset::server_default(user_id));
    Ok(rules)
}

fn encode(rules: Ruleset) -> Result<String, DbErr> {
    serde_json::to_string(&Content { global: rules })
        .map_err(|e| DbErr::Custom(format!("cannot encode push rules: {e}")))
}

/// The user's push rules. The first access stores the defaults (and a
/// later one any new server defaults), so that `m.push_rules` is in the
/// user's account data for sync from then on.
pub async fn get(db: &Db, user_id: &UserId) -> Result<Ruleset, DbErr> {
    let stored = account_data::get(db, user_id.as_str(), None, EVENT_TYPE).await?;
    let rules = with_defaults(user_id, stored.as_deref())?;
    let current = encode(rules.clone())?;
    if stored.as_deref() != Some(current.as_str()) {
        update(db, user_id, |_| Ok::<_, DbErr>(())).await?;
    }
    Ok(rules)
}

/// Ensures `m.push_rules` is stored for the user; sync calls this before an
/// initial sync so the rules are among the account data it delivers.
pub async fn ensure_stored(db: &Db, user_id: &UserId) -> Result<(), DbErr> {
    get(db, user_id).await.map(|_| ())
}

/// Changes the user's rules by `change` atomically and returns the result.
/// `check` bounds the encoded size; if `change` or `check` fails nothing is
/// written.
pub async fn update<E, F>(db: &Db, user_id: &UserId, change: F) -> Result<Ruleset, E>
where
    E: From<DbErr>,
    F: FnOnce(&mut Ruleset) -> Result<(), E>,
{
    let mut result = None;
    account_data::update(db, user_id.as_str(), None, EVENT_TYPE, |stored| {
        let mut rules = with_defaults(user_id, stored.as_deref())?;
        change(&mut rules)?;
        let text = encode(rules.clone())?;
        result = Some(rules);
        Ok::<_, E>(text)
    })
    .await?;
    result.ok_or_else(|| E::from(DbErr::Custom("push rules update did not run".to_owned())))
}
