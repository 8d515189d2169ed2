//! The container's first process (pid 1 of its PID namespace): it joins the pool's IPC
//! namespace, builds the file tree, pivots into it, then starts the command and stays as a
//! minimal init: it forwards signals to the command, reaps orphans, and exits with the
//! command's status (128 + N when a signal N ended it). When it exits the kernel ends every
//! other process of the container.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::signal::{kill, SigHandler, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Gid, Pid, Uid};

use super::{rootfs, sys, Net, Spec};

/// The init's ends of the runtime's pipes.
pub(super) struct Ends {
    /// One byte arrives once the runtime has put this process in the pool's cgroups.
    pub go: OwnedFd,
    /// Set-up failures go here as text; closed on exec.
    pub report: OwnedFd,
    /// For `--tty`: where the master side of the container's terminal goes to the runtime.
    pub console: Option<OwnedFd>,
    /// For a new user namespace: the handshake with the runtime that writes its id maps.
    pub ids: Option<IdsEnds>,
}

/// The init's ends of the id-map handshake.
pub(super) struct IdsEnds {
    /// One byte: the namespace exists, write its maps.
    pub ask: OwnedFd,
    /// One byte back: they are written.
    pub done: OwnedFd,
}

fn report(to: &OwnedFd, msg: &str) {
    let _ = nix::unistd::write(to, msg.as_bytes());
}

/// How the process enters the container before it starts the command.
pub(super) enum Entry<'a> {
    /// A new container: this process is its pid 1 and builds its tree.
    New,
    /// A running container: join its namespaces (descriptors of `/proc/PID/ns/*`, opened
    /// before anything changed); the command then runs in its PID namespace.
    Join(&'a [(OwnedFd, nix::sched::CloneFlags)]),
}

/// Runs as the container's init (or, joining a running container, as the command's
/// supervisor); returns its exit status.
pub(super) fn main(spec: &Spec, ends: Ends, entry: Entry<'_>) -> isize {
    // A copy of the runtime, about to live in the container: out of its processes' reach.
    if let Err(e) = sys::not_dumpable() {
        report(&ends.report, &format!("cannot make the container's init non-dumpable: {e}"));
        return 1;
    }
    let mut go = [0u8; 1];
    if !matches!(nix::unistd::read(&ends.go, &mut go), Ok(1)) {
        return 1; // the runtime gave up
    }
    drop(ends.go);
    // Decided before `entry` is used up: a new container, or one joined in its own user
    // namespace.
    let new = matches!(entry, Entry::New);
    let joins_userns = matches!(&entry, Entry::Join(ns) if ns.iter().any(|(_, k)| *k == nix::sched::CloneFlags::CLONE_NEWUSER));
    let entered = match entry {
        Entry::New => setup(spec),
        Entry::Join(ns) => join(ns),
    };
    if let Err(msg) = entered {
        report(&ends.report, &msg);
        return 1;
    }
    // The terminal comes from the container's own devpts, so that its name resolves inside.
    let pty = match ends.console.as_ref().map(terminal).transpose() {
        Ok(p) => p,
        Err(msg) => {
            report(&ends.report, &msg);
            return 1;
        }
    };
    drop(ends.console);
    // The user namespace comes last: every other namespace and the tree were made by the
    // host's root, so the container's root holds no capability over them.
    let userns = match &ends.ids {
        Some(ids) if new => enter_new_userns(ids).and_then(|_| own_network(spec)),
        _ if joins_userns => become_root(),
        _ => Ok(()),
    };
    if let Err(msg) = userns {
        report(&ends.report, &msg);
        return 1;
    }
    drop(ends.ids);
    let all = SigSet::all();
    if let Err(e) = all.thread_block() {
        report(&ends.report, &format!("cannot block signals: {e}"));
        return 1;
    }
    // SAFETY: this process is single-threaded (a fresh clone of a single-threaded runtime).
    match unsafe { nix::unistd::fork() } {
        Err(e) => {
            report(&ends.report, &format!("cannot fork the command: {e}"));
            1
        }
        Ok(ForkResult::Child) => {
            let (msg, code) = command(spec, pty.as_ref(), ends.report.as_raw_fd());
            report(&ends.report, &msg);
            // SAFETY: ends this forked process at once, without running the runtime's exit
            // handlers or flushing its copied buffers.
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(ends.report);
            drop(pty);
            // The supervisor needs no descriptor: whatever the runtime (or its caller) left
            // open goes.
            let _ = sys::close_from_3();
            supervise(child, &all)
        }
    }
}

