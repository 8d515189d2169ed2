//! `polytropon bench`: the papers' workloads on every local path, the isolation experiment,
//! the JSON and SVG outputs. Figures are checked for shape and sense only (timing belongs in
//! benchmarks, not in tests); what the workloads read and write is checked by the workloads
//! themselves (sizes read, sizes after appends, entries listed), so a path that serves wrong
//! data fails here.

mod common;

use std::path::Path;
use std::process::{Command, Output};

const LOCAL_PATHS: [&str; 10] = ["user", "user-passthrough", "user-cache", "fuse", "fuse-writeback", "fuse-direct", "fuse-overlayfs", "unionfs-fuse", "overlay", "kernel"];

/// Every local path, `fuse-uring` included where the host lets FUSE use io_uring
/// (`scripts/test.sh` switches it on for the suite).
fn local_paths() -> Vec<&'static str> {
    let mut paths = LOCAL_PATHS.to_vec();
    if std::fs::read_to_string("/sys/module/fuse/parameters/enable_uring").is_ok_and(|v| v.trim() == "Y") {
        paths.insert(3, "fuse-uring");
    }
    paths
}

fn bench(dir: &Path, args: &[&str]) -> Output {
    // Counts alone unless a test sets a minimum time: timing belongs in benchmarks.
    let least: &[&str] = if args.contains(&"--min-time") { &[] } else { &["--min-time", "0"] };
    Command::new(env!("CARGO_BIN_EXE_polytropon")).arg("bench").args(args).args(least).arg("--dir").arg(dir).output().expect("run bench")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "bench failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("bench --format json prints JSON")
}

fn rows<'a>(report: &'a serde_json::Value, workload: &str, op: &str) -> Vec<&'a serde_json::Value> {
    report["rows"].as_array().expect("rows").iter().filter(|r| r["workload"] == workload && r["op"] == op).collect()
}

fn no_mounts_under(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
    assert!(!mounts.contains(&dir.display().to_string()), "bench left a mount behind: {mounts}");
}

#[test]
fn every_workload_runs_on_every_local_path_with_json_and_plot() {
    common::require_root();
    let scratch = common::Scratch::new("bench-workloads");
    let (json_file, svg) = (scratch.path().join("report.json"), scratch.path().join("report.svg"));
    // `user` and `user-cache` side by side: each must be served by its own driver (the
    // appends check of `fileappend` fails when one path's worker reaches the other's).
    let local = local_paths();
    let all = local.join(",");
    let mut args = vec!["--paths", all.as_str()];
    for w in ["metadata", "seqwrite", "seqread", "fileappend", "fileread", "fileserver", "webserver", "rocksdb"] {
        args.extend(["--workload", w]);
    }
    args.extend(["--reps", "2", "--ops", "40", "--loops", "6", "--files", "24", "--file-kib", "16", "--file-mib", "4"]);
    args.extend(["--containers", "3", "--append-mib", "2", "--format", "json"]);
    let (j, s) = (json_file.to_str().expect("utf-8"), svg.to_str().expect("utf-8"));
    args.extend(["--json", j, "--plot", s]);
    let out = bench(scratch.path(), &args);
    let report = json(&out);
    let rates = [
        ("seqwrite", "seqwrite", "MiB/s"),
        ("seqread", "seqread", "MiB/s"),
        ("fileappend", "fileappend", "MiB/s"),
        ("fileread", "fileread", "MiB/s"),
        ("fileserver", "fileserver", "ops/s"),
        ("webserver", "webserver", "ops/s"),
        ("rocksdb", "fillrandom", "ops/s"),
        ("rocksdb", "readrandom", "ops/s"),
    ];
    let latencies = [
        ("metadata", "stat"),
        ("metadata", "open+close"),
        ("metadata", "create+unlink"),
        ("metadata", "readdir"),
        ("metadata", "readdir 1000"),
        ("metadata", "stat missing"),
        ("fileserver", "create+write"),
        ("fileserver", "append 16KiB"),
        ("fileserver", "read whole"),
        ("fileserver", "delete"),
        ("fileserver", "stat"),
        ("webserver", "read whole"),
        ("webserver", "append log"),
    ];
    for (w, op, unit) in rates {
        let r = rows(&report, w, op);
        assert_eq!(r.len(), local.len(), "{w}/{op}: one row per path");
        for row in r {
            assert_eq!(row["unit"], unit, "{row}");
            // One throughput per repetition (concurrent containers add up to one).
            assert_eq!(row["samples"], 2, "{row}");
            assert!(row["median"].as_f64().is_some_and(|m| m.is_finite() && m > 0.0), "{row}");
        }
    }
    for (w, op) in latencies {
        let r = rows(&report, w, op);
        assert_eq!(r.len(), local.len(), "{w}/{op}: one row per path");
        for row in r {
            assert_eq!(row["unit"], "us", "{row}");
            let (median, p99) = (row["median"].as_f64().expect("median"), row["p99"].as_f64().expect("p99"));
            assert!(median > 0.0 && p99 >= median, "{row}");
            assert!(row["samples"].as_u64().is_some_and(|n| n >= 2), "{row}");
        }
    }
    // fileserver: 4 threads x 6 loops, 5 operations each (a delete only while 3+ files remain).
    for row in rows(&report, "fileserver", "create+write") {
        assert_eq!(row["samples"], 2 * 4 * 6, "{row}");
    }
    // The JSON file is what was printed; the plot has a bar for each path of each panel.
    let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json_file).expect("json file")).expect("json");
    assert_eq!(written, report);
    let svg = std::fs::read_to_string(&svg).expect("svg file");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "not an SVG document");
    for p in &local {
        assert!(svg.contains(&format!("\n{p}\n</text>")), "the legend lacks {p}");
    }
    let panels = rates.len() + latencies.len() + 2; // + rocksdb's two p99 rows
    assert!(svg.matches("<rect").count() >= panels * local.len(), "too few bars in the plot");
    no_mounts_under(scratch.path());
}

