//! A bounded many-producer many-consumer request queue that lives in shared memory.
//!
//! Dmitry Vyukov's bounded MPMC ring: every slot carries a sequence word that says whose turn
//! it is (`seq == pos`: empty, a producer may claim it; `seq == pos + 1`: ready, a consumer may
//! take it; after taking, `seq = pos + capacity` hands it to the producer of the next lap).
//! Producers and consumers claim positions with one CAS each; no locks, no pointers: slots are
//! found by index, masked into range, so any value in the shared words stays in bounds.
//!
//! The other side is untrusted: every loop is bounded (garbage in the shared words ends in
//! `Busy`/`None`, never a hang) and descriptors are copied out before anyone looks at them.

use crate::sync::{AtomicU64, Ordering, UnsafeCell};
use crate::Descriptor;

/// Attempts before an operation gives up on a contended or corrupted queue.
const MAX_SPINS: u32 = 1 << 12;

/// Position counters, each on its own cache line.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct Cursor {
    pub pos: AtomicU64,
}

/// The queue's header in the segment.
#[repr(C)]
#[derive(Debug)]
pub struct QueueHeader {
    pub enqueue: Cursor,
    pub dequeue: Cursor,
}

/// One slot: the turn word and a descriptor.
#[repr(C)]
#[derive(Debug)]
pub struct Slot {
    pub seq: AtomicU64,
    pub desc: UnsafeCell<Descriptor>,
}

/// Why an enqueue failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushError {
    /// Every slot is taken.
    Full,
    /// Gave up after `MAX_SPINS` attempts (heavy contention, or garbage in the queue).
    Busy,
    /// The slot was claimed, but a consumer skipped it before it was published (the producer
    /// stalled for longer than a consumer waits): nothing was queued; push again.
    Skipped,
}

/// A view of one queue: its header and its slots (a power-of-two count).
#[derive(Debug, Clone, Copy)]
pub struct Queue<'a> {
    header: &'a QueueHeader,
    slots: &'a [Slot],
    mask: u64,
}

impl<'a> Queue<'a> {
    /// A view over `header` and `slots`. `slots.len()` must be a power of two; returns `None`
    /// otherwise.
    pub fn new(header: &'a QueueHeader, slots: &'a [Slot]) -> Option<Self> {
        let n = slots.len() as u64;
        (n.is_power_of_two()).then_some(Queue { header, slots, mask: n - 1 })
    }

