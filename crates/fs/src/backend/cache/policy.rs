//! Replacement policies for the backend clients' data cache, over fixed-size entries.
//!
//! [`S3Fifo`] is the one the cache uses (Yang et al., "FIFO queues are all you need for cache
//! eviction", SOSP'23): a small FIFO takes every new entry, and only entries hit again while
//! there move to the main FIFO, so a scan passes through the small queue without pushing the
//! hot set out; a ghost queue remembers recently evicted keys so that their return goes
//! straight to the main queue. [`Lru`] is plain LRU, kept to measure against.
//!
//! Both only decide what to keep: they hold keys and values, count hits and misses, and hand
//! back what they evict.

use std::collections::{BTreeMap, VecDeque};
use std::hash::Hash;

use rustc_hash::{FxHashMap, FxHashSet};

/// A cache of at most `capacity` entries.
pub trait Policy<K, V> {
    /// The value of `k`, counted as a hit (or a miss).
    fn get(&mut self, k: &K) -> Option<&V>;
    /// Inserts or replaces `k`; returns the entries evicted to make room.
    fn insert(&mut self, k: K, v: V) -> Vec<(K, V)>;
    /// Removes `k` (an invalidation, not an eviction).
    fn remove(&mut self, k: &K) -> Option<V>;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Queue {
    Small,
    Main,
}

struct Entry<V> {
    value: V,
    /// Hits since it entered its queue (or was last given a second chance), at most 3.
    freq: u8,
    queue: Queue,
    /// Matches the entry's position in its queue; older positions are stale and skipped.
    stamp: u64,
}

/// S3-FIFO over entries of one size.
pub struct S3Fifo<K, V> {
    capacity: usize,
    small_target: usize,
    map: FxHashMap<K, Entry<V>>,
    small: VecDeque<(K, u64)>,
    main: VecDeque<(K, u64)>,
    small_len: usize,
    main_len: usize,
    ghost: VecDeque<K>,
    ghost_set: FxHashSet<K>,
    stamp: u64,
}

impl<K: Hash + Eq + Copy, V> S3Fifo<K, V> {
    /// A cache of `capacity` entries (at least 2), a tenth of them for the small queue.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(2);
        S3Fifo {
            capacity,
            small_target: (capacity / 10).max(1),
            map: FxHashMap::default(),
            small: VecDeque::new(),
            main: VecDeque::new(),
            small_len: 0,
            main_len: 0,
            ghost: VecDeque::new(),
            ghost_set: FxHashSet::default(),
            stamp: 0,
        }
    }

    fn next_stamp(&mut self) -> u64 {
        self.stamp += 1;
        self.stamp
    }

    fn push(&mut self, k: K, queue: Queue) -> u64 {
        let stamp = self.next_stamp();
        match queue {
            Queue::Small => {
                self.small.push_back((k, stamp));
                self.small_len += 1;
            }
            Queue::Main => {
                self.main.push_back((k, stamp));
                self.main_len += 1;
            }
        }
        stamp
    }

    fn remember(&mut self, k: K) {
        if self.ghost_set.insert(k) {
            self.ghost.push_back(k);
        }
        while self.ghost.len() > self.capacity {
            if let Some(old) = self.ghost.pop_front() {
                self.ghost_set.remove(&old);
            }
        }
    }

    /// Pops the oldest live entry of `queue` (stale positions, left by removals and moves,
    /// are dropped on the way).
    fn pop_live(&mut self, queue: Queue) -> Option<K> {
        loop {
            let (k, stamp) = match queue {
                Queue::Small => self.small.pop_front()?,
                Queue::Main => self.main.pop_front()?,
            };
            if self.map.get(&k).is_some_and(|e| e.stamp == stamp && e.queue == queue) {
                match queue {
                    Queue::Small => self.small_len -= 1,
                    Queue::Main => self.main_len -= 1,
                }
                return Some(k);
            }
        }
    }

    /// Takes the oldest live entry of the small queue: to the main queue if it was hit there,
    /// else out (remembered in the ghost queue).
    fn evict_small(&mut self, out: &mut Vec<(K, V)>) {
        let Some(k) = self.pop_live(Queue::Small) else { return };
        if self.map.get(&k).is_some_and(|e| e.freq > 0) {
            let stamp = self.push(k, Queue::Main);
            if let Some(e) = self.map.get_mut(&k) {
                e.queue = Queue::Main;
                e.freq = 0;
                e.stamp = stamp;
            }
        } else if let Some(e) = self.map.remove(&k) {
            self.remember(k);
            out.push((k, e.value));
        }
    }

    /// Takes the oldest live entry of the main queue: a second chance (to the back, one hit
    /// less) while it has hits, else out.
    fn evict_main(&mut self, out: &mut Vec<(K, V)>) {
        while let Some(k) = self.pop_live(Queue::Main) {
            if self.map.get(&k).is_some_and(|e| e.freq > 0) {
                let stamp = self.push(k, Queue::Main);
                if let Some(e) = self.map.get_mut(&k) {
                    e.freq -= 1;
                    e.stamp = stamp;
                }
                continue;
            }
            if let Some(e) = self.map.remove(&k) {
                out.push((k, e.value));
            }
            return;
        }
    }
}

