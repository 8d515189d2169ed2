//! The local backend's file I/O through the service's block cache (`writethrough` mode):
//! reads are served from cached blocks, filling missing ones from the backing file a whole
//! block at a time with direct I/O (the host's page cache keeps no second copy); writes go to the backing file and then drop the blocks they touched (and,
//! when the file grows, every block from its old end on).
//!
//! Consistency: a write is visible to every later read through the same service when it
//! returns (its blocks are gone from the cache, and a block read before the write is refused
//! by the file's generation); a file changed behind the service's back is noticed at the next
//! open (its version), i.e. close-to-open.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};

use crate::backend::cache::{through, BlockCache, FileKey, Version, BLOCK};

/// What the file looks like now, as the cache tells versions apart.
pub fn version_of(fd: BorrowedFd<'_>) -> io::Result<Version> {
    let st = rfs::statat(fd, "", AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW)?;
    Ok((st.st_mtime, st.st_mtime_nsec as i64, st.st_size as u64))
}

/// The backing file opened for direct I/O (`O_DIRECT`), so that what the pool reads is held
/// once, in its own cache, and not a second time in the host's page cache. Opened on the first
/// miss of a read (through `/proc/self/fd`, which names the object the handle holds); a file
/// system that refuses direct I/O (tmpfs) gets buffered reads.
pub(super) struct Direct<'a> {
    of: BorrowedFd<'a>,
    fd: Option<Option<OwnedFd>>,
}

impl<'a> Direct<'a> {
    pub fn new(of: BorrowedFd<'a>) -> Self {
        Direct { of, fd: None }
    }

    /// As where the file system refuses direct I/O.
    #[cfg(test)]
    pub fn buffered(of: BorrowedFd<'a>) -> Self {
        Direct { of, fd: Some(None) }
    }

    fn fd(&mut self) -> Option<BorrowedFd<'_>> {
        let of = self.of;
        self.fd
            .get_or_insert_with(|| {
                rfs::openat(rfs::CWD, format!("/proc/self/fd/{}", of.as_raw_fd()), OFlags::RDONLY | OFlags::DIRECT | OFlags::CLOEXEC, Mode::empty()).ok()
            })
            .as_ref()
            .map(|f| f.as_fd())
    }
}

/// Alignment direct I/O needs of buffers, offsets and lengths (a page covers every device).
pub(super) const ALIGN: usize = 4096;

thread_local! {
    /// A block-sized buffer at an `ALIGN` boundary inside it, for direct reads.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; BLOCK + ALIGN]);
}

/// Reads a whole block from the backing file (shorter only at its end).
pub(super) fn fetch(direct: &mut Direct<'_>, block: u64) -> io::Result<Vec<u8>> {
    let at = block * BLOCK as u64;
    if let Some(dfd) = direct.fd() {
        let read = SCRATCH.with(|s| -> io::Result<Vec<u8>> {
            let mut s = s.borrow_mut();
            let off = s.as_ptr().align_offset(ALIGN);
            let buf = &mut s[off..off + BLOCK];
            // One read: a direct read is short only at the end of the file.
            let n = rustix::io::pread(dfd, &mut *buf, at)?;
            Ok(buf[..n].to_vec())
        });
        match read {
            Ok(data) => return Ok(data),
            // Refused after all (an unaligned device): buffered from now on.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => direct.fd = Some(None),
            Err(e) => return Err(e),
        }
    }
    let mut data = vec![0u8; BLOCK];
    let mut got = 0;
    let mut readable = None;
    while got < BLOCK {
        let n = match rustix::io::pread(readable.as_ref().map_or(direct.of, |f: &OwnedFd| f.as_fd()), &mut data[got..], at + got as u64) {
            Ok(n) => n,
            // A write-only handle (write-back reads a block before writing part of it).
            Err(rustix::io::Errno::BADF) if readable.is_none() => {
                readable = Some(rfs::openat(rfs::CWD, format!("/proc/self/fd/{}", direct.of.as_raw_fd()), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            break;
        }
        got += n;
    }
    data.truncate(got);
    Ok(data)
}

/// `preadv` of `file` at `offset` through the cache, missing blocks read from `fd`.
pub fn read(cache: &BlockCache, fd: BorrowedFd<'_>, file: FileKey, bufs: &mut [IoSliceMut<'_>], offset: u64) -> io::Result<usize> {
    let mut direct = Direct::new(fd);
    through::read(cache, file, bufs, offset, |block| Ok((fetch(&mut direct, block)?, true)))
}

/// `pwritev` of `file` at `offset`, then the cache brought up to date.
pub fn write(cache: &BlockCache, fd: BorrowedFd<'_>, file: FileKey, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
    let before = version_of(fd)?;
    let n = rustix::io::pwritev(fd, bufs, offset)?;
    through::written(cache, file, offset, n, before.2);
    cache.changed_by_us(file, version_of(fd.as_fd())?);
    Ok(n)
}
