//! `polytropon bench`: workloads run on several paths side by side, in one run, with
//! interleaved repetitions (each starting from the next path), reported as medians and p99.
//!
//! Workloads (`workload/`): `micro` and `metadata` (per-operation latency), `seqwrite`,
//! `seqread`, `fileappend` and `fileread` (streams of 1 MiB calls; the last two by several
//! cloned containers at once), `fileserver` and `webserver` (Filebench's mixes), `rocksdb`
//! (db_bench), `startup` (clones to their first HTTP answer) and `isolation` (a workload
//! beside a noisy neighbour in another pool). Each job runs in a worker process (`worker`),
//! under the preload library on the user-level path; the paths are set up and torn down by
//! `targets` (and `ceph` for CephFS). `plot` draws a report. What goes wrong is a
//! [`BenchError`] naming the step.

pub mod ceph;
mod error;
mod host_image;
pub mod isolation;
pub mod plot;
pub mod startup;
mod sys;
pub mod targets;
pub mod worker;
pub mod workload;

use std::path::PathBuf;

use serde::Serialize;

pub use error::{BenchError, PlotError};
pub use workload::{Params, WORKLOADS};
use workload::micro;

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub workloads: Vec<String>,
    /// Empty: every available path.
    pub paths: Vec<String>,
    /// Operations of `micro` and `metadata` to run; empty: all.
    pub operations: Vec<String>,
    pub reps: u32,
    pub params: Params,
    pub dir: Option<PathBuf>,
    /// Called after each measured batch with (done, total).
    pub progress: Option<fn(u64, u64)>,
    /// The `startup` workload's settings.
    pub startup: startup::StartupOptions,
    /// The `isolation` experiment's settings.
    pub isolation: isolation::IsolationOptions,
    /// The cpus everything runs on (empty: wherever the bench may run).
    pub cpus: Vec<usize>,
    /// A CephFS for the CephFS paths (its ceph.conf).
    pub ceph_conf: Option<PathBuf>,
}

/// One measured operation on one path.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub workload: String,
    pub op: String,
    pub path: String,
    pub unit: String,
    pub median: f64,
    /// The mean: a throughput follows it, and it is where the tail shows.
    pub mean: f64,
    pub p99: f64,
    pub samples: usize,
}

/// The result of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub date: String,
    pub machine: String,
    pub paths: Vec<String>,
    /// Paths asked for (or known) that could not run, with the reason.
    pub skipped: Vec<(String, String)>,
    pub reps: u32,
    pub params: Params,
    /// What each workload did, in words.
    pub settings: Vec<(String, String)>,
    pub rows: Vec<Row>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn mean(s: &[f64]) -> f64 {
    if s.is_empty() {
        return f64::NAN;
    }
    s.iter().sum::<f64>() / s.len() as f64
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_else(|| "unknown cpu".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|k| k.parse::<u64>().ok()))
        .map_or(0, |kb| kb / 1024 / 1024);
    let kernel = rustix::system::uname().release().to_string_lossy().into_owned();
    format!("{cpu}, {cpus} cpus, {mem} GiB, Linux {kernel}")
}

fn today() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The workloads that run as jobs on the file paths.
fn is_file_workload(w: &str) -> bool {
    !workload::steps(w).is_empty()
}

