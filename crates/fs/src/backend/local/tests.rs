//! Unit tests of the local backend, including hostile requests that try to leave the root.

use std::ffi::OsStr;
use std::fs;
use std::io::{IoSlice, IoSliceMut};
use std::os::unix::fs::symlink;
use std::path::Path;

use super::*;
use crate::libservice::{TimeUpdate, RENAME_EXCHANGE, RENAME_NOREPLACE};

use crate::libservice::testing::{code, ctx};

struct Fixture {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    /// A directory outside the backend root that no request may touch.
    outside: std::path::PathBuf,
    fs: LocalFs,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    let outside = dir.path().join("outside");
    fs::create_dir(&root).expect("mkdir root");
    fs::create_dir(&outside).expect("mkdir outside");
    fs::write(outside.join("secret"), b"secret").expect("write secret");
    let fs = LocalFs::new(&root, LocalOptions::default()).expect("open backend");
    Fixture { _dir: dir, root, outside, fs }
}

fn outside_untouched(f: &Fixture) {
    let names: Vec<_> = fs::read_dir(&f.outside).expect("readdir outside").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("secret")], "something was created outside the root");
    assert_eq!(fs::read(f.outside.join("secret")).expect("read secret"), b"secret");
}

#[test]
fn malformed_names_are_refused() {
    let f = fixture();
    for bad in ["..", ".", "", "a/b", "../outside", "/etc"] {
        assert_eq!(code(f.fs.lookup(&ctx(), ROOT_INODE, OsStr::new(bad))), libc::EINVAL, "lookup {bad:?}");
        assert_eq!(
            code(f.fs.create(&ctx(), ROOT_INODE, OsStr::new(bad), 0o644, 0, libc::O_RDWR)),
            libc::EINVAL,
            "create {bad:?}"
        );
        assert_eq!(code(f.fs.mkdir(&ctx(), ROOT_INODE, OsStr::new(bad), 0o755, 0)), libc::EINVAL);
    }
    let nul = {
        use std::os::unix::ffi::OsStringExt;
        std::ffi::OsString::from_vec(b"a\0b".to_vec())
    };
    assert_eq!(code(f.fs.lookup(&ctx(), ROOT_INODE, &nul)), libc::EINVAL);
    let long = "x".repeat(300);
    assert_eq!(code(f.fs.lookup(&ctx(), ROOT_INODE, OsStr::new(&long))), libc::ENAMETOOLONG);
    outside_untouched(&f);
}

#[test]
fn symlinks_out_of_the_root_are_never_followed() {
    let f = fixture();
    let targets = [
        ("abs", f.outside.display().to_string()),
        ("root", "/".to_string()),
        ("rel", "../outside".to_string()),
        ("deep", "../../../../../../..".to_string()),
        ("proc", "/proc/self/root".to_string()),
        ("procfd", "/proc/self/cwd".to_string()),
    ];
    for (name, target) in &targets {
        symlink(target, f.root.join(name)).expect("symlink");
        let e = f.fs.lookup(&ctx(), ROOT_INODE, OsStr::new(name)).expect("lookup symlink");
        assert_eq!(e.attr.kind(), FileKind::Symlink, "{name} must be seen as a symlink, not its target");
        assert_eq!(f.fs.readlink(&ctx(), e.inode).expect("readlink"), target.as_bytes());
        // Using the symlink as a directory, or opening it, goes nowhere.
        assert_eq!(code(f.fs.lookup(&ctx(), e.inode, OsStr::new("secret"))), libc::ENOTDIR, "{name}");
        assert_eq!(code(f.fs.open(&ctx(), e.inode, libc::O_RDONLY)), libc::ELOOP, "{name}");
        assert_eq!(code(f.fs.opendir(&ctx(), e.inode, libc::O_RDONLY)), libc::ENOTDIR, "{name}");
        assert!(f.fs.create(&ctx(), e.inode, OsStr::new("x"), 0o644, 0, libc::O_RDWR).is_err());
        assert!(f.fs.mkdir(&ctx(), e.inode, OsStr::new("x"), 0o755, 0).is_err());
        assert!(f.fs.symlink(&ctx(), OsStr::new("y"), e.inode, OsStr::new("x")).is_err());
        assert!(f.fs.setattr(&ctx(), e.inode, None, &SetAttr { size: Some(0), ..SetAttr::default() }).is_err());
        // Creating over the symlink's name does not write through it.
        assert_eq!(
            code(f.fs.create(&ctx(), ROOT_INODE, OsStr::new(name), 0o644, 0, libc::O_RDWR)),
            libc::EEXIST
        );
    }
    outside_untouched(&f);
}

#[test]
fn a_directory_swapped_for_a_symlink_mid_operation_stays_contained() {
    let f = fixture();
    fs::create_dir(f.root.join("d")).expect("mkdir d");
    let d = f.fs.lookup(&ctx(), ROOT_INODE, OsStr::new("d")).expect("lookup d");
    // Between two requests, something replaces d by a symlink to the outside.
    fs::rename(f.root.join("d"), f.root.join("moved")).expect("move d");
    symlink(&f.outside, f.root.join("d")).expect("swap in symlink");
    let (e, h) = f.fs.create(&ctx(), d.inode, OsStr::new("x"), 0o644, 0, libc::O_RDWR).expect("create in held dir");
    f.fs.release(&ctx(), e.inode, h).expect("release");
    f.fs.mkdir(&ctx(), d.inode, OsStr::new("sub"), 0o755, 0).expect("mkdir in held dir");
    assert!(f.root.join("moved/x").exists(), "the create must land in the directory actually held");
    assert!(f.root.join("moved/sub").is_dir());
    // A fresh lookup of the name now finds the symlink, which leads nowhere.
    let again = f.fs.lookup(&ctx(), ROOT_INODE, OsStr::new("d")).expect("lookup d again");
    assert_eq!(again.attr.kind(), FileKind::Symlink);
    assert_eq!(code(f.fs.lookup(&ctx(), again.inode, OsStr::new("secret"))), libc::ENOTDIR);
    assert_eq!(code(f.fs.unlink(&ctx(), again.inode, OsStr::new("secret"))), libc::ENOTDIR);
    assert_eq!(code(f.fs.rename(&ctx(), again.inode, OsStr::new("secret"), ROOT_INODE, OsStr::new("stolen"), 0)), libc::ENOTDIR);
    outside_untouched(&f);
}

