//! The back driver: the service's end of the user-level path. It creates the pool's SysV
//! segment (owner-only), runs one worker thread per request queue, and executes the requests
//! it pops on a filesystem instance.
//!
//! Everything read from the segment is hostile: descriptors are copied out and decoded
//! against the geometry the driver itself chose, data is copied out before use, and unknown
//! inodes or handles are the libservice's `EBADF`.

use std::ffi::OsStr;
use std::io::{self, IoSlice};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use polytropon_ipc::area::Area;
use polytropon_ipc::segment::{futex_wait, Geometry, Layout, Segment, PENDING, SLEEPING};
use polytropon_ipc::{decode, Descriptor, Limits, Op, Request, Unserved, WireAttr, FLAG_FD_OK, FLAG_NEAR, FLAG_NO_REPLY, FLAG_PREFETCH, OPEN_PASSED};
use polytropon_ipc::args::{Prefetched, ReadEnd, StatLearned, Witness};
use tracing::{debug, warn};

use crate::libservice::access::Creds;
use crate::libservice::{Attr, Context, FileKind, FileSystem, Inode, ROOT_INODE};
use crate::service::stats::{OpStats, Timer};

mod call;
pub mod changes;
pub mod channels;
mod files;
mod listing;
mod namespace;
mod paths;
mod perm;
mod placement;
mod owners;
mod passthrough;
pub(crate) mod peer;
mod sentinel;
pub use owners::MAX_OPEN_PER_PROCESS;
pub use passthrough::{LowerViews, UpperView};
use call::{Call, Reply};
use paths::PathCache;

/// How long a claimed but unpublished slot may block the head of a queue before a worker
/// skips it (see `Queue::skip_head`).
const STUCK: std::time::Duration = std::time::Duration::from_millis(20);

/// Busy polls of an empty queue before a worker sleeps, at most (see `IdleSpin`).
const IDLE_SPINS: u32 = 20_000;
/// The fewest a worker makes (a sleep costs a futex wait and, later, a wake-up of tens of
/// µs): about 10 µs, which covers the gap between one call of a short process and its next
/// (a `cat` of three small files: each open after the first took 35-44 µs when the worker
/// had slept in between, 9-10 µs with this; the service's cpu per process rose 10-15 %).
const IDLE_SPINS_MIN: u32 = 1536;
/// Polls before sleeping while a busy process that is no client shares the worker's cpu.
const CONTENDED_SPINS: u32 = 256;

/// How long a worker polls its empty queue before sleeping, learned from how the last idle
/// spells went: one that ended in a request while polling keeps the budget; one that ended
/// in a sleep shorter than the longest polling would have lasted says polling pays (the
/// budget doubles, up to `IDLE_SPINS`); one that ended in a longer sleep says it does not
/// (the budget halves, down to `IDLE_SPINS_MIN`). A steady stream of requests is polled
/// for; one that comes in bursts with longer gaps (short processes starting one after
/// another: each attaches, makes a few calls and exits) is slept for, so that the worker's
/// cpu goes to the processes.
struct IdleSpin {
    max: u32,
    budget: u32,
    /// When this idle spell's polling started.
    polling: Option<std::time::Instant>,
    /// How long the last spell's polling lasted before the worker slept.
    polled: std::time::Duration,
}

impl IdleSpin {
    fn new(max: u32) -> IdleSpin {
        IdleSpin { max, budget: max, polling: None, polled: std::time::Duration::ZERO }
    }

    /// The queue was found empty (`idle` polls so far in this spell).
    fn poll(&mut self, idle: u32) {
        if idle == 1 {
            self.polling = Some(std::time::Instant::now());
        }
    }

    /// The budget ran out: the worker is about to sleep.
    fn sleeping(&mut self) {
        self.polled = self.polling.take().map_or(std::time::Duration::ZERO, |t| t.elapsed());
    }

    /// The worker woke after sleeping `asleep`.
    fn woke(&mut self, asleep: std::time::Duration) {
        // How long the longest polling would have lasted, at this spell's pace.
        let longest = self.polled.mul_f64(f64::from(self.max) / f64::from(self.budget.max(1)));
        self.budget = if asleep < longest { self.budget.saturating_mul(2).min(self.max) } else { (self.budget / 2).max(IDLE_SPINS_MIN.min(self.max)) };
    }

    /// A request was found while polling.
    fn found(&mut self) {
        self.polling = None;
    }
}

/// The kernel's caches of an instance that is also mounted through FUSE: a change made on the
/// user-level path is reported here so the legacy path never serves stale attributes, data or
/// names.
pub trait KernelCache: Send + Sync {
    /// The attributes and the data in `offset..offset+len` of `inode` changed (`len` 0: to
    /// the end; `offset` -1: attributes only).
    fn inval_inode(&self, inode: Inode, offset: i64, len: i64);
    /// Entry `name` of directory `parent` changed (removed or replaced).
    fn inval_entry(&self, parent: Inode, name: &OsStr);
    /// Entry `name` of directory `parent` was made where there was none: only a negative
    /// entry the kernel keeps can be stale.
    fn inval_new_entry(&self, parent: Inode, name: &OsStr) {
        self.inval_entry(parent, name);
    }
    /// `inode` may now end at `end`, past where the kernel last saw it end: the kernel's size
    /// grows to it. (An invalidation only marks the size stale, and a process that maps the
    /// file through the kernel faults past the old size: SQLite's `-shm`, grown by one
    /// process on the user-level path and mapped by another.)
    fn grew(&self, _inode: Inode, _end: u64) {}
    /// Whether the kernel keeps file data read through the mount in its page cache.
    fn keeps_pages(&self) -> bool {
        false
    }
}

/// One instance served on the user-level path, with its request counters.
#[derive(Clone)]
pub struct UserInstance {
    pub fs: Arc<dyn FileSystem>,
    pub stats: Arc<OpStats>,
    /// The FUSE mount of the same instance, if any.
    pub kernel: Option<Arc<dyn KernelCache>>,
    /// The device (`st_dev`) of that FUSE mount: a client may name the instance only if its
    /// process sees a mount of it (`None`: any client may, as for a driver without mounts).
    pub device: Option<u64>,
    /// Clients get descriptors of the writable branch's backing files they open (the local
    /// backend in the `kernel` cache mode; see `passthrough`).
    pub passthrough: bool,
    /// The instance's key in the change table, when it reports every change of its files
    /// there (see [`changes::watch`]): then clients learn small files' bytes with an open and
    /// files' ends with short reads.
    pub changes: Option<u32>,
    /// Views of its lower branches through which large lower files opened to read are passed
    /// to clients, read-only (only with `changes`: see `passthrough::LowerViews`).
    pub lower: Option<Arc<passthrough::LowerViews>>,
    /// The view of its writable branch through which files opened for writing are passed to
    /// clients once they prove busy (`Op::PassFile`; see `passthrough::UpperView`).
    pub upper: Option<Arc<passthrough::UpperView>>,
}

impl std::fmt::Debug for UserInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserInstance").field("stats", &self.stats).finish_non_exhaustive()
    }
}

/// The instances a back driver serves, by the index descriptors name.
pub type InstanceTable = std::sync::RwLock<Vec<Option<UserInstance>>>;

/// Backlog of a queue at which its worker calls in a helper thread.
const BACKLOG_HELP: u64 = 4;
/// Helpers per queue at most (they share the pool's cpus with everything else).
const MAX_HELPERS: u32 = 2;
/// Helpers per queue at most while it is stuck behind slow requests (their threads wait on
/// the backend, not on the cpus).
const MAX_STUCK_HELPERS: u32 = 8;
/// How long a queue holding hints may go without one taken before the janitor calls in a
/// helper.
const STUCK_FOR: std::time::Duration = std::time::Duration::from_millis(40);

/// What every service thread of a back driver shares.
struct Shared {
    seg: Segment,
    table: Arc<InstanceTable>,
    limits: Limits,
    stop: AtomicBool,
    /// The pool's cpus: queue `q`'s worker runs on `cpus[q % len]` (empty: not pinned).
    cpus: Vec<usize>,
    /// How many cpus the pool's processes (the service and its clients) may run on.
    pool_cpus: usize,
    /// Helpers running, per queue.
    helpers: Vec<AtomicU32>,
    /// Whose processes may reach which mount points (see `channels::Channel::reaches`).
    reach: channels::ReachCache,
    /// Per queue: when (µs of the service's clock) its last helper was started.
    helper_started_at: Vec<AtomicU64>,
    /// Streamed writes waiting for a stalled client, per queue: while any does, the queue's
    /// helpers stay (its other clients must not wait behind it).
    stalled: Vec<AtomicU32>,
    /// Per queue: until when (µs of the service's clock, see [`keep_polling`]) its worker
    /// polls rather than sleep: for the first request of a client being admitted, or the next
    /// one of a young client.
    expecting: Vec<AtomicU64>,
    helper_threads: std::sync::Mutex<Vec<JoinHandle<()>>>,
    helpers_started: AtomicU64,
    owners: owners::Owners,
    /// The connected clients (their areas and who they are).
    channels: Arc<channels::Channels>,
    /// Handles whose backing file a client got for writing.
    passed: passthrough::Writers,
    /// Per queue: until when (µs of the service's clock, see [`clock_us`]) its writes are not
    /// streamed: one of them stalled past [`PIECE_WAIT`] (see [`STREAM_BAR`]).
    stream_bars: Vec<AtomicU64>,
}

