//! `polytropon bench`: workloads run on several paths side by side, in one run, with
//! interleaved repetitions, reported as medians and p99.
//!
//! Available now: `micro` (per-operation latency and throughput on every path) and `startup`
//! (N cloned containers to their first HTTP answer, on polytropon, fuse-overlayfs and kernel
//! overlayfs roots). Issue 9 adds the papers' other workloads and the isolation experiment.

pub mod ceph;
mod micro;
pub mod startup;
pub mod targets;
pub mod worker;

use std::path::PathBuf;

use anyhow::{bail, Context};
use serde::Serialize;

/// Workloads `bench` knows.
pub const WORKLOADS: [&str; 2] = ["micro", "startup"];

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub workloads: Vec<String>,
    /// Empty: every available path.
    pub paths: Vec<String>,
    /// Operations of `micro` to run; empty: all.
    pub operations: Vec<String>,
    pub reps: u32,
    pub ops: u32,
    pub file_mib: u64,
    pub dir: Option<PathBuf>,
    /// Called after each measured batch with (done, total).
    pub progress: Option<fn(u64, u64)>,
    /// The `startup` workload's settings; `None` when no image was named.
    pub startup: Option<startup::StartupOptions>,
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
    pub ops: u32,
    pub file_mib: u64,
    pub rows: Vec<Row>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
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

/// Runs the benchmark.
pub fn run(opts: &BenchOptions) -> anyhow::Result<Report> {
    for w in &opts.workloads {
        if !WORKLOADS.contains(&w.as_str()) {
            bail!("unknown workload {w:?}; available now: {}", WORKLOADS.join(", "));
        }
    }
    if opts.reps == 0 || opts.ops == 0 || opts.file_mib == 0 {
        bail!("--reps, --ops and --file-mib must be at least 1");
    }
    for o in &opts.operations {
        if !micro::OPS.iter().any(|(op, _)| op == o) {
            bail!("unknown operation {o:?}; available: {}", micro::OPS.map(|(op, _)| op).join(", "));
        }
    }
    for p in &opts.paths {
        if !targets::ALL.contains(&p.as_str()) {
            bail!("unknown path {p:?}; known: {}", targets::ALL.join(", "));
        }
    }
    if !opts.cpus.is_empty() {
        // Before any thread starts: every thread and child inherits it.
        let mut set = nix::sched::CpuSet::new();
        for c in &opts.cpus {
            set.set(*c).with_context(|| format!("--cpus: cpu {c}"))?;
        }
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).context("--cpus: cannot run on those cpus")?;
    }
    let base = tempfile::Builder::new()
        .prefix("polytropon-bench-")
        .tempdir_in(opts.dir.clone().unwrap_or_else(std::env::temp_dir))
        .context("cannot create the benchmark directory")?;
    let mut report = Report { date: today(), machine: machine(), paths: Vec::new(), skipped: Vec::new(), reps: opts.reps, ops: opts.ops, file_mib: opts.file_mib, rows: Vec::new() };
    let asked = |w: &str| opts.workloads.iter().any(|x| x == w);
    if asked("micro") {
        run_micro(opts, base.path(), &mut report)?;
    }
    if asked("startup") {
        match &opts.startup {
            Some(so) => {
                let paths = choose_paths(opts, &startup::PATHS, &mut report)?;
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
                let rows = startup::run(so, &paths, opts.reps, base.path(), &mut tick)?;
                report.rows.extend(rows);
            }
            None if opts.workloads.len() > 1 => {
                report.skipped.push(("startup".into(), "needs --image NAME (an imported image with a busybox or other HTTP server)".into()))
            }
            None => bail!("the startup workload needs --image NAME (an imported image with a busybox or other HTTP server)"),
        }
    }
    Ok(report)
}

/// The paths of `known` to run: those asked for (an error if one cannot run), or every
/// available one (the others noted as skipped).
fn choose_paths(opts: &BenchOptions, known: &[&str], report: &mut Report) -> anyhow::Result<Vec<String>> {
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
            Err(why) => bail!("path {p}: {why}"),
        }
    }
    for p in &paths {
        if !report.paths.contains(p) {
            report.paths.push(p.clone());
        }
    }
    Ok(paths)
}

