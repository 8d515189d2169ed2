//! The `local` libservice: a host directory as the backend client.
//!
//! Every inode is held as an `O_PATH` descriptor. Names are resolved one component at a time,
//! relative to the parent's descriptor, with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`
//! and `O_NOFOLLOW`; no operation ever resolves a multi-component path. Whatever a request
//! names (`..`, an absolute or relative symlink, a symlink swapped in between two calls), it
//! cannot reach outside the root: a symlink is only ever an object of its own, never followed.
//!
//! Opening an inode for I/O re-opens its `O_PATH` descriptor through `/proc/self/fd/N`, which
//! names exactly the object already held, never a path.

mod cached;
mod handles;
mod inodes;
mod lookups;
mod views;
pub use views::BranchView;
mod writeback;

use std::ffi::{OsStr, OsString};
use std::io::{self, IoSlice, IoSliceMut};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rustix::buffer::spare_capacity;
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, ResolveFlags};

use crate::libservice::{
    check_name, errno, Attr, BackingFile, Context, DirEntry, Entry, FileKind, FileSystem, Handle, Inode,
    SetAttr, StatFs, TimeUpdate, Timespec, WriteSync, ROOT_INODE,
};
use inodes::{Descriptors, InodeData, InodeTable};

/// `O_LARGEFILE` as the kernel sets it in FUSE open flags (the libc constant is 0 on 64-bit).
const KERNEL_O_LARGEFILE: i32 = 0o100000;

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS);

/// Errors opening a local backend.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("cannot open backend root {path}")]
    OpenRoot {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("backend root {0} is not a directory")]
    NotADirectory(String),
    #[error("cannot open /proc/self/fd (is /proc mounted?)")]
    Proc(#[source] io::Error),
}

/// Options of a local backend.
#[derive(Clone, Debug, Default)]
pub struct LocalOptions {
    /// Refuse every modifying operation with `EROFS`.
    pub read_only: bool,
    /// Serve file data through this block cache (`writethrough` mode); `None`: straight to
    /// the backing files (and the kernel's page cache).
    pub cache: Option<Arc<crate::backend::cache::BlockCache>>,
    /// With `cache`: writes stay in it, dirty, until written back (`writeback` mode; the
    /// cache's write-back settings must be enabled).
    pub writeback: bool,
    /// With `writeback`: the last close of a file hands it to the flusher at once, for
    /// readers of the branch behind the service (`CacheSpec::close_to_open`).
    pub close_to_open: bool,
    /// How long a name lookup and an object's attributes are reused (zero: never).
    pub entry_ttl: std::time::Duration,
    pub attr_ttl: std::time::Duration,
    /// Descriptors held for objects beyond which the least recently used are let go of
    /// (found again by kernel file handle); zero: `DEFAULT_HELD_DESCRIPTORS`.
    pub max_descriptors: usize,
}

/// The default bound of descriptors one local backend holds for objects.
pub const DEFAULT_HELD_DESCRIPTORS: usize = 8192;

enum HandleData {
    /// An open file: shared with other read-only handles of the same inode, and the
    /// `(st_dev, st_ino)` of the object, and what the open promised about each write's
    /// durability (`O_SYNC`, `O_DSYNC`).
    File(Arc<OwnedFd>, (u64, u64), Opened),
    Dir {
        fd: OwnedFd,
        listing: Mutex<Vec<DirEntry>>,
    },
}

/// What an open file's handle promised and has reported.
#[derive(Debug)]
struct Opened {
    /// What the open promised about each write's durability (`O_SYNC`, `O_DSYNC`).
    sync: WriteSync,
    /// The write-back failures of the pool's cache this handle has reported (or that came
    /// before its open): see `BlockCache::error_since`.
    errors_seen: AtomicU64,
}

/// A host directory served as a libservice.
pub struct LocalFs {
    root_path: String,
    opts: LocalOptions,
    inodes: RwLock<InodeTable>,
    handles: RwLock<rustc_hash::FxHashMap<Handle, Arc<HandleData>>>,
    next_handle: AtomicU64,
    proc_self_fd: OwnedFd,
    /// The budget of descriptors held for objects.
    descriptors: Descriptors,
    lookups: lookups::Lookups,
    euid: u32,
    egid: u32,
    /// The root's file system, and the write-back failures on it `syncfs` has reported.
    dev: u64,
    errors_seen: AtomicU64,
    /// Write-back mode: files whose dirty data was dropped as they lost their last name with
    /// no handle open, and when (see [`LocalFs::discard_unless_open`]).
    discarded: Mutex<std::collections::VecDeque<((u64, u64), std::time::Instant)>>,
    /// Write-back mode: files cut to nothing from a non-empty size since their last close
    /// (see [`LocalFs::emptied`]).
    emptied: Mutex<rustc_hash::FxHashSet<(u64, u64)>>,
}

/// Most files [`LocalFs::emptied`] remembers (past it, it starts over: those files are written
/// back at expiry like any other).
const EMPTIED_KEEP: usize = 4096;

/// How many dropped files [`LocalFs::discarded`] remembers, and for how long: an open that
/// raced with the removal (its lookup before, its open after) is told apart for that long.
const DISCARDED_KEEP: usize = 1024;
const DISCARDED_FOR: std::time::Duration = std::time::Duration::from_secs(2);

impl std::fmt::Debug for LocalFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalFs").field("root", &self.root_path).finish_non_exhaustive()
    }
}

/// The attributes a host `stat` gives (also the service's, for host directories).
pub fn stat_to_attr(st: &rfs::Stat) -> Attr {
    Attr {
        ino: st.st_ino,
        dev: st.st_dev,
        mode: st.st_mode,
        nlink: st.st_nlink,
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: st.st_rdev,
        size: st.st_size as u64,
        blksize: st.st_blksize as u32,
        blocks: st.st_blocks as u64,
        atime: Timespec { sec: st.st_atime, nsec: st.st_atime_nsec as u32 },
        mtime: Timespec { sec: st.st_mtime, nsec: st.st_mtime_nsec as u32 },
        ctime: Timespec { sec: st.st_ctime, nsec: st.st_ctime_nsec as u32 },
    }
}

