//! Storage quotas (issue 30): a pool's `--storage`/`--inodes` and a mount's `--quota`, on the
//! FUSE path and on the user-level path of a real pool service. Past the limit every kind of
//! growth (a write, an append, a create, an mkdir, a symlink, a preallocation, a copy-up) is
//! refused with ENOSPC (EDQUOT for a mount's own quota); what was written below it reads back
//! intact; deleting frees; the count is rebuilt from the branches after `service stop` and
//! after kill -9; another pool is not limited.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::host::{output_within, stderr, Host};

const STORAGE: u64 = 6 << 20;
const INODES: u64 = 40;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/quota_client.py")
}

/// The pool's storage usage as `inspect` reports it: (bytes, inodes).
fn pool_usage(h: &Host, pool: &str) -> (u64, u64) {
    let s = &h.inspect(pool)["service"]["storage"];
    (s["bytes"].as_u64().expect("storage bytes"), s["inodes"].as_u64().expect("storage inodes"))
}

/// A mount of `pool` over a lower directory holding an 8 MiB file (bigger than the quota).
fn mount(h: &Host, pool: &str, tag: &str, extra: &[&str]) -> (PathBuf, PathBuf) {
    let (lower, upper, mnt) = (h.scratch.mkdir(&format!("{tag}-lower")), h.scratch.mkdir(&format!("{tag}-upper")), h.scratch.mkdir(&format!("{tag}-mnt")));
    let big: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(lower.join("lowerbig"), big).expect("lower file");
    let mut args = vec!["mount", "--pool", pool];
    let (m, l, u) = (mnt.display().to_string(), lower.display().to_string(), upper.display().to_string());
    args.extend([m.as_str(), "--lower", l.as_str(), "--upper", u.as_str()]);
    args.extend_from_slice(extra);
    h.ok(&args);
    (mnt, upper)
}

/// Runs the quota client in `dir` of `mnt`: through the library (`user`) or plainly (FUSE).
fn client(h: &Host, pool: &str, mnt: &Path, dir: &str, left: u64, user: bool) -> serde_json::Value {
    let mut c = if user {
        let mut c = h.cmd();
        c.args(["exec", "--pool", pool, "--preload-only", "--", "python3"]);
        c
    } else {
        std::process::Command::new("python3")
    };
    c.arg(script()).arg(mnt).arg(dir).arg(left.to_string());
    let out = output_within(c, "the quota client", Duration::from_secs(300));
    assert!(out.status.success(), "quota client ({}) failed: {}", if user { "user" } else { "fuse" }, stderr(&out));
    serde_json::from_slice(&out.stdout).expect("the client prints JSON")
}

/// What every path must show once past the limit; `over` is the errno expected.
fn check(r: &serde_json::Value, over: i64, path: &str) {
    let e = |k: &str| r[k].as_i64().unwrap_or_else(|| panic!("{path}: no {k} in {r}"));
    let t = |k: &str| r[k].as_bool().unwrap_or_else(|| panic!("{path}: no {k} in {r}"));
    assert!(e("big_write") == over || e("big_write") < 0, "{path}: a write past the quota: {r}");
    assert!(t("big_write_exact") && t("big_write_prefix_intact"), "{path}: a cut write left other than it said: {r}");
    assert_eq!(e("append"), over, "{path}: appends past the quota: {r}");
    assert!(t("appends_intact"), "{path}: acknowledged appends lost: {r}");
    assert_eq!(e("fallocate"), over, "{path}: preallocation past the quota: {r}");
    assert_eq!(e("fallocate_size"), 0, "{path}: a refused preallocation changed the size: {r}");
    assert_eq!(e("copy_up"), over, "{path}: a copy-up past the quota: {r}");
    assert!(t("copy_up_unchanged"), "{path}: a refused copy-up changed the file: {r}");
    assert_eq!(e("create"), over, "{path}: creates past the inode quota: {r}");
    assert_eq!(e("mkdir"), over, "{path}: mkdir past the inode quota: {r}");
    assert_eq!(e("symlink"), over, "{path}: symlink past the inode quota: {r}");
    assert_eq!(e("create_after_delete"), 0, "{path}: deleting did not free: {r}");
    assert!(t("keep_intact"), "{path}: data below the quota lost: {r}");
}

