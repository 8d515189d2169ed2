//! The per-pool filesystem service: placed in the pool's cgroups, IPC namespace and cpus
//! before it starts any thread; serves a table of instances through FUSE; answers its control
//! socket; stops on `Stop` or SIGINT/SIGTERM/SIGHUP, unmounting everything.

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use nix::sys::signal::{SigSet, Signal};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::control::{self, MountInfo, Request, Response, ServiceStats, ThreadInfo};
use super::fuse::{self, FuseConfig, UnmountError};
use super::mounts::{Locked, MountTable};
use super::shm::{self, BackDriver};
use polytropon_ipc::segment::Geometry;
use crate::errors::chain;
use crate::instance::{self, InstanceError};
use crate::pool::enter::EnterError;
use crate::pool::state::{now, ServiceRecord};
use crate::pool::{PoolState, Pools};
use crate::spec::{BackendSpec, InstanceSpec, SpecError};

/// What can go wrong starting the service or serving a control request; each names the step.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot read {}", .path.display())]
    ReadSpec {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("cache size {size_mib} MiB is more than half of pool {pool}'s memory limit ({limit_mib} MiB): the service holds the cache in the pool's memory and would be killed by the limit; choose a smaller --cache-size (cache.size)")]
    CacheTooBig { size_mib: u64, pool: String, limit_mib: u64 },
    #[error("mount point {}", .path.display())]
    MountPoint {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is already mounted", .0.display())]
    AlreadyMounted(PathBuf),
    #[error("{} is a relative path: the service would take it from its own working directory; give an absolute one", .0.display())]
    RelativeBranch(PathBuf),
    #[error("cannot build the filesystem instance")]
    Build(#[source] InstanceError),
    #[error(transparent)]
    CephNet(#[from] crate::service::ceph_net::CephNetError),
    #[error("cannot mount {}", .path.display())]
    Mount {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the service is stopping")]
    Stopping,
    #[error("{} is not served by pool {pool}", .mountpoint.display())]
    NotServed { mountpoint: PathBuf, pool: String },
    #[error(transparent)]
    Unmount(#[from] UnmountError),
    #[error("the service cannot enter pool {pool}")]
    Enter {
        pool: String,
        #[source]
        source: EnterError,
    },
    #[error("cannot block signals")]
    Signals(#[source] nix::Error),
    #[error("cannot listen on {}", .path.display())]
    Listen {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the pool's shared-memory segment")]
    Segment(#[source] std::io::Error),
    /// An instance of the service spec could not be served.
    #[error("instance at {}", .mountpoint.display())]
    Instance {
        mountpoint: PathBuf,
        #[source]
        source: Box<DaemonError>,
    },
    #[error("cannot record the service")]
    Record(#[source] std::io::Error),
    /// The signal or control thread cannot start.
    #[error(transparent)]
    Thread(std::io::Error),
    /// The metrics endpoint (`--metrics-listen`) cannot start.
    #[error(transparent)]
    Metrics(#[from] crate::metrics::http::HttpError),
}

/// The service spec (`service run -f service.yaml`): instances to serve at start.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    #[serde(default)]
    pub instances: Vec<TableEntry>,
}

/// One row of the filesystem table.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TableEntry {
    pub mountpoint: PathBuf,
    pub spec: InstanceSpec,
    /// Its index on the user-level path; the service records it so that a restarted service
    /// serves each mount under the same index its clients' libraries know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<u32>,
}

/// One row of the filesystem table as `table_text` joins it: the entry as the only item of a
/// YAML sequence.
fn table_row(entry: &TableEntry) -> Result<String, serde_yaml_ng::Error> {
    serde_yaml_ng::to_string(std::slice::from_ref(entry))
}

/// The filesystem table's text from its rows (`table_row`): the same text as the whole
/// `ServiceSpec` serialized at once, made in time linear in its size.
fn table_text(rows: &[&str]) -> String {
    if rows.is_empty() {
        return "instances: []\n".to_string();
    }
    let mut text = String::with_capacity(12 + rows.iter().map(|r| r.len()).sum::<usize>());
    text.push_str("instances:\n");
    rows.iter().for_each(|r| text.push_str(r));
    text
}

impl ServiceSpec {
    /// Reads the table at `path`; relative local branch paths and mount points are taken from
    /// the file's directory, as in an instance's own spec file.
    pub fn from_file(path: &Path) -> Result<Self, DaemonError> {
        let text = std::fs::read_to_string(path).map_err(|source| DaemonError::ReadSpec { path: path.to_path_buf(), source })?;
        let mut spec: ServiceSpec = crate::spec::from_yaml(&text, path)?;
        let base = std::path::absolute(path).map_err(|source| DaemonError::ReadSpec { path: path.to_path_buf(), source })?;
        let base = base.parent().unwrap_or(Path::new("/"));
        for entry in &mut spec.instances {
            if entry.mountpoint.is_relative() {
                entry.mountpoint = base.join(&entry.mountpoint);
            }
            entry.spec.anchor(base);
        }
        Ok(spec)
    }
}

/// Path of the filesystem table the service keeps (for cleanup after a crash).
pub fn table_file(pools: &Pools, pool: &str) -> PathBuf {
    pools.pool_dir(pool).join("mounts.yaml")
}

/// Path of the channel socket clients of the user-level path connect to.
pub fn channel_file(pools: &Pools, pool: &str) -> PathBuf {
    pools.pool_dir(pool).join("channel.sock")
}

/// Path of the control socket.
pub fn socket_file(pools: &Pools, pool: &str) -> PathBuf {
    pools.pool_dir(pool).join("control.sock")
}

/// A recorded filesystem table read row by row: the rows that still make an instance, and
/// for each that does not, its mount point (when it names one) and why. One row that no
/// longer parses (a hand edit, a check a newer version makes) costs that row only.
#[derive(Debug, Default)]
pub struct RecordedTable {
    pub entries: Vec<TableEntry>,
    pub broken: Vec<(Option<PathBuf>, String)>,
}

impl RecordedTable {
    pub fn parse(text: &str) -> RecordedTable {
        let mut table = RecordedTable::default();
        let doc: serde_yaml_ng::Value = match serde_yaml_ng::from_str(text) {
            Ok(d) => d,
            Err(e) => {
                table.broken.push((None, e.to_string()));
                return table;
            }
        };
        let rows = doc.get("instances").and_then(|r| r.as_sequence()).cloned().unwrap_or_default();
        for (i, row) in rows.into_iter().enumerate() {
            let mountpoint = row.get("mountpoint").and_then(|m| m.as_str()).map(PathBuf::from);
            match serde_yaml_ng::from_value::<TableEntry>(row) {
                Ok(e) => match e.spec.relative_host_path() {
                    // A row an older version recorded from an operator's relative path: which
                    // directory it meant is not known any more.
                    Some(p) => table.broken.push((mountpoint, format!("instances[{i}]: branch {} is a relative path", p.display()))),
                    None => table.entries.push(e),
                },
                Err(e) => table.broken.push((mountpoint, format!("instances[{i}]: {e}"))),
            }
        }
        table
    }

    /// Every mount point the table names, whether its row still parses or not.
    pub fn mountpoints(&self) -> Vec<PathBuf> {
        self.entries.iter().map(|e| e.mountpoint.clone()).chain(self.broken.iter().filter_map(|(m, _)| m.clone())).collect()
    }
}

/// Mountpoints recorded in a pool's filesystem table (those of rows that no longer parse
/// too: a dead service's mounts must be found to be cleared).
pub fn recorded_mounts(pools: &Pools, pool: &str) -> Vec<PathBuf> {
    std::fs::read_to_string(table_file(pools, pool)).map(|t| RecordedTable::parse(&t).mountpoints()).unwrap_or_default()
}

struct Service {
    pools: Pools,
    pool: String,
    started: u64,
    /// What it serves, by mount point and by user-level index.
    table: MountTable,
    /// Mountpoints being mounted (outside the table's lock, so that mounts proceed together).
    pending: Mutex<std::collections::BTreeSet<PathBuf>>,
    /// Set once the service stops: no mount is added after the table is torn down.
    stopping: AtomicBool,
    shmid: i32,
    /// The channel socket of the user-level path.
    channel: PathBuf,
    /// The user-level path's back driver; taken (stopped) when the service stops.
    driver: Mutex<Option<BackDriver>>,
    /// The pool's storage quota, counted over its instances' writable branches.
    storage: Option<Arc<crate::quota::Quota>>,
    /// The pool's network namespace (`--net-rate`), which its CephFS clients join.
    net: Option<PathBuf>,
    /// Writes the filesystem table (see `save_table`).
    saver: super::table_saver::TableSaver,
}

fn threads() -> Vec<ThreadInfo> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc/self/task") else { return out };
    for e in rd.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else { continue };
        let base = e.path();
        let name = std::fs::read_to_string(base.join("comm")).unwrap_or_default().trim().to_string();
        // Field 39 of stat is the cpu last run on; fields after the ")" start at 3.
        let cpu = std::fs::read_to_string(base.join("stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").and_then(|(_, r)| r.split(' ').nth(36).and_then(|c| c.parse().ok())))
            .unwrap_or(0);
        let allowed = std::fs::read_to_string(base.join("status"))
            .ok()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:").map(|v| v.trim().to_string())))
            .unwrap_or_default();
        out.push(ThreadInfo { tid, name, cpu, allowed });
    }
    out.sort_by_key(|t| t.tid);
    out
}

impl Service {
    /// Stages the table as it is now (called under its lock); the version `saver.wait` takes.
    /// Concurrent mounts share one durable write (`table_saver`).
    fn stage_table(&self, table: &Locked<'_>) -> u64 {
        let rows: Result<Vec<&str>, serde_yaml_ng::Error> = table
            .iter()
            .map(|(m, s)| match s.row.get() {
                Some(row) => Ok(row.as_str()),
                None => {
                    let row = table_row(&TableEntry { mountpoint: m.clone(), spec: s.spec.clone(), instance: Some(s.instance) })?;
                    Ok(s.row.get_or_init(|| row).as_str())
                }
            })
            .collect();
        match rows {
            Ok(rows) => self.saver.stage(table_text(&rows)),
            Err(e) => {
                warn!("cannot write the filesystem table: {e}");
                0
            }
        }
    }

    /// Writes the table as it is now, durably.
    fn save_table(&self, table: Locked<'_>) {
        let v = self.stage_table(&table);
        drop(table);
        self.saver.wait(v);
    }

    /// A pool cache (the service's memory) must leave room under the pool's memory limit for
    /// the service and the pool's containers: at most half of it.
    fn cache_fits(&self, spec: &InstanceSpec) -> Result<(), DaemonError> {
        if !spec.cache.own_cache() {
            return Ok(());
        }
        let Ok(Some(pool)) = self.pools.get(&self.pool) else { return Ok(()) };
        let size = spec.cache.size_bytes();
        if let Some(limit) = crate::pool::cgroups::usage(&pool.cgroups).memory_limit {
            if size > limit / 2 {
                return Err(DaemonError::CacheTooBig { size_mib: size >> 20, pool: self.pool.clone(), limit_mib: limit >> 20 });
            }
        }
        Ok(())
    }

    /// Mounts `spec` at `mountpoint`, as user-level instance `want` when given and free.
    fn mount(&self, mountpoint: &Path, spec: InstanceSpec, want: Option<u32>) -> Result<u32, DaemonError> {
        if !mountpoint.is_absolute() {
            return Err(DaemonError::MountPoint { path: mountpoint.to_path_buf(), source: std::io::Error::other("a relative path: give an absolute one") });
        }
        // Local directories only: a CephFS path is inside the CephFS (libcephfs takes a relative
        // one from its root).
        if let Some(p) = spec.relative_host_path() {
            return Err(DaemonError::RelativeBranch(p.to_path_buf()));
        }
        let mp = std::fs::canonicalize(mountpoint).map_err(|source| DaemonError::MountPoint { path: mountpoint.to_path_buf(), source })?;
        self.cache_fits(&spec)?;
        {
            let table = self.table.lock();
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if table.contains(&mp) || pending.contains(&mp) || fuse::is_our_mount(&mp) {
                return Err(DaemonError::AlreadyMounted(mp));
            }
            pending.insert(mp.clone());
        }
        // However this ends (an error, a panic below), the mount point is no longer pending.
        let unmark = Unmark { pending: &self.pending, mountpoint: &mp };
        let built = self.build(&spec).and_then(|(fs, counted)| {
            // Watched before it is mounted: no change escapes the table. Not where clients get
            // backing files' descriptors: a holder can write through a copy of one (a raw dup,
            // a reopen through /proc) that the service never hears of.
            let learns = spec.cache.learn && !spec.cache.user_passthrough;
            let key = if learns { crate::service::shm::changes::watch(&*fs, std::time::Duration::from_secs_f64(spec.cache.attr_timeout)) } else { None };
            let mount = fuse::spawn(fs.clone(), &mp, &FuseConfig { user_level: true, ..FuseConfig::from_instance(&spec) }).map_err(|source| DaemonError::Mount { path: mp.clone(), source })?;
            // Another client's announced change of a shared instance's file reaches the
            // kernel's caches of it too (until the mount is removed from the table).
            if let (Some(k), Some(kernel), Some(t), true) = (key, mount.kernel_cache(), crate::service::shm::changes::table(), fs.shared()) {
                t.attach_kernel(k, kernel);
            }
            Ok(((fs, counted), mount, key))
        });
        let mut table = self.table.lock();
        drop(unmark);
        let (fs, mount, key) = built?;
        if self.stopping.load(Ordering::Acquire) {
            if let (Some(k), Some(t)) = (key, crate::service::shm::changes::table()) {
                t.detach_kernel(k);
            }
            drop(mount);
            return Err(DaemonError::Stopping);
        }
        let instance = table.insert(mp.clone(), spec, mount, fs, key, want);
        info!("serving {} (instance {instance})", mp.display());
        self.save_table(table);
        Ok(instance)
    }

    /// Builds `spec`'s instance; one over CephFS in a pool with a network of its own gets its
    /// Ceph client in that network (see `ceph_net`).
    fn build(&self, spec: &InstanceSpec) -> Result<instance::Counted, DaemonError> {
        let build = || instance::build_with(spec, self.storage.clone()).map_err(DaemonError::Build);
        match (&self.net, &spec.backend) {
            (Some(ns), BackendSpec::Cephfs(ceph)) => crate::service::ceph_net::within(&self.pool, ns, &ceph.conf, build)?,
            _ => build(),
        }
    }

    /// The instance serving `mountpoint`.
    fn instance(&self, mountpoint: &Path) -> Result<u32, DaemonError> {
        let mp = std::fs::canonicalize(mountpoint).unwrap_or_else(|_| mountpoint.to_path_buf());
        match self.table.lock().instance(&mp) {
            Some(i) => Ok(i),
            None => Err(DaemonError::NotServed { mountpoint: mp, pool: self.pool.clone() }),
        }
    }

    fn umount(&self, mountpoint: &Path) -> Result<(), DaemonError> {
        let mp = std::fs::canonicalize(mountpoint).unwrap_or_else(|_| mountpoint.to_path_buf());
        let mut table = self.table.lock();
        if !table.contains(&mp) {
            return Err(DaemonError::NotServed { mountpoint: mp, pool: self.pool.clone() });
        }
        fuse::unmount(&mp)?;
        table.remove(&mp);
        self.save_table(table);
        Ok(())
    }

    /// Drops the mounts whose FUSE session ended without `umount --pool` (umount(8) of the
    /// mount point): their instances go, as with an unmount asked for.
    fn reap_ended(&self) {
        let mut table = self.table.lock();
        let ended: Vec<PathBuf> = table.iter().filter(|(_, m)| m.mount.ended()).map(|(p, _)| p.clone()).collect();
        for mp in &ended {
            info!("{} was unmounted from outside; its instance goes", mp.display());
            table.remove(mp);
        }
        if !ended.is_empty() {
            self.save_table(table);
        }
    }

    fn stats(&self) -> ServiceStats {
        let usage = self.driver.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(BackDriver::usage).unwrap_or_default();
        let table = self.table.lock();
        ServiceStats {
            pid: std::process::id(),
            started: self.started,
            shmid: self.shmid,
            channel: self.channel.clone(),
            threads: threads(),
            mounts: table
                .iter()
                .map(|(m, s)| MountInfo {
                    mountpoint: m.clone(),
                    instance: s.instance,
                    spec: s.spec.clone(),
                    fuse_transport: s.mount.transport().name().to_string(),
                    write_back: s.spec.cache.write_back_when(crate::backend::cache::current().and_then(|c| c.writeback()).map(|w| w.expire)),
                    passthrough_opens: s.mount.stats().passthrough_opens(),
                    user_passthrough_opens: s.user.passthrough_opens(),
                    user_prefetched_opens: s.user.prefetched_opens(),
                    others_changes: s.changes.and_then(|k| crate::service::shm::changes::table().map(|t| t.announced(k))).unwrap_or(0),
                    user_handovers: s.user.handovers(),
                    storage: s.storage.as_ref().map(|q| q.usage()),
                    fuse_ops: s.mount.stats().summary(),
                    user_ops: s.user.summary(),
                })
                .collect(),
            user_path: control::UserPath {
                clients: usage.clients,
                areas: usage.areas,
                open_files: usage.open_files,
                reclaimed_files: usage.reclaimed_files,
                reclaimed_clients: usage.reclaimed_clients,
                max_open_per_process: shm::MAX_OPEN_PER_PROCESS,
            },
            storage: self.storage.as_ref().map(|q| q.usage()),
            descriptors: control::Descriptors { open: super::limits::open_descriptors(), limit: super::limits::descriptor_limit() },
            cache: crate::backend::cache::current().map(|c| {
                let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
                control::CacheInfo {
                    bytes: n(&c.stats.bytes),
                    limit: c.limit(),
                    hits: n(&c.stats.hits),
                    misses: n(&c.stats.misses),
                    insertions: n(&c.stats.insertions),
                    evictions: n(&c.stats.evictions),
                    invalidations: n(&c.stats.invalidations),
                    dirty: n(&c.stats.dirty),
                    writebacks: n(&c.stats.writebacks),
                    writeback_errors: n(&c.stats.writeback_errors),
                }
            }),
        }
    }
}

/// Every FUSE session allocates a zeroed 16 MiB request buffer (fuser's `BUFFER_SIZE`) and
/// touches only what requests use. glibc raises its mmap threshold when large blocks are
/// freed, after which such buffers come from the heap and `calloc` clears all 16 MiB: 16 MiB
/// of the pool's memory, and a memset, per mounted clone. A fixed threshold keeps them
/// mmapped, hence lazily zero.
fn keep_large_buffers_lazy() {
    // SAFETY: mallopt only sets an allocator parameter; called before any thread starts.
    if unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20) } != 1 {
        warn!("cannot fix the allocator's mmap threshold; each mount may cost 16 MiB");
    }
}

/// Takes a mount point out of the pending set when dropped.
struct Unmark<'a> {
    pending: &'a Mutex<std::collections::BTreeSet<PathBuf>>,
    mountpoint: &'a Path,
}

impl Drop for Unmark<'_> {
    fn drop(&mut self) {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(self.mountpoint);
    }
}

/// Control requests served at once; a connection past them is told the service is busy (only
/// root and the service's user may connect, and a peer that stalls is dropped after
/// `PEER_TIMEOUT`).
const MAX_REQUESTS: usize = 64;

/// How a busy service's refusal starts (`control::call` tries again on it).
use super::control::BUSY;

/// Longest a control peer may take to send its request or read the answer.
const PEER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Client areas of a pool's service (see where the geometry is chosen).
const CLIENT_AREAS: u32 = 1024;

/// How often the service looks for mounts unmounted from outside.
const REAP_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Reads one request from `conn` and answers it.
fn answer(svc: &Service, conn: &std::os::unix::net::UnixStream, stop_tx: &mpsc::Sender<&'static str>) {
    let served = |instance| Response::served(control::UserPathAddress { instance, channel: svc.channel.clone() });
    let resp = match control::read_request(conn) {
        Err(e) => Response::err(e),
        Ok(Request::Mount { mountpoint, spec }) => svc.mount(&mountpoint, *spec, None).map_or_else(|e| Response::err(chain(&e)), served),
        Ok(Request::Instance { mountpoint }) => svc.instance(&mountpoint).map_or_else(|e| Response::err(chain(&e)), served),
        Ok(Request::Umount { mountpoint }) => svc.umount(&mountpoint).map_or_else(|e| Response::err(chain(&e)), |_| Response::ok()),
        Ok(Request::Stats) => Response { ok: true, stats: Some(svc.stats()), ..Response::default() },
        Ok(Request::Stop) => {
            let _ = stop_tx.send("stop request");
            Response::ok()
        }
    };
    control::write_response(conn, &resp);
}

fn peer_allowed(s: &std::os::unix::net::UnixStream) -> bool {
    match rustix::net::sockopt::socket_peercred(s) {
        Ok(c) => c.uid.is_root() || c.uid == rustix::process::geteuid(),
        Err(_) => false,
    }
}

/// How a service starts.
#[derive(Debug, Default)]
pub struct Startup {
    /// The instances to serve at start.
    pub spec: ServiceSpec,
    /// A restart after the previous service died: it serves the filesystem table its
    /// predecessor recorded (instead of `spec`), each mount under its old user-level index; a
    /// mount that cannot come back is reported and left out.
    pub recover: bool,
    /// The supervisor that restarts this service when it dies (`service run --restart`).
    pub supervisor: Option<u32>,
    pub log: Option<PathBuf>,
    /// Serve the pool's metrics over HTTP here (`--metrics-listen`).
    pub metrics: Option<MetricsListen>,
}

/// Where the service serves its metrics.
#[derive(Clone, Copy, Debug)]
pub struct MetricsListen {
    pub addr: std::net::SocketAddr,
    /// Whether a non-loopback `addr` is allowed (`--metrics-allow-remote`).
    pub allow_remote: bool,
}

/// Serves the report on the service's own pool, gathered at each scrape, at `at`.
fn serve_metrics(service: &Arc<Service>, at: MetricsListen) -> Result<crate::metrics::http::MetricsServer, DaemonError> {
    let svc = service.clone();
    let exporter = crate::metrics::Exporter::new(move || match svc.pools.get(&svc.pool) {
        Ok(Some(pool)) => vec![crate::tenant::report::pool_report(&svc.pools, pool, Ok(svc.stats()))],
        Ok(None) => Vec::new(),
        Err(e) => {
            warn!("metrics: cannot read pool {}: {e}", svc.pool);
            Vec::new()
        }
    });
    Ok(crate::metrics::http::serve(at.addr, at.allow_remote, exporter)?)
}

/// Runs the service of `pool` in this process until stopped. Must be called before the
/// process starts any thread: it moves the whole process into the pool.
pub fn run(pools: &Pools, pool: &PoolState, start: Startup, ready: impl FnOnce()) -> Result<(), DaemonError> {
    let pid = std::process::id();
    keep_large_buffers_lazy();
    super::limits::raise_descriptor_limit();
    // A table left behind means the previous service died (a clean stop removes it): its
    // mounts are served again, each under its old user-level index, whether a supervisor
    // restarts this service or an operator does. The spec's own instances come after them.
    let recorded = match std::fs::read_to_string(table_file(pools, &pool.name)) {
        Ok(t) => {
            let table = RecordedTable::parse(&t);
            if !table.broken.is_empty() {
                // Kept beside, for the operator: the table is written anew below without them.
                let kept = table_file(pools, &pool.name).with_extension("yaml.bad");
                if let Err(e) = std::fs::write(&kept, &t) {
                    warn!("cannot keep a copy of the filesystem table at {}: {e}", kept.display());
                }
                for (mountpoint, why) in &table.broken {
                    let at = mountpoint.as_ref().map_or_else(|| "(no mount point)".to_string(), |m| m.display().to_string());
                    warn!("the filesystem table the previous service recorded has a row it cannot serve, {at}: {why} (the table as it was: {})", kept.display());
                }
            }
            Some(ServiceSpec { instances: table.entries })
        }
        Err(_) => None,
    };
    let recover = start.recover || recorded.is_some();
    let recorded = recorded.map(|r| r.instances).unwrap_or_default();
    if !recorded.is_empty() {
        info!("the previous service of pool {} died; serving the {} mounts it recorded", pool.name, recorded.len());
    }
    // Mounts a predecessor that died left (killed with kill -9): its table names them.
    for mp in recorded_mounts(pools, &pool.name) {
        let _ = fuse::clear_stale(&mp);
    }
    // 1. Into the pool: cgroups, IPC namespace, cpus. Still single-threaded.
    pool.entry().enter().map_err(|source| DaemonError::Enter { pool: pool.name.clone(), source })?;
    let mut signals = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(s);
    }
    signals.thread_block().map_err(DaemonError::Signals)?;
    // 2. The control socket, owner-only from the start.
    let sock = socket_file(pools, &pool.name);
    let _ = std::fs::remove_file(&sock);
    let old = rustix::process::umask(rustix::fs::Mode::from_bits_retain(0o177));
    let listener = UnixListener::bind(&sock);
    rustix::process::umask(old);
    let listener = listener.map_err(|source| DaemonError::Listen { path: sock.clone(), source })?;
    // 3. The user-level path: the pool's segment, made in the pool's IPC namespace (joined
    //    above), owner-only, with one request queue per pool cpu.
    let table = MountTable::default();
    let queues = pool.slice.cpus.as_ref().map_or(1, |c| c.len().max(1)) as u32;
    // Client areas: one per connected client thread. Every process under the library
    // connects as it starts (see the library's `connect_early`), so this bounds the pool's
    // processes and threads on the user-level path at once, past which they take the FUSE
    // path; an area costs the service a mapping and a page or two until it is used.
    let geometry = Geometry { queues, slots: 256, clients: CLIENT_AREAS, buffer_size: 1 << 20 };
    let cpus: Vec<usize> = pool.slice.cpus.iter().flatten().map(|c| *c as usize).collect();
    let channel = channel_file(pools, &pool.name);
    let driver = BackDriver::start_table(table.user_view(), geometry, &cpus, Some(polytropon_ipc::SEGMENT_KEY), &channel).map_err(DaemonError::Segment)?;
    let service = Arc::new(Service {
        pools: pools.clone(),
        pool: pool.name.clone(),
        started: now(),
        table,
        pending: Mutex::default(),
        stopping: AtomicBool::new(false),
        shmid: driver.shmid(),
        channel,
        driver: Mutex::new(Some(driver)),
        // Counted afresh from the branches as each instance comes (never from a record).
        storage: (pool.slice.storage.is_some() || pool.slice.inodes.is_some()).then(|| crate::quota::Quota::new(pool.slice.storage, pool.slice.inodes, libc::ENOSPC)),
        net: pool.net.as_ref().map(|n| n.ns.clone()),
        saver: super::table_saver::TableSaver::new(table_file(pools, &pool.name)),
    });
    // The metrics endpoint, before any mount: an address that cannot be had fails the start
    // with nothing to undo but the control socket.
    let metrics = match start.metrics.map(|at| serve_metrics(&service, at)).transpose() {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_file(&sock);
            return Err(e);
        }
    };
    // 4. The recorded instances (one that cannot come back is reported and left out), then
    //    those of the spec not already served.
    for e in recorded {
        match service.mount(&e.mountpoint, e.spec, e.instance) {
            Ok(i) => info!("serving {} again (instance {i})", e.mountpoint.display()),
            Err(err) => warn!("dropped the recorded mount {}: cannot serve it again: {}", e.mountpoint.display(), chain(&err)),
        }
    }
    for e in start.spec.instances {
        let again = std::fs::canonicalize(&e.mountpoint).is_ok_and(|mp| service.table.lock().contains(&mp));
        if again {
            continue;
        }
        if let Err(err) = service.mount(&e.mountpoint, e.spec, e.instance) {
            drop(service.table.lock().take_all());
            let _ = std::fs::remove_file(table_file(pools, &pool.name));
            let _ = std::fs::remove_file(&sock);
            return Err(DaemonError::Instance { mountpoint: e.mountpoint, source: Box::new(err) });
        }
    }
    if recover {
        // What could not come back is gone from the table too.
        service.save_table(service.table.lock());
    }
    let record = ServiceRecord { pid, socket: sock.clone(), started: service.started, log: start.log, shmid: Some(service.shmid), supervisor: start.supervisor };
    pools.save_service(&pool.name, &record).map_err(DaemonError::Record)?;
    ready();
    let (stop_tx, stop_rx) = mpsc::channel::<&'static str>();
    let tx = stop_tx.clone();
    std::thread::Builder::new().name("ptn-signals".into()).spawn(move || {
        if let Ok(sig) = signals.wait() {
            let _ = tx.send(sig.as_str());
        }
    }).map_err(DaemonError::Thread)?;
    let svc = service.clone();
    std::thread::Builder::new().name("ptn-reaper".into()).spawn(move || {
        while !svc.stopping.load(Ordering::Acquire) {
            std::thread::sleep(REAP_EVERY);
            if !svc.stopping.load(Ordering::Acquire) {
                svc.reap_ended();
            }
        }
    }).map_err(DaemonError::Thread)?;
    let svc = service.clone();
    std::thread::Builder::new().name("ptn-control".into()).spawn(move || {
        // One thread per request, so that clones' mounts proceed together; at most
        // `MAX_REQUESTS` at once, the rest answered in line (only root or the service's user
        // may connect at all).
        let busy = Arc::new(AtomicUsize::new(0));
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            if !peer_allowed(&conn) {
                control::write_response(&conn, &Response::err("permission denied: only root or the service's user may control it"));
                continue;
            }
            // A peer that connects and then sends nothing (or reads nothing) holds its thread
            // for at most these timeouts; it never holds this loop.
            if conn.set_read_timeout(Some(PEER_TIMEOUT)).is_err() || conn.set_write_timeout(Some(PEER_TIMEOUT)).is_err() {
                continue;
            }
            if busy.load(Ordering::Acquire) >= MAX_REQUESTS {
                control::write_response(&conn, &Response::err(format!("{BUSY} ({MAX_REQUESTS} requests in progress); try again")));
                continue;
            }
            busy.fetch_add(1, Ordering::AcqRel);
            let (svc, stop_tx, done) = (svc.clone(), stop_tx.clone(), busy.clone());
            let spawned = std::thread::Builder::new().name("ptn-request".into()).spawn(move || {
                // A request that panics gets an error answer; the service goes on.
                let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| answer(&svc, &conn, &stop_tx)));
                if answered.is_err() {
                    control::write_response(&conn, &Response::err("internal error serving the request (see the service's log)"));
                }
                done.fetch_sub(1, Ordering::AcqRel);
            });
            if spawned.is_err() {
                busy.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }).map_err(DaemonError::Thread)?;
    let why = stop_rx.recv().unwrap_or("control channel closed");
    info!("stopping: {why}");
    service.stopping.store(true, Ordering::Release);
    drop(metrics);
    // 5. Flush and unmount everything (detached if busy, so open files keep working).
    drop(service.driver.lock().unwrap_or_else(|p| p.into_inner()).take());
    let table = service.table.lock().take_all();
    for (mp, served) in table {
        if let Err(e) = fuse::unmount(&mp) {
            warn!("{e}; detaching it");
        }
        drop(served);
    }
    // Nothing dirty is left behind (a detached mount's instance may still hold the cache).
    if let Err(e) = crate::backend::local::write_back_all() {
        warn!("write-back at stop failed: {e}");
    }
    // No table write still in flight may put the file back after it is removed.
    service.saver.close();
    let _ = std::fs::remove_file(table_file(pools, &pool.name));
    let _ = std::fs::remove_file(&sock);
    pools.remove_service(&pool.name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_table_loses_only_the_rows_that_no_longer_parse() {
        let good = table_text(&[&table_row(&entry("/mnt/a", "branches:\n  - {path: /u, mode: rw}\n", 0)).expect("row")]);
        let text = format!("{good}- mountpoint: /mnt/b\n  spec:\n    branches: []\n    cache: {{dirty_ratio: 0}}\n- junk: 1\n- mountpoint: /mnt/c\n  spec:\n    branches: [{{path: rel, mode: rw}}]\n");
        let t = RecordedTable::parse(&text);
        assert_eq!(t.entries.len(), 1, "{t:?}");
        assert_eq!(t.entries[0].mountpoint, Path::new("/mnt/a"));
        assert_eq!(t.broken.len(), 3, "{t:?}");
        assert!(t.broken[2].1.contains("branch rel is a relative path"), "{:?}", t.broken);
        assert_eq!(t.mountpoints(), vec![PathBuf::from("/mnt/a"), PathBuf::from("/mnt/b"), PathBuf::from("/mnt/c")]);
        assert!(t.broken[0].1.starts_with("instances[1]:"), "{:?}", t.broken);
        let none = RecordedTable::parse("instances: [");
        assert!(none.entries.is_empty() && none.broken.len() == 1);
    }

    #[test]
    fn a_service_table_file_anchors_relative_paths_at_its_own_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("table.yaml");
        std::fs::write(&file, "instances:\n  - mountpoint: mnt\n    spec:\n      branches:\n        - {path: up, mode: rw}\n        - {path: /abs/low, mode: ro}\n").expect("write");
        let spec = ServiceSpec::from_file(&file).expect("parse");
        let e = &spec.instances[0];
        assert_eq!(e.mountpoint, dir.path().join("mnt"));
        assert_eq!(e.spec.branches[0].path, dir.path().join("up"));
        assert_eq!(e.spec.branches[1].path, Path::new("/abs/low"));
    }

    fn entry(mountpoint: &str, yaml: &str, instance: u32) -> TableEntry {
        let spec = InstanceSpec::parse(yaml, Path::new("/specs/spec.yaml")).expect("spec");
        TableEntry { mountpoint: PathBuf::from(mountpoint), spec, instance: Some(instance) }
    }

    #[test]
    fn the_table_joined_from_rows_is_the_table_serialized_whole() {
        let entries = [
            entry("/srv/a", "branches:\n  - path: /var/lib/c1/upper\n    mode: rw\n  - path: /images/debian\n    mode: ro\n", 0),
            entry("/srv/with space/\u{e9}t\u{e9}:\n", "branches:\n  - path: rel/upper\n    mode: rw\ncache:\n  mode: writeback\n  size: 64MiB\n", 7),
            entry("/srv/c", "branches:\n  - path: /x\n    mode: rw\nunion:\n  redirect_dir: off\nquota:\n  bytes: 1GiB\n  inodes: 1000\n", 4095),
        ];
        for n in 0..=entries.len() {
            let whole = serde_yaml_ng::to_string(&ServiceSpec { instances: entries[..n].to_vec() }).expect("whole");
            let rows: Vec<String> = entries[..n].iter().map(|e| table_row(e).expect("row")).collect();
            let joined = table_text(&rows.iter().map(String::as_str).collect::<Vec<_>>());
            assert_eq!(joined, whole, "{n} entries");
            let back: ServiceSpec = serde_yaml_ng::from_str(&joined).expect("parse");
            assert_eq!(back.instances, entries[..n]);
        }
    }
}