impl Shared {
    /// Whether streamed writes on queue `q` are refused for now.
    fn stream_barred(&self, q: u32) -> bool {
        self.stream_bars.get(q as usize).is_some_and(|until| clock_us() < until.load(Ordering::Acquire))
    }

    /// Refuses streamed writes on queue `q` for [`STREAM_BAR`].
    fn bar_streaming(&self, q: u32) {
        if let Some(until) = self.stream_bars.get(q as usize) {
            until.store(clock_us() + STREAM_BAR.as_micros() as u64, Ordering::Release);
        }
    }
}

/// A running back driver; stopped and its segment removed when dropped.
pub struct BackDriver {
    shmid: i32,
    addr: usize,
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    seg: Segment,
    /// Keeps the segment's liveness word; `None` once stopped.
    sentinel: Option<sentinel::Sentinel>,
}

impl std::fmt::Debug for BackDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackDriver").field("shmid", &self.shmid).finish_non_exhaustive()
    }
}

/// `a` as the caller sees it: owner and group in its user namespace.
fn wire(a: &Attr, creds: &Creds) -> WireAttr {
    let (uid, gid) = match &creds.userns {
        Some(ns) => (ns.uid_inside(a.uid), ns.gid_inside(a.gid)),
        None => (a.uid, a.gid),
    };
    WireAttr {
        ino: a.ino,
        size: a.size,
        blocks: a.blocks,
        atime: a.atime.sec,
        mtime: a.mtime.sec,
        ctime: a.ctime.sec,
        atime_nsec: a.atime.nsec,
        mtime_nsec: a.mtime.nsec,
        ctime_nsec: a.ctime.nsec,
        mode: a.mode,
        nlink: u32::try_from(a.nlink).unwrap_or(u32::MAX),
        uid,
        gid,
        blksize: a.blksize,
        rdev: a.rdev,
    }
}

/// The result word of a request that failed with `e`.
fn failed(e: &io::Error) -> i64 {
    let outcome = if e.get_ref().is_some_and(|inner| inner.is::<KernelPath>()) { Unserved::Kernel } else { Unserved::Errno(e.raw_os_error().unwrap_or(libc::EIO)) };
    outcome.result() as i64
}

/// What a served call fails with to say "the kernel path serves this" ([`Unserved::Kernel`]).
#[derive(Debug, thiserror::Error)]
#[error("not served on the user-level path")]
struct KernelPath;

impl BackDriver {
    /// A back driver serving the single instance `fs` (as instance 0), its channel socket
    /// at `channel`; `fs` is served by this driver alone (no FUSE mount), watched for changes.
    pub fn start(fs: Arc<dyn FileSystem>, g: Geometry, channel: &std::path::Path) -> io::Result<BackDriver> {
        let changes = changes::watch(&*fs, std::time::Duration::from_secs(1));
        Self::start_table(Arc::new(std::sync::RwLock::new(vec![Some(UserInstance { fs, stats: Arc::default(), kernel: None, device: None, passthrough: false, changes, lower: None, upper: None })])), g, &[], None, channel)
    }

    /// Creates a segment of geometry `g` (in the caller's IPC namespace, mode 0600) and starts
    /// one worker per queue serving the instances of `table`, queue `q`'s on `cpus[q % len]`
    /// (`cpus` empty: wherever the process may run). A worker whose queue backs up calls in
    /// up to `MAX_HELPERS` helper threads, which leave once the queue has stayed empty.
    ///
    /// With `key` (a service alone in its pool's IPC namespace), the segment is made under
    /// that SysV key, so that clients of a predecessor that died find it; a segment the
    /// predecessor left under the key is removed first (its clients keep their mapping).
    ///
    /// Clients connect to the channel socket bound at `channel` (see [`channels`]).
    pub fn start_table(table: Arc<InstanceTable>, g: Geometry, cpus: &[usize], key: Option<i32>, channel: &std::path::Path) -> io::Result<BackDriver> {
        let layout = Layout::new(g).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        if let Some(key) = key {
            remove_keyed(key);
        }
        // SAFETY: plain syscalls; results checked.
        let shmid = unsafe { libc::shmget(key.unwrap_or(libc::IPC_PRIVATE), layout.total, libc::IPC_CREAT | libc::IPC_EXCL | 0o666) };
        if shmid < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: attaching the segment just created.
        let addr = unsafe { libc::shmat(shmid, std::ptr::null(), 0) };
        if addr as isize == -1 {
            let e = io::Error::last_os_error();
            // SAFETY: removing the segment just created.
            unsafe { libc::shmctl(shmid, libc::IPC_RMID, std::ptr::null_mut()) };
            return Err(e);
        }
        // SAFETY: a fresh page-aligned mapping of `layout.total` bytes, detached only in Drop
        // after every worker has stopped.
        let seg = unsafe { Segment::new(addr as *mut u8, layout) };
        seg.init();
        let (chans, listener) = match channels::Channels::bind(channel, g.clients, g.buffer_size, shmid) {
            Ok(c) => c,
            Err(e) => {
                // SAFETY: detaching and removing the segment just made.
                unsafe {
                    libc::shmdt(addr);
                    libc::shmctl(shmid, libc::IPC_RMID, std::ptr::null_mut());
                }
                return Err(e);
            }
        };
        let limits = Limits { clients: g.clients, buffer_size: g.buffer_size, name_max: 255, path_max: 4096 };
        let shared = Arc::new(Shared {
            seg,
            table,
            limits,
            stop: AtomicBool::new(false),
            cpus: cpus.to_vec(),
            pool_cpus: if cpus.is_empty() { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { cpus.len() },
            helpers: (0..g.queues).map(|_| AtomicU32::new(0)).collect(),
            reach: std::sync::Mutex::default(),
            helper_started_at: (0..g.queues).map(|_| AtomicU64::new(0)).collect(),
            stalled: (0..g.queues).map(|_| AtomicU32::new(0)).collect(),
            expecting: (0..g.queues).map(|_| AtomicU64::new(0)).collect(),
            helper_threads: std::sync::Mutex::new(Vec::new()),
            stream_bars: (0..g.queues).map(|_| AtomicU64::new(0)).collect(),
            helpers_started: AtomicU64::new(0),
            owners: owners::Owners::default(),
            channels: chans,
            passed: passthrough::Writers::default(),
        });
        let mut driver = BackDriver { shmid, addr: addr as usize, shared: shared.clone(), workers: Vec::new(), seg, sentinel: None };
        driver.sentinel = Some(sentinel::Sentinel::start(&seg.header().service)?);
        for q in 0..g.queues {
            let sh = shared.clone();
            // On failure the driver built so far is dropped: workers stop, the segment goes.
            driver.workers.push(std::thread::Builder::new().name(format!("ptn-shm-{q}")).spawn(move || serve(&sh, q, false))?);
        }
        let sh = shared.clone();
        driver.workers.push(std::thread::Builder::new().name("ptn-janitor".into()).spawn(move || janitor(&sh))?);
        let sh = shared.clone();
        driver.workers.push(std::thread::Builder::new().name("ptn-channel".into()).spawn(move || sh.channels.run(&listener, &sh.stop, |tid, cpu| expect(&sh, tid, cpu)))?);
        Ok(driver)
    }

    /// What the user-level path holds now, and what the janitor took back so far.
    pub fn usage(&self) -> Usage {
        Usage {
            clients: self.shared.channels.connected(),
            areas: self.shared.channels.capacity(),
            open_files: self.shared.owners.open_files() as u64,
            reclaimed_files: self.shared.owners.reclaimed_files.load(Ordering::Relaxed),
            reclaimed_clients: self.shared.channels.closed.load(Ordering::Relaxed),
        }
    }

    /// Helper threads started so far (all queues).
    pub fn helpers_started(&self) -> u64 {
        self.shared.helpers_started.load(Ordering::Relaxed)
    }

    /// The segment id clients attach.
    pub fn shmid(&self) -> i32 {
        self.shmid
    }

    /// The channel socket clients connect to.
    pub fn channel(&self) -> &std::path::Path {
        self.shared.channels.path()
    }
}

impl Drop for BackDriver {
    fn drop(&mut self) {
        // Clients waiting for an answer see "not serving" and give up at once.
        drop(self.sentinel.take());
        self.shared.stop.store(true, Ordering::Release);
        for q in 0..self.seg.layout.geometry.queues {
            polytropon_ipc::segment::futex_wake(&self.seg.doorbell(q).word, i32::MAX);
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        // Workers have stopped, so no helper starts any more.
        let helpers = std::mem::take(&mut *self.shared.helper_threads.lock().unwrap_or_else(|p| p.into_inner()));
        for h in helpers {
            let _ = h.join();
        }
        let _ = std::fs::remove_file(self.shared.channels.path());
        // SAFETY: detaching our own mapping after the workers using it have stopped, then
        // removing the segment (it goes once the last client detaches).
        unsafe {
            libc::shmdt(self.addr as *const libc::c_void);
            libc::shmctl(self.shmid, libc::IPC_RMID, std::ptr::null_mut());
        }
    }
}

/// Removes the segment under `key` in this IPC namespace, if any: one a predecessor left
/// when it died. Mappings of it stay valid until their processes detach.
fn remove_keyed(key: i32) {
    // SAFETY: looking up an existing segment only (no IPC_CREAT); a missing one is -1.
    let old = unsafe { libc::shmget(key, 0, 0) };
    if old >= 0 {
        warn!("removing the shared-memory segment {old} a previous service left");
        // SAFETY: removing a segment by id; the kernel checks that we may.
        unsafe { libc::shmctl(old, libc::IPC_RMID, std::ptr::null_mut()) };
    }
}

/// Per instance (by table index), with the instance it belongs to.
#[derive(Default)]
struct PathCaches {
    by_instance: rustc_hash::FxHashMap<u32, (Arc<dyn FileSystem>, PathCache)>,
}

fn instance(table: &InstanceTable, i: u32) -> Option<UserInstance> {
    let t = table.read().unwrap_or_else(|p| p.into_inner());
    t.get(i as usize).and_then(|f| f.clone())
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Lookup => "lookup",
        Op::Getattr => "getattr",
        Op::Open => "open",
        Op::Read => "read",
        Op::Write => "write",
        Op::Release => "release",
        Op::Create => "create",
        Op::Unlink => "unlink",
        Op::Fsync => "fsync",
        Op::OpenPath => "open_path",
        Op::StatPath => "stat_path",
        Op::UnlinkPath => "unlink_path",
        Op::Truncate => "truncate",
        Op::Setattr => "setattr",
        Op::Getxattr => "getxattr",
        Op::Listxattr => "listxattr",
        Op::Setxattr => "setxattr",
        Op::Removexattr => "removexattr",
        Op::Mkdir => "mkdir",
        Op::Rmdir => "rmdir",
        Op::Rename => "rename",
        Op::Link => "link",
        Op::Symlink => "symlink",
        Op::Readlink => "readlink",
        Op::Access => "access",
        Op::SetattrPath => "setattr_path",
        Op::Opendir => "opendir",
        Op::Readdir => "readdir",
        Op::Releasedir => "releasedir",
        Op::Statfs => "statfs",
        Op::Fallocate => "fallocate",
        Op::Syncfs => "syncfs",
        Op::HandOver => "hand_over",
        Op::Fsyncdir => "fsyncdir",
        Op::PassFile => "pass_file",
    }
}

/// Why a queue calls in a helper thread.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Help {
    /// Its worker found it backing up.
    Backlog,
    /// A streamed write waits for its stalled client.
    StalledWrite,
    /// Nothing was taken from it for a while although it holds hints (the janitor saw it):
    /// every thread serving it is inside a slow request (a copy-up, an fsync, a call that
    /// waits for a remote server).
    Stuck,
}

