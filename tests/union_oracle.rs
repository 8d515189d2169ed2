//! Oracle test: long random operation sequences applied to the union libservice and to kernel
//! overlayfs mounted on identical branch directories; after every step the errno and the whole
//! visible tree (types, modes, owners, sizes, link counts, hard-link identity, contents,
//! symlink targets, xattrs, listings) must agree.
//!
//! Deliberate differences, not compared: timestamps, directory `st_size` and `st_blocks`
//! (backing-filesystem details), and raw `st_ino` values (the union numbers its own inodes;
//! which paths share an inode number is compared).
//!
//! `POLYTROPON_ORACLE_SEQUENCES` and `POLYTROPON_ORACLE_STEPS` scale the run
//! (defaults: 50 x 220 = 11,000 operations); `POLYTROPON_ORACLE_SEED` replays one sequence.

mod common;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::{self, IoSlice, IoSliceMut};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::tree::{diff, kernel_tree, kind_name, NodeInfo, Tree};
use common::{errno_of, require_root, Overlay, Scratch, Walker};
use polytropon::backend::local::{LocalFs, LocalOptions};
use polytropon::libservice::{
    FileKind, FileSystem, Inode, SetAttr, RENAME_EXCHANGE, RENAME_NOREPLACE, ROOT_INODE,
};
use polytropon::service::shm::BackDriver;
use polytropon::union::UnionFs;
use polytropon_ipc::args::{MkdirArg, OpenArg};
use polytropon_ipc::client::Client;
use polytropon_ipc::{Descriptor, Op as WireOp, WireSetattr, Unserved, SET_GID, SET_MODE, SET_UID, STAT_NOFOLLOW};
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};

const NAMES: [&str; 4] = ["a", "b", "c", "d"];
const DANGLING: &str = "/nonexistent-polytropon/target";

#[derive(Clone, Debug)]
enum Op {
    Create(String, u32),
    Write(String, u64, usize, u8),
    Truncate(String, u64),
    Rename(String, String, u32),
    Link(String, String),
    Unlink(String),
    Mkdir(String, u32),
    Rmdir(String),
    Chmod(String, u32),
    Chown(String, u32, u32),
    SetXattr(String, String, Vec<u8>),
    RemoveXattr(String, String),
    Symlink(String),
    Mkfifo(String),
}

fn rand_path(rng: &mut fastrand::Rng) -> String {
    let depth = match rng.u32(0..10) {
        0..=3 => 1,
        4..=7 => 2,
        _ => 3,
    };
    (0..depth).map(|_| NAMES[rng.usize(0..NAMES.len())]).collect::<Vec<_>>().join("/")
}

fn rand_op(rng: &mut fastrand::Rng) -> Op {
    let p = rand_path(rng);
    match rng.u32(0..100) {
        0..=11 => Op::Create(p, [0o644, 0o600, 0o755][rng.usize(0..3)]),
        12..=25 => Op::Write(p, rng.u64(0..9000), rng.usize(1..5000), rng.u8(..)),
        26..=31 => Op::Truncate(p, [0, 1, 100, 4096, 70000][rng.usize(0..5)]),
        32..=45 => {
            let flags = [0, 0, 0, RENAME_NOREPLACE, RENAME_EXCHANGE][rng.usize(0..5)];
            // Two in three move a name where the lower branches' directories are: a top-level
            // one anywhere, or one a level down within its directory (renames of merged and
            // lower directories: absolute and relative redirects).
            let name = |rng: &mut fastrand::Rng| NAMES[rng.usize(0..NAMES.len())];
            match rng.u32(0..3) {
                0 => Op::Rename(name(rng).to_string(), rand_path(rng), flags),
                1 => {
                    let dir = name(rng);
                    Op::Rename(format!("{dir}/{}", name(rng)), format!("{dir}/{}", name(rng)), flags)
                }
                _ => Op::Rename(p, rand_path(rng), flags),
            }
        }
        46..=51 => Op::Link(p, rand_path(rng)),
        52..=61 => Op::Unlink(p),
        62..=71 => Op::Mkdir(p, [0o755, 0o700, 0o777][rng.usize(0..3)]),
        72..=79 => Op::Rmdir(p),
        80..=85 => Op::Chmod(p, [0o600, 0o644, 0o755, 0o4755, 0o1777][rng.usize(0..5)]),
        86..=88 => Op::Chown(p, rng.u32(0..3) * 1000, rng.u32(0..3) * 1000),
        89..=93 => {
            let name = ["user.k1", "user.k2"][rng.usize(0..2)];
            Op::SetXattr(p, name.into(), vec![b'v'; rng.usize(0..20)])
        }
        94..=95 => Op::RemoveXattr(p, ["user.k1", "user.k2"][rng.usize(0..2)].into()),
        96..=97 => Op::Symlink(p),
        _ => Op::Mkfifo(p),
    }
}