#[test]
fn renames_and_links_cannot_name_outside_paths() {
    let f = fixture();
    fs::write(f.root.join("a"), b"a").expect("write a");
    for bad in ["../outside/a", "..", "/tmp/x"] {
        assert_eq!(code(f.fs.rename(&ctx(), ROOT_INODE, OsStr::new("a"), ROOT_INODE, OsStr::new(bad), 0)), libc::EINVAL);
        let a = f.fs.lookup(&ctx(), ROOT_INODE, OsStr::new("a")).expect("lookup a");
        assert_eq!(code(f.fs.link(&ctx(), a.inode, ROOT_INODE, OsStr::new(bad))), libc::EINVAL);
        assert_eq!(code(f.fs.unlink(&ctx(), ROOT_INODE, OsStr::new(bad))), libc::EINVAL);
    }
    // Unknown inode and handle numbers are errors, not crashes.
    assert_eq!(code(f.fs.getattr(&ctx(), 9999, None)), libc::EBADF);
    assert_eq!(code(f.fs.read(&ctx(), 1, 9999, &mut [IoSliceMut::new(&mut [0u8; 4])], 0)), libc::EBADF);
    outside_untouched(&f);
}

#[test]
fn file_data_attributes_and_xattrs() {
    let f = fixture();
    let (e, h) = f.fs.create(&ctx(), ROOT_INODE, OsStr::new("f"), 0o640, 0o022, libc::O_RDWR).expect("create");
    assert_eq!(e.attr.mode & 0o7777, 0o640);
    let n = f.fs.write(&ctx(), e.inode, h, &[IoSlice::new(b"hello "), IoSlice::new(b"world")], 0).expect("write");
    assert_eq!(n, 11);
    let mut a = [0u8; 5];
    let mut b = [0u8; 6];
    let n = f.fs.read(&ctx(), e.inode, h, &mut [IoSliceMut::new(&mut a), IoSliceMut::new(&mut b)], 0).expect("read");
    assert_eq!((n, &a, &b), (11, b"hello", b" world"));
    // Holes: SEEK_DATA/SEEK_HOLE.
    f.fs.write(&ctx(), e.inode, h, &[IoSlice::new(b"end")], 1 << 20).expect("write far");
    assert_eq!(f.fs.lseek(&ctx(), e.inode, h, 0, libc::SEEK_HOLE).expect("seek hole"), 4096);
    assert_eq!(f.fs.lseek(&ctx(), e.inode, h, 8192, libc::SEEK_DATA).expect("seek data"), 1 << 20);
    f.fs.fallocate(&ctx(), e.inode, h, 0, 0, 65536).expect("fallocate");
    f.fs.fsync(&ctx(), e.inode, h, true).expect("fdatasync");
    // setattr: mode, size, times with omit and now.
    let t = Timespec { sec: 1_000_000, nsec: 5 };
    let set = SetAttr { mode: Some(0o600), size: Some(3), mtime: Some(TimeUpdate::Set(t)), ..SetAttr::default() };
    let attr = f.fs.setattr(&ctx(), e.inode, Some(h), &set).expect("setattr");
    assert_eq!((attr.mode & 0o7777, attr.size, attr.mtime), (0o600, 3, t));
    let attr = f.fs.setattr(&ctx(), e.inode, None, &SetAttr { atime: Some(TimeUpdate::Now), ..SetAttr::default() }).expect("atime now");
    assert_eq!(attr.mtime, t, "an omitted mtime must not change");
    assert!(attr.atime.sec > t.sec);
    // xattrs.
    f.fs.setxattr(&ctx(), e.inode, OsStr::new("user.k"), b"v", 0).expect("setxattr");
    assert_eq!(code(f.fs.setxattr(&ctx(), e.inode, OsStr::new("user.k"), b"w", libc::XATTR_CREATE)), libc::EEXIST);
    assert_eq!(f.fs.getxattr(&ctx(), e.inode, OsStr::new("user.k")).expect("getxattr"), b"v");
    assert_eq!(f.fs.listxattr(&ctx(), e.inode).expect("listxattr"), vec![std::ffi::OsString::from("user.k")]);
    f.fs.removexattr(&ctx(), e.inode, OsStr::new("user.k")).expect("removexattr");
    assert_eq!(code(f.fs.getxattr(&ctx(), e.inode, OsStr::new("user.k"))), libc::ENODATA);
    f.fs.release(&ctx(), e.inode, h).expect("release");
    assert!(f.fs.statfs(&ctx(), ROOT_INODE).expect("statfs").blocks > 0);
}

#[test]
fn hard_links_share_an_inode_and_renames_honour_flags() {
    let f = fixture();
    let (e, h) = f.fs.create(&ctx(), ROOT_INODE, OsStr::new("a"), 0o644, 0, libc::O_RDWR).expect("create");
    f.fs.release(&ctx(), e.inode, h).expect("release");
    let l = f.fs.link(&ctx(), e.inode, ROOT_INODE, OsStr::new("b")).expect("link");
    assert_eq!(l.inode, e.inode, "two names of one file share a node id");
    assert_eq!(l.attr.nlink, 2);
    let c = f.fs.symlink(&ctx(), OsStr::new("a"), ROOT_INODE, OsStr::new("c")).expect("symlink");
    assert_eq!(code(f.fs.rename(&ctx(), ROOT_INODE, OsStr::new("c"), ROOT_INODE, OsStr::new("a"), RENAME_NOREPLACE)), libc::EEXIST);
    f.fs.rename(&ctx(), ROOT_INODE, OsStr::new("c"), ROOT_INODE, OsStr::new("a"), RENAME_EXCHANGE).expect("exchange");
    assert_eq!(f.fs.lookup(&ctx(), ROOT_INODE, OsStr::new("a")).expect("lookup").inode, c.inode);
    assert_eq!(code(f.fs.rename(&ctx(), ROOT_INODE, OsStr::new("a"), ROOT_INODE, OsStr::new("x"), 0x80)), libc::EINVAL);
}

