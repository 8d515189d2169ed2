//! The `cephfs` libservice: a directory of a CephFS as a backend branch, through libcephfs'
//! low-level API (inode references, a `UserPerm` per caller), so that the union, FUSE and the
//! user-level path map onto it without re-walking paths.
//!
//! Inode numbers are CephFS's own, except that the branch's root directory is
//! [`ROOT_INODE`]. Several branches may share one [`CephClient`] (one cache for every clone of
//! an image) or have one each.

mod client;
mod deleg;
mod ffi;
pub mod health;

use std::ffi::{c_char, OsStr, OsString};
use std::io::{self, IoSlice, IoSliceMut};
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::sync::Arc;

pub use client::{CephClient, CephError, CephOptions, Dropped};
use client::{check, cstr, OpenFile, Ptr};
use ffi::{CInode, Statx};

use crate::backend::cache::{through, BlockCache, BLOCK};
use crate::libservice::{
    errno, Attr, Context, DirEntry, Entry, FileKind, FileSystem, Handle, Inode, SetAttr, StatFs, TimeUpdate, Timespec, ROOT_INODE,
};

/// A CephFS directory served as a branch.
#[allow(missing_debug_implementations)]
pub struct CephBranch {
    client: Arc<CephClient>,
    /// CephFS ino of the branch's root (held for the branch's life).
    root: u64,
    read_only: bool,
    /// What the client drops, told to the branch's watcher (kept alive here: the client only
    /// holds it weakly).
    watcher: std::sync::OnceLock<Arc<dyn Dropped>>,
    /// The pool's cache, which serves reads of files opened read-only while Ceph delegates
    /// them to this client (see `deleg`).
    cache: Option<Arc<BlockCache>>,
}

/// Tells a watcher of a branch what its client dropped, in the branch's inode numbers.
struct BranchDropped {
    root: u64,
    sink: Arc<dyn crate::libservice::ChangeSink>,
}

impl Dropped for BranchDropped {
    fn data(&self, ino: u64) {
        self.sink.changed(branch_inode(self.root, ino));
    }

    fn name(&self) {
        self.sink.names_changed();
    }
}

/// The branch's number for ceph ino `ino` of a branch rooted at ceph ino `root`.
fn branch_inode(root: u64, ino: u64) -> Inode {
    if ino == root {
        ROOT_INODE
    } else {
        ino
    }
}

fn ts(t: libc::timespec) -> Timespec {
    Timespec { sec: t.tv_sec, nsec: t.tv_nsec as u32 }
}

impl CephBranch {
    /// The branch at `path` (absolute inside the file system) of `client`, its file data
    /// served through `cache` when there is one.
    pub fn new(client: Arc<CephClient>, path: &Path, read_only: bool, cache: Option<Arc<BlockCache>>) -> io::Result<CephBranch> {
        let (root, stx) = client.walk(path)?;
        if u32::from(stx.mode) & libc::S_IFMT != libc::S_IFDIR {
            client.forget(root, 1);
            return Err(errno(libc::ENOTDIR));
        }
        Ok(CephBranch { client, root, read_only, watcher: std::sync::OnceLock::new(), cache })
    }

    fn ceph(&self, ino: Inode) -> u64 {
        if ino == ROOT_INODE {
            self.root
        } else {
            ino
        }
    }

    fn ours(&self, ino: u64) -> Inode {
        branch_inode(self.root, ino)
    }

    fn node(&self, ino: Inode) -> io::Result<*mut CInode> {
        self.client.inode(self.ceph(ino))
    }

    fn attr(&self, s: &Statx) -> Attr {
        Attr {
            ino: self.ours(s.ino),
            dev: s.dev,
            mode: u32::from(s.mode),
            nlink: u64::from(s.nlink),
            uid: s.uid,
            gid: s.gid,
            rdev: s.rdev,
            size: s.size,
            blksize: s.blksize,
            blocks: s.blocks,
            atime: ts(s.atime),
            mtime: ts(s.mtime),
            ctime: ts(s.ctime),
        }
    }

