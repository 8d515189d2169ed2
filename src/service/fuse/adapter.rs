//! The FUSE adapter: a transport that serves kernel FUSE requests from any libservice.
//!
//! Requests that cannot block for long (lookups, attributes, read-only opens, listings, xattr
//! reads, and, with `inline_namespace`, namespace changes that copy no file data) are answered
//! on fuser's reader thread, which keeps their latency at one kernel round trip; everything
//! that may block (data I/O, syncs, opens for writing, setattr, rename, link and xattr changes,
//! which may copy a file up) runs on the worker threads. There is no lock around the
//! libservice: it is `Sync` and serves calls concurrently.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{IoSlice, IoSliceMut};
use std::path::Path;
use std::cell::Cell;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::consts::{
    FOPEN_DIRECT_IO, FOPEN_KEEP_CACHE, FUSE_ASYNC_DIO, FUSE_AUTO_INVAL_DATA, FUSE_CACHE_SYMLINKS, FUSE_PARALLEL_DIROPS,
    FUSE_PASSTHROUGH, FUSE_WRITEBACK_CACHE,
};
use fuser::{FileAttr, FileType, KernelConfig, TimeOrNow};
use tracing::{debug, warn};

use super::answer::{
    AttrAnswer, CreateAnswer, DataAnswer, DirAnswer, EmptyAnswer, EntryAnswer, LseekAnswer, OpenAnswer, StatfsAnswer,
    WriteAnswer, XattrAnswer,
};
use super::passthrough_id::Backing;
use super::workers::Workers;
use crate::service::stats::Timer;
use super::{FuseConfig, OpStats};
use crate::libservice::{
    open_or_create, Attr, Context, FileKind, FileSystem, Handle, Inode, SetAttr, TimeUpdate, Timespec, WriteSync, Opened,
};
use crate::spec::CacheMode;

const READDIR_BATCH: usize = 128;
/// The largest write the kernel sends (and so the largest request or answer payload).
pub(super) const MAX_WRITE: u32 = 1 << 20;
/// `FUSE_DIRECT_IO_ALLOW_MMAP` (Linux 6.6), not among fuser 0.16's constants.
const FUSE_DIRECT_IO_ALLOW_MMAP: u64 = 1 << 36;

/// Serves one libservice to the kernel.
pub struct FuseAdapter {
    fs: Arc<dyn FileSystem>,
    cfg: FuseConfig,
    workers: Workers,
    /// Passthrough registrations and per-inode I/O modes.
    backing: Arc<Passthrough>,
    /// Whether the kernel accepted passthrough at init.
    passthrough: AtomicBool,
    writeback: AtomicBool,
    stats: Arc<OpStats>,
    /// The inodes the kernel holds (for the invalidations of the user-level path).
    known: Arc<super::known::KernelInodes>,
}

impl std::fmt::Debug for FuseAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FuseAdapter").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

/// The caller of a request the classic transport carried.
/// `FUSE_WRITE_KILL_SUIDGID` in a write's `write_flags`: the writer lacks `CAP_FSETID`.
pub(super) const WRITE_KILL_SUIDGID: u32 = 1 << 2;

/// Before a write flagged [`WRITE_KILL_SUIDGID`]: clears the file's set-user-id bit, and its
/// set-group-id bit when group-executable or the writer is not in the file's group, as the
/// kernel does before a write through its page cache.
fn kill_suidgid(fs: &dyn FileSystem, c: &Context, ino: u64, fh: u64) -> std::io::Result<()> {
    let a = fs.getattr(c, ino, Some(fh))?;
    // The request names the writer's filesystem gid; its other groups are its process's (the
    // writer waits in the write, so its pid is its own; read only for a set-group-id file
    // that is not group-executable).
    let groups = || std::fs::read_to_string(format!("/proc/{}/status", c.pid)).map(|s| crate::service::shm::peer::groups_in(&s)).unwrap_or_default();
    let in_group = |gid: u32| gid == c.gid || groups().contains(&gid);
    match crate::libservice::access::privs_killed(&a, in_group) {
        Some(mode) => fs.setattr(c, ino, Some(fh), &SetAttr { mode: Some(mode), ..SetAttr::default() }).map(drop),
        None => Ok(()),
    }
}

/// The context and mode to make an object (`mode` with its type bits) in `parent` with, as the
/// kernel's `inode_init_owner` gives them: in a set-group-id directory, the directory's group,
/// and for a directory the set-group-id bit too. (A FUSE daemon owns what it makes itself; the
/// kernel has already taken a set-group-id bit the caller may not give from `mode`.)
fn creator(fs: &dyn FileSystem, c: Context, parent: u64, mode: u32) -> std::io::Result<(Context, u32)> {
    let dir = fs.getattr(&c, parent, None)?;
    if dir.mode & libc::S_ISGID == 0 {
        return Ok((c, mode));
    }
    let mode = if mode & libc::S_IFMT == libc::S_IFDIR { mode | libc::S_ISGID } else { mode };
    Ok((Context { gid: dir.gid, ..c }, mode))
}

/// Whether a create that found regular file `a` there may open it without the kernel's own
/// checks: the caller owns it, its owner bits allow the access asked, and nothing is truncated.
fn owner_may_open(c: &Context, a: &Attr, flags: i32) -> bool {
    let need = match flags & libc::O_ACCMODE {
        libc::O_RDONLY => 0o400,
        libc::O_WRONLY => 0o200,
        _ => 0o600,
    };
    c.uid == a.uid && a.mode & need == need && flags & libc::O_TRUNC == 0
}

