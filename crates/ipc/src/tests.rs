//! Queue and decoder tests: order, bounds, garbage tolerance, many threads, a real SysV
//! shared-memory segment, and random descriptors through the decoder.

use std::collections::HashSet;
use std::sync::Arc;
use std::vec::Vec;

use super::*;
use crate::queue::Cursor;
use crate::sync::{AtomicU64, Ordering, UnsafeCell};

fn header() -> QueueHeader {
    QueueHeader { enqueue: Cursor { pos: AtomicU64::new(0) }, dequeue: Cursor { pos: AtomicU64::new(0) } }
}

fn slots(n: usize) -> Vec<Slot> {
    (0..n).map(|_| Slot { seq: AtomicU64::new(0), desc: UnsafeCell::new(Descriptor::default()) }).collect()
}

fn desc(i: u64) -> Descriptor {
    Descriptor { op: Op::Read as u32, client: (i % 7) as u32, seq: i, len: i % 100, ..Descriptor::default() }
}

#[test]
fn fifo_full_and_empty() {
    let (h, s) = (header(), slots(4));
    let q = Queue::new(&h, &s).expect("power of two");
    q.init();
    assert_eq!(q.pop(), None);
    for i in 0..4 {
        q.push(&desc(i)).expect("room");
    }
    assert_eq!(q.push(&desc(9)), Err(PushError::Full));
    assert_eq!(q.backlog(), 4);
    for i in 0..4 {
        assert_eq!(q.pop(), Some(desc(i)));
    }
    assert_eq!(q.pop(), None);
    // Wraps around many laps.
    for i in 0..1000 {
        q.push(&desc(i)).expect("room");
        assert_eq!(q.pop().map(|d| d.seq), Some(i));
    }
    assert!(Queue::new(&h, &s[..3]).is_none(), "capacity must be a power of two");
}

#[test]
fn a_slot_claimed_and_never_published_is_skipped_and_the_queue_moves_on() {
    let (h, s) = (header(), slots(4));
    let q = Queue::new(&h, &s).expect("queue");
    q.init();
    q.push(&desc(1)).expect("room");
    assert_eq!(q.pop(), Some(desc(1)));
    // A producer claims position 1 (the enqueue CAS) and dies before publishing it.
    h.enqueue.pos.store(2, Ordering::Relaxed);
    q.push(&desc(2)).expect("room");
    q.push(&desc(3)).expect("room");
    assert_eq!(q.pop(), None, "the unpublished head blocks the queue");
    assert_eq!(q.backlog(), 3);
    assert!(!q.skip_head(q.head() + 1), "only the current head is skipped");
    assert!(q.skip_head(q.head()));
    assert_eq!(q.pop(), Some(desc(2)));
    assert_eq!(q.pop(), Some(desc(3)));
    assert_eq!(q.pop(), None);
    assert!(!q.skip_head(q.head()), "nothing to skip in an empty queue");
    // Laps later, everything still flows.
    for i in 10..100 {
        q.push(&desc(i)).expect("room");
        assert_eq!(q.pop(), Some(desc(i)));
    }
}

#[test]
fn a_slow_producer_whose_slot_was_skipped_is_told_to_push_again() {
    let (h, s) = (header(), slots(4));
    let q = Queue::new(&h, &s).expect("queue");
    q.init();
    // The slow producer claimed position 0 and is about to publish; a consumer skips it.
    h.enqueue.pos.store(1, Ordering::Relaxed);
    assert!(q.skip_head(0));
    // Its publication (the turn word's CAS from 0 to 1) now fails: the slot is the next lap's.
    assert!(s[0].seq.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed).is_err());
    // Pushing again works, and the request is taken exactly once.
    q.push(&desc(5)).expect("room");
    assert_eq!(q.pop(), Some(desc(5)));
    assert_eq!(q.pop(), None);
}

#[test]
fn garbage_in_the_shared_words_never_hangs_or_escapes_bounds() {
    let (h, s) = (header(), slots(8));
    let q = Queue::new(&h, &s).expect("queue");
    let mut rng = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for _ in 0..2000 {
        h.enqueue.pos.store(next(), Ordering::Relaxed);
        h.dequeue.pos.store(next(), Ordering::Relaxed);
        for sl in &s {
            sl.seq.store(next(), Ordering::Relaxed);
        }
        // Bounded: each call returns, whatever the words say.
        let _ = q.push(&desc(1));
        let _ = q.pop();
        assert!(q.backlog() <= 8);
    }
    // And the queue works again once re-initialised.
    q.init();
    q.push(&desc(5)).expect("room");
    assert_eq!(q.pop(), Some(desc(5)));
}

