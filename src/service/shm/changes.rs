//! The service's side of the change table (`polytropon_ipc::changes`): a sealed memfd the
//! service maps read-write and every client maps read-only, whose slot words it bumps after
//! each change of a file's data or size (reported by the instance's union) and marks while a
//! writer it does not see (a passthrough writer, on either path) holds a file.
//!
//! One table per service process, made on first use. Each watched instance gets a key of its
//! own when it is built, before it is mounted (so that no change, and no passthrough writer,
//! escapes the table); its files' slots are hashed from that key and the inode.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use polytropon_ipc::changes::{self, View, OUTSIDE, STEP};
use tracing::warn;

use crate::libservice::{ChangeSink, Inode};

/// The table of one back driver.
pub struct ChangeTable {
    memfd: OwnedFd,
    view: View,
    /// Files with writers outside the service's view: how many each, and how many such files
    /// each slot holds (the slot's `OUTSIDE` bit is set while that is not 0).
    outside: Mutex<Outside>,
    /// What clients learned of shared instances' files, forgotten after a while.
    expiry: Mutex<Expiry>,
    /// Whether any watched instance is shared (so that `word` looks at `expiry` at all).
    expiring: AtomicBool,
    /// Changes other clients of a shared file system announced, by instance key.
    announced: Mutex<HashMap<u32, u64>>,
    /// The FUSE side's caches of shared instances, by key: an announced change of a file
    /// drops what the kernel caches of it too (see [`ChangeTable::attach_kernel`]).
    kernels: Mutex<HashMap<u32, Arc<dyn super::KernelCache>>>,
}

/// Instances whose files other clients of a shared file system change: not every change is
/// announced (see `FileSystem::watch_others`), so what clients learn of their files lasts
/// at most `ttl`, as the kernel's caches of the FUSE path do (the attribute timeout).
#[derive(Default)]
struct Expiry {
    keys: HashSet<u32>,
    /// The shortest of their attribute timeouts.
    ttl: Option<Duration>,
    /// Slots whose words were handed out for those instances since the last expiry.
    slots: HashSet<usize>,
    /// Whether the thread that moves those slots on has started.
    started: bool,
}

#[derive(Default)]
struct Outside {
    files: HashMap<(u32, Inode), u32>,
    slots: HashMap<usize, u32>,
}

impl std::fmt::Debug for ChangeTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeTable").field("id", &self.view.id()).finish_non_exhaustive()
    }
}

// SAFETY: the view points into the table's own mapping (alive as long as `self`), whose words
// are atomics.
unsafe impl Send for ChangeTable {}
// SAFETY: as above.
unsafe impl Sync for ChangeTable {}