#[test]
fn isolation_experiment_reports_each_path_and_leaves_nothing() {
    common::require_root();
    let scratch = common::Scratch::new("bench-isolation");
    // The neighbour is also run in a pool B limited as an operator would limit it: its
    // writes to the disk under the scratch directory (where the workloads run) at 50 MB/s.
    let disk = common::disk_of(scratch.path());
    let slice: Vec<String> = disk.iter().flat_map(|d| ["--neighbour-io-max".to_string(), format!("{d}:wbps=50M")]).collect();
    if disk.is_none() {
        eprintln!("the scratch directory is on no block device: no sliced neighbour");
    }
    // Started by hand to know its pid, which names its pools' cgroups (`bench-a-PID`).
    let child = Command::new(env!("CARGO_BIN_EXE_polytropon"))
        .arg("bench")
        .args([
            "--workload", "isolation", "--paths", "user,fuse,kernel", "--reps", "2", "--loops", "8", "--files", "24", "--file-kib", "16",
            "--noise-mib", "128", "--warmup-ms", "300", "--min-time", "0", "--format", "json",
        ])
        .args(&slice)
        .arg("--dir")
        .arg(scratch.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run bench");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait for bench");
    let report = json(&out);
    for p in ["user", "fuse", "kernel"] {
        let get = |op: &str| {
            let r = rows(&report, "isolation", op);
            let row = r.iter().find(|r| r["path"] == p).unwrap_or_else(|| panic!("no {op} row for {p}: {report}"));
            row["median"].as_f64().expect("median")
        };
        let (alone, noisy) = (get("fileserver alone"), get("fileserver with neighbour"));
        assert!(alone > 0.0 && noisy > 0.0);
        let drop = get("fileserver drop");
        assert!((drop - (alone - noisy) / alone * 100.0).abs() < 1e-6, "the drop is computed from the medians");
        assert!(get("latency alone") > 0.0 && get("latency with neighbour") > 0.0);
        assert!(get("p99 latency rise") > 0.0);
        // Reported for every path (`get` fails on a missing row); a figure, not a claim.
        let _ = get("cpu outside pool A, alone");
        if disk.is_some() {
            let sliced = get("fileserver with sliced neighbour");
            assert!(sliced > 0.0);
            assert!((get("fileserver drop, sliced neighbour") - (alone - sliced) / alone * 100.0).abs() < 1e-6);
            assert!(get("p99 latency rise, sliced neighbour") > 0.0);
        }
    }
    // This run's pools A and B (and the sliced B) are gone (wherever their parent was: they go
    // under the cgroup bench ran in), and so is the neighbour.
    let ours = [format!("polytropon-bench-a-{pid}"), format!("polytropon-bench-b-{pid}"), format!("polytropon-bench-bs-{pid}")];
    let mut dirs = vec![(std::path::PathBuf::from("/sys/fs/cgroup"), 0)];
    while let Some((dir, depth)) = dirs.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(!ours.contains(&name), "bench left its pool's cgroup {}", e.path().display());
            if depth < 6 {
                dirs.push((e.path(), depth + 1));
            }
        }
    }
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let environ = std::fs::read(e.path().join("environ")).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&environ).contains(r#""workload":"noise""#), "the neighbour outlived bench: {:?}", e.path());
    }
    no_mounts_under(scratch.path());
    // Bad input is named, and nothing starts.
    let bad = [
        (vec!["--workload", "isolation", "--victim", "startup"], "--victim \"startup\""),
        (vec!["--workload", "isolation", "--pool-a-cpus", "0", "--pool-b-cpus", "0"], "must not share cpus"),
        (vec!["--workload", "isolation", "--cpus", "0"], "--pool-a-cpus"),
        (vec!["--workload", "isolation", "--neighbour-io-max", "nodev:wbps=1M"], "--io-max \"nodev:wbps=1M\""),
        (vec!["--workload", "isolation", "--neighbour-io-weight", "0"], "--io-weight \"0\": must be 1-10000"),
        (vec!["--workload", "fileserver", "--threads", "0"], "must be at least 1"),
        (vec!["--workload", "seqread", "--paths", "nope"], "unknown path \"nope\""),
    ];
    for (args, says) in bad {
        let out = bench(scratch.path(), &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn startup_without_an_image_uses_the_hosts_busybox_and_removes_it() {
    common::require_root();
    let scratch = common::Scratch::new("bench-startup");
    let (data, state) = (scratch.mkdir("data"), scratch.mkdir("state"));
    let out = Command::new(env!("CARGO_BIN_EXE_polytropon"))
        .arg("--data-dir")
        .arg(&data)
        .arg("--state-dir")
        .arg(&state)
        .args(["bench", "--workload", "startup", "--clones", "2", "--reps", "1", "--format", "json", "--dir"])
        .arg(scratch.path())
        .output()
        .expect("run bench");
    let report = json(&out);
    let rows = rows(&report, "startup", "2 clones to first HTTP answer");
    let paths: Vec<&str> = rows.iter().filter_map(|r| r["path"].as_str()).collect();
    assert_eq!(paths, ["user", "fuse-overlayfs", "overlay"], "{report}");
    assert!(rows.iter().all(|r| r["median"].as_f64().is_some_and(|m| m > 0.0)));
    // The image made for the run is gone, and so are its layers.
    let list = Command::new(env!("CARGO_BIN_EXE_polytropon")).arg("--data-dir").arg(&data).args(["image", "list"]).output().expect("image list");
    assert!(!String::from_utf8_lossy(&list.stdout).contains("polytropon-bench/busybox"), "{}", String::from_utf8_lossy(&list.stdout));
    let layers = std::fs::read_dir(data.join("images/layers")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(layers, 0, "layers left in the store");
    no_mounts_under(scratch.path());
}

/// `--threads` runs every file workload's work on that many threads per container: each
/// thread's samples are there, appenders of one container share its file (the workload checks
/// the file holds every thread's appends), and the mean sits beside the median and p99.
#[test]
fn threads_apply_to_every_file_workload() {
    common::require_root();
    let scratch = common::Scratch::new("bench-threads");
    let mut args = vec!["--paths", "user,kernel", "--threads", "3", "--reps", "2", "--ops", "30", "--file-mib", "4"];
    for w in ["micro", "seqwrite", "fileappend", "fileread"] {
        args.extend(["--workload", w]);
    }
    args.extend(["--containers", "2", "--append-mib", "2", "--format", "json"]);
    let report = json(&bench(scratch.path(), &args));
    for path in ["user", "kernel"] {
        let stat = rows(&report, "micro", "stat").into_iter().find(|r| r["path"] == path).expect("stat row");
        assert_eq!(stat["samples"].as_u64(), Some(3 * 30 * 2), "{stat}");
        let (median, mean, p99) = (stat["median"].as_f64().expect("median"), stat["mean"].as_f64().expect("mean"), stat["p99"].as_f64().expect("p99"));
        assert!(median > 0.0 && mean > 0.0 && p99 >= median, "{stat}");
        for w in ["seqwrite", "fileappend", "fileread"] {
            let r = rows(&report, w, w).into_iter().find(|r| r["path"] == path).unwrap_or_else(|| panic!("no {w} row on {path}"));
            assert!(r["median"].as_f64().is_some_and(|m| m > 0.0), "{r}");
        }
    }
    let settings = report["settings"].to_string();
    assert!(settings.contains("3 threads at once per container"), "{settings}");
    no_mounts_under(scratch.path());
}

/// `scaling` (issue 27): the fileserver mix in 1 and then 3 cloned containers at once on each
/// path, one throughput per number of containers (the containers' spans together), drawn as
/// one panel of curves; a zero among the numbers is refused by name.
#[test]
fn scaling_reports_one_throughput_per_number_of_containers() {
    common::require_root();
    let scratch = common::Scratch::new("bench-scaling");
    let svg = scratch.path().join("scaling.svg");
    let args = [
        "--workload", "scaling", "--paths", "user,fuse,overlay", "--containers", "3,1", "--reps", "2", "--loops", "5", "--files", "12", "--file-kib", "8",
        "--format", "json", "--plot", svg.to_str().expect("utf-8"),
    ];
    let report = json(&bench(scratch.path(), &args));
    for op in ["1 container", "3 containers"] {
        let r = rows(&report, "scaling", op);
        assert_eq!(r.len(), 3, "{op}: one row per path: {report}");
        for row in r {
            assert_eq!(row["unit"], "ops/s", "{row}");
            assert_eq!(row["samples"].as_u64(), Some(2), "one throughput per repetition: {row}");
            assert!(row["median"].as_f64().is_some_and(|m| m > 0.0), "{row}");
        }
    }
    let all: Vec<_> = report["rows"].as_array().expect("rows").iter().filter(|r| r["workload"] == "scaling").collect();
    assert_eq!(all.len(), 6, "only the points, no latencies: {all:?}");
    assert!(report["settings"].to_string().contains("1, 3 cloned containers at once"), "{}", report["settings"]);
    let drawn = std::fs::read_to_string(&svg).expect("the plot");
    assert!(drawn.contains("scaling: ops/s by containers at once"), "no curve panel");
    assert_eq!(drawn.matches("<circle").count(), 6, "a point per path and number of containers");
    let refused = bench(scratch.path(), &["--workload", "scaling", "--paths", "kernel", "--containers", "2,0"]);
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("--containers"), "{}", String::from_utf8_lossy(&refused.stderr));
    no_mounts_under(scratch.path());
}

/// `--min-time` keeps each repetition's measured loop going past the counts, and the first
/// operation of each job is reported apart (`first op`).
#[test]
fn repetitions_run_for_the_minimum_time_with_the_first_operation_apart() {
    common::require_root();
    let scratch = common::Scratch::new("bench-mintime");
    let args = ["--paths", "user,kernel", "--workload", "micro", "--operations", "stat", "--workload", "webserver", "--reps", "1", "--ops", "5", "--loops", "2", "--threads", "2", "--files", "8", "--file-kib", "16", "--min-time", "0.3", "--format", "json"];
    let report = json(&bench(scratch.path(), &args));
    for path in ["user", "kernel"] {
        let get = |w: &str, op: &str| rows(&report, w, op).into_iter().find(|r| r["path"] == path).unwrap_or_else(|| panic!("no {w} {op} on {path}")).clone();
        // 0.3 s of stats at a few µs each: far more than the 5 asked for.
        assert!(get("micro", "stat")["samples"].as_u64().is_some_and(|n| n > 1000), "{}", get("micro", "stat"));
        assert_eq!(get("micro", "first op")["samples"].as_u64(), Some(2), "one first op per thread");
        assert!(get("webserver", "read whole")["samples"].as_u64().is_some_and(|n| n > 2 * 2 * 10), "{}", get("webserver", "read whole"));
        assert_eq!(get("webserver", "first op")["samples"].as_u64(), Some(2), "one first op per thread");
    }
    no_mounts_under(scratch.path());
}
