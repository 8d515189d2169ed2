//! `exec` for containers: from a request (pool, root or image, flags) to a running container
//! and back: the root (an existing mount of the pool's service, or a clone: a new instance
//! with a private upper branch over the image's layers), the command, environment, user and
//! directory resolved against the image, the record `inspect` shows, and the clean-up.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::warn;

use super::state::{remove_tree, ContainerRecord, Containers, Phase};
use super::{rootfs, ContainerError, Net, Spec, DEFAULT_PATH};
use crate::image::{ImageConfig, ImageError, Store};
use crate::pool::state::now;
use crate::pool::{PoolState, Pools};
use crate::service::control::{self, ControlError, Request as Control};
use crate::spec::{BackendSpec, BranchMode, BranchSpec, CacheSpec, InstanceSpec};

/// Environment a detached container's monitor gets from the `exec` that started it.
pub const RESERVED_ENV: &str = "POLYTROPON_CONTAINER_NAME";
pub const LOG_ENV: &str = "POLYTROPON_CONTAINER_LOG";

/// The container's root.
#[derive(Clone, Debug)]
pub enum Root {
    /// A mountpoint of the pool's service (`exec --root`).
    Mount(PathBuf),
    /// Another filesystem's mountpoint: no user-level path (`bench` compares roots so).
    Unmanaged(PathBuf),
    /// A new clone of an image (`exec --clone-of`); `keep` keeps its upper branch.
    Clone { image: String, keep: bool },
}

/// What `exec` was asked for.
#[derive(Clone, Debug)]
pub struct Request {
    pub pool: String,
    pub root: Root,
    pub name: Option<String>,
    pub hostname: Option<String>,
    pub env: Vec<String>,
    pub workdir: Option<PathBuf>,
    pub user: Option<String>,
    /// `None`: the pool's network if it has one, else the host's.
    pub net: Option<Net>,
    pub tty: bool,
    pub command: Vec<String>,
    /// Replaces the image's Entrypoint (split on whitespace; empty clears it).
    pub entrypoint: Option<String>,
    /// Capabilities, `no_new_privs` and seccomp of the command.
    pub confine: super::Confinement,
    /// `None`: the pool's for a clone, the host's for `--root`.
    pub userns: Option<super::Userns>,
}