#[test]
fn a_pools_storage_quota_holds_on_both_paths_and_survives_restarts() {
    let mut h = Host::new("quota");
    let storage = STORAGE.to_string();
    let inodes = INODES.to_string();
    let pool = h.create("q", &["--storage", &storage, "--inodes", &inodes]);
    let free = h.create("free", &[]);
    h.ok(&["service", "run", "--pool", &pool, "--detach"]);
    h.ok(&["service", "run", "--pool", &free, "--detach"]);
    let (mnt, upper) = mount(&h, &pool, "a", &[]);
    assert_eq!(pool_usage(&h, &pool), (0, 0), "an empty upper branch holds nothing");

    // The FUSE path (no library), then the user-level path on the same mount.
    let fuse = client(&h, &pool, &mnt, "fuse", STORAGE, false);
    check(&fuse, i64::from(libc::ENOSPC), "fuse");
    let before = h.inspect(&pool)["service"]["mounts"][0]["user_ops"]["open_path"]["count"].as_u64().unwrap_or(0);
    let (bytes, _) = pool_usage(&h, &pool);
    let user = client(&h, &pool, &mnt, "user", STORAGE - bytes, true);
    check(&user, i64::from(libc::ENOSPC), "user");
    let after = h.inspect(&pool)["service"]["mounts"][0]["user_ops"]["open_path"]["count"].as_u64().unwrap_or(0);
    assert!(after >= before + 40, "the user-level run was not served at user level ({before} -> {after} opens)");

    // What is left: two directories with 1 MiB each.
    let held = pool_usage(&h, &pool);
    assert_eq!(held, (2 << 20, 4), "usage after both runs (two dirs, two 1 MiB files)");
    let df = output_within({
        let mut c = std::process::Command::new("df");
        c.args(["-B1", "--output=size,avail"]).arg(&mnt);
        c
    }, "df", Duration::from_secs(30));
    let sizes: Vec<u64> = String::from_utf8_lossy(&df.stdout).split_whitespace().filter_map(|w| w.parse().ok()).collect();
    assert_eq!(sizes.first().copied(), Some(STORAGE), "df shows the quota as the mount's size: {sizes:?}");

    // The metrics say the same.
    let metrics = h.ok(&["inspect", "--pool", &pool, "--format", "openmetrics"]);
    let line = |name: &str| metrics.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert_eq!(line("polytropon_pool_storage_bytes{"), Some(held.0 as f64), "{metrics}");
    assert_eq!(line("polytropon_pool_storage_limit_bytes{"), Some(STORAGE as f64), "{metrics}");
    assert_eq!(line("polytropon_pool_storage_inodes{"), Some(held.1 as f64), "{metrics}");

    // Rebuilt from the branches, not from a record: after a clean stop and start...
    h.ok(&["service", "stop", "--pool", &pool]);
    h.ok(&["service", "run", "--pool", &pool, "--detach"]);
    h.ok(&["mount", "--pool", &pool, &mnt.display().to_string(), "--lower", &h.scratch.path().join("a-lower").display().to_string(), "--upper", &upper.display().to_string()]);
    assert_eq!(pool_usage(&h, &pool), held, "usage after service stop and start");
    // ...and after kill -9 (the successor serves the recorded mounts again).
    let pid = h.inspect(&pool)["service"]["pid"].as_i64().expect("service pid");
    // SAFETY: kill(2) with a pid read from the service's report.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let gone = std::time::Instant::now();
    while polytropon::pool::state::pid_alive(pid as u32) && gone.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    h.ok(&["service", "run", "--pool", &pool, "--detach"]);
    // The successor serves the mounts its predecessor recorded.
    let back = std::time::Instant::now();
    while h.inspect(&pool)["service"]["mounts"].as_array().is_none_or(|m| m.is_empty()) && back.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(h.state.join("pools").join(&pool).join("service.log")).unwrap_or_default();
    assert_eq!(pool_usage(&h, &pool), held, "usage after kill -9 and a new service; its log:\n{log}");
    // Still enforced: what is left takes no 6 MiB file.
    let refused = std::fs::write(mnt.join("fuse/more"), vec![7u8; STORAGE as usize]);
    assert_eq!(refused.map_err(|e| e.raw_os_error()), Err(Some(libc::ENOSPC)), "the quota after the restart");
    let _ = std::fs::remove_file(mnt.join("fuse/more"));

    // Another pool is not limited: 8 MiB is fine there.
    let (other, _) = mount(&h, &free, "b", &[]);
    std::fs::write(other.join("plenty"), vec![1u8; 8 << 20]).expect("a pool without a quota takes 8 MiB");
    assert!(h.inspect(&free)["service"]["storage"].is_null(), "a pool without a quota reports none");
}

#[test]
fn a_mounts_own_quota_gives_edquot_and_frees_on_unmount() {
    let mut h = Host::new("mquota");
    let pool = h.create("m", &["--storage", "64M"]);
    h.ok(&["service", "run", "--pool", &pool, "--detach"]);
    let quota = format!("{STORAGE},{INODES}");
    let (mnt, _) = mount(&h, &pool, "a", &["--quota", &quota]);
    let r = client(&h, &pool, &mnt, "fuse", STORAGE, false);
    check(&r, i64::from(libc::EDQUOT), "fuse, mount quota");
    let m = &h.inspect(&pool)["service"]["mounts"][0]["storage"];
    assert_eq!((m["bytes"].as_u64(), m["inodes"].as_u64(), m["bytes_max"].as_u64()), (Some(1 << 20), Some(2), Some(STORAGE)), "the mount's usage: {m}");
    assert_eq!(pool_usage(&h, &pool), (1 << 20, 2), "the pool counts the mount's branch");
    h.ok(&["umount", "--pool", &pool, &mnt.display().to_string()]);
    assert_eq!(pool_usage(&h, &pool), (0, 0), "an unmounted instance no longer counts against the pool");
    // Bad values are refused with the field named.
    for bad in ["0", "lots", "1G,zero", ","] {
        let out = h.run(&["mount", "--pool", &pool, &mnt.display().to_string(), "--upper", &h.scratch.path().join("a-upper").display().to_string(), "--quota", bad]);
        assert!(!out.status.success() && stderr(&out).contains("--quota"), "--quota {bad}: {}", stderr(&out));
    }
    let out = h.run(&["pool", "create", &h.name("bad"), "--storage", "0"]);
    assert!(!out.status.success() && stderr(&out).contains("--storage"), "--storage 0: {}", stderr(&out));
}

