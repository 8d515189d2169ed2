//! Unit tests of the union over local branches. The oracle test (`tests/union_oracle.rs`)
//! checks the general semantics against kernel overlayfs; these check what the oracle cannot:
//! the OCI whiteout form, hidden scratch entries, holes, inode stability, handle behaviour.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{IoSlice, IoSliceMut};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::*;
use crate::backend::local::{LocalFs, LocalOptions};
use crate::libservice::{Entry, RENAME_NOREPLACE};

use crate::libservice::testing::{code, ctx};

struct Fixture {
    _dir: tempfile::TempDir,
    upper: PathBuf,
    lower: PathBuf,
    base: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let [upper, lower, base] = ["upper", "lower", "base"].map(|n| {
            let p = dir.path().join(n);
            fs::create_dir(&p).expect("mkdir branch");
            p
        });
        Fixture { _dir: dir, upper, lower, base }
    }

    fn union(&self) -> UnionFs {
        let open = |p: &Path, ro| -> Arc<dyn FileSystem> {
            Arc::new(LocalFs::new(p, LocalOptions { read_only: ro, ..LocalOptions::default() }).expect("open branch"))
        };
        UnionFs::new(Some(open(&self.upper, false)), vec![open(&self.lower, true), open(&self.base, true)])
            .expect("union")
    }
}

fn lookup(u: &UnionFs, path: &str) -> io::Result<Entry> {
    let mut cur = ROOT_INODE;
    let mut last = None;
    for c in path.split('/') {
        let e = u.lookup(&ctx(), cur, OsStr::new(c))?;
        cur = e.inode;
        last = Some(e);
    }
    last.ok_or_else(|| errno(libc::ENOENT))
}

fn names(u: &UnionFs, dir: Inode) -> Vec<OsString> {
    let h = u.opendir(&ctx(), dir, libc::O_RDONLY).expect("opendir");
    let mut v: Vec<_> = u
        .readdir(&ctx(), dir, h, 0, usize::MAX)
        .expect("readdir")
        .into_iter()
        .map(|e| e.name)
        .filter(|n| n != "." && n != "..")
        .collect();
    u.releasedir(&ctx(), dir, h).expect("releasedir");
    v.sort();
    v
}

fn write_at(u: &UnionFs, ino: Inode, data: &[u8], off: u64) {
    let h = u.open(&ctx(), ino, libc::O_WRONLY).expect("open for write");
    assert_eq!(u.write(&ctx(), ino, h, &[IoSlice::new(data)], off).expect("write"), data.len());
    u.release(&ctx(), ino, h).expect("release");
}

fn read_all(u: &UnionFs, ino: Inode) -> Vec<u8> {
    let size = u.getattr(&ctx(), ino, None).expect("getattr").size as usize;
    let h = u.open(&ctx(), ino, libc::O_RDONLY).expect("open");
    let mut buf = vec![0u8; size];
    let n = u.read(&ctx(), ino, h, &mut [IoSliceMut::new(&mut buf)], 0).expect("read");
    u.release(&ctx(), ino, h).expect("release");
    buf.truncate(n);
    buf
}

#[test]
fn oci_whiteouts_and_opaque_markers_in_lower_branches() {
    let f = Fixture::new();
    fs::write(f.base.join("x"), b"base x").expect("write");
    fs::write(f.base.join("y"), b"base y").expect("write");
    fs::create_dir(f.base.join("dir")).expect("mkdir");
    fs::write(f.base.join("dir/z"), b"hidden by opaque").expect("write");
    fs::create_dir(f.base.join("merged")).expect("mkdir");
    fs::write(f.base.join("merged/from_base"), b"").expect("write");
    // The upper layer of an image, in OCI form.
    fs::write(f.lower.join(".wh.x"), b"").expect("whiteout");
    fs::create_dir(f.lower.join("dir")).expect("mkdir");
    fs::write(f.lower.join("dir/.wh..wh..opq"), b"").expect("opaque marker");
    fs::write(f.lower.join("dir/w"), b"w").expect("write");
    fs::create_dir(f.lower.join("merged")).expect("mkdir");
    fs::write(f.lower.join("merged/from_lower"), b"").expect("write");
    let u = f.union();
    assert_eq!(names(&u, ROOT_INODE), ["dir", "merged", "y"].map(OsString::from));
    assert_eq!(code(lookup(&u, "x")), libc::ENOENT);
    assert_eq!(code(lookup(&u, ".wh.x")), libc::ENOENT);
    let dir = lookup(&u, "dir").expect("dir");
    assert_eq!(names(&u, dir.inode), [OsString::from("w")]);
    assert_eq!(code(lookup(&u, "dir/z")), libc::ENOENT);
    let merged = lookup(&u, "merged").expect("merged");
    assert_eq!(names(&u, merged.inode), ["from_base", "from_lower"].map(OsString::from));
    assert_eq!(merged.attr.nlink, 1, "merged directories report one link, as overlayfs");
    // Deleting a name in the union writes the overlayfs form in the upper branch.
    u.unlink(&ctx(), ROOT_INODE, OsStr::new("y")).expect("unlink y");
    let wh = fs::symlink_metadata(f.upper.join("y")).expect("whiteout in upper");
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(&wh.file_type()) && wh.rdev() == 0);
    assert_eq!(names(&u, ROOT_INODE), ["dir", "merged"].map(OsString::from));
}

