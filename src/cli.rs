//! The command-line surface: clap definitions only, no logic.
//!
//! Completions (`completions/`) and man pages (`man/`) are generated from these definitions;
//! `tests/cli.rs` fails when the checked-in files are stale (`POLYTROPON_BLESS=1` rewrites them).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// A number of clones for `bench --workload startup`: 1 to 4096.
fn clones(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=4096).contains(&n) => Ok(n),
        _ => Err("a number of clones from 1 to 4096".into()),
    }
}

/// A pool's or container's name as given on the command line, checked before it names any
/// path under the state directory (`--pool ../other` would reach another pool's files).
fn checked_name(name: &str) -> Result<String, String> {
    crate::pool::spec::check_name(name).map(|()| name.to_string()).map_err(|e| e.to_string())
}

/// Per-tenant user-level storage I/O stacks for multitenant Linux hosts.
///
/// Each tenant gets a pool (exclusive cores, memory, pids and I/O bandwidth, and a private IPC
/// namespace) and one filesystem service inside it. The service serves a union of
/// copy-on-write branches over a backend client (a local directory or CephFS) to the pool's
/// containers, over shared memory (the user-level path) and over FUSE (the legacy path).
///
/// A typical session: `pool create`, `service run`, `mount`, `exec`, `inspect`, `pool destroy`.
#[derive(Debug, Parser)]
#[command(name = "polytropon", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// Directory holding pool state: specs, service pids, filesystem tables, mounts.
    #[arg(long, global = true, env = "POLYTROPON_STATE_DIR", hide_env_values = true, default_value = "/run/polytropon")]
    pub state_dir: PathBuf,

    /// Directory holding data that outlives a boot: imported images (unpacked layers) and
    /// clone containers' writable branches.
    #[arg(long, global = true, env = "POLYTROPON_DATA_DIR", hide_env_values = true, default_value = "/var/lib/polytropon")]
    pub data_dir: PathBuf,

    /// Log verbosity (error, warn, info, debug, trace) or a tracing filter directive.
    #[arg(long, global = true, env = "POLYTROPON_LOG", hide_env_values = true, default_value = "warn")]
    pub log: String,

    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

/// Format of log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Format of listings and reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A table for people.
    #[default]
    Human,
    /// One JSON document, for scripts.
    Json,
}

