//! The permission oracle (issue 23): random operations by processes of several identities
//! (root, root without capabilities, an owner, a member of the owner's group by a
//! supplementary group, another user, and a process that drops from root to another user
//! halfway) on a pool mount served on the user-level path and on a plain kernel directory:
//! the same errno for every operation, and the same tree after (owners, groups, modes with
//! set-id bits, sizes). `py/perm_oracle.py` drives the identities.

mod common;

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

/// Operations per seed (`POLYTROPON_PERM_OPS` to change).
fn ops() -> u32 {
    std::env::var("POLYTROPON_PERM_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(5000)
}

fn oracle(seed: u32) {
    common::require_root();
    let s = Scratch::new(&format!("perm-oracle-{seed}"));
    let (lower, upper, kernel) = (s.mkdir("lower"), s.mkdir("upper"), s.mkdir("kernel"));
    // Every identity must reach both trees.
    for d in [s.path(), upper.as_path(), kernel.as_path()] {
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    }
    let stats = Arc::new(OpStats::default());
    let table = Arc::new(std::sync::RwLock::new(vec![Some({
        let fs = union(&lower, &upper);
        let changes = polytropon::service::shm::changes::watch(&*fs, std::time::Duration::from_secs(1));
        UserInstance { fs, stats: stats.clone(), kernel: None, device: None, passthrough: false, changes, lower: None, upper: None }
    })]));
    let g = Geometry { queues: 1, slots: 64, clients: 16, buffer_size: 1 << 20 };
    let driver = BackDriver::start_table(table, g, &[], None, &common::channel_path()).expect("back driver");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/perm_oracle.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&upper)
        .arg(&kernel)
        .arg(seed.to_string())
        .arg(ops().to_string())
        .env("LD_PRELOAD", library())
        .env("POLYTROPON_CHANNEL", driver.channel())
        .env("POLYTROPON_MOUNTS", format!("{}=0", upper.display()))
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the oracle failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.lines().last(), Some(format!("ops {} mismatches 0", ops()).as_str()), "the user-level path answered otherwise than the kernel:\n{stdout}");
    // The identities' calls were served at user level (not all handed to the kernel).
    let served: u64 = stats.summary().values().map(|s| s.count).sum();
    assert!(served > u64::from(ops()), "only {served} user-level operations for {} calls", ops());
}

#[test]
fn permissions_match_the_kernel_seed_1() {
    oracle(1);
}

#[test]
fn permissions_match_the_kernel_seed_2() {
    oracle(2);
}

#[test]
fn permissions_match_the_kernel_seed_3() {
    oracle(3);
}

#[test]
fn permissions_match_the_kernel_seed_4() {
    oracle(4);
}
