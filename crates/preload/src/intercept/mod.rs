//! The libc functions this library replaces. Each one serves its call on the user-level path
//! when the path or descriptor is ours, and otherwise (or when the service answers
//! [`Unserved::Kernel`]) calls the real libc function, which reaches the same instance through the
//! kernel's FUSE mount when the path is under one.
//!
//! Calls not listed here go to libc unchanged; path calls on mount paths (directory
//! listings, statfs, ...) then take the legacy path, which is correct, only slower.

/// Declares the library's replacements of libc functions, the one way a hook is written:
///
/// ```text
/// hooks! {
///     fn unlink(path: *const c_char) -> c_int => |kernel| {
///         run(|| unlink_at(libc::AT_FDCWD, path, 0), kernel)
///     }
/// }
/// ```
///
/// exports `unlink` with libc's prototype; its body gets `kernel`, a closure (`Copy`) that
/// makes the caller's call, unchanged, through the real libc function of the same name.
macro_rules! hooks {
    ($(
        $(#[$attr:meta])*
        fn $name:ident($($arg:ident: $t:ty),* $(,)?) -> $r:ty => |$kernel:ident| $body:block
    )*) => {$(
        $(#[$attr])*
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $t),*) -> $r {
            // SAFETY: this function has the prototype of libc's function of the same name, so
            // its caller upholds that function's contract on every pointer, buffer and
            // descriptor it passes; `$kernel` passes exactly those arguments, unchanged, to
            // that very libc function (`real::$name`, declared with the same prototype).
            #[allow(unused_variables)]
            let $kernel = || unsafe { $crate::real::$name($($arg),*) };
            $body
        }
    )*};
}

mod attrs;
mod creds;
mod dirs;
mod emulated;
#[cfg(target_arch = "x86_64")]
mod exec_list;
mod fd;
mod fsstats;
mod io;
mod kernel_only;
mod names;
mod open;
pub(crate) mod process;
mod realpath;
mod roots;
mod stat;
mod stdio;

use std::ffi::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};

pub(crate) use polytropon_ipc::HandOver;

use crate::config::{set_errno, Busy};
use crate::files::{self, File};
use crate::path::Target;
use crate::real::Failure;
use crate::outcome::{Served, Unserved};

