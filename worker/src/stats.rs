//! A function's recent calls in 10-second buckets over the last hour, kept in memory so that a
//! console opened now already has history. Buckets of several versions or workers add up
//! ([`CallStats::merge`]): latency is kept as counts in fixed bins rather than as percentiles.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How much time one bucket covers.
pub const BUCKET_MS: u64 = 10_000;
/// How many buckets are kept: one hour.
pub const WINDOW_BUCKETS: u64 = 360;

/// Latency bins: bin 0 holds calls up to 16 µs, bin `i` those up to `16 µs × 2^(i/2)`, the last
/// everything longer (about 190 s and up). Half-octave bins put a percentile within about 19% of
/// the exact value, which is what a chart needs, in 48 counters per bucket.
const BINS: usize = 48;
const FIRST_BIN_US: f64 = 16.0;

/// One bucket's calls.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsBucket {
    /// Milliseconds since the Unix epoch at which the bucket starts (a multiple of
    /// [`BUCKET_MS`]).
    pub start_ms: u64,
    /// Calls that finished, successfully or not.
    pub calls: u64,
    pub errors: u64,
    /// Calls that had to start an instance, and calls an instance already live took.
    pub cold: u64,
    pub warm: u64,
    /// Instances started, and the microseconds they took in all.
    pub instantiations: u64,
    pub instantiate_us: u64,
    /// Call durations counted in half-octave bins (see `BINS`); empty while there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency: Vec<u32>,
}

impl StatsBucket {
    fn new(start_ms: u64) -> StatsBucket {
        StatsBucket {
            start_ms,
            ..StatsBucket::default()
        }
    }

    fn add(&mut self, other: &StatsBucket) {
        self.calls += other.calls;
        self.errors += other.errors;
        self.cold += other.cold;
        self.warm += other.warm;
        self.instantiations += other.instantiations;
        self.instantiate_us += other.instantiate_us;
        if self.latency.len() < other.latency.len() {
            self.latency.resize(other.latency.len(), 0);
        }
        for (mine, theirs) in self.latency.iter_mut().zip(&other.latency) {
            *mine = mine.saturating_add(*theirs);
        }
    }

    /// The `q` quantile (0..=1) of the call durations, in milliseconds, if there were calls.
    pub fn percentile_ms(&self, q: f64) -> Option<f64> {
        let total: u64 = self.latency.iter().map(|&n| u64::from(n)).sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (bin, &n) in self.latency.iter().enumerate() {
            seen += u64::from(n);
            if seen >= rank {
                return Some(bin_middle_us(bin) / 1000.0);
            }
        }
        None
    }

    /// The mean instantiation time in milliseconds, if any instance started.
    pub fn instantiate_ms(&self) -> Option<f64> {
        (self.instantiations > 0)
            .then(|| self.instantiate_us as f64 / self.instantiations as f64 / 1000.0)
    }
}

/// The bin a duration falls in.
fn bin_of(elapsed: Duration) -> usize {
    let us = elapsed.as_secs_f64() * 1e6;
    if us <= FIRST_BIN_US {
        return 0;
    }
    let bin = (2.0 * (us / FIRST_BIN_US).log2()).ceil();
    (bin as usize).min(BINS - 1)
}

/// A value inside bin `bin` to report for it: the geometric middle of its bounds.
fn bin_middle_us(bin: usize) -> f64 {
    if bin == 0 {
        return FIRST_BIN_US / 2.0;
    }
    FIRST_BIN_US * 2f64.powf((bin as f64 - 0.5) / 2.0)
}

/// A function's buckets, oldest first; buckets without calls or starts are left out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CallStats {
    pub buckets: Vec<StatsBucket>,
}

