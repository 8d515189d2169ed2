//! The back driver's namespace operations: make, remove, rename and link names, symbolic
//! links, permission checks and attribute changes by path. Paths arrive in the client's
//! buffer (relative to a directory the request names) and are resolved with `walk`, as the
//! `*Path` file operations are.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;

use polytropon_ipc::args::{AccessArg, MkdirArg};
use polytropon_ipc::{Op, WireSetattr, SET_ATIME, SET_GID, SET_MODE, SET_MTIME, SET_SIZE, SET_UID, STAT_NOFOLLOW};

use super::call::{Call, Reply};
use super::{fallback, inval_inode, victim};
use crate::libservice::access::{Creds, UserNs};
use crate::libservice::{FileKind, SetAttr, TimeUpdate, Timespec};

fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

/// The attribute changes a [`WireSetattr`] asks for, checked as `utimensat` checks times.
/// Owner and group come in the caller's user namespace; one it does not map is `EINVAL`, as
/// `chown(2)` says.
pub(super) fn setattr_of(w: &WireSetattr, creds: &Creds) -> io::Result<SetAttr> {
    let outside = |id: u32, f: fn(&UserNs, u32) -> Option<u32>| match &creds.userns {
        Some(ns) => f(ns, id).ok_or_else(|| errno(libc::EINVAL)),
        None => Ok(id),
    };
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
        uid: (w.valid & SET_UID != 0).then(|| outside(w.uid, UserNs::uid_outside)).transpose()?,
        gid: (w.valid & SET_GID != 0).then(|| outside(w.gid, UserNs::gid_outside)).transpose()?,
        size: (w.valid & SET_SIZE != 0).then_some(w.size),
        atime: time(w.valid & SET_ATIME != 0, w.atime, w.atime_nsec)?,
        mtime: time(w.valid & SET_MTIME != 0, w.mtime, w.mtime_nsec)?,
    })
}

/// `faccessat` of a path (a final symbolic link followed unless `AT_SYMLINK_NOFOLLOW`).
pub(super) fn access(c: &mut Call<'_>, buf: &mut [u8]) -> io::Result<Reply> {
    let p = c.data(buf);
    let a = AccessArg::decode(c.r.arg);
    let e = c.target(c.r.inode, &p, a.flags & libc::AT_SYMLINK_NOFOLLOW == 0)?;
    // The kernel's rules with the caller's credentials (the root exec rule included).
    c.creds.permit(&e.attr, (a.mode & 7) as u32)?;
    Ok((0, [0; 4]))
}

pub(super) fn mkdir(c: &mut Call<'_>, buf: &mut [u8]) -> io::Result<Reply> {
    let p = c.data(buf);
    let w = c.walk(c.r.inode, &p)?;
    let MkdirArg { mode, umask } = MkdirArg::decode(c.r.arg);
    // As mkdir(2): permission bits and the sticky bit only (a set-group-id bit comes from
    // the parent, if at all).
    let mut mode = mode & 0o1777;
    let mut maker = *c.ctx;
    if let Some(cr) = c.guard {
        let (who, m) = c.may_make(cr, w.dir, w.name, libc::S_IFDIR | mode)?;
        (maker, mode) = (who, m & 0o7777);
    }
    let e = c.fs.mkdir(&maker, w.dir, w.name, mode, umask)?;
    c.forget_new(e);
    c.inval_new_entry(w.dir, w.name);
    Ok((0, [0; 4]))
}

pub(super) fn rmdir(c: &mut Call<'_>, buf: &mut [u8]) -> io::Result<Reply> {
    let p = c.data(buf);
    let w = c.walk(c.r.inode, &p)?;
    if let Some(cr) = c.guard {
        let d = c.attr(w.dir)?;
        let v = c.existing(w.dir, w.name)?.ok_or_else(|| errno(libc::ENOENT))?;
        cr.remove(&d, &v.attr)?;
    }
    c.fs.rmdir(c.ctx, w.dir, w.name)?;
    c.inval_entry(w.dir, w.name);
    Ok((0, [0; 4]))
}

