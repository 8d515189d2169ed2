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

use polytropon_ipc::args::Owner;
use rustc_hash::FxHashMap;

use crate::libservice::Inode;

/// Who holds a handle: the process as an owner value (its pid namespace and pid, which the
/// janitor checks for liveness and by which open files are counted), and which process of
/// that pid it is (its pidfd's inode, unique while the host runs on Linux 6.9 and later; 0
/// where the kernel gives every pidfd one inode). A pid is reused once its process is gone,
/// while a forked child may still hold the dead process's connection: the child's requests
/// then name the owner of whoever has the pid now, and the incarnation tells them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Holder {
    pub owner: u64,
    pub incarnation: u64,
}

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
    /// The access mode it was opened with (`O_RDONLY`, `O_WRONLY` or `O_RDWR`): what the
    /// kernel checks first on a call through a descriptor.
    pub access: i32,
}

#[derive(Default)]
struct Inner {
    by_handle: FxHashMap<(u32, u64), (Holder, Held)>,
    per_owner: FxHashMap<u64, u32>,
}

/// The table of open user-level handles by owner.
#[derive(Default)]
pub struct Owners {
    inner: Mutex<Inner>,
    /// Handles given back for dead processes.
    pub reclaimed_files: AtomicU64,
}

impl Owners {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `owner` may open one more file.
    pub fn admit(&self, owner: u64) -> bool {
        self.lock().per_owner.get(&owner).copied().unwrap_or(0) < MAX_OPEN_PER_PROCESS
    }

    pub fn opened(&self, holder: Holder, h: Held) {
        let mut t = self.lock();
        if let Some((old, _)) = t.by_handle.insert((h.instance, h.handle), (holder, h)) {
            // A handle number seen twice: only possible if a libservice reuses numbers.
            uncount(&mut t, old.owner);
        }
        *t.per_owner.entry(holder.owner).or_insert(0) += 1;
    }

    /// Takes handle `handle` of `instance` out of the table for its release, if `owner` holds
    /// it; `None` otherwise (another process's handle, or one never opened or already gone:
    /// the caller answers `EBADF` and releases nothing). What the release needs (the inode,
    /// whether it is a listing) comes from the table, never from the request.
    pub fn release(&self, holder: Holder, instance: u32, handle: u64) -> Option<Held> {
        let mut t = self.lock();
        match t.by_handle.get(&(instance, handle)) {
            Some((o, _)) if *o == holder => {}
            _ => return None,
        }
        let (_, held) = t.by_handle.remove(&(instance, handle))?;
        uncount(&mut t, holder.owner);
        Some(held)
    }

    /// Whether `owner` holds `handle` of `instance`, opened on `inode`, as a listing (`dir`)
    /// or a file.
    pub fn holds(&self, holder: Holder, instance: u32, handle: u64, inode: Inode, dir: bool) -> bool {
        self.access(holder, instance, handle, inode, dir).is_some()
    }

    /// The access mode of `handle` of `instance` if `owner` holds it, opened on `inode`, as a
    /// listing (`dir`) or a file.
    pub fn access(&self, holder: Holder, instance: u32, handle: u64, inode: Inode, dir: bool) -> Option<i32> {
        match self.lock().by_handle.get(&(instance, handle)) {
            Some((o, h)) if *o == holder && h.inode == inode && h.dir == dir => Some(h.access),
            _ => None,
        }
    }