#[test]
fn special_files_and_listing_offsets() {
    let f = fixture();
    f.fs.mknod(&ctx(), ROOT_INODE, OsStr::new("fifo"), libc::S_IFIFO | 0o644, 0, 0).expect("mkfifo");
    f.fs.mknod(&ctx(), ROOT_INODE, OsStr::new("sock"), libc::S_IFSOCK | 0o644, 0, 0).expect("mksock");
    for i in 0..20 {
        fs::write(f.root.join(format!("f{i:02}")), b"").expect("write");
    }
    let h = f.fs.opendir(&ctx(), ROOT_INODE, libc::O_RDONLY).expect("opendir");
    let all = f.fs.readdir(&ctx(), ROOT_INODE, h, 0, usize::MAX).expect("readdir");
    assert_eq!(all.len(), 24, "20 files, fifo, socket, . and ..");
    // Resuming from any cookie continues exactly after that entry (seekdir/telldir).
    for (i, e) in all.iter().enumerate() {
        let rest = f.fs.readdir(&ctx(), ROOT_INODE, h, e.offset, usize::MAX).expect("readdir resume");
        assert_eq!(rest, all[i + 1..].to_vec());
    }
    let fifo = all.iter().find(|e| e.name == "fifo").expect("fifo listed");
    assert_eq!(fifo.kind, FileKind::Fifo);
    f.fs.releasedir(&ctx(), ROOT_INODE, h).expect("releasedir");
}

#[test]
fn a_read_only_backend_refuses_changes() {
    let f = fixture();
    fs::write(f.root.join("a"), b"a").expect("write");
    let ro = LocalFs::new(&f.root, LocalOptions { read_only: true, ..LocalOptions::default() }).expect("open ro");
    let a = ro.lookup(&ctx(), ROOT_INODE, OsStr::new("a")).expect("lookup");
    assert_eq!(code(ro.open(&ctx(), a.inode, libc::O_WRONLY)), libc::EROFS);
    assert_eq!(code(ro.unlink(&ctx(), ROOT_INODE, OsStr::new("a"))), libc::EROFS);
    assert_eq!(code(ro.mkdir(&ctx(), ROOT_INODE, OsStr::new("d"), 0o755, 0)), libc::EROFS);
    assert_eq!(code(ro.setattr(&ctx(), a.inode, None, &SetAttr { mode: Some(0o600), ..SetAttr::default() })), libc::EROFS);
    let h = ro.open(&ctx(), a.inode, libc::O_RDONLY).expect("open ro");
    let mut buf = [0u8; 1];
    assert_eq!(ro.read(&ctx(), a.inode, h, &mut [IoSliceMut::new(&mut buf)], 0).expect("read"), 1);
    assert!(Path::new(&f.root.join("a")).exists());
}

/// A read-only backend (an image layer other pools share) holds its files on a read-only
/// mount of itself where one can be made: the kernel refuses a write through its descriptors
/// whoever asks (root here), and reading moves no access time another pool would see.
#[test]
fn a_read_only_backends_descriptors_cannot_write_and_reads_move_no_access_time() {
    use rustix::fs::{AtFlags, Timespec, Timestamps};
    let f = fixture();
    let path = f.root.join("layer-file");
    fs::write(&path, b"layer bytes").expect("write");
    // Long ago: a read through a writable mount would move it (relatime).
    let old = Timespec { tv_sec: 1_000_000, tv_nsec: 0 };
    rustix::fs::utimensat(rustix::fs::CWD, &path, &Timestamps { last_access: old, last_modification: old }, AtFlags::empty()).expect("utimensat");
    let ro = LocalFs::new(&f.root, LocalOptions { read_only: true, ..LocalOptions::default() }).expect("open ro");
    let a = ro.lookup(&ctx(), ROOT_INODE, OsStr::new("layer-file")).expect("lookup");
    let h = ro.open(&ctx(), a.inode, libc::O_RDONLY).expect("open");
    assert_eq!(read_at(&ro, a.inode, h, 0, 64), b"layer bytes");
    let backing = ro.backing_file(a.inode, h).expect("backing file");
    if !rustix::process::geteuid().is_root() {
        return; // no mount of its own to make: the code alone refuses changes
    }
    let reopened = fs::OpenOptions::new().write(true).open(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&*backing.fd)));
    assert_eq!(reopened.map(|_| ()).map_err(|e| e.raw_os_error()), Err(Some(libc::EROFS)), "root reopened a layer file for writing");
    assert_eq!(std::os::unix::fs::MetadataExt::atime(&fs::metadata(&path).expect("stat")), 1_000_000, "a read moved the layer file's access time");
}

#[test]
fn forget_drops_the_inode_after_the_last_reference() {
    let f = fixture();
    fs::write(f.root.join("a"), b"a").expect("write");
    let a1 = f.fs.lookup(&ctx(), ROOT_INODE, OsStr::new("a")).expect("lookup");
    let a2 = f.fs.lookup(&ctx(), ROOT_INODE, OsStr::new("a")).expect("lookup");
    assert_eq!(a1.inode, a2.inode);
    f.fs.forget(a1.inode, 1);
    assert!(f.fs.getattr(&ctx(), a1.inode, None).is_ok(), "one reference remains");
    f.fs.forget(a1.inode, 1);
    assert_eq!(code(f.fs.getattr(&ctx(), a1.inode, None)), libc::EBADF);
}

/// `len` bytes of `inode` at `off` through `h`, as many as the read returned.
fn read_at(fs: &LocalFs, inode: Inode, h: Handle, off: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    let n = fs.read(&ctx(), inode, h, &mut [IoSliceMut::new(&mut b)], off).expect("read");
    b.truncate(n);
    b
}

