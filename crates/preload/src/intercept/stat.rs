//! stat and its spellings: stat/lstat/fstat/fstatat, their *64 twins, statx and the
//! `__xstat` family older binaries call.

use std::ffi::{c_char, c_int, c_uint, CStr};
use std::sync::atomic::Ordering;

use super::{on_fd, on_path, run};
use crate::files::File;
use crate::real::{self, Stat};
use crate::ops;

/// Whether `ver` asks the `__xstat` family for the x86-64 `struct stat`, the only layout
/// served here: glibc takes `_STAT_VER_LINUX` (1, what its headers passed) and
/// `_STAT_VER_KERNEL` (0) for that same layout, and refuses any other version with `EINVAL`
/// before looking at the path or descriptor.
fn served_version(ver: c_int) -> bool {
    matches!(ver, 0 | 1)
}

fn out<'a, T>(p: *mut T) -> Result<&'a mut T, c_int> {
    // SAFETY: a non-null pointer the caller passed for the result, as the libc call requires.
    unsafe { p.as_mut() }.ok_or(libc::EFAULT)
}

fn stat_file(f: &File, st: *mut Stat) -> Result<c_int, c_int> {
    let a = ops::getattr(f)?;
    ops::fill_stat(&a, f.dev.load(Ordering::Relaxed), out(st)?);
    Ok(0)
}