/// Runs the benchmark.
pub fn run(opts: &BenchOptions) -> Result<Report, BenchError> {
    for w in &opts.workloads {
        if !WORKLOADS.contains(&w.as_str()) {
            return Err(BenchError::UnknownWorkload(w.clone()));
        }
    }
    let p = &opts.params;
    if opts.reps == 0 || p.ops == 0 || p.loops == 0 || p.file_mib == 0 || p.threads == Some(0) || p.files == 0 || p.file_kib == 0 || p.containers == 0 || p.scaling.contains(&0) || p.append_mib == 0 {
        return Err(BenchError::NotPositive);
    }
    for o in &opts.operations {
        if !micro::OPS.iter().any(|(op, _)| op == o) && !micro::METADATA.contains(&o.as_str()) {
            return Err(BenchError::UnknownOperation(o.clone()));
        }
    }
    for p in &opts.paths {
        if !targets::ALL.contains(&p.as_str()) {
            return Err(BenchError::UnknownPath(p.clone()));
        }
    }
    if !opts.cpus.is_empty() {
        // Before any thread starts: every thread and child inherits it.
        pin(&opts.cpus)?;
    }
    let base = tempfile::Builder::new()
        .prefix("polytropon-bench-")
        .tempdir_in(opts.dir.clone().unwrap_or_else(std::env::temp_dir))
        .map_err(BenchError::io("cannot create the benchmark directory"))?;
    let settings = opts.workloads.iter().map(|w| (w.clone(), describe(w, opts))).collect();
    let mut report = Report { date: today(), machine: machine(), paths: Vec::new(), skipped: Vec::new(), reps: opts.reps, params: p.clone(), settings, rows: Vec::new() };
    let asked = |w: &str| opts.workloads.iter().any(|x| x == w);
    let mut files: Vec<&str> = WORKLOADS.into_iter().filter(|w| asked(w) && is_file_workload(w)).collect();
    if asked("rocksdb") && !targets::has(workload::rocksdb::DB_BENCH) {
        let why = "db_bench is not installed (Debian package rocksdb-tools)";
        if opts.workloads.len() == 1 {
            return Err(BenchError::NoRocksdb(why));
        }
        report.skipped.push(("rocksdb".into(), why.into()));
        files.retain(|w| *w != "rocksdb");
    }
    if !files.is_empty() {
        run_files(opts, &files, base.path(), &mut report)?;
    }
    if asked("startup") {
        let so = &opts.startup;
        let mut paths = choose_paths(opts, &startup::PATHS, &mut report)?;
        if so.image.is_some() {
            // The CephFS paths start clones of the host's busybox image stored in CephFS.
            for p in paths.iter().filter(|p| startup::CEPH_PATHS.contains(&p.as_str())) {
                report.skipped.push((format!("startup on {p}"), "runs the host's busybox image in CephFS, not --image".into()));
            }
            paths.retain(|p| !startup::CEPH_PATHS.contains(&p.as_str()));
        }
        for p in opts.paths.iter().filter(|p| !startup::PATHS.contains(&p.as_str())) {
            report.skipped.push((format!("startup on {p}"), format!("the startup workload compares {}", startup::PATHS.join(", "))));
        }
        let total = u64::from(opts.reps) * (paths.len() * so.clones.len()) as u64;
        let mut done = 0;
        let mut tick = || {
            done += 1;
            if let Some(f) = opts.progress {
                f(done, total);
            }
        };
        match host_image::available().filter(|_| so.image.is_none()) {
            // With no image named and none to make, the other workloads still report.
            Some(why) if opts.workloads.len() > 1 => report.skipped.push(("startup".into(), why)),
            Some(why) => return Err(BenchError::NoStartup(why)),
            None => report.rows.extend(startup::run(so, &paths, opts.reps, base.path(), &mut tick)?),
        }
    }
    if asked("isolation") {
        let paths = choose_paths(opts, &isolation::PATHS, &mut report)?;
        let rows = isolation::run(opts, &paths, base.path()).map_err(|e| BenchError::Isolation(Box::new(e)))?;
        report.rows.extend(rows);
    }
    Ok(report)
}

