//! Descriptor bookkeeping: close, dup, fcntl. The kernel keeps doing what it does with the
//! reserved descriptors (numbers, `FD_CLOEXEC`); this keeps our table in step with it.

use std::ffi::{c_int, c_uint, c_ulong};
use std::sync::atomic::Ordering;

use super::in_kernel;
use crate::config::Busy;
use crate::files::{self, LastRef};
use crate::{ops, real};

/// Releases a file at the service once its last descriptor is gone.
fn release(last: Option<LastRef>) {
    if let Some(l) = last {
        let _busy = Busy::enter();
        ops::release(&l);
    }
}

hooks! {
    fn close(fd: c_int) -> c_int => |kernel| {
        if files::devnull_in_the_way(fd) || crate::client::socket_in_the_way(fd) {
            // Not a descriptor of the program's.
            crate::config::set_errno(libc::EBADF);
            return -1;
        }
        if let Some((_, f)) = files::get(fd) {
            crate::locks::closing(f);
        }
        let last = files::forget_closed(fd);
        crate::listing::close_dir(fd);
        // SAFETY: closing the caller's descriptor (ours or not: the kernel one goes either way).
        let r = kernel();
        let e = crate::config::errno();
        files::let_go_beside(fd);
        release(last);
        crate::config::set_errno(e);
        r
    }
}

/// Forgets our descriptors in `first..=last` and moves our `/dev/null` descriptor out of the
/// range (the kernel is about to close all of it).
fn forget_range(first: c_uint, last: c_uint) {
    let mut ours = Vec::new();
    files::ours(&mut ours);
    for fd in ours.into_iter().filter(|fd| (first..=last).contains(&(*fd as c_uint))) {
        if let Some((_, f)) = files::get(fd) {
            crate::locks::closing(f);
        }
        release(files::forget_closed(fd));
    }
    files::before_close_range(first as usize, last as usize);
    files::forget_dirs_in(first as usize, last as usize, |l| crate::listing::release_dir(Some(l)));
    crate::client::move_sockets(c_int::try_from(first).unwrap_or(c_int::MAX), c_int::try_from(last).unwrap_or(c_int::MAX));
    let d = files::devnull_fd();
    if d >= 0 && (first..=last).contains(&(d as c_uint)) {
        files::move_devnull(c_int::try_from(last).unwrap_or(c_int::MAX));
    }
}

hooks! {
    fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int => |kernel| {
        if flags & libc::CLOSE_RANGE_CLOEXEC as c_int == 0 {
            forget_range(first, last);
        }
        kernel()
    }

    fn closefrom(first: c_int) -> c_int => |kernel| {
        forget_range(first.max(0) as c_uint, c_uint::MAX);
        kernel()
    }
}

/// After the kernel duplicated `old` onto `new` (result `r`), `new` names what `old` names.
fn duplicated(old: c_int, new: c_int, r: c_int) -> c_int {
    if r < 0 {
        return r;
    }
    if old != new {
        if let Some((_, f)) = files::get(new) {
            crate::locks::closing(f);
        }
        files::let_go_beside(new);
    }
    let replaced = files::forget_fd(new);
    crate::listing::release_dir(files::dup_dir(old, new));
    if let Some((idx, _)) = files::get(old) {
        files::share(new, idx);
        if new <= 2 {
            // stdin/stdout/stderr have stdio streams, which libc drives with its internal
            // read/write: those must reach the file, so the kernel takes it over.
            let _ = super::hand_over(new, super::HandOver::Stdio);
        }
    }
    release(replaced);
    r
}

hooks! {
    fn dup(fd: c_int) -> c_int => |kernel| {
        let r = kernel();
        duplicated(fd, r, r)
    }

    fn dup2(old: c_int, new: c_int) -> c_int => |kernel| {
        if old == new {
            return kernel();
        }
        if files::devnull_in_the_way(new) {
            files::move_devnull(new);
        }
        if crate::client::socket_in_the_way(new) {
            crate::client::move_sockets(new, new);
        }
        let r = kernel();
        duplicated(old, new, r)
    }

    fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int => |kernel| {
        if old != new && files::devnull_in_the_way(new) {
            files::move_devnull(new);
        }
        if old != new && crate::client::socket_in_the_way(new) {
            crate::client::move_sockets(new, new);
        }
        let r = kernel();
        if old == new {
            return r;
        }
        duplicated(old, new, r)
    }
}