#[test]
fn copy_up_keeps_metadata_holes_and_inode_number() {
    let f = Fixture::new();
    let big = f.base.join("big");
    {
        let file = fs::File::create(&big).expect("create big");
        file.set_len(2 << 30).expect("2 GiB sparse");
        rustix::io::pwrite(&file, b"head", 0).expect("write head");
        rustix::io::pwrite(&file, b"tail", (2 << 30) - 4).expect("write tail");
    }
    rustix::fs::chownat(rustix::fs::CWD, &big, Some(rustix::fs::Uid::from_raw(1234)), Some(rustix::fs::Gid::from_raw(4321)), rustix::fs::AtFlags::empty()).expect("chown");
    fs::set_permissions(&big, std::os::unix::fs::PermissionsExt::from_mode(0o4750)).expect("chmod");
    rustix::fs::setxattr(&big, "user.tag", b"kept", rustix::fs::XattrFlags::empty()).expect("xattr");
    let before = fs::metadata(&big).expect("stat");
    let u = f.union();
    let e = lookup(&u, "big").expect("lookup");
    write_at(&u, e.inode, b"HEAD", 0);
    let up = fs::metadata(f.upper.join("big")).expect("copied up");
    assert_eq!(up.len(), 2 << 30);
    assert!(up.blocks() < 1024, "holes must survive copy-up ({} blocks)", up.blocks());
    assert_eq!((up.uid(), up.gid(), up.mode() & 0o7777), (1234, 4321, 0o4750));
    assert_eq!(up.mtime(), before.mtime(), "copy-up keeps the mtime; the write came after");
    let after = lookup(&u, "big").expect("lookup after copy-up");
    assert_eq!(after.inode, e.inode, "inode number stable across copy-up");
    assert_eq!(after.attr.ino, e.attr.ino);
    assert_eq!(u.getxattr(&ctx(), e.inode, OsStr::new("user.tag")).expect("xattr"), b"kept");
    let h = u.open(&ctx(), e.inode, libc::O_RDONLY).expect("open");
    let mut tail = [0u8; 4];
    u.read(&ctx(), e.inode, h, &mut [IoSliceMut::new(&mut tail)], (2 << 30) - 4).expect("read tail");
    assert_eq!(&tail, b"tail");
    u.release(&ctx(), e.inode, h).expect("release");
    assert_eq!(fs::read(&big).map(|d| d[..4].to_vec()).expect("lower intact"), b"head", "the lower branch is never written");
}

#[test]
fn scratch_entries_are_invisible_and_not_left_behind() {
    let f = Fixture::new();
    fs::create_dir_all(f.base.join("a/b")).expect("mkdir");
    fs::write(f.base.join("a/b/file"), b"data").expect("write");
    // Left by a crash in the middle of an earlier copy-up.
    fs::write(f.upper.join(".wh..wh.ptn.1.1"), b"half").expect("stray scratch");
    let u = f.union();
    assert_eq!(names(&u, ROOT_INODE), [OsString::from("a")]);
    assert_eq!(code(lookup(&u, ".wh..wh.ptn.1.1")), libc::ENOENT);
    assert_eq!(code(u.mkdir(&ctx(), ROOT_INODE, OsStr::new(".wh..wh.x"), 0o755, 0)), libc::EINVAL);
    let e = lookup(&u, "a/b/file").expect("lookup");
    write_at(&u, e.inode, b"DATA", 0);
    assert_eq!(read_all(&u, e.inode), b"DATA");
    for dir in [f.upper.join("a"), f.upper.join("a/b")] {
        let stray: Vec<_> = fs::read_dir(&dir)
            .expect("readdir upper")
            .map(|e| e.expect("entry").file_name())
            .filter(|n| n.to_string_lossy().starts_with(".wh..wh."))
            .collect();
        assert!(stray.is_empty(), "copy-up left {stray:?} in {}", dir.display());
    }
}

#[test]
fn hard_links_to_copied_up_files_keep_nlink_and_identity() {
    let f = Fixture::new();
    fs::write(f.base.join("f"), b"x").expect("write");
    let u = f.union();
    let e = lookup(&u, "f").expect("lookup");
    let l = u.link(&ctx(), e.inode, ROOT_INODE, OsStr::new("g")).expect("link");
    assert_eq!(l.inode, e.inode);
    assert_eq!(l.attr.nlink, 2);
    let g = lookup(&u, "g").expect("lookup g");
    assert_eq!(g.inode, e.inode);
    write_at(&u, g.inode, b"y", 0);
    assert_eq!(read_all(&u, e.inode), b"y");
    u.unlink(&ctx(), ROOT_INODE, OsStr::new("f")).expect("unlink f");
    assert_eq!(u.getattr(&ctx(), g.inode, None).expect("getattr").nlink, 1);
    assert_eq!(code(lookup(&u, "f")), libc::ENOENT);
}

