//! Write-back (issue 8): blocks written through the cache stay in it, dirty, until the pool's
//! own threads write them back (the flusher, a writer over the dirty limit, fsync, close).
//!
//! What is dirty is held outside the replacement policy (never evicted) and read before the
//! clean blocks. A file with dirty blocks has a size of its own (its backing file's plus what
//! the dirty blocks add), which reads and `getattr` use. Invariant: every dirty block holds
//! `min(BLOCK, size - start)` bytes, so the block where the file ends is the only short one
//! and a short clean block still marks the end of the file once the dirty ones are written.
//!
//! This module keeps the state; the backend client does the I/O (`FlushPlan`, then one
//! [`BlockCache::dirty_copy`] and [`BlockCache::written_back`] per block).

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::policy::Policy;
use super::{shard_of, BlockCache, FileKey, Version, BLOCK};

/// A block written and not yet written back.
pub(super) struct DirtyBlock {
    pub data: Vec<u8>,
    /// Bumped by every write to it: a write-back that copied an older state leaves it dirty.
    pub seq: u64,
}

static SEQ: AtomicU64 = AtomicU64::new(1);

/// Write-back settings (the papers': dirty data up to half the cache, written back after 5 s,
/// looked at every second).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Writeback {
    /// Most dirty bytes; a writer past it writes back before it goes on.
    pub dirty_limit: u64,
    /// Dirty data older than this is written back by the flusher.
    pub expire: Duration,
    /// How often the flusher looks.
    pub interval: Duration,
}

/// One file's write-back, planned under the cache's locks and done without them.
#[derive(Debug)]
pub struct FlushPlan {
    /// An open file of the backing object (the handle that first dirtied it).
    pub source: Arc<OwnedFd>,
    /// Its dirty blocks, in order.
    pub blocks: Vec<u64>,
    /// When it was last written (wall clock: seconds, nanoseconds): its modification time,
    /// which the write-back's own writes must not move.
    pub written: (i64, u32),
}

/// A dirty block copied out for writing back.
#[derive(Debug)]
pub struct FlushBlock {
    pub len: usize,
    pub seq: u64,
}

/// Files closed with dirty blocks, for the flusher to write back at once (the thread that
/// served the close goes on serving requests).
#[derive(Debug, Default)]
pub struct Closed {
    files: Mutex<Vec<FileKey>>,
    wake: Condvar,
}

impl Closed {
    pub fn push(&self, file: FileKey) {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        if !files.contains(&file) {
            files.push(file);
        }
        self.wake.notify_one();
    }

    /// The files closed since the last call; waits up to `timeout` for one.
    pub fn wait(&self, timeout: Duration) -> Vec<FileKey> {
        let files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let (mut files, _) = self.wake.wait_timeout_while(files, timeout, |f| f.is_empty()).unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *files)
    }
}

impl BlockCache {
    /// Where closes tell the flusher about dirty files.
    pub fn closed(&self) -> Arc<Closed> {
        self.closed.clone()
    }

    /// Drops everything cached of `file`, dirty blocks included: its last name is gone and
    /// nothing in the service holds it open, so nothing can read them.
    pub fn discard(&self, file: FileKey) {
        self.drop_all(&mut self.files(), file);
    }

