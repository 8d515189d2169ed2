//! Path escapes on the user-level path, where the service resolves whole paths a (possibly
//! hostile) client sends: `..`, absolute and relative symlinks planted in a branch (to a
//! directory outside, to `/`, to `/proc/self/root`), and renames racing lookups. Every attempt
//! fails or stays inside the branches; nothing outside is read, written, linked or changed.
//!
//! (On the FUSE path the kernel resolves names component by component in the caller's own view
//! and the service never sees `..` or follows a link; its lookups reach the same backend
//! calls, which open every component beneath the branch with RESOLVE_BENEATH.)

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use common::{union, Scratch};
use polytropon::service::shm::BackDriver;
use polytropon_ipc::args::OpenArg;
use polytropon_ipc::client::Client;
use polytropon_ipc::segment::Geometry;
use polytropon_ipc::{Descriptor, Op, Unserved, WireAttr};

const GEOMETRY: Geometry = Geometry { queues: 1, slots: 64, clients: 8, buffer_size: 1 << 16 };


fn call(c: &mut Client, op: Op, data: &[u8], offset: u64, arg: u64) -> Result<[u64; 4], Unserved> {
    let d = Descriptor { op: op as u32, len: data.len() as u64, offset, arg, ..Descriptor::default() };
    c.call(d, data).map(|r| r.aux)
}

fn two(a: &str, b: &str) -> (Vec<u8>, u64) {
    ([a.as_bytes(), b.as_bytes()].concat(), a.len() as u64)
}

/// What lies outside the branches: a directory with one file, and its state.
struct Outside {
    dir: std::path::PathBuf,
    ino: u64,
}

impl Outside {
    fn new(s: &Scratch) -> Outside {
        let dir = s.mkdir("outside");
        std::fs::write(dir.join("secret"), b"not yours").expect("secret");
        let ino = std::fs::metadata(dir.join("secret")).expect("meta").ino();
        Outside { dir, ino }
    }

    /// Panics unless the directory still holds exactly the untouched secret.
    fn untouched(&self) {
        let names: Vec<_> = std::fs::read_dir(&self.dir).expect("list").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("secret")], "something was made or removed outside");
        let m = std::fs::symlink_metadata(self.dir.join("secret")).expect("secret");
        assert_eq!((m.len(), m.mode() & 0o7777, m.nlink()), (9, 0o644, 1), "the secret's size, mode or links changed");
        assert_eq!(std::fs::read(self.dir.join("secret")).expect("read"), b"not yours");
    }
}

fn plant(upper: &Path, outside: &Path) {
    std::os::unix::fs::symlink(outside, upper.join("out")).expect("symlink");
    std::os::unix::fs::symlink("../outside", upper.join("rel")).expect("symlink");
    std::os::unix::fs::symlink("/", upper.join("root")).expect("symlink");
    std::os::unix::fs::symlink("/proc/self/root", upper.join("procroot")).expect("symlink");
    std::os::unix::fs::symlink("/proc/self/cwd", upper.join("proccwd")).expect("symlink");
}

