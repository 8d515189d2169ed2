//! Reading and writing a backend's files through the block cache, whatever the backend: reads
//! are served from cached blocks and missing ones fetched whole from the backend (by a closure
//! of the backend's); a write to the backend then drops the blocks it made stale.

use std::io::{self, IoSliceMut};

use super::{BlockCache, FileKey, BLOCK};

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

/// `preadv` of `file` at `offset` through the cache, `fetch` reading a missing block (whole:
/// shorter only at the file's end) from the backend, and saying whether it may be kept (the
/// backend's reason to cache the file still held when the block was read). With write-back, a
/// file with dirty blocks ends where they say, and what lies between its backing file's end
/// and theirs reads as zeros.
pub fn read(cache: &BlockCache, file: FileKey, bufs: &mut [IoSliceMut<'_>], offset: u64, mut fetch: impl FnMut(u64) -> io::Result<(Vec<u8>, bool)>) -> io::Result<usize> {
    let size = cache.dirty_size(file);
    let mut total: usize = bufs.iter().map(|b| b.len()).sum();
    if let Some(size) = size {
        total = total.min(usize::try_from(size.saturating_sub(offset)).unwrap_or(usize::MAX));
    }
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
                let (data, keep) = fetch(block)?;
                let end = data.len().min(at + want);
                let n = scatter(bufs, done, data.get(at..end).unwrap_or(&[]));
                let len = data.len();
                if len > 0 && keep {
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

/// After `n` bytes were written to the backend at `offset` of `file`, which was `old_size`
/// bytes long before: drops the blocks written, and when the file grew, every block from its
/// old end on (the old last block was short and now reads on: zeros up to the write, or its
/// data).
pub fn written(cache: &BlockCache, file: FileKey, offset: u64, n: usize, old_size: u64) {
    if n > 0 {
        let last = (offset + n as u64 - 1) / BLOCK as u64;
        let first = (offset / BLOCK as u64).min(old_size / BLOCK as u64);
        cache.invalidate_range(file, first, last);
    }
}
