//! Directory streams (`DIR *`) for directories on the pool's mounts, in a fixed static table.
//!
//! glibc's `readdir` reads with its internal `getdents64`, which no preloaded library can
//! replace, so a stream on a mount directory is ours: a descriptor (the kernel's, recorded
//! by [`files::remember_dir`]) and a buffer of `linux_dirent64` records filled by
//! [`fill`], from the service while the directory is recorded, else (after fork handed it
//! to the kernel, say) from the kernel. `DIR *` values of ours point into [`STREAMS`], which
//! is how every `DIR *` function tells ours from libc's.

use std::cell::UnsafeCell;
use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use crate::config::{errno, set_errno};
use crate::files;
use crate::outcome::Unserved;

pub const MAX_STREAMS: usize = 128;
/// Bytes of records one stream buffers (glibc's own buffer is 32 KiB).
const STREAM_BUF: usize = 32 * 1024;

pub struct Stream {
    used: AtomicBool,
    /// Held while a call works on the stream (glibc locks its streams the same way).
    lock: AtomicBool,
    /// The descriptor plus one (0: none), so that the table starts all zeros: it lives in
    /// `.bss`, not in the library file (4 MiB less to map and page in per process).
    fd: AtomicI32,
    inner: UnsafeCell<Inner>,
}

struct Inner {
    pos: usize,
    end: usize,
    /// What `telldir` answers: the cookie of the entry last returned.
    filepos: u64,
    /// 8-aligned, as `struct dirent64` needs.
    buf: [u64; STREAM_BUF / 8],
}

// SAFETY: `inner` is only touched by the thread holding `lock` (see `Guard`), or by the one
// that claimed the slot before handing out its address.
unsafe impl Sync for Stream {}

static STREAMS: [Stream; MAX_STREAMS] = [const { Stream { used: AtomicBool::new(false), lock: AtomicBool::new(false), fd: AtomicI32::new(0), inner: UnsafeCell::new(Inner { pos: 0, end: 0, filepos: 0, buf: [0; STREAM_BUF / 8] }) } }; MAX_STREAMS];

/// The stream behind `d`, if `d` is one of ours.
pub fn of(d: *mut libc::DIR) -> Option<&'static Stream> {
    let base = STREAMS.as_ptr() as usize;
    let at = (d as usize).checked_sub(base)?;
    let size = std::mem::size_of::<Stream>();
    (at % size == 0 && at / size < MAX_STREAMS).then(|| &STREAMS[at / size])
}

/// A new stream on directory descriptor `fd` (already recorded); `None` when the table is
/// full (the caller then lets libc make one).
pub fn open(fd: c_int) -> Option<*mut libc::DIR> {
    let s = STREAMS.iter().find(|s| s.used.compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed).is_ok())?;
    s.fd.store(fd.wrapping_add(1), Ordering::Release);
    let g = s.locked();
    g.inner().pos = 0;
    g.inner().end = 0;
    g.inner().filepos = 0;
    drop(g);
    Some(s as *const Stream as *mut libc::DIR)
}

pub struct Guard<'a>(&'a Stream);

impl Stream {
    pub fn fd(&self) -> c_int {
        self.fd.load(Ordering::Acquire).wrapping_sub(1)
    }

    pub fn locked(&self) -> Guard<'_> {
        while self.lock.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            std::hint::spin_loop();
        }
        Guard(self)
    }

    /// Frees the slot; the caller closes the descriptor.
    pub fn free(&self) {
        self.fd.store(0, Ordering::Release);
        self.used.store(false, Ordering::Release);
    }
}

impl Guard<'_> {
    #[allow(clippy::mut_from_ref)]
    fn inner(&self) -> &mut Inner {
        // SAFETY: the lock is held by this guard, so no other reference to `inner` exists.
        unsafe { &mut *self.0.inner.get() }
    }

    /// The next entry (a pointer to a `struct dirent64` inside the buffer, valid until the
    /// next call on the stream); null at the end (errno untouched) or on error (errno set).
    pub fn next(&self) -> *mut libc::dirent64 {
        let i = self.inner();
        if i.pos >= i.end {
            let bytes = buf_bytes(&mut i.buf);
            // Filling may take calls that change errno on the way (see `client::with_client`).
            let saved = errno();
            let filled = fill(self.0.fd(), bytes);
            if filled.is_ok() {
                set_errno(saved);
            }
            match filled {
                Ok(0) => return std::ptr::null_mut(),
                Ok(n) => {
                    i.pos = 0;
                    i.end = n;
                }
                Err(e) => {
                    set_errno(e);
                    return std::ptr::null_mut();
                }
            }
        }
        let bytes = buf_bytes(&mut i.buf);
        // Records were checked by `fill` (or come from the kernel): the length is whole.
        let len = u16::from_ne_bytes([bytes[i.pos + 16], bytes[i.pos + 17]]) as usize;
        let rec = bytes[i.pos..].as_mut_ptr();
        i.filepos = u64::from_ne_bytes(bytes[i.pos + 8..i.pos + 16].try_into().unwrap_or_default());
        i.pos += len.max(1);
        rec.cast()
    }

    pub fn tell(&self) -> u64 {
        self.inner().filepos
    }

    /// Moves to cookie `pos` (0: the start, reread afresh).
    pub fn seek(&self, pos: u64) {
        let i = self.inner();
        i.pos = 0;
        i.end = 0;
        i.filepos = pos;
        seek_dir(self.0.fd(), pos);
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.0.lock.store(false, Ordering::Release);
    }
}

fn buf_bytes(b: &mut [u64; STREAM_BUF / 8]) -> &mut [u8] {
    // SAFETY: the same memory viewed as bytes; u8 has no alignment or validity needs.
    unsafe { std::slice::from_raw_parts_mut(b.as_mut_ptr().cast::<u8>(), STREAM_BUF) }
}

/// `getdents64` for any descriptor: from the service for a recorded directory, from the
/// kernel otherwise.
pub fn fill(fd: c_int, out: &mut [u8]) -> Result<usize, c_int> {
    if let Some(f) = files::dir_file(fd) {
        match crate::listing::getdents(f, out) {
            Ok(n) => return Ok(n),
            // An inode the service no longer knows (EBADF, ESTALE), a service gone...: the
            // kernel still can, from the same cookie.
            Err(Unserved::Kernel | Unserved::Errno(libc::ESTALE | libc::ENOENT | libc::EBADF)) => {}
            Err(Unserved::Errno(e)) => return Err(e),
        }
        // The kernel's position follows ours from here on (on the directory open in the
        // kernel: an O_PATH descriptor cannot be listed).
        crate::listing::open_dir_in_kernel(fd)?;
        seek_kernel(fd, f.offset.load(Ordering::Acquire));
        crate::listing::close_dir(fd);
    }
    // SAFETY: the getdents64 system call on the caller's descriptor and buffer.
    let n = unsafe { libc::syscall(libc::SYS_getdents64, fd, out.as_mut_ptr(), out.len()) };
    if n < 0 {
        return Err(errno());
    }
    Ok(n as usize)
}

/// Sets the listing position of directory descriptor `fd`.
pub fn seek_dir(fd: c_int, pos: u64) {
    if let Some(f) = files::dir_file(fd) {
        f.offset.store(pos, Ordering::Release);
    }
    seek_kernel(fd, pos);
}

fn seek_kernel(fd: c_int, pos: u64) {
    // SAFETY: lseek on the caller's descriptor.
    unsafe { crate::real::lseek(fd, pos as i64, libc::SEEK_SET) };
}
