//! Containers: a command in new mount, PID and UTS namespaces (and a network namespace with
//! `--net none`), in the pool's cgroups and IPC namespace, with a pool mount's FUSE tree as
//! its root and the preload library attached, so that its file I/O takes the user-level path
//! and whatever the library cannot see (exec, dynamic loading, static binaries) the FUSE path.
//!
//! Processes: the runtime (`polytropon exec`, on the host) clones the container's init (pid 1
//! inside, [`init`]), puts it in the pool's cgroups, lets it set up the tree and start the
//! command, then forwards signals and relays the terminal ([`relay`]) until init exits with
//! the command's status. [`launch`] adds what `exec` needs around that: the pool's service, a
//! clone's private branch, the record `inspect` shows.

mod init;
pub mod log;
pub mod launch;
mod confine;
mod seccomp;
pub mod sealed;
mod relay;
pub mod rootfs;
pub mod state;
mod sys;

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

pub use confine::{ConfineError, Confinement};
pub use relay::Running;
pub use crate::pool::ids::IdRange;

/// `PATH` when neither the image nor the user sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The container's network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Net {
    /// The host's network namespace.
    #[default]
    Host,
    /// A network namespace of its own with only loopback.
    None,
    /// The pool's network (`pool create --net-rate`): one namespace for the pool's
    /// containers, wired to the host and shaped.
    Pool,
}

/// Whose user namespace a container runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Userns {
    /// One of its own, mapped onto the pool's host id range: its root is an unprivileged
    /// host user (the default for clones).
    Pool,
    /// The host's: container root is host root (the default for `--root` mounts, whose
    /// files keep host ids).
    Host,
}

/// Everything the runtime needs to start one container, resolved.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Host path of the root: a mountpoint of the pool's service.
    pub root: PathBuf,
    pub hostname: String,
    /// `K=V`, the command's whole environment.
    pub env: Vec<String>,
    /// Working directory inside the container.
    pub workdir: PathBuf,
    pub user: Option<(u32, u32)>,
    pub net: Net,
    pub tty: bool,
    pub argv: Vec<String>,
    /// Host path of the preload library, shown inside under [`rootfs::PRELOAD_DIR`].
    pub library: Option<PathBuf>,
    /// Host path of the pool service's channel socket, shown inside as
    /// [`rootfs::CHANNEL`] (with the library).
    pub channel: Option<PathBuf>,
    /// The pool's IPC namespace binding.
    pub ipc_ns: Option<PathBuf>,
    /// The pool's network namespace binding, joined with `Net::Pool`.
    pub net_ns: Option<PathBuf>,
    pub cpus: Option<Vec<u32>>,
    /// A detached container's log: the command's stdout and stderr go through a pipe to
    /// the runtime, which keeps the file bounded ([`log::CappedLog`]).
    pub log: Option<PathBuf>,
    /// Capabilities, `no_new_privs` and seccomp of the command.
    pub confine: Confinement,
    /// The host ids its user namespace maps container ids `0..count` onto (`None`: the
    /// host's user namespace).
    pub userns: Option<IdRange>,
    /// An empty host directory of the runtime's (no tenant reaches it) where a new
    /// container's /proc, /dev and /sys are made before they are moved into its root (`None`
    /// for a process joining a running container).
    pub stage: Option<PathBuf>,
}

/// Errors starting or running a container.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("{what}: {source}")]
    Os { what: &'static str, source: std::io::Error },
    /// The container's own set-up or exec failed; `code` is its exit status.
    #[error("{msg}")]
    Start { msg: String, code: i32 },
}

fn os(what: &'static str) -> impl FnOnce(nix::errno::Errno) -> ContainerError {
    move |e| ContainerError::Os { what, source: e.into() }
}

/// Starts the container: `join(pid)` puts its init (host pid) in the pool's cgroups before
/// anything runs in it. Returns once the command has been exec'ed, or the reason it was not.
///
/// The caller must be single-threaded.
pub fn start(spec: &Spec, join: impl FnOnce(u32) -> std::io::Result<()>) -> Result<Running, ContainerError> {
    launch_process(spec, None, join)
}

