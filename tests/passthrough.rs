//! Backing-file descriptors on the user-level path (issue 25): in the `kernel` cache mode with
//! `--user-passthrough`, a
//! program under the library that opens a file of the writable branch gets the backing
//! file's descriptor, so its reads and writes are the kernel's own; names and attributes stay
//! the union's, a lower branch's file is never passed, the FUSE side sees the data after
//! close, and a holder can do nothing with the descriptor that the union would not let it.
//! By default (no flag), a large lower file opened to read is passed read-only, through a
//! read-only view of its branch, until it is copied up or changed.

mod common;

use std::path::Path;

use common::host::stderr;
use common::stage::{command, Stage};

/// Checks, run under the library on the mount; prints one line per finding.
const PROBE: &str = r#"
import os, sys
m = sys.argv[1]
def link(fd):
    return os.readlink(f"/proc/self/fd/{fd}")
# A new file of the writable branch: the backing file's descriptor.
fd = os.open(f"{m}/new", os.O_CREAT | os.O_RDWR, 0o644)
print("new passed", link(fd).endswith("/upper/new"))
os.write(fd, b"hello passthrough\n")
os.lseek(fd, 0, os.SEEK_SET)
print("read back", os.read(fd, 100) == b"hello passthrough\n")
st, sp = os.fstat(fd), os.stat(f"{m}/new")
print("union ids", (st.st_dev, st.st_ino) == (sp.st_dev, sp.st_ino), "size", sp.st_size)
os.fsync(fd)
os.close(fd)
# O_APPEND is the kernel's on the backing file.
fd = os.open(f"{m}/new", os.O_WRONLY | os.O_APPEND)
os.write(fd, b"appended\n")
os.close(fd)
# A file of the lower branch only, opened to read: never passed (the library's descriptor).
fd = os.open(f"{m}/lower-only", os.O_RDONLY)
print("lower passed", link(fd) != "/dev/null", os.read(fd, 100))
os.close(fd)
# Written, it is copied up first, then passed.
fd = os.open(f"{m}/lower-only", os.O_WRONLY | os.O_APPEND)
print("copied-up passed", link(fd).endswith("/upper/lower-only"))
os.write(fd, b"more\n")
os.close(fd)
"#;

/// As a user other than the owner: a descriptor passed for reading cannot be reopened for
/// writing through /proc, nor written.
const REOPEN: &str = r#"
import os, sys
m = sys.argv[1]
fd = os.open(f"{m}/roots", os.O_RDONLY)
print("passed", os.readlink(f"/proc/self/fd/{fd}").endswith("/upper/roots"))
try:
    os.open(f"/proc/self/fd/{fd}", os.O_WRONLY)
    print("reopened for writing")
except PermissionError:
    print("reopen refused")
try:
    os.write(fd, b"x")
    print("written")
except OSError as e:
    print("write refused", e.errno)
"#;

