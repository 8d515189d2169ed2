//! The change table: one word per slot that the service bumps after every change of a file's
//! data or size it makes (on either path), and marks while a writer it does not see holds the
//! file (a FUSE or user-level passthrough writer). A client that learned something of a file
//! (its first bytes with an open, or where it ends with a short read) keeps the slot's word
//! with it and trusts what it learned only while the word is the same: a repeated read of a
//! small file or at its end then costs no round trip, and a change anybody makes through the
//! service is seen by the next read, as in the kernel.
//!
//! The service maps the table read-write; clients get it sealed against writable mappings
//! (`F_SEAL_FUTURE_WRITE`) and map it read-only, so no client can hide a change from another.
//! Word 0 is the table's identity (a random non-zero value per service): what a client learned
//! under one service is never trusted under its successor.

use core::sync::atomic::AtomicU64;

/// Slots in the table (after the identity word): files hashing to one slot share a word, so a
/// change of one only costs the others a round trip.
pub const SLOTS: usize = 8192;
/// Bytes of the table.
pub const BYTES: usize = (SLOTS + 1) * core::mem::size_of::<u64>();
/// Bit of a slot's word: a writer the service does not see (one with the backing file's
/// descriptor) holds a file of the slot; nothing learned of its files may be trusted.
pub const OUTSIDE: u64 = 1;
/// What a change adds to a slot's word.
pub const STEP: u64 = 2;
/// Largest file whose bytes come with an open (`OPEN_PREFETCHED`).
pub const PREFETCH_MAX: u64 = 64 << 10;
/// The inode number under which an instance's names are kept: its slot's word changes with
/// every change of a name or of what decides access to names (owners, modes, ACLs).
pub const NAMES: u64 = u64::MAX;

/// What follows the bytes of an `OPEN_PREFETCHED` answer in the buffer, at the first multiple
/// of 8 past them ([`trailer_at`]): the slot and word of the instance's names as they were
/// before the path was walked (the open's outcome holds while it is the same), and the file's
/// attributes as the caller sees them (valid while the file's word and this one hold).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenTrailer {
    pub names_slot: u64,
    pub names_word: u64,
    pub attr: crate::WireAttr,
}

// SAFETY: `#[repr(C)]`, integers only (a `WireAttr` is integers only).
unsafe impl crate::ShmSafe for OpenTrailer {}

impl OpenTrailer {
    pub const SIZE: usize = core::mem::size_of::<OpenTrailer>();

    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[..8].copy_from_slice(&self.names_slot.to_ne_bytes());
        b[8..16].copy_from_slice(&self.names_word.to_ne_bytes());
        b[16..].copy_from_slice(&self.attr.to_bytes());
        b
    }

    /// Reads one from buffer bytes (any bytes give some value).
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> OpenTrailer {
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_ne_bytes(w)
        };
        let mut a = [0u8; core::mem::size_of::<crate::WireAttr>()];
        a.copy_from_slice(&b[16..]);
        OpenTrailer { names_slot: word(0), names_word: word(8), attr: crate::WireAttr::from_bytes(&a) }
    }
}

/// Where the trailer of an answer with `n` bytes of a file starts.
pub const fn trailer_at(n: usize) -> usize {
    (n + 7) & !7
}

/// The slot of inode `inode` of the instance the service keys `key` (index into the words
/// after word 0). Only the service computes it: it tells the client the slot with what the
/// client learns.
pub fn slot(key: u32, inode: u64) -> usize {
    let h = (inode ^ (u64::from(key) << 40)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // The top bits of the product: SLOTS is a power of two.
    (h >> (64 - SLOTS.trailing_zeros())) as usize
}

/// A view of a mapped table. Copies are handed out only for as long as the mapping's owner
/// keeps it (a borrow of the client, or the service's table).
#[derive(Clone, Copy, Debug)]
pub struct View {
    words: *const AtomicU64,
}

// SAFETY: the words are atomics in shared memory; any thread may load them.
unsafe impl Send for View {}
// SAFETY: as above.
unsafe impl Sync for View {}

impl View {
    /// # Safety
    /// `base` is an 8-byte aligned mapping of at least [`BYTES`] bytes that stays mapped for
    /// as long as the view (and its copies) are used.
    pub const unsafe fn new(base: *const u8) -> View {
        View { words: base.cast() }
    }

    /// Where the table is mapped.
    pub fn as_ptr(&self) -> *const u8 {
        self.words.cast()
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        // SAFETY: callers pass at most SLOTS, within the mapping `new`'s contract promises.
        unsafe { &*self.words.add(i) }
    }

    /// The table's identity.
    pub fn id(&self) -> u64 {
        self.word(0).load(core::sync::atomic::Ordering::Acquire)
    }

    /// The word of slot `slot` now (`None`: no such slot).
    pub fn load(&self, slot: u64) -> Option<u64> {
        let i = usize::try_from(slot).ok().filter(|s| *s < SLOTS)?;
        Some(self.word(i + 1).load(core::sync::atomic::Ordering::Acquire))
    }

    /// The word of slot `slot` (the service's side: the table is its own).
    pub fn slot_word(&self, slot: usize) -> &AtomicU64 {
        self.word(slot.min(SLOTS - 1) + 1)
    }

    /// Word `i` of the table (0: the identity), for the service setting it up.
    pub fn raw(&self, i: usize) -> &AtomicU64 {
        self.word(i.min(SLOTS))
    }
}

/// Serves a read of `out.len()` bytes at `offset` from a file's first bytes `head`, known to
/// end at `end` (`u64::MAX`: unknown): the bytes copied, or `None` when only the service can
/// answer. Only a read that the known bytes answer as the file would is served: all it asked
/// for, or everything up to the end.
pub fn read_known(head: &[u8], end: u64, offset: u64, out: &mut [u8]) -> Option<usize> {
    if offset >= end {
        return Some(0);
    }
    let start = usize::try_from(offset).ok().filter(|s| *s < head.len())?;
    let n = out.len().min(head.len() - start);
    if n < out.len() && (start + n) as u64 != end {
        return None;
    }
    out[..n].copy_from_slice(&head[start..start + n]);
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_spread_and_stay_in_range() {
        let mut seen = std::collections::BTreeSet::new();
        for inode in 1..=4096u64 {
            let s = slot(1, inode);
            assert!(s < SLOTS);
            seen.insert(s);
        }
        // Consecutive inode numbers land on distinct slots nearly always.
        assert!(seen.len() > 3500, "{}", seen.len());
        assert_ne!(slot(1, 7), slot(2, 7));
    }

    #[test]
    fn known_bytes_answer_only_what_the_file_would() {
        let head = b"hello world";
        let mut out = [0u8; 64];
        // The whole file, then its end.
        assert_eq!(read_known(head, 11, 0, &mut out), Some(11));
        assert_eq!(&out[..11], head);
        assert_eq!(read_known(head, 11, 11, &mut out), Some(0));
        assert_eq!(read_known(head, 11, 400, &mut out), Some(0));
        // Inside it.
        let mut five = [0u8; 5];
        assert_eq!(read_known(head, 11, 6, &mut five), Some(5));
        assert_eq!(&five, b"world");
        // Past the known bytes of a longer file: the service's.
        assert_eq!(read_known(head, u64::MAX, 6, &mut out), None);
        assert_eq!(read_known(head, 20, 6, &mut out), None);
        // Only the end known (a short read saw it): reads there and beyond are 0.
        assert_eq!(read_known(&[], 4096, 4096, &mut out), Some(0));
        assert_eq!(read_known(&[], 4096, 0, &mut out), None);
    }
}