/// Whether process `pid` has `CAP_SYS_ADMIN` in the service's user namespace (in its effective
/// set, and in that namespace: a container's root in a namespace of its own has it there only).
fn sys_admin(pid: i32) -> bool {
    let Ok(pid) = u32::try_from(pid) else { return false };
    crate::pool::ns::shares_user_namespace(pid) == Some(true)
        && crate::service::shm::peer::effective_caps(pid).is_ok_and(|caps| caps & (1 << crate::libservice::access::CAP_SYS_ADMIN) != 0)
}

pub(super) fn ctx(req: &fuser::Request<'_>) -> Context {
    Context { uid: req.uid(), gid: req.gid(), pid: req.pid() as i32 }
}

fn err(e: std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

fn systime(t: Timespec) -> SystemTime {
    if t.sec >= 0 {
        UNIX_EPOCH + Duration::new(t.sec as u64, t.nsec)
    } else {
        UNIX_EPOCH - Duration::from_secs(t.sec.unsigned_abs()) + Duration::from_nanos(t.nsec.into())
    }
}

fn timespec(t: SystemTime) -> Timespec {
    let (sec, nsec) = super::wire::split_time(t);
    Timespec { sec, nsec }
}

fn file_type(k: FileKind) -> FileType {
    match k {
        FileKind::Regular => FileType::RegularFile,
        FileKind::Directory => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::CharDevice => FileType::CharDevice,
        FileKind::BlockDevice => FileType::BlockDevice,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
    }
}

/// The kernel's view of an `Attr`.
pub fn fuse_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: a.ino,
        size: a.size,
        blocks: a.blocks,
        atime: systime(a.atime),
        mtime: systime(a.mtime),
        ctime: systime(a.ctime),
        crtime: UNIX_EPOCH,
        kind: file_type(a.kind()),
        perm: (a.mode & 0o7777) as u16,
        nlink: u32::try_from(a.nlink).unwrap_or(u32::MAX),
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev as u32,
        blksize: a.blksize,
        flags: 0,
    }
}

fn time_update(t: Option<TimeOrNow>) -> Option<TimeUpdate> {
    t.map(|t| match t {
        TimeOrNow::Now => TimeUpdate::Now,
        TimeOrNow::SpecificTime(s) => TimeUpdate::Set(timespec(s)),
    })
}

/// Reply sizes of xattr reads: the size alone when asked, ERANGE when too small.
fn reply_xattr(reply: impl XattrAnswer, size: u32, data: &[u8]) {
    if size == 0 {
        reply.size(data.len() as u32);
    } else if data.len() > size as usize {
        reply.error(libc::ERANGE);
    } else {
        reply.value(data);
    }
}

impl FuseAdapter {
    pub fn new(fs: Arc<dyn FileSystem>, cfg: FuseConfig, stats: Arc<OpStats>, known: Arc<super::known::KernelInodes>) -> std::io::Result<Self> {
        let workers = Workers::new(cfg.workers);
        Ok(FuseAdapter {
            fs,
            cfg,
            workers,
            backing: Arc::new(Passthrough::default()),
            passthrough: AtomicBool::new(false),
            writeback: AtomicBool::new(false),
            stats,
            known,
        })
    }

    fn heavy(&self, t: Timer, job: impl FnOnce() + Send + 'static) {
        // A ring thread serves its request itself: its ring entry waits for the answer, and
        // the pool's other ring threads take the next requests.
        if on_ring_thread() {
            job();
            drop(t);
            return;
        }
        self.workers.run(move || {
            job();
            drop(t);
        });
    }

    /// Starts timing one request of kind `op` (recorded when the timer drops).
    fn timer(&self, op: &'static str) -> Timer {
        Timer::start(self.stats.clone(), op)
    }

    /// Namespace changes that never copy file data (create, mkdir, mknod, symlink, unlink,
    /// rmdir): the union serialises them on its namespace lock anyway, so with
    /// `inline_namespace` they run on the reader thread and skip a thread handoff.
    fn namespace(&self, t: Timer, job: impl FnOnce() + Send + 'static) {
        if self.cfg.inline_namespace {
            job();
            drop(t);
        } else {
            self.heavy(t, job);
        }
    }

    fn entry_ttl(&self) -> Duration {
        self.cfg.entry_ttl
    }

    fn attr_ttl(&self) -> Duration {
        self.cfg.attr_ttl
    }

    /// Flags for the backend open.
    ///
    /// - `O_APPEND` and `O_DIRECT` stay on the kernel side: the kernel computes append offsets
    ///   (and applies them to passthrough I/O itself), and bypasses its page cache for direct
    ///   files; the daemon's request buffers are not aligned for direct I/O anyway.
    /// - With passthrough or the writeback cache, a write-only backend file is opened
    ///   read-write: the kernel may read it (writeback), or it may back later read-only opens
    ///   (passthrough). Permissions are the kernel's business (`default_permissions`).
    fn backend_flags(&self, flags: i32) -> i32 {
        let flags = flags & !(libc::O_APPEND | libc::O_DIRECT);
        if (self.passthrough() || self.writeback.load(Ordering::Relaxed)) && flags & libc::O_ACCMODE == libc::O_WRONLY {
            return (flags & !libc::O_ACCMODE) | libc::O_RDWR;
        }
        flags
    }