fn python(st: &Stage, script: &str, user: Option<u32>) -> String {
    let mut c = command(&st.h, Some(st.name.as_str()), Path::new("setpriv"));
    match user {
        Some(u) => c.args([format!("--reuid={u}"), format!("--regid={u}"), "--clear-groups".into()]),
        None => c.args(["--"]),
    };
    let out = c.args(["/usr/bin/python3", "-c", script]).arg(&st.mnt).output().expect("run python3");
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn writable_branch_files_are_the_kernels_and_lower_files_never_are() {
    let st = Stage::mounted_with("passthrough", "pt", "0-1", &["--user-passthrough"], |lower| std::fs::write(lower.join("lower-only"), b"from the image\n").expect("seed"));
    let out = python(&st, PROBE, None);
    for line in ["new passed True", "read back True", "union ids True size 18", "lower passed False b'from the image\\n'", "copied-up passed True"] {
        assert!(out.lines().any(|l| l == line), "missing {line:?} in:\n{out}");
    }
    // The FUSE side (a process without the library) sees what was written, after close.
    assert_eq!(std::fs::read(st.mnt.join("new")).expect("read through FUSE"), b"hello passthrough\nappended\n");
    assert_eq!(std::fs::read(st.mnt.join("lower-only")).expect("read through FUSE"), b"from the image\nmore\n");
    let counters = st.counters();
    let passed = counters["user_passthrough_opens"].as_u64().unwrap_or(0);
    assert!(passed >= 3, "the opens were not passed: {counters}");

    // A root-owned file readable by all (large enough to be passed to a reader): another user
    // gets it passed for reading only.
    let roots = vec![b'r'; 100 << 10];
    std::fs::write(st.mnt.join("roots"), &roots).expect("write through FUSE");
    let out = python(&st, REOPEN, Some(1000));
    assert_eq!(out, "passed True\nreopen refused\nwrite refused 9\n", "{out}");
    assert!(std::fs::read(st.mnt.join("roots")).expect("read") == roots, "the reader changed the file");
    st.destroy();

    // Without `--user-passthrough` (the default): nothing is passed.
    let st = Stage::mounted_with("no-passthrough", "np", "0-1", &[], |lower| std::fs::write(lower.join("lower-only"), b"from the image\n").expect("seed"));
    let out = python(&st, PROBE, None);
    assert!(out.lines().any(|l| l == "new passed False"), "{out}");
    assert_eq!(st.counters()["user_passthrough_opens"].as_u64(), Some(0));
    assert_eq!(std::fs::read(st.mnt.join("new")).expect("read through FUSE"), b"hello passthrough\nappended\n");
    st.destroy();
}

/// A large lower file opened to read (the default mode): checks, run under the library.
const LOWER: &str = r#"
import os, sys
m = sys.argv[1]
def link(fd):
    return os.readlink(f"/proc/self/fd/{fd}")
fd = os.open(f"{m}/layer-big", os.O_RDONLY)
print("lower passed", link(fd) != "/dev/null")
print("read", os.pread(fd, 8, 0), os.read(fd, 4))
# The library serves fchmod and the like by the union's rules (root may: a copy-up); the
# backing descriptor itself, called raw, changes nothing.
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
def raw(nr, *args):
    r = libc.syscall(nr, *args)
    return "allowed" if r == 0 else f"refused {ctypes.get_errno()}"
print("raw fchmod", raw(91, fd, 0o777))
print("raw fchown", raw(93, fd, 1, 1))
print("raw fsetxattr", raw(190, fd, b"user.x", b"1", 1, 0))
try:
    os.open(f"/proc/self/fd/{fd}", os.O_WRONLY)
    print("reopen allowed")
except OSError as e:
    print("reopen refused", e.errno)
try:
    os.write(fd, b"x")
    print("write allowed")
except OSError as e:
    print("write refused", e.errno)
st, sp = os.fstat(fd), os.stat(f"{m}/layer-big")
print("union ids", (st.st_dev, st.st_ino) == (sp.st_dev, sp.st_ino))
# Another open writes the file: it is copied up, and the reader sees the new bytes at once.
w = os.open(f"{m}/layer-big", os.O_WRONLY)
os.pwrite(w, b"CHANGED!", 0)
os.pwrite(w, b"later", 12)
os.close(w)
print("after copy-up", os.pread(fd, 8, 0), os.read(fd, 5))
print("offset", os.lseek(fd, 0, os.SEEK_CUR))
os.close(fd)
small = os.open(f"{m}/layer-small", os.O_RDONLY)
print("small passed", link(small) != "/dev/null")
os.close(small)
"#;

#[test]
fn large_lower_files_are_passed_read_only_until_they_change() {
    let big: Vec<u8> = (0..(256u32 << 10)).map(|i| b'a' + (i % 26) as u8).collect();
    let st = Stage::mounted_with("lower-passthrough", "lp", "0-1", &[], |lower| {
        std::fs::write(lower.join("layer-big"), &big).expect("seed");
        std::fs::write(lower.join("layer-small"), b"small\n").expect("seed");
        std::fs::write(lower.join("layer-other"), &big).expect("seed");
    });
    let out = python(&st, LOWER, None);
    // EROFS (30) for every change through the descriptor, root's included; EBADF (9) for a
    // write to a read-only descriptor.
    let want = "lower passed True\nread b'abcdefgh' b'abcd'\nraw fchmod refused 30\nraw fchown refused 30\nraw fsetxattr refused 30\nreopen refused 30\nwrite refused 9\nunion ids True\nafter copy-up b'CHANGED!' b'GED!i'\noffset 9\nsmall passed False\n";
    assert_eq!(out, want);
    assert!(st.counters()["user_passthrough_opens"].as_u64().unwrap_or(0) >= 1, "not passed: {}", st.counters());
    // The layer is as it was; the union has the change.
    assert_eq!(std::fs::read(st.h.scratch.path().join("lower/layer-big")).expect("read the layer"), big);
    let seen = std::fs::read(st.mnt.join("layer-big")).expect("read through FUSE");
    assert_eq!(&seen[..8], b"CHANGED!");
    // Another user, to whom a lower file is readable: passed, and a reopen for writing
    // refused (by the view, or by the file's mode).
    let out = python(&st, "import os, sys\nfd = os.open(sys.argv[1] + '/layer-other', os.O_RDONLY)\nprint(os.readlink(f'/proc/self/fd/{fd}') != '/dev/null')\ntry:\n    os.open(f'/proc/self/fd/{fd}', os.O_RDWR)\n    print('reopened')\nexcept OSError as e:\n    print('refused', e.errno)\n", Some(1000));
    assert!(out == "True\nrefused 30\n" || out == "True\nrefused 13\n", "{out}");

    // Two lower branches on one filesystem: each file is opened through its own branch's view.
    let (a, b, u, m) = (st.h.scratch.mkdir("two-a"), st.h.scratch.mkdir("two-b"), st.h.scratch.mkdir("two-up"), st.h.scratch.mkdir("two-mnt"));
    std::fs::write(a.join("in-a"), &big).expect("seed");
    std::fs::write(b.join("in-b"), &big).expect("seed");
    let path = |p: &Path| p.display().to_string();
    st.h.ok(&["mount", "--pool", &st.name, &path(&m), "--lower", &path(&a), "--lower", &path(&b), "--upper", &path(&u)]);
    let probe = "import os, sys\nfor n in ['in-a', 'in-b']:\n    fd = os.open(f'{sys.argv[1]}/{n}', os.O_RDONLY)\n    print(n, os.readlink(f'/proc/self/fd/{fd}'), os.pread(fd, 3, 0))\n";
    let mut c = command(&st.h, Some(st.name.as_str()), Path::new("/usr/bin/python3"));
    let out = c.args(["-c", probe]).arg(&m).output().expect("run python3");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "in-a /in-a b'abc'\nin-b /in-b b'abc'\n");
    st.h.ok(&["umount", "--pool", &st.name, &path(&m)]);
    st.destroy();
}

