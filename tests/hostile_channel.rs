//! Hostile clients of the user-level channel (issue 23): each attack fails for the attacker
//! alone, while an honest client of the same back driver keeps getting right answers.
//! Attacks: hints forged for other clients and garbage in the shared segment's words, a
//! handle of another process, a flood of posted releases, a streamed write that stalls.
//! The honest client's stat latency under each attack is printed next to a quiet run's
//! (measured, not asserted: these machines are noisy; docs/SECURITY.md reports it).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{union, Scratch};
use polytropon::service::shm::BackDriver;
use polytropon_ipc::args::OpenArg;
use polytropon_ipc::client::Client;
use polytropon_ipc::segment::{Geometry, Layout, Segment};
use polytropon_ipc::{Descriptor, Op, Unserved, FLAG_NO_REPLY, WRITE_STREAMED};

const GEOMETRY: Geometry = Geometry { queues: 1, slots: 64, clients: 16, buffer_size: 1 << 20 };

fn open(c: &mut Client, path: &str, flags: i32) -> Result<(u64, u64), Unserved> {
    let d = Descriptor { op: Op::OpenPath as u32, len: path.len() as u64, arg: OpenArg { flags, mode: 0o600 }.encode(), ..Descriptor::default() };
    let r = c.call(d, path.as_bytes())?;
    Ok((r.aux[0], r.aux[1]))
}

fn io(c: &mut Client, op: Op, (inode, handle): (u64, u64), data: &[u8], len: u64) -> Result<u64, Unserved> {
    Ok(c.call(Descriptor { op: op as u32, inode, handle, len, ..Descriptor::default() }, data)?.value)
}

/// The honest client's work: write a known payload, read it back, compare; stat timings.
fn honest(chan: &std::ffi::CStr, name: &str, rounds: u32) -> Vec<Duration> {
    let mut c = Client::connect(chan, 0).expect("honest client connects");
    let f = open(&mut c, name, libc::O_CREAT | libc::O_RDWR).expect("honest open");
    let mut took = Vec::new();
    for i in 0..rounds {
        let data = format!("{name} round {i}").into_bytes();
        assert_eq!(io(&mut c, Op::Write, f, &data, data.len() as u64), Ok(data.len() as u64), "honest write");
        assert_eq!(io(&mut c, Op::Read, f, &[], data.len() as u64), Ok(data.len() as u64), "honest read");
        let mut back = vec![0u8; data.len()];
        c.data(&mut back);
        assert_eq!(back, data, "the honest client got a wrong answer");
        let t = Instant::now();
        let d = Descriptor { op: Op::StatPath as u32, len: name.len() as u64, ..Descriptor::default() };
        c.call(d, name.as_bytes()).expect("honest stat");
        took.push(t.elapsed());
    }
    took
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() * 99 / 100]
}

/// A back driver serving a union of two fresh branches of scratch directory `label`, the lower
/// one holding `f` (one byte): the scratch (removed when dropped), both branches and the driver.
fn served(label: &str) -> (Scratch, PathBuf, PathBuf, BackDriver) {
    let s = Scratch::new(label);
    let (lower, upper) = (s.mkdir("lower"), s.mkdir("upper"));
    std::fs::write(lower.join("f"), b"x").expect("seed");
    let driver = BackDriver::start(union(&lower, &upper), GEOMETRY, &common::channel_path()).expect("back driver");
    (s, lower, upper, driver)
}

/// Alternations of a quiet and an attacked measurement per attack: one pair of 2,000-stat
/// runs has a p99 that varies 2-3x between runs on these machines, more than the 2x the issue
/// compares against, so each attack is measured five times beside five quiet runs.
const ROUNDS: usize = 5;

/// Measurements of one test at a time: the tests of this file run in parallel threads, and
/// one test's attacker (a spinning or flooding process) would otherwise load another's quiet run.
static MEASURING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs the honest client quietly, then beside `attack` (until the honest one is done),
/// `ROUNDS` times; prints the median p99 of each.
fn under(label: &str, attack: impl Fn(&std::ffi::CStr, &BackDriver, Arc<AtomicBool>) -> std::thread::JoinHandle<()>) {
    let s = Scratch::new(&format!("hostile-{label}"));
    let (lower, upper) = (s.mkdir("lower"), s.mkdir("upper"));
    let driver = BackDriver::start(union(&lower, &upper), GEOMETRY, &common::channel_path()).expect("back driver");
    let chan = common::channel(&driver);
    let _alone = MEASURING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (mut quiet, mut loud) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        quiet.push(p99(honest(&chan, "quiet", 2000)));
        let stop = Arc::new(AtomicBool::new(false));
        let attacker = attack(&chan, &driver, stop.clone());
        loud.push(p99(honest(&chan, "honest", 2000)));
        stop.store(true, Ordering::Release);
        attacker.join().expect("the attacker thread");
    }
    quiet.sort();
    loud.sort();
    let (q, l) = (quiet[ROUNDS / 2], loud[ROUNDS / 2]);
    eprintln!("{label}: honest stat p99 (median of {ROUNDS}) quiet {q:?}, under attack {l:?}: {:.2}x; quiet {quiet:?}, attacked {loud:?}", l.as_secs_f64() / q.as_secs_f64());
    // The service still serves everyone.
    let mut c = Client::connect(&chan, 0).expect("connect after the attack");
    assert!(open(&mut c, "honest", libc::O_RDONLY).is_ok());
}

