//! The local backend's inode table: `O_PATH` descriptors keyed by node id and by host identity.

use rustc_hash::FxHashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::libservice::{Attr, FileKind, Inode, ROOT_INODE};

/// One object of the backing directory, held open with `O_PATH`.
#[derive(Debug)]
pub(super) struct InodeData {
    pub fd: OwnedFd,
    pub kind: FileKind,
    /// Host inode number (`st_ino`).
    pub ino: u64,
    dev: u64,
    /// Lookup references; changed only under the table's write lock.
    refs: AtomicU64,
    /// The open file shared by plain read-only opens, made on the first one.
    pub ro: OnceLock<Arc<OwnedFd>>,
}

impl InodeData {
    /// `(st_dev, st_ino)` of the object.
    pub fn id(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }
}

/// Node ids to objects, and host `(st_dev, st_ino)` to node ids so that two names of one object
/// (hard links) share a node id.
#[derive(Debug)]
pub(super) struct InodeTable {
    by_inode: FxHashMap<Inode, Arc<InodeData>>,
    by_id: FxHashMap<(u64, u64), Inode>,
    next: Inode,
}

impl InodeTable {
    pub fn new(root_fd: OwnedFd, attr: &Attr) -> Self {
        let mut table = InodeTable { by_inode: FxHashMap::default(), by_id: FxHashMap::default(), next: 2 };
        let root = InodeData {
            fd: root_fd,
            kind: attr.kind(),
            ino: attr.ino,
            dev: attr.dev,
            refs: AtomicU64::new(1),
            ro: OnceLock::new(),
        };
        table.by_id.insert((attr.dev, attr.ino), ROOT_INODE);
        table.by_inode.insert(ROOT_INODE, Arc::new(root));
        table
    }

    pub fn get(&self, inode: Inode) -> Option<Arc<InodeData>> {
        self.by_inode.get(&inode).cloned()
    }

    /// Registers one more lookup of a known node (under the table's read lock: `forget`
    /// changes references only under its write lock).
    pub fn add_ref(&self, inode: Inode) -> Option<Arc<InodeData>> {
        let data = self.by_inode.get(&inode)?;
        data.refs.fetch_add(1, Ordering::Relaxed);
        Some(data.clone())
    }

    /// Registers one more lookup of the object behind `fd`; returns its node id. When the
    /// object is already known, `fd` is dropped and the existing descriptor kept.
    pub fn insert_or_ref(&mut self, fd: OwnedFd, attr: &Attr) -> Inode {
        let key = (attr.dev, attr.ino);
        if let Some(&inode) = self.by_id.get(&key) {
            if let Some(data) = self.by_inode.get(&inode) {
                // A different type means the host recycled the inode number of an object that
                // was deleted while we still held a stale entry: give the new one its own id.
                if data.kind == attr.kind() {
                    data.refs.fetch_add(1, Ordering::Relaxed);
                    return inode;
                }
            }
        }
        let inode = self.next;
        self.next += 1;
        let data = InodeData {
            fd,
            kind: attr.kind(),
            ino: attr.ino,
            dev: attr.dev,
            refs: AtomicU64::new(1),
            ro: OnceLock::new(),
        };
        self.by_id.insert(key, inode);
        self.by_inode.insert(inode, Arc::new(data));
        inode
    }

    /// Drops `count` references; forgets the object when none remain.
    pub fn forget(&mut self, inode: Inode, count: u64) {
        if inode == ROOT_INODE {
            return;
        }
        let Some(data) = self.by_inode.get(&inode) else { return };
        let refs = data.refs.load(Ordering::Relaxed);
        let remaining = refs.saturating_sub(count);
        data.refs.store(remaining, Ordering::Relaxed);
        if remaining > 0 {
            return;
        }
        let key = (data.dev, data.ino);
        self.by_inode.remove(&inode);
        if self.by_id.get(&key) == Some(&inode) {
            self.by_id.remove(&key);
        }
    }
}
