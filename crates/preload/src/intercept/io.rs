//! Data calls: read/write and their positional, vectored and fortified forms, lseek, fsync,
//! ftruncate.

use std::ffi::{c_int, c_uint, c_void};
use std::sync::atomic::Ordering;

use libc::{iovec, off64_t, off_t, size_t, ssize_t};

use super::on_data_fd;
use crate::cbuf::{in_buf, offset, out_buf};
use crate::files::File;
use crate::ops;
use crate::outcome::{Served, Unserved};

hooks! {
    fn read(fd: c_int, buf: *mut c_void, count: size_t) -> ssize_t => |kernel| {
        // SAFETY: the caller's buffer, as read(2) requires.
        on_data_fd(fd, |f| Ok(ops::read(f, unsafe { out_buf(buf, count) }?)? as ssize_t), kernel)
    }

    fn __read_chk(fd: c_int, buf: *mut c_void, count: size_t, buflen: size_t) -> ssize_t => |kernel| {
        if count > buflen {
            // SAFETY: the real check reports the overflow (and aborts) as glibc does.
            return kernel();
        }
        // SAFETY: the caller's buffer of `count` (<= `buflen`) bytes, as read takes it.
        unsafe { read(fd, buf, count) }
    }

    fn write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t => |kernel| {
        // SAFETY: as for read.
        on_data_fd(fd, |f| Ok(ops::write(f, unsafe { in_buf(buf, count) }?)? as ssize_t), kernel)
    }
}

fn pread_file(f: &File, buf: *mut c_void, count: size_t, off: i64) -> Served<ssize_t> {
    // SAFETY: the caller's buffer, as pread(2) requires.
    Ok(ops::pread(f, unsafe { out_buf(buf, count) }?, offset(off)?)? as ssize_t)
}

fn pwrite_file(f: &File, buf: *const c_void, count: size_t, off: i64) -> Served<ssize_t> {
    // SAFETY: the caller's buffer of `count` bytes, as pwrite(2) takes it.
    let data = unsafe { in_buf(buf, count) }?;
    // Linux appends even at an explicit offset when the file is O_APPEND.
    Ok(ops::pwrite(f, data, offset(off)?, f.append())?.0 as ssize_t)
}

hooks! {
    fn pread(fd: c_int, buf: *mut c_void, count: size_t, off: off_t) -> ssize_t => |kernel| {
        on_data_fd(fd, |f| pread_file(f, buf, count, off), kernel)
    }

    fn pread64(fd: c_int, buf: *mut c_void, count: size_t, off: off64_t) -> ssize_t => |kernel| {
        on_data_fd(fd, |f| pread_file(f, buf, count, off), kernel)
    }

    fn __pread_chk(fd: c_int, buf: *mut c_void, count: size_t, off: off_t, buflen: size_t) -> ssize_t => |kernel| {
        if count > buflen {
            // SAFETY: as for __read_chk.
            return kernel();
        }
        // SAFETY: the caller's buffer of `count` (<= `buflen`) bytes, as pread takes it.
        unsafe { pread(fd, buf, count, off) }
    }

    fn __pread64_chk(fd: c_int, buf: *mut c_void, count: size_t, off: off64_t, buflen: size_t) -> ssize_t => |kernel| {
        if count > buflen {
            // SAFETY: as for __read_chk.
            return kernel();
        }
        // SAFETY: the caller's buffer of `count` (<= `buflen`) bytes, as pread64 takes it.
        unsafe { pread64(fd, buf, count, off) }
    }

    fn pwrite(fd: c_int, buf: *const c_void, count: size_t, off: off_t) -> ssize_t => |kernel| {
        on_data_fd(fd, |f| pwrite_file(f, buf, count, off), kernel)
    }

    fn pwrite64(fd: c_int, buf: *const c_void, count: size_t, off: off64_t) -> ssize_t => |kernel| {
        on_data_fd(fd, |f| pwrite_file(f, buf, count, off), kernel)
    }
}

