//! Layout of the pool's SysV shared-memory segment, and futex helpers.
//!
//! ```text
//! [SegmentHeader][Doorbell x nqueues][QueueHeader + Slot x slots] x nqueues
//! ```
//! Each client's own area (request, answer, data) is not here but in a memory object of its
//! own (see [`crate::area`]); the queues carry only hints naming a client.
//! Everything is found by offset from the segment's base; the service computes the geometry
//! once and never trusts the header's copy of it afterwards.

use core::mem::size_of;

use crate::queue::{QueueHeader, Slot};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::ShmSafe;

pub const MAGIC: u64 = 0x706f_6c79_7472_6f70; // "polytrop"

/// Geometry of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub queues: u32,
    /// Slots per queue (a power of two).
    pub slots: u32,
    pub clients: u32,
    pub buffer_size: u64,
}

/// The segment's first bytes.
#[repr(C)]
#[derive(Debug)]
pub struct SegmentHeader {
    pub magic: AtomicU64,
    pub version: AtomicU32,
    pub queues: AtomicU32,
    pub slots: AtomicU32,
    pub clients: AtomicU32,
    pub buffer_size: AtomicU64,
    /// Incremented by the service when it (re)starts serving; 0 while setting up.
    pub generation: AtomicU64,
    /// The service's liveness word: the thread id of the service's sentinel thread while it
    /// serves, 0 before and after. It is a robust futex of that thread: when the service
    /// dies (kill -9, crash), the kernel sets [`OWNER_DIED`] in it, so a waiting client
    /// tells a dead service from a slow one at once.
    pub service: AtomicU32,
    pub reserved: AtomicU32,
}

/// Bit the kernel sets in a robust futex word whose owner died (`FUTEX_OWNER_DIED`).
pub const OWNER_DIED: u32 = 0x4000_0000;

/// A queue's wake-up word: consumers sleep on it when idle.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct Doorbell {
    pub word: AtomicU32,
    pub sleepers: AtomicU32,
    /// The cpu the queue's worker last served on, plus one (0: not known yet). A scheduling
    /// hint only (see [`crate::FLAG_NEAR`]).
    pub cpu: AtomicU32,
}

impl Doorbell {
    /// Rings: moves the word (a worker about to sleep sees it moved) and wakes one sleeping
    /// worker, if any (a polling one costs no system call).
    pub fn ring(&self) {
        self.word.fetch_add(1, Ordering::Release);
        if self.sleepers.load(Ordering::Acquire) > 0 {
            futex_wake(&self.word, 1);
        }
    }
}

/// Client states (the futex word of a client area).
pub const IDLE: u32 = 0;
pub const PENDING: u32 = 1;
pub const DONE: u32 = 2;
/// `PENDING`, and the client sleeps on the word: the completion must wake it.
pub const SLEEPING: u32 = 3;

// SAFETY: `#[repr(C)]`, atomics only, every bit pattern is valid.
unsafe impl ShmSafe for SegmentHeader {}
// SAFETY: as above.
unsafe impl ShmSafe for Doorbell {}

const fn align64(x: usize) -> usize {
    (x + 63) & !63
}

/// Byte offsets of everything in a segment of geometry `g`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub geometry: Geometry,
    pub doorbells: usize,
    pub queues: usize,
    pub queue_stride: usize,
    pub total: usize,
}

impl Layout {
    /// The layout for `g`, or `None` when `g` is unusable (slots not a power of two, zero
    /// sizes, or a total that overflows).
    pub fn new(g: Geometry) -> Option<Layout> {
        if g.queues == 0 || g.clients == 0 || g.buffer_size == 0 || !g.slots.is_power_of_two() {
            return None;
        }
        let doorbells = align64(size_of::<SegmentHeader>());
        let queues = align64(doorbells.checked_add(size_of::<Doorbell>().checked_mul(g.queues as usize)?)?);
        let queue_stride = align64(size_of::<QueueHeader>().checked_add(size_of::<Slot>().checked_mul(g.slots as usize)?)?);
        let total = queues.checked_add(queue_stride.checked_mul(g.queues as usize)?)?;
        crate::area::Area::size(g.buffer_size)?;
        Some(Layout { geometry: g, doorbells, queues, queue_stride, total })
    }
}

/// A mapped segment: its base address and layout. The memory is shared with other
/// processes, so every access goes through atomics or volatile copies.
#[derive(Debug, Clone, Copy)]
pub struct Segment {
    base: usize,
    pub layout: Layout,
}

