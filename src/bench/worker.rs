//! Jobs run in worker processes, as applications would: this same binary, told by [`ENV`]
//! which job to run, printing what it measured as JSON (or `db_bench` for `rocksdb`). On the
//! user-level path the worker runs under the preload library; several workers at once stand
//! for several containers.

use std::io;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::workload::{self, rocksdb, Job, Output};

/// Set in the worker: its job, as JSON.
pub const ENV: &str = "POLYTROPON_BENCH_JOB";

/// Where and how a worker attaches to the user-level path.
#[derive(Debug, Clone)]
pub struct Attach {
    pub library: PathBuf,
    pub channel: PathBuf,
    /// Mount points and the instances they serve.
    pub mounts: Vec<(PathBuf, u32)>,
}

/// Starts a worker for `job`, its output piped.
pub fn spawn(job: &Job, attach: Option<&Attach>) -> io::Result<Child> {
    let mut cmd = if job.workload == "rocksdb" {
        rocksdb::command(job)
    } else {
        let mut c = Command::new(crate::container::sealed::origin_exe()?);
        c.env(ENV, serde_json::to_string(job).map_err(io::Error::other)?);
        c
    };
    if let Some(a) = attach {
        crate::frontend::attach(&mut cmd, &a.library, &a.channel, &a.mounts);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.spawn().map_err(|e| io::Error::new(e.kind(), format!("cannot start the {} worker: {e}", job.workload)))
}

/// Runs `jobs` at once, one worker each; what each measured.
pub fn run_all(jobs: &[Job], attach: Option<&Attach>) -> io::Result<Vec<Output>> {
    let mut children = Vec::new();
    for job in jobs {
        match spawn(job, attach) {
            Ok(c) => children.push(c),
            Err(e) => {
                for mut c in children {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return Err(e);
            }
        }
    }
    let mut outputs = Vec::new();
    let mut first_err = None;
    for (job, child) in jobs.iter().zip(children) {
        let got = child.wait_with_output().and_then(|o| {
            if !o.status.success() {
                return Err(io::Error::other(format!("the worker failed ({}): {}", o.status, String::from_utf8_lossy(&o.stderr).trim())));
            }
            let text = String::from_utf8_lossy(&o.stdout);
            if job.workload == "rocksdb" {
                rocksdb::parse(&text)
            } else {
                serde_json::from_str(&text).map_err(|e| io::Error::other(format!("the worker printed no result ({e}): {text:?}")))
            }
        });
        match got {
            Ok(out) => outputs.push(out),
            Err(e) => first_err = first_err.or(Some(e)),
        }
    }
    first_err.map_or(Ok(outputs), Err)
}

/// In the worker: runs the job described by [`ENV`], if set, and prints what it measured.
/// `None` when this process is not a worker.
pub fn serve_if_asked() -> Option<std::process::ExitCode> {
    let spec = std::env::var(ENV).ok()?;
    let job: Job = match serde_json::from_str(&spec) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("polytropon: malformed {ENV}: {e}");
            return Some(std::process::ExitCode::from(2));
        }
    };
    match workload::run(&job).and_then(|out| serde_json::to_string(&out).map_err(io::Error::other)) {
        Ok(text) => {
            println!("{text}");
            Some(std::process::ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("polytropon: {} ({}) under {}: {e}", job.workload, job.step, job.root.display());
            Some(std::process::ExitCode::from(1))
        }
    }
}
