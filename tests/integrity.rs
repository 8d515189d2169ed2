//! Data integrity, fsx-style (`tests/py/fsx.py`): 100,000 random writes, reads, truncates,
//! fsyncs, reopenings and mmap reads of one file, each checked against a model of what the
//! file must hold, on a pool mount's FUSE path and on its user-level path (the same program
//! under the preload library; its mmaps hand descriptors over to the FUSE path, so the two
//! paths must agree on the same file), with a lower-branch file copied up first.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::host::{stderr, Host};

const OPS: &str = "100000";

fn fsx() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/fsx.py").display().to_string()
}

/// Reads or writes (`op`) served at user level (see `common::stage::user_data`).
fn user_ops(h: &Host, pool: &str, op: &str) -> u64 {
    let json: serde_json::Value = serde_json::from_str(&h.ok(&["inspect", "--pool", pool, "--format", "json"])).expect("json");
    common::stage::user_data(&json[0]["service"]["mounts"][0], op)
}

fn passed(out: &Output, what: &str, ops: &str) {
    assert!(out.status.success(), "fsx on the {what}: {}{}", String::from_utf8_lossy(&out.stdout), stderr(out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("fsx: {ops} operations")), "{what}");
}

/// With every data call the service's (`--no-busy-passthrough`: no file is passed to the
/// library once it proves busy).
#[test]
fn random_io_matches_the_model_on_the_fuse_and_user_level_paths() {
    fsx_on_both_paths("fsx", &["--no-busy-passthrough"], OPS);
}

/// The default mode: each (re)open of fsx's starts at user level and passes the backing file
/// at its fourth data call (`Op::PassFile`), so every run mixes the service's data calls, the
/// kernel's on the passed descriptor, and hand-overs to the FUSE side.
#[test]
fn random_io_matches_the_model_when_busy_files_are_passed() {
    fsx_on_both_paths("fsxbusy", &[], "30000");
}

/// The same with backing-file descriptors (`--user-passthrough`): the user-level run's reads
/// and writes are the kernel's, on the descriptor the service passes at each (re)open, and its
/// mmaps hand the file over to the FUSE side, which must see what was written.
#[test]
fn random_io_matches_the_model_with_backing_file_descriptors() {
    fsx_on_both_paths("fsxpass", &["--user-passthrough"], "30000");
}

/// The same through the pool's own cache (`--cache writethrough`): a small cache (evictions
/// all along), both paths on one file set, and the service's cache counters moving.
#[test]
fn random_io_matches_the_model_through_the_pools_own_cache() {
    fsx_on_both_paths("fsxcache", &["--cache", "writethrough", "--cache-size", "1M"], "30000");
}

/// The same with write-back (`--cache writeback`): writes stay dirty in a 2 MiB cache (1 MiB
/// dirty limit) until fsync, close, the limit or the flusher write them back.
#[test]
fn random_io_matches_the_model_through_a_write_back_cache() {
    fsx_on_both_paths("fsxwb", &["--cache", "writeback", "--cache-size", "2M"], "30000");
}

/// `tag` names the test's pool: cgroup names are global, so tests running at once need their
/// own (a pool destroyed with --force kills what runs in its cgroups).
fn fsx_on_both_paths(tag: &str, mount_args: &[&str], ops: &str) {
    common::require_root();
    let mut h = Host::new(tag);
    let pool = h.create("p", &["--cpus", "0-1"]);
    h.ok(&["service", "run", "--pool", &pool, "--detach"]);
    let (lower, upper, mnt) = (h.scratch.mkdir("lower"), h.scratch.mkdir("upper"), h.scratch.mkdir("mnt"));
    // A lower file the user-level run starts on: its first write copies it up.
    std::fs::write(lower.join("user.dat"), vec![7u8; 100_000]).expect("seed");
    let (l, u, m) = (lower.display().to_string(), upper.display().to_string(), mnt.display().to_string());
    let mut args = vec!["mount", "--pool", &pool, &m, "--lower", &l, "--upper", &u];
    args.extend_from_slice(mount_args);
    h.ok(&args);

    // The FUSE path: the program as is, on the mount.
    let out = Command::new("python3").arg(fsx()).arg(mnt.join("fuse.dat")).args([ops, "1"]).output().expect("python3");
    passed(&out, "FUSE path", ops);

    // The user-level path: the same program under the preload library, another seed.
    let (before, allocs) = (user_ops(&h, &pool, "write"), user_ops(&h, &pool, "fallocate"));
    let target = mnt.join("user.dat").display().to_string();
    let out = h.run(&["exec", "--pool", &pool, "--preload-only", "--", "python3", &fsx(), &target, ops, "2"]);
    passed(&out, "user-level path", ops);
    // Each reopening of fsx's is an open that passes the backing file (`kernel` mode), or
    // the writes and reads are the service's.
    let at_open = mount_args.contains(&"--user-passthrough");
    let busy = !at_open && !mount_args.contains(&"--no-busy-passthrough") && !mount_args.contains(&"--cache");
    let passing = at_open || busy;
    let least = if passing { 10 } else { ops.parse::<u64>().expect("ops") * 3 / 10 };
    if busy {
        let json: serde_json::Value = serde_json::from_str(&h.ok(&["inspect", "--pool", &pool, "--format", "json"])).expect("json");
        let passes = common::stage::count(&json[0]["service"]["mounts"][0], "user_ops", "pass_file");
        assert!(passes >= 10, "only {passes} busy files were passed");
    }
    let writes = user_ops(&h, &pool, "write") - before;
    assert!(writes >= least, "only {writes} writes arrived on the user-level path");
    assert!(user_ops(&h, &pool, "read") >= least, "reads did not arrive on the user-level path");
    // Allocations and punched holes (5 % of the operations) are the service's too, not
    // hand-overs (but a passed descriptor's are the kernel's).
    if !passing {
        let served = user_ops(&h, &pool, "fallocate") - allocs;
        assert!(served >= least / 10, "only {served} fallocate calls arrived on the user-level path");
    }
    if mount_args.contains(&"writethrough") || mount_args.contains(&"writeback") {
        let json: serde_json::Value = serde_json::from_str(&h.ok(&["inspect", "--pool", &pool, "--format", "json"])).expect("json");
        let c = &json[0]["service"]["cache"];
        let n = |k: &str| c[k].as_u64().unwrap_or(0);
        println!("cache: {c}");
        assert!(n("hits") > 1000 && n("misses") > 100 && n("evictions") > 0 && n("invalidations") > 1000, "the cache was not in use: {c}");
        assert!(n("bytes") + n("dirty") <= n("limit"), "{c}");
        if mount_args.contains(&"writeback") {
            assert!(n("writebacks") > 1000 && n("writeback_errors") == 0, "nothing was written back: {c}");
        }
    }
    // The lower file is untouched: the writes went to the copy-up.
    assert_eq!(std::fs::read(lower.join("user.dat")).expect("lower"), vec![7u8; 100_000]);
    h.ok(&["pool", "destroy", &pool, "--force"]);
    h.created.clear();
}
