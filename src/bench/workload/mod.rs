//! The workloads: what one container (one worker process) does in one repetition, and the
//! data they run on.
//!
//! A job runs in a worker process (see [`super::worker`]); several at once stand for several
//! cloned containers. It reports latency samples and spans of work with their start and end
//! on the monotonic clock, so that the spans of concurrent workers add up to one throughput.

pub mod data;
mod fileserver;
pub mod micro;
pub mod noise;
pub mod rocksdb;
mod spawn;
mod stream;
mod webserver;

use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Sizes and counts, from `bench`'s flags.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    /// Operations per repetition of `micro` and `metadata` (`rocksdb`: twice as many keys).
    pub ops: u32,
    /// Loops per thread of `fileserver` and `webserver`.
    pub loops: u32,
    /// The large file, and the sequential streams, in MiB.
    pub file_mib: u64,
    /// Threads per container of every file workload (`None`: [`Params::threads_of`]'s
    /// defaults).
    pub threads: Option<u32>,
    /// Files of the `fileserver` and `webserver` sets.
    pub files: u32,
    /// Mean file size of the `fileserver` set (webserver: a quarter), in KiB.
    pub file_kib: u32,
    /// Containers of `fileappend` and `fileread` running at once.
    pub containers: u32,
    /// The numbers of containers `scaling` runs at once, one point each, ascending.
    #[serde(default)]
    pub scaling: Vec<u32>,
    /// MiB each `fileappend` container appends (at least; see `min_time`).
    pub append_mib: u32,
    /// Seconds each job's measured loop runs at least (`--min-time`): past `ops`, `loops`,
    /// `file_mib` or `append_mib`, the loop goes on until then, so that a repetition measures
    /// the path in its steady state rather than a process's start. 0: the counts alone.
    pub min_time: f64,
}

/// The figure of each job's (each thread's) first operation: a process's start on the path
/// (attach, first lookups), reported apart from the measured loop.
pub const FIRST_OP: &str = "first op";

/// The threads of a job warming up: each arrives when its warm-up is done, and the measured
/// loops start once all have (the first thread past notes when). A thread that fails before
/// arriving lets the others go (its guard's drop), so that none waits for it forever.
#[derive(Debug)]
pub struct Warmup {
    /// Threads yet to arrive, and whether one gave up.
    state: std::sync::Mutex<(u32, bool)>,
    arrived: std::sync::Condvar,
    start: std::sync::OnceLock<f64>,
}

impl Warmup {
    pub fn new(threads: u32) -> Warmup {
        Warmup { state: std::sync::Mutex::new((threads.max(1), false)), arrived: std::sync::Condvar::new(), start: std::sync::OnceLock::new() }
    }

    /// This thread's arrival, to be made with [`Arrival::arrive`] after its warm-up.
    pub fn arrival(&self) -> Arrival<'_> {
        Arrival { warmup: self, arrived: false }
    }

    /// When the measured loops started (now, if they never did).
    pub fn started(&self) -> f64 {
        self.start.get().copied().unwrap_or_else(super::sys::now)
    }

    fn arrive(&self, gave_up: bool) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.0 = s.0.saturating_sub(1);
        s.1 |= gave_up;
        self.arrived.notify_all();
        while s.0 > 0 && !s.1 {
            s = self.arrived.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        drop(s);
        self.start.get_or_init(super::sys::now);
    }
}

/// One thread's place in a [`Warmup`].
#[derive(Debug)]
pub struct Arrival<'a> {
    warmup: &'a Warmup,
    arrived: bool,
}

impl Arrival<'_> {
    /// Waits until every thread has warmed up.
    pub fn arrive(&mut self) {
        if !self.arrived {
            self.arrived = true;
            self.warmup.arrive(false);
        }
    }
}

impl Drop for Arrival<'_> {
    fn drop(&mut self) {
        if !self.arrived {
            self.arrived = true;
            let mut s = self.warmup.state.lock().unwrap_or_else(|p| p.into_inner());
            s.1 = true;
            self.warmup.arrived.notify_all();
        }
    }
}

/// Whether a measured loop goes on: until both `at_least` iterations are done and the
/// loop's minimum time has passed since `since`.
#[derive(Clone, Copy, Debug)]
pub struct Until {
    at_least: u64,
    end: std::time::Instant,
}

impl Until {
    pub fn new(at_least: u64, min_time: f64) -> Until {
        let now = std::time::Instant::now();
        let end = std::time::Duration::try_from_secs_f64(min_time).ok().and_then(|d| now.checked_add(d)).unwrap_or(now);
        Until { at_least, end }
    }

    pub fn more(&self, done: u64) -> bool {
        done < self.at_least || std::time::Instant::now() < self.end
    }
}

/// Threads of `fileserver` and `webserver` unless `--threads` says otherwise (Filebench's
/// personalities run several); the other file workloads run one.
pub const DEFAULT_SERVER_THREADS: u32 = 4;

impl Params {
    /// Threads per container of `workload`.
    pub fn threads_of(&self, workload: &str) -> u32 {
        let default = if matches!(workload, "fileserver" | "webserver") { DEFAULT_SERVER_THREADS } else { 1 };
        self.threads.unwrap_or(default).max(1)
    }
}