#[test]
fn the_block_cache_serves_reads_sees_our_writes_at_once_and_others_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Arc::new(crate::backend::cache::BlockCache::new(8 << 20));
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(dir.path().join("f"), &data).expect("seed");
    let fs = LocalFs::new(dir.path(), LocalOptions { read_only: false, cache: Some(cache.clone()), writeback: false, ..LocalOptions::default() }).expect("backend");
    let c = ctx();
    let e = fs.lookup(&c, ROOT_INODE, OsStr::new("f")).expect("lookup");
    let read = |h: Handle, off: u64, len: usize| read_at(&fs, e.inode, h, off, len);
    let h = fs.open(&c, e.inode, libc::O_RDWR).expect("open");
    // Reads across blocks, twice: the second time from the cache.
    assert!(read(h, 60_000, 80_000) == data[60_000..140_000]);
    let misses = cache.stats.misses.load(Ordering::Relaxed);
    assert!(read(h, 60_000, 80_000) == data[60_000..140_000]);
    assert_eq!(cache.stats.misses.load(Ordering::Relaxed), misses, "the second read missed");
    assert!(cache.stats.hits.load(Ordering::Relaxed) >= 2);
    assert!(read(h, 190_000, 50_000) == data[190_000..], "a read past the end stops at it");
    // Our write is visible at once, also where it grows the file past a short last block.
    assert_eq!(fs.write(&c, e.inode, h, &[IoSlice::new(b"XYZ")], 100_000).expect("write"), 3);
    assert_eq!(read(h, 99_999, 5), [data[99_999], b'X', b'Y', b'Z', data[100_003]]);
    assert_eq!(fs.write(&c, e.inode, h, &[IoSlice::new(b"end")], 300_000).expect("write"), 3);
    let tail = read(h, 199_998, 100_005);
    assert_eq!(tail.len(), 100_005);
    assert_eq!(&tail[..2], &data[199_998..]);
    assert!(tail[2..100_002].iter().all(|b| *b == 0), "the hole reads as zeros");
    assert_eq!(&tail[100_002..], b"end");
    fs.release(&c, e.inode, h).expect("release");
    // Another writer changes the file behind the service: seen at the next open, not before.
    let h = fs.open(&c, e.inode, libc::O_RDONLY).expect("open");
    assert_eq!(read(h, 0, 4), data[..4]);
    std::thread::sleep(std::time::Duration::from_millis(10));
    let other = fs::OpenOptions::new().write(true).open(dir.path().join("f")).expect("open");
    std::os::unix::fs::FileExt::write_at(&other, b"NEW!", 0).expect("write");
    drop(other);
    assert_eq!(read(h, 0, 4), data[..4], "close-to-open: the open file keeps what it saw");
    fs.release(&c, e.inode, h).expect("release");
    let h = fs.open(&c, e.inode, libc::O_RDONLY).expect("reopen");
    assert_eq!(read(h, 0, 4), b"NEW!");
    fs.release(&c, e.inode, h).expect("release");
    // A truncation drops what is cached.
    let set = SetAttr { size: Some(10), ..SetAttr::default() };
    fs.setattr(&c, e.inode, None, &set).expect("truncate");
    let h = fs.open(&c, e.inode, libc::O_RDONLY).expect("open");
    assert_eq!(read(h, 0, 100).len(), 10);
    fs.release(&c, e.inode, h).expect("release");
    assert!(cache.stats.bytes.load(Ordering::Relaxed) <= cache.limit());
}

#[test]
fn write_back_keeps_writes_in_the_cache_until_fsync_close_or_the_dirty_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Arc::new(crate::backend::cache::BlockCache::new(8 << 20));
    let long = std::time::Duration::from_secs(3600);
    // The flusher runs, but only a close wakes it within this test.
    crate::backend::local::enable_writeback(&cache, crate::backend::cache::Writeback { dirty_limit: 1 << 20, expire: long, interval: long }).expect("flusher");
    let mut model: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let path = dir.path().join("f");
    fs::write(&path, &model).expect("seed");
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(946_684_800);
    fs::File::options().write(true).open(&path).and_then(|f| f.set_modified(old)).expect("age the file");
    let opts = LocalOptions { read_only: false, cache: Some(cache.clone()), writeback: true, close_to_open: true, ..LocalOptions::default() };
    let fs = LocalFs::new(dir.path(), opts).expect("backend");
    let c = ctx();
    let e = fs.lookup(&c, ROOT_INODE, OsStr::new("f")).expect("lookup");
    let read = |h: Handle, off: u64, len: usize| read_at(&fs, e.inode, h, off, len);
    let h = fs.open(&c, e.inode, libc::O_RDWR).expect("open");
    let write = |h: Handle, model: &mut Vec<u8>, at: usize, data: &[u8]| {
        assert_eq!(fs.write(&c, e.inode, h, &[IoSlice::new(data)], at as u64).expect("write"), data.len());
        if model.len() < at + data.len() {
            model.resize(at + data.len(), 0);
        }
        model[at..at + data.len()].copy_from_slice(data);
    };
    // Small writes inside a block, across two, and past the end with a hole.
    write(h, &mut model, 10, b"hello");
    write(h, &mut model, 65_530, b"across-blocks");
    write(h, &mut model, 300_000, b"far");
    assert_eq!(fs::read(&path).expect("backing").len(), 100_000, "nothing written back yet");
    assert!(cache.stats.dirty.load(Ordering::Relaxed) > 0);
    let attr = fs.getattr(&c, e.inode, Some(h)).expect("getattr");
    assert_eq!(attr.size, 300_003, "getattr counts dirty data");
    assert!(attr.mtime.sec > 946_684_800 + 86_400, "getattr shows the write's time, not the backing file's");
    assert!(read(h, 0, 400_000) == model, "reads see the writes at once");
    // fsync writes back (direct I/O where the file system allows it).
    fs.fsync(&c, e.inode, h, true).expect("fsync");
    assert_eq!(cache.stats.dirty.load(Ordering::Relaxed), 0);
    assert!(fs::read(&path).expect("backing") == model, "the backing file after fsync");
    assert!(read(h, 0, 400_000) == model, "the cache after write-back");
    // The dirty limit: a writer past it writes back first.
    let big: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 241) as u8).collect();
    for (i, chunk) in big.chunks(100_000).enumerate() {
        write(h, &mut model, 50_000 + i * 100_000, chunk);
        assert!(cache.stats.dirty.load(Ordering::Relaxed) <= (1 << 20) + 2 * BLOCK_BYTES, "dirty data passed its limit");
        assert!(cache.stats.bytes.load(Ordering::Relaxed) + cache.stats.dirty.load(Ordering::Relaxed) <= cache.limit());
    }
    assert!(cache.stats.writebacks.load(Ordering::Relaxed) > 16);
    // A truncation below dirty data, then a write past the new end.
    write(h, &mut model, 1_000_000, b"dirty");
    fs.setattr(&c, e.inode, Some(h), &SetAttr { size: Some(900_000), ..SetAttr::default() }).expect("truncate");
    model.truncate(900_000);
    write(h, &mut model, 950_000, b"again");
    assert!(read(h, 0, 4 << 20) == model);
    // A read-only handle takes no write, though the cache would hold it.
    let ro = fs.open(&c, e.inode, libc::O_RDONLY).expect("open read-only");
    assert_eq!(code(fs.write(&c, e.inode, ro, &[IoSlice::new(b"no")], 0)), libc::EBADF);
    fs.release(&c, e.inode, ro).expect("release");
    // Close has the flusher write back at once.
    fs.release(&c, e.inode, h).expect("release");
    assert!(wait_clean(&cache), "not written back after the close");
    assert!(fs::read(&path).expect("backing") == model, "the backing file after close");
    assert_eq!(cache.stats.writeback_errors.load(Ordering::Relaxed), 0);
    // Another writer changes the backing file: an open file keeps what it read, the next open
    // sees the change (close-to-open), and our dirty data is not lost to the check.
    let h = fs.open(&c, e.inode, libc::O_RDWR).expect("open");
    assert_eq!(read(h, 0, 8), model[..8]);
    write(h, &mut model, 2 << 20, b"ours");
    std::thread::sleep(std::time::Duration::from_millis(10));
    let other = fs::OpenOptions::new().write(true).open(&path).expect("open");
    std::os::unix::fs::FileExt::write_at(&other, b"THEIRS!!", 0).expect("write");
    drop(other);
    assert_eq!(read(h, 0, 8), model[..8], "the open file keeps what it read");
    let h2 = fs.open(&c, e.inode, libc::O_RDONLY).expect("reopen");
    assert_eq!(read(h2, 0, 8), b"THEIRS!!", "the next open sees the other writer");
    assert_eq!(read(h2, 2 << 20, 4), b"ours", "and our own write, not yet written back");
    fs.release(&c, e.inode, h2).expect("release");
    fs.release(&c, e.inode, h).expect("release");
}