    /// Open flags towards the kernel for opens served by the daemon. The page cache is kept
    /// across opens; with passthrough, `Passthrough::open` drops it for a file written through
    /// passthrough since (the only way it can change behind the cache).
    fn open_reply_flags(&self) -> u32 {
        match self.cfg.cache {
            CacheMode::Direct | CacheMode::Writethrough | CacheMode::Writeback => FOPEN_DIRECT_IO,
            CacheMode::Kernel => FOPEN_KEEP_CACHE,
        }
    }

    fn passthrough(&self) -> bool {
        self.passthrough.load(Ordering::Relaxed)
    }

    pub(super) fn init(&self, config: &mut KernelConfig) -> Result<(), i32> {
        let _ = config.add_capabilities(FUSE_PARALLEL_DIROPS | FUSE_ASYNC_DIO | FUSE_CACHE_SYMLINKS);
        // Drop cached pages when a file's size or mtime is seen to change.
        let _ = config.add_capabilities(FUSE_AUTO_INVAL_DATA);
        let _ = config.set_max_write(MAX_WRITE);
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.set_max_background(64);
        if self.cfg.cache != CacheMode::Kernel {
            // mmap of direct-I/O files (programs map libraries and data files).
            let _ = config.add_capabilities(FUSE_DIRECT_IO_ALLOW_MMAP);
        }
        if self.cfg.cache == CacheMode::Kernel {
            if self.cfg.passthrough
                && config.add_capabilities(FUSE_PASSTHROUGH).is_ok()
                && config.set_max_stack_depth(2).is_ok()
            {
                self.passthrough.store(true, Ordering::Relaxed);
                // mmap of files opened with direct I/O (those made by `create`).
                let _ = config.add_capabilities(FUSE_DIRECT_IO_ALLOW_MMAP);
            } else if !self.cfg.user_level && config.add_capabilities(FUSE_WRITEBACK_CACHE).is_ok() {
                // Only for a mount nothing else serves. Under the writeback cache the kernel
                // holds written pages the service has not seen (a user-level read of the file
                // misses them), writes them back whenever it likes (over a later user-level
                // write to the same page: an invalidation launders them first), and takes a
                // file's size and times from its own pages rather than the service's (a
                // user-level truncation is never seen). Without it, writes through FUSE reach
                // the service before they return, and the page cache only reads.
                self.writeback.store(true, Ordering::Relaxed);
            }
        }
        debug!(passthrough = self.passthrough(), writeback = self.writeback.load(Ordering::Relaxed), "fuse init");
        Ok(())
    }

    pub(super) fn destroy(&self) {
        if let Err(e) = self.fs.syncfs(&Context::current()) {
            warn!("sync at unmount failed: {e}");
        }
    }
}

/// Passthrough bookkeeping. The kernel allows, per inode, either cached (or direct-I/O) opens
/// or passthrough opens that all share one backing file (since Linux 6.10 a direct-I/O open
/// of an inode open for passthrough fails with EIO too). fuser 0.16 can only answer `create`
/// in cached mode. So:
/// - an inode with cached opens gets cached opens until they all close;
/// - otherwise an open for writing registers its backend file (opened read-write, see
///   `backend_flags`) as the inode's backing file, and later opens of the same file reuse it;
/// - a read-only open of a file that may be written where it is (the upper branch) does not
///   register one: a later open for writing could not share it. It is cached, unless a
///   registered read-write backing file of the same file is kept from an earlier writer;
/// - a read-only open of a file that may not (a lower branch) registers it: writers copy it
///   up first. An open that cannot share the registered backing file (a writer of the
///   copy-up while the lower file is still open for passthrough) is refused with `EBUSY`
///   until the passthrough opens close.
#[derive(Debug, Default)]
struct Passthrough {
    state: Mutex<PassthroughState>,
    /// Signalled when a handle is released (see `await_release`).
    released: std::sync::Condvar,
}

#[derive(Debug)]
enum InodeMode {
    Cached(u32),
    Backed { id: Backing, file: (u64, u64), access: i32, opens: u32 },
}

#[derive(Debug, Default)]
struct PassthroughState {
    /// Open handles: the inode whose mode they count in, and whether they write around the
    /// page cache (passthrough or direct I/O with write access).
    handles: HashMap<Handle, (Inode, bool)>,
    inodes: HashMap<Inode, InodeMode>,
    /// Backing files of recently closed inodes, kept registered so that reopening a file
    /// costs no registration round trip; oldest first.
    idle: std::collections::VecDeque<(Inode, Backing, (u64, u64), i32)>,
    /// Inodes written through passthrough since their last cached open: the page cache of
    /// such an inode may be stale, so its next cached open drops it (no `FOPEN_KEEP_CACHE`).
    stale: std::collections::HashSet<Inode>,
    /// Inodes last seen below the passthrough size threshold and not opened for writing
    /// since: their read-only opens skip the size check (a heuristic: cached mode is always
    /// correct, only slower for a large file).
    small: std::collections::HashSet<Inode>,
    /// Handles open for writing through passthrough: writers the libservice does not see,
    /// reported to it (`FileSystem::outside_writer`) while they are open.
    outside: std::collections::HashSet<Handle>,
}

/// Bound of `PassthroughState::small`.
const SMALL_MEMO: usize = 1 << 16;

/// Registered backing files kept for closed inodes.
const IDLE_BACKING: usize = 256;

