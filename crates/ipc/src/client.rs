//! The client side: connect to a pool's channel socket, receive a private client area,
//! attach the pool's segment (its queues), send requests and wait for their completion (a
//! short spin, then a futex sleep; bounded, so a dead service gives `EIO` instead of a hang).

use crate::area::Area;
use crate::segment::{futex_wait, Layout, Segment, DONE, IDLE, PENDING, SLEEPING};
use crate::sync::Ordering;
use crate::{Descriptor, Hello, Unserved};

/// Spins before sleeping on the completion word.
const SPINS: u32 = 4000;
/// Longest wait for one request before giving up with `EIO`.
const TIMEOUT_MS: u64 = 5000;
/// How long a request waits before its hint is queued again (it may have been lost).
const REHINT_MS: u64 = 100;
/// While spinning, a client (and an idle service thread) yields its cpu every this many
/// spins: when the scheduler has put client and service thread on one cpu, each then runs
/// at once instead of after the other's spin budget (tens of µs) and a futex sleep. A
/// reply that comes within the first spins costs no system call.
pub const YIELD_EVERY: u32 = 128;

/// One client: its connection to the service, its private area and the attached segment.
/// Not shared between threads.
#[derive(Debug)]
pub struct Client {
    seg: Segment,
    addr: *mut libc::c_void,
    area: Area,
    area_len: usize,
    /// The connection: the service gives the area back when it closes (this process exits,
    /// or drops the client).
    socket: Socket,
    /// The segment attached (a successor service makes a new one).
    shmid: i32,
    id: u32,
    queue: u32,
    seq: u64,
    /// Polls of the answer before sleeping: none when this thread may run on one cpu only
    /// (a one-cpu pool), where spinning only keeps the service from running.
    spins: u32,
    /// The request being waited for was sent from the worker's cpu: yield at every poll.
    near: bool,
    /// The service's change table, mapped read-only (`None`: it sent none, or it could not
    /// be mapped; nothing learned of a file is then trusted).
    changes: Option<crate::changes::View>,
    /// The service's digest of the credentials it serves this client with.
    creds: u64,
    /// A hint for posts could not be queued: the next post sends one whatever the ring says.
    hint_owed: bool,
    /// A request timed out while the service lived: it may still be serving it, reading the
    /// area's data and writing its answer there, so the area is never used again (see
    /// [`Client::poisoned`]).
    poisoned: bool,
}

/// Maps the change table the service sent (read-only; the descriptor is closed).
fn map_changes(fd: i32) -> Option<crate::changes::View> {
    if fd < 0 {
        return None;
    }
    // SAFETY: a shared read-only mapping of the table's size from the memfd the service sent;
    // a shorter object would fault on access past its end, so its size is checked first.
    let base = unsafe {
        let mut st: libc::stat = core::mem::zeroed();
        if libc::fstat(fd, &mut st) != 0 || (st.st_size as u64) < crate::changes::BYTES as u64 {
            libc::close(fd);
            return None;
        }
        libc::mmap(core::ptr::null_mut(), crate::changes::BYTES, libc::PROT_READ, libc::MAP_SHARED, fd, 0)
    };
    // SAFETY: the mapping (if made) keeps the memory object; the descriptor is not needed.
    unsafe { libc::close(fd) };
    if base == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: a page-aligned mapping of BYTES bytes, unmapped only when the client is dropped.
    Some(unsafe { crate::changes::View::new(base.cast()) })
}