/// What can go wrong running a container with `exec`; each names the step.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The container could not start; `code` is the status `exec` exits with (127: the
    /// command is not in the image). `exec` prints `msg` alone.
    #[error("{msg}")]
    Failed { msg: String, code: i32 },
    #[error("container name")]
    Name(#[source] crate::pool::spec::SpecError),
    /// The pool's or its containers' records cannot be read.
    #[error(transparent)]
    State(std::io::Error),
    #[error("no pool named {0}")]
    NoPool(String),
    #[error("pool {pool} already has a container named {name}")]
    NameTaken { pool: String, name: String },
    #[error("cannot record the container")]
    Record(#[source] std::io::Error),
    #[error("pool {pool} has no container named {name}")]
    NoContainer { pool: String, name: String },
    #[error("container {name} is not running ({state})")]
    NotRunning { name: String, state: String },
    #[error("no command given (after `--`)")]
    NoCommand,
    #[error("no command given, and the image has neither Entrypoint nor Cmd")]
    NoImageCommand,
    #[error("cannot enter container {name}")]
    Enter {
        name: String,
        #[source]
        source: ContainerError,
    },
    #[error("the service of pool {0} is not running (start it with `polytropon service run --pool {0}`)")]
    ServiceDown(String),
    #[error("cannot start container {name} in pool {pool}")]
    Start {
        name: String,
        pool: String,
        #[source]
        source: ContainerError,
    },
    #[error("root {}", .path.display())]
    Root {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("{} exists already (kept from an earlier container {name}?); remove it or choose another --name", .upper.display())]
    UpperExists { upper: PathBuf, name: String },
    #[error("cannot create {}", .path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot mount the clone's root at {}", .path.display())]
    MountClone {
        path: PathBuf,
        #[source]
        source: ControlError,
    },
    /// The service's answer named no instance for `what` ("the clone", "the root").
    #[error("the service did not say which instance serves {what}")]
    NoInstance { what: &'static str },
    #[error("{} is not a mount of pool {pool}'s service (mount it with `polytropon mount --pool {pool} ...`)", .root.display())]
    NotAMount { root: PathBuf, pool: String },
    #[error("pool {pool} shapes its network ({rate} bit/s): its containers use --net pool (the default) or --net none, not the host's")]
    ShapedNetwork { pool: String, rate: u64 },
    #[error("pool {0} has no network of its own: --net pool needs a pool made with --net-rate RATE")]
    NoPoolNetwork(String),
    #[error("--workdir {}: must be an absolute path inside the container", .0.display())]
    RelativeWorkdir(PathBuf),
    #[error("environment entry {0:?}: expected K=V")]
    BadEnv(String),
    #[error("--user {spec}: no user {user} in the image's /etc/passwd")]
    NoUser { spec: String, user: String },
    #[error("bad uid for {user} in /etc/passwd")]
    BadUid {
        user: String,
        #[source]
        source: std::num::ParseIntError,
    },
    #[error("--user {spec}: no group {group} in the image's /etc/group")]
    NoGroup { spec: String, group: String },
    #[error("the image's /{path}: {why}")]
    AccountsFile { path: &'static str, why: String },
    #[error("pool {0} has no id range for a user namespace (it was made before pools had one): use --userns host, or recreate the pool")]
    NoIdRange(String),
    /// The preload library is missing.
    #[error(transparent)]
    Library(std::io::Error),
}

/// A name for a container that was given none.
pub fn generated_name() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("c-{:06x}", (t ^ (std::process::id() << 8)) & 0xff_ffff)
}

/// Claims `name` in `pool` (the pool must exist).
pub fn reserve(pools: &Pools, pool: &str, name: &str) -> Result<PathBuf, LaunchError> {
    crate::pool::spec::check_name(name).map_err(LaunchError::Name)?;
    pools.get(pool).map_err(LaunchError::State)?.ok_or_else(|| LaunchError::NoPool(pool.to_string()))?;
    Containers::new(pools, pool).reserve(name).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => LaunchError::NameTaken { pool: pool.to_string(), name: name.to_string() },
        _ => LaunchError::Record(e),
    })
}

/// What was set up for the container and is undone when it ends (or fails to start).
struct Setup {
    containers: Containers,
    name: String,
    socket: PathBuf,
    /// A clone's mountpoint, while mounted.
    mounted: Option<PathBuf>,
    upper: Option<PathBuf>,
    keep: bool,
    /// Keep the record (a detached container's, for `inspect`).
    keep_record: bool,
    /// The pool's cgroups, once the container has a cgroup of its own under them.
    cgroups: Option<crate::pool::cgroups::CgroupInfo>,
}

impl Setup {
    fn undo(&mut self) {
        if let Some(cg) = self.cgroups.take() {
            if let Err(e) = cg.remove_container(&self.name) {
                warn!("cannot remove container {}'s cgroup: {e}", self.name);
            }
        }
        if let Some(mp) = self.mounted.take() {
            if let Err(e) = control::call(&self.socket, &Control::Umount { mountpoint: mp.clone() }, Duration::from_secs(30)) {
                // The service may be gone (pool destroy); its mounts went with it.
                warn!("cannot unmount the clone root {}: {e}", mp.display());
            }
            let _ = std::fs::remove_dir(&mp);
        }
        if let Some(u) = self.upper.take() {
            if !self.keep {
                if let Err(e) = remove_branch(&u) {
                    warn!("cannot remove the upper branch {}: {e}", u.display());
                }
            }
        }
        if !self.keep_record {
            let _ = self.containers.remove(&self.name);
        }
    }
}

/// Removes a clone's branch directory (`DATA/containers/POOL/NAME/upper`): its NAME
/// directory, and the POOL directory once it is empty.
pub fn remove_branch(upper: &Path) -> std::io::Result<()> {
    let Some(dir) = upper.parent() else { return Ok(()) };
    remove_tree(dir)?;
    if let Some(pool_dir) = dir.parent() {
        let _ = std::fs::remove_dir(pool_dir);
    }
    Ok(())
}

