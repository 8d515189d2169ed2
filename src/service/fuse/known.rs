//! Which inodes the kernel holds through the FUSE mount: the lookups the adapter answered
//! minus the ones the kernel forgot. A change made beside the mount (on the user-level path)
//! needs to invalidate only what the kernel holds; a notice about any other inode is a
//! system call that fails (`ENOENT`), several per created-and-removed file.

use std::ffi::OsStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::libservice::ROOT_INODE;

const SHARDS: usize = 16;
/// Missing names remembered per shard before expired ones are swept.
const NEGATIVES_MAX: usize = 4096;

/// Lookup counts by inode, sharded (the adapter's threads count, the workers ask); and the
/// names the adapter looked up, any of which it may have answered with a negative entry the
/// kernel keeps.
#[derive(Default)]
pub struct KernelInodes {
    shards: [Mutex<FxHashMap<u64, u64>>; SHARDS],
    negatives: [Mutex<Negatives>; SHARDS],
}

/// Names looked up (negative entries possibly answered), by a hash of (parent, name): until
/// when the kernel may keep each; and until when every name must be taken as answered (after
/// a shard overflowed).
#[derive(Default)]
struct Negatives {
    until: FxHashMap<u64, Instant>,
    all_until: Option<Instant>,
}

fn name_hash(parent: u64, name: &OsStr) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = rustc_hash::FxHasher::default();
    parent.hash(&mut h);
    name.hash(&mut h);
    h.finish()
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

    fn negatives(&self, key: u64) -> std::sync::MutexGuard<'_, Negatives> {
        self.negatives[(key as usize) % SHARDS].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The adapter is about to look `name` up in `parent` and may answer that it is missing,
    /// an entry the kernel keeps for `ttl`. Called before the backend is asked, so that a name
    /// made from then on is noticed (the notice waits for the kernel's lookup to end, then
    /// drops what it cached); a name found after all only costs its making a notice.
    pub fn negative(&self, parent: u64, name: &OsStr, ttl: Duration) {
        let key = name_hash(parent, name);
        let mut n = self.negatives(key);
        let now = Instant::now();
        // Well past the kernel's TTL, which starts when the looking-up task takes the answer
        // (late on a busy or throttled cpu).
        let until = now + ttl * 2 + Duration::from_secs(1);
        if n.until.len() >= NEGATIVES_MAX {
            n.until.retain(|_, u| *u > now);
            if n.until.len() >= NEGATIVES_MAX / 2 {
                // Too many to tell apart: every name of this shard counts as answered until
                // all of these have expired.
                let last = n.until.values().copied().max().unwrap_or(until).max(until);
                n.all_until = Some(n.all_until.map_or(last, |a| a.max(last)));
                n.until.clear();
            }
        }
        n.until.insert(key, until);
    }

    /// Whether the kernel may keep a negative entry for `name` in `parent` (a name made there
    /// needs a notice only then; hashes that collide only cost a notice).
    pub fn may_keep_negative(&self, parent: u64, name: &OsStr) -> bool {
        let key = name_hash(parent, name);
        let n = self.negatives(key);
        let now = Instant::now();
        n.all_until.is_some_and(|a| a > now) || n.until.get(&key).is_some_and(|u| *u > now)
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

    #[test]
    fn negative_entries_are_remembered_for_their_ttl_and_an_overflow_keeps_them_all() {
        let k = KernelInodes::default();
        let (a, b) = (OsStr::new("a"), OsStr::new("b"));
        assert!(!k.may_keep_negative(1, a));
        k.negative(1, a, Duration::from_secs(60));
        assert!(k.may_keep_negative(1, a) && !k.may_keep_negative(1, b) && !k.may_keep_negative(2, a));
        k.negative(3, b, Duration::ZERO);
        std::thread::sleep(Duration::from_millis(1100));
        assert!(!k.may_keep_negative(3, b), "expired with its TTL");
        // Far more names than a shard keeps: none of them is ever taken as not answered.
        let names: Vec<String> = (0..SHARDS * NEGATIVES_MAX * 2).map(|i| format!("n{i}")).collect();
        for n in &names {
            k.negative(7, OsStr::new(n), Duration::from_secs(60));
        }
        assert!(names.iter().all(|n| k.may_keep_negative(7, OsStr::new(n))));
    }
}
