//! The pool's channel socket: how a client process becomes known to the service. A client
//! connects (one connection per client thread), says which thread it is, and gets back a
//! private area (a sealed memfd only it and the service map) and the index its hints name.
//! Who it is comes from the kernel alone: the socket's peer process (`SO_PEERCRED`, held with
//! a pidfd while its credentials are read), and that process's thread's filesystem
//! credentials from `/proc`. The area lives as long as the connection: when the client
//! closes it (or dies, and the kernel closes it) the index is free again.

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Longest a new connection may take to send its hello.
const HELLO_WAIT: Duration = Duration::from_secs(1);

/// How long the listener is left alone after `accept` ran out of descriptors, in ms.
const ACCEPT_PAUSE_MS: u16 = 50;
/// Most connections kept waiting for their hello: past it, the oldest one that has waited
/// [`EVICT_AFTER`] goes for each new one (an honest client says hello right after it
/// connects), and while every one is younger the rest wait in the listener's backlog, so that
/// silent connections cannot take the service's descriptors (every tenant's opens).
const MAX_WAITING: usize = 64;
/// A connection waiting this long for its hello may make room for a new one.
const EVICT_AFTER: Duration = Duration::from_millis(10);
/// How long the listener is left alone when every waiting connection is younger than
/// [`EVICT_AFTER`], in ms.
const FULL_PAUSE_MS: u16 = 10;
/// Least time between two log messages a tenant can provoke from one place (a client that
/// leaves queue slots claimed and never published, connections past the descriptor limit).
pub(super) const LOG_EVERY: Duration = Duration::from_secs(10);
/// Wake-ups of a waiting connection that bring no byte of its hello: at this many it is dropped
/// (a byte sent out of band wakes the poll and is no data).
const IDLE_WAKES_MAX: u8 = 4;

use polytropon_ipc::area::Area;
use polytropon_ipc::{Hello, Welcome, HELLO_SIZE, PROTOCOL_VERSION};
use tracing::{debug, warn};

use crate::libservice::access::{Creds, IdRange, UserNs};
use crate::libservice::Context;

use super::peer;

/// One connected client: its area and who it is.
pub struct Channel {
    pub area: Area,
    /// The area's mapping in the service (unmapped when the last user lets go).
    map: Mapping,
    /// The filesystem ids its requests are served with.
    pub ctx: Context,
    /// Its credentials, for the kernel's permission rules.
    pub creds: Creds,
    /// Its process, as the holder of the handles it opens (see `owners`).
    pub holder: super::owners::Holder,
    /// The devices of the mounts its process sees (`/proc/PID/mountinfo`), sorted; read
    /// again when a request names a device not among them (a mount made since), at most once
    /// a second unless this service's instances changed meanwhile.
    mounts: RwLock<Vec<u64>>,
    /// When `mounts` was read again for a device not among them, and [`INSTANCES_CHANGED`]
    /// then.
    reread: Mutex<Option<(Instant, u64)>>,
    /// Whether the process could reach each device's mount point (searching every directory
    /// above it, with its credentials), and when that was asked (see [`Channel::reaches`]).
    reach: Mutex<Vec<(u64, bool, Instant)>>,
    /// Its process, held while the connection lives. (Holding it keeps the process's `struct
    /// pid`, not its number: once the process is gone the number may name another, which
    /// `holder.incarnation` tells apart.)
    pid: u32,
    pidfd: OwnedFd,
    /// Sequence number of the last request taken from the area: a request is taken once,
    /// whatever hints arrive for it.
    pub served: AtomicU64,
    /// Posted requests taken so far; held by the worker draining them.
    pub posts: Mutex<u32>,
    /// When it was admitted (a young client is likely a short process's: see `expect`).
    pub admitted: Instant,
    /// The connection (a duplicate of the listener's), on which descriptors of backing files
    /// go to the client (`OPEN_PASSED`).
    conn: OwnedFd,
}

impl Channel {
    /// Sends `fd` to the client on its connection, unless the last one sent is still unread
    /// (a client that never takes them holds at most one in flight) or the socket would block.
    pub fn send_fd(&self, fd: std::os::fd::BorrowedFd<'_>) -> bool {
        let mut queued: libc::c_int = 0;
        // SAFETY: SIOCOUTQ (TIOCOUTQ) on our own socket descriptor writes one int: the bytes
        // sent and not yet read by the peer.
        if unsafe { libc::ioctl(self.conn.as_raw_fd(), libc::TIOCOUTQ, &mut queued) } != 0 || queued != 0 {
            return false;
        }
        let fds = [fd.as_raw_fd()];
        let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
        let iov = [std::io::IoSlice::new(b"F")];
        let flags = nix::sys::socket::MsgFlags::MSG_DONTWAIT | nix::sys::socket::MsgFlags::MSG_NOSIGNAL;
        matches!(nix::sys::socket::sendmsg::<()>(self.conn.as_raw_fd(), &iov, &cmsg, flags, None), Ok(1))
    }

    /// Whether the client's process was seen to see a mount of device `dev` (its mounts as
    /// last read, not read again).
    pub fn seen(&self, dev: u64) -> bool {
        self.mounts.read().unwrap_or_else(|p| p.into_inner()).binary_search(&dev).is_ok()
    }

    /// Whether the client's process sees a mount of device `dev` (its mounts read again
    /// when it did not, while the process is still the one that connected): `None` when they
    /// were read again too lately to read again now (the caller leaves the call to the
    /// kernel, which checks what the process sees itself).
    pub fn sees(&self, dev: u64) -> Option<bool> {
        if self.seen(dev) {
            return Some(true);
        }
        // A client naming instances it cannot see, again and again, makes the service parse
        // its mount table at most once a second (and after each mount or unmount of ours).
        let epoch = INSTANCES_CHANGED.load(Ordering::Acquire);
        {
            let mut last = self.reread.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|(at, e)| e == epoch && at.elapsed() < KnownMounts::FOR) {
                return None;
            }
            *last = Some((Instant::now(), epoch));
        }
        let Ok(info) = proc_text(&format!("/proc/{}/mountinfo", self.pid)) else { return Some(false) };
        if exited(&self.pidfd) {
            return Some(false);
        }
        let now = mount_devices(&info);
        let seen = now.binary_search(&dev).is_ok();
        *self.mounts.write().unwrap_or_else(|p| p.into_inner()) = now;
        Some(seen)
    }
}

