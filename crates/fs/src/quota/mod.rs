//! Storage quotas: the bytes and inodes a writable branch may hold.
//!
//! [`QuotaFs`] wraps a union's upper branch. Every change that can make the branch hold more
//! (a create, a write or truncate past what the file held, an `fallocate`, a copy-up, which
//! is a create and writes) first reserves what it adds in each [`Quota`] the branch counts
//! against: the instance's own (a per-mount limit, `EDQUOT` past it) and the pool's, shared
//! by the pool's instances (`ENOSPC` past it). A change past a limit is refused whole,
//! before anything is written. Removals give back what they freed.
//!
//! What counts: one inode per object (directories, files, symlinks, devices, whiteouts: each
//! takes an inode of the host filesystem, as an overlayfs upper's do; a hard link adds
//! none), and the bytes
//! of regular files (their size, or the end of what `fallocate` reserved past it) and of
//! symlinks (their targets). The count is rebuilt by walking the branch when the wrapper is
//! made (a service start, a mount): it is never read from a record a tenant could change.
//!
//! Files whose host descriptor would let a writer bypass the count (FUSE passthrough) are not
//! handed out for writable handles (the service also gives clients no descriptor at all
//! under a quota: a read-only one can be reopened for writing through `/proc`). A file
//! removed while open keeps counting until its last handle goes, as its blocks stay until
//! then.

use std::ffi::OsStr;
use std::io::{self, IoSlice, IoSliceMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rustc_hash::FxHashMap;

use crate::libservice::{
    errno, Attr, BackingFile, ChangeSink, Context, DirEntry, Entry, FileKind, FileSystem, Handle,
    Inode, SetAttr, StatFs, ROOT_INODE,
};

/// Past this much more allocated than its size, a file found by the walk counts what it has
/// allocated (space `fallocate` reserved past its end), not its size: block rounding and
/// metadata never come near it.
const PREALLOCATED_SLACK: u64 = 64 << 10;

/// A limit on bytes and inodes, and what is counted against it.
#[derive(Debug)]
pub struct Quota {
    bytes_max: Option<u64>,
    inodes_max: Option<u64>,
    bytes: AtomicU64,
    inodes: AtomicU64,
    /// The error past the limit (`ENOSPC` for a pool, `EDQUOT` for a mount).
    over: i32,
    /// The quota this one's count is part of (an instance's: its pool's), until detached.
    parent: Mutex<Option<Arc<Quota>>>,
}

/// What a [`Quota`] counts, for `inspect` and the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    pub bytes: u64,
    pub inodes: u64,
    pub bytes_max: Option<u64>,
    pub inodes_max: Option<u64>,
}

fn try_add(counter: &AtomicU64, max: Option<u64>, n: u64) -> bool {
    if n == 0 {
        return true;
    }
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
            let next = now.checked_add(n)?;
            max.is_none_or(|m| next <= m).then_some(next)
        })
        .is_ok()
}

fn sub(counter: &AtomicU64, n: u64) {
    let _ = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| Some(now.saturating_sub(n)));
}

impl Quota {
    /// A quota of at most `bytes_max` bytes and `inodes_max` inodes (`None`: only counted);
    /// `over` is the error past either.
    pub fn new(bytes_max: Option<u64>, inodes_max: Option<u64>, over: i32) -> Arc<Quota> {
        Quota::within(bytes_max, inodes_max, over, None)
    }

    /// The same, its count also part of `parent`'s (and limited by it) until [`Quota::detach`].
    pub fn within(bytes_max: Option<u64>, inodes_max: Option<u64>, over: i32, parent: Option<Arc<Quota>>) -> Arc<Quota> {
        Arc::new(Quota { bytes_max, inodes_max, bytes: AtomicU64::new(0), inodes: AtomicU64::new(0), over, parent: Mutex::new(parent) })
    }

    /// Takes this count out of the parent's (an instance unmounted); later changes count here
    /// only. Idempotent.
    pub fn detach(&self) {
        let parent = lock(&self.parent).take();
        if let Some(p) = parent {
            let u = self.usage();
            p.give_back(u.bytes, u.inodes);
        }
    }

    fn parent(&self) -> Option<Arc<Quota>> {
        lock(&self.parent).clone()
    }

    pub fn usage(&self) -> Usage {
        Usage {
            bytes: self.bytes.load(Ordering::Acquire),
            inodes: self.inodes.load(Ordering::Acquire),
            bytes_max: self.bytes_max,
            inodes_max: self.inodes_max,
        }
    }

