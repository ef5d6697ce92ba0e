//! A small map whose entries expire, plus the jitter that spreads expiries out.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries beyond this count trigger a sweep of expired ones, so a server talking to many
/// remote servers does not keep every name it ever resolved.
const SWEEP_ABOVE: usize = 4096;

pub(crate) struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The value and its expiry, also when already expired (callers may still use a stale
    /// value while a refetch fails, as Synapse does for well-known).
    pub(crate) fn get_with_expiry(&self, key: &K) -> Option<(V, Instant)> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(key).cloned()
    }

    /// The value if it has not expired.
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        self.get_with_expiry(key)
            .filter(|(_, expires)| Instant::now() < *expires)
            .map(|(v, _)| v)
    }

    pub(crate) fn insert(&self, key: K, value: V, expires: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= SWEEP_ABOVE {
            let now = Instant::now();
            entries.retain(|_, (_, e)| *e > now);
        }
        entries.insert(key, (value, expires));
    }
}

/// `period` scaled by a random factor in `[1 - jitter, 1 + jitter]`, so entries cached at the
/// same moment (e.g. at startup) do not all expire together.
pub(crate) fn jittered(period: Duration, jitter: f64) -> Duration {
    // A fresh randomly-keyed hasher is a cheap source of randomness without another crate.
    let random = std::hash::RandomState::new().hash_one(0u8);
    let unit = (random >> 11) as f64 / (1u64 << 53) as f64; // in [0, 1)
    let jitter = jitter.clamp(0.0, 1.0);
    period.mul_f64(1.0 - jitter + 2.0 * jitter * unit)
}

/// A random integer in `0..=max` (SRV weighted selection).
pub(crate) fn random_up_to(max: u32) -> u32 {
    let random = std::hash::RandomState::new().hash_one(1u8);
    (random % (u64::from(max) + 1)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_bounds() {
        let base = Duration::from_secs(1000);
        for _ in 0..200 {
            let d = jittered(base, 0.1);
            assert!(d >= Duration::from_secs(900) && d <= Duration::from_secs(1100));
        }
        assert_eq!(jittered(base, 0.0), base);
    }

    #[test]
    fn expired_entries_are_not_returned() {
        let cache = TtlCache::new();
        cache.insert("a", 1, Instant::now() + Duration::from_secs(60));
        cache.insert("b", 2, Instant::now());
        assert_eq!(cache.get(&"a"), Some(1));
        assert_eq!(cache.get(&"b"), None);
        assert!(cache.get_with_expiry(&"b").is_some());
    }
}