const BLOCK_BYTES: u64 = crate::backend::cache::BLOCK as u64;

/// Without `close_to_open` (the local branch is the pool's): a close writes nothing back; a
/// file removed before its expiry never reaches the disk, one that lives is written back by
/// the flusher once its data has been dirty for `expire`.
#[test]
fn without_close_to_open_a_closed_file_waits_for_its_expiry_and_a_removed_one_is_never_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Arc::new(crate::backend::cache::BlockCache::new(8 << 20));
    let expire = std::time::Duration::from_millis(1500);
    let w = crate::backend::cache::Writeback { dirty_limit: 4 << 20, expire, interval: std::time::Duration::from_millis(50) };
    crate::backend::local::enable_writeback(&cache, w).expect("flusher");
    let fs = LocalFs::new(dir.path(), LocalOptions { cache: Some(cache.clone()), writeback: true, ..LocalOptions::default() }).expect("backend");
    let c = ctx();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let writebacks = || cache.stats.writebacks.load(Ordering::Relaxed);
    let make = |name: &str| {
        let (e, h) = fs.create(&c, ROOT_INODE, OsStr::new(name), 0o644, 0o022, libc::O_RDWR).expect("create");
        assert_eq!(fs.write(&c, e.inode, h, &[IoSlice::new(&data)], 0).expect("write"), data.len());
        fs.release(&c, e.inode, h).expect("release");
        e
    };
    let written = std::time::Instant::now();
    let kept = make("kept");
    make("removed");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(writebacks(), 0, "a close wrote back");
    assert_eq!(fs::metadata(dir.path().join("kept")).expect("kept").len(), 0, "the backing file got data at close");
    let h = fs.open(&c, kept.inode, libc::O_RDONLY).expect("open");
    assert!(read_at(&fs, kept.inode, h, 0, data.len()) == data, "the data is read from the cache meanwhile");
    fs.release(&c, kept.inode, h).expect("release");
    fs.unlink(&c, ROOT_INODE, OsStr::new("removed")).expect("unlink");
    assert!(wait_clean(&cache), "the kept file was never written back");
    assert!(written.elapsed() >= expire, "written back before its expiry");
    assert!(fs::read(dir.path().join("kept")).expect("kept") == data, "the kept file after its expiry");
    let blocks = data.len().div_ceil(crate::backend::cache::BLOCK) as u64;
    assert_eq!(writebacks(), blocks, "only the kept file's blocks were written back");
    assert_eq!(cache.stats.writeback_errors.load(Ordering::Relaxed), 0);
}

#[test]
fn names_and_attributes_are_reused_within_their_ttl_and_our_own_changes_show_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ttl = std::time::Duration::from_secs(60);
    fs::write(dir.path().join("a"), b"aaaa").expect("seed");
    let fs = LocalFs::new(dir.path(), LocalOptions { entry_ttl: ttl, attr_ttl: ttl, ..LocalOptions::default() }).expect("backend");
    let c = ctx();
    let a = fs.lookup(&c, ROOT_INODE, OsStr::new("a")).expect("lookup");
    // Behind the service's back: not seen within the TTL (the answers come from the caches).
    fs::rename(dir.path().join("a"), dir.path().join("b")).expect("rename");
    std::os::unix::fs::chown(dir.path().join("b"), Some(4242), None).expect("chown");
    let again = fs.lookup(&c, ROOT_INODE, OsStr::new("a")).expect("a cached name");
    assert_eq!((again.inode, again.attr.uid), (a.inode, a.attr.uid));
    assert_eq!(fs.getattr(&c, a.inode, None).expect("getattr").uid, a.attr.uid, "a cached attribute");
    // Through the service: seen at once.
    let b = fs.lookup(&c, ROOT_INODE, OsStr::new("b")).expect("lookup b");
    assert_eq!(b.inode, a.inode, "one object, one node");
    let set = SetAttr { mode: Some(0o600), ..SetAttr::default() };
    fs.setattr(&c, b.inode, None, &set).expect("chmod");
    assert_eq!(fs.getattr(&c, b.inode, None).expect("getattr").mode & 0o777, 0o600);
    let h = fs.open(&c, b.inode, libc::O_WRONLY).expect("open");
    fs.write(&c, b.inode, h, &[IoSlice::new(b"more bytes")], 4).expect("write");
    assert_eq!(fs.getattr(&c, b.inode, Some(h)).expect("getattr").size, 14);
    fs.release(&c, b.inode, h).expect("release");
    fs.unlink(&c, ROOT_INODE, OsStr::new("b")).expect("unlink");
    assert_eq!(code(fs.lookup(&c, ROOT_INODE, OsStr::new("b"))), libc::ENOENT, "a removed name is gone at once");
    // The removal dropped its own name only: the host's rename still shows within the TTL.
    assert_eq!(fs.lookup(&c, ROOT_INODE, OsStr::new("a")).expect("another name kept").inode, a.inode);
}

