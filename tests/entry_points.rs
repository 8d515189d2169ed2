//! Every libc entry point the preload library replaces, exercised on purpose (issue 21):
//! `tests/c/entry_points.c` calls each one (data, vectored and fortified forms, the stat
//! family old binaries call, names, attributes, listings, emulated copies, the calls only the
//! kernel serves, fork/exec/spawn, descriptor ranges, the direct C API) and prints one line
//! per call. Built plain and with `-O2 -D_FORTIFY_SOURCE=2`, each build runs on a plain
//! directory and under the library on a pool mount: the outputs must be equal line for line,
//! and the service's counters must show every call served where the library says it serves
//! it (the program prints what it expects: `expect user OP N` and `expect fuse OP N` for at
//! least N requests on the user-level path and on FUSE, `expect fuse-most OP N` for at most N
//! on FUSE).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use common::host::{output_within, stderr};
use common::stage::{count, Stage};

/// How long one run of the program may take (it takes about a second): a hang fails the
/// test instead of stalling the suite.
const LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The two builds: plain, and optimised with glibc's checked forms (`__read_chk`, ...).
const BUILDS: [(&str, &[&str]); 2] = [("O0", &["-O0"]), ("O2-fortify", &["-O2", "-D_FORTIFY_SOURCE=2"])];

/// Namespace and attribute requests that may reach the FUSE mount only as often as the
/// program says (`expect fuse-most OP N`: what the kernel resolves itself, a final symbolic
/// link followed or a final `.`), and otherwise never: the library serves all the others,
/// and what it hands over (data of kernel-only calls, exec'd programs) makes other kinds.
const NEVER_ON_FUSE: [&str; 13] = ["mkdir", "rmdir", "rename", "link", "symlink", "unlink", "readlink", "setattr", "setxattr", "removexattr", "listxattr", "fallocate", "fsyncdir"];

