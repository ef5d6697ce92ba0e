//! Password hashing with Argon2id (PHC strings, salted, parameters stored
//! with the hash so they can be raised later without breaking old hashes).
//! Hashing is deliberately slow, so it runs on the blocking pool instead of
//! stalling the async workers.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::api::error::ApiError;

/// The longest password accepted, as Synapse: hashing cost must not be
/// attacker-controlled.
pub const MAX_PASSWORD_LEN: usize = 512;

/// Hashes `password` to a PHC string (`$argon2id$v=19$...`).
pub async fn hash(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| ApiError::internal("cannot hash a password", e))
    })
    .await
    .map_err(|e| ApiError::internal("password hashing task failed", e))?
}

/// Whether `password` matches `stored`. An unparsable stored hash never
/// matches (and is logged): it must not lock the server up, nor let anyone in.
pub async fn verify(password: String, stored: String) -> bool {
    tokio::task::spawn_blocking(move || match PasswordHash::new(&stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(e) => {
            tracing::error!(%e, "a stored password hash cannot be parsed");
            false
        }
    })
    .await
    .unwrap_or(false)
}

/// Spends the time of one verification without an account to check, so
/// that a login for an unknown user takes as long as a wrong password and
/// response times do not reveal which accounts exist.
pub async fn verify_nothing(password: String) {
    static DUMMY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    let dummy = DUMMY
        .get_or_try_init(|| hash(crate::random::token("")))
        .await;
    if let Ok(dummy) = dummy {
        let _ = verify(password, dummy.clone()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_then_verify() {
        let h = hash("correct horse".to_owned()).await.expect("hash");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify("correct horse".to_owned(), h.clone()).await);
        assert!(!verify("wrong horse".to_owned(), h.clone()).await);
        assert_ne!(h, hash("correct horse".to_owned()).await.expect("hash"));
        assert!(!verify("x".to_owned(), "not a hash".to_owned()).await);
    }
}