/// Makes this process's user namespace, waits for the runtime to map it, and becomes its
/// root (container uid and gid 0: the pool's first host ids, no host groups).
fn enter_new_userns(ids: &IdsEnds) -> Result<(), String> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).map_err(|e| format!("cannot create the user namespace: {e}"))?;
    nix::unistd::write(&ids.ask, &[1]).map_err(|e| format!("cannot ask for the id maps: {e}"))?;
    let mut byte = [0u8; 1];
    if !matches!(nix::unistd::read(&ids.done, &mut byte), Ok(1)) {
        return Err("the runtime did not map the user namespace".into());
    }
    become_root()
}

/// With `--net none` in a user namespace: a network namespace of its own, owned by it, with
/// loopback up.
fn own_network(spec: &Spec) -> Result<(), String> {
    if spec.net != Net::None {
        return Ok(());
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| format!("cannot create the network namespace: {e}"))?;
    sys::loopback_up().map_err(|e| format!("cannot bring the loopback interface up: {e}"))
}

/// Takes the user namespace's root ids: until then this process keeps the host root's ids,
/// which the namespace does not map.
fn become_root() -> Result<(), String> {
    let root = Gid::from_raw(0);
    nix::unistd::setgroups(&[]).map_err(|e| format!("cannot drop the host's groups: {e}"))?;
    nix::unistd::setresgid(root, root, root).map_err(|e| format!("cannot become the container's root group: {e}"))?;
    let root = Uid::from_raw(0);
    nix::unistd::setresuid(root, root, root).map_err(|e| format!("cannot become the container's root: {e}"))
}

fn setup(spec: &Spec) -> Result<(), String> {
    // The parent moved this process into the pool's cgroups before it runs.
    let entry = crate::pool::Entry { cgroups: None, ipc_ns: spec.ipc_ns.clone(), cpus: spec.cpus.as_ref().map(|c| c.iter().copied().collect()) };
    entry.enter().map_err(|e| e.to_string())?;
    // The pool's network, joined as the host's root (before any user namespace of its own).
    if let (Net::Pool, Some(ns)) = (spec.net, &spec.net_ns) {
        crate::pool::ns::join_net(ns).map_err(|e| format!("cannot join the pool's network namespace {}: {e}", ns.display()))?;
    }
    // The runtime put this process in the container's own cgroup: that becomes the root of
    // the cgroup tree its processes see.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP).map_err(|e| format!("cannot create the cgroup namespace: {e}"))?;
    let stage = spec.stage.as_deref().ok_or("no staging directory for the container's trees")?;
    rootfs::populate(&spec.root, stage, spec.library.as_deref(), spec.channel.as_deref(), spec.userns.map(|r| r.first))?;
    nix::unistd::sethostname(&spec.hostname).map_err(|e| format!("cannot set the hostname {:?}: {e}", spec.hostname))?;
    if spec.net == Net::None && spec.userns.is_none() {
        sys::loopback_up().map_err(|e| format!("cannot bring the loopback interface up: {e}"))?;
        // As Docker's defaults: any port and ICMP echo sockets for every user of the
        // container's own network.
        for (knob, value) in [("ip_unprivileged_port_start", "0"), ("ping_group_range", "0 2147483647")] {
            std::fs::write(format!("/proc/sys/net/ipv4/{knob}"), value).map_err(|e| format!("cannot set net.ipv4.{knob}: {e}"))?;
        }
    }
    rootfs::enter(&spec.root)
}

/// Joins a running container's namespaces, the mount namespace last (that also makes its
/// root this process's root and working directory).
fn join(ns: &[(OwnedFd, nix::sched::CloneFlags)]) -> Result<(), String> {
    for (fd, kind) in ns {
        nix::sched::setns(fd, *kind).map_err(|e| format!("cannot join the container's {kind:?} namespace: {e}"))?;
    }
    Ok(())
}

/// Opens a pseudo-terminal in the container's /dev/pts, sends its master side to the runtime
/// over `console`, and returns the slave side.
fn terminal(console: &OwnedFd) -> Result<OwnedFd, String> {
    use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).map_err(|e| format!("cannot open /dev/ptmx: {e}"))?;
    grantpt(&master).and_then(|_| unlockpt(&master)).map_err(|e| format!("cannot unlock the terminal: {e}"))?;
    let name = ptsname_r(&master).map_err(|e| format!("cannot name the terminal: {e}"))?;
    let slave = nix::fcntl::open(name.as_str(), OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
        .map_err(|e| format!("cannot open {name}: {e}"))?;
    let fds = [master.as_raw_fd()];
    let iov = [std::io::IoSlice::new(b"t")];
    sendmsg::<()>(console.as_raw_fd(), &iov, &[ControlMessage::ScmRights(&fds)], MsgFlags::empty(), None)
        .map_err(|e| format!("cannot hand the terminal to the runtime: {e}"))?;
    Ok(slave)
}

