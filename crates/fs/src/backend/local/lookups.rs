//! Name and attribute caching of the local backend, with time-to-live (the `entry_timeout` and
//! `attr_timeout` of the instance's cache settings, which the kernel applies on the FUSE path):
//! a name looked up again within its TTL costs no system call, nor does a `getattr`.
//!
//! Changes made through this backend never leave a stale entry behind: each modifying
//! operation bumps an epoch when it starts and when it ends, and an entry is valid only under
//! the epoch that was current before it was read from the backing directory. (Name entries
//! only go stale through removals and renames, so they have an epoch of their own.) Changes made
//! behind the service's back (another writer on the backing directory) show within the TTL.

use std::ffi::{OsStr, OsString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::libservice::{Attr, Inode};

/// Entries kept at most per map before expired ones are swept (and, if that is not enough, all).
const MAX_ENTRIES: usize = 1 << 16;

/// A parent's names: the node each led to, when it was read, and under which epoch.
type Names = FxHashMap<OsString, (Inode, Instant, u64)>;

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

/// A change in progress; its end bumps the epochs again.
#[derive(Debug)]
pub(super) struct Change<'a> {
    lookups: &'a Lookups,
    names: bool,
}

impl Drop for Change<'_> {
    fn drop(&mut self) {
        self.lookups.bump(self.names);
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

    /// Starts a change (of names too when `names`: a removal or rename).
    pub fn change(&self, names: bool) -> Change<'_> {
        self.bump(names);
        Change { lookups: self, names }
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
        let &(child, at, epoch) = names.get(&parent)?.get(name)?;
        (epoch == self.name_epoch() && at.elapsed() < self.entry_ttl).then_some(child)
    }

    /// Remembers that `name` in `parent` is `child`, as read under `epoch`.
    pub fn put_name(&self, parent: Inode, name: &OsStr, child: Inode, epoch: u64) {
        if self.entry_ttl.is_zero() || epoch != self.name_epoch() {
            return;
        }
        let Ok(mut names) = self.names.lock() else { return };
        if self.name_count.load(Ordering::Relaxed) as usize >= MAX_ENTRIES {
            let ttl = self.entry_ttl;
            names.values_mut().for_each(|m| m.retain(|_, e| e.1.elapsed() < ttl));
            names.retain(|_, m| !m.is_empty());
            if names.values().map(|m| m.len()).sum::<usize>() >= MAX_ENTRIES / 2 {
                names.clear();
            }
            self.name_count.store(names.values().map(|m| m.len() as u64).sum(), Ordering::Relaxed);
        }
        if names.entry(parent).or_default().insert(name.to_owned(), (child, Instant::now(), epoch)).is_none() {
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
