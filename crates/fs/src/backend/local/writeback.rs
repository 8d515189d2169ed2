//! The local backend's write-back (`writeback` mode): writes land in the service's block
//! cache, dirty, and the pool's own threads write them to the backing files with direct I/O
//! — the flusher (expired data, or more than half the dirty limit), a writer that would pass
//! the dirty limit, `fsync`, the last close (unless the mount declares its branch its own,
//! `close_to_open: false`), a rename, setattr/fallocate/lseek of the file, unmount and service
//! stop. The flusher is a thread of the service, so it runs on the pool's cpus (the service
//! lives in the pool's cpuset).
//!
//! Consistency: a write is visible to every later read through the service when it returns
//! (reads look at dirty blocks first); fsync and fdatasync write the file's dirty blocks back
//! and then sync the backing file; a close writes them back, so another service that opens
//! the file afterwards reads them (close-to-open, the default); on a branch the mount declares
//! its own they wait for their expiry, and a file removed before then is never written.
//! Dirty data not yet written back is lost if the service is killed; `service stop` writes
//! everything back first.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use rustix::fs::{self as rfs, Mode, OFlags};

use super::cached::{fetch, version_of, Direct, ALIGN};
use crate::backend::cache::{BlockCache, FileKey, BLOCK};

/// `pwritev` of `file` at `offset` into the cache (dirty); `fd` is the handle's open file.
pub fn write(cache: &BlockCache, fd: &Arc<OwnedFd>, file: FileKey, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
    // The cache takes the write instead of the open file: refuse what the file would.
    if !rfs::fcntl_getfl(&**fd)?.intersects(OFlags::WRONLY | OFlags::RDWR) {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    if total == 0 {
        return Ok(0);
    }
    // Wholly before or wholly after a truncation of the file (see `BlockCache::begin_write`).
    let _writing = cache.begin_write(file);
    let touched = (offset % BLOCK as u64 + total as u64).div_ceil(BLOCK as u64);
    throttle(cache, touched * BLOCK as u64)?;
    let size = || -> io::Result<u64> { Ok(rfs::fstat(&**fd)?.st_size as u64) };
    let mut direct = Direct::new(fd.as_fd());
    let mut pos = offset;
    for buf in bufs {
        let mut src: &[u8] = buf;
        while !src.is_empty() {
            let block = pos / BLOCK as u64;
            let at = (pos % BLOCK as u64) as usize;
            let n = src.len().min(BLOCK - at);
            let start = block * BLOCK as u64;
            loop {
                let generation = cache.generation(file);
                // Whether the block must be read first (checked again under the cache's lock).
                let needs_base = n < BLOCK && !cache.holds(file, block) && start < size()?;
                let base = if needs_base { Some(fetch(&mut direct, block)?) } else { None };
                if cache.write_dirty(file, block, generation, base, at, &src[..n], size, fd)? {
                    break;
                }
            }
            src = &src[n..];
            pos += n as u64;
        }
    }
    Ok(total)
}

/// A writer about to add `more` dirty bytes past the dirty limit first writes back the
/// oldest dirty files (as the kernel's balance_dirty_pages makes writers do). When that fails
/// (a full or failing disk), the write fails with its error rather than pile up more dirty
/// data than the limit.
fn throttle(cache: &BlockCache, more: u64) -> io::Result<()> {
    if !cache.over_dirty_limit(more) {
        // The common case: no list of the dirty files made (it walks every file's record).
        return Ok(());
    }
    let mut failed = None;
    for f in cache.dirty_files(None) {
        if !cache.over_dirty_limit(more) {
            return Ok(());
        }
        if let Err(e) = flush(cache, f) {
            log_failed(f, &e);
            failed.get_or_insert(e);
        }
    }
    match failed {
        Some(e) if cache.over_dirty_limit(more) => Err(e),
        _ => Ok(()),
    }
}

thread_local! {
    /// A run of blocks at an `ALIGN` boundary inside it, for direct writes.
    static RUN: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; RUN_BLOCKS * BLOCK + ALIGN]);
}

/// Most blocks written back in one system call.
const RUN_BLOCKS: usize = 16;

/// Writes `file`'s dirty blocks back to its backing file.
pub fn flush(cache: &BlockCache, file: FileKey) -> io::Result<()> {
    if cache.dirty_size(file).is_none() {
        // Nothing dirty (a write-back in progress keeps its blocks dirty until they are
        // written): no lock, and no record made for a clean file.
        return Ok(());
    }
    let lock = cache.flush_lock(file);
    let _one_at_a_time = lock.lock().unwrap_or_else(|p| p.into_inner());
    let Some(plan) = cache.plan_flush(file) else { return Ok(()) };
    let mut done = Vec::with_capacity(plan.blocks.len());
    let result = RUN.with(|run| write_plan(cache, file, &plan, &mut run.borrow_mut(), &mut done));
    if result.is_ok() {
        // The file's modification time is its last write's, as a kernel file system shows
        // it, not the write-back's (seconds later: `make` would take a source as newer than
        // what was built from it); set before its blocks turn clean, so that nothing shows
        // the write-back's time in between (`attr_of` shows the last write's while any is
        // dirty). Its change time does move, as under FUSE's own write-back cache. The last
        // write's time now: a write that landed during this write-back had its block copied
        // with the rest (one landing after its block was copied stays dirty).
        let (sec, nsec) = cache.last_written(file).map_or(plan.written, |w| w.max(plan.written));
        let times = rfs::Timestamps { last_access: rfs::Timespec { tv_sec: 0, tv_nsec: rfs::UTIME_OMIT }, last_modification: rfs::Timespec { tv_sec: sec, tv_nsec: nsec.into() } };
        if let Err(e) = rfs::futimens(&*plan.source, &times) {
            tracing::debug!("restoring the modification time of inode {} after its write-back: {e}", file.ino);
        }
    }
    // What was written is clean now (after a failure too: written again it would only be
    // written twice).
    for (b, seq) in done {
        cache.written_back(file, b, seq);
    }
    let outcome = match &result {
        Ok(()) => version_of(plan.source.as_fd()).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO)),
        Err(e) => Err(e.raw_os_error().unwrap_or(libc::EIO)),
    };
    cache.flushed(file, outcome);
    result
}