fn stat_at(dirfd: c_int, path: *const c_char, st: *mut Stat, flags: c_int) -> Result<c_int, c_int> {
    if flags & !(libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT) != 0 {
        return Err(ops::FALLBACK);
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

#[no_mangle]
pub unsafe extern "C" fn stat(path: *const c_char, st: *mut Stat) -> c_int {
    // SAFETY: forwarding the caller's arguments.
    run(|| stat_at(libc::AT_FDCWD, path, st, 0), || unsafe { real::stat(path, st) })
}

#[no_mangle]
pub unsafe extern "C" fn stat64(path: *const c_char, st: *mut Stat) -> c_int {
    // SAFETY: as above.
    run(|| stat_at(libc::AT_FDCWD, path, st, 0), || unsafe { real::stat64(path, st) })
}

#[no_mangle]
pub unsafe extern "C" fn lstat(path: *const c_char, st: *mut Stat) -> c_int {
    // SAFETY: as above.
    run(|| stat_at(libc::AT_FDCWD, path, st, libc::AT_SYMLINK_NOFOLLOW), || unsafe { real::lstat(path, st) })
}

#[no_mangle]
pub unsafe extern "C" fn lstat64(path: *const c_char, st: *mut Stat) -> c_int {
    // SAFETY: as above.
    run(|| stat_at(libc::AT_FDCWD, path, st, libc::AT_SYMLINK_NOFOLLOW), || unsafe { real::lstat64(path, st) })
}

#[no_mangle]
pub unsafe extern "C" fn fstat(fd: c_int, st: *mut Stat) -> c_int {
    // SAFETY: as above.
    on_fd(fd, |f| stat_file(f, st), || unsafe { real::fstat(fd, st) })
}

#[no_mangle]
pub unsafe extern "C" fn fstat64(fd: c_int, st: *mut Stat) -> c_int {
    // SAFETY: as above.
    on_fd(fd, |f| stat_file(f, st), || unsafe { real::fstat64(fd, st) })
}

#[no_mangle]
pub unsafe extern "C" fn fstatat(dirfd: c_int, path: *const c_char, st: *mut Stat, flags: c_int) -> c_int {
    if empty_path(path, flags) {
        // SAFETY: as above.
        return unsafe { fstat(dirfd, st) };
    }
    // SAFETY: as above.
    run(|| stat_at(dirfd, path, st, flags), || unsafe { real::fstatat(dirfd, path, st, flags) })
}

#[no_mangle]
pub unsafe extern "C" fn fstatat64(dirfd: c_int, path: *const c_char, st: *mut Stat, flags: c_int) -> c_int {
    if empty_path(path, flags) {
        // SAFETY: as above.
        return unsafe { fstat64(dirfd, st) };
    }
    // SAFETY: as above.
    run(|| stat_at(dirfd, path, st, flags), || unsafe { real::fstatat64(dirfd, path, st, flags) })
}

#[no_mangle]
pub unsafe extern "C" fn __xstat(ver: c_int, path: *const c_char, st: *mut Stat) -> c_int {
    if !served_version(ver) {
        // SAFETY: as above.
        return unsafe { real::__xstat(ver, path, st) };
    }
    // SAFETY: as above.
    run(|| stat_at(libc::AT_FDCWD, path, st, 0), || unsafe { real::__xstat(ver, path, st) })
}

#[no_mangle]
pub unsafe extern "C" fn __xstat64(ver: c_int, path: *const c_char, st: *mut Stat) -> c_int {
    if !served_version(ver) {
        // SAFETY: as above.
        return unsafe { real::__xstat64(ver, path, st) };
    }
    // SAFETY: as above.
    run(|| stat_at(libc::AT_FDCWD, path, st, 0), || unsafe { real::__xstat64(ver, path, st) })
}

#[no_mangle]
pub unsafe extern "C" fn __lxstat(ver: c_int, path: *const c_char, st: *mut Stat) -> c_int {
    if !served_version(ver) {
        // SAFETY: as above.
        return unsafe { real::__lxstat(ver, path, st) };
    }
    // SAFETY: as above.
    run(|| stat_at(libc::AT_FDCWD, path, st, libc::AT_SYMLINK_NOFOLLOW), || unsafe { real::__lxstat(ver, path, st) })
}

#[no_mangle]
pub unsafe extern "C" fn __lxstat64(ver: c_int, path: *const c_char, st: *mut Stat) -> c_int {
    if !served_version(ver) {
        // SAFETY: as above.
        return unsafe { real::__lxstat64(ver, path, st) };
    }
    // SAFETY: as above.
    run(|| stat_at(libc::AT_FDCWD, path, st, libc::AT_SYMLINK_NOFOLLOW), || unsafe { real::__lxstat64(ver, path, st) })
}

#[no_mangle]
pub unsafe extern "C" fn __fxstat(ver: c_int, fd: c_int, st: *mut Stat) -> c_int {
    if !served_version(ver) {
        // SAFETY: as above (the real one rejects the version).
        return unsafe { real::__fxstat(ver, fd, st) };
    }
    // SAFETY: as above.
    on_fd(fd, |f| stat_file(f, st), || unsafe { real::__fxstat(ver, fd, st) })
}

#[no_mangle]
pub unsafe extern "C" fn __fxstat64(ver: c_int, fd: c_int, st: *mut Stat) -> c_int {
    if !served_version(ver) {
        // SAFETY: as above.
        return unsafe { real::__fxstat64(ver, fd, st) };
    }
    // SAFETY: as above.
    on_fd(fd, |f| stat_file(f, st), || unsafe { real::__fxstat64(ver, fd, st) })
}

#[no_mangle]
pub unsafe extern "C" fn __fxstatat(ver: c_int, dirfd: c_int, path: *const c_char, st: *mut Stat, flags: c_int) -> c_int {
    if !served_version(ver) {
        // SAFETY: as above.
        return unsafe { real::__fxstatat(ver, dirfd, path, st, flags) };
    }
    // SAFETY: as above.
    unsafe { fstatat(dirfd, path, st, flags) }
}

#[no_mangle]
pub unsafe extern "C" fn __fxstatat64(ver: c_int, dirfd: c_int, path: *const c_char, st: *mut Stat, flags: c_int) -> c_int {
    if !served_version(ver) {
        // SAFETY: as above.
        return unsafe { real::__fxstatat64(ver, dirfd, path, st, flags) };
    }
    // SAFETY: as above.
    unsafe { fstatat64(dirfd, path, st, flags) }
}

const STATX_FLAGS: c_int = libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT | libc::AT_STATX_SYNC_TYPE;

#[no_mangle]
pub unsafe extern "C" fn statx(dirfd: c_int, path: *const c_char, flags: c_int, mask: c_uint, stx: *mut libc::statx) -> c_int {
    // SAFETY: as above.
    let kernel = || unsafe { real::statx(dirfd, path, flags, mask, stx) };
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
