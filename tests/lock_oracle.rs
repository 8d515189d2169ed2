//! The lock oracle (issue 31): four worker processes take, upgrade, split and release POSIX
//! record locks, open-file-description locks, `flock` and `lockf` locks, wait for them
//! (granted, `EDEADLK`, or interrupted by a signal: `EINTR`), and open, close, dup and fork,
//! on three files; `py/lock_oracle.py` records every result. Once on a plain kernel directory,
//! once on a pool mount with workers 0 and 2 under the library (their locks on the user-level
//! path's files) and 1 and 3 on the FUSE path: the same record, op by op. The library's
//! workers take no lock by handing a file over to the kernel.

mod common;

use std::path::Path;
use std::process::Command;

use common::host::stderr;
use common::stage::Stage;
use serde_json::Value;

/// Operations per seed (`POLYTROPON_LOCK_OPS` to change); four seeds in CI: 10,000 in all.
fn ops() -> u32 {
    std::env::var("POLYTROPON_LOCK_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(2500)
}

/// Runs the oracle on `dir` with `seed`, workers 0 and 2 under `prefix` when given: the record.
fn record(stage: &Stage, dir: &Path, seed: u32, prefix: Option<&[String]>) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/lock_oracle.py");
    let out_file = stage.h.scratch.path().join(format!("locks-{seed}-{}.json", prefix.is_some()));
    let mut c = Command::new("python3");
    c.arg(&script).arg("run").arg(dir).arg(seed.to_string()).arg(ops().to_string()).arg(&out_file);
    if let Some(p) = prefix {
        let json = serde_json::to_string(p).expect("json");
        for w in ["0", "2"] {
            c.args(["--prefix", w, &json]);
        }
    }
    let out = c.output().expect("run python3");
    assert!(out.status.success(), "the oracle failed (seed {seed}): {}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    eprintln!("seed {seed} on {}: {}", dir.display(), String::from_utf8_lossy(&out.stdout).trim());
    let text = std::fs::read_to_string(&out_file).expect("the record");
    serde_json::from_str::<Vec<Value>>(&text).expect("a record in json")
}

#[test]
fn locks_on_both_paths_match_the_kernel() {
    let stage = Stage::on_cpus("lockoracle", "lk", "0-1", |_| {});
    let mut prefix: Vec<String> = vec![env!("CARGO_BIN_EXE_polytropon").into(), "--state-dir".into(), stage.h.state.display().to_string(), "--data-dir".into(), stage.h.data().display().to_string()];
    prefix.extend(["exec", "--pool", &stage.name, "--preload-only", "--"].map(String::from));
    let (mut waits, mut interrupted) = (0, 0);
    for seed in 1..=4 {
        let plain = record(&stage, &stage.plain, seed, None);
        let pool = record(&stage, &stage.mnt, seed, Some(&prefix));
        if let Some(k) = plain.iter().zip(&pool).position(|(a, b)| a != b).or((plain.len() != pool.len()).then(|| plain.len().min(pool.len()))) {
            let context: Vec<String> = plain[k.saturating_sub(15)..k].iter().map(ToString::to_string).collect();
            panic!(
                "seed {seed}: op {k} differs\n  plain kernel directory: {}\n  pool mount:             {}\nbefore it (plain):\n  {}",
                plain.get(k).map_or("(end)".into(), ToString::to_string),
                pool.get(k).map_or("(end)".into(), ToString::to_string),
                context.join("\n  ")
            );
        }
        waits += plain.iter().filter(|e| e[1] == "granted").count();
        interrupted += plain.iter().filter(|e| e[1] == "interrupted" && e[2] == "EINTR").count();
    }
    eprintln!("{waits} waits granted after blocking, {interrupted} interrupted by a signal");
    assert!(waits > 0 && interrupted > 0, "the sequences should have blocked and been interrupted: {waits} granted, {interrupted} interrupted");
    // The library's workers kept their files: no hand-over for a lock (forks hand files over).
    let m = stage.counters();
    assert!(m["user_handovers"].get("lock").is_none(), "locks handed files over to the kernel: {}", m["user_handovers"]);
    assert!(common::stage::count(&m, "user_ops", "open_path") > 300, "too few user-level opens: {}", m["user_ops"]);
}
