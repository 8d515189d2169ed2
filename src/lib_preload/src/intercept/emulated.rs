//! Calls on our descriptors answered without the kernel: advice that may be ignored, the
//! terminal probe, and in-kernel copies done as reads and writes through the interceptors.

use std::ffi::{c_int, c_ulong, c_void};

use libc::{loff_t, off64_t, off_t, size_t, ssize_t};

use super::{hand_over, io};
use crate::config::set_errno;
use crate::files::is_ours;
use crate::real;

#[no_mangle]
pub unsafe extern "C" fn posix_fadvise(fd: c_int, off: off_t, len: off_t, advice: c_int) -> c_int {
    if is_ours(fd) {
        // Advice; the service's backend client does its own read-ahead.
        return 0;
    }
    // SAFETY: forwarding the caller's arguments.
    unsafe { real::posix_fadvise(fd, off, len, advice) }
}

#[no_mangle]
pub unsafe extern "C" fn posix_fadvise64(fd: c_int, off: off64_t, len: off64_t, advice: c_int) -> c_int {
    if is_ours(fd) {
        return 0;
    }
    // SAFETY: as above.
    unsafe { real::posix_fadvise64(fd, off, len, advice) }
}

#[no_mangle]
pub unsafe extern "C" fn readahead(fd: c_int, off: off64_t, count: size_t) -> ssize_t {
    if is_ours(fd) {
        return 0;
    }
    // SAFETY: as above.
    unsafe { real::readahead(fd, off, count) }
}

#[no_mangle]
pub unsafe extern "C" fn ioctl(fd: c_int, request: c_ulong, arg: c_ulong) -> c_int {
    if is_ours(fd) {
        if request == libc::TCGETS {
            // isatty(): a file is no terminal.
            set_errno(libc::ENOTTY);
            return -1;
        }
        if matches!(request, FICLONE | FICLONERANGE | FIDEDUPERANGE) {
            // No cloning across the user-level path; callers (cp) fall back to copying.
            set_errno(libc::EOPNOTSUPP);
            return -1;
        }
        if let Err(e) = hand_over(fd) {
            set_errno(e);
            return -1;
        }
    }
    // SAFETY: as above.
    unsafe { real::ioctl(fd, request, arg) }
}

// <linux/fs.h> ioctl numbers of the clone and dedupe requests.
const FICLONE: c_ulong = 0x4004_9409;
const FICLONERANGE: c_ulong = 0x4020_940d;
const FIDEDUPERANGE: c_ulong = 0xc018_9436;

const COPY_CHUNK: usize = 256 << 10;

/// Copies up to `len` bytes from `fd_in` to `fd_out` with the interceptors' read and write
/// (positional where an offset pointer is given, which is then advanced).
fn copy(fd_in: c_int, off_in: *mut i64, fd_out: c_int, off_out: *mut i64, len: usize) -> ssize_t {
    let mut buf = vec![0u8; COPY_CHUNK.min(len.max(1))];
    let mut done = 0usize;
    while done < len {
        let want = (len - done).min(buf.len());
        let p = buf.as_mut_ptr() as *mut c_void;
        // SAFETY: `buf` is valid for `want` bytes; offset pointers are the caller's, as the
        // libc call requires.
        let got = unsafe {
            match off_in.as_mut() {
                Some(o) => io::pread64(fd_in, p, want, *o),
                None => io::read(fd_in, p, want),
            }
        };
        if got < 0 {
            return if done > 0 { done as ssize_t } else { -1 };
        }
        if got == 0 {
            break;
        }
        let got = got as usize;
        let mut put = 0usize;
        while put < got {
            // SAFETY: as above.
            let w = unsafe {
                let q = buf.as_ptr().add(put) as *const c_void;
                match off_out.as_mut() {
                    Some(o) => io::pwrite64(fd_out, q, got - put, *o + put as i64),
                    None => io::write(fd_out, q, got - put),
                }
            };
            if w <= 0 {
                return if done + put > 0 { (done + put) as ssize_t } else { -1 };
            }
            put += w as usize;
        }
        // SAFETY: as above.
        unsafe {
            if let Some(o) = off_in.as_mut() {
                *o += got as i64;
            }
            if let Some(o) = off_out.as_mut() {
                *o += got as i64;
            }
        }
        done += got;
        if got < want {
            break;
        }
    }
    done as ssize_t
}

#[no_mangle]
pub unsafe extern "C" fn copy_file_range(fd_in: c_int, off_in: *mut loff_t, fd_out: c_int, off_out: *mut loff_t, len: size_t, flags: u32) -> ssize_t {
    if (is_ours(fd_in) || is_ours(fd_out)) && flags == 0 {
        return copy(fd_in, off_in, fd_out, off_out, len);
    }
    // SAFETY: as above.
    unsafe { real::copy_file_range(fd_in, off_in, fd_out, off_out, len, flags) }
}

#[no_mangle]
pub unsafe extern "C" fn sendfile(out_fd: c_int, in_fd: c_int, off: *mut off_t, count: size_t) -> ssize_t {
    if is_ours(in_fd) || is_ours(out_fd) {
        return copy(in_fd, off, out_fd, std::ptr::null_mut(), count);
    }
    // SAFETY: as above.
    unsafe { real::sendfile(out_fd, in_fd, off, count) }
}

#[no_mangle]
pub unsafe extern "C" fn sendfile64(out_fd: c_int, in_fd: c_int, off: *mut off64_t, count: size_t) -> ssize_t {
    if is_ours(in_fd) || is_ours(out_fd) {
        return copy(in_fd, off, out_fd, std::ptr::null_mut(), count);
    }
    // SAFETY: as above.
    unsafe { real::sendfile64(out_fd, in_fd, off, count) }
}
