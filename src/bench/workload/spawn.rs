//! `spawn`: short processes, as shell scripts, `make` and package scripts run them. Each
//! thread starts `cat` of a few small files of the shared lower layer, one process after
//! another, and waits for it: what a process pays to start on the path (on the user-level
//! path: loading the preload library and attaching to the service) on top of its own work.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::data::{spawn_files, SPAWN_FILE};
use super::{in_threads, timed, Job, Output, Rng, Until, Warmup};

/// The program each process runs.
const PROGRAM: &str = "/bin/cat";

/// Runs `cat` of `files` to /dev/null; an error unless it exits 0.
fn one(files: &[PathBuf]) -> io::Result<()> {
    let status = Command::new(PROGRAM).args(files).stdin(Stdio::null()).stdout(Stdio::null()).status()?;
    if !status.success() {
        return Err(io::Error::other(format!("{PROGRAM} of the spawn files failed ({status})")));
    }
    Ok(())
}

/// One thread: a warm-up process (the thread's `first op`), then the measured ones.
fn thread(job: &Job, warm: &Warmup) -> io::Result<(u64, Vec<f64>, f64)> {
    let files: Vec<PathBuf> = (0..spawn_files()).map(|i| job.root.join("spawn").join(format!("f{i}"))).collect();
    let mut arrival = warm.arrival();
    let mut took = Vec::new();
    timed(&mut took, || one(&files))?;
    let first = took.pop().unwrap_or(0.0);
    arrival.arrive();
    let until = Until::new(u64::from(job.params.loops), job.params.min_time);
    let mut k = 0;
    while until.more(k) {
        timed(&mut took, || one(&files))?;
        k += 1;
    }
    Ok((k, took, first))
}

pub fn run(job: &Job, rng: &mut Rng) -> io::Result<Output> {
    if !Path::new(PROGRAM).is_file() {
        return Err(io::Error::other(format!("spawn runs {PROGRAM}, which this host lacks")));
    }
    let threads = job.params.threads_of("spawn");
    let warm = Warmup::new(threads);
    let results = in_threads(threads, rng, |_, _| thread(job, &warm))?;
    let (mut total, mut took, mut firsts) = (0, Vec::new(), Vec::new());
    for (n, t, f) in results {
        total += n;
        took.extend(t);
        firsts.push(f);
    }
    let mut out = Output::default();
    out.span("spawn", "processes/s", total as f64, warm.started());
    out.latency(&format!("process (cat of {} x {} KiB)", spawn_files(), SPAWN_FILE / 1024), took);
    out.latency(super::FIRST_OP, firsts);
    Ok(out)
}