/// Runs `req.command` inside running container `name` of the pool (`exec --in`): its
/// namespaces, root, cgroups, environment and user unless the request says otherwise; the
/// command's exit status.
pub fn run_in(state_dir: &Path, name: &str, req: &Request) -> Result<i32, LaunchError> {
    let pools = Pools::new(state_dir);
    let pool = pools.get(&req.pool).map_err(LaunchError::State)?.ok_or_else(|| LaunchError::NoPool(req.pool.clone()))?;
    let rec = Containers::new(&pools, &req.pool)
        .get(name)
        .map_err(LaunchError::State)?
        .ok_or_else(|| LaunchError::NoContainer { pool: req.pool.clone(), name: name.to_string() })?;
    if rec.state() != "running" || !rec.init_current() {
        return Err(LaunchError::NotRunning { name: name.to_string(), state: rec.state().to_string() });
    }
    if req.command.is_empty() {
        return Err(LaunchError::NoCommand);
    }
    let mut env = Environment(rec.env.clone());
    if req.tty {
        env.default_term();
    }
    env.apply(&req.env)?;
    let root = PathBuf::from(format!("/proc/{}/root", rec.pid));
    let user = match &req.user {
        Some(u) => Some(resolve_user(&root, u)?),
        None => rec.user,
    };
    let workdir = req.workdir.clone().unwrap_or_else(|| if rec.workdir.as_os_str().is_empty() { "/".into() } else { rec.workdir.clone() });
    let spec = Spec {
        root,
        hostname: String::new(),
        env: env.0,
        workdir,
        user,
        net: req.net.unwrap_or_default(),
        tty: req.tty,
        argv: req.command.clone(),
        library: None,
        channel: None,
        ipc_ns: None,
        net_ns: None,
        cpus: pool.slice.cpus.as_ref().map(|c| c.iter().copied().collect()),
        log: None,
        stage: None,
        confine: req.confine.clone(),
        // Joining: the container's own, whatever it is.
        userns: None,
    };
    let cgroups = pool.cgroups.clone();
    match super::enter((rec.pid, rec.init_start), &spec, |pid| cgroups.add_container_process(pid, name).map_err(std::io::Error::other)) {
        Ok(running) => Ok(running.wait()),
        Err(ContainerError::Start { msg, code }) => Err(LaunchError::Failed { msg, code }),
        Err(source) => Err(LaunchError::Enter { name: name.to_string(), source }),
    }
}

