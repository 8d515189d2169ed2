//! The user-level path serves each client with the credentials the kernel gives its thread
//! (issue 23): files it creates get its filesystem ids, and a process that drops its
//! privileges is served with what it has left. Real processes (python3) under the preload
//! library, a real back driver, its channel socket.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::{union, Scratch};
use polytropon::service::shm::{BackDriver, UserInstance};
use polytropon::service::stats::OpStats;
use polytropon_ipc::segment::Geometry;

fn library() -> PathBuf {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join(if cfg!(debug_assertions) { "debug" } else { "release" }).join("libpolytropon_preload.so");
    assert!(lib.exists(), "{} is missing: build the workspace first (`cargo build --workspace`, as scripts/test.sh does)", lib.display());
    lib
}

/// A back driver serving `upper` (over an empty lower) as instance 0, mounted (for the
/// library) at `upper` itself, so that the kernel path sees the same files; its counters.
fn serve(s: &Scratch, upper: &Path) -> (BackDriver, Arc<OpStats>) {
    let lower = s.mkdir("lower");
    let stats = Arc::new(OpStats::default());
    let table = Arc::new(std::sync::RwLock::new(vec![Some(UserInstance { fs: union(&lower, upper), stats: stats.clone(), kernel: None, device: None, passthrough: false, changes: None, lower: None, upper: None })]));
    let g = Geometry { queues: 1, slots: 64, clients: 8, buffer_size: 1 << 20 };
    let driver = BackDriver::start_table(table, g, &[], None, &common::channel_path()).expect("back driver");
    (driver, stats)
}

/// Runs python3 `script` (argument: the mount) under the library; its stdout.
fn run(driver: &BackDriver, mount: &Path, script: &str) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(mount)
        .env("LD_PRELOAD", library())
        .env("POLYTROPON_CHANNEL", driver.channel())
        .env("POLYTROPON_MOUNTS", format!("{}=0", mount.display()))
        .output()
        .expect("run python3");
    assert!(out.status.success(), "python3 failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn count(stats: &OpStats, op: &str) -> u64 {
    stats.summary().get(op).map_or(0, |s| s.count)
}