    /// Counts `bytes` and `inodes` more here and in the parent, or neither (the errno of the
    /// first limit they would pass).
    fn reserve(&self, bytes: u64, inodes: u64) -> Result<(), i32> {
        if !try_add(&self.bytes, self.bytes_max, bytes) {
            return Err(self.over);
        }
        if !try_add(&self.inodes, self.inodes_max, inodes) {
            sub(&self.bytes, bytes);
            return Err(self.over);
        }
        if let Some(p) = self.parent() {
            if let Err(e) = p.reserve(bytes, inodes) {
                sub(&self.bytes, bytes);
                sub(&self.inodes, inodes);
                return Err(e);
            }
        }
        Ok(())
    }

    fn give_back(&self, bytes: u64, inodes: u64) {
        sub(&self.bytes, bytes);
        sub(&self.inodes, inodes);
        if let Some(p) = self.parent() {
            p.give_back(bytes, inodes);
        }
    }

    /// Counts what is already there (a walk, a change that ran), whatever the limits say.
    fn count(&self, bytes: u64, inodes: u64) {
        self.bytes.fetch_add(bytes, Ordering::AcqRel);
        self.inodes.fetch_add(inodes, Ordering::AcqRel);
        if let Some(p) = self.parent() {
            p.count(bytes, inodes);
        }
    }
}

/// The bytes an existing object counts.
fn bytes_of(attr: &Attr) -> u64 {
    match attr.kind() {
        FileKind::Regular => {
            let allocated = attr.blocks.saturating_mul(512);
            if allocated > attr.size.saturating_add(PREALLOCATED_SLACK) { allocated } else { attr.size }
        }
        FileKind::Symlink => attr.size,
        _ => 0,
    }
}


fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An upper branch whose growth is counted against quotas (see the module documentation).
pub struct QuotaFs {
    inner: Arc<dyn FileSystem>,
    /// What this branch holds (and the instance's own limit; its parent is the pool's).
    quota: Arc<Quota>,
    /// Bytes counted for a regular file, by branch inode, learned at its first change.
    charged: Mutex<FxHashMap<Inode, Arc<AtomicU64>>>,
    /// Writable handles: whether each appends.
    writers: Mutex<FxHashMap<Handle, bool>>,
    /// Open handles per branch inode, and whether its last name went while some were open
    /// (then it gives back when the last one goes).
    opens: Mutex<FxHashMap<Inode, (u32, bool)>>,
}

impl std::fmt::Debug for QuotaFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuotaFs").field("quota", &self.quota).finish_non_exhaustive()
    }
}

/// Files remembered in `charged` before the map starts afresh (a file then counts what
/// `getattr` says it holds when next changed).
const CHARGED_MAX: usize = 1 << 16;

impl QuotaFs {
    /// Wraps `inner`, counting what it holds now (a walk of the whole branch) in `quota`
    /// (the instance's, made with [`Quota::within`] the pool's).
    pub fn new(inner: Arc<dyn FileSystem>, quota: Arc<Quota>) -> io::Result<QuotaFs> {
        let (bytes, inodes) = walk(&*inner)?;
        quota.count(bytes, inodes);
        Ok(QuotaFs { inner, quota, charged: Mutex::new(FxHashMap::default()), writers: Mutex::new(FxHashMap::default()), opens: Mutex::new(FxHashMap::default()) })
    }

    fn reserve(&self, bytes: u64, inodes: u64) -> io::Result<()> {
        self.quota.reserve(bytes, inodes).map_err(errno)
    }

    fn give_back(&self, bytes: u64, inodes: u64) {
        self.quota.give_back(bytes, inodes)
    }

    /// The count of regular file `inode` (learned from the branch the first time).
    fn charged(&self, ctx: &Context, inode: Inode) -> io::Result<Arc<AtomicU64>> {
        if let Some(c) = lock(&self.charged).get(&inode) {
            return Ok(c.clone());
        }
        let attr = self.inner.getattr(ctx, inode, None)?;
        let mut map = lock(&self.charged);
        if map.len() >= CHARGED_MAX {
            map.clear();
        }
        Ok(map.entry(inode).or_insert_with(|| Arc::new(AtomicU64::new(bytes_of(&attr)))).clone())
    }

