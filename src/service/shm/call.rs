//! What one request needs from the worker that runs it, and what it answers.

use std::ffi::OsStr;
use std::io;

use polytropon_ipc::area::Area;
use polytropon_ipc::Request;

use super::{fallback, inval_entry, inval_new_entry, request_data, walk, KernelCache, PathCache, Walked};
use crate::libservice::access::Creds;
use crate::libservice::{Attr, Context, Entry, FileKind, FileSystem, Inode};

/// A request's answer: its result (a length, or 0) and up to four values for the client.
pub(super) type Reply = (i64, [u64; 4]);

/// What one request needs from the worker that runs it.
pub(super) struct Call<'a> {
    pub area: Area,
    pub fs: &'a dyn FileSystem,
    pub ctx: &'a Context,
    /// The caller, as the kernel says.
    pub creds: &'a Creds,
    /// The caller when the kernel's permission rules could refuse it something (`None`:
    /// every capability, nothing to check but exec bits).
    pub guard: Option<&'a Creds>,
    pub r: &'a Request,
    pub held: &'a mut Vec<Inode>,
    pub dirs: &'a mut PathCache,
    pub kernel: Option<&'a dyn KernelCache>,
    /// The handle the request names (if any) was opened for writing.
    pub writable: bool,
}

impl Call<'_> {
    pub(super) fn data(&self, buf: &mut [u8]) -> Vec<u8> {
        request_data(&self.area, self.r, buf)
    }

    /// Looks up what `path` (relative to `base`) names; the reference is released with the
    /// request. A symbolic link the call would follow is the kernel's.
    pub(super) fn target(&mut self, base: Inode, path: &[u8], follow: bool) -> io::Result<Entry> {
        let w = self.walk(base, path)?;
        let e = self.fs.lookup(self.ctx, w.dir, w.name)?;
        self.held.push(e.inode);
        if follow && e.attr.kind() == FileKind::Symlink {
            return Err(fallback());
        }
        Ok(e)
    }

    /// Resolves `path` (relative to `base`) to its parent and last name, with the caller's
    /// search permission on every directory on the way.
    pub(super) fn walk<'p>(&mut self, base: Inode, path: &'p [u8]) -> io::Result<Walked<'p>> {
        walk(self.fs, self.ctx, self.guard, base, path, self.held, self.dirs)
    }

    /// Attributes of `ino`.
    pub(super) fn attr(&self, ino: Inode) -> io::Result<Attr> {
        self.fs.getattr(self.ctx, ino, None)
    }

    /// What `name` in `dir` is, if anything (its reference released with the request).
    pub(super) fn existing(&mut self, dir: Inode, name: &OsStr) -> io::Result<Option<Entry>> {
        match self.fs.lookup(self.ctx, dir, name) {
            Ok(e) => {
                self.held.push(e.inode);
                Ok(Some(e))
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The context to create objects in `dir` with (mode bits included): the caller's ids,
    /// a set-group-id directory's group, as the kernel makes them.
    pub(super) fn creator(&self, dir: &Attr, mode: u32) -> (Context, u32) {
        let (mode, gid) = self.creds.new_owner(dir, mode);
        (Context { gid, ..*self.ctx }, mode)
    }

    /// A checked caller making `name` in `dir` (mkdir, symlink): `EEXIST` when it is there
    /// (the kernel looks before it checks), then write and search on `dir`; the context and
    /// mode (`mode` with its type bits) to make it with, as [`Call::creator`] gives them.
    pub(super) fn may_make(&mut self, cr: &Creds, dir: Inode, name: &OsStr, mode: u32) -> io::Result<(Context, u32)> {
        if self.existing(dir, name)?.is_some() {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        let d = self.attr(dir)?;
        cr.change_names(&d)?;
        Ok(self.creator(&d, mode))
    }

    pub(super) fn inval_entry(&self, dir: Inode, name: &OsStr) {
        inval_entry(self.kernel, dir, name);
    }

    pub(super) fn inval_new_entry(&self, dir: Inode, name: &OsStr) {
        inval_new_entry(self.kernel, dir, name);
    }

    pub(super) fn forget_new(&self, e: Entry) {
        self.fs.forget(e.inode, 1);
    }
}