impl Segment {
    /// A view of the `layout.total` bytes at `base`.
    ///
    /// # Safety
    /// `base` must be 64-byte aligned and valid for reads and writes of `layout.total` bytes for
    /// as long as the `Segment` (and anything borrowed from it) is used.
    pub unsafe fn new(base: *mut u8, layout: Layout) -> Segment {
        Segment { base: base as usize, layout }
    }

    pub fn header(&self) -> &SegmentHeader {
        // SAFETY: offset 0 of a segment valid for `total` bytes (contract of `new`), aligned;
        // atomics are valid for every bit pattern.
        unsafe { &*(self.base as *const SegmentHeader) }
    }

    pub fn doorbell(&self, q: u32) -> &Doorbell {
        let q = (q % self.layout.geometry.queues) as usize;
        // SAFETY: in bounds by `Layout::new` (q < queues) and aligned to 64.
        unsafe { &*((self.base + self.layout.doorbells + q * size_of::<Doorbell>()) as *const Doorbell) }
    }

    /// Queue `q` (taken modulo the number of queues).
    pub fn queue(&self, q: u32) -> crate::Queue<'_> {
        let q = (q % self.layout.geometry.queues) as usize;
        let at = self.base + self.layout.queues + q * self.layout.queue_stride;
        // SAFETY: the header and `slots` slots lie inside the segment by `Layout::new`, aligned.
        let (h, s) = unsafe {
            (
                &*(at as *const QueueHeader),
                core::slice::from_raw_parts((at + size_of::<QueueHeader>()) as *const Slot, self.layout.geometry.slots as usize),
            )
        };
        match crate::Queue::new(h, s) {
            Some(queue) => queue,
            // `slots` is a power of two by `Layout::new`.
            None => unreachable!("slot count checked by Layout::new"),
        }
    }

    /// Whether the segment's service no longer serves it: it died (the kernel marked its
    /// liveness word) or stopped. A process that writes the segment can fake this for the
    /// other clients of its own pool, which then get `EIO`: a denial of service to its own
    /// tenant only, never a wrong answer.
    pub fn service_gone(&self) -> bool {
        let w = self.header().service.load(Ordering::Acquire);
        w == 0 || w & OWNER_DIED != 0
    }

    /// Sets up a fresh segment (service side, before anyone else sees it).
    pub fn init(&self) {
        let g = self.layout.geometry;
        let h = self.header();
        h.magic.store(MAGIC, Ordering::Relaxed);
        h.version.store(crate::PROTOCOL_VERSION, Ordering::Relaxed);
        h.queues.store(g.queues, Ordering::Relaxed);
        h.slots.store(g.slots, Ordering::Relaxed);
        h.clients.store(g.clients, Ordering::Relaxed);
        h.buffer_size.store(g.buffer_size, Ordering::Relaxed);
        for q in 0..g.queues {
            self.queue(q).init();
        }
        h.generation.store(1, Ordering::Release);
    }

    /// The geometry a segment's header claims (client side, checked against the mapping size).
    pub fn claimed_geometry(base: *const u8) -> Option<Geometry> {
        // SAFETY: callers pass the base of a mapping at least one page long (the header is
        // well under a page); atomics are valid for any bit pattern.
        let h = unsafe { &*(base as *const SegmentHeader) };
        if h.magic.load(Ordering::Acquire) != MAGIC || h.version.load(Ordering::Acquire) != crate::PROTOCOL_VERSION {
            return None;
        }
        Some(Geometry {
            queues: h.queues.load(Ordering::Relaxed),
            slots: h.slots.load(Ordering::Relaxed),
            clients: h.clients.load(Ordering::Relaxed),
            buffer_size: h.buffer_size.load(Ordering::Relaxed),
        })
    }
}

/// `futex(FUTEX_WAIT)` on a shared (not process-private) word: sleeps while `*word == val`,
/// at most `timeout_ms`.
pub fn futex_wait(word: &AtomicU32, val: u32, timeout_ms: u64) {
    let ts = libc::timespec { tv_sec: (timeout_ms / 1000) as libc::time_t, tv_nsec: ((timeout_ms % 1000) * 1_000_000) as libc::c_long };
    // SAFETY: futex on the address of a live AtomicU32; the kernel only reads it.
    unsafe {
        libc::syscall(libc::SYS_futex, word as *const AtomicU32, libc::FUTEX_WAIT, val, &ts as *const libc::timespec);
    }
}

/// `futex(FUTEX_WAKE)` of up to `n` sleepers on a shared word.
pub fn futex_wake(word: &AtomicU32, n: i32) {
    // SAFETY: futex on the address of a live AtomicU32.
    unsafe {
        libc::syscall(libc::SYS_futex, word as *const AtomicU32, libc::FUTEX_WAKE, n);
    }
}