/// Whether a backing file opened with `have` serves an open asking for `want`.
fn covers(have: i32, want: i32) -> bool {
    have == libc::O_RDWR || have == want
}

impl Passthrough {
    fn lock(&self) -> std::sync::MutexGuard<'_, PassthroughState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts the open made by `create` (direct I/O, counted as cached for the kernel's
    /// per-inode mode, since mmap may put it in caching mode).
    fn note_created(&self, inode: Inode, fh: Handle) {
        let mut st = self.lock();
        match st.inodes.entry(inode).or_insert(InodeMode::Cached(0)) {
            InodeMode::Cached(n) => *n += 1,
            InodeMode::Backed { .. } => return,
        }
        st.stale.insert(inode);
        st.handles.insert(fh, (inode, true));
    }

    /// Forgets handle `fh`; the inode it wrote through passthrough, if it did.
    fn release(&self, fh: Handle) -> Option<Inode> {
        let mut st = self.lock();
        let (inode, writer) = st.handles.remove(&fh)?;
        let outside = st.outside.remove(&fh).then_some(inode);
        if writer {
            st.stale.insert(inode);
        }
        let done = match st.inodes.get_mut(&inode) {
            Some(InodeMode::Cached(n)) | Some(InodeMode::Backed { opens: n, .. }) => {
                *n = n.saturating_sub(1);
                *n == 0
            }
            None => false,
        };
        if done {
            if let Some(InodeMode::Backed { id, file, access, .. }) = st.inodes.remove(&inode) {
                st.idle.push_back((inode, id, file, access));
                if st.idle.len() > IDLE_BACKING {
                    // Dropping a backing id unregisters the backing file.
                    st.idle.pop_front();
                }
            }
        }
        drop(st);
        self.released.notify_all();
        outside
    }

    /// Notes a handle opened for writing through passthrough (see `outside`).
    fn note_outside(st: &mut PassthroughState, fs: &dyn FileSystem, inode: Inode, fh: Handle, access: i32) {
        if access != libc::O_RDONLY && st.outside.insert(fh) {
            fs.outside_writer(inode, true);
        }
    }

