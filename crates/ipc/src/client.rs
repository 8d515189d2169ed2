//! The client side: attach to a pool's segment, own one client area, send requests and wait
//! for their completion (a short spin, then a futex sleep; bounded, so a dead service gives
//! `EIO` instead of a hang).

use crate::segment::{futex_wait, futex_wake, Layout, Segment, DONE, IDLE, PENDING, SLEEPING};
use crate::sync::Ordering;
use crate::{Descriptor, Unserved};

/// Spins before sleeping on the completion word.
const SPINS: u32 = 4000;
/// Longest wait for one request before giving up with `EIO`.
const TIMEOUT_MS: u64 = 5000;
/// While spinning, a client (and an idle service thread) yields its cpu every this many
/// spins: when the scheduler has put client and service thread on one cpu, each then runs
/// at once instead of after the other's spin budget (tens of µs) and a futex sleep. A
/// reply that comes within the first spins costs no system call.
pub const YIELD_EVERY: u32 = 128;

/// One client: a claimed client area of an attached segment. Not shared between threads.
#[derive(Debug)]
pub struct Client {
    seg: Segment,
    addr: *mut libc::c_void,
    id: u32,
    queue: u32,
    seq: u64,
    /// Polls of the answer before sleeping: none when this thread may run on one cpu only
    /// (a one-cpu pool), where spinning only keeps the service from running.
    spins: u32,
    /// The request being waited for was sent from the worker's cpu: yield at every poll.
    near: bool,
    /// The owner word this client wrote into its area, and the process that claimed it: a
    /// forked child holds a copy of its parent's client (in the parent thread's thread-local
    /// storage), whose drop when the child exits must not give back the area its parent
    /// still uses (see `Drop`).
    owner: u64,
    pid: u32,
}

/// Whether the calling thread may run on more than one cpu.
fn several_cpus() -> bool {
    // SAFETY: a zeroed cpu_set_t is a valid out-parameter of the size passed.
    let mut set: libc::cpu_set_t = unsafe { core::mem::zeroed() };
    // SAFETY: as above; pid 0 is the calling thread.
    if unsafe { libc::sched_getaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return true;
    }
    // SAFETY: counting the bits of the set just filled.
    unsafe { libc::CPU_COUNT(&set) > 1 }
}

/// The reply to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    pub value: u64,
    pub aux: [u64; 4],
}

/// Milliseconds of the monotonic clock.
pub fn now_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-parameter; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// The low 32 bits of this process's pid namespace's inode (0 when /proc cannot tell).
fn pid_namespace() -> u32 {
    // SAFETY: zeroed `stat` is a valid out-parameter; the path is NUL-terminated.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::stat(c"/proc/self/ns/pid".as_ptr(), &mut st) } != 0 {
        return 0;
    }
    st.st_ino as u32
}

/// Whether process `pid` (of this pid namespace) exists; a zombie still does.
pub fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || errno() != libc::ESRCH
}

fn errno() -> i32 {
    // SAFETY: reading the calling thread's errno.
    unsafe { *libc::__errno_location() }
}