/// A removal or rename through the service drops exactly the names it removed or replaced, at
/// once; the directory's other names stay cached (a file made and removed beside them costs
/// their lookups no system call).
#[test]
fn removals_and_renames_drop_their_own_names_and_keep_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ttl = std::time::Duration::from_secs(60);
    for n in ["keep", "x", "y", "z"] {
        fs::write(dir.path().join(n), n).expect("seed");
    }
    let fs = LocalFs::new(dir.path(), LocalOptions { entry_ttl: ttl, attr_ttl: ttl, ..LocalOptions::default() }).expect("backend");
    let c = ctx();
    let look = |n: &str| fs.lookup(&c, ROOT_INODE, OsStr::new(n));
    let keep = look("keep").expect("keep").inode;
    let (x, y, z) = (look("x").expect("x").inode, look("y").expect("y").inode, look("z").expect("z").inode);
    // Behind the service's back: every name now leads elsewhere or nowhere.
    for n in ["keep", "x", "y", "z"] {
        fs::remove_file(dir.path().join(n)).expect("host unlink");
    }
    for n in ["x", "y", "z"] {
        fs::write(dir.path().join(n), n).expect("host recreate");
    }
    // Through the service: unlink x, rename y over z. Their names are read afresh.
    fs.unlink(&c, ROOT_INODE, OsStr::new("x")).expect("unlink x");
    assert_eq!(code(look("x")), libc::ENOENT, "an unlinked name");
    fs.rename(&c, ROOT_INODE, OsStr::new("y"), ROOT_INODE, OsStr::new("z"), 0).expect("rename y z");
    assert_eq!(code(look("y")), libc::ENOENT, "a renamed name");
    let z_now = look("z").expect("z");
    assert_ne!(z_now.inode, z, "a replaced name leads to the object moved there");
    assert_ne!(z_now.inode, y, "the host's new y, not the object looked up before");
    assert_ne!(x, z_now.inode);
    // The name nobody touched through the service is still the cached one.
    assert_eq!(look("keep").expect("a kept name").inode, keep);
    // A name made through the service is remembered as it is made.
    let made = fs.mknod(&c, ROOT_INODE, OsStr::new("new"), libc::S_IFREG | 0o644, 0, 0).expect("mknod");
    let linked = fs.link(&c, made.inode, ROOT_INODE, OsStr::new("link")).expect("link");
    for n in ["new", "link"] {
        fs::remove_file(dir.path().join(n)).expect("host unlink");
    }
    assert_eq!(look("new").expect("a made name").inode, made.inode);
    assert_eq!(look("link").expect("a linked name").inode, linked.inode);
}

#[test]
fn a_block_is_read_buffered_through_a_write_only_file_where_direct_io_is_refused() {
    // Write-back reads a block before writing part of it, through the writer's handle.
    let dir = tempfile::tempdir().expect("tempdir");
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 249) as u8).collect();
    fs::write(dir.path().join("f"), &data).expect("seed");
    let wo = fs::OpenOptions::new().write(true).open(dir.path().join("f")).expect("open write-only");
    let block = cached::fetch(&mut cached::Direct::buffered(wo.as_fd()), 1).expect("fetch");
    assert!(block == data[crate::backend::cache::BLOCK..], "block 1, short at the end");
}

/// Objects past the descriptor bound are let go of and found again by file handle: every one
/// stays usable (attributes, data, names beneath a directory), the held count stays near the
/// bound, and an object moved by the host is still the same object. Needs
/// `CAP_DAC_READ_SEARCH` (root), as the service has; elsewhere it checks nothing is let go of.
#[test]
fn objects_past_the_descriptor_bound_are_found_again_by_handle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("sub")).expect("mkdir");
    const FILES: usize = 600;
    for i in 0..FILES {
        fs::write(root.join(format!("f{i}")), format!("content {i}")).expect("write");
    }
    fs::write(root.join("sub/inner"), b"inner").expect("write inner");
    let opts = LocalOptions { max_descriptors: 64, ..LocalOptions::default() };
    let fs = LocalFs::new(&root, opts).expect("open backend");
    let handles_work = fs.descriptors.over() || {
        let probe = rfs::open(&root, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).expect("open root");
        handles::handle_of(probe.as_fd())
            .and_then(|(h, _)| handles::open_path(probe.as_fd(), &h))
            .is_ok()
    };
    if rustix::process::geteuid().is_root() {
        assert!(handles_work, "root can re-open objects by file handle on a local filesystem");
    }
    let sub = fs.lookup(&ctx(), ROOT_INODE, OsStr::new("sub")).expect("lookup sub").inode;
    let mut inodes = Vec::new();
    for i in 0..FILES {
        let e = fs.lookup(&ctx(), ROOT_INODE, OsStr::new(&format!("f{i}"))).expect("lookup");
        inodes.push(e.inode);
        if handles_work {
            assert!(fs.held_descriptors() <= 64 + 2, "held {} past the bound 64", fs.held_descriptors());
        }
    }
    if !handles_work {
        assert!(fs.held_descriptors() > FILES, "without file handles nothing may be let go of");
        return;
    }
    // The directory was let go of long ago: names beneath it still resolve.
    let inner = fs.lookup(&ctx(), sub, OsStr::new("inner")).expect("lookup beneath a let-go directory");
    assert_eq!(inner.attr.size, 5);
    // A let-go object moved by the host is still the same object.
    fs::rename(root.join("f0"), root.join("sub/moved")).expect("host rename");
    for (i, &inode) in inodes.iter().enumerate() {
        let a = fs.getattr(&ctx(), inode, None).expect("getattr of a let-go object");
        assert_eq!(a.size, format!("content {i}").len() as u64, "f{i}");
        let h = fs.open(&ctx(), inode, libc::O_RDONLY).expect("open of a let-go object");
        let mut buf = [0u8; 32];
        let n = fs.read(&ctx(), inode, h, &mut [IoSliceMut::new(&mut buf)], 0).expect("read");
        assert_eq!(&buf[..n], format!("content {i}").as_bytes(), "f{i}");
        fs.release(&ctx(), inode, h).expect("release");
        assert!(fs.held_descriptors() <= 64 + 2, "held {} past the bound 64", fs.held_descriptors());
    }
    // Gone for good: ESTALE (or ENOENT), never another object's data.
    fs::remove_file(root.join("f1")).expect("host unlink");
    let gone = fs.getattr(&ctx(), inodes[1], None);
    match gone {
        Ok(a) => assert_eq!(a.nlink, 0, "a removed object held open shows no links"),
        Err(e) => assert!(matches!(e.raw_os_error(), Some(libc::ESTALE | libc::ENOENT)), "{e}"),
    }
    for &inode in &inodes {
        fs.forget(inode, 1);
    }
    assert!(fs.held_descriptors() <= 2, "forgotten objects still counted: {}", fs.held_descriptors());
}

