//! The libc functions this library replaces. Each one serves its call on the user-level path
//! when the path or descriptor is ours, and otherwise (or when the service answers
//! [`FALLBACK`]) calls the real libc function, which reaches the same instance through the
//! kernel's FUSE mount when the path is under one.
//!
//! Calls not listed here go to libc unchanged; path calls on mount paths (directory
//! listings, statfs, ...) then take the legacy path, which is correct, only slower.

mod attrs;
mod dirs;
mod emulated;
mod fd;
mod fsstats;
mod io;
mod kernel_only;
mod names;
mod open;
mod realpath;
mod stat;
mod stdio;

use std::ffi::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::config::{set_errno, Busy};
use crate::files::{self, File};
use crate::ops::FALLBACK;
use crate::path::Target;
use crate::real::Failure;

/// Runs `user` (the user-level path) unless this thread is already inside the library;
/// runs `kernel` when it was, or when `user` asks for the fallback.
fn run<T: Failure>(user: impl FnOnce() -> Result<T, c_int>, kernel: impl FnOnce() -> T) -> T {
    let Some(busy) = Busy::enter() else { return kernel() };
    let r = catch_unwind(AssertUnwindSafe(user));
    drop(busy);
    match r {
        Ok(Ok(v)) => v,
        Ok(Err(FALLBACK)) => kernel(),
        Ok(Err(e)) => {
            set_errno(e);
            T::failure()
        }
        Err(_) => {
            set_errno(libc::EIO);
            T::failure()
        }
    }
}

/// Runs `f` on the target of `path` (relative to `dirfd`), or falls back when it is not ours.
fn on_path<T>(dirfd: c_int, path: *const c_char, f: impl FnOnce(&Target) -> Result<T, c_int>) -> Result<T, c_int> {
    let mut t = Target::empty();
    crate::path::resolve(&mut t, dirfd, path).ok_or(FALLBACK)?;
    f(&t)
}

/// For a call on descriptor `fd`: `user` when it is ours; otherwise, or on fallback, the
/// kernel (after handing an ours over to it).
fn on_fd<T: Failure>(fd: c_int, user: impl FnOnce(&'static File) -> Result<T, c_int>, kernel: impl FnOnce() -> T) -> T {
    let Some((_, f)) = files::get(fd) else { return kernel() };
    run(|| user(f), || in_kernel(fd, kernel))
}

/// Hands `fd` over to the kernel if it is ours (see [`files::materialize`]).
pub(crate) fn hand_over(fd: c_int) -> Result<(), c_int> {
    if !files::is_ours(fd) {
        return Ok(());
    }
    let _busy = Busy::enter();
    catch_unwind(AssertUnwindSafe(|| files::materialize(fd))).unwrap_or(Err(libc::EIO))
}

/// Hands `fd` to the kernel if it is ours, then runs `kernel`.
fn in_kernel<T: Failure>(fd: c_int, kernel: impl FnOnce() -> T) -> T {
    if let Err(e) = hand_over(fd) {
        set_errno(e);
        return T::failure();
    }
    kernel()
}
