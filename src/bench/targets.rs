//! The paths a benchmark compares, each set up over the same read-only lower branch and torn
//! down afterwards (mounts, daemons, directories).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::BenchError;
use crate::backend::local::LocalFs;
use crate::libservice::FileSystem;
use crate::service::fuse::{self, FuseConfig, Mounted};
use crate::spec::CacheMode;
use crate::union::UnionFs;

/// Every path name `bench` knows, in display order.
pub const ALL: [&str; 16] = [
    "user",
    "user-passthrough",
    "user-cache",
    "fuse",
    "fuse-uring",
    "fuse-writeback",
    "fuse-direct",
    "fuse-overlayfs",
    "unionfs-fuse",
    "overlay",
    "kernel",
    "cephfs-user",
    "cephfs-user-cache",
    "cephfs-fuse",
    "ceph-fuse",
    "unionfs-ceph-fuse",
];

/// One path being measured: a directory per container to run the workload in.
#[allow(missing_debug_implementations)] // holds mounts, nothing worth printing
pub struct Target {
    pub name: String,
    /// One root per container (cloned containers over the same lower branch).
    pub roots: Vec<PathBuf>,
    /// For `user`: the workers run under the preload library, attached so.
    pub worker: Option<super::worker::Attach>,
    /// The user-level path's back driver: stopped before the mounts go.
    driver: Option<crate::service::shm::BackDriver>,
    guards: Vec<Guard>,
}

enum Guard {
    Ours(Mounted),
    Kernel(PathBuf),
}