// ---------- kernel overlayfs side ----------

fn apply_kernel(root: &Path, op: &Op) -> i32 {
    let p = |s: &str| root.join(s);
    let r: io::Result<()> = (|| {
        match op {
            Op::Create(path, mode) => {
                rfs::open(p(path), OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY, Mode::from_bits_retain(*mode))?;
            }
            Op::Write(path, off, len, byte) => {
                let fd = rfs::open(p(path), OFlags::WRONLY | OFlags::NONBLOCK, Mode::empty())?;
                rustix::io::pwrite(&fd, &vec![*byte; *len], *off)?;
            }
            Op::Truncate(path, size) => {
                let fd = rfs::open(p(path), OFlags::WRONLY | OFlags::NONBLOCK, Mode::empty())?;
                rfs::ftruncate(&fd, *size)?;
            }
            Op::Rename(a, b, flags) => rfs::renameat_with(
                rfs::CWD,
                p(a),
                rfs::CWD,
                p(b),
                rfs::RenameFlags::from_bits_retain(*flags),
            )?,
            Op::Link(a, b) => rfs::linkat(rfs::CWD, p(a), rfs::CWD, p(b), AtFlags::empty())?,
            Op::Unlink(path) => rfs::unlink(p(path))?,
            Op::Mkdir(path, mode) => rfs::mkdir(p(path), Mode::from_bits_retain(*mode))?,
            Op::Rmdir(path) => rfs::rmdir(p(path))?,
            Op::Chmod(path, mode) => rfs::chmod(p(path), Mode::from_bits_retain(*mode))?,
            Op::Chown(path, uid, gid) => rfs::chownat(
                rfs::CWD,
                p(path),
                Some(rfs::Uid::from_raw(*uid)),
                Some(rfs::Gid::from_raw(*gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )?,
            Op::SetXattr(path, name, value) => {
                rfs::lsetxattr(p(path), name.as_str(), value, rfs::XattrFlags::empty())?
            }
            Op::RemoveXattr(path, name) => rfs::lremovexattr(p(path), name.as_str())?,
            Op::Symlink(path) => rfs::symlink(DANGLING, p(path))?,
            Op::Mkfifo(path) => {
                rfs::mknodat(rfs::CWD, p(path), rfs::FileType::Fifo, Mode::from_bits_retain(0o640), 0)?
            }
        }
        Ok(())
    })();
    errno_of(&r)
}

// ---------- union side ----------

fn enoent<T>() -> io::Result<T> {
    Err(io::Error::from_raw_os_error(libc::ENOENT))
}

/// A final component that the kernel would follow and open: our symlinks always dangle, and
/// the kernel (not the filesystem) opens fifos, `O_NONBLOCK` for writing without a reader
/// being `ENXIO`.
fn followed(e: &polytropon::libservice::Entry) -> io::Result<()> {
    match e.attr.kind() {
        FileKind::Symlink => enoent(),
        FileKind::Fifo => Err(io::Error::from_raw_os_error(libc::ENXIO)),
        _ => Ok(()),
    }
}

/// The process umask, which the kernel applies on the overlayfs side and a transport passes on.
/// Read from /proc, not by setting and restoring it: the umask is process-wide and the other
/// oracle test creates files on another thread meanwhile.
fn process_umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status.lines().find_map(|l| l.strip_prefix("Umask:")).expect("Umask line in /proc/self/status");
    u32::from_str_radix(line.trim(), 8).expect("octal umask")
}

fn apply_union(fs: &Arc<dyn FileSystem>, op: &Op) -> i32 {
    let umask = process_umask();
    let mut w = Walker::new(fs);
    let ctx = w.ctx;
    let name = |s: &str| OsString::from(s);
    let r: io::Result<()> = (|| {
        match op {
            Op::Create(path, mode) => {
                let (dir, last) = w.parent(path)?;
                let (e, h) = fs.create(&ctx, dir, &name(&last), *mode, umask, libc::O_WRONLY)?;
                fs.release(&ctx, e.inode, h)?;
                fs.forget(e.inode, 1);
            }
            Op::Write(path, off, len, byte) => {
                let e = w.node(path)?;
                followed(&e)?;
                if e.attr.kind() == FileKind::Directory {
                    return Err(io::Error::from_raw_os_error(libc::EISDIR));
                }
                let h = fs.open(&ctx, e.inode, libc::O_WRONLY)?;
                let data = vec![*byte; *len];
                let r = fs.write(&ctx, e.inode, h, &[IoSlice::new(&data)], *off);
                fs.release(&ctx, e.inode, h)?;
                r?;
            }
            Op::Truncate(path, size) => {
                let e = w.node(path)?;
                followed(&e)?;
                if e.attr.kind() == FileKind::Directory {
                    return Err(io::Error::from_raw_os_error(libc::EISDIR));
                }
                fs.setattr(&ctx, e.inode, None, &SetAttr { size: Some(*size), ..SetAttr::default() })?;
            }
            Op::Rename(a, b, flags) => {
                let (da, la) = w.parent(a)?;
                let (db, lb) = w.parent(b)?;
                fs.rename(&ctx, da, &name(&la), db, &name(&lb), *flags)?;
            }
            Op::Link(a, b) => {
                let e = w.node(a)?;
                let (db, lb) = w.parent(b)?;
                let ne = fs.link(&ctx, e.inode, db, &name(&lb))?;
                fs.forget(ne.inode, 1);
            }
            Op::Unlink(path) => {
                let (d, l) = w.parent(path)?;
                fs.unlink(&ctx, d, &name(&l))?;
            }
            Op::Mkdir(path, mode) => {
                let (d, l) = w.parent(path)?;
                let e = fs.mkdir(&ctx, d, &name(&l), *mode, umask)?;
                fs.forget(e.inode, 1);
            }
            Op::Rmdir(path) => {
                let (d, l) = w.parent(path)?;
                fs.rmdir(&ctx, d, &name(&l))?;
            }
            Op::Chmod(path, mode) => {
                let e = w.node(path)?;
                if e.attr.kind() == FileKind::Symlink {
                    return enoent();
                }
                fs.setattr(&ctx, e.inode, None, &SetAttr { mode: Some(*mode), ..SetAttr::default() })?;
            }
            Op::Chown(path, uid, gid) => {
                let e = w.node(path)?;
                let set = SetAttr { uid: Some(*uid), gid: Some(*gid), ..SetAttr::default() };
                fs.setattr(&ctx, e.inode, None, &set)?;
            }
            Op::SetXattr(path, xname, value) => {
                let e = w.node(path)?;
                fs.setxattr(&ctx, e.inode, OsStr::new(xname), value, 0)?;
            }
            Op::RemoveXattr(path, xname) => {
                let e = w.node(path)?;
                fs.removexattr(&ctx, e.inode, OsStr::new(xname))?;
            }
            Op::Symlink(path) => {
                let (d, l) = w.parent(path)?;
                let e = fs.symlink(&ctx, OsStr::new(DANGLING), d, &name(&l))?;
                fs.forget(e.inode, 1);
            }
            Op::Mkfifo(path) => {
                let (d, l) = w.parent(path)?;
                let e = fs.mknod(&ctx, d, &name(&l), libc::S_IFIFO | 0o640, 0, umask)?;
                fs.forget(e.inode, 1);
            }
        }
        Ok(())
    })();
    errno_of(&r)
}

// ---------- user-level side ----------

fn wire_call(c: &mut Client, op: WireOp, d: Descriptor, data: &[u8]) -> Result<[u64; 4], Unserved> {
    let d = Descriptor { op: op as u32, len: data.len() as u64, ..d };
    c.call(d, data).map(|r| r.aux)
}

fn path_call(c: &mut Client, op: WireOp, data: &[u8], offset: u64, arg: u64) -> Result<[u64; 4], Unserved> {
    wire_call(c, op, Descriptor { offset, arg, ..Descriptor::default() }, data)
}

fn pair(a: &str, b: &str) -> (Vec<u8>, u64) {
    ([a.as_bytes(), b.as_bytes()].concat(), a.len() as u64)
}

/// Opens `path` with `flags` (`mode` for a creation), runs `with` on the open file (inode,
/// handle), and releases it.
fn with_open(c: &mut Client, path: &str, flags: i32, mode: u32, with: impl FnOnce(&mut Client, u64, u64) -> Result<(), Unserved>) -> Result<(), Unserved> {
    let aux = path_call(c, WireOp::OpenPath, path.as_bytes(), 0, OpenArg { flags, mode }.encode())?;
    let r = with(c, aux[0], aux[1]);
    wire_call(c, WireOp::Release, Descriptor { inode: aux[0], handle: aux[1], ..Descriptor::default() }, &[])?;
    r
}

/// `op` on the user-level path as the preload library sends it: its errno (0: success), or
/// `None` when the service hands the call back (`Unserved::Kernel`) or the path has no such call.
fn apply_user(c: &mut Client, op: &Op) -> Option<i32> {
    let umask = process_umask();
    let setattr = |valid: u32, mode: u32, uid: u32, gid: u32| WireSetattr { valid, mode, uid, gid, ..WireSetattr::default() }.to_bytes();
    let r: Result<(), Unserved> = match op {
        Op::Create(path, mode) => with_open(c, path, libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY, mode & !umask, |_, _, _| Ok(())),
        Op::Write(path, off, len, byte) => with_open(c, path, libc::O_WRONLY | libc::O_NONBLOCK, 0, |c, inode, handle| {
            let data = vec![*byte; *len];
            wire_call(c, WireOp::Write, Descriptor { inode, handle, offset: *off, ..Descriptor::default() }, &data).map(|_| ())
        }),
        Op::Truncate(path, size) => with_open(c, path, libc::O_WRONLY | libc::O_NONBLOCK, 0, |c, inode, handle| {
            wire_call(c, WireOp::Truncate, Descriptor { inode, handle, arg: *size, ..Descriptor::default() }, &[]).map(|_| ())
        }),
        Op::Rename(a, b, flags) => {
            let (buf, off) = pair(a, b);
            path_call(c, WireOp::Rename, &buf, off, u64::from(*flags)).map(|_| ())
        }
        Op::Link(a, b) => {
            let (buf, off) = pair(a, b);
            path_call(c, WireOp::Link, &buf, off, 0).map(|_| ())
        }
        Op::Unlink(path) => path_call(c, WireOp::UnlinkPath, path.as_bytes(), 0, 0).map(|_| ()),
        Op::Mkdir(path, mode) => path_call(c, WireOp::Mkdir, path.as_bytes(), 0, MkdirArg { mode: *mode, umask }.encode()).map(|_| ()),
        Op::Rmdir(path) => path_call(c, WireOp::Rmdir, path.as_bytes(), 0, 0).map(|_| ()),
        Op::Chmod(path, mode) => {
            let buf = [path.as_bytes(), &setattr(SET_MODE, *mode, 0, 0)].concat();
            path_call(c, WireOp::SetattrPath, &buf, path.len() as u64, 0).map(|_| ())
        }
        Op::Chown(path, uid, gid) => {
            let buf = [path.as_bytes(), &setattr(SET_UID | SET_GID, 0, *uid, *gid)].concat();
            path_call(c, WireOp::SetattrPath, &buf, path.len() as u64, STAT_NOFOLLOW).map(|_| ())
        }
        Op::Symlink(path) => {
            let (buf, off) = pair(DANGLING, path);
            path_call(c, WireOp::Symlink, &buf, off, 0).map(|_| ())
        }
        // Extended attributes are set on open files by the library (paths go to the kernel),
        // and fifos are the kernel's.
        Op::SetXattr(..) | Op::RemoveXattr(..) | Op::Mkfifo(_) => return None,
    };
    match r {
        Ok(()) => Some(0),
        Err(Unserved::Kernel) => None,
        Err(Unserved::Errno(e)) => Some(e),
    }
}

// ---------- tree snapshots ----------

fn union_listing(fs: &Arc<dyn FileSystem>, dir: Inode) -> io::Result<Vec<OsString>> {
    let ctx = common::root_ctx();
    let h = fs.opendir(&ctx, dir, libc::O_RDONLY)?;
    let mut names = Vec::new();
    let mut off = 0;
    loop {
        // Small batches exercise resumable offsets.
        let batch = fs.readdir(&ctx, dir, h, off, 3)?;
        let Some(last) = batch.last() else { break };
        off = last.offset;
        names.extend(batch.into_iter().map(|e| e.name).filter(|n| n != "." && n != ".."));
    }
    fs.releasedir(&ctx, dir, h)?;
    names.sort();
    Ok(names)
}

fn union_tree(fs: &Arc<dyn FileSystem>) -> io::Result<Tree> {
    let ctx = common::root_ctx();
    let mut tree = Tree::new();
    let mut inos: BTreeMap<u64, String> = BTreeMap::new();
    let mut stack = vec![(String::new(), ROOT_INODE, false)];
    let mut held = Vec::new();
    while let Some((dir, ino, _)) = stack.pop() {
        for n in union_listing(fs, ino)? {
            let rel = if dir.is_empty() { n.to_string_lossy().into_owned() } else { format!("{dir}/{}", n.to_string_lossy()) };
            let e = fs.lookup(&ctx, ino, &n)?;
            held.push(e.inode);
            let attr = fs.getattr(&ctx, e.inode, None)?;
            assert_eq!(attr.ino, e.attr.ino, "getattr and lookup disagree on st_ino of {rel}");
            let kind = attr.kind();
            let same_as = inos.entry(attr.ino).or_insert_with(|| rel.clone()).clone();
            let mut xattrs = BTreeMap::new();
            for name in fs.listxattr(&ctx, e.inode)? {
                let v = fs.getxattr(&ctx, e.inode, &name)?;
                xattrs.insert(name.to_string_lossy().into_owned(), v);
            }
            let content = if kind == FileKind::Regular {
                let h = fs.open(&ctx, e.inode, libc::O_RDONLY)?;
                let mut data = vec![0u8; attr.size as usize + 1];
                let mut got = 0;
                loop {
                    let n = fs.read(&ctx, e.inode, h, &mut [IoSliceMut::new(&mut data[got..])], got as u64)?;
                    if n == 0 {
                        break;
                    }
                    got += n;
                }
                fs.release(&ctx, e.inode, h)?;
                data.truncate(got);
                Some(data)
            } else {
                None
            };
            let target = if kind == FileKind::Symlink { Some(fs.readlink(&ctx, e.inode)?) } else { None };
            tree.insert(
                rel.clone(),
                NodeInfo {
                    kind: kind_name(kind),
                    mode: attr.mode,
                    uid: attr.uid,
                    gid: attr.gid,
                    size: (kind == FileKind::Regular || kind == FileKind::Symlink).then_some(attr.size),
                    nlink: attr.nlink,
                    rdev: attr.rdev,
                    same_as,
                    content,
                    target,
                    xattrs,
                },
            );
            if kind == FileKind::Directory {
                stack.push((rel, e.inode, true));
            }
        }
    }
    for ino in held {
        fs.forget(ino, 1);
    }
    Ok(tree)
}

// ---------- branch trees ----------

/// Builds a lower branch deterministically from `seed`: files with contents and xattrs,
/// directories, dangling symlinks, and (in `with_markers`) overlayfs whiteouts and an opaque
/// directory that hide parts of the branches below.
fn build_lower(root: &Path, seed: u64, with_markers: bool) {
    let mut rng = fastrand::Rng::with_seed(seed);
    for top in NAMES {
        match rng.u32(0..6) {
            0 => {}
            1 => std::fs::write(root.join(top), vec![b'L'; rng.usize(0..6000)]).expect("write lower"),
            2 => std::os::unix::fs::symlink(DANGLING, root.join(top)).expect("symlink lower"),
            _ => {
                let d = root.join(top);
                std::fs::create_dir(&d).expect("mkdir lower");
                for sub in NAMES {
                    match rng.u32(0..5) {
                        0 | 1 => {}
                        2 => {
                            std::fs::create_dir(d.join(sub)).expect("mkdir lower sub");
                            if rng.bool() {
                                std::fs::write(d.join(sub).join("a"), b"deep").expect("write deep");
                            }
                        }
                        _ => {
                            let f = d.join(sub);
                            std::fs::write(&f, vec![sub.as_bytes()[0]; rng.usize(0..3000)]).expect("write lower sub");
                            if rng.bool() {
                                rfs::setxattr(&f, "user.k1", b"lower", rfs::XattrFlags::empty()).expect("xattr");
                            }
                        }
                    }
                }
                if with_markers && rng.u32(0..3) == 0 {
                    rfs::setxattr(&d, "trusted.overlay.opaque", b"y", rfs::XattrFlags::empty()).expect("opaque");
                }
            }
        }
    }
    if with_markers {
        // Whiteouts for some names that may exist below.
        for top in NAMES {
            if !root.join(top).exists() && std::fs::symlink_metadata(root.join(top)).is_err() && rng.u32(0..3) == 0 {
                rfs::mknodat(rfs::CWD, root.join(top), rfs::FileType::CharacterDevice, Mode::empty(), 0)
                    .expect("whiteout");
            }
        }
    }
    // A sparse file, to check holes survive copy-up.
    if rng.bool() && std::fs::symlink_metadata(root.join("d")).is_err() {
        let f = std::fs::File::create(root.join("d")).expect("create sparse");
        f.set_len(70000).expect("sparse");
        rustix::io::pwrite(&f, b"tail", 65536).expect("sparse write");
    }
}

struct Setup {
    // Field order matters: the FUSE mount and the user-level client and back driver go
    // before the scratch directory.
    fuse: Option<polytropon::service::fuse::Mounted>,
    user: Option<(std::sync::Mutex<Client>, BackDriver)>,
    overlay: Overlay,
    union: Arc<dyn FileSystem>,
    /// The union side's branches (lower1, lower2, upper), for remounts.
    branches: (PathBuf, PathBuf, PathBuf),
    /// The Ceph mode's pool cache, in the sequences that have one.
    cache: Option<Arc<polytropon::backend::cache::BlockCache>>,
    _scratch: Scratch,
}

/// Whether the union is driven directly or through a FUSE mount of it, and over which
/// backend.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    Direct,
    Fuse,
    /// Directly, over CephFS branches (copies of the same trees) of a running cluster.
    Ceph,
    /// Through the user-level path: a client sends each operation over shared memory to a
    /// back driver serving the union, as the preload library would (what the service hands
    /// back to the kernel is applied to the union directly, as the FUSE path would).
    User,
}

