//! Path calls that change or inspect names: mkdir, rmdir, rename, link, symlink, readlink,
//! access, chmod, chown, utime(s), utimensat and truncate, in all their spellings.

use std::ffi::{c_char, c_int, CStr};


use libc::{gid_t, mode_t, off64_t, off_t, size_t, ssize_t, uid_t};
use polytropon_ipc::{Op, WireSetattr, SET_ATIME, SET_GID, SET_MODE, SET_MTIME, SET_SIZE, SET_UID};

use super::{on_path, run};
use crate::path::Target;
use crate::namespace;
use crate::outcome::{Served, Unserved};

/// Runs `f` on two targets (both must be ours).
fn on_paths<T>(d1: c_int, p1: *const c_char, d2: c_int, p2: *const c_char, f: impl FnOnce(&Target, &Target) -> Served<T>) -> Served<T> {
    on_path(d1, p1, |a| on_path(d2, p2, |b| f(a, b)))
}

hooks! {
    fn mkdir(path: *const c_char, mode: mode_t) -> c_int => |kernel| {
        run(|| on_path(libc::AT_FDCWD, path, |t| namespace::mkdir(t, mode).map(|()| 0)), kernel)
    }

    fn mkdirat(dirfd: c_int, path: *const c_char, mode: mode_t) -> c_int => |kernel| {
        run(|| on_path(dirfd, path, |t| namespace::mkdir(t, mode).map(|()| 0)), kernel)
    }

    fn rmdir(path: *const c_char) -> c_int => |kernel| {
        run(|| on_path(libc::AT_FDCWD, path, |t| namespace::rmdir(t).map(|()| 0)), kernel)
    }
}

fn rename_at(d1: c_int, p1: *const c_char, d2: c_int, p2: *const c_char, flags: u32) -> Served<c_int> {
    on_paths(d1, p1, d2, p2, |a, b| namespace::rename_or_link(Op::Rename, a, b, flags).map(|()| 0))
}

hooks! {
    fn rename(old: *const c_char, new: *const c_char) -> c_int => |kernel| {
        run(|| rename_at(libc::AT_FDCWD, old, libc::AT_FDCWD, new, 0), kernel)
    }

    fn renameat(d1: c_int, old: *const c_char, d2: c_int, new: *const c_char) -> c_int => |kernel| {
        run(|| rename_at(d1, old, d2, new, 0), kernel)
    }

    fn renameat2(d1: c_int, old: *const c_char, d2: c_int, new: *const c_char, flags: u32) -> c_int => |kernel| {
        run(|| rename_at(d1, old, d2, new, flags), kernel)
    }
}

fn link_at(d1: c_int, p1: *const c_char, d2: c_int, p2: *const c_char, flags: c_int) -> Served<c_int> {
    if flags & !libc::AT_SYMLINK_FOLLOW != 0 {
        return Err(Unserved::Kernel);
    }
    on_paths(d1, p1, d2, p2, |a, b| namespace::rename_or_link(Op::Link, a, b, flags as u32).map(|()| 0))
}

hooks! {
    fn link(old: *const c_char, new: *const c_char) -> c_int => |kernel| {
        run(|| link_at(libc::AT_FDCWD, old, libc::AT_FDCWD, new, 0), kernel)
    }

    fn linkat(d1: c_int, old: *const c_char, d2: c_int, new: *const c_char, flags: c_int) -> c_int => |kernel| {
        run(|| link_at(d1, old, d2, new, flags), kernel)
    }
}

fn symlink_at(target: *const c_char, dirfd: c_int, path: *const c_char) -> Served<c_int> {
    if target.is_null() {
        return Err(Unserved::Errno(libc::EFAULT));
    }
    // SAFETY: a NUL-terminated string, as symlink requires (checked for null above).
    let target = unsafe { CStr::from_ptr(target) }.to_bytes();
    on_path(dirfd, path, |t| namespace::symlink(target, t).map(|()| 0))
}

hooks! {
    fn symlink(target: *const c_char, path: *const c_char) -> c_int => |kernel| {
        run(|| symlink_at(target, libc::AT_FDCWD, path), kernel)
    }

    fn symlinkat(target: *const c_char, dirfd: c_int, path: *const c_char) -> c_int => |kernel| {
        run(|| symlink_at(target, dirfd, path), kernel)
    }
}