/// Runs `spec`'s command inside the running container whose init is host pid `init` (its
/// namespaces and root; `spec.root` is not used), as `start` does otherwise.
pub fn enter(init: (u32, Option<u64>), spec: &Spec, join: impl FnOnce(u32) -> std::io::Result<()>) -> Result<Running, ContainerError> {
    launch_process(spec, Some(init), join)
}

fn namespaces_of(pid: u32) -> Result<Vec<(std::os::fd::OwnedFd, CloneFlags)>, ContainerError> {
    let mut out = Vec::new();
    for (name, kind) in [
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("cgroup", CloneFlags::CLONE_NEWCGROUP),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ] {
        let f = std::fs::File::open(format!("/proc/{pid}/ns/{name}")).map_err(|source| ContainerError::Os { what: "cannot open the container's namespaces", source })?;
        out.push((f.into(), kind));
    }
    // Its user namespace last (joining one needs the mount namespace's root as this
    // process's root), when it has one of its own.
    if crate::pool::ns::shares_user_namespace(pid) != Some(true) {
        let f = std::fs::File::open(format!("/proc/{pid}/ns/user")).map_err(|source| ContainerError::Os { what: "cannot open the container's user namespace", source })?;
        out.push((f.into(), CloneFlags::CLONE_NEWUSER));
    }
    Ok(out)
}

