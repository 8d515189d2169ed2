//! The back driver's file operations: open, stat and remove by path, and the calls on an
//! open file (attributes, data, extended attributes, sync, release). One function per op;
//! `dispatch` in the parent module is the table.

use std::ffi::OsStr;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::unix::ffi::OsStrExt;

use polytropon_ipc::args::OpenArg;
use polytropon_ipc::{Op, WireFallocate, WireSetattr, STAT_NOFOLLOW, WRITE_APPEND, WRITE_STREAMED};

use super::call::{Call, Reply};
use super::{fallback, grew, inval_entry, inval_new_entry, perm, inval_inode, namespace, open_pinned, pin_or_hold, streamed_write, victim, wire, xattr_name, APPENDS};
use crate::libservice::access::CAP_SYS_ADMIN;
use crate::libservice::{open_or_create, FileKind, Opened, SetAttr};

/// Times an `O_CREAT` open checks a name again that went between its check and its open.
const OPEN_ATTEMPTS: u32 = 3;

/// Opens (or creates) the regular file at a path; aux: inode, handle.
pub(super) fn open_path(c: &mut Call<'_>, buf: &mut [u8]) -> io::Result<Reply> {
    let (fs, ctx, r, kernel) = (c.fs, c.ctx, c.r, c.kernel);
    let p = c.data(buf);
    let w = c.walk(r.inode, &p)?;
    let (dir, name) = (w.dir, w.name);
    let OpenArg { flags, mode: asked } = OpenArg::decode(r.arg);
    let mut kill;
    let mut attempts = 0;
    let opened = loop {
        let (mut maker, mut mode) = (*ctx, asked);
        kill = None;
        // Whether this open may make the file: only once the directory's checks for a create
        // ran (a name that was there when checked is opened, never made: if it goes meanwhile,
        // the checks run again, as for a name that never was).
        let mut may_create = c.guard.is_none();
        if let Some(cr) = c.guard {
            match c.existing(dir, name)? {
                Some(_) if flags & (libc::O_CREAT | libc::O_EXCL) == libc::O_CREAT | libc::O_EXCL => return Err(io::Error::from_raw_os_error(libc::EEXIST)),
                Some(e) if e.attr.kind() == FileKind::Regular => {
                    perm::open(cr, &e.attr, flags)?;
                    if flags & libc::O_TRUNC != 0 {
                        kill = cr.kill_privs(&e.attr);
                    }
                }
                // What is not a regular file is the kernel's (below), which checks it.
                Some(_) => {}
                None if flags & libc::O_CREAT != 0 => {
                    let d = c.attr(dir)?;
                    cr.change_names(&d)?;
                    let (who, m) = c.creator(&d, libc::S_IFREG | (asked & 0o7777));
                    (maker, mode, may_create) = (who, m & 0o7777, true);
                }
                None => return Err(io::Error::from_raw_os_error(libc::ENOENT)),
            }
        } else if let Some(opened) = open_pinned(fs, ctx, &w, flags, c.dirs, kernel) {
            return opened;
        }
        let allowed = if may_create { flags } else { flags & !libc::O_CREAT };
        match open_or_create(fs, &maker, dir, name, mode, 0, allowed) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && allowed != flags && attempts < OPEN_ATTEMPTS => attempts += 1,
            other => break other?,
        }
    };
    let (inode, handle) = match opened {
        Opened::Existing(e) => {
            // Regular files only: directories, symlinks to follow, fifos and devices
            // are the kernel's.
            if e.attr.kind() != FileKind::Regular {
                fs.forget(e.inode, 1);
                return Err(fallback());
            }
            // An `O_CREAT` open of a file that is there: the sticky directory rule, for every
            // caller (no capability bypasses it).
            let level = perm::protected_regular();
            if flags & libc::O_CREAT != 0 && level > 0 {
                let sticky = c.attr(dir).and_then(|d| perm::create_in_sticky(&d, &e.attr, c.creds.uid, level));
                if let Err(err) = sticky {
                    fs.forget(e.inode, 1);
                    return Err(err);
                }
            }
            // What is opened is checked, not only what the name led to a moment ago: another
            // process may have made the name since (an `O_CREAT` open then opens its file), or
            // renamed another file over it.
            if let Some(cr) = c.guard {
                let checked = perm::open(cr, &e.attr, flags).map(|()| if flags & libc::O_TRUNC != 0 { cr.kill_privs(&e.attr) } else { None });
                match checked {
                    Ok(k) => kill = k,
                    Err(err) => {
                        fs.forget(e.inode, 1);
                        return Err(err);
                    }
                }
            }
            match fs.open(ctx, e.inode, flags & !(libc::O_CREAT | libc::O_EXCL)) {
                Ok(h) => {
                    if let Some(m) = kill {
                        // Truncation by open clears set-id bits, as any write does.
                        fs.setattr(ctx, e.inode, Some(h), &SetAttr { mode: Some(m), ..SetAttr::default() })?;
                    }
                    if flags & libc::O_TRUNC != 0 {
                        inval_inode(kernel, e.inode, 0, 0);
                    }
                    (e.inode, h)
                }
                Err(err) => {
                    fs.forget(e.inode, 1);
                    return Err(err);
                }
            }
        }
        Opened::Created(e, h) => {
            // The kernel may hold a negative entry for the name.
            inval_new_entry(kernel, dir, name);
            (e.inode, h)
        }
    };
    // The final inode's reference stays until Release; the path cache pins the file
    // with a reference of its own, so reopening it finds it without a backend lookup. (A
    // name removed or moved meanwhile bumps the removal generation, which drops the pins
    // before the next request: a second lookup to check the name adds nothing.)
    if w.key.as_ref().is_some_and(|k| !c.dirs.pinned(fs, k)) && fs.retain(inode).is_ok() {
        pin_or_hold(fs, w, inode, FileKind::Regular, c.held, c.dirs);
    }
    Ok((0, [inode, handle, 0, 0]))
}

