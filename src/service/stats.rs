//! Per-operation counters of a transport (FUSE mount, user-level path): count and latency
//! histogram per request kind, lock-free, cheap enough for every request.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Latency buckets: bucket `i` counts requests that took less than 2^(i+1) ns (and at least
/// 2^i ns, but for bucket 0); the last one also counts everything slower (2^39 ns is 550 s).
pub const BUCKETS: usize = 40;

/// The exclusive upper bound of latency bucket `i`, in nanoseconds (the last bucket has none).
pub fn bucket_bound_ns(i: usize) -> u64 {
    1u64 << (i + 1)
}

/// Latencies in power-of-two nanosecond buckets, and their sum. The count is the buckets'
/// sum, so a report's count always equals its buckets' total.
#[derive(Debug)]
struct Histogram {
    sum_ns: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

impl Histogram {
    fn new() -> Self {
        Histogram { sum_ns: AtomicU64::new(0), buckets: std::array::from_fn(|_| AtomicU64::new(0)) }
    }

    fn record(&self, ns: u64) {
        let b = (64 - ns.max(1).leading_zeros() as usize - 1).min(BUCKETS - 1);
        self.buckets[b].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    fn counts(&self) -> Vec<u64> {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect()
    }
}

/// The upper bound (µs) of the bucket holding quantile `q` of `counts`.
fn quantile_us(counts: &[u64], q: f64) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let want = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= want {
            return bucket_bound_ns(i) as f64 / 1000.0;
        }
    }
    (1u64 << BUCKETS) as f64 / 1000.0
}

/// One operation's counters, as reported.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OpSummary {
    pub count: u64,
    /// Bucket upper bounds, in µs (power-of-two resolution).
    pub p50_us: f64,
    pub p99_us: f64,
    /// Time spent in these requests, in ns (wraps after 584 years of requests).
    #[serde(default)]
    pub sum_ns: u64,
    /// Requests per latency bucket (`BUCKETS` of them; bucket `i` below 2^(i+1) ns, the last
    /// one unbounded): what `inspect --format openmetrics` exports as a histogram.
    #[serde(default)]
    pub buckets: Vec<u64>,
}

/// Request kinds counted, sorted (FUSE requests and user-level operations); anything else
/// counts as `other`.
const OPS: [&str; 39] = [
    "access", "create", "fallocate", "flush", "forget", "fsync", "fsyncdir", "getattr", "getxattr", "link",
    "listxattr", "lookup", "lseek", "mkdir", "mknod", "open", "open_path", "opendir", "other", "pass_file", "read",
    "readdir", "readlink", "release", "releasedir", "removexattr", "rename", "rmdir", "setattr", "setattr_path", "setxattr",
    "stat_path", "statfs", "symlink", "syncfs", "truncate", "unlink", "unlink_path", "write",
];

/// Counters of one transport of one instance: a fixed table, so counting a request takes no
/// lock and allocates nothing.
#[derive(Debug)]
pub struct OpStats {
    /// Descriptors the library gave to the kernel, by reason (`HandOver` order).
    handovers: [AtomicU64; polytropon_ipc::HandOver::ALL.len()],
    passthrough_opens: AtomicU64,
    /// Opens whose file's bytes went with the answer (the user-level path's small files).
    prefetched_opens: AtomicU64,
    /// Data calls the kernel served on descriptors the service passed to clients, as their
    /// releases told (`passed_data` in the summary).
    passed_calls: AtomicU64,
    ops: [Histogram; OPS.len()],
}

impl Default for OpStats {
    fn default() -> Self {
        OpStats { handovers: std::array::from_fn(|_| AtomicU64::new(0)), passthrough_opens: AtomicU64::new(0), prefetched_opens: AtomicU64::new(0), passed_calls: AtomicU64::new(0), ops: std::array::from_fn(|_| Histogram::new()) }
    }
}

/// The counter slot of request kind `op` (the slot of `other` for an unknown kind).
pub(crate) fn index(op: &str) -> usize {
    OPS.binary_search(&op).or_else(|_| OPS.binary_search(&"other")).unwrap_or(0)
}

impl OpStats {
    pub(crate) fn add_handover(&self, why: polytropon_ipc::HandOver) {
        if let Some(c) = self.handovers.get(why as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Descriptors the library gave to the kernel, by reason (those that happened).
    pub fn handovers(&self) -> BTreeMap<String, u64> {
        polytropon_ipc::HandOver::ALL
            .into_iter()
            .filter_map(|h| {
                let n = self.handovers.get(h as usize)?.load(Ordering::Relaxed);
                (n > 0).then(|| (h.name().to_string(), n))
            })
            .collect()
    }

    pub(crate) fn add_passthrough(&self) {
        self.passthrough_opens.fetch_add(1, Ordering::Relaxed);
    }

    /// Opens answered with FUSE passthrough.
    pub fn passthrough_opens(&self) -> u64 {
        self.passthrough_opens.load(Ordering::Relaxed)
    }

    pub(crate) fn add_prefetched(&self) {
        self.prefetched_opens.fetch_add(1, Ordering::Relaxed);
    }

    /// Opens whose file's bytes went with the answer.
    pub fn prefetched_opens(&self) -> u64 {
        self.prefetched_opens.load(Ordering::Relaxed)
    }

    pub(crate) fn add_passed_calls(&self, n: u64) {
        // A client's word, bounded so that no sum overflows.
        self.passed_calls.fetch_add(n.min(u64::from(u32::MAX)), Ordering::Relaxed);
    }

    /// Count and p50/p99 latency per request kind seen so far; with `passed_data`, the data
    /// calls the kernel served on passed descriptors (counted, not timed).
    pub fn summary(&self) -> BTreeMap<String, OpSummary> {
        let passed = self.passed_calls.load(Ordering::Relaxed);
        let passed = (passed > 0).then(|| ("passed_data".to_string(), OpSummary { count: passed, p50_us: 0.0, p99_us: 0.0, sum_ns: 0, buckets: Vec::new() }));
        OPS.iter()
            .zip(&self.ops)
            .filter_map(|(name, h)| {
                let buckets = h.counts();
                let count: u64 = buckets.iter().sum();
                (count > 0).then(|| {
                    let (p50_us, p99_us) = (quantile_us(&buckets, 0.5), quantile_us(&buckets, 0.99));
                    (name.to_string(), OpSummary { count, p50_us, p99_us, sum_ns: h.sum_ns.load(Ordering::Relaxed), buckets })
                })
            })
            .chain(passed)
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

impl Timer {
    /// The counters it records into.
    pub(crate) fn stats(&self) -> &OpStats {
        &self.stats
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
        let counts = h.counts();
        assert_eq!(counts.iter().sum::<u64>(), 100);
        assert_eq!(h.sum_ns.load(Ordering::Relaxed), 98 * 1_500 + 2 * 40_000);
        assert_eq!(quantile_us(&counts, 0.5), 2.048);
        assert_eq!(quantile_us(&counts, 0.99), 65.536);
        assert_eq!(quantile_us(&Histogram::new().counts(), 0.5), 0.0);
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
