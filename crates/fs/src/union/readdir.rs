//! Merged directory listings.
//!
//! A listing is built once per directory handle (and again when read from offset 0, as
//! `rewinddir` expects) and served from that snapshot, so offsets are stable and `seekdir` /
//! `telldir` work whatever changes meanwhile.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use super::node::UNode;
use super::whiteout::{OCI_OPAQUE, OCI_PREFIX, SCRATCH_PREFIX};
use super::{lock, UnionFs};
use crate::libservice::{Context, DirEntry, FileKind, FileSystem, Inode};

const BATCH: usize = 1024;

/// Every entry of directory `dir` of `fs`, without `.` and `..`.
fn list_branch(fs: &dyn FileSystem, ctx: &Context, dir: Inode) -> io::Result<Vec<DirEntry>> {
    let h = fs.opendir(ctx, dir, libc::O_RDONLY)?;
    let mut out = Vec::new();
    let mut offset = 0;
    let result = loop {
        match fs.readdir(ctx, dir, h, offset, BATCH) {
            Ok(batch) if batch.is_empty() => break Ok(()),
            Ok(batch) => {
                offset = batch.last().map_or(offset, |e| e.offset);
                out.extend(batch.into_iter().filter(|e| e.name != "." && e.name != ".."));
            }
            Err(e) => break Err(e),
        }
    };
    let _ = fs.releasedir(ctx, dir, h);
    result.map(|_| out)
}

/// A directory handle's snapshot: `.` and `..`, then the body (shared with the cache of
/// lower-only directories). Entry `i` has offset `i + 1`.
#[derive(Debug, Default)]
pub(super) struct Listing {
    dots: Vec<DirEntry>,
    body: Arc<Vec<DirEntry>>,
}

impl Listing {
    pub(super) fn is_empty(&self) -> bool {
        self.dots.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.dots.len() + self.body.len()
    }

    /// At most `max` entries from index `start`.
    pub(super) fn slice(&self, start: usize, max: usize) -> Vec<DirEntry> {
        self.iter().skip(start).take(max).cloned().collect()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &DirEntry> {
        self.dots.iter().chain(self.body.iter())
    }
}

/// A branch directory: `(layer, st_dev, st_ino)`, and its mtime and ctime (a lower branch is
/// a host directory: one changed or replaced behind the union is merged again).
type BranchDir = (u64, u64, u64, (i64, u32), (i64, u32));

/// Entries of lower-only directory listings kept (all dropped when a new one would pass it).
const LOWER_LISTED: usize = 1 << 18;

/// Cached bodies of lower-only directories, by the `(layer, st_dev, st_ino)` of each branch
/// directory merged: lower branches never change, and a directory that gets an upper part
/// (or a redirect) is merged from other branch directories, so under another key.
#[derive(Debug, Default)]
pub(super) struct LowerListings {
    bodies: std::collections::HashMap<Vec<BranchDir>, Arc<Vec<DirEntry>>>,
    entries: usize,
}

impl UnionFs {
    /// The merged listing of directory `node`: `.` and `..`, then each visible name once,
    /// from the topmost branch holding it; whiteouts, masked names, OCI markers and scratch
    /// entries left out. A directory with no upper part is merged once and then served from
    /// `lower_listings`.
    pub(super) fn merged_listing(&self, ctx: &Context, node: &Arc<UNode>) -> io::Result<Listing> {
        let parent_ino = node.parent().map_or(node.ino, |(p, _)| p.ino);
        let dots = vec![
            DirEntry { ino: node.ino, offset: 1, kind: FileKind::Directory, name: ".".into() },
            DirEntry { ino: parent_ino, offset: 2, kind: FileKind::Directory, name: "..".into() },
        ];
        let layers = node.layers();
        let mut dirs = Vec::new();
        for (layer, dir) in layers.all() {
            let fs = self.fs(layer)?;
            dirs.push((layer, dir, fs.getattr(ctx, dir, None)?));
        }
        let key: Option<Vec<BranchDir>> = layers.upper.is_none().then(|| dirs.iter().map(|(l, _, a)| (*l as u64, a.dev, a.ino, (a.mtime.sec, a.mtime.nsec), (a.ctime.sec, a.ctime.nsec))).collect());
        if let Some(body) = key.as_ref().and_then(|k| lock(&self.lower_listings).bodies.get(k).cloned()) {
            return Ok(Listing { dots, body });
        }
        let mut body = Vec::new();
        let mut seen: HashSet<OsString> = HashSet::new();
        let several = dirs.len() > 1;
        for (layer, dir, dir_attr) in dirs {
            let fs = self.fs(layer)?;
            for e in list_branch(fs, ctx, dir)? {
                let bytes = e.name.as_bytes();
                if layer == 0 && bytes.starts_with(SCRATCH_PREFIX) {
                    continue;
                }
                if layer > 0 && bytes.starts_with(OCI_PREFIX) {
                    if bytes != OCI_OPAQUE {
                        seen.insert(OsStr::from_bytes(&bytes[OCI_PREFIX.len()..]).to_owned());
                    }
                    continue;
                }
                // With one branch directory, names are unique already; OCI markers of that
                // directory still mask its own names.
                if (several || !seen.is_empty()) && !seen.insert(e.name.clone()) {
                    continue;
                }
                if e.kind == FileKind::CharDevice && self.is_whiteout_entry(fs, ctx, dir, &e.name)? {
                    continue;
                }
                let attr = crate::libservice::Attr { ino: e.ino, ..dir_attr };
                let ino = self.ino_for(layer, &attr);
                body.push(DirEntry { ino, offset: 0, kind: e.kind, name: e.name });
            }
        }
        for (i, e) in body.iter_mut().enumerate() {
            e.offset = i as u64 + 3;
        }
        let body = Arc::new(body);
        if let Some(k) = key.filter(|_| body.len() <= LOWER_LISTED / 4) {
            let mut cache = lock(&self.lower_listings);
            if cache.entries + body.len() > LOWER_LISTED {
                *cache = LowerListings::default();
            }
            cache.entries += body.len();
            if let Some(old) = cache.bodies.insert(k, body.clone()) {
                cache.entries -= old.len();
            }
        }
        Ok(Listing { dots, body })
    }

    fn is_whiteout_entry(&self, fs: &dyn FileSystem, ctx: &Context, dir: Inode, name: &OsStr) -> io::Result<bool> {
        match fs.lookup(ctx, dir, name) {
            Ok(e) => {
                fs.forget(e.inode, 1);
                Ok(e.attr.is_whiteout())
            }
            Err(e) if super::is_enoent(&e) => Ok(true),
            Err(e) => Err(e),
        }
    }
}