/// What workload `w` does with these options, in words.
fn describe(w: &str, opts: &BenchOptions) -> String {
    let p = &opts.params;
    let least = if p.min_time > 0.0 { format!(", each repetition at least {} s after a warm-up", p.min_time) } else { String::new() };
    let threads = |w: &str| match p.threads_of(w) {
        1 => least.clone(),
        n => format!(", {n} threads at once per container{least}"),
    };
    match w {
        "micro" | "metadata" => format!("{} operations per rep{}", p.ops, threads(w)),
        "seqwrite" | "seqread" => format!("one stream of 1 MiB calls, {} MiB{}", p.file_mib, threads(w)),
        "fileappend" => format!(
            "{} containers at once, each appending {} MiB in 1 MiB writes to its copy of a {} MiB lower file{}",
            p.containers,
            p.append_mib,
            workload::data::append_base_mib(p),
            threads(w)
        ),
        "fileread" => format!("{} containers at once, each reading a {} MiB lower file in 1 MiB reads{}", p.containers, p.file_mib, threads(w)),
        "fileserver" => format!("{} threads x {} loops (at least) of create+write, append, read, delete, stat; {} files of ~{} KiB{least}", p.threads_of(w), p.loops, p.files, p.file_kib),
        "spawn" => format!("{} thread(s) x {} processes (at least) of {} of {} files of {} KiB each{least}", p.threads_of(w), p.loops, "cat", workload::data::spawn_files(), workload::data::SPAWN_FILE / 1024),
        "webserver" => format!("{} threads x {} loops (at least) of 10 whole-file reads and a log append; {} files of {} KiB{least}", p.threads_of(w), p.loops, p.files, workload::data::www_size(p) / 1024),
        "scaling" => format!(
            "{} cloned containers at once, each {} thread(s) x {} loops (at least) of the fileserver mix on its own copy of {} files of ~{} KiB; their total throughput{least}",
            p.scaling.iter().map(u32::to_string).collect::<Vec<_>>().join(", "),
            p.threads_of(w),
            p.loops,
            p.files,
            p.file_kib
        ),
        "rocksdb" => format!("db_bench fillrandom then readrandom, {} keys, 400-byte values", u64::from(p.ops) * 2),
        "startup" => "clones started at once, ms to the first HTTP answer of each".into(),
        "isolation" => format!(
            "{} ({} loops) in pool A alone, then beside a neighbour in pool B ({} threads writing at random over {} MiB files, fdatasync every 32 MiB)",
            opts.isolation.victim,
            (p.loops / 4).max(1),
            workload::noise::THREADS,
            opts.isolation.noise_mib
        ),
        _ => String::new(),
    }
}

/// Runs this process (and what it starts) on `cpus` only (`--cpus`; its errors say so).
pub(crate) fn pin(cpus: &[usize]) -> Result<(), BenchError> {
    let mut set = nix::sched::CpuSet::new();
    for c in cpus {
        set.set(*c).map_err(|source| BenchError::Cpus { what: format!("--cpus: cpu {c}"), source })?;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).map_err(|source| BenchError::Cpus { what: "--cpus: cannot run on those cpus".into(), source })
}

/// The paths of `known` to run: those asked for (an error if one cannot run), or every
/// available one (the others noted as skipped).
fn choose_paths(opts: &BenchOptions, known: &[&str], report: &mut Report) -> Result<Vec<String>, BenchError> {
    let asked: Vec<String> = if opts.paths.is_empty() { known.iter().map(|s| s.to_string()).collect() } else { opts.paths.iter().filter(|p| known.contains(&p.as_str())).cloned().collect() };
    let mut paths = Vec::new();
    for p in &asked {
        match targets::availability(p, opts.ceph_conf.is_some()) {
            Ok(()) => paths.push(p.clone()),
            Err(why) if opts.paths.is_empty() => {
                if !report.skipped.iter().any(|(s, _)| s == p) {
                    report.skipped.push((p.clone(), why));
                }
            }
            Err(why) => return Err(BenchError::Unavailable { path: p.clone(), why }),
        }
    }
    for p in &paths {
        if !report.paths.contains(p) {
            report.paths.push(p.clone());
        }
    }
    Ok(paths)
}

/// (workload, operation, unit, path).
type Key = (String, String, String, String);

/// Samples gathered per key, in first-seen order.
#[derive(Default)]
struct Samples(Vec<(Key, Vec<f64>)>);

