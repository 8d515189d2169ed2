//! Which inodes the kernel holds through the FUSE mount: the lookups the adapter answered
//! minus the ones the kernel forgot. A change made beside the mount (on the user-level path)
//! needs to invalidate only what the kernel holds; a notice about any other inode is a
//! system call that fails (`ENOENT`), several per created-and-removed file.

use std::sync::Mutex;

use rustc_hash::FxHashMap;

use crate::libservice::ROOT_INODE;

const SHARDS: usize = 16;

/// Lookup counts by inode, sharded (the adapter's threads count, the workers ask).
#[derive(Default)]
pub struct KernelInodes {
    shards: [Mutex<FxHashMap<u64, u64>>; SHARDS],
}

impl std::fmt::Debug for KernelInodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelInodes").finish_non_exhaustive()
    }
}

impl KernelInodes {
    fn shard(&self, ino: u64) -> std::sync::MutexGuard<'_, FxHashMap<u64, u64>> {
        self.shards[(ino as usize) % SHARDS].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The kernel got a reference to `ino` (an entry answered).
    pub fn add(&self, ino: u64) {
        *self.shard(ino).entry(ino).or_insert(0) += 1;
    }

    /// The kernel dropped `n` references to `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        let mut s = self.shard(ino);
        if let Some(c) = s.get_mut(&ino) {
            *c = c.saturating_sub(n);
            if *c == 0 {
                s.remove(&ino);
            }
        }
    }

    /// Whether the kernel may hold `ino` (its root always).
    pub fn holds(&self, ino: u64) -> bool {
        ino == ROOT_INODE || self.shard(ino).contains_key(&ino)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_lookups_and_forgets() {
        let k = KernelInodes::default();
        assert!(k.holds(ROOT_INODE) && !k.holds(7));
        k.add(7);
        k.add(7);
        k.forget(7, 1);
        assert!(k.holds(7));
        k.forget(7, 1);
        assert!(!k.holds(7));
        k.forget(9, 3);
        assert!(!k.holds(9));
    }
}
