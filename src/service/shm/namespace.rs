//! The back driver's namespace operations: make, remove, rename and link names, symbolic
//! links, permission checks and attribute changes by path. Paths arrive in the client's
//! buffer (relative to a directory the request names) and are resolved with `walk`, as the
//! `*Path` file operations are.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;

use polytropon_ipc::args::{AccessArg, MkdirArg};
use polytropon_ipc::segment::Segment;
use polytropon_ipc::{Op, Request, WireSetattr, SET_ATIME, SET_GID, SET_MODE, SET_MTIME, SET_SIZE, SET_UID, STAT_NOFOLLOW};

use super::{fallback, inval_entry, inval_inode, request_data, victim, walk, KernelCache, PathCache};
use crate::libservice::{Context, Entry, FileKind, FileSystem, Inode, SetAttr, TimeUpdate, Timespec};

fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

/// The attribute changes a [`WireSetattr`] asks for, checked as `utimensat` checks times.
pub(super) fn setattr_of(w: &WireSetattr) -> io::Result<SetAttr> {
    let time = |on: bool, sec: i64, nsec: i64| -> io::Result<Option<TimeUpdate>> {
        Ok(match (on, nsec) {
            (false, _) | (true, libc::UTIME_OMIT) => None,
            (true, libc::UTIME_NOW) => Some(TimeUpdate::Now),
            (true, n) if (0..1_000_000_000).contains(&n) => Some(TimeUpdate::Set(Timespec { sec, nsec: n as u32 })),
            _ => return Err(errno(libc::EINVAL)),
        })
    };
    if w.valid & SET_SIZE != 0 && w.size > i64::MAX as u64 {
        return Err(errno(libc::EINVAL));
    }
    Ok(SetAttr {
        mode: (w.valid & SET_MODE != 0).then_some(w.mode & 0o7777),
        uid: (w.valid & SET_UID != 0).then_some(w.uid),
        gid: (w.valid & SET_GID != 0).then_some(w.gid),
        size: (w.valid & SET_SIZE != 0).then_some(w.size),
        atime: time(w.valid & SET_ATIME != 0, w.atime, w.atime_nsec)?,
        mtime: time(w.valid & SET_MTIME != 0, w.mtime, w.mtime_nsec)?,
    })
}

/// What one request needs from the worker that runs it.
pub(super) struct Call<'a> {
    pub seg: &'a Segment,
    pub fs: &'a dyn FileSystem,
    pub ctx: &'a Context,
    pub r: &'a Request,
    pub held: &'a mut Vec<Inode>,
    pub dirs: &'a mut PathCache,
    pub kernel: Option<&'a dyn KernelCache>,
}

impl Call<'_> {
    pub(super) fn data(&self, buf: &mut [u8]) -> Vec<u8> {
        request_data(self.seg, self.r, buf)
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

    fn inval_entry(&self, dir: Inode, name: &OsStr) {
        inval_entry(self.kernel, dir, name);
    }

    fn forget_new(&self, e: Entry) {
        self.fs.forget(e.inode, 1);
    }
}

/// Runs one namespace request; `None` when `r.op` is not one.
pub(super) fn run(c: &mut Call<'_>, buf: &mut [u8]) -> Option<io::Result<(i64, [u64; 4])>> {
    let r = *c.r;
    let res = match r.op {
        Op::Mkdir => mkdir(c, buf),
        Op::Rmdir => rmdir(c, buf),
        Op::Rename | Op::Link => rename_or_link(c, buf),
        Op::Symlink => symlink(c, buf),
        Op::Readlink => readlink(c, buf),
        Op::Access => {
            let p = c.data(buf);
            let a = AccessArg::decode(r.arg);
            c.target(r.inode, &p, a.flags & libc::AT_SYMLINK_NOFOLLOW == 0).and_then(|e| c.fs.access(c.ctx, e.inode, a.mode)).map(|()| (0, [0; 4]))
        }
        Op::SetattrPath => setattr_path(c, buf),
        _ => return None,
    };
    Some(res)
}

fn mkdir(c: &mut Call<'_>, buf: &mut [u8]) -> io::Result<(i64, [u64; 4])> {
    let p = c.data(buf);
    let w = walk(c.fs, c.ctx, c.r.inode, &p, c.held, c.dirs)?;
    let MkdirArg { mode, umask } = MkdirArg::decode(c.r.arg);
    let e = c.fs.mkdir(c.ctx, w.dir, w.name, mode, umask)?;
    c.forget_new(e);
    c.inval_entry(w.dir, w.name);
    Ok((0, [0; 4]))
}

