//! A cache of rows read from the database, kept in step by their writers:
//! a writer drops the entries it changes ([`Cache::invalidate`]) when its
//! transaction commits.
//!
//! A read racing a write may have read the old rows just before the commit
//! and cache them just after the invalidation: every invalidation bumps a
//! generation, and a read that began before one is not cached
//! ([`Cache::get`] hands out the generation, [`Cache::put`] checks it).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard, PoisonError};

#[derive(Debug)]
pub(crate) struct Cache<K, V> {
    inner: Mutex<Entries<K, V>>,
    /// Entries kept at most; past it the cache starts again.
    capacity: usize,
}

#[derive(Debug)]
struct Entries<K, V> {
    generation: u64,
    map: HashMap<K, V>,
}

impl<K: Hash + Eq, V: Clone> Cache<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Entries {
                generation: 0,
                map: HashMap::new(),
            }),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Entries<K, V>> {
        // No critical section can panic half-way.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached value, and the generation to [`Cache::put`] a value read
    /// now with.
    pub(crate) fn get<Q>(&self, key: &Q) -> (u64, Option<V>)
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let entries = self.lock();
        (entries.generation, entries.map.get(key).cloned())
    }

    /// Caches a value read at `generation`, unless an invalidation came
    /// since.
    pub(crate) fn put(&self, generation: u64, key: K, value: V) {
        let mut entries = self.lock();
        if entries.generation != generation {
            return;
        }
        if entries.map.len() >= self.capacity {
            entries.map.clear();
        }
        entries.map.insert(key, value);
    }

    pub(crate) fn invalidate<Q>(&self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut entries = self.lock();
        entries.generation += 1;
        entries.map.remove(key);
    }

    /// Drops the entries whose value `dropped` picks: for writes that
    /// change entries they cannot name by key.
    pub(crate) fn invalidate_where(&self, dropped: impl Fn(&V) -> bool) {
        let mut entries = self.lock();
        entries.generation += 1;
        entries.map.retain(|_, v| !dropped(v));
    }

    /// Drops every entry.
    pub(crate) fn invalidate_all(&self) {
        let mut entries = self.lock();
        entries.generation += 1;
        entries.map.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_that_began_before_an_invalidation_is_not_cached() {
        let cache: Cache<String, u32> = Cache::new(10);
        let (generation, _) = cache.get("a");
        cache.invalidate("b");
        cache.put(generation, "a".to_owned(), 1);
        assert_eq!(cache.get("a").1, None);
        let (generation, _) = cache.get("a");
        cache.put(generation, "a".to_owned(), 1);
        assert_eq!(cache.get("a").1, Some(1));
        cache.invalidate("a");
        assert_eq!(cache.get("a").1, None);
    }

    #[test]
    fn invalidations_by_value_and_of_everything() {
        let cache: Cache<u32, u32> = Cache::new(10);
        let (generation, _) = cache.get(&0);
        for k in 0..4 {
            cache.put(generation, k, k % 2);
        }
        let (in_flight, _) = cache.get(&9);
        cache.invalidate_where(|v| *v == 1);
        assert_eq!((cache.get(&0).1, cache.get(&1).1), (Some(0), None));
        cache.put(in_flight, 9, 9);
        assert_eq!(cache.get(&9).1, None, "a read from before is not cached");
        cache.invalidate_all();
        assert_eq!(cache.get(&0).1, None);
    }

    #[test]
    fn a_full_cache_starts_again() {
        let cache: Cache<u32, u32> = Cache::new(2);
        for k in 0..3 {
            let (generation, _) = cache.get(&k);
            cache.put(generation, k, k);
        }
        assert_eq!(cache.get(&0).1, None);
        assert_eq!(cache.get(&2).1, Some(2));
    }
}