/// fcntl on one of our descriptors; `real_fcntl` is fcntl or fcntl64.
fn fcntl_ours(fd: c_int, cmd: c_int, arg: c_ulong, real_fcntl: unsafe fn(c_int, c_int, c_ulong) -> c_int) -> c_int {
    if files::devnull_in_the_way(fd) || crate::client::socket_in_the_way(fd) {
        // A number the program never opened (shells probe numbers with F_GETFD before they
        // take them, and would otherwise save and restore our descriptor).
        crate::config::set_errno(libc::EBADF);
        return -1;
    }
    if matches!(cmd, libc::F_DUPFD | libc::F_DUPFD_CLOEXEC) {
        // The kernel picks the number; the copy names what `fd` names (one of our files, a
        // directory we know of, as fts makes, or neither).
        // SAFETY: the caller's fcntl arguments, unchanged, to libc's fcntl (`real_fcntl`).
        let r = unsafe { real_fcntl(fd, cmd, arg) };
        return duplicated(fd, r, r);
    }
    let Some((_, f)) = files::get(fd) else {
        if !matches!(cmd, libc::F_GETFD | libc::F_SETFD) {
            // Status flags, locks, leases...: on a directory open in the kernel.
            if let Err(e) = crate::listing::open_dir_in_kernel(fd) {
                crate::config::set_errno(e);
                return -1;
            }
        }
        // SAFETY: not our descriptor: the caller's fcntl arguments, unchanged, to libc's fcntl.
        let r = unsafe { real_fcntl(fd, cmd, arg) };
        if r == 0 && matches!(cmd, libc::F_SETLK | libc::F_SETLKW) {
            crate::locks::took_on_kernel(fd, Some(cmd), arg);
        }
        return r;
    };
    if f.passthrough() && matches!(cmd, libc::F_GETFL | libc::F_SETFL) {
        // Status flags live in the kernel, on the backing file's descriptor; the table keeps
        // a copy for a hand-over.
        // SAFETY: the caller's fcntl arguments, unchanged, to libc's fcntl.
        let r = unsafe { real_fcntl(fd, cmd, arg) };
        if cmd == libc::F_SETFL && r == 0 {
            let settable = (libc::O_APPEND | libc::O_NONBLOCK | libc::O_NOATIME | libc::O_ASYNC) as u32;
            let old = f.flags.load(Ordering::Relaxed);
            f.flags.store((old & !settable) | (arg as u32 & settable), Ordering::Relaxed);
        }
        return r;
    }
    match cmd {
        // Descriptor flags live in the kernel, on the reserved descriptor.
        // SAFETY: descriptor flags of the reserved descriptor, which the kernel keeps; an integer argument.
        libc::F_GETFD | libc::F_SETFD => unsafe { real_fcntl(fd, cmd, arg) },
        libc::F_GETFL => (f.flags.load(Ordering::Relaxed) as c_int) | libc::O_LARGEFILE,
        libc::F_SETFL => {
            let settable = (libc::O_APPEND | libc::O_NONBLOCK | libc::O_NOATIME | libc::O_ASYNC) as u32;
            let old = f.flags.load(Ordering::Relaxed);
            f.flags.store((old & !settable) | (arg as u32 & settable), Ordering::Relaxed);
            if files::anchored(f) {
                // The descriptor is the kernel's open file too (for its locks), which the
                // kernel alone serves after a hand-over.
                // SAFETY: F_SETFL with the caller's integer flags on the caller's descriptor.
                unsafe { real_fcntl(fd, cmd, arg) };
            }
            0
        }
        // Record locks go to the kernel's lock table of the file on the FUSE mount (see
        // `crate::locks`); the descriptor stays ours.
        libc::F_GETLK | libc::F_SETLK | libc::F_SETLKW | libc::F_OFD_GETLK | libc::F_OFD_SETLK | libc::F_OFD_SETLKW => match crate::locks::target(fd) {
            Ok(Some(a)) => {
                let p = arg as *mut libc::flock;
                // SAFETY: the caller's `struct flock`, which the kernel reads too (a pointer
                // that is not one faults here rather than giving EFAULT).
                let from_end = !p.is_null() && i32::from(unsafe { (*p).l_whence }) == libc::SEEK_END;
                // From the end the service knows (the kernel's size of the file may be behind
                // writes made at user level since it was opened there); asked inside the
                // library, then let go of before a wait (a signal handler's calls during it
                // take the user-level path as any other's).
                let size = from_end.then(|| crate::config::Busy::enter().and_then(|_busy| crate::ops::getattr(f).ok()).and_then(|a| i64::try_from(a.size).ok())).flatten();
                if let Some(size) = size {
                    // SAFETY: as above.
                    let mut copy = unsafe { p.read() };
                    copy.l_start = copy.l_start.saturating_add(size);
                    copy.l_whence = libc::SEEK_SET as i16;
                    // SAFETY: the caller's command on its descriptor, with a local copy.
                    let r = unsafe { real_fcntl(a, cmd, std::ptr::addr_of_mut!(copy) as c_ulong) };
                    if r == 0 && matches!(cmd, libc::F_GETLK | libc::F_OFD_GETLK) {
                        // SAFETY: the caller's `struct flock`, written as the kernel would.
                        unsafe { p.write(copy) };
                    }
                    return r;
                }
                // SAFETY: the caller's lock command and `struct flock` pointer, unchanged, on
                // the caller's descriptor, now the kernel's open file of the same file.
                unsafe { real_fcntl(a, cmd, arg) }
            }
            // SAFETY: as below, once the descriptor is the kernel's.
            Ok(None) => in_kernel(fd, super::HandOver::Lock, || unsafe { real_fcntl(fd, cmd, arg) }),
            Err(e) => {
                crate::config::set_errno(e);
                -1
            }
        },
        // Locks, leases, seals, pipe sizes...: the kernel's, on the file reopened there.
        // SAFETY: the caller's fcntl arguments, unchanged, once the descriptor is the kernel's.
        _ => in_kernel(fd, super::HandOver::Lock, || unsafe { real_fcntl(fd, cmd, arg) }),
    }
}

#[no_mangle]
pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    fcntl_ours(fd, cmd, arg, real::fcntl)
}

#[no_mangle]
pub unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    fcntl_ours(fd, cmd, arg, real::fcntl64)
}