impl Drop for Target {
    fn drop(&mut self) {
        drop(self.driver.take());
        // Mounts stacked on others were pushed after them.
        while let Some(g) = self.guards.pop() {
            match g {
                Guard::Ours(m) => drop(m),
                Guard::Kernel(mnt) => unmount_wait(&mnt),
            }
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
        "fuse" | "fuse-uring" | "fuse-writeback" | "fuse-direct" if !Path::new("/dev/fuse").exists() => Err("/dev/fuse is missing".into()),
        "fuse-uring" => fuse::uring::host_allows().map_err(|e| e.to_string()),
        "fuse-overlayfs" if !has("fuse-overlayfs") => Err("fuse-overlayfs is not installed".into()),
        "unionfs-fuse" if !has("unionfs-fuse") => Err("unionfs-fuse is not installed".into()),
        "overlay" if !overlay => Err("kernel overlayfs is not available".into()),
        "user" | "user-passthrough" | "user-cache" | "fuse" | "fuse-writeback" | "fuse-direct" | "fuse-overlayfs" | "unionfs-fuse" | "overlay" | "kernel" => Ok(()),
        other => Err(format!("unknown path {other:?}; known: {}", ALL.join(", "))),
    }
}

fn dirs(base: &Path, name: &str, container: usize) -> Result<(PathBuf, PathBuf, PathBuf), BenchError> {
    let d = base.join(name).join(container.to_string());
    let (upper, work, mnt) = (d.join("upper"), d.join("work"), d.join("mnt"));
    for p in [&upper, &work, &mnt] {
        std::fs::create_dir_all(p).map_err(BenchError::create(p))?;
    }
    Ok((upper, work, mnt))
}

fn local(p: &Path, read_only: bool, own_cache: bool) -> Result<Arc<dyn FileSystem>, BenchError> {
    // As an instance of the default spec has its branches (names reused for the entry
    // timeout); `user-cache`: the pool's own cache in write-back mode, with the defaults of an
    // instance spec (256M, the papers' dirty settings); `bench` runs the service, so its
    // flusher runs on pool A's cpus in the isolation experiment.
    // Its branches are the bench's alone: `close_to_open: false`, as an operator declares a
    // pool's private branch.
    let spec = crate::spec::CacheSpec { mode: if own_cache { CacheMode::Writeback } else { crate::spec::CacheSpec::default().mode }, close_to_open: !own_cache, ..crate::spec::CacheSpec::default() };
    let cache = crate::instance::pool_cache(&spec).map_err(BenchError::io("cannot start the cache's flusher"))?;
    let opts = crate::instance::local_options(&spec, cache, read_only);
    Ok(Arc::new(LocalFs::new(p, opts).map_err(|source| BenchError::Branch { path: p.to_path_buf(), source })?))
}

/// The union of container `i` on a `user`/`fuse*` path: a local upper over `lower`, or with
/// `ceph` a CephFS upper over one CephFS copy of `lower` shared by the containers.
fn union_for(name: &str, i: usize, upper: &Path, lower: &Path, ceph: Option<&super::ceph::CephBench>) -> Result<Arc<dyn FileSystem>, BenchError> {
    match ceph {
        Some(c) => {
            if i == 0 {
                c.prepare(name, None)?;
                c.prepare(&format!("{name}/lower"), Some(lower))?;
            }
            let u = c.prepare(&format!("{name}/upper{i}"), None)?;
            let l = Path::new("/").join(&c.dir).join(name).join("lower");
            // `cephfs-user-cache`: the pool's own cache, as an instance with `cache: {mode:
            // writethrough}` has it.
            let cache = if name == "cephfs-user-cache" {
                let spec = crate::spec::CacheSpec { mode: CacheMode::Writethrough, ..crate::spec::CacheSpec::default() };
                crate::instance::pool_cache(&spec).map_err(BenchError::io("cannot make the pool's cache"))?
            } else {
                None
            };
            Ok(Arc::new(UnionFs::new(Some(c.branch(&u, false, cache.clone())?), vec![c.branch(&l, true, cache)?])?))
        }
        None => {
            let own = name == "user-cache";
            Ok(Arc::new(UnionFs::new(Some(local(upper, false, own)?), vec![local(lower, true, own)?])?))
        }
    }
}

fn run_tool(cmd: &mut Command, what: &str) -> Result<(), BenchError> {
    let out = cmd.output().map_err(BenchError::spawn(what))?;
    if !out.status.success() {
        return Err(BenchError::tool(what, &out.stderr));
    }
    Ok(())
}

fn unionfs_fuse(upper: &Path, lower: &Path, mnt: &Path) -> Result<(), BenchError> {
    let branches = format!("{}=RW:{}=RO", upper.display(), lower.display());
    run_tool(Command::new("unionfs-fuse").args(["-o", "cow,allow_other,use_ino"]).arg(branches).arg(mnt), "unionfs-fuse")
}

/// Sets up path `name` for `containers` containers over `lower` with scratch space under
/// `base`; the user-level path's back driver pins its workers to `cpus` (empty: not
/// pinned); the CephFS paths use `ceph`. On error, what was set up is torn down.
pub fn setup(name: &str, lower: &Path, base: &Path, cpus: &[usize], ceph: Option<&super::ceph::CephBench>, containers: usize) -> Result<Target, BenchError> {
    let mut t = Target { name: name.to_string(), roots: Vec::new(), worker: None, driver: None, guards: Vec::new() };
    let on_ceph = matches!(name, "cephfs-user" | "cephfs-user-cache" | "cephfs-fuse");
    let ceph_for_union = if on_ceph { Some(ceph.ok_or(BenchError::NoCephConf("the CephFS paths need"))?) } else { None };
    let mut served = Vec::new();
    for i in 0..containers.max(1) {
        let (upper, work, mnt) = dirs(base, name, i)?;
        let overlay_opts = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
        match name {
            "user" | "user-passthrough" | "user-cache" | "cephfs-user" | "cephfs-user-cache" => {
                // As a pool's service serves an instance: FUSE mount and user-level path together.
                let union = union_for(name, i, &upper, lower, ceph_for_union)?;
                // `user-passthrough`: as an instance with `cache: {user_passthrough: true}`.
                let passthrough = name == "user-passthrough" || (name == "user" && crate::spec::CacheSpec::default().user_passthrough);
                let changes = if passthrough { None } else { crate::service::shm::changes::watch(&*union, std::time::Duration::from_secs_f64(crate::spec::CacheSpec::default().attr_timeout)) };
                // The FUSE side as an instance of that cache mode has it (`user-cache` and
                // `cephfs-user-cache`: direct I/O, no page cache of the pool's data, nothing
                // written behind the pool's cache).
                let cfg = match name {
                    "user-cache" => FuseConfig { cache: CacheMode::Writeback, ..FuseConfig::default() },
                    "cephfs-user-cache" => FuseConfig { cache: CacheMode::Writethrough, ..FuseConfig::default() },
                    _ => FuseConfig::default(),
                };
                let cfg = FuseConfig { user_level: true, ..cfg };
                let mounted = fuse::spawn(union.clone(), &mnt, &cfg).map_err(BenchError::io("cannot mount the legacy path"))?;
                // As a pool's service makes it (`LowerViews::for_spec`): the default cache mode.
                let lower_views = (name == "user" && changes.is_some()).then(|| Arc::new(crate::service::shm::LowerViews::new(vec![lower.to_path_buf()])));
                let upper_view = (name == "user" && crate::spec::CacheSpec::default().busy_passthrough).then(|| Arc::new(crate::service::shm::UpperView::new(upper.clone())));
                served.push(Some(crate::service::shm::UserInstance { fs: union, stats: Arc::default(), kernel: mounted.kernel_cache(), device: None, passthrough, changes, lower: lower_views, upper: upper_view }));
                t.guards.push(Guard::Ours(mounted));
            }
            "fuse" | "fuse-uring" | "fuse-writeback" | "fuse-direct" | "cephfs-fuse" => {
                let union = union_for(name, i, &upper, lower, ceph_for_union)?;
                // Our FUSE paths on the classic transport, but `fuse-uring`.
                let mut cfg = FuseConfig { transport: crate::spec::FuseTransport::Classic, ..FuseConfig::default() };
                match name {
                    "fuse-direct" => cfg.cache = CacheMode::Direct,
                    "fuse-writeback" => cfg.passthrough = false,
                    "fuse-uring" => cfg.transport = crate::spec::FuseTransport::Uring,
                    _ => {}
                }
                t.guards.push(Guard::Ours(fuse::spawn(union, &mnt, &cfg).map_err(BenchError::io("cannot mount our FUSE path"))?));
            }
            "fuse-overlayfs" => {
                run_tool(Command::new("fuse-overlayfs").arg("-o").arg(&overlay_opts).arg(&mnt), "fuse-overlayfs")?;
                t.guards.push(Guard::Kernel(mnt.clone()));
            }
            "unionfs-fuse" => {
                unionfs_fuse(&upper, lower, &mnt)?;
                t.guards.push(Guard::Kernel(mnt.clone()));
            }
            "overlay" => {
                let data = std::ffi::CString::new(overlay_opts).map_err(BenchError::OverlayOptions)?;
                rustix::mount::mount("overlay", &mnt, "overlay", rustix::mount::MountFlags::empty(), Some(data.as_c_str())).map_err(BenchError::Overlay)?;
                t.guards.push(Guard::Kernel(mnt.clone()));
            }
            "ceph-fuse" => {
                let c = ceph.ok_or(BenchError::NoCephConf("ceph-fuse needs"))?;
                if i == 0 {
                    c.prepare(name, None)?;
                }
                let plain = c.prepare(&format!("{name}/{i}"), Some(lower))?;
                c.ceph_fuse(&plain, &mnt)?;
                t.guards.push(Guard::Kernel(mnt.clone()));
            }
            "unionfs-ceph-fuse" => {
                let c = ceph.ok_or(BenchError::NoCephConf("unionfs-ceph-fuse needs"))?;
                let cf = base.join(name).join("ceph-fuse");
                if i == 0 {
                    let dir = c.prepare(name, None)?;
                    c.prepare(&format!("{name}/lower"), Some(lower))?;
                    std::fs::create_dir_all(&cf).map_err(BenchError::create(&cf))?;
                    c.ceph_fuse(&dir, &cf)?;
                    t.guards.push(Guard::Kernel(cf.clone()));
                }
                c.prepare(&format!("{name}/upper{i}"), None)?;
                unionfs_fuse(&cf.join(format!("upper{i}")), &cf.join("lower"), &mnt)?;
                t.guards.push(Guard::Kernel(mnt.clone()));
            }
            "kernel" => run_tool(Command::new("cp").arg("-a").arg(lower.join(".")).arg(&mnt), "cp -a")?,
            other => return Err(BenchError::UnknownTarget(other.to_string())),
        }
        t.roots.push(mnt);
    }
    if !served.is_empty() {
        let table = Arc::new(std::sync::RwLock::new(served));
        // As a pool's service does: a queue per cpu (each worker pinned to its own), or one
        // queue whose worker runs anywhere.
        let queues = u32::try_from(cpus.len()).unwrap_or(1).max(1);
        let g = polytropon_ipc::segment::Geometry { queues, slots: 64, clients: 64, buffer_size: 1 << 20 };
        // A socket of its own: a second user-level path's driver binding the same one would
        // take the first one's clients (whose requests it then serves on its own instances).
        let channel = base.join(format!("{name}.channel.sock"));
        let driver = crate::service::shm::BackDriver::start_table(table, g, cpus, None, &channel).map_err(BenchError::io("cannot start the back driver"))?;
        let mounts = t.roots.iter().enumerate().map(|(i, r)| (r.clone(), i as u32)).collect();
        t.worker = Some(super::worker::Attach { library: crate::frontend::library(base).map_err(BenchError::Library)?, channel: driver.channel().to_path_buf(), mounts });
        t.driver = Some(driver);
    }
    Ok(t)
}
