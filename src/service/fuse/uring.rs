//! FUSE over io_uring (Linux 6.14+, `fuse` module parameter `enable_uring`).
//!
//! At INIT the kernel offers `FUSE_OVER_IO_URING`; accepted, it sends every request (but
//! FORGET, INTERRUPT and notifications, which stay on `/dev/fuse` and fuser's reader) to a
//! per-cpu queue of ring entries the daemon registered: an entry is a header buffer and a
//! payload buffer, and one `COMMIT_AND_FETCH` command answers the request an entry holds and
//! offers the entry for the next, in one submission. The kernel queues a request on the
//! queue of the cpu its caller runs on, and uses the ring only once every possible cpu's
//! queue has an entry; until then (and for good if a registration fails) requests take the
//! classic transport.
//!
//! Here each queue is served by `THREADS_PER_QUEUE` threads, each with an io_uring of its own
//! and one entry, pinned to the queue's cpu when the pool may run there. A thread serves the
//! request its entry holds itself (the adapter runs no worker hand-off on these threads), so
//! a blocking request holds only its own entry. The kernel's structures are in
//! `include/uapi/linux/fuse.h` (7.42); the request codec is `wire`.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use tracing::{debug, info, warn};

use super::adapter::{mark_ring_thread, FuseAdapter};
use super::answer::{Answered, RingAnswer};
use super::wire::{self, InHeader, Op};
use crate::libservice::Context;

/// `FUSE_OVER_IO_URING` in INIT's flags (bit 9 of `flags2`).
pub const FUSE_OVER_IO_URING: u64 = 1 << 41;
const CMD_REGISTER: u32 = 1;
const CMD_COMMIT_AND_FETCH: u32 = 2;
/// `struct fuse_uring_req_header`: in/out header (128), op header (128), entry info (32).
const HEADER_BYTES: usize = 288;
const OP_IN: usize = 128;
const ENT_IN_OUT: usize = 256;
/// Threads (each with one ring entry) per cpu queue.
const THREADS_PER_QUEUE: usize = 2;

/// Which transport a mount asked for.
pub use crate::spec::FuseTransport as Transport;

/// Which transport a mount's requests take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Active {
    /// `/dev/fuse` reads and writes.
    Classic,
    /// Ring entries registered, requests on the ring.
    Uring,
}

impl Active {
    pub fn name(self) -> &'static str {
        match self {
            Active::Classic => "classic",
            Active::Uring => "io_uring",
        }
    }
}

/// Errors of setting the transport up.
#[derive(Debug, thiserror::Error)]
pub enum UringError {
    #[error(
        "FUSE over io_uring is off on this host (the fuse module's enable_uring parameter is not Y); \
         an operator enables it with `echo Y > /sys/module/fuse/parameters/enable_uring`, or use `--fuse-transport auto|classic`"
    )]
    Disabled,
    #[error("this kernel has no FUSE over io_uring (no /sys/module/fuse/parameters/enable_uring; Linux 6.14+ with CONFIG_FUSE_IO_URING)")]
    Missing,
    #[error("cannot set up io_uring for FUSE: {0}")]
    Setup(#[source] std::io::Error),
}

/// Whether the host lets FUSE connections use io_uring (never changed here: that is the
/// operator's choice).
pub fn host_allows() -> Result<(), UringError> {
    match std::fs::read_to_string("/sys/module/fuse/parameters/enable_uring") {
        Ok(v) if v.trim() == "Y" => Ok(()),
        Ok(_) => Err(UringError::Disabled),
        Err(_) => Err(UringError::Missing),
    }
}

/// The number of queues the kernel makes: one per possible cpu. `None` when it cannot be
/// read: guessing too few would leave queues without entries, and the kernel would hold every
/// request of the mount for them.
fn possible_cpus() -> Option<usize> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible").ok()?;
    let mut n = 0;
    for range in text.trim().split(',').filter(|r| !r.is_empty()) {
        let mut ends = range.split('-').map(|x| x.trim().parse::<usize>());
        match (ends.next(), ends.next()) {
            (Some(Ok(a)), Some(Ok(b))) if b >= a => n = n.max(b + 1),
            (Some(Ok(a)), None) => n = n.max(a + 1),
            _ => return None,
        }
    }
    (n > 0).then_some(n)
}