impl Samples {
    fn add(&mut self, workload: &str, op: &str, unit: &str, path: &str, values: impl IntoIterator<Item = f64>) {
        let key = (workload.to_string(), op.to_string(), unit.to_string(), path.to_string());
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.extend(values),
            None => self.0.push((key, values.into_iter().collect())),
        }
    }

    /// Adds what concurrent workers measured: their samples pooled, and their spans of each
    /// operation as one throughput (all the work over the time from the first start to the
    /// last end).
    fn add_outputs(&mut self, workload: &str, path: &str, outs: &[workload::Output]) {
        for o in outs {
            for (op, unit, v) in &o.samples {
                self.add(workload, op, unit, path, v.iter().copied());
            }
        }
        let mut ops: Vec<(&str, &str)> = Vec::new();
        for s in outs.iter().flat_map(|o| &o.spans) {
            if !ops.contains(&(s.op.as_str(), s.unit.as_str())) {
                ops.push((&s.op, &s.unit));
            }
        }
        for (op, unit) in ops {
            let spans: Vec<&workload::Span> = outs.iter().flat_map(|o| &o.spans).filter(|s| s.op == op).collect();
            let amount: f64 = spans.iter().map(|s| s.amount).sum();
            let start = spans.iter().map(|s| s.start).fold(f64::INFINITY, f64::min);
            let end = spans.iter().map(|s| s.end).fold(f64::NEG_INFINITY, f64::max);
            self.add(workload, op, unit, path, [amount / (end - start).max(1e-9)]);
        }
    }

    fn rows(&self) -> Vec<Row> {
        self.0
            .iter()
            .map(|((workload, op, unit, path), v)| {
                let mut s = v.clone();
                s.sort_by(f64::total_cmp);
                // Throughput: the "p99" is the 1st percentile (the slow end).
                let p99 = if is_rate(unit) { percentile(&s, 0.01) } else { percentile(&s, 0.99) };
                Row { workload: workload.clone(), op: op.clone(), path: path.clone(), unit: unit.clone(), median: percentile(&s, 0.5), mean: mean(&s), p99, samples: s.len() }
            })
            .collect()
    }
}

impl Row {
    /// How much slower this is than `base` (the same operation on another path): time over
    /// the base's time, or the base's throughput over this one's. Above 1: slower.
    pub fn slowdown(&self, base: &Row) -> f64 {
        if is_rate(&self.unit) { base.median / self.median } else { self.median / base.median }
    }
}

/// Whether figures in `unit` are rates (more is better).
pub fn is_rate(unit: &str) -> bool {
    unit.ends_with("/s")
}

/// The jobs of one step on one target: one per container, for `containers` containers.
fn jobs(w: &str, step: &str, t: &targets::Target, p: &workload::Params, rep: u32, containers: u32, rng: &mut workload::Rng) -> Vec<workload::Job> {
    (0..containers)
        .map(|c| workload::Job {
            workload: w.to_string(),
            step: step.to_string(),
            root: t.roots[c as usize].clone(),
            params: p.clone(),
            rep,
            container: c,
            seed: rng.next_u64(),
        })
        .collect()
}

/// What a `scaling` point reports: the containers' fileserver throughput together, as the
/// point's operation (`N containers`); their per-operation latencies are `fileserver`'s
/// business.
fn scaling_point(outs: &mut [workload::Output], n: u32) {
    let point = format!("{n} container{}", if n == 1 { "" } else { "s" });
    for o in outs {
        o.samples.clear();
        for s in &mut o.spans {
            s.op.clone_from(&point);
        }
    }
}