/// A read-only branch lists a directory where a name was missing and answers the next missing
/// names from that listing (no system call), found names as before; a directory too large to
/// keep is asked every time.
#[test]
fn a_read_only_branch_answers_missing_names_from_the_directory_listing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ttl = std::time::Duration::from_secs(60);
    fs::create_dir(dir.path().join("big")).expect("mkdir");
    fs::write(dir.path().join("present"), b"p").expect("seed");
    for i in 0..=lookups::LISTING_MAX {
        fs::write(dir.path().join("big").join(format!("f{i}")), b"").expect("seed big");
    }
    let opts = LocalOptions { read_only: true, entry_ttl: ttl, attr_ttl: ttl, ..LocalOptions::default() };
    let fs = LocalFs::new(dir.path(), opts).expect("backend");
    let c = ctx();
    assert_eq!(code(fs.lookup(&c, ROOT_INODE, OsStr::new("missing"))), libc::ENOENT);
    // Made behind the service's back after the listing: missing within the TTL, as the
    // listing says; a name that was there when listed is found.
    fs::write(dir.path().join("later"), b"l").expect("host create");
    assert_eq!(code(fs.lookup(&c, ROOT_INODE, OsStr::new("later"))), libc::ENOENT, "answered from the listing");
    assert_eq!(fs.lookup(&c, ROOT_INODE, OsStr::new("present")).expect("a listed name").attr.size, 1);
    // Too large to keep: every miss asks the directory, so a new name shows at once.
    let big = fs.lookup(&c, ROOT_INODE, OsStr::new("big")).expect("big").inode;
    assert_eq!(code(fs.lookup(&c, big, OsStr::new("missing"))), libc::ENOENT);
    fs::write(dir.path().join("big").join("later"), b"").expect("host create in big");
    assert!(fs.lookup(&c, big, OsStr::new("later")).is_ok(), "a directory too large is not kept");
    // A writable branch keeps no listing: a new name shows at once.
    let rw = LocalFs::new(dir.path(), LocalOptions { entry_ttl: ttl, attr_ttl: ttl, ..LocalOptions::default() }).expect("rw backend");
    assert_eq!(code(rw.lookup(&c, ROOT_INODE, OsStr::new("missing2"))), libc::ENOENT);
    fs::write(dir.path().join("missing2"), b"").expect("host create");
    assert!(rw.lookup(&c, ROOT_INODE, OsStr::new("missing2")).is_ok());
}

/// A write racing a truncation of the same file in write-back mode ends as one of the two
/// orders would leave it: cut (the write first), or zeros up to the written bytes (the
/// truncation first). Never with the file's old bytes back past the cut, nor with part of
/// the write (it spans two blocks) before the cut and the rest after.
#[test]
fn a_write_racing_a_truncation_never_brings_old_bytes_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Arc::new(crate::backend::cache::BlockCache::new(8 << 20));
    let long = std::time::Duration::from_secs(3600);
    crate::backend::local::enable_writeback(&cache, crate::backend::cache::Writeback { dirty_limit: 4 << 20, expire: long, interval: long }).expect("flusher");
    let path = dir.path().join("f");
    fs::write(&path, b"").expect("seed");
    let fs = LocalFs::new(dir.path(), LocalOptions { read_only: false, cache: Some(cache), writeback: true, ..LocalOptions::default() }).expect("backend");
    let c = ctx();
    let e = fs.lookup(&c, ROOT_INODE, OsStr::new("f")).expect("lookup");
    let h = fs.open(&c, e.inode, libc::O_RDWR).expect("open");
    const OLD: usize = 3 * BLOCK_BYTES as usize;
    const AT: u64 = BLOCK_BYTES + 100;
    let mut orders = [0u32; 2];
    let new: Vec<u8> = (0..BLOCK_BYTES as usize).map(|i| b'a' + (i % 26) as u8).collect();
    for round in 0..400 {
        // The old contents, written back.
        assert_eq!(fs.write(&c, e.inode, h, &[IoSlice::new(&[b'O'; OLD])], 0).expect("old bytes"), OLD);
        fs.fsync(&c, e.inode, h, false).expect("fsync");
        let go = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                go.wait();
                fs.setattr(&c, e.inode, Some(h), &SetAttr { size: Some(0), ..SetAttr::default() }).expect("truncate");
            });
            go.wait();
            fs.write(&c, e.inode, h, &[IoSlice::new(&new)], AT).expect("write");
        });
        fs.fsync(&c, e.inode, h, false).expect("fsync");
        let cached = read_at(&fs, e.inode, h, 0, OLD);
        let backing = fs::read(&path).expect("backing");
        for (what, bytes) in [("through the cache", &cached), ("in the backing file", &backing)] {
            if bytes.is_empty() {
                orders[0] += 1;
                continue;
            }
            assert_eq!(bytes.len() as u64, AT + new.len() as u64, "round {round}: size {what}");
            assert!(bytes[..AT as usize].iter().all(|&b| b == 0), "round {round}: old bytes (or part of the write) before the write {what}");
            assert!(bytes[AT as usize..] == new[..], "round {round}: the write torn {what}");
            orders[1] += 1;
        }
        assert_eq!(cached, backing, "round {round}: the cache and the backing file differ");
        fs.setattr(&c, e.inode, Some(h), &SetAttr { size: Some(0), ..SetAttr::default() }).expect("reset");
    }
    fs.release(&c, e.inode, h).expect("release");
    eprintln!("orders seen (write first, truncation first): {orders:?}");
}

/// A write-back backend over `dir` whose flusher writes back only what is handed to it (the
/// expiry an hour away), with its cache.
fn private_write_back(dir: &Path) -> (LocalFs, Arc<crate::backend::cache::BlockCache>) {
    let cache = Arc::new(crate::backend::cache::BlockCache::new(8 << 20));
    let long = std::time::Duration::from_secs(3600);
    let w = crate::backend::cache::Writeback { dirty_limit: 4 << 20, expire: long, interval: std::time::Duration::from_millis(20) };
    crate::backend::local::enable_writeback(&cache, w).expect("flusher");
    let fs = LocalFs::new(dir, LocalOptions { cache: Some(cache.clone()), writeback: true, ..LocalOptions::default() }).expect("backend");
    (fs, cache)
}

fn wait_clean(cache: &crate::backend::cache::BlockCache) -> bool {
    let t = std::time::Instant::now();
    while cache.stats.dirty.load(Ordering::Relaxed) > 0 && t.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    cache.stats.dirty.load(Ordering::Relaxed) == 0
}

