//! open and its many spellings, unlink, and the calls that change what relative paths mean
//! (chdir, fchdir) or what new files get (umask).

use std::ffi::{c_char, c_int};

use libc::mode_t;

use super::{on_path, run};
use crate::path::Target;
use crate::{config, files, ops, real};

/// open on the user-level path; what that path leaves to the kernel is opened there by
/// `kernel`, and a directory so opened (a mount's root too) is recorded for the calls
/// relative to it and for listing it.
fn open_at(dirfd: c_int, path: *const c_char, flags: c_int, mode: mode_t, kernel: impl FnOnce() -> c_int) -> Result<c_int, c_int> {
    let mut t = Target::empty();
    if crate::path::resolve(&mut t, dirfd, path).is_some() {
        match ops::open(&t, flags, mode) {
            Err(ops::FALLBACK) => {}
            other => return other,
        }
    } else if crate::path::resolve_dir(&mut t, dirfd, path).is_none() {
        return Err(ops::FALLBACK);
    }
    let fd = kernel();
    if fd < 0 {
        return Err(config::errno());
    }
    files::remember_dir(fd, t.instance, t.dev, t.abs());
    Ok(fd)
}

#[no_mangle]
pub unsafe extern "C" fn open(path: *const c_char, flags: c_int, mode: mode_t) -> c_int {
    // SAFETY: forwarding the caller's arguments unchanged.
    let kernel = || unsafe { real::open(path, flags, mode) };
    run(|| open_at(libc::AT_FDCWD, path, flags, mode, kernel), kernel)
}

#[no_mangle]
pub unsafe extern "C" fn open64(path: *const c_char, flags: c_int, mode: mode_t) -> c_int {
    // SAFETY: forwarding the caller's arguments unchanged.
    let kernel = || unsafe { real::open64(path, flags, mode) };
    run(|| open_at(libc::AT_FDCWD, path, flags, mode, kernel), kernel)
}

#[no_mangle]
pub unsafe extern "C" fn __open_2(path: *const c_char, flags: c_int) -> c_int {
    // SAFETY: forwarding the caller's arguments unchanged.
    let kernel = || unsafe { real::__open_2(path, flags) };
    run(|| open_at(libc::AT_FDCWD, path, flags, 0, kernel), kernel)
}

#[no_mangle]
pub unsafe extern "C" fn __open64_2(path: *const c_char, flags: c_int) -> c_int {
    // SAFETY: forwarding the caller's arguments unchanged.
    let kernel = || unsafe { real::__open64_2(path, flags) };
    run(|| open_at(libc::AT_FDCWD, path, flags, 0, kernel), kernel)
}

#[no_mangle]
pub unsafe extern "C" fn openat(dirfd: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> c_int {
    // SAFETY: forwarding the caller's arguments unchanged.
    let kernel = || unsafe { real::openat(dirfd, path, flags, mode) };
    run(|| open_at(dirfd, path, flags, mode, kernel), kernel)
}

#[no_mangle]
pub unsafe extern "C" fn openat64(dirfd: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> c_int {
    // SAFETY: forwarding the caller's arguments unchanged.
    let kernel = || unsafe { real::openat64(dirfd, path, flags, mode) };
    run(|| open_at(dirfd, path, flags, mode, kernel), kernel)
}

#[no_mangle]
pub unsafe extern "C" fn __openat_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    // SAFETY: forwarding the caller's arguments unchanged.
    let kernel = || unsafe { real::__openat_2(dirfd, path, flags) };
    run(|| open_at(dirfd, path, flags, 0, kernel), kernel)
}

#[no_mangle]
pub unsafe extern "C" fn __openat64_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    // SAFETY: forwarding the caller's arguments unchanged.
    let kernel = || unsafe { real::__openat64_2(dirfd, path, flags) };
    run(|| open_at(dirfd, path, flags, 0, kernel), kernel)
}

const CREAT: c_int = libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC;

#[no_mangle]
pub unsafe extern "C" fn creat(path: *const c_char, mode: mode_t) -> c_int {
    // SAFETY: forwarding the caller's arguments unchanged.
    let kernel = || unsafe { real::creat(path, mode) };
    run(|| open_at(libc::AT_FDCWD, path, CREAT, mode, kernel), kernel)
}

#[no_mangle]
pub unsafe extern "C" fn creat64(path: *const c_char, mode: mode_t) -> c_int {
    // SAFETY: forwarding the caller's arguments unchanged.
    let kernel = || unsafe { real::creat64(path, mode) };
    run(|| open_at(libc::AT_FDCWD, path, CREAT, mode, kernel), kernel)
}

fn unlink_at(dirfd: c_int, path: *const c_char, flags: c_int) -> Result<c_int, c_int> {
    if flags & !libc::AT_REMOVEDIR != 0 {
        return Err(ops::FALLBACK);
    }
    on_path(dirfd, path, |t| if flags & libc::AT_REMOVEDIR != 0 { crate::names::rmdir(t) } else { ops::unlink(t) }.map(|()| 0))
}

#[no_mangle]
pub unsafe extern "C" fn unlink(path: *const c_char) -> c_int {
    // SAFETY: as above.
    run(|| unlink_at(libc::AT_FDCWD, path, 0), || unsafe { real::unlink(path) })
}

#[no_mangle]
pub unsafe extern "C" fn unlinkat(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    // SAFETY: as above.
    run(|| unlink_at(dirfd, path, flags), || unsafe { real::unlinkat(dirfd, path, flags) })
}

/// After a successful change of directory, relative paths mean something else.
fn cwd_changed(r: c_int) -> c_int {
    if r == 0 {
        let e = config::errno();
        let _ = run(
            || {
                config::refresh_cwd();
                Ok(0)
            },
            || 0,
        );
        config::set_errno(e);
    }
    r
}

#[no_mangle]
pub unsafe extern "C" fn chdir(path: *const c_char) -> c_int {
    // SAFETY: forwarding the caller's argument.
    cwd_changed(unsafe { real::chdir(path) })
}

#[no_mangle]
pub unsafe extern "C" fn fchdir(fd: c_int) -> c_int {
    // SAFETY: as above.
    cwd_changed(unsafe { real::fchdir(fd) })
}

#[no_mangle]
pub unsafe extern "C" fn umask(mask: mode_t) -> mode_t {
    // SAFETY: as above.
    let old = unsafe { real::umask(mask) };
    config::set_umask(mask);
    old
}
