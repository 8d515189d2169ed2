//! Backing files registered for FUSE passthrough, on either transport.
//!
//! fuser registers them for the classic transport (its `BackingId`); the io_uring transport
//! registers its own with the same ioctl on the connection's device. Both are ids in the one
//! table of the connection, released when dropped.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Weak};

#[repr(C)]
struct BackingMap {
    fd: u32,
    flags: u32,
    padding: u64,
}

nix::ioctl_write_ptr!(backing_open, 229, 1, BackingMap);
nix::ioctl_write_ptr!(backing_close, 229, 2, u32);

/// A backing file registered by the io_uring transport.
#[derive(Debug)]
pub struct RingBacking {
    dev: Weak<OwnedFd>,
    id: u32,
}

impl RingBacking {
    /// Registers `fd` on the connection of `dev` (`FUSE_DEV_IOC_BACKING_OPEN`).
    pub fn open(dev: &Arc<OwnedFd>, fd: BorrowedFd<'_>) -> std::io::Result<Self> {
        let map = BackingMap { fd: fd.as_raw_fd() as u32, flags: 0, padding: 0 };
        // SAFETY: `dev` is an open FUSE device and `map` a live `fuse_backing_map` the
        // kernel only reads during the call.
        let id = unsafe { backing_open(dev.as_raw_fd(), &map) }?;
        Ok(RingBacking { dev: Arc::downgrade(dev), id: id as u32 })
    }
}

impl Drop for RingBacking {
    fn drop(&mut self) {
        if let Some(dev) = self.dev.upgrade() {
            // SAFETY: `dev` is open and `self.id` a live u32 the kernel only reads.
            let _ = unsafe { backing_close(dev.as_raw_fd(), &self.id) };
        }
    }
}

/// A registered backing file.
#[derive(Debug)]
pub enum Backing {
    Classic(fuser::BackingId),
    Ring(RingBacking),
}

impl Backing {
    /// The id the kernel gave it. fuser keeps its ids' numbers private but prints them; a
    /// classic id whose number cannot be read is `None` (its opens on the ring are refused
    /// with `EBUSY`, as an open that cannot share a backing file is).
    pub fn raw(&self) -> Option<u32> {
        match self {
            Backing::Ring(r) => Some(r.id),
            Backing::Classic(c) => {
                let shown = format!("{c:?}");
                let tail = shown.split("backing_id:").nth(1)?;
                tail.trim().trim_end_matches('}').trim().parse().ok()
            }
        }
    }
}
