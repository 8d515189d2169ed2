//! The isolation experiment (the papers' headline): a workload in pool A alone, then beside
//! a noisy neighbour in pool B, on each path. Pool A and B are cgroups with their own cpus,
//! made under the cgroup `bench` runs in; `bench` itself moves into pool A for the
//! experiment (so every daemon and service thread of every path runs on A's cpus, as a
//! pool's would) and back out at the end.
//!
//! Reported per path: the workload's throughput alone and with the neighbour, the drop, its
//! latency (all operations pooled) alone and with the neighbour and the rise of its p99, and
//! the CPU time the host spent on cpus outside pool A while the workload ran alone (busy
//! time of those cpus from /proc/stat: flushers, kernel workers, anything not pinned to the
//! pool; includes whatever else the host ran meanwhile).

use std::path::Path;
use std::process::Child;
use std::time::Duration;

use super::workload::{self, Job, Output};
use super::{is_rate, jobs, targets, worker, BenchError, BenchOptions, Row, Samples};
use crate::pool::cgroups::{self, CgroupInfo};
use crate::pool::spec::Slice;

/// Paths the experiment compares (all on this host's disk).
pub const PATHS: [&str; 11] = ["user", "user-passthrough", "user-cache", "fuse", "fuse-uring", "fuse-writeback", "fuse-direct", "fuse-overlayfs", "unionfs-fuse", "overlay", "kernel"];

/// The experiment's settings.
#[derive(Clone, Debug)]
pub struct IsolationOptions {
    /// The workload of pool A.
    pub victim: String,
    /// Pool A's and pool B's cpus (empty: the first and second half of the cpus `bench` may use).
    pub a_cpus: Vec<usize>,
    pub b_cpus: Vec<usize>,
    /// Size of each of the neighbour's files, in MiB.
    pub noise_mib: u64,
    /// How long the neighbour runs before the workload starts.
    pub warmup: Duration,
    /// The neighbour's storage slice as an operator would set it (`--io-max`, `--io-weight`
    /// of its pool): with either, each repetition runs the workload a third time, beside the
    /// neighbour in a pool B with that slice ("with sliced neighbour").
    pub b_io_max: Vec<crate::pool::spec::IoMax>,
    pub b_io_weight: Option<u64>,
}

impl IsolationOptions {
    /// Whether the experiment has a sliced neighbour's run.
    fn sliced(&self) -> bool {
        !self.b_io_max.is_empty() || self.b_io_weight.is_some()
    }
}

/// Pools A and B (and B with the neighbour's storage slice, when asked for); `bench` is in A
/// while this lives.
struct Pools {
    a: CgroupInfo,
    b: CgroupInfo,
    b_sliced: Option<CgroupInfo>,
}

impl Pools {
    fn create(a: &[usize], b: &[usize], iso: &IsolationOptions) -> Result<Pools, BenchError> {
        let slice = |cpus: &[usize]| Slice { cpus: Some(cpus.iter().map(|c| *c as u32).collect()), ..Slice::default() };
        let pid = std::process::id();
        let a = cgroups::create(&format!("bench-a-{pid}"), &slice(a), None).map_err(cgroup("cannot create pool A's cgroups"))?;
        let b_plain = match cgroups::create(&format!("bench-b-{pid}"), &slice(b), None) {
            Ok(b) => b,
            Err(e) => {
                let _ = a.delete();
                return Err(cgroup("cannot create pool B's cgroups")(e));
            }
        };
        let b_sliced = if iso.sliced() {
            let sliced = Slice { io_max: iso.b_io_max.clone(), io_weight: iso.b_io_weight, ..slice(b) };
            match cgroups::create(&format!("bench-bs-{pid}"), &sliced, None) {
                Ok(c) => Some(c),
                Err(e) => {
                    let _ = a.delete();
                    let _ = b_plain.delete();
                    return Err(cgroup("cannot create the sliced pool B's cgroups")(e));
                }
            }
        } else {
            None
        };
        let pools = Pools { a, b: b_plain, b_sliced };
        pools.a.add_process(pid).map_err(cgroup("cannot move bench into pool A"))?;
        Ok(pools)
    }
}

fn cgroup(what: &'static str) -> impl FnOnce(cgroups::CgroupError) -> BenchError {
    move |source| BenchError::Cgroups { what, source }
}