#[test]
fn directories_with_lower_parts_move_with_a_redirect() {
    let f = Fixture::new();
    fs::create_dir_all(f.base.join("lowerdir/sub")).expect("mkdir");
    fs::write(f.base.join("lowerdir/sub/file"), b"lower data").expect("write");
    fs::create_dir(f.base.join("elsewhere")).expect("mkdir");
    let u = f.union();
    let before = lookup(&u, "lowerdir").expect("lookup").inode;
    u.rename(&ctx(), ROOT_INODE, OsStr::new("lowerdir"), ROOT_INODE, OsStr::new("moved"), 0).expect("a lower directory moves");
    assert_eq!(lookup(&u, "moved").expect("lookup moved").inode, before, "the union's inode number stays");
    assert_eq!(names(&u, ROOT_INODE), ["elsewhere", "moved"].map(OsString::from));
    assert_eq!(read_all(&u, lookup(&u, "moved/sub/file").expect("lookup").inode), b"lower data");
    // Within its directory the redirect is the old name; the old name is whited out.
    let mut buf = [0u8; 256];
    let n = rustix::fs::lgetxattr(f.upper.join("moved"), "trusted.overlay.redirect", &mut buf).expect("redirect written");
    assert_eq!(&buf[..n], b"lowerdir");
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(&fs::symlink_metadata(f.upper.join("lowerdir")).expect("whiteout").file_type()));
    // Into another directory: the path from the root; a nested lower directory moves too.
    let sub = lookup(&u, "moved/sub").expect("lookup sub").inode;
    let moved = lookup(&u, "moved").expect("lookup").inode;
    let elsewhere = lookup(&u, "elsewhere").expect("lookup").inode;
    u.rename(&ctx(), moved, OsStr::new("sub"), elsewhere, OsStr::new("deeper"), 0).expect("a nested lower directory moves");
    let n = rustix::fs::lgetxattr(f.upper.join("elsewhere/deeper"), "trusted.overlay.redirect", &mut buf).expect("redirect written");
    assert_eq!(&buf[..n], b"/lowerdir/sub", "the path of the lower parts, through the parent's redirect");
    assert_eq!(lookup(&u, "elsewhere/deeper").expect("lookup").inode, sub);
    assert_eq!(names(&u, moved), Vec::<OsString>::new());
    // Back to its first name: the whiteout goes, the redirect stays.
    u.rename(&ctx(), ROOT_INODE, OsStr::new("moved"), ROOT_INODE, OsStr::new("lowerdir"), 0).expect("back to its name");
    drop(u);
    // A new union over the same branches (a remount) sees the same tree.
    let u = f.union();
    assert_eq!(names(&u, ROOT_INODE), ["elsewhere", "lowerdir"].map(OsString::from));
    assert_eq!(read_all(&u, lookup(&u, "elsewhere/deeper/file").expect("lookup after remount").inode), b"lower data");
    assert_eq!(code(lookup(&u, "lowerdir/sub")), libc::ENOENT);
    // With redirect_dir off, as overlayfs with redirect_dir=off: EXDEV; upper-only directories
    // move either way.
    let off = f.union().with_redirect_dir(false);
    assert_eq!(code(off.rename(&ctx(), ROOT_INODE, OsStr::new("elsewhere"), ROOT_INODE, OsStr::new("x"), 0)), libc::EXDEV);
    off.mkdir(&ctx(), ROOT_INODE, OsStr::new("newdir"), 0o755, 0).expect("mkdir");
    off.rename(&ctx(), ROOT_INODE, OsStr::new("newdir"), ROOT_INODE, OsStr::new("y"), RENAME_NOREPLACE).expect("pure upper dir moves");
}

#[test]
fn image_directories_move_with_their_oci_markers_honoured() {
    let f = Fixture::new();
    fs::create_dir_all(f.base.join("etc/deep")).expect("mkdir");
    for n in ["a", "b", "deep/c", "deep/d"] {
        fs::write(f.base.join("etc").join(n), n).expect("write");
    }
    // The image's upper layer, in OCI form: hides etc/b and etc/deep/d.
    fs::create_dir_all(f.lower.join("etc/deep")).expect("mkdir");
    fs::write(f.lower.join("etc/.wh.b"), b"").expect("whiteout");
    fs::write(f.lower.join("etc/deep/.wh.d"), b"").expect("whiteout");
    fs::write(f.lower.join("etc/deep/e"), b"e").expect("write");
    fs::create_dir(f.lower.join("x")).expect("mkdir");
    let u = f.union();
    u.rename(&ctx(), ROOT_INODE, OsStr::new("etc"), ROOT_INODE, OsStr::new("etc2"), 0).expect("rename in place");
    let x = lookup(&u, "x").expect("x").inode;
    let etc2 = lookup(&u, "etc2").expect("etc2").inode;
    u.rename(&ctx(), etc2, OsStr::new("deep"), x, OsStr::new("deep"), 0).expect("rename across");
    let check = |u: &UnionFs| {
        assert_eq!(names(u, lookup(u, "etc2").expect("etc2").inode), [OsString::from("a")]);
        assert_eq!(names(u, lookup(u, "x/deep").expect("x/deep").inode), ["c", "e"].map(OsString::from));
        assert_eq!(code(lookup(u, "etc")), libc::ENOENT);
    };
    check(&u);
    drop(u);
    check(&f.union());
}

#[test]
fn redirects_that_point_outside_the_branch_are_refused() {
    for bad in [&b"/../etc"[..], b"a/b", b"", b"..", b"/a//b", b"/a/./b"] {
        assert!(whiteout::Redirect::parse(bad).is_err(), "{:?} accepted", String::from_utf8_lossy(bad));
    }
    assert_eq!(whiteout::Redirect::parse(b"name").expect("relative"), whiteout::Redirect::Relative("name".into()));
    let abs = whiteout::Redirect::parse(b"/a/b").expect("absolute");
    assert_eq!(abs.to_bytes(), b"/a/b");
    // A crafted redirect in the upper branch makes the lookup fail, never reach elsewhere.
    let f = Fixture::new();
    fs::create_dir(f.upper.join("d")).expect("mkdir");
    fs::create_dir(f.base.join("d")).expect("mkdir");
    rustix::fs::setxattr(f.upper.join("d"), "trusted.overlay.redirect", b"/../../etc", rustix::fs::XattrFlags::empty()).expect("setxattr");
    let u = f.union();
    assert_eq!(code(lookup(&u, "d")), libc::EIO);
}