fn hammer(q: Queue<'static>, producers: u64, consumers: usize, per: u64) {
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut hs = Vec::new();
    for p in 0..producers {
        hs.push(std::thread::spawn(move || {
            for i in 0..per {
                let d = Descriptor { seq: p * per + i, op: Op::Write as u32, ..Descriptor::default() };
                while q.push(&d).is_err() {
                    std::thread::yield_now();
                }
            }
        }));
    }
    let total = producers * per;
    let got: Vec<_> = (0..consumers)
        .map(|_| {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                while done.load(std::sync::atomic::Ordering::Relaxed) < total {
                    match q.pop() {
                        Some(d) => {
                            mine.push(d.seq);
                            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        None => std::thread::yield_now(),
                    }
                }
                mine
            })
        })
        .collect();
    for h in hs {
        h.join().expect("producer");
    }
    let mut seen = HashSet::new();
    for g in got {
        for s in g.join().expect("consumer") {
            assert!(seen.insert(s), "descriptor {s} delivered twice");
        }
    }
    assert_eq!(seen.len() as u64, total, "descriptors lost");
}

#[test]
fn many_threads_deliver_everything_exactly_once() {
    let h: &'static QueueHeader = std::boxed::Box::leak(std::boxed::Box::new(header()));
    let s: &'static [Slot] = std::boxed::Box::leak(slots(64).into_boxed_slice());
    let q = Queue::new(h, s).expect("queue");
    q.init();
    hammer(q, 6, 6, 20_000);
}

/// A real SysV segment, removed when dropped.
struct Segment {
    id: i32,
    addr: *mut libc::c_void,
}

impl Segment {
    /// A fresh private segment of `size` bytes (zero-filled by the kernel), attached.
    fn create(size: usize) -> Segment {
        // SAFETY: plain syscalls; results checked below.
        let id = unsafe { libc::shmget(libc::IPC_PRIVATE, size, libc::IPC_CREAT | 0o600) };
        assert!(id >= 0, "shmget failed");
        // SAFETY: `id` is a segment we just created; a null address lets the kernel choose.
        let addr = unsafe { libc::shmat(id, core::ptr::null(), 0) };
        assert_ne!(addr as isize, -1, "shmat failed");
        Segment { id, addr }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: `addr` came from a successful shmat of segment `id`.
        unsafe {
            libc::shmdt(self.addr);
            libc::shmctl(self.id, libc::IPC_RMID, core::ptr::null_mut());
        }
    }
}

#[test]
fn many_threads_over_a_sysv_segment() {
    const N: usize = 128;
    let size = core::mem::size_of::<QueueHeader>() + N * core::mem::size_of::<Slot>();
    let seg = Segment::create(size);
    let base = seg.addr as usize;
    assert_eq!(base % 4096, 0);
    // SAFETY: the segment is `size` bytes, page-aligned (so aligned for the 64-byte header),
    // zero-filled by the kernel (a valid state for atomics and descriptors), and lives until
    // `seg` drops at the end of this test, after every thread has been joined.
    let (h, s): (&'static QueueHeader, &'static [Slot]) = unsafe {
        (&*(base as *const QueueHeader), core::slice::from_raw_parts((base + core::mem::size_of::<QueueHeader>()) as *const Slot, N))
    };
    let q = Queue::new(h, s).expect("queue");
    q.init();
    hammer(q, 4, 4, 25_000);
    drop(seg);
}