    /// Whether `owner` holds `handle` of `instance` at all (a cheap test before a release).
    pub fn holds_handle(&self, holder: Holder, instance: u32, handle: u64) -> bool {
        matches!(self.lock().by_handle.get(&(instance, handle)), Some((o, _)) if *o == holder)
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
        t.by_handle.retain(|_, (holder, h)| {
            let gone = dead.contains(&holder.owner);
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

/// A process as an owner value (its pid namespace above its innermost pid), from `/proc/PID`.
pub(super) fn owner_of(host_pid: u32) -> Option<u64> {
    owner_in(host_pid, &super::channels::proc_text(&format!("/proc/{host_pid}/status")).ok()?)
}

/// As [`owner_of`], with the process's `/proc/PID/status` already read.
pub(super) fn owner_in(host_pid: u32, status: &str) -> Option<u64> {
    // A zombie whose threads are all gone is dead, whether or not its parent has reaped it yet
    // (a container's process reparented to a host init that reaps late). A zombie leader
    // with live threads is not: they may still make requests.
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
    if field("State:").is_some_and(|s| s.starts_with('Z')) && field("Threads:").and_then(|t| t.parse::<u32>().ok()).is_none_or(|t| t <= 1) {
        return None;
    }
    let ns = pid_ns(&format!("/proc/{host_pid}/ns/pid"))?;
    // The innermost pid: the last number on the NSpid line.
    let inner = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?.split_whitespace().last()?.parse::<u32>().ok()?;
    Some(Owner { ns, pid: inner }.encode())
}

/// Tells which owners are gone. Owners in this service's pid namespace are checked with
/// `kill(pid, 0)` (the check clients use to take back areas). One of another namespace (a container's) is found once by a scan of
/// `/proc` and remembered by its pid here, which later sweeps check alone (two reads); a full
/// scan happens only when an owner is new. Owners that cannot be checked (no namespace
/// recorded) count as alive: keeping a dead process's files is the safe mistake.
#[derive(Default)]
pub struct Liveness {
    /// Foreign owners found alive, by the pid they have here.
    here: rustc_hash::FxHashMap<u64, u32>,
}

impl Liveness {
    pub fn gone(&mut self, owners: impl IntoIterator<Item = u64>) -> HashSet<u64> {
        let mine = pid_ns("/proc/self/ns/pid");
        let mut dead = HashSet::new();
        let mut unknown = Vec::new();
        let mut seen = HashSet::new();
        for o in owners {
            let Owner { ns, pid } = Owner::decode(o);
            if ns == 0 || pid == 0 || !seen.insert(o) {
                continue;
            }
            if Some(ns) == mine {
                if !polytropon_ipc::client::alive(pid) {
                    dead.insert(o);
                }
                continue;
            }
            match self.here.get(&o) {
                Some(&host) if owner_of(host) == Some(o) => {}
                Some(_) => {
                    self.here.remove(&o);
                    dead.insert(o);
                }
                None => unknown.push(o),
            }
        }
        if !unknown.is_empty() {
            let Ok(dir) = std::fs::read_dir("/proc") else { return dead };
            let wanted: HashSet<u64> = unknown.iter().copied().collect();
            let mut found = 0;
            for e in dir.flatten() {
                let Some(host) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
                if let Some(o) = owner_of(host).filter(|o| wanted.contains(o)) {
                    self.here.insert(o, host);
                    found += 1;
                    if found == wanted.len() {
                        break;
                    }
                }
            }
            dead.extend(unknown.into_iter().filter(|o| !self.here.contains_key(o)));
        }
        // Forget owners no longer asked about.
        self.here.retain(|o, _| seen.contains(o));
        dead
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Owner `owner`, first incarnation.
    fn h(owner: u64) -> Holder {
        Holder { owner, incarnation: 1 }
    }

    fn held(handle: u64) -> Held {
        Held { instance: 0, handle, inode: 7, dir: false, access: libc::O_RDWR }
    }

    #[test]
    fn handles_are_counted_per_owner_and_taken_for_the_dead() {
        let o = Owners::default();
        o.opened(h(1), held(10));
        o.opened(h(1), held(11));
        o.opened(h(2), held(12));
        assert_eq!(o.open_files(), 3);
        // Only the holder releases its handle, and only once.
        assert_eq!(o.release(h(2), 0, 11), None, "another owner's handle");
        assert_eq!(o.release(h(1), 0, 11), Some(held(11)));
        assert_eq!(o.release(h(1), 0, 11), None, "released twice");
        assert_eq!(o.release(h(1), 0, 99), None, "never opened");
        assert_eq!(o.open_files(), 2);
        let taken = o.take(&HashSet::from([1]));
        assert_eq!(taken, vec![held(10)]);
        assert_eq!(o.holders(), vec![2]);
        assert_eq!(o.reclaimed_files.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_later_process_of_the_same_pid_holds_none_of_the_handles_of_the_earlier() {
        let o = Owners::default();
        let (earlier, later) = (Holder { owner: 5, incarnation: 40 }, Holder { owner: 5, incarnation: 41 });
        o.opened(later, held(20));
        // The earlier process's connection (kept by a forked child after that process
        // exited) names the same owner: it reaches nothing the later one opened.
        assert_eq!(o.access(earlier, 0, 20, 7, false), None);
        assert!(!o.holds_handle(earlier, 0, 20));
        assert_eq!(o.release(earlier, 0, 20), None);
        assert_eq!(o.access(later, 0, 20, 7, false), Some(libc::O_RDWR));
        // Both count as one owner for the cap and for the janitor.
        assert_eq!(o.holders(), vec![5]);
        assert_eq!(o.take(&HashSet::from([5])), vec![held(20)]);
    }

    #[test]
    fn the_cap_refuses_one_owner_only() {
        let o = Owners::default();
        for n in 0..u64::from(MAX_OPEN_PER_PROCESS) {
            o.opened(h(1), held(n));
        }
        assert!(!o.admit(1));
        assert!(o.admit(2));
        // Releasing a handle one does not hold (another's, or a number never given out) does
        // not make room.
        o.opened(h(2), Held { instance: 0, handle: 1 << 40, inode: 7, dir: true, access: libc::O_RDONLY });
        assert_eq!(o.release(h(1), 0, 1 << 40), None);
        assert_eq!(o.release(h(1), 1, 0), None);
        assert!(!o.admit(1));
        assert!(o.release(h(1), 0, 0).is_some());
        assert!(o.admit(1));
    }

    #[test]
    fn this_process_is_alive_and_a_reaped_child_is_gone() {
        let ns = pid_ns("/proc/self/ns/pid").expect("pid namespace");
        let me = Owner { ns, pid: std::process::id() }.encode();
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = child.id();
        child.wait().expect("wait");
        let dead_child = Owner { ns, pid }.encode();
        // A process of a namespace that does not exist is gone too (found by the /proc scan).
        let foreign = Owner { ns: u32::MAX - 1, pid: 1 }.encode();
        let mut live = Liveness::default();
        let dead = live.gone([me, dead_child, foreign, 0]);
        assert!(!dead.contains(&me));
        assert!(dead.contains(&dead_child));
        assert!(dead.contains(&foreign));
        assert!(!dead.contains(&0));
        // A zombie with no thread left is gone, one whose other threads live is not.
        let me = std::process::id();
        let status = |state: &str, threads: u32| format!("Name:\tx\nState:\t{state}\nThreads:\t{threads}\nNSpid:\t{me}\n");
        assert!(owner_in(me, &status("S (sleeping)", 1)).is_some());
        assert!(owner_in(me, &status("Z (zombie)", 1)).is_none());
        assert!(owner_in(me, &status("Z (zombie)", 3)).is_some());
        // A live process of another pid namespace is found, remembered, and then found gone.
        let mut c = std::process::Command::new("unshare").args(["--pid", "--fork", "--kill-child", "sleep", "30"]).spawn().expect("unshare");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let sleeper = loop {
            let kids = std::fs::read_to_string(format!("/proc/{}/task/{}/children", c.id(), c.id())).unwrap_or_default();
            // Once it runs `sleep` it has set its parent-death signal (`--kill-child` does so
            // between fork and exec): killing unshare before that would leave it running.
            if let Some(k) = kids.split_whitespace().next().and_then(|k| k.parse::<u32>().ok()) {
                let execd = std::fs::read_to_string(format!("/proc/{k}/comm")).is_ok_and(|c| c.trim() == "sleep");
                if let Some(o) = owner_of(k).filter(|o| execd && (*o as u32) == 1) {
                    break o;
                }
            }
            assert!(std::time::Instant::now() < deadline, "no process in the new pid namespace");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert!(live.gone([sleeper]).is_empty());
        assert!(live.here.contains_key(&sleeper));
        assert!(live.gone([sleeper]).is_empty(), "found alive again from the remembered pid");
        c.kill().expect("kill");
        c.wait().expect("wait");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !live.gone([sleeper]).contains(&sleeper) {
            assert!(std::time::Instant::now() < deadline, "the namespace's process is still found");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