impl Drop for Pools {
    fn drop(&mut self) {
        if let Err(e) = self.a.move_to_parent(std::process::id()) {
            tracing::warn!("cannot move bench out of pool A: {e}");
        }
        for (name, cg) in [("A", &self.a), ("B", &self.b)].into_iter().chain(self.b_sliced.as_ref().map(|c| ("B, sliced", c))) {
            // Daemons of the paths (fuse-overlayfs, unionfs-fuse) may still be exiting after
            // their unmount: give them a moment, then stop whatever is left.
            if !emptied(cg, Duration::from_secs(3)) {
                for pid in cg.procs() {
                    tracing::warn!("pool {name}: stopping process {pid}, still there after the experiment");
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
                }
                emptied(cg, Duration::from_secs(2));
            }
            if let Err(e) = cg.delete() {
                tracing::warn!("cannot remove pool {name}'s cgroups: {e}");
            }
        }
    }
}

/// Whether `cg` holds no process within `limit` (polling).
fn emptied(cg: &CgroupInfo, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while !cg.procs().is_empty() {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// The neighbour, killed when dropped.
struct Neighbour(Child);

impl Drop for Neighbour {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Busy time per cpu so far, in ms (from /proc/stat).
fn busy_ms() -> Result<Vec<(usize, f64)>, BenchError> {
    let text = std::fs::read_to_string("/proc/stat").map_err(BenchError::io("cannot read /proc/stat"))?;
    let hz = rustix::param::clock_ticks_per_second() as f64;
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let Some(cpu) = f.next().and_then(|c| c.strip_prefix("cpu")).and_then(|n| n.parse::<usize>().ok()) else { continue };
        let v: Vec<f64> = f.filter_map(|x| x.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal: all but idle and iowait.
        let busy: f64 = v.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, x)| x).sum();
        out.push((cpu, busy * 1000.0 / hz));
    }
    Ok(out)
}

fn cpus_allowed() -> Result<Vec<usize>, BenchError> {
    let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).map_err(|source| BenchError::Cpus { what: "cannot read this process's cpus".into(), source })?;
    Ok((0..nix::sched::CpuSet::count()).filter(|c| set.is_set(*c).unwrap_or(false)).collect())
}

/// Renames what a run measured: rates get `suffix`, latencies pool into one "latency".
fn relabel(outs: &mut [Output], suffix: &str) {
    for o in outs {
        for (op, unit, _) in &mut o.samples {
            *op = if is_rate(unit) { format!("{op} {suffix}") } else { format!("latency {suffix}") };
        }
        for s in &mut o.spans {
            s.op = format!("{} {suffix}", s.op);
        }
    }
}

/// Waits for the host's dirty pages to be written, so the next run starts on a quiet host.
/// (The neighbour's files stay for its next run: removing them costs more than the run.)
fn settle() {
    rustix::fs::sync();
}