impl<K: Hash + Eq + Copy, V> S3Fifo<K, V> {
    /// Whether `k` is held (not counted as a hit).
    pub fn contains(&self, k: &K) -> bool {
        self.map.contains_key(k)
    }

    /// Evicts one entry as an insertion into a full cache would (room wanted elsewhere: the
    /// cache's dirty data); `None` when it is empty.
    pub fn evict_one(&mut self) -> Option<(K, V)> {
        let mut out = Vec::new();
        // Each step evicts or moves an entry on (and moves lose hits): bounded anyway.
        let mut steps = 4 * self.map.len() + 8;
        while out.is_empty() && self.small_len + self.main_len > 0 && steps > 0 {
            steps -= 1;
            if self.small_len >= self.small_target || self.main_len == 0 {
                self.evict_small(&mut out);
            } else {
                self.evict_main(&mut out);
            }
        }
        out.pop()
    }
}

impl<K: Hash + Eq + Copy, V> Policy<K, V> for S3Fifo<K, V> {
    fn get(&mut self, k: &K) -> Option<&V> {
        let e = self.map.get_mut(k)?;
        e.freq = (e.freq + 1).min(3);
        Some(&e.value)
    }

    fn insert(&mut self, k: K, v: V) -> Vec<(K, V)> {
        let mut out = Vec::new();
        if let Some(e) = self.map.get_mut(&k) {
            e.value = v;
            return out;
        }
        while self.map.len() >= self.capacity {
            let before = self.map.len();
            if self.small_len >= self.small_target || self.main_len == 0 {
                self.evict_small(&mut out);
            } else {
                self.evict_main(&mut out);
            }
            if self.map.len() == before && self.small_len + self.main_len == 0 {
                break;
            }
        }
        let queue = if self.ghost_set.remove(&k) { Queue::Main } else { Queue::Small };
        let stamp = self.push(k, queue);
        self.map.insert(k, Entry { value: v, freq: 0, queue, stamp });
        out
    }

    fn remove(&mut self, k: &K) -> Option<V> {
        let e = self.map.remove(k)?;
        match e.queue {
            Queue::Small => self.small_len -= 1,
            Queue::Main => self.main_len -= 1,
        }
        // A removed entry's position stays in its queue until eviction pops it, and a cache
        // that is never full never evicts: past as many stale positions as live ones, drop them.
        if self.small.len() + self.main.len() > 2 * self.map.len() + STALE_SLACK {
            self.compact();
        }
        Some(e.value)
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// Stale queue positions an [`S3Fifo`] keeps beyond its live entries before it drops them.
const STALE_SLACK: usize = 64;

impl<K: Hash + Eq + Copy, V> S3Fifo<K, V> {
    /// Drops the positions of entries removed or moved since they were queued.
    fn compact(&mut self) {
        let map = &self.map;
        let live = |queue: Queue| move |(k, stamp): &(K, u64)| map.get(k).is_some_and(|e| e.stamp == *stamp && e.queue == queue);
        self.small.retain(live(Queue::Small));
        self.main.retain(live(Queue::Main));
    }
}

impl<K, V> std::fmt::Debug for S3Fifo<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Fifo").field("capacity", &self.capacity).field("len", &self.map.len()).finish_non_exhaustive()
    }
}

impl<K, V> std::fmt::Debug for Lru<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lru").field("capacity", &self.capacity).field("len", &self.map.len()).finish_non_exhaustive()
    }
}

/// Plain LRU, to compare with.
pub struct Lru<K, V> {
    capacity: usize,
    map: FxHashMap<K, (V, u64)>,
    order: BTreeMap<u64, K>,
    tick: u64,
}

impl<K: Hash + Eq + Copy, V> Lru<K, V> {
    pub fn new(capacity: usize) -> Self {
        Lru { capacity: capacity.max(1), map: FxHashMap::default(), order: BTreeMap::new(), tick: 0 }
    }
}

impl<K: Hash + Eq + Copy, V> Policy<K, V> for Lru<K, V> {
    fn get(&mut self, k: &K) -> Option<&V> {
        self.tick += 1;
        let tick = self.tick;
        let (v, t) = self.map.get_mut(k)?;
        self.order.remove(t);
        *t = tick;
        self.order.insert(tick, *k);
        Some(v)
    }

    fn insert(&mut self, k: K, v: V) -> Vec<(K, V)> {
        self.tick += 1;
        let mut out = Vec::new();
        if let Some((_, t)) = self.map.remove(&k) {
            self.order.remove(&t);
        }
        while self.map.len() >= self.capacity {
            let Some((_, old)) = self.order.pop_first() else { break };
            if let Some((v, _)) = self.map.remove(&old) {
                out.push((old, v));
            }
        }
        self.order.insert(self.tick, k);
        self.map.insert(k, (v, self.tick));
        out
    }