/// Runs `f(thread, rng)` on `threads` threads and merges what they measured (latency samples
/// of one operation into one list; spans side by side, which add up to one throughput).
pub fn merged(threads: u32, rng: &mut Rng, f: impl Fn(u32, Rng) -> io::Result<Output> + Sync) -> io::Result<Output> {
    if threads <= 1 {
        // On this thread, as the workload ran before `--threads`: a thread spawned for it
        // would start with no client of its own and measured a stream at half speed.
        return f(0, Rng(rng.next_u64() | 1));
    }
    let mut out = Output::default();
    for o in in_threads(threads, rng, f)? {
        for (op, unit, samples) in o.samples {
            match out.samples.iter_mut().find(|(o2, u2, _)| *o2 == op && *u2 == unit) {
                Some((_, _, all)) => all.extend(samples),
                None => out.samples.push((op, unit, samples)),
            }
        }
        out.spans.extend(o.spans);
    }
    Ok(out)
}

/// One job: `step` of `workload` under `root`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    pub workload: String,
    /// For `micro` and `metadata`, the operation; otherwise the workload's name.
    pub step: String,
    pub root: PathBuf,
    pub params: Params,
    pub rep: u32,
    /// Which of the concurrent containers this is.
    pub container: u32,
    pub seed: u64,
}

/// Work done between two instants, in `unit`'s numerator (MiB or operations).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Span {
    pub op: String,
    /// `MiB/s` or `ops/s`.
    pub unit: String,
    pub amount: f64,
    pub start: f64,
    pub end: f64,
}

/// What a job measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Output {
    /// (operation, unit, samples): latencies in µs, or figures a tool reported.
    pub samples: Vec<(String, String, Vec<f64>)>,
    pub spans: Vec<Span>,
}

impl Output {
    pub fn latency(&mut self, op: &str, samples: Vec<f64>) {
        self.samples.push((op.to_string(), "us".into(), samples));
    }

    pub fn span(&mut self, op: &str, unit: &str, amount: f64, start: f64) {
        self.spans.push(Span { op: op.into(), unit: unit.into(), amount, start, end: super::sys::now() });
    }
}

/// Workloads `bench` knows, in report order.
pub const WORKLOADS: [&str; 13] =
    ["micro", "metadata", "seqwrite", "seqread", "fileappend", "fileread", "fileserver", "webserver", "scaling", "spawn", "rocksdb", "startup", "isolation"];

/// The steps of a workload: its operations run one after another on every path in turn.
pub fn steps(workload: &str) -> Vec<&'static str> {
    match workload {
        "micro" => micro::OPS.iter().map(|(op, _)| *op).collect(),
        "metadata" => micro::METADATA.to_vec(),
        "seqwrite" => vec!["seqwrite"],
        "seqread" => vec!["seqread"],
        "fileappend" => vec!["fileappend"],
        "fileread" => vec!["fileread"],
        "fileserver" => vec!["fileserver"],
        "scaling" => vec!["scaling"],
        "webserver" => vec!["webserver"],
        "spawn" => vec!["spawn"],
        "rocksdb" => vec!["rocksdb"],
        _ => Vec::new(),
    }
}

/// How many workers a job of `workload` runs at once.
pub fn containers(workload: &str, p: &Params) -> u32 {
    match workload {
        "fileappend" | "fileread" => p.containers,
        "scaling" => p.scaling.iter().copied().max().unwrap_or(1),
        _ => 1,
    }
}

/// Runs one job in this process.
pub fn run(job: &Job) -> io::Result<Output> {
    let mut rng = Rng(job.seed | 1);
    match job.workload.as_str() {
        "micro" | "metadata" => {
            let threads = job.params.threads_of(&job.workload);
            merged(threads, &mut rng, |t, mut r| micro::run(&job.step, &job.root, &job.params, (job.rep, t), &mut r))
        }
        "seqwrite" | "seqread" | "fileappend" | "fileread" => {
            let out = merged(job.params.threads_of(&job.workload), &mut rng, |t, _| stream::run(job, t))?;
            if job.workload == "fileappend" {
                stream::check_appended(job, out.spans.iter().map(|s| s.amount).sum())?;
            }
            Ok(out)
        }
        // Each container runs the fileserver mix (with the threads of `scaling`: one unless
        // `--threads` says).
        "fileserver" | "scaling" => fileserver::run(job, &mut rng),
        "webserver" => webserver::run(job, &mut rng),
        "spawn" => spawn::run(job, &mut rng),
        "noise" => noise::run(job, &mut rng),
        other => Err(io::Error::other(format!("workload {other} does not run in a worker"))),
    }
}

/// xorshift: cheap and deterministic.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Times `f`, in µs, into `lat`.
pub fn timed<T>(lat: &mut Vec<f64>, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let t = std::time::Instant::now();
    let r = f()?;
    lat.push(t.elapsed().as_secs_f64() * 1e6);
    Ok(r)
}

/// Runs `f(thread, rng)` on `threads` threads at once (each its own rng drawn from `rng`);
/// their results, or the first error.
pub fn in_threads<T: Send>(threads: u32, rng: &mut Rng, f: impl Fn(u32, Rng) -> io::Result<T> + Sync) -> io::Result<Vec<T>> {
    let seeds: Vec<Rng> = (0..threads.max(1)).map(|_| Rng(rng.next_u64() | 1)).collect();
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = seeds.into_iter().enumerate().map(|(t, r)| s.spawn(move || f(t as u32, r))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(io::Error::other("a workload thread panicked")))).collect()
    })
}