/// Runs the container `req` asks for in the foreground (or, `detached`, as the monitor of a
/// detached one, its name reserved by the `exec` that started it); its exit status.
pub fn run(state_dir: &Path, data_dir: &Path, req: Request, detached: Option<PathBuf>) -> Result<i32, LaunchError> {
    let pools = Pools::new(state_dir);
    let pool = pools.get(&req.pool).map_err(LaunchError::State)?.ok_or_else(|| LaunchError::NoPool(req.pool.clone()))?;
    let svc = pools.live_service(&req.pool).map_err(LaunchError::State)?.ok_or_else(|| LaunchError::ServiceDown(req.pool.clone()))?;
    let name = match (&req.name, std::env::var(RESERVED_ENV).ok()) {
        (Some(n), _) => n.clone(),
        (None, Some(n)) => n,
        (None, None) => generated_name(),
    };
    let cdir = if detached.is_some() { Containers::new(&pools, &req.pool).dir(&name) } else { reserve(&pools, &req.pool, &name)? };
    let mut setup = Setup {
        containers: Containers::new(&pools, &req.pool),
        name: name.clone(),
        socket: svc.socket.clone(),
        mounted: None,
        upper: None,
        keep: false,
        keep_record: detached.is_some(),
        cgroups: None,
    };
    let t0 = std::time::Instant::now();
    let started = prepare(&mut setup, &pool, (state_dir, data_dir), &cdir, &req, detached.as_deref());
    tracing::debug!("container {name}: root and spec ready after {:?}", t0.elapsed());
    let (spec, image) = match started {
        Ok(s) => s,
        Err(e) => {
            setup.undo();
            return Err(e);
        }
    };
    let cgroups = pool.cgroups.clone();
    setup.cgroups = Some(pool.cgroups.clone());
    let running = match super::start(&spec, |pid| cgroups.add_container_process(pid, &name).map_err(std::io::Error::other)) {
        Ok(r) => r,
        Err(e) => {
            setup.undo();
            return Err(match e {
                ContainerError::Start { msg, code } => LaunchError::Failed { msg, code },
                source => LaunchError::Start { name, pool: req.pool.clone(), source },
            });
        }
    };
    tracing::debug!("container {name}: command started after {:?}", t0.elapsed());
    let mut record = ContainerRecord {
        name: name.clone(),
        pool: req.pool.clone(),
        phase: Phase::Running,
        pid: running.pid(),
        init_start: crate::pool::state::start_time(running.pid()),
        monitor: std::process::id(),
        exit_code: None,
        started: now(),
        finished: None,
        command: spec.argv.clone(),
        image,
        root: spec.root.clone(),
        upper: setup.upper.clone(),
        keep: setup.keep,
        log: detached,
        env: spec.env.clone(),
        workdir: spec.workdir.clone(),
        user: spec.user,
    };
    if let Err(e) = setup.containers.save(&record) {
        warn!("cannot record container {name}: {e}");
    }
    let code = running.wait();
    record.phase = Phase::Exited;
    record.exit_code = Some(code);
    record.finished = Some(now());
    if setup.keep_record {
        let _ = setup.containers.save(&record);
    }
    setup.undo();
    Ok(code)
}

