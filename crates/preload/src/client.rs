//! One client of the pool's segment per thread, attached lazily; a child after fork attaches
//! its own instead of reusing its parent's.

use std::cell::RefCell;
use std::ffi::c_int;
use std::sync::atomic::{AtomicI32, Ordering};


use polytropon_ipc::client::{now_ms, Client, Reply};
use polytropon_ipc::Descriptor;

use crate::config::{self, GENERATION};
use crate::outcome::{Served, Unserved};

/// A thread's client, let go when the thread ends. At the end of the process's main thread
/// (its exit: glibc runs thread-local destructors first) nothing is undone by hand: the
/// kernel unmaps the area and closes the connection as the process goes, in one sweep with
/// the rest of its memory, instead of three unmappings and a close (which wakes the service
/// while the process is still exiting) on the way out of every short process.
struct Held(RefCell<Option<(Client, u32)>>);

impl std::ops::Deref for Held {
    type Target = RefCell<Option<(Client, u32)>>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // SAFETY: getpid and gettid cannot fail.
        let main = unsafe { libc::getpid() == libc::gettid() };
        if let Some(c) = self.0.get_mut().take() {
            if main {
                std::mem::forget(c);
            }
        }
    }
}

thread_local! {
    static CLIENT: Held = const { Held(RefCell::new(None)) };
    /// After every client area was found taken: no new attempt before this instant (ms of
    /// the monotonic clock), so a thread that cannot attach pays the attempt (a few system
    /// calls) once in a while, not on every call.
    static RETRY_AT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How long a thread that found no free client area waits before it tries again.
const RETRY_MS: u64 = 100;

/// Queues a request that needs no answer (a release).
pub fn post(d: Descriptor) -> Served<()> {
    with_client(|client| client.post(d).map_err(Unserved::Errno))
}

/// Sends one request and waits for its reply; reply data, if any, goes to `out`.
/// Errors are errno values, or [`Unserved::Kernel`].
pub fn call(d: Descriptor, data: &[u8], out: Option<&mut [u8]>) -> Served<Reply> {
    call_parts(d, &[data], out)
}

/// As [`call`], with the request data in parts laid out one after the other.
pub fn call_parts(d: Descriptor, parts: &[&[u8]], out: Option<&mut [u8]>) -> Served<Reply> {
    with_client(|client| {
        let r = client.call_parts(d, parts)?;
        if let Some(out) = out {
            client.data(out);
        }
        Ok(r)
    })
}

/// The descriptor the service just sent on this thread's connection (`OPEN_PASSED`).
pub fn recv_fd() -> Option<libc::c_int> {
    CLIENT.try_with(|c| c.try_borrow().ok().and_then(|c| c.as_ref().and_then(|(client, _)| client.recv_fd()))).ok().flatten()
}

/// Sends a read (`d`) and copies what the answer holds, its value in bytes (at most
/// `out.len()`), into `out`: never the whole buffer when the file had less (a 1 MiB read of
/// a 64 KiB file copied 1 MiB).
///
/// With the count, where the file ended when the read stopped there, and under which slot
/// word that holds (see `polytropon_ipc::READ_EOF`).
pub fn call_read(d: Descriptor, out: &mut [u8]) -> Served<(usize, Option<crate::files::Known>)> {
    with_client(|client| {
        let r = client.call(d, &[])?;
        let n = usize::try_from(r.value).unwrap_or(0).min(out.len());
        client.data(&mut out[..n]);
        let end = polytropon_ipc::args::ReadEnd::decode(&r.aux)
            .zip(client.changes())
            .map(|(w, v)| crate::files::Known::new(v.id(), w.slot, w.word, d.offset + n as u64, Vec::new().into()));
        Ok((n, end))
    })
}

/// The change table's identity and the word of slot `slot` now, as this thread's client
/// sees them (`None`: no table, or no such slot).
pub fn change_word(slot: u64) -> Option<(u64, u64)> {
    with_client(|client| Ok(client.changes().and_then(|v| Some((v.id(), v.load(slot)?))))).ok().flatten()
}

/// The service's digest of this thread's credentials (see `polytropon_ipc::Welcome::creds`),
/// connecting again first if they changed.
pub fn creds() -> Option<u64> {
    with_client(|client| Ok(client.creds())).ok()
}

/// The change table's identity, as this thread's client sees it.
pub fn change_table() -> Option<u64> {
    CLIENT.try_with(|c| c.try_borrow().ok().and_then(|c| c.as_ref().and_then(|(client, _)| client.changes().map(|v| v.id())))).ok().flatten()
}

/// Sends a large write while still copying its data in (see `Client::call_streamed`).
pub fn call_streamed(d: Descriptor, data: &[u8], piece: usize) -> Served<Reply> {
    with_client(|client| client.call_streamed(d, data, piece))
}

/// Copies the data of this thread's last reply into `out`.
pub fn reply_data(out: &mut [u8]) {
    let _ = CLIENT.try_with(|c| {
        if let Ok(c) = c.try_borrow() {
            if let Some((client, _)) = c.as_ref() {
                client.data(out);
            }
        }
    });
}

/// Set once the segment refused this process for good (its user may not attach it, or it is
/// gone or of another protocol version): every call then takes the kernel path, which
/// serves it correctly (and enforces permissions for users the segment is not open to).
static REFUSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The segment of the service this process last reached (-1: none yet). Another one means
/// the service died and a successor serves the pool now.
static SEGMENT: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// Set once this process saw its service die: from then on, failing to attach means "no
/// service yet" (EIO, tried again on the next call), never "refused for good".
static SERVICE_DIED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The connections' descriptors of this process's clients, one slot per client: a
/// descriptor, or [`FREE`], [`CONNECTING`], [`GONE`]. The program never sees these numbers as
/// its own: `close` of one fails, and before `dup2` onto one or `close_range` over one the
/// connection moves to another number (or, when none is left, is marked gone and every
/// thread connects again).
static SOCKETS: [AtomicI32; MAX_SOCKETS] = [const { AtomicI32::new(FREE) }; MAX_SOCKETS];
const MAX_SOCKETS: usize = 256;
/// Slots below this index have been used (so `close` looks at a few, not all 256).
static SOCKETS_USED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
const FREE: c_int = -1;
const CONNECTING: c_int = -2;
/// Closed under its client by the program (`closefrom`): the client must not close it again.
const GONE: c_int = -3;
/// As the ipc crate's: the lowest number a connection takes.
const SOCKET_MIN: c_int = 512;

/// Whether `fd` is the descriptor of one of this process's connections.
pub fn socket_in_the_way(fd: c_int) -> bool {
    fd >= 0 && used_sockets().iter().any(|s| s.load(Ordering::Acquire) == fd)
}

fn used_sockets() -> &'static [AtomicI32] {
    &SOCKETS[..SOCKETS_USED.load(Ordering::Acquire).min(MAX_SOCKETS)]
}