#[test]
fn open_handles_follow_copy_up_and_listings_resume() {
    let f = Fixture::new();
    fs::write(f.base.join("f"), b"old").expect("write");
    for i in 0..30 {
        fs::write(f.base.join(format!("n{i:02}")), b"").expect("write");
    }
    let u = f.union();
    let e = lookup(&u, "f").expect("lookup");
    let ro = u.open(&ctx(), e.inode, libc::O_RDONLY).expect("open ro");
    write_at(&u, e.inode, b"new", 0);
    let mut buf = [0u8; 3];
    u.read(&ctx(), e.inode, ro, &mut [IoSliceMut::new(&mut buf)], 0).expect("read");
    assert_eq!(&buf, b"new", "a descriptor opened before copy-up sees the copied-up file");
    u.release(&ctx(), e.inode, ro).expect("release");
    let h = u.opendir(&ctx(), ROOT_INODE, libc::O_RDONLY).expect("opendir");
    let all = u.readdir(&ctx(), ROOT_INODE, h, 0, usize::MAX).expect("readdir");
    assert_eq!(all.len(), 33);
    // telldir/seekdir: resuming from any cookie continues right after that entry, even after
    // the directory changed meanwhile.
    u.unlink(&ctx(), ROOT_INODE, OsStr::new("n05")).expect("unlink");
    for (i, ent) in all.iter().enumerate() {
        assert_eq!(u.readdir(&ctx(), ROOT_INODE, h, ent.offset, 4).expect("resume"), all[i + 1..].iter().take(4).cloned().collect::<Vec<_>>());
    }
    // Reading from offset 0 again (rewinddir) shows the change.
    assert_eq!(u.readdir(&ctx(), ROOT_INODE, h, 0, usize::MAX).expect("rewind").len(), 32);
    u.releasedir(&ctx(), ROOT_INODE, h).expect("releasedir");
}

#[test]
fn private_xattrs_are_hidden_and_refused() {
    let f = Fixture::new();
    fs::create_dir(f.base.join("d")).expect("mkdir");
    let u = f.union();
    u.rmdir(&ctx(), ROOT_INODE, OsStr::new("d")).expect("rmdir");
    let d = u.mkdir(&ctx(), ROOT_INODE, OsStr::new("d"), 0o755, 0).expect("mkdir over whiteout");
    let mut raw = [0u8; 8];
    let n = rustix::fs::getxattr(f.upper.join("d"), "trusted.overlay.opaque", &mut raw).expect("opaque set");
    assert_eq!(&raw[..n], b"y");
    assert!(u.listxattr(&ctx(), d.inode).expect("listxattr").is_empty());
    assert_eq!(code(u.getxattr(&ctx(), d.inode, OsStr::new("trusted.overlay.opaque"))), libc::EOPNOTSUPP);
    assert_eq!(code(u.setxattr(&ctx(), d.inode, OsStr::new("trusted.overlay.opaque"), b"n", 0)), libc::EOPNOTSUPP);
}

#[test]
fn a_union_without_upper_is_read_only() {
    let f = Fixture::new();
    fs::write(f.base.join("f"), b"x").expect("write");
    let lower: Arc<dyn FileSystem> = Arc::new(LocalFs::new(&f.base, LocalOptions { read_only: true, ..LocalOptions::default() }).expect("open"));
    let u = UnionFs::new(None, vec![lower]).expect("union");
    let e = lookup(&u, "f").expect("lookup");
    assert_eq!(code(u.open(&ctx(), e.inode, libc::O_WRONLY)), libc::EROFS);
    assert_eq!(code(u.mkdir(&ctx(), ROOT_INODE, OsStr::new("d"), 0o755, 0)), libc::EROFS);
    assert_eq!(code(u.unlink(&ctx(), ROOT_INODE, OsStr::new("f"))), libc::EROFS);
    assert_eq!(code(u.access(&ctx(), e.inode, libc::W_OK)), libc::EROFS);
    assert_eq!(read_all(&u, e.inode), b"x");
}

#[test]
fn concurrent_namespace_changes_and_io_stay_consistent() {
    let f = Fixture::new();
    for d in ["a", "b"] {
        fs::create_dir(f.base.join(d)).expect("mkdir");
        for n in 0..8 {
            fs::write(f.base.join(d).join(format!("f{n}")), format!("lower {d}{n}")).expect("write");
        }
    }
    let before: Vec<_> = fs::read_dir(f.base.join("a")).expect("readdir").map(|e| e.expect("entry").file_name()).collect();
    let u = Arc::new(f.union());
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let u = u.clone();
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(t);
                let own = format!("own{t}");
                let (e, h) = u.create(&ctx(), ROOT_INODE, OsStr::new(&own), 0o644, 0, libc::O_RDWR).expect("create own");
                for i in 0..400u64 {
                    let d = ["a", "b"][rng.usize(0..2)];
                    let dir = lookup(&u, d).expect("lookup dir");
                    let n1 = format!("f{}", rng.u32(0..8));
                    let n2 = format!("f{}", rng.u32(0..8));
                    // Races between threads make many of these fail; none may panic or hang.
                    let _ = match rng.u32(0..6) {
                        0 => u.rename(&ctx(), dir.inode, OsStr::new(&n1), dir.inode, OsStr::new(&n2), 0),
                        1 => u.unlink(&ctx(), dir.inode, OsStr::new(&n1)),
                        2 => u.create(&ctx(), dir.inode, OsStr::new(&n1), 0o644, 0, libc::O_WRONLY).and_then(|(e, h)| u.release(&ctx(), e.inode, h)),
                        3 => lookup(&u, &format!("{d}/{n1}")).and_then(|x| {
                            let h = u.open(&ctx(), x.inode, libc::O_WRONLY)?;
                            u.write(&ctx(), x.inode, h, &[IoSlice::new(b"w")], 0)?;
                            u.release(&ctx(), x.inode, h)
                        }),
                        4 => lookup(&u, &format!("{d}/{n1}")).and_then(|x| u.setattr(&ctx(), x.inode, None, &SetAttr { mode: Some(0o600), ..SetAttr::default() }).map(|_| ())),
                        _ => u.opendir(&ctx(), dir.inode, 0).and_then(|h| {
                            u.readdir(&ctx(), dir.inode, h, 0, 2)?;
                            u.releasedir(&ctx(), dir.inode, h)
                        }),
                    };
                    // The thread's own file is never touched by others: its data must hold.
                    let word = i.to_le_bytes();
                    u.write(&ctx(), e.inode, h, &[IoSlice::new(&word)], i * 8).expect("write own");
                    let mut back = [0u8; 8];
                    u.read(&ctx(), e.inode, h, &mut [IoSliceMut::new(&mut back)], i * 8).expect("read own");
                    assert_eq!(back, word);
                }
                u.release(&ctx(), e.inode, h).expect("release own");
            })
        })
        .collect();
    for t in threads {
        t.join().expect("worker panicked");
    }
    // Every listed name resolves and reads; the lower branch is untouched.
    for d in ["a", "b"] {
        let dir = lookup(&u, d).expect("lookup");
        for n in names(&u, dir.inode) {
            let e = u.lookup(&ctx(), dir.inode, &n).expect("listed name resolves");
            read_all(&u, e.inode);
        }
    }
    let after: Vec<_> = fs::read_dir(f.base.join("a")).expect("readdir").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(before, after);
}

