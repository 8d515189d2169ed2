//! stat and its spellings: stat/lstat/fstat/fstatat, their *64 twins, statx and the
//! `__xstat` family older binaries call.

use std::ffi::{c_char, c_int, c_uint, CStr};
use std::sync::atomic::Ordering;

use super::{on_fd, on_path, run};
use crate::files::File;
use crate::real::Stat;
use crate::ops;
use crate::outcome::{Served, Unserved};

/// Whether `ver` asks the `__xstat` family for the x86-64 `struct stat`, the only layout
/// served here: glibc takes `_STAT_VER_LINUX` (1, what its headers passed) and
/// `_STAT_VER_KERNEL` (0) for that same layout, and refuses any other version with `EINVAL`
/// before looking at the path or descriptor.
fn served_version(ver: c_int) -> bool {
    matches!(ver, 0 | 1)
}

fn out<'a, T>(p: *mut T) -> Served<&'a mut T> {
    // SAFETY: a non-null pointer the caller passed for the result, as the libc call requires.
    unsafe { p.as_mut() }.ok_or(Unserved::Errno(libc::EFAULT))
}

fn stat_file(f: &File, st: *mut Stat) -> Served<c_int> {
    let a = ops::getattr(f)?;
    ops::fill_stat(&a, f.dev.load(Ordering::Relaxed), out(st)?);
    Ok(0)
}

fn stat_at(dirfd: c_int, path: *const c_char, st: *mut Stat, flags: c_int) -> Served<c_int> {
    if flags & !(libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT) != 0 {
        return Err(Unserved::Kernel);
    }
    on_path(dirfd, path, |t| {
        let a = ops::stat_path(t, flags & libc::AT_SYMLINK_NOFOLLOW == 0)?;
        ops::fill_stat(&a, t.dev, out(st)?);
        Ok(0)
    })
}

/// `fstatat(fd, "", st, AT_EMPTY_PATH)` is fstat(fd).
fn empty_path(path: *const c_char, flags: c_int) -> bool {
    // SAFETY: a NUL-terminated string, as the libc call requires (checked for null first).
    flags & libc::AT_EMPTY_PATH != 0 && !path.is_null() && unsafe { CStr::from_ptr(path) }.is_empty()
}

hooks! {
    fn stat(path: *const c_char, st: *mut Stat) -> c_int => |kernel| {
        run(|| stat_at(libc::AT_FDCWD, path, st, 0), kernel)
    }

    fn stat64(path: *const c_char, st: *mut Stat) -> c_int => |kernel| {
        run(|| stat_at(libc::AT_FDCWD, path, st, 0), kernel)
    }

    fn lstat(path: *const c_char, st: *mut Stat) -> c_int => |kernel| {
        run(|| stat_at(libc::AT_FDCWD, path, st, libc::AT_SYMLINK_NOFOLLOW), kernel)
    }

    fn lstat64(path: *const c_char, st: *mut Stat) -> c_int => |kernel| {
        run(|| stat_at(libc::AT_FDCWD, path, st, libc::AT_SYMLINK_NOFOLLOW), kernel)
    }

    fn fstat(fd: c_int, st: *mut Stat) -> c_int => |kernel| {
        on_fd(fd, |f| stat_file(f, st), kernel)
    }

    fn fstat64(fd: c_int, st: *mut Stat) -> c_int => |kernel| {
        on_fd(fd, |f| stat_file(f, st), kernel)
    }

    fn fstatat(dirfd: c_int, path: *const c_char, st: *mut Stat, flags: c_int) -> c_int => |kernel| {
        if empty_path(path, flags) {
            // SAFETY: fstatat(fd, "", st, AT_EMPTY_PATH) is fstat(fd, st): the caller's descriptor and buffer.
            return unsafe { fstat(dirfd, st) };
        }
        run(|| stat_at(dirfd, path, st, flags), kernel)
    }

    fn fstatat64(dirfd: c_int, path: *const c_char, st: *mut Stat, flags: c_int) -> c_int => |kernel| {
        if empty_path(path, flags) {
            // SAFETY: as fstatat's: the caller's descriptor and buffer, as fstat64 takes them.
            return unsafe { fstat64(dirfd, st) };
        }
        run(|| stat_at(dirfd, path, st, flags), kernel)
    }

    fn __xstat(ver: c_int, path: *const c_char, st: *mut Stat) -> c_int => |kernel| {
        if !served_version(ver) {
            return kernel();
        }
        run(|| stat_at(libc::AT_FDCWD, path, st, 0), kernel)
    }

    fn __xstat64(ver: c_int, path: *const c_char, st: *mut Stat) -> c_int => |kernel| {
        if !served_version(ver) {
            return kernel();
        }
        run(|| stat_at(libc::AT_FDCWD, path, st, 0), kernel)
    }

    fn __lxstat(ver: c_int, path: *const c_char, st: *mut Stat) -> c_int => |kernel| {
        if !served_version(ver) {
            return kernel();
        }
        run(|| stat_at(libc::AT_FDCWD, path, st, libc::AT_SYMLINK_NOFOLLOW), kernel)
    }

    fn __lxstat64(ver: c_int, path: *const c_char, st: *mut Stat) -> c_int => |kernel| {
        if !served_version(ver) {
            return kernel();
        }
        run(|| stat_at(libc::AT_FDCWD, path, st, libc::AT_SYMLINK_NOFOLLOW), kernel)
    }

    fn __fxstat(ver: c_int, fd: c_int, st: *mut Stat) -> c_int => |kernel| {
        if !served_version(ver) {
            return kernel();
        }
        on_fd(fd, |f| stat_file(f, st), kernel)
    }

    fn __fxstat64(ver: c_int, fd: c_int, st: *mut Stat) -> c_int => |kernel| {
        if !served_version(ver) {
            return kernel();
        }
        on_fd(fd, |f| stat_file(f, st), kernel)
    }

    fn __fxstatat(ver: c_int, dirfd: c_int, path: *const c_char, st: *mut Stat, flags: c_int) -> c_int => |kernel| {
        if !served_version(ver) {
            return kernel();
        }
        // SAFETY: the caller's arguments past the version, as fstatat takes them.
        unsafe { fstatat(dirfd, path, st, flags) }
    }

    fn __fxstatat64(ver: c_int, dirfd: c_int, path: *const c_char, st: *mut Stat, flags: c_int) -> c_int => |kernel| {
        if !served_version(ver) {
            return kernel();
        }
        // SAFETY: the caller's arguments past the version, as fstatat64 takes them.
        unsafe { fstatat64(dirfd, path, st, flags) }
    }
}

const STATX_FLAGS: c_int = libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT | libc::AT_STATX_SYNC_TYPE;

hooks! {
    fn statx(dirfd: c_int, path: *const c_char, flags: c_int, mask: c_uint, stx: *mut libc::statx) -> c_int => |kernel| {
        if flags & !(STATX_FLAGS | libc::AT_EMPTY_PATH) != 0 {
            return kernel();
        }
        if empty_path(path, flags) {
            return on_fd(
                dirfd,
                |f| {
                    let a = ops::getattr(f)?;
                    ops::fill_statx(&a, f.dev.load(Ordering::Relaxed), out(stx)?);
                    Ok(0)
                },
                kernel,
            );
        }
        run(
            || {
                on_path(dirfd, path, |t| {
                    let a = ops::stat_path(t, flags & libc::AT_SYMLINK_NOFOLLOW == 0)?;
                    ops::fill_statx(&a, t.dev, out(stx)?);
                    Ok(0)
                })
            },
            kernel,
        )
    }
}