/// Resolves the root (mounting a clone's), the command and its environment.
fn prepare(setup: &mut Setup, pool: &PoolState, (state_dir, data_dir): (&Path, &Path), cdir: &Path, req: &Request, log: Option<&Path>) -> Result<(Spec, Option<String>), LaunchError> {
    let mut served = None;
    let mode = req.userns.unwrap_or(if matches!(req.root, Root::Clone { .. }) { super::Userns::Pool } else { super::Userns::Host });
    let ids = match mode {
        super::Userns::Host => None,
        super::Userns::Pool => Some(pool.ids.ok_or_else(|| LaunchError::NoIdRange(req.pool.clone()))?),
    };
    let (root, config, image) = match &req.root {
        Root::Mount(p) | Root::Unmanaged(p) => {
            let root = std::fs::canonicalize(p).map_err(|source| LaunchError::Root { path: p.clone(), source })?;
            (root, ImageConfig::default(), None)
        }
        Root::Clone { image, keep } => {
            crate::pool::state::private_dir(data_dir, 0o700).map_err(create(data_dir))?;
            let store = Store::new(data_dir);
            let img = store.get(image)?;
            let upper = data_dir.join("containers").join(&req.pool).join(&setup.name).join("upper");
            if upper.exists() {
                return Err(LaunchError::UpperExists { upper, name: setup.name.clone() });
            }
            std::fs::create_dir_all(&upper).map_err(create(&upper))?;
            setup.upper = Some(upper.clone());
            if let Some(ids) = ids {
                // The clone's root directory belongs to its root.
                std::os::unix::fs::chown(&upper, Some(ids.first), Some(ids.first)).map_err(create(&upper))?;
            }
            setup.keep = *keep;
            // The clone's upper branch is on local disk; the image's layers where it keeps them.
            let on_ceph = img.ceph.is_some();
            let mut branches = vec![BranchSpec { path: upper, mode: BranchMode::Rw, local: on_ceph }];
            branches.extend(store.lowers(&img).into_iter().map(|path| BranchSpec { path, mode: BranchMode::Ro, local: false }));
            let backend = match &img.ceph {
                Some(c) => BackendSpec::Cephfs(crate::spec::CephSpec { conf: c.conf.clone(), id: c.id.clone(), fs: c.fs.clone(), ..Default::default() }),
                None => BackendSpec::Local,
            };
            let id_shift = ids.map(|r| crate::spec::IdShift { first: r.first, count: r.count });
            let spec = InstanceSpec { backend, branches, cache: CacheSpec::default(), union: Default::default(), id_shift, quota: Default::default(), fuse: Default::default() };
            let mp = cdir.join("root");
            std::fs::create_dir(&mp).map_err(create(&mp))?;
            let t = std::time::Instant::now();
            let resp = control::call(&setup.socket, &Control::Mount { mountpoint: mp.clone(), spec: Box::new(spec) }, Duration::from_secs(30))
                .map_err(|source| LaunchError::MountClone { path: mp.clone(), source })?;
            tracing::debug!("clone root mounted in {:?}", t.elapsed());
            setup.mounted = Some(mp.clone());
            served = Some(resp.served.ok_or(LaunchError::NoInstance { what: "the clone" })?);
            (mp, img.config, Some(img.name))
        }
    };
    let served = match (&req.root, served) {
        (Root::Unmanaged(_), _) => None,
        (_, Some(s)) => Some(s),
        _ => Some(
            control::call(&setup.socket, &Control::Instance { mountpoint: root.clone() }, Duration::from_secs(10))
                .map_err(|_| LaunchError::NotAMount { root: root.clone(), pool: req.pool.clone() })?
                .served
                .ok_or(LaunchError::NoInstance { what: "the root" })?,
        ),
    };
    let argv = command_line(&config, &req.command, req.entrypoint.as_deref());
    if argv.is_empty() {
        return Err(LaunchError::NoImageCommand);
    }
    let user = match req.user.as_deref().or(Some(config.user.as_str()).filter(|u| !u.is_empty())) {
        Some(u) => Some(resolve_user(&root, u)?),
        None => None,
    };
    let workdir = req.workdir.clone().or_else(|| Some(PathBuf::from(&config.working_dir)).filter(|w| !w.as_os_str().is_empty())).unwrap_or_else(|| "/".into());
    if !workdir.is_absolute() {
        return Err(LaunchError::RelativeWorkdir(workdir));
    }
    // A pool with a network of its own (`--net-rate`) keeps its containers in it: its rate
    // is the pool's slice of the host's network.
    let net = match (req.net, &pool.net) {
        (None, Some(_)) => Net::Pool,
        (None, None) => Net::Host,
        (Some(Net::Host), Some(n)) => return Err(LaunchError::ShapedNetwork { pool: req.pool.clone(), rate: n.rate }),
        (Some(Net::Pool), None) => return Err(LaunchError::NoPoolNetwork(req.pool.clone())),
        (Some(n), _) => n,
    };
    let hostname = req.hostname.clone().unwrap_or_else(|| setup.name.clone());
    let mut env = Environment::default();
    env.set("PATH", DEFAULT_PATH);
    env.set("HOSTNAME", &hostname);
    env.set("HOME", if user.is_some_and(|(u, _)| u != 0) { "/" } else { "/root" });
    if req.tty {
        env.default_term();
    }
    env.apply(config.env.iter().chain(&req.env))?;
    let mut channel = None;
    let library = match served {
        Some(control::UserPathAddress { instance, channel: socket }) => {
            channel = Some(socket);
            let lib_inside = format!("{}/{}", rootfs::PRELOAD_DIR, crate::frontend::LIBRARY);
            let preload = match env.get("LD_PRELOAD") {
                Some(old) if !old.is_empty() => format!("{lib_inside} {old}"),
                _ => lib_inside,
            };
            env.set("LD_PRELOAD", &preload);
            env.set("POLYTROPON_CHANNEL", rootfs::CHANNEL);
            env.set("POLYTROPON_MOUNTS", &format!("/={instance}"));
            env.set("POLYTROPON_KERNEL_PATHS", &rootfs::KERNEL_TREES.join(":"));
            Some(crate::frontend::library(state_dir).map_err(LaunchError::Library)?)
        }
        None => None,
    };
    let spec = Spec {
        root,
        hostname,
        env: env.0,
        workdir,
        user,
        net,
        tty: req.tty,
        argv,
        library,
        channel,
        ipc_ns: Some(pool.ipc_ns.clone()),
        net_ns: pool.net.as_ref().map(|n| n.ns.clone()),
        cpus: pool.slice.cpus.as_ref().map(|c| c.iter().copied().collect()),
        log: log.map(Path::to_path_buf),
        confine: req.confine.clone(),
        userns: ids,
        stage: Some(stage(cdir)?),
    };
    Ok((spec, image))
}

