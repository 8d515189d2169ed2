//! One file to install (issue 26): the binary alone, copied anywhere, runs everything (it
//! carries the preload library); and by the names `install-links` gives it, it is the
//! mount(8) and umount(8) helper of `mount -t polytropon` and of /etc/fstab.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::host::{stderr, Host};
use common::image_dir;
use polytropon::service::records::MountRecord;

const IMAGE: &str = "polytropon/test:latest";

/// Runs `cmd`. A binary copied just now may be "busy" for a moment: another test thread that
/// forked while the copy's descriptor was open holds it until that child execs (ETXTBSY).
fn run(cmd: &mut Command) -> Output {
    let mut tries = 0;
    loop {
        match cmd.output() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => return r.expect("run a command"),
        }
    }
}

fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(out.status.success(), "{cmd:?} failed: {}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_binary_alone_copied_to_an_empty_directory_runs_everything() {
    let mut h = Host::new("alone");
    std::fs::set_permissions(h.scratch.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod scratch");
    let bin = h.scratch.mkdir("bin");
    let exe = bin.join("polytropon");
    common::copy_program(Path::new(env!("CARGO_BIN_EXE_polytropon")), &exe);
    assert_eq!(std::fs::read_dir(&bin).expect("bin").count(), 1, "only the binary");
    let pool = h.name("p");
    h.created.push(pool.clone());
    let (state, data) = (h.state.clone(), h.data());
    let p = |args: &[&str]| {
        let mut c = Command::new(&exe);
        c.arg("--state-dir").arg(&state).arg("--data-dir").arg(&data).args(args);
        c
    };
    ok(&mut p(&["pool", "create", &pool, "--cpus", "0-1", "--pids-max", "2048"]));
    ok(&mut p(&["service", "run", "--pool", &pool, "--detach"]));
    let (upper, mnt) = (h.scratch.mkdir("upper"), h.scratch.mkdir("mnt"));
    let m = mnt.display().to_string();
    ok(&mut p(&["mount", "--pool", &pool, &m, "--upper", &upper.display().to_string()]));
    let out = ok(&mut p(&["exec", "--pool", &pool, "--preload-only", "--", "sh", "-c", &format!("echo alone > {m}/f && cat {m}/f && grep -c libpolytropon_preload /proc/self/maps")]));
    assert!(out.starts_with("alone\n"), "{out}");
    assert_eq!(std::fs::read(upper.join("f")).expect("written"), b"alone\n");
    // The library was placed under the state directory, named by its digest, and loaded from there.
    let libs: Vec<PathBuf> = std::fs::read_dir(h.state.join("lib")).expect("state/lib").map(|e| e.expect("entry").path().join("libpolytropon_preload.so")).collect();
    assert_eq!(libs.len(), 1, "{libs:?}");
    // Both link glibc only (libcephfs and librados are loaded at run time, if at all).
    for elf in [exe.as_path(), libs[0].as_path()] {
        let dynamic = ok(Command::new("readelf").arg("-d").arg(elf));
        let needed: Vec<&str> = dynamic.lines().filter(|l| l.contains("(NEEDED)")).filter_map(|l| l.split('[').nth(1)?.split(']').next()).collect();
        assert!(!needed.is_empty() && needed.iter().all(|n| ["libc.so.6", "libm.so.6", "ld-linux-x86-64.so.2"].contains(n)), "{} needs {needed:?}", elf.display());
    }
    let mode = std::fs::metadata(&libs[0]).expect("the placed library").permissions().mode();
    assert_eq!(mode & 0o7777, 0o444, "placed library mode {mode:o}");
    let json: serde_json::Value = serde_json::from_str(&ok(&mut p(&["inspect", "--pool", &pool, "--format", "json"]))).expect("json");
    let mount = &json[0]["service"]["mounts"][0];
    assert!(mount["user_ops"]["open_path"]["count"].as_u64().unwrap_or(0) >= 1, "no open on the user-level path: {mount}");
    // A small file's bytes come with its open (counted there).
    let reads = mount["user_ops"]["read"]["count"].as_u64().unwrap_or(0) + mount["user_prefetched_opens"].as_u64().unwrap_or(0);
    assert!(reads >= 1, "no read on the user-level path: {mount}");
    // A placed library that was changed is put back as the binary carries it.
    std::fs::set_permissions(&libs[0], std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::fs::write(&libs[0], b"not a library").expect("tamper");
    ok(&mut p(&["exec", "--pool", &pool, "--preload-only", "--", "cat", &format!("{m}/f")]));
    assert!(std::fs::read(&libs[0]).expect("library").len() > 100_000, "the tampered library was not replaced");
    // A container from an image, on the user-level path too.
    ok(&mut p(&["image", "import", image_dir().join("oci").to_str().expect("utf-8 path")]));
    let out = ok(&mut p(&["exec", "--pool", &pool, "--clone-of", IMAGE, "--", "sh", "-c", "echo in > /x && cat /x && grep -c /dev/.polytropon/libpolytropon_preload.so /proc/self/maps"]));
    assert!(out.starts_with("in\n") && out.lines().nth(1).and_then(|n| n.parse::<u32>().ok()).is_some_and(|n| n >= 1), "{out}");
    ok(&mut p(&["pool", "destroy", &pool, "--force"]));
    h.created.clear();
}

/// The helper links in /sbin (where mount(8) looks) for the test's duration: refuses to touch
/// files there that are not links to the test's binary, removes its own at the end.
struct Links;

impl Links {
    fn install() -> Links {
        for name in ["mount.polytropon", "mount.fuse.polytropon", "umount.fuse.polytropon"] {
            let p = Path::new("/sbin").join(name);
            if let Ok(target) = std::fs::read_link(&p) {
                assert_eq!(std::fs::canonicalize(target).ok(), std::fs::canonicalize(env!("CARGO_BIN_EXE_polytropon")).ok(), "{} belongs to another installation", p.display());
            } else {
                assert!(!p.exists(), "{} exists and is not ours", p.display());
            }
        }
        ok(Command::new(env!("CARGO_BIN_EXE_polytropon")).args(["install-links", "/sbin"]));
        Links
    }
}

impl Drop for Links {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_polytropon")).args(["install-links", "--remove", "/sbin"]).status();
    }
}

fn mounted(dir: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo").lines().any(|l| l.split(' ').nth(4) == dir.to_str())
}

#[test]
fn mount_dash_t_and_fstab_mount_instances_and_umount_takes_them_down() {
    let mut h = Host::new("mountt");
    let links = Links::install();
    let root = h.scratch.path().to_path_buf();
    let dirs = |tag: &str| -> [PathBuf; 5] {
        ["a", "b", "upper", "work", "mnt"].map(|d| {
            let p = root.join(tag).join(d);
            std::fs::create_dir_all(&p).expect("mkdir");
            p
        })
    };
    let state = h.state.clone();
    let mount = |args: &[&str]| {
        let mut c = Command::new("mount");
        c.env("POLYTROPON_STATE_DIR", &state).args(args);
        run(&mut c)
    };
    let umount = |dir: &Path| {
        let mut c = Command::new("umount");
        c.env("POLYTROPON_STATE_DIR", &state).arg(dir);
        ok(&mut c)
    };
    let s = |p: &Path| p.display().to_string();

    // Several lowers, topmost first, as overlayfs takes them; a daemon of its own.
    let [a, b, upper, work, mnt] = dirs("one");
    std::fs::write(a.join("f"), b"from a").expect("seed");
    std::fs::write(b.join("f"), b"from b").expect("seed");
    std::fs::write(b.join("g"), b"only b").expect("seed");
    let opts = format!("lowerdir={}:{},upperdir={},workdir={},nosuid", s(&a), s(&b), s(&upper), s(&work));
    let out = mount(&["-t", "polytropon", "none", &s(&mnt), "-o", &opts]);
    assert!(out.status.success(), "mount -t polytropon: {}", stderr(&out));
    assert_eq!(std::fs::read(mnt.join("f")).expect("f"), b"from a");
    assert_eq!(std::fs::read(mnt.join("g")).expect("g"), b"only b");
    std::fs::write(mnt.join("new"), b"up").expect("write");
    assert_eq!(std::fs::read(upper.join("new")).expect("copied up"), b"up");
    let line = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let line = line.lines().find(|l| l.split(' ').nth(4) == Some(&s(&mnt))).expect("in mountinfo");
    assert!(line.split(' ').nth(5).is_some_and(|o| o.split(',').any(|f| f == "nosuid")), "nosuid not applied: {line}");
    umount(&mnt);
    assert!(!mounted(&mnt), "still mounted");
    // The daemon saw its mount go, and went with its record.
    let since = std::time::Instant::now();
    while MountRecord::load(&state, &mnt).ok().flatten().is_some() && since.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(MountRecord::load(&state, &mnt).ok().flatten().is_none(), "the mount's record stayed");

    // One lower, in a pool's service.
    let pool = h.create("p", &["--cpus", "0-1"]);
    h.ok(&["service", "run", "--pool", &pool, "--detach"]);
    let [a, _, upper, _, mnt] = dirs("pool");
    std::fs::write(a.join("f"), b"pooled").expect("seed");
    let out = mount(&["-t", "polytropon", "none", &s(&mnt), "-o", &format!("lowerdir={},upperdir={},pool={pool},cache=writeback,cache_size=16M", s(&a), s(&upper))]);
    assert!(out.status.success(), "mount -t polytropon -o pool=: {}", stderr(&out));
    assert_eq!(std::fs::read(mnt.join("f")).expect("f"), b"pooled");
    assert_eq!(h.inspect(&pool)["service"]["mounts"][0]["mountpoint"].as_str(), Some(s(&mnt).as_str()));
    umount(&mnt);
    assert!(!mounted(&mnt), "still mounted");
    let served = || h.inspect(&pool)["service"]["mounts"].as_array().is_some_and(|m| !m.is_empty());
    let since = std::time::Instant::now();
    while served() && since.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!served(), "the service still serves it");

    // A line of an fstab, by `mount -a`.
    let [a, _, upper, work, mnt] = dirs("fstab");
    std::fs::write(a.join("f"), b"fstab").expect("seed");
    let fstab = h.scratch.path().join("test-fstab");
    std::fs::write(&fstab, format!("# test\nnone {} polytropon lowerdir={},upperdir={},workdir={},pool={pool},noauto 0 0\nnone {} polytropon lowerdir={},upperdir={},workdir={},pool={pool} 0 0\n", s(&h.scratch.mkdir("unused")), s(&a), s(&upper), s(&work), s(&mnt), s(&a), s(&upper), s(&work))).expect("fstab");
    let out = mount(&["-a", "-T", &s(&fstab)]);
    assert!(out.status.success(), "mount -a -T: {}", stderr(&out));
    assert_eq!(std::fs::read(mnt.join("f")).expect("f"), b"fstab");
    umount(&mnt);
    assert!(!mounted(&mnt), "still mounted");

    // Bad options name the option, and nothing is mounted.
    let [_, _, upper, _, mnt] = dirs("bad");
    for (opts, named) in [(format!("upperdir={},colour=blue", s(&upper)), "colour"), (format!("upperdir={},ro", s(&upper)), "\"ro\""), ("lowerdir=/nonexistent".to_string(), "upperdir=")] {
        let out = mount(&["-t", "polytropon", "none", &s(&mnt), "-o", &opts]);
        assert!(!out.status.success() && stderr(&out).contains(named), "{opts}: {}", stderr(&out));
        assert!(!mounted(&mnt), "{opts} mounted");
    }
    let out = mount(&["-t", "polytropon", "none", &s(&mnt), "-o", &format!("upperdir={}/missing", s(&upper))]);
    assert!(!out.status.success() && stderr(&out).contains("missing"), "{}", stderr(&out));
    drop(links);
    for name in ["mount.polytropon", "mount.fuse.polytropon", "umount.fuse.polytropon"] {
        assert!(std::fs::symlink_metadata(Path::new("/sbin").join(name)).is_err(), "{name} left in /sbin");
    }
    h.ok(&["pool", "destroy", &pool, "--force"]);
    h.created.clear();
}

/// The systemd unit template's commands are command lines this binary takes.
#[test]
fn the_systemd_unit_runs_commands_the_binary_takes() {
    use clap::Parser;
    let unit = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/systemd/polytropon-service@.service")).expect("unit");
    let mut seen = 0;
    for line in unit.lines().filter(|l| l.starts_with("ExecStart=") || l.starts_with("ExecStop=")) {
        let words: Vec<String> = line.split_once('=').expect("key=value").1.split_whitespace().map(|w| w.replace("%i", "tenant-a")).collect();
        assert!(words[0].ends_with("/polytropon"), "{line}");
        let cli = polytropon::cli::Cli::try_parse_from(&words);
        assert!(cli.is_ok(), "{line}: {:?}", cli.err());
        seen += 1;
    }
    assert_eq!(seen, 2, "ExecStart and ExecStop");
}