/// The CephFS client of the oracle's Ceph mode, for the life of the test.
static CEPH: std::sync::Mutex<Option<Arc<polytropon::backend::cephfs::CephClient>>> = std::sync::Mutex::new(None);

/// `tree` without the link counts of directories: CephFS counts a directory's links its own
/// way, and the union reports a branch's count for unmerged directories.
fn without_dir_links(mut tree: Tree) -> Tree {
    for n in tree.values_mut() {
        if n.kind == "dir" {
            n.nlink = 0;
        }
    }
    tree
}

fn setup(seed: u64, via: Via) -> Setup {
    let scratch = Scratch::new("oracle");
    let sides = [branches(&scratch, "kernel", seed), branches(&scratch, "union", seed)];
    let (kl1, kl2, kup) = sides[0].clone();
    let work = scratch.mkdir("kernel/work");
    let mnt = scratch.mkdir("kernel/mnt");
    let overlay = Overlay::mount(&[kl1, kl2], &kup, &work, &mnt);
    let (ul1, ul2, uup) = sides[1].clone();
    let branches = sides[1].clone();
    let mut pool_cache = None;
    let union: Arc<dyn FileSystem> = if via == Via::Ceph {
        use polytropon::backend::cephfs::CephBranch;
        let client = CEPH.lock().unwrap_or_else(|p| p.into_inner()).clone().expect("the Ceph mode's client");
        let top = CephBranch::new(client.clone(), Path::new("/"), false, None).expect("CephFS root");
        let ctx = common::root_ctx();
        let seq = top.mkdir(&ctx, ROOT_INODE, OsStr::new(&format!("seq{seed}")), 0o755, 0).expect("mkdir seq");
        for (name, local) in [("lower1", &ul1), ("lower2", &ul2), ("upper", &uup)] {
            let d = top.mkdir(&ctx, seq.inode, OsStr::new(name), 0o755, 0).expect("mkdir branch");
            polytropon::libservice::copy::copy_tree(&top, &ctx, d.inode, local).expect("copy a branch into CephFS");
            top.forget(d.inode, 1);
        }
        top.forget(seq.inode, 1);
        // Every other sequence through the pool's cache (`writethrough`, which holds CephFS
        // data while Ceph delegates it).
        let cache = seed.is_multiple_of(2).then(|| Arc::new(polytropon::backend::cache::BlockCache::new(8 << 20)));
        pool_cache = cache.clone();
        let branch = |n: &str, ro: bool| -> Arc<dyn FileSystem> {
            Arc::new(CephBranch::new(client.clone(), &Path::new("/").join(format!("seq{seed}")).join(n), ro, cache.clone()).expect("CephFS branch"))
        };
        Arc::new(UnionFs::new(Some(branch("upper", false)), vec![branch("lower1", true), branch("lower2", true)]).expect("build union"))
    } else {
        local_union(&ul1, &ul2, &uup)
    };
    let fuse = (via == Via::Fuse).then(|| {
        let mnt = scratch.mkdir("union/mnt");
        polytropon::service::fuse::spawn(union.clone(), &mnt, &polytropon::service::fuse::FuseConfig::default())
            .expect("FUSE mount of the union")
    });
    let user = (via == Via::User).then(|| {
        let geometry = polytropon_ipc::segment::Geometry { queues: 1, slots: 64, clients: 4, buffer_size: 1 << 16 };
        let driver = BackDriver::start(union.clone(), geometry, &common::channel_path()).expect("back driver of the union");
        let client = Client::connect(&common::channel(&driver), 0).expect("attach a client");
        (std::sync::Mutex::new(client), driver)
    });
    Setup { fuse, user, overlay, union, branches, cache: pool_cache, _scratch: scratch }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn union_side_tree(s: &Setup, via: Via) -> Tree {
    match &s.fuse {
        Some(m) => kernel_tree(m.mountpoint()),
        None if via == Via::Ceph => without_dir_links(union_tree(&s.union).expect("walk union")),
        None => union_tree(&s.union).expect("walk union"),
    }
}

fn kernel_side_tree(s: &Setup, via: Via) -> Tree {
    let t = kernel_tree(&s.overlay.mountpoint);
    if via == Via::Ceph {
        without_dir_links(t)
    } else {
        t
    }
}

/// How often (in steps) the direct oracle also reads the branches through a union built anew.
const REMOUNT_EVERY: u64 = 20;

/// Runs one sequence; returns how many of its operations succeeded (on both sides).
fn run_sequence(seed: u64, steps: u64, via: Via) -> u64 {
    let s = setup(seed, via);
    let before_k = kernel_side_tree(&s, via);
    let before_u = union_side_tree(&s, via);
    assert!(before_k == before_u, "seed {seed}: initial trees differ:\n{}", diff(&before_k, &before_u));
    let mut rng = fastrand::Rng::with_seed(seed.wrapping_mul(0x9e37_79b9));
    let mut log = Vec::new();
    let mut succeeded = 0;
    for step in 0..steps {
        let op = rand_op(&mut rng);
        let ek = apply_kernel(&s.overlay.mountpoint, &op);
        let eu = match (&s.fuse, &s.user) {
            (Some(m), _) => apply_kernel(m.mountpoint(), &op),
            (None, Some((client, _))) => match apply_user(&mut client.lock().unwrap_or_else(|p| p.into_inner()), &op) {
                Some(e) => e,
                None => apply_union(&s.union, &op),
            },
            (None, None) => apply_union(&s.union, &op),
        };
        log.push(format!("{step}: {op:?} -> kernel {ek} union {eu}"));
        let history = || log[log.len().saturating_sub(25)..].join("\n");
        assert_eq!(ek, eu, "seed {seed} step {step}: errno differs for {op:?}\nlast operations:\n{}", history());
        succeeded += u64::from(ek == 0);
        let tk = kernel_side_tree(&s, via);
        let tu = union_side_tree(&s, via);
        assert!(tk == tu, "seed {seed} step {step}: trees differ after {op:?}\n{}\nlast operations:\n{}", diff(&tk, &tu), history());
        if via == Via::Direct && step % REMOUNT_EVERY == REMOUNT_EVERY - 1 {
            // What is on disk reads the same in a union built anew (a remount): the redirects
            // written say what the live union keeps in memory.
            let (l1, l2, up) = &s.branches;
            let tr = union_tree(&local_union(l1, l2, up)).expect("walk the union built again");
            assert!(tk == tr, "seed {seed} step {step}: a remount reads differently\n{}\nlast operations:\n{}", diff(&tk, &tr), history());
        }
    }
    if let Some(c) = &s.cache {
        // The cached sequences' reads went through the pool's cache (Ceph delegated the files).
        let hits = c.stats.hits.load(std::sync::atomic::Ordering::Relaxed);
        assert!(hits > 0, "seed {seed}: the pool's cache served no CephFS read ({:?})", c.stats);
    }
    succeeded
}

/// Runs the oracle `via` a path: one sequence when `seed_var` is set, else `default` sequences
/// (or `seqs_var`) from `first_seed` on.
fn oracle(via: Via, seed_var: &str, seqs_var: &str, default: u64, first_seed: u64) -> u64 {
    require_root();
    let steps = env_or("POLYTROPON_ORACLE_STEPS", 220);
    if let Ok(seed) = std::env::var(seed_var) {
        let seed: u64 = seed.parse().unwrap_or_else(|_| panic!("{seed_var} must be a number"));
        return run_sequence(seed, steps, via);
    }
    let sequences = env_or(seqs_var, default);
    let succeeded: u64 = (0..sequences).map(|seq| run_sequence(first_seed + seq, steps, via)).sum();
    // The sequences changed the trees, not only failed alike: a generator that produced
    // nothing but errors would compare nothing.
    let total = sequences * steps;
    assert!(succeeded * 10 >= total, "only {succeeded} of {total} operations succeeded");
    assert!(succeeded < total, "no operation failed: the error paths were not compared");
    total
}

#[test]
fn union_matches_kernel_overlayfs() {
    let total = oracle(Via::Direct, "POLYTROPON_ORACLE_SEED", "POLYTROPON_ORACLE_SEQUENCES", 50, 1000);
    eprintln!("oracle: {total} operations, zero divergence");
}

/// The same oracle replayed through a FUSE mount of the union (the legacy path): the kernel's
/// FUSE driver, its caches and our adapter must keep overlayfs behaviour.
#[test]
fn fuse_mount_matches_kernel_overlayfs() {
    let total = oracle(Via::Fuse, "POLYTROPON_ORACLE_FUSE_SEED", "POLYTROPON_ORACLE_FUSE_SEQUENCES", 46, 5000);
    eprintln!("oracle through FUSE: {total} operations, zero divergence");
}

/// The same oracle replayed through the user-level path: the protocol's encoding of each
/// operation and the service's path walk must keep overlayfs behaviour too.
#[test]
fn user_level_path_matches_kernel_overlayfs() {
    let total = oracle(Via::User, "POLYTROPON_ORACLE_USER_SEED", "POLYTROPON_ORACLE_USER_SEQUENCES", 46, 7000);
    eprintln!("oracle through the user-level path: {total} operations, zero divergence");
}

/// The same oracle with every branch on CephFS (a real single-node cluster started for it).
#[test]
fn union_over_cephfs_matches_kernel_overlayfs() {
    require_root();
    let scratch = Scratch::new("oracle-ceph");
    let cluster = common::ceph::Cluster::start(&scratch.mkdir("cluster"), common::ceph::Cluster::port(1));
    let opts = polytropon::backend::cephfs::CephOptions { conf: cluster.conf.clone().into(), id: "admin".into(), fs: None, settings: Vec::new() };
    *CEPH.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(polytropon::backend::cephfs::CephClient::connect(&opts).expect("connect to CephFS")));
    let total = std::panic::catch_unwind(|| oracle(Via::Ceph, "POLYTROPON_ORACLE_CEPH_SEED", "POLYTROPON_ORACLE_CEPH_SEQUENCES", 4, 9000));
    // The client goes before the cluster.
    CEPH.lock().unwrap_or_else(|p| p.into_inner()).take();
    drop(cluster);
    let total = total.unwrap_or_else(|e| std::panic::resume_unwind(e));
    eprintln!("oracle over CephFS: {total} operations, zero divergence");
}

