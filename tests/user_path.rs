//! The user-level path end to end on a real SysV segment: a client process-side library
//! talks to the back driver, which serves a union instance; a hostile client sends garbage
//! meanwhile and honest clients stay correct.

mod common;

use std::sync::Arc;

use common::{union, Scratch};
use polytropon::service::shm::{BackDriver, UserInstance};
use polytropon_ipc::args::OpenArg;
use polytropon_ipc::client::Client;
use polytropon_ipc::segment::Geometry;
use polytropon_ipc::{Descriptor, Op, Unserved, WireAttr};


const GEOMETRY: Geometry = Geometry { queues: 2, slots: 64, clients: 16, buffer_size: 1 << 20 };

fn open(c: &mut Client, path: &str, flags: i32, mode: u32) -> Result<(u64, u64), Unserved> {
    let d = Descriptor { op: Op::OpenPath as u32, len: path.len() as u64, arg: OpenArg { flags, mode }.encode(), ..Descriptor::default() };
    let r = c.call(d, path.as_bytes())?;
    Ok((r.aux[0], r.aux[1]))
}

fn rw(c: &mut Client, op: Op, (ino, fh): (u64, u64), offset: u64, data: &[u8], len: u64) -> Result<u64, Unserved> {
    let d = Descriptor { op: op as u32, inode: ino, handle: fh, offset, len, ..Descriptor::default() };
    Ok(c.call(d, data)?.value)
}

fn release(c: &mut Client, (ino, fh): (u64, u64)) -> Result<(), Unserved> {
    c.call(Descriptor { op: Op::Release as u32, inode: ino, handle: fh, ..Descriptor::default() }, &[]).map(|_| ())
}

fn stat(c: &mut Client, path: &str) -> Result<WireAttr, Unserved> {
    let d = Descriptor { op: Op::StatPath as u32, len: path.len() as u64, ..Descriptor::default() };
    c.call(d, path.as_bytes())?;
    let mut b = [0u8; std::mem::size_of::<WireAttr>()];
    c.data(&mut b);
    Ok(WireAttr::from_bytes(&b))
}

#[test]
fn files_through_the_user_level_path() {
    let s = Scratch::new("user-path");
    let (lower, upper) = (s.mkdir("lower"), s.mkdir("upper"));
    std::fs::create_dir(lower.join("etc")).expect("mkdir");
    std::fs::write(lower.join("etc/motd"), b"from the image\n").expect("seed");
    let driver = BackDriver::start(union(&lower, &upper), GEOMETRY, &common::channel_path()).expect("back driver");
    let mut c = Client::connect(&common::channel(&driver), 0).expect("attach");
    // Read a lower file.
    let f = open(&mut c, "etc/motd", libc::O_RDONLY, 0).expect("open");
    assert_eq!(rw(&mut c, Op::Read, f, 0, &[], 100), Ok(15));
    let mut b = [0u8; 15];
    c.data(&mut b);
    assert_eq!(&b, b"from the image\n");
    release(&mut c, f).expect("release");
    // Create, write 3 MiB in 1 MiB requests, read back, stat, unlink.
    let f = open(&mut c, "/etc/./new", libc::O_CREAT | libc::O_EXCL | libc::O_RDWR, 0o640).expect("create");
    let chunk: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    for i in 0..3u64 {
        assert_eq!(rw(&mut c, Op::Write, f, i << 20, &chunk, 1 << 20), Ok(1 << 20));
    }
    assert_eq!(rw(&mut c, Op::Read, f, 1 << 20, &[], 1 << 20), Ok(1 << 20));
    let mut back = vec![0u8; 1 << 20];
    c.data(&mut back);
    assert!(back == chunk, "read back differs");
    release(&mut c, f).expect("release");
    let a = stat(&mut c, "etc/new").expect("stat");
    assert_eq!((a.size, a.mode & 0o7777), (3 << 20, 0o640));
    assert_eq!(std::fs::metadata(upper.join("etc/new")).expect("in the upper branch").len(), 3 << 20);
    assert_eq!(open(&mut c, "etc/new", libc::O_CREAT | libc::O_EXCL | libc::O_RDWR, 0o600), Err(Unserved::Errno(libc::EEXIST)));
    c.call(Descriptor { op: Op::UnlinkPath as u32, len: 7, ..Descriptor::default() }, b"etc/new").expect("unlink");
    assert_eq!(stat(&mut c, "etc/new").map(|a| a.size), Err(Unserved::Errno(libc::ENOENT)));
    // Errors the kernel path would give, and escapes refused.
    assert_eq!(open(&mut c, "nope/x", libc::O_RDONLY, 0), Err(Unserved::Errno(libc::ENOENT)));
    assert_eq!(open(&mut c, "etc/motd/x", libc::O_RDONLY, 0), Err(Unserved::Errno(libc::ENOTDIR)));
    assert_eq!(open(&mut c, "../../etc/passwd", libc::O_RDONLY, 0), Err(Unserved::Errno(libc::EINVAL)));
    assert_eq!(rw(&mut c, Op::Read, (999, 999), 0, &[], 10), Err(Unserved::Errno(libc::EBADF)));
    assert_eq!(std::fs::read(lower.join("etc/motd")).expect("lower"), b"from the image\n", "the image branch is never written");
}