    /// Waits (50 ms at most) for a release of `inode`'s handles: the io_uring transport serves
    /// requests on several threads, so the release of a file closed just before this open
    /// may still be in flight, where the classic transport's single reader had read it first.
    fn await_release(&self, inode: Inode) {
        let deadline = std::time::Instant::now() + Duration::from_millis(50);
        let mut st = self.lock();
        let opens = |st: &PassthroughState| match st.inodes.get(&inode) {
            Some(InodeMode::Backed { opens, .. }) => Some(*opens),
            _ => None,
        };
        let Some(before) = opens(&st) else { return };
        while opens(&st) == Some(before) {
            let now = std::time::Instant::now();
            if now >= deadline {
                return;
            }
            st = self.released.wait_timeout(st, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Answers an open of a regular file; `patient`: wait once for an in-flight release
    /// before refusing an open that cannot share the inode's backing file.
    #[allow(clippy::too_many_arguments)]
    fn open(&self, fs: &dyn FileSystem, enabled: bool, min_size: u64, stats: &OpStats, inode: Inode, fh: Handle, access: i32, flags: u32, reply: impl OpenAnswer, patient: bool) {
        if !enabled {
            return reply.opened(fh, flags);
        }
        let mut st = self.lock();
        // An inode open for passthrough has its current file looked up whatever its size: the
        // registered one may be a lower file since copied up (the copy then cannot share it).
        let registered = matches!(st.inodes.get(&inode), Some(InodeMode::Backed { .. }));
        let known_small = access == libc::O_RDONLY && st.small.contains(&inode) && !registered;
        if access != libc::O_RDONLY {
            st.small.remove(&inode);
        }
        let backing = if known_small { None } else { fs.backing_file(inode, fh).ok() };
        let current = backing.as_ref().map(|b| b.id);
        // The size threshold is for readers: a writer's data would otherwise go through the
        // daemon one write at a time, however small the file.
        let backing = match backing {
            Some(b) if access == libc::O_RDONLY && b.size < min_size => {
                if st.small.len() >= SMALL_MEMO {
                    st.small.clear();
                }
                st.small.insert(inode);
                None
            }
            b => b,
        };
        let file = backing.as_ref().map(|b| b.id);
        if !st.inodes.contains_key(&inode) {
            if let Some(i) = st.idle.iter().position(|(n, ..)| *n == inode) {
                if let Some((_, id, f, have)) = st.idle.remove(i) {
                    if Some(f) == file && covers(have, access) {
                        if access != libc::O_RDONLY {
                            st.stale.insert(inode);
                        }
                        stats.add_passthrough();
                        Self::note_outside(&mut st, fs, inode, fh, access);
                        reply.opened_passthrough(fh, flags & !FOPEN_KEEP_CACHE, &id);
                        st.inodes.insert(inode, InodeMode::Backed { id, file: f, access: have, opens: 1 });
                        st.handles.insert(fh, (inode, access != libc::O_RDONLY));
                        return;
                    }
                }
            }
        }
        match (st.inodes.get_mut(&inode), backing, file) {
            (None, Some(b), Some(file)) if access != libc::O_RDONLY || !b.writable => match reply.open_backing(b.fd.as_fd()) {
                Ok(id) => {
                    if access != libc::O_RDONLY {
                        st.stale.insert(inode);
                    }
                    stats.add_passthrough();
                    Self::note_outside(&mut st, fs, inode, fh, access);
                    reply.opened_passthrough(fh, flags & !FOPEN_KEEP_CACHE, &id);
                    st.inodes.insert(inode, InodeMode::Backed { id, file, access, opens: 1 });
                    st.handles.insert(fh, (inode, access != libc::O_RDONLY));
                }
                Err(e) => {
                    debug!("passthrough refused for inode {inode}: {e}");
                    st.inodes.insert(inode, InodeMode::Cached(1));
                    st.handles.insert(fh, (inode, false));
                    reply.opened(fh, flags & !FOPEN_KEEP_CACHE);
                }
            },
            // The registered file, or one not looked at (no host descriptor): the inode's
            // current file, which a registered writer's file stays.
            (Some(InodeMode::Backed { id, file: f, access: have, opens }), _, _)
                if current.is_none_or(|x| x == *f) && covers(*have, access) =>
            {
                stats.add_passthrough();
                // Marked before the reply: the writer's first write may follow it at once,
                // and a user-level reader must not trust what it learned meanwhile. (A fresh
                // handle: not counted yet.)
                let writer = access != libc::O_RDONLY;
                if writer {
                    fs.outside_writer(inode, true);
                }
                reply.opened_passthrough(fh, flags & !FOPEN_KEEP_CACHE, id);
                *opens += 1;
                if writer {
                    st.outside.insert(fh);
                }
                st.handles.insert(fh, (inode, access != libc::O_RDONLY));
                if access != libc::O_RDONLY {
                    st.stale.insert(inode);
                }
            }
            (Some(InodeMode::Backed { .. }), _, _) if patient => {
                drop(st);
                self.await_release(inode);
                self.open(fs, enabled, min_size, stats, inode, fh, access, flags, reply, false)
            }
            (Some(InodeMode::Backed { .. }), _, _) => {
                debug!("inode {inode} is open for passthrough on another backing file: open refused");
                drop(st);
                let _ = fs.release(&Context::current(), inode, fh);
                reply.error(libc::EBUSY);
            }
            (Some(InodeMode::Cached(n)), _, _) => {
                *n += 1;
                st.handles.insert(fh, (inode, false));
                let flags = if st.stale.remove(&inode) { flags & !FOPEN_KEEP_CACHE } else { flags };
                reply.opened(fh, flags);
            }
            (None, _, _) => {
                st.inodes.insert(inode, InodeMode::Cached(1));
                st.handles.insert(fh, (inode, false));
                let flags = if st.stale.remove(&inode) { flags & !FOPEN_KEEP_CACHE } else { flags };
                reply.opened(fh, flags);
            }
        }
    }
}

/// The request handlers, one per FUSE operation, with the operation's own arguments (hence
/// their number); each transport decodes a request and calls one.
#[allow(clippy::too_many_arguments)]
impl FuseAdapter {
    pub(super) fn lookup(&self, c: Context, parent: u64, name: &OsStr, reply: impl EntryAnswer) {
        let _t = self.timer("lookup");
        if !self.entry_ttl().is_zero() {
            // Before the backend is asked: a name the user-level path makes from now on is
            // noticed, should this lookup answer it missing.
            self.known.negative(parent, name, self.entry_ttl());
        }
        match self.fs.lookup(&c, parent, name) {
            Ok(e) => {
                self.known.add(e.inode);
                reply.entry(&self.entry_ttl(), &fuse_attr(&e.attr), e.generation)
            }
            // A negative entry (node id 0), cached by the kernel like a positive one: the
            // dynamic loader's search of library directories, PATH lookups. A name the
            // user-level path makes where one was answered missing is invalidated.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && !self.entry_ttl().is_zero() => {
                let none = FileAttr {
                    ino: 0,
                    size: 0,
                    blocks: 0,
                    atime: UNIX_EPOCH,
                    mtime: UNIX_EPOCH,
                    ctime: UNIX_EPOCH,
                    crtime: UNIX_EPOCH,
                    kind: fuser::FileType::RegularFile,
                    perm: 0,
                    nlink: 0,
                    uid: 0,
                    gid: 0,
                    rdev: 0,
                    blksize: 0,
                    flags: 0,
                };
                reply.entry(&self.entry_ttl(), &none, 0)
            }
            Err(e) => reply.error(err(e)),
        }
    }

    pub(super) fn forget(&self, ino: u64, nlookup: u64) {
        let _t = self.timer("forget");
        self.known.forget(ino, nlookup);
        self.fs.forget(ino, nlookup);
    }

    pub(super) fn getattr(&self, c: Context, ino: u64, fh: Option<u64>, reply: impl AttrAnswer) {
        let _t = self.timer("getattr");
        match self.fs.getattr(&c, ino, fh) {
            Ok(a) => reply.attr(&self.attr_ttl(), &fuse_attr(&a)),
            Err(e) => reply.error(err(e)),
        }
    }

    pub(super) fn setattr(
        &self,
        c: Context,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: impl AttrAnswer,
    ) {
        let t = self.timer("setattr");
        let set = SetAttr { mode, uid, gid, size, atime: time_update(atime), mtime: time_update(mtime) };
        let (fs, c, ttl) = (self.fs.clone(), c, self.attr_ttl());
        self.heavy(t, move || match fs.setattr(&c, ino, fh, &set) {
            Ok(a) => reply.attr(&ttl, &fuse_attr(&a)),
            Err(e) => reply.error(err(e)),
        });
    }

    pub(super) fn readlink(&self, c: Context, ino: u64, reply: impl DataAnswer) {
        let _t = self.timer("readlink");
        match self.fs.readlink(&c, ino) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(err(e)),
        }
    }

    pub(super) fn mknod(&self, c: Context, parent: u64, name: &OsStr, mode: u32, umask: u32, rdev: u32, reply: impl EntryAnswer) {
        let t = self.timer("mknod");
        let (fs, c, ttl, name) = (self.fs.clone(), c, self.entry_ttl(), name.to_owned());
        let known = self.known.clone();
        self.namespace(t, move || match creator(&*fs, c, parent, mode).and_then(|(c, mode)| fs.mknod(&c, parent, &name, mode, rdev.into(), umask)) {
            Ok(e) => {
                known.add(e.inode);
                reply.entry(&ttl, &fuse_attr(&e.attr), e.generation)
            }
            Err(e) => reply.error(err(e)),
        });
    }

    pub(super) fn mkdir(&self, c: Context, parent: u64, name: &OsStr, mode: u32, umask: u32, reply: impl EntryAnswer) {
        let t = self.timer("mkdir");
        let (fs, c, ttl, name) = (self.fs.clone(), c, self.entry_ttl(), name.to_owned());
        let known = self.known.clone();
        self.namespace(t, move || match creator(&*fs, c, parent, mode | libc::S_IFDIR).and_then(|(c, mode)| fs.mkdir(&c, parent, &name, mode & !libc::S_IFMT, umask)) {
            Ok(e) => {
                known.add(e.inode);
                reply.entry(&ttl, &fuse_attr(&e.attr), e.generation)
            }
            Err(e) => reply.error(err(e)),
        });
    }

    pub(super) fn unlink(&self, c: Context, parent: u64, name: &OsStr, reply: impl EmptyAnswer) {
        let t = self.timer("unlink");
        let (fs, c, name) = (self.fs.clone(), c, name.to_owned());
        self.namespace(t, move || match fs.unlink(&c, parent, &name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        });
    }

    pub(super) fn rmdir(&self, c: Context, parent: u64, name: &OsStr, reply: impl EmptyAnswer) {
        let t = self.timer("rmdir");
        let (fs, c, name) = (self.fs.clone(), c, name.to_owned());
        self.namespace(t, move || match fs.rmdir(&c, parent, &name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        });
    }

    pub(super) fn symlink(&self, c: Context, parent: u64, link_name: &OsStr, target: &Path, reply: impl EntryAnswer) {
        let t = self.timer("symlink");
        let (fs, c, ttl) = (self.fs.clone(), c, self.entry_ttl());
        let (name, target) = (link_name.to_owned(), target.as_os_str().to_owned());
        let known = self.known.clone();
        self.namespace(t, move || match creator(&*fs, c, parent, libc::S_IFLNK).and_then(|(c, _)| fs.symlink(&c, &target, parent, &name)) {
            Ok(e) => {
                known.add(e.inode);
                reply.entry(&ttl, &fuse_attr(&e.attr), e.generation)
            }
            Err(e) => reply.error(err(e)),
        });
    }

    pub(super) fn rename(&self, c: Context, parent: u64, name: &OsStr, newparent: u64, newname: &OsStr, flags: u32, reply: impl EmptyAnswer) {
        let t = self.timer("rename");
        let (fs, c) = (self.fs.clone(), c);
        let (name, newname) = (name.to_owned(), newname.to_owned());
        self.heavy(t, move || match fs.rename(&c, parent, &name, newparent, &newname, flags) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        });
    }