/// A neighbour process running `child` (which never returns) until `stop`, then killed and
/// reaped; the thread that does so, for `under`.
fn neighbour(stop: Arc<AtomicBool>, child: impl FnOnce()) -> std::thread::JoinHandle<()> {
    // SAFETY: the child only runs `child` (system calls and loops) and ends with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        child();
        // SAFETY: ends the child without the test harness.
        unsafe { libc::_exit(1) };
    }
    std::thread::spawn(move || {
        while !stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(5));
        }
        // SAFETY: killing and reaping the child forked above.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    })
}

/// The driver's segment attached as any process of the pool may attach it, detached on drop.
struct Attached {
    addr: *mut libc::c_void,
    geometry: polytropon_ipc::segment::Geometry,
}

impl Attached {
    fn new(shmid: i32) -> Attached {
        // SAFETY: attaching the driver's live segment read-write at an address of the
        // kernel's choice; checked below.
        let addr = unsafe { libc::shmat(shmid, std::ptr::null(), 0) };
        assert_ne!(addr as isize, -1, "shmat");
        let geometry = Segment::claimed_geometry(addr as *const u8).expect("geometry");
        Attached { addr, geometry }
    }

    fn segment(&self) -> Segment {
        // SAFETY: the whole segment is mapped at `addr` until this attachment's drop, and every
        // segment borrowed from it is dropped before (it lives in the attachment's scope).
        unsafe { Segment::new(self.addr.cast(), Layout::new(self.geometry).expect("layout")) }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        // SAFETY: our own attachment, detached once.
        unsafe { libc::shmdt(self.addr) };
    }
}

#[test]
fn forged_hints_and_garbage_in_the_shared_words_change_no_answer() {
    under("forged-hints", |_, driver, stop| {
        let shmid = driver.shmid();
        std::thread::spawn(move || {
            let attached = Attached::new(shmid);
            let (seg, g) = (attached.segment(), attached.geometry);
            let mut n = 0u64;
            while !stop.load(Ordering::Acquire) {
                n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                // A hint for every client, with any flags, and garbage in the doorbell words.
                let _ = seg.queue(0).push(&Descriptor { client: (n >> 33) as u32 % g.clients, flags: (n >> 13) as u32 & 3, seq: n, op: Op::Write as u32, ..Descriptor::default() });
                seg.doorbell(0).cpu.store((n >> 40) as u32, Ordering::Relaxed);
                std::thread::yield_now();
            }
        })
    });
}

/// Bursts of hints, which any process of the pool can push into the shared queue, start a
/// helper thread at most every 20 ms, not one per burst: 1.5 s of bursts of eight hints every
/// millisecond start at most 1.5 s / 20 ms helpers (and the honest client is still served).
#[test]
fn bursts_of_hints_start_few_helper_threads() {
    let (_s, _lower, _upper, driver) = served("hostile-bursts");
    let mut c = Client::connect(&common::channel(&driver), 0).expect("client");
    let before = driver.helpers_started();
    let shmid = driver.shmid();
    let attached = Attached::new(shmid);
    let seg = attached.segment();
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(1500) {
        for _ in 0..8 {
            let _ = seg.queue(0).push(&Descriptor { client: c.id(), flags: FLAG_NO_REPLY, ..Descriptor::default() });
        }
        seg.doorbell(0).ring();
        std::thread::sleep(Duration::from_millis(1));
    }
    let took = t.elapsed();
    drop(attached);
    let started = driver.helpers_started() - before;
    let most = took.as_millis() as u64 / 20 + 1;
    assert!(started <= most, "{started} helper threads started in {took:?} (at most {most})");
    assert!(c.call(Descriptor { op: Op::StatPath as u32, len: 1, ..Descriptor::default() }, b"f").is_ok());
}

/// A client that takes other clients' hints out of the shared queue now and then (its slots are
/// the pool's, writable and readable by every client) costs their requests a retry, not an
/// error: a client whose request stays unanswered queues its hint again every 100 ms (the
/// service serves a request once, whatever the hints). Before, a lost hint left the request to
/// the client's 5 s timeout and `EIO`.
#[test]
fn hints_taken_from_the_queue_cost_a_retry_not_an_error() {
    let (_s, _lower, _upper, driver) = served("hostile-steal");
    let mut c = Client::connect(&common::channel(&driver), 0).expect("client");
    let (stop, stolen) = (Arc::new(AtomicBool::new(false)), Arc::new(std::sync::atomic::AtomicU64::new(0)));
    let thief = {
        let (stop, stolen, shmid) = (stop.clone(), stolen.clone(), driver.shmid());
        std::thread::spawn(move || {
            let attached = Attached::new(shmid);
            let seg = attached.segment();
            // Two-fifths of the time: a thief that never stops takes every hint a sleeping
            // worker is woken for (the known gap in docs/SECURITY.md).
            while !stop.load(Ordering::Acquire) {
                let until = Instant::now() + Duration::from_millis(2);
                while Instant::now() < until {
                    if seg.queue(0).pop().is_some() {
                        stolen.fetch_add(1, Ordering::Relaxed);
                    }
                    std::hint::spin_loop();
                }
                std::thread::sleep(Duration::from_millis(3));
            }
        })
    };
    for i in 0..40 {
        // Spaced out, so that the worker sleeps between them (a request then waits for it to
        // wake, and the thief may take the hint first).
        std::thread::sleep(Duration::from_millis(3));
        let r = c.call(Descriptor { op: Op::StatPath as u32, len: 1, ..Descriptor::default() }, b"f");
        assert!(r.is_ok(), "stat {i}: {r:?} ({} hints taken so far)", stolen.load(Ordering::Relaxed));
    }
    assert!(stolen.load(Ordering::Relaxed) > 0, "the thief took no hint: the test tested nothing");
    stop.store(true, Ordering::Release);
    thief.join().expect("the thief");
    eprintln!("{} hints taken by the thief", stolen.load(Ordering::Relaxed));
}