/// With an id shift (a clone for a container in a user namespace), the read-only branches'
/// ids show shifted, ids past the range show as the overflow id, a copy-up stores the shifted
/// ids, and the upper branch's own ids show as they are.
#[test]
fn read_only_branches_show_and_copy_up_shifted_ids() {
    let f = Fixture::new();
    let set_owner = |p: &Path, uid: u32, gid: u32| {
        rustix::fs::chownat(rustix::fs::CWD, p, Some(rustix::fs::Uid::from_raw(uid)), Some(rustix::fs::Gid::from_raw(gid)), rustix::fs::AtFlags::SYMLINK_NOFOLLOW).expect("chown");
    };
    fs::write(f.lower.join("mine"), b"lower").expect("mine");
    set_owner(&f.lower.join("mine"), 5, 6);
    fs::write(f.base.join("far"), b"base").expect("far");
    set_owner(&f.base.join("far"), 70_000, 0);
    fs::write(f.upper.join("up"), b"upper").expect("up");
    set_owner(&f.upper.join("up"), 100_007, 100_008);
    let u = f.union().with_id_shift(Some(crate::spec::IdShift { first: 100_000, count: 65536 }));
    let ids = |path: &str| {
        let a = lookup(&u, path).expect("lookup").attr;
        (a.uid, a.gid)
    };
    assert_eq!(ids("mine"), (100_005, 100_006));
    assert_eq!(ids("far"), (crate::libservice::access::OVERFLOW_ID, 100_000));
    assert_eq!(ids("up"), (100_007, 100_008), "the upper branch holds host ids already");
    let root = u.getattr(&ctx(), ROOT_INODE, None).expect("root");
    assert_eq!((root.uid, root.gid), (0, 0), "the upper root's own ids");
    let e = lookup(&u, "mine").expect("lookup");
    write_at(&u, e.inode, b"L", 0);
    let up = fs::metadata(f.upper.join("mine")).expect("copied up");
    assert_eq!((up.uid(), up.gid()), (100_005, 100_006), "copy-up stores the shifted ids");
    assert_eq!(ids("mine"), (100_005, 100_006));
}

#[test]
fn a_created_name_resolves_from_the_name_cache() {
    let f = Fixture::new();
    fs::create_dir(f.lower.join("d")).expect("lower dir");
    let u = f.union();
    let d = lookup(&u, "d").expect("d");
    let (e, h) = u.create(&ctx(), d.inode, OsStr::new("new"), 0o644, 0, libc::O_RDWR).expect("create");
    u.release(&ctx(), e.inode, h).expect("release");
    let h = u.open(&ctx(), e.inode, libc::O_WRONLY | libc::O_APPEND).expect("open for writing");
    u.release(&ctx(), e.inode, h).expect("release");
    // Behind the union's back: a lookup answered from the name cache still finds it.
    fs::remove_file(f.upper.join("d/new")).expect("remove in the branch");
    let again = u.lookup(&ctx(), d.inode, OsStr::new("new")).expect("answered from the name cache");
    assert_eq!(again.inode, e.inode);
}

#[test]
fn a_lower_only_directory_listed_again_shows_changes_made_through_the_union() {
    let f = Fixture::new();
    fs::create_dir_all(f.base.join("img/bin")).expect("mkdir");
    fs::create_dir_all(f.lower.join("img/bin")).expect("mkdir");
    for i in 0..5 {
        fs::write(f.base.join(format!("img/bin/b{i}")), b"").expect("write");
    }
    fs::write(f.lower.join("img/bin/l0"), b"").expect("write");
    let u = f.union();
    let d = lookup(&u, "img/bin").expect("lookup").inode;
    let want = |n: &[&str]| n.iter().map(OsString::from).collect::<Vec<_>>();
    assert_eq!(names(&u, d), want(&["b0", "b1", "b2", "b3", "b4", "l0"]));
    // Listed again (served from what was merged): the same, with offsets that resume.
    let h = u.opendir(&ctx(), d, libc::O_RDONLY).expect("opendir");
    let all = u.readdir(&ctx(), d, h, 0, usize::MAX).expect("readdir");
    assert_eq!(all.iter().map(|e| e.offset).collect::<Vec<_>>(), (1..=8).collect::<Vec<u64>>());
    assert_eq!(u.readdir(&ctx(), d, h, 3, 2).expect("resume"), all[3..5].to_vec());
    u.releasedir(&ctx(), d, h).expect("releasedir");
    // A name made, one removed (a whiteout) and one renamed through the union: the directory
    // now has an upper part, and its listing shows all three changes.
    let (fh, _) = (u.create(&ctx(), d, OsStr::new("new"), 0o644, 0, libc::O_WRONLY).expect("create"), ());
    u.release(&ctx(), fh.0.inode, fh.1).expect("release");
    u.unlink(&ctx(), d, OsStr::new("b1")).expect("unlink a lower name");
    u.rename(&ctx(), d, OsStr::new("l0"), d, OsStr::new("l9"), 0).expect("rename");
    assert_eq!(names(&u, d), want(&["b0", "b2", "b3", "b4", "l9", "new"]));
}