    pub(super) fn link(&self, c: Context, ino: u64, newparent: u64, newname: &OsStr, reply: impl EntryAnswer) {
        let t = self.timer("link");
        let (fs, c, ttl, name) = (self.fs.clone(), c, self.entry_ttl(), newname.to_owned());
        let known = self.known.clone();
        self.heavy(t, move || match fs.link(&c, ino, newparent, &name) {
            Ok(e) => {
                known.add(e.inode);
                reply.entry(&ttl, &fuse_attr(&e.attr), e.generation)
            }
            Err(e) => reply.error(err(e)),
        });
    }

    pub(super) fn open(&self, c: Context, ino: u64, flags: i32, reply: impl OpenAnswer) {
        let t = self.timer("open");
        let bflags = self.backend_flags(flags);
        let (fs, c, backing, pt, stats) = (self.fs.clone(), c, self.backing.clone(), self.passthrough(), self.stats.clone());
        let (oflags, min_size) = (self.open_reply_flags(), self.cfg.passthrough_min_size);
        // An open for writing may copy a lower file up: that is worker work. A ring thread
        // serves it itself.
        let on_worker = (flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0) && !on_ring_thread();
        // Waiting for an in-flight release is right where another thread reads it: on a ring
        // thread or a worker, never on the classic transport's one reader.
        let patient = on_worker || on_ring_thread();
        let job = move || {
            let _t = t;
            match fs.open(&c, ino, bflags) {
                Ok(fh) => backing.open(&*fs, pt, min_size, &stats, ino, fh, bflags & libc::O_ACCMODE, oflags, reply, patient),
                Err(e) => reply.error(err(e)),
            }
        };
        if on_worker {
            self.workers.run(job);
        } else {
            job();
        }
    }

