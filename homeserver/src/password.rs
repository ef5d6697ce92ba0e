//! Password hashing with Argon2id (PHC strings, salted, parameters stored
//! with the hash so they can be raised later without breaking old hashes).
//!
//! New hashes use OWASP's Argon2id setting of 7 MiB and 5 passes (one
//! lane), which its Password Storage Cheat Sheet lists as equivalent in
//! strength to the argon2 crate's default of 19 MiB and 2 passes: about the
//! same work per hash, with 12 MiB less memory held by each hashing thread.
//! Hashes stored with other parameters (the crate's default, which this
//! server used before) verify with their own.
//!
//! Hashing is deliberately slow and takes megabytes of working memory, so
//! it runs on a small pool of its own threads, one per core, never on the
//! async workers. Both bounds matter in production:
//!
//! - A burst of logins or registrations queues instead of taking hundreds
//!   of blocking threads at several MiB each (gigabytes).
//! - The working memory goes back to the system after each hash. With
//!   glibc that takes care: a freed allocation of a few MiB raises its
//!   threshold for mapping allocations on their own, so the next one came
//!   from the thread's heap and stayed there; slightly larger each time
//!   (alignment), resident memory grew by the buffer's size with every
//!   login (measured with 19 MiB buffers: 10 sequential registrations, 28
//!   MB to 204 MB). So the buffer is reserved above 32 MiB, which glibc
//!   always maps on its own and unmaps when freed without moving the
//!   threshold; only the blocks a hash uses are ever touched, so only they
//!   are resident, and only while it runs (an idle server does not hold
//!   7 MiB per pool thread).

use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use crate::api::error::ApiError;

/// The longest password accepted, as Synapse: hashing cost must not be
/// attacker-controlled.
pub const MAX_PASSWORD_LEN: usize = 512;

type Job = Box<dyn FnOnce() + Send>;

/// The hashing threads' queue, started on first use.
fn pool() -> &'static mpsc::Sender<Job> {
    static POOL: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        for i in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("password-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only to take one job.
                        let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(%e, "cannot start a password hashing thread");
            }
        }
        tx
    })
}

/// Runs `work` on the hashing pool; `None` if the pool is gone.
async fn on_pool<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(work());
    });
    pool().send(job).ok()?;
    rx.await.ok()
}

/// What the working memory of a hash is reserved as (see the module docs):
/// above glibc's 32 MiB ceiling for its dynamic mapping threshold.
const RESERVED_BYTES: usize = 33 << 20;

/// Runs `f` with `count` zeroed working blocks, wiped after use so no
/// password-derived data lingers in freed memory.
fn with_blocks<T>(count: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
    let reserve = (RESERVED_BYTES / std::mem::size_of::<Block>()).max(count);
    let mut blocks: Vec<Block> = Vec::with_capacity(reserve);
    blocks.resize(count, Block::new());
    let out = f(&mut blocks);
    blocks.fill(Block::new());
    // The wipe must not be optimised away as a store before a free.
    std::hint::black_box(&blocks);
    out
}

/// Memory (KiB) and passes of new hashes: OWASP's m = 7 MiB, t = 5.
const HASH_MEMORY_KIB: u32 = 7 * 1024;
const HASH_PASSES: u32 = 5;

/// Argon2id with [`HASH_MEMORY_KIB`] and [`HASH_PASSES`], one lane.
fn hash_blocking(password: &[u8]) -> Result<String, String> {
    let params = Params::new(HASH_MEMORY_KIB, HASH_PASSES, 1, None).map_err(|e| e.to_string())?;
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let salt = Salt::generate();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    with_blocks(params.block_count(), |blocks| {
        argon2.hash_password_into_with_memory(password, salt.as_ref(), &mut out, blocks)
    })
    .map_err(|e| e.to_string())?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| e.to_string())?,
        salt: Some(salt),
        hash: Some(Output::new(&out).map_err(|e| e.to_string())?),
    };
    Ok(phc.to_string())
}

/// Whether `password` gives `stored`'s hash, with `stored`'s own algorithm
/// and parameters.
fn verify_blocking(password: &[u8], stored: &str) -> bool {
    let parsed = match PasswordHash::new(stored) {
        Ok(parsed) => parsed,
        Err(e) => {
            tracing::error!(%e, "a stored password hash cannot be parsed");
            return false;
        }
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let algorithm = Algorithm::try_from(parsed.algorithm.as_str());
    let version = parsed
        .version
        .map_or(Ok(Version::default()), Version::try_from);
    let params = Params::try_from(&parsed);
    let (Ok(algorithm), Ok(version), Ok(params)) = (algorithm, version, params) else {
        tracing::error!("a stored password hash has unusable parameters");
        return false;
    };
    let count = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    let mut out = [0u8; Output::MAX_LENGTH];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    let hashed = with_blocks(count, |blocks| {
        argon2.hash_password_into_with_memory(password, salt.as_ref(), out, blocks)
    });
    // `Output` compares in constant time.
    hashed.is_ok() && Output::new(out).is_ok_and(|computed| computed == expected)
}

/// Hashes `password` to a PHC string (`$argon2id$v=19$...`).
pub async fn hash(password: String) -> Result<String, ApiError> {
    on_pool(move || hash_blocking(password.as_bytes()))
        .await
        .ok_or_else(|| ApiError::internal("password hashing failed", "the hashing pool is gone"))?
        .map_err(|e| ApiError::internal("cannot hash a password", e))
}

/// Whether `password` matches `stored`. An unparsable stored hash never
/// matches (and is logged): it must not lock the server up, nor let anyone in.
pub async fn verify(password: String, stored: String) -> bool {
    on_pool(move || verify_blocking(password.as_bytes(), &stored))
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
        assert!(h.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{h}");
        assert!(verify("correct horse".to_owned(), h.clone()).await);
        assert!(!verify("wrong horse".to_owned(), h.clone()).await);
        assert_ne!(h, hash("correct horse".to_owned()).await.expect("hash"));
        assert!(!verify("x".to_owned(), "not a hash".to_owned()).await);
    }

    /// Hashes made by the crate's own hasher (as stored before this
    /// module reused buffers) verify, and ours verify with the crate's
    /// verifier: the PHC strings are the same format.
    #[tokio::test]
    async fn compatible_with_the_crates_own_hasher() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let theirs = Argon2::default()
            .hash_password(b"old password")
            .expect("hash")
            .to_string();
        assert!(verify("old password".to_owned(), theirs.clone()).await);
        assert!(!verify("old passwore".to_owned(), theirs).await);
        let ours = hash("new password".to_owned()).await.expect("hash");
        let parsed = PasswordHash::new(&ours).expect("parse");
        assert!(
            Argon2::default()
                .verify_password(b"new password", &parsed)
                .is_ok()
        );
        // Other parameters (as if raised later) are read from the hash.
        let params = Params::new(8 * 1024, 1, 1, None).expect("params");
        let custom = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"custom")
            .expect("hash")
            .to_string();
        assert!(verify("custom".to_owned(), custom).await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_hashes_queues_on_the_pool_and_all_complete() {
        let tasks: Vec<_> = (0..8)
            .map(|i| tokio::spawn(hash(format!("pw{i}"))))
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            let h = task.await.expect("task").expect("hash");
            assert!(verify(format!("pw{i}"), h).await);
        }
    }
}
