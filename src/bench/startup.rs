//! The `startup` workload (the papers' Lighttpd start-up experiment): wall time from nothing
//! to N cloned containers of one image each answering an HTTP request from the host, on three
//! roots made of the same image layers:
//!
//! - `user`: polytropon clones (`exec --clone-of`: a union instance of the pool's service, the
//!   FUSE tree as root, the preload library attached);
//! - `fuse-overlayfs`: one fuse-overlayfs mount per clone;
//! - `overlay`: one kernel overlayfs mount per clone;
//!
//! and with `--ceph-conf`, on the host's busybox image with its layer stored in CephFS:
//!
//! - `cephfs-user`: polytropon clones of it (the union reads the layer through the pool's
//!   libcephfs client);
//! - `unionfs-ceph-fuse`: one unionfs-fuse mount per clone over a single ceph-fuse mount of
//!   the layer (the papers' F/F).
//!
//! Every container is started the same way (`polytropon exec --detach` in a pool with no cpu
//! restriction, `--net host`), so only the root differs. Mounting the roots is part of the
//! measured time; tearing down is not.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{BenchError, Row};
use crate::container::state::remove_tree;
use crate::image::Store;
use crate::pool::{PoolSpec, Pools};
use crate::tenant::ops;

/// Paths this workload compares, in display order; the last two with `--ceph-conf`, on the
/// image's layers stored in CephFS (`cephfs-user`: polytropon clones of it;
/// `unionfs-ceph-fuse`: unionfs-fuse over one ceph-fuse mount of them, the papers' F/F).
pub const PATHS: [&str; 5] = ["user", "fuse-overlayfs", "overlay", "cephfs-user", "unionfs-ceph-fuse"];

/// The paths of [`PATHS`] that run on CephFS.
pub const CEPH_PATHS: [&str; 2] = ["cephfs-user", "unionfs-ceph-fuse"];

/// What the workload needs beyond the common options.
#[derive(Clone, Debug)]
pub struct StartupOptions {
    pub state_dir: PathBuf,
    pub data_dir: PathBuf,
    /// An imported image holding the server; `None`: one of the host's static busybox,
    /// made for the run.
    pub image: Option<String>,
    /// The server command; `{port}` is replaced by the container's port.
    pub serve: String,
    pub clones: Vec<usize>,
    /// A CephFS for the CephFS paths (its ceph.conf); they start clones of the host's busybox
    /// image with its layer stored there.
    pub ceph_conf: Option<PathBuf>,
}

/// A pool made for the run, destroyed (with its containers) on drop.
struct BenchPool {
    pools: Pools,
    name: String,
}

impl Drop for BenchPool {
    fn drop(&mut self) {
        if let Err(e) = ops::destroy(&self.pools, &self.name, true) {
            tracing::warn!("cannot destroy the benchmark pool {}: {}", self.name, crate::errors::chain(&e));
        }
    }
}

/// Roots mounted for one batch, unmounted on drop.
struct Roots(Vec<PathBuf>);