    /// Holds the reference a creating call returned and describes it.
    fn entry(&self, out: *mut CInode, stx: &Statx) -> io::Result<Entry> {
        self.client.hold(stx.ino, stx.dev, out)?;
        Ok(Entry { inode: self.ours(stx.ino), generation: 0, attr: self.attr(stx) })
    }

    fn writable(&self) -> io::Result<()> {
        if self.read_only {
            Err(errno(libc::EROFS))
        } else {
            Ok(())
        }
    }

    /// Runs `f` on open file `h`: its `Fh`, and its read delegation while held. The handle
    /// stays open meanwhile (a release waits).
    fn with_file<R>(&self, h: Handle, f: impl FnOnce(*mut ffi::Fh, Option<&deleg::Delegation>) -> io::Result<R>) -> io::Result<R> {
        let (fh, delegation, live) = {
            let m = self.client.files.lock().unwrap_or_else(|p| p.into_inner());
            let e = m.get(&h).ok_or_else(|| errno(libc::EBADF))?;
            (e.fh, e.deleg.clone(), e.live.clone())
        };
        let open = live.read().unwrap_or_else(|p| p.into_inner());
        if !*open {
            return Err(errno(libc::EBADF));
        }
        f(fh.get(), delegation.as_deref().filter(|d| d.held()))
    }

    /// Records open file `fh`: its handle.
    fn insert_file(&self, fh: *mut ffi::Fh) -> Handle {
        let h = self.client.next_handle();
        self.client.files.lock().unwrap_or_else(|p| p.into_inner()).insert(h, OpenFile::new(fh));
        h
    }

    /// For the cache: asks Ceph to delegate the file just opened read-only as `h` to this
    /// client, and once it does (nobody can change the file now), drops the file's blocks
    /// cached before if it changed since (close-to-open across the times no delegation held).
    fn delegate(&self, ctx: &Context, inode: Inode, h: Handle) {
        let Some(cache) = &self.cache else { return };
        if !matches!(self.version(ctx, inode), Ok(Some(_))) {
            // Not a regular file of the live tree: a snapshot's (`.snap`) has the same ino
            // as the live file, so the cache's key cannot tell them apart.
            return;
        }
        let key = self.client.cache_key(self.ceph(inode));
        if self.client.delegate(h, key, cache).is_none() {
            return;
        }
        match self.version(ctx, inode) {
            Ok(Some(v)) => cache.validate(key, v),
            _ => cache.invalidate(key),
        }
    }

    /// What regular file `inode` looks like now, as the cache tells versions apart: its
    /// change attribute (moved by every change of it by any client, a restored mtime
    /// included) and size; `None` for another kind of file, or a snapshot's.
    fn version(&self, ctx: &Context, inode: Inode) -> io::Result<Option<crate::backend::cache::Version>> {
        let i = self.node(inode)?;
        let mut stx = Statx::zeroed();
        // SAFETY: a held inode and an out-parameter.
        check(unsafe { (self.api().ll_getattr)(self.cm(), i, &mut stx, ffi::STATX_BASIC | ffi::STATX_VERSION, libc::AT_SYMLINK_NOFOLLOW as u32, self.client.perms(ctx)) })?;
        // libcephfs reports the snapshot id as `dev`.
        if u32::from(stx.mode) & libc::S_IFMT != libc::S_IFREG || stx.dev != ffi::NOSNAP {
            return Ok(None);
        }
        Ok(Some(if stx.mask & ffi::STATX_VERSION != 0 {
            // (-1: never a nanosecond count, so never equal to an mtime-based version.)
            (stx.version as i64, -1, stx.size)
        } else {
            (stx.mtime.tv_sec, stx.mtime.tv_nsec, stx.size)
        }))
    }