/// Starts a helper for queue `q` unless it has enough.
fn call_helper(sh: &Arc<Shared>, q: u32, why: Help) {
    // A helper stays while its queue keeps it busy: bursts of hints (cheap for any client to
    // send) start at most one every `HELPER_EVERY_US`, not a thread each. (A stalled streamed
    // write calls one at once: streaming is barred for a second after each give-up; so does a
    // stuck queue, which the janitor looks at every few tens of milliseconds.)
    let now = clock_us();
    let last = &sh.helper_started_at[q as usize];
    let before = last.load(Ordering::Acquire);
    if why == Help::Backlog && (before != 0 && now.saturating_sub(before) < HELPER_EVERY_US || last.compare_exchange(before, now.max(1), Ordering::AcqRel, Ordering::Acquire).is_err()) {
        return;
    }
    let most = if why == Help::Stuck { MAX_STUCK_HELPERS } else { MAX_HELPERS };
    let count = &sh.helpers[q as usize];
    if count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < most).then_some(n + 1)).is_err() {
        return;
    }
    let helper = sh.clone();
    match std::thread::Builder::new().name(format!("ptn-shm-{q}h")).spawn(move || serve(&helper, q, true)) {
        Ok(h) => {
            sh.helpers_started.fetch_add(1, Ordering::Relaxed);
            let mut threads = sh.helper_threads.lock().unwrap_or_else(|p| p.into_inner());
            threads.retain(|t| !t.is_finished());
            threads.push(h);
        }
        Err(e) => {
            count.fetch_sub(1, Ordering::AcqRel);
            debug!("no helper for queue {q}: {e}");
        }
    }
}

/// Records who holds a handle a request opened, and forgets one it released.
fn track(owners: &owners::Owners, owner: owners::Holder, req: &Request, res: i64, aux: [u64; 4]) {
    match req.op {
        Op::OpenPath if res >= 0 => {
            let access = polytropon_ipc::args::OpenArg::decode(req.arg).flags & libc::O_ACCMODE;
            owners.opened(owner, owners::Held { instance: req.instance, handle: aux[1], inode: aux[0], dir: false, access })
        }
        Op::Opendir if res >= 0 => owners.opened(owner, owners::Held { instance: req.instance, handle: aux[0], inode: req.inode, dir: true, access: libc::O_RDONLY }),
        _ => {}
    }
}

/// Costly yields in a row, each followed by a request from another cpu, that make an idle
/// worker sleep early for a while (a busy process that is no client shares its cpu).
const SUSPECTS: u32 = 4;
/// Idle spells a worker then polls only briefly before sleeping (so that a request wakes it:
/// a woken thread takes the cpu from a busy one sooner than a runnable one gets it back).
const CONTENDED_SPELLS: u32 = 1024;

/// Rounds of taking a client's posts per hint.
const POST_ROUNDS: u32 = 2;

/// How long a worker woken for a client being admitted polls for its first request.
const EXPECT: std::time::Duration = std::time::Duration::from_micros(300);