#[test]
fn a_flood_of_posted_releases_costs_the_poster_only() {
    under("posts", |chan, _, stop| {
        let chan = chan.to_owned();
        // Another process (a thread's releases of its own process's handles are its own).
        neighbour(stop, move || {
            if let Ok(mut c) = Client::connect(&chan, 0) {
                let mut h = 1u64;
                loop {
                    h += 1;
                    let _ = c.post(Descriptor { op: Op::Release as u32, inode: h % 64, handle: h % 64, flags: FLAG_NO_REPLY, ..Descriptor::default() });
                }
            }
        })
    });
}

#[test]
fn a_stalled_streamed_write_fails_for_its_client_only() {
    under("stall", |chan, _, stop| {
        let chan = chan.to_owned();
        std::thread::spawn(move || {
            let mut c = Client::connect(&chan, 0).expect("attacker connects");
            let f = open(&mut c, "attacker", libc::O_CREAT | libc::O_RDWR).expect("attacker open");
            while !stop.load(Ordering::Acquire) {
                // A streamed write of 512 KiB whose pieces never come (`filled` stays 0).
                let d = Descriptor { op: Op::Write as u32, inode: f.0, handle: f.1, len: 512 << 10, arg: WRITE_STREAMED, ..Descriptor::default() };
                let r = c.call(d, &[]);
                assert!(r.is_err() || r.is_ok_and(|r| r.value < 512 << 10), "a stalled write cannot have written everything");
            }
        })
    });
}

/// A streamed write whose client stops copying is given up on within a tenth of a second, and
/// then no write of its queue is streamed for a while (`EAGAIN`: the library copies such a
/// write in whole first), so that clients stalling on purpose, however many processes or users,
/// hold the queue's threads only a fraction of the time; writes copied in whole still go.
#[test]
fn a_queue_whose_streamed_write_stalled_streams_none_for_a_while() {
    let (_s, _lower, upper, driver) = served("hostile-bar");
    let mut c = Client::connect(&common::channel(&driver), 0).expect("client");
    let f = open(&mut c, "stalled", libc::O_CREAT | libc::O_RDWR).expect("open");
    let stalled = Descriptor { op: Op::Write as u32, inode: f.0, handle: f.1, len: 512 << 10, arg: WRITE_STREAMED, ..Descriptor::default() };
    let t = Instant::now();
    assert_eq!(c.call(stalled, &[]).map(|r| r.value), Err(Unserved::Errno(libc::EIO)), "nothing was copied in");
    let gave_up = t.elapsed();
    assert!(gave_up < Duration::from_secs(1), "a stalled write held its thread for {gave_up:?}");
    assert_eq!(c.call(stalled, &[]).map(|r| r.value), Err(Unserved::Errno(libc::EAGAIN)), "streamed again at once");
    let data = vec![7u8; 256 << 10];
    assert_eq!(io(&mut c, Op::Write, f, &data, data.len() as u64), Ok(data.len() as u64), "a write copied in whole");
    assert_eq!(std::fs::read(upper.join("stalled")).expect("written"), data);
}

/// A streamed write whose client trickles its pieces in, each sooner than the wait for one
/// piece but all of them far slower than any copy, is given up on as a stalled one (it would
/// otherwise hold its thread for as long as the client likes), and bars streaming as one.
#[test]
fn a_trickled_streamed_write_is_given_up_on_as_a_stalled_one() {
    let (_s, _lower, upper, driver) = served("hostile-trickle");
    let mut c = Client::connect(&common::channel(&driver), 0).expect("client");
    let f = open(&mut c, "trickled", libc::O_CREAT | libc::O_RDWR).expect("open");
    const PIECE: u32 = 64 << 10;
    const PIECES: u32 = 16;
    // The `filled` word of this client's area, as a hostile client writes it.
    let filled = &c.header().filled as *const std::sync::atomic::AtomicU32 as usize;
    let trickle = std::thread::spawn(move || {
        for k in 1..=PIECES {
            std::thread::sleep(Duration::from_millis(60));
            // SAFETY: the word lives in the client's area, mapped until `c` drops, which is
            // after this thread is joined.
            unsafe { &*(filled as *const std::sync::atomic::AtomicU32) }.store(k * PIECE, Ordering::Release);
        }
    });
    let streamed = Descriptor { op: Op::Write as u32, inode: f.0, handle: f.1, len: u64::from(PIECE * PIECES), arg: WRITE_STREAMED, ..Descriptor::default() };
    let t = Instant::now();
    let written = c.call(streamed, &[]).map(|r| r.value);
    let took = t.elapsed();
    trickle.join().expect("the trickling thread");
    assert!(written.is_ok_and(|n| n < u64::from(PIECE * PIECES)), "a trickled write was waited for to its end: {written:?} after {took:?}");
    assert!(took < Duration::from_millis(600), "a trickled write held its thread for {took:?}");
    assert_eq!(c.call(streamed, &[]).map(|r| r.value), Err(Unserved::Errno(libc::EAGAIN)), "streamed again at once");
    assert!(std::fs::metadata(upper.join("trickled")).expect("written").len() < u64::from(PIECE * PIECES));
}