#[test]
fn garbage_from_a_hostile_client_does_not_disturb_honest_ones() {
    let s = Scratch::new("user-hostile");
    let (lower, upper) = (s.mkdir("lower"), s.mkdir("upper"));
    let driver = BackDriver::start(union(&lower, &upper), GEOMETRY, &common::channel_path()).expect("back driver");
    let shmid = common::channel(&driver);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The honest clients start once the storm has (on a loaded machine the hostile thread
    // may otherwise get the cpu only after they are done).
    let storming = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let hostile = {
        let (stop, storming) = (stop.clone(), storming.clone());
        let shmid = shmid.clone();
        std::thread::spawn(move || {
            let mut h = Client::connect(&shmid, 1).expect("attach");
            let mut rng = 7u64;
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                storming.store(sent, std::sync::atomic::Ordering::Relaxed);
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let junk = Descriptor { op: (rng % 16) as u32, inode: rng, handle: rng >> 3, offset: rng << 7, len: rng >> 20, arg: rng, ..Descriptor::default() };
                let _ = h.call(junk, &rng.to_le_bytes());
                sent += 1;
            }
            sent
        })
    };
    let began = std::time::Instant::now();
    while storming.load(std::sync::atomic::Ordering::Relaxed) < 100 {
        assert!(began.elapsed() < std::time::Duration::from_secs(60), "the hostile client got no 100 requests through in a minute");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let honest: Vec<_> = (0..3)
        .map(|t| {
            let shmid = shmid.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&shmid, t).expect("attach");
                for i in 0..300u32 {
                    let name = format!("t{t}-{i}");
                    let f = open(&mut c, &name, libc::O_CREAT | libc::O_RDWR, 0o600).expect("create");
                    let data = format!("{name} payload").into_bytes();
                    assert_eq!(rw(&mut c, Op::Write, f, 0, &data, data.len() as u64), Ok(data.len() as u64));
                    assert_eq!(rw(&mut c, Op::Read, f, 0, &[], 100), Ok(data.len() as u64));
                    let mut back = vec![0u8; data.len()];
                    c.data(&mut back);
                    assert_eq!(back, data, "client {t} got another's data");
                    release(&mut c, f).expect("release");
                }
            })
        })
        .collect();
    for h in honest {
        h.join().expect("an honest client failed");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = hostile.join().expect("hostile");
    assert!(sent > 100, "the hostile client should have sent plenty of garbage ({sent})");
    // The service is still up and serving.
    let mut c = Client::connect(&shmid, 0).expect("attach after the storm");
    assert!(stat(&mut c, "t0-0").is_ok());
    assert_eq!(std::fs::read_dir(&upper).expect("upper").count(), 900);
}