fn rmdir(c: &mut Call<'_>, buf: &mut [u8]) -> io::Result<(i64, [u64; 4])> {
    let p = c.data(buf);
    let w = walk(c.fs, c.ctx, c.r.inode, &p, c.held, c.dirs)?;
    c.fs.rmdir(c.ctx, w.dir, w.name)?;
    c.inval_entry(w.dir, w.name);
    Ok((0, [0; 4]))
}

fn rename_or_link(c: &mut Call<'_>, buf: &mut [u8]) -> io::Result<(i64, [u64; 4])> {
    let r = *c.r;
    let data = c.data(buf);
    // `decode` checked 0 < offset < len.
    let (old, new) = data.split_at((r.offset as usize).min(data.len()));
    let from = walk(c.fs, c.ctx, r.inode, old, c.held, c.dirs)?;
    if r.op == Op::Rename {
        let to = walk(c.fs, c.ctx, r.handle, new, c.held, c.dirs)?;
        let flags = u32::try_from(r.arg).map_err(|_| errno(libc::EINVAL))?;
        let victim = victim(c.fs, c.ctx, c.kernel, to.dir, to.name, c.held);
        c.fs.rename(c.ctx, from.dir, from.name, to.dir, to.name, flags)?;
        c.inval_entry(from.dir, from.name);
        c.inval_entry(to.dir, to.name);
        if let Some(ino) = victim {
            inval_inode(c.kernel, ino, -1, 0);
        }
        if let Some(k) = &from.key {
            c.dirs.unpin(c.fs, k);
        }
        return Ok((0, [0; 4]));
    }
    if r.arg & !(libc::AT_SYMLINK_FOLLOW as u64) != 0 {
        return Err(fallback());
    }
    // link(2) resolves the old name whole before the new one's directory.
    let e = c.fs.lookup(c.ctx, from.dir, from.name)?;
    c.held.push(e.inode);
    if r.arg != 0 && e.attr.kind() == FileKind::Symlink {
        return Err(fallback());
    }
    let to = walk(c.fs, c.ctx, r.handle, new, c.held, c.dirs)?;
    // A directory is refused by the filesystem, after an existing new name (EEXIST first,
    // as link(2) answers).
    let made = c.fs.link(c.ctx, e.inode, to.dir, to.name)?;
    c.forget_new(made);
    c.inval_entry(to.dir, to.name);
    inval_inode(c.kernel, e.inode, -1, 0);
    Ok((0, [0; 4]))
}

fn symlink(c: &mut Call<'_>, buf: &mut [u8]) -> io::Result<(i64, [u64; 4])> {
    let data = c.data(buf);
    let (target, path) = data.split_at((c.r.offset as usize).min(data.len()));
    if target.contains(&0) {
        return Err(errno(libc::EINVAL));
    }
    let w = walk(c.fs, c.ctx, c.r.inode, path, c.held, c.dirs)?;
    let e = c.fs.symlink(c.ctx, OsStr::from_bytes(target), w.dir, w.name)?;
    c.forget_new(e);
    c.inval_entry(w.dir, w.name);
    Ok((0, [0; 4]))
}

fn readlink(c: &mut Call<'_>, buf: &mut [u8]) -> io::Result<(i64, [u64; 4])> {
    let p = c.data(buf);
    let e = c.target(c.r.inode, &p, false)?;
    if e.attr.kind() != FileKind::Symlink {
        return Err(errno(libc::EINVAL));
    }
    let target = c.fs.readlink(c.ctx, e.inode)?;
    let n = c.seg.write_data(c.r.client, &target);
    Ok((n as i64, [0; 4]))
}

fn setattr_path(c: &mut Call<'_>, buf: &mut [u8]) -> io::Result<(i64, [u64; 4])> {
    let data = c.data(buf);
    let (path, wire) = data.split_at((c.r.offset as usize).min(data.len()));
    let wire: &[u8; std::mem::size_of::<WireSetattr>()] = wire.try_into().map_err(|_| errno(libc::EINVAL))?;
    let set = setattr_of(&WireSetattr::from_bytes(wire))?;
    let nofollow = c.r.arg & STAT_NOFOLLOW != 0;
    let e = c.target(c.r.inode, path, !nofollow)?;
    if e.attr.kind() == FileKind::Symlink && set.mode.is_some() {
        // As the kernel: a symbolic link's mode cannot change.
        return Err(errno(libc::EOPNOTSUPP));
    }
    if set.size.is_some() && e.attr.kind() == FileKind::Directory {
        return Err(errno(libc::EISDIR));
    }
    if !set.is_empty() {
        c.fs.setattr(c.ctx, e.inode, None, &set)?;
        let from = if set.size.is_some() { 0 } else { -1 };
        inval_inode(c.kernel, e.inode, from, 0);
    }
    Ok((0, [0; 4]))
}