#[test]
fn a_handle_of_another_process_is_ebadf_and_stays_its_owners() {
    let s = Scratch::new("hostile-handle");
    let (lower, upper) = (s.mkdir("lower"), s.mkdir("upper"));
    std::fs::write(lower.join("secret"), b"mine only").expect("seed");
    let driver = BackDriver::start(union(&lower, &upper), GEOMETRY, &common::channel_path()).expect("back driver");
    let chan = common::channel(&driver);
    let mut mine = Client::connect(&chan, 0).expect("connect");
    let f = open(&mut mine, "secret", libc::O_RDONLY).expect("open");
    // Another process names the handle: read, getattr, fsync and release all fail, and
    // nothing it does takes the handle from its owner.
    // SAFETY: the child only connects, calls and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        let code = (|| {
            let mut c = Client::connect(&chan, 0).ok()?;
            let ebadf = Err(Unserved::Errno(libc::EBADF));
            for op in [Op::Read, Op::Getattr, Op::Fsync, Op::Write, Op::Release] {
                let (data, len): (&[u8], u64) = match op {
                    Op::Write => (b"x", 1),
                    Op::Read => (&[], 1),
                    _ => (&[], 0),
                };
                let got = io(&mut c, op, f, data, len).map(|_| ());
                if got != ebadf {
                    eprintln!("{op:?} with another process's handle: {got:?}");
                    return None;
                }
            }
            Some(())
        })()
        .map_or(1, |()| 0);
        // SAFETY: ends the child without the test harness.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for the child just forked.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "another process used (or released) the handle");
    assert_eq!(io(&mut mine, Op::Read, f, &[], 9), Ok(9), "the owner's handle still works");
    let mut b = [0u8; 9];
    mine.data(&mut b);
    assert_eq!(&b, b"mine only");
    // The handle on another inode than its own is refused too.
    assert_eq!(io(&mut mine, Op::Read, (f.0 + 1, f.1), &[], 9), Err(Unserved::Errno(libc::EBADF)));
}

#[test]
fn an_instance_whose_mount_the_process_cannot_see_is_not_there_for_it() {
    let s = Scratch::new("hostile-instance");
    let (lower, upper) = (s.mkdir("lower"), s.mkdir("upper"));
    std::fs::write(lower.join("f"), b"x").expect("seed");
    let seen = std::os::unix::fs::MetadataExt::dev(&std::fs::metadata("/").expect("stat /"));
    let instance = |device| Some(polytropon::service::shm::UserInstance { fs: union(&lower, &upper), stats: Arc::default(), kernel: None, device, passthrough: false, changes: None, lower: None, upper: None });
    // Instance 0's mount is one every process here sees (the root's device); instance 1's is
    // a device no process has mounted.
    let table = Arc::new(std::sync::RwLock::new(vec![instance(Some(seen)), instance(Some(u64::MAX - 7))]));
    let driver = BackDriver::start_table(table, GEOMETRY, &[], None, &common::channel_path()).expect("back driver");
    let mut c = Client::connect(&common::channel(&driver), 0).expect("connect");
    let stat = |c: &mut Client, instance: u32| c.call(Descriptor { op: Op::StatPath as u32, instance, len: 1, ..Descriptor::default() }, b"f").map(|_| ());
    assert_eq!(stat(&mut c, 0), Ok(()));
    assert_eq!(stat(&mut c, 1), Err(Unserved::Errno(libc::ENODEV)));
}