pub(super) fn rename_or_link(c: &mut Call<'_>, buf: &mut [u8]) -> io::Result<Reply> {
    let r = *c.r;
    let data = c.data(buf);
    // `decode` checked 0 < offset < len.
    let (old, new) = data.split_at((r.offset as usize).min(data.len()));
    let from = c.walk(r.inode, old)?;
    if r.op == Op::Rename {
        let to = c.walk(r.handle, new)?;
        let flags = u32::try_from(r.arg).map_err(|_| errno(libc::EINVAL))?;
        if let Some(cr) = c.guard {
            // In the kernel's order (`do_renameat2`, `vfs_rename`): the source exists; a
            // directory is not moved into itself (EINVAL) nor over one of its ancestors
            // (ENOTEMPTY; both paths come from the root here: `scope` sends others to the
            // kernel); a rename onto the same file does nothing; then the permissions.
            // With `RENAME_NOREPLACE` a target that is there is `EEXIST`, with
            // `RENAME_EXCHANGE` one that is not is `ENOENT`, both before any permission.
            let exchange = flags & libc::RENAME_EXCHANGE != 0;
            let src = c.existing(from.dir, from.name)?.ok_or_else(|| errno(libc::ENOENT))?;
            let dst = c.existing(to.dir, to.name)?;
            if flags & libc::RENAME_NOREPLACE != 0 && dst.is_some() {
                return Err(errno(libc::EEXIST));
            }
            if exchange && dst.is_none() {
                return Err(errno(libc::ENOENT));
            }
            if let (Some(f), Some(t)) = (&from.key, &to.key) {
                let inside = |a: &[u8], b: &[u8]| a.len() > b.len() && a.starts_with(b) && a[b.len()] == b'/';
                if inside(t, f) {
                    return Err(errno(libc::EINVAL));
                }
                if inside(f, t) {
                    return Err(errno(if exchange { libc::EINVAL } else { libc::ENOTEMPTY }));
                }
            }
            if dst.as_ref().is_some_and(|d| d.inode == src.inode) {
                return Ok((0, [0; 4]));
            }
            let (fd, td) = (c.attr(from.dir)?, c.attr(to.dir)?);
            cr.remove(&fd, &src.attr)?;
            let src_dir = src.attr.kind() == FileKind::Directory;
            let dst_dir = dst.as_ref().is_some_and(|d| d.attr.kind() == FileKind::Directory);
            match &dst {
                Some(d) => {
                    cr.remove(&td, &d.attr)?;
                    // An exchange swaps a directory and a file as well.
                    match (src_dir, dst_dir) {
                        (true, false) if !exchange => return Err(errno(libc::ENOTDIR)),
                        (false, true) if !exchange => return Err(errno(libc::EISDIR)),
                        _ => {}
                    }
                }
                None => cr.change_names(&td)?,
            }
            // A directory moved to another parent gets a new `..`: write permission on it
            // (and on the target too when an exchange moves it the other way).
            if from.dir != to.dir {
                if src_dir {
                    cr.permit(&src.attr, crate::libservice::access::MAY_WRITE)?;
                }
                if exchange && dst_dir {
                    if let Some(d) = &dst {
                        cr.permit(&d.attr, crate::libservice::access::MAY_WRITE)?;
                    }
                }
            }
        }
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
    let to = c.walk(r.handle, new)?;
    if let Some(cr) = c.guard {
        if c.existing(to.dir, to.name)?.is_some() {
            return Err(errno(libc::EEXIST));
        }
        cr.link(&e.attr, super::perm::protected_hardlinks())?;
        cr.change_names(&c.attr(to.dir)?)?;
    }
    // A directory is refused by the filesystem, after an existing new name (EEXIST first,
    // as link(2) answers).
    let made = c.fs.link(c.ctx, e.inode, to.dir, to.name)?;
    c.forget_new(made);
    c.inval_new_entry(to.dir, to.name);
    inval_inode(c.kernel, e.inode, -1, 0);
    Ok((0, [0; 4]))
}

pub(super) fn symlink(c: &mut Call<'_>, buf: &mut [u8]) -> io::Result<Reply> {
    let data = c.data(buf);
    let (target, path) = data.split_at((c.r.offset as usize).min(data.len()));
    if target.contains(&0) {
        return Err(errno(libc::EINVAL));
    }
    let w = c.walk(c.r.inode, path)?;
    let mut maker = *c.ctx;
    if let Some(cr) = c.guard {
        maker = c.may_make(cr, w.dir, w.name, libc::S_IFLNK | 0o777)?.0;
    }
    let e = c.fs.symlink(&maker, OsStr::from_bytes(target), w.dir, w.name)?;
    c.forget_new(e);
    c.inval_new_entry(w.dir, w.name);
    Ok((0, [0; 4]))
}

pub(super) fn readlink(c: &mut Call<'_>, buf: &mut [u8]) -> io::Result<Reply> {
    let p = c.data(buf);
    let e = c.target(c.r.inode, &p, false)?;
    if e.attr.kind() != FileKind::Symlink {
        return Err(errno(libc::EINVAL));
    }
    let target = c.fs.readlink(c.ctx, e.inode)?;
    let n = c.area.write_data(&target);
    Ok((n as i64, [0; 4]))
}

pub(super) fn setattr_path(c: &mut Call<'_>, buf: &mut [u8]) -> io::Result<Reply> {
    let data = c.data(buf);
    let (path, wire) = data.split_at((c.r.offset as usize).min(data.len()));
    let wire: &[u8; std::mem::size_of::<WireSetattr>()] = wire.try_into().map_err(|_| errno(libc::EINVAL))?;
    let set = setattr_of(&WireSetattr::from_bytes(wire), c.creds)?;
    let nofollow = c.r.arg & STAT_NOFOLLOW != 0;
    let e = c.target(c.r.inode, path, !nofollow)?;
    if e.attr.kind() == FileKind::Symlink && set.mode.is_some() {
        // As the kernel: a symbolic link's mode cannot change.
        return Err(errno(libc::EOPNOTSUPP));
    }
    if set.size.is_some() && e.attr.kind() == FileKind::Directory {
        return Err(errno(libc::EISDIR));
    }
    let mut set = set;
    if let Some(cr) = c.guard {
        set = super::perm::setattr(cr, &e.attr, &set, true)?;
        if set.size.is_some() {
            if let Some(mode) = cr.kill_privs(&e.attr) {
                set.mode = Some(mode);
            }
        }
    }
    if !set.is_empty() {
        c.fs.setattr(c.ctx, e.inode, None, &set)?;
        let from = if set.size.is_some() { 0 } else { -1 };
        inval_inode(c.kernel, e.inode, from, 0);
    }
    Ok((0, [0; 4]))
}
