//! `polytropon bench` runs every available path and reports every operation (figures are
//! checked for shape only: timing belongs in benchmarks, not in tests).

mod common;

use std::process::Command;

#[test]
fn micro_workload_reports_every_path_and_operation() {
    common::require_root();
    let scratch = common::Scratch::new("bench-smoke");
    let out = Command::new(env!("CARGO_BIN_EXE_polytropon"))
        .args(["bench", "--workload", "micro", "--reps", "1", "--ops", "20", "--min-time", "0", "--file-mib", "2", "--format", "json", "--dir"])
        .arg(scratch.path())
        .output()
        .expect("run bench");
    assert!(out.status.success(), "bench failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bench --format json prints JSON");
    let paths: Vec<&str> = report["paths"].as_array().expect("paths").iter().filter_map(|p| p.as_str()).collect();
    for p in ["fuse", "fuse-writeback", "fuse-direct", "fuse-overlayfs", "overlay", "kernel"] {
        assert!(paths.contains(&p), "path {p} missing from {paths:?} (skipped: {})", report["skipped"]);
    }
    let rows = report["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), paths.len() * 8, "one row per operation and path, and the first operation's");
    for r in rows {
        let median = r["median"].as_f64().expect("median");
        assert!(median.is_finite() && median > 0.0, "{r}");
    }
    // Nothing is left mounted under the benchmark directory.
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
    assert!(!mounts.contains(&scratch.path().display().to_string()), "bench left a mount behind");
    // Bad input is named.
    let out = Command::new(env!("CARGO_BIN_EXE_polytropon")).args(["bench", "--workload", "nope"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown workload \"nope\""));
    let out = Command::new(env!("CARGO_BIN_EXE_polytropon")).args(["bench", "--paths", "ceph-fuse"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ceph-fuse"));
}