/// Moves this process's connections off the numbers `first..=last`, which the program is
/// about to take or close: above `last`, or below `first` when `last` is the highest; a
/// connection with nowhere to go is left to the kernel, and its thread connects again.
pub fn move_sockets(first: c_int, last: c_int) {
    for slot in used_sockets() {
        let fd = slot.load(Ordering::Acquire);
        if fd < 0 || fd < first || fd > last {
            continue;
        }
        let min = if last == c_int::MAX { 0 } else { last.saturating_add(1).max(SOCKET_MIN) };
        // SAFETY: duplicating our own connection's descriptor; integer arguments only.
        let moved = unsafe { crate::real::fcntl(fd, libc::F_DUPFD_CLOEXEC, min as libc::c_ulong) };
        let usable = moved >= 0 && (moved < first || moved > last);
        if usable && slot.compare_exchange(fd, moved, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            continue;
        }
        if moved >= 0 {
            // SAFETY: closing the duplicate just made (unusable, or the slot changed meanwhile).
            unsafe { libc::syscall(libc::SYS_close, moved) };
        }
        if slot.compare_exchange(fd, GONE, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            GENERATION.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// A free slot of [`SOCKETS`], taken (marked [`CONNECTING`]).
fn claim_socket_slot() -> Option<(usize, &'static AtomicI32)> {
    SOCKETS.iter().enumerate().find(|(_, s)| s.compare_exchange(FREE, CONNECTING, Ordering::AcqRel, Ordering::Acquire).is_ok()).inspect(|(i, _)| {
        SOCKETS_USED.fetch_max(i + 1, Ordering::AcqRel);
    })
}

/// The connection opened when the library was loaded, whose welcome is not taken yet: its
/// slot in [`SOCKETS`] plus one (0: none), the thread that said hello on it, and the
/// [`GENERATION`] it was opened in. See [`connect_early`].
static EARLY_SLOT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static EARLY_TID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
static EARLY_GENERATION: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Connects to the pool's channel and says hello as the library is loaded, without waiting
/// for the welcome, in a process that will likely call on a mount soon (see
/// `Config::likely_used`; `args` are its arguments): the service identifies the process and
/// makes its area while the program starts (libc's and the locale's set-up: about 0.2 ms for
/// `cat`), and the first call that needs the service finds the welcome waiting instead of
/// waiting for it. Other processes (and those not started for a pool) connect on their first
/// such call, if any: a connection costs a process that never uses it about 0.1 ms here.
pub fn connect_early<'a>(args: impl Iterator<Item = &'a [u8]>) {
    let Some(cfg) = config::get() else { return };
    let mut cwd = [0u8; config::CWD_MAX];
    let len = config::cwd(&mut cwd);
    if !cfg.likely_used(&cwd[..len], args) {
        return;
    }
    let Some((i, slot)) = claim_socket_slot() else { return };
    match Client::begin(&cfg.channel) {
        Ok(fd) => {
            slot.store(fd, Ordering::Release);
            // SAFETY: gettid cannot fail.
            EARLY_TID.store(unsafe { libc::gettid() } as u32, Ordering::Relaxed);
            EARLY_GENERATION.store(GENERATION.load(Ordering::Acquire), Ordering::Relaxed);
            EARLY_SLOT.store(i + 1, Ordering::Release);
            // The hello woke the service's channel thread on this very cpu (a socket's
            // wake-up asks for the waker's cpu), where it would wait until this process
            // blocks, which is when its first call needs the welcome: let it make the welcome
            // now, while the program still has its own start-up to do.
            // SAFETY: sched_yield has no preconditions.
            unsafe { libc::sched_yield() };
        }
        // No service (yet), or none reachable: the first call finds out for itself.
        Err(_) => slot.store(FREE, Ordering::Release),
    }
}

/// The early connection (see [`connect_early`]) for thread `tid` in generation
/// `generation`: its slot, holding its descriptor. One made in another generation (a forked
/// child's copy of its parent's, or one made under credentials the process has given up)
/// is closed here; one another thread said hello on is left for that thread.
fn take_early(tid: u32, generation: u32) -> Option<&'static AtomicI32> {
    let i = EARLY_SLOT.swap(0, Ordering::AcqRel);
    let slot = SOCKETS.get(i.checked_sub(1)?)?;
    if EARLY_GENERATION.load(Ordering::Relaxed) == generation && EARLY_TID.load(Ordering::Relaxed) != tid {
        EARLY_SLOT.store(i, Ordering::Release);
        return None;
    }
    let fd = slot.load(Ordering::Acquire);
    if fd < 0 {
        // Closed under us by the program (`closefrom`): nothing to take.
        slot.store(FREE, Ordering::Release);
        return None;
    }
    if EARLY_GENERATION.load(Ordering::Relaxed) != generation {
        if slot.compare_exchange(fd, FREE, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            // SAFETY: this process's copy of the early connection, which nothing else uses;
            // the raw call, as `close` is this library's hook.
            unsafe { libc::syscall(libc::SYS_close, fd) };
        }
        return None;
    }
    Some(slot)
}

/// Connects a client to the pool's channel socket (or takes the welcome of the connection
/// made early, when it is this thread's). Reaching a successor of the service this process
/// used before orphans every file opened through the old one: its handles mean nothing to
/// the new service.
fn attach(channel: &std::ffi::CStr, tid: u32, generation: u32) -> Result<Client, c_int> {
    let died = |e: c_int| if SERVICE_DIED.load(Ordering::Acquire) { libc::EIO } else { e };
    let connected = if let Some(s) = take_early(tid, generation) {
        Client::finish(s.load(Ordering::Acquire), tid, Some(s)).inspect_err(|_| s.store(FREE, Ordering::Release))
    } else {
        match claim_socket_slot() {
            Some((_, s)) => Client::connect_in(channel, tid, s).inspect_err(|_| s.store(FREE, Ordering::Release)),
            None => Client::connect(channel, tid),
        }
    };
    let client = connected.map_err(|e| match e {
        // The segment it named says its service is gone.
        libc::ENOTCONN => {
            SERVICE_DIED.store(true, Ordering::Release);
            libc::EIO
        }
        // After a service died, any failure to reach one (nobody listening yet, a connection
        // cut while the dead one goes away, a successor still setting up) is "no service
        // yet": EIO, tried again on the next call. Before, it is what it is (nobody listening
        // ever: the kernel path).
        e => died(e),
    })?;
    let seen = SEGMENT.swap(client.shmid(), Ordering::AcqRel);
    if seen != -1 && seen != client.shmid() {
        crate::files::orphan_all();
        // The remembered files' handles were the dead service's: forgotten, never released
        // (the successor numbers its own).
        let _ = crate::opens::take_all(None);
    }
    Ok(client)
}

/// Runs `f` with this thread's client, attaching one first if needed. errno is left as
/// the caller had it unless the call fails: waiting for an answer (a futex sleep that ends
/// with ETIMEDOUT or EAGAIN), attaching, or taking a passed descriptor may change it on the
/// way, and programs read errno after calls that succeed (`readdir` at the end of a
/// listing).
fn with_client<T>(f: impl FnOnce(&mut Client) -> Served<T>) -> Served<T> {
    let saved = config::errno();
    let out = with_client_inner(f);
    if out.is_ok() {
        config::set_errno(saved);
    }
    out
}

fn with_client_inner<T>(f: impl FnOnce(&mut Client) -> Served<T>) -> Served<T> {
    let cfg = config::get().ok_or(libc::ENXIO)?;
    if REFUSED.load(Ordering::Relaxed) {
        return Err(Unserved::Kernel);
    }
    let generation = GENERATION.load(Ordering::Acquire);
    CLIENT
        .try_with(|c| {
            let mut c = c.try_borrow_mut().map_err(|_| libc::EDEADLK)?;
            if c.as_ref().is_some_and(|(_, g)| *g != generation) {
                if let Some((old, _)) = c.take() {
                    // Our parent's client (detach, its connection stays the parent's), or one
                    // made under credentials this process no longer has (its connection
                    // closes; the next one is identified again).
                    old.abandon();
                }
            }
            if c.as_ref().is_some_and(|(client, _)| client.service_gone()) {
                // The service died or stopped: give the area back, look for a successor.
                SERVICE_DIED.store(true, Ordering::Release);
                *c = None;
            }
            if c.is_none() {
                if RETRY_AT.with(|r| r.get()) > now_ms() {
                    return Err(Unserved::Kernel);
                }
                // SAFETY: gettid cannot fail.
                let tid = unsafe { libc::gettid() } as u32;
                // No client of the segment (refused, gone, of another protocol version, or
                // every client area taken): the legacy path still serves every call correctly.
                let client = attach(&cfg.channel, tid, generation).map_err(|e| {
                    if e == libc::EIO {
                        // No service: the legacy mount has none either.
                        return Unserved::Errno(libc::EIO);
                    }
                    if matches!(e, libc::EACCES | libc::EPERM | libc::EINVAL | libc::EIDRM | libc::EPROTO | libc::ENOENT | libc::ECONNREFUSED) {
                        REFUSED.store(true, Ordering::Relaxed);
                    } else {
                        RETRY_AT.with(|r| r.set(now_ms() + RETRY_MS));
                    }
                    Unserved::Kernel
                })?;
                *c = Some((client, generation));
            }
            let (client, _) = c.as_mut().ok_or(Unserved::Errno(libc::EIO))?;
            let out = f(client);
            if client.poisoned() {
                // A request timed out that the service may still be serving in this area:
                // the next call connects again, with an area of its own (see
                // `Client::poisoned`).
                *c = None;
            }
            out
        })
        // This thread's client is gone (the thread is exiting, or the process is running its
        // atexit handlers, which glibc runs after thread-local destructors): the kernel path
        // still works.
        .unwrap_or(Err(Unserved::Kernel))
}
