//! The CephFS paths of `bench` (with `--ceph-conf`): the same workload on the same data in
//! one CephFS, four ways —
//!
//! - `cephfs-user`: our user-level path on a union of CephFS branches (libcephfs client in
//!   the service);
//! - `cephfs-user-cache`: the same with the pool's own cache (`writethrough`), which holds
//!   file data while Ceph delegates it to the service;
//! - `cephfs-fuse`: our FUSE path on the same kind of union;
//! - `ceph-fuse`: Ceph's own FUSE client on a plain CephFS directory (a copy of the data);
//! - `unionfs-ceph-fuse`: unionfs-fuse over ceph-fuse (the papers' F/F: a FUSE union over a
//!   FUSE client).
//!
//! Every path's data lives under `/polytropon-bench-PID/` in the CephFS, removed at the end.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use super::BenchError;
use crate::backend::cephfs::{CephBranch, CephClient, CephOptions};
use crate::libservice::copy::{copy_tree, remove_tree};
use crate::libservice::{Context, FileSystem, ROOT_INODE};

/// The CephFS paths, in display order.
pub const PATHS: [&str; 5] = ["cephfs-user", "cephfs-user-cache", "cephfs-fuse", "ceph-fuse", "unionfs-ceph-fuse"];

/// The run's CephFS: a client, and the directory every path's data goes under.
#[allow(missing_debug_implementations)]
pub struct CephBench {
    pub opts: CephOptions,
    pub client: Arc<CephClient>,
    /// Directory name at the root of the file system.
    pub dir: String,
}

impl CephBench {
    pub fn connect(conf: &Path) -> Result<CephBench, BenchError> {
        let opts = CephOptions { conf: conf.to_path_buf(), id: "admin".into(), fs: None, settings: Vec::new() };
        let client = Arc::new(CephClient::connect(&opts).map_err(BenchError::CephConnect)?);
        let dir = format!("polytropon-bench-{}", std::process::id());
        let root = CephBranch::new(client.clone(), Path::new("/"), false, None).map_err(BenchError::Ceph)?;
        let e = root.mkdir(&Context::current(), ROOT_INODE, dir.as_ref(), 0o755, 0).map_err(BenchError::io(format!("cannot create /{dir} in CephFS")))?;
        root.forget(e.inode, 1);
        Ok(CephBench { opts, client, dir })
    }

    /// `/polytropon-bench-PID/name` in the CephFS, made and filled with a copy of `data`.
    pub fn prepare(&self, name: &str, data: Option<&Path>) -> Result<PathBuf, BenchError> {
        let top = CephBranch::new(self.client.clone(), &Path::new("/").join(&self.dir), false, None).map_err(BenchError::Ceph)?;
        let ctx = Context::current();
        let e = top.mkdir(&ctx, ROOT_INODE, name.as_ref(), 0o755, 0).map_err(BenchError::io(format!("cannot create {name} in CephFS")))?;
        let copied = data.map_or(Ok(()), |d| copy_tree(&top, &ctx, e.inode, d));
        top.forget(e.inode, 1);
        copied.map_err(BenchError::io(format!("cannot copy the benchmark data into CephFS {name}")))?;
        Ok(Path::new("/").join(&self.dir).join(name))
    }

    /// A CephFS directory as a branch, its data cached in `cache` if given.
    pub fn branch(&self, path: &Path, read_only: bool, cache: Option<Arc<crate::backend::cache::BlockCache>>) -> Result<Arc<dyn FileSystem>, BenchError> {
        Ok(Arc::new(CephBranch::new(self.client.clone(), path, read_only, cache).map_err(BenchError::io(format!("CephFS branch {}", path.display())))?))
    }

    /// Mounts CephFS directory `path` with ceph-fuse at `at`.
    pub fn ceph_fuse(&self, path: &Path, at: &Path) -> Result<(), BenchError> {
        let out = Command::new("ceph-fuse")
            .arg("-c")
            .arg(&self.opts.conf)
            .args(["--id", &self.opts.id, "-r"])
            .arg(path)
            .arg(at)
            .output()
            .map_err(BenchError::spawn("ceph-fuse"))?;
        if !out.status.success() {
            return Err(BenchError::tool("ceph-fuse", &out.stderr));
        }
        Ok(())
    }
}

impl Drop for CephBench {
    fn drop(&mut self) {
        if let Ok(root) = CephBranch::new(self.client.clone(), Path::new("/"), false, None) {
            if let Err(e) = remove_tree(&root, &Context::current(), ROOT_INODE, self.dir.as_ref()) {
                tracing::warn!("cannot remove /{} from CephFS: {e}", self.dir);
            }
        }
    }
}

/// Whether a CephFS path can run, and if not, why.
pub fn availability(name: &str, ceph: bool) -> Result<(), String> {
    use super::targets::has;
    if !ceph {
        return Err("needs --ceph-conf FILE (a CephFS to run on)".into());
    }
    match name {
        "ceph-fuse" if !has("ceph-fuse") => Err("ceph-fuse is not installed".into()),
        "unionfs-ceph-fuse" if !has("ceph-fuse") || !has("unionfs-fuse") => Err("ceph-fuse and unionfs-fuse are needed".into()),
        _ => Ok(()),
    }
}
