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

use crate::backend::cache::{BlockCache, FileKey, Version, BLOCK};

/// What the file looks like now, as the cache tells versions apart.
pub fn version_of(fd: BorrowedFd<'_>) -> io::Result<Version> {
    let st = rfs::statat(fd, "", AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW)?;
    Ok((st.st_mtime, st.st_mtime_nsec as i64, st.st_size as u64))
}

/// Copies `src` into `bufs` from logical position `at` on; the bytes copied.
fn scatter(bufs: &mut [IoSliceMut<'_>], mut at: usize, mut src: &[u8]) -> usize {
    let mut copied = 0;
    for b in bufs.iter_mut() {
        if src.is_empty() {
            break;
        }
        if at >= b.len() {
            at -= b.len();
            continue;
        }
        let n = (b.len() - at).min(src.len());
        // The destination may be a client's shared-memory buffer, which that client alone may
        // also write: a raw copy, as the kernel's would be.
        // SAFETY: `at + n <= b.len()`, `n <= src.len()`; `src` is cache or local memory,
        // which cannot overlap a destination buffer.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), b.as_mut_ptr().add(at), n) };
        src = &src[n..];
        copied += n;
        at = 0;
    }
    copied
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

/// `preadv` of `file` at `offset` through the cache. With write-back, a file with dirty blocks
/// ends where they say, and what lies between its backing file's end and theirs reads as zeros.
pub fn read(cache: &BlockCache, fd: BorrowedFd<'_>, file: FileKey, bufs: &mut [IoSliceMut<'_>], offset: u64) -> io::Result<usize> {
    let size = cache.dirty_size(file);
    let mut total: usize = bufs.iter().map(|b| b.len()).sum();
    if let Some(size) = size {
        total = total.min(usize::try_from(size.saturating_sub(offset)).unwrap_or(usize::MAX));
    }
    let mut direct = Direct::new(fd);
    let mut done = 0;
    while done < total {
        let pos = offset.checked_add(done as u64).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        let block = pos / BLOCK as u64;
        let at = (pos % BLOCK as u64) as usize;
        let want = (total - done).min(BLOCK - at);
        let served = cache.read_with(file, block, |data| {
            let end = data.len().min(at + want);
            let part = data.get(at..end).unwrap_or(&[]);
            (scatter(bufs, done, part), data.len())
        });
        let (mut n, mut block_len) = match served {
            Some(v) => v,
            None => {
                let generation = cache.generation(file);
                let data = fetch(&mut direct, block)?;
                let end = data.len().min(at + want);
                let n = scatter(bufs, done, data.get(at..end).unwrap_or(&[]));
                let len = data.len();
                if len > 0 {
                    // (A block wholly past the end is not kept: the file may grow.)
                    cache.insert(file, block, generation, data);
                }
                (n, len)
            }
        };
        if let Some(size) = size {
            // Within the file's size with its dirty blocks: zeros where the data stops.
            let end = usize::try_from(size - block * BLOCK as u64).unwrap_or(BLOCK).min(BLOCK);
            if at + n < end.min(at + want) {
                n += zeros(bufs, done + n, end.min(at + want) - (at + n));
            }
            block_len = block_len.max(end);
        }
        done += n;
        if block_len < BLOCK && at + n >= block_len {
            // The end of the file.
            break;
        }
        if n == 0 {
            break;
        }
    }
    Ok(done)
}

/// Writes `count` zero bytes into `bufs` from logical position `at` on; the bytes written.
fn zeros(bufs: &mut [IoSliceMut<'_>], at: usize, count: usize) -> usize {
    static ZEROS: [u8; 4096] = [0; 4096];
    let mut done = 0;
    while done < count {
        let n = scatter(bufs, at + done, &ZEROS[..(count - done).min(ZEROS.len())]);
        if n == 0 {
            break;
        }
        done += n;
    }
    done
}

/// `pwritev` of `file` at `offset`, then the cache brought up to date.
pub fn write(cache: &BlockCache, fd: BorrowedFd<'_>, file: FileKey, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
    let before = version_of(fd)?;
    let n = rustix::io::pwritev(fd, bufs, offset)?;
    if n > 0 {
        let last = (offset + n as u64 - 1) / BLOCK as u64;
        // The blocks written, and when the file grew, every block from its old end on: the
        // old last block was short and now reads on (zeros up to the write, or its data).
        let first = (offset / BLOCK as u64).min(before.2 / BLOCK as u64);
        cache.invalidate_range(file, first, last);
    }
    cache.changed_by_us(file, version_of(fd.as_fd())?);
    Ok(n)
}