fn readlink_at(dirfd: c_int, path: *const c_char, buf: *mut c_char, size: size_t) -> Served<ssize_t> {
    if size == 0 {
        return Err(Unserved::Errno(libc::EINVAL));
    }
    // SAFETY: readlink's contract: `buf` holds `size` writable bytes.
    let out = unsafe { crate::cbuf::out_buf(buf.cast(), size) }?;
    on_path(dirfd, path, |t| namespace::readlink(t, out).map(|n| n as ssize_t))
}

hooks! {
    fn readlink(path: *const c_char, buf: *mut c_char, size: size_t) -> ssize_t => |kernel| {
        run(|| readlink_at(libc::AT_FDCWD, path, buf, size), kernel)
    }

    fn readlinkat(dirfd: c_int, path: *const c_char, buf: *mut c_char, size: size_t) -> ssize_t => |kernel| {
        run(|| readlink_at(dirfd, path, buf, size), kernel)
    }
}

fn access_at(dirfd: c_int, path: *const c_char, mode: c_int, flags: c_int) -> Served<c_int> {
    if flags & !(libc::AT_EACCESS | libc::AT_SYMLINK_NOFOLLOW) != 0 || mode & !(libc::R_OK | libc::W_OK | libc::X_OK) != 0 {
        return Err(Unserved::Kernel);
    }
    on_path(dirfd, path, |t| namespace::access(t, mode, flags).map(|()| 0))
}

hooks! {
    fn access(path: *const c_char, mode: c_int) -> c_int => |kernel| {
        run(|| access_at(libc::AT_FDCWD, path, mode, 0), kernel)
    }

    fn faccessat(dirfd: c_int, path: *const c_char, mode: c_int, flags: c_int) -> c_int => |kernel| {
        run(|| access_at(dirfd, path, mode, flags), kernel)
    }
}

/// Attribute changes by path; `AT_EMPTY_PATH` and other flags are the kernel's.
fn setattr_at(dirfd: c_int, path: *const c_char, w: &WireSetattr, flags: c_int) -> Served<c_int> {
    if flags & !libc::AT_SYMLINK_NOFOLLOW != 0 {
        return Err(Unserved::Kernel);
    }
    on_path(dirfd, path, |t| namespace::setattr(t, w, flags != 0).map(|()| 0))
}

pub(super) fn chmod_of(mode: mode_t) -> WireSetattr {
    WireSetattr { valid: SET_MODE, mode, ..WireSetattr::default() }
}

hooks! {
    fn chmod(path: *const c_char, mode: mode_t) -> c_int => |kernel| {
        run(|| setattr_at(libc::AT_FDCWD, path, &chmod_of(mode), 0), kernel)
    }

    fn fchmodat(dirfd: c_int, path: *const c_char, mode: mode_t, flags: c_int) -> c_int => |kernel| {
        run(|| setattr_at(dirfd, path, &chmod_of(mode), flags), kernel)
    }
}

/// -1 (as an unsigned id) leaves that id unchanged.
pub(super) fn chown_of(uid: uid_t, gid: gid_t) -> WireSetattr {
    let mut w = WireSetattr { uid, gid, ..WireSetattr::default() };
    if uid != uid_t::MAX {
        w.valid |= SET_UID;
    }
    if gid != gid_t::MAX {
        w.valid |= SET_GID;
    }
    w
}

hooks! {
    fn chown(path: *const c_char, uid: uid_t, gid: gid_t) -> c_int => |kernel| {
        run(|| setattr_at(libc::AT_FDCWD, path, &chown_of(uid, gid), 0), kernel)
    }

    fn lchown(path: *const c_char, uid: uid_t, gid: gid_t) -> c_int => |kernel| {
        run(|| setattr_at(libc::AT_FDCWD, path, &chown_of(uid, gid), libc::AT_SYMLINK_NOFOLLOW), kernel)
    }

    fn fchownat(dirfd: c_int, path: *const c_char, uid: uid_t, gid: gid_t, flags: c_int) -> c_int => |kernel| {
        run(|| setattr_at(dirfd, path, &chown_of(uid, gid), flags), kernel)
    }
}

