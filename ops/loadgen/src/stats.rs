//! Percentiles of latency samples.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The `q` quantile (0..=1) by the nearest-rank method, or `None` without
/// samples. Sorts `samples`.
pub fn quantile(samples: &mut [Duration], q: f64) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let rank = (q * samples.len() as f64).ceil() as usize;
    Some(samples[rank.clamp(1, samples.len()) - 1])
}

/// Milliseconds with one decimal, for reports.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// Median, p99 and max of `samples` in milliseconds, as a report object.
pub fn summary(samples: &mut [Duration]) -> Value {
    let [median, p99, max] = [0.5, 0.99, 1.0].map(|q| quantile(samples, q).map(ms));
    json!({ "median": median, "p99": p99, "max": max, "samples": samples.len() })
}

/// Latency samples keyed by when their message was sent, split into
/// `parts` equal spans of send time: shows whether a tail comes from one
/// stretch of the run (start-up, a stall) or is spread over all of it.
pub fn over_send_time(samples: &[(Instant, Duration)], parts: usize) -> Vec<Value> {
    let (Some(first), Some(last)) = (
        samples.iter().map(|(at, _)| *at).min(),
        samples.iter().map(|(at, _)| *at).max(),
    ) else {
        return Vec::new();
    };
    let parts = parts.max(1);
    let span = last.duration_since(first).as_secs_f64();
    let mut buckets: Vec<Vec<Duration>> = vec![Vec::new(); parts];
    for (at, latency) in samples {
        let offset = at.duration_since(first).as_secs_f64();
        let i = if span > 0.0 {
            ((offset / span) * parts as f64) as usize
        } else {
            0
        };
        buckets[i.min(parts - 1)].push(*latency);
    }
    buckets
        .iter_mut()
        .enumerate()
        .map(|(i, b)| {
            let mut part = summary(b);
            part["from_s"] = json!((span * i as f64 / parts as f64 * 1000.0).round() / 1000.0);
            part
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_of_send_time() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let d = Duration::from_millis;
        // Two spans over 0..=100 ms: the slow message sent last lands in
        // the second, the first span keeps its own figures.
        let samples = [
            (at(0), d(5)),
            (at(10), d(7)),
            (at(60), d(6)),
            (at(100), d(90)),
        ];
        let parts = over_send_time(&samples, 2);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0]["samples"], 2);
        assert_eq!(parts[0]["max"], 7.0);
        assert_eq!(parts[1]["samples"], 2);
        assert_eq!(parts[1]["max"], 90.0);
        assert_eq!(parts[1]["from_s"], 0.05);
        assert!(over_send_time(&[], 10).is_empty());
    }

    #[test]
    fn nearest_rank() {
        let mut v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&mut v, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(quantile(&mut v, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(quantile(&mut v, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(quantile(&mut [], 0.5), None);
        let mut one = [Duration::from_millis(7)];
        assert_eq!(quantile(&mut one, 0.99), Some(Duration::from_millis(7)));
    }
}