/// One ring entry's buffers. The kernel writes a request into them while the entry is
/// registered and waiting, and reads the answer after a commit; the thread that owns them
/// touches them only between a completion and its next submission.
struct Buffers {
    header: Box<[u8]>,
    payload: Box<[u8]>,
    iov: Box<[libc::iovec; 2]>,
}

impl Buffers {
    fn new(payload: usize) -> Self {
        // Zeroed memory the kernel maps in as it copies requests: an entry costs resident
        // memory only as far as its largest request reached.
        let mut header = vec![0u8; HEADER_BYTES].into_boxed_slice();
        let mut payload = vec![0u8; payload].into_boxed_slice();
        let iov = Box::new([
            libc::iovec { iov_base: header.as_mut_ptr().cast(), iov_len: header.len() },
            libc::iovec { iov_base: payload.as_mut_ptr().cast(), iov_len: payload.len() },
        ]);
        Buffers { header, payload, iov }
    }
}

/// What the ring threads share.
struct Shared {
    adapter: Arc<FuseAdapter>,
    payload: usize,
    /// 0 classic, 1 io_uring.
    active: AtomicU8,
}

/// The io_uring transport of one mount: a ring and a thread per entry, all made before INIT
/// accepts the transport (so that the only failures left are registrations, which the kernel
/// answers by falling back to the classic transport). The threads wait for the device, sent
/// once INIT accepted; they end without registering when the plan is dropped unused.
pub struct Plan {
    dev: OnceLock<Arc<OwnedFd>>,
    shared: Arc<Shared>,
    go: Mutex<Vec<crossbeam_channel::Sender<Arc<OwnedFd>>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan").field("active", &self.active()).finish_non_exhaustive()
    }
}

impl Plan {
    /// Makes a ring and a thread for every entry of every queue (`payload`: the largest
    /// request or answer).
    pub fn new(adapter: Arc<FuseAdapter>, payload: usize) -> Result<Arc<Self>, UringError> {
        let queues = possible_cpus().ok_or_else(|| UringError::Setup(std::io::Error::other("cannot read /sys/devices/system/cpu/possible")))?;
        let shared = Arc::new(Shared { adapter, payload, active: AtomicU8::new(0) });
        let allowed = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok();
        let plan = Plan { dev: OnceLock::new(), shared, go: Mutex::new(Vec::new()), threads: Mutex::new(Vec::new()) };
        for qid in 0..queues {
            let pin = allowed.as_ref().is_some_and(|a| a.is_set(qid).unwrap_or(false)).then_some(qid);
            for k in 0..THREADS_PER_QUEUE {
                let ring = IoUring::<squeue::Entry128, cqueue::Entry>::builder().build(4).map_err(UringError::Setup)?;
                let (tx, rx) = crossbeam_channel::bounded::<Arc<OwnedFd>>(1);
                let shared = plan.shared.clone();
                let qid = u16::try_from(qid).map_err(|_| UringError::Setup(std::io::Error::other("too many cpus")))?;
                let thread = std::thread::Builder::new().name(format!("ptn-ring-{qid}-{k}")).spawn(move || {
                    // The device comes once INIT accepted the transport; a closed channel: never.
                    let Ok(dev) = rx.recv() else { return };
                    if let Some(cpu) = pin {
                        let mut set = nix::sched::CpuSet::new();
                        if set.set(cpu).is_ok() {
                            let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
                        }
                    }
                    shared.serve(ring, qid, dev);
                });
                // A thread that cannot start leaves the plan unused (dropping it ends the others).
                let thread = thread.map_err(UringError::Setup)?;
                lock(&plan.go).push(tx);
                lock(&plan.threads).push(thread);
            }
        }
        Ok(Arc::new(plan))
    }

    /// The connection's device (a duplicate of the session's), set once mounted.
    pub fn set_device(&self, dev: OwnedFd) {
        let _ = self.dev.set(Arc::new(dev));
    }

    /// Whether INIT may accept the transport: the device is known and every thread waits.
    pub fn ready(&self) -> bool {
        self.dev.get().is_some() && !lock(&self.go).is_empty()
    }

    pub fn active(&self) -> Active {
        if self.shared.active.load(Ordering::Acquire) == 1 {
            Active::Uring
        } else {
            Active::Classic
        }
    }