/// A file written on and on, under the library (the default mode): passed at its fourth data
/// call, through the writable branch's view. Prints one line per finding.
const BUSY: &str = r#"
import os, sys
m = sys.argv[1]
def link(fd):
    return os.readlink(f"/proc/self/fd/{fd}")
# A log: the first calls are the service's, then the descriptor is the backing file's, with
# the offset the program had.
fd = os.open(f"{m}/log", os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
links = []
for i in range(8):
    os.write(fd, b"line %d\n" % i)
    links.append(link(fd))
    print("offset", os.lseek(fd, 0, os.SEEK_CUR))
print("log first", links[0], "last", links[-1], "host path shown", any(m in l or "upper" in l for l in links))
print("sizes", os.stat(f"{m}/log").st_size, os.fstat(fd).st_size)
os.fsync(fd)
os.close(fd)
# Written at the offset, switched in the middle: the bytes land where they should.
fd = os.open(f"{m}/data", os.O_CREAT | os.O_RDWR, 0o644)
for i in range(6):
    os.write(fd, b"%d" % i * 10)
print("data passed", link(fd) == "/data", "offset", os.lseek(fd, 0, os.SEEK_CUR))
os.lseek(fd, 5, os.SEEK_SET)
os.write(fd, b"XX")
os.lseek(fd, 0, os.SEEK_SET)
print("data", os.read(fd, 100).decode())
# Marked executable through the union, still no program through the descriptor (noexec).
os.chmod(f"{m}/data", 0o755)
try:
    os.execv(f"/proc/self/fd/{fd}", ["x"])
except OSError as e:
    print("exec refused", e.errno)
os.close(fd)
# Written once or twice and closed: never passed. Read on and on: never passed.
fd = os.open(f"{m}/short", os.O_CREAT | os.O_WRONLY, 0o644)
os.write(fd, b"once\n")
os.write(fd, b"twice\n")
print("short", link(fd))
os.close(fd)
fd = os.open(f"{m}/short", os.O_RDONLY)
for i in range(8):
    os.pread(fd, 4, 0)
print("reader", link(fd))
os.close(fd)
"#;

/// Threads sharing one descriptor (no `O_APPEND`) write lines at the shared offset, half with
/// `write`, half with `writev`: as in the kernel, none is written over, whether the file is
/// served or passed in the middle. Twenty files, each passed while the threads write: a
/// thread that waited for the position lock while another passed the file used to hand it
/// over to the mount at a stale offset (lines were written over in about one file in four),
/// and `writev` took no position lock at all (every file).
const SHARED_OFFSET: &str = r#"
import os, sys, threading
bad = []
for r in range(20):
    path = sys.argv[1] + "/shared%d" % r
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    start = threading.Barrier(8)
    def writer(t):
        start.wait()
        for i in range(300):
            line = (b"t%d-%05d " % (t, i)).ljust(63, b".")
            if t % 2:
                os.writev(fd, [line, b"\n"])
            else:
                os.write(fd, line + b"\n")
    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    offset = os.lseek(fd, 0, os.SEEK_CUR)
    os.close(fd)
    lines = open(path, "rb").read().split(b"\n")
    n = len(set(l for l in lines if len(l) == 63))
    if (offset, n) != (153600, 2400):
        bad.append((r, offset, n))
print("offset", offset)
print("lines", n)
print("bad", bad)
"#;

#[test]
fn files_written_on_and_on_are_passed_through_a_view_of_the_writable_branch() {
    let st = Stage::mounted_with("busy-passthrough", "bp", "0-1", &[], |_| {});
    let out = python(&st, BUSY, None);
    let offsets: String = (1..=8).map(|i| format!("offset {}\n", i * 7)).collect();
    let want = format!("{offsets}log first /dev/null last /log host path shown False\nsizes 56 56\ndata passed True offset 60\ndata 00000XX00011111111112222222222333333333344444444445555555555\nexec refused 13\nshort /dev/null\nreader /dev/null\n");
    assert_eq!(out, want);
    let passes = st.counters()["user_ops"]["pass_file"]["count"].as_u64().unwrap_or(0);
    assert_eq!(passes, 2, "{}", st.counters());
    // The FUSE side (a process without the library) sees what was written, after close.
    let log: String = (0..8).map(|i| format!("line {i}\n")).collect();
    assert_eq!(std::fs::read_to_string(st.mnt.join("log")).expect("read through FUSE"), log);
    assert!(std::fs::read_to_string(st.mnt.join("data")).expect("read through FUSE").starts_with("00000XX000111"));
    // Another user writing its own file on and on gets it too; through the descriptor it
    // can do what the union lets it do with its file (a raw `fchmod` as the library's
    // `chmod`), and the kernel checks its own credentials for the rest.
    std::fs::set_permissions(&st.mnt, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).expect("chmod the root");
    let probe = "import os, sys, ctypes\nfd = os.open(sys.argv[1] + '/mine', os.O_CREAT | os.O_WRONLY, 0o644)\nfor i in range(6):\n    os.write(fd, b'x' * 100)\nprint(os.readlink(f'/proc/self/fd/{fd}'))\nlibc = ctypes.CDLL(None, use_errno=True)\nr = libc.syscall(91, fd, 0o4755)\nprint('raw fchmod', r, os.stat(sys.argv[1] + '/mine').st_mode & 0o7777)\nr = libc.syscall(93, fd, 0, 0)\nprint('raw fchown', r, ctypes.get_errno())\n";
    let out = python(&st, probe, Some(1000));
    assert_eq!(out, "/mine\nraw fchmod 0 2541\nraw fchown -1 1\n", "{out}");
    assert_eq!(python(&st, SHARED_OFFSET, None), "offset 153600\nlines 2400\nbad []\n");
    st.destroy();

    // Switched off in the spec's terms (`--no-busy-passthrough`), or under a quota: never.
    for args in [&["--no-busy-passthrough"][..], &["--quota", "100M"][..]] {
        let st = Stage::mounted_with("busy-off", "bo", "0-1", args, |_| {});
        let out = python(&st, BUSY, None);
        assert!(out.contains("log first /dev/null last /dev/null host path shown False\n") && out.contains("data passed False"), "{args:?}: {out}");
        assert!(out.contains("data 00000XX00011111111112222222222333333333344444444445555555555\n"), "{args:?}: {out}");
        assert_eq!(st.counters()["user_ops"]["pass_file"]["count"].as_u64().unwrap_or(0), 0, "{args:?}");
        assert_eq!(python(&st, SHARED_OFFSET, None), "offset 153600\nlines 2400\nbad []\n", "{args:?}");
        st.destroy();
    }
}

/// Holds argv[1] open to read through the FUSE mount (a passthrough open of a large lower
/// file) until its standard input ends.
const HOLD_OPEN: &str = r#"
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.read(fd, 10)
print("held", flush=True)
sys.stdin.read()
"#;

/// A large lower file held open for FUSE passthrough, then copied up and cut short on the
/// user-level path: later opens through the FUSE mount never read the lower file's stale
/// bytes through its registration (they used to, once the copy was under the passthrough
/// size and so not looked at): they get the copy, or `EBUSY` while the old open lasts (the
/// kernel lets an inode open for passthrough have no other backing file), never old data.
#[test]
fn a_copied_up_file_is_never_read_through_its_lower_files_registration() {
    let st = Stage::new("stale-backing", "sb", |lower| std::fs::write(lower.join("big"), vec![b'a'; 256 << 10]).expect("seed"));
    let file = st.mnt.join("big");
    let mut holder = command(&st.h, None, Path::new("/usr/bin/python3"))
        .args(["-c", HOLD_OPEN])
        .arg(&file)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(holder.stdout.as_mut().expect("stdout")), &mut line).expect("read");
    assert_eq!(line, "held\n");
    let out = command(&st.h, Some(st.name.as_str()), Path::new("sh")).args(["-c", &format!("printf new > {}", file.display())]).output().expect("sh");
    assert!(out.status.success(), "{}", stderr(&out));
    for _ in 0..3 {
        let got = std::process::Command::new("cat").arg(&file).output().expect("cat");
        let text = String::from_utf8_lossy(&got.stdout);
        assert!(got.status.success() && text == "new" || !got.status.success() && stderr(&got).contains("busy"), "a FUSE read of the copied-up file: {} bytes {:?}, {}", got.stdout.len(), text.chars().next(), stderr(&got));
    }
    drop(holder.stdin.take());
    let _ = holder.wait();
    let got = std::process::Command::new("cat").arg(&file).output().expect("cat");
    assert_eq!(String::from_utf8_lossy(&got.stdout), "new", "{}", stderr(&got));
    st.destroy();
}