fn reopen(of: &OwnedFd, flags: OFlags) -> io::Result<OwnedFd> {
    Ok(rfs::openat(rfs::CWD, format!("/proc/self/fd/{}", of.as_raw_fd()), flags | OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?)
}

/// Writes the blocks of `plan` in runs of consecutive ones: what is aligned with direct I/O
/// (unless the file system refuses it), the tail of the file buffered.
fn write_plan(cache: &BlockCache, file: FileKey, plan: &crate::backend::cache::FlushPlan, run: &mut [u8], done: &mut Vec<(u64, u64)>) -> io::Result<()> {
    let off = run.as_ptr().align_offset(ALIGN);
    let run = &mut run[off..off + RUN_BLOCKS * BLOCK];
    let mut direct = reopen(&plan.source, OFlags::DIRECT).ok();
    let plain = reopen(&plan.source, OFlags::empty())?;
    let mut i = 0;
    while i < plan.blocks.len() {
        let first = plan.blocks[i];
        let mut taken: Vec<(u64, u64)> = Vec::with_capacity(RUN_BLOCKS);
        let mut len = 0usize;
        while i < plan.blocks.len() && taken.len() < RUN_BLOCKS && plan.blocks[i] == first + taken.len() as u64 {
            let b = plan.blocks[i];
            let Some(copied) = cache.dirty_copy(file, b, &mut run[len..len + BLOCK]) else {
                i += 1;
                break;
            };
            i += 1;
            taken.push((b, copied.seq));
            len += copied.len;
            if copied.len < BLOCK {
                break;
            }
        }
        if taken.is_empty() {
            continue;
        }
        let at = first * BLOCK as u64;
        let aligned = len & !(ALIGN - 1);
        let mut written = 0;
        if let Some(d) = &direct {
            match write_all(d, &run[..aligned], at) {
                Ok(()) => written = aligned,
                // Refused after all: buffered from now on.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => direct = None,
                Err(e) => return Err(e),
            }
        }
        write_all(&plain, &run[written..len], at + written as u64)?;
        done.extend(taken);
    }
    Ok(())
}

fn write_all(fd: &OwnedFd, mut buf: &[u8], mut at: u64) -> io::Result<()> {
    while !buf.is_empty() {
        let n = rustix::io::pwrite(fd, buf, at)?;
        if n == 0 {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        buf = &buf[n..];
        at += n as u64;
    }
    Ok(())
}

/// Writes back every dirty file; the first error met (the rest are still tried).
pub fn flush_all(cache: &BlockCache) -> io::Result<()> {
    let mut first = Ok(());
    for f in cache.dirty_files(None) {
        if let Err(e) = flush(cache, f) {
            log_failed(f, &e);
            if first.is_ok() {
                first = Err(e);
            }
        }
    }
    first
}

/// Starts the service's flusher thread for `cache`; it ends with the cache.
pub fn start_flusher(cache: &Arc<BlockCache>) -> io::Result<()> {
    let weak: Weak<BlockCache> = Arc::downgrade(cache);
    let closed = cache.closed();
    let interval = cache.writeback().map_or(Duration::from_secs(1), |w| w.interval).max(Duration::from_millis(10));
    std::thread::Builder::new().name("ptn-flusher".into()).spawn(move || {
        let mut next = Instant::now();
        loop {
            let now = Instant::now();
            let files = closed.wait(next.saturating_duration_since(now));
            let Some(cache) = weak.upgrade() else { return };
            for f in files {
                if let Err(e) = flush(&cache, f) {
                    log_failed(f, &e);
                }
            }
            if Instant::now() >= next {
                let Some(w) = cache.writeback() else { return };
                flush_due(&cache, w.expire, w.dirty_limit / 2);
                next = Instant::now() + interval;
            }
        }
    })?;
    Ok(())
}

/// One round of the flusher: files dirty for longer than `expire`, then, oldest first, more
/// while the dirty data passes `background` bytes.
fn flush_due(cache: &BlockCache, expire: Duration, background: u64) {
    if cache.stats.dirty.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        // Nothing dirty: no walk of every file's record.
        return;
    }
    if let Some(before) = Instant::now().checked_sub(expire) {
        for f in cache.dirty_files(Some(before)) {
            if let Err(e) = flush(cache, f) {
                log_failed(f, &e);
            }
        }
    }
    for f in cache.dirty_files(None) {
        if cache.stats.dirty.load(std::sync::atomic::Ordering::Relaxed) <= background {
            break;
        }
        if let Err(e) = flush(cache, f) {
            log_failed(f, &e);
        }
    }
}

/// Logs a failed write-back, at most once a minute: a tenant can make them fail on purpose (a
/// full branch, a file past the file system's largest size) and call for write-backs at will.
fn log_failed(file: FileKey, e: &io::Error) {
    static FAILED: crate::throttle::Throttle = crate::throttle::Throttle::new();
    if let Some(held) = FAILED.allow(Duration::from_secs(60)) {
        tracing::warn!("write-back of inode {} failed: {e} ({held} more failed write-backs since the last message)", file.ino);
    }
}