impl ChangeTable {
    /// A new table with a fresh identity, sealed so that nobody can map it writable again.
    pub fn new() -> io::Result<ChangeTable> {
        use rustix::fs::{MemfdFlags, SealFlags};
        let memfd = rustix::fs::memfd_create("polytropon-changes", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
        rustix::fs::ftruncate(&memfd, changes::BYTES as u64)?;
        // SAFETY: a new shared mapping of the whole memfd just sized; it is unmapped in
        // `Drop` only, and every access goes through the view's atomics.
        let base = unsafe { rustix::mm::mmap(std::ptr::null_mut(), changes::BYTES, rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE, rustix::mm::MapFlags::SHARED, &memfd, 0)? };
        // Sealed after our own writable mapping: clients can map it only read-only, and
        // nobody can resize it or change the seals.
        rustix::fs::fcntl_add_seals(&memfd, SealFlags::FUTURE_WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
        // SAFETY: the mapping above: page-aligned, `BYTES` long, alive as long as the table.
        let view = unsafe { View::new(base.cast()) };
        let mut id = [0u8; 8];
        // SAFETY: getrandom fills at most the 8 bytes of `id` it is given.
        if unsafe { libc::getrandom(id.as_mut_ptr().cast(), id.len(), 0) } != id.len() as isize {
            return Err(io::Error::last_os_error());
        }
        view.raw(0).store(u64::from_ne_bytes(id) | 1, Ordering::Release);
        Ok(ChangeTable { memfd, view, outside: Mutex::new(Outside::default()), expiry: Mutex::default(), expiring: AtomicBool::new(false), announced: Mutex::default(), kernels: Mutex::default() })
    }

    /// The descriptor to send to clients.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.memfd.as_fd()
    }

    /// A file's slot and its word now (handed to a client with what it learns).
    pub fn word(&self, key: u32, inode: Inode) -> (usize, u64) {
        let slot = changes::slot(key, inode);
        let word = self.view.slot_word(slot).load(Ordering::Acquire);
        if self.expiring.load(Ordering::Acquire) {
            // Recorded after the word was read: an expiry that missed it is followed by
            // another within `ttl`.
            let mut e = self.expiry.lock().unwrap_or_else(|p| p.into_inner());
            if e.keys.contains(&key) {
                e.slots.insert(slot);
            }
        }
        (slot, word)
    }

    /// What clients learn of instance `key`'s files lasts at most `ttl` (a shared instance):
    /// a thread of the table's own moves the words of its slots on every `ttl`.
    /// False when no thread could be started (nothing may then be learned of its files).
    pub fn expire(self: &Arc<Self>, key: u32, ttl: Duration) -> bool {
        let ttl = ttl.max(Duration::from_millis(10));
        let mut e = self.expiry.lock().unwrap_or_else(|p| p.into_inner());
        e.keys.insert(key);
        e.ttl = Some(e.ttl.map_or(ttl, |t| t.min(ttl)));
        self.expiring.store(true, Ordering::Release);
        if e.started {
            return true;
        }
        let table = Arc::downgrade(self);
        match std::thread::Builder::new().name("ptn-expiry".into()).spawn(move || expire_loop(&table)) {
            Ok(_) => {
                e.started = true;
                true
            }
            Err(err) => {
                warn!("no thread to expire what clients learn of shared files: {err}");
                e.keys.remove(&key);
                false
            }
        }
    }

    /// Moves on the words of the slots handed out for shared instances since the last call.
    fn expire_now(&self) -> Option<Duration> {
        let (slots, ttl) = {
            let mut e = self.expiry.lock().unwrap_or_else(|p| p.into_inner());
            (std::mem::take(&mut e.slots), e.ttl)
        };
        for slot in slots {
            self.view.slot_word(slot).fetch_add(STEP, Ordering::AcqRel);
        }
        ttl
    }

    /// A file's data or size changed.
    pub fn changed(&self, key: u32, inode: Inode) {
        self.view.slot_word(changes::slot(key, inode)).fetch_add(STEP, Ordering::AcqRel);
    }

    /// A writer the service does not see starts or stops writing a file.
    pub fn outside_writer(&self, key: u32, inode: Inode, begins: bool) {
        let mut o = self.outside.lock().unwrap_or_else(|p| p.into_inner());
        let slot = changes::slot(key, inode);
        let word = self.view.slot_word(slot);
        if begins {
            let n = o.files.entry((key, inode)).or_insert(0);
            *n += 1;
            if *n == 1 {
                *o.slots.entry(slot).or_insert(0) += 1;
                word.fetch_or(OUTSIDE, Ordering::AcqRel);
            }
            return;
        }
        let Some(n) = o.files.get_mut(&(key, inode)) else { return };
        *n -= 1;
        if *n > 0 {
            return;
        }
        o.files.remove(&(key, inode));
        let held = o.slots.get_mut(&slot).map(|s| {
            *s -= 1;
            *s
        });
        // What was learned before the writer came carries the word without the bit, which
        // must not come back: a step first, the bit cleared after.
        word.fetch_add(STEP, Ordering::AcqRel);
        if held == Some(0) {
            o.slots.remove(&slot);
            word.fetch_and(!OUTSIDE, Ordering::AcqRel);
        }
    }

    /// Changes other clients announced for instance `key` so far (see
    /// `ChangeSink::others_change`).
    pub fn announced(&self, key: u32) -> u64 {
        self.announced.lock().unwrap_or_else(|p| p.into_inner()).get(&key).copied().unwrap_or(0)
    }

    /// The sink an instance reports its changes to.
    /// The FUSE side of the shared instance `key`: what other clients of its file system
    /// announce they are about to change (a CephFS capability recalled) is dropped from the
    /// kernel's caches too, as ceph-fuse does, not only kept from being learned at user
    /// level. Until [`ChangeTable::detach_kernel`].
    pub fn attach_kernel(&self, key: u32, kernel: Arc<dyn super::KernelCache>) {
        self.kernels.lock().unwrap_or_else(|p| p.into_inner()).insert(key, kernel);
    }

    /// The instance `key` is unmounted.
    pub fn detach_kernel(&self, key: u32) {
        self.kernels.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
    }

    pub fn sink(self: &Arc<Self>, key: u32) -> Arc<dyn ChangeSink> {
        Arc::new(InstanceSink { table: self.clone(), key })
    }
}

/// The expiry thread: runs while the table lives.
fn expire_loop(table: &std::sync::Weak<ChangeTable>) {
    loop {
        let Some(ttl) = table.upgrade().and_then(|t| t.expire_now()) else { return };
        std::thread::sleep(ttl);
    }
}

/// This process's table (`None`: it could not be made; nothing is learned then).
pub fn table() -> Option<&'static Arc<ChangeTable>> {
    static TABLE: std::sync::OnceLock<Option<Arc<ChangeTable>>> = std::sync::OnceLock::new();
    TABLE
        .get_or_init(|| match ChangeTable::new() {
            Ok(t) => Some(Arc::new(t)),
            Err(e) => {
                warn!("no change table (clients learn nothing of files): {e}");
                None
            }
        })
        .as_ref()
}

