//! The data cache of a backend client (issue 8): file blocks held in the service's own memory
//! (so charged to the pool's memory cgroup), bounded, shared by every instance of the service
//! and keyed by the backend file's identity (`st_dev`, `st_ino`), so clones that share a lower
//! branch cache its blocks once.
//!
//! Replacement is S3-FIFO ([`policy`]), which a scan does not flush. Blocks are spread over
//! shards in runs of 16 (one large file can fill the cache); what the cache knows of each file
//! (its version, generation and write-back state) sits under a lock of its own, taken before a
//! shard's. (Records of files with nothing cached are swept once they outnumber twice those
//! kept after the last sweep.) A file's *version* (its modification time and size when its
//! blocks were cached) is checked when the file is opened: a file changed behind the
//! service's back (another writer, another host) loses its blocks, which gives close-to-open
//! consistency.
//!
//! Used by the local backend in `writethrough` mode (reads from the cache, writes to the
//! backend and out of the cache) and `writeback` mode (writes into the cache, dirty:
//! [`dirty`]).

mod dirty;
pub mod policy;
pub mod through;

use std::collections::BTreeSet;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

pub use dirty::{Closed, FlushBlock, FlushPlan, Resizing, Writeback, Writing};

use rustc_hash::{FxHashMap, FxHashSet};

use policy::{Policy, S3Fifo};

/// Bytes per cached block.
pub const BLOCK: usize = 64 << 10;
/// Shards (a power of two).
const SHARDS: usize = 16;

/// A backend file's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
}

/// What a file looked like when its blocks were cached: modification time (s, ns) and size.
pub type Version = (i64, i64, u64);

type Key = (FileKey, u64);

struct Shard {
    blocks: S3Fifo<Key, Box<[u8]>>,
    /// Blocks written and not yet written back (write-back mode): outside the replacement
    /// policy (never evicted), read before `blocks`.
    dirty: FxHashMap<Key, dirty::DirtyBlock>,
    /// Each file's block numbers cached in this shard, for invalidation.
    by_file: FxHashMap<FileKey, FxHashSet<u64>>,
}

impl Shard {
    fn forget(&mut self, (file, block): Key) {
        if let Some(set) = self.by_file.get_mut(&file) {
            set.remove(&block);
            if set.is_empty() {
                self.by_file.remove(&file);
            }
        }
    }
}

/// What the cache knows of a file beyond its blocks.
#[derive(Default)]
struct FileMeta {
    /// What it looked like when last validated or changed through the cache.
    version: Option<Version>,
    /// Bumped by every invalidation: a block read from the backend before a change and
    /// offered after it is refused (see [`BlockCache::insert`]).
    generation: u64,
    /// Write-back: the file's dirty blocks, since when the oldest is dirty, its size with
    /// them and when it was last written (valid while there are any), the open file to write them back through, the
    /// lock that keeps two write-backs of it apart, and the error of a failed background
    /// write-back, reported to the next fsync.
    dirty: BTreeSet<u64>,
    since: Option<Instant>,
    size: u64,
    /// When it was last written (wall clock: seconds, nanoseconds), for its mtime.
    written: (i64, u32),
    source: Option<Arc<OwnedFd>>,
    flushing: Option<Arc<Mutex<()>>>,
    /// The last write-back failure (`errno`, its number in the cache's count of failures,
    /// and whether anyone reported it yet): each handle reports it once (see
    /// [`BlockCache::error_since`]).
    error: Option<(i32, u64, bool)>,
    /// Its version was forgotten by an invalidation, and none recorded since: blocks read
    /// after it must not outlive the next open's check (see [`BlockCache::validate`]).
    forgotten: bool,
    /// Changes of its size or layout in progress ([`BlockCache::begin_resize`]): writes into
    /// the cache wait for them.
    resizing: u32,
    /// Writes into the cache in progress ([`BlockCache::begin_write`]): a resize waits for
    /// them.
    writing: u32,
}