/// Attributes of what a path names, into the client's buffer; aux: its inode.
pub(super) fn stat_path(c: &mut Call<'_>, buf: &mut [u8]) -> io::Result<Reply> {
    let (area, fs, ctx, r) = (c.area, c.fs, c.ctx, c.r);
    let p = c.data(buf);
    let w = c.walk(r.inode, &p)?;
    let e = fs.lookup(ctx, w.dir, w.name)?;
    pin_or_hold(fs, w, e.inode, e.attr.kind(), c.held, c.dirs);
    if e.attr.kind() == FileKind::Symlink && r.arg & STAT_NOFOLLOW == 0 {
        return Err(fallback());
    }
    let bytes = wire(&e.attr, c.creds).to_bytes();
    area.write_data(&bytes);
    Ok((bytes.len() as i64, [e.inode, 0, 0, 0]))
}

/// Removes the name at a path.
pub(super) fn unlink_path(c: &mut Call<'_>, buf: &mut [u8]) -> io::Result<Reply> {
    let (fs, ctx, r, kernel) = (c.fs, c.ctx, c.r, c.kernel);
    let p = c.data(buf);
    let w = c.walk(r.inode, &p)?;
    let (dir, name) = (w.dir, w.name);
    if let Some(cr) = c.guard {
        let d = c.attr(dir)?;
        let v = c.existing(dir, name)?.ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
        cr.remove(&d, &v.attr)?;
    }
    // The file the name pins (still what it names: a removal since would have dropped the
    // pins), or a lookup.
    let pinned = w.key.as_ref().filter(|_| kernel.is_some()).and_then(|k| c.dirs.pin_of(fs, k)).map(|(ino, _)| ino);
    let victim = pinned.or_else(|| victim(fs, ctx, kernel, dir, name, c.held));
    fs.unlink(ctx, dir, name)?;
    if let Some(key) = &w.key {
        c.dirs.unpin(fs, key);
    }
    inval_entry(kernel, dir, name);
    if let Some(ino) = victim {
        inval_inode(kernel, ino, -1, 0);
    }
    Ok((0, [0; 4]))
}

/// Attributes of an open file, into the client's buffer.
pub(super) fn getattr(c: &mut Call<'_>) -> io::Result<Reply> {
    let (area, fs, ctx, r) = (c.area, c.fs, c.ctx, c.r);
    let a = fs.getattr(ctx, r.inode, Some(r.handle))?;
    let bytes = wire(&a, c.creds).to_bytes();
    area.write_data(&bytes);
    Ok((bytes.len() as i64, [0; 4]))
}

/// Reads an open file into the client's buffer.
pub(super) fn read(c: &mut Call<'_>) -> io::Result<Reply> {
    let (area, fs, ctx, r) = (c.area, c.fs, c.ctx, c.r);
    let len = r.len as usize;
    // SAFETY: one request per client at a time (the client waits for its reply, and
    // a client that does not only garbles its own buffer); the libservice hands the
    // slice to the kernel (preadv into it) or copies into it with a raw copy (the
    // local backend's block cache), and never reads it. `len` was bounded by the
    // buffer size in `decode`.
    let shm = unsafe { area.buffer() };
    let n = fs.read(ctx, r.inode, r.handle, &mut [IoSliceMut::new(&mut shm[..len])], r.offset)?;
    Ok((n.min(len) as i64, [0; 4]))
}