#[test]
fn a_process_that_drops_privileges_is_served_with_what_it_has_left() {
    common::require_root();
    let s = Scratch::new("creds-drop");
    let upper = s.mkdir("upper");
    std::fs::write(upper.join("secret"), b"root only").expect("seed");
    std::fs::set_permissions(upper.join("secret"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    let (driver, stats) = serve(&s, &upper);
    let script = r#"
import os, sys
p = sys.argv[1]
print(open(p + "/secret").read())
os.setgid(65534)
os.setuid(65534)
try:
    open(p + "/secret").read()
    print("read")
except PermissionError:
    print("EACCES")
"#;
    let before = count(&stats, "open_path");
    assert_eq!(run(&driver, &upper, script), "root only\nEACCES\n", "after setuid the process must not keep root's access");
    assert!(count(&stats, "open_path") > before, "root's open was served at user level");
}

#[test]
fn files_are_created_with_the_callers_filesystem_ids() {
    common::require_root();
    let s = Scratch::new("creds-fsid");
    let upper = s.mkdir("upper");
    std::fs::set_permissions(&upper, std::os::unix::fs::PermissionsExt::from_mode(0o777)).expect("chmod");
    let (driver, stats) = serve(&s, &upper);
    let script = r#"
import ctypes, os, sys
p = sys.argv[1]
libc = ctypes.CDLL(None)
os.close(os.open(p + "/before", os.O_CREAT | os.O_WRONLY, 0o644))
libc.setfsgid(4321)
libc.setfsuid(1234)
fd = os.open(p + "/new", os.O_CREAT | os.O_WRONLY, 0o644)
os.write(fd, b"x")
os.close(fd)
print("ok")
"#;
    let before = count(&stats, "open_path");
    assert_eq!(run(&driver, &upper, script), "ok\n");
    let b = std::fs::metadata(upper.join("before")).expect("created");
    assert_eq!((b.uid(), b.gid()), (0, 0), "made before the change, as root");
    let m = std::fs::metadata(upper.join("new")).expect("created");
    assert_eq!((m.uid(), m.gid()), (1234, 4321), "the file must belong to the caller's filesystem ids, as the kernel would make it");
    assert!(count(&stats, "open_path") >= before + 2, "both creates were served at user level");
}

/// An `O_CREAT` open of a name that is there when the service checks it, and gone by the time
/// it opens it, makes no file where the caller may not make one: the directory's checks run
/// first, as for a name that never was. Root makes and removes the name in a directory only
/// root may write, on the user-level path too (served by another worker), as fast as it can;
/// a process that dropped to nobody opens the name with `O_CREAT` meanwhile: it opens root's
/// file (made writable for all) or is refused, and never owns what it opened.
#[test]
fn a_name_removed_between_check_and_open_is_not_created_without_the_directorys_checks() {
    common::require_root();
    let s = Scratch::new("creds-create-race");
    let upper = s.mkdir("upper");
    let dir = upper.join("d");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let lower = s.mkdir("lower");
    let table = Arc::new(std::sync::RwLock::new(vec![Some(UserInstance { fs: union(&lower, &upper), stats: Arc::default(), kernel: None, device: None, passthrough: false, changes: None, lower: None, upper: None })]));
    // Two queues, each with its worker: the churn's requests and the opener's run at once.
    let g = Geometry { queues: 2, slots: 64, clients: 8, buffer_size: 1 << 20 };
    let driver = BackDriver::start_table(table, g, &[], None, &common::channel_path()).expect("back driver");
    let churn = r#"
import os, sys
p = sys.argv[1]
while not os.path.exists(p + "/stop"):
    try:
        fd = os.open(p + "/d/f", os.O_CREAT | os.O_WRONLY, 0o666)
        os.fchmod(fd, 0o666)
        os.close(fd)
        os.unlink(p + "/d/f")
    except OSError:
        pass
"#;
    let churn = Command::new("python3")
        .arg("-c")
        .arg(churn)
        .arg(&upper)
        .env("LD_PRELOAD", library())
        .env("POLYTROPON_CHANNEL", driver.channel())
        .env("POLYTROPON_MOUNTS", format!("{}=0", upper.display()))
        .spawn()
        .expect("start the churn");
    let script = r#"
import os, sys, time
p = sys.argv[1]
os.setgid(65534)
os.setuid(65534)
made = opened = 0
end = time.time() + 3
while time.time() < end:
    try:
        fd = os.open(p + "/d/f", os.O_CREAT | os.O_WRONLY, 0o644)
    except (PermissionError, FileNotFoundError):
        continue
    if os.fstat(fd).st_uid == 65534:
        made += 1
    else:
        opened += 1
    os.close(fd)
print(made, opened > 0)
"#;
    let out = run(&driver, &upper, script);
    std::fs::write(upper.join("stop"), b"").expect("stop the churn");
    let mut churn = churn;
    churn.wait().expect("the churn ends");
    assert_eq!(out, "0 True\n", "(files made by nobody, root's opened): nobody must never make a file in root's 0755 directory");
}

/// Credentials changed through `syscall(2)` rather than libc's wrappers (as Samba changes a
/// thread's) are seen too.
#[test]
fn credentials_changed_by_a_raw_system_call_are_seen() {
    common::require_root();
    let s = Scratch::new("creds-raw");
    let upper = s.mkdir("upper");
    std::fs::write(upper.join("secret"), b"root only").expect("seed");
    std::fs::set_permissions(upper.join("secret"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    let (driver, stats) = serve(&s, &upper);
    let script = format!(
        r#"
import ctypes, sys
p = sys.argv[1]
libc = ctypes.CDLL(None, use_errno=True)
print(open(p + "/secret").read())
assert libc.syscall({}, 65534, 65534, 65534) == 0
assert libc.syscall({}, 65534, 65534, 65534) == 0
try:
    open(p + "/secret").read()
    print("read")
except PermissionError:
    print("EACCES")
"#,
        libc::SYS_setresgid,
        libc::SYS_setresuid
    );
    let before = count(&stats, "open_path");
    assert_eq!(run(&driver, &upper, &script), "root only\nEACCES\n", "after a raw setresuid the process must not keep root's access");
    assert!(count(&stats, "open_path") > before, "root's open was served at user level");
}

/// After a process moves its paths (a mount namespace of its own with a file system mounted
/// over part of the pool's mount, or a `chroot`), a path names what the kernel says it
/// names: the library sends paths to the kernel from then on.
#[test]
fn paths_go_where_the_kernel_says_after_a_mount_namespace_or_a_chroot() {
    common::require_root();
    let s = Scratch::new("paths-moved");
    let upper = s.mkdir("upper");
    std::fs::create_dir_all(upper.join("sub")).expect("mkdir");
    std::fs::create_dir_all(upper.join("inner")).expect("mkdir");
    std::fs::write(upper.join("f"), b"pool").expect("seed");
    let (driver, stats) = serve(&s, &upper);
    // A tmpfs over `sub`, in a mount namespace of the process's own.
    let over = r#"
import ctypes, os, sys
p = sys.argv[1]
libc = ctypes.CDLL(None, use_errno=True)
print(open(p + "/f").read())
assert libc.unshare(0x00020000) == 0, os.strerror(ctypes.get_errno())
assert libc.mount(b"none", b"/", None, 0x4000 | 0x40000, None) == 0, os.strerror(ctypes.get_errno())
assert libc.mount(b"tmpfs", (p + "/sub").encode(), b"tmpfs", 0, None) == 0, os.strerror(ctypes.get_errno())
with open(p + "/sub/f", "w") as f:
    f.write("tmpfs")
print(open(p + "/sub/f").read())
"#;
    let before = count(&stats, "open_path");
    assert_eq!(run(&driver, &upper, over), "pool\ntmpfs\n");
    assert!(count(&stats, "open_path") > before, "the first open was served at user level");
    assert!(!upper.join("sub/f").exists(), "a write to the file system mounted over the pool's directory went to the pool");
    // A tmpfs over `sub` in the process's own namespace (unmounted at the end), crossed by a
    // path relative to a directory it opened before: the kernel crosses into the tmpfs.
    let below = r#"
import ctypes, os, sys
p = sys.argv[1]
libc = ctypes.CDLL(None, use_errno=True)
dfd = os.open(p + "/d", os.O_RDONLY | os.O_DIRECTORY)
os.close(os.open("sub/before", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=dfd))
assert libc.mount(b"tmpfs", (p + "/d/sub").encode(), b"tmpfs", 0, None) == 0, os.strerror(ctypes.get_errno())
try:
    os.close(os.open("sub/g", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=dfd))
    print(os.path.exists(p + "/d/sub/g"))
finally:
    assert libc.umount2((p + "/d/sub").encode(), 2) == 0, os.strerror(ctypes.get_errno())
"#;
    std::fs::create_dir_all(upper.join("d/sub")).expect("mkdir");
    let out = run(&driver, &upper, below);
    let _ = Command::new("umount").arg("-l").arg(upper.join("d/sub")).output();
    assert_eq!(out, "True\n");
    assert!(!upper.join("d/sub/g").exists(), "a file made relative to a directory descriptor went to the pool, not to the file system mounted below it");
    // A chroot into `inner`: the pool's path names nothing there.
    let chroot = r#"
import os, sys
p = sys.argv[1]
print(open(p + "/f").read())
os.chroot(p + "/inner")
try:
    open(p + "/f").read()
    print("read")
except FileNotFoundError:
    print("ENOENT")
"#;
    assert_eq!(run(&driver, &upper, chroot), "pool\nENOENT\n", "after chroot a path outside the new root was served");
}

/// A directory above the mount point that the process may not search keeps it out, as the
/// kernel would: the service checks only the directories below the instance's root.
#[test]
fn a_mount_point_under_a_directory_the_process_may_not_search_is_out_of_reach() {
    common::require_root();
    let s = Scratch::new("creds-reach");
    let locked = s.mkdir("locked");
    let upper = locked.join("upper");
    std::fs::create_dir(&upper).expect("mkdir");
    std::fs::write(upper.join("pub"), b"anyone").expect("seed");
    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o700)).expect("chmod");
    let (driver, stats) = serve(&s, &upper);
    let script = r#"
import os, sys
p = sys.argv[1]
print(open(p + "/pub").read())
os.setgid(65534)
os.setuid(65534)
try:
    open(p + "/pub").read()
    print("read")
except PermissionError:
    print("EACCES")
"#;
    let before = count(&stats, "open_path");
    assert_eq!(run(&driver, &upper, script), "anyone\nEACCES\n", "a user who may not search a directory above the mount point read under it");
    assert!(count(&stats, "open_path") > before, "root's open was served at user level");
}

/// A child forked by a raw `syscall(SYS_fork)` (no fork handlers run) connects with a client
/// of its own rather than use its parent's area.
#[test]
fn a_child_of_a_raw_fork_connects_on_its_own() {
    common::require_root();
    let s = Scratch::new("raw-fork");
    let upper = s.mkdir("upper");
    std::fs::write(upper.join("f"), b"shared").expect("seed");
    let (driver, _stats) = serve(&s, &upper);
    let script = format!(
        r#"
import ctypes, os, sys
p = sys.argv[1]
libc = ctypes.CDLL(None, use_errno=True)
print(open(p + "/f").read())
def connections():
    # The library's connections take descriptors from 512 up.
    return {{os.readlink(f"/proc/self/fd/{{fd}}") for fd in os.listdir("/proc/self/fd") if int(fd) >= 512 and os.readlink(f"/proc/self/fd/{{fd}}").startswith("socket:")}}
parents = connections()
pid = libc.syscall({})
if pid == 0:
    ok = open(p + "/f").read() == "shared"
    own = connections() - parents
    os._exit(1 if not ok else 0 if own else 2)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
"#,
        libc::SYS_fork
    );
    assert_eq!(run(&driver, &upper, &script), "shared\n0\n", "the child of a raw fork used its parent's connection (2), or failed (1)");
}
