//! Unit tests of the quota over a union of local branches: what counts, what is refused
//! whole, what removals give back, and that a walk finds what the changes counted.

use std::ffi::OsStr;
use std::fs;
use std::io::IoSlice;
use std::path::Path;

use super::*;
use crate::backend::local::{LocalFs, LocalOptions};
use crate::libservice::testing::ctx;
use crate::union::UnionFs;

struct Fixture {
    _dir: tempfile::TempDir,
    upper: std::path::PathBuf,
    lower: std::path::PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (upper, lower) = (dir.path().join("upper"), dir.path().join("lower"));
        fs::create_dir(&upper).expect("upper");
        fs::create_dir(&lower).expect("lower");
        Fixture { _dir: dir, upper, lower }
    }

    /// The union with its upper branch counted in `quota`.
    fn union(&self, quota: &Arc<Quota>) -> UnionFs {
        let open = |p: &Path, ro| -> Arc<dyn FileSystem> {
            Arc::new(LocalFs::new(p, LocalOptions { read_only: ro, ..LocalOptions::default() }).expect("branch"))
        };
        let upper = QuotaFs::new(open(&self.upper, false), quota.clone()).expect("count the upper branch");
        UnionFs::new(Some(Arc::new(upper)), vec![open(&self.lower, true)]).expect("union")
    }
}

fn code<T>(r: io::Result<T>) -> i32 {
    r.err().and_then(|e| e.raw_os_error()).unwrap_or(0)
}

fn create(u: &UnionFs, name: &str) -> io::Result<(Inode, Handle)> {
    u.create(&ctx(), ROOT_INODE, OsStr::new(name), 0o644, 0, libc::O_RDWR).map(|(e, h)| (e.inode, h))
}

fn write(u: &UnionFs, (ino, h): (Inode, Handle), data: &[u8], at: u64) -> io::Result<usize> {
    u.write(&ctx(), ino, h, &[IoSlice::new(data)], at)
}

#[test]
fn writes_creates_and_truncates_past_the_limit_are_refused_whole_and_removals_give_back() {
    let f = Fixture::new();
    let pool = Quota::new(Some(100_000), Some(4), libc::ENOSPC);
    let q = Quota::within(None, None, libc::EDQUOT, Some(pool.clone()));
    let u = f.union(&q);
    let a = create(&u, "a").expect("create");
    assert_eq!(write(&u, a, &[1; 60_000], 0).expect("below the limit"), 60_000);
    assert_eq!(code(write(&u, a, &[2; 50_000], 60_000)), libc::ENOSPC, "past the pool's bytes");
    assert_eq!(fs::metadata(f.upper.join("a")).expect("a").len(), 60_000, "nothing of a refused write");
    // Rewriting what is there costs nothing.
    assert_eq!(write(&u, a, &[3; 60_000], 0).expect("overwrite"), 60_000);
    let set = |size| SetAttr { size: Some(size), ..SetAttr::default() };
    assert_eq!(code(u.setattr(&ctx(), a.0, Some(a.1), &set(200_000))), libc::ENOSPC, "a truncate up past the limit");
    u.setattr(&ctx(), a.0, Some(a.1), &set(10_000)).expect("truncate down");
    assert_eq!(pool.usage().bytes, 10_000, "a truncate down gives back");
    assert_eq!(code(u.fallocate(&ctx(), a.0, a.1, libc::FALLOC_FL_KEEP_SIZE, 0, 200_000)), libc::ENOSPC, "preallocation past the limit");
    u.fallocate(&ctx(), a.0, a.1, libc::FALLOC_FL_KEEP_SIZE, 0, 50_000).expect("preallocation below");
    assert_eq!(pool.usage().bytes, 50_000, "preallocated space counts");
    // Inodes: a, then b, c, d; the fifth is refused.
    let mut hs = vec![a];
    for n in ["b", "c", "d"] {
        hs.push(create(&u, n).expect("below the inode limit"));
    }
    assert_eq!(code(create(&u, "e")), libc::ENOSPC, "past the inode limit");
    assert_eq!(code(u.mkdir(&ctx(), ROOT_INODE, OsStr::new("dir"), 0o755, 0)), libc::ENOSPC);
    assert_eq!(code(u.symlink(&ctx(), OsStr::new("t"), ROOT_INODE, OsStr::new("l"))), libc::ENOSPC);
    assert!(!f.upper.join("e").exists() && !f.upper.join("dir").exists());
    // A hard link adds no inode.
    u.link(&ctx(), hs[1].0, ROOT_INODE, OsStr::new("b2")).expect("link");
    assert_eq!(pool.usage().inodes, 4);
    u.unlink(&ctx(), ROOT_INODE, OsStr::new("b")).expect("unlink one name");
    assert_eq!(pool.usage().inodes, 4, "the file still has a name");
    for (ino, h) in hs {
        u.release(&ctx(), ino, h).expect("release");
    }
    u.unlink(&ctx(), ROOT_INODE, OsStr::new("a")).expect("unlink a");
    assert_eq!(pool.usage(), Usage { bytes: 0, inodes: 3, bytes_max: Some(100_000), inodes_max: Some(4) }, "unlink gives back");
    assert_eq!(q.usage().inodes, 3, "the instance counts what the pool counts of it");
    // Renaming over a file frees the replaced one.
    u.rename(&ctx(), ROOT_INODE, OsStr::new("c"), ROOT_INODE, OsStr::new("d"), 0).expect("rename over d");
    assert_eq!(pool.usage().inodes, 2);
    // Detached (an unmount): the pool no longer counts it; twice changes nothing.
    q.detach();
    q.detach();
    assert_eq!(pool.usage().inodes, 0);
    assert_eq!(q.usage().inodes, 2);
}

