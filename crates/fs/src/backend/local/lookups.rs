//! Name and attribute caching of the local backend, with time-to-live (the `entry_timeout` and
//! `attr_timeout` of the instance's cache settings, which the kernel applies on the FUSE path):
//! a name looked up again within its TTL costs no system call, nor does a `getattr`; in a
//! read-only branch, neither does a name missing from a directory listed within the TTL.
//!
//! Changes made through this backend never leave a stale entry behind. A change of names
//! (make, remove, rename) drops exactly the names it changed when it ends, after bumping the
//! name epoch, and remembers the name it made; a name read from the backing directory is kept
//! only if the epoch has not moved since it was read (checked under the lock of the name's
//! shard of the map), so a lookup that raced a removal never brings the removed name back.
//! Every other name stays, so a directory whose files come and go (a mail spool, a build tree)
//! keeps its other names. Attributes go stale through any change, so an attribute entry is
//! valid only under the attribute epoch that was current before it was read, which every change
//! bumps when it starts and when it ends. Changes made behind the service's back (another
//! writer on the backing directory) show within the TTL.

use std::ffi::{OsStr, OsString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::libservice::{Attr, Inode};

/// Entries kept at most per map before expired ones are swept (and, if that is not enough, all).
const MAX_ENTRIES: usize = 1 << 16;
/// The name map's shards: a service thread preempted while it holds one (more threads than
/// cpus) stalls only the lookups of names hashing there, not every lookup.
const SHARDS: usize = 64;

/// Names in a listing of a read-only directory kept at most (a larger directory is not kept).
pub(super) const LISTING_MAX: usize = 4096;
/// Names in all the listings kept at most (all are dropped beyond this).
const LISTED_NAMES_MAX: usize = 1 << 16;

/// A read-only directory's names as listed (`None`: too many to keep), and when.
type Listing = (Option<rustc_hash::FxHashSet<OsString>>, Instant);

/// The listings kept, by directory, and how many names they hold together (a listing too
/// large to keep counts one).
#[derive(Debug, Default)]
struct Listings {
    by_dir: FxHashMap<Inode, Listing>,
    names: usize,
}

fn listed_names(l: &Listing) -> usize {
    l.0.as_ref().map_or(1, |n| n.len().max(1))
}

/// One shard of the name map: by parent, the names seen there, the node each led to and when
/// it was read; and how many names it holds.
#[derive(Debug, Default)]
struct Names {
    by_parent: FxHashMap<Inode, FxHashMap<OsString, (Inode, Instant)>>,
    count: usize,
}

impl Names {
    fn remove(&mut self, parent: Inode, name: &OsStr) {
        let Some(m) = self.by_parent.get_mut(&parent) else { return };
        if m.remove(name).is_some() {
            self.count -= 1;
        }
        if m.is_empty() {
            self.by_parent.remove(&parent);
        }
    }

    /// Adds an entry, sweeping expired ones (all, if that is not enough) when full.
    fn insert(&mut self, parent: Inode, name: OsString, child: Inode, ttl: Duration) {
        if self.count >= MAX_ENTRIES / SHARDS {
            self.by_parent.values_mut().for_each(|m| m.retain(|_, e| e.1.elapsed() < ttl));
            self.by_parent.retain(|_, m| !m.is_empty());
            self.count = self.by_parent.values().map(|m| m.len()).sum();
            if self.count >= MAX_ENTRIES / SHARDS / 2 {
                self.by_parent.clear();
                self.count = 0;
            }
        }
        if self.by_parent.entry(parent).or_default().insert(name, (child, Instant::now())).is_none() {
            self.count += 1;
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Lookups {
    entry_ttl: Duration,
    attr_ttl: Duration,
    /// [`SHARDS`] shards, by a hash of (parent, name).
    names: Vec<Mutex<Names>>,
    attrs: Mutex<FxHashMap<Inode, (Attr, Instant, u64)>>,
    name_epoch: AtomicU64,
    attr_epoch: AtomicU64,
    /// Of a read-only branch only: the listings of directories where a name was missing, so
    /// that a lookup of another name missing there (a new name looked for in the lower
    /// branches before it is made above them) costs no system call.
    listings: RwLock<Listings>,
}

/// A change in progress; its end bumps the epochs again and drops the names it changed.
#[derive(Debug)]
pub(super) struct Change<'a> {
    lookups: &'a Lookups,
    /// The names the change makes, removes or replaces (parent, name).
    gone: Vec<(Inode, OsString)>,
    /// The name epoch once this change had started.
    epoch: u64,
    /// The name the change made and the node it leads to (see [`Change::made`]).
    made: Option<(Inode, OsString, Inode)>,
}

impl Change<'_> {
    /// Says the change made `name` in `parent`, leading to `child`: remembered when the change
    /// ends, unless another change of names started meanwhile (it may have removed it).
    pub fn made(&mut self, parent: Inode, name: &OsStr, child: Inode) {
        self.made = Some((parent, name.to_owned(), child));
    }
}

impl Drop for Change<'_> {
    fn drop(&mut self) {
        let l = self.lookups;
        if self.gone.is_empty() {
            l.bump(false);
            return;
        }
        // The bump before the drops, and each drop under its shard's lock: a lookup that read
        // a changed name before may not keep it afterwards (its epoch check is under that lock
        // too), and one that kept it before is undone here.
        let before = l.name_epoch.fetch_add(1, Ordering::AcqRel);
        l.attr_epoch.fetch_add(1, Ordering::AcqRel);
        if l.entry_ttl.is_zero() {
            return;
        }
        for (parent, name) in self.gone.drain(..) {
            if let Ok(mut shard) = l.shard(parent, &name).lock() {
                shard.remove(parent, &name);
            }
        }
        // Kept only if no other change of names started since this one did (checked under
        // the shard's lock: one that starts after finds it there and drops it when it ends).
        if let (true, Some((parent, name, child))) = (before == self.epoch, self.made.take()) {
            if let Ok(mut shard) = l.shard(parent, &name).lock() {
                if l.name_epoch() == before + 1 {
                    shard.insert(parent, name, child, l.entry_ttl);
                }
            }
        }
    }
}

impl Lookups {
    pub fn new(entry_ttl: Duration, attr_ttl: Duration) -> Self {
        let names = (0..SHARDS).map(|_| Mutex::default()).collect();
        Lookups { entry_ttl, attr_ttl, names, ..Lookups::default() }
    }

    fn shard(&self, parent: Inode, name: &OsStr) -> &Mutex<Names> {
        use std::hash::{Hash, Hasher};
        let mut h = rustc_hash::FxHasher::default();
        parent.hash(&mut h);
        name.hash(&mut h);
        // `new` made SHARDS of them; a default-made one has none and keeps no names.
        &self.names[(h.finish() as usize) % self.names.len().max(1)]
    }

    fn bump(&self, names: bool) {
        if names {
            self.name_epoch.fetch_add(1, Ordering::AcqRel);
        }
        self.attr_epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Starts a change that makes, removes or replaces the names `gone` (parent, name): none
    /// for a change of data or attributes.
    pub fn change(&self, gone: Vec<(Inode, OsString)>) -> Change<'_> {
        self.bump(!gone.is_empty());
        Change { lookups: self, gone, epoch: self.name_epoch(), made: None }
    }

    /// The epoch to read a name under (before reading it).
    pub fn name_epoch(&self) -> u64 {
        self.name_epoch.load(Ordering::Acquire)
    }

    pub fn attr_epoch(&self) -> u64 {
        self.attr_epoch.load(Ordering::Acquire)
    }

    /// The node `name` in `parent` led to, if known and fresh.
    pub fn name(&self, parent: Inode, name: &OsStr) -> Option<Inode> {
        if self.entry_ttl.is_zero() || self.names.is_empty() {
            return None;
        }
        let shard = self.shard(parent, name).lock().ok()?;
        let &(child, at) = shard.by_parent.get(&parent)?.get(name)?;
        (at.elapsed() < self.entry_ttl).then_some(child)
    }

    /// Remembers that `name` in `parent` is `child`, as read under `epoch`.
    pub fn put_name(&self, parent: Inode, name: &OsStr, child: Inode, epoch: u64) {
        if self.entry_ttl.is_zero() || self.names.is_empty() {
            return;
        }
        let Ok(mut shard) = self.shard(parent, name).lock() else { return };
        // Under the lock: see `Change`'s drop.
        if epoch != self.name_epoch() {
            return;
        }
        shard.insert(parent, name.to_owned(), child, self.entry_ttl);
    }

    /// Whether `name` is in the listing of the read-only directory `parent`, if one is kept
    /// and fresh.
    pub fn listed(&self, parent: Inode, name: &OsStr) -> Option<bool> {
        if self.entry_ttl.is_zero() {
            return None;
        }
        let listings = self.listings.read().ok()?;
        let (names, at) = listings.by_dir.get(&parent)?;
        (at.elapsed() < self.entry_ttl).then_some(())?;
        names.as_ref().map(|n| n.contains(name))
    }

    /// Whether the read-only directory `parent` needs listing (none kept, or expired).
    pub fn needs_listing(&self, parent: Inode) -> bool {
        !self.entry_ttl.is_zero() && self.listings.read().is_ok_and(|l| l.by_dir.get(&parent).is_none_or(|(_, at)| at.elapsed() >= self.entry_ttl))
    }

    /// Keeps the listing of the read-only directory `parent` (`None`: too large to keep).
    pub fn put_listing(&self, parent: Inode, names: Option<rustc_hash::FxHashSet<OsString>>) {
        let Ok(mut guard) = self.listings.write() else { return };
        let l = &mut *guard;
        if l.names >= LISTED_NAMES_MAX {
            let ttl = self.entry_ttl;
            l.by_dir.retain(|_, e| e.1.elapsed() < ttl);
            l.names = l.by_dir.values().map(listed_names).sum();
            if l.names >= LISTED_NAMES_MAX / 2 {
                l.by_dir.clear();
                l.names = 0;
            }
        }
        let listing = (names, Instant::now());
        l.names += listed_names(&listing);
        if let Some(old) = l.by_dir.insert(parent, listing) {
            l.names -= listed_names(&old);
        }
    }

    /// The attributes of `inode`, if known and fresh.
    pub fn attr(&self, inode: Inode) -> Option<Attr> {
        if self.attr_ttl.is_zero() {
            return None;
        }
        let attrs = self.attrs.lock().ok()?;
        let &(attr, at, epoch) = attrs.get(&inode)?;
        (epoch == self.attr_epoch() && at.elapsed() < self.attr_ttl).then_some(attr)
    }

    /// Remembers the attributes of `inode`, as read under `epoch`.
    pub fn put_attr(&self, inode: Inode, attr: Attr, epoch: u64) {
        if self.attr_ttl.is_zero() || epoch != self.attr_epoch() {
            return;
        }
        let Ok(mut attrs) = self.attrs.lock() else { return };
        if attrs.len() >= MAX_ENTRIES {
            let ttl = self.attr_ttl;
            attrs.retain(|_, e| e.1.elapsed() < ttl);
            if attrs.len() >= MAX_ENTRIES / 2 {
                attrs.clear();
            }
        }
        attrs.insert(inode, (attr, Instant::now(), epoch));
    }
}