/// A handle is good only for what its open asked, as a descriptor is in the kernel, whatever a
/// client sends on it: a file opened to read cannot be written, truncated (by either request
/// that sets a size) or allocated, and neither its bytes nor its modes change (the service used
/// to copy a lower file up cut to the asked size before the backend refused the write); a file
/// opened only to write cannot be read.
#[test]
fn a_handle_does_only_what_its_open_asked_for() {
    use polytropon_ipc::{WireFallocate, WireSetattr, SET_SIZE};
    let s = Scratch::new("hostile-access");
    let (lower, upper) = (s.mkdir("lower"), s.mkdir("upper"));
    std::fs::write(lower.join("passwd"), b"root:x:0:0\n").expect("seed");
    std::fs::write(upper.join("log"), b"secret bytes\n").expect("seed");
    let driver = BackDriver::start(union(&lower, &upper), GEOMETRY, &common::channel_path()).expect("back driver");
    let mut c = Client::connect(&common::channel(&driver), 0).expect("client");
    let errno = |r: Result<polytropon_ipc::client::Reply, Unserved>| match r {
        Err(Unserved::Errno(e)) => e,
        other => panic!("served: {other:?}"),
    };
    let on = |op: Op, (inode, handle): (u64, u64)| Descriptor { op: op as u32, inode, handle, ..Descriptor::default() };
    let ro = open(&mut c, "passwd", libc::O_RDONLY).expect("open to read");
    assert_eq!(errno(c.call(Descriptor { arg: 0, ..on(Op::Truncate, ro) }, &[])), libc::EINVAL, "ftruncate of a file opened to read");
    let size = WireSetattr { valid: SET_SIZE, size: 0, ..WireSetattr::default() }.to_bytes();
    assert_eq!(errno(c.call(Descriptor { len: size.len() as u64, ..on(Op::Setattr, ro) }, &size)), libc::EINVAL, "a size set on a file opened to read");
    let alloc = WireFallocate { mode: 0, pad: 0, offset: 0, length: 4096 }.to_bytes();
    assert_eq!(errno(c.call(Descriptor { len: alloc.len() as u64, ..on(Op::Fallocate, ro) }, &alloc)), libc::EBADF, "fallocate on a file opened to read");
    assert_eq!(io(&mut c, Op::Write, ro, b"evil", 4), Err(Unserved::Errno(libc::EBADF)), "write to a file opened to read");
    assert_eq!(std::fs::read(lower.join("passwd")).expect("lower"), b"root:x:0:0\n");
    assert!(!upper.join("passwd").exists(), "nothing copied up for a refused change");
    assert_eq!(io(&mut c, Op::Read, ro, &[], 64), Ok(11), "the reader still reads");
    let again = open(&mut c, "passwd", libc::O_RDONLY).expect("open again");
    assert_eq!(io(&mut c, Op::Read, again, &[], 64), Ok(11), "the file as every process sees it is whole");
    let wo = open(&mut c, "log", libc::O_WRONLY).expect("open to write");
    assert_eq!(io(&mut c, Op::Read, wo, &[], 64), Err(Unserved::Errno(libc::EBADF)), "read from a file opened only to write");
    assert_eq!(io(&mut c, Op::Write, wo, b"more", 4), Ok(4), "the writer still writes");
}

/// For reference beside the attacks: a neighbour process of the pool that only spins (it
/// never talks to the service) and so takes a cpu, as the posting attacker does.
#[test]
fn reference_a_neighbour_that_only_takes_a_cpu() {
    under("busy", |_, _, stop| {
        neighbour(stop, || loop {
            std::hint::spin_loop();
        })
    });
}

/// Connections that never say hello, or only begin it, hold up no one: an honest client connects
/// and is served beside twenty silent ones (each used to hold the listener for half a second,
/// longer in all than a client waits for its welcome) and twenty stalled after one byte.
#[test]
fn silent_connections_delay_no_honest_client() {
    let (_s, _lower, _upper, driver) = served("hostile-silent");
    let mut silent: Vec<_> = (0..20).map(|_| std::os::unix::net::UnixStream::connect(driver.channel()).expect("a silent connection")).collect();
    // And as many that said the first byte of a hello and nothing more (kept aside, looked at
    // again every few ms, never read from until whole).
    for _ in 0..20 {
        let conn = std::os::unix::net::UnixStream::connect(driver.channel()).expect("a stalled connection");
        std::io::Write::write_all(&mut &conn, &polytropon_ipc::PROTOCOL_VERSION.to_le_bytes()[..1]).expect("one byte");
        silent.push(conn);
    }
    let mut c = Client::connect(&common::channel(&driver), 0).expect("the honest client connects");
    assert!(c.call(Descriptor { op: Op::StatPath as u32, len: 1, ..Descriptor::default() }, b"f").is_ok());
    drop(silent);
    // The service goes on admitting clients once they are gone.
    let mut again = Client::connect(&common::channel(&driver), 0).expect("a client after the stalled ones");
    assert!(again.call(Descriptor { op: Op::StatPath as u32, len: 1, ..Descriptor::default() }, b"f").is_ok());
}

/// A flood of silent connections costs the service a bounded number of descriptors (they are
/// every tenant's opens too): of 300, it keeps at most 64 waiting for their hello, making room
/// by dropping those that waited longest, and an honest client connecting after all of them
/// is still admitted.
#[test]
fn a_flood_of_silent_connections_holds_a_bounded_number_of_descriptors() {
    let (_s, _lower, _upper, driver) = served("hostile-flood");
    let fds = || std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0);
    let before = fds();
    let silent: Vec<_> = (0..300).map(|_| std::os::unix::net::UnixStream::connect(driver.channel()).expect("a silent connection")).collect();
    // What the service accepts, it accepts within a few rounds of its listener.
    std::thread::sleep(Duration::from_millis(300));
    // This process holds the silent connections' own ends and the service's (the driver runs
    // here); other tests running meanwhile may hold a few more.
    let held = fds().saturating_sub(before).saturating_sub(silent.len());
    assert!(held <= 64 + 40, "the service holds {held} descriptors for 300 silent connections");
    let mut c = Client::connect(&common::channel(&driver), 0).expect("the honest client connects after the flood");
    assert!(c.call(Descriptor { op: Op::StatPath as u32, len: 1, ..Descriptor::default() }, b"f").is_ok());
    drop(silent);
}