#[test]
fn the_decoder_refuses_what_is_out_of_bounds() {
    let lim = Limits { clients: 4, buffer_size: 1 << 20, name_max: 255, path_max: 4096 };
    let ok = Descriptor { op: Op::Read as u32, client: 3, len: 1 << 20, offset: 10, ..Descriptor::default() };
    assert_eq!(decode(ok, &lim).map(|r| r.op), Ok(Op::Read));
    assert_eq!(decode(Descriptor { op: 99, ..ok }, &lim), Err(DecodeError::UnknownOp(99)));
    assert_eq!(decode(Descriptor { client: 4, ..ok }, &lim), Err(DecodeError::BadClient(4)));
    assert_eq!(decode(Descriptor { len: (1 << 20) + 1, ..ok }, &lim), Err(DecodeError::TooLong((1 << 20) + 1)));
    assert_eq!(decode(Descriptor { offset: u64::MAX, ..ok }, &lim), Err(DecodeError::BadOffset));
    assert_eq!(decode(Descriptor { op: Op::Lookup as u32, len: 256, ..ok }, &lim), Err(DecodeError::TooLong(256)));
    assert_eq!(decode(Descriptor { op: Op::Getattr as u32, len: 1, ..ok }, &lim), Err(DecodeError::TooLong(1)));
    // Attribute changes carry exactly one record at most; xattr names stay names.
    let one_more = core::mem::size_of::<WireSetattr>() as u64 + 1;
    assert_eq!(decode(Descriptor { op: Op::Setattr as u32, len: one_more, ..ok }, &lim), Err(DecodeError::TooLong(one_more)));
    assert_eq!(decode(Descriptor { op: Op::Getxattr as u32, len: 256, ..ok }, &lim), Err(DecodeError::TooLong(256)));
    // Setxattr: the name must end inside the data, before the value.
    let set = Descriptor { op: Op::Setxattr as u32, len: 10, offset: 4, ..ok };
    assert_eq!(decode(set, &lim).map(|r| r.op), Ok(Op::Setxattr));
    assert_eq!(decode(Descriptor { offset: 0, ..set }, &lim), Err(DecodeError::BadOffset));
    assert_eq!(decode(Descriptor { offset: 10, ..set }, &lim), Err(DecodeError::BadOffset));
    assert_eq!(decode(Descriptor { op: Op::Truncate as u32, len: 0, arg: u64::MAX, ..ok }, &lim), Err(DecodeError::BadOffset));
}

#[test]
fn random_descriptors_never_get_past_the_decoder_out_of_bounds() {
    let lim = Limits { clients: 16, buffer_size: 1 << 16, name_max: 255, path_max: 4096 };
    let mut rng = 42u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut accepted = 0;
    for _ in 0..2_000_000 {
        let r = next();
        // Mostly small values so that some get through.
        let pick = |v: u64, small: u64| if r & 1 == 0 { v % small } else { v };
        let d = Descriptor {
            op: pick(next(), 15) as u32,
            client: pick(next(), 20) as u32,
            seq: next(),
            inode: next(),
            handle: next(),
            offset: pick(next(), 1 << 40),
            len: pick(next(), 1 << 17),
            arg: next(),
            instance: next() as u32,
            flags: 0,
        };
        if let Ok(req) = decode(d, &lim) {
            accepted += 1;
            assert!(req.client < lim.clients);
            assert!(req.len <= lim.buffer_size);
            assert!(req.offset.checked_add(req.len).is_some());
        }
    }
    assert!(accepted > 1000, "the random inputs should exercise the accepting path too");
}

/// Inputs the fuzz target (`scripts/fuzz.sh`) found breaking the decoder's contract, replayed.
#[test]
fn inputs_the_fuzzer_found_stay_fixed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-found");
    let mut seen = 0;
    for e in std::fs::read_dir(&dir).expect("tests/fuzz-found") {
        let data = std::fs::read(e.expect("entry").path()).expect("read input");
        let (d, lim) = crate::fuzzing::input(&data).expect("a full input");
        if let Ok(r) = decode(d, &lim) {
            assert!(crate::fuzzing::within(&r, &lim), "{r:?} escapes {lim:?}");
        }
        seen += 1;
    }
    assert!(seen >= 1);
}