/// Where a client's connection descriptor is kept.
#[derive(Debug)]
enum Socket {
    /// In the client.
    Own(i32),
    /// In a slot its user keeps, which may move the descriptor to another number while the
    /// client lives, or mark it closed under it (a negative value): the preload library, so
    /// that a program's `dup2` onto the number or `closefrom` over it leaves the connection
    /// working or known to be gone.
    Slot(&'static core::sync::atomic::AtomicI32),
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
    /// Connects to the pool's channel socket at `path` (NUL-terminated), receives a private
    /// client area and attaches the pool's segment. `queue` picks the request queue (e.g.
    /// from the cpu or thread). Errors are errno values (the service's refusal included:
    /// `EBUSY` when every client index is taken).
    pub fn connect(path: &core::ffi::CStr, queue: u32) -> Result<Client, i32> {
        Client::connect_with(path, queue, None)
    }

    /// As [`Client::connect`], keeping the connection's descriptor in `slot` (see
    /// [`Socket::Slot`]); the slot holds the descriptor until the client is dropped, then -1.
    pub fn connect_in(path: &core::ffi::CStr, queue: u32, slot: &'static core::sync::atomic::AtomicI32) -> Result<Client, i32> {
        Client::connect_with(path, queue, Some(slot))
    }

    fn connect_with(path: &core::ffi::CStr, queue: u32, slot: Option<&'static core::sync::atomic::AtomicI32>) -> Result<Client, i32> {
        let socket = Client::begin(path)?;
        Client::finish(socket, queue, slot)
    }

    /// The first half of [`Client::connect`]: connects to the channel socket at `path` and
    /// says hello for the calling thread, without waiting for the welcome, which the service
    /// prepares meanwhile; [`Client::finish`] takes it. The connection's descriptor.
    pub fn begin(path: &core::ffi::CStr) -> Result<i32, i32> {
        let socket = channel::connect(path)?;
        // SAFETY: gettid cannot fail.
        let tid = unsafe { libc::gettid() } as u32;
        if let Err(e) = channel::send(socket, &Hello { version: crate::PROTOCOL_VERSION, tid, cpu: crate::current_cpu() }.to_bytes()) {
            // SAFETY: closing the socket just opened (the raw call: inside the preload library
            // `close` is the library's hook).
            unsafe { libc::syscall(libc::SYS_close, socket) };
            return Err(e);
        }
        Ok(socket)
    }

    /// The second half of [`Client::connect`]: takes the welcome on `socket` (from
    /// [`Client::begin`]; closed on failure), maps the client's area and attaches the
    /// segment.
    pub fn finish(socket: i32, queue: u32, slot: Option<&'static core::sync::atomic::AtomicI32>) -> Result<Client, i32> {
        let close = |e: i32| {
            // SAFETY: closing the connection, which this function owns.
            unsafe { libc::syscall(libc::SYS_close, socket) };
            e
        };
        let (welcome, [memfd, table]) = channel::receive(socket).map_err(close)?;
        let changes = map_changes(table);
        let unmap_changes = || {
            if let Some(v) = changes {
                // SAFETY: unmapping the table mapped above, of which no view is kept.
                unsafe { libc::munmap(v.as_ptr() as *mut libc::c_void, crate::changes::BYTES) };
            }
        };
        let fail = |e: i32| {
            if memfd >= 0 {
                // SAFETY: closing the descriptor the service sent.
                unsafe { libc::close(memfd) };
            }
            unmap_changes();
            close(e)
        };
        if welcome.version != crate::PROTOCOL_VERSION {
            return Err(fail(libc::EPROTO));
        }
        if welcome.status != 0 {
            return Err(fail(welcome.status));
        }
        if memfd < 0 {
            return Err(fail(libc::EPROTO));
        }
        let Some(area_len) = Area::size(welcome.buffer_size) else { return Err(fail(libc::EPROTO)) };
        // SAFETY: mapping the memfd the service sized (sealed against shrinking) for an area
        // of this many bytes; shared, so that the service sees what we write.
        let base = unsafe { libc::mmap(core::ptr::null_mut(), area_len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, memfd, 0) };
        let mapped = base != libc::MAP_FAILED;
        let e = errno();
        // SAFETY: the mapping keeps the memory object; its descriptor is not needed any more.
        unsafe { libc::close(memfd) };
        if !mapped {
            unmap_changes();
            return Err(close(e));
        }
        let unmap = |e: i32| {
            // SAFETY: unmapping the area mapped above.
            unsafe { libc::munmap(base, area_len) };
            unmap_changes();
            close(e)
        };
        let (seg, addr) = attach_segment(welcome.shmid).map_err(unmap)?;
        // SAFETY: a page-aligned shared mapping of `area_len` bytes, unmapped only in `Drop`.
        let area = unsafe { Area::new(base.cast(), welcome.buffer_size) };
        let h = area.header();
        h.state.store(IDLE, Ordering::Release);
        let socket = match slot {
            Some(s) => {
                s.store(socket, core::sync::atomic::Ordering::Release);
                Socket::Slot(s)
            }
            None => Socket::Own(socket),
        };
        Ok(Client { seg, addr, area, area_len, socket, shmid: welcome.shmid, id: welcome.client, queue, seq: h.seq.load(Ordering::Acquire).wrapping_add(1 << 32), spins: if several_cpus() { SPINS } else { 0 }, near: false, changes, creds: welcome.creds, hint_owed: false, poisoned: false })
    }

    /// The service's digest of this client's credentials (see [`crate::Welcome::creds`]).
    pub fn creds(&self) -> u64 {
        self.creds
    }

    /// The service's change table, if it sent one.
    pub fn changes(&self) -> Option<&crate::changes::View> {
        self.changes.as_ref()
    }

    /// The segment of the service this client reached.
    pub fn shmid(&self) -> i32 {
        self.shmid
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
        self.usable()?;
        self.number(&mut d);
        let mut at = 0;
        for part in parts {
            at += self.area.write_data_at(at, part);
        }
        self.submit(&d)?;
        self.wait()
    }

    /// Whether a request of this client timed out while the service lived. The service may
    /// still be serving it: reading the request's data from the area (a write's bytes), or
    /// writing its answer there (a read's bytes, the result words), when a slow backend call
    /// returns. Another request in the area meanwhile could be served with the first one's
    /// data, or the first with the other's, or take the first one's answer. So the client
    /// refuses every call from then on (`EIO`), and its owner drops it and connects again: the
    /// service's own mapping of the area outlives the connection until that request ends.
    pub fn poisoned(&self) -> bool {
        self.poisoned
    }

    fn usable(&self) -> Result<(), i32> {
        if self.poisoned {
            return Err(libc::EIO);
        }
        Ok(())
    }

    /// Gives `d` this client's area and the next sequence number.
    fn number(&mut self, d: &mut Descriptor) {
        self.seq = self.seq.wrapping_add(1);
        d.client = self.id;
        d.seq = self.seq;
    }

    /// Leaves `d` in the area, marks it pending and queues a hint naming this client (the
    /// area goes back to idle if the queue will not take it), flagged [`crate::FLAG_NEAR`]
    /// when this thread runs where the queue's worker last did (see [`Client::near_worker`]).
    fn submit(&mut self, d: &Descriptor) -> Result<(), i32> {
        self.area.set_request(d);
        self.near = self.near_worker();
        let h = self.area.header();
        h.state.store(PENDING, Ordering::Release);
        let queued = self.enqueue(&self.hint(if self.near { crate::FLAG_NEAR } else { 0 }));
        if queued.is_err() {
            h.state.store(IDLE, Ordering::Release);
            // The request was pending in the area while the queue stayed full: a hint of an
            // earlier request (a late duplicate, or a forged one) may have had a worker take
            // it meanwhile, as after a timeout (see `Client::poisoned`).
            self.poisoned |= !self.seg.service_gone();
        }
        queued
    }

    /// The private area's header as this client maps it (tests play a hostile client's part
    /// on its words).
    #[doc(hidden)]
    pub fn header(&self) -> &crate::area::ClientHeader {
        self.area.header()
    }

    /// The private area (tests play the service's part on it).
    #[cfg(test)]
    pub(crate) fn area(&self) -> Area {
        self.area
    }

    /// What goes through the shared queue: this client's index and scheduling flags only
    /// (the request stays in the private area).
    fn hint(&self, flags: u32) -> Descriptor {
        Descriptor { client: self.id, flags, ..Descriptor::default() }
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
        self.usable()?;
        let area = self.area;
        let h = area.header();
        let data = &data[..data.len().min(self.buffer_size())];
        let piece = piece.max(1);
        self.number(&mut d);
        d.len = data.len() as u64;
        d.arg |= crate::WRITE_STREAMED;
        let first = data.len().min(piece);
        area.write_data_at(0, &data[..first]);
        h.filled.store(first as u32, Ordering::Release);
        self.submit(&d)?;
        let mut at = first;
        while at < data.len() {
            let end = (at + piece).min(data.len());
            area.write_data_at(at, &data[at..end]);
            h.filled.store(end as u32, Ordering::Release);
            at = end;
        }
        self.wait()
    }

    /// Waits for the answer to the request just queued.
    fn wait(&mut self) -> Result<Reply, Unserved> {
        let area = self.area;
        let h = area.header();
        let mut spins = 0;
        // When a live service that does not answer has had its `TIMEOUT_MS` (measured on the
        // clock: a futex sleep may end early, on any wake-up).
        let mut deadline: Option<u64> = None;
        let mut rehint: Option<u64> = None;
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
                // A request not taken yet stays untaken (the service takes pending ones only).
                h.state.store(IDLE, Ordering::Release);
                // One taken may still be in the service's hands (a dead service's is not).
                self.poisoned |= !self.seg.service_gone();
                return Err(Unserved::Errno(libc::EIO));
            }
            // No answer for a while: the hint may be lost (the shared queue's slots are
            // writable by every client of the pool: a hostile one can overwrite a hint in
            // them). Another is cheap: the service serves a request once, whatever the hints.
            if now >= *rehint.get_or_insert(now + REHINT_MS) {
                rehint = Some(now + REHINT_MS);
                // One try: a full queue holds hints enough (a sleeping client never spins).
                if self.seg.queue(self.queue).push(&self.hint(0)).is_ok() {
                    self.seg.doorbell(self.queue).ring();
                }
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
    /// Errors are errno values (`EAGAIN` when the area's ring of such requests or the queue
    /// is full: the caller then makes a call instead).
    pub fn post(&mut self, d: Descriptor) -> Result<(), i32> {
        self.usable()?;
        let Some(first) = self.area.post(&d) else {
            return Err(libc::EAGAIN);
        };
        // One hint names all the posts the service has not taken yet: a stream of posts
        // costs the shared queue one slot, not one each (unless the last hint was lost).
        if !first && !self.hint_owed {
            return Ok(());
        }
        // The worker yields between polls when it shares this thread's cpu, so that this
        // thread runs on.
        let near = if self.near_worker() { crate::FLAG_NEAR } else { 0 };
        let sent = self.enqueue(&self.hint(crate::FLAG_NO_REPLY | near));
        self.hint_owed = sent.is_err();
        sent
    }

    /// Pushes `d` on this client's queue (bounded retries) and rings its doorbell.
    fn enqueue(&self, d: &Descriptor) -> Result<(), i32> {
        let q = self.seg.queue(self.queue);
        let bell = self.seg.doorbell(self.queue);
        let ring = || bell.ring();
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

    /// Lets go of a client a forked child inherited from its parent's thread: its mapping and
    /// its copy of the connection go, the parent's stay (the service sees the connection
    /// close only when the parent closes it too).
    pub fn abandon(self) {
        drop(self);
    }

    /// Takes the descriptor the service sent on the connection ([`crate::OPEN_PASSED`]),
    /// close-on-exec; `None` when there is none (or the connection is gone).
    pub fn recv_fd(&self) -> Option<i32> {
        let sock = match &self.socket {
            Socket::Own(fd) => *fd,
            Socket::Slot(s) => s.load(core::sync::atomic::Ordering::Acquire),
        };
        if sock < 0 {
            return None;
        }
        // Non-blocking: the service sent it before answering; if it is not there, none is.
        let mut byte = [0u8; 1];
        match channel::receive_with_fd(sock, &mut byte, libc::MSG_DONTWAIT) {
            Ok((1, fd)) if fd >= 0 => Some(fd),
            Ok((_, fd)) => {
                if fd >= 0 {
                    // SAFETY: a descriptor just received, ours alone.
                    unsafe { libc::close(fd) };
                }
                None
            }
            Err(_) => None,
        }
    }

    /// Copies the first `out.len()` bytes of the reply data out of the buffer.
    pub fn data(&self, out: &mut [u8]) -> usize {
        self.area.read_data(out.len(), out)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // SAFETY: `addr` came from a successful shmat, the area from a successful mmap of
        // `area_len` bytes, and nothing borrowed from either outlives `self`.
        unsafe {
            libc::shmdt(self.addr);
            libc::munmap(self.area.header() as *const _ as *mut libc::c_void, self.area_len);
        }
        if let Some(v) = self.changes {
            // SAFETY: the table mapped in `connect_with`; views of it are copied out only
            // for the length of a call on this client.
            unsafe { libc::munmap(v.as_ptr() as *mut libc::c_void, crate::changes::BYTES) };
        }
        let fd = match &self.socket {
            Socket::Own(fd) => *fd,
            Socket::Slot(s) => s.swap(-1, core::sync::atomic::Ordering::AcqRel),
        };
        if fd >= 0 {
            // SAFETY: the connection's descriptor, this client's alone. The raw system call:
            // inside the preload library `close` is the library's own hook, which refuses
            // its connections' numbers to the program.
            unsafe { libc::syscall(libc::SYS_close, fd) };
        }
    }
}

/// Attaches segment `shmid` and checks that it is a service's, of our protocol.
fn attach_segment(shmid: i32) -> Result<(Segment, *mut libc::c_void), i32> {
    // SAFETY: `ds` is a valid out-parameter.
    let mut ds: libc::shmid_ds = unsafe { core::mem::zeroed() };
    // SAFETY: as above.
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
    // kept until the client detaches it.
    let seg = unsafe { Segment::new(addr as *mut u8, layout) };
    if seg.service_gone() {
        return detach(libc::ENOTCONN);
    }
    Ok((seg, addr))
}

/// The client's side of the channel socket (plain system calls: this crate has no std).
mod channel {
    use super::errno;
    use crate::Welcome;

    /// The lowest number a connection takes (as the preload library's own `/dev/null`).
    const SOCKET_MIN: libc::c_int = 512;

    /// A connected stream socket to `path`.
    pub fn connect(path: &core::ffi::CStr) -> Result<i32, i32> {
        let bytes = path.to_bytes();
        // SAFETY: a zeroed sockaddr_un is valid; the path is copied in below, bounded.
        let mut addr: libc::sockaddr_un = unsafe { core::mem::zeroed() };
        if bytes.len() >= addr.sun_path.len() {
            return Err(libc::ENAMETOOLONG);
        }
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
            *d = *s as libc::c_char;
        }
        // SAFETY: plain socket call.
        let low = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if low < 0 {
            return Err(errno());
        }
        // Out of the numbers programs pick themselves (a shell's `exec 3>file` would otherwise
        // replace the connection with its file): the lowest free one from `SOCKET_MIN`, or
        // the low one when the descriptor limit is below it.
        // SAFETY: duplicating the socket just made; integer arguments only.
        let high = unsafe { libc::fcntl(low, libc::F_DUPFD_CLOEXEC, SOCKET_MIN) };
        let fd = if high >= 0 {
            // SAFETY: closing the low duplicate just made.
            unsafe { libc::close(low) };
            high
        } else {
            low
        };
        // SAFETY: `addr` is a filled sockaddr_un of the size passed.
        if unsafe { libc::connect(fd, (&addr as *const libc::sockaddr_un).cast(), core::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t) } != 0 {
            let e = errno();
            // SAFETY: closing the socket just made.
            unsafe { libc::close(fd) };
            return Err(e);
        }
        // The service answers at once or not at all: bound the wait.
        let tv = libc::timeval { tv_sec: 5, tv_usec: 0 };
        // SAFETY: setting a receive timeout from a valid timeval of the size passed.
        unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, (&tv as *const libc::timeval).cast(), core::mem::size_of::<libc::timeval>() as libc::socklen_t) };
        Ok(fd)
    }