/// Writes the client's buffer to an open file (at its end for an append).
pub(super) fn write(c: &mut Call<'_>) -> io::Result<Reply> {
    let (area, fs, ctx, r, kernel) = (c.area, c.fs, c.ctx, c.r, c.kernel);
    let len = r.len as usize;
    // SAFETY: as for Read; the libservice passes the bytes to the kernel (pwritev),
    // so a client racing its own buffer only changes what it writes.
    let shm = unsafe { area.buffer() };
    let n = len;
    let buf = &shm[..len];
    // An append finds the end and writes there as one step: appenders served by other
    // workers at the same moment wait (the write-back cache, unlike a backing file
    // opened O_APPEND, writes where it is told).
    let _append = (r.arg & WRITE_APPEND != 0).then(|| APPENDS[(r.inode % APPENDS.len() as u64) as usize].lock().unwrap_or_else(|p| p.into_inner()));
    let at = if r.arg & WRITE_APPEND != 0 { fs.getattr(ctx, r.inode, Some(r.handle))?.size } else { r.offset };
    kill_privs(c)?;
    if at.checked_add(n as u64).is_none_or(|end| end > i64::MAX as u64) {
        return Err(io::Error::from_raw_os_error(libc::EFBIG));
    }
    let w = if r.arg & WRITE_STREAMED != 0 && r.arg & WRITE_APPEND == 0 {
        streamed_write(&area, fs, ctx, r, buf, at)?
    } else {
        fs.write(ctx, r.inode, r.handle, &[IoSlice::new(&buf[..n])], at)?
    };
    inval_inode(kernel, r.inode, at as i64, w as i64);
    grew(kernel, r.inode, at + w as u64);
    Ok((w as i64, [at + w as u64, 0, 0, 0]))
}

/// Ends a handle and its inode's reference.
pub(super) fn release(c: &mut Call<'_>) -> io::Result<Reply> {
    let (fs, ctx, r) = (c.fs, c.ctx, c.r);
    // The handle's holder was checked, and `r.inode` is the one it was opened on.
    fs.release(ctx, r.inode, r.handle)?;
    fs.forget(r.inode, 1);
    Ok((0, [0; 4]))
}

/// Sets the size of an open file.
pub(super) fn truncate(c: &mut Call<'_>) -> io::Result<Reply> {
    let (fs, ctx, r, kernel) = (c.fs, c.ctx, c.r, c.kernel);
    let set = SetAttr { size: Some(r.arg), ..SetAttr::default() };
    kill_privs(c)?;
    fs.setattr(ctx, r.inode, Some(r.handle), &set)?;
    inval_inode(kernel, r.inode, 0, 0);
    grew(kernel, r.inode, r.arg);
    Ok((0, [0; 4]))
}

/// Allocates or deallocates space of an open file, checked as the kernel's `vfs_fallocate`
/// checks before a filesystem sees it (the backend's own call checks the rest: the handle's
/// access mode, the modes its filesystem supports).
pub(super) fn fallocate(c: &mut Call<'_>) -> io::Result<Reply> {
    let (area, fs, ctx, r, kernel) = (c.area, c.fs, c.ctx, c.r, c.kernel);
    let mut b = [0u8; std::mem::size_of::<WireFallocate>()];
    if area.read_data(r.len as usize, &mut b) != b.len() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let a = WireFallocate::from_bytes(&b);
    if a.offset < 0 || a.length <= 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    if a.offset.checked_add(a.length).is_none() {
        return Err(io::Error::from_raw_os_error(libc::EFBIG));
    }
    let mode = i32::try_from(a.mode).map_err(|_| io::Error::from_raw_os_error(libc::EOPNOTSUPP))?;
    kill_privs(c)?;
    fs.fallocate(ctx, r.inode, r.handle, mode, a.offset as u64, a.length as u64)?;
    inval_inode(kernel, r.inode, 0, 0);
    if mode & libc::FALLOC_FL_KEEP_SIZE == 0 {
        grew(kernel, r.inode, (a.offset + a.length) as u64);
    }
    Ok((0, [0; 4]))
}

/// Writes out everything the instance holds for its backend.
pub(super) fn syncfs(c: &mut Call<'_>) -> io::Result<Reply> {
    c.fs.syncfs(c.ctx)?;
    Ok((0, [0; 4]))
}

