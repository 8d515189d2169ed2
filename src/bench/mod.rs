//! `polytropon bench`: workloads run on several paths side by side, in one run, with
//! interleaved repetitions, reported as medians and p99.
//!
//! Available now: the `micro` workload (issue 3). Issue 9 adds the papers' workloads, the
//! user-level path and the isolation experiment.

mod micro;
pub mod targets;
pub mod worker;

use std::path::PathBuf;

use anyhow::{bail, Context};
use serde::Serialize;

/// Workloads `bench` knows.
pub const WORKLOADS: [&str; 1] = ["micro"];

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
    let chosen = |op: &str| opts.operations.is_empty() || opts.operations.iter().any(|o| o == op);
    let mut paths = Vec::new();
    let mut skipped = Vec::new();
    let asked: Vec<String> = if opts.paths.is_empty() { targets::ALL.iter().map(|s| s.to_string()).collect() } else { opts.paths.clone() };
    for p in &asked {
        match targets::availability(p) {
            Ok(()) => paths.push(p.clone()),
            Err(why) if opts.paths.is_empty() => skipped.push((p.clone(), why)),
            Err(why) => bail!("path {p}: {why}"),
        }
    }
    let base = tempfile::Builder::new()
        .prefix("polytropon-bench-")
        .tempdir_in(opts.dir.clone().unwrap_or_else(std::env::temp_dir))
        .context("cannot create the benchmark directory")?;
    let lower = base.path().join("lower");
    micro::build_lower(&lower, opts.file_mib).context("cannot build the lower branch")?;
    let mut targets = Vec::new();
    for p in &paths {
        targets.push(targets::setup(p, &lower, base.path()).with_context(|| format!("cannot set up path {p}"))?);
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
    let mut rows = Vec::new();
    for &(oi, op, unit) in &selected {
        for (ti, t) in targets.iter().enumerate() {
            let mut s = samples[oi][ti].clone();
            s.sort_by(f64::total_cmp);
            // Throughput: the "p99" is the 1st percentile (the slow end).
            let p99 = if unit == "MiB/s" { percentile(&s, 0.01) } else { percentile(&s, 0.99) };
            rows.push(Row {
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
    drop(targets);
    Ok(Report { date: today(), machine: machine(), paths, skipped, reps: opts.reps, ops: opts.ops, file_mib: opts.file_mib, rows })
}

impl Report {
    fn get(&self, op: &str, path: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.op == op && r.path == path)
    }

    /// A Markdown table: medians (p99), and each path's ratio to `kernel` (or `overlay`).
    pub fn table(&self) -> String {
        let base = ["kernel", "overlay"].into_iter().find(|b| self.paths.iter().any(|p| p == b));
        let mut out = format!(
            "{} | {} | {} reps x {} ops, {} MiB file | median (p99); x = ratio to {} (>1: slower)\n\n",
            self.date,
            self.machine,
            self.reps,
            self.ops,
            self.file_mib,
            base.unwrap_or("-")
        );
        out += "| operation |";
        for p in &self.paths {
            out += &format!(" {p} |");
        }
        out += "\n|---|";
        out += &"---|".repeat(self.paths.len());
        out += "\n";
        for (op, unit) in micro::OPS.into_iter().filter(|(op, _)| self.rows.iter().any(|r| r.op == *op)) {
            out += &format!("| {op} ({unit}) |");
            for p in &self.paths {
                let Some(r) = self.get(op, p) else { out += " - |"; continue };
                let ratio = base.and_then(|b| self.get(op, b)).map(|b| {
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
        for (p, why) in &self.skipped {
            out += &format!("\nskipped {p}: {why}");
        }
        out
    }
}