/// How long an answer of [`Channel::reaches`] holds: another user's `chmod` of a directory
/// above a mount point takes effect within it.
const REACH_FOR: Duration = Duration::from_secs(1);

/// Answers of [`Channel::reaches`] by (mount namespace, root directory, credentials' digest,
/// device), for every channel of a service.
pub type ReachCache = Mutex<std::collections::HashMap<((u64, u64), (u64, u64), u64, u64), (bool, Instant)>>;

/// Answers kept at most (all dropped past it).
const REACH_CACHED: usize = 4096;

impl Channel {
    /// Whether the client's process may reach a mount of device `dev`: search every directory
    /// above one of its mount points, as the kernel's path walk would ask, with the
    /// credentials the client is served with. The service's own walk checks the directories
    /// from the instance's root down; the ones above are the host's (or the container's),
    /// which only a walk from the process's root (`/proc/PID/root`, its mounts) shows. Asked
    /// at most once a second per device; a mount point the process sees under no name (or one
    /// it cannot reach) is refused.
    ///
    /// Processes of one mount namespace and root with the same credentials get the same
    /// answer: `shared` keeps it for them (a short process's first call costs two `stat`s,
    /// not a read of its mount table and a walk).
    pub fn reaches(&self, dev: u64, shared: &ReachCache) -> bool {
        {
            let known = self.reach.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(&(_, ok, at)) = known.iter().find(|e| e.0 == dev) {
                if at.elapsed() < REACH_FOR {
                    return ok;
                }
            }
        }
        let id = |p: String| rustix::fs::stat(p.as_str()).map(|st| (st.st_dev, st.st_ino)).ok();
        let key = id(format!("/proc/{}/ns/mnt", self.pid)).zip(id(format!("/proc/{}/root", self.pid))).map(|(ns, root)| (ns, root, digest(&self.creds), dev));
        let cached = key.and_then(|k| shared.lock().unwrap_or_else(|p| p.into_inner()).get(&k).copied()).filter(|(_, at)| at.elapsed() < REACH_FOR).map(|(ok, _)| ok);
        let ok = match cached {
            Some(ok) => ok,
            None => {
                let ok = proc_text(&format!("/proc/{}/mountinfo", self.pid)).is_ok_and(|info| mount_points(&info, dev).iter().any(|at| searchable_above(self.pid, at, &self.creds)));
                if let Some(k) = key {
                    let mut all = shared.lock().unwrap_or_else(|p| p.into_inner());
                    if all.len() >= REACH_CACHED {
                        all.clear();
                    }
                    all.insert(k, (ok, Instant::now()));
                }
                ok
            }
        } && !exited(&self.pidfd);
        let mut known = self.reach.lock().unwrap_or_else(|p| p.into_inner());
        known.retain(|e| e.0 != dev);
        known.push((dev, ok, Instant::now()));
        ok
    }
}

/// The mount points (unescaped, as the process names them) of device `dev` in a `mountinfo`.
fn mount_points(mountinfo: &str, dev: u64) -> Vec<Vec<u8>> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (major, minor) = f.nth(2)?.split_once(':')?;
            (libc::makedev(major.parse().ok()?, minor.parse().ok()?) == dev).then_some(())?;
            Some(unescape_octal(f.nth(1)?.as_bytes()))
        })
        .collect()
}

/// `mountinfo`'s escapes (`\040` for a space, `\011`, `\012`, `\134`) undone.
fn unescape_octal(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let digits = b.get(i + 1..i + 4).filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match digits {
            Some(d) => {
                out.push(d.iter().fold(0u8, |v, c| v.wrapping_mul(8).wrapping_add(c - b'0')));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    out
}

/// Whether `creds` may search every directory above `mount_point` (absolute, in the mounts
/// of process `pid`), walked from that process's root one name at a time (no symbolic link
/// followed: `mountinfo` names real paths).
fn searchable_above(pid: u32, mount_point: &[u8], creds: &Creds) -> bool {
    use rustix::fs::{openat, Mode, OFlags};
    use std::os::unix::ffi::OsStrExt;
    let names: Vec<&[u8]> = mount_point.split(|&c| c == b'/').filter(|n| !n.is_empty()).collect();
    let Some((_, above)) = names.split_last() else { return true };
    let Ok(mut dir) = rustix::fs::open(format!("/proc/{pid}/root"), OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()) else { return false };
    let searchable = |d: &OwnedFd| rustix::fs::fstat(d).is_ok_and(|st| creds.permit(&polytropon_fs::backend::local::stat_to_attr(&st), crate::libservice::access::MAY_EXEC).is_ok());
    if !searchable(&dir) {
        return false;
    }
    for name in above {
        match openat(&dir, std::ffi::OsStr::from_bytes(name), OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()) {
            Ok(next) if searchable(&next) => dir = next,
            _ => return false,
        }
    }
    true
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel").field("ctx", &self.ctx).field("holder", &self.holder).field("len", &self.map.len).finish_non_exhaustive()
    }
}

/// A shared mapping of a client's area.
#[derive(Debug)]
struct Mapping {
    ptr: *mut std::ffi::c_void,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; every access goes through `Area`'s atomics and
// raw copies, which any thread may make.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping this value owns; no `Area` of it outlives the
        // `Channel` holding both.
        if let Err(e) = unsafe { rustix::mm::munmap(self.ptr, self.len) } {
            warn!("cannot unmap a client area: {e}");
        }
    }
}