#[test]
fn two_part_requests_must_split_their_buffer_in_bounds() {
    let lim = Limits { clients: 2, buffer_size: 1 << 20, name_max: 255, path_max: 4096 };
    let d = |op: Op, offset: u64, len: u64| Descriptor { op: op as u32, offset, len, ..Descriptor::default() };
    for op in [Op::Rename, Op::Link, Op::Symlink] {
        assert_eq!(decode(d(op, 3, 8), &lim).map(|r| r.op), Ok(op));
        // An empty first or second part, a split past the end, a part longer than a path.
        assert_eq!(decode(d(op, 0, 8), &lim), Err(DecodeError::BadOffset));
        assert_eq!(decode(d(op, 8, 8), &lim), Err(DecodeError::BadOffset));
        assert_eq!(decode(d(op, u64::MAX, 8), &lim), Err(DecodeError::BadOffset));
        assert_eq!(decode(d(op, 4097, 5000), &lim), Err(DecodeError::BadOffset));
        assert_eq!(decode(d(op, 1, 8193), &lim), Err(DecodeError::TooLong(8193)));
    }
    let wire = core::mem::size_of::<WireSetattr>() as u64;
    assert_eq!(decode(d(Op::SetattrPath, 5, 5 + wire), &lim).map(|r| r.op), Ok(Op::SetattrPath));
    assert_eq!(decode(d(Op::SetattrPath, 5, 4 + wire), &lim), Err(DecodeError::BadOffset));
    assert_eq!(decode(d(Op::SetattrPath, 0, wire), &lim), Err(DecodeError::BadOffset));
    for op in [Op::Mkdir, Op::Rmdir, Op::Readlink, Op::Access] {
        assert_eq!(decode(d(op, 0, 4097), &lim), Err(DecodeError::TooLong(4097)));
    }
}

#[test]
fn dirent_records_round_trip_and_garbage_is_refused() {
    use crate::{dirent_len, dirent_ok, push_dirent};
    let mut out = [0u8; 64];
    let used = push_dirent(&mut out, 0, 7, 42, 8, b"name").expect("fits");
    assert_eq!(used, dirent_len(4));
    assert_eq!(dirent_ok(&out[..used]), Some(used));
    assert_eq!(u64::from_ne_bytes(out[8..16].try_into().expect("8 bytes")), 42);
    // A record that does not fit is not written.
    assert_eq!(push_dirent(&mut out, used, 1, 2, 8, &[b'x'; 60]), None);
    // Lengths too short, too long, unaligned; names empty or not terminated inside.
    let mut bad = out;
    bad[16..18].copy_from_slice(&8u16.to_ne_bytes());
    assert_eq!(dirent_ok(&bad[..used]), None);
    bad[16..18].copy_from_slice(&(used as u16 + 8).to_ne_bytes());
    assert_eq!(dirent_ok(&bad[..used]), None);
    bad[16..18].copy_from_slice(&(used as u16 - 1).to_ne_bytes());
    assert_eq!(dirent_ok(&bad[..used]), None);
    let mut empty = out;
    empty[crate::DIRENT_HEADER] = 0;
    assert_eq!(dirent_ok(&empty[..used]), None);
    let mut unterminated = out;
    unterminated[crate::DIRENT_HEADER..used].fill(b'y');
    assert_eq!(dirent_ok(&unterminated[..used]), None);
    assert_eq!(dirent_ok(&out[..10]), None);
}

