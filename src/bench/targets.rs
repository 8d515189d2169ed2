//! The paths a benchmark compares, each set up over the same read-only lower branch and torn
//! down afterwards (mounts, daemons, directories).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::backend::local::{LocalFs, LocalOptions};
use crate::libservice::FileSystem;
use crate::service::fuse::{self, FuseConfig, Mounted};
use crate::spec::CacheMode;
use crate::union::UnionFs;

/// Every path name `bench` knows, in display order.
pub const ALL: [&str; 11] = [
    "user",
    "fuse",
    "fuse-writeback",
    "fuse-direct",
    "fuse-overlayfs",
    "overlay",
    "kernel",
    "cephfs-user",
    "cephfs-fuse",
    "ceph-fuse",
    "unionfs-ceph-fuse",
];

/// One path being measured: a directory to run the workload in.
#[allow(missing_debug_implementations)] // holds mounts, nothing worth printing
pub struct Target {
    pub name: String,
    pub root: PathBuf,
    /// For `user`: the workload runs in a child under the preload library, attached so.
    pub worker: Option<super::worker::Attach>,
    guard: Guard,
}

enum Guard {
    Ours(Option<Mounted>),
    /// The back driver goes first, then the FUSE mount of the same instance.
    User(Option<crate::service::shm::BackDriver>, Option<Mounted>),
    Kernel(PathBuf),
    /// A mount over another (unmounted after it).
    Stacked(PathBuf, PathBuf),
    None,
}

impl Drop for Target {
    fn drop(&mut self) {
        match &mut self.guard {
            Guard::Ours(m) => drop(m.take()),
            Guard::User(d, m) => {
                drop(d.take());
                drop(m.take());
            }
            Guard::Kernel(mnt) => unmount_wait(mnt),
            Guard::Stacked(top, below) => {
                unmount_wait(top);
                unmount_wait(below);
            }
            Guard::None => {}
        }
    }
}

fn unmount_wait(mnt: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while rustix::mount::unmount(mnt, rustix::mount::UnmountFlags::empty()).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = rustix::mount::unmount(mnt, rustix::mount::UnmountFlags::DETACH);
}

/// Whether program `bin` is on the `PATH`.
pub(super) fn has(bin: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
}

/// Whether `name` can run on this host (`ceph`: a CephFS was given), and if not, why.
pub fn availability(name: &str, ceph: bool) -> Result<(), String> {
    if super::ceph::PATHS.contains(&name) {
        return super::ceph::availability(name, ceph);
    }
    let overlay = std::fs::read_to_string("/proc/filesystems").is_ok_and(|f| f.contains("overlay"));
    match name {
        "fuse" | "fuse-writeback" | "fuse-direct" if !Path::new("/dev/fuse").exists() => Err("/dev/fuse is missing".into()),
        "fuse-overlayfs" if !has("fuse-overlayfs") => Err("fuse-overlayfs is not installed".into()),
        "overlay" if !overlay => Err("kernel overlayfs is not available".into()),
        "user" | "fuse" | "fuse-writeback" | "fuse-direct" | "fuse-overlayfs" | "overlay" | "kernel" => Ok(()),
        other => Err(format!("unknown path {other:?}; known: {}", ALL.join(", "))),
    }
}

fn dirs(base: &Path, name: &str) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    let d = base.join(name);
    let (upper, work, mnt) = (d.join("upper"), d.join("work"), d.join("mnt"));
    for p in [&upper, &work, &mnt] {
        std::fs::create_dir_all(p).with_context(|| format!("cannot create {}", p.display()))?;
    }
    Ok((upper, work, mnt))
}

fn local(p: &Path, read_only: bool) -> anyhow::Result<Arc<dyn FileSystem>> {
    Ok(Arc::new(LocalFs::new(p, LocalOptions { read_only }).with_context(|| format!("branch {}", p.display()))?))
}

/// The union of `user`/`fuse*` paths: a local upper over `lower`, or with `ceph` both in
/// CephFS (a copy of `lower`).
fn union_for(name: &str, upper: &Path, lower: &Path, ceph: Option<&super::ceph::CephBench>) -> anyhow::Result<Arc<dyn FileSystem>> {
    match ceph {
        Some(c) => {
            c.prepare(name, None)?;
            let (u, l) = (c.prepare(&format!("{name}/upper"), None)?, c.prepare(&format!("{name}/lower"), Some(lower))?);
            Ok(Arc::new(UnionFs::new(Some(c.branch(&u, false)?), vec![c.branch(&l, true)?])?))
        }
        None => Ok(Arc::new(UnionFs::new(Some(local(upper, false)?), vec![local(lower, true)?])?)),
    }
}