/// The connected clients by index, and the socket they connect to.
#[derive(Debug)]
pub struct Channels {
    slots: RwLock<Vec<Option<Arc<Channel>>>>,
    buffer_size: u64,
    shmid: i32,
    path: PathBuf,
    /// Client areas given back (connection closed).
    pub closed: AtomicU64,
    known: KnownMounts,
    /// Fresh areas made ahead, never given to anyone (see [`Channels::restock`]).
    stock: Mutex<Vec<Fresh>>,
    /// Signalled when an admission took an area from the stock.
    low: std::sync::Condvar,
    /// Channels whose connection closed, let go by the janitor (see [`Channels::reap`]).
    retired: Mutex<Vec<Arc<Channel>>>,
}

/// A client area made ahead of its client: its memfd, the service's mapping, the view.
type Fresh = (OwnedFd, Mapping, Area);

/// Areas kept made ahead: a new client takes one instead of waiting while its memfd is
/// made, sized, sealed, mapped and its first pages made (30-40 µs of the admission here).
const STOCK: usize = 4;

/// Closed channels left for the janitor at most; past that, a closed channel's area is
/// unmapped at once (so a flood of connections cannot pile up mappings between two passes).
const RETIRED_MAX: usize = 64;

impl Channels {
    /// Binds the channel socket at `path` (a stale one there is replaced), open to every
    /// user of the pool: who connects is what the kernel says.
    pub fn bind(path: &Path, clients: u32, buffer_size: u64, shmid: i32) -> io::Result<(Arc<Channels>, UnixListener)> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = UnixListener::bind(path)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
        listener.set_nonblocking(true)?;
        let slots = RwLock::new((0..clients).map(|_| None).collect());
        Ok((Arc::new(Channels { slots, buffer_size, shmid, path: path.to_path_buf(), closed: AtomicU64::new(0), known: KnownMounts::default(), stock: Mutex::new(Vec::new()), low: std::sync::Condvar::new(), retired: Mutex::new(Vec::new()) }), listener))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The client at index `c`, if connected.
    pub fn get(&self, c: u32) -> Option<Arc<Channel>> {
        let t = self.slots.read().unwrap_or_else(|p| p.into_inner());
        t.get(c as usize).and_then(Clone::clone)
    }

    /// Clients connected now.
    pub fn connected(&self) -> u32 {
        self.slots.read().unwrap_or_else(|p| p.into_inner()).iter().filter(|s| s.is_some()).count() as u32
    }

    /// Client areas held by process `holder` (a later process of the same pid is another).
    fn held_by(&self, holder: super::owners::Holder) -> u32 {
        self.slots.read().unwrap_or_else(|p| p.into_inner()).iter().flatten().filter(|ch| ch.holder == holder).count() as u32
    }

    pub fn capacity(&self) -> u32 {
        self.slots.read().unwrap_or_else(|p| p.into_inner()).len() as u32
    }

