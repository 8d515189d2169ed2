//! Per-operation counters of a transport (FUSE mount, user-level path): count and latency
//! histogram per request kind, lock-free, cheap enough for every request.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

const BUCKETS: usize = 40;

/// Latencies in power-of-two nanosecond buckets.
#[derive(Debug)]
struct Histogram {
    count: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

impl Histogram {
    fn new() -> Self {
        Histogram { count: AtomicU64::new(0), buckets: std::array::from_fn(|_| AtomicU64::new(0)) }
    }

    fn record(&self, ns: u64) {
        let b = (64 - ns.max(1).leading_zeros() as usize - 1).min(BUCKETS - 1);
        self.buckets[b].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The upper bound (µs) of the bucket holding quantile `q`.
    fn quantile_us(&self, q: f64) -> f64 {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let want = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return (1u64 << (i + 1)) as f64 / 1000.0;
            }
        }
        (1u64 << BUCKETS) as f64 / 1000.0
    }
}

/// One operation's counters, as reported.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OpSummary {
    pub count: u64,
    /// Bucket upper bounds, in µs (power-of-two resolution).
    pub p50_us: f64,
    pub p99_us: f64,
}

/// Request kinds counted, sorted (FUSE requests and user-level operations); anything else
/// counts as `other`.
const OPS: [&str; 37] = [
    "access", "create", "fallocate", "flush", "forget", "fsync", "fsyncdir", "getattr", "getxattr", "link",
    "listxattr", "lookup", "lseek", "mkdir", "mknod", "open", "open_path", "opendir", "other", "read",
    "readdir", "readlink", "release", "releasedir", "removexattr", "rename", "rmdir", "setattr", "setattr_path", "setxattr",
    "stat_path", "statfs", "symlink", "truncate", "unlink", "unlink_path", "write",
];

/// Counters of one transport of one instance: a fixed table, so counting a request takes no
/// lock and allocates nothing.
#[derive(Debug)]
pub struct OpStats {
    passthrough_opens: AtomicU64,
    ops: [Histogram; OPS.len()],
}

impl Default for OpStats {
    fn default() -> Self {
        OpStats { passthrough_opens: AtomicU64::new(0), ops: std::array::from_fn(|_| Histogram::new()) }
    }
}

/// The counter slot of request kind `op` (the slot of `other` for an unknown kind).
pub(crate) fn index(op: &str) -> usize {
    OPS.binary_search(&op).or_else(|_| OPS.binary_search(&"other")).unwrap_or(0)
}

impl OpStats {
    pub(crate) fn add_passthrough(&self) {
        self.passthrough_opens.fetch_add(1, Ordering::Relaxed);
    }

    /// Opens answered with FUSE passthrough.
    pub fn passthrough_opens(&self) -> u64 {
        self.passthrough_opens.load(Ordering::Relaxed)
    }

    /// Count and p50/p99 latency per request kind seen so far.
    pub fn summary(&self) -> BTreeMap<String, OpSummary> {
        OPS.iter()
            .zip(&self.ops)
            .filter_map(|(name, h)| {
                let count = h.count.load(Ordering::Relaxed);
                (count > 0).then(|| (name.to_string(), OpSummary { count, p50_us: h.quantile_us(0.5), p99_us: h.quantile_us(0.99) }))
            })
            .collect()
    }
}

/// Times one request; records when dropped (after the reply was sent).
pub(crate) struct Timer {
    stats: Arc<OpStats>,
    op: usize,
    start: Instant,
}

impl Timer {
    pub(crate) fn start(stats: Arc<OpStats>, op: &'static str) -> Self {
        Self::start_at(stats, index(op))
    }

    /// As [`Timer::start`], for a slot found once with [`index`].
    pub(crate) fn start_at(stats: Arc<OpStats>, slot: usize) -> Self {
        Timer { stats, op: slot, start: Instant::now() }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.stats.ops[self.op].record(self.start.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_buckets() {
        let h = Histogram::new();
        for _ in 0..98 {
            h.record(1_500); // bucket [1024, 2048) ns
        }
        h.record(40_000);
        h.record(40_000); // bucket [32768, 65536) ns
        assert_eq!(h.count.load(Ordering::Relaxed), 100);
        assert_eq!(h.quantile_us(0.5), 2.048);
        assert_eq!(h.quantile_us(0.99), 65.536);
        assert_eq!(Histogram::new().quantile_us(0.5), 0.0);
    }

    #[test]
    fn requests_are_counted_by_kind() {
        assert!(OPS.windows(2).all(|w| w[0] < w[1]), "OPS must stay sorted for the binary search");
        let s = Arc::new(OpStats::default());
        drop(Timer::start(s.clone(), "read"));
        drop(Timer::start(s.clone(), "read"));
        drop(Timer::start(s.clone(), "no-such-op"));
        let sum = s.summary();
        assert_eq!(sum.get("read").map(|o| o.count), Some(2));
        assert_eq!(sum.get("other").map(|o| o.count), Some(1));
        assert_eq!(sum.len(), 2);
    }
}