fn fstat_attr(fd: BorrowedFd<'_>) -> io::Result<Attr> {
    let st = rfs::statat(fd, "", AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(stat_to_attr(&st))
}

fn to_rustix_ts(t: Option<TimeUpdate>) -> rfs::Timespec {
    match t {
        None => rfs::Timespec { tv_sec: 0, tv_nsec: rfs::UTIME_OMIT },
        Some(TimeUpdate::Now) => rfs::Timespec { tv_sec: 0, tv_nsec: rfs::UTIME_NOW },
        Some(TimeUpdate::Set(t)) => rfs::Timespec { tv_sec: t.sec, tv_nsec: t.nsec.into() },
    }
}

fn kind_of(ft: rfs::FileType) -> FileKind {
    FileKind::from_mode(ft.as_raw_mode())
}

fn file_key((dev, ino): (u64, u64)) -> crate::backend::cache::FileKey {
    crate::backend::cache::FileKey { dev, ino }
}

impl LocalFs {
    /// Drops the cached blocks of the file behind `h` (its data changed other than by a write).
    fn forget_cached(&self, h: &HandleData) {
        if let (Some(cache), HandleData::File(_, id, _)) = (&self.opts.cache, h) {
            cache.invalidate(file_key(*id));
        }
    }

    /// Drops the dirty data of `id`, which just lost its last name, unless a handle of it is
    /// open (its data is still read and written through it) or being opened.
    fn discard_unless_open(&self, cache: &crate::backend::cache::BlockCache, id: (u64, u64)) -> io::Result<()> {
        let handles = self.handles.read().map_err(|_| errno(libc::EIO))?;
        if handles.values().any(|h| matches!(&**h, HandleData::File(_, i, _) if *i == id)) || cache.dirty_size(file_key(id)).is_none() {
            return Ok(());
        }
        cache.discard(file_key(id));
        // Recorded before the handles' lock is let go of: an open putting its handle in place
        // after this finds the record (see `open`).
        let mut d = self.discarded.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        while d.front().is_some_and(|(_, at)| now.duration_since(*at) > DISCARDED_FOR) || d.len() >= DISCARDED_KEEP {
            d.pop_front();
        }
        d.push_back((id, now));
        Ok(())
    }

    /// Whether `id`, just opened through `fd`, is a file whose data was dropped as it lost its
    /// last name: an open that looked the name up before the removal and opened the file after
    /// it, which then counts as coming after the removal (`ENOENT`) rather than read a file
    /// emptied of what was written to it. (A handle open at the removal keeps the data.)
    fn dropped_meanwhile(&self, id: (u64, u64), fd: BorrowedFd<'_>) -> bool {
        let d = self.discarded.lock().unwrap_or_else(|p| p.into_inner());
        if d.is_empty() || !d.iter().any(|(i, _)| *i == id) {
            return false;
        }
        drop(d);
        rfs::fstat(fd).is_ok_and(|st| st.st_nlink == 0)
    }

    /// In write-back mode, when `data` (a regular file) is about to be cut to nothing: if it
    /// held something, its next close writes it back at once, as ext4 does for a file
    /// truncated and written anew (`auto_da_alloc`): the cut reaches the branch at once, and a
    /// service that died before the write-back would leave the file empty where it held its
    /// old data (a program rewriting a file in place, without an fsync).
    fn emptying(&self, data: &InodeData) -> io::Result<()> {
        if self.write_back_cache().is_none() || self.opts.close_to_open {
            return Ok(());
        }
        let held = rfs::fstat(&*self.path(data)?)?.st_size > 0 || self.opts.cache.as_ref().is_some_and(|c| c.dirty_size(file_key(data.id())).is_some_and(|n| n > 0));
        if held {
            let mut e = self.emptied.lock().unwrap_or_else(|p| p.into_inner());
            if e.len() >= EMPTIED_KEEP {
                e.clear();
            }
            e.insert(data.id());
        }
        Ok(())
    }

    /// Whether `fd`, the handle of `id` just closed, is a writer's of a file cut to nothing
    /// (see `emptying`): its close writes the file back, and the mark goes (a reader's close
    /// leaves it).
    fn emptied_written(&self, id: &(u64, u64), fd: &OwnedFd) -> bool {
        let mut e = self.emptied.lock().unwrap_or_else(|p| p.into_inner());
        if e.is_empty() || !e.contains(id) {
            return false;
        }
        rfs::fcntl_getfl(fd).is_ok_and(|f| f.intersects(OFlags::WRONLY | OFlags::RDWR)) && e.remove(id)
    }

    /// Hands `id` to the flusher now, if it holds dirty data.
    fn to_flusher(cache: &crate::backend::cache::BlockCache, id: (u64, u64)) {
        if cache.dirty_size(file_key(id)).is_some() {
            cache.closed().push(file_key(id));
        }
    }

    /// The regular file `name` in `dir`, if it is one.
    fn regular_at(dir: &OwnedFd, name: &OsStr) -> Option<rfs::Stat> {
        rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).ok().filter(|st| kind_of(rfs::FileType::from_raw_mode(st.st_mode)) == FileKind::Regular)
    }

    /// The write-back cache, in `writeback` mode.
    fn write_back_cache(&self) -> Option<&Arc<crate::backend::cache::BlockCache>> {
        self.opts.cache.as_ref().filter(|_| self.opts.writeback)
    }

    /// Writes the dirty blocks of the object `id` back (write-back mode) before something that
    /// must see them in the backing file.
    fn write_back(&self, id: (u64, u64)) -> io::Result<()> {
        match self.write_back_cache() {
            Some(cache) => writeback::flush(cache, file_key(id)),
            None => Ok(()),
        }
    }

    /// In write-back mode, holds writes of the object `id` into the cache off until the guard
    /// drops: for a change of its size or layout (the guard first, then [`Self::write_back`],
    /// the change, and the cache's invalidation).
    fn resizing(&self, id: (u64, u64)) -> Option<crate::backend::cache::Resizing<'_>> {
        self.write_back_cache().map(|cache| cache.begin_resize(file_key(id)))
    }

    /// The attributes of the object behind `fd` (`id`, when known), its size and times
    /// counting dirty blocks not yet written back.
    fn attr_of(&self, fd: BorrowedFd<'_>, id: Option<(u64, u64)>) -> io::Result<Attr> {
        let Some(cache) = self.write_back_cache() else { return fstat_attr(fd) };
        // The dirty state first, then the backing file's: a write-back that ends in between
        // has already grown the backing file (the other order could miss both).
        let id = match id {
            Some(id) => id,
            None => {
                let st = rfs::fstat(fd)?;
                (st.st_dev, st.st_ino)
            }
        };
        let dirty = cache.dirty_state(file_key(id));
        let mut a = fstat_attr(fd)?;
        if let Some((size, (sec, nsec), blocks)) = dirty {
            // What the backing file will say once the dirty blocks are written back.
            let written = Timespec { sec, nsec };
            a.size = a.size.max(size);
            // Its last write's (every change of a dirty file's data or size is a write into
            // the cache, or first writes it back): not the time a write-back in progress is
            // giving the backing file, which the write-back then sets back.
            a.mtime = written;
            a.ctime = a.ctime.max(written);
            // The space the data will take (in 512-byte units, as `st_blocks`): the backing
            // file's and the dirty blocks' (at most the whole file's): a file whose data is all
            // in the cache would otherwise look all holes (`tar --sparse`, `cp --sparse=auto`
            // and `du` go by it), and a large sparse one with a little dirty data must not look
            // all written.
            let room = a.blocks.saturating_add(blocks.saturating_mul(crate::backend::cache::BLOCK as u64 / 512));
            a.blocks = room.min(a.blocks.max(size.div_ceil(512)));
        }
        Ok(a)
    }

    /// Opens `root` as a backend.
    pub fn new(root: &Path, opts: LocalOptions) -> Result<Self, LocalError> {
        let root_path = root.display().to_string();
        // A read-only branch (an image layer other pools share) is reached through a
        // read-only detached mount of itself where one can be made (the service's
        // `CAP_SYS_ADMIN`): the kernel, not only this code, then refuses any change to it
        // (`EROFS`), whichever descriptor of it the service holds or registers for FUSE
        // passthrough, and reads of it move no access time other pools would see.
        let view = if opts.read_only {
            // With the mounts below it (a branch may hold bind mounts: a host's /usr).
            views::detached(root, libc::MOUNT_ATTR_RDONLY, true).map_err(|e| tracing::warn!("no read-only mount of the read-only branch {root_path} ({e}): only this code keeps it unchanged")).ok()
        } else {
            None
        };
        let open_root = |flags: OFlags| match &view {
            Some(v) => rfs::openat(v, ".", flags, Mode::empty()),
            None => rfs::open(root, flags, Mode::empty()),
        };
        let fd = open_root(OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC)
            .map_err(|e| LocalError::OpenRoot { path: root_path.clone(), source: e.into() })?;
        let attr = fstat_attr(fd.as_fd())
            .map_err(|source| LocalError::OpenRoot { path: root_path.clone(), source })?;
        if attr.kind() != FileKind::Directory {
            return Err(LocalError::NotADirectory(root_path));
        }
        let proc_self_fd = rfs::open(
            "/proc/self/fd",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| LocalError::Proc(e.into()))?;
        let ctx = Context::current();
        let lookups = lookups::Lookups::new(opts.entry_ttl, opts.attr_ttl);
        let mount = open_root(OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC)
            .map_err(|e| LocalError::OpenRoot { path: root_path.clone(), source: e.into() })?;
        let bound = match opts.max_descriptors {
            0 => DEFAULT_HELD_DESCRIPTORS,
            n => n,
        };
        let errors_seen = AtomicU64::new(opts.cache.as_ref().map_or(0, |c| c.errors_seen_now()));
        Ok(LocalFs {
            lookups,
            root_path,
            opts,
            inodes: RwLock::new(InodeTable::new(fd, &attr)),
            handles: RwLock::new(rustc_hash::FxHashMap::default()),
            next_handle: AtomicU64::new(1),
            proc_self_fd,
            descriptors: Descriptors::new(mount, bound),
            euid: ctx.uid,
            egid: ctx.gid,
            dev: attr.dev,
            errors_seen,
            discarded: Mutex::new(std::collections::VecDeque::new()),
            emptied: Mutex::new(rustc_hash::FxHashSet::default()),
        })
    }

    /// The record of the object `id` opened with `flags` now.
    fn opened(&self, flags: i32, id: (u64, u64)) -> Opened {
        let seen = self.opts.cache.as_ref().map_or(0, |c| c.errors_seen_for(file_key(id)));
        Opened { sync: WriteSync::of(flags), errors_seen: AtomicU64::new(seen) }
    }

    /// Descriptors this backend holds for objects now (not counting open files' own).
    pub fn held_descriptors(&self) -> usize {
        self.descriptors.held()
    }

    /// The `O_PATH` descriptor of `data`, found again if it was let go of; kept open for as
    /// long as the caller holds it. Past the bound, the least recently used are let go of.
    fn path(&self, data: &InodeData) -> io::Result<Arc<OwnedFd>> {
        let fd = data.path(&self.descriptors)?;
        if self.descriptors.over() {
            if let Ok(mut table) = self.inodes.try_write() {
                table.sweep(&self.descriptors);
            }
        }
        Ok(fd)
    }

    fn inode(&self, inode: Inode) -> io::Result<Arc<InodeData>> {
        let table = self.inodes.read().map_err(|_| errno(libc::EIO))?;
        table.get(inode).ok_or_else(|| errno(libc::EBADF))
    }

    fn handle(&self, handle: Handle) -> io::Result<Arc<HandleData>> {
        let handles = self.handles.read().map_err(|_| errno(libc::EIO))?;
        handles.get(&handle).cloned().ok_or_else(|| errno(libc::EBADF))
    }

    fn file_fd(&self, handle: Handle) -> io::Result<Arc<HandleData>> {
        let h = self.handle(handle)?;
        match &*h {
            HandleData::File(..) => Ok(h),
            HandleData::Dir { .. } => Err(errno(libc::EISDIR)),
        }
    }

    fn insert_handle(&self, data: HandleData) -> io::Result<Handle> {
        let id = self.next_handle.fetch_add(1, Ordering::Relaxed);
        let mut handles = self.handles.write().map_err(|_| errno(libc::EIO))?;
        handles.insert(id, Arc::new(data));
        Ok(id)
    }

    /// `getattr` from the backing directory.
    fn fresh_attr(&self, inode: Inode, handle: Option<Handle>) -> io::Result<Attr> {
        if let Some(h) = handle {
            if let Ok(hd) = self.handle(h) {
                return match &*hd {
                    HandleData::File(fd, id, _) => self.attr_of(fd.as_fd(), Some(*id)),
                    HandleData::Dir { fd, .. } => fstat_attr(fd.as_fd()),
                };
            }
        }
        let data = self.inode(inode)?;
        self.attr_of(self.path(&data)?.as_fd(), Some(data.id()))
    }

    /// The attributes of `inode` (held as `data`): cached, or read and cached.
    fn cached_attr(&self, inode: Inode, data: &InodeData) -> io::Result<Attr> {
        if let Some(a) = self.lookups.attr(inode) {
            return Ok(a);
        }
        let epoch = self.lookups.attr_epoch();
        let a = self.attr_of(self.path(data)?.as_fd(), Some(data.id()))?;
        self.lookups.put_attr(inode, a, epoch);
        Ok(a)
    }

    /// Starts a change of the backing directory that makes, removes or replaces the names
    /// `gone` (parent, name; none for a change of data or attributes): refused on a read-only
    /// branch; attributes read meanwhile are not kept, and the names in `gone` are forgotten
    /// when it ends (a new name too: a failed create removes what it made).
    fn changing(&self, gone: &[(Inode, &OsStr)]) -> io::Result<lookups::Change<'_>> {
        self.writable()?;
        Ok(self.lookups.change(gone.iter().map(|&(p, n)| (p, n.to_owned())).collect()))
    }

    fn writable(&self) -> io::Result<()> {
        if self.opts.read_only {
            return Err(errno(libc::EROFS));
        }
        Ok(())
    }

    /// The `/proc/self/fd` entry naming `fd`.
    fn proc_name(fd: BorrowedFd<'_>) -> String {
        fd.as_raw_fd().to_string()
    }

    /// Absolute `/proc/self/fd/N` path for path-only syscalls (xattrs).
    fn proc_path(fd: BorrowedFd<'_>) -> String {
        format!("/proc/self/fd/{}", fd.as_raw_fd())
    }

    /// Opens the object held by `data` for I/O with `flags`.
    fn reopen(&self, data: &InodeData, flags: i32) -> io::Result<OwnedFd> {
        let clean = flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_NOCTTY);
        let oflags = OFlags::from_bits_retain(clean as u32) | OFlags::CLOEXEC;
        Ok(rfs::openat(
            &self.proc_self_fd,
            Self::proc_name(self.path(data)?.as_fd()),
            oflags,
            Mode::empty(),
        )?)
    }

    /// Resolves `name` beneath `parent` without following anything, and registers it.
    fn do_lookup(&self, parent: &InodeData, name: &OsStr) -> io::Result<Entry> {
        check_name(name)?;
        let fd = rfs::openat2(
            &*self.path(parent)?,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE,
        )?;
        let attr = self.attr_of(fd.as_fd(), None)?;
        let mut table = self.inodes.write().map_err(|_| errno(libc::EIO))?;
        let inode = table.insert_or_ref(fd, &attr, &self.descriptors);
        Ok(Entry { inode, generation: 0, attr })
    }

    /// After creating `name`: give it the caller's ownership and the exact requested mode
    /// (the service's own umask must not leak into it).
    fn finish_create(
        &self,
        ctx: &Context,
        parent: &InodeData,
        name: &OsStr,
        perm: u32,
    ) -> io::Result<Entry> {
        let entry = self.do_lookup(parent, name)?;
        // On failure the caller removes the name: the node's reference goes too.
        self.own_and_mode(ctx, entry, perm).inspect_err(|_| self.forget(entry.inode, 1))
    }

    /// Gives a new object `entry` the caller's ownership and the mode `perm` (see
    /// `finish_create`).
    fn own_and_mode(&self, ctx: &Context, mut entry: Entry, perm: u32) -> io::Result<Entry> {
        let data = self.inode(entry.inode)?;
        if (ctx.uid != self.euid || ctx.gid != self.egid) && self.euid == 0 {
            rfs::chownat(
                &*self.path(&data)?,
                "",
                Some(rfs::Uid::from_raw(ctx.uid)),
                Some(rfs::Gid::from_raw(ctx.gid)),
                AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
            )?;
            entry.attr = self.attr_of(self.path(&data)?.as_fd(), Some(data.id()))?;
        }
        if entry.attr.kind() != FileKind::Symlink && entry.attr.mode & 0o7777 != perm & 0o7777 {
            rfs::chmodat(
                &self.proc_self_fd,
                Self::proc_name(self.path(&data)?.as_fd()),
                Mode::from_bits_retain(perm & 0o7777),
                AtFlags::empty(),
            )?;
            entry.attr = self.attr_of(self.path(&data)?.as_fd(), Some(data.id()))?;
        }
        Ok(entry)
    }

    /// The names in directory `dir` (`None`: more than `lookups::LISTING_MAX`, or a directory
    /// whose listing may not say every name a lookup finds).
    fn names_in(&self, dir: &InodeData) -> io::Result<Option<rustc_hash::FxHashSet<OsString>>> {
        let fd = rfs::openat(&*self.path(dir)?, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        if !lists_every_name(fd.as_fd()) {
            return Ok(None);
        }
        let mut listing = rfs::Dir::read_from(&fd)?;
        let mut names = rustc_hash::FxHashSet::default();
        while let Some(ent) = listing.read() {
            let name = ent?.file_name().to_bytes().to_owned();
            if name == b"." || name == b".." {
                continue;
            }
            if names.len() >= lookups::LISTING_MAX {
                return Ok(None);
            }
            names.insert(OsString::from_vec(name));
        }
        Ok(Some(names))
    }

    fn read_listing(&self, fd: &OwnedFd, own_ino: u64) -> io::Result<Vec<DirEntry>> {
        let mut dir = rfs::Dir::read_from(fd)?;
        let mut out = Vec::new();
        while let Some(ent) = dir.read() {
            let ent = ent?;
            let name = OsStr::from_bytes(ent.file_name().to_bytes()).to_owned();
            let ino = if name == "." { own_ino } else { ent.ino() };
            out.push(DirEntry { ino, offset: 0, kind: kind_of(ent.file_type()), name });
        }
        // Sort so that cookies are stable across refreshes of the same directory content.
        out.sort_by(|a, b| a.name.cmp(&b.name));
        for (i, e) in out.iter_mut().enumerate() {
            e.offset = i as u64 + 1;
        }
        Ok(out)
    }
}