    /// `preadv` of open file `fh` at `offset` through libcephfs.
    fn read_uncached(&self, fh: *mut ffi::Fh, bufs: &mut [IoSliceMut<'_>], offset: u64) -> io::Result<usize> {
        let mut done = 0usize;
        for b in bufs.iter_mut() {
            if b.is_empty() {
                continue;
            }
            // SAFETY: an open handle and a buffer of `b.len()` writable bytes.
            let n = check(unsafe { (self.api().ll_read)(self.cm(), fh, (offset + done as u64) as i64, b.len() as u64, b.as_mut_ptr().cast::<c_char>()) })? as usize;
            done += n;
            if n < b.len() {
                break;
            }
        }
        Ok(done)
    }

    /// Reads block `block` of open file `fh` whole (shorter only at the file's end).
    fn fetch(&self, fh: *mut ffi::Fh, block: u64) -> io::Result<Vec<u8>> {
        let mut data = vec![0u8; BLOCK];
        let mut got = 0;
        while got < BLOCK {
            let at = block * BLOCK as u64 + got as u64;
            // SAFETY: an open handle and a buffer with `BLOCK - got` writable bytes from `got`.
            let n = check(unsafe { (self.api().ll_read)(self.cm(), fh, at as i64, (BLOCK - got) as u64, data[got..].as_mut_ptr().cast::<c_char>()) })? as usize;
            if n == 0 {
                break;
            }
            got += n;
        }
        data.truncate(got);
        Ok(data)
    }

    fn cm(&self) -> *mut ffi::MountInfo {
        self.client.cm()
    }

    fn api(&self) -> &ffi::Api {
        &self.client.api
    }
}

impl Drop for CephBranch {
    fn drop(&mut self) {
        self.client.forget(self.root, 1);
    }
}

impl FileSystem for CephBranch {
    /// Other clients of the cluster change its files.
    fn shared(&self) -> bool {
        true
    }

    /// What libcephfs drops from its caches when the MDS revokes this client's capability
    /// to cache it (another client opens the file for writing, or changes a name).
    fn watch_others(&self, sink: Arc<dyn crate::libservice::ChangeSink>) -> bool {
        let w: Arc<dyn Dropped> = Arc::new(BranchDropped { root: self.root, sink });
        if self.watcher.set(w.clone()).is_err() {
            return false;
        }
        self.client.on_dropped(&w);
        true
    }

    fn lookup(&self, ctx: &Context, parent: Inode, name: &OsStr) -> io::Result<Entry> {
        let p = self.node(parent)?;
        let n = cstr(name)?;
        let mut out: *mut CInode = std::ptr::null_mut();
        let mut stx = Statx::zeroed();
        // SAFETY: a held parent, a NUL-terminated name, out-parameters for one result.
        check(unsafe { (self.api().ll_lookup)(self.cm(), p, n.as_ptr(), &mut out, &mut stx, ffi::STATX_BASIC, libc::AT_SYMLINK_NOFOLLOW as u32, self.client.perms(ctx)) })?;
        self.entry(out, &stx)
    }

    fn forget(&self, inode: Inode, count: u64) {
        self.client.forget(self.ceph(inode), count);
    }

    fn getattr(&self, ctx: &Context, inode: Inode, _handle: Option<Handle>) -> io::Result<Attr> {
        let i = self.node(inode)?;
        let mut stx = Statx::zeroed();
        // SAFETY: a held inode and an out-parameter.
        check(unsafe { (self.api().ll_getattr)(self.cm(), i, &mut stx, ffi::STATX_BASIC, libc::AT_SYMLINK_NOFOLLOW as u32, self.client.perms(ctx)) })?;
        Ok(self.attr(&stx))
    }