#[test]
fn a_copy_up_past_the_limit_leaves_nothing_and_the_lower_file_unchanged() {
    let f = Fixture::new();
    fs::write(f.lower.join("big"), vec![5u8; 300_000]).expect("lower file");
    let q = Quota::new(Some(200_000), None, libc::EDQUOT);
    let u = f.union(&q);
    let e = u.lookup(&ctx(), ROOT_INODE, OsStr::new("big")).expect("lookup");
    assert_eq!(code(u.open(&ctx(), e.inode, libc::O_WRONLY)), libc::EDQUOT, "copy-up past the limit");
    assert_eq!(fs::read_dir(&f.upper).expect("upper").count(), 0, "no copy, no scratch entry left");
    assert_eq!(q.usage(), Usage { bytes: 0, inodes: 0, bytes_max: Some(200_000), inodes_max: None });
    // With O_TRUNC nothing is copied: allowed.
    let h = u.open(&ctx(), e.inode, libc::O_WRONLY | libc::O_TRUNC).expect("copy-up of nothing");
    assert_eq!(q.usage().bytes, 0);
    u.release(&ctx(), e.inode, h).expect("release");
    assert_eq!(fs::read(f.lower.join("big")).expect("lower").len(), 300_000, "the lower file unchanged");
}

#[test]
fn a_walk_finds_what_the_changes_counted() {
    let f = Fixture::new();
    let q = Quota::new(None, None, libc::EDQUOT);
    {
        let u = f.union(&q);
        let a = create(&u, "a").expect("a");
        write(&u, a, &[1; 12_345], 0).expect("write");
        u.release(&ctx(), a.0, a.1).expect("release");
        let d = u.mkdir(&ctx(), ROOT_INODE, OsStr::new("d"), 0o755, 0).expect("mkdir");
        u.symlink(&ctx(), OsStr::new("../a"), d.inode, OsStr::new("s")).expect("symlink");
        let b = u.create(&ctx(), d.inode, OsStr::new("b"), 0o644, 0, libc::O_RDWR).expect("b");
        u.fallocate(&ctx(), b.0.inode, b.1, libc::FALLOC_FL_KEEP_SIZE, 0, 4 << 20).expect("preallocate");
        u.release(&ctx(), b.0.inode, b.1).expect("release");
        u.link(&ctx(), a.0, d.inode, OsStr::new("a2")).expect("link");
    }
    let counted = q.usage();
    assert_eq!(counted.inodes, 4, "a, d, d/s, d/b; the link counts none");
    assert_eq!(counted.bytes, 12_345 + 4 + (4 << 20));
    // Rebuilt by a walk; then a whiteout (a deleted lower file) takes an inode, as an
    // overlayfs upper's does.
    fs::write(f.lower.join("gone"), b"x").expect("lower");
    let again = Quota::new(None, None, libc::EDQUOT);
    let after = {
        let u = f.union(&again);
        assert_eq!(again.usage(), counted, "rebuilt by a walk");
        u.unlink(&ctx(), ROOT_INODE, OsStr::new("gone")).expect("whiteout");
        assert_eq!(again.usage().inodes, counted.inodes + 1, "a whiteout takes an inode");
        again.usage()
    };
    let fresh = Quota::new(None, None, libc::EDQUOT);
    let _u = f.union(&fresh);
    assert_eq!(fresh.usage(), after, "the walk counts the whiteout too");
}