#[test]
fn a_dead_service_gives_eio_within_a_bounded_time() {
    let s = Scratch::new("user-dead");
    let (lower, upper) = (s.mkdir("lower"), s.mkdir("upper"));
    let driver = BackDriver::start(union(&lower, &upper), GEOMETRY, &common::channel_path()).expect("back driver");
    let mut c = Client::connect(&common::channel(&driver), 0).expect("attach");
    drop(driver);
    let start = std::time::Instant::now();
    assert_eq!(stat(&mut c, "x").map(|a| a.size), Err(Unserved::Errno(libc::EIO)));
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
}

/// Many clients on one queue: the worker calls in helper threads once the queue backs up,
/// and every client still gets its own right answers.
#[test]
fn a_backed_up_queue_gets_helpers_and_answers_stay_right() {
    let s = Scratch::new("user-path-helpers");
    let (lower, upper) = (s.mkdir("lower"), s.mkdir("upper"));
    for i in 0..16 {
        std::fs::write(lower.join(format!("f{i}")), vec![b'x'; i + 1]).expect("seed");
    }
    let g = Geometry { queues: 1, slots: 64, clients: 32, buffer_size: 1 << 16 };
    let driver = BackDriver::start(union(&lower, &upper), g, &common::channel_path()).expect("back driver");
    let shmid = common::channel(&driver);
    let threads: Vec<_> = (0..16usize)
        .map(|i| {
            let shmid = shmid.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&shmid, 0).expect("attach");
                for _ in 0..2000 {
                    let a = stat(&mut c, &format!("f{i}")).expect("stat");
                    assert_eq!(a.size, i as u64 + 1, "client {i} got another client's answer");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    assert!(driver.helpers_started() >= 1, "16 clients on one queue never called in a helper");
}

/// A client that runs on its queue's worker's cpu (the scheduler's choice on a busy or
/// small pool, forced here by pinning both): each side must let the other run rather than
/// spin, or every call waits out a time slice. Answers stay right, and the worker publishes
/// where it runs so that the client can tell.
#[test]
fn a_client_on_its_workers_cpu_is_served_right() {
    let s = Scratch::new("user-path-near");
    let (lower, upper) = (s.mkdir("lower"), s.mkdir("upper"));
    std::fs::write(lower.join("seed"), b"12345").expect("seed");
    let fs = union(&lower, &upper);
    let table = Arc::new(std::sync::RwLock::new(vec![Some(UserInstance { fs, stats: Arc::default(), kernel: None, device: None, passthrough: false, changes: None, lower: None, upper: None })]));
    let driver = BackDriver::start_table(table, GEOMETRY, &[0], None, &common::channel_path()).expect("back driver");
    let shmid = common::channel(&driver);
    std::thread::spawn(move || {
        // Attached while free to run anywhere (so the client spins before sleeping), then
        // moved onto the worker's cpu.
        let mut c = Client::connect(&shmid, 0).expect("attach");
        let mut only0 = nix::sched::CpuSet::new();
        only0.set(0).expect("cpu 0");
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &only0).expect("pin to cpu 0");
        for i in 0..2000u32 {
            assert_eq!(stat(&mut c, "seed").map(|a| a.size), Ok(5), "stat {i}");
            let f = open(&mut c, "seed", libc::O_RDONLY, 0).expect("open");
            assert_eq!(rw(&mut c, Op::Read, f, 1, &[], 3), Ok(3));
            let mut b = [0u8; 3];
            c.data(&mut b);
            assert_eq!(&b, b"234");
            release(&mut c, f).expect("release");
        }
    })
    .join()
    .expect("client thread");
    // SAFETY: attaching the driver's live segment read-only; the kernel picks the address.
    let addr = unsafe { libc::shmat(driver.shmid(), std::ptr::null(), libc::SHM_RDONLY) };
    assert_ne!(addr as isize, -1, "shmat");
    let g = polytropon_ipc::segment::Segment::claimed_geometry(addr as *const u8).expect("geometry");
    let layout = polytropon_ipc::segment::Layout::new(g).expect("layout");
    // SAFETY: a page-aligned mapping of the whole segment, only read, detached below.
    let seg = unsafe { polytropon_ipc::segment::Segment::new(addr.cast(), layout) };
    assert_eq!(seg.doorbell(0).cpu.load(std::sync::atomic::Ordering::Relaxed), 1, "the worker pinned to cpu 0 says so");
    // SAFETY: `addr` came from the shmat above; `seg` is not used after this.
    unsafe { libc::shmdt(addr) };
}

/// A client process of another test's making: attaches, then waits for a byte on `hold`
/// and exits without giving its area back (as a killed process, or one exiting with
/// threads attached, does).
fn leaking_child(shmid: &std::ffi::CStr) -> (libc::pid_t, std::os::fd::OwnedFd) {
    let (r, w) = nix::unistd::pipe().expect("pipe");
    let (ready_r, ready_w) = nix::unistd::pipe().expect("pipe");
    // SAFETY: the child only makes system calls (connect, shmat, mmap, getpid), writes and
    // reads its pipes and _exits.
    match unsafe { libc::fork() } {
        0 => {
            drop(w);
            drop(ready_r);
            let ok = Client::connect(shmid, 0).map(std::mem::forget).is_ok();
            let _ = nix::unistd::write(&ready_w, &[u8::from(ok)]);
            let mut b = [0u8; 1];
            let _ = nix::unistd::read(&r, &mut b);
            // SAFETY: ends the child without running the parent's exit handlers.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        pid => {
            assert!(pid > 0, "fork failed");
            drop(r);
            drop(ready_w);
            let mut b = [0u8; 1];
            nix::unistd::read(&ready_r, &mut b).expect("the child reports");
            assert_eq!(b[0], 1, "the child could not connect");
            (pid, w)
        }
    }
}

#[test]
fn client_areas_of_dead_processes_are_taken_back_and_live_ones_never() {
    let s = Scratch::new("user-path-reclaim");
    let (lower, upper) = (s.mkdir("lower"), s.mkdir("upper"));
    std::fs::write(lower.join("f"), b"abc").expect("seed");
    let g = Geometry { queues: 1, slots: 8, clients: 2, buffer_size: 1 << 16 };
    let driver = BackDriver::start(union(&lower, &upper), g, &common::channel_path()).expect("back driver");
    let shmid = common::channel(&driver);
    let mut mine = Client::connect(&shmid, 0).expect("attach");
    let (child, hold) = leaking_child(&shmid);
    // The child holds the other area: there is none left while it lives.
    for _ in 0..3 {
        assert_eq!(Client::connect(&shmid, 0).err(), Some(libc::EBUSY), "a live process's area was taken");
    }
    nix::unistd::write(&hold, b"x").expect("release the child");
    let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child), None).expect("wait");
    assert_eq!(status, nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(child), 0), "the child attached");
    // The dead child's area is taken back (once the service sees its connection close), and
    // works.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut back = loop {
        match Client::connect(&shmid, 0) {
            Ok(c) => break c,
            Err(e) => {
                assert_eq!(e, libc::EBUSY);
                assert!(std::time::Instant::now() < deadline, "the dead child's area was never taken back");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    };
    assert_eq!(stat(&mut back, "f").expect("stat").size, 3);
    assert_eq!(stat(&mut mine, "f").expect("stat").size, 3);
    assert_eq!(Client::connect(&shmid, 0).err(), Some(libc::EBUSY), "both areas are live again");
}