    pub(super) fn read(&self, c: Context, ino: u64, fh: u64, offset: i64, size: u32, _flags: i32, _lock: Option<u64>, reply: impl DataAnswer) {
        let t = self.timer("read");
        let (fs, c) = (self.fs.clone(), c);
        self.heavy(t, move || {
            let mut buf = vec![0u8; size as usize];
            match fs.read(&c, ino, fh, &mut [IoSliceMut::new(&mut buf)], offset.max(0) as u64) {
                Ok(n) => reply.data(&buf[..n]),
                Err(e) => reply.error(err(e)),
            }
        });
    }

    pub(super) fn write(&self, c: Context, ino: u64, fh: u64, offset: i64, data: &[u8], wflags: u32, flags: i32, _lock: Option<u64>, reply: impl WriteAnswer) {
        let t = self.timer("write");
        let (fs, c, data) = (self.fs.clone(), c, data.to_vec());
        // The kernel sends the file's O_SYNC/O_DSYNC, and a write's RWF_SYNC/RWF_DSYNC, as
        // these flags; the data must be durable before the write is acknowledged.
        let sync = WriteSync::of(flags);
        // A direct-I/O write (no page cache) is not preceded by the kernel's own clearing of
        // set-id bits: it tells whether the writer lacks `CAP_FSETID` instead, and the bits
        // are ours to clear (the backend writes with the service's capabilities).
        let kill = wflags & WRITE_KILL_SUIDGID != 0;
        self.heavy(t, move || {
            let killed = if kill { kill_suidgid(&*fs, &c, ino, fh) } else { Ok(()) };
            let written = killed.and_then(|()| fs.write(&c, ino, fh, &[IoSlice::new(&data)], offset.max(0) as u64)).and_then(|n| match sync.fsync() {
                Some(datasync) => fs.fsync(&c, ino, fh, datasync).map(|()| n),
                None => Ok(n),
            });
            match written {
                Ok(n) => reply.written(n as u32),
                Err(e) => reply.error(err(e)),
            }
        });
    }

    pub(super) fn flush(&self, c: Context, ino: u64, fh: u64, _lock_owner: u64, reply: impl EmptyAnswer) {
        let _t = self.timer("flush");
        // ENOSYS tells the kernel to stop sending flushes the libservice does not need.
        match self.fs.flush(&c, ino, fh) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    pub(super) fn release(&self, c: Context, ino: u64, fh: u64, _flags: i32, _lock: Option<u64>, _flush: bool, reply: impl EmptyAnswer) {
        let _t = self.timer("release");
        if let Some(inode) = self.backing.release(fh) {
            self.fs.outside_writer(inode, false);
        }
        match self.fs.release(&c, ino, fh) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    pub(super) fn fsync(&self, c: Context, ino: u64, fh: u64, datasync: bool, reply: impl EmptyAnswer) {
        let t = self.timer("fsync");
        let (fs, c) = (self.fs.clone(), c);
        self.heavy(t, move || match fs.fsync(&c, ino, fh, datasync) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        });
    }

    pub(super) fn opendir(&self, c: Context, ino: u64, flags: i32, reply: impl OpenAnswer) {
        let _t = self.timer("opendir");
        match self.fs.opendir(&c, ino, flags) {
            Ok(fh) => reply.opened(fh, 0),
            Err(e) => reply.error(err(e)),
        }
    }

    pub(super) fn readdir(&self, c: Context, ino: u64, fh: u64, offset: i64, mut reply: impl DirAnswer) {
        let _t = self.timer("readdir");
        let mut offset = offset.max(0) as u64;
        loop {
            let batch = match self.fs.readdir(&c, ino, fh, offset, READDIR_BATCH) {
                Ok(b) => b,
                Err(e) => return reply.error(err(e)),
            };
            if batch.is_empty() {
                break;
            }
            for e in batch {
                if reply.add(e.ino, e.offset as i64, file_type(e.kind), &e.name) {
                    return reply.ok();
                }
                offset = e.offset;
            }
        }
        reply.ok();
    }

    pub(super) fn releasedir(&self, c: Context, ino: u64, fh: u64, _flags: i32, reply: impl EmptyAnswer) {
        let _t = self.timer("releasedir");
        match self.fs.releasedir(&c, ino, fh) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    pub(super) fn fsyncdir(&self, c: Context, ino: u64, fh: u64, datasync: bool, reply: impl EmptyAnswer) {
        let t = self.timer("fsyncdir");
        let (fs, c) = (self.fs.clone(), c);
        self.heavy(t, move || match fs.fsyncdir(&c, ino, fh, datasync) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        });
    }

    pub(super) fn statfs(&self, c: Context, ino: u64, reply: impl StatfsAnswer) {
        let _t = self.timer("statfs");
        match self.fs.statfs(&c, ino) {
            Ok(s) => reply.statfs(s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize),
            Err(e) => reply.error(err(e)),
        }
    }

    pub(super) fn setxattr(&self, c: Context, ino: u64, name: &OsStr, value: &[u8], flags: i32, _position: u32, reply: impl EmptyAnswer) {
        let t = self.timer("setxattr");
        let (fs, c, name, value) = (self.fs.clone(), c, name.to_owned(), value.to_vec());
        self.heavy(t, move || match fs.setxattr(&c, ino, &name, &value, flags) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        });
    }