    /// Under the files lock: `file`'s blocks go, dirty ones included, and what the cache knew
    /// of it; its record, for the caller to set more.
    fn drop_all<'a>(&self, files: &'a mut super::Files, file: FileKey) -> &'a mut super::FileMeta {
        let m = self.forget_clean(files, file);
        m.since = None;
        m.source = None;
        for b in std::mem::take(&mut m.dirty) {
            if self.shard(shard_of(&file, b)).dirty.remove(&(file, b)).is_some() {
                self.stats.dirty.fetch_sub(BLOCK as u64, Ordering::Relaxed);
            }
        }
        m
    }

    /// Marks `file` as being resized (truncated, or its blocks moved or punched by
    /// `fallocate`) until the guard drops: writes into the cache wait meanwhile, so none lands
    /// between the write-back of its dirty blocks and the cut of its backing file (it would
    /// build on a block read before the cut, and write the old bytes back past it later).
    /// Blocks read before the guard drops are refused after it (a new generation each way).
    pub fn begin_resize(&self, file: FileKey) -> Resizing<'_> {
        let mut files = self.files();
        self.meta(&mut files, file).resizing += 1;
        // Writes begun before it end first (a write is one step, whatever blocks it spans),
        // new ones wait for it.
        while files.get(&file).is_some_and(|m| m.writing > 0) {
            files = self.resized.wait(files).unwrap_or_else(|p| p.into_inner());
        }
        let g = self.next_generation();
        self.meta(&mut files, file).generation = g;
        Resizing { cache: self, file }
    }

    /// Marks a write of `file` into the cache (all its blocks) as in progress until the guard
    /// drops: it waits for a resize in progress, and a resize waits for it, so that a write is
    /// wholly before or wholly after a truncation, as the kernel's inode lock makes it.
    pub fn begin_write(&self, file: FileKey) -> Writing<'_> {
        let mut files = self.files();
        while files.get(&file).is_some_and(|m| m.resizing > 0) {
            files = self.resized.wait(files).unwrap_or_else(|p| p.into_inner());
        }
        self.meta(&mut files, file).writing += 1;
        Writing { cache: self, file }
    }

    /// Write-back settings, if write-back was enabled.
    pub fn writeback(&self) -> Option<Writeback> {
        self.writeback.get().copied()
    }

    /// Enables write-back with `w`; true for the call that did (it starts the flusher).
    pub fn enable_writeback(&self, w: Writeback) -> bool {
        // One cache serves the service's instances, made with the first one's size: an
        // instance that asks for write-back later may not take more dirty data than it holds.
        let w = Writeback { dirty_limit: w.dirty_limit.min(self.limit()), ..w };
        let mut first = false;
        let set = self.writeback.get_or_init(|| {
            first = true;
            w
        });
        if !first && *set != w {
            tracing::warn!("the service's cache keeps its write-back settings {set:?} (an instance asked for {w:?})");
        }
        first
    }

    /// The size of `file` with its dirty blocks, when it has any.
    pub fn dirty_size(&self, file: FileKey) -> Option<u64> {
        self.dirty_state(file).map(|(size, _, _)| size)
    }

    /// The size of `file` with its dirty blocks and when it was last written (seconds and
    /// nanoseconds of the wall clock), when it has any.
    /// And how many blocks are dirty.
    pub fn dirty_state(&self, file: FileKey) -> Option<(u64, (i64, u32), u64)> {
        self.files().get(&file).filter(|m| !m.dirty.is_empty()).map(|m| (m.size, m.written, m.dirty.len() as u64))
    }

    /// When `file` was last written through the cache (wall clock), if it has a record.
    pub fn last_written(&self, file: FileKey) -> Option<(i64, u32)> {
        self.files().get(&file).map(|m| m.written)
    }

    /// Whether block `block` of `file` is held, dirty or clean (a write into it needs no read
    /// of the backing file).
    pub fn holds(&self, file: FileKey, block: u64) -> bool {
        let s = self.shard(shard_of(&file, block));
        s.dirty.contains_key(&(file, block)) || s.blocks.contains(&(file, block))
    }

    /// Whether `more` dirty bytes would pass the dirty limit.
    pub fn over_dirty_limit(&self, more: u64) -> bool {
        let limit = self.writeback().map_or(0, |w| w.dirty_limit);
        self.stats.dirty.load(Ordering::Relaxed) + more > limit
    }

    /// Writes `src` at byte `at` of block `block` of `file` into the cache, dirty. `base` is
    /// the block as the backing file holds it (read when the file's generation was
    /// `generation`), needed unless the block is held, wholly overwritten, or past the
    /// backing file's end (`backend_size` tells it, asked under the cache's lock so that no
    /// write-back moves it meanwhile); `source` is the open file to write it back through.
    /// `Ok(false)` when `base` was needed and is missing or stale: read it and call again.
    #[allow(clippy::too_many_arguments)]
    pub fn write_dirty(
        &self,
        file: FileKey,
        block: u64,
        generation: u64,
        base: Option<Vec<u8>>,
        at: usize,
        src: &[u8],
        backend_size: impl FnOnce() -> std::io::Result<u64>,
        source: &Arc<OwnedFd>,
    ) -> std::io::Result<bool> {
        let n = src.len().min(BLOCK.saturating_sub(at));
        let start = block * BLOCK as u64;
        let key = (file, block);
        let i = shard_of(&file, block);
        let mut files = self.files();
        let g = self.next_generation();
        let m = self.meta(&mut files, file);
        let backend_size = backend_size()?;
        let old_size = if m.dirty.is_empty() { backend_size } else { m.size.max(backend_size) };
        let new_size = old_size.max(start + (at + n) as u64);
        let mut s = self.shard(i);
        let mut data = if let Some(d) = s.dirty.remove(&key) {
            d.data
        } else if let Some(c) = s.blocks.remove(&key) {
            s.forget(key);
            self.stats.bytes.fetch_sub(c.len() as u64, Ordering::Relaxed);
            c.into_vec()
        } else if (at == 0 && n == BLOCK) || start >= backend_size {
            Vec::with_capacity(BLOCK)
        } else {
            match base {
                Some(b) if m.generation == generation => b,
                _ => return Ok(false),
            }
        };
        let len = data.len().max(((new_size - start) as usize).min(BLOCK)).max(at + n);
        data.resize(len, 0);
        // The source may be a client's shared-memory buffer, which that client alone may also
        // write: a raw copy, as the kernel's would be.
        // SAFETY: `at + n <= len == data.len()` and `n <= src.len()`; `data` is our own.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), data.as_mut_ptr().add(at), n) };
        s.dirty.insert(key, DirtyBlock { data, seq: SEQ.fetch_add(1, Ordering::Relaxed) });
        drop(s);
        if m.dirty.insert(block) {
            self.stats.dirty.fetch_add(BLOCK as u64, Ordering::Relaxed);
        }
        m.generation = g;
        m.size = new_size;
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
        m.written = (now.tv_sec, now.tv_nsec as u32);
        m.since.get_or_insert_with(Instant::now);
        m.source.get_or_insert_with(|| source.clone());
        if new_size > old_size && old_size % BLOCK as u64 != 0 && old_size / (BLOCK as u64) < block {
            // The block the file used to end in now reads on: zeros up to the new data.
            let last = old_size / BLOCK as u64;
            let mut s = self.shard(shard_of(&file, last));
            if let Some(d) = s.dirty.get_mut(&(file, last)) {
                let want = ((new_size - last * BLOCK as u64) as usize).min(BLOCK);
                if d.data.len() < want {
                    d.data.resize(want, 0);
                    d.seq = SEQ.fetch_add(1, Ordering::Relaxed);
                }
            } else if let Some(c) = s.blocks.remove(&(file, last)) {
                s.forget((file, last));
                self.stats.bytes.fetch_sub(c.len() as u64, Ordering::Relaxed);
            }
        }
        drop(files);
        self.make_room(i);
        Ok(true)
    }

    /// Plans the write-back of `file`: `None` when nothing of it is dirty.
    pub fn plan_flush(&self, file: FileKey) -> Option<FlushPlan> {
        let files = self.files();
        let m = files.get(&file).filter(|m| !m.dirty.is_empty())?;
        Some(FlushPlan { source: m.source.clone()?, blocks: m.dirty.iter().copied().collect(), written: m.written })
    }

    /// The lock that keeps write-backs of `file` apart (two could write an older copy of a
    /// block after a newer one).
    pub fn flush_lock(&self, file: FileKey) -> Arc<Mutex<()>> {
        let mut files = self.files();
        self.meta(&mut files, file).flushing.get_or_insert_with(Default::default).clone()
    }

    /// The lock of [`BlockCache::flush_lock`] if `file` was ever written back (no record made):
    /// what waits for a write-back ending.
    pub fn flush_lock_if_any(&self, file: FileKey) -> Option<Arc<Mutex<()>>> {
        self.files().get(&file).and_then(|m| m.flushing.clone())
    }

    /// Copies dirty block `block` of `file` into `out` (at least `BLOCK` bytes): its length
    /// and state, or `None` when it is no longer dirty.
    pub fn dirty_copy(&self, file: FileKey, block: u64, out: &mut [u8]) -> Option<FlushBlock> {
        let s = self.shard(shard_of(&file, block));
        let d = s.dirty.get(&(file, block))?;
        let len = d.data.len().min(out.len());
        out[..len].copy_from_slice(&d.data[..len]);
        Some(FlushBlock { len, seq: d.seq })
    }

    /// Block `block` of `file` was written back as it was at `seq`: it becomes clean, unless it
    /// was written again since.
    pub fn written_back(&self, file: FileKey, block: u64, seq: u64) {
        let mut files = self.files();
        let g = self.next_generation();
        let Some(m) = files.get_mut(&file) else { return };
        let mut s = self.shard(shard_of(&file, block));
        if s.dirty.get(&(file, block)).is_none_or(|d| d.seq != seq) {
            return;
        }
        if let Some(d) = s.dirty.remove(&(file, block)) {
            self.insert_clean(&mut s, (file, block), d.data.into_boxed_slice());
        }
        drop(s);
        // A block read from the backing file before this write-back may predate it.
        m.generation = g;
        m.dirty.remove(&block);
        self.stats.dirty.fetch_sub(BLOCK as u64, Ordering::Relaxed);
        self.stats.writebacks.fetch_add(1, Ordering::Relaxed);
    }

    /// After a write-back of `file`: what its backing file looks like now (our own change,
    /// not another writer's), or the error it met (kept for the next fsync).
    pub fn flushed(&self, file: FileKey, result: Result<Version, i32>) {
        let mut files = self.files();
        if !files.contains_key(&file) {
            return;
        }
        if let Err(e) = result {
            self.stats.writeback_errors.fetch_add(1, Ordering::Relaxed);
            let failure = (e, self.failures.fetch_add(1, Ordering::AcqRel) + 1);
            if !matches!(e, libc::EINTR | libc::EAGAIN | libc::ENOMEM) {
                // An error that writing again will meet again (a full disk, a file past the
                // file system's largest size, a failing device): the blocks go, as the
                // kernel's page cache drops pages it cannot write back, and the error waits
                // for the next fsync. Kept dirty, they would count against the dirty limit for
                // good, and every writer of every write-back instance would fail trying to
                // write them back.
                self.drop_all(&mut files, file).error = Some((failure.0, failure.1, false));
                self.failures_by_dev.lock().unwrap_or_else(|p| p.into_inner()).insert(file.dev, failure);
                return;
            }
            // Otherwise the blocks stay dirty, to be tried again: an error only if that
            // fails for good (reported after a retry that passed, it would fail an fsync
            // whose data is written).
        }
        let Some(m) = files.get_mut(&file) else { return };
        if let Ok(v) = result {
            m.version = Some(v);
        }
        if m.dirty.is_empty() {
            m.since = None;
            m.source = None;
        } else if result.is_ok() {
            // Written again meanwhile: as old as that.
            m.since = Some(Instant::now());
        }
    }

    /// What a handle opened now has seen of write-back failures: none so far (see
    /// [`BlockCache::error_since`]).
    pub fn errors_seen_now(&self) -> u64 {
        self.failures.load(Ordering::Acquire)
    }

    /// The error a write-back of `file` met that the handle whose count is `seen` has not
    /// reported yet; the count moves past it. Each open handle of the file (and each O_SYNC
    /// write through one) reports a failure once, as the kernel's errseq does: not only the
    /// first fsync of anyone, whose caller alone learned that the others' data was lost.
    pub fn error_since(&self, file: FileKey, seen: &AtomicU64) -> Option<i32> {
        let mut files = self.files();
        let error = files.get_mut(&file).and_then(|m| m.error.as_mut())?;
        let (e, n) = (error.0, error.1);
        if seen.fetch_max(n, Ordering::AcqRel) >= n {
            return None;
        }
        error.2 = true;
        Some(e)
    }

    /// What a handle of `file` opened now has seen: as [`BlockCache::errors_seen_now`],
    /// except that a failure of the file nobody reported yet is still to be reported (the
    /// kernel's errseq does the same: a program that wrote, closed, reopened and fsync'd
    /// learns that its data was lost).
    pub fn errors_seen_for(&self, file: FileKey) -> u64 {
        let files = self.files();
        let now = self.failures.load(Ordering::Acquire);
        match files.get(&file).and_then(|m| m.error) {
            Some((_, n, false)) => n - 1,
            _ => now,
        }
    }

    /// As [`BlockCache::error_since`], for the file system `dev` as a whole (`syncfs`): its
    /// latest failure.
    pub fn error_since_on(&self, dev: u64, seen: &AtomicU64) -> Option<i32> {
        let (e, n) = self.failures_by_dev.lock().unwrap_or_else(|p| p.into_inner()).get(&dev).copied()?;
        (seen.fetch_max(n, Ordering::AcqRel) < n).then_some(e)
    }

    /// Files with dirty data, oldest first; only those dirty since `before` when given.
    pub fn dirty_files(&self, before: Option<Instant>) -> Vec<FileKey> {
        let files = self.files();
        let mut v: Vec<(Instant, FileKey)> = files
            .iter()
            .filter_map(|(k, m)| m.since.filter(|t| before.is_none_or(|b| *t <= b)).map(|t| (t, *k)))
            .collect();
        v.sort_unstable_by_key(|(t, _)| *t);
        v.into_iter().map(|(_, k)| k).collect()
    }
}

