//! Union inodes: which branch objects stand behind one name of the union.

use std::ffi::OsString;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::libservice::{FileKind, Inode};

/// Index of a layer: 0 is the upper branch, 1.. the lower branches in order.
pub(super) type Layer = usize;

/// The branch objects behind a union inode. Every backend inode listed here holds exactly one
/// lookup reference in its branch, dropped when the union inode is forgotten.
#[derive(Clone, Debug, Default)]
pub(super) struct Layers {
    /// The object in the upper branch, once it exists there.
    pub upper: Option<Inode>,
    /// Objects in lower branches, topmost first. A non-directory has at most one; a directory
    /// lists every lower directory merged into it (none below an opaque one).
    pub lowers: Vec<(Layer, Inode)>,
}

impl Layers {
    /// The topmost object: `(layer, inode)`.
    pub fn top(&self) -> Option<(Layer, Inode)> {
        match self.upper {
            Some(u) => Some((0, u)),
            None => self.lowers.first().copied(),
        }
    }

    /// Every object, topmost first.
    pub fn all(&self) -> Vec<(Layer, Inode)> {
        self.upper.map(|u| (0, u)).into_iter().chain(self.lowers.iter().copied()).collect()
    }

    /// Whether a directory merges more than one branch (overlayfs reports `st_nlink` 1 then).
    pub fn is_merged(&self) -> bool {
        self.lowers.len() + usize::from(self.upper.is_some()) > 1
    }
}

/// Mutable part of a union inode.
#[derive(Debug, Default)]
pub(super) struct NodeState {
    /// The directory and name this inode was last reached by (`None` for the root). Copy-up
    /// recreates this path in the upper branch.
    pub parent: Option<(Arc<UNode>, OsString)>,
    pub layers: Layers,
}

/// One inode of the union.
#[derive(Debug)]
pub(super) struct UNode {
    /// Node id, also reported as `st_ino`; stable across copy-up.
    pub ino: Inode,
    pub kind: FileKind,
    /// Lookup references held by the transport.
    pub lookups: AtomicU64,
    /// A directory removed (rmdir, or replaced by a rename): nothing is found or made in it
    /// any more, as in a kernel directory once it is dead.
    pub removed: std::sync::atomic::AtomicBool,
    state: Mutex<NodeState>,
}

/// The chain of parents goes one node at a time: dropping the last reference to a node at the
/// bottom of a tree nested thousands deep must not recurse once per level (it overflowed a
/// thread's stack).
impl Drop for UNode {
    fn drop(&mut self) {
        let mut next = self.state.get_mut().unwrap_or_else(|p| p.into_inner()).parent.take();
        while let Some((p, _)) = next {
            next = Arc::into_inner(p).and_then(|mut n| n.state.get_mut().unwrap_or_else(|p| p.into_inner()).parent.take());
        }
    }
}

impl UNode {
    pub fn new(ino: Inode, kind: FileKind, state: NodeState, lookups: u64) -> Self {
        UNode { ino, kind, lookups: AtomicU64::new(lookups), removed: std::sync::atomic::AtomicBool::new(false), state: Mutex::new(state) }
    }

    /// Locks the mutable state. A poisoned lock is recovered: the state is plain data that no
    /// operation leaves half-updated.
    pub fn state(&self) -> MutexGuard<'_, NodeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn layers(&self) -> Layers {
        self.state().layers.clone()
    }

    pub fn parent(&self) -> Option<(Arc<UNode>, OsString)> {
        self.state().parent.clone()
    }

    pub fn is_dir(&self) -> bool {
        self.kind == FileKind::Directory
    }

    /// Whether it is a directory removed (see `removed`).
    pub fn is_removed(&self) -> bool {
        self.removed.load(std::sync::atomic::Ordering::Acquire)
    }
}
