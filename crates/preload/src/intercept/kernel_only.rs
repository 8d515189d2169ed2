//! Calls on a descriptor that only the kernel can serve (mmap, locks, splice, libc
//! routines that use the descriptor internally): one of ours is first handed
//! over to the kernel (reopened through the FUSE mount, same offset, same number), then the
//! real function runs. Without this they would act on the reserved `/dev/null` descriptor.

use std::ffi::{c_int, c_uint, c_void};

use libc::{off64_t, off_t, size_t, ssize_t};

use super::{in_kernel, HandOver};

hooks! {
    fn mmap(addr: *mut c_void, len: size_t, prot: c_int, flags: c_int, fd: c_int, off: off_t) -> *mut c_void => |kernel| {
        in_kernel(fd, HandOver::Mmap, kernel)
    }

    fn mmap64(addr: *mut c_void, len: size_t, prot: c_int, flags: c_int, fd: c_int, off: off64_t) -> *mut c_void => |kernel| {
        in_kernel(fd, HandOver::Mmap, kernel)
    }

    fn flock(fd: c_int, op: c_int) -> c_int => |kernel| {
        in_kernel(fd, HandOver::Lock, kernel)
    }

    fn lockf(fd: c_int, cmd: c_int, len: off_t) -> c_int => |kernel| {
        in_kernel(fd, HandOver::Lock, kernel)
    }

    fn lockf64(fd: c_int, cmd: c_int, len: off64_t) -> c_int => |kernel| {
        in_kernel(fd, HandOver::Lock, kernel)
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