/// The caller's iovec array.
///
/// # Safety
/// `iov` must point to `n` iovecs, as the libc call requires.
unsafe fn iovecs<'a>(iov: *const iovec, n: c_int) -> Served<&'a [iovec]> {
    if !(0..=libc::UIO_MAXIOV).contains(&n) {
        return Err(Unserved::Errno(libc::EINVAL));
    }
    if n == 0 {
        return Ok(&[]);
    }
    if iov.is_null() {
        return Err(Unserved::Errno(libc::EFAULT));
    }
    // SAFETY: guaranteed by the caller.
    Ok(unsafe { std::slice::from_raw_parts(iov, n as usize) })
}

/// Vectored read at `off` (`None`: at the shared offset, which advances).
fn readv_file(f: &File, iov: *const iovec, n: c_int, off: Option<i64>) -> Served<ssize_t> {
    // SAFETY: the caller's iovecs.
    let v = unsafe { iovecs(iov, n) }?;
    // At the shared offset: under the position lock, as `read` (a move of the file to its
    // backing file waits for it, and the call then finds the file passed before any I/O).
    let _pos = off.is_none().then(|| f.lock_offset());
    let start = match off {
        Some(o) => offset(o)?,
        None => f.offset.load(Ordering::Acquire),
    };
    let mut pos = start;
    for e in v {
        // SAFETY: each iovec describes caller memory, as readv(2) requires.
        let buf = unsafe { out_buf(e.iov_base, e.iov_len) }?;
        let got = ops::pread(f, buf, pos)?;
        pos += got as u64;
        if got < buf.len() {
            break;
        }
    }
    if off.is_none() {
        f.offset.store(pos, Ordering::Release);
    }
    Ok((pos - start) as ssize_t)
}

fn writev_file(f: &File, iov: *const iovec, n: c_int, off: Option<i64>) -> Served<ssize_t> {
    // SAFETY: the caller's iovecs.
    let v = unsafe { iovecs(iov, n) }?;
    // As for readv.
    let _pos = off.is_none().then(|| f.lock_offset());
    let mut pos = match off {
        Some(o) => offset(o)?,
        None => f.offset.load(Ordering::Acquire),
    };
    let mut total = 0usize;
    for e in v {
        // SAFETY: as for readv.
        let data = unsafe { in_buf(e.iov_base, e.iov_len) }?;
        let (put, end) = ops::pwrite(f, data, pos, f.append())?;
        pos = end;
        total += put;
        if put < data.len() {
            break;
        }
    }
    if off.is_none() {
        f.offset.store(pos, Ordering::Release);
    }
    Ok(total as ssize_t)
}

hooks! {
    fn readv(fd: c_int, iov: *const iovec, n: c_int) -> ssize_t => |kernel| {
        on_data_fd(fd, |f| readv_file(f, iov, n, None), kernel)
    }

    fn writev(fd: c_int, iov: *const iovec, n: c_int) -> ssize_t => |kernel| {
        on_data_fd(fd, |f| writev_file(f, iov, n, None), kernel)
    }

    fn preadv(fd: c_int, iov: *const iovec, n: c_int, off: off_t) -> ssize_t => |kernel| {
        on_data_fd(fd, |f| readv_file(f, iov, n, Some(off)), kernel)
    }

    fn preadv64(fd: c_int, iov: *const iovec, n: c_int, off: off64_t) -> ssize_t => |kernel| {
        on_data_fd(fd, |f| readv_file(f, iov, n, Some(off)), kernel)
    }

    fn pwritev(fd: c_int, iov: *const iovec, n: c_int, off: off_t) -> ssize_t => |kernel| {
        on_data_fd(fd, |f| writev_file(f, iov, n, Some(off)), kernel)
    }

    fn pwritev64(fd: c_int, iov: *const iovec, n: c_int, off: off64_t) -> ssize_t => |kernel| {
        on_data_fd(fd, |f| writev_file(f, iov, n, Some(off)), kernel)
    }
}

