//! The libservice trait: the one interface every layer of a filesystem instance speaks.
//!
//! A filesystem instance is a stack of libservices that call each other directly: the union
//! over backend clients (local directory, CephFS). Transports (the FUSE adapter, the
//! shared-memory back driver) sit on top and translate their requests into these calls.
//!
//! The model is virtiofsd's `FileSystem` trait: POSIX-like, inode and handle based (so neither
//! transport re-walks paths), and every result is an errno (`io::Result`). A backend that lacks
//! an operation keeps the default body, which returns `ENOSYS`.

pub mod access;
pub mod copy;
mod open;
mod types;

pub use open::{open_or_create, Opened};
pub use types::*;

use std::ffi::OsStr;
use std::io::{self, IoSlice, IoSliceMut};

/// Number of the root inode of every libservice (the FUSE convention).
pub const ROOT_INODE: Inode = 1;

/// Shorthand for the `ENOSYS` result of an unimplemented operation.
pub fn enosys<T>() -> io::Result<T> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}

/// Builds an `io::Error` from an errno value.
pub fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// A filesystem service: one layer of a filesystem instance.
///
/// Lookup counts follow FUSE: every successful `lookup`, `create`, `mkdir`, `mknod`, `symlink`
/// and `link` adds one reference to the returned inode, and `forget` drops references. Handles
/// returned by `open`/`create`/`opendir` stay valid until `release`/`releasedir`.
#[allow(unused_variables)]
pub trait FileSystem: Send + Sync {
    /// Finds `name` in directory `parent`. `name` is one path component: never empty, never
    /// `.` or `..`, never containing `/`.
    fn lookup(&self, ctx: &Context, parent: Inode, name: &OsStr) -> io::Result<Entry> {
        enosys()
    }

    /// Drops `count` lookup references to `inode`.
    fn forget(&self, inode: Inode, count: u64) {}

    /// Attributes of `inode` (through `handle` when the caller has one open).
    fn getattr(&self, ctx: &Context, inode: Inode, handle: Option<Handle>) -> io::Result<Attr> {
        enosys()
    }

    /// Changes the attributes present in `set`; returns the attributes afterwards.
    fn setattr(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Option<Handle>,
        set: &SetAttr,
    ) -> io::Result<Attr> {
        enosys()
    }

    /// Opens a non-directory inode with `flags` (`libc::O_*`; no `O_CREAT`).
    fn open(&self, ctx: &Context, inode: Inode, flags: i32) -> io::Result<Handle> {
        enosys()
    }

    /// Creates and opens a regular file `name` in `parent` (`O_EXCL` semantics: fails with
    /// `EEXIST` when the name exists). `mode` is masked with `umask`.
    fn create(
        &self,
        ctx: &Context,
        parent: Inode,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
    ) -> io::Result<(Entry, Handle)> {
        enosys()
    }

