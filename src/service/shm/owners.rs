//! Who holds what on the user-level path: the process behind each open handle, so that a
//! process killed mid-request gives back its files and client areas (the janitor), and so
//! that no process holds more than its share of the service (`EMFILE` past the cap).
//!
//! A handle belongs to one process: before a fork or an exec the library hands every open
//! file over to the kernel, so user-level handles are never shared between processes. The
//! owner of a request is read from its client area (`ClientHeader::owner`); a process that
//! writes another's identity there only charges its own files to that process.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rustc_hash::FxHashMap;

use crate::libservice::Inode;

/// Open user-level files one process may hold (its opens then fail with `EMFILE`).
pub const MAX_OPEN_PER_PROCESS: u32 = 4096;

/// A handle and what its release needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    pub instance: u32,
    pub handle: u64,
    pub inode: Inode,
    /// A directory listing handle (released with `releasedir`).
    pub dir: bool,
}

#[derive(Default)]
struct Inner {
    by_handle: FxHashMap<(u32, u64), (u64, Held)>,
    per_owner: FxHashMap<u64, u32>,
}

/// The table of open user-level handles by owner.
#[derive(Default)]
pub struct Owners {
    inner: Mutex<Inner>,
    /// Handles given back for dead processes, and client areas freed.
    pub reclaimed_files: AtomicU64,
    pub reclaimed_clients: AtomicU64,
}

impl Owners {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `owner` may open one more file.
    pub fn admit(&self, owner: u64) -> bool {
        self.lock().per_owner.get(&owner).copied().unwrap_or(0) < MAX_OPEN_PER_PROCESS
    }

    pub fn opened(&self, owner: u64, h: Held) {
        let mut t = self.lock();
        if let Some((old, _)) = t.by_handle.insert((h.instance, h.handle), (owner, h)) {
            // A handle number seen twice: only possible if a libservice reuses numbers.
            uncount(&mut t, old);
        }
        *t.per_owner.entry(owner).or_insert(0) += 1;
    }

    pub fn released(&self, instance: u32, handle: u64) {
        let mut t = self.lock();
        if let Some((owner, _)) = t.by_handle.remove(&(instance, handle)) {
            uncount(&mut t, owner);
        }
    }

    /// Open handles in all.
    pub fn open_files(&self) -> usize {
        self.lock().by_handle.len()
    }

    /// Owners holding handles.
    pub fn holders(&self) -> Vec<u64> {
        self.lock().per_owner.keys().copied().collect()
    }

    /// Takes every handle of the owners in `dead` out of the table, for release.
    pub fn take(&self, dead: &HashSet<u64>) -> Vec<Held> {
        let mut t = self.lock();
        let mut out = Vec::new();
        t.by_handle.retain(|_, (owner, h)| {
            let gone = dead.contains(owner);
            if gone {
                out.push(*h);
            }
            !gone
        });
        t.per_owner.retain(|o, _| !dead.contains(o));
        self.reclaimed_files.fetch_add(out.len() as u64, Ordering::Relaxed);
        out
    }
}

fn uncount(t: &mut Inner, owner: u64) {
    if let Some(n) = t.per_owner.get_mut(&owner) {
        *n -= 1;
        if *n == 0 {
            t.per_owner.remove(&owner);
        }
    }
}

/// The low 32 bits of the inode of the pid namespace at `path` (`/proc/.../ns/pid`).
fn pid_ns(path: &str) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.ino() as u32)
}

/// Every live process as an owner value: its pid namespace above its pid in that namespace.
fn live_processes() -> Option<HashSet<u64>> {
    let mut live = HashSet::new();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Some(ns) = pid_ns(&format!("/proc/{pid}/ns/pid")) else { continue };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { continue };
        // The innermost pid: the last number on the NSpid line.
        let inner = status.lines().find_map(|l| l.strip_prefix("NSpid:")).and_then(|l| l.split_whitespace().last()).and_then(|p| p.parse::<u32>().ok());
        if let Some(p) = inner {
            live.insert((u64::from(ns) << 32) | u64::from(p));
        }
    }
    Some(live)
}

/// The owners among `owners` that are gone for certain. An owner of this service's pid
/// namespace is checked with `kill(pid, 0)`; one of another namespace (a container's) is gone
/// when no process of that namespace has that pid. Owners that cannot be checked (no
/// namespace recorded) count as alive: keeping a dead process's files is the safe mistake.
pub fn gone(owners: impl IntoIterator<Item = u64>) -> HashSet<u64> {
    let mine = pid_ns("/proc/self/ns/pid");
    let mut dead = HashSet::new();
    let mut foreign = Vec::new();
    for o in owners {
        let (ns, pid) = ((o >> 32) as u32, o as u32);
        if ns == 0 || pid == 0 {
            continue;
        }
        if Some(ns) == mine {
            // SAFETY: signal 0 only checks that the process exists.
            let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
            if r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
                dead.insert(o);
            }
        } else {
            foreign.push(o);
        }
    }
    if !foreign.is_empty() {
        if let Some(live) = live_processes() {
            dead.extend(foreign.into_iter().filter(|o| !live.contains(o)));
        }
    }
    dead
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(handle: u64) -> Held {
        Held { instance: 0, handle, inode: 7, dir: false }
    }

    #[test]
    fn handles_are_counted_per_owner_and_taken_for_the_dead() {
        let o = Owners::default();
        o.opened(1, held(10));
        o.opened(1, held(11));
        o.opened(2, held(12));
        assert_eq!(o.open_files(), 3);
        o.released(0, 11);
        o.released(0, 99);
        assert_eq!(o.open_files(), 2);
        let taken = o.take(&HashSet::from([1]));
        assert_eq!(taken, vec![held(10)]);
        assert_eq!(o.holders(), vec![2]);
        assert_eq!(o.reclaimed_files.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn the_cap_refuses_one_owner_only() {
        let o = Owners::default();
        for h in 0..u64::from(MAX_OPEN_PER_PROCESS) {
            o.opened(1, held(h));
        }
        assert!(!o.admit(1));
        assert!(o.admit(2));
        o.released(0, 0);
        assert!(o.admit(1));
    }

    #[test]
    fn this_process_is_alive_and_a_reaped_child_is_gone() {
        let ns = u64::from(pid_ns("/proc/self/ns/pid").expect("pid namespace"));
        let me = (ns << 32) | u64::from(std::process::id());
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = child.id();
        child.wait().expect("wait");
        let dead_child = (ns << 32) | u64::from(pid);
        // A process of a namespace that does not exist is gone too (found by the /proc scan).
        let foreign = (u64::from(u32::MAX - 1) << 32) | 1;
        let dead = gone([me, dead_child, foreign, 0]);
        assert!(!dead.contains(&me));
        assert!(dead.contains(&dead_child));
        assert!(dead.contains(&foreign));
        assert!(!dead.contains(&0));
    }
}
