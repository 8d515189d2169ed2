//! The workloads' calls: thin wrappers over libc (not raw syscalls), so that under the preload
//! library a workload takes the user-level path exactly as an application would.

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// The return of a libc call, as an `io::Result`.
fn check<T: Copy + PartialOrd + Default>(r: T) -> io::Result<T> {
    if r < T::default() {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Seconds on the monotonic clock, comparable between the processes of one run.
pub fn now() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

pub fn stat(p: &CStr) -> io::Result<libc::stat> {
    // SAFETY: zeroed `stat` is a valid out-parameter; `p` is NUL-terminated.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    check(unsafe { libc::stat(p.as_ptr(), &mut st) })?;
    Ok(st)
}

pub fn open(p: &CStr, flags: i32, mode: u32) -> io::Result<i32> {
    // SAFETY: `p` is NUL-terminated.
    check(unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC, mode) })
}

pub fn close(fd: i32) -> io::Result<()> {
    // SAFETY: closing a descriptor the workload opened.
    check(unsafe { libc::close(fd) }).map(drop)
}

pub fn unlink(p: &CStr) -> io::Result<()> {
    // SAFETY: `p` is NUL-terminated.
    check(unsafe { libc::unlink(p.as_ptr()) }).map(drop)
}

pub fn pread(fd: i32, buf: &mut [u8], off: u64) -> io::Result<usize> {
    // SAFETY: `buf` is writable for its length.
    check(unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), off as i64) }).map(|n| n as usize)
}

pub fn read(fd: i32, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is writable for its length.
    check(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) }).map(|n| n as usize)
}

pub fn pwrite(fd: i32, buf: &[u8], off: u64) -> io::Result<usize> {
    // SAFETY: `buf` is readable for its length.
    check(unsafe { libc::pwrite(fd, buf.as_ptr().cast(), buf.len(), off as i64) }).map(|n| n as usize)
}

pub fn write(fd: i32, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is readable for its length.
    check(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) }).map(|n| n as usize)
}

pub fn fdatasync(fd: i32) -> io::Result<()> {
    // SAFETY: plain call on a descriptor the workload opened.
    check(unsafe { libc::fdatasync(fd) }).map(drop)
}

/// Writes all of `buf` at the descriptor's offset.
pub fn write_all(fd: i32, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = write(fd, buf)?;
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::WriteZero));
        }
        buf = &buf[n..];
    }
    Ok(())
}

/// Reads the descriptor to its end in `buf`-sized reads; the bytes read.
pub fn read_to_end(fd: i32, buf: &mut [u8]) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        let n = read(fd, buf)?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

/// Lists a directory through `opendir`/`readdir`/`closedir`; the number of entries.
pub fn list_dir(p: &CStr) -> io::Result<usize> {
    // SAFETY: `p` is NUL-terminated.
    let d = unsafe { libc::opendir(p.as_ptr()) };
    if d.is_null() {
        return Err(io::Error::last_os_error());
    }
    let mut n = 0;
    // SAFETY: `d` is an open stream until `closedir` below.
    while !unsafe { libc::readdir(d) }.is_null() {
        n += 1;
    }
    // SAFETY: closing the stream opened above, once.
    check(unsafe { libc::closedir(d) })?;
    Ok(n)
}