    /// Reads at `offset` into `bufs`; returns the byte count (0 at end of file).
    ///
    /// `bufs` (and `write`'s) may be a client's shared-memory buffer, which that client can
    /// change at any moment: implementations pass them to the kernel or copy them, and never
    /// read back what they wrote there or rely on the bytes staying put.
    fn read(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        bufs: &mut [IoSliceMut<'_>],
        offset: u64,
    ) -> io::Result<usize> {
        enosys()
    }

    /// Writes `bufs` at `offset`; returns the byte count.
    fn write(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        bufs: &[IoSlice<'_>],
        offset: u64,
    ) -> io::Result<usize> {
        enosys()
    }

    /// Called on every `close` of a descriptor of `handle`. `ENOSYS` (the default) means the
    /// libservice keeps no per-descriptor state to flush; a transport may stop asking.
    fn flush(&self, ctx: &Context, inode: Inode, handle: Handle) -> io::Result<()> {
        enosys()
    }

    /// Makes the data (and, unless `datasync`, the metadata) of `inode` durable.
    fn fsync(&self, ctx: &Context, inode: Inode, handle: Handle, datasync: bool) -> io::Result<()> {
        enosys()
    }

    /// Ends the life of `handle`.
    fn release(&self, ctx: &Context, inode: Inode, handle: Handle) -> io::Result<()> {
        Ok(())
    }

    /// Creates directory `name` in `parent` with `mode & !umask`.
    fn mkdir(
        &self,
        ctx: &Context,
        parent: Inode,
        name: &OsStr,
        mode: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        enosys()
    }

    /// Creates a special file (fifo, socket, device; regular file too) of type `mode & S_IFMT`.
    fn mknod(
        &self,
        ctx: &Context,
        parent: Inode,
        name: &OsStr,
        mode: u32,
        rdev: u64,
        umask: u32,
    ) -> io::Result<Entry> {
        enosys()
    }

    /// Removes the non-directory `name` from `parent`.
    fn unlink(&self, ctx: &Context, parent: Inode, name: &OsStr) -> io::Result<()> {
        enosys()
    }

    /// Removes the empty directory `name` from `parent`.
    fn rmdir(&self, ctx: &Context, parent: Inode, name: &OsStr) -> io::Result<()> {
        enosys()
    }

    /// Renames `parent/name` to `new_parent/new_name`; `flags` is a set of `RENAME_*` bits.
    fn rename(
        &self,
        ctx: &Context,
        parent: Inode,
        name: &OsStr,
        new_parent: Inode,
        new_name: &OsStr,
        flags: u32,
    ) -> io::Result<()> {
        enosys()
    }

    /// Makes `new_parent/new_name` a hard link to `inode`.
    fn link(
        &self,
        ctx: &Context,
        inode: Inode,
        new_parent: Inode,
        new_name: &OsStr,
    ) -> io::Result<Entry> {
        enosys()
    }

    /// Creates symbolic link `name` in `parent` pointing to `target`.
    fn symlink(
        &self,
        ctx: &Context,
        target: &OsStr,
        parent: Inode,
        name: &OsStr,
    ) -> io::Result<Entry> {
        enosys()
    }

    /// The target of symbolic link `inode`.
    fn readlink(&self, ctx: &Context, inode: Inode) -> io::Result<Vec<u8>> {
        enosys()
    }

    /// Takes one more lookup reference on `inode`, which the caller already holds one on
    /// (released with `forget`), without resolving any name.
    fn retain(&self, inode: Inode) -> io::Result<()> {
        enosys()
    }

    /// Opens directory `inode` for reading.
    fn opendir(&self, ctx: &Context, inode: Inode, flags: i32) -> io::Result<Handle> {
        enosys()
    }

    /// Up to `max` entries of the directory, starting after the entry whose `offset` cookie is
    /// `offset` (0: from the start, which also refreshes the listing as `rewinddir` does).
    /// Cookies stay valid for the life of `handle`, so `telldir`/`seekdir` work.
    /// The listing includes `.` and `..`.
    fn readdir(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        offset: u64,
        max: usize,
    ) -> io::Result<Vec<DirEntry>> {
        enosys()
    }

    /// Ends the life of directory handle `handle`.
    fn releasedir(&self, ctx: &Context, inode: Inode, handle: Handle) -> io::Result<()> {
        Ok(())
    }

    /// Makes directory `inode` durable.
    fn fsyncdir(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        datasync: bool,
    ) -> io::Result<()> {
        enosys()
    }

    /// Filesystem statistics for the filesystem holding `inode`.
    fn statfs(&self, ctx: &Context, inode: Inode) -> io::Result<StatFs> {
        enosys()
    }

    /// Value of extended attribute `name`.
    fn getxattr(&self, ctx: &Context, inode: Inode, name: &OsStr) -> io::Result<Vec<u8>> {
        enosys()
    }

    /// Sets extended attribute `name`; `flags` is `XATTR_CREATE`, `XATTR_REPLACE` or 0.
    fn setxattr(
        &self,
        ctx: &Context,
        inode: Inode,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> io::Result<()> {
        enosys()
    }

    /// Names of the extended attributes of `inode`.
    fn listxattr(&self, ctx: &Context, inode: Inode) -> io::Result<Vec<std::ffi::OsString>> {
        enosys()
    }

    /// Removes extended attribute `name`.
    fn removexattr(&self, ctx: &Context, inode: Inode, name: &OsStr) -> io::Result<()> {
        enosys()
    }

    /// Checks `mask` (`R_OK | W_OK | X_OK`, or `F_OK`) for the caller in `ctx`.
    fn access(&self, ctx: &Context, inode: Inode, mask: i32) -> io::Result<()> {
        let attr = self.getattr(ctx, inode, None)?;
        check_access(&attr, ctx, mask)
    }

    /// Allocates or deallocates space (`libc::FALLOC_FL_*` in `mode`).
    fn fallocate(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        mode: i32,
        offset: u64,
        length: u64,
    ) -> io::Result<()> {
        enosys()
    }

    /// `lseek` with `SEEK_DATA` or `SEEK_HOLE` (other whences are the transport's job).
    fn lseek(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        offset: u64,
        whence: i32,
    ) -> io::Result<u64> {
        enosys()
    }

    /// A number that changes whenever a directory may have moved or gone (rename, rmdir), so
    /// a caller caching path -> directory resolutions knows when to drop them. A libservice
    /// that does not track this returns `u64::MAX`: never cache.
    fn namespace_generation(&self) -> u64 {
        u64::MAX
    }

    /// A number that changes whenever a name may have stopped naming the object it named
    /// (unlink, rmdir, rename: the name may since name a new object), so a caller caching
    /// path -> object resolutions knows when to drop them. Every transport and every thread
    /// of one libservice sees the same number. `u64::MAX`: never cache.
    fn removal_generation(&self) -> u64 {
        u64::MAX
    }

    /// Makes everything written through this libservice durable (`syncfs`).
    fn syncfs(&self, ctx: &Context) -> io::Result<()> {
        Ok(())
    }

    /// Asks to be told of every change of a file's data, size or attributes, and of names,
    /// made through this libservice
    /// (see [`ChangeSink`]); whether it will: only when nothing else writes its branches (no
    /// change can happen that it would not see). Set once; later calls change nothing.
    fn watch_changes(&self, sink: std::sync::Arc<dyn ChangeSink>) -> bool {
        false
    }

    /// A writer the libservice does not see (one holding the backing file's descriptor)
    /// starts or stops writing `inode`: passed on to the watcher.
    fn outside_writer(&self, inode: Inode, begins: bool) {}

    /// Whether other clients may change this libservice's files behind its back (a shared
    /// network filesystem): then nobody can be told of every change.
    fn shared(&self) -> bool {
        false
    }

    /// For a shared libservice: asks to be told (through `sink`'s `changed` and
    /// `names_changed`, with this libservice's inode numbers) of the changes other clients
    /// are about to make that the file system announces (a CephFS client losing the
    /// capability to cache a file's data or a name); whether it will. What is not announced
    /// (attributes another client changes) is only bounded in time by whoever caches it.
    fn watch_others(&self, sink: std::sync::Arc<dyn ChangeSink>) -> bool {
        false
    }

    /// The host file behind `handle`, for zero-copy paths (reflink, `copy_file_range`, FUSE
    /// passthrough). Backends without one return `ENOSYS`.
    fn backing_file(&self, inode: Inode, handle: Handle) -> io::Result<BackingFile> {
        enosys()
    }
}

/// Permission check of `mask` against `attr` for the caller `ctx`, as the kernel's
/// `generic_permission` does (root passes read/write, and execute when any x bit is set).
pub fn check_access(attr: &Attr, ctx: &Context, mask: i32) -> io::Result<()> {
    let mask = mask & (libc::R_OK | libc::W_OK | libc::X_OK);
    if mask == 0 {
        return Ok(());
    }
    let mode = attr.mode;
    if ctx.uid == 0 {
        if mask & libc::X_OK != 0 && attr.kind() != FileKind::Directory && mode & 0o111 == 0 {
            return Err(errno(libc::EACCES));
        }
        return Ok(());
    }
    let bits = if ctx.uid == attr.uid {
        (mode >> 6) & 7
    } else if ctx.gid == attr.gid {
        (mode >> 3) & 7
    } else {
        mode & 7
    };
    if (mask as u32) & !bits != 0 {
        return Err(errno(libc::EACCES));
    }
    Ok(())
}

/// Calls `f` on every entry of directory `dir` of `fs` (read in batches through a handle of
/// its own, released whatever happens).
pub fn each_entry(fs: &dyn FileSystem, ctx: &Context, dir: Inode, mut f: impl FnMut(DirEntry)) -> io::Result<()> {
    let h = fs.opendir(ctx, dir, libc::O_RDONLY)?;
    let mut offset = 0;
    let done = loop {
        match fs.readdir(ctx, dir, h, offset, 1024) {
            Ok(batch) if batch.is_empty() => break Ok(()),
            Ok(batch) => {
                offset = batch.last().map_or(offset, |e| e.offset);
                batch.into_iter().for_each(&mut f);
            }
            Err(e) => break Err(e),
        }
    };
    let _ = fs.releasedir(ctx, dir, h);
    done
}

/// Validates one path component handed to a libservice: not empty, not `.` or `..`, no `/`.
pub fn check_name(name: &OsStr) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes == b"." || bytes == b".." || bytes.contains(&b'/') {
        return Err(errno(libc::EINVAL));
    }
    if bytes.contains(&0) {
        return Err(errno(libc::EINVAL));
    }
    if bytes.len() > 255 {
        return Err(errno(libc::ENAMETOOLONG));
    }
    Ok(())
}

/// Where a libservice reports changes (`FileSystem::watch_changes`), after they are made and
/// before the caller is answered.
pub trait ChangeSink: Send + Sync {
    /// The data, size or other attributes of `inode` changed.
    fn changed(&self, inode: Inode);
    /// A name changed (made, removed, renamed, linked), or what decides access to names
    /// (an owner, a mode, an extended attribute): a path may now lead elsewhere or be
    /// refused.
    fn names_changed(&self);
    /// A writer the libservice does not see starts (`begins`) or stops writing `inode`.
    fn outside_writer(&self, inode: Inode, begins: bool);
    /// Another client of a shared file system is about to change `inode` (`None`: a name),
    /// as the file system announced (see `FileSystem::watch_others`): as `changed` (or
    /// `names_changed`), and counted apart.
    fn others_change(&self, inode: Option<Inode>) {
        match inode {
            Some(i) => self.changed(i),
            None => self.names_changed(),
        }
    }
}

/// Helpers for the libservices' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::io;

    use super::Context;

    /// The test process's own credentials.
    pub fn ctx() -> Context {
        Context::current()
    }

    /// The errno of a call that must fail.
    pub fn code<T: std::fmt::Debug>(r: io::Result<T>) -> i32 {
        r.expect_err("operation should have failed").raw_os_error().unwrap_or(-1)
    }
}