    /// INIT accepted the transport: the threads register their entries as soon as the INIT
    /// answer is out.
    pub fn start(&self) {
        let Some(dev) = self.dev.get().cloned() else { return };
        for go in lock(&self.go).drain(..) {
            let _ = go.send(dev.clone());
        }
    }

    /// Ends threads that were never started, then waits for the others (they end when the
    /// connection does).
    pub fn join(&self) {
        lock(&self.go).clear();
        let threads = std::mem::take(&mut *lock(&self.threads));
        for t in threads {
            let _ = t.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn serve(&self, ring: IoUring<squeue::Entry128, cqueue::Entry>, qid: u16, dev: Arc<OwnedFd>) {
        mark_ring_thread();
        // The entry's buffers, then the ring moved into a younger binding: the ring is
        // dropped (its commands cancelled) before the buffers it points at are freed.
        let mut buf = Buffers::new(self.payload);
        let mut ring = ring;
        let fd = types::Fd(dev.as_raw_fd());
        let (tx, rx) = crossbeam_channel::bounded::<Answered>(1);
        // REGISTER completes when the kernel first puts a request in the entry, or at once
        // with an error: EAGAIN while the INIT answer is not out yet (it goes out right after
        // `init` returns, so that is short; a connection that ends meanwhile answers ENOTCONN).
        let sqe = register_sqe(fd, qid, &buf);
        std::thread::sleep(Duration::from_millis(1));
        let first = loop {
            match push(&mut ring, &sqe).and_then(|()| wait_one(&mut ring)) {
                Ok(e) if e == -libc::EAGAIN => std::thread::sleep(Duration::from_millis(1)),
                Ok(r) => break r,
                Err(e) => return self.failed(&mut ring, fd, qid, &e),
            }
        };
        if first != 0 {
            return self.failed(&mut ring, fd, qid, &std::io::Error::from_raw_os_error(-first));
        }
        // The kernel puts requests on the ring only once every queue has an entry.
        if self.active.swap(1, Ordering::AcqRel) == 0 {
            info!("FUSE requests now travel over io_uring");
        }
        loop {
            let (commit_id, answer) = self.handle(&buf, &tx, &rx, &dev);
            let len = answer.as_ref().map_or(0, |p| p.len().min(buf.payload.len()));
            if let Ok(p) = &answer {
                buf.payload[..len].copy_from_slice(&p[..len]);
            }
            let errno = answer.err().unwrap_or(0);
            buf.header[..wire::OUT_HEADER].copy_from_slice(&wire::out_header(commit_id, errno, len));
            buf.header[ENT_IN_OUT + 16..ENT_IN_OUT + 20].copy_from_slice(&(len as u32).to_le_bytes());
            let sqe = commit_sqe(fd, qid, commit_id);
            match push(&mut ring, &sqe).and_then(|()| wait_one(&mut ring)) {
                Ok(0) => {}
                Ok(e) => {
                    debug!("ring queue {qid} ends: {}", std::io::Error::from_raw_os_error(-e));
                    return;
                }
                Err(e) => {
                    warn!("io_uring transport: {e}");
                    return;
                }
            }
        }
    }

    /// A ring thread whose registration failed. The kernel falls back to the classic transport
    /// when a registration fails in its checks; a failure of ours (the ring itself) is turned
    /// into one by registering an entry it must refuse, or the queue would wait for an entry
    /// forever. A connection that is gone needs nothing.
    fn failed(&self, ring: &mut IoUring<squeue::Entry128, cqueue::Entry>, fd: types::Fd, qid: u16, e: &std::io::Error) {
        if matches!(e.raw_os_error(), Some(libc::ENOTCONN) | Some(libc::ECONNABORTED) | Some(libc::ECANCELED)) {
            return;
        }
        warn!("io_uring transport: queue {qid}: {e}; the classic transport serves this mount");
        let refused = Buffers::new(0);
        let _ = push(ring, &register_sqe(fd, qid, &refused)).and_then(|()| wait_one(ring));
    }

    /// Decodes and serves the request in `buf`; the commit id to answer with, and the answer.
    /// A handler that panics answers `EIO` (its entry is committed all the same).
    fn handle(&self, buf: &Buffers, tx: &crossbeam_channel::Sender<Answered>, rx: &crossbeam_channel::Receiver<Answered>, dev: &Arc<OwnedFd>) -> (u64, Answered) {
        let commit = &buf.header[ENT_IN_OUT..ENT_IN_OUT + 32];
        let word = |at: usize| u64::from_le_bytes([commit[at], commit[at + 1], commit[at + 2], commit[at + 3], commit[at + 4], commit[at + 5], commit[at + 6], commit[at + 7]]);
        let commit_id = word(8);
        let payload_sz = u32::from_le_bytes([commit[16], commit[17], commit[18], commit[19]]) as usize;
        let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.serve_request(buf, payload_sz, tx, rx, dev)));
        match served {
            Ok(answer) => (commit_id, answer),
            Err(_) => {
                warn!("io_uring transport: a request handler panicked; answered EIO");
                // The answer dropped in the unwinding is in the channel: not the next one's.
                while rx.try_recv().is_ok() {}
                (commit_id, Err(libc::EIO))
            }
        }
    }