    /// Sends all of `b`.
    pub fn send(fd: i32, b: &[u8]) -> Result<(), i32> {
        // SAFETY: `b` is readable for its length; MSG_NOSIGNAL keeps a closed peer from
        // raising SIGPIPE in the caller's process.
        let n = unsafe { libc::send(fd, b.as_ptr().cast(), b.len(), libc::MSG_NOSIGNAL) };
        if n < 0 {
            return Err(errno());
        }
        if n as usize != b.len() {
            return Err(libc::EPROTO);
        }
        Ok(())
    }

    /// Receives into `b` and the descriptors that may come with it (at most two are kept, -1
    /// for each missing; any further ones are closed), close-on-exec; the bytes received.
    pub fn receive_with_fds(fd: i32, b: &mut [u8], flags: i32) -> Result<(usize, [i32; 2]), i32> {
        // Room for control messages of two descriptors (CMSG_SPACE(8) is 24 on 64-bit Linux).
        let mut control = [0u64; 6];
        let mut iov = libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() };
        // SAFETY: a zeroed msghdr is valid; the pointers set below outlive the call.
        let mut msg: libc::msghdr = unsafe { core::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = core::mem::size_of_val(&control);
        // SAFETY: `msg` describes valid buffers; MSG_CMSG_CLOEXEC marks a received
        // descriptor close-on-exec at once.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC | flags) };
        if n < 0 {
            return Err(errno());
        }
        let mut got = [-1i32; 2];
        let mut kept = 0;
        // SAFETY: walking the control messages the kernel wrote into `control`, as
        // CMSG_FIRSTHDR/CMSG_NXTHDR define, and reading the descriptors each one holds
        // (its length past the header, in whole ints).
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(c) as *const i32;
                    let bytes = ((*c).cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
                    for i in 0..bytes / core::mem::size_of::<i32>() {
                        let fd = core::ptr::read_unaligned(data.add(i));
                        if kept < got.len() {
                            got[kept] = fd;
                            kept += 1;
                        } else {
                            libc::close(fd);
                        }
                    }
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        Ok((n as usize, got))
    }

    /// As [`receive_with_fds`], keeping one descriptor (-1 when none).
    pub fn receive_with_fd(fd: i32, b: &mut [u8], flags: i32) -> Result<(usize, i32), i32> {
        let (n, [first, second]) = receive_with_fds(fd, b, flags)?;
        if second >= 0 {
            // SAFETY: a descriptor just received, ours alone.
            unsafe { libc::close(second) };
        }
        Ok((n, first))
    }

    /// Receives the service's welcome and the descriptors attached to it (-1 when missing):
    /// the client's area and the change table.
    pub fn receive(fd: i32) -> Result<(Welcome, [i32; 2]), i32> {
        let mut b = [0u8; crate::WELCOME_SIZE];
        let (n, fds) = receive_with_fds(fd, &mut b, libc::MSG_WAITALL)?;
        if n != b.len() {
            for fd in fds.into_iter().filter(|fd| *fd >= 0) {
                // SAFETY: closing a descriptor received above.
                unsafe { libc::close(fd) };
            }
            return Err(if n == 0 { libc::ECONNREFUSED } else { libc::EPROTO });
        }
        Ok((Welcome::from_bytes(b), fds))
    }
}