fn launch_process(spec: &Spec, target: Option<(u32, Option<u64>)>, join: impl FnOnce(u32) -> std::io::Result<()>) -> Result<Running, ContainerError> {
    let namespaces = match target {
        Some((pid, started)) => {
            let ns = namespaces_of(pid)?;
            // Opened from the init itself, not from a process that took its pid in between:
            // the one holding the pid now started when the init did.
            if started.is_some() && crate::pool::state::start_time(pid) != started {
                return Err(ContainerError::Os { what: "the container's init ended", source: std::io::Error::from_raw_os_error(libc::ESRCH) });
            }
            ns
        }
        None => Vec::new(),
    };
    let (go_r, go_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(os("pipe"))?;
    let (rep_r, rep_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(os("pipe"))?;
    let console = if spec.tty {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        Some(socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).map_err(os("cannot create the terminal socket"))?)
    } else {
        None
    };
    // A detached container's output: into a pipe the runtime copies into its bounded log.
    let output = match (&spec.log, target) {
        (Some(_), None) => Some(nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(os("pipe"))?),
        _ => None,
    };
    let signals = relay::block_signals().map_err(os("cannot block signals"))?;
    let mut flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWUTS;
    // In a user namespace, the init makes its network once it is the namespace's root, so
    // that the container's root holds its network capabilities there (raw sockets, low
    // ports).
    if spec.net == Net::None && spec.userns.is_none() {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if target.is_some() {
        flags = CloneFlags::empty();
    }
    let (ours, theirs) = match console {
        Some((a, b)) => (Some(a), Some(b)),
        None => (None, None),
    };
    // A new user namespace: the init asks (one byte) once it has made it, the runtime writes
    // its id maps and answers.
    let ids_pipes = match (spec.userns, target) {
        (Some(_), None) => Some((nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(os("pipe"))?, nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(os("pipe"))?)),
        _ => None,
    };
    let (ids_theirs, ids_ours) = match ids_pipes {
        Some(((ask_r, ask_w), (done_r, done_w))) => (Some(init::IdsEnds { ask: ask_w, done: done_r }), Some((ask_r, done_w))),
        None => (None, None),
    };
    let mut child_ends = Some((go_r, rep_w, theirs, ids_theirs));
    let mut body = || -> isize {
        let Some((go, report, console, ids)) = child_ends.take() else { return 1 };
        if let Some(o) = &ours {
            // The runtime's end, in this copy of its descriptors.
            let _ = nix::unistd::close(o.as_raw_fd());
        }
        if let Some((_, w)) = &output {
            // The init's stderr (the command's stdout and stderr, see `init::prepare`) is the
            // pipe's writing end; the copy dup2 makes is not close-on-exec.
            if sys::dup_onto(w.as_fd(), libc::STDERR_FILENO).is_err() {
                return 1;
            }
        }
        let entry = if target.is_some() { init::Entry::Join(&namespaces) } else { init::Entry::New };
        init::main(spec, init::Ends { go, report, console, ids }, entry)
    };
    let spawned = sys::spawn(flags, &mut body);
    // The parent's copies of the child's ends.
    drop(child_ends);
    let output = output.map(|(r, _w)| r);
    let pid = match spawned {
        Ok(p) => p,
        Err(e) => {
            relay::restore_signals(&signals);
            return Err(ContainerError::Os { what: "cannot create the container's namespaces", source: e });
        }
    };
    let fail = |e: ContainerError| {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
        relay::restore_signals(&signals);
        e
    };
    if let Err(e) = join(pid.as_raw() as u32) {
        return Err(fail(ContainerError::Os { what: "cannot put the container in the pool's cgroups", source: e }));
    }
    if let Err(e) = nix::unistd::write(&go_w, &[1]) {
        return Err(fail(os("cannot start the container")(e)));
    }
    drop(go_w);
    // With --tty the init sends the terminal's master side, or fails and says why below.
    let master = ours.and_then(|s| relay::receive_fd(&s));
    if let Some(m) = &master {
        if let Some(ws) = sys::window_size(std::io::stdin().as_fd()) {
            sys::set_window_size(m.as_fd(), &ws);
        }
    }
    if let (Some((ask, done)), Some(ids)) = (ids_ours, spec.userns) {
        let mut byte = [0u8; 1];
        // Nothing (end of file): the init failed before; its report says why.
        if matches!(nix::unistd::read(&ask, &mut byte), Ok(1)) {
            if let Err(e) = write_id_maps(pid.as_raw() as u32, ids) {
                return Err(fail(ContainerError::Os { what: "cannot write the container's id maps", source: e }));
            }
            if let Err(e) = nix::unistd::write(&done, &[1]) {
                return Err(fail(os("cannot start the container")(e)));
            }
        }
    }
    let mut msg = String::new();
    let _ = std::fs::File::from(rep_r).read_to_string(&mut msg);
    if !msg.is_empty() {
        let code = relay::status(waitpid(pid, None).ok()).unwrap_or(1);
        relay::restore_signals(&signals);
        return Err(ContainerError::Start { msg, code });
    }
    let log = match (output, &spec.log) {
        (Some(r), Some(path)) => match log::CappedLog::new(r, path.clone()) {
            Ok(l) => Some(l),
            Err(e) => return Err(fail(ContainerError::Os { what: "cannot open the container's log", source: e })),
        },
        _ => None,
    };
    Ok(Running::new(pid, master, signals, log))
}

/// Maps container ids `0..count` of process `pid`'s (new) user namespace onto `ids`.
fn write_id_maps(pid: u32, ids: IdRange) -> std::io::Result<()> {
    let line = format!("0 {} {}\n", ids.first, ids.count);
    std::fs::write(format!("/proc/{pid}/uid_map"), &line)?;
    std::fs::write(format!("/proc/{pid}/gid_map"), &line)
}

/// Where a container's init is, for signals from outside.
pub fn signal(pid: u32, sig: Signal) -> std::io::Result<()> {
    kill(Pid::from_raw(pid as i32), sig).map_err(Into::into)
}

/// Signals container `rec`'s init, and only it: through a pidfd taken before the pid is
/// checked to name the process that started when the init did (`ESRCH` otherwise), so never a
/// process, maybe another tenant's, that took the number since.
pub fn signal_init(rec: &state::ContainerRecord, sig: Signal) -> std::io::Result<()> {
    let no_such = || std::io::Error::from_raw_os_error(libc::ESRCH);
    let pid = rustix::process::Pid::from_raw(rec.pid as i32).ok_or_else(no_such)?;
    let pidfd = match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => Some(fd),
        // A kernel without pidfds (before 5.3): the start time checked just before the kill.
        Err(rustix::io::Errno::NOSYS) => None,
        Err(e) => return Err(e.into()),
    };
    if rec.init_start.is_some() && crate::pool::state::start_time(rec.pid) != rec.init_start {
        return Err(no_such());
    }
    match pidfd {
        Some(pidfd) => {
            let sig = rustix::process::Signal::from_named_raw(sig as i32).ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))?;
            Ok(rustix::process::pidfd_send_signal(&pidfd, sig)?)
        }
        None => signal(rec.pid, sig),
    }
}
