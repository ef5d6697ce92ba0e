//! A small in-memory map whose entries expire: the home of short-lived
//! server-side state (user-interactive auth sessions, login tokens,
//! shared-secret registration nonces). Bounded in size so that clients
//! creating entries cannot exhaust memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct ExpiringMap<V> {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<String, (Instant, V)>>,
}

impl<V> ExpiringMap<V> {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, V)>> {
        // A poisoned lock means a panic elsewhere mid-update; the entries
        // themselves are still consistent (each update is one map call).
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stores `value` under `key`, expiring `ttl` from now. When full,
    /// expired entries go first, then the oldest.
    pub fn insert(&self, key: String, value: V) {
        let now = Instant::now();
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| now.saturating_duration_since(*at) < ttl);
            if entries.len() >= self.capacity
                && let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(key, (now, value));
    }

    /// Removes and returns the live entry under `key`: each entry can be
    /// taken once, which is what makes tokens and nonces single-use.
    pub fn take(&self, key: &str) -> Option<V> {
        let (at, value) = self.lock().remove(key)?;
        (at.elapsed() < self.ttl).then_some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_use_and_bounded() {
        let m = ExpiringMap::new(Duration::from_secs(60), 3);
        m.insert("a".to_owned(), 1);
        assert_eq!(m.take("a"), Some(1));
        assert_eq!(m.take("a"), None);
        for (i, k) in ["b", "c", "d", "e"].into_iter().enumerate() {
            m.insert(k.to_owned(), i);
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(m.take("b"), None, "the oldest entry was evicted");
        assert_eq!(m.take("e"), Some(3));
    }

    #[test]
    fn expired_entries_are_gone() {
        let m = ExpiringMap::new(Duration::from_millis(10), 10);
        m.insert("a".to_owned(), ());
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(m.take("a"), None);
    }
}
