//! Read delegations: what lets the pool's block cache hold a CephFS file's data coherently.
//!
//! A libcephfs read delegation on an open handle is granted only while the client holds the
//! capabilities to cache the file's data (no client anywhere has it open for writing) and
//! keeps them until it is returned. When another client (another host, or this one) wants to
//! change the file, Ceph recalls the delegation first: the recall callback stops the handle
//! from using the cache and drops the file's cached blocks, and this module's thread returns
//! the delegation, after which the other client's open or write proceeds. So the cache serves
//! a handle only while nobody can change the file, and a change made on another host is seen
//! by the next read after it, as Ceph promises.
//!
//! The callback runs under the client's lock: it touches only the cache and a queue. A
//! delegation not returned within [`TIMEOUT`] makes libcephfs unmount the client, so the
//! returning thread does nothing else.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};

use crate::backend::cache::{BlockCache, FileKey};

/// Seconds a recalled delegation may take to come back (libcephfs wants less than the MDS's
/// session autoclose, 300 s by default).
pub(super) const TIMEOUT: u32 = 60;

/// A handle's read delegation.
#[allow(missing_debug_implementations)]
pub struct Delegation {
    /// Until recalled: the cache may serve the handle.
    held: AtomicBool,
    handle: u64,
    pub key: FileKey,
    cache: Arc<BlockCache>,
    returns: Arc<Returns>,
}

impl Delegation {
    pub(super) fn new(handle: u64, key: FileKey, cache: Arc<BlockCache>, returns: Arc<Returns>) -> Delegation {
        Delegation { held: AtomicBool::new(true), handle, key, cache, returns }
    }

    /// Whether the cache may still serve the handle.
    pub fn held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    pub fn cache(&self) -> &BlockCache {
        &self.cache
    }

    /// The recall: no more cached reads, the file's blocks dropped (another client is about
    /// to change it), and the delegation queued to be returned.
    fn recall(&self) {
        self.held.store(false, Ordering::Release);
        self.cache.invalidate(self.key);
        self.returns.push(self.handle);
    }
}

/// `ceph_deleg_cb_t`.
pub(super) unsafe extern "C" fn recalled(_fh: *mut c_void, priv_: *mut c_void) {
    // SAFETY: `priv_` is the `Delegation` of an entry in the client's file table, which holds
    // it until the delegation is returned or the handle closed (after which libcephfs calls
    // nothing for it).
    let d = unsafe { &*(priv_ as *const Delegation) };
    // No panic may unwind into libcephfs.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| d.recall()));
}

/// Handles whose delegations were recalled, for the returning thread.
#[derive(Default)]
pub(super) struct Returns {
    queue: Mutex<(Vec<u64>, bool)>,
    ready: Condvar,
}

impl Returns {
    fn push(&self, handle: u64) {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).0.push(handle);
        self.ready.notify_one();
    }

    /// Ends the thread (the client is going).
    pub(super) fn stop(&self) {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).1 = true;
        self.ready.notify_one();
    }

    /// The next recalled handles, or `None` once stopped.
    fn wait(&self) -> Option<Vec<u64>> {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if q.1 {
                return None;
            }
            if !q.0.is_empty() {
                return Some(std::mem::take(&mut q.0));
            }
            q = self.ready.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Starts the thread that returns `returns`' delegations through `give_back` (which gets the
/// client, if it still exists, and a handle).
pub(super) fn start_returner<C: Send + Sync + 'static>(
    returns: Arc<Returns>,
    client: Weak<C>,
    give_back: fn(&C, u64),
) -> std::io::Result<()> {
    std::thread::Builder::new().name("ptn-ceph-deleg".into()).spawn(move || {
        while let Some(handles) = returns.wait() {
            let Some(c) = client.upgrade() else { return };
            for h in handles {
                give_back(&c, h);
            }
        }
    })?;
    Ok(())
}