    /// Makes `inode` count at least `end` bytes, reserving the difference first.
    fn grow_to(&self, ctx: &Context, inode: Inode, end: u64) -> io::Result<()> {
        let c = self.charged(ctx, inode)?;
        loop {
            let now = c.load(Ordering::Acquire);
            if end <= now {
                return Ok(());
            }
            self.reserve(end - now, 0)?;
            if c.compare_exchange(now, end, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                return Ok(());
            }
            // Another change moved the count meanwhile: give back and look again.
            self.give_back(end - now, 0);
        }
    }

    /// After a truncation settled `inode`'s count: a write that landed between the cut and the
    /// settling is counted too (the file's size now).
    fn count_what_landed(&self, ctx: &Context, inode: Inode, handle: Option<Handle>) {
        if let Ok(a) = self.inner.getattr(ctx, inode, handle) {
            self.settle_at_least(inode, a.size);
        }
    }

    /// Makes `inode` count at least `end` bytes whatever the limits say (what ran is there).
    fn settle_at_least(&self, inode: Inode, end: u64) {
        let Some(c) = lock(&self.charged).get(&inode).cloned() else { return };
        let prev = c.fetch_max(end, Ordering::AcqRel);
        if end > prev {
            self.force(end - prev);
        }
    }

    /// Counts `bytes` more whatever the limits say (settling a change that ran).
    fn force(&self, bytes: u64) {
        self.quota.count(bytes, 0);
    }

    /// What a removed object gave back (it had `attr`): nothing while another name or an
    /// open handle keeps it (then its last release gives back).
    fn removed(&self, inode: Inode, attr: &Attr) {
        if attr.kind() != FileKind::Directory && attr.nlink > 1 {
            return;
        }
        if let Some((n, orphan)) = lock(&self.opens).get_mut(&inode) {
            if *n > 0 {
                *orphan = true;
                return;
            }
        }
        self.forget_object(inode, bytes_of(attr));
    }

    /// Gives back what object `inode` counted (`known`: its bytes if none are remembered).
    fn forget_object(&self, inode: Inode, known: u64) {
        let bytes = lock(&self.charged).remove(&inode).map_or(known, |c| c.load(Ordering::Acquire));
        self.give_back(bytes, 1);
    }

    fn opened(&self, inode: Inode) {
        lock(&self.opens).entry(inode).or_insert((0, false)).0 += 1;
    }

    /// A handle of `inode` went: the last one of an object removed meanwhile gives back.
    fn closed(&self, ctx: &Context, inode: Inode) {
        let orphan = {
            let mut opens = lock(&self.opens);
            let Some((n, orphan)) = opens.get_mut(&inode) else { return };
            *n = n.saturating_sub(1);
            if *n > 0 {
                return;
            }
            let orphan = *orphan;
            opens.remove(&inode);
            orphan
        };
        if orphan {
            let known = self.inner.getattr(ctx, inode, None).map_or(0, |a| bytes_of(&a));
            self.forget_object(inode, known);
        }
    }