/// Whether a lookup in directory `dir` finds exactly the names its listing shows: on the local
/// filesystems an image's layers live on, and not in a case-folding directory (where `Foo`
/// finds `foo`). Elsewhere (a hidden `.zfs`, an autofs map, a network filesystem) a listing
/// may leave out names a lookup finds, so none is kept.
fn lists_every_name(dir: BorrowedFd<'_>) -> bool {
    const EXT4: i64 = 0xEF53;
    const XFS: i64 = 0x5846_5342;
    const BTRFS: i64 = 0x9123_683E;
    const TMPFS: i64 = 0x0102_1994;
    const OVERLAYFS: i64 = 0x794C_7630;
    /// `FS_CASEFOLD_FL`.
    const CASEFOLD: u32 = 0x4000_0000;
    // `f_type`'s integer type differs between targets.
    #[allow(clippy::unnecessary_cast)]
    let local = rfs::fstatfs(dir).is_ok_and(|st| matches!(st.f_type as i64, EXT4 | XFS | BTRFS | TMPFS | OVERLAYFS));
    local && rfs::ioctl_getflags(dir).is_ok_and(|f| f.bits() & CASEFOLD == 0)
}

impl FileSystem for LocalFs {
    fn lookup(&self, _ctx: &Context, parent: Inode, name: &OsStr) -> io::Result<Entry> {
        if let Some(child) = self.lookups.name(parent, name) {
            let known = self.inodes.read().map_err(|_| errno(libc::EIO))?.add_ref(child);
            if let Some(data) = known {
                return match self.cached_attr(child, &data) {
                    Ok(attr) => Ok(Entry { inode: child, generation: 0, attr }),
                    Err(e) => {
                        self.forget(child, 1);
                        Err(e)
                    }
                };
            }
        }
        if self.opts.read_only && self.lookups.listed(parent, name) == Some(false) {
            // As `do_lookup` would answer: a malformed name is refused, not missing.
            check_name(name)?;
            return Err(errno(libc::ENOENT));
        }
        let (names, attrs) = (self.lookups.name_epoch(), self.lookups.attr_epoch());
        let p = self.inode(parent)?;
        let e = self.do_lookup(&p, name).inspect_err(|e| {
            if self.opts.read_only && e.raw_os_error() == Some(libc::ENOENT) && self.lookups.needs_listing(parent) {
                // Listed once per TTL; a failure only costs the next miss a system call.
                if let Ok(listed) = self.names_in(&p) {
                    self.lookups.put_listing(parent, listed);
                }
            }
        })?;
        self.lookups.put_name(parent, name, e.inode, names);
        self.lookups.put_attr(e.inode, e.attr, attrs);
        Ok(e)
    }

