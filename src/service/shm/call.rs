//! What one request needs from the worker that runs it, and what it answers.

use std::ffi::OsStr;
use std::io;

use polytropon_ipc::area::Area;
use polytropon_ipc::Request;

use super::{fallback, inval_entry, request_data, walk, KernelCache, PathCache};
use crate::libservice::{Context, Entry, FileKind, FileSystem, Inode};

/// A request's answer: its result (a length, or 0) and up to four values for the client.
pub(super) type Reply = (i64, [u64; 4]);

/// What one request needs from the worker that runs it.
pub(super) struct Call<'a> {
    pub area: Area,
    pub fs: &'a dyn FileSystem,
    pub ctx: &'a Context,
    pub r: &'a Request,
    pub held: &'a mut Vec<Inode>,
    pub dirs: &'a mut PathCache,
    pub kernel: Option<&'a dyn KernelCache>,
}

impl Call<'_> {
    pub(super) fn data(&self, buf: &mut [u8]) -> Vec<u8> {
        request_data(&self.area, self.r, buf)
    }

    /// Looks up what `path` (relative to `base`) names; the reference is released with the
    /// request. A symbolic link the call would follow is the kernel's.
    pub(super) fn target(&mut self, base: Inode, path: &[u8], follow: bool) -> io::Result<Entry> {
        let w = walk(self.fs, self.ctx, base, path, self.held, self.dirs)?;
        let e = self.fs.lookup(self.ctx, w.dir, w.name)?;
        self.held.push(e.inode);
        if follow && e.attr.kind() == FileKind::Symlink {
            return Err(fallback());
        }
        Ok(e)
    }

    pub(super) fn inval_entry(&self, dir: Inode, name: &OsStr) {
        inval_entry(self.kernel, dir, name);
    }

    pub(super) fn forget_new(&self, e: Entry) {
        self.fs.forget(e.inode, 1);
    }
}