/// Counters, for `inspect`.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub insertions: AtomicU64,
    pub evictions: AtomicU64,
    pub invalidations: AtomicU64,
    /// Bytes of clean blocks held now.
    pub bytes: AtomicU64,
    /// Bytes of dirty blocks held now (a whole block each).
    pub dirty: AtomicU64,
    /// Blocks written back, and write-backs that failed.
    pub writebacks: AtomicU64,
    pub writeback_errors: AtomicU64,
}

/// A bounded block cache.
///
/// Blocks are spread over the shards in runs of `SPAN` (so one large file can fill the whole
/// cache); a file's version and generation live under one lock of their own, always taken
/// before a shard's, so that an insertion and an invalidation of the same file never
/// interleave.
pub struct BlockCache {
    shards: Vec<Mutex<Shard>>,
    files: Mutex<Files>,
    pub stats: CacheStats,
    limit: u64,
    /// Write-back settings, once an instance asked for write-back.
    writeback: OnceLock<Writeback>,
    /// Where the next eviction for room starts (round robin over shards).
    cursor: AtomicUsize,
    /// Generations are drawn from one counter, so that no value is ever used twice (a file
    /// whose record was swept and made again cannot meet an old one).
    generations: AtomicU64,
    /// The generation of files the cache has no record of: the counter's value at the last
    /// sweep of records.
    swept: AtomicU64,
    /// Records kept before the next sweep.
    sweep_at: AtomicUsize,
    closed: Arc<Closed>,
    /// Signalled (with the files lock) when a file's resize ends.
    resized: std::sync::Condvar,
    /// Write-back failures so far (see [`BlockCache::errors_seen_now`]).
    failures: AtomicU64,
    /// The latest write-back failure on each file system (by `st_dev`), for `syncfs`.
    failures_by_dev: Mutex<FxHashMap<u64, (i32, u64)>>,
}

/// Records of files kept at least (a sweep happens when there are more).
const SWEEP_MIN: usize = 4096;

type Files = FxHashMap<FileKey, FileMeta>;

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache").field("limit", &self.limit).field("stats", &self.stats).finish_non_exhaustive()
    }
}

/// Consecutive blocks kept in one shard.
const SPAN: u64 = 16;