impl Client {
    /// Attaches segment `shmid` and claims a free client area. `queue` picks the request
    /// queue (e.g. from the cpu or thread). Errors are errno values.
    pub fn attach(shmid: i32, queue: u32) -> Result<Client, i32> {
        // SAFETY: plain syscalls; every result is checked.
        let mut ds: libc::shmid_ds = unsafe { core::mem::zeroed() };
        // SAFETY: `ds` is a valid out-parameter.
        if unsafe { libc::shmctl(shmid, libc::IPC_STAT, &mut ds) } != 0 {
            return Err(errno());
        }
        // SAFETY: attaching a segment that exists; the kernel picks the address.
        let addr = unsafe { libc::shmat(shmid, core::ptr::null(), 0) };
        if addr as isize == -1 {
            return Err(errno());
        }
        let detach = |e: i32| {
            // SAFETY: `addr` came from a successful shmat.
            unsafe { libc::shmdt(addr) };
            Err(e)
        };
        let Some(g) = Segment::claimed_geometry(addr as *const u8) else { return detach(libc::EPROTO) };
        let Some(layout) = Layout::new(g) else { return detach(libc::EPROTO) };
        if layout.total > ds.shm_segsz {
            return detach(libc::EPROTO);
        }
        // SAFETY: shmat returns a page-aligned mapping of `shm_segsz` >= `layout.total` bytes,
        // kept until `Drop` detaches it.
        let seg = unsafe { Segment::new(addr as *mut u8, layout) };
        if seg.service_gone() {
            return detach(libc::ENOTCONN);
        }
        // SAFETY: getpid cannot fail.
        let pid = unsafe { libc::getpid() } as u32;
        let ns = pid_namespace();
        let me = crate::args::Owner { ns, pid }.encode();
        let claimed = |c: u32, h: &crate::segment::ClientHeader| {
            h.state.store(IDLE, Ordering::Release);
            // Sequence numbers far from the last owner's, whose late answers must not match.
            let seq = h.seq.load(Ordering::Acquire).wrapping_add(1 << 32);
            Client { seg, addr, id: c, queue, seq, spins: if several_cpus() { SPINS } else { 0 }, near: false, owner: me, pid }
        };
        for c in 0..g.clients {
            let Some(h) = seg.client(c) else { break };
            if h.owner.compare_exchange(0, me, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                return Ok(claimed(c, h));
            }
        }
        // Every area is taken: take back one whose owner died without giving it back (killed,
        // or exited with threads still attached). Only owners of this pid namespace can be
        // checked; a pid reused by a live process keeps the area (the safe mistake).
        if ns != 0 {
            for c in 0..g.clients {
                let Some(h) = seg.client(c) else { break };
                let owner = h.owner.load(Ordering::Acquire);
                let crate::args::Owner { ns: owner_ns, pid: owner_pid } = crate::args::Owner::decode(owner);
                if owner_ns == ns && owner_pid != pid && owner_pid != 0 && !alive(owner_pid) && h.owner.compare_exchange(owner, me, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                    return Ok(claimed(c, h));
                }
            }
        }
        detach(libc::EBUSY)
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    /// Whether the service of this client's segment died or stopped (see
    /// [`Segment::service_gone`]): every later call fails, a new segment is needed.
    pub fn service_gone(&self) -> bool {
        self.seg.service_gone()
    }

    /// Largest data payload of one request.
    pub fn buffer_size(&self) -> usize {
        self.seg.layout.geometry.buffer_size as usize
    }

    /// Sends `d` (its `client` and `seq` are filled in) with `data` in the buffer, and waits
    /// for the reply: the service's answer, or why it did not serve the request (`EIO` when
    /// it does not answer).
    pub fn call(&mut self, d: Descriptor, data: &[u8]) -> Result<Reply, Unserved> {
        self.call_parts(d, &[data])
    }

    /// As [`Client::call`], with the data given in parts laid out one after the other.
    pub fn call_parts(&mut self, mut d: Descriptor, parts: &[&[u8]]) -> Result<Reply, Unserved> {
        // A copy of the (Copy) view, so that `h` does not borrow `self`.
        let seg = self.seg;
        let Some(h) = seg.client(self.id) else { return Err(Unserved::Errno(libc::EIO)) };
        self.number(&mut d);
        let mut at = 0;
        for part in parts {
            at += self.seg.write_data_at(self.id, at, part);
        }
        self.submit(h, &d)?;
        self.wait()
    }

    /// Gives `d` this client's area and the next sequence number.
    fn number(&mut self, d: &mut Descriptor) {
        self.seq = self.seq.wrapping_add(1);
        d.client = self.id;
        d.seq = self.seq;
    }

    /// Marks the area's request pending and queues `d` (the area goes back to idle if the
    /// queue will not take it), flagged [`crate::FLAG_NEAR`] when this thread runs where the
    /// queue's worker last did (see [`Client::near_worker`]).
    fn submit(&mut self, h: &crate::segment::ClientHeader, d: &Descriptor) -> Result<(), i32> {
        let mut d = *d;
        self.near = self.near_worker();
        if self.near {
            d.flags |= crate::FLAG_NEAR;
        }
        h.state.store(PENDING, Ordering::Release);
        self.enqueue(&d).inspect_err(|_| h.state.store(IDLE, Ordering::Release))
    }

    /// Whether this thread runs on the cpu its queue's worker last served on. If so and
    /// another queue's worker runs elsewhere, this client moves to that queue instead (a
    /// worker pinned to this cpu cannot leave it; this thread would take turns with it).
    fn near_worker(&mut self) -> bool {
        let here = crate::current_cpu();
        if here == 0 || self.seg.doorbell(self.queue).cpu.load(Ordering::Relaxed) != here {
            return false;
        }
        let queues = self.seg.layout.geometry.queues;
        let other = (1..queues).map(|i| self.queue.wrapping_add(i) % queues).find(|&q| self.seg.doorbell(q).cpu.load(Ordering::Relaxed) != here);
        match other {
            Some(q) => {
                self.queue = q;
                false
            }
            None => true,
        }
    }

    /// Sends a write of `data` (`d.arg` gets [`crate::WRITE_STREAMED`]) while still copying
    /// it in: the first `piece` bytes go in before the request is queued, the rest piece by
    /// piece after, each announced in the area's `filled` word, so that the service writes
    /// one piece while the next is copied. Then waits for the reply.
    pub fn call_streamed(&mut self, mut d: Descriptor, data: &[u8], piece: usize) -> Result<Reply, Unserved> {
        let seg = self.seg;
        let Some(h) = seg.client(self.id) else { return Err(Unserved::Errno(libc::EIO)) };
        let data = &data[..data.len().min(self.buffer_size())];
        let piece = piece.max(1);
        self.number(&mut d);
        d.len = data.len() as u64;
        d.arg |= crate::WRITE_STREAMED;
        let first = data.len().min(piece);
        self.seg.write_data_at(self.id, 0, &data[..first]);
        h.filled.store(first as u32, Ordering::Release);
        self.submit(h, &d)?;
        let mut at = first;
        while at < data.len() {
            let end = (at + piece).min(data.len());
            self.seg.write_data_at(self.id, at, &data[at..end]);
            h.filled.store(end as u32, Ordering::Release);
            at = end;
        }
        self.wait()
    }

    /// Waits for the answer to the request just queued.
    fn wait(&mut self) -> Result<Reply, Unserved> {
        let Some(h) = self.seg.client(self.id) else { return Err(Unserved::Errno(libc::EIO)) };
        let mut spins = 0;
        // When a live service that does not answer has had its `TIMEOUT_MS` (measured on the
        // clock: a futex sleep may end early, on any wake-up).
        let mut deadline: Option<u64> = None;
        let yield_every = if self.near { 1 } else { YIELD_EVERY };
        loop {
            if h.state.load(Ordering::Acquire) == DONE {
                if h.seq.load(Ordering::Relaxed) == self.seq {
                    break;
                }
                // The late answer to an earlier request that timed out: not ours, keep waiting.
                let _ = h.state.compare_exchange(DONE, PENDING, Ordering::AcqRel, Ordering::Acquire);
                continue;
            }
            if spins < self.spins {
                spins += 1;
                if spins % yield_every == 0 {
                    // The service thread may be waiting for this very cpu (the scheduler put
                    // both here): let it run rather than spin its time away.
                    // SAFETY: sched_yield has no preconditions.
                    unsafe { libc::sched_yield() };
                } else {
                    core::hint::spin_loop();
                }
                continue;
            }
            // A dead service is known at once (its liveness word); a live one that does not
            // answer, after `TIMEOUT_MS`.
            let now = now_ms();
            if now >= *deadline.get_or_insert(now + TIMEOUT_MS) || self.seg.service_gone() {
                h.state.store(IDLE, Ordering::Release);
                return Err(Unserved::Errno(libc::EIO));
            }
            // Say we sleep (unless the answer came meanwhile), so the service wakes us; a
            // spinning client costs the service no system call.
            if h.state.compare_exchange(PENDING, SLEEPING, Ordering::AcqRel, Ordering::Acquire).is_ok() || h.state.load(Ordering::Acquire) == SLEEPING {
                futex_wait(&h.state, SLEEPING, 100);
            }
        }
        let value = h.result.load(Ordering::Acquire);
        let aux = [0, 1, 2, 3].map(|i| h.aux[i].load(Ordering::Relaxed));
        h.state.store(IDLE, Ordering::Release);
        match Unserved::from_result(value) {
            Some(u) => Err(u),
            None => Ok(Reply { value, aux }),
        }
    }

    /// Queues `d` (no data) for the service without waiting for an answer: the service
    /// answers nothing (`FLAG_NO_REPLY`), so the client area stays free for the next call.
    /// Errors are errno values (`EAGAIN` when the queue stays full).
    pub fn post(&mut self, mut d: Descriptor) -> Result<(), i32> {
        d.client = self.id;
        d.flags |= crate::FLAG_NO_REPLY;
        if self.near_worker() {
            // The worker then yields between polls, so that this thread runs on.
            d.flags |= crate::FLAG_NEAR;
        }
        d.len = 0;
        self.enqueue(&d)
    }

    /// Pushes `d` on this client's queue (bounded retries) and rings its doorbell.
    fn enqueue(&self, d: &Descriptor) -> Result<(), i32> {
        let q = self.seg.queue(self.queue);
        let bell = self.seg.doorbell(self.queue);
        let ring = || {
            bell.word.fetch_add(1, Ordering::Release);
            if bell.sleepers.load(Ordering::Acquire) > 0 {
                futex_wake(&bell.word, 1);
            }
        };
        // A full or contended queue (more client threads than cpus, a service thread
        // preempted in the middle of a slot) drains as the service runs: ring, yield the cpu
        // and retry, for as long as a reply may take.
        let mut deadline = None;
        while q.push(d).is_err() {
            ring();
            let now = now_ms();
            let end = *deadline.get_or_insert(now + TIMEOUT_MS);
            if now >= end || self.seg.service_gone() {
                return Err(libc::EAGAIN);
            }
            // SAFETY: sched_yield has no preconditions.
            unsafe { libc::sched_yield() };
        }
        ring();
        Ok(())
    }

    /// Detaches without giving the client area back: for a child after fork, whose copy of
    /// its parent's client must not free the area the parent still uses.
    pub fn abandon(self) {
        let me = core::mem::ManuallyDrop::new(self);
        // SAFETY: `addr` came from a successful shmat (inherited over fork); `me` is never
        // used or dropped again.
        unsafe { libc::shmdt(me.addr) };
    }

    /// Copies the first `out.len()` bytes of the reply data out of the buffer.
    pub fn data(&self, out: &mut [u8]) -> usize {
        self.seg.read_data(self.id, out.len(), out)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Only the process that claimed the area gives it back, and only while it is still
        // its own. A forked child that exits without ever calling us (a shell's `$(...)` or
        // subshell) drops its copy of the parent's client here: freeing the area would let
        // another process claim it while the parent still uses it, and each would then take
        // the other's completions for late answers and drop them (both time out: `EIO`).
        // SAFETY: getpid cannot fail.
        if unsafe { libc::getpid() } as u32 == self.pid {
            if let Some(h) = self.seg.client(self.id) {
                let _ = h.owner.compare_exchange(self.owner, 0, Ordering::AcqRel, Ordering::Relaxed);
            }
        }
        // SAFETY: `addr` came from a successful shmat and nothing borrowed from it outlives
        // `self`.
        unsafe { libc::shmdt(self.addr) };
    }
}

