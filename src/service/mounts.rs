//! The service's one table of what it serves: each mount by mount point, and the same
//! instances by index for the user-level path (the view the back driver reads on every
//! request, behind its own read lock). Both views change together, under the table's lock,
//! so a mount point and its index never disagree.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::fuse::Mounted;
use super::shm::{InstanceTable, UserInstance};
use super::stats::OpStats;
use crate::spec::InstanceSpec;

/// Highest user-level instance index a recorded table may ask for.
pub const MAX_INSTANCES: usize = 4096;

/// A mount the service serves: its spec, its FUSE session and its user-level index.
pub struct Mount {
    pub spec: InstanceSpec,
    pub mount: Mounted,
    /// Index in the user-level path's instance table.
    pub instance: u32,
    /// Counters of its user-level requests.
    pub user: Arc<OpStats>,
    /// What its writable branch holds, counted for a quota (`None`: not counted).
    pub storage: Option<Arc<crate::quota::Quota>>,
    /// Its key in the change table, if watched.
    pub changes: Option<u32>,
    /// Its row of the filesystem table as written, made once (the service writes the whole
    /// table at every change; 64 clones mounted at once made it 64 times over).
    pub row: std::sync::OnceLock<String>,
}

/// The table (see the module's comment).
pub struct MountTable {
    by_path: Mutex<BTreeMap<PathBuf, Mount>>,
    by_index: Arc<InstanceTable>,
}

impl Default for MountTable {
    fn default() -> Self {
        MountTable { by_path: Mutex::new(BTreeMap::new()), by_index: Arc::new(std::sync::RwLock::new(Vec::new())) }
    }
}

impl MountTable {
    /// The view by index that the back driver serves from.
    pub fn user_view(&self) -> Arc<InstanceTable> {
        self.by_index.clone()
    }

    /// Holds the table (a panic elsewhere does not make it unusable).
    pub fn lock(&self) -> Locked<'_> {
        Locked { by_path: self.by_path.lock().unwrap_or_else(|p| p.into_inner()), by_index: &self.by_index }
    }
}

/// The table, held.
pub struct Locked<'a> {
    by_path: MutexGuard<'a, BTreeMap<PathBuf, Mount>>,
    by_index: &'a InstanceTable,
}

impl Locked<'_> {
    pub fn contains(&self, mountpoint: &Path) -> bool {
        self.by_path.contains_key(mountpoint)
    }

    /// The user-level index of the instance mounted at `mountpoint`.
    pub fn instance(&self, mountpoint: &Path) -> Option<u32> {
        self.by_path.get(mountpoint).map(|m| m.instance)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&PathBuf, &Mount)> {
        self.by_path.iter()
    }

    /// Adds `fs`, mounted at `mountpoint`, as user-level index `want` when it is given, in
    /// range and free, else the lowest free one; returns the index.
    /// `changes`: its key in the change table, if it is watched.
    pub fn insert(&mut self, mountpoint: PathBuf, spec: InstanceSpec, mount: Mounted, (fs, storage): crate::instance::Counted, changes: Option<u32>, want: Option<u32>) -> u32 {
        let user = Arc::new(OpStats::default());
        let device = std::fs::metadata(&mountpoint).ok().map(|m| std::os::unix::fs::MetadataExt::dev(&m));
        // Backing files go to clients only where the data lives in them (no pool cache), and
        // never under a storage quota (a read-only descriptor reopened for writing through
        // /proc would write past the count).
        let passthrough = spec.cache.mode == crate::spec::CacheMode::Kernel && spec.cache.user_passthrough && matches!(spec.backend, crate::spec::BackendSpec::Local) && storage.is_none();
        let lower = changes.and(super::shm::LowerViews::for_spec(&spec));
        let upper = super::shm::UpperView::for_spec(&spec, storage.is_some());
        let entry = Some(UserInstance { fs, stats: user.clone(), kernel: mount.kernel_cache(), device, passthrough, changes, lower, upper });
        let mut t = self.by_index.write().unwrap_or_else(|p| p.into_inner());
        let want = want.map(|w| w as usize).filter(|w| *w < MAX_INSTANCES);
        if let Some(w) = want {
            if t.len() <= w {
                t.resize(w + 1, None);
            }
        }
        let index = match want.filter(|w| t[*w].is_none()).or_else(|| t.iter().position(Option::is_none)) {
            Some(i) => {
                t[i] = entry;
                i
            }
            None => {
                t.push(entry);
                t.len() - 1
            }
        };
        drop(t);
        crate::service::shm::channels::instances_changed();
        let instance = u32::try_from(index).unwrap_or(u32::MAX);
        self.by_path.insert(mountpoint, Mount { spec, mount, instance, user, storage, changes, row: std::sync::OnceLock::new() });
        instance
    }

    /// Removes the mount at `mountpoint` and its user-level index.
    pub fn remove(&mut self, mountpoint: &Path) -> Option<Mount> {
        let m = self.by_path.remove(mountpoint)?;
        self.clear_index(m.instance);
        forget_kernel(&m);
        // No longer counted against the pool, whoever still holds the instance a while.
        if let Some(q) = &m.storage {
            q.detach();
        }
        Some(m)
    }

    /// Empties the table: every mount, for the caller to unmount.
    pub fn take_all(&mut self) -> BTreeMap<PathBuf, Mount> {
        let all = std::mem::take(&mut *self.by_path);
        for m in all.values() {
            self.clear_index(m.instance);
            forget_kernel(m);
            if let Some(q) = &m.storage {
                q.detach();
            }
        }
        all
    }

    fn clear_index(&self, instance: u32) {
        let mut t = self.by_index.write().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = t.get_mut(instance as usize) {
            *slot = None;
        }
        drop(t);
        crate::service::shm::channels::instances_changed();
    }
}

/// The change table no longer sends a removed mount's kernel anything.
fn forget_kernel(m: &Mount) {
    if let (Some(k), Some(t)) = (m.changes, crate::service::shm::changes::table()) {
        t.detach_kernel(k);
    }
}
