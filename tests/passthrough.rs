//! Backing-file descriptors on the user-level path (issue 25): in the `kernel` cache mode with
//! `--user-passthrough`, a
//! program under the library that opens a file of the writable branch gets the backing
//! file's descriptor, so its reads and writes are the kernel's own; names and attributes stay
//! the union's, a lower branch's file is never passed, the FUSE side sees the data after
//! close, and a holder can do nothing with the descriptor that the union would not let it.

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