/// A resize of one file in progress (see [`BlockCache::begin_resize`]).
#[must_use = "the resize ends when the guard drops"]
pub struct Resizing<'a> {
    cache: &'a BlockCache,
    file: FileKey,
}

/// A write into the cache in progress (see [`BlockCache::begin_write`]).
#[must_use = "the write ends when the guard drops"]
pub struct Writing<'a> {
    cache: &'a BlockCache,
    file: FileKey,
}

impl std::fmt::Debug for Writing<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writing").field("file", &self.file).finish_non_exhaustive()
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        let mut files = self.cache.files();
        let last = files.get_mut(&self.file).is_some_and(|m| {
            m.writing = m.writing.saturating_sub(1);
            m.writing == 0 && m.resizing > 0
        });
        drop(files);
        if last {
            self.cache.resized.notify_all();
        }
    }
}

impl std::fmt::Debug for Resizing<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resizing").field("file", &self.file).finish_non_exhaustive()
    }
}

impl Drop for Resizing<'_> {
    fn drop(&mut self) {
        let mut files = self.cache.files();
        let g = self.cache.next_generation();
        if let Some(m) = files.get_mut(&self.file) {
            m.resizing = m.resizing.saturating_sub(1);
            m.generation = g;
        }
        drop(files);
        self.cache.resized.notify_all();
    }
}