impl CallStats {
    /// Adds `other`'s buckets to these, bucket by bucket.
    pub fn merge(&mut self, other: &CallStats) {
        let mut merged: Vec<StatsBucket> = Vec::with_capacity(self.buckets.len());
        let mut mine = std::mem::take(&mut self.buckets).into_iter().peekable();
        let mut theirs = other.buckets.iter().peekable();
        loop {
            let next = match (mine.peek(), theirs.peek()) {
                (None, None) => break,
                (Some(_), None) => mine.next().unwrap_or_default(),
                (None, Some(_)) => theirs.next().cloned().unwrap_or_default(),
                (Some(a), Some(b)) if a.start_ms < b.start_ms => mine.next().unwrap_or_default(),
                (Some(a), Some(b)) if a.start_ms > b.start_ms => {
                    theirs.next().cloned().unwrap_or_default()
                }
                (Some(_), Some(_)) => {
                    let mut bucket = mine.next().unwrap_or_default();
                    if let Some(b) = theirs.next() {
                        bucket.add(b);
                    }
                    bucket
                }
            };
            merged.push(next);
        }
        self.buckets = merged;
    }

    /// One bucket per [`BUCKET_MS`] of the hour up to `now_ms`, oldest first, the last one the
    /// current (partial) bucket; empty ones are filled in.
    pub fn window(&self, now_ms: u64) -> Vec<StatsBucket> {
        let current = now_ms - now_ms % BUCKET_MS;
        let first = current.saturating_sub((WINDOW_BUCKETS - 1) * BUCKET_MS);
        let mut kept = self
            .buckets
            .iter()
            .filter(|b| b.start_ms >= first)
            .peekable();
        (0..WINDOW_BUCKETS)
            .map(|i| first + i * BUCKET_MS)
            .filter(|&start| start <= current)
            .map(|start| {
                while kept.peek().is_some_and(|b| b.start_ms < start) {
                    kept.next();
                }
                match kept.peek() {
                    Some(b) if b.start_ms == start => kept.next().cloned().unwrap_or_default(),
                    _ => StatsBucket::new(start),
                }
            })
            .collect()
    }
}

/// Where one function's calls are counted (shared by its versions).
#[derive(Default)]
pub(crate) struct Recorder {
    buckets: Mutex<VecDeque<StatsBucket>>,
}

impl Recorder {
    /// Runs `f` on the current bucket, starting one if the clock has moved on, and drops the
    /// buckets that have left the window.
    fn with_current(&self, f: impl FnOnce(&mut StatsBucket)) {
        let now = crate::time::now_ms();
        let start = now - now % BUCKET_MS;
        let mut buckets = self.buckets.lock().unwrap();
        if buckets.back().is_none_or(|b| b.start_ms < start) {
            let oldest = start.saturating_sub((WINDOW_BUCKETS - 1) * BUCKET_MS);
            while buckets.front().is_some_and(|b| b.start_ms < oldest) {
                buckets.pop_front();
            }
            buckets.push_back(StatsBucket::new(start));
        }
        // A clock stepped back lands in the newest bucket rather than out of order.
        if let Some(bucket) = buckets.back_mut() {
            f(bucket);
        }
    }

    /// A call that finished after `elapsed`.
    pub(crate) fn call(&self, elapsed: Duration, ok: bool) {
        let bin = bin_of(elapsed);
        self.with_current(|b| {
            b.calls += 1;
            b.errors += u64::from(!ok);
            if b.latency.is_empty() {
                b.latency = vec![0; BINS];
            }
            b.latency[bin] = b.latency[bin].saturating_add(1);
        });
    }

    /// A call that started an instance (`cold`) or took a live one.
    pub(crate) fn start(&self, cold: bool) {
        self.with_current(|b| {
            if cold {
                b.cold += 1;
            } else {
                b.warm += 1;
            }
        });
    }

    /// An instance that took `elapsed` to start.
    pub(crate) fn instantiated(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.with_current(|b| {
            b.instantiations += 1;
            b.instantiate_us = b.instantiate_us.saturating_add(us);
        });
    }