/// The cases where a branch's private write-back still writes a file back before its expiry,
/// as ext4's `auto_da_alloc` does: a file renamed (over another, whose own dirty data is then
/// never written), and a file cut to nothing from what it held and written anew, at its
/// writer's close (not a reader's); and every close on the FUSE side (`flush`), whose programs
/// cannot reach the cache with `sync(2)`. A write-back keeps the file's modification time, and a dirty file counts the
/// blocks its data will take.
#[test]
fn private_write_back_still_writes_renamed_replaced_and_fuse_closed_files_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (fs, cache) = private_write_back(dir.path());
    let c = ctx();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 249) as u8).collect();
    let make = |name: &str, bytes: &[u8]| {
        let (e, h) = fs.create(&c, ROOT_INODE, OsStr::new(name), 0o644, 0o022, libc::O_RDWR).expect("create");
        assert_eq!(fs.write(&c, e.inode, h, &[IoSlice::new(bytes)], 0).expect("write"), bytes.len());
        (e, h)
    };
    // Written, closed: it waits; its attributes show its data's blocks and its write's time.
    let (old, h) = make("target", b"the old contents\n");
    fs.release(&c, old.inode, h).expect("release");
    let (tmp, h) = make("tmp", &data);
    let attr = fs.getattr(&c, tmp.inode, Some(h)).expect("getattr");
    assert!(attr.blocks >= 100_000 / 512, "a dirty file's blocks: {}", attr.blocks);
    fs.release(&c, tmp.inode, h).expect("release");
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(fs::metadata(dir.path().join("tmp")).expect("tmp").len(), 0, "written back at close");
    let writebacks = || cache.stats.writebacks.load(Ordering::Relaxed);
    // Renamed over the old file: handed to the flusher; the old file's data is dropped.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    fs.rename(&c, ROOT_INODE, OsStr::new("tmp"), ROOT_INODE, OsStr::new("target"), 0).expect("rename");
    assert!(wait_clean(&cache), "the renamed file waited for its expiry");
    assert!(fs::read(dir.path().join("target")).expect("target") == data, "the renamed file's data");
    assert_eq!(writebacks(), 2, "the replaced file was written back too");
    // Its modification time is the write's, a second before the write-back.
    let on_disk = fs::metadata(dir.path().join("target")).expect("target");
    let mtime = std::os::unix::fs::MetadataExt::mtime(&on_disk);
    assert_eq!(Timespec { sec: mtime, nsec: std::os::unix::fs::MetadataExt::mtime_nsec(&on_disk) as u32 }, attr.mtime, "the write-back moved the modification time");
    // Cut to nothing and written anew: written back at its writer's close, not a reader's.
    let h = fs.open(&c, tmp.inode, libc::O_WRONLY | libc::O_TRUNC).expect("open O_TRUNC");
    assert_eq!(fs.write(&c, tmp.inode, h, &[IoSlice::new(b"new\n")], 0).expect("write"), 4);
    let reader = fs.open(&c, tmp.inode, libc::O_RDONLY).expect("open to read");
    fs.release(&c, tmp.inode, reader).expect("release");
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(cache.stats.dirty.load(Ordering::Relaxed) > 0, "a reader's close wrote the file back");
    fs.release(&c, tmp.inode, h).expect("release");
    assert!(wait_clean(&cache), "a file cut to nothing and rewritten waited for its expiry");
    assert_eq!(fs::read(dir.path().join("target")).expect("target"), b"new\n");
    // A close on the FUSE side hands the file to the flusher.
    let (fused, h) = make("fused", &data);
    fs.flush(&c, fused.inode, h).expect("flush");
    assert!(wait_clean(&cache), "a FUSE close left the file dirty");
    fs.release(&c, fused.inode, h).expect("release");
    assert!(fs::read(dir.path().join("fused")).expect("fused") == data);
}

/// A file that lost its last name with no handle open has its dirty data dropped; an open of
/// it that looked it up before the removal then fails as one after it would (`ENOENT`), never
/// reading the file emptied. A handle open at the removal keeps the data.
#[test]
fn an_open_racing_the_removal_of_a_private_write_back_file_fails_rather_than_read_it_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (fs, cache) = private_write_back(dir.path());
    let c = ctx();
    let (e, h) = fs.create(&c, ROOT_INODE, OsStr::new("f"), 0o644, 0o022, libc::O_RDWR).expect("create");
    fs.write(&c, e.inode, h, &[IoSlice::new(b"written")], 0).expect("write");
    fs.release(&c, e.inode, h).expect("release");
    let looked = fs.lookup(&c, ROOT_INODE, OsStr::new("f")).expect("lookup");
    fs.unlink(&c, ROOT_INODE, OsStr::new("f")).expect("unlink");
    assert_eq!(cache.stats.dirty.load(Ordering::Relaxed), 0, "the removed file's data stayed dirty");
    assert_eq!(code(fs.open(&c, looked.inode, libc::O_RDONLY)), libc::ENOENT);
    // Open at the removal: the data stays for the handle.
    let (e, h) = fs.create(&c, ROOT_INODE, OsStr::new("g"), 0o644, 0o022, libc::O_RDWR).expect("create");
    fs.write(&c, e.inode, h, &[IoSlice::new(b"kept")], 0).expect("write");
    fs.unlink(&c, ROOT_INODE, OsStr::new("g")).expect("unlink");
    assert_eq!(read_at(&fs, e.inode, h, 0, 16), b"kept");
    // Its last close: nothing left to write (no name), so nothing is written.
    fs.release(&c, e.inode, h).expect("release");
    assert_eq!(cache.stats.dirty.load(Ordering::Relaxed), 0, "a removed file's data stayed dirty after its last close");
    // A rename onto itself (another of its names) drops nothing.
    let (e, h) = fs.create(&c, ROOT_INODE, OsStr::new("h"), 0o644, 0o022, libc::O_RDWR).expect("create");
    fs.write(&c, e.inode, h, &[IoSlice::new(b"stays")], 0).expect("write");
    fs.release(&c, e.inode, h).expect("release");
    fs.rename(&c, ROOT_INODE, OsStr::new("h"), ROOT_INODE, OsStr::new("h"), 0).expect("rename onto itself");
    assert!(wait_clean(&cache));
    assert_eq!(fs::read(dir.path().join("h")).expect("h"), b"stays");
    assert_eq!(cache.stats.writebacks.load(Ordering::Relaxed), 1, "only h was ever written back");
}