/// Runs `user` (the user-level path) unless this thread is already inside the library;
/// runs `kernel` when it was, or when `user` asks for the fallback.
fn run<T: Failure>(user: impl FnOnce() -> Served<T>, kernel: impl FnOnce() -> T) -> T {
    let Some(busy) = Busy::enter() else { return kernel() };
    let r = catch_unwind(AssertUnwindSafe(user));
    drop(busy);
    match r {
        Ok(Ok(v)) => v,
        Ok(Err(Unserved::Kernel)) => kernel(),
        Ok(Err(Unserved::Errno(e))) => {
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
fn on_path<T>(dirfd: c_int, path: *const c_char, f: impl FnOnce(&Target) -> Served<T>) -> Served<T> {
    let mut t = Target::empty();
    crate::path::resolve(&mut t, dirfd, path).ok_or(Unserved::Kernel)?;
    f(&t)
}

/// For a call on descriptor `fd`: `user` when it is ours; otherwise, or on fallback, the
/// kernel (after handing an ours over to it).
fn on_fd<T: Failure>(fd: c_int, user: impl FnOnce(&'static File) -> Served<T>, kernel: impl FnOnce() -> T) -> T {
    let Some((_, f)) = files::get(fd) else { return kernel() };
    run(|| user(f), || in_kernel(fd, HandOver::Unserved, kernel))
}

/// As [`on_fd`], for calls the kernel serves only on an open file (`fchmod`, xattrs...): a
/// directory of ours the kernel never opened is opened first.
fn on_open_fd<T: Failure>(fd: c_int, user: impl FnOnce(&'static File) -> Served<T>, kernel: impl FnOnce() -> T) -> T {
    on_fd(fd, user, || dirs::in_kernel_dir(fd, kernel))
}

/// As [`on_fd`], for the data calls (read, write, seek, sync, truncate): a file whose
/// descriptors are the backing file's has them served by the kernel, on the same descriptor.
fn on_data_fd<T: Failure>(fd: c_int, user: impl FnOnce(&'static File) -> Served<T>, kernel: impl FnOnce() -> T) -> T {
    match files::get(fd) {
        Some((_, f)) if f.passthrough() => {
            if !f.watch_moved(crate::client::change_word) {
                f.count_passed_call();
                return kernel();
            }
            // A lower file passed read-only was copied up or changed since: the service
            // serves it from now on.
            f.leave_passthrough(fd);
            run(|| user(f), || data_fallback(fd, f, kernel))
        }
        // A busy file of a shared backend: its data calls the kernel's from now on, its page
        // cache serving them (one thread moves it; any failure leaves it at user level).
        Some((_, f)) if f.kernel_cached() => {
            if f.busy() && took_kernel_open(fd, f) {
                f.count_passed_call();
                return kernel();
            }
            run(|| user(f), || data_fallback(fd, f, kernel))
        }
        // A file written on and on: its backing file from the service, then the kernel's.
        Some((_, f)) if f.busy() && took_backing(fd, f) => {
            f.count_passed_call();
            kernel()
        }
        Some((_, f)) => run(|| user(f), || data_fallback(fd, f, kernel)),
        None => dirs::in_kernel_dir(fd, kernel),
    }
}

/// The fallback of a data call that found file `f` (at `fd`) at user level: the kernel on the
/// same descriptor if, meanwhile, another thread put the file's backing file there (the call
/// waited for the position lock the move held, then found it passed); otherwise the file is
/// handed over. Handing a passed file over would reopen it through the mount at the
/// user-level offset the move left behind: threads writing at the shared offset would write
/// over each other.
fn data_fallback<T: Failure>(fd: c_int, f: &'static File, kernel: impl FnOnce() -> T) -> T {
    if f.passthrough() {
        f.count_passed_call();
        return kernel();
    }
    in_kernel(fd, HandOver::Unserved, kernel)
}

/// Asks for the backing file of `f` (at `fd`), which just proved busy, unless this thread is
/// already inside the library; whether the kernel serves the file from now on.
fn took_backing(fd: c_int, f: &'static File) -> bool {
    let Some(busy) = Busy::enter() else { return false };
    let took = catch_unwind(AssertUnwindSafe(|| crate::ops::pass_busy(fd, f))).unwrap_or(false);
    drop(busy);
    took
}

/// Puts a kernel open file of `f` (at `fd`), which just proved busy, in place, unless this
/// thread is already inside the library; whether the kernel serves its data calls from now on
/// (counted as a hand-over, `busy`).
fn took_kernel_open(fd: c_int, f: &'static File) -> bool {
    let Some(busy) = Busy::enter() else { return false };
    let took = catch_unwind(AssertUnwindSafe(|| f.take_passable() && f.may_take_backing() && f.take_kernel_open(fd))).unwrap_or(false);
    if took {
        notice(f.instance.load(std::sync::atomic::Ordering::Acquire), HandOver::Busy);
    }
    drop(busy);
    took
}

/// Tells the service a file of `instance` went to the kernel, and why (counted for
/// `inspect`; a notice the post ring cannot take is dropped).
fn notice(instance: u32, why: HandOver) {
    let notice = polytropon_ipc::Descriptor { op: polytropon_ipc::Op::HandOver as u32, instance, handle: why as u64, ..Default::default() };
    let _ = catch_unwind(AssertUnwindSafe(|| crate::client::post(notice)));
}

/// Hands `fd` over to the kernel if it is ours (see [`files::materialize`]), and tells the
/// service why (counted for `inspect`; a notice the post ring cannot take is dropped).
pub(crate) fn hand_over(fd: c_int, why: HandOver) -> Result<(), c_int> {
    if !files::is_ours(fd) {
        // A directory the kernel never opened is opened now (nothing to count: its record
        // stays ours).
        return crate::listing::open_dir_in_kernel(fd);
    }
    let _busy = Busy::enter();
    let instance = files::get(fd).map(|(_, f)| f.instance.load(std::sync::atomic::Ordering::Acquire));
    if let Some((_, f)) = files::get(fd).filter(|(_, f)| f.passthrough()) {
        // Written through its backing descriptor, the file may be stale on the FUSE side: the
        // service drops that cache when asked about the file, before the kernel reopens it.
        let _ = catch_unwind(AssertUnwindSafe(|| crate::ops::getattr(f)));
    }
    if let Some((_, f)) = files::get(fd).filter(|(_, f)| files::anchored(f)) {
        // Its descriptors are the kernel's open file already: the kernel must know how far
        // the file goes before it serves it.
        if let Ok(Ok(a)) = catch_unwind(AssertUnwindSafe(|| crate::ops::getattr(f))) {
            files::refresh_anchor(fd, a.size);
        }
    }
    let last = catch_unwind(AssertUnwindSafe(|| files::materialize(fd))).unwrap_or(Err(libc::EIO))?;
    if let Some(l) = last {
        crate::ops::release(&l);
    }
    if let Some(instance) = instance {
        notice(instance, why);
    }
    Ok(())
}

/// Hands `fd` to the kernel if it is ours (for reason `why`), then runs `kernel`.
fn in_kernel<T: Failure>(fd: c_int, why: HandOver, kernel: impl FnOnce() -> T) -> T {
    if let Err(e) = hand_over(fd, why) {
        set_errno(e);
        return T::failure();
    }
    kernel()
}
