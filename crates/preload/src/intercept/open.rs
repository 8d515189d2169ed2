//! open and its many spellings, unlink, and the calls that change what relative paths mean
//! (chdir, fchdir) or what new files get (umask).

use std::ffi::{c_char, c_int};

use libc::mode_t;

use super::{on_path, run};
use crate::path::Target;
use crate::{config, files, ops};
use crate::outcome::{Served, Unserved};

/// open on the user-level path; what that path leaves to the kernel is opened there by
/// `kernel`, and a directory so opened (a mount's root too) is recorded for the calls
/// relative to it and for listing it.
fn open_at(dirfd: c_int, path: *const c_char, flags: c_int, mode: mode_t, kernel: impl FnOnce() -> c_int) -> Served<c_int> {
    let mut t = Target::empty();
    if crate::path::resolve(&mut t, dirfd, path).is_some() {
        match ops::open(&t, flags, mode, true) {
            Err(Unserved::Kernel) => {}
            other => return other,
        }
    } else if crate::path::resolve_dir(&mut t, dirfd, path).is_none() {
        return Err(Unserved::Kernel);
    }
    // A directory: ours without the kernel opening it, when the flags allow.
    match super::dirs::open_dir(dirfd, path, flags, &t) {
        Err(Unserved::Kernel) => {}
        other => return other,
    }
    let fd = kernel();
    if fd < 0 {
        return Err(Unserved::Errno(config::errno()));
    }
    if flags & libc::O_PATH == 0 {
        // (The program's own O_PATH descriptor stays the kernel's: no listing, no fsync.)
        files::remember_dir(fd, t.instance, t.dev, t.abs(), flags, |l| crate::listing::release_dir(Some(l)));
    }
    Ok(fd)
}

hooks! {
    fn open(path: *const c_char, flags: c_int, mode: mode_t) -> c_int => |kernel| {
        run(|| open_at(libc::AT_FDCWD, path, flags, mode, kernel), kernel)
    }

    fn open64(path: *const c_char, flags: c_int, mode: mode_t) -> c_int => |kernel| {
        run(|| open_at(libc::AT_FDCWD, path, flags, mode, kernel), kernel)
    }

    fn __open_2(path: *const c_char, flags: c_int) -> c_int => |kernel| {
        run(|| open_at(libc::AT_FDCWD, path, flags, 0, kernel), kernel)
    }

    fn __open64_2(path: *const c_char, flags: c_int) -> c_int => |kernel| {
        run(|| open_at(libc::AT_FDCWD, path, flags, 0, kernel), kernel)
    }

    fn openat(dirfd: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> c_int => |kernel| {
        run(|| open_at(dirfd, path, flags, mode, kernel), kernel)
    }

    fn openat64(dirfd: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> c_int => |kernel| {
        run(|| open_at(dirfd, path, flags, mode, kernel), kernel)
    }

    fn __openat_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int => |kernel| {
        run(|| open_at(dirfd, path, flags, 0, kernel), kernel)
    }

    fn __openat64_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int => |kernel| {
        run(|| open_at(dirfd, path, flags, 0, kernel), kernel)
    }
}

const CREAT: c_int = libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC;

hooks! {
    fn creat(path: *const c_char, mode: mode_t) -> c_int => |kernel| {
        run(|| open_at(libc::AT_FDCWD, path, CREAT, mode, kernel), kernel)
    }

    fn creat64(path: *const c_char, mode: mode_t) -> c_int => |kernel| {
        run(|| open_at(libc::AT_FDCWD, path, CREAT, mode, kernel), kernel)
    }
}

fn unlink_at(dirfd: c_int, path: *const c_char, flags: c_int) -> Served<c_int> {
    if flags & !libc::AT_REMOVEDIR != 0 {
        return Err(Unserved::Kernel);
    }
    on_path(dirfd, path, |t| if flags & libc::AT_REMOVEDIR != 0 { crate::namespace::rmdir(t) } else { ops::unlink(t) }.map(|()| 0))
}

hooks! {
    fn unlink(path: *const c_char) -> c_int => |kernel| {
        run(|| unlink_at(libc::AT_FDCWD, path, 0), kernel)
    }

    fn unlinkat(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int => |kernel| {
        run(|| unlink_at(dirfd, path, flags), kernel)
    }
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

hooks! {
    fn chdir(path: *const c_char) -> c_int => |kernel| {
        cwd_changed(kernel())
    }

    fn fchdir(fd: c_int) -> c_int => |kernel| {
        cwd_changed(kernel())
    }

    fn umask(mask: mode_t) -> mode_t => |kernel| {
        let old = kernel();
        config::set_umask(mask);
        old
    }
}