/// Changes attributes of an open file.
pub(super) fn setattr(c: &mut Call<'_>) -> io::Result<Reply> {
    let (area, fs, ctx, r, kernel) = (c.area, c.fs, c.ctx, c.r, c.kernel);
    let len = r.len as usize;
    let mut b = [0u8; std::mem::size_of::<WireSetattr>()];
    if area.read_data(len, &mut b) != b.len() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut set = namespace::setattr_of(&WireSetattr::from_bytes(&b), c.creds)?;
    if set.size.is_some() && !c.writable {
        // As `ftruncate` of a descriptor not open for writing.
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    if let Some(cr) = c.guard {
        set = perm::setattr(cr, &fs.getattr(ctx, r.inode, Some(r.handle))?, &set, false)?;
        if set.size.is_some() {
            kill_privs(c)?;
        }
    }
    if !set.is_empty() {
        fs.setattr(ctx, r.inode, Some(r.handle), &set)?;
        inval_inode(kernel, r.inode, -1, 0);
    }
    Ok((0, [0; 4]))
}

/// One extended attribute's value, or the list of names, of an open file.
pub(super) fn xattr_value(c: &mut Call<'_>, buf: &mut [u8]) -> io::Result<Reply> {
    let (area, fs, ctx, r) = (c.area, c.fs, c.ctx, c.r);
    let value = if r.op == Op::Getxattr {
        let name = c.data(buf);
        xattr_name(&name)?;
        if let Some(cr) = c.guard {
            cr.xattr_read(&fs.getattr(ctx, r.inode, Some(r.handle))?, &name)?;
        } else if name.starts_with(b"trusted.") && !c.creds.capable(CAP_SYS_ADMIN) {
            return Err(io::Error::from_raw_os_error(libc::ENODATA));
        }
        fs.getxattr(ctx, r.inode, OsStr::from_bytes(&name))?
    } else {
        let mut list = Vec::new();
        // Names of the trusted namespace are shown to the capable only.
        let hidden = |n: &OsStr| n.as_bytes().starts_with(b"trusted.") && !c.creds.capable(CAP_SYS_ADMIN);
        for n in fs.listxattr(ctx, r.inode)?.into_iter().filter(|n| !hidden(n)) {
            list.extend_from_slice(n.as_bytes());
            list.push(0);
        }
        list
    };
    if r.arg != 0 {
        if (r.arg as usize) < value.len() {
            return Err(io::Error::from_raw_os_error(libc::ERANGE));
        }
        if area.write_data(&value) != value.len() {
            return Err(io::Error::from_raw_os_error(libc::E2BIG));
        }
    }
    Ok((value.len() as i64, [0; 4]))
}

/// Sets an extended attribute of an open file.
pub(super) fn setxattr(c: &mut Call<'_>, buf: &mut [u8]) -> io::Result<Reply> {
    let (fs, ctx, r, kernel) = (c.fs, c.ctx, c.r, c.kernel);
    let data = c.data(buf);
    let (name, value) = data.split_at(r.offset as usize);
    let value = value.strip_prefix(&[0]).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    xattr_name(name)?;
    if let Some(cr) = c.guard {
        cr.xattr_write(&fs.getattr(ctx, r.inode, Some(r.handle))?, name)?;
    } else {
        // A caller with every filesystem capability: the privileged namespaces still need
        // theirs.
        c.creds.xattr_privileged(name)?;
    }
    fs.setxattr(ctx, r.inode, OsStr::from_bytes(name), value, r.arg as i32)?;
    inval_inode(kernel, r.inode, -1, 0);
    Ok((0, [0; 4]))
}

/// Removes an extended attribute of an open file.
pub(super) fn removexattr(c: &mut Call<'_>, buf: &mut [u8]) -> io::Result<Reply> {
    let (fs, ctx, r, kernel) = (c.fs, c.ctx, c.r, c.kernel);
    let name = c.data(buf);
    xattr_name(&name)?;
    if let Some(cr) = c.guard {
        cr.xattr_write(&fs.getattr(ctx, r.inode, Some(r.handle))?, &name)?;
    } else {
        c.creds.xattr_privileged(&name)?;
    }
    fs.removexattr(ctx, r.inode, OsStr::from_bytes(&name))?;
    inval_inode(kernel, r.inode, -1, 0);
    Ok((0, [0; 4]))
}

/// Flushes an open file to stable storage (`arg` != 0: data only).
pub(super) fn fsync(c: &mut Call<'_>) -> io::Result<Reply> {
    let (fs, ctx, r) = (c.fs, c.ctx, c.r);
    fs.fsync(ctx, r.inode, r.handle, r.arg != 0)?;
    Ok((0, [0; 4]))
}

/// Before a write or truncate of an open file by a caller without `CAP_FSETID`: its
/// set-user-id bit, and its set-group-id bit when group-executable, go first.
fn kill_privs(c: &Call<'_>) -> io::Result<()> {
    let Some(cr) = c.guard else { return Ok(()) };
    let a = c.fs.getattr(c.ctx, c.r.inode, Some(c.r.handle))?;
    if let Some(mode) = cr.kill_privs(&a) {
        c.fs.setattr(c.ctx, c.r.inode, Some(c.r.handle), &SetAttr { mode: Some(mode), ..SetAttr::default() })?;
        inval_inode(c.kernel, c.r.inode, -1, 0);
    }
    Ok(())
}