/// What a red-team pass found in the first version, each on both paths: preallocated space
/// kept across a truncate up, a file removed while open, a tenant's 0/0 device.
#[test]
fn preallocation_open_removed_files_and_devices_count() {
    let mut h = Host::new("quotarT");
    let pool = h.create("r", &["--storage", "8M", "--inodes", "20"]);
    h.ok(&["service", "run", "--pool", &pool, "--detach"]);
    let (mnt, _) = mount(&h, &pool, "a", &[]);
    for (user, dir) in [(false, "fuse"), (true, "user")] {
        let run = |script: &str| {
            let mut c = if user {
                let mut c = h.cmd();
                c.args(["exec", "--pool", &pool, "--preload-only", "--", "sh"]);
                c
            } else {
                std::process::Command::new("sh")
            };
            c.args(["-c", script]).current_dir(&mnt);
            output_within(c, "a shell on the mount", Duration::from_secs(60))
        };
        std::fs::create_dir(mnt.join(dir)).expect("dir");
        // Preallocate 3 MiB past the end, cut the size up to 1 byte: the blocks stay, and
        // the third such file is past 8 MiB.
        let out = run(&format!("for i in 1 2 3; do touch {dir}/p$i && fallocate -n -l 3M {dir}/p$i && truncate -s 1 {dir}/p$i || exit 9; done"));
        assert_eq!(out.status.code(), Some(9), "{dir}: preallocation past the quota was not refused: {}", stderr(&out));
        assert!(pool_usage(&h, &pool).0 >= 6 << 20, "{dir}: preallocated space not counted: {:?}", pool_usage(&h, &pool));
        let out = run(&format!("rm {dir}/p*"));
        assert!(out.status.success(), "{}", stderr(&out));
        // A file removed while open counts until it is closed.
        let out = run(&format!("exec 3>{dir}/open && head -c 2097152 /dev/zero >&3 && rm {dir}/open && exec 3>&-"));
        assert!(out.status.success(), "{}", stderr(&out));
        // (The handles of a process that ended without closing them are released by the
        // service's janitor, within a second or so.)
        let since = std::time::Instant::now();
        while pool_usage(&h, &pool).0 >= 1 << 20 && since.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(pool_usage(&h, &pool).0 < 1 << 20, "{dir}: a closed removed file still counts: {:?}", pool_usage(&h, &pool));
        // A device node counts an inode; a 0/0 one (a whiteout's form) is refused, as on
        // overlayfs, and takes none.
        let before = pool_usage(&h, &pool).1;
        let out = run(&format!("mknod {dir}/dev c 1 3"));
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(pool_usage(&h, &pool).1, before + 1, "{dir}: mknod c 1 3 took no inode");
        let out = run(&format!("mknod {dir}/wh c 0 0"));
        assert!(!out.status.success() && stderr(&out).contains("not permitted"), "{dir}: mknod c 0 0: {}", stderr(&out));
        assert_eq!(pool_usage(&h, &pool).1, before + 1, "{dir}: a refused mknod c 0 0 took an inode");
    }
}

#[test]
fn a_file_removed_while_open_counts_until_its_last_close() {
    let mut h = Host::new("quotaOpen");
    let pool = h.create("o", &["--storage", "8M"]);
    h.ok(&["service", "run", "--pool", &pool, "--detach"]);
    let (mnt, _) = mount(&h, &pool, "a", &[]);
    let path = mnt.join("held");
    let mut f = std::fs::File::create(&path).expect("create");
    std::io::Write::write_all(&mut f, &vec![3u8; 3 << 20]).expect("write");
    std::fs::remove_file(&path).expect("unlink while open");
    assert_eq!(pool_usage(&h, &pool).0, 3 << 20, "removed but open: still on disk, still counted");
    std::io::Write::write_all(&mut f, &vec![3u8; 1 << 20]).expect("write after the unlink");
    assert_eq!(pool_usage(&h, &pool).0, 4 << 20);
    drop(f);
    let closed = std::time::Instant::now();
    while pool_usage(&h, &pool).0 != 0 && closed.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(pool_usage(&h, &pool).0, 0, "given back at the last close");
}