/// Waits for the command, forwarding signals and reaping every other child.
fn supervise(command: Pid, all: &SigSet) -> isize {
    loop {
        let Ok(sig) = all.wait() else { continue };
        if sig != Signal::SIGCHLD {
            let _ = kill(command, sig);
            continue;
        }
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) if p == command => return code as isize,
                Ok(WaitStatus::Signaled(p, s, _)) if p == command => return 128 + s as isize,
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

/// The command's process: its session, terminal, user, directory and environment, then
/// exec. Returns only on failure: the message and the exit status (127: not found).
fn command(spec: &Spec, pty: Option<&OwnedFd>, report: RawFd) -> (String, i32) {
    match prepare(spec, pty, report) {
        Ok((path, argv, env)) => {
            let e = nix::unistd::execve(&path, &argv, &env).err().unwrap_or(nix::errno::Errno::UnknownErrno);
            let code = if e == nix::errno::Errno::ENOENT { 127 } else { 126 };
            (format!("cannot run {} in the container: {e}", spec.argv[0]), code)
        }
        Err((msg, code)) => (msg, code),
    }
}

type Prepared = (CString, Vec<CString>, Vec<CString>);

/// `report`: the (close-on-exec) descriptor failures are told on, the only one above the
/// standard streams left open when the working directory is entered.
fn prepare(spec: &Spec, pty: Option<&OwnedFd>, report: RawFd) -> Result<Prepared, (String, i32)> {
    let fail = |m: String| (m, 126);
    for s in Signal::iterator().filter(|s| !matches!(s, Signal::SIGKILL | Signal::SIGSTOP)) {
        // SAFETY: restoring the default disposition installs no handler.
        let _ = unsafe { nix::sys::signal::signal(s, SigHandler::SigDfl) };
    }
    SigSet::all().thread_unblock().map_err(|e| fail(format!("cannot unblock signals: {e}")))?;
    nix::unistd::setsid().map_err(|e| fail(format!("cannot start a session: {e}")))?;
    if let Some(t) = pty {
        sys::set_controlling_tty(t.as_fd()).map_err(|e| fail(format!("cannot take the terminal: {e}")))?;
        for n in 0..3 {
            sys::dup_onto(t.as_fd(), n).map_err(|e| fail(format!("cannot attach the terminal: {e}")))?;
        }
    } else if spec.log.is_some() {
        sys::dup_onto(std::io::stderr().as_fd(), 1).map_err(|e| fail(format!("cannot send output to the log: {e}")))?;
    }
    super::confine::bound(&spec.confine).map_err(fail)?;
    if let Some((uid, gid)) = spec.user {
        nix::unistd::setgroups(&[Gid::from_raw(gid)]).map_err(|e| fail(format!("setgroups: {e}")))?;
        nix::unistd::setgid(Gid::from_raw(gid)).map_err(|e| fail(format!("setgid {gid}: {e}")))?;
        nix::unistd::setuid(Uid::from_raw(uid)).map_err(|e| fail(format!("setuid {uid}: {e}")))?;
    }
    super::confine::limit(&spec.confine).map_err(fail)?;
    // Nothing but the standard streams survives the exec (the report pipe is already
    // close-on-exec and tells of a failed exec). Closed, not only marked, before the working
    // directory is entered: an image's `WorkingDir` of `/proc/self/fd/N` must not lead through
    // a descriptor the runtime or its caller left open to a directory outside the container
    // (runc's CVE-2024-21626); and the directory entered is checked to be inside the root.
    sys::close_all_but(report).map_err(|e| fail(format!("cannot close the runtime's descriptors: {e}")))?;
    nix::unistd::chdir(&spec.workdir).map_err(|e| fail(format!("working directory {}: {e}", spec.workdir.display())))?;
    match nix::unistd::getcwd() {
        Ok(cwd) if cwd.is_absolute() => {}
        _ => return Err(fail(format!("working directory {}: outside the container", spec.workdir.display()))),
    }
    let cstr = |s: &str| CString::new(s).map_err(|_| fail(format!("{s:?} contains a NUL byte")));
    let argv = spec.argv.iter().map(|a| cstr(a)).collect::<Result<Vec<_>, _>>()?;
    let env = spec.env.iter().map(|a| cstr(a)).collect::<Result<Vec<_>, _>>()?;
    let path = find(&spec.argv[0], &spec.env).ok_or_else(|| (format!("{}: command not found in the container", spec.argv[0]), 127))?;
    let path = CString::new(path.as_os_str().as_bytes()).map_err(|_| fail("bad command path".into()))?;
    Ok((path, argv, env))
}

/// `program` as the container's PATH finds it (a name with a '/' is taken as it is).
fn find(program: &str, env: &[String]) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    let path = env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(super::DEFAULT_PATH);
    path.split(':').map(|d| Path::new(if d.is_empty() { "." } else { d }).join(program)).find(|p| {
        nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok() && !p.is_dir()
    })
}