/// The branches of one side of an interoperability run: two lowers built from `seed`, an
/// empty upper.
fn branches(scratch: &Scratch, side: &str, seed: u64) -> (PathBuf, PathBuf, PathBuf) {
    let l1 = scratch.mkdir(&format!("{side}/lower1"));
    let l2 = scratch.mkdir(&format!("{side}/lower2"));
    let up = scratch.mkdir(&format!("{side}/upper"));
    build_lower(&l2, seed ^ 0x5eed, false);
    build_lower(&l1, seed, true);
    (l1, l2, up)
}

fn local_union(l1: &Path, l2: &Path, up: &Path) -> Arc<dyn FileSystem> {
    let open = |p: &Path, ro: bool| -> Arc<dyn FileSystem> {
        Arc::new(LocalFs::new(p, LocalOptions { read_only: ro, ..LocalOptions::default() }).expect("open branch"))
    };
    Arc::new(UnionFs::new(Some(open(up, false)), vec![open(l1, true), open(l2, true)]).expect("build union"))
}

/// Issue 28, interoperability: a tree built by random operations (directory renames among
/// them) through the union reads the same when kernel overlayfs (`redirect_dir=on`) mounts
/// its branches, and when a new union is built over them (a remount); and a tree built
/// through kernel overlayfs reads the same through the union.
#[test]
fn upper_branches_are_interchangeable_with_kernel_overlayfs() {
    require_root();
    let sequences = env_or("POLYTROPON_INTEROP_SEQUENCES", 12);
    let steps = env_or("POLYTROPON_ORACLE_STEPS", 220);
    let mut redirects = 0;
    for seed in 20_000..20_000 + sequences {
        let scratch = Scratch::new("interop");
        // Ours, then theirs.
        let (l1, l2, up) = branches(&scratch, "ours", seed);
        let union = local_union(&l1, &l2, &up);
        let mut rng = fastrand::Rng::with_seed(seed);
        for _ in 0..steps {
            apply_union(&union, &rand_op(&mut rng));
        }
        let ours = union_tree(&union).expect("walk union");
        drop(union);
        let again = union_tree(&local_union(&l1, &l2, &up)).expect("walk the union built again");
        assert!(again == ours, "seed {seed}: the union built again differs:\n{}", diff(&ours, &again));
        redirects += count_redirects(&up);
        {
            let overlay = Overlay::mount(&[l1.clone(), l2.clone()], &up, &scratch.mkdir("ours/work"), &scratch.mkdir("ours/mnt"));
            let theirs = kernel_tree(&overlay.mountpoint);
            assert!(theirs == ours, "seed {seed}: kernel overlayfs reads our upper differently:\n{}", diff(&ours, &theirs));
        }
        // Theirs, then ours.
        let (l1, l2, up) = branches(&scratch, "theirs", seed);
        let theirs = {
            let overlay = Overlay::mount(&[l1.clone(), l2.clone()], &up, &scratch.mkdir("theirs/work"), &scratch.mkdir("theirs/mnt"));
            let mut rng = fastrand::Rng::with_seed(seed);
            for _ in 0..steps {
                apply_kernel(&overlay.mountpoint, &rand_op(&mut rng));
            }
            kernel_tree(&overlay.mountpoint)
        };
        redirects += count_redirects(&up);
        let ours = union_tree(&local_union(&l1, &l2, &up)).expect("walk union");
        assert!(ours == theirs, "seed {seed}: the union reads kernel overlayfs's upper differently:\n{}", diff(&theirs, &ours));
    }
    // The runs renamed directories with lower parts: both sides wrote redirects.
    assert!(redirects >= sequences, "only {redirects} redirects in {sequences} sequences");
    eprintln!("interoperability: {sequences} sequences each way, {redirects} redirects read across");
}

/// Directories of `upper` carrying a redirect.
fn count_redirects(upper: &Path) -> u64 {
    let mut n = 0;
    let mut stack = vec![upper.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("list upper") {
            let path = entry.expect("entry").path();
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                n += u64::from(rfs::lgetxattr(&path, "trusted.overlay.redirect", &mut [0u8; 4096]).is_ok());
                stack.push(path);
            }
        }
    }
    n
}