fn run_files(opts: &BenchOptions, workloads: &[&str], base: &std::path::Path, report: &mut Report) -> Result<(), BenchError> {
    let chosen = |op: &str| opts.operations.is_empty() || opts.operations.iter().any(|o| o == op);
    let paths = choose_paths(opts, &targets::ALL, report)?;
    let lower = base.join("lower");
    workload::data::build_lower(&lower, workloads, &opts.params, opts.reps).map_err(BenchError::io("cannot build the lower branch"))?;
    let ceph = match &opts.ceph_conf {
        Some(conf) if paths.iter().any(|p| ceph::PATHS.contains(&p.as_str())) => Some(ceph::CephBench::connect(conf)?),
        _ => None,
    };
    let containers = workloads.iter().map(|w| workload::containers(w, &opts.params)).max().unwrap_or(1) as usize;
    let mut targets = Vec::new();
    for p in &paths {
        targets.push(targets::setup(p, &lower, base, &opts.cpus, ceph.as_ref(), containers).map_err(|e| BenchError::SetUp { path: p.clone(), source: Box::new(e) })?);
    }
    // (workload, step) pairs, in report order.
    let steps: Vec<(&str, &str)> = workloads
        .iter()
        .flat_map(|w| workload::steps(w).into_iter().map(move |s| (*w, s)))
        .filter(|(w, s)| !matches!(*w, "micro" | "metadata") || chosen(s))
        .collect();
    // How many containers run each step at once: one batch per number (`scaling`'s points).
    let batches = |w: &str| if w == "scaling" { opts.params.scaling.clone() } else { vec![workload::containers(w, &opts.params)] };
    let total = u64::from(opts.reps) * steps.iter().map(|(w, _)| batches(w).len() * targets.len()).sum::<usize>() as u64;
    let mut done = 0;
    let mut rng = workload::Rng(0x9e37_79b9_7f4a_7c15);
    let mut samples = Samples::default();
    for rep in 0..opts.reps {
        for &(w, step) in &steps {
            // Interleaved: every path runs this repetition of this step before the next, each
            // repetition starting from the next path. Whatever the previous steps leave behind
            // (write-back, freed memory the hypervisor took back and must fault in again for
            // the next writer) then falls on every path in turn, not always on the first.
            let first = rep as usize % targets.len().max(1);
            for t in targets[first..].iter().chain(&targets[..first]) {
                for n in batches(w) {
                    let jobs = jobs(w, step, t, &opts.params, rep, n, &mut rng);
                    let mut outs = worker::run_all(&jobs, t.worker.as_ref()).map_err(|source| BenchError::Workload { what: format!("{w} ({step}, {n} containers) on {}", t.name), source })?;
                    if w == "scaling" {
                        scaling_point(&mut outs, n);
                    }
                    samples.add_outputs(w, &t.name, &outs);
                    done += 1;
                    if let Some(f) = opts.progress {
                        f(done, total);
                    }
                }
            }
        }
    }
    report.rows.extend(samples.rows());
    // The mounts go before the CephFS data they serve.
    drop(targets);
    drop(ceph);
    Ok(())
}

impl Report {
    fn get(&self, workload: &str, op: &str, path: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.workload == workload && r.op == op && r.path == path)
    }

    /// Markdown tables, one per workload: medians (mean; p99), and each path's ratio to `kernel`
    /// (or `overlay`).
    pub fn table(&self) -> String {
        let mut out = format!("{} | {} | {} reps\n", self.date, self.machine, self.reps);
        for w in WORKLOADS {
            let rows: Vec<&Row> = self.rows.iter().filter(|r| r.workload == w).collect();
            if rows.is_empty() {
                continue;
            }
            let paths: Vec<&String> = self.paths.iter().filter(|p| rows.iter().any(|r| &r.path == *p)).collect();
            let base = ["kernel", "overlay", "ceph-fuse"].into_iter().find(|b| paths.iter().any(|p| p == b));
            let setting = self.settings.iter().find(|(s, _)| s == w).map_or(String::new(), |(_, d)| format!("{d}; "));
            out += &format!("\n{w}: {setting}median (mean; p99); x = ratio of the medians to {} (>1: slower)\n\n| operation |", base.unwrap_or("-"));
            for p in &paths {
                out += &format!(" {p} |");
            }
            out += "\n|---|";
            out += &"---|".repeat(paths.len());
            out += "\n";
            let mut ops: Vec<(&str, &str)> = Vec::new();
            for r in &rows {
                if !ops.iter().any(|(o, _)| *o == r.op) {
                    ops.push((&r.op, &r.unit));
                }
            }
            for (op, unit) in ops {
                out += &format!("| {op} ({unit}) |");
                for p in &paths {
                    let Some(r) = self.get(w, op, p) else { out += " - |"; continue };
                    let fmt = |v: f64| if v.abs() >= 100.0 { format!("{v:.0}") } else { format!("{v:.1}") };
                    if r.samples <= 1 {
                        // A derived or single figure: no spread, no ratio.
                        out += &format!(" {} |", fmt(r.median));
                        continue;
                    }
                    let ratio = base.and_then(|b| self.get(w, op, b)).map(|b| r.slowdown(b));
                    match ratio {
                        Some(x) if x.is_finite() => out += &format!(" {} ({}; {}) {x:.2}x |", fmt(r.median), fmt(r.mean), fmt(r.p99)),
                        _ => out += &format!(" {} ({}; {}) |", fmt(r.median), fmt(r.mean), fmt(r.p99)),
                    }
                }
                out += "\n";
            }
        }
        for (p, why) in &self.skipped {
            out += &format!("\nskipped {p}: {why}");
        }
        out
    }
}