/// A hello sent a byte at a time holds up no one either, and is still welcomed once whole: the
/// service used to read a hello as soon as any of it came, a byte at a time, waiting up to
/// 50 ms for each, so such a peer held every other client's admission for half a second.
#[test]
fn a_hello_sent_a_byte_at_a_time_delays_no_honest_client() {
    use std::io::{Read, Write};
    use std::sync::atomic::AtomicUsize;
    let (_s, _lower, _upper, driver) = served("hostile-trickle");
    // SAFETY: gettid cannot fail.
    let tid = unsafe { libc::gettid() } as u32;
    let hello = polytropon_ipc::Hello { version: polytropon_ipc::PROTOCOL_VERSION, tid, cpu: 0 }.to_bytes();
    let (sent, honest_done) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
    let mut conn = std::os::unix::net::UnixStream::connect(driver.channel()).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let trickler = {
        let (sent, honest_done) = (sent.clone(), honest_done.clone());
        std::thread::spawn(move || {
            // All but the last byte, 40 ms apart (within the 50 ms the service waited per read).
            for &byte in &hello[..hello.len() - 1] {
                conn.write_all(&[byte]).expect("a byte of the hello");
                sent.fetch_add(1, Ordering::AcqRel);
                std::thread::sleep(Duration::from_millis(40));
            }
            while !honest_done.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(5));
            }
            conn.write_all(&hello[hello.len() - 1..]).expect("the hello's last byte");
            let mut welcome = [0u8; polytropon_ipc::WELCOME_SIZE];
            conn.read_exact(&mut welcome).expect("a welcome once the hello is whole");
            polytropon_ipc::Welcome::from_bytes(welcome)
        })
    };
    while sent.load(Ordering::Acquire) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut c = Client::connect(&common::channel(&driver), 0).expect("the honest client connects");
    assert!(c.call(Descriptor { op: Op::StatPath as u32, len: 1, ..Descriptor::default() }, b"f").is_ok());
    let by_then = sent.load(Ordering::Acquire);
    honest_done.store(true, Ordering::Release);
    assert!(by_then < hello.len() - 1, "the honest client was served only after the trickling peer had sent its whole hello but one byte ({by_then})");
    let welcome = trickler.join().expect("the trickling thread");
    assert_eq!(welcome.status, 0, "the slow hello, once whole, is welcomed: {welcome:?}");
}

/// Cpu time (user and system, in clock ticks) of this process's threads named `name`.
fn threads_cpu(name: &str) -> u64 {
    let mut ticks = 0;
    for task in std::fs::read_dir("/proc/self/task").expect("tasks").flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the command's closing parenthesis: state is the first, utime the 12th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<u64> = rest.split_whitespace().skip(11).take(2).filter_map(|f| f.parse().ok()).collect();
        ticks += fields.iter().sum::<u64>();
    }
    ticks
}

/// Peers that send part of a hello and close cost the service nothing more: their end of the
/// connection stays readable (hung up, the bytes unread) until the service reads them, which it
/// does (it used to look at them again and again, at full speed, for the second a hello may
/// take: one such connection a second kept a cpu busy).
#[test]
fn hellos_cut_short_by_a_close_cost_the_service_no_cpu() {
    use std::io::Write;
    let (_s, _lower, _upper, driver) = served("hostile-cut");
    let before = threads_cpu("ptn-channel");
    for n in 1..=20usize {
        let conn = std::os::unix::net::UnixStream::connect(driver.channel()).expect("connect");
        let part = &polytropon_ipc::PROTOCOL_VERSION.to_le_bytes()[..(n % 3) + 1];
        (&conn).write_all(part).expect("part of a hello");
        drop(conn);
    }
    // The second within which a hello must come (the service's `HELLO_WAIT`), and a little more.
    std::thread::sleep(Duration::from_millis(1300));
    let spent = threads_cpu("ptn-channel") - before;
    eprintln!("channel threads' cpu over the second after 20 hellos cut short: {spent} ticks");
    // Clock ticks are 10 ms here; spinning for that second took 60-100 of them.
    assert!(spent < 15, "the channel threads took {spent} ticks of cpu after 20 hellos cut short");
    let mut c = Client::connect(&common::channel(&driver), 0).expect("a client after them");
    assert!(c.call(Descriptor { op: Op::StatPath as u32, len: 1, ..Descriptor::default() }, b"f").is_ok());
}