    /// Serves the socket until `stop`: accepts clients and gives back the areas of those
    /// whose connection closed.
    /// `expect` is called with a client's thread id and cpu hint once the kernel has identified
    /// it and a client index is free, before its area is made ready and its welcome sent.
    pub fn run(&self, listener: &UnixListener, stop: &AtomicBool, expect: impl Fn(u32, u32)) {
        let mut open: Vec<(UnixStream, u32)> = Vec::new();
        // Connections whose hello has not come whole yet: each keeps what it sent so far
        // (read without waiting, as it comes), so a peer that stalls, or sends its hello a
        // byte at a time, delays no one else.
        let mut waiting: Vec<Waiting> = Vec::new();
        // After `accept` ran out of descriptors, the listener is left alone for a while
        // (it stays readable, and polling it would spin).
        let mut accept_after: Option<Instant> = None;
        while !stop.load(Ordering::Acquire) {
            let listen = accept_after.is_none_or(|t| Instant::now() >= t);
            let mut fds: Vec<nix::poll::PollFd<'_>> = Vec::with_capacity(open.len() + waiting.len() + 1);
            let events = if listen { nix::poll::PollFlags::POLLIN } else { nix::poll::PollFlags::empty() };
            fds.push(nix::poll::PollFd::new(listener.as_fd(), events));
            for s in open.iter().map(|(s, _)| s).chain(waiting.iter().map(|w| &w.stream)) {
                fds.push(nix::poll::PollFd::new(s.as_fd(), nix::poll::PollFlags::POLLIN));
            }
            let timeout: u16 = match accept_after {
                _ if listen => 100,
                Some(t) => u16::try_from(t.saturating_duration_since(Instant::now()).as_millis()).unwrap_or(ACCEPT_PAUSE_MS).clamp(1, ACCEPT_PAUSE_MS),
                None => ACCEPT_PAUSE_MS,
            };
            if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(timeout)).is_err() {
                continue;
            }
            let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
            drop(fds);
            let (opened, hello) = ready[1..].split_at(open.len());
            // Connections with something to say or closed: a client says nothing after its
            // hello, so anything readable is the end (or garbage, which ends it too).
            for i in (0..open.len()).rev() {
                if opened[i] {
                    let (s, c) = open.swap_remove(i);
                    let mut b = [0u8; 64];
                    let _ = (&s).read(&mut b);
                    self.close(c);
                }
            }
            for i in (0..waiting.len()).rev() {
                let step = if hello[i] { waiting[i].take() } else { Step::Wait };
                match step {
                    Step::Wait if waiting[i].since.elapsed() <= HELLO_WAIT => {}
                    Step::Wait | Step::Drop => {
                        debug!("channel client dropped: no whole hello");
                        waiting.swap_remove(i);
                    }
                    Step::Admit => {
                        let w = waiting.swap_remove(i);
                        match self.admit(&w.stream, w.said(), &expect) {
                            Ok(c) => open.push((w.stream, c)),
                            Err(e) => debug!("channel client refused: {e}"),
                        }
                    }
                }
            }
            if ready[0] && listen {
                accept_after = None;
                loop {
                    // Full of connections younger than `EVICT_AFTER`: the rest wait in the backlog.
                    let oldest = || waiting.iter().enumerate().min_by_key(|(_, w)| w.since).map(|(i, w)| (i, w.since.elapsed()));
                    if waiting.len() >= MAX_WAITING && oldest().is_none_or(|(_, waited)| waited < EVICT_AFTER) {
                        accept_after = Some(Instant::now() + Duration::from_millis(FULL_PAUSE_MS.into()));
                        break;
                    }
                    match listener.accept() {
                        Ok((stream, _)) => match Waiting::new(stream) {
                            Ok(w) => {
                                // Room made only for a connection that came.
                                if waiting.len() >= MAX_WAITING {
                                    if let Some((i, waited)) = oldest() {
                                        debug!("channel client dropped: no hello in {waited:?}, and {MAX_WAITING} connections wait");
                                        waiting.swap_remove(i);
                                    }
                                }
                                waiting.push(w);
                            }
                            Err(e) => debug!("channel client dropped: {e}"),
                        },
                        Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)) => {
                            static FULL: crate::service::Throttle = crate::service::Throttle::new();
                            if let Some(held) = FULL.allow(LOG_EVERY) {
                                warn!("cannot accept channel clients for now: {e} ({held} more such pauses since the last message)");
                            }
                            accept_after = Some(Instant::now() + Duration::from_millis(ACCEPT_PAUSE_MS.into()));
                            break;
                        }
                        Err(_) => break,
                    }
                }
            }
        }
        for (_, c) in open {
            self.close(c);
        }
    }

    /// An area for a new client: one made ahead if any is left (the janitor is told to make
    /// the next), else a new one.
    fn fresh_area(&self) -> io::Result<Fresh> {
        let taken = self.stock.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match taken {
            Some(fresh) => {
                self.low.notify_one();
                Ok(fresh)
            }
            None => make_area(self.buffer_size),
        }
    }

    /// Waits until an admission took an area from the stock, or `timeout` passed.
    pub fn wait_low(&self, timeout: Duration) {
        let stock = self.stock.lock().unwrap_or_else(|p| p.into_inner());
        if stock.len() >= STOCK {
            drop(self.low.wait_timeout(stock, timeout));
        }
    }

    /// Makes areas ahead until [`STOCK`] wait, at most a stock's worth per call; whether they
    /// do (a failure is left to the admission that needs an area: it makes its own, or
    /// refuses the client naming why). Called by the
    /// janitor, on whichever cpu is free, rather than by this thread after an admission,
    /// when the client just welcomed may be waiting for the cpu it runs on.
    pub fn restock(&self) -> bool {
        // At most a stock's worth per call: admissions taking areas as fast as they are made
        // must not keep the janitor from its other work.
        for _ in 0..STOCK {
            if self.stock.lock().unwrap_or_else(|p| p.into_inner()).len() >= STOCK {
                return true;
            }
            match make_area(self.buffer_size) {
                Ok(fresh) => self.stock.lock().unwrap_or_else(|p| p.into_inner()).push(fresh),
                Err(e) => {
                    debug!("cannot make a client area ahead: {e}");
                    return false;
                }
            }
        }
        self.stock.lock().unwrap_or_else(|p| p.into_inner()).len() >= STOCK
    }

    /// Frees index `c`. Its channel is let go later, by [`Channels::reap`]: unmapping an area
    /// costs tens of µs (its pages, the other cpus' TLBs), which would otherwise be spent
    /// while the process whose exit closed the connection is still exiting (this thread, woken
    /// by that exit, takes its cpu) and its parent waits for it.
    fn close(&self, c: u32) {
        let taken = {
            let mut t = self.slots.write().unwrap_or_else(|p| p.into_inner());
            t.get_mut(c as usize).and_then(Option::take)
        };
        if let Some(ch) = taken {
            self.closed.fetch_add(1, Ordering::Relaxed);
            let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
            if retired.len() < RETIRED_MAX {
                retired.push(ch);
            } else {
                // The janitor is behind (a flood of connections): unmap here, as before.
                drop(retired);
                drop(ch);
            }
        }
    }

    /// Lets go of the channels closed since the last call (an area is unmapped once no
    /// worker holds its channel either). The janitor calls it on every pass.
    pub fn reap(&self) {
        let retired = std::mem::take(&mut *self.retired.lock().unwrap_or_else(|p| p.into_inner()));
        drop(retired);
    }

    /// Sets up a client that just connected: `said` is its hello (whole, or at least a version
    /// other than ours), then who it is, its area. The answer (refusals included) goes back on
    /// `s`.
    fn admit(&self, s: &UnixStream, said: &[u8], expect: &impl Fn(u32, u32)) -> io::Result<u32> {
        s.set_nonblocking(false)?;
        s.set_write_timeout(Some(Duration::from_millis(500)))?;
        let refuse = |status: i32, e: io::Error| {
            let w = Welcome { version: PROTOCOL_VERSION, status, ..Welcome::default() };
            let _ = send_welcome(s, &w, None);
            e
        };
        let version = said.get(..4).map_or(0, |v| u32::from_le_bytes([v[0], v[1], v[2], v[3]]));
        if version != PROTOCOL_VERSION {
            return Err(refuse(libc::EPROTO, io::Error::other(format!("protocol {version} (ours is {PROTOCOL_VERSION})"))));
        }
        let b: [u8; HELLO_SIZE] = said.try_into().map_err(|_| io::Error::other("a hello cut short"))?;
        let hello = Hello::from_bytes(b);
        let peer = rustix::net::sockopt::socket_peercred(s).map_err(io::Error::from)?;
        let pid = peer.pid.as_raw_nonzero().get() as u32;
        let who = identify(pid, hello.tid, s.as_fd(), &self.known).map_err(|e| refuse(libc::EACCES, e))?;
        // Only this thread fills slots, so a free one now is still free below; a refused
        // client takes no area made ahead.
        if self.connected() >= self.capacity() {
            return Err(refuse(libc::EBUSY, io::Error::other("every client index is taken")));
        }
        // One process (a thread per connection, or one thread connecting again and again)
        // takes at most half the areas: the pool's other processes keep the user-level path
        // (its threads past that use the kernel's, as every thread does once the pool's areas
        // are all taken).
        // The pidfd's inode tells this process from a later one of the same pid (pidfs,
        // Linux 6.9+; older kernels give every pidfd one inode, and the pid alone tells).
        let incarnation = rustix::fs::fstat(&who.pidfd).map_or(0, |st| st.st_ino);
        let holder = super::owners::Holder { owner: who.seen.owner, incarnation };
        let most = per_process_limit(self.capacity());
        if self.held_by(holder) >= most {
            return Err(refuse(libc::EBUSY, io::Error::other(format!("process {pid} holds {most} client areas already"))));
        }
        // A client the kernel identified: its first request is worth a worker's polling.
        expect(hello.tid, hello.cpu);
        let (memfd, map, area) = self.fresh_area().map_err(|e| refuse(libc::ENOMEM, e))?;
        let conn = s.as_fd().try_clone_to_owned().map_err(|e| refuse(libc::EMFILE, e))?;
        let Identity { seen: Seen { ctx, creds, owner: _, mounts }, pidfd } = who;
        let creds_digest = digest(&creds);
        let channel = Arc::new(Channel { area, map, ctx, creds, holder, mounts: RwLock::new(mounts), reread: Mutex::new(None), reach: Mutex::new(Vec::new()), pid, pidfd, served: AtomicU64::new(0), posts: Mutex::new(0), admitted: Instant::now(), conn });
        let c = {
            let mut t = self.slots.write().unwrap_or_else(|p| p.into_inner());
            let Some(c) = t.iter().position(Option::is_none) else {
                drop(t);
                return Err(refuse(libc::EBUSY, io::Error::other("every client index is taken")));
            };
            t[c] = Some(channel);
            c as u32
        };
        let w = Welcome { version: PROTOCOL_VERSION, status: 0, client: c, shmid: self.shmid, buffer_size: self.buffer_size, creds: creds_digest };
        if let Err(e) = send_welcome(s, &w, Some(&memfd)) {
            self.close(c);
            return Err(e);
        }

        debug!("client {c}: pid {pid} thread {} uid {} gid {}", hello.tid, ctx.uid, ctx.gid);
        Ok(c)
    }
}