pub fn run(opts: &BenchOptions, paths: &[String], base: &Path) -> Result<Vec<Row>, BenchError> {
    let iso = &opts.isolation;
    let victim = iso.victim.as_str();
    if workload::steps(victim).is_empty() || victim == "rocksdb" && !targets::has(workload::rocksdb::DB_BENCH) {
        return Err(BenchError::BadVictim(victim.to_string()));
    }
    if !opts.cpus.is_empty() {
        return Err(BenchError::IsolationCpus);
    }
    let (a, b) = if iso.a_cpus.is_empty() || iso.b_cpus.is_empty() {
        let all = cpus_allowed()?;
        if all.len() < 2 {
            return Err(BenchError::TooFewCpus(all.len()));
        }
        let (a, b) = all.split_at(all.len() / 2);
        (a.to_vec(), b.to_vec())
    } else {
        (iso.a_cpus.clone(), iso.b_cpus.clone())
    };
    if a.iter().any(|c| b.contains(c)) {
        return Err(BenchError::SharedCpus);
    }
    let lower = base.join("isolation-lower");
    // Two runs per repetition (three with a sliced neighbour), each with its own files
    // (fileappend's): "repetitions" phases*r + phase.
    let phases: u32 = if iso.sliced() { 3 } else { 2 };
    workload::data::build_lower(&lower, &[victim], &opts.params, opts.reps * phases).map_err(BenchError::io("cannot build the lower branch"))?;
    let noise = base.join("noise");
    std::fs::create_dir_all(&noise).map_err(BenchError::create(&noise))?;
    let pools = Pools::create(&a, &b, iso)?;
    // A quarter of the loops: each path runs the workload twice per repetition, with a
    // warm-up between, and the experiment should still end within a minute or so.
    let params = workload::Params { loops: (opts.params.loops / 4).max(1), ..opts.params.clone() };
    let containers = workload::containers(victim, &params) as usize;
    let mut targets = Vec::new();
    for p in paths {
        targets.push(targets::setup(p, &lower, &base.join("isolation"), &a, None, containers).map_err(|e| BenchError::SetUp { path: p.clone(), source: Box::new(e) })?);
    }
    let steps = workload::steps(victim);
    let total = u64::from(opts.reps) * (steps.len() * targets.len()) as u64 * u64::from(phases);
    let (mut done, mut rng, mut samples) = (0, workload::Rng(0x2545_f491_4f6c_dd1d), Samples::default());
    let noise_job = Job { workload: "noise".into(), step: "noise".into(), root: noise.clone(), params: workload::Params { file_mib: iso.noise_mib, ..opts.params.clone() }, rep: 0, container: 0, seed: 7 };
    for rep in 0..opts.reps {
        for step in &steps {
            for t in &targets {
                let run = |rng: &mut workload::Rng, phase: u32| {
                    let jobs = jobs(victim, step, t, &params, rep * phases + phase, containers as u32, rng);
                    worker::run_all(&jobs, t.worker.as_ref()).map_err(|source| BenchError::Workload { what: format!("{victim} on {}", t.name), source })
                };
                let before = busy_ms()?;
                let mut outs = run(&mut rng, 0)?;
                let after = busy_ms()?;
                let outside: f64 = after.iter().zip(&before).filter(|((c, _), _)| !a.contains(c)).map(|((_, x), (_, y))| x - y).sum();
                samples.add("isolation", "cpu outside pool A, alone", "ms", &t.name, [outside]);
                relabel(&mut outs, "alone");
                samples.add_outputs("isolation", &t.name, &outs);
                done += 1;
                if let Some(f) = opts.progress {
                    f(done, total);
                }
                // Beside the neighbour, then (when asked for) beside it in its storage slice.
                let beside = std::iter::once((1, &pools.b, "with neighbour")).chain(pools.b_sliced.as_ref().map(|b| (2, b, "with sliced neighbour")));
                for (phase, pool_b, label) in beside {
                    let neighbour = Neighbour(worker::spawn(&noise_job, None).map_err(BenchError::io("cannot start the neighbour"))?);
                    pool_b.add_process(neighbour.0.id()).map_err(cgroup("cannot move the neighbour into pool B"))?;
                    std::thread::sleep(iso.warmup);
                    let got = run(&mut rng, phase);
                    drop(neighbour);
                    settle();
                    let mut outs = got?;
                    relabel(&mut outs, label);
                    samples.add_outputs("isolation", &t.name, &outs);
                    done += 1;
                    if let Some(f) = opts.progress {
                        f(done, total);
                    }
                }
            }
        }
    }
    drop(targets);
    drop(pools);
    let mut rows = samples.rows();
    rows.extend(derived(&rows, paths));
    Ok(rows)
}

/// Per path: the throughput drop with the neighbour (%) and the rise of the p99 latency (x).
fn derived(rows: &[Row], paths: &[String]) -> Vec<Row> {
    let mut out = Vec::new();
    let row = |path: &str, op: &str| rows.iter().find(|r| r.path == path && r.op == op);
    for p in paths {
        for (beside, what) in [("with neighbour", ""), ("with sliced neighbour", ", sliced neighbour")] {
            for alone in rows.iter().filter(|r| &r.path == p && is_rate(&r.unit) && r.op.ends_with(" alone")) {
                let name = alone.op.trim_end_matches(" alone");
                if let Some(noisy) = row(p, &format!("{name} {beside}")) {
                    let drop = (alone.median - noisy.median) / alone.median * 100.0;
                    out.push(Row { workload: "isolation".into(), op: format!("{name} drop{what}"), path: p.clone(), unit: "%".into(), median: drop, mean: drop, p99: drop, samples: 1 });
                }
            }
            if let (Some(alone), Some(noisy)) = (row(p, "latency alone"), row(p, &format!("latency {beside}"))) {
                let rise = noisy.p99 / alone.p99;
                out.push(Row { workload: "isolation".into(), op: format!("p99 latency rise{what}"), path: p.clone(), unit: "x".into(), median: rise, mean: rise, p99: rise, samples: 1 });
            }
        }
    }
    out
}