#[test]
fn a_truncate_up_keeps_preallocated_space_and_a_removed_open_file_counts_until_closed() {
    let f = Fixture::new();
    let q = Quota::new(Some(10 << 20), Some(10), libc::EDQUOT);
    let u = f.union(&q);
    let a = create(&u, "a").expect("create");
    u.fallocate(&ctx(), a.0, a.1, libc::FALLOC_FL_KEEP_SIZE, 0, 7 << 20).expect("preallocate");
    let set = |size| SetAttr { size: Some(size), ..SetAttr::default() };
    u.setattr(&ctx(), a.0, Some(a.1), &set(1)).expect("truncate up past the end, below the preallocation");
    assert_eq!(q.usage().bytes, 7 << 20, "the preallocated blocks are still there");
    assert_eq!(code(u.fallocate(&ctx(), a.0, a.1, libc::FALLOC_FL_KEEP_SIZE, 0, 4 << 20).and_then(|()| create(&u, "b").map(|_| ()))), 0);
    // A file removed while open keeps its blocks, and its count, until its last handle goes.
    write(&u, a, &[1; 4096], 0).expect("write");
    u.unlink(&ctx(), ROOT_INODE, OsStr::new("a")).expect("unlink while open");
    assert_eq!(q.usage().bytes, 7 << 20, "still open: still counted");
    write(&u, a, &[1; 4096], 8 << 20).expect("a write after the unlink");
    assert_eq!(q.usage().bytes, (8 << 20) + 4096);
    u.release(&ctx(), a.0, a.1).expect("last close");
    assert_eq!(q.usage().bytes, 0, "given back at the last close, what was written after the unlink too");
    // A device node a tenant makes counts an inode.
    let before = q.usage().inodes;
    u.mknod(&ctx(), ROOT_INODE, OsStr::new("dev"), libc::S_IFCHR | 0o644, libc::makedev(1, 3), 0).expect("mknod c 1 3");
    assert_eq!(q.usage().inodes, before + 1);
}

/// A refused `fallocate` gives back what it reserved, and a preallocation is found by the walk
/// even when it is small (the walk counted allocation past a file's size only beyond 1 MiB: a
/// service restarted after each round of 1 MiB preallocations counted none of them).
#[test]
fn a_failed_fallocate_gives_back_and_the_walk_finds_small_preallocations() {
    let f = Fixture::new();
    let q = Quota::new(Some(10 << 20), Some(100), libc::EDQUOT);
    {
        let u = f.union(&q);
        let a = create(&u, "a").expect("create");
        assert_eq!(code(u.fallocate(&ctx(), a.0, a.1, 0x1000, 0, 9 << 20)), libc::EOPNOTSUPP, "an unknown mode");
        assert_eq!(q.usage().bytes, 0, "kept what a refused fallocate reserved");
        for i in 0..4 {
            let b = create(&u, &format!("p{i}")).expect("create");
            u.fallocate(&ctx(), b.0, b.1, libc::FALLOC_FL_KEEP_SIZE, 0, 512 << 10).expect("preallocate");
            u.release(&ctx(), b.0, b.1).expect("release");
        }
        u.release(&ctx(), a.0, a.1).expect("release");
    }
    assert_eq!(q.usage().bytes, 2 << 20);
    let again = Quota::new(None, None, libc::EDQUOT);
    let _u = f.union(&again);
    assert_eq!(again.usage().bytes, 2 << 20, "the walk after a restart");
}

/// A write that lands between a truncation and the settling of its count is counted (it was
/// given back with the truncation: the file held it, counted 0). Rounds of a truncation and a
/// write at once, the count checked against the file after each.
#[test]
fn a_write_racing_a_truncation_stays_counted() {
    let f = Fixture::new();
    let q = Quota::new(None, None, libc::EDQUOT);
    let u = Arc::new(f.union(&q));
    let a = create(&u, "a").expect("create");
    let rounds = 10_000;
    let (start, done) = (Arc::new(std::sync::Barrier::new(3)), Arc::new(std::sync::Barrier::new(3)));
    let worker = |truncates: bool| {
        let (u, start, done) = (u.clone(), start.clone(), done.clone());
        std::thread::spawn(move || {
            let set = SetAttr { size: Some(0), ..SetAttr::default() };
            for _ in 0..rounds {
                start.wait();
                if truncates {
                    u.setattr(&ctx(), a.0, Some(a.1), &set).expect("truncate");
                } else {
                    write(&u, a, &[7; 4096], 0).expect("write");
                }
                done.wait();
            }
        })
    };
    let (t, w) = (worker(true), worker(false));
    let mut short = 0;
    for _ in 0..rounds {
        start.wait();
        done.wait();
        let size = fs::metadata(f.upper.join("a")).expect("a").len();
        if q.usage().bytes < size {
            short += 1;
        }
    }
    t.join().expect("truncater");
    w.join().expect("writer");
    assert_eq!(short, 0, "rounds that left the file holding more than it counted, of {rounds}");
}