    fn serve_request(&self, buf: &Buffers, payload_sz: usize, tx: &crossbeam_channel::Sender<Answered>, rx: &crossbeam_channel::Receiver<Answered>, dev: &Arc<OwnedFd>) -> Answered {
        let h = InHeader::parse(&buf.header[..wire::IN_HEADER]).map_err(|_| libc::EINVAL)?;
        let op_len = (h.len as usize).checked_sub(wire::IN_HEADER + payload_sz).ok_or(libc::EINVAL)?;
        if op_len > OP_IN || payload_sz > buf.payload.len() {
            return Err(libc::EINVAL);
        }
        let op_in = &buf.header[OP_IN..OP_IN + op_len];
        let payload = &buf.payload[..payload_sz];
        // FORGET reaches the ring only when forced (no answer expected; the entry still
        // needs its commit).
        if h.opcode == 2 {
            if let Ok(b) = <[u8; 8]>::try_from(op_in) {
                self.adapter.forget(h.nodeid, u64::from_le_bytes(b));
            }
            return Ok(Vec::new());
        }
        let op = match wire::decode(&h, op_in, payload) {
            Ok(op) => op,
            Err(wire::DecodeError::Unsupported(_)) => return Err(libc::ENOSYS),
            Err(e) => {
                debug!("ring request {}: {e}", h.unique);
                return Err(libc::EINVAL);
            }
        };
        let limit = match &op {
            Op::Readdir { size, .. } => (*size as usize).min(buf.payload.len()),
            _ => buf.payload.len(),
        };
        let answer = RingAnswer::new(tx.clone(), Arc::downgrade(dev), limit);
        self.dispatch(&h, op, answer);
        // The handlers answer on this thread (see `adapter::heavy`); a late one is waited for.
        rx.recv().unwrap_or(Err(libc::EIO))
    }

    fn dispatch(&self, h: &InHeader, op: Op<'_>, r: RingAnswer) {
        let a = &self.adapter;
        let c = Context { uid: h.uid, gid: h.gid, pid: h.pid as i32 };
        let ino = h.nodeid;
        match op {
            Op::Lookup { name } => a.lookup(c, ino, name, r),
            Op::Getattr { fh } => a.getattr(c, ino, fh, r),
            Op::Setattr(s) => a.setattr(c, ino, s.mode, s.uid, s.gid, s.size, s.atime, s.mtime, None, s.fh, None, None, None, None, r),
            Op::Readlink => a.readlink(c, ino, r),
            Op::Symlink { name, target } => a.symlink(c, ino, name, std::path::Path::new(target), r),
            Op::Mknod { name, mode, umask, rdev } => a.mknod(c, ino, name, mode, umask, rdev, r),
            Op::Mkdir { name, mode, umask } => a.mkdir(c, ino, name, mode, umask, r),
            Op::Unlink { name } => a.unlink(c, ino, name, r),
            Op::Rmdir { name } => a.rmdir(c, ino, name, r),
            Op::Rename { name, newdir, newname, flags } => a.rename(c, ino, name, newdir, newname, flags, r),
            Op::Link { oldnode, newname } => a.link(c, oldnode, ino, newname, r),
            Op::Open { flags } => a.open(c, ino, flags, r),
            Op::Read { fh, offset, size } => a.read(c, ino, fh, offset, size, 0, None, r),
            Op::Write { fh, offset, data, flags, write_flags } => a.write(c, ino, fh, offset, &data, write_flags, flags, None, r),
            Op::Statfs => a.statfs(c, ino, r),
            Op::Release { fh, flags } => a.release(c, ino, fh, flags, None, false, r),
            Op::Fsync { fh, datasync } => a.fsync(c, ino, fh, datasync, r),
            Op::Setxattr { name, value, flags } => a.setxattr(c, ino, name, value, flags, 0, r),
            Op::Getxattr { name, size } => a.getxattr(c, ino, name, size, r),
            Op::Listxattr { size } => a.listxattr(c, ino, size, r),
            Op::Removexattr { name } => a.removexattr(c, ino, name, r),
            Op::Flush { fh, lock_owner } => a.flush(c, ino, fh, lock_owner, r),
            Op::Opendir { flags } => a.opendir(c, ino, flags, r),
            Op::Readdir { fh, offset, .. } => a.readdir(c, ino, fh, offset, r),
            Op::Releasedir { fh, flags } => a.releasedir(c, ino, fh, flags, r),
            Op::Fsyncdir { fh, datasync } => a.fsyncdir(c, ino, fh, datasync, r),
            Op::Access { mask } => a.access(c, ino, mask, r),
            Op::Create { name, mode, umask, flags } => a.create(c, ino, name, mode, umask, flags, r),
            Op::Fallocate { fh, offset, length, mode } => a.fallocate(c, ino, fh, offset, length, mode, r),
            Op::Lseek { fh, offset, whence } => a.lseek(c, ino, fh, offset, whence, r),
        }
    }
}