fn run_micro(opts: &BenchOptions, base: &std::path::Path, report: &mut Report) -> anyhow::Result<()> {
    let chosen = |op: &str| opts.operations.is_empty() || opts.operations.iter().any(|o| o == op);
    let paths = choose_paths(opts, &targets::ALL, report)?;
    let lower = base.join("lower");
    micro::build_lower(&lower, opts.file_mib).context("cannot build the lower branch")?;
    let ceph = match &opts.ceph_conf {
        Some(conf) if paths.iter().any(|p| ceph::PATHS.contains(&p.as_str())) => Some(ceph::CephBench::connect(conf)?),
        _ => None,
    };
    let mut targets = Vec::new();
    for p in &paths {
        targets.push(targets::setup(p, &lower, base, &opts.cpus, ceph.as_ref()).with_context(|| format!("cannot set up path {p}"))?);
    }
    let mut samples: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); targets.len()]; micro::OPS.len()];
    // (index in `micro::OPS`, name, unit) of the operations to run.
    let selected: Vec<(usize, &str, &str)> = micro::OPS.iter().enumerate().filter(|(_, (op, _))| chosen(op)).map(|(i, (op, unit))| (i, *op, *unit)).collect();
    let total = u64::from(opts.reps) * (selected.len() * targets.len()) as u64;
    let mut done = 0;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for rep in 0..opts.reps {
        for &(oi, op, _) in &selected {
            // Interleaved: every path runs this repetition of this operation before the next.
            for (ti, t) in targets.iter_mut().enumerate() {
                let s = match &t.worker {
                    Some(w) => worker::run(w, op, opts.ops, opts.file_mib, rep, &mut rng),
                    None => micro::run(op, &t.root, opts.ops, opts.file_mib, rep, &mut rng),
                }
                .with_context(|| format!("{op} on {}", t.name))?;
                samples[oi][ti].extend(s);
                done += 1;
                if let Some(f) = opts.progress {
                    f(done, total);
                }
            }
        }
    }
    for &(oi, op, unit) in &selected {
        for (ti, t) in targets.iter().enumerate() {
            let mut s = samples[oi][ti].clone();
            s.sort_by(f64::total_cmp);
            // Throughput: the "p99" is the 1st percentile (the slow end).
            let p99 = if unit == "MiB/s" { percentile(&s, 0.01) } else { percentile(&s, 0.99) };
            report.rows.push(Row {
                workload: "micro".into(),
                op: op.to_string(),
                path: t.name.clone(),
                unit: unit.to_string(),
                median: percentile(&s, 0.5),
                p99,
                samples: s.len(),
            });
        }
    }
    // The mounts go before the CephFS data they serve.
    drop(targets);
    drop(ceph);
    Ok(())
}

impl Report {
    fn get(&self, workload: &str, op: &str, path: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.workload == workload && r.op == op && r.path == path)
    }

    /// Markdown tables, one per workload: medians (p99), and each path's ratio to `kernel`
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
            let setting = if w == "micro" { format!("{} ops per rep, {} MiB file, ", self.ops, self.file_mib) } else { String::new() };
            out += &format!("\n{w}: {setting}median (p99); x = ratio to {} (>1: slower)\n\n| operation |", base.unwrap_or("-"));
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
                    let ratio = base.and_then(|b| self.get(w, op, b)).map(|b| {
                        // Time: ours / base. Throughput: base / ours. Either way >1 means slower.
                        if unit == "MiB/s" { b.median / r.median } else { r.median / b.median }
                    });
                    let fmt = |v: f64| if v >= 100.0 { format!("{v:.0}") } else { format!("{v:.1}") };
                    match ratio {
                        Some(x) => out += &format!(" {} ({}) {x:.2}x |", fmt(r.median), fmt(r.p99)),
                        None => out += &format!(" {} ({}) |", fmt(r.median), fmt(r.p99)),
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