/// preadv2/pwritev2: no flags only (RWF_* hints are the kernel's); offset -1 means the
/// shared offset.
fn v2_offset(off: i64, flags: c_int) -> Served<Option<i64>> {
    if flags != 0 {
        return Err(Unserved::Kernel);
    }
    Ok((off != -1).then_some(off))
}

hooks! {
    fn preadv2(fd: c_int, iov: *const iovec, n: c_int, off: off_t, flags: c_int) -> ssize_t => |kernel| {
        on_data_fd(fd, |f| readv_file(f, iov, n, v2_offset(off, flags)?), kernel)
    }

    fn preadv64v2(fd: c_int, iov: *const iovec, n: c_int, off: off64_t, flags: c_int) -> ssize_t => |kernel| {
        on_data_fd(fd, |f| readv_file(f, iov, n, v2_offset(off, flags)?), kernel)
    }

    fn pwritev2(fd: c_int, iov: *const iovec, n: c_int, off: off_t, flags: c_int) -> ssize_t => |kernel| {
        on_data_fd(fd, |f| writev_file(f, iov, n, v2_offset(off, flags)?), kernel)
    }

    fn pwritev64v2(fd: c_int, iov: *const iovec, n: c_int, off: off64_t, flags: c_int) -> ssize_t => |kernel| {
        on_data_fd(fd, |f| writev_file(f, iov, n, v2_offset(off, flags)?), kernel)
    }
}

/// lseek on a directory whose listing this library serves: the position is a cookie kept
/// in its record (`None`: not such a directory, or a move only the kernel understands).
fn dir_lseek(fd: c_int, off: i64, whence: c_int) -> Option<i64> {
    let f = crate::files::dir_file(fd)?;
    match whence {
        libc::SEEK_SET if off >= 0 => {
            crate::streams::seek_dir(fd, off as u64);
            Some(off)
        }
        libc::SEEK_CUR if off == 0 => Some(f.offset.load(Ordering::Acquire) as i64),
        _ => None,
    }
}