#[test]
fn one_process_cannot_hold_more_than_its_share_of_open_files() {
    let s = Scratch::new("user-path-cap");
    let (lower, upper) = (s.mkdir("lower"), s.mkdir("upper"));
    std::fs::write(lower.join("f"), b"x").expect("seed");
    let driver = BackDriver::start(union(&lower, &upper), GEOMETRY, &common::channel_path()).expect("back driver");
    // A client that bypasses the library (which would hand files to the kernel long before)
    // opens without ever closing.
    let mut c = Client::connect(&common::channel(&driver), 0).expect("attach");
    // The documented cap (docs/RELIABILITY.md), not the code's constant.
    let cap = 4096;
    assert_eq!(polytropon::service::shm::MAX_OPEN_PER_PROCESS as usize, cap, "the cap differs from the documented 4,096");
    let mut held = Vec::with_capacity(cap);
    for _ in 0..cap {
        held.push(open(&mut c, "f", libc::O_RDONLY, 0).expect("open within the cap"));
    }
    assert_eq!(open(&mut c, "f", libc::O_RDONLY, 0), Err(Unserved::Errno(libc::EMFILE)));
    assert_eq!(driver.usage().open_files, cap as u64);
    // Another process is not affected.
    let other = std::thread::spawn({
        let shmid = common::channel(&driver);
        move || {
            // SAFETY: fork in a test thread; the child only makes raw calls and _exits.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                let ok = Client::connect(&shmid, 1).ok().and_then(|mut c| open(&mut c, "f", libc::O_RDONLY, 0).ok()).is_some();
                // SAFETY: leaving the forked child without running the parent's destructors.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) };
            }
            let mut status = 0;
            // SAFETY: waiting for the child just forked.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            status
        }
    });
    assert_eq!(other.join().expect("join"), 0, "another process could not open a file");
    // Closing one makes room again.
    release(&mut c, held.pop().expect("one")).expect("release");
    let f = open(&mut c, "f", libc::O_RDONLY, 0).expect("open after a close");
    release(&mut c, f).expect("release");
    for f in held {
        release(&mut c, f).expect("release");
    }
    // The forked child died holding its file: the janitor gives it back.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while driver.usage().open_files != 0 {
        assert!(std::time::Instant::now() < deadline, "files still held: {:?}", driver.usage());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn streamed_writes_land_whole_and_a_stalled_one_cannot_hang_the_service() {
    let s = Scratch::new("user-path-stream");
    let (lower, upper) = (s.mkdir("lower"), s.mkdir("upper"));
    let driver = BackDriver::start(union(&lower, &upper), GEOMETRY, &common::channel_path()).expect("back driver");
    let mut c = Client::connect(&common::channel(&driver), 0).expect("attach");
    let f = open(&mut c, "stalled", libc::O_CREAT | libc::O_RDWR, 0o644).expect("create");
    // Honest streamed writes, in pieces of several sizes, land whole.
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    for (i, piece) in [4096usize, 100_000, 128 << 10, 1 << 20].into_iter().enumerate() {
        let d = Descriptor { op: Op::Write as u32, inode: f.0, handle: f.1, offset: (i as u64) << 20, ..Descriptor::default() };
        let r = c.call_streamed(d, &data, piece).expect("streamed write");
        assert_eq!(r.value, 1 << 20, "piece {piece}");
        assert_eq!(r.aux[0], ((i as u64) + 1) << 20);
    }
    let back = std::fs::read(upper.join("stalled")).expect("read back");
    assert_eq!(back.len(), 4 << 20);
    for (i, chunk) in back.chunks(1 << 20).enumerate() {
        assert!(chunk == data.as_slice(), "streamed write {i} differs");
    }
    // A client that announces a streamed write and never copies anything in: the service
    // gives up on it (EIO) instead of waiting forever, and serves the next request (the
    // queue's writes are then not streamed for a while: `EAGAIN`, see tests/hostile_channel.rs).
    // (A client of its own: this one's area still says its last write was copied in whole.)
    let mut staller = Client::connect(&common::channel(&driver), 0).expect("attach");
    let d = Descriptor { op: Op::Write as u32, inode: f.0, handle: f.1, offset: 4 << 20, len: 1 << 20, arg: polytropon_ipc::WRITE_STREAMED, ..Descriptor::default() };
    assert_eq!(staller.call(d, &[]).map(|r| r.value), Err(Unserved::Errno(libc::EIO)));
    assert_eq!(std::fs::metadata(upper.join("stalled")).expect("stalled").len(), 4 << 20);
    release(&mut c, f).expect("release");
}