/// A resolved name stays resolved through other names' changes (files made, renamed, linked
/// and removed beside it, a directory made and removed), and a name changed through the union
/// is resolved afresh: removed, renamed over, or in a directory removed and made again.
#[test]
fn resolved_names_survive_other_names_changes_and_changed_ones_are_resolved_again() {
    let f = Fixture::new();
    fs::create_dir(f.lower.join("d")).expect("lower dir");
    fs::write(f.lower.join("d/keep"), b"k").expect("lower file");
    let u = f.union();
    let c = ctx();
    let d = lookup(&u, "d").expect("d").inode;
    let keep = u.lookup(&c, d, OsStr::new("keep")).expect("keep");
    let name = OsStr::new;
    let (o, h) = u.create(&c, d, name("o1"), 0o644, 0, libc::O_RDWR).expect("create");
    u.release(&c, o.inode, h).expect("release");
    u.rename(&c, d, name("o1"), d, name("o2"), 0).expect("rename");
    u.link(&c, o.inode, d, name("o3")).expect("link");
    u.unlink(&c, d, name("o2")).expect("unlink");
    u.unlink(&c, d, name("o3")).expect("unlink");
    u.mkdir(&c, d, name("sub"), 0o755, 0).expect("mkdir");
    u.rmdir(&c, d, name("sub")).expect("rmdir");
    // Calls refused by the checks before any change (a directory not empty, a name there
    // already) forget nothing either.
    fs::create_dir_all(f.lower.join("d/full/x")).expect("lower dir");
    assert_eq!(code(u.rmdir(&c, d, name("full"))), libc::ENOTEMPTY);
    assert_eq!(code(u.mkdir(&c, d, name("full"), 0o755, 0)), libc::EEXIST);
    // Gone behind the union's back: still answered from the resolved names.
    fs::remove_file(f.lower.join("d/keep")).expect("remove in the branch");
    assert_eq!(u.lookup(&c, d, name("keep")).expect("from the resolved names").inode, keep.inode);

    // Changed through the union: resolved again.
    let (a, h) = u.create(&c, d, name("a"), 0o644, 0, libc::O_RDWR).expect("create a");
    u.release(&c, a.inode, h).expect("release");
    let (b, h) = u.create(&c, d, name("b"), 0o644, 0, libc::O_RDWR).expect("create b");
    u.release(&c, b.inode, h).expect("release");
    assert_eq!(u.lookup(&c, d, name("b")).expect("b").inode, b.inode);
    u.rename(&c, d, name("a"), d, name("b"), 0).expect("rename over");
    assert_eq!(u.lookup(&c, d, name("b")).expect("b after the rename").inode, a.inode);
    assert_eq!(code(u.lookup(&c, d, name("a"))), libc::ENOENT);
    u.unlink(&c, d, name("b")).expect("unlink");
    assert_eq!(code(u.lookup(&c, d, name("b"))), libc::ENOENT);
    // A directory's names go with it: one made again under the same name starts empty.
    let sub = u.mkdir(&c, d, name("sub"), 0o755, 0).expect("mkdir");
    let (g, h) = u.create(&c, sub.inode, name("g"), 0o644, 0, libc::O_RDWR).expect("create in sub");
    u.release(&c, g.inode, h).expect("release");
    assert_eq!(u.lookup(&c, sub.inode, name("g")).expect("g").inode, g.inode);
    u.unlink(&c, sub.inode, name("g")).expect("unlink g");
    assert_eq!(code(u.lookup(&c, sub.inode, name("g"))), libc::ENOENT);
    u.rmdir(&c, d, name("sub")).expect("rmdir");
    let again = u.mkdir(&c, d, name("sub"), 0o755, 0).expect("mkdir again");
    assert_eq!(code(u.lookup(&c, again.inode, name("g"))), libc::ENOENT);
    // A directory renamed onto itself is not replaced: what is in it is still found.
    let (k, h) = u.create(&c, again.inode, name("k"), 0o644, 0, libc::O_RDWR).expect("create in sub");
    u.release(&c, k.inode, h).expect("release");
    u.rename(&c, d, name("sub"), d, name("sub"), 0).expect("rename onto itself");
    assert_eq!(u.lookup(&c, again.inode, name("k")).expect("k after the rename").inode, k.inode);
}

/// A removed directory is dead for whoever still holds it: nothing is found, made, linked or
/// moved in it, and changing its attributes is `ENOENT` (not an `EEXIST` from copying it up
/// over its whiteout), as for a kernel directory.
#[test]
fn a_removed_directory_is_dead_for_whoever_holds_it() {
    let f = Fixture::new();
    fs::create_dir_all(f.lower.join("gone")).expect("lower dir");
    fs::write(f.lower.join("file"), b"x").expect("lower file");
    let u = f.union();
    let c = ctx();
    let name = OsStr::new;
    let gone = lookup(&u, "gone").expect("gone").inode;
    let file = lookup(&u, "file").expect("file").inode;
    u.rmdir(&c, ROOT_INODE, name("gone")).expect("rmdir");
    assert_eq!(code(u.lookup(&c, gone, name("x"))), libc::ENOENT);
    assert_eq!(code(u.create(&c, gone, name("x"), 0o644, 0, libc::O_RDWR)), libc::ENOENT);
    assert_eq!(code(u.mkdir(&c, gone, name("x"), 0o755, 0)), libc::ENOENT);
    assert_eq!(code(u.link(&c, file, gone, name("x"))), libc::ENOENT);
    assert_eq!(code(u.rename(&c, ROOT_INODE, name("file"), gone, name("x"), 0)), libc::ENOENT);
    let chmod = SetAttr { mode: Some(0o700), ..SetAttr::default() };
    assert_eq!(code(u.setattr(&c, gone, None, &chmod)), libc::ENOENT);
    // The name is free again: a new directory there is a new, empty one.
    let again = u.mkdir(&c, ROOT_INODE, name("gone"), 0o755, 0).expect("mkdir");
    assert_ne!(again.inode, gone);
    assert!(names(&u, again.inode).is_empty());
}