    fn remove(&mut self, k: &K) -> Option<V> {
        let (v, t) = self.map.remove(k)?;
        self.order.remove(&t);
        Some(v)
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// Hit ratio of `policy` over `trace` (a miss inserts the key).
pub fn hit_ratio<P: Policy<u64, ()>>(policy: &mut P, trace: &[u64]) -> f64 {
    let mut hits = 0usize;
    for k in trace {
        if policy.get(k).is_some() {
            hits += 1;
        } else {
            policy.insert(*k, ());
        }
    }
    hits as f64 / trace.len().max(1) as f64
}

/// The trace the policies are compared on: a hot set of `hot` keys read over and over (Zipf-
/// like: key `i` about `1/(i+1)` as often), with a sequential scan of `scan` fresh keys
/// every `every` accesses (a backup, a `grep -r`, a cold file read once).
pub fn scan_and_hot_set(len: usize, hot: u64, scan: u64, every: usize, seed: u64) -> Vec<u64> {
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // Cumulative weights of 1/(i+1).
    let weights: Vec<f64> = (0..hot).map(|i| 1.0 / (i + 1) as f64).collect();
    let total: f64 = weights.iter().sum();
    let mut cdf = Vec::with_capacity(weights.len());
    let mut acc = 0.0;
    for w in &weights {
        acc += w / total;
        cdf.push(acc);
    }
    let mut out = Vec::with_capacity(len);
    let mut fresh = 1u64 << 40;
    while out.len() < len {
        if out.len() % every == every - 1 {
            for _ in 0..scan {
                out.push(fresh);
                fresh += 1;
            }
            continue;
        }
        let u = (next() >> 11) as f64 / (1u64 << 53) as f64;
        out.push(cdf.partition_point(|c| *c < u) as u64);
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_keep_their_bound_and_give_back_what_they_evict() {
        let mut s: S3Fifo<u64, u64> = S3Fifo::new(10);
        let mut l: Lru<u64, u64> = Lru::new(10);
        let (mut evicted_s, mut evicted_l) = (0, 0);
        for k in 0..1000u64 {
            evicted_s += s.insert(k, k * 2).len();
            evicted_l += l.insert(k, k * 2).len();
            assert!(s.len() <= 10 && l.len() <= 10);
            let _ = s.get(&(k / 2));
        }
        assert_eq!(evicted_s, 990);
        assert_eq!(evicted_l, 990);
        // Values stay with their keys; removal is not eviction.
        for k in 990..1000 {
            if let Some(v) = s.get(&k) {
                assert_eq!(*v, k * 2);
            }
        }
        assert_eq!(l.get(&999), Some(&1998));
        assert_eq!(l.remove(&999), Some(1998));
        assert_eq!(l.get(&999), None);
        let present: Vec<u64> = (0..1000).filter(|k| s.map.contains_key(k)).collect();
        let k = present[0];
        assert_eq!(s.remove(&k), Some(k * 2));
        assert!(s.get(&k).is_none());
        // Re-inserting after removal works and the bound still holds.
        for k in 0..100 {
            s.insert(k, k);
            assert!(s.len() <= 10);
        }
    }

    /// Entries written and dropped again and again in a cache that never fills (a file's
    /// blocks invalidated, written back, read again) leave no positions behind: the queues
    /// stay within a bound of the live entries (they grew by one position per removal).
    #[test]
    fn removals_leave_the_queues_bounded() {
        let mut s: S3Fifo<u64, ()> = S3Fifo::new(100);
        for i in 0..200_000u64 {
            s.insert(i % 50, ());
            s.remove(&(i % 50));
            s.insert(1_000 + i % 30, ());
            assert!(s.small.len() + s.main.len() <= 2 * s.len() + STALE_SLACK + 1, "{} positions for {} entries", s.small.len() + s.main.len(), s.len());
        }
        assert_eq!(s.len(), 30);
        // What is live is still found, and still evicted in order.
        for k in 1_000..1_030 {
            assert!(s.contains(&k));
        }
        let evicted = (0..200u64).map(|k| s.insert(10_000 + k, ()).len()).sum::<usize>();
        assert_eq!((evicted, s.len()), (130, 100));
    }

    #[test]
    fn a_key_hit_in_the_small_queue_survives_a_scan() {
        let mut s: S3Fifo<u64, ()> = S3Fifo::new(20);
        s.insert(7, ());
        assert!(s.get(&7).is_some());
        for k in 100..1000 {
            s.insert(k, ());
        }
        assert!(s.get(&7).is_some(), "a hot entry was pushed out by a scan");
    }

    #[test]
    fn s3fifo_resists_scans_that_flush_lru() {
        let trace = scan_and_hot_set(200_000, 900, 2_000, 5_000, 42);
        let s3 = hit_ratio(&mut S3Fifo::new(1_000), &trace);
        let lru = hit_ratio(&mut Lru::new(1_000), &trace);
        println!("hit ratio: S3-FIFO {s3:.3}, LRU {lru:.3}");
        assert!(s3 > lru + 0.05, "S3-FIFO {s3:.3} vs LRU {lru:.3}");
    }
}
