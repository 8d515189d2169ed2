//! The back driver's path cache: per worker thread and instance, paths from the instance's
//! root → inodes, each entry holding one lookup reference, trusted for `TTL` (the contract of
//! the FUSE path's entry timeout). Directories are dropped whole when the instance's namespace
//! generation moves (a rename or rmdir), pinned leaves when its removal generation moves (an
//! unlink, rmdir or rename): both are the instance's own counters, so a change made through
//! any worker or through the FUSE side is seen by every worker's next request.
//!
//! Directories are used to resolve later paths without a lookup per component. Leaves (the
//! files a request named last) are only *pinned*: the reference keeps the libservices' nodes
//! and backend handles alive, so the next lookup of the same name is answered from their
//! caches (which check their own validity) instead of opening the backing object anew.

use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::libservice::{FileKind, FileSystem, Inode};

/// How long an entry is trusted.
const TTL: Duration = Duration::from_secs(1);
/// Entries per map; a full map is dropped whole.
const MAX: usize = 4096;

/// path → (inode, its kind, when taken), one lookup reference each.
#[derive(Default)]
struct Held {
    map: FxHashMap<Vec<u8>, (Inode, FileKind, Instant)>,
}

impl Held {
    fn get(&mut self, fs: &dyn FileSystem, path: &[u8]) -> Option<(Inode, FileKind)> {
        let (ino, kind, at) = *self.map.get(path)?;
        if at.elapsed() < TTL {
            return Some((ino, kind));
        }
        self.remove(fs, path);
        None
    }

    /// Takes over the caller's lookup reference on `ino`.
    fn put(&mut self, fs: &dyn FileSystem, path: Vec<u8>, ino: Inode, kind: FileKind) {
        if self.map.len() >= MAX {
            self.clear(fs);
        }
        if let Some((old, _, _)) = self.map.insert(path, (ino, kind, Instant::now())) {
            fs.forget(old, 1);
        }
    }

    fn remove(&mut self, fs: &dyn FileSystem, path: &[u8]) {
        if let Some((ino, _, _)) = self.map.remove(path) {
            fs.forget(ino, 1);
        }
    }

    fn clear(&mut self, fs: &dyn FileSystem) {
        for (_, (ino, _, _)) in self.map.drain() {
            fs.forget(ino, 1);
        }
    }
}

#[derive(Default)]
pub struct PathCache {
    dirs: Held,
    pins: Held,
    /// The instance's namespace generation the directories were taken at.
    generation: u64,
    /// The instance's removal generation the pins were taken at.
    removals: u64,
}

impl PathCache {
    /// Drops everything when a directory may have moved or gone since the entries were taken
    /// (on either path: FUSE renames reach the same instance).
    pub fn check_generation(&mut self, fs: &dyn FileSystem) {
        let g = fs.namespace_generation();
        if g != self.generation || g == u64::MAX {
            self.clear(fs);
            self.generation = g;
        }
        let r = fs.removal_generation();
        if r != self.removals || r == u64::MAX {
            self.pins.clear(fs);
            self.removals = r;
        }
    }

    /// The directory at `path`, if cached and fresh.
    pub fn dir(&mut self, fs: &dyn FileSystem, path: &[u8]) -> Option<Inode> {
        self.dirs.get(fs, path).map(|(ino, _)| ino)
    }

    /// Caches directory `ino` at `path`, taking over one lookup reference.
    pub fn put_dir(&mut self, fs: &dyn FileSystem, path: &[u8], ino: Inode) {
        self.dirs.put(fs, path.to_vec(), ino, FileKind::Directory);
    }

    /// Whether `path` holds a fresh pin.
    pub fn pinned(&mut self, fs: &dyn FileSystem, path: &[u8]) -> bool {
        self.pin_of(fs, path).is_some()
    }

    /// The file pinned at `path` and its kind (which never changes for an inode), if fresh.
    pub fn pin_of(&mut self, fs: &dyn FileSystem, path: &[u8]) -> Option<(Inode, FileKind)> {
        self.pins.get(fs, path)
    }

    /// Pins `ino` (of `kind`) at `path`, taking over one lookup reference.
    pub fn pin(&mut self, fs: &dyn FileSystem, path: Vec<u8>, ino: Inode, kind: FileKind) {
        self.pins.put(fs, path, ino, kind);
    }

    /// Drops the pin at `path` (its name was removed).
    pub fn unpin(&mut self, fs: &dyn FileSystem, path: &[u8]) {
        self.pins.remove(fs, path);
    }

    pub fn clear(&mut self, fs: &dyn FileSystem) {
        self.dirs.clear(fs);
        self.pins.clear(fs);
    }
}