/// Format of `inspect`: a listing's formats, and metrics for a scraper.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum InspectFormat {
    /// A table for people.
    #[default]
    Human,
    /// One JSON document, for scripts.
    Json,
    /// Every figure as metrics in the OpenMetrics text format (what `service run
    /// --metrics-listen` serves over HTTP).
    Openmetrics,
    /// The same metrics in the Prometheus text format 0.0.4 (for node_exporter's textfile
    /// collector, which reads only that).
    Prometheus,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum Command {
    /// Create, list and destroy pools (a tenant's slice of the host).
    #[command(subcommand)]
    Pool(PoolCommand),

    /// Run or stop a pool's filesystem service.
    #[command(subcommand)]
    Service(ServiceCommand),

    /// Serve a filesystem instance at MOUNTPOINT through FUSE (the legacy path).
    ///
    /// The instance comes from a YAML spec (`-f`) or from the quick form: `--lower` branches
    /// (read-only, topmost first) under one writable `--upper`, on the local backend.
    /// Runs in the foreground until unmounted or interrupted (SIGINT/SIGTERM unmount it), or
    /// in the background with `--detach`. With `--pool`, the instance is added to that pool's
    /// running service instead.
    ///
    /// Example: polytropon mount /mnt/c1 --lower /images/debian --upper /var/c1 --detach
    Mount(MountArgs),

    /// Unmount a filesystem instance mounted with `mount`.
    Umount(UmountArgs),

    /// Run a command in a pool: a container, or with `--preload-only` a host process with the
    /// preload library attached to the pool's service.
    ///
    /// A container gets new mount, PID and UTS namespaces, the pool's cgroups and IPC
    /// namespace, a root that is a mount of the pool's service (`--root`) or a new clone of an
    /// image with a private writable branch (`--clone-of`), /proc, a minimal /dev, a read-only
    /// /sys, and the preload library, so its file I/O takes the user-level path. The
    /// command's exit status passes through (128+N for signal N; 127 when it is not in the
    /// container).
    ///
    /// Example: polytropon exec --pool tenant-a --clone-of demo:latest --tty -- /bin/sh
    Exec(ExecArgs),

    /// Send a signal to a running container (by default SIGTERM).
    ///
    /// Example: polytropon kill --pool tenant-a web-1 --signal KILL
    Kill(KillArgs),

    /// Remove a container that has exited (with `--force`, kill it first), and its writable
    /// branch unless it was kept.
    Rm(RmArgs),

    /// Import, list and remove images (their layers become read-only branches).
    #[command(subcommand)]
    Image(ImageCommand),

    /// Measure the user-level path against FUSE and the kernel, side by side.
    Bench(BenchArgs),

    /// Show pools, their live resource use, services, mounts and per-operation counters.
    Inspect(InspectArgs),

    /// Print a shell completion script to stdout.
    ///
    /// Example: polytropon completions bash > /etc/bash_completion.d/polytropon
    Completions(CompletionsArgs),

    /// Print the man page (or write every page to a directory with `--out`).
    Man(ManArgs),

    /// Create the links by which the binary serves mount(8) and umount(8):
    /// `mount.polytropon`, `mount.fuse.polytropon` and `umount.fuse.polytropon`.
    ///
    /// Then `mount -t polytropon none /mnt -o lowerdir=/a:/b,upperdir=/u,workdir=/w` (and a
    /// line `none /mnt polytropon lowerdir=/a,upperdir=/u,pool=tenant 0 0` in /etc/fstab)
    /// mounts an instance, and `umount /mnt` takes it down. Options: overlayfs's `lowerdir=`
    /// (topmost first, colon-separated), `upperdir=`, `workdir=` (accepted, not needed), and
    /// `pool=NAME`, `cache=MODE`, `cache_size=SIZE`, `backend=local|cephfs`, `ceph_conf=FILE`,
    /// `ceph_id=ID`, `ceph_fs=NAME`, `timeout=SECS`, `nopassthrough`, `userpassthrough`, `nobusypassthrough`, `spec=INSTANCE.YAML`,
    /// `nosuid`, `nodev`, `noexec`; helper flags `-s` (sloppy), `-f` (fake), `-n`, `-v`.
    /// Without `pool=`, a daemon of its own serves the mount.
    ///
    /// Example: polytropon install-links /sbin
    InstallLinks(InstallLinksArgs),
}