/// Client areas one process may hold out of `capacity`: half, but never fewer than
/// [`MIN_PER_PROCESS`] (all of a pool that has no more).
pub fn per_process_limit(capacity: u32) -> u32 {
    (capacity / 2).max(MIN_PER_PROCESS.min(capacity))
}

/// Client areas any process may hold, however few the pool has.
const MIN_PER_PROCESS: u32 = 4;

/// A digest of credentials (see `Welcome::creds`).
fn digest(c: &Creds) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (c.uid, c.gid, &c.groups, c.caps, format!("{:?}", c.userns)).hash(&mut h);
    h.finish()
}

/// A connection not yet admitted, and what it sent of its hello so far.
struct Waiting {
    stream: UnixStream,
    since: Instant,
    hello: [u8; HELLO_SIZE],
    got: usize,
    /// Wake-ups that brought nothing.
    idle_wakes: u8,
}

/// What to do with a waiting connection after reading what it sent.
enum Step {
    /// Its hello is whole, or names a protocol other than ours (refused by name).
    Admit,
    /// Not all of it yet.
    Wait,
    /// Closed, failed, or waking the service for nothing.
    Drop,
}

impl Waiting {
    fn new(stream: UnixStream) -> io::Result<Waiting> {
        stream.set_nonblocking(true)?;
        Ok(Waiting { stream, since: Instant::now(), hello: [0; HELLO_SIZE], got: 0, idle_wakes: 0 })
    }

    /// Reads what the connection has of its hello (never past it: anything after is the
    /// admitted connection's, whose every byte ends it).
    fn take(&mut self) -> Step {
        match (&self.stream).read(&mut self.hello[self.got..]) {
            Ok(0) => Step::Drop,
            Ok(n) => {
                self.got += n;
                let version = self.got >= 4 && u32::from_le_bytes([self.hello[0], self.hello[1], self.hello[2], self.hello[3]]) != PROTOCOL_VERSION;
                if self.got == HELLO_SIZE || version {
                    Step::Admit
                } else {
                    Step::Wait
                }
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {
                self.idle_wakes += 1;
                if self.idle_wakes >= IDLE_WAKES_MAX {
                    Step::Drop
                } else {
                    Step::Wait
                }
            }
            Err(_) => Step::Drop,
        }
    }

    /// The hello's bytes read so far.
    fn said(&self) -> &[u8] {
        &self.hello[..self.got]
    }
}

/// Who a connected process is: what identifying it found, and the pidfd that holds it.
struct Identity {
    seen: Seen,
    pidfd: OwnedFd,
}

/// What identifying a process finds.
struct Seen {
    ctx: Context,
    creds: Creds,
    owner: u64,
    mounts: Vec<u64>,
}

/// The filesystem credentials of thread `tid` of process `pid` (the whole process when the
/// thread is not one of its own), read while a pidfd holds the process: if it exited
/// meanwhile, its pid may name another process by now, and it is refused. The kernel is
/// asked through the pidfd and the connection `conn` where it can be; `/proc` is read where
/// it cannot (an older kernel, a process in another pid namespace, a mount namespace not
/// seen lately).
fn identify(pid: u32, tid: u32, conn: BorrowedFd<'_>, known: &KnownMounts) -> io::Result<Identity> {
    let raw = rustix::process::Pid::from_raw(pid as i32).ok_or_else(|| io::Error::other("no peer process"))?;
    let pidfd = rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty()).map_err(io::Error::from)?;
    // Only a process of the pool's IPC namespace can attach the segment: any other (a user of
    // the host reaching the socket) is refused before it costs the pool an identification
    // and an area (the check below that the process lives covers the /proc fallback).
    // The namespace of the thread that says it connects (it attaches the segment; a process's
    // threads may be in different IPC namespaces), if it is one of the process's own.
    if let Some(ours) = own_namespace(peer::Namespace::Ipc) {
        let of = |path: String| rustix::fs::stat(path.as_str()).ok().map(|st| (st.st_dev, st.st_ino));
        let theirs = of(format!("/proc/{pid}/task/{tid}/ns/ipc")).or_else(|| of(format!("/proc/{pid}/ns/ipc")));
        if theirs != Some(ours) {
            return Err(io::Error::other(format!("process {pid} is not in the pool's IPC namespace")));
        }
    }
    let seen = match ask_kernel(pid, tid, &pidfd, conn, known)? {
        Some(seen) => seen,
        None => read_proc(pid, tid)?,
    };
    if exited(&pidfd) {
        return Err(io::Error::other(format!("process {pid} exited while it was identified")));
    }
    Ok(Identity { seen, pidfd })
}