/// A handle's access mode is checked before anything else: a handle opened to read neither
/// writes, allocates nor sets a size (and copies nothing up trying), one opened only to write
/// does not read.
#[test]
fn a_handle_is_used_only_as_it_was_opened() {
    let f = Fixture::new();
    fs::write(f.lower.join("file"), b"lower bytes").expect("seed");
    let u = f.union();
    let e = lookup(&u, "file").expect("lookup");
    let ro = u.open(&ctx(), e.inode, libc::O_RDONLY).expect("open to read");
    let size = SetAttr { size: Some(0), ..SetAttr::default() };
    assert_eq!(code(u.setattr(&ctx(), e.inode, Some(ro), &size)), libc::EINVAL);
    assert_eq!(code(u.write(&ctx(), e.inode, ro, &[IoSlice::new(b"x")], 0)), libc::EBADF);
    assert_eq!(code(u.fallocate(&ctx(), e.inode, ro, 0, 0, 4096)), libc::EBADF);
    assert!(!f.upper.join("file").exists(), "a refused change copied the file up");
    let mut buf = [0u8; 32];
    assert_eq!(u.read(&ctx(), e.inode, ro, &mut [IoSliceMut::new(&mut buf)], 0).expect("read"), 11);
    // A size set with no handle (`truncate` of the path) is the permission checks' business.
    u.setattr(&ctx(), e.inode, None, &SetAttr { size: Some(5), ..SetAttr::default() }).expect("truncate by path");
    let wo = u.open(&ctx(), e.inode, libc::O_WRONLY).expect("open to write");
    assert_eq!(code(u.read(&ctx(), e.inode, wo, &mut [IoSliceMut::new(&mut buf)], 0)), libc::EBADF);
    assert_eq!(u.write(&ctx(), e.inode, wo, &[IoSlice::new(b"L")], 0).expect("write"), 1);
    u.release(&ctx(), e.inode, wo).expect("release");
    u.release(&ctx(), e.inode, ro).expect("release");
}

/// A file made at the bottom of a lower tree nested 2,000 directories deep copies every
/// ancestor up, and the union lets go of the chain, without recursing once per level: on a
/// thread with a 256 KiB stack (a worker's is 2 MiB; an image can nest directories until its
/// paths reach the tar limits).
#[test]
fn copy_up_of_a_very_deep_tree_needs_no_deep_stack() {
    use rustix::fs::{mkdirat, openat, Mode, OFlags};
    const DEPTH: usize = 2000;
    let f = Fixture::new();
    let mut dir = rustix::fs::open(&f.lower, OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).expect("open lower");
    for _ in 0..DEPTH {
        mkdirat(&dir, "d", Mode::from_raw_mode(0o755)).expect("mkdirat");
        dir = openat(&dir, "d", OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).expect("openat");
    }
    let u = f.union();
    let made = std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || {
            let mut cur = ROOT_INODE;
            for _ in 0..DEPTH {
                cur = u.lookup(&ctx(), cur, OsStr::new("d")).expect("lookup").inode;
            }
            let (e, h) = u.create(&ctx(), cur, OsStr::new("f"), 0o644, 0, libc::O_WRONLY).expect("create at the bottom");
            assert_eq!(u.write(&ctx(), e.inode, h, &[IoSlice::new(b"deep")], 0).expect("write"), 4);
            u.release(&ctx(), e.inode, h).expect("release");
            read_all(&u, e.inode)
        })
        .expect("thread")
        .join()
        .expect("the thread ran to its end");
    assert_eq!(made, b"deep");
}

/// Names made up by a tenant (a lookup of a new missing name each time, in one directory) cost
/// the union's name caches a bounded number of entries: past `NAMES_MAX` they start again.
/// (Only the number of directories was bounded: one directory's names grew without end.)
#[test]
fn missing_names_looked_up_hold_a_bounded_number_of_entries() {
    let f = Fixture::new();
    let u = f.union();
    let held = |u: &UnionFs| {
        let names: usize = lock(&u.names).values().map(|m| m.len()).sum();
        let absent: usize = lock(&u.absent).values().map(|m| m.len()).sum();
        (names, absent)
    };
    for i in 0..(NAMES_MAX + NAMES_MAX / 2) {
        assert!(lookup(&u, &format!("missing-{i}")).is_err());
        if i % 4096 == 0 {
            let (names, absent) = held(&u);
            assert!(names <= NAMES_MAX && absent <= NAMES_MAX, "{names} names and {absent} missing names held after {i} lookups");
        }
    }
    let (names, absent) = held(&u);
    assert!(names > 0 && names <= NAMES_MAX && absent <= NAMES_MAX, "{names} names and {absent} missing names held");
}

