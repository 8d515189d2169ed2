//! Name and attribute caching of the local backend, with time-to-live (the `entry_timeout` and
//! `attr_timeout` of the instance's cache settings, which the kernel applies on the FUSE path):
//! a name looked up again within its TTL costs no system call, nor does a `getattr`.
//!
//! Changes made through this backend never leave a stale entry behind. A removal or rename
//! drops exactly the names it removes or replaces when it ends, after bumping the name epoch;
//! a name read from the backing directory is kept only if the epoch has not moved since it was
//! read (checked under the map's lock), so a lookup that raced a removal never brings the
//! removed name back. Every other name stays, so a directory whose files come and go (a mail
//! spool, a build tree) keeps its other names. Attributes go stale through any change, so an
//! attribute entry is valid only under the attribute epoch that was current before it was read,
//! which every change bumps when it starts and when it ends. Changes made behind the service's
//! back (another writer on the backing directory) show within the TTL.

use std::ffi::{OsStr, OsString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::libservice::{Attr, Inode};

/// Entries kept at most per map before expired ones are swept (and, if that is not enough, all).
const MAX_ENTRIES: usize = 1 << 16;

/// A parent's names: the node each led to and when it was read.
type Names = FxHashMap<OsString, (Inode, Instant)>;

#[derive(Debug, Default)]
pub(super) struct Lookups {
    entry_ttl: Duration,
    attr_ttl: Duration,
    names: Mutex<FxHashMap<Inode, Names>>,
    name_count: AtomicU64,
    attrs: Mutex<FxHashMap<Inode, (Attr, Instant, u64)>>,
    name_epoch: AtomicU64,
    attr_epoch: AtomicU64,
}

/// A change in progress; its end bumps the epochs again and drops the names it removed.
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
        if self.gone.is_empty() {
            self.lookups.bump(false);
            return;
        }
        // The bump under the lock: a lookup that read a removed name before it may not keep
        // it (its epoch check is under this lock too), and one that kept it before is undone
        // here.
        let Ok(mut names) = self.lookups.names.lock() else {
            self.lookups.bump(true);
            return;
        };
        let quiet = self.lookups.name_epoch() == self.epoch;
        self.lookups.bump(true);
        for (parent, name) in self.gone.drain(..) {
            if let Some(m) = names.get_mut(&parent) {
                if m.remove(&name).is_some() {
                    self.lookups.name_count.fetch_sub(1, Ordering::Relaxed);
                }
                if m.is_empty() {
                    names.remove(&parent);
                }
            }
        }
        if let (true, Some((parent, name, child))) = (quiet, self.made.take()) {
            self.lookups.insert(&mut names, parent, name, child);
        }
    }
}

impl Lookups {
    pub fn new(entry_ttl: Duration, attr_ttl: Duration) -> Self {
        Lookups { entry_ttl, attr_ttl, ..Lookups::default() }
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
        if self.entry_ttl.is_zero() {
            return None;
        }
        let names = self.names.lock().ok()?;
        let &(child, at) = names.get(&parent)?.get(name)?;
        (at.elapsed() < self.entry_ttl).then_some(child)
    }

    /// Remembers that `name` in `parent` is `child`, as read under `epoch`.
    pub fn put_name(&self, parent: Inode, name: &OsStr, child: Inode, epoch: u64) {
        if self.entry_ttl.is_zero() {
            return;
        }
        let Ok(mut names) = self.names.lock() else { return };
        // Under the lock: see `Change`'s drop.
        if epoch != self.name_epoch() {
            return;
        }
        self.insert(&mut names, parent, name.to_owned(), child);
    }

    /// Adds an entry to `names` (this map, locked), sweeping expired ones when it is full.
    fn insert(&self, names: &mut FxHashMap<Inode, Names>, parent: Inode, name: OsString, child: Inode) {
        if self.entry_ttl.is_zero() {
            return;
        }
        if self.name_count.load(Ordering::Relaxed) as usize >= MAX_ENTRIES {
            let ttl = self.entry_ttl;
            names.values_mut().for_each(|m| m.retain(|_, e| e.1.elapsed() < ttl));
            names.retain(|_, m| !m.is_empty());
            if names.values().map(|m| m.len()).sum::<usize>() >= MAX_ENTRIES / 2 {
                names.clear();
            }
            self.name_count.store(names.values().map(|m| m.len() as u64).sum(), Ordering::Relaxed);
        }
        if names.entry(parent).or_default().insert(name, (child, Instant::now())).is_none() {
            self.name_count.fetch_add(1, Ordering::Relaxed);
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