/// [`identify`] through the pidfd and the connection; `None` where the kernel lacks a call.
/// The ids are the thread's as the kernel has them now; the groups are those the connecting
/// thread had when it connected (the library connects from the thread it names).
fn ask_kernel(pid: u32, tid: u32, pidfd: &OwnedFd, conn: BorrowedFd<'_>, known: &KnownMounts) -> io::Result<Option<Seen>> {
    // The thread named, if it is one of the process's own; else the process's main thread.
    let thread = if tid == pid { None } else { peer::open_thread(tid).ok() };
    let mut who = None;
    if let Some(t) = &thread {
        match peer::info(t.as_fd())? {
            None => return Ok(None),
            Some(i) if i.tgid == pid => who = Some((i, tid)),
            Some(_) => {}
        }
    }
    let (info, named) = match who {
        Some(w) => w,
        None => match peer::info(pidfd.as_fd())? {
            None => return Ok(None),
            Some(i) if i.tgid == pid => (i, pid),
            Some(_) => return Err(io::Error::other(format!("process {pid} is not its own thread group"))),
        },
    };
    let caps = peer::effective_caps(named)?;
    // `capget` named the thread by number: it is the one whose pidfd is held only if that
    // thread still runs (the process's main thread is checked with the process).
    if named != pid && thread.as_ref().is_none_or(exited) {
        return Err(io::Error::other(format!("thread {named} of process {pid} exited while it was identified")));
    }
    let groups = peer::groups(conn)?;
    let Some(pid_ns) = peer::namespace(pidfd.as_fd(), peer::Namespace::Pid)? else { return Ok(None) };
    let (dev, ino) = peer::identity(&pid_ns)?;
    let owner = if own_namespace(peer::Namespace::Pid) == Some((dev, ino)) { polytropon_ipc::args::Owner { ns: ino as u32, pid }.encode() } else { super::owners::owner_of(pid).unwrap_or(0) };
    let Some(mount_ns) = peer::namespace(pidfd.as_fd(), peer::Namespace::Mount)? else { return Ok(None) };
    let Some(mount_ns) = peer::mount_ns_id(&mount_ns)? else { return Ok(None) };
    let mounts = match known.get(mount_ns) {
        Some(m) => m,
        None => {
            let m = mount_devices(&proc_text(&format!("/proc/{pid}/mountinfo"))?);
            known.put(mount_ns, &m);
            m
        }
    };
    let Some(user_ns) = peer::namespace(pidfd.as_fd(), peer::Namespace::User)? else { return Ok(None) };
    let userns = if own_namespace(peer::Namespace::User) == Some(peer::identity(&user_ns)?) { None } else { id_maps(pid)? };
    let (uid, gid) = (info.fsuid, info.fsgid);
    Ok(Some(Seen { ctx: Context { uid, gid, pid: pid as i32 }, creds: Creds { uid, gid, groups, caps, userns }, owner, mounts }))
}

/// The identity (device, inode) of the service's own namespace `which`, read once.
fn own_namespace(which: peer::Namespace) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    type Cell = std::sync::OnceLock<Option<(u64, u64)>>;
    static OWN: [Cell; 4] = [Cell::new(), Cell::new(), Cell::new(), Cell::new()];
    let (cell, link) = match which {
        peer::Namespace::Mount => (&OWN[0], "mnt"),
        peer::Namespace::Pid => (&OWN[1], "pid"),
        peer::Namespace::User => (&OWN[2], "user"),
        peer::Namespace::Ipc => (&OWN[3], "ipc"),
    };
    *cell.get_or_init(|| std::fs::metadata(format!("/proc/self/ns/{link}")).ok().map(|m| (m.dev(), m.ino())))
}

/// [`identify`] from `/proc` text.
fn read_proc(pid: u32, tid: u32) -> io::Result<Seen> {
    let status = proc_text(&format!("/proc/{pid}/task/{tid}/status"))
        .ok()
        .filter(|s| field(s, "Tgid:").and_then(|v| v.parse::<u32>().ok()) == Some(pid))
        .map_or_else(|| proc_text(&format!("/proc/{pid}/status")), Ok)?;
    // The process's own status is the one just read when the thread is its main one.
    let owner = if tid == pid { super::owners::owner_in(pid, &status) } else { super::owners::owner_of(pid) }.unwrap_or(0);
    let mounts = mount_devices(&proc_text(&format!("/proc/{pid}/mountinfo"))?);
    let userns = user_namespace(pid)?;
    // Real, effective, saved and filesystem ids: the filesystem ones decide access.
    let fs_id = |name: &str| field(&status, name).and_then(|v| v.split_whitespace().nth(3)).and_then(|v| v.parse::<u32>().ok());
    let (Some(uid), Some(gid)) = (fs_id("Uid:"), fs_id("Gid:")) else { return Err(io::Error::other(format!("no credentials for process {pid}"))) };
    let groups = peer::groups_in(&status);
    let caps = field(&status, "CapEff:").and_then(|c| u64::from_str_radix(c, 16).ok()).ok_or_else(|| io::Error::other(format!("no capabilities for process {pid}")))?;
    Ok(Seen { ctx: Context { uid, gid, pid: pid as i32 }, creds: Creds { uid, gid, groups, caps, userns }, owner, mounts })
}

/// The mounts of the mount namespaces clients came from lately, by the namespace's unique
/// id: a process's mounts are read once per namespace, not once per process (a shell loop
/// starts a process a millisecond). An entry is forgotten after [`KnownMounts::FOR`] and
/// whenever this service mounts or unmounts an instance, so a namespace is never taken to
/// see one of its instances it does not see, past that moment; one that gained a mount since
/// is read again when a request names it (`Channel::sees`).
#[derive(Debug, Default)]
pub struct KnownMounts {
    by_ns: Mutex<rustc_hash::FxHashMap<u64, NsMounts>>,
}