/// Pins the calling thread to `cpu`; false when the machine has no such cpu.
fn pin_to(cpu: usize) -> bool {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET stays within it for cpu < 1024.
    unsafe {
        let mut set: libc::cpu_set_t = core::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// A stand-in for the service's channel socket: answers each connection's hello with a fresh
/// sealed-less memfd area and the segment `shmid`, then keeps the connection open.
struct FakeService {
    path: std::path::PathBuf,
    _thread: std::thread::JoinHandle<()>,
}

impl FakeService {
    fn start(shmid: i32, buffer_size: u64) -> FakeService {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        static N: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
        let path = std::env::temp_dir().join(std::format!("ptn-ipc-test-{}-{}.sock", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        let thread = std::thread::spawn(move || {
            let mut held = std::vec::Vec::new();
            for (client, conn) in listener.incoming().enumerate() {
                let Ok(mut conn) = conn else { return };
                let mut hello = [0u8; crate::HELLO_SIZE];
                conn.read_exact(&mut hello).expect("hello");
                let size = crate::area::Area::size(buffer_size).expect("area size");
                // SAFETY: plain syscalls on descriptors this thread owns; results checked.
                let fd = unsafe { libc::memfd_create(c"test-area".as_ptr(), libc::MFD_CLOEXEC) };
                assert!(fd >= 0);
                // SAFETY: as above.
                assert_eq!(unsafe { libc::ftruncate(fd, size as i64) }, 0);
                let w = crate::Welcome { version: crate::PROTOCOL_VERSION, status: 0, client: client as u32, shmid, buffer_size, creds: 0 }.to_bytes();
                send_fd(conn.as_raw_fd(), &w, fd);
                // SAFETY: the descriptor was sent; ours is not needed.
                unsafe { libc::close(fd) };
                held.push(conn);
            }
        });
        FakeService { path, _thread: thread }
    }

    fn path(&self) -> std::ffi::CString {
        use std::os::unix::ffi::OsStrExt;
        std::ffi::CString::new(self.path.as_os_str().as_bytes()).expect("path")
    }
}

impl Drop for FakeService {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Sends `b` with descriptor `fd` attached.
fn send_fd(sock: i32, b: &[u8], fd: i32) {
    let mut control = [0u64; 4];
    let mut iov = libc::iovec { iov_base: b.as_ptr() as *mut libc::c_void, iov_len: b.len() };
    // SAFETY: a zeroed msghdr is valid; every pointer set below outlives the call, and the
    // control message is built with the CMSG_* helpers inside `control`.
    unsafe {
        let mut msg: libc::msghdr = core::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(4) as usize;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(4) as usize;
        core::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut i32, fd);
        assert_eq!(libc::sendmsg(sock, &msg, 0), b.len() as isize);
    }
}

/// A segment of geometry `g` whose service word says it is alive (no sentinel runs in these
/// tests), a stand-in channel socket for it, and a client connected through that socket
/// (dropped in the reverse order).
fn connected(g: crate::segment::Geometry) -> (Segment, crate::segment::Segment, FakeService, crate::client::Client) {
    let layout = crate::segment::Layout::new(g).expect("layout");
    let shm = Segment::create(layout.total);
    // SAFETY: a fresh page-aligned mapping of `layout.total` bytes, which the caller keeps
    // (the first of the values returned) as long as the view.
    let seg = unsafe { crate::segment::Segment::new(shm.addr.cast(), layout) };
    seg.init();
    seg.header().service.store(1, Ordering::Release);
    let service = FakeService::start(shm.id, g.buffer_size);
    let c = crate::client::Client::connect(&service.path(), 0).expect("connect");
    (shm, seg, service, c)
}

#[test]
fn a_client_on_its_workers_cpu_moves_to_another_queue_or_says_so() {
    let g = crate::segment::Geometry { queues: 2, slots: 8, clients: 2, buffer_size: 4096 };
    let (_shm, seg, _service, mut c) = connected(g);
    assert!(pin_to(0), "cpu 0 exists");
    let here = crate::current_cpu();
    assert_eq!(here, 1, "a thread pinned to cpu 0 reports it (plus one)");
    // Posts a request with the workers last seen on `cpus`: (queue its hint went to, flagged
    // near).
    let mut posted = |cpus: [u32; 2]| {
        for (q, cpu) in cpus.iter().enumerate() {
            seg.doorbell(q as u32).cpu.store(*cpu, Ordering::Relaxed);
        }
        c.post(Descriptor { op: Op::Release as u32, handle: 9, ..Descriptor::default() }).expect("room");
        let (q, d) = (0..2).find_map(|q| seg.queue(q).pop().map(|d| (q, d))).expect("queued");
        assert_ne!(d.flags & crate::FLAG_NO_REPLY, 0);
        assert_eq!(d.handle, 0, "the hint carries no request");
        assert!(seg.queue(0).pop().is_none() && seg.queue(1).pop().is_none(), "queued once");
        // The service takes it: the next post needs a hint of its own again.
        let area = c.area();
        area.take_posts(area.posts().tail.load(Ordering::Acquire), |_| {});
        (q, d.flags & crate::FLAG_NEAR != 0)
    };
    assert_eq!(posted([0, 0]), (0, false), "no worker has served yet");
    assert_eq!(posted([here + 1, here]), (0, false), "queue 0's worker runs elsewhere");
    assert_eq!(posted([here, here + 1]), (1, false), "moved to the queue whose worker runs elsewhere");
    assert_eq!(posted([here + 1, here]), (0, false), "and back");
    assert_eq!(posted([here, here]), (0, true), "every worker here: flagged");
    assert_eq!(posted([u32::MAX, u32::MAX]), (0, false), "garbage in the shared words is only a wrong hint");
}

#[test]
fn posts_past_the_ring_are_refused_and_the_service_takes_what_the_ring_holds() {
    let mut b = std::vec![0u64; crate::area::Area::size(4096).expect("size") / 8 + 8];
    let base = (b.as_mut_ptr() as usize + 63) & !63;
    // SAFETY: `b` is zeroed, at least `Area::size(4096)` bytes past the aligned base, and
    // outlives `area`.
    let area = unsafe { crate::area::Area::new(base as *mut u8, 4096) };
    for i in 0..crate::area::POSTS {
        let needs_hint = area.post(&Descriptor { op: Op::Release as u32, instance: 3, inode: 10 + u64::from(i), handle: u64::from(i), ..Descriptor::default() });
        // Only the first post into an empty ring needs a hint: the others ride on it.
        assert_eq!(needs_hint, Some(i == 0), "post {i}");
    }
    assert_eq!(area.post(&Descriptor::default()), None, "a full ring refuses");
    assert!(area.posts_left(0), "the service sees posts it has not taken");
    // A client that says it posted more than the ring holds has nothing taken: its ring is
    // emptied up to the head it wrote, and no round finds posts left.
    area.posts().head.store(u32::MAX, Ordering::Release);
    let mut seen = std::vec::Vec::new();
    let dropped = area.take_posts(0, |d| seen.push((d.op, d.instance, d.inode, d.handle)));
    assert_eq!((dropped, seen.len()), (u32::MAX, 0));
    assert!(!area.posts_left(dropped), "nothing left to take");
    // An honest ring is taken whole.
    area.posts().head.store(crate::area::POSTS, Ordering::Release);
    area.posts().tail.store(0, Ordering::Release);
    let taken = area.take_posts(0, |d| seen.push((d.op, d.instance, d.inode, d.handle)));
    assert_eq!(taken, crate::area::POSTS);
    assert_eq!(seen.len(), crate::area::POSTS as usize);
    assert_eq!(seen[0], (Op::Release as u32, 3, 10, 0));
    assert!(!area.posts_left(taken), "all taken");
    // Taken up to the head: the next post needs a hint again.
    assert_eq!(area.post(&Descriptor::default()), Some(true));
    let _ = &mut b;
}

#[test]
fn a_request_survives_its_trip_through_the_area_words() {
    let d = Descriptor { op: 7, client: 3, seq: u64::MAX - 1, instance: 9, flags: 2, inode: 11, handle: 12, offset: 13, len: 14, arg: 15 };
    assert_eq!(Descriptor::from_words(d.to_words()), d);
}

/// A request the live service did not answer within the timeout may still be in its hands:
/// the client never puts another request (its data, its answer) in that area.
#[test]
fn a_client_whose_request_timed_out_never_uses_its_area_again() {
    let g = crate::segment::Geometry { queues: 1, slots: 8, clients: 2, buffer_size: 4096 };
    let (_shm, _seg, _service, mut c) = connected(g);
    let write = Descriptor { op: Op::Write as u32, inode: 5, handle: 6, len: 3, ..Descriptor::default() };
    let t = std::time::Instant::now();
    assert_eq!(c.call(write, b"old").map(|r| r.value), Err(Unserved::Errno(libc::EIO)), "no answer");
    assert!(t.elapsed() >= std::time::Duration::from_millis(4900), "the timeout came early: {:?}", t.elapsed());
    assert!(c.poisoned());
    // The service took the request just before the timeout and is still writing its data.
    let area = c.area();
    let taken = area.request();
    let mut data = [0u8; 3];
    area.read_data(3, &mut data);
    assert_eq!(&data, b"old");
    // Every call is refused without touching the area, its data or its answer words.
    let other = Descriptor { op: Op::Write as u32, inode: 7, handle: 8, len: 3, ..Descriptor::default() };
    assert_eq!(c.call(other, b"new").map(|r| r.value), Err(Unserved::Errno(libc::EIO)));
    assert_eq!(c.call_streamed(other, b"new", 1).map(|r| r.value), Err(Unserved::Errno(libc::EIO)));
    assert_eq!(c.post(Descriptor { op: Op::Release as u32, handle: 6, ..Descriptor::default() }), Err(libc::EIO));
    assert_eq!(area.request(), taken, "another request went into the area");
    area.read_data(3, &mut data);
    assert_eq!(&data, b"old", "the request's data changed under the service");
    // The late answer lands where nobody reads it any more.
    area.complete(taken.seq, 3, [0; 4]);
    assert_eq!(c.call(other, b"new").map(|r| r.value), Err(Unserved::Errno(libc::EIO)), "a late answer taken for another request");
}