/// A unified diff of two outputs (diff(1), for a readable failure).
fn diff(dir: &Path, want: &str, have: &str) -> String {
    let (a, b) = (dir.join("plain.out"), dir.join("preloaded.out"));
    std::fs::write(&a, want).expect("write");
    std::fs::write(&b, have).expect("write");
    let out = std::process::Command::new("diff").arg("-u").arg(&a).arg(&b).output().expect("run diff");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `expect SIDE OP N` lines of the program's output: (side, op) -> N.
fn expectations(out: &str) -> BTreeMap<(String, String), u64> {
    out.lines()
        .filter_map(|l| {
            let mut w = l.strip_prefix("expect ")?.split(' ');
            let (side, op, n) = (w.next()?, w.next()?, w.next()?.parse().ok()?);
            Some(((side.to_owned(), op.to_owned()), n))
        })
        .collect()
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Builds the program with `flags`, runs it on the stage's plain directory and under the
/// library on its mount (directories `tag` of each), checks that both print the same and that
/// every descriptor was on the path it should be; the plain run's output, and the
/// service's counters before and after the run under the library.
fn run_both(st: &Stage, tag: &str, flags: &[&str]) -> (String, serde_json::Value, serde_json::Value) {
    let prog = st.compile_with("entry_points", &format!("entry_points-{tag}"), &[flags, &["-Wall", "-Werror"]].concat());
    let (plain, mnt) = (st.plain.join(tag), st.mnt.join(tag));
    std::fs::create_dir(&plain).expect("mkdir on the plain directory");
    std::fs::create_dir(&mnt).expect("mkdir on the mount");
    let mut plainly = st.command(false, &prog);
    plainly.arg(&plain).env("LC_ALL", "C");
    let expected = output_within(plainly, &format!("{tag} on a plain directory"), LIMIT);
    assert!(expected.status.success(), "{tag}: the program fails on a plain directory:\n{}{}", text(&expected), stderr(&expected));
    let before = st.counters();
    let mut preloaded = st.command(true, &prog);
    preloaded.arg(&mnt).env("LC_ALL", "C");
    let got = output_within(preloaded, &format!("{tag} under the library"), LIMIT);
    let after = st.counters();
    let (want, have) = (text(&expected), text(&got));
    assert!(want == have, "{tag}: output differs under the library (- plain, + preloaded):\n{}\nits stderr:\n{}", diff(st.h.scratch.path(), &want, &have), stderr(&got));
    assert!(got.status.success(), "{tag}: {}", stderr(&got));
    assert!(stderr(&got).contains("C API: the library's"), "{tag}: the direct C API was not found under the library: {}", stderr(&got));
    // Each descriptor on the path it should be: the library's after every open spelling, dup
    // and emulated call; the kernel's after every hand-over (checked by the program with raw
    // fstat system calls).
    assert!(!stderr(&got).contains("WRONG PATH"), "{tag}: {}", stderr(&got));
    (want, before, after)
}

#[test]
fn every_intercepted_entry_point_behaves_as_on_a_plain_directory() {
    // Compared with a plain directory on a mount where the library answers what it can from
    // what it learned of files, then counted exactly where every call is a round trip
    // (`--no-learn`; `learned.rs` tests the learning), with no file passed to the library
    // once it proves busy (`--no-busy-passthrough`: its later data calls are the kernel's).
    let learning = Stage::new("entry-points-learning", "el", |_| {});
    for (tag, flags) in BUILDS {
        run_both(&learning, tag, flags);
    }
    learning.destroy();
    let st = Stage::mounted_with("entry-points", "ep", "1", &["--no-learn", "--no-busy-passthrough"], |_| {});
    for (tag, flags) in BUILDS {
        let (want, before, after) = run_both(&st, tag, flags);

        // Every call the library serves arrived on the user-level path; every hand-over on
        // the FUSE mount.
        let grew = |path: &str, op: &str| count(&after, path, op).saturating_sub(count(&before, path, op));
        let expect = expectations(&want);
        assert!(expect.len() > 20, "{tag}: the program printed no expectations:\n{want}");
        let mut wrong = Vec::new();
        for ((side, op), n) in &expect {
            let (path, at_most) = match side.as_str() {
                "user" => ("user_ops", false),
                "fuse" => ("fuse_ops", false),
                "fuse-most" => ("fuse_ops", true),
                other => panic!("{tag}: unknown expectation {other} {op}"),
            };
            let got = grew(path, op);
            if at_most && got > *n {
                wrong.push(format!("{path}.{op}: {got} > {n}"));
            } else if !at_most && got < *n {
                wrong.push(format!("{path}.{op}: {got} < {n}"));
            }
        }
        for op in NEVER_ON_FUSE.into_iter().filter(|op| !expect.contains_key(&("fuse-most".to_owned(), op.to_string()))) {
            let got = grew("fuse_ops", op);
            if got != 0 {
                wrong.push(format!("fuse_ops.{op}: {got}, expected none"));
            }
        }
        // Every kind of hand-over the program makes reached the service's counts, by reason.
        let handed = |json: &serde_json::Value, why: &str| json["user_handovers"][why].as_u64().unwrap_or(0);
        for why in ["mmap", "splice", "stdio", "process", "ioctl"] {
            if handed(&after, why) <= handed(&before, why) {
                wrong.push(format!("user_handovers.{why}: none counted ({})", after["user_handovers"]));
            }
        }
        // Locks run on the kernel's open file of the same file, the descriptor stays ours.
        if handed(&after, "lock") != handed(&before, "lock") {
            wrong.push(format!("user_handovers.lock: a lock handed a file over ({})", after["user_handovers"]));
        }
        assert!(wrong.is_empty(), "{tag}: counters disagree with what the program did:\n{}\nuser-level: {}\nFUSE: {}", wrong.join("\n"), after["user_ops"], after["fuse_ops"]);
        eprintln!("{tag}: user-level {}\n{tag}: FUSE {}", after["user_ops"], after["fuse_ops"]);
    }
    // `inspect` says what share of the mount's operations the user-level path served, and
    // why descriptors went to the kernel.
    let shown = st.h.ok(&["inspect", "--pool", &st.name]);
    assert!(shown.contains("user-level share ") && shown.contains("handed to the kernel: ") && shown.contains("mmap "), "{shown}");
    st.destroy();
}
