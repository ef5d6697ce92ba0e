//! Owner of `e2e_cross_signing_keys` and `e2e_signatures`: each user's
//! master, self-signing and user-signing keys as uploaded (signed JSON),
//! and the signatures uploaded later through `/keys/signatures/upload` on
//! device keys and master keys. `target_key_id` is a device ID for device
//! keys and the base64 public key for cross-signing keys, as the spec
//! names them in `signed_keys`.

use sea_orm::DbErr;

use super::{Db, IN_CHUNK, Tx, in_list};
use crate::storage::Sql as _;

/// One stored cross-signing key.
#[derive(Debug, Clone)]
pub struct CrossSigningKey {
    pub user_id: String,
    /// `master`, `self_signing` or `user_signing`.
    pub key_type: String,
    /// The unpadded base64 ed25519 public key.
    pub public_key: String,
    pub key_json: String,
}

/// One signature made by `signer_user_id`'s key `signer_key_id` on a key
/// of `target_user_id`.
#[derive(Debug, Clone)]
pub struct Signature {
    pub target_user_id: String,
    pub target_key_id: String,
    pub signer_user_id: String,
    pub signer_key_id: String,
    pub signature: String,
}

fn key_row(r: &sea_orm::QueryResult) -> Result<CrossSigningKey, DbErr> {
    Ok(CrossSigningKey {
        user_id: r.try_get("", "user_id")?,
        key_type: r.try_get("", "key_type")?,
        public_key: r.try_get("", "public_key")?,
        key_json: r.try_get("", "key_json")?,
    })
}

/// One key of a user, read in the caller's write transaction.
pub async fn get(tx: &Tx, user_id: &str, key_type: &str) -> Result<Option<CrossSigningKey>, DbErr> {
    tx.query_one(
        "SELECT user_id, key_type, public_key, key_json FROM e2e_cross_signing_keys \
         WHERE user_id = $1 AND key_type = $2",
        [user_id.into(), key_type.into()],
    )
    .await?
    .as_ref()
    .map(key_row)
    .transpose()
}

/// Deletes a user's cross-signing keys, the signatures those keys made
/// and the signatures others made on them (deactivation: nobody should
/// trust the identity any more). `true` if the user had any key.
pub async fn delete_user_keys(tx: &Tx, user_id: &str) -> Result<bool, DbErr> {
    let keys = tx
        .execute(
            "DELETE FROM e2e_cross_signing_keys WHERE user_id = $1",
            [user_id.into()],
        )
        .await?;
    // Signatures made by the user's keys (on their devices or on other
    // users' master keys), and every signature on the user's keys.
    tx.execute(
        "DELETE FROM e2e_signatures WHERE signer_user_id = $1 OR target_user_id = $1",
        [user_id.into()],
    )
    .await?;
    Ok(keys > 0)
}

/// The master key of a user, if any (outside a transaction).
pub async fn master_key(db: &Db, user_id: &str) -> Result<Option<CrossSigningKey>, DbErr> {
    db.query_one(
        "SELECT user_id, key_type, public_key, key_json FROM e2e_cross_signing_keys \
         WHERE user_id = $1 AND key_type = 'master'",
        [user_id.into()],
    )
    .await?
    .as_ref()
    .map(key_row)
    .transpose()
}

/// Stores (or replaces) one key of a user. A replaced key's signatures
/// stay keyed by the old public key and so no longer apply.
pub async fn set(tx: &Tx, key: &CrossSigningKey) -> Result<(), DbErr> {
    tx.execute(
        "INSERT INTO e2e_cross_signing_keys (user_id, key_type, public_key, key_json) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, key_type) DO UPDATE SET \
         public_key = excluded.public_key, key_json = excluded.key_json",
        [
            key.user_id.as_str().into(),
            key.key_type.as_str().into(),
            key.public_key.as_str().into(),
            key.key_json.as_str().into(),
        ],
    )
    .await?;
    Ok(())
}

/// Every cross-signing key of `users`.
pub async fn of_users(db: &Db, users: &[String]) -> Result<Vec<CrossSigningKey>, DbErr> {
    let mut out = Vec::new();
    for chunk in users.chunks(IN_CHUNK) {
        let rows = db
            .query_all(
                &format!(
                    "SELECT user_id, key_type, public_key, key_json FROM e2e_cross_signing_keys \
                     WHERE user_id IN ({})",
                    in_list(1, chunk.len())
                ),
                chunk.iter().map(|u| u.as_str().into()),
            )
            .await?;
        for r in &rows {
            out.push(key_row(r)?);
        }
    }
    Ok(out)
}

/// Stores a signature (replacing one by the same signer key on the same
/// target key).
pub async fn add_signature(tx: &Tx, sig: &Signature) -> Result<(), DbErr> {
    tx.execute(
        "INSERT INTO e2e_signatures \
         (target_user_id, target_key_id, signer_user_id, signer_key_id, signature) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (target_user_id, target_key_id, signer_user_id, signer_key_id) \
         DO UPDATE SET signature = excluded.signature",
        [
            sig.target_user_id.as_str().into(),
            sig.target_key_id.as_str().into(),
            sig.signer_user_id.as_str().into(),
            sig.signer_key_id.as_str().into(),
            sig.signature.as_str().into(),
        ],
    )
    .await?;
    Ok(())
}

/// The signatures on keys of `users` that `viewer` may see: those the key
/// owners made themselves (self-signing, device signatures of the master
/// key) and those `viewer` made (user-signing of other users' master
/// keys), as Synapse shows them.
pub async fn signatures_on(
    db: &Db,
    users: &[String],
    viewer: &str,
) -> Result<Vec<Signature>, DbErr> {
    let mut out = Vec::new();
    for chunk in users.chunks(IN_CHUNK) {
        let rows = db
            .query_all(
                &format!(
                    "SELECT target_user_id, target_key_id, signer_user_id, signer_key_id, \
                     signature FROM e2e_signatures WHERE target_user_id IN ({}) \
                     AND (signer_user_id = target_user_id OR signer_user_id = $1)",
                    in_list(2, chunk.len())
                ),
                std::iter::once(viewer.into()).chain(chunk.iter().map(|u| u.as_str().into())),
            )
            .await?;
        for r in &rows {
            out.push(Signature {
                target_user_id: r.try_get("", "target_user_id")?,
                target_key_id: r.try_get("", "target_key_id")?,
                signer_user_id: r.try_get("", "signer_user_id")?,
                signer_key_id: r.try_get("", "signer_key_id")?,
                signature: r.try_get("", "signature")?,
            });
        }
    }
    Ok(out)
}
