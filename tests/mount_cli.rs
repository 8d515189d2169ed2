//! `polytropon mount` / `umount` as an operator uses them: detached and foreground daemons,
//! signals, busy mounts, dead daemons, bad input.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::tree::{diff, kernel_tree};
use common::{require_root, Scratch};

struct Env {
    scratch: Scratch,
    state: PathBuf,
    lower: PathBuf,
    upper: PathBuf,
    mnt: PathBuf,
}

impl Env {
    fn new(tag: &str) -> Self {
        require_root();
        let scratch = Scratch::new(tag);
        let (state, lower, upper, mnt) = (scratch.mkdir("state"), scratch.mkdir("lower"), scratch.mkdir("upper"), scratch.mkdir("mnt"));
        std::fs::write(lower.join("image-file"), b"from the image\n").expect("seed");
        Env { scratch, state, lower, upper, mnt }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_polytropon"));
        c.arg("--state-dir").arg(&self.state);
        c
    }

    fn mount_args(&self, c: &mut Command) {
        c.arg("mount").arg(&self.mnt).arg("--lower").arg(&self.lower).arg("--upper").arg(&self.upper);
    }

    fn mount_detached(&self) -> u32 {
        let mut c = self.cmd();
        self.mount_args(&mut c);
        let out = c.arg("--detach").output().expect("run mount");
        assert!(out.status.success(), "mount --detach failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("mount --detach prints the daemon pid")
    }

    fn umount(&self) -> Output {
        self.cmd().arg("umount").arg(&self.mnt).output().expect("run umount")
    }

    fn mounted(&self) -> bool {
        let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let want = self.mnt.display().to_string();
        info.lines().any(|l| l.split(' ').nth(4) == Some(want.as_str()))
    }

    fn records(&self) -> Vec<String> {
        std::fs::read_dir(self.state.join("mounts"))
            .map(|rd| rd.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if self.mounted() {
            let _ = rustix::mount::unmount(&self.mnt, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn detached_mount_serves_and_umount_stops_the_daemon() {
    let e = Env::new("cli-detach");
    let pid = e.mount_detached();
    assert!(alive(pid));
    assert!(e.records().iter().any(|r| r.ends_with(".yaml")), "the daemon's pid is recorded: {:?}", e.records());
    let record = std::fs::read_to_string(e.state.join("mounts").join(e.records().into_iter().find(|r| r.ends_with(".yaml")).expect("record"))).expect("read record");
    assert!(record.contains(&format!("pid: {pid}")), "{record}");
    assert_eq!(std::fs::read_to_string(e.mnt.join("image-file")).expect("read"), "from the image\n");
    std::fs::write(e.mnt.join("new"), b"written through FUSE").expect("write");
    let again = { let mut c = e.cmd(); e.mount_args(&mut c); c.output().expect("run") };
    assert!(!again.status.success() && stderr(&again).contains("already a polytropon mount"), "{}", stderr(&again));
    let out = e.umount();
    assert!(out.status.success(), "umount: {}", stderr(&out));
    assert!(!e.mounted());
    wait_until("daemon exit", || !alive(pid));
    assert!(e.records().is_empty(), "records left: {:?}", e.records());
    assert_eq!(std::fs::read(e.upper.join("new")).expect("data in the upper branch"), b"written through FUSE");
}

#[test]
fn busy_umount_says_so_and_leaves_the_mount_working() {
    let e = Env::new("cli-busy");
    let pid = e.mount_detached();
    let held = std::fs::File::open(e.mnt.join("image-file")).expect("open a file on the mount");
    let out = e.umount();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("busy"), "{}", stderr(&out));
    assert!(e.mounted() && alive(pid), "a busy umount must not break the mount");
    assert_eq!(std::fs::read_to_string(e.mnt.join("image-file")).expect("still serving"), "from the image\n");
    drop(held);
    let out = e.umount();
    assert!(out.status.success(), "{}", stderr(&out));
    wait_until("daemon exit", || !alive(pid));
}

fn foreground(e: &Env) -> Child {
    let mut c = e.cmd();
    e.mount_args(&mut c);
    let child = c.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("start foreground mount");
    wait_until("the mount", || e.mounted());
    child
}

#[test]
fn sigterm_and_sigint_unmount_cleanly() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let e = Env::new("cli-signal");
        let mut child = foreground(&e);
        std::fs::write(e.mnt.join("f"), b"before the signal").expect("write");
        // SAFETY: plain kill(2) of our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "daemon did not exit on signal {sig}");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "daemon exit status {status:?} after signal {sig}");
        assert!(!e.mounted(), "signal {sig} left the mount behind");
        assert!(e.records().is_empty());
        assert_eq!(std::fs::read(e.upper.join("f")).expect("data"), b"before the signal");
    }
}

#[test]
fn a_dead_daemon_leaves_no_hung_mount() {
    let e = Env::new("cli-dead");
    let pid = e.mount_detached();
    std::fs::write(e.mnt.join("f"), b"x").expect("write");
    // SAFETY: plain kill(2) of the daemon we started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    wait_until("daemon death", || !alive(pid));
    // Access fails at once instead of hanging.
    let start = Instant::now();
    let err = std::fs::metadata(e.mnt.join("f")).expect_err("a dead mount cannot serve");
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(matches!(err.raw_os_error(), Some(libc::ENOTCONN) | Some(libc::ECONNABORTED) | Some(libc::ECANCELED)), "{err}");
    // The next mount on that point clears the dead one and serves again.
    let pid2 = e.mount_detached();
    assert_eq!(std::fs::read(e.mnt.join("f")).expect("read after restart"), b"x");
    let out = e.umount();
    assert!(out.status.success(), "{}", stderr(&out));
    wait_until("daemon exit", || !alive(pid2));
    // umount of a dead daemon's mount works too.
    let pid3 = e.mount_detached();
    // SAFETY: as above.
    unsafe { libc::kill(pid3 as i32, libc::SIGKILL) };
    wait_until("daemon death", || !alive(pid3));
    let out = e.umount();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!e.mounted());
}

#[test]
fn bad_input_is_named_and_nothing_is_mounted() {
    let e = Env::new("cli-bad");
    let run = |args: &[&std::ffi::OsStr]| e.cmd().args(args).output().expect("run");
    let os = |s: &str| std::ffi::OsString::from(s);
    // A branch that does not exist.
    let out = run(&[&os("mount"), e.mnt.as_os_str(), &os("--lower"), &os("/nonexistent/x"), &os("--upper"), e.upper.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("/nonexistent/x"), "{}", stderr(&out));
    // A broken spec: file, line and field are named.
    let spec = e.scratch.path().join("bad.yaml");
    std::fs::write(&spec, "branches:\n  - path: /tmp\n    mode: writable\n").expect("write spec");
    let out = run(&[&os("mount"), e.mnt.as_os_str(), &os("-f"), spec.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    let msg = stderr(&out);
    assert!(msg.contains("bad.yaml:3:") && msg.contains("branches[0].mode"), "{msg}");
    // The quick form is checked as a spec file is: one directory as two branches.
    let out = run(&[&os("mount"), e.mnt.as_os_str(), &os("--upper"), e.upper.as_os_str(), &os("--lower"), e.upper.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("same directory as branches[0]"), "{}", stderr(&out));
    // -f and the quick form together.
    let out = run(&[&os("mount"), e.mnt.as_os_str(), &os("-f"), spec.as_os_str(), &os("--upper"), e.upper.as_os_str()]);
    assert_eq!(out.status.code(), Some(2));
    // A mount point that is not there.
    let out = run(&[&os("mount"), &os("/nonexistent/mnt"), &os("--upper"), e.upper.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("/nonexistent/mnt"), "{}", stderr(&out));
    assert!(!e.mounted());
    // umount refuses what is not ours, and says when nothing is mounted.
    let out = e.umount();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not mounted"), "{}", stderr(&out));
    let tmpfs = e.scratch.mkdir("tmpfs");
    rustix::mount::mount("tmpfs", &tmpfs, "tmpfs", rustix::mount::MountFlags::empty(), None).expect("mount tmpfs");
    let out = run(&[&os("umount"), tmpfs.as_os_str()]);
    let msg = stderr(&out);
    let _ = rustix::mount::unmount(&tmpfs, rustix::mount::UnmountFlags::DETACH);
    assert_eq!(out.status.code(), Some(1));
    assert!(msg.contains("not a polytropon"), "{msg}");
}

#[test]
fn a_spec_file_mount_in_direct_mode() {
    let e = Env::new("cli-spec");
    let spec = e.scratch.path().join("c1.yaml");
    std::fs::write(
        &spec,
        format!(
            "backend: {{type: local}}\nbranches:\n  - {{path: {}, mode: rw}}\n  - {{path: {}, mode: ro}}\ncache:\n  mode: direct\n",
            e.upper.display(),
            e.lower.display()
        ),
    )
    .expect("write spec");
    let out = e.cmd().arg("mount").arg(&e.mnt).arg("-f").arg(&spec).arg("--detach").output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let ino = std::fs::metadata(e.mnt.join("image-file")).expect("stat").ino();
    std::fs::write(e.mnt.join("image-file"), b"changed").expect("write");
    assert_eq!(std::fs::read(e.mnt.join("image-file")).expect("read"), b"changed");
    assert_eq!(std::fs::metadata(e.mnt.join("image-file")).expect("stat").ino(), ino);
    assert_eq!(std::fs::read(e.lower.join("image-file")).expect("lower"), b"from the image\n", "the image branch is never written");
    assert!(e.umount().status.success());
    // `union: {redirect_dir: off}`: a directory of the image does not move (EXDEV, as
    // overlayfs with redirect_dir=off; `mv` then copies it).
    std::fs::create_dir(e.lower.join("image-dir")).expect("mkdir");
    let text = std::fs::read_to_string(&spec).expect("spec");
    std::fs::write(&spec, format!("{text}union:\n  redirect_dir: off\n")).expect("write spec");
    let out = e.cmd().arg("mount").arg(&e.mnt).arg("-f").arg(&spec).arg("--detach").output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let err = std::fs::rename(e.mnt.join("image-dir"), e.mnt.join("moved")).expect_err("redirect_dir off");
    assert_eq!(err.raw_os_error(), Some(libc::EXDEV));
    assert!(e.umount().status.success());
}

/// Issue 28: directories of the image renamed on the mount keep their contents through an
/// unmount, a killed daemon's successor, and kernel overlayfs mounting the same branches.
#[test]
fn renamed_image_directories_survive_remounts_restarts_and_kernel_overlayfs() {
    let e = Env::new("cli-redirect");
    std::fs::create_dir_all(e.lower.join("pkg/sub")).expect("mkdir");
    std::fs::write(e.lower.join("pkg/sub/file"), b"image data").expect("write");
    std::fs::write(e.lower.join("pkg/top"), b"top").expect("write");
    let pid = e.mount_detached();
    std::fs::rename(e.mnt.join("pkg"), e.mnt.join("pkg2")).expect("an image directory moves in place");
    std::fs::create_dir(e.mnt.join("other")).expect("mkdir");
    std::fs::rename(e.mnt.join("pkg2/sub"), e.mnt.join("other/sub2")).expect("a nested one into another directory");
    std::fs::write(e.mnt.join("other/sub2/new"), b"new").expect("write in a moved directory");
    let want = kernel_tree(&e.mnt);
    assert_eq!(want.get("other/sub2/file").and_then(|n| n.content.clone()), Some(b"image data".to_vec()), "{want:?}");
    assert!(!want.keys().any(|p| p.starts_with("pkg/") || p == "pkg"), "{want:?}");
    assert!(e.umount().status.success());
    wait_until("daemon exit", || !alive(pid));
    let pid = e.mount_detached();
    assert!(kernel_tree(&e.mnt) == want, "after umount and mount:\n{}", diff(&want, &kernel_tree(&e.mnt)));
    // SAFETY: plain kill(2) of the daemon we started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    wait_until("daemon death", || !alive(pid));
    e.mount_detached();
    assert!(kernel_tree(&e.mnt) == want, "after the daemon was killed and mounted again:\n{}", diff(&want, &kernel_tree(&e.mnt)));
    assert!(e.umount().status.success());
    // The upper branch is in overlayfs's format.
    let work = e.scratch.mkdir("work");
    let kmnt = e.scratch.mkdir("kernel");
    let overlay = common::Overlay::mount(std::slice::from_ref(&e.lower), &e.upper, &work, &kmnt);
    let theirs = kernel_tree(&overlay.mountpoint);
    assert!(theirs == want, "kernel overlayfs reads another tree:\n{}", diff(&want, &theirs));
}