/// What [`KnownMounts`] holds of a namespace: its mounts' devices, when they were read, and
/// [`INSTANCES_CHANGED`] then.
#[derive(Debug)]
struct NsMounts {
    devices: Vec<u64>,
    read: Instant,
    epoch: u64,
}

/// Bumped whenever an instance is mounted or unmounted: every remembered namespace's
/// mounts are read again.
static INSTANCES_CHANGED: AtomicU64 = AtomicU64::new(0);

/// Says that this service's instances changed (see [`KnownMounts`]).
pub fn instances_changed() {
    INSTANCES_CHANGED.fetch_add(1, Ordering::AcqRel);
}

impl KnownMounts {
    /// How long a namespace's mounts are taken as read.
    const FOR: Duration = Duration::from_secs(1);
    /// Namespaces remembered at most (past it, all are forgotten).
    const MAX: usize = 1024;

    fn get(&self, ns: u64) -> Option<Vec<u64>> {
        let t = self.by_ns.lock().unwrap_or_else(|p| p.into_inner());
        let m = t.get(&ns)?;
        (m.read.elapsed() < Self::FOR && m.epoch == INSTANCES_CHANGED.load(Ordering::Acquire)).then(|| m.devices.clone())
    }

    fn put(&self, ns: u64, mounts: &[u64]) {
        let mut t = self.by_ns.lock().unwrap_or_else(|p| p.into_inner());
        if t.len() >= Self::MAX {
            t.clear();
        }
        t.insert(ns, NsMounts { devices: mounts.to_vec(), read: Instant::now(), epoch: INSTANCES_CHANGED.load(Ordering::Acquire) });
    }
}

/// The user namespace of process `pid` when it is not the service's own: its id maps as the
/// service reads them (`None` for the service's own namespace, told by the namespace's
/// identity, or for identity maps).
fn user_namespace(pid: u32) -> io::Result<Option<UserNs>> {
    if crate::pool::ns::shares_user_namespace(pid) == Some(true) {
        return Ok(None);
    }
    id_maps(pid)
}

/// The id maps of process `pid`'s user namespace (`None` for identity maps).
fn id_maps(pid: u32) -> io::Result<Option<UserNs>> {
    let map = |which: &str| -> io::Result<Vec<IdRange>> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/{which}"))?;
        UserNs::parse_map(&text).ok_or_else(|| io::Error::other(format!("process {pid}'s {which} cannot be read")))
    };
    let (uids, gids) = (map("uid_map")?, map("gid_map")?);
    Ok((!UserNs::is_identity(&uids, &gids)).then_some(UserNs { uids, gids }))
}

/// The devices (`major:minor`, the third field) of the mounts a `mountinfo` lists, sorted.
fn mount_devices(mountinfo: &str) -> Vec<u64> {
    let mut out: Vec<u64> = mountinfo
        .lines()
        .filter_map(|l| {
            let (major, minor) = l.split_whitespace().nth(2)?.split_once(':')?;
            Some(libc::makedev(major.parse().ok()?, minor.parse().ok()?))
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The value of the `/proc/PID/status` line `name`.
/// A `/proc` file's text, read in as few calls as its size allows (`read_to_string` on a
/// file whose size the kernel does not tell grows its buffer from 32 bytes, a call each).
pub(super) fn proc_text(path: &str) -> io::Result<String> {
    let mut s = String::with_capacity(8192);
    std::fs::File::open(path)?.read_to_string(&mut s)?;
    Ok(s)
}

fn field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim)
}

/// Whether the process a pidfd refers to has exited (the pidfd is then readable).
fn exited(pidfd: &OwnedFd) -> bool {
    let mut fds = [nix::poll::PollFd::new(pidfd.as_fd(), nix::poll::PollFlags::POLLIN)];
    matches!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO), Ok(n) if n > 0)
}

/// Bytes at the start of a client area made ready with it (see `make_area`).
const PREPARED: usize = 16 << 10;

/// A fresh client area: a memfd sealed at its size (so the client cannot shrink it under
/// the service's mapping), mapped here.
fn make_area(buffer_size: u64) -> io::Result<(OwnedFd, Mapping, Area)> {
    use rustix::fs::{MemfdFlags, SealFlags};
    let len = Area::size(buffer_size).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    let fd = rustix::fs::memfd_create("polytropon-client", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).map_err(io::Error::from)?;
    rustix::fs::ftruncate(&fd, len as u64).map_err(io::Error::from)?;
    rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL).map_err(io::Error::from)?;
    // SAFETY: a new shared mapping of the whole memfd (sized above, sealed against
    // shrinking), owned by the returned `Mapping`.
    let ptr = unsafe { rustix::mm::mmap(std::ptr::null_mut(), len, rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE, rustix::mm::MapFlags::SHARED, &fd, 0) }.map_err(io::Error::from)?;
    let map = Mapping { ptr, len };
    // The pages every request touches (the header, the ring of posts, the start of the data)
    // are made now, while the client is still starting, not at its first request; a kernel
    // without MADV_POPULATE_WRITE (before 5.14) makes them on first touch, as before.
    // SAFETY: advice on the start of the mapping just made (at most its length); populating
    // writes nothing a reader could see but zeroes.
    let _ = unsafe { rustix::mm::madvise(ptr, len.min(PREPARED), rustix::mm::Advice::LinuxPopulateWrite) };
    // SAFETY: page-aligned, `len` = `Area::size(buffer_size)` bytes, mapped as long as `map`
    // (which the `Channel` keeps beside the `Area`).
    let area = unsafe { Area::new(ptr.cast(), buffer_size) };
    Ok((fd, map, area))
}