/// The container's staging directory (see [`Spec::stage`]): empty, the runtime's alone.
fn stage(cdir: &Path) -> Result<PathBuf, LaunchError> {
    use std::os::unix::fs::DirBuilderExt;
    let stage = cdir.join("stage");
    match std::fs::DirBuilder::new().mode(0o700).create(&stage) {
        Ok(()) => Ok(stage),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && stage.symlink_metadata().is_ok_and(|m| m.is_dir()) => Ok(stage),
        Err(e) => Err(create(&stage)(e)),
    }
}

fn create(path: &Path) -> impl FnOnce(std::io::Error) -> LaunchError + '_ {
    move |source| LaunchError::Create { path: path.to_path_buf(), source }
}

/// The image's Entrypoint (or `entrypoint`), then `command` (or the image's Cmd), as Docker
/// composes them.
fn command_line(config: &ImageConfig, command: &[String], entrypoint: Option<&str>) -> Vec<String> {
    let entrypoint: Vec<String> = match entrypoint {
        Some(e) => e.split_whitespace().map(str::to_string).collect(),
        None => config.entrypoint.clone(),
    };
    let args = if command.is_empty() { &config.cmd } else { command };
    entrypoint.iter().chain(args).cloned().collect()
}

/// `K=V` entries, later ones replacing earlier ones of the same key.
#[derive(Default)]
struct Environment(Vec<String>);

impl Environment {
    fn set(&mut self, k: &str, v: &str) {
        let entry = format!("{k}={v}");
        match self.0.iter_mut().find(|e| e.split_once('=').is_some_and(|(ek, _)| ek == k)) {
            Some(e) => *e = entry,
            None => self.0.push(entry),
        }
    }

    /// Sets every `K=V` entry of `entries`, in order; a malformed one is an error naming it.
    fn apply<'a>(&mut self, entries: impl IntoIterator<Item = &'a String>) -> Result<(), LaunchError> {
        for kv in entries {
            let (k, v) = kv.split_once('=').filter(|(k, _)| !k.is_empty()).ok_or_else(|| LaunchError::BadEnv(kv.clone()))?;
            self.set(k, v);
        }
        Ok(())
    }

    /// `TERM` for a terminal, unless set: the caller's, else `xterm`.
    fn default_term(&mut self) {
        if self.get("TERM").is_none() {
            self.set("TERM", &std::env::var("TERM").unwrap_or_else(|_| "xterm".into()));
        }
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find_map(|e| e.split_once('=').filter(|(ek, _)| *ek == k).map(|(_, v)| v))
    }
}

/// The largest /etc/passwd or /etc/group read from an image.
const MAX_ACCOUNTS_FILE: u64 = 4 << 20;