    fn setattr(&self, ctx: &Context, inode: Inode, _handle: Option<Handle>, set: &SetAttr) -> io::Result<Attr> {
        self.writable()?;
        let i = self.node(inode)?;
        let mut stx = Statx::zeroed();
        let mut mask = 0;
        if let Some(m) = set.mode {
            stx.mode = (m & 0o7777) as u16;
            mask |= ffi::SETATTR_MODE;
        }
        if let Some(u) = set.uid {
            stx.uid = u;
            mask |= ffi::SETATTR_UID;
        }
        if let Some(g) = set.gid {
            stx.gid = g;
            mask |= ffi::SETATTR_GID;
        }
        if let Some(s) = set.size {
            stx.size = s;
            mask |= ffi::SETATTR_SIZE;
        }
        let time = |t: Timespec| libc::timespec { tv_sec: t.sec, tv_nsec: i64::from(t.nsec) };
        match set.atime {
            Some(TimeUpdate::Now) => mask |= ffi::SETATTR_ATIME | ffi::SETATTR_ATIME_NOW,
            Some(TimeUpdate::Set(t)) => {
                stx.atime = time(t);
                mask |= ffi::SETATTR_ATIME;
            }
            None => {}
        }
        match set.mtime {
            Some(TimeUpdate::Now) => mask |= ffi::SETATTR_MTIME | ffi::SETATTR_MTIME_NOW,
            Some(TimeUpdate::Set(t)) => {
                stx.mtime = time(t);
                mask |= ffi::SETATTR_MTIME;
            }
            None => {}
        }
        if mask != 0 {
            // SAFETY: a held inode and the attributes `mask` names.
            check(unsafe { (self.api().ll_setattr)(self.cm(), i, &mut stx, mask, self.client.perms(ctx)) })?;
        }
        if let (Some(cache), Some(_)) = (&self.cache, set.size) {
            cache.invalidate(self.client.cache_key(self.ceph(inode)));
        }
        self.getattr(ctx, inode, None)
    }

