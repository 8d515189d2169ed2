//! Calls on a descriptor that only the kernel can serve (mmap, splice, libc
//! routines that use the descriptor internally): one of ours is first handed
//! over to the kernel (reopened through the FUSE mount, same offset, same number), then the
//! real function runs. Without this they would act on the reserved `/dev/null` descriptor.

use std::ffi::{c_int, c_uint, c_void};

use libc::{off64_t, off_t, size_t, ssize_t};

use super::{in_kernel, HandOver};

/// After `lockf(fd, cmd, ..)` returned `r`: notes a lock taken on a descriptor not ours.
fn taken_on_kernel(fd: c_int, cmd: c_int, r: c_int) {
    if r == 0 && !crate::files::is_ours(fd) {
        crate::locks::took_on_kernel(fd, None, cmd as libc::c_ulong);
    }
}

/// A lock call on `fd`: on the kernel's open file for one of ours (see `crate::locks`), on
/// `fd` itself otherwise (a passthrough file is handed over first).
fn locked(fd: c_int, on: impl FnOnce(c_int) -> c_int, kernel: impl FnOnce() -> c_int) -> c_int {
    match crate::locks::target(fd) {
        Ok(Some(a)) => on(a),
        Ok(None) => in_kernel(fd, HandOver::Lock, kernel),
        Err(e) => {
            crate::config::set_errno(e);
            -1
        }
    }
}

hooks! {
    fn mmap(addr: *mut c_void, len: size_t, prot: c_int, flags: c_int, fd: c_int, off: off_t) -> *mut c_void => |kernel| {
        in_kernel(fd, HandOver::Mmap, kernel)
    }

    fn mmap64(addr: *mut c_void, len: size_t, prot: c_int, flags: c_int, fd: c_int, off: off64_t) -> *mut c_void => |kernel| {
        in_kernel(fd, HandOver::Mmap, kernel)
    }

    fn flock(fd: c_int, op: c_int) -> c_int => |kernel| {
        // SAFETY: the caller's operation on the kernel's open file of the same file.
        locked(fd, |a| unsafe { crate::real::flock(a, op) }, kernel)
    }

    fn lockf(fd: c_int, cmd: c_int, len: off_t) -> c_int => |kernel| {
        // SAFETY: as for flock.
        let r = locked(fd, |a| unsafe { crate::real::lockf(a, cmd, len) }, kernel);
        taken_on_kernel(fd, cmd, r);
        r
    }

    fn lockf64(fd: c_int, cmd: c_int, len: off64_t) -> c_int => |kernel| {
        // SAFETY: as for flock.
        let r = locked(fd, |a| unsafe { crate::real::lockf64(a, cmd, len) }, kernel);
        taken_on_kernel(fd, cmd, r);
        r
    }

    fn tee(fd_in: c_int, fd_out: c_int, len: size_t, flags: c_uint) -> ssize_t => |kernel| {
        // tee moves between two pipes only: one of our files is a regular file, which the
        // kernel refuses with EINVAL (nothing to hand over for that).
        if crate::files::get(fd_in).is_some() || crate::files::get(fd_out).is_some() {
            crate::config::set_errno(libc::EINVAL);
            return -1;
        }
        kernel()
    }
}