/// A process outside the pool's IPC namespace (where the segment lives, which it could not
/// attach) is refused by name at its hello, before it takes an area: a user of the host who
/// can reach the socket cannot hold the pool's client areas. The same hello from the pool's
/// namespace is welcomed.
#[test]
fn a_process_outside_the_pools_ipc_namespace_takes_no_area() {
    common::require_root();
    let (_s, _lower, _upper, driver) = served("hostile-ipcns");
    let hello = r#"
import os, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(struct.pack("<III", int(sys.argv[2]), os.getpid(), 0))
w = b""
while len(w) < 32:
    part = s.recv(32 - len(w))
    if not part:
        break
    w += part
print(struct.unpack("<Ii", w[:8])[1] if len(w) >= 8 else "closed")
"#;
    let version = polytropon_ipc::PROTOCOL_VERSION.to_string();
    let run = |prefix: &[&str]| -> String {
        let mut argv: Vec<&str> = prefix.to_vec();
        argv.extend(["python3", "-c", hello, driver.channel().to_str().expect("utf-8"), &version]);
        let out = std::process::Command::new(argv[0]).args(&argv[1..]).output().expect("run the client");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(run(&["unshare", "--ipc"]), libc::EACCES.to_string(), "a process of another IPC namespace was welcomed");
    assert_eq!(driver.usage().clients, 0);
    assert_eq!(run(&["env"]), "0", "a process of the pool's namespace was refused");
}

/// A hello of another protocol is refused by name (`EPROTO` in the welcome), whatever its
/// length (an older library's was eight bytes); the cpu a hello names is a hint only: a client
/// naming a cpu that does not exist, or lying about its own, is served as any other (it can
/// only make a worker of its own pool poll for a while). And a pool's clients come and go
/// (connection closed by their exit) without the count of connected clients going astray.
#[test]
fn hellos_of_another_protocol_are_refused_and_a_cpu_hint_changes_no_answer() {
    use std::io::{Read, Write};
    use std::os::fd::IntoRawFd;
    let s = Scratch::new("hostile-hello");
    let (lower, upper) = (s.mkdir("lower"), s.mkdir("upper"));
    std::fs::write(lower.join("f"), b"x").expect("seed");
    let driver = BackDriver::start(union(&lower, &upper), Geometry { queues: 2, ..GEOMETRY }, &common::channel_path()).expect("back driver");
    // SAFETY: gettid cannot fail.
    let tid = unsafe { libc::gettid() } as u32;
    for old in [polytropon_ipc::PROTOCOL_VERSION - 1, 0, u32::MAX] {
        let mut conn = std::os::unix::net::UnixStream::connect(driver.channel()).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut hello = Vec::from(old.to_le_bytes());
        hello.extend_from_slice(&tid.to_le_bytes());
        conn.write_all(&hello).expect("an eight-byte hello");
        let mut welcome = [0u8; polytropon_ipc::WELCOME_SIZE];
        conn.read_exact(&mut welcome).expect("a refusal, not silence");
        let w = polytropon_ipc::Welcome::from_bytes(welcome);
        assert_eq!(w.status, libc::EPROTO, "protocol {old}: {w:?}");
    }
    let stat = |c: &mut Client| c.call(Descriptor { op: Op::StatPath as u32, len: 1, ..Descriptor::default() }, b"f").map(|r| (r.value, r.aux));
    let mut honest = Client::connect(&common::channel(&driver), 0).expect("an honest client");
    let expected = stat(&mut honest).expect("the honest client's stat");
    drop(honest);
    for cpu in [u32::MAX, 9999, polytropon_ipc::current_cpu(), 1, 2, 0] {
        let conn = std::os::unix::net::UnixStream::connect(driver.channel()).expect("connect");
        let hello = polytropon_ipc::Hello { version: polytropon_ipc::PROTOCOL_VERSION, tid, cpu };
        (&conn).write_all(&hello.to_bytes()).expect("hello");
        let mut c = Client::finish(conn.into_raw_fd(), 0, None).expect("welcomed");
        assert_eq!(stat(&mut c), Ok(expected), "cpu hint {cpu}");
        drop(c);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while driver.usage().clients != 0 {
        assert!(Instant::now() < deadline, "client areas still counted: {:?}", driver.usage());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(driver.usage().reclaimed_clients >= 7, "{:?}", driver.usage());
}

/// One slow request holds its queue's only worker (here a copy-up of a 256 MiB lower file
/// opened for writing, with its fsync): the janitor sees the queue holding hints that nobody
/// takes and calls in a helper, so a stat of another instance sent to the same queue is
/// answered while the copy-up still runs. (It waited for the copy-up to end: a tenant's large
/// copy-up, fsync or slow CephFS call held every other client of its queue, past their 5 s
/// timeout.)
#[test]
fn a_slow_request_does_not_hold_its_queue() {
    let s = Scratch::new("hostile-slow");
    let (la, ua, lb, ub) = (s.mkdir("la"), s.mkdir("ua"), s.mkdir("lb"), s.mkdir("ub"));
    {
        use std::io::Write;
        let mut big = std::fs::File::create(la.join("big")).expect("big");
        let chunk = vec![0x5au8; 1 << 20];
        for _ in 0..256 {
            big.write_all(&chunk).expect("write");
        }
    }
    std::fs::write(lb.join("f"), b"x").expect("seed");
    let instance = |fs| Some(polytropon::service::shm::UserInstance { fs, stats: Arc::default(), kernel: None, device: None, passthrough: false, changes: None, lower: None, upper: None });
    let table = Arc::new(std::sync::RwLock::new(vec![instance(union(&la, &ua)), instance(union(&lb, &ub))]));
    let driver = BackDriver::start_table(table, GEOMETRY, &[], None, &common::channel_path()).expect("back driver");
    let done = Arc::new(AtomicBool::new(false));
    let slow = {
        let (chan, done) = (common::channel(&driver), done.clone());
        std::thread::spawn(move || {
            let mut c = Client::connect(&chan, 0).expect("client");
            let open = OpenArg { flags: libc::O_WRONLY, mode: 0 }.encode();
            let r = c.call(Descriptor { op: Op::OpenPath as u32, instance: 0, len: 3, arg: open, ..Descriptor::default() }, b"big");
            done.store(true, Ordering::Release);
            r.is_ok()
        })
    };
    // The copy-up is under way once its scratch file is in the upper branch.
    let t = Instant::now();
    while std::fs::read_dir(&ua).expect("upper").next().is_none() {
        assert!(t.elapsed() < Duration::from_secs(10) && !done.load(Ordering::Acquire), "no copy-up seen");
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut c = Client::connect(&common::channel(&driver), 0).expect("client");
    let r = c.call(Descriptor { op: Op::StatPath as u32, instance: 1, len: 1, ..Descriptor::default() }, b"f");
    let answered_first = !done.load(Ordering::Acquire);
    assert!(r.is_ok(), "{r:?}");
    assert!(slow.join().expect("the slow client"), "the copy-up failed");
    assert!(answered_first, "the stat waited for the copy-up to end ({:?})", t.elapsed());
}

/// One process connecting again and again (or with a thread per connection) takes at most
/// half the pool's client areas: another process still gets one, and is served.
#[test]
fn one_process_takes_at_most_half_the_client_areas() {
    let (_s, _lower, _upper, driver) = served("hostile-areas");
    let chan = common::channel(&driver);
    let mut mine = Vec::new();
    let refused = loop {
        match Client::connect(&chan, 0) {
            Ok(c) => mine.push(c),
            Err(e) => break e,
        }
        assert!(mine.len() <= GEOMETRY.clients as usize, "every client area went to one process");
    };
    assert_eq!(refused, libc::EBUSY, "the refusal");
    assert_eq!(mine.len() as u32, GEOMETRY.clients / 2, "areas one process got");
    // SAFETY: the child only connects, calls and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        let served = Client::connect(&chan, 0).ok().and_then(|mut c| open(&mut c, "f", libc::O_RDONLY).ok()).is_some();
        // SAFETY: ends the child without the test harness.
        unsafe { libc::_exit(if served { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waiting for the child just forked.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "another process got no client area");
    // Areas given back count no more.
    mine.truncate(1);
    let t = std::time::Instant::now();
    while Client::connect(&chan, 0).is_err() {
        assert!(t.elapsed() < Duration::from_secs(5), "no area after this process closed some");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A process that may not search a directory above an instance's mount point cannot reach
/// the instance through the channel either, whatever library it skips: the service walks the
/// directories above the mount point from the process's root with its credentials.
#[test]
fn a_mount_point_the_caller_may_not_reach_is_refused_by_the_service() {
    let s = Scratch::new("hostile-reach");
    let (lower, upper) = (s.mkdir("lower"), s.mkdir("upper"));
    std::fs::write(lower.join("pub"), b"anyone").expect("seed");
    let at = s.mkdir("locked/m");
    // A file system of its own at the mount point: its device names the instance.
    let out = std::process::Command::new("mount").args(["-t", "tmpfs", "tmpfs"]).arg(&at).output().expect("mount");
    assert!(out.status.success(), "mount: {}", String::from_utf8_lossy(&out.stderr));
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).output();
        }
    }
    let _unmount = Unmount(at.clone());
    let dev = std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(&at).expect("stat the mount point"));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(s.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod scratch");
    std::fs::set_permissions(s.path().join("locked"), std::fs::Permissions::from_mode(0o700)).expect("chmod locked");
    let instance = Some(polytropon::service::shm::UserInstance { fs: union(&lower, &upper), stats: Arc::default(), kernel: None, device: Some(dev), passthrough: false, changes: None, lower: None, upper: None });
    let driver = BackDriver::start_table(Arc::new(std::sync::RwLock::new(vec![instance])), GEOMETRY, &[], None, &common::channel_path()).expect("back driver");
    let chan = common::channel(&driver);
    // Root reaches it.
    let mut c = Client::connect(&chan, 0).expect("connect");
    assert!(open(&mut c, "pub", libc::O_RDONLY).is_ok(), "root could not reach the instance");
    // SAFETY: the child only drops its ids, connects, calls and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        // SAFETY: plain system calls in the child.
        let dropped = unsafe { libc::setgid(65534) == 0 && libc::setuid(65534) == 0 };
        let code = match Client::connect(&chan, 0) {
            Ok(mut c) if dropped => match open(&mut c, "pub", libc::O_RDONLY) {
                Err(Unserved::Errno(libc::EACCES)) => 0,
                Ok(_) => 2,
                Err(_) => 3,
            },
            _ => 4,
        };
        // SAFETY: ends the child without the test harness.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for the child just forked.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status), "the child died");
    assert_eq!(libc::WEXITSTATUS(status), 0, "a user who may not search above the mount point (2: served; 3: another error; 4: no connection)");
}
