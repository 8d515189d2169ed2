//! stdio streams on our files: `fopen` (and `fdopen` of one of our descriptors) make a
//! `fopencookie` stream whose reads, writes and seeks are the interceptors', so `fprintf`,
//! `fgets`, `fread`, `fwrite`, `fseek`, `ftell` take the user-level path. libc's own `fopen`
//! opens with its internal `open`, below the interposed symbols, and would take the kernel path.
//!
//! `fileno()` of such a stream gives the descriptor of ours behind it, as for a file stream:
//! its `_fileno` field is set (glibc's public `struct _IO_FILE` layout).

use std::ffi::{c_char, c_int, c_void, CStr};

use libc::{off64_t, size_t, ssize_t};

use super::{fd, io, run};
use crate::files::is_ours;
use crate::ops;
use crate::outcome::{Served, Unserved};

/// The start of glibc's public `struct _IO_FILE` (bits/types/struct_FILE.h), up to `_fileno`.
#[repr(C)]
struct FilePrefix {
    _flags: c_int,
    _pointers: [*mut c_char; 11],
    _markers: *mut c_void,
    _chain: *mut c_void,
    fileno: c_int,
}

/// glibc's `cookie_io_functions_t`.
#[repr(C)]
struct CookieIo {
    read: Option<extern "C" fn(*mut c_void, *mut c_char, size_t) -> ssize_t>,
    write: Option<extern "C" fn(*mut c_void, *const c_char, size_t) -> ssize_t>,
    seek: Option<extern "C" fn(*mut c_void, *mut off64_t, c_int) -> c_int>,
    close: Option<extern "C" fn(*mut c_void) -> c_int>,
}

extern "C" {
    /// glibc's custom stream constructor (not one this library replaces).
    fn fopencookie(cookie: *mut c_void, mode: *const c_char, funcs: CookieIo) -> *mut libc::FILE;
}

/// open(2) flags for an fopen mode string, or `None` when it is not one.
fn mode_flags(mode: &[u8]) -> Option<c_int> {
    let (first, rest) = mode.split_first()?;
    let plus = rest.contains(&b'+');
    let mut flags = match (first, plus) {
        (b'r', false) => libc::O_RDONLY,
        (b'r', true) => libc::O_RDWR,
        (b'w', false) => libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
        (b'w', true) => libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC,
        (b'a', false) => libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND,
        (b'a', true) => libc::O_RDWR | libc::O_CREAT | libc::O_APPEND,
        _ => return None,
    };
    for c in rest {
        match c {
            b'e' => flags |= libc::O_CLOEXEC,
            b'x' => flags |= libc::O_EXCL,
            _ => {}
        }
    }
    Some(flags)
}

fn cookie_fd(cookie: *mut c_void) -> c_int {
    cookie as usize as c_int
}

extern "C" fn cookie_read(cookie: *mut c_void, buf: *mut c_char, size: size_t) -> ssize_t {
    // SAFETY: stdio passes its own buffer of `size` bytes.
    unsafe { io::read(cookie_fd(cookie), buf.cast(), size) }
}

extern "C" fn cookie_write(cookie: *mut c_void, buf: *const c_char, size: size_t) -> ssize_t {
    // SAFETY: `buf` holds `size` bytes, as stdio promises a write hook; `io::write` is our
    // write, which takes the same arguments as write(2). A short or failed write is reported
    // to stdio as 0 (its convention: it then sets the stream's error flag).
    let n = unsafe { io::write(cookie_fd(cookie), buf.cast(), size) };
    n.max(0)
}

extern "C" fn cookie_seek(cookie: *mut c_void, offset: *mut off64_t, whence: c_int) -> c_int {
    // SAFETY: stdio passes a valid pointer to the offset it wants.
    let Some(off) = (unsafe { offset.as_mut() }) else { return -1 };
    // SAFETY: our lseek64 takes a descriptor and integers only; `off` is stdio's valid pointer.
    let pos = unsafe { io::lseek64(cookie_fd(cookie), *off, whence) };
    if pos < 0 {
        return -1;
    }
    *off = pos;
    0
}

extern "C" fn cookie_close(cookie: *mut c_void) -> c_int {
    // SAFETY: the stream owned this descriptor.
    unsafe { fd::close(cookie_fd(cookie)) }
}

/// A stream over descriptor `fd` of ours; `None` (with errno set) when stdio refuses.
fn stream_of(fd: c_int, mode: *const c_char) -> *mut libc::FILE {
    let funcs = CookieIo {
        read: Some(cookie_read),
        write: Some(cookie_write),
        seek: Some(cookie_seek),
        close: Some(cookie_close),
    };
    // SAFETY: `mode` is the caller's NUL-terminated mode string; the cookie is the descriptor
    // number, valid until the stream's close function runs.
    let fp = unsafe { fopencookie(fd as usize as *mut c_void, mode, funcs) };
    if !fp.is_null() {
        // SAFETY: `fp` is a glibc stream, whose public layout begins as `FilePrefix`.
        unsafe { (*(fp as *mut FilePrefix)).fileno = fd };
    }
    fp
}

/// The stream for fopen(path, mode), or `Unserved::Kernel`.
fn open_stream(path: *const c_char, mode: *const c_char) -> Served<*mut libc::FILE> {
    if mode.is_null() {
        return Err(Unserved::Kernel);
    }
    // SAFETY: a NUL-terminated mode string, as fopen requires (checked for null).
    let flags = mode_flags(unsafe { CStr::from_ptr(mode) }.to_bytes()).ok_or(Unserved::Kernel)?;
    let fd = super::on_path(libc::AT_FDCWD, path, |t| ops::open(t, flags, 0o666, true))?;
    let fp = stream_of(fd, mode);
    if fp.is_null() {
        let e = crate::config::errno();
        // SAFETY: closing the descriptor just opened.
        unsafe { fd::close(fd) };
        return Err(Unserved::Errno(e));
    }
    Ok(fp)
}

hooks! {
    fn fopen(path: *const c_char, mode: *const c_char) -> *mut libc::FILE => |kernel| {
        run(|| open_stream(path, mode), kernel)
    }

    fn fopen64(path: *const c_char, mode: *const c_char) -> *mut libc::FILE => |kernel| {
        run(|| open_stream(path, mode), kernel)
    }

    fn fdopen(fd: c_int, mode: *const c_char) -> *mut libc::FILE => |kernel| {
        if is_ours(fd) && !mode.is_null() {
            return stream_of(fd, mode);
        }
        kernel()
    }
}