#[test]
fn hostile_paths_touch_nothing_outside() {
    let s = Scratch::new("escapes");
    let (lower, upper) = (s.mkdir("lower"), s.mkdir("upper"));
    std::fs::create_dir(lower.join("etc")).expect("etc");
    let outside = Outside::new(&s);
    std::fs::set_permissions(outside.dir.join("secret"), std::os::unix::fs::PermissionsExt::from_mode(0o644)).expect("chmod");
    plant(&upper, &outside.dir);
    let driver = BackDriver::start(union(&lower, &upper), GEOMETRY, &common::channel_path()).expect("back driver");
    let mut c = Client::connect(&common::channel(&driver), 0).expect("attach");
    let abs = outside.dir.display().to_string();
    let prefixes = [
        "..".to_string(),
        "../outside".to_string(),
        "/../outside".to_string(),
        "etc/../../outside".to_string(),
        "etc/../..".to_string(),
        "out".to_string(),
        "rel".to_string(),
        "etc/../out".to_string(),
        format!("root{abs}"),
        format!("procroot{abs}"),
        "proccwd".to_string(),
        "proccwd/outside".to_string(),
        format!("root/proc/self/root{abs}"),
    ];
    let rdwr_creat = OpenArg { flags: libc::O_RDWR | libc::O_CREAT, mode: 0o666 }.encode();
    for p in &prefixes {
        let secret = format!("{p}/secret");
        // Opening the secret, for reading or writing, never succeeds.
        for flags in [libc::O_RDONLY, libc::O_RDWR, libc::O_RDWR | libc::O_TRUNC] {
            let r = call(&mut c, Op::OpenPath, secret.as_bytes(), 0, flags as u32 as u64);
            assert!(r.is_err(), "opened {secret} with flags {flags:#o}: {r:?}");
            // Refused as a filesystem refuses a bad path, not by a service in trouble.
            assert!(!matches!(r, Err(Unserved::Errno(libc::EIO))), "{secret}: EIO");
        }
        assert!(call(&mut c, Op::OpenPath, format!("{p}/new").as_bytes(), 0, rdwr_creat).is_err(), "created {p}/new");
        // A stat may succeed only on something inside.
        if call(&mut c, Op::StatPath, secret.as_bytes(), 0, 0).is_ok() {
            let mut b = [0u8; std::mem::size_of::<WireAttr>()];
            c.data(&mut b);
            assert_ne!(WireAttr::from_bytes(&b).ino, outside.ino, "stat of {secret} saw the outside file");
        }
        let _ = call(&mut c, Op::UnlinkPath, secret.as_bytes(), 0, 0);
        let _ = call(&mut c, Op::Mkdir, format!("{p}/newdir").as_bytes(), 0, 0o755);
        let _ = call(&mut c, Op::Rmdir, p.as_bytes(), 0, 0);
        let (b, off) = two(&secret, "stolen");
        let _ = call(&mut c, Op::Rename, &b, off, 0);
        let (b, off) = two("etc", &format!("{p}/moved"));
        let _ = call(&mut c, Op::Rename, &b, off, 0);
        let (b, off) = two(&secret, "hardlink");
        let _ = call(&mut c, Op::Link, &b, off, 0);
        let (b, off) = two("x", &format!("{p}/planted"));
        let _ = call(&mut c, Op::Symlink, &b, off, 0);
        let mut set = secret.clone().into_bytes();
        let wire = polytropon_ipc::WireSetattr { valid: polytropon_ipc::SET_MODE | polytropon_ipc::SET_SIZE, mode: 0o777, size: 0, ..Default::default() };
        set.extend_from_slice(&wire.to_bytes());
        let _ = call(&mut c, Op::SetattrPath, &set, secret.len() as u64, 0);
        outside.untouched();
    }
    // The service still serves, and its own files are where they belong.
    assert!(call(&mut c, Op::OpenPath, b"etc/fine", 0, rdwr_creat).is_ok());
    assert!(upper.join("etc/fine").exists());
    assert!(!upper.join("stolen").exists() && !upper.join("hardlink").exists(), "the secret came inside");
}

#[test]
fn renames_racing_lookups_never_escape() {
    let s = Scratch::new("escape-race");
    let (lower, upper) = (s.mkdir("lower"), s.mkdir("upper"));
    let outside = Outside::new(&s);
    std::fs::set_permissions(outside.dir.join("secret"), std::os::unix::fs::PermissionsExt::from_mode(0o644)).expect("chmod");
    std::fs::create_dir(upper.join("d")).expect("d");
    let driver = BackDriver::start(union(&lower, &upper), GEOMETRY, &common::channel_path()).expect("back driver");
    let shmid = common::channel(&driver);
    let abs = outside.dir.display().to_string();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // One client swaps `d` between a real directory and a symlink to the outside directory.
    let swapper = {
        let stop = stop.clone();
        let shmid = shmid.clone();
        std::thread::spawn(move || {
            let mut c = Client::connect(&shmid, 0).expect("attach");
            let mut swaps = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (b, off) = two("d", "d.real");
                let _ = call(&mut c, Op::Rename, &b, off, 0);
                let (b, off) = two(&abs, "d");
                let _ = call(&mut c, Op::Symlink, &b, off, 0);
                let _ = call(&mut c, Op::UnlinkPath, b"d", 0, 0);
                let (b, off) = two("d.real", "d");
                let _ = call(&mut c, Op::Rename, &b, off, 0);
                swaps += 1;
            }
            swaps
        })
    };
    // Another creates, writes and removes files and directories under `d` meanwhile.
    let mut c = Client::connect(&shmid, 1).expect("attach");
    let rdwr_creat = OpenArg { flags: libc::O_RDWR | libc::O_CREAT, mode: 0o644 }.encode();
    let mut created = 0;
    for i in 0..3000 {
        let name = format!("d/f{i}");
        if let Ok(aux) = call(&mut c, Op::OpenPath, name.as_bytes(), 0, rdwr_creat) {
            created += 1;
            let d = Descriptor { op: Op::Write as u32, inode: aux[0], handle: aux[1], len: 1, ..Descriptor::default() };
            let _ = c.call(d, b"x");
            let _ = c.call(Descriptor { op: Op::Release as u32, inode: aux[0], handle: aux[1], ..Descriptor::default() }, &[]);
        }
        let _ = call(&mut c, Op::Mkdir, format!("d/sub{i}").as_bytes(), 0, 0o755);
        let _ = call(&mut c, Op::UnlinkPath, b"d/secret", 0, 0);
        let (b, off) = two("d/secret", "taken");
        let _ = call(&mut c, Op::Rename, &b, off, 0);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().expect("swapper");
    println!("{swaps} swaps, {created} files created while racing");
    assert!(swaps > 10 && created > 0, "the race did not run: {swaps} swaps, {created} files");
    outside.untouched();
    assert!(!upper.join("taken").exists());
}