    fn forget(&self, inode: Inode, count: u64) {
        if inode == ROOT_INODE {
            return;
        }
        if let Ok(mut table) = self.inodes.write() {
            table.forget(inode, count, &self.descriptors);
        }
    }

    fn getattr(&self, _ctx: &Context, inode: Inode, handle: Option<Handle>) -> io::Result<Attr> {
        if let Some(a) = self.lookups.attr(inode) {
            return Ok(a);
        }
        let epoch = self.lookups.attr_epoch();
        let a = self.fresh_attr(inode, handle)?;
        self.lookups.put_attr(inode, a, epoch);
        Ok(a)
    }
    fn setattr(
        &self,
        _ctx: &Context,
        inode: Inode,
        handle: Option<Handle>,
        set: &SetAttr,
    ) -> io::Result<Attr> {
        let _change = self.changing(&[])?;
        let data = self.inode(inode)?;
        let held = handle.and_then(|h| self.handle(h).ok());
        let _resizing = set.size.filter(|_| data.kind == FileKind::Regular).and_then(|_| self.resizing(data.id()));
        if data.kind == FileKind::Regular {
            if set.size == Some(0) {
                self.emptying(&data)?;
            }
            // Dirty blocks first: a truncation cuts them, new times must outlast them.
            self.write_back(data.id())?;
        }
        if let Some(mode) = set.mode {
            rfs::chmodat(
                &self.proc_self_fd,
                Self::proc_name(self.path(&data)?.as_fd()),
                Mode::from_bits_retain(mode & 0o7777),
                AtFlags::empty(),
            )?;
        }
        if set.uid.is_some() || set.gid.is_some() {
            rfs::chownat(
                &*self.path(&data)?,
                "",
                set.uid.map(rfs::Uid::from_raw),
                set.gid.map(rfs::Gid::from_raw),
                AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        if let Some(size) = set.size {
            match (data.kind, held.as_deref()) {
                (FileKind::Directory, _) => return Err(errno(libc::EISDIR)),
                (FileKind::Regular, Some(HandleData::File(fd, _, _))) => rfs::ftruncate(&**fd, size)?,
                (FileKind::Regular, _) => {
                    let fd = self.reopen(&data, libc::O_WRONLY)?;
                    rfs::ftruncate(&fd, size)?;
                }
                _ => return Err(errno(libc::EINVAL)),
            }
            if let Some(cache) = &self.opts.cache {
                cache.invalidate(file_key(data.id()));
            }
        }
        // Times set after a write-back that is ending (its blocks clean, its own times not
        // yet set: see `writeback::flush`) must come after it.
        let flushing = (set.atime.is_some() || set.mtime.is_some()).then(|| self.write_back_cache().filter(|_| data.kind == FileKind::Regular).map(|c| c.flush_lock_if_any(file_key(data.id())))).flatten().flatten();
        let _after_write_back = flushing.as_ref().map(|l| l.lock().unwrap_or_else(|p| p.into_inner()));
        if set.atime.is_some() || set.mtime.is_some() {
            let times = rfs::Timestamps {
                last_access: to_rustix_ts(set.atime),
                last_modification: to_rustix_ts(set.mtime),
            };
            rfs::utimensat(
                &self.proc_self_fd,
                Self::proc_name(self.path(&data)?.as_fd()),
                &times,
                AtFlags::empty(),
            )?;
        }
        self.attr_of(self.path(&data)?.as_fd(), Some(data.id()))
    }

    fn open(&self, _ctx: &Context, inode: Inode, flags: i32) -> io::Result<Handle> {
        let data = self.inode(inode)?;
        let _change = if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
            Some(self.changing(&[])?)
        } else {
            None
        };
        match data.kind {
            FileKind::Directory if flags & libc::O_ACCMODE != libc::O_RDONLY => {
                return Err(errno(libc::EISDIR))
            }
            FileKind::Symlink => return Err(errno(libc::ELOOP)),
            _ => {}
        }
        let truncates = flags & libc::O_TRUNC != 0 && data.kind == FileKind::Regular;
        let _resizing = if truncates { self.resizing(data.id()) } else { None };
        if truncates {
            self.emptying(&data)?;
            // As a truncation by `setattr`: dirty blocks first (left in the cache, the
            // flusher would write them back into the truncated file later), then the cut,
            // then the cache forgets the file.
            self.write_back(data.id())?;
        }
        let fd = if flags & !(libc::O_CLOEXEC | KERNEL_O_LARGEFILE | libc::O_NOCTTY) == libc::O_RDONLY
            && data.kind == FileKind::Regular
        {
            // Plain read-only opens share one open file per inode: I/O is positional.
            data.read_only(&self.descriptors, || self.reopen(&data, libc::O_RDONLY))?
        } else {
            Arc::new(self.reopen(&data, flags)?)
        };
        if let (Some(cache), true) = (&self.opts.cache, truncates) {
            cache.invalidate(file_key(data.id()));
        }
        if let (Some(cache), FileKind::Regular) = (&self.opts.cache, data.kind) {
            // Close-to-open: blocks of a file changed since they were cached go.
            cache.validate(file_key(data.id()), cached::version_of(fd.as_fd())?);
        }
        let check = data.kind == FileKind::Regular && self.write_back_cache().is_some();
        let checked_fd = check.then(|| fd.clone());
        let handle = self.insert_handle(HandleData::File(fd, data.id(), self.opened(flags, data.id())))?;
        // After the handle is in place: a removal from then on sees it and keeps the data; one
        // before it left its record (made under the handles' lock).
        if let Some(fd) = checked_fd.filter(|fd| self.dropped_meanwhile(data.id(), fd.as_fd())) {
            drop(fd);
            self.handles.write().map_err(|_| errno(libc::EIO))?.remove(&handle);
            return Err(errno(libc::ENOENT));
        }
        Ok(handle)
    }

    fn create(
        &self,
        ctx: &Context,
        parent: Inode,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
    ) -> io::Result<(Entry, Handle)> {
        let mut change = self.changing(&[(parent, name)])?;
        check_name(name)?;
        let p = self.inode(parent)?;
        let pfd = self.path(&p)?;
        let perm = mode & !umask & 0o7777;
        let clean = flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW);
        let fd = rfs::openat2(
            &*pfd,
            name,
            OFlags::from_bits_retain(clean as u32)
                | OFlags::CREATE
                | OFlags::EXCL
                | OFlags::NOFOLLOW
                | OFlags::CLOEXEC,
            Mode::from_bits_retain(perm),
            RESOLVE,
        )?;
        let entry = match self.finish_create(ctx, &p, name, perm) {
            Ok(e) => e,
            Err(e) => {
                let _ = rfs::unlinkat(&*pfd, name, AtFlags::empty());
                return Err(e);
            }
        };
        change.made(parent, name, entry.inode);
        let id = (entry.attr.dev, entry.attr.ino);
        if let Some(cache) = &self.opts.cache {
            // A new file: whatever an earlier file with the same inode number left is void.
            cache.invalidate(file_key(id));
        }
        let handle = self.insert_handle(HandleData::File(Arc::new(fd), id, self.opened(flags, id)))?;
        Ok((entry, handle))
    }