    fn open(&self, ctx: &Context, inode: Inode, flags: i32) -> io::Result<Handle> {
        if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
            self.writable()?;
        }
        let i = self.node(inode)?;
        let mut fh: *mut ffi::Fh = std::ptr::null_mut();
        let flags = flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_NOCTTY);
        // SAFETY: a held inode and an out-parameter.
        check(unsafe { (self.api().ll_open)(self.cm(), i, flags, &mut fh, self.client.perms(ctx)) })?;
        let h = self.insert_file(fh);
        if flags & (libc::O_ACCMODE | libc::O_DIRECT | libc::O_TRUNC) == libc::O_RDONLY {
            self.delegate(ctx, inode, h);
        }
        Ok(h)
    }

    fn create(&self, ctx: &Context, parent: Inode, name: &OsStr, mode: u32, umask: u32, flags: i32) -> io::Result<(Entry, Handle)> {
        self.writable()?;
        let p = self.node(parent)?;
        let n = cstr(name)?;
        let mut out: *mut CInode = std::ptr::null_mut();
        let mut fh: *mut ffi::Fh = std::ptr::null_mut();
        let mut stx = Statx::zeroed();
        // SAFETY: a held parent, a NUL-terminated name, out-parameters for one result.
        check(unsafe {
            (self.api().ll_create)(self.cm(), p, n.as_ptr(), mode & !umask & 0o7777, flags | libc::O_CREAT, &mut out, &mut fh, &mut stx, ffi::STATX_BASIC, 0, self.client.perms(ctx))
        })?;
        let entry = match self.entry(out, &stx) {
            Ok(e) => e,
            Err(e) => {
                // SAFETY: the file handle ll_create just returned, closed once, never kept.
                unsafe { (self.api().ll_close)(self.cm(), fh) };
                return Err(e);
            }
        };
        let h = self.insert_file(fh);
        if let Some(cache) = &self.cache {
            // A new file: whatever an earlier one of the same number left is void.
            cache.invalidate(self.client.cache_key(stx.ino));
        }
        Ok((entry, h))
    }

    fn read(&self, _ctx: &Context, _inode: Inode, handle: Handle, bufs: &mut [IoSliceMut<'_>], offset: u64) -> io::Result<usize> {
        self.with_file(handle, |fh, delegated| match delegated {
            // A block read while the delegation still holds may be kept (one read after a
            // recall began is not: the other client may change it any moment).
            Some(d) => through::read(d.cache(), d.key, bufs, offset, |block| Ok((self.fetch(fh, block)?, d.held()))),
            None => self.read_uncached(fh, bufs, offset),
        })
    }

    fn write(&self, _ctx: &Context, _inode: Inode, handle: Handle, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
        self.writable()?;
        self.with_file(handle, |fh, _| {
            let mut done = 0usize;
            for b in bufs {
                if b.is_empty() {
                    continue;
                }
                // SAFETY: an open handle and `b.len()` readable bytes.
                let n = check(unsafe { (self.api().ll_write)(self.cm(), fh, (offset + done as u64) as i64, b.len() as u64, b.as_ptr().cast::<c_char>()) })? as usize;
                done += n;
                if n < b.len() {
                    break;
                }
            }
            Ok(done)
        })
    }

    /// What CephFS allocates: a size extension (mode 0), and holes punched with
    /// `FALLOC_FL_KEEP_SIZE`; other modes are refused (`EOPNOTSUPP`) by libcephfs.
    fn fallocate(&self, _ctx: &Context, inode: Inode, handle: Handle, mode: i32, offset: u64, length: u64) -> io::Result<()> {
        self.writable()?;
        let (off, len) = (i64::try_from(offset).map_err(|_| errno(libc::EFBIG))?, i64::try_from(length).map_err(|_| errno(libc::EFBIG))?);
        // SAFETY: an open handle and integers.
        self.with_file(handle, |fh, _| check(unsafe { (self.api().ll_fallocate)(self.cm(), fh, mode, off, len) }))?;
        if let Some(cache) = &self.cache {
            // (No delegation is held while the file is open for writing; this is for blocks
            // kept from before, which the next delegated open would also drop.)
            cache.invalidate(self.client.cache_key(self.ceph(inode)));
        }
        Ok(())
    }

    fn flush(&self, _ctx: &Context, _inode: Inode, _handle: Handle) -> io::Result<()> {
        Ok(())
    }

    fn fsync(&self, _ctx: &Context, _inode: Inode, handle: Handle, datasync: bool) -> io::Result<()> {
        // SAFETY: an open handle.
        self.with_file(handle, |fh, _| check(unsafe { (self.api().ll_fsync)(self.cm(), fh, i32::from(datasync)) }).map(|_| ()))
    }

    fn fsyncdir(&self, _ctx: &Context, inode: Inode, _handle: Handle, datasync: bool) -> io::Result<()> {
        let i = self.node(inode)?;
        // SAFETY: a held inode.
        check(unsafe { (self.api().ll_sync_inode)(self.cm(), i, i32::from(datasync)) }).map(|_| ())
    }

    fn syncfs(&self, _ctx: &Context) -> io::Result<()> {
        // SAFETY: the mounted client.
        check(unsafe { (self.api().sync_fs)(self.cm()) }).map(|_| ())
    }

    fn release(&self, _ctx: &Context, _inode: Inode, handle: Handle) -> io::Result<()> {
        let f = self.client.files.lock().unwrap_or_else(|p| p.into_inner()).remove(&handle);
        if let Some(f) = f {
            if f.deleg.is_some() {
                self.client.delegation_ended();
            }
            // Once the calls in flight on it are done.
            let mut open = f.live.write().unwrap_or_else(|p| p.into_inner());
            *open = false;
            // SAFETY: an open handle, closed once (removed from the table above, and no call
            // uses it any more); closing it ends its delegation, whose callback argument `f`
            // keeps alive until then.
            check(unsafe { (self.api().ll_close)(self.cm(), f.fh.get()) })?;
        }
        Ok(())
    }

    fn mkdir(&self, ctx: &Context, parent: Inode, name: &OsStr, mode: u32, umask: u32) -> io::Result<Entry> {
        self.writable()?;
        let p = self.node(parent)?;
        let n = cstr(name)?;
        let mut out: *mut CInode = std::ptr::null_mut();
        let mut stx = Statx::zeroed();
        // SAFETY: as for create.
        check(unsafe { (self.api().ll_mkdir)(self.cm(), p, n.as_ptr(), mode & !umask & 0o7777, &mut out, &mut stx, ffi::STATX_BASIC, 0, self.client.perms(ctx)) })?;
        self.entry(out, &stx)
    }

    fn mknod(&self, ctx: &Context, parent: Inode, name: &OsStr, mode: u32, rdev: u64, umask: u32) -> io::Result<Entry> {
        self.writable()?;
        let p = self.node(parent)?;
        let n = cstr(name)?;
        let mut out: *mut CInode = std::ptr::null_mut();
        let mut stx = Statx::zeroed();
        let mode = (mode & libc::S_IFMT) | (mode & !umask & 0o7777);
        // SAFETY: as for create.
        check(unsafe { (self.api().ll_mknod)(self.cm(), p, n.as_ptr(), mode, rdev, &mut out, &mut stx, ffi::STATX_BASIC, 0, self.client.perms(ctx)) })?;
        self.entry(out, &stx)
    }

    fn unlink(&self, ctx: &Context, parent: Inode, name: &OsStr) -> io::Result<()> {
        self.writable()?;
        let p = self.node(parent)?;
        let n = cstr(name)?;
        // SAFETY: a held parent and a NUL-terminated name.
        check(unsafe { (self.api().ll_unlink)(self.cm(), p, n.as_ptr(), self.client.perms(ctx)) }).map(|_| ())
    }

    fn rmdir(&self, ctx: &Context, parent: Inode, name: &OsStr) -> io::Result<()> {
        self.writable()?;
        let p = self.node(parent)?;
        let n = cstr(name)?;
        // SAFETY: as for unlink.
        check(unsafe { (self.api().ll_rmdir)(self.cm(), p, n.as_ptr(), self.client.perms(ctx)) }).map(|_| ())
    }

    fn rename(&self, ctx: &Context, parent: Inode, name: &OsStr, new_parent: Inode, new_name: &OsStr, flags: u32) -> io::Result<()> {
        self.writable()?;
        // libcephfs renames as rename(2) does: an exchange is three renames through a
        // temporary name (not atomic: the union uses it on its own scratch names), a whiteout
        // is not offered.
        if flags == crate::libservice::RENAME_EXCHANGE {
            let tmp = OsString::from(format!(".ptn-exchange-{}", self.client.next_handle()));
            self.rename(ctx, parent, name, parent, &tmp, crate::libservice::RENAME_NOREPLACE)?;
            if let Err(e) = self.rename(ctx, new_parent, new_name, parent, name, 0) {
                let _ = self.rename(ctx, parent, &tmp, parent, name, 0);
                return Err(e);
            }
            return self.rename(ctx, parent, &tmp, new_parent, new_name, 0);
        }
        if flags & !crate::libservice::RENAME_NOREPLACE != 0 {
            return Err(errno(libc::EINVAL));
        }
        if flags & crate::libservice::RENAME_NOREPLACE != 0 {
            match self.lookup(ctx, new_parent, new_name) {
                Ok(e) => {
                    self.forget(e.inode, 1);
                    return Err(errno(libc::EEXIST));
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
        let (p, np) = (self.node(parent)?, self.node(new_parent)?);
        let (n, nn) = (cstr(name)?, cstr(new_name)?);
        // SAFETY: held parents and NUL-terminated names.
        check(unsafe { (self.api().ll_rename)(self.cm(), p, n.as_ptr(), np, nn.as_ptr(), self.client.perms(ctx)) }).map(|_| ())
    }

    fn link(&self, ctx: &Context, inode: Inode, new_parent: Inode, new_name: &OsStr) -> io::Result<Entry> {
        self.writable()?;
        let (i, np) = (self.node(inode)?, self.node(new_parent)?);
        let nn = cstr(new_name)?;
        // SAFETY: held inodes and a NUL-terminated name.
        check(unsafe { (self.api().ll_link)(self.cm(), i, np, nn.as_ptr(), self.client.perms(ctx)) })?;
        self.lookup(ctx, new_parent, new_name)
    }

    fn symlink(&self, ctx: &Context, target: &OsStr, parent: Inode, name: &OsStr) -> io::Result<Entry> {
        self.writable()?;
        let p = self.node(parent)?;
        let (n, t) = (cstr(name)?, cstr(target)?);
        let mut out: *mut CInode = std::ptr::null_mut();
        let mut stx = Statx::zeroed();
        // SAFETY: as for create.
        check(unsafe { (self.api().ll_symlink)(self.cm(), p, n.as_ptr(), t.as_ptr(), &mut out, &mut stx, ffi::STATX_BASIC, 0, self.client.perms(ctx)) })?;
        self.entry(out, &stx)
    }

    fn readlink(&self, ctx: &Context, inode: Inode) -> io::Result<Vec<u8>> {
        let i = self.node(inode)?;
        let mut buf = vec![0u8; libc::PATH_MAX as usize];
        // SAFETY: a held inode and a buffer of its length.
        let n = check(unsafe { (self.api().ll_readlink)(self.cm(), i, buf.as_mut_ptr().cast(), buf.len(), self.client.perms(ctx)) })? as usize;
        buf.truncate(n);
        Ok(buf)
    }

    fn opendir(&self, ctx: &Context, inode: Inode, _flags: i32) -> io::Result<Handle> {
        let i = self.node(inode)?;
        let mut d: *mut ffi::DirResult = std::ptr::null_mut();
        // SAFETY: a held inode and an out-parameter.
        check(unsafe { (self.api().ll_opendir)(self.cm(), i, &mut d, self.client.perms(ctx)) })?;
        let h = self.client.next_handle();
        self.client.dirs.lock().unwrap_or_else(|p| p.into_inner()).insert(h, Arc::new(std::sync::Mutex::new(Ptr::of(d))));
        Ok(h)
    }

    fn readdir(&self, _ctx: &Context, _inode: Inode, handle: Handle, offset: u64, max: usize) -> io::Result<Vec<DirEntry>> {
        // The handle's lock is held for the listing (its stream is one position), the
        // table's only to find it.
        let entry = self.client.dirs.lock().unwrap_or_else(|p| p.into_inner()).get(&handle).cloned().ok_or_else(|| errno(libc::EBADF))?;
        let held = entry.lock().unwrap_or_else(|p| p.into_inner());
        let d = held.get::<ffi::DirResult>();
        let cm = self.cm();
        // SAFETY: an open directory; positions come from ceph_telldir.
        unsafe { (self.api().seekdir)(cm, d, offset as i64) };
        let mut out = Vec::new();
        while out.len() < max {
            // SAFETY: a zeroed dirent is a valid out-parameter.
            let mut de: libc::dirent = unsafe { std::mem::zeroed() };
            let mut stx = Statx::zeroed();
            // SAFETY: an open directory, out-parameters; no inode reference asked for.
            let r = check(unsafe { (self.api().readdirplus_r)(cm, d, &mut de, &mut stx, ffi::STATX_BASIC, 0, std::ptr::null_mut()) })?;
            if r == 0 {
                break;
            }
            // SAFETY: readdirplus_r filled a NUL-terminated name.
            let name = unsafe { std::ffi::CStr::from_ptr(de.d_name.as_ptr()) }.to_bytes();
            // SAFETY: as above.
            let next = unsafe { (self.api().telldir)(cm, d) };
            out.push(DirEntry {
                ino: self.ours(stx.ino),
                offset: next as u64,
                kind: FileKind::from_mode(u32::from(stx.mode)),
                name: OsString::from_vec(name.to_vec()),
            });
        }
        Ok(out)
    }

    fn releasedir(&self, _ctx: &Context, _inode: Inode, handle: Handle) -> io::Result<()> {
        let d = self.client.dirs.lock().unwrap_or_else(|p| p.into_inner()).remove(&handle);
        if let Some(d) = d {
            // After a listing of it still running (it holds the handle's lock).
            let d = d.lock().unwrap_or_else(|p| p.into_inner());
            // SAFETY: an open directory, out of the table, released once.
            check(unsafe { (self.api().ll_releasedir)(self.cm(), d.get()) })?;
        }
        Ok(())
    }

    fn statfs(&self, _ctx: &Context, inode: Inode) -> io::Result<StatFs> {
        let i = self.node(inode)?;
        // SAFETY: a zeroed statvfs is a valid out-parameter.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: a held inode and an out-parameter.
        check(unsafe { (self.api().ll_statfs)(self.cm(), i, &mut st) })?;
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

    fn getxattr(&self, ctx: &Context, inode: Inode, name: &OsStr) -> io::Result<Vec<u8>> {
        let i = self.node(inode)?;
        let n = cstr(name)?;
        loop {
            // SAFETY: size 0 asks for the value's length only.
            let len = check(unsafe { (self.api().ll_getxattr)(self.cm(), i, n.as_ptr(), std::ptr::null_mut(), 0, self.client.perms(ctx)) })? as usize;
            let mut buf = vec![0u8; len];
            // SAFETY: a buffer of `len` bytes.
            match check(unsafe { (self.api().ll_getxattr)(self.cm(), i, n.as_ptr(), buf.as_mut_ptr().cast(), len, self.client.perms(ctx)) }) {
                Ok(got) => {
                    buf.truncate(got as usize);
                    return Ok(buf);
                }
                // It grew meanwhile: ask again.
                Err(e) if e.raw_os_error() == Some(libc::ERANGE) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn setxattr(&self, ctx: &Context, inode: Inode, name: &OsStr, value: &[u8], flags: i32) -> io::Result<()> {
        self.writable()?;
        let i = self.node(inode)?;
        let n = cstr(name)?;
        // SAFETY: a held inode, a NUL-terminated name, `value.len()` readable bytes.
        check(unsafe { (self.api().ll_setxattr)(self.cm(), i, n.as_ptr(), value.as_ptr().cast(), value.len(), flags, self.client.perms(ctx)) }).map(|_| ())
    }

    fn listxattr(&self, ctx: &Context, inode: Inode) -> io::Result<Vec<OsString>> {
        let i = self.node(inode)?;
        let mut need = 0usize;
        // SAFETY: size 0 asks for the list's length only.
        check(unsafe { (self.api().ll_listxattr)(self.cm(), i, std::ptr::null_mut(), 0, &mut need, self.client.perms(ctx)) })?;
        let mut buf = vec![0u8; need];
        let mut got = 0usize;
        // SAFETY: a buffer of `need` bytes.
        check(unsafe { (self.api().ll_listxattr)(self.cm(), i, buf.as_mut_ptr().cast(), need, &mut got, self.client.perms(ctx)) })?;
        buf.truncate(got.min(need));
        Ok(buf.split(|b| *b == 0).filter(|n| !n.is_empty()).map(|n| OsString::from_vec(n.to_vec())).collect())
    }

    fn removexattr(&self, ctx: &Context, inode: Inode, name: &OsStr) -> io::Result<()> {
        self.writable()?;
        let i = self.node(inode)?;
        let n = cstr(name)?;
        // SAFETY: a held inode and a NUL-terminated name.
        check(unsafe { (self.api().ll_removexattr)(self.cm(), i, n.as_ptr(), self.client.perms(ctx)) }).map(|_| ())
    }

}