/// A file removed while its node is held (as the kernel holds a FUSE node id) keeps its union
/// number: a new file the branch's file system gives the removed one's `st_ino` gets another.
/// (It took the number over, so the holder of the old one reached the new file.)
#[test]
fn a_number_held_for_a_removed_file_never_names_a_new_one() {
    use std::os::unix::fs::MetadataExt;
    let f = Fixture::new();
    let upper: Arc<dyn FileSystem> = Arc::new(LocalFs::new(&f.upper, LocalOptions { max_descriptors: 16, ..LocalOptions::default() }).expect("upper"));
    let u = UnionFs::new(Some(upper), vec![]).expect("union");
    let c = ctx();
    let (a, h) = u.create(&c, ROOT_INODE, OsStr::new("a"), 0o600, 0, libc::O_RDWR).expect("create a");
    u.write(&c, a.inode, h, &[IoSlice::new(b"a's data")], 0).expect("write a");
    u.release(&c, a.inode, h).expect("release a");
    let host_ino = fs::metadata(f.upper.join("a")).expect("a").ino();
    // Still held (its lookup reference), removed, and let go of by the branch (past its
    // descriptor bound, as new files are made) so that the host may give its number again.
    u.unlink(&c, ROOT_INODE, OsStr::new("a")).expect("unlink a");
    let mut reused = None;
    for i in 0..4096 {
        let name = format!("n{i}");
        let (e, h) = u.create(&c, ROOT_INODE, OsStr::new(&name), 0o600, 0, libc::O_RDWR).expect("create");
        u.write(&c, e.inode, h, &[IoSlice::new(b"new data")], 0).expect("write");
        u.release(&c, e.inode, h).expect("release");
        if fs::metadata(f.upper.join(&name)).expect("new").ino() == host_ino {
            reused = Some(e);
            break;
        }
    }
    let Some(b) = reused else {
        panic!("the host never gave the removed file's inode number again: the test tests nothing");
    };
    assert_ne!(b.inode, a.inode, "the new file took the number a holder of the removed one still has");
    // The held number names the removed file (gone for good here: ESTALE), never the new one.
    if let Ok(x) = u.getattr(&c, a.inode, None) {
        assert_eq!(x.nlink, 0, "the held number names a live file");
    }
    if let Ok(h) = u.open(&c, a.inode, libc::O_RDONLY) {
        let mut buf = [0u8; 16];
        let n = u.read(&c, a.inode, h, &mut [IoSliceMut::new(&mut buf)], 0).unwrap_or(0);
        assert_ne!(&buf[..n], b"new data", "the held number reads the new file");
    }
}

/// A copy-up keeps a file's capabilities, as overlayfs does (its chown, after the attributes
/// were copied, dropped them), and leaves POSIX ACLs behind (instances have none: copied, the
/// host would enforce what the union neither shows nor checks).
#[test]
fn a_copy_up_keeps_file_capabilities_and_leaves_acls_behind() {
    if !rustix::process::geteuid().is_root() {
        return;
    }
    let f = Fixture::new();
    let ping = f.lower.join("ping");
    fs::write(&ping, b"binary").expect("lower file");
    // cap_net_raw+ep (a v2 `vfs_cap_data`), and an ACL giving uid 1000 read and write.
    let mut caps = Vec::new();
    for w in [0x0200_0001u32, 1 << 13, 0, 0, 0] {
        caps.extend_from_slice(&w.to_le_bytes());
    }
    rustix::fs::setxattr(&ping, "security.capability", &caps, rustix::fs::XattrFlags::empty()).expect("set the capability");
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [(0x01u16, 6u16, u32::MAX), (0x02, 6, 1000), (0x04, 4, u32::MAX), (0x10, 6, u32::MAX), (0x20, 4, u32::MAX)] {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&id.to_le_bytes());
    }
    rustix::fs::setxattr(&ping, "system.posix_acl_access", &acl, rustix::fs::XattrFlags::empty()).expect("set an ACL");
    let u = f.union();
    let e = lookup(&u, "ping").expect("lookup");
    u.setattr(&ctx(), e.inode, None, &SetAttr { mode: Some(0o755), ..SetAttr::default() }).expect("chmod: a copy-up");
    let upper = f.upper.join("ping");
    let mut got = vec![0u8; 64];
    let n = rustix::fs::getxattr(&upper, "security.capability", &mut got).expect("the capability in the upper branch");
    assert_eq!(&got[..n], &caps[..]);
    let acl = rustix::fs::getxattr(&upper, "system.posix_acl_access", &mut got);
    assert!(acl.is_err(), "an ACL was copied up");
}

/// A 0/0 character device is a whiteout in the upper branch: the union refuses to make one,
/// as overlayfs does (made by anyone, it hid the name rather than made one).
#[test]
fn a_whiteout_cannot_be_made_by_mknod() {
    let f = Fixture::new();
    fs::write(f.lower.join("seen"), b"x").expect("lower");
    let u = f.union();
    assert_eq!(code(u.mknod(&ctx(), ROOT_INODE, OsStr::new("wh"), libc::S_IFCHR | 0o644, 0, 0)), libc::EPERM);
    assert!(!f.upper.join("wh").exists() && lookup(&u, "seen").is_ok());
}

/// A copy-up leaves the times of the directories it copies into as they were, as overlayfs
/// does (each level's create and rename moved its parent's modification time to now).
#[test]
fn a_copy_up_leaves_its_directories_times_alone() {
    let f = Fixture::new();
    fs::create_dir(f.lower.join("d")).expect("mkdir");
    fs::write(f.lower.join("d/f"), b"x").expect("lower file");
    let old = rustix::fs::Timestamps { last_access: rustix::fs::Timespec { tv_sec: 1_000_000_000, tv_nsec: 0 }, last_modification: rustix::fs::Timespec { tv_sec: 1_000_000_000, tv_nsec: 0 } };
    for p in [f.lower.join("d"), f.upper.clone()] {
        rustix::fs::utimensat(rustix::fs::CWD, &p, &old, rustix::fs::AtFlags::empty()).expect("utimes");
    }
    let u = f.union();
    let e = lookup(&u, "d/f").expect("lookup");
    u.setattr(&ctx(), e.inode, None, &SetAttr { mode: Some(0o600), ..SetAttr::default() }).expect("chmod: copy-ups of d and f");
    assert!(f.upper.join("d/f").exists());
    for p in [f.upper.join("d"), f.upper.clone()] {
        assert_eq!(fs::metadata(&p).expect("upper").mtime(), 1_000_000_000, "{} changed with the copy-up", p.display());
    }
}