    /// Looks `name` up (for what a removal or replacement frees); `None` when absent.
    fn peek(&self, ctx: &Context, parent: Inode, name: &OsStr) -> io::Result<Option<Entry>> {
        match self.inner.lookup(ctx, parent, name) {
            Ok(e) => Ok(Some(e)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Runs `remove` (an unlink or rmdir of `name` in `parent`) and gives back what the
    /// object held if that was its last name.
    fn removing(&self, ctx: &Context, parent: Inode, name: &OsStr, remove: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        let gone = self.peek(ctx, parent, name)?;
        let done = remove();
        if let Some(e) = gone {
            if done.is_ok() {
                self.removed(e.inode, &e.attr);
            }
            self.inner.forget(e.inode, 1);
        }
        done
    }

    /// Runs `make` (which adds one object of `bytes`) under a reservation, given back if it
    /// fails.
    fn creating<T>(&self, bytes: u64, inodes: u64, make: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        self.reserve(bytes, inodes)?;
        make().inspect_err(|_| self.give_back(bytes, inodes))
    }
}

impl Drop for QuotaFs {
    /// An instance that goes no longer counts against the pool.
    fn drop(&mut self) {
        self.quota.detach();
    }
}

/// What branch `fs` holds: (bytes, inodes), by walking it from its root.
fn walk(fs: &dyn FileSystem) -> io::Result<(u64, u64)> {
    let ctx = Context::current();
    let (mut bytes, mut inodes) = (0u64, 0u64);
    // Hard-linked files count once, by their host identity.
    let mut linked = std::collections::HashSet::new();
    let mut dirs = vec![(ROOT_INODE, false)];
    while let Some((dir, forget)) = dirs.pop() {
        let listed = list(fs, &ctx, dir);
        for e in listed.as_deref().unwrap_or_default() {
            if e.name == "." || e.name == ".." {
                continue;
            }
            let Ok(found) = fs.lookup(&ctx, dir, &e.name) else { continue };
            let attr = found.attr;
            let first = attr.nlink <= 1 || attr.kind() == FileKind::Directory || linked.insert((attr.dev, attr.ino));
            if first {
                inodes += 1;
                bytes = bytes.saturating_add(bytes_of(&attr));
            }
            if attr.kind() == FileKind::Directory {
                dirs.push((found.inode, true));
            } else {
                fs.forget(found.inode, 1);
            }
        }
        if forget {
            fs.forget(dir, 1);
        }
        listed?;
    }
    Ok((bytes, inodes))
}

/// Every entry of directory `dir`.
fn list(fs: &dyn FileSystem, ctx: &Context, dir: Inode) -> io::Result<Vec<DirEntry>> {
    let mut all = Vec::new();
    crate::libservice::each_entry(fs, ctx, dir, |e| all.push(e))?;
    Ok(all)
}

impl FileSystem for QuotaFs {
    fn lookup(&self, ctx: &Context, parent: Inode, name: &OsStr) -> io::Result<Entry> {
        self.inner.lookup(ctx, parent, name)
    }

    fn forget(&self, inode: Inode, count: u64) {
        self.inner.forget(inode, count)
    }

    fn getattr(&self, ctx: &Context, inode: Inode, handle: Option<Handle>) -> io::Result<Attr> {
        self.inner.getattr(ctx, inode, handle)
    }

    fn setattr(&self, ctx: &Context, inode: Inode, handle: Option<Handle>, set: &SetAttr) -> io::Result<Attr> {
        let Some(size) = set.size else { return self.inner.setattr(ctx, inode, handle, set) };
        // A truncate: growth is reserved before. After, a file cut below its size counts
        // `size` (the blocks past it are freed, preallocated ones too); one made longer keeps
        // what was preallocated past the new size.
        let c = self.charged(ctx, inode)?;
        let old_size = self.inner.getattr(ctx, inode, handle)?.size;
        let before = c.load(Ordering::Acquire);
        let extra = size.saturating_sub(before);
        self.reserve(extra, 0)?;
        match self.inner.setattr(ctx, inode, handle, set) {
            Ok(attr) => {
                let target = if size >= old_size { size.max(before) } else { size };
                let held = c.swap(target, Ordering::AcqRel).saturating_add(extra);
                if held > target {
                    self.give_back(held - target, 0);
                } else {
                    self.force(target - held);
                }
                self.count_what_landed(ctx, inode, handle);
                Ok(attr)
            }
            Err(e) => {
                self.give_back(extra, 0);
                Err(e)
            }
        }
    }

    fn open(&self, ctx: &Context, inode: Inode, flags: i32) -> io::Result<Handle> {
        let h = self.inner.open(ctx, inode, flags)?;
        self.opened(inode);
        if flags & libc::O_ACCMODE != libc::O_RDONLY {
            lock(&self.writers).insert(h, flags & libc::O_APPEND != 0);
        }
        if flags & libc::O_TRUNC != 0 {
            if let Ok(c) = self.charged(ctx, inode) {
                let prev = c.swap(0, Ordering::AcqRel);
                self.give_back(prev, 0);
                self.count_what_landed(ctx, inode, Some(h));
            }
        }
        Ok(h)
    }

    fn create(&self, ctx: &Context, parent: Inode, name: &OsStr, mode: u32, umask: u32, flags: i32) -> io::Result<(Entry, Handle)> {
        let (e, h) = self.creating(0, 1, || self.inner.create(ctx, parent, name, mode, umask, flags))?;
        lock(&self.writers).insert(h, flags & libc::O_APPEND != 0);
        self.opened(e.inode);
        Ok((e, h))
    }

    fn read(&self, ctx: &Context, inode: Inode, handle: Handle, bufs: &mut [IoSliceMut<'_>], offset: u64) -> io::Result<usize> {
        self.inner.read(ctx, inode, handle, bufs, offset)
    }

    fn write(&self, ctx: &Context, inode: Inode, handle: Handle, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
        let len: u64 = bufs.iter().map(|b| b.len() as u64).sum();
        let appends = lock(&self.writers).get(&handle).copied().unwrap_or(false);
        let at = if appends { self.charged(ctx, inode)?.load(Ordering::Acquire).max(offset) } else { offset };
        self.grow_to(ctx, inode, at.saturating_add(len))?;
        let n = self.inner.write(ctx, inode, handle, bufs, offset)?;
        // A truncate that ran meanwhile (on another path) set the count below what this
        // wrote: what is on disk counts, whatever the limit says.
        let end = if appends { self.inner.getattr(ctx, inode, None).map_or(at, |a| a.size) } else { offset.saturating_add(n as u64) };
        self.settle_at_least(inode, end);
        Ok(n)
    }

    fn flush(&self, ctx: &Context, inode: Inode, handle: Handle) -> io::Result<()> {
        self.inner.flush(ctx, inode, handle)
    }

    fn fsync(&self, ctx: &Context, inode: Inode, handle: Handle, datasync: bool) -> io::Result<()> {
        self.inner.fsync(ctx, inode, handle, datasync)
    }

    fn release(&self, ctx: &Context, inode: Inode, handle: Handle) -> io::Result<()> {
        lock(&self.writers).remove(&handle);
        let r = self.inner.release(ctx, inode, handle);
        self.closed(ctx, inode);
        r
    }

    fn mkdir(&self, ctx: &Context, parent: Inode, name: &OsStr, mode: u32, umask: u32) -> io::Result<Entry> {
        self.creating(0, 1, || self.inner.mkdir(ctx, parent, name, mode, umask))
    }

    fn mknod(&self, ctx: &Context, parent: Inode, name: &OsStr, mode: u32, rdev: u64, umask: u32) -> io::Result<Entry> {
        self.creating(0, 1, || self.inner.mknod(ctx, parent, name, mode, rdev, umask))
    }

    fn unlink(&self, ctx: &Context, parent: Inode, name: &OsStr) -> io::Result<()> {
        self.removing(ctx, parent, name, || self.inner.unlink(ctx, parent, name))
    }

    fn rmdir(&self, ctx: &Context, parent: Inode, name: &OsStr) -> io::Result<()> {
        self.removing(ctx, parent, name, || self.inner.rmdir(ctx, parent, name))
    }

    fn rename(&self, ctx: &Context, parent: Inode, name: &OsStr, new_parent: Inode, new_name: &OsStr, flags: u32) -> io::Result<()> {
        if flags & libc::RENAME_EXCHANGE != 0 {
            return self.inner.rename(ctx, parent, name, new_parent, new_name, flags);
        }
        // A replaced target frees what it held (unless it is the source itself, by another
        // name: then nothing changes).
        let target = self.peek(ctx, new_parent, new_name)?;
        let source = target.as_ref().map(|_| self.peek(ctx, parent, name)).transpose()?.flatten();
        let same = matches!((&target, &source), (Some(t), Some(s)) if t.attr.ino == s.attr.ino && t.attr.dev == s.attr.dev);
        let done = self.inner.rename(ctx, parent, name, new_parent, new_name, flags);
        if let Some(e) = target {
            if done.is_ok() && !same {
                self.removed(e.inode, &e.attr);
            }
            self.inner.forget(e.inode, 1);
        }
        if let Some(s) = source {
            self.inner.forget(s.inode, 1);
        }
        done
    }

    fn link(&self, ctx: &Context, inode: Inode, new_parent: Inode, new_name: &OsStr) -> io::Result<Entry> {
        self.inner.link(ctx, inode, new_parent, new_name)
    }

    fn symlink(&self, ctx: &Context, target: &OsStr, parent: Inode, name: &OsStr) -> io::Result<Entry> {
        self.creating(target.len() as u64, 1, || self.inner.symlink(ctx, target, parent, name))
    }

    fn readlink(&self, ctx: &Context, inode: Inode) -> io::Result<Vec<u8>> {
        self.inner.readlink(ctx, inode)
    }

    fn retain(&self, inode: Inode) -> io::Result<()> {
        self.inner.retain(inode)
    }

    fn opendir(&self, ctx: &Context, inode: Inode, flags: i32) -> io::Result<Handle> {
        self.inner.opendir(ctx, inode, flags)
    }

    fn readdir(&self, ctx: &Context, inode: Inode, handle: Handle, offset: u64, max: usize) -> io::Result<Vec<DirEntry>> {
        self.inner.readdir(ctx, inode, handle, offset, max)
    }

    fn releasedir(&self, ctx: &Context, inode: Inode, handle: Handle) -> io::Result<()> {
        self.inner.releasedir(ctx, inode, handle)
    }

    fn fsyncdir(&self, ctx: &Context, inode: Inode, handle: Handle, datasync: bool) -> io::Result<()> {
        self.inner.fsyncdir(ctx, inode, handle, datasync)
    }

    fn statfs(&self, ctx: &Context, inode: Inode) -> io::Result<StatFs> {
        let mut st = self.inner.statfs(ctx, inode)?;
        // What the tightest quota leaves, as `df` inside a quota'd container shows it.
        let bsize = u64::from(st.bsize.max(1));
        let mut next = Some(self.quota.clone());
        while let Some(q) = next {
            next = q.parent();
            let u = q.usage();
            if let Some(max) = u.bytes_max {
                let blocks = max / bsize;
                let free = max.saturating_sub(u.bytes) / bsize;
                st.blocks = st.blocks.min(blocks);
                st.bfree = st.bfree.min(free);
                st.bavail = st.bavail.min(free);
            }
            if let Some(max) = u.inodes_max {
                st.files = st.files.min(max);
                st.ffree = st.ffree.min(max.saturating_sub(u.inodes));
            }
        }
        Ok(st)
    }

    fn getxattr(&self, ctx: &Context, inode: Inode, name: &OsStr) -> io::Result<Vec<u8>> {
        self.inner.getxattr(ctx, inode, name)
    }

    fn setxattr(&self, ctx: &Context, inode: Inode, name: &OsStr, value: &[u8], flags: i32) -> io::Result<()> {
        self.inner.setxattr(ctx, inode, name, value, flags)
    }

    fn listxattr(&self, ctx: &Context, inode: Inode) -> io::Result<Vec<std::ffi::OsString>> {
        self.inner.listxattr(ctx, inode)
    }

    fn removexattr(&self, ctx: &Context, inode: Inode, name: &OsStr) -> io::Result<()> {
        self.inner.removexattr(ctx, inode, name)
    }

    fn access(&self, ctx: &Context, inode: Inode, mask: i32) -> io::Result<()> {
        self.inner.access(ctx, inode, mask)
    }

    fn fallocate(&self, ctx: &Context, inode: Inode, handle: Handle, mode: i32, offset: u64, length: u64) -> io::Result<()> {
        let frees = mode & (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_COLLAPSE_RANGE) != 0;
        // What this call reserved (from, to), given back if it fails.
        let mut grown = None;
        if !frees {
            let c = self.charged(ctx, inode)?;
            let before = c.load(Ordering::Acquire);
            let grows_by_insert = mode & libc::FALLOC_FL_INSERT_RANGE != 0;
            let end = if grows_by_insert { before.saturating_add(length) } else { offset.saturating_add(length) };
            self.grow_to(ctx, inode, end)?;
            grown = (end > before).then_some((c, before, end));
        }
        let done = self.inner.fallocate(ctx, inode, handle, mode, offset, length);
        if let (Err(_), Some((c, before, end))) = (&done, grown) {
            // Unless another change counted more meanwhile (then what is there stays counted).
            if c.compare_exchange(end, before, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                self.give_back(end - before, 0);
            }
        }
        done
    }

    fn lseek(&self, ctx: &Context, inode: Inode, handle: Handle, offset: u64, whence: i32) -> io::Result<u64> {
        self.inner.lseek(ctx, inode, handle, offset, whence)
    }

    fn namespace_generation(&self) -> u64 {
        self.inner.namespace_generation()
    }

    fn removal_generation(&self) -> u64 {
        self.inner.removal_generation()
    }

    fn syncfs(&self, ctx: &Context) -> io::Result<()> {
        self.inner.syncfs(ctx)
    }

    fn watch_changes(&self, sink: Arc<dyn ChangeSink>) -> bool {
        self.inner.watch_changes(sink)
    }

    fn outside_writer(&self, inode: Inode, begins: bool) {
        self.inner.outside_writer(inode, begins)
    }

    fn shared(&self) -> bool {
        self.inner.shared()
    }

    fn watch_others(&self, sink: Arc<dyn ChangeSink>) -> bool {
        self.inner.watch_others(sink)
    }

    fn backing_file(&self, inode: Inode, handle: Handle) -> io::Result<BackingFile> {
        // A writer holding the host descriptor would write past the count unseen.
        if lock(&self.writers).contains_key(&handle) {
            return Err(errno(libc::EOPNOTSUPP));
        }
        self.inner.backing_file(inode, handle)
    }
}

#[cfg(test)]
mod tests;