    /// Puts every slot in its initial turn (only when nobody else uses the queue yet).
    pub fn init(&self) {
        for (i, s) in self.slots.iter().enumerate() {
            s.seq.store(i as u64, Ordering::Relaxed);
        }
        self.header.enqueue.pos.store(0, Ordering::Relaxed);
        self.header.dequeue.pos.store(0, Ordering::Release);
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    fn slot(&self, pos: u64) -> &Slot {
        // Masked: in bounds whatever `pos` holds.
        &self.slots[(pos & self.mask) as usize]
    }

    /// Enqueues a copy of `desc`.
    pub fn push(&self, desc: &Descriptor) -> Result<(), PushError> {
        let mut pos = self.header.enqueue.pos.load(Ordering::Relaxed);
        for _ in 0..MAX_SPINS {
            let slot = self.slot(pos);
            let seq = slot.seq.load(Ordering::Acquire);
            let diff = seq.wrapping_sub(pos) as i64;
            if diff == 0 {
                match self.header.enqueue.pos.compare_exchange_weak(pos, pos.wrapping_add(1), Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => {
                        slot.desc.with_mut(|p| {
                            // SAFETY: `p` points into this slot, valid for a `Descriptor`; the
                            // CAS above gave this producer the slot until the store below.
                            // Volatile: another process may touch the memory regardless.
                            unsafe { core::ptr::write_volatile(p, *desc) }
                        });
                        // Published only if the slot is still ours: a consumer skips a slot
                        // left unpublished too long (see `skip_head`), and then this request
                        // must go again.
                        return match slot.seq.compare_exchange(pos, pos.wrapping_add(1), Ordering::Release, Ordering::Relaxed) {
                            Ok(_) => Ok(()),
                            Err(_) => Err(PushError::Skipped),
                        };
                    }
                    Err(actual) => pos = actual,
                }
            } else if diff < 0 {
                return Err(PushError::Full);
            } else {
                pos = self.header.enqueue.pos.load(Ordering::Relaxed);
            }
            crate::sync::spin_hint();
        }
        Err(PushError::Busy)
    }

    /// Dequeues one descriptor (a copy, taken out of shared memory before it is returned).
    /// `None` when the queue is empty, or after `MAX_SPINS` attempts on a contended or
    /// corrupted queue.
    pub fn pop(&self) -> Option<Descriptor> {
        let mut pos = self.header.dequeue.pos.load(Ordering::Relaxed);
        for _ in 0..MAX_SPINS {
            let slot = self.slot(pos);
            let seq = slot.seq.load(Ordering::Acquire);
            let diff = seq.wrapping_sub(pos.wrapping_add(1)) as i64;
            if diff == 0 {
                match self.header.dequeue.pos.compare_exchange_weak(pos, pos.wrapping_add(1), Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => {
                        let desc = slot.desc.with(|p| {
                            // SAFETY: `p` points into this slot, valid for a `Descriptor`
                            // (plain integers: any bit pattern is a value); the CAS gave this
                            // consumer the slot until the store below.
                            unsafe { core::ptr::read_volatile(p) }
                        });
                        slot.seq.store(pos.wrapping_add(self.mask).wrapping_add(1), Ordering::Release);
                        return Some(desc);
                    }
                    Err(actual) => pos = actual,
                }
            } else if diff < 0 {
                return None;
            } else {
                pos = self.header.dequeue.pos.load(Ordering::Relaxed);
            }
            crate::sync::spin_hint();
        }
        None
    }

    /// The position a consumer would take next (to tell a stuck head, see [`Queue::skip_head`]).
    pub fn head(&self) -> u64 {
        self.header.dequeue.pos.load(Ordering::Acquire)
    }

    /// Skips the slot at position `head` when the queue is still stuck there: a producer
    /// claimed it and never published it (killed between the two steps, or hostile), or
    /// garbage was written into its turn word, so that no consumer could ever take it and
    /// every request behind it would wait forever. The slot is handed to the next lap; a
    /// producer that was merely slow finds its publication refused ([`PushError::Skipped`])
    /// and pushes again. A turn word already a lap or more ahead is left alone: that slot was
    /// taken or skipped meanwhile, and may hold the next lap's request. Consumers call this
    /// only after the head has not moved for a while. Returns whether the slot was skipped.
    pub fn skip_head(&self, head: u64) -> bool {
        if self.head() != head || self.backlog() == 0 {
            return false;
        }
        let slot = self.slot(head);
        let seq = slot.seq.load(Ordering::Acquire);
        let ahead = seq.wrapping_sub(head);
        if ahead == 1 {
            // Published meanwhile: a normal pop takes it.
            return false;
        }
        if ahead >= self.slots.len() as u64 && (ahead as i64) > 0 {
            // Already handed to a later lap: taken by a pop since `head` was read, or skipped
            // by another consumer that has yet to move the dequeue position (which it will).
            // A producer of that lap may have claimed and published it since: turning the
            // word back would lose that request (found by the loom model).
            return false;
        }
        if slot.seq.compare_exchange(seq, head.wrapping_add(self.mask).wrapping_add(1), Ordering::AcqRel, Ordering::Relaxed).is_err() {
            return false;
        }
        self.header.dequeue.pos.compare_exchange(head, head.wrapping_add(1), Ordering::AcqRel, Ordering::Relaxed).is_ok()
    }

    /// Requests waiting, as far as the counters say (a hint; garbage-tolerant).
    pub fn backlog(&self) -> u64 {
        let e = self.header.enqueue.pos.load(Ordering::Relaxed);
        let d = self.header.dequeue.pos.load(Ordering::Relaxed);
        // The two loads are not one snapshot: the enqueue position read may be older than the
        // dequeue position read after it (nothing orders them), so the difference may be
        // "negative". That is an empty queue, not a full one: `skip_head` would otherwise skip
        // a slot nobody had claimed yet, moving the dequeue position past the enqueue
        // position for good (found by the loom model).
        let n = e.wrapping_sub(d);
        if (n as i64) < 0 { 0 } else { n.min(self.slots.len() as u64) }
    }
}