/// Reads `rel` (`etc/passwd`, `etc/group`) of the container root `root` as the container
/// sees it: symbolic links resolve with `root` as `/` (`RESOLVE_IN_ROOT`), never to a host
/// file; only a regular file of at most [`MAX_ACCOUNTS_FILE`] bytes is read. An absent file
/// reads as empty.
fn read_in_root(root: &Path, rel: &'static str) -> Result<String, LaunchError> {
    use rustix::fs::{self as rfs, FileType, Mode, OFlags, ResolveFlags};
    use std::io::Read;
    let bad = |why: String| LaunchError::AccountsFile { path: rel, why };
    let dir = rfs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).map_err(|e| bad(format!("cannot open the root {}: {e}", root.display())))?;
    // Found without opening it (`O_PATH`): a device node the tenant put there (a watchdog, a
    // tape) must not be opened by the runtime as host root. Not past a mount point either:
    // the root's tree of a running container holds its /proc and /sys, where a link the
    // tenant planted (`/etc/passwd` -> `/proc/kmsg`) would have the runtime read a file whose
    // read has effects.
    let path_fd = match rfs::openat2(&dir, rel, OFlags::PATH | OFlags::CLOEXEC, Mode::empty(), ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => return Ok(String::new()),
        Err(e) => return Err(bad(e.to_string())),
    };
    let st = rfs::fstat(&path_fd).map_err(|e| bad(e.to_string()))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(bad("not a regular file".into()));
    }
    // The regular file found, opened to read through its `O_PATH` descriptor.
    let fd = rfs::open(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&path_fd)), OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC, Mode::empty()).map_err(|e| bad(e.to_string()))?;
    let mut text = Vec::new();
    std::fs::File::from(fd).take(MAX_ACCOUNTS_FILE + 1).read_to_end(&mut text).map_err(|e| bad(e.to_string()))?;
    if text.len() as u64 > MAX_ACCOUNTS_FILE {
        return Err(bad(format!("larger than {MAX_ACCOUNTS_FILE} bytes")));
    }
    Ok(String::from_utf8_lossy(&text).into_owned())
}