impl Drop for Roots {
    fn drop(&mut self) {
        for m in &self.0 {
            let _ = rustix::mount::unmount(m, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

fn exe() -> Result<PathBuf, BenchError> {
    crate::container::sealed::origin_exe().map_err(BenchError::io("cannot find the polytropon binary"))
}

/// Runs the workload: one sample per repetition, path and clone count.
pub fn run(o: &StartupOptions, paths: &[String], reps: u32, base: &Path, progress: &mut dyn FnMut()) -> Result<Vec<Row>, BenchError> {
    let store = Store::new(&o.data_dir);
    let made = match &o.image {
        Some(_) => None,
        None => Some(super::host_image::import(&o.data_dir, base)?),
    };
    let name = o.image.clone().or_else(|| made.as_ref().map(|m| m.name.clone())).unwrap_or_default();
    let image = store.get(&name).map_err(|source| BenchError::Image { name: name.clone(), source })?;
    let o = &StartupOptions { image: Some(name), ..o.clone() };
    let lowers = store.lowers(&image);
    let on_ceph = match o.ceph_conf.as_deref().filter(|_| paths.iter().any(|p| CEPH_PATHS.contains(&p.as_str()))) {
        Some(conf) => Some(CephImage::make(conf, &o.data_dir, base)?),
        None => None,
    };
    let pools = Pools::new(&o.state_dir);
    let name = format!("bench-{}", std::process::id());
    ops::create(&pools, &name, PoolSpec::default()).map_err(BenchError::Pool)?;
    let pool = BenchPool { pools, name };
    let svc = Command::new(exe()?)
        .arg("--state-dir")
        .arg(&o.state_dir)
        .args(["service", "run", "--pool", &pool.name, "--detach"])
        .stdout(Stdio::null())
        .status()
        .map_err(BenchError::io("cannot start the benchmark pool's service"))?;
    if !svc.success() {
        return Err(BenchError::ServiceDown);
    }
    let mut samples: Vec<(String, usize, Vec<f64>)> = Vec::new();
    for p in paths {
        for n in &o.clones {
            samples.push((p.clone(), *n, Vec::new()));
        }
    }
    let mut batch = 0usize;
    for _ in 0..reps {
        for (path, n, s) in samples.iter_mut() {
            batch += 1;
            let dir = base.join(format!("startup-{batch}"));
            std::fs::create_dir_all(&dir).map_err(BenchError::create(&dir))?;
            let took = match (path.as_str(), &on_ceph) {
                ("cephfs-user", Some(c)) => once(&StartupOptions { image: Some(c.image.name.clone()), ..o.clone() }, &pool, "user", *n, &lowers, &dir, batch),
                ("unionfs-ceph-fuse", Some(c)) => once(o, &pool, path, *n, &c.lowers, &dir, batch),
                (p, None) if CEPH_PATHS.contains(&p) => Err(BenchError::NoCephConf("the CephFS startup paths need")),
                _ => once(o, &pool, path, *n, &lowers, &dir, batch),
            };
            let _ = remove_tree(&dir);
            s.push(took.map_err(|e| BenchError::Clones { n: *n, path: path.clone(), source: Box::new(e) })?.as_secs_f64() * 1e3);
            progress();
        }
    }
    Ok(samples
        .into_iter()
        .map(|(path, n, mut s)| {
            s.sort_by(f64::total_cmp);
            Row {
                workload: "startup".into(),
                op: format!("{n} clones to first HTTP answer"),
                path,
                unit: "ms".into(),
                median: super::percentile(&s, 0.5),
                mean: super::mean(&s),
                p99: super::percentile(&s, 0.99),
                samples: s.len(),
            }
        })
        .collect())
}

/// Starts `n` containers on roots of kind `path`; the time until all of them answered.
fn once(o: &StartupOptions, pool: &BenchPool, path: &str, n: usize, lowers: &[PathBuf], dir: &Path, batch: usize) -> Result<Duration, BenchError> {
    let ports: Vec<u16> = (0..n).map(|i| free_port(i, batch)).collect::<Result<_, _>>()?;
    let names: Vec<String> = (0..n).map(|i| format!("s{batch}-{i}")).collect();
    let start = Instant::now();
    let mut roots = Roots(Vec::new());
    let mut children = Vec::new();
    for (i, (name, port)) in names.iter().zip(&ports).enumerate() {
        let mut cmd = Command::new(exe()?);
        cmd.arg("--state-dir").arg(&o.state_dir).arg("--data-dir").arg(&o.data_dir);
        cmd.args(["exec", "--pool", &pool.name, "--name", name, "--net", "host", "--detach"]);
        if path == "user" {
            cmd.args(["--clone-of", o.image.as_deref().unwrap_or_default()]);
        } else {
            let root = mount_root(path, lowers, &dir.join(i.to_string()))?;
            cmd.arg("--root").arg(&root).arg("--unmanaged-root");
            roots.0.push(root);
        }
        cmd.arg("--").args(o.serve.replace("{port}", &port.to_string()).split_whitespace());
        children.push(cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().map_err(BenchError::spawn("polytropon exec"))?);
    }
    let mut failed = None;
    for c in children {
        let out = c.wait_with_output().map_err(BenchError::io("cannot wait for polytropon exec"))?;
        if !out.status.success() && failed.is_none() {
            failed = Some(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
    }
    let answered = failed.is_none() && ports.iter().all(|p| answers(*p, Duration::from_secs(60)));
    let took = start.elapsed();
    // Not measured: stop the containers (their monitors unmount clone roots), then the rest.
    for name in &names {
        let _ = Command::new(exe()?)
            .arg("--state-dir")
            .arg(&o.state_dir)
            .arg("--data-dir")
            .arg(&o.data_dir)
            .args(["rm", "--pool", &pool.name, name, "--force"])
            .stderr(Stdio::null())
            .status();
    }
    drop(roots);
    if let Some(e) = failed {
        return Err(BenchError::ContainerFailed(e));
    }
    if !answered {
        return Err(BenchError::NoAnswer);
    }
    Ok(took)
}

/// The host's busybox image with its layer in CephFS, for the CephFS paths: its record (gone
/// when dropped), one ceph-fuse mount of its store for `unionfs-ceph-fuse` (unmounted when
/// dropped) and the layers as seen through that mount; the CephFS directory goes with the
/// run's [`super::ceph::CephBench`].
struct CephImage {
    image: super::host_image::HostImage,
    lowers: Vec<PathBuf>,
    _fuse: Roots,
    _ceph: super::ceph::CephBench,
}

impl CephImage {
    fn make(conf: &Path, data_dir: &Path, base: &Path) -> Result<CephImage, BenchError> {
        let ceph = super::ceph::CephBench::connect(conf)?;
        let dir = ceph.prepare("image", None)?;
        let store = crate::image::CephStore { conf: conf.to_path_buf(), id: ceph.opts.id.clone(), fs: None, dir: dir.clone() };
        let image = super::host_image::import_to_ceph(data_dir, base, &store)?;
        let images = Store::new(data_dir);
        let record = images.get(&image.name).map_err(|source| BenchError::Image { name: image.name.clone(), source })?;
        let at = base.join("startup-ceph-fuse");
        std::fs::create_dir_all(&at).map_err(BenchError::create(&at))?;
        ceph.ceph_fuse(&dir, &at)?;
        let fuse = Roots(vec![at.clone()]);
        let lowers = images.lowers(&record).iter().map(|l| at.join(l.strip_prefix(&dir).unwrap_or(l))).collect();
        Ok(CephImage { image, lowers, _fuse: fuse, _ceph: ceph })
    }
}

/// A fuse-overlayfs, kernel overlayfs or unionfs-fuse root of `lowers` (topmost first) under
/// `dir`.
fn mount_root(kind: &str, lowers: &[PathBuf], dir: &Path) -> Result<PathBuf, BenchError> {
    let (upper, work, mnt) = (dir.join("upper"), dir.join("work"), dir.join("root"));
    for p in [&upper, &work, &mnt] {
        std::fs::create_dir_all(p).map_err(BenchError::create(p))?;
    }
    let lowerdir = lowers.iter().map(|l| l.display().to_string()).collect::<Vec<_>>().join(":");
    let opts = format!("lowerdir={lowerdir},upperdir={},workdir={}", upper.display(), work.display());
    match kind {
        "fuse-overlayfs" => {
            let out = Command::new("fuse-overlayfs").arg("-o").arg(&opts).arg(&mnt).output().map_err(BenchError::spawn("fuse-overlayfs"))?;
            if !out.status.success() {
                return Err(BenchError::tool("fuse-overlayfs", &out.stderr));
            }
        }
        "overlay" => {
            let data = std::ffi::CString::new(opts).map_err(BenchError::OverlayOptions)?;
            rustix::mount::mount("overlay", &mnt, "overlay", rustix::mount::MountFlags::empty(), Some(data.as_c_str())).map_err(BenchError::Overlay)?;
        }
        "unionfs-ceph-fuse" => {
            let branches: Vec<String> = std::iter::once(format!("{}=RW", upper.display())).chain(lowers.iter().map(|l| format!("{}=RO", l.display()))).collect();
            let out = Command::new("unionfs-fuse").args(["-o", "cow,allow_other,use_ino"]).arg(branches.join(":")).arg(&mnt).output().map_err(BenchError::spawn("unionfs-fuse"))?;
            if !out.status.success() {
                return Err(BenchError::tool("unionfs-fuse", &out.stderr));
            }
        }
        other => return Err(BenchError::NotStartupPath(other.to_string())),
    }
    Ok(mnt)
}

/// A port for container `i` of batch `batch` that nothing listens on now.
fn free_port(i: usize, batch: usize) -> Result<u16, BenchError> {
    for k in 0..50 {
        let port = 20000 + ((batch * 131 + i * 7 + k * 1009) % 40000) as u16;
        if std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    Err(BenchError::NoFreePort)
}

/// Whether an HTTP server answers on `port` before `limit` passes (polling every 5 ms).
fn answers(port: u16, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = [0u8; 5];
            if s.write_all(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n").is_ok() && s.read_exact(&mut head).is_ok() && &head == b"HTTP/" {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}
