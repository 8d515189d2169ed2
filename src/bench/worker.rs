//! The `user` path runs its workload in a child process under the preload library, as an
//! application would: the child is this same binary, told by [`ENV`] to run one batch and
//! print its samples.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::micro;

/// Set in the child: `op`, root, ops, file MiB, repetition and rng seed, tab-separated.
pub const ENV: &str = "POLYTROPON_BENCH_WORKER";

/// Where and how the child attaches to the user-level path.
#[derive(Debug, Clone)]
pub struct Attach {
    pub library: PathBuf,
    pub shmid: i32,
    pub mountpoint: PathBuf,
}

/// Runs one batch in a child under the library; its samples.
pub fn run(a: &Attach, op: &str, ops: u32, file_mib: u64, rep: u32, rng: &mut u64) -> io::Result<Vec<f64>> {
    let spec = format!("{op}\t{}\t{ops}\t{file_mib}\t{rep}\t{rng}", a.mountpoint.display());
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.env(ENV, spec);
    crate::frontend::attach(&mut cmd, &a.library, a.shmid, &[(a.mountpoint.clone(), 0)]);
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!("the worker failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.split_whitespace();
    *rng = fields.next().and_then(|v| v.parse().ok()).ok_or_else(|| io::Error::other("the worker printed no state"))?;
    fields.map(|v| v.parse::<f64>().map_err(|_| io::Error::other(format!("bad sample {v:?}")))).collect()
}

/// In the child: runs the batch described by [`ENV`], if set, and prints the rng state and
/// the samples. `None` when this process is not a worker.
pub fn serve_if_asked() -> Option<std::process::ExitCode> {
    let spec = std::env::var(ENV).ok()?;
    let f: Vec<&str> = spec.split('\t').collect();
    let parsed = (|| {
        let [op, root, ops, mib, rep, rng] = f.as_slice() else { return None };
        Some((*op, Path::new(root), ops.parse().ok()?, mib.parse().ok()?, rep.parse().ok()?, rng.parse::<u64>().ok()?))
    })();
    let Some((op, root, ops, mib, rep, mut rng)) = parsed else {
        eprintln!("polytropon: malformed {ENV}");
        return Some(std::process::ExitCode::from(2));
    };
    match micro::run(op, root, ops, mib, rep, &mut rng) {
        Ok(samples) => {
            let list: Vec<String> = samples.iter().map(|s| s.to_string()).collect();
            println!("{rng} {}", list.join(" "));
            Some(std::process::ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("polytropon: {op} under {}: {e}", root.display());
            Some(std::process::ExitCode::from(1))
        }
    }
}
