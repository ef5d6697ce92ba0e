//! Token-bucket rate limiting, per client IP (registration, login) or per
//! user (messages). Each key has a bucket of `burst` tokens refilled at
//! `per_second`; a request takes one token, or is refused with the time
//! until one is available. `per_second = 0` turns a limit off.
//!
//! Memory is bounded: buckets that have refilled completely carry no
//! information (a fresh bucket is identical), so they are dropped when the
//! table grows past its cap.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::api::error::ApiError;
use crate::config::{RateLimit, RateLimitsConfig};

/// What is being limited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Limit {
    /// `POST /register` and `/register/available`, per client IP.
    Registration,
    /// `POST /login`, per client IP.
    Login,
    /// Sending room messages, per user.
    Message,
}

/// Above this many buckets, full ones are evicted.
const MAX_BUCKETS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

pub struct RateLimiter {
    registration: RateLimit,
    login: RateLimit,
    message: RateLimit,
    max_buckets: usize,
    buckets: Mutex<HashMap<(Limit, String), Bucket>>,
}

impl RateLimiter {
    pub fn new(config: &RateLimitsConfig) -> Self {
        Self::with_capacity(config, MAX_BUCKETS)
    }

    fn with_capacity(config: &RateLimitsConfig, max_buckets: usize) -> Self {
        Self {
            registration: config.registration,
            login: config.login,
            message: config.message,
            max_buckets,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn config(&self, limit: Limit) -> RateLimit {
        match limit {
            Limit::Registration => self.registration,
            Limit::Login => self.login,
            Limit::Message => self.message,
        }
    }

    /// Takes a token from `key`'s bucket for `limit`, or fails with
    /// 429 `M_LIMIT_EXCEEDED` and `retry_after_ms`.
    pub fn check(&self, limit: Limit, key: &str) -> Result<(), ApiError> {
        self.check_at(limit, key, Instant::now())
            .map_err(ApiError::limit_exceeded)
    }

    fn check_at(&self, limit: Limit, key: &str, now: Instant) -> Result<(), Duration> {
        let RateLimit { per_second, burst } = self.config(limit);
        if per_second <= 0.0 {
            return Ok(());
        }
        // A zero burst would refuse everything forever; one request is the
        // smallest bucket that still honours `per_second`.
        let capacity = f64::from(burst.max(1));
        // A poisoned lock only means another request panicked mid-update; the
        // counts are still usable.
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= self.max_buckets && !buckets.contains_key(&(limit, key.to_owned())) {
            self.evict_full(&mut buckets, now);
        }
        let bucket = buckets.entry((limit, key.to_owned())).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / per_second;
            Err(Duration::from_secs_f64(wait.max(0.001)))
        }
    }

    /// Drops the buckets that would be full by `now`. If every bucket is
    /// still draining (a flood of distinct keys), the table is cleared:
    /// forgetting some limits beats growing without bound.
    fn evict_full(&self, buckets: &mut HashMap<(Limit, String), Bucket>, now: Instant) {
        buckets.retain(|(limit, _), b| {
            let RateLimit { per_second, burst } = self.config(*limit);
            let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
            b.tokens + elapsed * per_second < f64::from(burst.max(1))
        });
        if buckets.len() >= self.max_buckets {
            tracing::warn!(buckets = buckets.len(), "rate limiter table full; clearing");
            buckets.clear();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.lock().map(|b| b.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_second: f64, burst: u32) -> RateLimitsConfig {
        let l = RateLimit { per_second, burst };
        RateLimitsConfig {
            registration: l,
            login: l,
            message: RateLimit {
                per_second: 0.0,
                burst: 1,
            },
        }
    }

    #[test]
    fn burst_then_refuse_then_refill() {
        let rl = RateLimiter::new(&limits(2.0, 3));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(rl.check_at(Limit::Login, "1.2.3.4", t0).is_ok());
        }
        let wait = rl
            .check_at(Limit::Login, "1.2.3.4", t0)
            .expect_err("bucket empty");
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        // Other keys and other limits have their own buckets.
        assert!(rl.check_at(Limit::Login, "5.6.7.8", t0).is_ok());
        assert!(rl.check_at(Limit::Registration, "1.2.3.4", t0).is_ok());
        // Half a second refills one token at 2/s.
        let t1 = t0 + Duration::from_millis(500);
        assert!(rl.check_at(Limit::Login, "1.2.3.4", t1).is_ok());
        assert!(rl.check_at(Limit::Login, "1.2.3.4", t1).is_err());
    }

    #[test]
    fn zero_rate_disables() {
        let rl = RateLimiter::new(&limits(1.0, 1));
        let t0 = Instant::now();
        for _ in 0..100 {
            assert!(rl.check_at(Limit::Message, "@a:x", t0).is_ok());
        }
        assert_eq!(rl.len(), 0, "disabled limits keep no state");
    }

    #[test]
    fn memory_is_bounded() {
        let rl = RateLimiter::with_capacity(&limits(1.0, 2), 10);
        let t0 = Instant::now();
        for i in 0..10 {
            assert!(rl.check_at(Limit::Login, &format!("ip{i}"), t0).is_ok());
        }
        assert_eq!(rl.len(), 10);
        // Two seconds later every bucket is full again, so all are evicted
        // to make room for the new key.
        let t1 = t0 + Duration::from_secs(2);
        assert!(rl.check_at(Limit::Login, "new", t1).is_ok());
        assert_eq!(rl.len(), 1);
        // Buckets still draining survive eviction until the table is full
        // of them, then it is cleared rather than grown.
        for i in 0..20 {
            let _ = rl.check_at(Limit::Login, &format!("flood{i}"), t1);
            assert!(rl.len() <= 10);
        }
    }
}