/// Times as utimensat takes them (`None`: both now); `Err` for a nanosecond field out of
/// range that is neither `UTIME_NOW` nor `UTIME_OMIT`.
pub(super) fn times_of(t: Option<[libc::timespec; 2]>) -> Served<WireSetattr> {
    let [a, m] = t.unwrap_or([libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_NOW }; 2]);
    let ok = |n: i64| (0..1_000_000_000).contains(&n) || n == libc::UTIME_NOW || n == libc::UTIME_OMIT;
    if !ok(a.tv_nsec) || !ok(m.tv_nsec) {
        return Err(Unserved::Errno(libc::EINVAL));
    }
    Ok(WireSetattr { valid: SET_ATIME | SET_MTIME, atime: a.tv_sec, atime_nsec: a.tv_nsec, mtime: m.tv_sec, mtime_nsec: m.tv_nsec, ..WireSetattr::default() })
}

/// Timevals (utimes, lutimes) as timespecs; `Err` for microseconds out of range.
pub(super) fn timevals(t: *const libc::timeval) -> Served<Option<[libc::timespec; 2]>> {
    // SAFETY: a null pointer or two timevals, as utimes requires.
    let Some(tv) = (unsafe { t.cast::<[libc::timeval; 2]>().as_ref() }) else { return Ok(None) };
    if tv.iter().any(|v| !(0..1_000_000).contains(&v.tv_usec)) {
        return Err(Unserved::Errno(libc::EINVAL));
    }
    Ok(Some(tv.map(|v| libc::timespec { tv_sec: v.tv_sec, tv_nsec: v.tv_usec * 1000 })))
}

hooks! {
    fn utimensat(dirfd: c_int, path: *const c_char, t: *const libc::timespec, flags: c_int) -> c_int => |kernel| {
        // A null path is futimens(dirfd): the kernel's.
        let user = || {
            if path.is_null() {
                return Err(Unserved::Kernel);
            }
            // SAFETY: a null pointer or two timespecs, as utimensat requires.
            let w = times_of(unsafe { t.cast::<[libc::timespec; 2]>().as_ref() }.copied())?;
            setattr_at(dirfd, path, &w, flags)
        };
        run(user, || super::dirs::in_kernel_dir(if path.is_null() { dirfd } else { -1 }, kernel))
    }

    fn utimes(path: *const c_char, t: *const libc::timeval) -> c_int => |kernel| {
        run(|| setattr_at(libc::AT_FDCWD, path, &times_of(timevals(t)?)?, 0), kernel)
    }

    fn lutimes(path: *const c_char, t: *const libc::timeval) -> c_int => |kernel| {
        run(|| setattr_at(libc::AT_FDCWD, path, &times_of(timevals(t)?)?, libc::AT_SYMLINK_NOFOLLOW), kernel)
    }

    fn utime(path: *const c_char, t: *const libc::utimbuf) -> c_int => |kernel| {
        let user = || {
            // SAFETY: a null pointer or one utimbuf, as utime requires.
            let given = unsafe { t.as_ref() }.map(|u| [libc::timespec { tv_sec: u.actime, tv_nsec: 0 }, libc::timespec { tv_sec: u.modtime, tv_nsec: 0 }]);
            setattr_at(libc::AT_FDCWD, path, &times_of(given)?, 0)
        };
        run(user, kernel)
    }
}

fn truncate_at(path: *const c_char, len: i64) -> Served<c_int> {
    if len < 0 {
        return Err(Unserved::Errno(libc::EINVAL));
    }
    let w = WireSetattr { valid: SET_SIZE, size: len as u64, ..WireSetattr::default() };
    setattr_at(libc::AT_FDCWD, path, &w, 0)
}

hooks! {
    fn truncate(path: *const c_char, len: off_t) -> c_int => |kernel| {
        run(|| truncate_at(path, len), kernel)
    }

    fn truncate64(path: *const c_char, len: off64_t) -> c_int => |kernel| {
        run(|| truncate_at(path, len), kernel)
    }
}
