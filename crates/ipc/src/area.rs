//! A client's private area: its request, its answer, its data buffer and its ring of
//! requests that need no answer, in a memory object (a sealed memfd) that only the client and
//! the service map. The service creates it when the client connects to the pool's channel
//! socket and hands it over that socket, so no other process can read the client's data,
//! change its request or forge its answer.
//!
//! ```text
//! [ClientHeader][PostRing][data: buffer_size bytes], 64-byte aligned
//! ```
//!
//! The shared segment's queues then carry only *hints* ("client N has something"): the
//! service reads the request itself from client N's area, so a hint forged by another
//! process can only make the service look at an area whose owner asked for nothing.

use core::mem::size_of;

use crate::segment::{futex_wake, DONE, SLEEPING};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::{Descriptor, ShmSafe};

/// A client's header: its request, the completion word and small results.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct ClientHeader {
    /// `IDLE` / `PENDING` / `SLEEPING` / `DONE`; the futex the client sleeps on.
    pub state: AtomicU32,
    /// For a streamed write (`WRITE_STREAMED`): how many of the request's bytes the client
    /// has put in the buffer so far (the service writes them as they come).
    pub filled: AtomicU32,
    /// Sequence number of the request being answered.
    pub seq: AtomicU64,
    /// Result: >= 0 success value, < 0 a negated errno.
    pub result: AtomicU64,
    /// Small results (inode, handle, ...).
    pub aux: [AtomicU64; 4],
    /// The request, as [`Descriptor::to_words`] lays it out (the client writes it before it
    /// marks the area pending).
    pub request: [AtomicU64; 8],
}

/// Requests that need no answer (releases) a client may leave before the service takes them.
pub const POSTS: u32 = 16;

/// One request that needs no answer: an `Op`, its instance, inode and handle.
#[repr(C)]
#[derive(Debug)]
pub struct Post {
    pub op_instance: AtomicU64,
    pub inode: AtomicU64,
    pub handle: AtomicU64,
}

/// The ring of [`Post`]s: the client writes entry `head % POSTS` then advances `head`; the
/// service takes entries up to `head` (at most `POSTS` past its own count, whatever `head`
/// says) and publishes how far it got in `tail`, which tells the client what it may reuse.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct PostRing {
    pub head: AtomicU32,
    pub tail: AtomicU32,
    pub entries: [Post; POSTS as usize],
}

// SAFETY: `#[repr(C)]`, atomics only, every bit pattern is valid.
unsafe impl ShmSafe for ClientHeader {}
// SAFETY: as above.
unsafe impl ShmSafe for PostRing {}

const fn align64(x: usize) -> usize {
    (x + 63) & !63
}

const HEADER: usize = align64(size_of::<ClientHeader>());
const RING: usize = align64(size_of::<PostRing>());

/// A view of one client area of `buffer_size` data bytes.
#[derive(Clone, Copy, Debug)]
pub struct Area {
    base: usize,
    buffer_size: usize,
}

impl Area {
    /// Bytes of an area with `buffer_size` data bytes (`None` on overflow).
    pub fn size(buffer_size: u64) -> Option<usize> {
        HEADER.checked_add(RING)?.checked_add(usize::try_from(buffer_size).ok()?)
    }

    /// A view of the area at `base`.
    ///
    /// # Safety
    /// `base` must be 64-byte aligned and valid for reads and writes of
    /// `Area::size(buffer_size)` bytes for as long as the `Area` (and anything borrowed from
    /// it) is used, and must stay mapped that long (a sealed memfd cannot shrink under it).
    pub unsafe fn new(base: *mut u8, buffer_size: u64) -> Area {
        Area { base: base as usize, buffer_size: buffer_size as usize }
    }

    pub fn header(&self) -> &ClientHeader {
        // SAFETY: offset 0 of an area valid for its size (contract of `new`), aligned; atomics
        // are valid for every bit pattern.
        unsafe { &*(self.base as *const ClientHeader) }
    }

    pub fn posts(&self) -> &PostRing {
        // SAFETY: `HEADER..HEADER + RING` lies inside the area, 64-byte aligned.
        unsafe { &*((self.base + HEADER) as *const PostRing) }
    }

    pub fn buffer_size(&self) -> usize {
        self.buffer_size
    }

    fn data(&self) -> *mut u8 {
        (self.base + HEADER + RING) as *mut u8
    }

    /// The request the client left (a copy: the client may change it meanwhile, and the
    /// service acts on this copy only). Its sequence word is read first: the client writes
    /// it last (see [`Area::set_request`]), so the other words read after it are that
    /// request's, as long as the client does not write the next one before this one is
    /// answered (an honest client cannot; another can only garble its own request).
    pub fn request(&self) -> Descriptor {
        let w = &self.header().request;
        let seq = w[1].load(Ordering::Acquire);
        let mut words: [u64; 8] = core::array::from_fn(|i| w[i].load(Ordering::Relaxed));
        words[1] = seq;
        Descriptor::from_words(words)
    }

    /// Leaves request `d` (client side, before marking the area pending): every word but
    /// the sequence number, then the sequence number, so that a service that sees the new
    /// number sees the rest of the request with it.
    pub fn set_request(&self, d: &Descriptor) {
        let w = &self.header().request;
        let words = d.to_words();
        for (i, v) in words.iter().enumerate() {
            if i != 1 {
                w[i].store(*v, Ordering::Relaxed);
            }
        }
        w[1].store(words[1], Ordering::Release);
    }

