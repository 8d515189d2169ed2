//! The runtime's side of a running container: signals it receives go to the container's
//! init; with `--tty` it relays between its own terminal (set raw meanwhile) and the
//! container's pseudo-terminal, window size included.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::termios::{self, SetArg, Termios};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::sys;

/// Signals the runtime passes on to the container, plus SIGCHLD (its end) and SIGWINCH.
const FORWARDED: [Signal; 8] =
    [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2, Signal::SIGWINCH, Signal::SIGCHLD];

/// The blocked signals, read from a signalfd, and the mask to restore.
#[derive(Debug)]
pub struct Signals {
    fd: SignalFd,
    old: SigSet,
}

pub(super) fn block_signals() -> nix::Result<Signals> {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    let mut old = SigSet::empty();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))?;
    match SignalFd::new(&set) {
        Ok(fd) => Ok(Signals { fd, old }),
        Err(e) => {
            let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
            Err(e)
        }
    }
}

pub(super) fn restore_signals(s: &Signals) {
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&s.old), None);
}

/// One descriptor sent over `sock` (SCM_RIGHTS); `None` when the peer closed it instead.
pub(super) fn receive_fd(sock: &OwnedFd) -> Option<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::{AsRawFd, FromRawFd};
    let mut byte = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!(std::os::fd::RawFd);
    let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC).ok()?;
    for c in msg.cmsgs().ok()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: SCM_RIGHTS just installed these descriptors in this process; nothing
            // else owns them.
            return fds.first().map(|fd| unsafe { OwnedFd::from_raw_fd(*fd) });
        }
    }
    None
}

/// The exit status a shell would report.
pub(super) fn status(w: Option<WaitStatus>) -> Option<i32> {
    match w? {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
        _ => None,
    }
}

/// The runtime's terminal in raw mode until dropped.
struct RawTerminal {
    saved: Termios,
}

impl RawTerminal {
    fn enter() -> Option<RawTerminal> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// A started container.
#[derive(Debug)]
pub struct Running {
    pid: Pid,
    master: Option<OwnedFd>,
    signals: Signals,
    /// A detached container's output, copied into its bounded log.
    log: Option<super::log::CappedLog>,
}

impl Running {
    pub(super) fn new(pid: Pid, master: Option<OwnedFd>, signals: Signals, log: Option<super::log::CappedLog>) -> Self {
        Running { pid, master, signals, log }
    }

    /// The init's host pid.
    pub fn pid(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    /// Forwards signals (and relays the terminal) until the container ends; its status.
    pub fn wait(mut self) -> i32 {
        let code = self.serve();
        restore_signals(&self.signals);
        code
    }

    fn serve(&mut self) -> i32 {
        let raw = self.master.as_ref().and_then(|_| RawTerminal::enter());
        let mut stdin_open = self.master.is_some();
        let mut master_open = self.master.is_some();
        let mut buf = vec![0u8; 64 << 10];
        let mut log_open = self.log.is_some();
        loop {
            let stdin = std::io::stdin();
            let mut fds = vec![PollFd::new(self.signals.fd.as_fd(), PollFlags::POLLIN)];
            // Last in the list (its readiness is looked up from the end).
            let log = self.log.as_mut().filter(|_| log_open);
            let master = self.master.as_ref().filter(|_| master_open);
            if let Some(m) = master {
                fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
            }
            if stdin_open && master.is_some() {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
            if let Some(l) = &log {
                fds.push(PollFd::new(l.pipe(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => return self.reap_blocking(),
            }
            let mut ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
            drop(fds);
            if let Some(l) = log {
                if ready.pop() == Some(true) {
                    log_open = l.copy(&mut buf);
                }
            }
            if ready.get(1) == Some(&true) {
                if let Some(m) = master {
                    master_open = copy_out(m.as_fd(), &mut buf);
                }
            }
            if ready.get(2) == Some(&true) {
                if let Some(m) = master {
                    stdin_open = copy_in(stdin.as_fd(), m.as_fd(), &mut buf);
                }
            }
            if ready[0] {
                if let Some(code) = self.on_signal() {
                    if let Some(m) = &self.master {
                        drain(m.as_fd(), &mut buf);
                    }
                    if let Some(l) = self.log.as_mut().filter(|_| log_open) {
                        // What the container wrote before it ended (its processes are gone
                        // with its init; the pipe does not block).
                        l.drain(&mut buf);
                    }
                    drop(raw);
                    return code;
                }
            }
        }
    }

    /// Handles one pending signal; the container's status once it has ended.
    fn on_signal(&mut self) -> Option<i32> {
        let info = self.signals.fd.read_signal().ok()??;
        let sig = Signal::try_from(info.ssi_signo as i32).ok()?;
        match sig {
            Signal::SIGCHLD => status(waitpid(self.pid, Some(WaitPidFlag::WNOHANG)).ok()),
            Signal::SIGWINCH => {
                if let (Some(m), Some(ws)) = (&self.master, sys::window_size(std::io::stdin().as_fd())) {
                    sys::set_window_size(m.as_fd(), &ws);
                }
                None
            }
            other => {
                let _ = kill(self.pid, other);
                None
            }
        }
    }

    fn reap_blocking(&self) -> i32 {
        status(waitpid(self.pid, None).ok()).unwrap_or(1)
    }
}

/// Container output to our stdout; false once the terminal is gone.
fn copy_out(master: BorrowedFd<'_>, buf: &mut [u8]) -> bool {
    match nix::unistd::read(master, buf) {
        Ok(0) | Err(Errno::EIO) => false,
        Ok(n) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&buf[..n]).and_then(|_| out.flush());
            true
        }
        Err(Errno::EINTR | Errno::EAGAIN) => true,
        Err(_) => false,
    }
}

/// Our stdin to the container's terminal; false at its end (the container then gets an
/// end-of-file character, as at a terminal).
fn copy_in(stdin: BorrowedFd<'_>, master: BorrowedFd<'_>, buf: &mut [u8]) -> bool {
    match nix::unistd::read(stdin, buf) {
        Ok(0) | Err(Errno::EIO) => {
            let _ = nix::unistd::write(master, &[4]);
            false
        }
        Ok(n) => {
            let mut done = 0;
            while done < n {
                match nix::unistd::write(master, &buf[done..n]) {
                    Ok(w) => done += w,
                    Err(Errno::EINTR) => {}
                    Err(_) => return false,
                }
            }
            true
        }
        Err(Errno::EINTR | Errno::EAGAIN) => true,
        Err(_) => false,
    }
}

/// What the container wrote just before it ended.
fn drain(master: BorrowedFd<'_>, buf: &mut [u8]) {
    let flags = nix::fcntl::fcntl(master, nix::fcntl::FcntlArg::F_GETFL).unwrap_or(0);
    let nonblock = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
    let _ = nix::fcntl::fcntl(master, nix::fcntl::FcntlArg::F_SETFL(nonblock));
    let mut out = std::io::stdout().lock();
    while let Ok(n @ 1..) = nix::unistd::read(master, buf) {
        let _ = out.write_all(&buf[..n]);
    }
    let _ = out.flush();
}
