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
use super::UnionFs;
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

impl UnionFs {
    /// The merged listing of directory `node`: `.` and `..`, then each visible name once,
    /// from the topmost branch holding it; whiteouts, masked names, OCI markers and scratch
    /// entries left out.
    pub(super) fn merged_listing(&self, ctx: &Context, node: &Arc<UNode>) -> io::Result<Vec<DirEntry>> {
        let parent_ino = node.parent().map_or(node.ino, |(p, _)| p.ino);
        let mut out = vec![
            DirEntry { ino: node.ino, offset: 0, kind: FileKind::Directory, name: ".".into() },
            DirEntry { ino: parent_ino, offset: 0, kind: FileKind::Directory, name: "..".into() },
        ];
        let mut seen: HashSet<OsString> = HashSet::new();
        for (layer, dir) in node.layers().all() {
            let fs = self.fs(layer)?;
            let dir_attr = fs.getattr(ctx, dir, None)?;
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
                if !seen.insert(e.name.clone()) {
                    continue;
                }
                if e.kind == FileKind::CharDevice && self.is_whiteout_entry(fs, ctx, dir, &e.name)? {
                    continue;
                }
                let attr = crate::libservice::Attr { ino: e.ino, ..dir_attr };
                let ino = self.ino_for(layer, &attr);
                out.push(DirEntry { ino, offset: 0, kind: e.kind, name: e.name });
            }
        }
        for (i, e) in out.iter_mut().enumerate() {
            e.offset = i as u64 + 1;
        }
        Ok(out)
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