    pub(super) fn getxattr(&self, c: Context, ino: u64, name: &OsStr, size: u32, reply: impl XattrAnswer) {
        let _t = self.timer("getxattr");
        match self.fs.getxattr(&c, ino, name) {
            Ok(v) => reply_xattr(reply, size, &v),
            Err(e) => reply.error(err(e)),
        }
    }

    pub(super) fn listxattr(&self, c: Context, ino: u64, size: u32, reply: impl XattrAnswer) {
        let _t = self.timer("listxattr");
        use std::os::unix::ffi::OsStrExt;
        match self.fs.listxattr(&c, ino) {
            Ok(names) => {
                // Names of the trusted namespace are listed to callers with CAP_SYS_ADMIN only,
                // as a kernel filesystem lists them (the kernel passes the list on as it is).
                let mut shown = None;
                let mut buf = Vec::new();
                for n in names {
                    if n.as_bytes().starts_with(b"trusted.") && !*shown.get_or_insert_with(|| sys_admin(c.pid)) {
                        continue;
                    }
                    buf.extend_from_slice(n.as_bytes());
                    buf.push(0);
                }
                reply_xattr(reply, size, &buf);
            }
            Err(e) => reply.error(err(e)),
        }
    }

    pub(super) fn removexattr(&self, c: Context, ino: u64, name: &OsStr, reply: impl EmptyAnswer) {
        let t = self.timer("removexattr");
        let (fs, c, name) = (self.fs.clone(), c, name.to_owned());
        self.heavy(t, move || match fs.removexattr(&c, ino, &name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        });
    }

    pub(super) fn access(&self, c: Context, ino: u64, mask: i32, reply: impl EmptyAnswer) {
        let _t = self.timer("access");
        match self.fs.access(&c, ino, mask) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    pub(super) fn create(&self, c: Context, parent: u64, name: &OsStr, mode: u32, umask: u32, flags: i32, reply: impl CreateAnswer) {
        let t = self.timer("create");
        let (fs, c, ttl, name) = (self.fs.clone(), c, self.entry_ttl(), name.to_owned());
        let bflags = self.backend_flags(flags);
        // A file made by `create` cannot be passthrough (fuser 0.16); with passthrough on, it is
        // written through the daemon with direct I/O rather than through a second page cache.
        let (backing, pt) = (self.backing.clone(), self.passthrough());
        let known = self.known.clone();
        let oflags = if pt { FOPEN_DIRECT_IO } else { self.open_reply_flags() };
        // The kernel sends CREATE for a name it found missing; another client (the user-level
        // path) may have made it since: without O_EXCL, that file is opened instead.
        self.namespace(t, move || match creator(&*fs, c, parent, mode).and_then(|(c, mode)| open_or_create(&*fs, &c, parent, &name, mode, umask, bflags | libc::O_CREAT)) {
            Ok(Opened::Created(e, fh)) => {
                if pt {
                    backing.note_created(e.inode, fh);
                }
                known.add(e.inode);
                reply.created(&ttl, &fuse_attr(&e.attr), e.generation, fh, oflags);
            }
            Ok(Opened::Existing(e)) => {
                // The kernel skipped its checks of an open (it asked to create), so only the
                // file's owner opening it as its mode allows, truncating nothing, gets it here;
                // anyone else is told the name went stale, and the kernel looks it up again and
                // opens it with every check of its own (permissions with all the caller's
                // credentials, the sticky and `protected_regular` rules, set-id bits cleared).
                let opened = match e.attr.kind() {
                    FileKind::Regular if !owner_may_open(&c, &e.attr, flags) => Err(std::io::Error::from_raw_os_error(libc::ESTALE)),
                    FileKind::Regular => fs.open(&c, e.inode, bflags & !(libc::O_CREAT | libc::O_EXCL)),
                    FileKind::Directory => Err(std::io::Error::from_raw_os_error(libc::EISDIR)),
                    _ => Err(std::io::Error::from_raw_os_error(libc::EEXIST)),
                };
                match opened {
                    Ok(fh) => {
                        known.add(e.inode);
                        reply.created(&ttl, &fuse_attr(&e.attr), e.generation, fh, FOPEN_DIRECT_IO)
                    }
                    Err(x) => {
                        fs.forget(e.inode, 1);
                        reply.error(err(x));
                    }
                }
            }
            Err(e) => reply.error(err(e)),
        });
    }

    pub(super) fn fallocate(&self, c: Context, ino: u64, fh: u64, offset: i64, length: i64, mode: i32, reply: impl EmptyAnswer) {
        let t = self.timer("fallocate");
        let (fs, c) = (self.fs.clone(), c);
        self.heavy(t, move || match fs.fallocate(&c, ino, fh, mode, offset.max(0) as u64, length.max(0) as u64) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        });
    }

    pub(super) fn lseek(&self, c: Context, ino: u64, fh: u64, offset: i64, whence: i32, reply: impl LseekAnswer) {
        let t = self.timer("lseek");
        let (fs, c) = (self.fs.clone(), c);
        self.heavy(t, move || match fs.lseek(&c, ino, fh, offset.max(0) as u64, whence) {
            Ok(o) => reply.offset(o as i64),
            Err(e) => reply.error(err(e)),
        });
    }
}

thread_local! {
    /// Set on the io_uring transport's threads (see `heavy`).
    static RING_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Marks the calling thread as a ring thread.
pub(super) fn mark_ring_thread() {
    RING_THREAD.with(|r| r.set(true));
}

fn on_ring_thread() -> bool {
    RING_THREAD.with(|r| r.get())
}