    fn read(
        &self,
        _ctx: &Context,
        _inode: Inode,
        handle: Handle,
        bufs: &mut [IoSliceMut<'_>],
        offset: u64,
    ) -> io::Result<usize> {
        let h = self.file_fd(handle)?;
        let HandleData::File(fd, id, _) = &*h else { return Err(errno(libc::EISDIR)) };
        if let Some(cache) = &self.opts.cache {
            return cached::read(cache, fd.as_fd(), file_key(*id), bufs, offset);
        }
        Ok(rustix::io::preadv(fd, bufs, offset)?)
    }

    fn write(
        &self,
        _ctx: &Context,
        _inode: Inode,
        handle: Handle,
        bufs: &[IoSlice<'_>],
        offset: u64,
    ) -> io::Result<usize> {
        let _change = self.changing(&[])?;
        let h = self.file_fd(handle)?;
        let HandleData::File(fd, id, opened) = &*h else { return Err(errno(libc::EISDIR)) };
        if let Some(cache) = self.write_back_cache() {
            let n = writeback::write(cache, fd, file_key(*id), bufs, offset)?;
            // The backing file was opened with the same flags, so in the other modes its own
            // pwritev keeps an O_SYNC/O_DSYNC promise; here the data waits in the cache unless
            // written back now.
            if let Some(datasync) = opened.sync.fsync() {
                self.fsync(_ctx, _inode, handle, datasync)?;
            }
            return Ok(n);
        }
        if let Some(cache) = &self.opts.cache {
            return cached::write(cache, fd.as_fd(), file_key(*id), bufs, offset);
        }
        Ok(rustix::io::pwritev(fd, bufs, offset)?)
    }

    fn fsync(&self, _ctx: &Context, _inode: Inode, handle: Handle, datasync: bool) -> io::Result<()> {
        let h = self.handle(handle)?;
        let fd = match &*h {
            HandleData::File(fd, _, _) => &**fd,
            HandleData::Dir { fd, .. } => fd,
        };
        let mut late = None;
        if let (Some(cache), HandleData::File(_, id, opened)) = (self.write_back_cache(), &*h) {
            if let Err(e) = writeback::flush(cache, file_key(*id)) {
                // Reported here: the next fsync of this handle does not report it again.
                let _ = cache.error_since(file_key(*id), &opened.errors_seen);
                return Err(e);
            }
            // A write-back that failed since this handle's open or its last report fails
            // this fsync (every handle's, once).
            late = cache.error_since(file_key(*id), &opened.errors_seen);
        }
        if datasync {
            rfs::fdatasync(fd)?;
        } else {
            rfs::fsync(fd)?;
        }
        late.map_or(Ok(()), |e| Err(errno(e)))
    }

    /// Every `close(2)` of a descriptor on the FUSE side (the user-level path closes without
    /// it): in write-back mode the file goes to the flusher at once, as at a close-to-open
    /// close. A program on the FUSE path has no way to reach the pool's cache with `sync(2)`
    /// (the kernel sends a FUSE file system no sync), so what it closed must reach the branch,
    /// where the kernel's `sync` finds it. Elsewhere (and with close-to-open, where the last
    /// close does it) `ENOSYS`: the kernel then stops asking.
    fn flush(&self, _ctx: &Context, _inode: Inode, handle: Handle) -> io::Result<()> {
        let Some(cache) = self.write_back_cache().filter(|_| !self.opts.close_to_open) else { return Err(errno(libc::ENOSYS)) };
        if let HandleData::File(_, id, _) = &*self.handle(handle)? {
            Self::to_flusher(cache, *id);
        }
        Ok(())
    }

    fn release(&self, _ctx: &Context, _inode: Inode, handle: Handle) -> io::Result<()> {
        let mut handles = self.handles.write().map_err(|_| errno(libc::EIO))?;
        let gone = handles.remove(&handle);
        drop(handles);
        let (Some(cache), Some(HandleData::File(fd, id, _))) = (self.write_back_cache(), gone.as_deref()) else { return Ok(()) };
        if cache.dirty_size(file_key(*id)).is_none() {
            return Ok(());
        }
        // Close-to-open: the flusher writes the file back at once, so that another service
        // opening it next reads what was written (the thread serving this close goes on); so
        // does the close of a file cut to nothing and written anew (see `emptying`).
        // Otherwise the data waits for its expiry like any other: a file removed before it is
        // never written at all, nor one removed while open, at its last close.
        if self.opts.close_to_open || self.emptied_written(id, fd) {
            Self::to_flusher(cache, *id);
        } else if rfs::fstat(&**fd).is_ok_and(|st| st.st_nlink == 0) {
            self.discard_unless_open(cache, *id)?;
        }
        Ok(())
    }

    fn mkdir(
        &self,
        ctx: &Context,
        parent: Inode,
        name: &OsStr,
        mode: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        let mut change = self.changing(&[(parent, name)])?;
        check_name(name)?;
        let p = self.inode(parent)?;
        let pfd = self.path(&p)?;
        let mut perm = mode & !umask & 0o1777;
        // As the kernel makes it: a directory made in a set-group-id directory is one too.
        if rfs::fstat(&*pfd)?.st_mode & libc::S_ISGID != 0 {
            perm |= libc::S_ISGID;
        }
        rfs::mkdirat(&*pfd, name, Mode::from_bits_retain(perm))?;
        self.finish_create(ctx, &p, name, perm)
            .inspect(|e| change.made(parent, name, e.inode))
            .inspect_err(|_| {
                let _ = rfs::unlinkat(&*pfd, name, AtFlags::REMOVEDIR);
            })
    }

    fn mknod(
        &self,
        ctx: &Context,
        parent: Inode,
        name: &OsStr,
        mode: u32,
        rdev: u64,
        umask: u32,
    ) -> io::Result<Entry> {
        let mut change = self.changing(&[(parent, name)])?;
        check_name(name)?;
        let p = self.inode(parent)?;
        let pfd = self.path(&p)?;
        let perm = mode & !umask & 0o7777;
        let kind = rfs::FileType::from_raw_mode(mode);
        rfs::mknodat(&*pfd, name, kind, Mode::from_bits_retain(perm), rdev)?;
        self.finish_create(ctx, &p, name, perm)
            .inspect(|e| change.made(parent, name, e.inode))
            .inspect_err(|_| {
                let _ = rfs::unlinkat(&*pfd, name, AtFlags::empty());
            })
    }

    fn unlink(&self, _ctx: &Context, parent: Inode, name: &OsStr) -> io::Result<()> {
        let _change = self.changing(&[(parent, name)])?;
        check_name(name)?;
        let p = self.inode(parent)?;
        let pfd = self.path(&p)?;
        // Its last name: what it holds dirty need never be written, unless it is open.
        let gone = self.write_back_cache().and_then(|_| Self::regular_at(&pfd, name)).filter(|st| st.st_nlink == 1);
        rfs::unlinkat(&*pfd, name, AtFlags::empty())?;
        if let (Some(cache), Some(st)) = (self.write_back_cache(), gone) {
            self.discard_unless_open(cache, (st.st_dev, st.st_ino))?;
        }
        Ok(())
    }

    fn rmdir(&self, _ctx: &Context, parent: Inode, name: &OsStr) -> io::Result<()> {
        let _change = self.changing(&[(parent, name)])?;
        check_name(name)?;
        let p = self.inode(parent)?;
        let pfd = self.path(&p)?;
        Ok(rfs::unlinkat(&*pfd, name, AtFlags::REMOVEDIR)?)
    }

    fn rename(
        &self,
        _ctx: &Context,
        parent: Inode,
        name: &OsStr,
        new_parent: Inode,
        new_name: &OsStr,
        flags: u32,
    ) -> io::Result<()> {
        // Both names: the source moves (or is exchanged), the target is replaced.
        let _change = self.changing(&[(parent, name), (new_parent, new_name)])?;
        check_name(name)?;
        check_name(new_name)?;
        let p = self.inode(parent)?;
        let pfd = self.path(&p)?;
        let np = self.inode(new_parent)?;
        let npfd = self.path(&np)?;
        let flags = rfs::RenameFlags::from_bits(flags).ok_or_else(|| errno(libc::EINVAL))?;
        let Some(cache) = self.write_back_cache() else {
            return Ok(rfs::renameat_with(&*pfd, name, &*npfd, new_name, flags)?);
        };
        // The file renamed goes to the flusher at once, as ext4 starts writing a file renamed
        // over another (`auto_da_alloc`): the rename reaches the branch at once, and a service
        // that died long before the write-back would leave the name on an empty file where
        // the old one held its data (the write-a-copy-then-rename-it idiom, without an
        // fsync). Not written here: the union holds its names' lock over this call.
        let source = Self::regular_at(&pfd, name).map(|st| (st.st_dev, st.st_ino));
        if let Some(id) = source.filter(|_| !self.opts.close_to_open) {
            Self::to_flusher(cache, id);
        }
        let replaced = if flags.contains(rfs::RenameFlags::EXCHANGE) { None } else { Self::regular_at(&npfd, new_name) };
        rfs::renameat_with(&*pfd, name, &*npfd, new_name, flags)?;
        // The file replaced lost its last name: what it holds dirty need never be written
        // (as for an unlink). Not the source itself (a rename onto another of its names).
        if let Some(st) = replaced.filter(|st| st.st_nlink == 1 && source != Some((st.st_dev, st.st_ino))) {
            self.discard_unless_open(cache, (st.st_dev, st.st_ino))?;
        }
        Ok(())
    }

    fn link(
        &self,
        ctx: &Context,
        inode: Inode,
        new_parent: Inode,
        new_name: &OsStr,
    ) -> io::Result<Entry> {
        let mut change = self.changing(&[(new_parent, new_name)])?;
        check_name(new_name)?;
        let data = self.inode(inode)?;
        let np = self.inode(new_parent)?;
        if data.kind == FileKind::Directory {
            return Err(errno(libc::EPERM));
        }
        rfs::linkat(
            &self.proc_self_fd,
            Self::proc_name(self.path(&data)?.as_fd()),
            &*self.path(&np)?,
            new_name,
            AtFlags::SYMLINK_FOLLOW,
        )?;
        let _ = ctx;
        self.do_lookup(&np, new_name).inspect(|e| change.made(new_parent, new_name, e.inode))
    }

    fn symlink(
        &self,
        ctx: &Context,
        target: &OsStr,
        parent: Inode,
        name: &OsStr,
    ) -> io::Result<Entry> {
        let mut change = self.changing(&[(parent, name)])?;
        check_name(name)?;
        let p = self.inode(parent)?;
        let pfd = self.path(&p)?;
        rfs::symlinkat(target, &*pfd, name)?;
        self.finish_create(ctx, &p, name, 0o777)
            .inspect(|e| change.made(parent, name, e.inode))
            .inspect_err(|_| {
                let _ = rfs::unlinkat(&*pfd, name, AtFlags::empty());
            })
    }

    fn readlink(&self, _ctx: &Context, inode: Inode) -> io::Result<Vec<u8>> {
        let data = self.inode(inode)?;
        if data.kind != FileKind::Symlink {
            return Err(errno(libc::EINVAL));
        }
        Ok(rfs::readlinkat(&*self.path(&data)?, "", Vec::new())?.into_bytes())
    }

    fn opendir(&self, _ctx: &Context, inode: Inode, _flags: i32) -> io::Result<Handle> {
        let data = self.inode(inode)?;
        if data.kind != FileKind::Directory {
            return Err(errno(libc::ENOTDIR));
        }
        let fd = self.reopen(&data, libc::O_RDONLY | libc::O_DIRECTORY)?;
        self.insert_handle(HandleData::Dir { fd, listing: Mutex::new(Vec::new()) })
    }

    fn readdir(
        &self,
        _ctx: &Context,
        inode: Inode,
        handle: Handle,
        offset: u64,
        max: usize,
    ) -> io::Result<Vec<DirEntry>> {
        let h = self.handle(handle)?;
        let HandleData::Dir { fd, listing } = &*h else { return Err(errno(libc::ENOTDIR)) };
        let mut listing = listing.lock().map_err(|_| errno(libc::EIO))?;
        if offset == 0 || listing.is_empty() {
            let own = self.inode(inode).map(|d| d.ino).unwrap_or(0);
            *listing = self.read_listing(fd, own)?;
        }
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(listing.len());
        Ok(listing[start..].iter().take(max).cloned().collect())
    }

    fn releasedir(&self, ctx: &Context, inode: Inode, handle: Handle) -> io::Result<()> {
        self.release(ctx, inode, handle)
    }

    fn fsyncdir(&self, ctx: &Context, inode: Inode, handle: Handle, datasync: bool) -> io::Result<()> {
        self.fsync(ctx, inode, handle, datasync)
    }

    fn statfs(&self, _ctx: &Context, inode: Inode) -> io::Result<StatFs> {
        let data = self.inode(inode)?;
        let st = rfs::fstatvfs(&*self.path(&data)?)?;
        Ok(StatFs {
            blocks: st.f_blocks,
            bfree: st.f_bfree,
            bavail: st.f_bavail,
            files: st.f_files,
            ffree: st.f_ffree,
            bsize: st.f_bsize as u32,
            namelen: st.f_namemax as u32,
            frsize: st.f_frsize as u32,
        })
    }

    fn getxattr(&self, _ctx: &Context, inode: Inode, name: &OsStr) -> io::Result<Vec<u8>> {
        let data = self.inode(inode)?;
        let fd = self.path(&data)?;
        let path = Self::proc_path(fd.as_fd());
        let size = rfs::getxattr_query(path.as_str(), name)?;
        if size == 0 {
            return Ok(Vec::new());
        }
        let mut buf = Vec::with_capacity(size);
        rfs::getxattr(path.as_str(), name, spare_capacity(&mut buf))?;
        Ok(buf)
    }

    fn setxattr(
        &self,
        _ctx: &Context,
        inode: Inode,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> io::Result<()> {
        let _change = self.changing(&[])?;
        let data = self.inode(inode)?;
        let flags = rfs::XattrFlags::from_bits(flags as u32).ok_or_else(|| errno(libc::EINVAL))?;
        Ok(rfs::setxattr(Self::proc_path(self.path(&data)?.as_fd()).as_str(), name, value, flags)?)
    }

    fn listxattr(&self, _ctx: &Context, inode: Inode) -> io::Result<Vec<OsString>> {
        let data = self.inode(inode)?;
        let fd = self.path(&data)?;
        let path = Self::proc_path(fd.as_fd());
        let size = rfs::listxattr_query(path.as_str())?;
        if size == 0 {
            return Ok(Vec::new());
        }
        let mut buf = Vec::with_capacity(size);
        rfs::listxattr(path.as_str(), spare_capacity(&mut buf))?;
        Ok(buf
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| OsStr::from_bytes(s).to_owned())
            .collect())
    }

    fn removexattr(&self, _ctx: &Context, inode: Inode, name: &OsStr) -> io::Result<()> {
        let _change = self.changing(&[])?;
        let data = self.inode(inode)?;
        Ok(rfs::removexattr(Self::proc_path(self.path(&data)?.as_fd()).as_str(), name)?)
    }

    fn fallocate(
        &self,
        _ctx: &Context,
        _inode: Inode,
        handle: Handle,
        mode: i32,
        offset: u64,
        length: u64,
    ) -> io::Result<()> {
        let _change = self.changing(&[])?;
        let h = self.file_fd(handle)?;
        let HandleData::File(fd, id, _) = &*h else { return Err(errno(libc::EISDIR)) };
        let _resizing = self.resizing(*id);
        self.write_back(*id)?;
        let flags = rfs::FallocateFlags::from_bits(mode as u32).ok_or_else(|| errno(libc::EINVAL))?;
        rfs::fallocate(fd, flags, offset, length)?;
        self.forget_cached(h.as_ref());
        Ok(())
    }

    fn lseek(
        &self,
        _ctx: &Context,
        _inode: Inode,
        handle: Handle,
        offset: u64,
        whence: i32,
    ) -> io::Result<u64> {
        let h = self.file_fd(handle)?;
        let HandleData::File(fd, id, _) = &*h else { return Err(errno(libc::EISDIR)) };
        if matches!(whence, libc::SEEK_DATA | libc::SEEK_HOLE) {
            // Where data lies depends on the dirty blocks too.
            self.write_back(*id)?;
        }
        let pos = match whence {
            libc::SEEK_DATA => rfs::SeekFrom::Data(offset),
            libc::SEEK_HOLE => rfs::SeekFrom::Hole(offset),
            libc::SEEK_SET => rfs::SeekFrom::Start(offset),
            _ => return Err(errno(libc::EINVAL)),
        };
        Ok(rfs::seek(fd, pos)?)
    }

    fn syncfs(&self, _ctx: &Context) -> io::Result<()> {
        if self.opts.read_only {
            return Ok(());
        }
        let mut late = None;
        if let Some(cache) = self.write_back_cache() {
            writeback::flush_all(cache)?;
            // A write-back of a file of this file system that failed since the last syncfs
            // (its blocks are gone: nothing left to write) fails this one.
            late = cache.error_since_on(self.dev, &self.errors_seen);
        }
        let root = self.inode(ROOT_INODE)?;
        let fd = self.reopen(&root, libc::O_RDONLY | libc::O_DIRECTORY)?;
        rfs::syncfs(&fd)?;
        late.map_or(Ok(()), |e| Err(errno(e)))
    }

    fn backing_file(&self, _inode: Inode, handle: Handle) -> io::Result<BackingFile> {
        let h = self.file_fd(handle)?;
        let HandleData::File(fd, id, _) = &*h else { return Err(errno(libc::EISDIR)) };
        self.write_back(*id)?;
        let size = rfs::fstat(&**fd)?.st_size as u64;
        Ok(BackingFile { fd: fd.clone(), id: *id, size, writable: !self.opts.read_only, layer: None })
    }
}

impl Drop for LocalFs {
    fn drop(&mut self) {
        // An unmounted instance leaves nothing dirty behind (the cache may outlive it).
        if let Some(cache) = self.write_back_cache() {
            let _ = writeback::flush_all(cache);
        }
    }
}

/// Writes back everything the service's cache holds dirty (at service stop).
pub fn write_back_all() -> io::Result<()> {
    match crate::backend::cache::current() {
        Some(cache) => writeback::flush_all(&cache),
        None => Ok(()),
    }
}

/// Enables write-back on `cache` with `w`, starting its flusher the first time.
pub fn enable_writeback(cache: &Arc<crate::backend::cache::BlockCache>, w: crate::backend::cache::Writeback) -> io::Result<()> {
    if cache.enable_writeback(w) {
        writeback::start_flusher(cache)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