hooks! {
    fn lseek(fd: c_int, off: off_t, whence: c_int) -> off_t => |kernel| {
        match dir_lseek(fd, off, whence) {
            Some(pos) => pos,
            None => on_data_fd(fd, |f| ops::lseek(f, off, whence), kernel),
        }
    }

    fn lseek64(fd: c_int, off: off64_t, whence: c_int) -> off64_t => |kernel| {
        match dir_lseek(fd, off, whence) {
            Some(pos) => pos,
            None => on_data_fd(fd, |f| ops::lseek(f, off, whence), kernel),
        }
    }

    fn fsync(fd: c_int) -> c_int => |kernel| {
        match crate::files::dir_file(fd) {
            // A directory of a pool mount (held open through the kernel, recorded by us).
            Some(d) => super::run(|| crate::listing::fsync_dir(d, false).map(|()| 0), || super::dirs::in_kernel_dir(fd, kernel)),
            None => on_data_fd(fd, |f| ops::fsync(f, false).map(|()| 0), kernel),
        }
    }

    fn fdatasync(fd: c_int) -> c_int => |kernel| {
        match crate::files::dir_file(fd) {
            Some(d) => super::run(|| crate::listing::fsync_dir(d, true).map(|()| 0), || super::dirs::in_kernel_dir(fd, kernel)),
            None => on_data_fd(fd, |f| ops::fsync(f, true).map(|()| 0), kernel),
        }
    }

    /// sync_file_range: the service's write-back cache is not the kernel's page cache, so a
    /// request to start or wait for the range's write-out becomes an `fdatasync` of the file (a
    /// stronger promise). Waits alone have nothing to wait for: every write of ours has reached
    /// the service when it returns.
    fn sync_file_range(fd: c_int, off: off64_t, n: off64_t, flags: c_uint) -> c_int => |kernel| {
        let all = libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
        on_data_fd(
            fd,
            |f| {
                if flags & !all != 0 || off < 0 || n < 0 || off.checked_add(n).is_none() {
                    return Err(Unserved::Errno(libc::EINVAL));
                }
                if flags & libc::SYNC_FILE_RANGE_WRITE != 0 {
                    ops::fsync(f, true)?;
                }
                Ok(0)
            },
            kernel,
        )
    }

    fn ftruncate(fd: c_int, len: off_t) -> c_int => |kernel| {
        on_data_fd(fd, |f| ops::ftruncate(f, len).map(|()| 0), kernel)
    }

    fn ftruncate64(fd: c_int, len: off64_t) -> c_int => |kernel| {
        on_data_fd(fd, |f| ops::ftruncate(f, len).map(|()| 0), kernel)
    }

    fn fallocate(fd: c_int, mode: c_int, off: off_t, len: off_t) -> c_int => |kernel| {
        on_data_fd(fd, |f| ops::fallocate(f, mode, off, len).map(|()| 0), kernel)
    }

    fn fallocate64(fd: c_int, mode: c_int, off: off64_t, len: off64_t) -> c_int => |kernel| {
        on_data_fd(fd, |f| ops::fallocate(f, mode, off, len).map(|()| 0), kernel)
    }

    /// Returns an error number instead of setting errno, as posix_fallocate does.
    fn posix_fallocate(fd: c_int, off: off_t, len: off_t) -> c_int => |kernel| {
        posix_allocate(fd, off, len, kernel)
    }

    /// As [`posix_fallocate`].
    fn posix_fallocate64(fd: c_int, off: off64_t, len: off64_t) -> c_int => |kernel| {
        posix_allocate(fd, off, len, kernel)
    }

    /// syncfs of a file or directory of ours: the instance writes out what it holds for its
    /// backend (the kernel sends a FUSE server no sync of a whole file system).
    fn syncfs(fd: c_int) -> c_int => |kernel| {
        match crate::files::dir_file(fd) {
            Some(d) => super::run(|| ops::sync_instance(d.instance.load(Ordering::Acquire)).map(|()| 0), || super::dirs::in_kernel_dir(fd, kernel)),
            None => on_data_fd(fd, |f| ops::syncfs(f).map(|()| 0), kernel),
        }
    }

    /// sync: every instance of the process's mounts writes out what it holds for its backend
    /// (the pool's cache in `writeback` mode: the kernel's `sync` does not reach it), then the
    /// kernel syncs its own file systems.
    fn sync() -> () => |kernel| {
        if let Some(busy) = crate::config::Busy::enter() {
            let mounts = crate::config::get().map(|c| c.mounts.iter().map(|m| m.instance).collect::<Vec<_>>()).unwrap_or_default();
            let mut done: Vec<u32> = Vec::new();
            for i in mounts {
                if !done.contains(&i) {
                    done.push(i);
                    // What fails here (an instance this process cannot see, a dead
                    // service) has nothing to sync for it: sync(2) reports nothing either.
                    let _ = std::panic::catch_unwind(|| ops::sync_instance(i));
                }
            }
            drop(busy);
        }
        kernel()
    }
}

/// `posix_fallocate` of `fd`: an allocation (mode 0) by the service, its error as the
/// result; where the instance cannot allocate (`EOPNOTSUPP`) the file goes to the kernel, and
/// glibc's own `posix_fallocate` writes the range instead, as it does on such filesystems.
fn posix_allocate(fd: c_int, off: off64_t, len: off64_t, kernel: impl FnOnce() -> c_int) -> c_int {
    let Some((_, f)) = crate::files::get(fd).filter(|(_, f)| !f.passthrough()) else { return kernel() };
    super::run(
        || match ops::fallocate(f, 0, off, len) {
            Ok(()) => Ok(0),
            Err(Unserved::Errno(libc::EOPNOTSUPP)) | Err(Unserved::Kernel) => Err(Unserved::Kernel),
            Err(Unserved::Errno(e)) => Ok(e),
        },
        || super::hand_over(fd, super::HandOver::Unserved).map_or_else(|e| e, |()| kernel()),
    )
}