/// Microseconds since the service's clock started (for [`Shared::expecting`]).
fn clock_us() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    u64::try_from(START.get_or_init(std::time::Instant::now).elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Least time between the starts of two helpers of one queue, in µs.
const HELPER_EVERY_US: u64 = 20_000;

/// How long a client counts as young: a short process's life (a `cat`: about 1 ms).
const YOUNG: std::time::Duration = std::time::Duration::from_millis(3);

/// How long a worker polls for a young client's next call after answering one.
const NEXT_CALL: std::time::Duration = std::time::Duration::from_micros(60);

/// Makes queue `q`'s worker poll for at least `span` from now before it sleeps.
fn keep_polling(sh: &Shared, q: u32, span: std::time::Duration) {
    let until = clock_us().saturating_add(u64::try_from(span.as_micros()).unwrap_or(u64::MAX));
    if let Some(e) = sh.expecting.get(q as usize) {
        e.fetch_max(until, Ordering::AcqRel);
    }
}

/// A client of thread `tid`, which said hello on cpu `cpu` (plus one; 0: unknown), is being
/// admitted (its welcome is not sent yet): wakes the worker of the queue it will likely send
/// its first request to, which then polls for [`EXPECT`] before sleeping again. The worker's
/// wake-up (tens of µs in a VM, where waking an idle cpu exits to the host) then overlaps the
/// admission and the client's own set-up rather than follow the first request: a short
/// process makes a few calls and exits, and its first call paid that wake-up on top of the
/// attach.
///
/// The likely queue is the client's own (by thread id, see `Client::finish`), unless that
/// queue's worker last ran on the client's cpu: the client then moves to the next queue whose
/// worker runs elsewhere (`Client::near_worker`). Without the client's cpu nothing is woken:
/// a worker polling on the cpu of a starting process would only delay it. The hint comes from
/// the client; a wrong one costs its own pool a worker's polling for [`EXPECT`].
fn expect(sh: &Shared, tid: u32, cpu: u32) {
    if sh.pool_cpus < 2 {
        return;
    }
    let Some(q) = placement::likely_queue(tid, cpu, sh.seg.layout.geometry.queues, |q| sh.seg.doorbell(q).cpu.load(Ordering::Relaxed)) else { return };
    keep_polling(sh, q, EXPECT);
    sh.seg.doorbell(q).ring();
}

/// How often the janitor looks for processes that died holding client areas or files.
const SWEEP: std::time::Duration = std::time::Duration::from_secs(1);

/// The janitor: gives back the client areas and open files of processes that died (kill -9
/// mid-request, a crash) without closing them.
fn janitor(sh: &Arc<Shared>) {
    let mut last = std::time::Instant::now();
    let mut live = owners::Liveness::default();
    // Each queue's head as the last look found it, and when that was.
    let mut heads: Vec<Option<u64>> = vec![None; sh.seg.layout.geometry.queues as usize];
    let mut looked = std::time::Instant::now();
    while !sh.stop.load(Ordering::Acquire) {
        sh.channels.reap();
        let full = sh.channels.restock();
        if last.elapsed() >= SWEEP {
            last = std::time::Instant::now();
            sweep(sh, &mut live);
        }
        if looked.elapsed() >= STUCK_FOR {
            looked = std::time::Instant::now();
            help_stuck_queues(sh, &mut heads);
        }
        if full {
            // Woken early when an admission takes a made-ahead area: the next one is made
            // at once.
            sh.channels.wait_low(std::time::Duration::from_millis(50));
        } else {
            // Areas cannot be made (the admissions make their own meanwhile), or they are
            // taken as fast as they are made.
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// Calls a helper into each queue that holds hints and whose head has not moved since the
/// last look (`heads`): one slow request (a copy-up of a large file, an fsync, a CephFS call
/// waiting for its MDS) must not hold every other client of its queue until it ends.
fn help_stuck_queues(sh: &Arc<Shared>, heads: &mut [Option<u64>]) {
    for (q, seen) in (0u32..).zip(heads.iter_mut()) {
        let queue = sh.seg.queue(q);
        let head = queue.head();
        if queue.backlog() > 0 && *seen == Some(head) {
            call_helper(sh, q, Help::Stuck);
        }
        *seen = Some(head);
    }
}

fn sweep(sh: &Shared, live: &mut owners::Liveness) {
    let dead = live.gone(sh.owners.holders());
    if dead.is_empty() {
        return;
    }
    let ctx = Context::current();
    for held in sh.owners.take(&dead) {
        let Some(UserInstance { fs, kernel, .. }) = instance(&sh.table, held.instance) else { continue };
        if sh.passed.take(held.instance, held.handle) {
            // Written behind the service's back, as at a release: the FUSE side forgets
            // what it cached of it too.
            inval_inode(kernel.as_deref(), held.inode, 0, 0);
            fs.outside_writer(held.inode, false);
        }
        let released = if held.dir {
            fs.releasedir(&ctx, held.inode, held.handle)
        } else {
            fs.release(&ctx, held.inode, held.handle).map(|()| fs.forget(held.inode, 1))
        };
        if let Err(e) = released {
            debug!("releasing handle {} of a dead process: {e}", held.handle);
        }
    }
}

/// What the user-level path holds, for `inspect`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// Client areas claimed, of `areas`.
    pub clients: u32,
    pub areas: u32,
    pub open_files: u64,
    pub reclaimed_files: u64,
    pub reclaimed_clients: u64,
}

/// A service thread of queue `q`: its worker (sleeps when idle) or a helper (leaves).
fn serve(sh: &Arc<Shared>, q: u32, helper: bool) {
    let (seg, limits, stop) = (sh.seg, sh.limits, &sh.stop);
    if !helper && !sh.cpus.is_empty() {
        placement::pin(sh.cpus[q as usize % sh.cpus.len()]);
    }
    let mut caches = PathCaches::default();
    WORKER.with(|w| *w.borrow_mut() = Some((sh.clone(), q)));
    let queue = seg.queue(q);
    let bell = seg.doorbell(q);
    let mut buf = vec![0u8; limits.buffer_size as usize];
    // Counter slots by operation number, found once rather than by name per request.
    let slots: [usize; 64] = std::array::from_fn(|i| u32::try_from(i).ok().and_then(Op::from_u32).map_or(0, |op| crate::service::stats::index(op_name(op))));
    // On a one-cpu pool its clients run on this very cpu: polling only delays them.
    let mut spin = IdleSpin::new(if sh.pool_cpus > 1 { IDLE_SPINS } else { 0 });
    let mut idle = 0;
    // The last client answered shares this thread's cpu (`FLAG_NEAR`): poll only between
    // yields, so that its next request is written at all.
    let mut near = false;
    let mut hopper = placement::Hopper::default();
    // The head position that could not be taken, and since when.
    let mut stuck: Option<(u64, std::time::Instant)> = None;
    // Idle spells left that poll shortly and without yields (after a costly yield).
    let mut contended = 0u32;
    // A yield took long: whether a client or another process had the cpu, the next request
    // tells (see below).
    let mut suspect = false;
    let mut suspects = 0u32;
    while !stop.load(Ordering::Acquire) {
        let Some(d) = queue.pop() else {
            idle += 1;
            spin.poll(idle);
            // A busy process that is no client shares this cpu: poll briefly, then sleep, so
            // that a request wakes this thread (a woken thread gets the cpu back from a busy
            // one at once) rather than find it runnable behind that one's slice.
            let budget = if contended > 0 { spin.budget.min(CONTENDED_SPINS) } else { spin.budget };
            if idle < budget {
                if near {
                    // The client waiting for this cpu gets it (see `YIELD_EVERY`).
                    std::thread::yield_now();
                } else if idle % polytropon_ipc::client::YIELD_EVERY == 0 && contended == 0 {
                    suspect |= placement::costly_yield();
                } else {
                    std::hint::spin_loop();
                }
                continue;
            }
            // A client is being admitted for this queue, or a young one may call again soon:
            // poll on (never on a one-cpu pool), yielding between rounds, so that a process
            // sharing this cpu, client or not, still gets it.
            if !helper && sh.pool_cpus > 1 && sh.expecting[q as usize].load(Ordering::Acquire) > clock_us() {
                idle = budget.saturating_sub(polytropon_ipc::client::YIELD_EVERY * 4);
                std::thread::yield_now();
                continue;
            }
            contended = contended.saturating_sub(1);
            if helper && sh.stalled[q as usize].load(Ordering::Acquire) == 0 {
                break;
            }
            // Sleep until a client rings (or 50 ms pass, to notice a stop).
            spin.sleeping();
            let asleep = std::time::Instant::now();
            let seen = bell.word.load(Ordering::Acquire);
            bell.sleepers.fetch_add(1, Ordering::AcqRel);
            if queue.backlog() == 0 {
                futex_wait(&bell.word, seen, 50);
            } else {
                // Claimed but not ready: the head's producer is between its two steps, or
                // died there (or wrote garbage). Wait a little, without spinning; skip the
                // slot once it has blocked the queue for `STUCK`.
                let head = queue.head();
                match stuck {
                    Some((h, since)) if h == head => {
                        if since.elapsed() >= STUCK {
                            static SKIPS: crate::service::Throttle = crate::service::Throttle::new();
                            if queue.skip_head(head) {
                                if let Some(held) = SKIPS.allow(channels::LOG_EVERY) {
                                    warn!("queue {q}: skipped slot {head}, claimed and never published ({held} more skips since the last message)");
                                }
                            }
                            stuck = None;
                        }
                    }
                    _ => stuck = Some((head, std::time::Instant::now())),
                }
                futex_wait(&bell.word, seen, 1);
            }
            bell.sleepers.fetch_sub(1, Ordering::AcqRel);
            spin.woke(asleep.elapsed());
            idle = 0;
            continue;
        };
        spin.found();
        idle = 0;
        stuck = None;
        let cpu = polytropon_ipc::current_cpu();
        if bell.cpu.load(Ordering::Relaxed) != cpu {
            bell.cpu.store(cpu, Ordering::Relaxed);
        }
        near = d.flags & FLAG_NEAR != 0;
        if std::mem::take(&mut suspect) {
            // A yield gave this cpu away for a whole slice, and not to the client that sent
            // what came next (it runs elsewhere): to a process that is no client, if that
            // keeps happening (clients of a busy pool also take slices now and then).
            suspects = if near { 0 } else { suspects + 1 };
            if suspects >= SUSPECTS {
                contended = CONTENDED_SPELLS;
                suspects = 0;
            }
        }
        if hopper.note(near) {
            debug!("queue {q}: moved off cpu {} shared with its client", cpu.wrapping_sub(1));
        }
        if !helper && queue.backlog() >= BACKLOG_HELP {
            call_helper(sh, q, Help::Backlog);
        }
        serve_hint(sh, q, &d, &mut caches, &mut buf, &slots);
    }
    WORKER.with(|w| *w.borrow_mut() = None);
    for (_, (fs, mut dirs)) in caches.by_instance.drain() {
        dirs.clear(&*fs);
    }
    if helper {
        sh.helpers[q as usize].fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves what hint `d` points at: the client's posted requests, then its pending request
/// (once, whatever number of hints name it).
fn serve_hint(sh: &Shared, q: u32, d: &Descriptor, caches: &mut PathCaches, buf: &mut [u8], slots: &[usize; 64]) {
    let limits = &sh.limits;
    // The queue carries hints: the request itself is in the client's private area.
    let Some(ch) = sh.channels.get(d.client) else { return };
    // Requests that need no answer (releases) first, by the one worker that holds them.
    if let Ok(mut taken) = ch.posts.try_lock() {
        let mut posted = Vec::new();
        // A client posts without a hint while its earlier posts are untaken: look again
        // after publishing how far this took, for a few rounds; posts still left then get a
        // hint of their own at the back of the queue (taken in turn with every other
        // client's requests: a stream of posts holds no worker; and none is left untaken,
        // however the client's posts and this thread's rounds interleave).
        let mut left = false;
        for _ in 0..POST_ROUNDS {
            *taken = ch.area.take_posts(*taken, |p| posted.push(p));
            left = ch.area.posts_left(*taken);
            if !left {
                break;
            }
        }
        let mut useful = 0usize;
        for p in posted {
            // A release of nothing this process holds is dropped at once: a flood of them
            // costs one table lookup each. A hand-over is only counted. (Both earn the posts
            // left a hint at the back of the queue: a release posted behind hand-overs must
            // not wait for its client's next call, which may never come. A ring is taken at
            // most whole per round, so only a client that keeps posting keeps a worker busy.)
            let counted = Op::from_u32(p.op) == Some(Op::HandOver);
            if counted || matches!(Op::from_u32(p.op), Some(Op::Release | Op::Releasedir)) && sh.owners.holds_handle(ch.holder, p.instance, p.handle) {
                useful += 1;
                let p = Descriptor { client: d.client, flags: FLAG_NO_REPLY, ..p };
                if let Ok(req) = decode(p, limits) {
                    let _ = serve_request(sh, &ch, &req, caches, buf, slots);
                }
            }
        }
        // Posts left after rounds in which every post was void (releases of handles the
        // process does not hold: no library posts those) wait for the client's next call or
        // for its ring to fill: a flood of void posts then costs the workers one hint per
        // call of its sender, not a hint at the back of the queue forever.
        if left && useful == 0 {
            debug!("client {}: void posts left for its next call", d.client);
        } else if left {
            let again = Descriptor { client: d.client, flags: FLAG_NO_REPLY, ..Descriptor::default() };
            if sh.seg.queue(q).push(&again).is_err() {
                // A full queue (256 hints waiting): the posts wait for the client's next call
                // (or for its ring to fill, when its posts turn into calls).
                debug!("queue {q} full: the posts of client {} wait for its next call", d.client);
            }
        }
    }
    if d.flags & FLAG_NO_REPLY != 0 {
        return;
    }
    let pending = || matches!(ch.area.header().state.load(Ordering::Acquire), PENDING | SLEEPING);
    if !pending() {
        return;
    }
    // What was served is read before the request, and the area still pending after: a
    // late duplicate hint (a forged one, or the client's own again after 100 ms) never takes
    // a request served meanwhile (the sequence would move back) nor one the client has not
    // finished writing (its pending mark comes last, after the request).
    let prev = ch.served.load(Ordering::Acquire);
    let rd = ch.area.request();
    if !pending() {
        return;
    }
    // Taken once: a second hint for the same request finds it taken.
    if rd.seq == prev || ch.served.compare_exchange(prev, rd.seq, Ordering::AcqRel, Ordering::Acquire).is_err() {
        return;
    }
    let rd = Descriptor { client: d.client, flags: rd.flags & !FLAG_NO_REPLY, ..rd };
    match decode(rd, limits) {
        Ok(req) => {
            let (res, aux) = serve_request(sh, &ch, &req, caches, buf, slots);
            ch.area.complete(req.seq, res, aux);
            if sh.pool_cpus > 1 && ch.admitted.elapsed() < YOUNG {
                // A short process's next call comes a few tens of µs after this answer:
                // longer than a worker polls between requests once it learned that requests
                // come in bursts with long gaps (short processes one after another).
                keep_polling(sh, q, NEXT_CALL);
            }
            if d.flags & FLAG_NEAR != 0 {
                // The client waits on this cpu for the answer just given.
                std::thread::yield_now();
            }
        }
        Err(e) => {
            debug!("refused request: {e:?}");
            ch.area.complete(rd.seq, Unserved::Errno(libc::EINVAL).result() as i64, [0; 4]);
        }
    }
}

/// Runs one request of client `ch` (its instance, its credentials, its handles only).
fn serve_request(sh: &Shared, ch: &channels::Channel, req: &Request, caches: &mut PathCaches, buf: &mut [u8], slots: &[usize; 64]) -> (i64, [u64; 4]) {
    let Some(UserInstance { fs, stats, kernel, device, passthrough, changes: key, lower, upper }) = instance(&sh.table, req.instance) else {
        return (Unserved::Errno(libc::ENODEV).result() as i64, [0; 4]);
    };
    // A directory cache belongs to one instance object: a replaced table entry starts a
    // fresh cache.
    let entry = caches.by_instance.entry(req.instance).or_insert_with(|| (fs.clone(), PathCache::default()));
    if !Arc::ptr_eq(&entry.0, &fs) {
        entry.1.clear(&*entry.0);
        *entry = (fs.clone(), PathCache::default());
    }
    let owner = ch.holder;
    // Clients may hold backing files of this instance for writing (`sh.passed`).
    let passes_writers = passthrough || upper.is_some();
    if req.op == Op::HandOver {
        // Only counted, for an instance the client is known to see: a notice costs its
        // poster nothing, so it never makes the service read the poster's mount table.
        if device.is_none_or(|d| ch.seen(d)) {
            if let Some(why) = polytropon_ipc::HandOver::from_word(req.handle) {
                stats.add_handover(why);
            }
        }
        return (0, [0; 4]);
    }
    // An instance whose mount the client's process cannot see is not there for it; one whose
    // mount point it may not reach (a directory above it it may not search) is refused, as
    // the kernel's walk would refuse it.
    match device.map(|d| ch.sees(d)) {
        Some(Some(false)) => return (Unserved::Errno(libc::ENODEV).result() as i64, [0; 4]),
        Some(None) => return (Unserved::Kernel.result() as i64, [0; 4]),
        _ => {}
    }
    if from_the_root(req) && device.is_some_and(|d| !ch.reaches(d, &sh.reach)) {
        return (Unserved::Errno(libc::EACCES).result() as i64, [0; 4]);
    }
    if let Some(refused) = scope(sh, ch, req) {
        return (refused.result() as i64, [0; 4]);
    }
    // Counted from here: what the checks above refused or sent to the kernel was not served.
    let timer = Timer::start_at(stats, slots[req.op as usize]);
    let opens = matches!(req.op, Op::OpenPath | Op::Opendir);
    let (res, aux, names_before) = if opens && !sh.owners.admit(owner.owner) {
        (Unserved::Errno(libc::EMFILE).result() as i64, [0; 4], None)
    } else if matches!(req.op, Op::Release | Op::Releasedir) {
        // Only the holder's own handle, released as what it is (a file, with its lookup
        // reference; or a listing), on the inode it was opened on.
        match sh.owners.release(owner, req.instance, req.handle) {
            Some(held) => {
                // What the kernel served on the file's passed descriptor, as the client says
                // (statistics only).
                if req.op == Op::Release && req.arg > 0 {
                    timer.stats().add_passed_calls(req.arg);
                }
                let op = if held.dir { Op::Releasedir } else { Op::Release };
                if passes_writers && sh.passed.take(req.instance, req.handle) {
                    // Written behind the service's back: the FUSE side forgets what it cached.
                    inval_inode(kernel.as_deref(), held.inode, 0, 0);
                    fs.outside_writer(held.inode, false);
                }
                let (res, aux) = execute(ch, &*fs, &Request { op, inode: held.inode, ..*req }, buf, &mut entry.1, kernel.as_deref(), true);
                (res, aux, None)
            }
            None => (Unserved::Errno(libc::EBADF).result() as i64, [0; 4], None),
        }
    } else if req.op == Op::PassFile {
        let (res, aux) = pass_busy_file(sh, ch, &*fs, upper.as_deref(), req);
        (res, aux, None)
    } else {
        if req.op == Op::Getattr && passes_writers && sh.passed.written(req.instance, req.inode) {
            // Written behind the service's back and about to be handed to the kernel (or
            // just asked about): the FUSE side forgets what it cached of it.
            inval_inode(kernel.as_deref(), req.inode, 0, 0);
        }
        // Before a read, what the file's slot said: a short read tells the client where the
        // file ends, valid while the slot says the same. Before an open that may come with
        // the file's bytes, or a stat whose attributes the client may keep: the instance's
        // names as they were before the walk (what was found holds while they stay so).
        let slot_of = match req.op {
            Op::Read => Some(req.inode),
            Op::OpenPath if req.flags & FLAG_PREFETCH != 0 => Some(polytropon_ipc::changes::NAMES),
            Op::StatPath if req.flags & polytropon_ipc::FLAG_LEARN != 0 => Some(polytropon_ipc::changes::NAMES),
            _ => None,
        };
        // And the instance's removals, for what a path led to: a name removed or replaced
        // while the path is walked moves its file's word, maybe before that is read (below,
        // after the walk), and no change of names shows the move.
        let before = slot_of.and_then(|inode| key.zip(changes::table()).map(|(k, t)| (t.word(k, inode), fs.removal_generation())));
        // Whether a handle the request names was opened for writing (only a size set through
        // `Op::Setattr` still needs to know, see `scope`).
        let writable = req.op != Op::Setattr || sh.owners.access(ch.holder, req.instance, req.handle, req.inode, false).is_some_and(|a| matches!(a, libc::O_WRONLY | libc::O_RDWR));
        let (res, mut aux) = execute(ch, &*fs, req, buf, &mut entry.1, kernel.as_deref(), writable);
        if let (Some(((slot, word), _)), Op::Read) = (before, req.op) {
            if res >= 0 && (res as u64) < req.len {
                ReadEnd::encode(Witness { slot: slot as u64, word }, &mut aux);
            }
        }
        (res, aux, before)
    };
    let (mut res, mut aux) = (res, aux);
    // Names a writer the service does not see shares a slot with teach nothing.
    let names = names_before.filter(|((_, w), removals)| w & polytropon_ipc::changes::OUTSIDE == 0 && *removals != u64::MAX);
    if req.op == Op::OpenPath && res >= 0 && passthrough && req.flags & FLAG_FD_OK != 0 {
        let flags = polytropon_ipc::args::OpenArg::decode(req.arg).flags;
        if passthrough::pass(ch, &*fs, flags, aux[0], aux[1]) {
            aux[2] |= OPEN_PASSED;
            timer.stats().add_passthrough();
            if flags & libc::O_ACCMODE != libc::O_RDONLY && sh.passed.add(req.instance, aux[1], aux[0]) {
                fs.outside_writer(aux[0], true);
            }
        }
    }
    if req.op == Op::OpenPath && res >= 0 && aux[2] & OPEN_PASSED == 0 && req.flags & FLAG_FD_OK != 0 {
        // A large lower file opened to read: its word is read before the backing file is
        // chosen, so a copy-up after that choice moves the word the client watches.
        let watched = lower.as_deref().zip(key.zip(changes::table()).map(|(k, t)| t.word(k, aux[0])));
        if let Some((views, (slot, word))) = watched.filter(|(_, (_, w))| w & polytropon_ipc::changes::OUTSIDE == 0) {
            let flags = polytropon_ipc::args::OpenArg::decode(req.arg).flags;
            if passthrough::pass_lower(ch, &*fs, views, flags, aux[0], aux[1]) {
                aux[2] |= OPEN_PASSED;
                polytropon_ipc::args::Passed::encode(polytropon_ipc::args::Witness { slot: slot as u64, word }, &mut aux);
                timer.stats().add_passthrough();
            }
        }
    }
    if req.op == Op::OpenPath && res >= 0 && aux[2] & OPEN_PASSED == 0 && req.flags & FLAG_FD_OK != 0 && upper.is_some() {
        // A writer may get its backing file later, once it proves busy (`Op::PassFile`).
        if polytropon_ipc::args::OpenArg::decode(req.arg).flags & libc::O_ACCMODE != libc::O_RDONLY {
            aux[2] |= polytropon_ipc::OPEN_PASSABLE;
        }
    }
    if req.op == Op::StatPath && res >= 0 && req.flags & polytropon_ipc::FLAG_LEARN != 0 {
        if let (Some(k), Some((names, removals))) = (key, names) {
            learn_attr(ch, &*fs, k, aux[0], names, removals, &mut aux);
        }
    }
    if req.op == Op::OpenPath && res >= 0 && aux[2] & OPEN_PASSED == 0 && req.flags & FLAG_PREFETCH != 0 {
        if let Some(k) = key {
            if let Some(n) = prefetch(ch, &*fs, k, req.arg, aux[0], aux[1], names, &mut aux) {
                res = n;
                timer.stats().add_prefetched();
            }
        }
    }
    if req.op == Op::OpenPath
        && res >= 0
        && aux[2] & (OPEN_PASSED | polytropon_ipc::OPEN_PREFETCHED) == 0
        && polytropon_ipc::args::OpenArg::decode(req.arg).flags & (libc::O_ACCMODE | libc::O_DIRECT) == libc::O_RDONLY
        && kernel.as_ref().is_some_and(|k| k.keeps_pages())
        && fs.shared()
    {
        // A file another client may change, which only the mount's page cache can hold near
        // the program: the client hands it to the kernel once it proves busy.
        aux[2] |= polytropon_ipc::OPEN_KERNEL_CACHED;
    }
    track(&sh.owners, owner, req, res, aux);
    if req.flags & FLAG_NO_REPLY != 0 && res < 0 {
        debug!("{:?} without reply failed: errno {}", req.op, -res);
    }
    (res, aux)
}

/// Whether `req` names a path from the instance's root, which the kernel would reach
/// through the directories above the mount point (a path relative to a directory the client
/// holds open, or an open file, needs none of them, as in the kernel).
fn from_the_root(req: &Request) -> bool {
    match req.op {
        Op::OpenPath | Op::StatPath | Op::UnlinkPath | Op::Mkdir | Op::Rmdir | Op::Symlink | Op::Readlink | Op::Access | Op::SetattrPath => req.inode == 0,
        Op::Rename | Op::Link => req.inode == 0 || req.handle == 0,
        _ => false,
    }
}

/// `Op::PassFile`: sends the client the backing file of its open file (the request's handle,
/// which `scope` checked is the caller's, on the request's inode) through the writable
/// branch's view, and from then on counts the file as written behind the service's back
/// (`sh.passed`, the change table's outside writers) until its release. `EAGAIN` when the
/// instance passes no files, or not this one.
fn pass_busy_file(sh: &Shared, ch: &channels::Channel, fs: &dyn FileSystem, upper: Option<&passthrough::UpperView>, req: &Request) -> (i64, [u64; 4]) {
    let refused = (Unserved::Errno(libc::EAGAIN).result() as i64, [0; 4]);
    let Some(upper) = upper.filter(|_| req.flags & FLAG_FD_OK != 0) else { return refused };
    let Ok(flags) = i32::try_from(req.arg) else { return refused };
    if passthrough::busy_passable(fs, flags, req.inode, req.handle).is_none() {
        return refused;
    }
    // Counted as written outside before the descriptor goes (a reader that learned the file
    // must not trust it from the moment the client may write), undone if it does not. Once
    // per handle: a handle passed already is refused (and stays counted as it was).
    if !sh.passed.add(req.instance, req.handle, req.inode) {
        return refused;
    }
    fs.outside_writer(req.inode, true);
    let sent = passthrough::pass_busy(ch, fs, upper, flags, req.inode, req.handle);
    // A release of the handle by another of the client's threads may have come meanwhile:
    // then nothing holds the entry (the client's copy of the file is its own now).
    if (!sent || !sh.owners.holds(ch.holder, req.instance, req.handle, req.inode, false)) && sh.passed.take(req.instance, req.handle) {
        fs.outside_writer(req.inode, false);
    }
    if sent {
        (0, [0, 0, OPEN_PASSED, 0])
    } else {
        refused
    }
}

/// Reads a small file just opened read-only into `ch`'s buffer (the client keeps its bytes,
/// see `OPEN_PREFETCHED`), followed by an `OpenTrailer` (`names`: the slot and word of the
/// instance's names before the walk, if known): its length, with the file's slot and word in
/// `aux`; `None` for a file opened otherwise, longer than `PREFETCH_MAX`, or that could not be
/// read.
#[allow(clippy::too_many_arguments)]
fn prefetch(ch: &channels::Channel, fs: &dyn FileSystem, key: u32, arg: u64, inode: Inode, handle: u64, names: Option<((usize, u64), u64)>, aux: &mut [u64; 4]) -> Option<i64> {
    use polytropon_ipc::changes::{trailer_at, OpenTrailer, OUTSIDE, PREFETCH_MAX};
    let flags = polytropon_ipc::args::OpenArg::decode(arg).flags;
    if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & (libc::O_DIRECT | libc::O_TRUNC) != 0 {
        return None;
    }
    let table = changes::table()?;
    // The word before the size, the bytes and the attributes: a change after it shows.
    let (slot, word) = table.word(key, inode);
    if word & OUTSIDE != 0 || fs.getattr(&ch.ctx, inode, Some(handle)).ok()?.size > PREFETCH_MAX {
        return None;
    }
    // SAFETY: as for Read (`files::read`): one request per client at a time; the libservice
    // only writes into the slice.
    let shm = unsafe { ch.area.buffer() };
    let want = PREFETCH_MAX as usize + 1;
    if shm.len() < trailer_at(want) + OpenTrailer::SIZE {
        return None;
    }
    let n = fs.read(&ch.ctx, inode, handle, &mut [std::io::IoSliceMut::new(&mut shm[..want])], 0).ok()?;
    // The whole file (it ended before the bytes asked for), or nothing learned.
    if n >= want {
        return None;
    }
    // Attributes after the read, as a stat after it would see them (its access time).
    let attr = fs.getattr(&ch.ctx, inode, Some(handle)).ok()?;
    // What the path led to holds only if no name was removed since the walk began (see
    // `learn_attr`).
    let (names_slot, names_word) = names.filter(|(_, removals)| fs.removal_generation() == *removals).map_or((0, OUTSIDE), |((s, w), _)| (s as u64, w));
    let trailer = OpenTrailer { names_slot, names_word, attr: wire(&attr, &ch.creds) };
    ch.area.write_data_at(trailer_at(n), &trailer.to_bytes());
    Prefetched::encode(Witness { slot: slot as u64, word }, aux);
    i64::try_from(n).ok()
}

/// Reads the attributes of `inode` (just stat'ed by path) again after its change-table word,
/// into `ch`'s buffer, so that the client may keep them (`STAT_LEARNED`) while that word and
/// the names' (`names`, from before the walk) hold. Nothing when the file has a writer the
/// service does not see, or cannot be read, or when a name was removed or replaced since the
/// walk began (`removals`, the instance's removal generation then): a regular file's name
/// removed or replaced moves the file's word, not the names', so a word read after such a
/// removal would not show that the path led to the file before it.
fn learn_attr(ch: &channels::Channel, fs: &dyn FileSystem, key: u32, inode: Inode, names: (usize, u64), removals: u64, aux: &mut [u64; 4]) {
    let Some(table) = changes::table() else { return };
    let (slot, word) = table.word(key, inode);
    if word & polytropon_ipc::changes::OUTSIDE != 0 || fs.removal_generation() != removals {
        return;
    }
    let Ok(attr) = fs.getattr(&ch.ctx, inode, None) else { return };
    ch.area.write_data(&wire(&attr, &ch.creds).to_bytes());
    StatLearned::encode(Witness { slot: names.0 as u64, word: names.1 }, Witness { slot: slot as u64, word }, aux);
}

/// What a client may name. A handle: only one its process opened, on the inode it was opened
/// on (`EBADF` otherwise). A caller the permission rules could refuse something (see
/// `Call::guard`) may name no inode it did not reach through a checked path: paths from
/// another directory than an instance's root, listings opened by inode and extended
/// attributes by inode go to the kernel, which checks them.
fn scope(sh: &Shared, ch: &channels::Channel, req: &Request) -> Option<Unserved> {
    let by_handle = match req.op {
        Op::Getattr | Op::Read | Op::Write | Op::Truncate | Op::Setattr | Op::Fsync | Op::Fallocate | Op::PassFile => Some(false),
        Op::Readdir | Op::Fsyncdir => Some(true),
        _ => None,
    };
    if let Some(dir) = by_handle {
        let Some(access) = sh.owners.access(ch.holder, req.instance, req.handle, req.inode, dir) else {
            return Some(Unserved::Errno(libc::EBADF));
        };
        // The open's access mode, checked first, as the kernel does for a descriptor (a size
        // set through `Op::Setattr` is checked by its handler, which reads its own copy of
        // what is set).
        let (reads, writes) = (matches!(access, libc::O_RDONLY | libc::O_RDWR), matches!(access, libc::O_WRONLY | libc::O_RDWR));
        let refused = match req.op {
            Op::Read if !reads => Some(libc::EBADF),
            Op::Write | Op::Fallocate if !writes => Some(libc::EBADF),
            Op::Truncate if !writes => Some(libc::EINVAL),
            _ => None,
        };
        if let Some(e) = refused {
            return Some(Unserved::Errno(e));
        }
    }
    if ch.creds.all_caps() {
        return None;
    }
    let root = |ino: u64| ino == 0 || ino == ROOT_INODE;
    let refer = match req.op {
        Op::OpenPath | Op::StatPath | Op::UnlinkPath | Op::Mkdir | Op::Rmdir | Op::Symlink | Op::Readlink | Op::Access | Op::SetattrPath | Op::Statfs => !root(req.inode),
        Op::Rename | Op::Link => !root(req.inode) || !root(req.handle),
        Op::Opendir | Op::Getxattr | Op::Listxattr | Op::Setxattr | Op::Removexattr => true,
        _ => false,
    };
    refer.then_some(Unserved::Kernel)
}

/// Where a request's path leads: the parent directory, the last name, and for paths from
/// the instance's root the normalised path (the path cache's key for the leaf).
struct Walked<'p> {
    dir: Inode,
    name: &'p OsStr,
    key: Option<Vec<u8>>,
}

/// Resolves `path` (relative to directory `base`, 0 meaning the root; `.` skipped, `..`
/// refused by the libservice) to its parent directory and last name. Lookups it takes are
/// either cached in `dirs` (paths from the root only) or pushed on `held` (forgotten after
/// the request). A `base` the instance no longer knows is the kernel's to resolve.
fn walk<'p>(fs: &dyn FileSystem, ctx: &Context, guard: Option<&Creds>, base: Inode, path: &'p [u8], held: &mut Vec<Inode>, dirs: &mut PathCache) -> io::Result<Walked<'p>> {
    dirs.check_generation(fs);
    let mut comps = path.split(|b| *b == b'/').filter(|c| !c.is_empty() && *c != b".").peekable();
    let from_root = base == 0 || base == ROOT_INODE;
    if !from_root {
        let a = fs.getattr(ctx, base, None).map_err(|_| fallback())?;
        if a.kind() != FileKind::Directory {
            return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
        }
    }
    let mut cur = if from_root { ROOT_INODE } else { base };
    let mut prefix: Vec<u8> = Vec::with_capacity(path.len());
    while let Some(c) = comps.next() {
        // Every directory whose names are looked in needs search permission.
        if let Some(cr) = guard {
            cr.search(&fs.getattr(ctx, cur, None)?)?;
        }
        if comps.peek().is_none() {
            let key = from_root.then(|| {
                if !prefix.is_empty() {
                    prefix.push(b'/');
                }
                prefix.extend_from_slice(c);
                prefix
            });
            return Ok(Walked { dir: cur, name: OsStr::from_bytes(c), key });
        }
        if from_root {
            if !prefix.is_empty() {
                prefix.push(b'/');
            }
            prefix.extend_from_slice(c);
            if let Some(ino) = dirs.dir(fs, &prefix) {
                cur = ino;
                continue;
            }
        }
        let e = fs.lookup(ctx, cur, OsStr::from_bytes(c))?;
        if e.attr.kind() != FileKind::Directory {
            held.push(e.inode);
            // A symlink on the way is the kernel's to follow (it may lead anywhere).
            return Err(if e.attr.kind() == FileKind::Symlink { fallback() } else { io::Error::from_raw_os_error(libc::ENOTDIR) });
        }
        if from_root {
            dirs.put_dir(fs, &prefix, e.inode);
        } else {
            held.push(e.inode);
        }
        cur = e.inode;
    }
    Err(io::Error::from_raw_os_error(libc::EINVAL))
}

/// Keeps the lookup reference on `ino` (the leaf `w` named) in the path cache if it has none
/// for that path yet; otherwise it is released with the request.
/// OpenPath of a file the path cache pins (opened moments ago, most likely): the pinned
/// inode, with a reference of its own for the open, instead of a lookup (which would also
/// fetch attributes nobody needs here). `None`: take the lookup path.
fn open_pinned(fs: &dyn FileSystem, ctx: &Context, w: &Walked<'_>, flags: i32, dirs: &mut PathCache, kernel: Option<&dyn KernelCache>) -> Option<io::Result<(i64, [u64; 4])>> {
    // An exclusive create, or a create under `fs.protected_regular` (its rule needs the
    // directory), takes the whole way.
    if flags & libc::O_CREAT != 0 && (flags & libc::O_EXCL != 0 || perm::protected_regular() > 0) {
        return None;
    }
    let (inode, kind) = dirs.pin_of(fs, w.key.as_ref()?)?;
    if kind != FileKind::Regular || fs.retain(inode).is_err() {
        return None;
    }
    Some(match fs.open(ctx, inode, flags & !(libc::O_CREAT | libc::O_EXCL)) {
        Ok(h) => {
            if flags & libc::O_TRUNC != 0 {
                inval_inode(kernel, inode, 0, 0);
            }
            Ok((0, [inode, h, 0, 0]))
        }
        Err(e) => {
            fs.forget(inode, 1);
            Err(e)
        }
    })
}

fn pin_or_hold(fs: &dyn FileSystem, w: Walked<'_>, ino: Inode, kind: FileKind, held: &mut Vec<Inode>, dirs: &mut PathCache) {
    match w.key {
        Some(k) if !dirs.pinned(fs, &k) => dirs.pin(fs, k, ino, kind),
        _ => held.push(ino),
    }
}

fn execute(ch: &channels::Channel, fs: &dyn FileSystem, r: &Request, buf: &mut [u8], dirs: &mut PathCache, kernel: Option<&dyn KernelCache>, writable: bool) -> (i64, [u64; 4]) {
    let (area, ctx, creds) = (ch.area, &ch.ctx, &ch.creds);
    let mut held = Vec::new();
    let out = dispatch(&mut Call { area, fs, ctx, creds, guard: (!creds.all_caps()).then_some(creds), r, held: &mut held, dirs, kernel, writable }, buf);
    for ino in held {
        fs.forget(ino, 1);
    }
    match out {
        Ok(v) => v,
        Err(e) => (failed(&e), [0; 4]),
    }
}

/// An extended attribute name as the kernel accepts it: 1 to 255 bytes, no NUL.
fn xattr_name(name: &[u8]) -> io::Result<()> {
    if name.is_empty() || name.len() > 255 || name.contains(&0) {
        return Err(io::Error::from_raw_os_error(libc::ERANGE));
    }
    Ok(())
}

/// Tells the FUSE side of the instance, if any, that `inode` changed (see `KernelCache`).
fn inval_inode(kernel: Option<&dyn KernelCache>, inode: Inode, offset: i64, len: i64) {
    if let Some(k) = kernel {
        k.inval_inode(inode, offset, len);
    }
}

/// Tells the FUSE side of the instance, if any, that `inode` may end at `end` now.
fn grew(kernel: Option<&dyn KernelCache>, inode: Inode, end: u64) {
    if let Some(k) = kernel {
        k.grew(inode, end);
    }
}

/// Tells the FUSE side of the instance, if any, that entry `name` of `dir` changed.
fn inval_entry(kernel: Option<&dyn KernelCache>, dir: Inode, name: &OsStr) {
    if let Some(k) = kernel {
        k.inval_entry(dir, name);
    }
}

/// As [`inval_entry`], for a name just made (see `KernelCache::inval_new_entry`).
fn inval_new_entry(kernel: Option<&dyn KernelCache>, dir: Inode, name: &OsStr) {
    if let Some(k) = kernel {
        k.inval_new_entry(dir, name);
    }
}

/// The object `name` in `dir` names before a change removes or replaces it, when a FUSE side
/// caches its attributes (its link count drops); the reference is released with the request.
fn victim(fs: &dyn FileSystem, ctx: &Context, kernel: Option<&dyn KernelCache>, dir: Inode, name: &OsStr, held: &mut Vec<Inode>) -> Option<Inode> {
    kernel?;
    let e = fs.lookup(ctx, dir, name).ok()?;
    held.push(e.inode);
    Some(e.inode)
}

/// The request's bytes from client `r.client`'s buffer, copied out (the client may change
/// them meanwhile) through `buf`.
fn request_data(area: &Area, r: &Request, buf: &mut [u8]) -> Vec<u8> {
    let n = area.read_data(r.len as usize, buf);
    buf[..n].to_vec()
}

/// Held by an append from finding the file's end to writing there, one of them per file
/// (by its inode number): appends to one file are ordered, and an append that waits on a slow
/// backend (`O_SYNC`, a distant CephFS) holds up only appends to files of its shard.
static APPENDS: [std::sync::Mutex<()>; 64] = [const { std::sync::Mutex::new(()) }; 64];

/// A streamed write whose client has not sent its next piece for this long calls a helper
/// for the queue, so that the queue's other clients do not wait behind it.
const STALL: std::time::Duration = std::time::Duration::from_millis(2);

thread_local! {
    /// The back driver and queue this service thread serves (for a stalled streamed write).
    static WORKER: std::cell::RefCell<Option<(Arc<Shared>, u32)>> = const { std::cell::RefCell::new(None) };
}

/// A streamed write waiting for its stalled client: the queue keeps a helper meanwhile.
struct Stalled {
    sh: Arc<Shared>,
    q: u32,
}

impl Stalled {
    fn start(sh: &Arc<Shared>, q: u32) -> Stalled {
        sh.stalled[q as usize].fetch_add(1, Ordering::AcqRel);
        call_helper(sh, q, Help::StalledWrite);
        Stalled { sh: sh.clone(), q }
    }
}

impl Drop for Stalled {
    fn drop(&mut self) {
        self.sh.stalled[self.q as usize].fetch_sub(1, Ordering::AcqRel);
    }
}

/// Longest a streamed write waits for its client's pieces, all of them together (an honest
/// client copies a piece in microseconds; one descheduled that long gets a short write, which
/// the library completes with another request; one that trickles its pieces in is given up on
/// as one that stops).
const PIECE_WAIT: std::time::Duration = std::time::Duration::from_millis(100);
/// After a streamed write was given up on, how long the writes of its queue are not streamed
/// (refused with `EAGAIN`: the library copies such a write in whole, then sends it), so that
/// clients stalling on purpose, however many processes or users they are, hold the queue's
/// threads about a tenth of the time at most (honest clients of the queue meanwhile write as
/// an append does: copied in, then written).
const STREAM_BAR: std::time::Duration = std::time::Duration::from_secs(1);
/// Smallest piece of a streamed write written on its own (unless it is the last).
const MIN_PIECE: usize = 64 << 10;

/// Writes the `buf.len()` bytes of a streamed write at `at` as the client copies them in: each
/// time its `filled` word (untrusted: clamped) shows a new piece, that piece goes to the
/// backend. A client that stops filling gets what was written so far (or `EIO` for none).
fn streamed_write(area: &Area, fs: &dyn FileSystem, ctx: &Context, r: &Request, buf: &[u8], at: u64) -> io::Result<usize> {
    let driver = WORKER.with(|w| w.borrow().as_ref().map(|(sh, q)| (sh.clone(), *q)));
    if driver.as_ref().is_some_and(|(sh, q)| sh.stream_barred(*q)) {
        return Err(io::Error::from_raw_os_error(libc::EAGAIN));
    }
    let h = area.header();
    let total = buf.len();
    let mut done = 0;
    let mut since = None::<std::time::Instant>;
    // Time spent waiting for pieces that came (the backend's writes do not count).
    let mut waited_before = std::time::Duration::ZERO;
    let mut spins = 0u32;
    // Set while this write waits for a stalled client (a helper serves the others).
    let mut stall: Option<Stalled> = None;
    while done < total {
        let filled = (h.filled.load(Ordering::Acquire) as usize).min(total);
        if filled >= total || filled >= done + MIN_PIECE {
            if let Some(t) = since.take() {
                waited_before += t.elapsed();
            }
            let want = filled - done;
            let w = match fs.write(ctx, r.inode, r.handle, &[IoSlice::new(&buf[done..filled])], at + done as u64) {
                Ok(w) => w,
                // What was written is said (a short write, as the kernel's); the error comes
                // with the client's next request for the rest.
                Err(_) if done > 0 => break,
                Err(e) => return Err(e),
            };
            done += w;
            if w < want {
                break;
            }
            continue;
        }
        // The next piece is being copied (microseconds); a client that stalls is given up on,
        // and meanwhile the queue's other clients get a helper thread.
        let waited = since.get_or_insert_with(std::time::Instant::now).elapsed();
        if waited_before + waited > PIECE_WAIT {
            if let Some((sh, q)) = &driver {
                sh.bar_streaming(*q);
            }
            break;
        }
        if waited > STALL && stall.is_none() {
            stall = WORKER.with(|w| w.borrow().as_ref().map(|(sh, q)| Stalled::start(sh, *q)));
        }
        spins += 1;
        if spins.is_multiple_of(polytropon_ipc::client::YIELD_EVERY) {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
    if done == 0 && total > 0 {
        return Err(io::Error::from_raw_os_error(libc::EIO));
    }
    Ok(done)
}

fn fallback() -> io::Error {
    io::Error::other(KernelPath)
}

/// What the back driver serves, op by op: the one table (the match is exhaustive, so a new
/// op cannot be left out).
fn dispatch(c: &mut Call<'_>, buf: &mut [u8]) -> io::Result<Reply> {
    match c.r.op {
        Op::OpenPath => files::open_path(c, buf),
        Op::StatPath => files::stat_path(c, buf),
        Op::UnlinkPath => files::unlink_path(c, buf),
        Op::Getattr => files::getattr(c),
        Op::Read => files::read(c),
        Op::Write => files::write(c),
        Op::Release => files::release(c),
        Op::Truncate => files::truncate(c),
        Op::Setattr => files::setattr(c),
        Op::Getxattr | Op::Listxattr => files::xattr_value(c, buf),
        Op::Setxattr => files::setxattr(c, buf),
        Op::Removexattr => files::removexattr(c, buf),
        Op::Fsync => files::fsync(c),
        Op::Mkdir => namespace::mkdir(c, buf),
        Op::Rmdir => namespace::rmdir(c, buf),
        Op::Rename | Op::Link => namespace::rename_or_link(c, buf),
        Op::Symlink => namespace::symlink(c, buf),
        Op::Readlink => namespace::readlink(c, buf),
        Op::Access => namespace::access(c, buf),
        Op::SetattrPath => namespace::setattr_path(c, buf),
        Op::Opendir => listing::opendir(c),
        Op::Readdir => listing::readdir(c),
        Op::Releasedir => listing::releasedir(c),
        Op::Fsyncdir => listing::fsyncdir(c),
        Op::Statfs => listing::statfs(c, buf),
        Op::Fallocate => files::fallocate(c),
        Op::Syncfs => files::syncfs(c),
        // Counted by `serve_request` before anything is dispatched.
        Op::HandOver => Ok((0, [0; 4])),
        // Served by `serve_request` (it needs the driver's table of passed files).
        Op::PassFile => Err(io::Error::from_raw_os_error(libc::ENOSYS)),
        // Inode-level calls: the user-level path works by path and never sends them.
        Op::Lookup | Op::Open | Op::Create | Op::Unlink => Err(io::Error::from_raw_os_error(libc::ENOSYS)),
    }
}
