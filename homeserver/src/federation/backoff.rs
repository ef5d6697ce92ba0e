//! The retry back-off for destinations our transactions cannot reach:
//! exponential with jitter, as Synapse does it, so that a server that is
//! down is not hammered and many servers coming back do not retry in step.

use crate::config::FederationConfig;
use crate::storage::federation_outbox::Health;

/// How long to wait after failures.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub min_interval_ms: i64,
    pub max_interval_ms: i64,
    pub multiplier: f64,
}

impl RetryPolicy {
    pub fn from_config(config: &FederationConfig) -> Self {
        let clamp = |ms: u64| i64::try_from(ms).unwrap_or(i64::MAX).max(1);
        let min_interval_ms = clamp(config.destination_min_retry_interval_ms);
        Self {
            min_interval_ms,
            max_interval_ms: clamp(config.destination_max_retry_interval_ms).max(min_interval_ms),
            multiplier: if config.destination_retry_multiplier.is_finite() {
                config.destination_retry_multiplier.max(1.0)
            } else {
                1.0
            },
        }
    }

    /// The health after one more failure at `now`; `jitter` in `[0, 1)`
    /// spreads the wait over 80% to 120% of the interval.
    pub fn after_failure(&self, health: Health, now: i64, jitter: f64) -> Health {
        let interval = if health.retry_interval_ms <= 0 {
            self.min_interval_ms
        } else {
            // Float maths saturates, so no overflow even after many failures.
            let next = health.retry_interval_ms as f64 * self.multiplier;
            (next.min(self.max_interval_ms as f64) as i64).max(self.min_interval_ms)
        };
        let wait = (interval as f64 * (0.8 + 0.4 * jitter.clamp(0.0, 1.0))) as i64;
        Health {
            failures: health.failures.saturating_add(1),
            retry_interval_ms: interval,
            retry_at_ts: now.saturating_add(wait),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        min_interval_ms: 1_000,
        max_interval_ms: 10_000,
        multiplier: 2.0,
    };

    #[test]
    fn grows_from_the_minimum_to_the_cap() {
        let mut h = Health::default();
        let mut intervals = Vec::new();
        for _ in 0..6 {
            h = POLICY.after_failure(h, 0, 0.5);
            intervals.push(h.retry_interval_ms);
        }
        assert_eq!(intervals, [1_000, 2_000, 4_000, 8_000, 10_000, 10_000]);
        assert_eq!(h.failures, 6);
        // Jitter 0.5 is the interval itself.
        assert_eq!(h.retry_at_ts, 10_000);
    }

    #[test]
    fn jitter_stays_within_a_fifth() {
        let h = POLICY.after_failure(Health::default(), 100, 0.0);
        assert_eq!(h.retry_at_ts, 100 + 800);
        let h = POLICY.after_failure(Health::default(), 100, 0.999_999);
        assert!((100 + 1_199..=100 + 1_200).contains(&h.retry_at_ts));
    }

    #[test]
    fn extreme_settings_do_not_overflow() {
        let huge = RetryPolicy {
            min_interval_ms: i64::MAX / 2,
            max_interval_ms: i64::MAX,
            multiplier: 1e300,
        };
        let h = huge.after_failure(Health::default(), i64::MAX - 5, 1.0);
        let h = huge.after_failure(h, i64::MAX - 5, 1.0);
        assert_eq!(h.retry_at_ts, i64::MAX);
        assert!(h.retry_interval_ms > 0);
    }
}