/// Sets up path `name` over `lower` with scratch space under `base`; the user-level path's
/// back driver pins its worker to `cpus` (empty: not pinned); the CephFS paths use `ceph`.
pub fn setup(name: &str, lower: &Path, base: &Path, cpus: &[usize], ceph: Option<&super::ceph::CephBench>) -> anyhow::Result<Target> {
    let (upper, work, mnt) = dirs(base, name)?;
    let mut worker = None;
    let on_ceph = matches!(name, "cephfs-user" | "cephfs-fuse");
    let ceph_for_union = if on_ceph { Some(ceph.context("the CephFS paths need --ceph-conf")?) } else { None };
    let guard = match name {
        "user" | "cephfs-user" => {
            // As a pool's service serves an instance: FUSE mount and user-level path together.
            let union = union_for(name, &upper, lower, ceph_for_union)?;
            let mounted = fuse::spawn(union.clone(), &mnt, &FuseConfig::default()).context("cannot mount the legacy path")?;
            let served = crate::service::shm::Served { fs: union, stats: Arc::default(), kernel: mounted.kernel_cache() };
            let table = Arc::new(std::sync::RwLock::new(vec![Some(served)]));
            let g = polytropon_ipc::segment::Geometry { queues: 1, slots: 64, clients: 8, buffer_size: 1 << 20 };
            let driver = crate::service::shm::BackDriver::start_table(table, g, cpus).context("cannot start the back driver")?;
            worker = Some(super::worker::Attach { library: crate::frontend::library()?, shmid: driver.shmid(), mountpoint: mnt.clone() });
            Guard::User(Some(driver), Some(mounted))
        }
        "fuse" | "fuse-writeback" | "fuse-direct" | "cephfs-fuse" => {
            let union = union_for(name, &upper, lower, ceph_for_union)?;
            let mut cfg = FuseConfig::default();
            match name {
                "fuse-direct" => cfg.cache = CacheMode::Direct,
                "fuse-writeback" => cfg.passthrough = false,
                _ => {}
            }
            Guard::Ours(Some(fuse::spawn(union, &mnt, &cfg).context("cannot mount our FUSE path")?))
        }
        "fuse-overlayfs" => {
            let opts = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
            let out = Command::new("fuse-overlayfs").arg("-o").arg(opts).arg(&mnt).output().context("cannot run fuse-overlayfs")?;
            if !out.status.success() {
                bail!("fuse-overlayfs failed: {}", String::from_utf8_lossy(&out.stderr).trim());
            }
            Guard::Kernel(mnt.clone())
        }
        "overlay" => {
            let opts = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
            let data = std::ffi::CString::new(opts).context("overlay options")?;
            rustix::mount::mount("overlay", &mnt, "overlay", rustix::mount::MountFlags::empty(), Some(data.as_c_str()))
                .context("cannot mount kernel overlayfs")?;
            Guard::Kernel(mnt.clone())
        }
        "ceph-fuse" => {
            let c = ceph.context("ceph-fuse needs --ceph-conf")?;
            let plain = c.prepare(name, Some(lower))?;
            c.ceph_fuse(&plain, &mnt)?;
            Guard::Kernel(mnt.clone())
        }
        "unionfs-ceph-fuse" => {
            let c = ceph.context("unionfs-ceph-fuse needs --ceph-conf")?;
            let dir = c.prepare(name, None)?;
            c.prepare(&format!("{name}/upper"), None)?;
            c.prepare(&format!("{name}/lower"), Some(lower))?;
            let cf = base.join(name).join("ceph-fuse");
            std::fs::create_dir_all(&cf).with_context(|| format!("cannot create {}", cf.display()))?;
            c.ceph_fuse(&dir, &cf)?;
            let branches = format!("{}=RW:{}=RO", cf.join("upper").display(), cf.join("lower").display());
            let out = Command::new("unionfs-fuse").args(["-o", "cow,allow_other,use_ino"]).arg(branches).arg(&mnt).output();
            match out {
                Ok(o) if o.status.success() => {}
                other => {
                    unmount_wait(&cf);
                    bail!("unionfs-fuse failed: {}", other.map_or_else(|e| e.to_string(), |o| String::from_utf8_lossy(&o.stderr).trim().to_string()));
                }
            }
            Guard::Stacked(mnt.clone(), cf)
        }
        "kernel" => {
            let out = Command::new("cp").arg("-a").arg(lower.join(".")).arg(&mnt).output().context("cannot run cp")?;
            if !out.status.success() {
                bail!("cp -a failed: {}", String::from_utf8_lossy(&out.stderr).trim());
            }
            Guard::None
        }
        other => bail!("unknown path {other:?}"),
    };
    Ok(Target { name: name.to_string(), root: mnt, worker, guard })
}