#[derive(Debug, Args)]
pub struct InstallLinksArgs {
    /// Where to create the links (mount(8) looks in /sbin); by default /sbin, or
    /// /usr/local/sbin where there is no /sbin.
    pub dir: Option<PathBuf>,
    /// Replace files of those names that are not links to this binary.
    #[arg(long)]
    pub force: bool,
    /// Remove the links (only those that point to this binary) instead.
    #[arg(long, conflicts_with = "force")]
    pub remove: bool,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum PoolCommand {
    /// Create pool NAME with a resource slice, from flags or a pool.yaml.
    ///
    /// Example: polytropon pool create tenant-a --cpus 1 --memory 2G --pids-max 512
    Create(PoolCreateArgs),
    /// List pools.
    List(PoolListArgs),
    /// Destroy pool NAME: stop its service and containers, unmount, remove its cgroups and
    /// namespace files.
    Destroy(PoolDestroyArgs),
}

#[derive(Debug, Args)]
pub struct PoolCreateArgs {
    /// Pool name (letters, digits, `-`, `_`).
    pub name: String,
    /// Pool spec in YAML; flags given as well override its fields.
    #[arg(short = 'f', long = "file", value_name = "POOL.YAML")]
    pub file: Option<PathBuf>,
    /// CPUs reserved for the pool, exclusively (e.g. `2-3,6`).
    #[arg(long, value_name = "LIST")]
    pub cpus: Option<String>,
    /// Memory nodes (e.g. `0`).
    #[arg(long, value_name = "LIST")]
    pub mems: Option<String>,
    /// Hard memory limit (e.g. `2G`, `512M`).
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Memory throttling threshold (cgroup v2 `memory.high`).
    #[arg(long, value_name = "SIZE")]
    pub memory_high: Option<String>,
    /// Maximum number of processes and threads.
    #[arg(long, value_name = "N")]
    pub pids_max: Option<u64>,
    /// Relative CPU weight (1-10000).
    #[arg(long, value_name = "N")]
    pub cpu_weight: Option<u64>,
    /// I/O limits for one block device: `MAJ:MIN:rbps=..,wbps=..,riops=..,wiops=..`
    /// (or a device path instead of MAJ:MIN). Repeat for several devices.
    #[arg(long, value_name = "DEV:LIMITS")]
    pub io_max: Vec<String>,
    /// Relative I/O weight (1-10000).
    #[arg(long, value_name = "N")]
    pub io_weight: Option<u64>,
    /// Parent cgroup of the pool's cgroups (default: the cgroup this command runs in).
    #[arg(long, value_name = "PATH")]
    pub cgroup_parent: Option<String>,
    /// Host uids and gids the pool's containers are mapped onto, `FIRST:COUNT` (or FIRST,
    /// 65536 ids); must not overlap another pool's (default: a free range from 2^30).
    #[arg(long, value_name = "FIRST:COUNT")]
    pub uid_range: Option<String>,
    /// Storage quota: bytes the pool's writable branches (its containers' and mounts'
    /// copy-on-write layers) may hold in all (e.g. `20G`); past it, ENOSPC.
    #[arg(long, value_name = "SIZE")]
    pub storage: Option<String>,
    /// Inode quota over the pool's writable branches; past it, ENOSPC.
    #[arg(long, value_name = "N")]
    pub inodes: Option<u64>,
    /// Memory bandwidth cap, a percentage (1-100) of each memory domain's, through resctrl
    /// (Intel RDT MBA); refused, naming what is missing, where the host has none.
    #[arg(long, value_name = "PERCENT")]
    pub mem_bw: Option<u32>,
    /// A network of the pool's own for its containers (`exec --net pool`: one namespace
    /// wired to the host by a veth pair, 10.213.0.0/16), shaped to RATE both ways (e.g.
    /// `20mbit`, `1gbit`).
    #[arg(long, value_name = "RATE")]
    pub net_rate: Option<String>,
}

#[derive(Debug, Args)]
pub struct PoolListArgs {
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct PoolDestroyArgs {
    pub name: String,
    /// Destroy even while containers run or mounts are busy.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Run the filesystem service of a pool, inside the pool's cgroups and namespaces.
    Run(ServiceRunArgs),
    /// Flush, unmount and stop the service of a pool.
    Stop(ServiceStopArgs),
}

#[derive(Debug, Args)]
pub struct ServiceRunArgs {
    /// The pool whose service this is.
    #[arg(value_parser = checked_name, long)]
    pub pool: String,
    /// Service spec in YAML: the filesystem instances to serve at start.
    #[arg(short = 'f', long = "file", value_name = "SERVICE.YAML")]
    pub file: Option<PathBuf>,
    /// Return once the service is up, leaving it running in the background.
    #[arg(long)]
    pub detach: bool,
    /// Supervise the service: when it dies (killed, crashed), start it again, serving the
    /// mounts it served (gives up after 5 deaths within a minute).
    #[arg(long)]
    pub restart: bool,
    /// Serve the pool's metrics (what `inspect --format openmetrics` prints for it) over HTTP
    /// at `http://ADDR/metrics`, for Prometheus to scrape; ADDR is an IP address and port
    /// (e.g. `127.0.0.1:9464`). Loopback addresses only, unless `--metrics-allow-remote` is
    /// given too.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Let `--metrics-listen` take an address other than loopback. The endpoint has no
    /// authentication: anyone who reaches it reads the pool's figures, mountpoints and
    /// container names.
    #[arg(long, requires = "metrics_listen")]
    pub metrics_allow_remote: bool,
}

#[derive(Debug, Args)]
pub struct ServiceStopArgs {
    #[arg(value_parser = checked_name, long)]
    pub pool: String,
}

/// How to reach a CephFS.
#[derive(Debug, Args)]
pub struct CephArgs {
    /// The CephFS's ceph.conf (for `mount`: with `--backend cephfs`).
    #[arg(long, value_name = "FILE")]
    pub ceph_conf: Option<PathBuf>,
    /// The CephFS client id (`admin` for client.admin).
    #[arg(long, value_name = "ID", default_value = "admin")]
    pub ceph_id: String,
    /// The CephFS file system (default: the cluster's default).
    #[arg(long, value_name = "NAME")]
    pub ceph_fs: Option<String>,
}

/// Backend of a quick-form mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    Local,
    Cephfs,
}

/// Cache configuration of a mount: the spec's own type (one name for one concept).
pub use crate::spec::CacheMode;

#[derive(Debug, Args)]
pub struct MountArgs {
    /// Where to mount.
    pub mountpoint: PathBuf,
    /// Filesystem instance spec in YAML.
    #[arg(short = 'f', long = "file", value_name = "INSTANCE.YAML", conflicts_with_all = ["lower", "upper"])]
    pub file: Option<PathBuf>,
    /// A read-only lower branch directory; repeat, topmost first.
    #[arg(long, value_name = "DIR")]
    pub lower: Vec<PathBuf>,
    /// The writable upper branch directory.
    #[arg(long, value_name = "DIR")]
    pub upper: Option<PathBuf>,
    /// Add the instance to this pool's running service.
    #[arg(value_parser = checked_name, long)]
    pub pool: Option<String>,
    /// Backend of the quick form: `local` directories, or `cephfs` (branch paths inside the
    /// CephFS of `--ceph-conf`).
    #[arg(long, value_enum, default_value_t = BackendKind::Local)]
    pub backend: BackendKind,
    #[command(flatten)]
    pub ceph: CephArgs,
    /// Run in the background; the daemon's pid is recorded under the state directory.
    #[arg(long)]
    pub detach: bool,
    /// Cache mode (overrides the spec): `kernel` page cache, `direct` I/O, or `writethrough`
    /// (the pool's own cache in the service's memory).
    #[arg(long, visible_alias = "cache-mode", value_enum)]
    pub cache: Option<CacheMode>,
    /// Size of the service's cache in `writethrough` mode (`256M`, `1G`, ...).
    #[arg(long, value_name = "SIZE")]
    pub cache_size: Option<String>,
    /// In kernel cache mode, use the writeback cache instead of FUSE passthrough.
    #[arg(long)]
    pub no_passthrough: bool,
    /// In kernel cache mode, hand the preload library the backing file's descriptor of the
    /// writable branch's files it opens, so that their data calls are the kernel's.
    #[arg(long)]
    pub user_passthrough: bool,
    /// Never hand the preload library the backing file's descriptor of a file it keeps
    /// writing (by default a file of the writable branch opened for writing gets it at its
    /// descriptor's fourth data call, in kernel cache mode with no storage quota).
    #[arg(long)]
    pub no_busy_passthrough: bool,
    /// In `writeback` cache mode, declare the writable branch this mount's alone (nothing
    /// reads or writes it but through this service): a closed file's data then waits in the
    /// pool's cache for `dirty_expire` instead of being written back at its last close, and a
    /// file removed before then never reaches the disk (the spec's `close_to_open: false`).
    #[arg(long)]
    pub no_close_to_open: bool,
    /// Let the preload library answer nothing from what it learned of files (every read,
    /// reopen and stat is a round trip to the service).
    #[arg(long)]
    pub no_learn: bool,
    /// Attribute and entry timeout in seconds (overrides the spec).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// A storage quota for this mount's writable branch, `BYTES[,INODES]` (e.g. `2G` or
    /// `2G,100000`); past it, EDQUOT (the pool's own `--storage` still applies).
    #[arg(long, value_name = "BYTES[,INODES]")]
    pub quota: Option<String>,
    /// How FUSE requests travel (overrides the spec's `fuse: {transport}`): `io_uring` where the
    /// host allows it (`auto`), always (`uring`: the mount fails when the host does not), or
    /// `/dev/fuse` reads and writes (`classic`).
    #[arg(long, value_enum, value_name = "TRANSPORT")]
    pub fuse_transport: Option<crate::spec::FuseTransport>,
}

#[derive(Debug, Args)]
pub struct UmountArgs {
    pub mountpoint: PathBuf,
    /// Remove the instance from this pool's service.
    #[arg(value_parser = checked_name, long)]
    pub pool: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Pool to run in.
    #[arg(value_parser = checked_name, long)]
    pub pool: String,
    /// Run a host process inside the pool (its cgroups, IPC namespace and cpus; no other
    /// namespaces) with the preload library attached and the user-level path configured
    /// (POLYTROPON_SHMID, POLYTROPON_MOUNTS).
    #[arg(long, conflicts_with_all = ["root", "clone_of", "in_container", "name", "hostname", "user", "tty", "detach", "net", "keep", "unmanaged_root"])]
    pub preload_only: bool,
    /// Root filesystem: a mountpoint of one of the pool's instances (`mount --pool`).
    #[arg(long, value_name = "MOUNTPOINT", conflicts_with = "clone_of")]
    pub root: Option<PathBuf>,
    /// `--root` is a mount that is not the pool's (kernel overlayfs, fuse-overlayfs): the
    /// container runs on it without the user-level path. For `bench --workload startup`.
    #[arg(long, requires = "root", hide = true)]
    pub unmanaged_root: bool,
    /// Root filesystem: a new clone of IMAGE (`image import`): a private writable branch
    /// over the image's shared read-only layers, removed with the container unless `--keep`.
    /// The image's Env, Entrypoint/Cmd, WorkingDir and User apply.
    #[arg(long, value_name = "IMAGE")]
    pub clone_of: Option<String>,
    /// Run the command inside the running container NAME of the pool instead (its
    /// namespaces, root, cgroups, environment and user), as `docker exec` does; with
    /// `--tty`, an interactive shell in it.
    #[arg(value_parser = checked_name, long = "in", value_name = "NAME", conflicts_with_all = ["root", "clone_of", "name", "hostname", "detach", "net", "keep"])]
    pub in_container: Option<String>,
    /// Replace the image's Entrypoint (an empty string clears it). As with Docker, the
    /// command after `--` replaces the image's Cmd and follows its Entrypoint.
    #[arg(long, value_name = "CMD", requires = "clone_of")]
    pub entrypoint: Option<String>,
    /// Keep a clone's writable branch after the container ends.
    #[arg(long, requires = "clone_of")]
    pub keep: bool,
    /// Container name, unique in the pool (default: generated).
    #[arg(value_parser = checked_name, long)]
    pub name: Option<String>,
    /// Hostname inside the container (default: its name).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Environment variable for the command; repeat.
    #[arg(long, value_name = "K=V")]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// User (and group) to run as, numbers or names from the image's /etc/passwd.
    #[arg(long, value_name = "UID[:GID]")]
    pub user: Option<String>,
    /// Network: the host's, `none` (a namespace with loopback only) or `pool` (the pool's
    /// shaped network; the default, and the only way out, in a pool made with `--net-rate`).
    #[arg(long, value_enum)]
    pub net: Option<crate::container::Net>,
    /// Give the command a pseudo-terminal (an interactive shell: `--tty -- /bin/sh`).
    #[arg(long)]
    pub tty: bool,
    /// Add a capability to runc's default list the command keeps (a name from
    /// capabilities(7), with or without CAP_, or ALL); repeat.
    #[arg(long, value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a capability from the list (ALL drops every one; `--cap-add` wins over it); repeat.
    #[arg(long, value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// The seccomp filter: `default` (Docker-like: mounts, kexec, modules, bpf, perf, the
    /// keyring, reboot, swap, clocks, namespaces... fail with EPERM) or `unconfined`.
    #[arg(long, value_enum, default_value = "default")]
    pub seccomp: SeccompMode,
    /// User namespace: `pool` (its own, mapped onto the pool's host id range; the default
    /// for --clone-of) or `host` (container root is host root; the default for --root).
    #[arg(long, value_enum)]
    pub userns: Option<crate::container::Userns>,
    /// Let the command gain privileges at exec (set-id binaries, file capabilities): turns
    /// `no_new_privs` off.
    #[arg(long)]
    pub allow_new_privs: bool,
    /// Return at once, printing the container's name; it shows in `inspect`, its output goes
    /// to a log under the state directory, and `kill` stops it.
    #[arg(long, conflicts_with = "tty")]
    pub detach: bool,
    /// The command and its arguments (for a clone, default: the image's Entrypoint and Cmd).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `exec --seccomp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SeccompMode {
    Default,
    Unconfined,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    #[arg(value_parser = checked_name, long)]
    pub pool: String,
    /// The container.
    #[arg(value_parser = checked_name)]
    pub name: String,
    /// Signal name or number (TERM, SIGKILL, 9...).
    #[arg(long, short = 's', default_value = "TERM")]
    pub signal: String,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    #[arg(value_parser = checked_name, long)]
    pub pool: String,
    /// The container.
    #[arg(value_parser = checked_name)]
    pub name: String,
    /// Kill it first if it runs.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import an image from an OCI image layout directory, or an OCI or `docker save` tar
    /// archive (optionally gzip-compressed). Each layer is unpacked once into the store.
    ///
    /// Example: polytropon image import ./debian.tar --name debian:12
    Import(ImageImportArgs),
    /// List imported images.
    List(ImageListArgs),
    /// Remove an image, and its layers no other image uses.
    Remove(ImageRemoveArgs),
}

#[derive(Debug, Args)]
pub struct ImageImportArgs {
    /// The layout directory or archive.
    pub path: PathBuf,
    /// Name to give the image (default: the name it carries).
    #[arg(long)]
    pub name: Option<String>,
    /// With `--ceph-conf`, the layers go to that CephFS instead of the data directory: once
    /// for every host and pool that imports the image there.
    #[command(flatten)]
    pub ceph: CephArgs,
    /// With `--ceph-conf`: the directory of the image store inside the CephFS.
    #[arg(long, value_name = "PATH", default_value = "/polytropon/images")]
    pub ceph_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ImageListArgs {
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct ImageRemoveArgs {
    pub name: String,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Workload to run; repeat for several (default: all): `micro` (stat, open+close,
    /// create+unlink, 4 KiB pread, 1 MiB sequential write and read), `metadata` (stat,
    /// open+close, create+unlink, readdir), `seqwrite`, `seqread`, `fileappend` and `fileread`
    /// (`--containers` clones at once append to their copy of / read a large lower file),
    /// `fileserver` and `webserver` (Filebench's mixes), `scaling` (the fileserver mix in each of
    /// `--containers` clones at once, one point per number), `rocksdb` (db_bench, when installed),
    /// `startup` (N clones of `--image` to their first HTTP answer; with `--ceph-conf`, also of
    /// the host's busybox image stored in CephFS: `cephfs-user` against `unionfs-ceph-fuse`) and `isolation` (`--victim`
    /// in pool A alone, then beside a noisy neighbour in pool B).
    #[arg(long, value_name = "NAME")]
    pub workload: Vec<String>,
    /// Run every workload.
    #[arg(long, conflicts_with = "workload")]
    pub all: bool,
    /// Paths to compare, comma-separated (default: every available one): `user` (the
    /// user-level path: the workload under the preload library), `user-passthrough` (the
    /// same with `--user-passthrough`: the library gets the backing file's descriptor of
    /// every file of the writable branch it opens), `user-cache` (the same
    /// with the pool's own write-back cache, `--cache writeback`), `fuse` (ours, kernel cache
    /// with passthrough), `fuse-writeback` (ours, kernel cache with the writeback
    /// cache instead of passthrough), `fuse-direct` (ours, direct I/O), `fuse-overlayfs`,
    /// `unionfs-fuse`, `overlay` (kernel overlayfs), `kernel` (a plain directory); with
    /// `--ceph-conf`: `cephfs-user`, `cephfs-fuse`, `ceph-fuse`, `unionfs-ceph-fuse`.
    #[arg(long, value_delimiter = ',', value_name = "PATH,...")]
    pub paths: Vec<String>,
    /// Operations of `micro` and `metadata` to run, comma-separated (default: all): `stat`,
    /// `open+close`, `create+unlink`, `readdir`, `pread 4KiB`, `pwrite 4KiB`, `seq write 1MiB`, `seq read 1MiB`.
    #[arg(long, value_delimiter = ',', value_name = "OP,...")]
    pub operations: Vec<String>,
    /// Interleaved repetitions per path; medians are over these.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub reps: u32,
    /// Operations per repetition of `micro` and `metadata` (`rocksdb`: twice as many keys).
    #[arg(long, default_value_t = 2000, value_name = "N")]
    pub ops: u32,
    /// Loops per thread of `fileserver` and `webserver`.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub loops: u32,
    /// Seconds each repetition's measured loop runs at least, past `--ops`, `--loops` and the
    /// stream sizes, so that it measures the path's steady state (a warm-up is timed apart as
    /// `first op`); 0: the counts alone.
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    pub min_time: f64,
    /// Size of the large file and of the sequential streams, in MiB.
    #[arg(long, default_value_t = 64, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub file_mib: u64,
    /// Threads per container of every file workload, each doing the workload's work at once
    /// on files of its own (default: 4 for `fileserver` and `webserver`, 1 for the others).
    #[arg(long, value_name = "N")]
    pub threads: Option<u32>,
    /// Files in the `fileserver` and `webserver` sets.
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub files: u32,
    /// Mean size of a `fileserver` file in KiB (`webserver` files: a quarter).
    #[arg(long, default_value_t = 64, value_name = "KIB")]
    pub file_kib: u32,
    /// Cloned containers running at once: of `fileappend` and `fileread` (the largest number
    /// given; default 4), and of each point of `scaling` (comma-separated; default
    /// 1,2,4,8,16).
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    pub containers: Option<Vec<u32>>,
    /// MiB each `fileappend` container appends.
    #[arg(long, default_value_t = 4, value_name = "MIB")]
    pub append_mib: u32,
    /// `isolation`: the workload of pool A.
    #[arg(long, default_value = "fileserver", value_name = "NAME")]
    pub victim: String,
    /// `isolation`: pool A's cpus (default: the first half of the cpus bench may use).
    #[arg(long, value_name = "LIST", requires = "pool_b_cpus")]
    pub pool_a_cpus: Option<String>,
    /// `isolation`: pool B's (the neighbour's) cpus (default: the second half).
    #[arg(long, value_name = "LIST", requires = "pool_a_cpus")]
    pub pool_b_cpus: Option<String>,
    /// `isolation`: size of each of the neighbour's files, in MiB.
    #[arg(long, default_value_t = 128, value_name = "MIB")]
    pub noise_mib: u64,
    /// `isolation`: also run the workload beside the neighbour in a pool B with this storage
    /// bandwidth limit (as `pool create --io-max`, e.g. `/dev/vda:wbps=20M`; repeatable), and
    /// report its drop apart ("sliced neighbour").
    #[arg(long, value_name = "DEV:LIMITS")]
    pub neighbour_io_max: Vec<String>,
    /// `isolation`: as `--neighbour-io-max`, with this storage weight for the neighbour's pool
    /// (as `pool create --io-weight`; needs BFQ on cgroup v1).
    #[arg(long, value_name = "N")]
    pub neighbour_io_weight: Option<u64>,
    /// `isolation`: how long the neighbour runs before the workload starts, in ms.
    #[arg(long, default_value_t = 300, value_name = "MS")]
    pub warmup_ms: u64,
    /// Directory for the branches and mounts (default: the temp dir).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Run everything (workloads, back driver, FUSE threads) on these cpus only (e.g. `0`:
    /// a one-cpu pool, where client and service share the cpu).
    #[arg(long, value_name = "LIST")]
    pub cpus: Option<String>,
    /// A CephFS (its ceph.conf; client.admin) for the paths `cephfs-user`, `cephfs-fuse`,
    /// `ceph-fuse` and `unionfs-ceph-fuse`; their data goes under /polytropon-bench-PID.
    #[arg(long, value_name = "FILE")]
    pub ceph_conf: Option<PathBuf>,
    /// `startup`: the imported image whose clones start (it must hold the server; default:
    /// one made for the run of the host's static busybox).
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// `startup`: the server each clone runs; `{port}` becomes its port on the host network.
    #[arg(long, value_name = "CMD", default_value = "busybox httpd -f -p {port}")]
    pub serve: String,
    /// `startup`: numbers of clones to start at once, comma-separated (the papers went to 64).
    #[arg(long, value_delimiter = ',', value_name = "N,...", default_value = "1,4,16", value_parser = clones)]
    pub clones: Vec<usize>,
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
    /// Also write the report as JSON into this file.
    #[arg(long, value_name = "FILE.JSON")]
    pub json: Option<PathBuf>,
    /// Draw the comparison into an SVG file.
    #[arg(long, value_name = "FILE.SVG")]
    pub plot: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Only this pool.
    #[arg(value_parser = checked_name, long)]
    pub pool: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: InspectFormat,
    /// Refresh every SECS seconds until interrupted.
    #[arg(long, value_name = "SECS")]
    pub watch: Option<u64>,
}

/// Shells with completion scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write one page per command into this directory instead of printing the main page.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}
