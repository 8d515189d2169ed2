//! The concurrent oracle (issue 25): several processes with several threads each work on one
//! pool mount at once under the preload library, and on a plain kernel directory; every
//! worker's sequence of outcomes, its final tree, and the invariants of the shared races
//! (whole appends, one exclusive creator per round, a whole rename target, disjoint pwrites)
//! must come out the same (`tests/py/concurrent_oracle.py`). Their requests must have taken
//! the user-level path.

mod common;

use std::path::Path;

use common::host::stderr;
use common::stage::{command, count, user_data, Stage};

fn oracle(st: &Stage, preloaded: bool, dir: &Path, seed: u32) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/concurrent_oracle.py");
    let out = command(&st.h, preloaded.then_some(st.name.as_str()), Path::new("python3")).arg(&script).arg(dir).arg(seed.to_string()).output().expect("run python3");
    assert!(out.status.success(), "the oracle failed ({}): {}", if preloaded { "user-level path" } else { "kernel" }, stderr(&out));
    serde_json::from_slice(&out.stdout).expect("the oracle prints JSON")
}

#[test]
fn many_threads_and_processes_at_once_get_the_kernels_answers() {
    let st = Stage::on_cpus("concurrent", "c", "0-1", |_| {});
    let before = st.counters();
    for seed in [1, 2] {
        let run = format!("run{seed}");
        let (plain, mnt) = (st.plain.join(&run), st.mnt.join(&run));
        let want = oracle(&st, false, &plain, seed);
        let got = oracle(&st, true, &mnt, seed);
        for invariant in ["appends_whole_and_once", "exclusive_winners_per_round", "rename_target_whole", "pwrite_blocks_right"] {
            assert_eq!(want[invariant], true, "the kernel broke {invariant}");
            assert_eq!(got[invariant], true, "the user-level path broke {invariant} (seed {seed})");
        }
        for (k, v) in want.as_object().expect("summary") {
            if k == "logs" {
                for (worker, log) in v.as_object().expect("logs") {
                    let theirs = got["logs"][worker].as_array().expect("the worker's log");
                    for (i, step) in log.as_array().expect("log").iter().enumerate() {
                        assert_eq!(Some(step), theirs.get(i), "worker {worker}, seed {seed}: the first step that differs");
                    }
                }
            }
            assert_eq!(&got[k], v, "{k} differs (seed {seed})");
        }
    }
    let after = st.counters();
    for op in ["open_path", "rename", "unlink_path"] {
        assert!(count(&after, "user_ops", op) > count(&before, "user_ops", op) + 100, "too few {op} on the user-level path: {}", after["user_ops"]);
    }
    for op in ["write", "read"] {
        assert!(user_data(&after, op) > user_data(&before, op) + 100, "too few {op} at user level: {after}");
    }
    st.destroy();
}