    pub(crate) fn snapshot(&self) -> CallStats {
        CallStats {
            buckets: self.buckets.lock().unwrap().iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(start_ms: u64, calls: u64, durations_us: &[u64]) -> StatsBucket {
        let mut latency = vec![0; BINS];
        for &us in durations_us {
            latency[bin_of(Duration::from_micros(us))] += 1;
        }
        StatsBucket {
            start_ms,
            calls,
            latency,
            ..StatsBucket::default()
        }
    }

    #[test]
    fn percentiles_are_within_a_half_octave() {
        let durations: Vec<u64> = (1..=100).map(|i| i * 100).collect(); // 0.1 ms .. 10 ms
        let b = bucket(0, 100, &durations);
        let p50 = b.percentile_ms(0.5).unwrap();
        let p99 = b.percentile_ms(0.99).unwrap();
        assert!((5.0 / 1.2..=5.0 * 1.2).contains(&p50), "p50 {p50}");
        assert!((9.9 / 1.2..=9.9 * 1.2).contains(&p99), "p99 {p99}");
        assert_eq!(StatsBucket::default().percentile_ms(0.5), None);
    }

    #[test]
    fn bins_cover_microseconds_to_minutes() {
        assert_eq!(bin_of(Duration::ZERO), 0);
        assert_eq!(bin_of(Duration::from_micros(16)), 0);
        assert_eq!(bin_of(Duration::from_micros(17)), 1);
        assert_eq!(bin_of(Duration::from_secs(3600)), BINS - 1);
        for bin in 1..BINS - 1 {
            let middle = Duration::from_secs_f64(bin_middle_us(bin) / 1e6);
            assert_eq!(bin_of(middle), bin);
        }
    }

    #[test]
    fn merge_adds_matching_buckets_and_keeps_the_rest_in_order() {
        let mut a = CallStats {
            buckets: vec![bucket(0, 1, &[100]), bucket(20_000, 2, &[100, 200])],
        };
        let b = CallStats {
            buckets: vec![bucket(10_000, 5, &[]), bucket(20_000, 3, &[300, 300, 300])],
        };
        a.merge(&b);
        let starts: Vec<u64> = a.buckets.iter().map(|b| b.start_ms).collect();
        assert_eq!(starts, [0, 10_000, 20_000]);
        assert_eq!(a.buckets[2].calls, 5);
        assert_eq!(a.buckets[2].latency.iter().sum::<u32>(), 5);
    }

    #[test]
    fn the_window_is_an_hour_of_buckets_ending_now() {
        let now = 10 * 3_600_000 + 5_000;
        let stats = CallStats {
            buckets: vec![
                bucket(now - 5_000 - 3_600_000, 9, &[]), // left the window
                bucket(now - 5_000 - 20_000, 2, &[]),
                bucket(now - 5_000, 1, &[]),
            ],
        };
        let window = stats.window(now);
        assert_eq!(window.len(), WINDOW_BUCKETS as usize);
        assert_eq!(window.last().unwrap().start_ms, now - 5_000);
        assert_eq!(window.last().unwrap().calls, 1);
        assert_eq!(window[window.len() - 3].calls, 2);
        assert_eq!(window.iter().map(|b| b.calls).sum::<u64>(), 3);
    }

    #[test]
    fn the_recorder_counts_into_the_current_bucket() {
        let recorder = Recorder::default();
        recorder.start(true);
        recorder.instantiated(Duration::from_millis(2));
        recorder.call(Duration::from_millis(1), true);
        recorder.start(false);
        recorder.call(Duration::from_millis(1), false);
        let stats = recorder.snapshot();
        let total = stats
            .buckets
            .iter()
            .fold(StatsBucket::default(), |mut sum, b| {
                sum.add(b);
                sum
            });
        assert_eq!(
            (total.calls, total.errors, total.cold, total.warm),
            (2, 1, 1, 1)
        );
        assert_eq!(total.instantiate_ms(), Some(2.0));
    }
}