/// Sends the welcome, with the client's area (`fd`) and then the change table, if any.
fn send_welcome(s: &UnixStream, w: &Welcome, fd: Option<&OwnedFd>) -> io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let bytes = w.to_bytes();
    let iov = [io::IoSlice::new(&bytes)];
    let mut raw = Vec::with_capacity(2);
    if let Some(area) = fd {
        raw.push(area.as_raw_fd());
        if let Some(t) = super::changes::table() {
            raw.push(t.fd().as_raw_fd());
        }
    }
    let fds = raw.as_slice();
    let cmsg = [ControlMessage::ScmRights(fds)];
    let control: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &cmsg };
    let n = sendmsg::<()>(s.as_raw_fd(), &iov, control, MsgFlags::MSG_NOSIGNAL, None).map_err(io::Error::from)?;
    if n != bytes.len() {
        return Err(io::Error::other("short welcome"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    #[test]
    fn the_kernel_and_proc_identify_a_process_alike() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().expect("pair");
        let pid = std::process::id();
        let pidfd = rustix::process::pidfd_open(rustix::process::getpid(), rustix::process::PidfdFlags::empty()).expect("pidfd");
        let known = super::KnownMounts::default();
        let Some(asked) = super::ask_kernel(pid, pid, &pidfd, a.as_fd(), &known).expect("ask") else {
            return; // a kernel without PIDFD_GET_INFO: /proc alone serves
        };
        let read = super::read_proc(pid, pid).expect("proc");
        assert_eq!((asked.ctx.uid, asked.ctx.gid, asked.ctx.pid), (read.ctx.uid, read.ctx.gid, read.ctx.pid));
        let sorted = |mut g: Vec<u32>| {
            g.sort_unstable();
            g
        };
        assert_eq!(sorted(asked.creds.groups.clone()), sorted(read.creds.groups.clone()));
        assert_eq!((asked.creds.caps, asked.creds.userns.is_some(), asked.owner, &asked.mounts), (read.creds.caps, read.creds.userns.is_some(), read.owner, &read.mounts));
        // A thread of this process named: its own ids; a thread of no process: the process's.
        let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
        let thread = super::ask_kernel(pid, tid, &pidfd, a.as_fd(), &known).expect("thread").expect("supported");
        assert_eq!(thread.ctx.uid, read.ctx.uid);
        let stranger = super::ask_kernel(pid, 1, &pidfd, a.as_fd(), &known).expect("pid 1 named").expect("supported");
        assert_eq!((stranger.ctx.uid, stranger.creds.caps), (read.ctx.uid, read.creds.caps), "another process's thread is never read");
    }

    #[test]
    fn a_namespace_s_mounts_are_read_again_after_a_mount_or_unmount() {
        let known = super::KnownMounts::default();
        known.put(7, &[1, 2]);
        assert_eq!(known.get(7), Some(vec![1, 2]));
        assert_eq!(known.get(8), None);
        super::instances_changed();
        assert_eq!(known.get(7), None, "an instance mounted or unmounted since");
    }

    #[test]
    fn mount_points_are_read_with_their_escapes_undone() {
        let info = "36 25 0:21 / /mnt/a\\040b rw - tmpfs tmpfs rw\n37 25 8:1 / / rw - ext4 /dev/sda1 rw\n38 25 0:21 /x /srv/c rw - tmpfs tmpfs rw\n";
        assert_eq!(super::mount_points(info, libc::makedev(0, 21)), vec![b"/mnt/a b".to_vec(), b"/srv/c".to_vec()]);
        assert_eq!(super::mount_points(info, libc::makedev(8, 1)), vec![b"/".to_vec()]);
        assert!(super::mount_points(info, libc::makedev(9, 9)).is_empty());
        assert_eq!(super::unescape_octal(b"a\\134b\\9"), b"a\\b\\9".to_vec());
    }

    #[test]
    fn mount_devices_are_read_from_the_third_field() {
        let info = "22 1 0:21 / / rw - ext4 /dev/root rw\n35 22 8:1 / /boot rw - vfat /dev/sda1 rw\n40 22 0:21 /x /y rw - ext4 /dev/root rw\nbroken line\n";
        assert_eq!(super::mount_devices(info), vec![libc::makedev(0, 21), libc::makedev(8, 1)]);
    }

    #[test]
    fn areas_made_ahead_are_fresh_each_and_taking_one_calls_for_the_next() {
        use std::os::unix::fs::MetadataExt;
        use std::sync::atomic::Ordering;
        use std::sync::Arc;
        /// Removed however the test ends.
        struct Dir(std::path::PathBuf);
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let dir = Dir(std::env::temp_dir().join(format!("ptn-stock-{}", std::process::id())));
        std::fs::create_dir_all(&dir.0).expect("dir");
        let (ch, _listener) = super::Channels::bind(&dir.0.join("channel.sock"), 8, 4096, -1).expect("bind");
        assert!(ch.restock(), "the stock fills");
        assert_eq!(ch.stock.lock().expect("stock").len(), super::STOCK);
        let inode = |fd: &std::os::fd::OwnedFd| std::fs::File::from(fd.try_clone().expect("dup")).metadata().expect("stat").ino();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..super::STOCK + 2 {
            // Made ahead or not, each client gets a memory object and a mapping of its own.
            let (fd, map, area) = ch.fresh_area().expect("area");
            assert!(seen.insert((inode(&fd), map.ptr as usize)), "an area given twice");
            assert_eq!(area.header() as *const _ as usize, map.ptr as usize);
        }
        assert!(ch.stock.lock().expect("stock").is_empty());
        // The janitor waits for a taken area, and is not kept waiting for its 50 ms.
        assert!(ch.restock());
        let waiting = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let waiter = std::thread::spawn({
            let (ch, waiting) = (ch.clone(), waiting.clone());
            move || {
                let t = std::time::Instant::now();
                waiting.store(true, Ordering::Release);
                ch.wait_low(std::time::Duration::from_secs(5));
                t.elapsed()
            }
        });
        while !waiting.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        let _taken = ch.fresh_area().expect("area");
        let waited = waiter.join().expect("waiter");
        // It waited (the stock was full), and the taking, not the timeout, ended the wait.
        assert!(waited >= std::time::Duration::from_millis(90), "did not wait: {waited:?}");
        assert!(waited < std::time::Duration::from_secs(4), "not woken by the taking: {waited:?}");
    }
}
