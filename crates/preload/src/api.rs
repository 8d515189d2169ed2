//! The direct API: `polytropon_*` functions for programs that can be recompiled. They serve
//! only the user-level path: a path outside the pool's mounts, or a target the user-level
//! path leaves to the kernel (a directory, a symlink to follow, a device...), is `EXDEV`; a
//! descriptor that is not one of ours is `EBADF`.

use std::ffi::{c_char, c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::cbuf::{in_buf, offset, out_buf};
use crate::config::{set_errno, Busy};
use crate::files::{self, File};
use crate::real::Failure;
use crate::{ops, path};
use crate::outcome::{Served, Unserved};

/// Runs `f` inside the library, turning an error (or a panic) into the C convention.
fn guard<T: Failure>(f: impl FnOnce() -> Served<T>) -> T {
    let _busy = Busy::enter();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            set_errno(e.errno_or(libc::EXDEV));
            T::failure()
        }
        Err(_) => {
            set_errno(libc::EIO);
            T::failure()
        }
    }
}

fn target(p: *const c_char) -> Served<path::Target> {
    if p.is_null() {
        return Err(Unserved::Errno(libc::EFAULT));
    }
    let mut t = path::Target::empty();
    path::resolve(&mut t, libc::AT_FDCWD, p).ok_or(libc::EXDEV)?;
    Ok(t)
}

fn file(fd: c_int) -> Served<&'static File> {
    files::get(fd).map(|(_, f)| f).ok_or(Unserved::Errno(libc::EBADF))
}

#[no_mangle]
pub extern "C" fn polytropon_open(path: *const c_char, flags: c_int, mode: libc::mode_t) -> c_int {
    guard(|| ops::open(&target(path)?, flags, mode, false))
}

#[no_mangle]
pub extern "C" fn polytropon_close(fd: c_int) -> c_int {
    guard(|| {
        file(fd)?;
        let last = files::forget_closed(fd);
        // SAFETY: closing the reserved descriptor of this file.
        unsafe { crate::real::close(fd) };
        if let Some(l) = last {
            ops::release(&l);
        }
        Ok(0)
    })
}

#[no_mangle]
pub extern "C" fn polytropon_pread(fd: c_int, b: *mut c_void, count: usize, off: libc::off_t) -> isize {
    // SAFETY: the caller's buffer of `count` bytes, as for pread(2).
    guard(|| Ok(ops::pread(file(fd)?, unsafe { out_buf(b, count) }?, offset(off)?)? as isize))
}

#[no_mangle]
pub extern "C" fn polytropon_pwrite(fd: c_int, b: *const c_void, count: usize, off: libc::off_t) -> isize {
    guard(|| {
        let f = file(fd)?;
        // SAFETY: the caller's buffer of `count` bytes, as for pwrite(2).
        Ok(ops::pwrite(f, unsafe { in_buf(b, count) }?, offset(off)?, f.append())?.0 as isize)
    })
}

#[no_mangle]
pub extern "C" fn polytropon_read(fd: c_int, b: *mut c_void, count: usize) -> isize {
    // SAFETY: the caller's buffer of `count` bytes, as for read(2).
    guard(|| Ok(ops::read(file(fd)?, unsafe { out_buf(b, count) }?)? as isize))
}

#[no_mangle]
pub extern "C" fn polytropon_write(fd: c_int, b: *const c_void, count: usize) -> isize {
    // SAFETY: the caller's buffer of `count` bytes, as for write(2).
    guard(|| Ok(ops::write(file(fd)?, unsafe { in_buf(b, count) }?)? as isize))
}

#[no_mangle]
pub extern "C" fn polytropon_lseek(fd: c_int, off: libc::off_t, whence: c_int) -> libc::off_t {
    guard(|| ops::lseek(file(fd)?, off, whence).map_err(|e| Unserved::Errno(e.errno_or(libc::EINVAL))))
}

#[no_mangle]
pub extern "C" fn polytropon_fsync(fd: c_int) -> c_int {
    guard(|| ops::fsync(file(fd)?, false).map(|()| 0))
}

#[no_mangle]
pub extern "C" fn polytropon_unlink(path: *const c_char) -> c_int {
    guard(|| ops::unlink(&target(path)?).map(|()| 0))
}

#[no_mangle]
pub extern "C" fn polytropon_stat(path: *const c_char, st: *mut libc::stat) -> c_int {
    guard(|| {
        // SAFETY: a non-null pointer the caller passes for the result.
        let st = unsafe { st.as_mut() }.ok_or(libc::EFAULT)?;
        let t = target(path)?;
        ops::fill_stat(&ops::stat_path(&t, true)?, t.dev, st);
        Ok(0)
    })
}