fn shard_of(file: &FileKey, block: u64) -> usize {
    // Fibonacci hashing of the file and the run of blocks.
    let h = (file.ino ^ file.dev.rotate_left(32) ^ (block / SPAN).rotate_left(17)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (h >> 60) as usize & (SHARDS - 1)
}

impl BlockCache {
    /// A cache of at most `bytes` of file data (at least two blocks per shard).
    pub fn new(bytes: u64) -> BlockCache {
        let per_shard = ((bytes / BLOCK as u64) as usize / SHARDS).max(2);
        BlockCache {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Shard { blocks: S3Fifo::new(per_shard), dirty: FxHashMap::default(), by_file: FxHashMap::default() }))
                .collect(),
            files: Mutex::new(FxHashMap::default()),
            stats: CacheStats::default(),
            limit: (per_shard * SHARDS * BLOCK) as u64,
            writeback: OnceLock::new(),
            cursor: AtomicUsize::new(0),
            generations: AtomicU64::new(0),
            swept: AtomicU64::new(0),
            sweep_at: AtomicUsize::new(SWEEP_MIN),
            closed: Arc::default(),
            resized: std::sync::Condvar::new(),
            failures: AtomicU64::new(0),
            failures_by_dev: Mutex::default(),
        }
    }

    /// Most bytes of file data it holds.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    fn shard(&self, i: usize) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn files(&self) -> std::sync::MutexGuard<'_, Files> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A generation never used before.
    fn next_generation(&self) -> u64 {
        self.generations.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The generation of a file without a record.
    fn unknown(&self) -> u64 {
        self.swept.load(Ordering::Relaxed)
    }

    /// `file`'s record, made if missing (with the generation it had without one).
    fn meta<'a>(&self, files: &'a mut Files, file: FileKey) -> &'a mut FileMeta {
        let unknown = self.unknown();
        files.entry(file).or_insert_with(|| FileMeta { generation: unknown, ..FileMeta::default() })
    }

    /// Forgets the records of files with nothing cached, dirty or in progress (every file
    /// opened in a cache mode leaves one). A reader that took such a file's generation before
    /// gets a new one's mismatch: the sweep moves the generation of unknown files on.
    fn sweep(&self, files: &mut Files) {
        let mut cached = FxHashSet::default();
        for i in 0..SHARDS {
            cached.extend(self.shard(i).by_file.keys().copied());
        }
        self.swept.store(self.next_generation(), Ordering::Relaxed);
        files.retain(|k, m| {
            cached.contains(k)
                || !m.dirty.is_empty()
                || m.source.is_some()
                // A failure nobody reported yet (one reported is let go with the record: a
                // handle opened before it that has not fsync'd since may then miss it).
                || m.error.is_some_and(|(_, _, seen)| !seen)
                || m.flushing.as_ref().is_some_and(|l| Arc::strong_count(l) > 1)
                || m.resizing > 0
                || m.writing > 0
        });
        self.sweep_at.store((files.len() * 2).max(SWEEP_MIN), Ordering::Relaxed);
    }

    /// Copies block `block` of `file` from byte `at` on into `out`: the bytes copied (fewer
    /// than asked at the end of a short last block), or `None` when the block is not cached.
    pub fn read(&self, file: FileKey, block: u64, at: usize, out: &mut [u8]) -> Option<usize> {
        self.read_with(file, block, |data| {
            let n = data.len().saturating_sub(at).min(out.len());
            out[..n].copy_from_slice(&data[at.min(data.len())..at.min(data.len()) + n]);
            n
        })
    }

    /// Runs `f` on cached block `block` of `file` (under its shard's lock), counting a hit;
    /// `None` (a miss) when it is not cached.
    pub fn read_with<R>(&self, file: FileKey, block: u64, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let mut s = self.shard(shard_of(&file, block));
        if let Some(d) = s.dirty.get(&(file, block)) {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            return Some(f(&d.data));
        }
        match s.blocks.get(&(file, block)) {
            Some(data) => {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                Some(f(data))
            }
            None => {
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// The file's generation: take it before reading a block from the backend and hand it to
    /// [`BlockCache::insert`].
    pub fn generation(&self, file: FileKey) -> u64 {
        self.files().get(&file).map_or(self.unknown(), |m| m.generation)
    }

    /// Caches block `block` of `file` (at most `BLOCK` bytes: a shorter one is the file's
    /// last), read from the backend when the file's generation was `generation`; refused
    /// when the file changed since (the data may predate the change).
    pub fn insert(&self, file: FileKey, block: u64, generation: u64, mut data: Vec<u8>) {
        data.truncate(BLOCK);
        let files = self.files();
        let meta = files.get(&file);
        if meta.map_or(self.unknown(), |m| m.generation) != generation {
            return;
        }
        if data.len() < BLOCK && meta.is_some_and(|m| !m.dirty.is_empty()) {
            // Where the backing file ends is not where the file ends while dirty blocks
            // wait (write-back): a short block would mark a false end once they are written.
            return;
        }
        let i = shard_of(&file, block);
        let mut s = self.shard(i);
        drop(files);
        if s.dirty.contains_key(&(file, block)) {
            return;
        }
        self.insert_clean(&mut s, (file, block), data.into_boxed_slice());
        drop(s);
        self.make_room(i);
    }

    /// Puts a clean block into shard `s` (replacing what it held under that key).
    fn insert_clean(&self, s: &mut Shard, (file, block): Key, data: Box<[u8]>) {
        let len = data.len() as u64;
        let old = s.blocks.remove(&(file, block)).map_or(0, |d| d.len() as u64);
        let evicted = s.blocks.insert((file, block), data);
        s.by_file.entry(file).or_default().insert(block);
        let mut freed = old;
        for (k, d) in evicted {
            s.forget(k);
            freed += d.len() as u64;
            self.stats.evictions.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.insertions.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes.fetch_add(len, Ordering::Relaxed);
        self.stats.bytes.fetch_sub(freed, Ordering::Relaxed);
    }

    /// Evicts clean blocks (from shard `first` on, then round robin) while clean and dirty
    /// data together pass the limit: dirty blocks take their room from clean ones.
    fn make_room(&self, first: usize) {
        let over = || self.stats.bytes.load(Ordering::Relaxed) + self.stats.dirty.load(Ordering::Relaxed) > self.limit;
        let mut i = first;
        let mut empty = 0;
        while over() && empty < SHARDS {
            let mut s = self.shard(i);
            match s.blocks.evict_one() {
                Some((k, d)) => {
                    s.forget(k);
                    self.stats.bytes.fetch_sub(d.len() as u64, Ordering::Relaxed);
                    self.stats.evictions.fetch_add(1, Ordering::Relaxed);
                    empty = 0;
                }
                None => empty += 1,
            }
            drop(s);
            i = self.cursor.fetch_add(1, Ordering::Relaxed) % SHARDS;
        }
    }

    /// Drops blocks `first..=last` of `file` (a write or truncation changed them).
    pub fn invalidate_range(&self, file: FileKey, first: u64, last: u64) {
        let mut files = self.files();
        self.meta(&mut files, file).generation = self.next_generation();
        self.drop_blocks(file, first, last);
        drop(files);
        self.stats.invalidations.fetch_add(1, Ordering::Relaxed);
    }

    /// Removes `file`'s cached blocks in `first..=last` from every shard (the caller holds
    /// the files lock, so no insertion of this file runs meanwhile).
    fn drop_blocks(&self, file: FileKey, first: u64, last: u64) {
        let mut freed = 0;
        for i in 0..SHARDS {
            let mut s = self.shard(i);
            let blocks: Vec<u64> = s.by_file.get(&file).map(|set| set.iter().copied().filter(|b| (first..=last).contains(b)).collect()).unwrap_or_default();
            for b in blocks {
                if let Some(d) = s.blocks.remove(&(file, b)) {
                    freed += d.len() as u64;
                }
                s.forget((file, b));
            }
        }
        self.stats.bytes.fetch_sub(freed, Ordering::Relaxed);
    }

    /// Drops every block of `file`, and what the cache knew of it.
    pub fn invalidate(&self, file: FileKey) {
        let mut files = self.files();
        self.forget_clean(&mut files, file);
        drop(files);
        self.stats.invalidations.fetch_add(1, Ordering::Relaxed);
    }

    /// Under the files lock: `file` gets a new generation, no version and no clean blocks;
    /// its record, for the caller to clear more.
    fn forget_clean<'a>(&self, files: &'a mut Files, file: FileKey) -> &'a mut FileMeta {
        let g = self.next_generation();
        let m = self.meta(files, file);
        m.generation = g;
        m.version = None;
        m.forgotten = true;
        self.drop_blocks(file, 0, u64::MAX);
        m
    }

    /// Called when `file` is opened, with what it looks like now: if it changed since its
    /// blocks were cached (another writer), they go. Records `now` either way.
    pub fn validate(&self, file: FileKey, now: Version) {
        let mut files = self.files();
        if files.len() >= self.sweep_at.load(Ordering::Relaxed) {
            self.sweep(&mut files);
        }
        let g = self.next_generation();
        let m = self.meta(&mut files, file);
        // A file never checked has nothing cached yet; one whose version an invalidation
        // forgot may have blocks read since, of a file that may have changed since.
        let changed = match m.version.replace(now) {
            Some(v) => v != now,
            None => std::mem::take(&mut m.forgotten),
        };
        if changed {
            m.generation = g;
            self.drop_blocks(file, 0, u64::MAX);
            self.stats.invalidations.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records what `file` looks like after a change made through this cache (its blocks were
    /// kept up to date), so that the next open does not take it for someone else's.
    pub fn changed_by_us(&self, file: FileKey, now: Version) {
        let mut files = self.files();
        let m = self.meta(&mut files, file);
        m.version = Some(now);
        m.forgotten = false;
    }
}

/// The service's block cache, if an instance made one and it is still in use.
pub fn current() -> Option<std::sync::Arc<BlockCache>> {
    SHARED.lock().unwrap_or_else(|p| p.into_inner()).as_ref().and_then(std::sync::Weak::upgrade)
}

static SHARED: Mutex<Option<std::sync::Weak<BlockCache>>> = Mutex::new(None);

/// The process's (the service's) block cache, made on first use with `bytes`; later callers
/// share it whatever size they ask (one cache per service, as the pool's memory is one).
pub fn shared(bytes: u64) -> std::sync::Arc<BlockCache> {
    let mut slot = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = slot.as_ref().and_then(std::sync::Weak::upgrade) {
        if bytes > c.limit() {
            tracing::warn!("the service's cache stays at {} bytes (an instance asked for {bytes})", c.limit());
        }
        return c;
    }
    let c = std::sync::Arc::new(BlockCache::new(bytes));
    *slot = Some(std::sync::Arc::downgrade(&c));
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: FileKey = FileKey { dev: 1, ino: 2 };
    const G: FileKey = FileKey { dev: 1, ino: 3 };

    fn block(fill: u8, len: usize) -> Vec<u8> {
        vec![fill; len]
    }

    #[test]
    fn reads_come_back_as_cached_from_any_offset() {
        let c = BlockCache::new(16 << 20);
        let mut out = [0u8; 100];
        assert_eq!(c.read(F, 0, 0, &mut out), None);
        c.insert(F, 0, 0, (0..BLOCK).map(|i| i as u8).collect());
        c.insert(F, 1, 0, block(7, 10));
        assert_eq!(c.read(F, 0, 1000, &mut out), Some(100));
        assert_eq!(out[0], (1000 % 256) as u8);
        assert_eq!(c.read(F, 1, 4, &mut out), Some(6), "a short last block");
        assert_eq!(c.read(F, 1, 50, &mut out), Some(0));
        assert_eq!(c.read(G, 0, 0, &mut out), None, "another file");
        assert_eq!(c.stats.hits.load(Ordering::Relaxed), 3);
        assert_eq!(c.stats.bytes.load(Ordering::Relaxed), BLOCK as u64 + 10);
    }

    #[test]
    fn it_never_holds_more_than_its_limit() {
        let c = BlockCache::new(4 << 20);
        for file in 0..50 {
            for b in 0..20 {
                c.insert(FileKey { dev: 9, ino: file }, b, 0, block(1, BLOCK));
                assert!(c.stats.bytes.load(Ordering::Relaxed) <= c.limit());
            }
        }
        assert!(c.stats.evictions.load(Ordering::Relaxed) > 0);
        assert!(c.limit() <= 4 << 20 || c.limit() == (2 * SHARDS * BLOCK) as u64);
    }

    #[test]
    fn invalidation_and_versions() {
        let c = BlockCache::new(16 << 20);
        let mut out = [0u8; 1];
        for b in 0..4 {
            c.insert(F, b, 0, block(b as u8, BLOCK));
        }
        c.insert(G, 0, 0, block(9, BLOCK));
        // A block read before a change is refused after it.
        let before = c.generation(G);
        c.invalidate_range(G, 5, 5);
        c.insert(G, 1, before, block(1, BLOCK));
        assert!(c.read(G, 1, 0, &mut out).is_none(), "a stale block was cached");
        c.insert(G, 1, c.generation(G), block(1, BLOCK));
        assert!(c.read(G, 1, 0, &mut out).is_some());
        c.invalidate_range(G, 1, 1);
        c.invalidate_range(F, 1, 2);
        assert!(c.read(F, 0, 0, &mut out).is_some() && c.read(F, 3, 0, &mut out).is_some());
        assert!(c.read(F, 1, 0, &mut out).is_none() && c.read(F, 2, 0, &mut out).is_none());
        // Close-to-open: the same version keeps the blocks, a new one drops them.
        c.validate(F, (10, 0, 4 * BLOCK as u64));
        c.validate(F, (10, 0, 4 * BLOCK as u64));
        assert!(c.read(F, 0, 0, &mut out).is_some());
        c.changed_by_us(F, (11, 0, 4 * BLOCK as u64));
        c.validate(F, (11, 0, 4 * BLOCK as u64));
        assert!(c.read(F, 0, 0, &mut out).is_some(), "our own change is not someone else's");
        c.validate(F, (12, 5, 4 * BLOCK as u64));
        assert!(c.read(F, 0, 0, &mut out).is_none() && c.read(F, 3, 0, &mut out).is_none());
        assert!(c.read(G, 0, 0, &mut out).is_some(), "other files keep theirs");
        c.invalidate(G);
        assert!(c.read(G, 0, 0, &mut out).is_none());
        assert_eq!(c.stats.bytes.load(Ordering::Relaxed), 0);
        // Blocks read after an invalidation (which forgot the version) are checked at the
        // next open like any: a file changed meanwhile loses them.
        c.validate(G, (20, 0, BLOCK as u64));
        c.invalidate(G);
        c.insert(G, 0, c.generation(G), block(3, BLOCK));
        c.validate(G, (21, 0, BLOCK as u64));
        assert!(c.read(G, 0, 0, &mut out).is_none(), "a block of a file changed since its invalidation was kept");
        c.insert(G, 0, c.generation(G), block(4, BLOCK));
        c.validate(G, (21, 0, BLOCK as u64));
        assert!(c.read(G, 0, 0, &mut out).is_some(), "the version is known again");
    }

    /// A 16 MiB write-back cache (8 MiB of dirty data at most) holding three dirty blocks of
    /// `F`, to be written back through `/dev/null`.
    fn three_dirty_blocks_of_f() -> BlockCache {
        let c = BlockCache::new(16 << 20);
        c.enable_writeback(Writeback { dirty_limit: 8 << 20, expire: std::time::Duration::from_secs(5), interval: std::time::Duration::from_secs(1) });
        let src: Arc<OwnedFd> = Arc::new(std::fs::File::open("/dev/null").expect("/dev/null").into());
        for b in 0..3 {
            assert!(c.write_dirty(F, b, c.generation(F), None, 0, &[7u8; BLOCK], || Ok(0), &src).expect("write"));
        }
        c
    }

    #[test]
    fn a_discarded_file_leaves_nothing_dirty_or_cached() {
        let c = three_dirty_blocks_of_f();
        c.insert(G, 0, c.generation(G), block(1, BLOCK));
        assert_eq!((c.dirty_size(F), c.stats.dirty.load(Ordering::Relaxed)), (Some(3 * BLOCK as u64), 3 * BLOCK as u64));
        c.discard(F);
        let mut out = [0u8; 1];
        assert_eq!((c.dirty_size(F), c.stats.dirty.load(Ordering::Relaxed)), (None, 0));
        assert!(c.read(F, 1, 0, &mut out).is_none() && c.plan_flush(F).is_none());
        assert!(c.read(G, 0, 0, &mut out).is_some(), "other files keep theirs");
    }

    /// A write-back that fails for good (a full disk, a file past the file system's largest
    /// size) drops the file's dirty blocks and keeps the error for the next fsync; one that
    /// may pass (interrupted) keeps them. (They stayed dirty for good: past the dirty limit,
    /// every writer of the cache failed trying to write them back.)
    #[test]
    fn a_write_back_that_fails_for_good_drops_the_blocks_and_keeps_the_error() {
        let c = three_dirty_blocks_of_f();
        assert_eq!(c.writeback().map(|w| w.dirty_limit), Some(8 << 20));
        let small = BlockCache::new(4 << 20);
        small.enable_writeback(Writeback { dirty_limit: 64 << 20, expire: std::time::Duration::from_secs(5), interval: std::time::Duration::from_secs(1) });
        assert_eq!(small.writeback().map(|w| w.dirty_limit), Some(small.limit()), "no more dirty data than the cache holds");
        // Two handles of the file, opened before the failures, and one opened after.
        let (a, b) = (AtomicU64::new(c.errors_seen_now()), AtomicU64::new(c.errors_seen_now()));
        c.flushed(F, Err(libc::EINTR));
        assert_eq!(c.dirty_size(F), Some(3 * BLOCK as u64), "an interrupted write-back is tried again");
        c.flushed(F, Err(libc::EFBIG));
        assert_eq!((c.dirty_size(F), c.stats.dirty.load(Ordering::Relaxed)), (None, 0));
        assert!(!c.over_dirty_limit(BLOCK as u64) && c.plan_flush(F).is_none());
        let later = AtomicU64::new(c.errors_seen_now());
        // A handle opened after the failure, before anyone reported it, reports it (a program
        // that wrote, closed, reopened and fsync'd learns its data is lost).
        let reopened = AtomicU64::new(c.errors_seen_for(F));
        assert_eq!(c.error_since(F, &reopened), Some(libc::EFBIG));
        assert_eq!(c.error_since(F, &reopened), None, "once");
        assert_eq!(c.error_since(F, &a), Some(libc::EFBIG), "for the next fsync of every handle");
        assert_eq!(c.error_since(F, &a), None, "once");
        assert_eq!(c.error_since(F, &b), Some(libc::EFBIG), "the other handle's fsync fails too");
        assert_eq!(c.error_since(F, &later), None, "sampled as seen, without a look at the file");
        let after_report = AtomicU64::new(c.errors_seen_for(F));
        assert_eq!(c.error_since(F, &after_report), None, "a handle opened after the failure was reported never saw the lost data");
        // The file system's sync reports it once too, to each who asks.
        let fs_seen = AtomicU64::new(0);
        assert_eq!(c.error_since_on(F.dev, &fs_seen), Some(libc::EFBIG));
        assert_eq!(c.error_since_on(F.dev, &fs_seen), None);
        assert_eq!(c.error_since_on(F.dev + 1, &AtomicU64::new(0)), None, "another file system's");
    }

    /// An interrupted write-back that is tried again and passes leaves no error behind.
    #[test]
    fn a_write_back_that_passes_when_tried_again_reports_nothing() {
        let c = three_dirty_blocks_of_f();
        let seen = AtomicU64::new(c.errors_seen_now());
        c.flushed(F, Err(libc::EINTR));
        c.flushed(F, Ok((1, 0, 3 * BLOCK as u64)));
        assert_eq!(c.error_since(F, &seen), None);
    }

    #[test]
    fn records_of_files_with_nothing_cached_are_swept_and_stale_fills_stay_refused() {
        let c = BlockCache::new(16 << 20);
        c.insert(F, 0, c.generation(F), block(1, BLOCK));
        c.validate(F, (1, 0, BLOCK as u64));
        // A reader of G takes its generation, then G changes and thousands of files are opened.
        c.validate(G, (1, 0, 10));
        let before = c.generation(G);
        c.invalidate(G);
        for ino in 100..(100 + 3 * SWEEP_MIN as u64) {
            c.validate(FileKey { dev: 1, ino }, (1, 0, 0));
        }
        let kept = c.files().len();
        assert!(kept < 2 * SWEEP_MIN, "{kept} records kept");
        assert!(c.files().contains_key(&F), "a file with cached blocks keeps its record");
        c.insert(G, 0, before, block(2, 10));
        let mut out = [0u8; 1];
        assert!(c.read(G, 0, 0, &mut out).is_none(), "a fill from before the change was taken");
        assert!(c.read(F, 0, 0, &mut out).is_some());
    }
}