/// Has `fs` report its changes to this process's table, under a key of its own; the key, or
/// `None` when it cannot (a shared backend that does not announce what others change) or
/// there is no table. What clients learn of a shared instance's files lasts at most `ttl`
/// (its attribute timeout). Call before the instance is mounted or served.
pub fn watch(fs: &dyn crate::libservice::FileSystem, ttl: Duration) -> Option<u32> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let t = table()?;
    let key = NEXT.fetch_add(1, Ordering::Relaxed);
    if !fs.watch_changes(t.sink(key)) {
        return None;
    }
    // Nothing may be learned of a shared instance's files that does not expire.
    (!fs.shared() || t.expire(key, ttl)).then_some(key)
}

impl Drop for ChangeTable {
    fn drop(&mut self) {
        // SAFETY: unmapping the table's own mapping; no view of it outlives the table (the
        // sinks hold the table).
        if let Err(e) = unsafe { rustix::mm::munmap(self.view.as_ptr() as *mut _, changes::BYTES) } {
            warn!("cannot unmap the change table: {e}");
        }
    }
}

/// One instance's reports, into its slots.
struct InstanceSink {
    table: Arc<ChangeTable>,
    key: u32,
}

impl ChangeSink for InstanceSink {
    fn changed(&self, inode: Inode) {
        self.table.changed(self.key, inode);
    }

    fn names_changed(&self) {
        self.table.changed(self.key, changes::NAMES);
    }

    fn outside_writer(&self, inode: Inode, begins: bool) {
        self.table.outside_writer(self.key, inode, begins);
    }

    fn others_change(&self, inode: Option<Inode>) {
        self.table.changed(self.key, inode.unwrap_or(changes::NAMES));
        *self.table.announced.lock().unwrap_or_else(|p| p.into_inner()).entry(self.key).or_insert(0) += 1;
        // A name's change reaches the kernel within its entry timeout; a file's data and
        // attributes go now (the kernel keeps pages across opens and attributes for their
        // timeout, and a change of the same size and time would keep the pages for good).
        if let Some(inode) = inode {
            let kernel = self.table.kernels.lock().unwrap_or_else(|p| p.into_inner()).get(&self.key).cloned();
            if let Some(k) = kernel {
                k.inval_inode(inode, 0, 0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_and_outside_writers_move_the_word_and_clients_cannot_map_it_writable() {
        let t = Arc::new(ChangeTable::new().expect("table"));
        let word = |k, i| t.word(k, i).1;
        let w0 = word(1, 42);
        assert_eq!(w0 & OUTSIDE, 0);
        t.sink(1).changed(42);
        let w1 = word(1, 42);
        assert_ne!(w1, w0);
        // A writer outside: the bit while it writes, and a word never seen before after.
        t.outside_writer(1, 42, true);
        t.outside_writer(1, 42, true);
        assert_ne!(word(1, 42) & OUTSIDE, 0);
        t.outside_writer(1, 42, false);
        assert_ne!(word(1, 42) & OUTSIDE, 0, "one writer is still there");
        t.outside_writer(1, 42, false);
        let w2 = word(1, 42);
        assert_eq!(w2 & OUTSIDE, 0);
        assert!(w2 != w1 && w2 != w0);
        // An end without a start changes nothing.
        t.outside_writer(1, 42, false);
        assert_eq!(word(1, 42), w2);
        // What a client gets: read-only.
        let fd = t.fd();
        // SAFETY: mapping the table's memfd, expecting the kernel to refuse a writable
        // shared mapping; a read-only one is unmapped at once.
        unsafe {
            let w = libc::mmap(std::ptr::null_mut(), changes::BYTES, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, std::os::fd::AsRawFd::as_raw_fd(&fd), 0);
            assert_eq!(w, libc::MAP_FAILED, "a writable mapping was allowed");
            let r = libc::mmap(std::ptr::null_mut(), changes::BYTES, libc::PROT_READ, libc::MAP_SHARED, std::os::fd::AsRawFd::as_raw_fd(&fd), 0);
            assert_ne!(r, libc::MAP_FAILED);
            assert_eq!(libc::mprotect(r, changes::BYTES, libc::PROT_READ | libc::PROT_WRITE), -1, "made writable");
            libc::munmap(r, changes::BYTES);
        }
    }
}