    /// Answers the area's request (the service's side of the state machine): result, small
    /// values, sequence, then the completion word, and a wake-up for a client sleeping on it.
    pub fn complete(&self, seq: u64, result: i64, aux: [u64; 4]) {
        let h = self.header();
        for (slot, v) in h.aux.iter().zip(aux) {
            slot.store(v, Ordering::Relaxed);
        }
        h.seq.store(seq, Ordering::Relaxed);
        h.result.store(result as u64, Ordering::Relaxed);
        if h.state.swap(DONE, Ordering::AcqRel) == SLEEPING {
            futex_wake(&h.state, 1);
        }
    }

    /// The whole data buffer as bytes, to hand straight to a read or write system call (no
    /// copy through a private buffer).
    ///
    /// # Safety
    /// The memory is shared with the client, which may write it at any time, and another
    /// thread must not use this area's buffer meanwhile. The caller may only pass the slice to
    /// the kernel (the data of a `read`/`write`-family call) or fill it with raw copies
    /// (`ptr::copy_nonoverlapping`, as the kernel would), must never read it through Rust
    /// references, nor keep it after the request.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn buffer(&self) -> &mut [u8] {
        // SAFETY: `buffer_size` bytes from `data()` lie inside the area (`Area::size`); the
        // aliasing and use restrictions are the caller's (see above).
        unsafe { core::slice::from_raw_parts_mut(self.data(), self.buffer_size) }
    }

    /// Copies `len` bytes of the buffer out (len is clamped to the buffer).
    pub fn read_data(&self, len: usize, out: &mut [u8]) -> usize {
        let n = len.min(out.len()).min(self.buffer_size);
        // SAFETY: `n` bytes from `data()` lie inside the buffer; `out` is local memory that
        // cannot overlap the area. The other side may write meanwhile: the copy then holds
        // some mix of bytes, which is all any reader of shared memory can expect.
        unsafe { core::ptr::copy_nonoverlapping(self.data(), out.as_mut_ptr(), n) };
        n
    }

    /// Copies `data` into the buffer (clamped to it); returns the bytes copied.
    pub fn write_data(&self, data: &[u8]) -> usize {
        self.write_data_at(0, data)
    }

    /// Copies `data` into the buffer from byte `at` on (clamped to it); returns the bytes
    /// copied.
    pub fn write_data_at(&self, at: usize, data: &[u8]) -> usize {
        let at = at.min(self.buffer_size);
        let n = data.len().min(self.buffer_size - at);
        // SAFETY: `at + n <= buffer_size`, so the `n` bytes from `data() + at` lie inside the
        // buffer; the source is a local slice that cannot overlap the area.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), self.data().add(at), n) };
        n
    }

    /// Leaves a request that needs no answer (client side): `None` when the ring is full,
    /// else whether the service needs a hint for it. It does not while an earlier post is
    /// still untaken: the hint that named that one makes the service take this one too (a
    /// service that is just finishing looks again, see [`Area::posts_left`]).
    pub fn post(&self, d: &Descriptor) -> Option<bool> {
        let ring = self.posts();
        let head = ring.head.load(Ordering::Relaxed);
        if head.wrapping_sub(ring.tail.load(Ordering::Acquire)) >= POSTS {
            return None;
        }
        let e = &ring.entries[(head % POSTS) as usize];
        e.op_instance.store(u64::from(d.op) | u64::from(d.instance) << 32, Ordering::Relaxed);
        e.inode.store(d.inode, Ordering::Relaxed);
        e.handle.store(d.handle, Ordering::Relaxed);
        ring.head.store(head.wrapping_add(1), Ordering::Release);
        // Pairs with the fence in `posts_left`: either the service sees this head after
        // publishing its tail, or this load sees that tail.
        crate::sync::fence(Ordering::SeqCst);
        Some(ring.tail.load(Ordering::Acquire) == head)
    }

    /// Whether the client posted more after the service took up to `taken` (service side,
    /// after [`Area::take_posts`]).
    pub fn posts_left(&self, taken: u32) -> bool {
        crate::sync::fence(Ordering::SeqCst);
        self.posts().head.load(Ordering::Acquire) != taken
    }

    /// Takes the posted requests after the `taken` the service counted so far (service
    /// side), calls `f` on each and returns the new count, also published in the ring's
    /// `tail`. A `head` further ahead than the ring holds is no client's that posts through
    /// [`Area::post`] (which never gets more than `POSTS` ahead of the published tail): its
    /// entries are dropped unread, so that a client rewriting its `head` cannot keep a worker
    /// taking posts round after round.
    pub fn take_posts(&self, taken: u32, mut f: impl FnMut(Descriptor)) -> u32 {
        let ring = self.posts();
        let head = ring.head.load(Ordering::Acquire);
        if head.wrapping_sub(taken) > POSTS {
            ring.tail.store(head, Ordering::Release);
            return head;
        }
        let n = head.wrapping_sub(taken);
        for i in 0..n {
            let e = &ring.entries[(taken.wrapping_add(i) % POSTS) as usize];
            let oi = e.op_instance.load(Ordering::Relaxed);
            f(Descriptor { op: oi as u32, instance: (oi >> 32) as u32, inode: e.inode.load(Ordering::Relaxed), handle: e.handle.load(Ordering::Relaxed), ..Descriptor::default() });
        }
        let now = taken.wrapping_add(n);
        ring.tail.store(now, Ordering::Release);
        now
    }
}