/// `UID[:GID]` or `NAME[:GROUP]`, names looked up in the root's /etc/passwd and /etc/group
/// (read inside the root, [`read_in_root`]).
pub fn resolve_user(root: &Path, spec: &str) -> Result<(u32, u32), LaunchError> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = read_in_root(root, "etc/passwd")?;
    let entry = |name: &str| passwd.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f.len() > 3 && f[0] == name);
    let (uid, primary) = match u.parse::<u32>() {
        Ok(uid) => (uid, passwd.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f.len() > 3 && f[2] == u).and_then(|f| f[3].parse().ok())),
        Err(_) => {
            let f = entry(u).ok_or_else(|| LaunchError::NoUser { spec: spec.to_string(), user: u.to_string() })?;
            (f[2].parse().map_err(|source| LaunchError::BadUid { user: u.to_string(), source })?, f[3].parse().ok())
        }
    };
    let gid = match g {
        None => primary.unwrap_or(uid),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                let groups = read_in_root(root, "etc/group")?;
                groups
                    .lines()
                    .map(|l| l.split(':').collect::<Vec<_>>())
                    .find(|f| f.len() > 2 && f[0] == g)
                    .and_then(|f| f[2].parse().ok())
                    .ok_or_else(|| LaunchError::NoGroup { spec: spec.to_string(), group: g.to_string() })?
            }
        },
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    /// The accounts files are read inside the root and on its filesystem: a link to a file
    /// of another filesystem mounted in the tree (a container's /proc) is refused.
    #[test]
    fn accounts_files_are_read_on_the_roots_filesystem_only() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("etc")).expect("etc");
        std::fs::write(root.path().join("etc/group"), "g:x:5:\n").expect("group");
        assert_eq!(read_in_root(root.path(), "etc/group").expect("read"), "g:x:5:\n");
        let proc_dir = root.path().join("proc");
        std::fs::create_dir(&proc_dir).expect("proc");
        if rustix::mount::mount("proc", &proc_dir, "proc", rustix::mount::MountFlags::empty(), None).is_err() {
            return; // not root here: nothing to mount, nothing to test
        }
        std::os::unix::fs::symlink("/proc/self/status", root.path().join("etc/passwd")).expect("link");
        let got = read_in_root(root.path(), "etc/passwd");
        let _ = rustix::mount::unmount(&proc_dir, rustix::mount::UnmountFlags::DETACH);
        let err = got.expect_err("a file of the tree's /proc was read");
        assert!(err.to_string().contains("etc/passwd"), "{err}");
        // A device node is never opened: a FIFO stands for one here (an open to read would
        // block for a writer; found by its type first, it is refused at once).
        std::fs::remove_file(root.path().join("etc/passwd")).expect("rm");
        rustix::fs::mknodat(rustix::fs::CWD, root.path().join("etc/passwd"), rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o644), 0).expect("mkfifo");
        let err = read_in_root(root.path(), "etc/passwd").expect_err("a FIFO was read");
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn the_command_line_follows_docker() {
        let c = ImageConfig { entrypoint: v(&["/init", "-v"]), cmd: v(&["serve"]), ..ImageConfig::default() };
        assert_eq!(command_line(&c, &[], None), v(&["/init", "-v", "serve"]));
        assert_eq!(command_line(&c, &v(&["sh"]), None), v(&["/init", "-v", "sh"]), "the command replaces Cmd only");
        assert_eq!(command_line(&c, &v(&["sh"]), Some("")), v(&["sh"]), "an empty --entrypoint clears it");
        assert_eq!(command_line(&c, &[], Some("/bin/echo hi")), v(&["/bin/echo", "hi", "serve"]));
        let plain = ImageConfig { cmd: v(&["/bin/sh"]), ..ImageConfig::default() };
        assert_eq!(command_line(&plain, &[], None), v(&["/bin/sh"]));
        assert!(command_line(&ImageConfig::default(), &[], None).is_empty());
    }

    #[test]
    fn users_resolve_by_number_or_name() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(root.path().join("etc")).expect("mkdir");
        std::fs::write(root.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n").expect("passwd");
        std::fs::write(root.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").expect("group");
        assert_eq!(resolve_user(root.path(), "app").expect("app"), (1000, 1001));
        assert_eq!(resolve_user(root.path(), "1000").expect("uid"), (1000, 1001), "a known uid takes its primary group");
        assert_eq!(resolve_user(root.path(), "4242").expect("uid"), (4242, 4242));
        assert_eq!(resolve_user(root.path(), "app:staff").expect("group"), (1000, 50));
        assert_eq!(resolve_user(root.path(), "0:7").expect("numbers"), (0, 7));
        let err = |spec: &str| resolve_user(root.path(), spec).expect_err(spec).to_string();
        assert_eq!(err("ghost"), "--user ghost: no user ghost in the image's /etc/passwd");
        assert_eq!(err("app:nogroup"), "--user app:nogroup: no group nogroup in the image's /etc/group");
    }

    #[test]
    fn accounts_are_read_inside_the_image_never_through_a_link_out_of_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        // A host file an image might point at (as /etc/shadow): absolute and relative links.
        let host = tmp.path().join("host-passwd");
        std::fs::write(&host, "ghost:x:4242:4243::/:/bin/sh\n").expect("host file");
        std::os::unix::fs::symlink(&host, root.join("etc/passwd")).expect("symlink");
        let err = resolve_user(&root, "ghost").expect_err("the host file must not be read").to_string();
        assert_eq!(err, "--user ghost: no user ghost in the image's /etc/passwd");
        std::fs::remove_file(root.join("etc/passwd")).expect("rm");
        std::os::unix::fs::symlink("../../host-passwd", root.join("etc/passwd")).expect("symlink");
        assert!(resolve_user(&root, "ghost").is_err(), "a relative link stops at the image's root");
        // A link inside the image resolves inside it, as the container sees it.
        std::fs::write(root.join("etc/real"), "app:x:1000:1001::/:/bin/sh\n").expect("passwd");
        std::fs::remove_file(root.join("etc/passwd")).expect("rm");
        std::os::unix::fs::symlink("/etc/real", root.join("etc/passwd")).expect("symlink");
        assert_eq!(resolve_user(&root, "app").expect("app"), (1000, 1001));
        // A FIFO is refused rather than waited on.
        std::fs::remove_file(root.join("etc/passwd")).expect("rm");
        rustix::fs::mknodat(rustix::fs::CWD, root.join("etc/passwd"), rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o644), 0).expect("mkfifo");
        let err = resolve_user(&root, "app").expect_err("fifo").to_string();
        assert_eq!(err, "the image's /etc/passwd: not a regular file");
    }

    #[test]
    fn a_malformed_environment_entry_is_named() {
        let mut env = Environment::default();
        let e = env.apply(&v(&["A=1", "NOEQUALS"])).expect_err("malformed");
        assert_eq!(e.to_string(), "environment entry \"NOEQUALS\": expected K=V");
        assert_eq!(env.get("A"), Some("1"));
    }
}