/// `struct fuse_uring_cmd_req` in the command area: flags, commit id, queue.
fn cmd(qid: u16, commit_id: u64) -> [u8; 80] {
    let mut c = [0u8; 80];
    c[8..16].copy_from_slice(&commit_id.to_le_bytes());
    c[16..18].copy_from_slice(&qid.to_le_bytes());
    c
}

/// Offset of `len` in `struct io_uring_sqe`.
const SQE_LEN: usize = 24;

fn register_sqe(fd: types::Fd, qid: u16, buf: &Buffers) -> squeue::Entry128 {
    let sqe = opcode::UringCmd80::new(fd, CMD_REGISTER).cmd(cmd(qid, 0)).addr(Some(buf.iov.as_ptr() as u64)).build();
    // The io-uring crate's command builder sets the iovec address but not `len`, which FUSE
    // requires to be the number of iovecs (2).
    const _: () = assert!(std::mem::size_of::<squeue::Entry128>() == 128);
    // SAFETY: `Entry128` is `repr(C)` over the kernel's 128-byte SQE (checked above), so its
    // bytes are the SQE's; writing the little-endian u32 at the `len` offset and reading the
    // bytes back as an `Entry128` keeps every other field as the builder set it, and any bit
    // pattern is a valid SQE value.
    unsafe {
        let mut raw: [u8; 128] = std::mem::transmute(sqe);
        raw[SQE_LEN..SQE_LEN + 4].copy_from_slice(&2u32.to_le_bytes());
        std::mem::transmute::<[u8; 128], squeue::Entry128>(raw)
    }
}

fn commit_sqe(fd: types::Fd, qid: u16, unique: u64) -> squeue::Entry128 {
    opcode::UringCmd80::new(fd, CMD_COMMIT_AND_FETCH).cmd(cmd(qid, unique)).build()
}

/// Queues `sqe` (submitted by the next `submit` or `wait_one`).
fn push(ring: &mut IoUring<squeue::Entry128, cqueue::Entry>, sqe: &squeue::Entry128) -> std::io::Result<()> {
    // SAFETY: the buffers a command points at (`Buffers`, its iovec array) belong to the
    // calling thread's `serve` frame, where the ring is dropped before them (or to `failed`,
    // whose refused registration completes before it returns); the kernel uses them only
    // while the entry is registered.
    unsafe { ring.submission().push(sqe) }.map_err(|_| std::io::Error::other("io_uring submission queue full"))
}

/// Submits what is queued and waits for one completion; its result.
fn wait_one(ring: &mut IoUring<squeue::Entry128, cqueue::Entry>) -> std::io::Result<i32> {
    loop {
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
        if let Some(cqe) = ring.completion().next() {
            return Ok(cqe.result());
        }
    }
}
