//! Calls on a descriptor that only the kernel can serve (mmap, locks, splice, libc
//! routines that use the descriptor internally): one of ours is first handed
//! over to the kernel (reopened through the FUSE mount, same offset, same number), then the
//! real function runs. Without this they would act on the reserved `/dev/null` descriptor.

use std::ffi::{c_int, c_long, c_uint, c_void};
use std::sync::atomic::AtomicUsize;

use libc::{loff_t, off64_t, off_t, size_t, ssize_t};

use super::hand_over;
use crate::config::set_errno;
use crate::real::{lookup, Failure};

macro_rules! kernel_only {
    ($($name:ident([$($fd:ident),+] $($arg:ident: $t:ty),*) -> $r:ty;)*) => {
        $(
            #[no_mangle]
            pub unsafe extern "C" fn $name($($arg: $t),*) -> $r {
                static SLOT: AtomicUsize = AtomicUsize::new(0);
                $(
                    if let Err(e) = hand_over($fd) {
                        set_errno(e);
                        return <$r as Failure>::failure();
                    }
                )+
                let addr = lookup(&SLOT, concat!(stringify!($name), "\0").as_bytes());
                if addr == 0 {
                    set_errno(libc::ENOSYS);
                    return <$r as Failure>::failure();
                }
                // SAFETY: `addr` is libc's function of this name with this C prototype
                // (variadic ones take their optional argument as a fixed one).
                let f: unsafe extern "C" fn($($t),*) -> $r = unsafe { std::mem::transmute::<usize, _>(addr) };
                // SAFETY: forwarding the caller's arguments.
                unsafe { f($($arg),*) }
            }
        )*
    };
}

kernel_only! {
    mmap([fd] addr: *mut c_void, len: size_t, prot: c_int, flags: c_int, fd: c_int, off: off_t) -> *mut c_void;
    mmap64([fd] addr: *mut c_void, len: size_t, prot: c_int, flags: c_int, fd: c_int, off: off64_t) -> *mut c_void;
    flock([fd] fd: c_int, op: c_int) -> c_int;
    lockf([fd] fd: c_int, cmd: c_int, len: off_t) -> c_int;
    lockf64([fd] fd: c_int, cmd: c_int, len: off64_t) -> c_int;
    fallocate([fd] fd: c_int, mode: c_int, off: off_t, len: off_t) -> c_int;
    fallocate64([fd] fd: c_int, mode: c_int, off: off64_t, len: off64_t) -> c_int;
    splice([fd_in, fd_out] fd_in: c_int, off_in: *mut loff_t, fd_out: c_int, off_out: *mut loff_t, len: size_t, flags: c_uint) -> ssize_t;
    tee([fd_in, fd_out] fd_in: c_int, fd_out: c_int, len: size_t, flags: c_uint) -> ssize_t;
    syncfs([fd] fd: c_int) -> c_int;
    fpathconf([fd] fd: c_int, name: c_int) -> c_long;
}


macro_rules! kernel_only_errno_result {
    ($($name:ident($($arg:ident: $t:ty),*);)*) => {
        $(
            #[no_mangle]
            pub unsafe extern "C" fn $name(fd: c_int, $($arg: $t),*) -> c_int {
                static SLOT: AtomicUsize = AtomicUsize::new(0);
                // These return an error number instead of setting errno.
                if let Err(e) = hand_over(fd) {
                    return e;
                }
                let addr = lookup(&SLOT, concat!(stringify!($name), "\0").as_bytes());
                if addr == 0 {
                    return libc::ENOSYS;
                }
                // SAFETY: libc's function of this name with this C prototype.
                let f: unsafe extern "C" fn(c_int, $($t),*) -> c_int = unsafe { std::mem::transmute::<usize, _>(addr) };
                // SAFETY: forwarding the caller's arguments.
                unsafe { f(fd, $($arg),*) }
            }
        )*
    };
}

kernel_only_errno_result! {
    posix_fallocate(off: off_t, len: off_t);
    posix_fallocate64(off: off64_t, len: off64_t);
}
