//! `polytropon kill`: send a signal to a running container's init, which passes it on to the
//! container's command.

use std::path::Path;
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::{bail, Context};
use nix::sys::signal::Signal;
use polytropon::cli::KillArgs;
use polytropon::container::state::{Containers, Phase};
use polytropon::container::{self};
use polytropon::pool::Pools;

/// `TERM`, `SIGTERM` or `15`.
pub fn parse_signal(s: &str) -> anyhow::Result<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).with_context(|| format!("--signal {s}: no such signal"));
    }
    let upper = s.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    Signal::from_str(&full).with_context(|| format!("--signal {s}: no such signal"))
}

pub fn run(state_dir: &Path, a: KillArgs) -> anyhow::Result<ExitCode> {
    let sig = parse_signal(&a.signal)?;
    let pools = Pools::new(state_dir);
    pools.get(&a.pool)?.with_context(|| format!("no pool named {}", a.pool))?;
    let rec = Containers::new(&pools, &a.pool).get(&a.name)?.with_context(|| format!("pool {} has no container named {}", a.pool, a.name))?;
    if rec.phase != Phase::Running || rec.state() != "running" {
        bail!("container {} is not running ({})", a.name, rec.state());
    }
    container::signal_init(&rec, sig).with_context(|| format!("cannot signal container {} (pid {})", a.name, rec.pid))?;
    Ok(ExitCode::SUCCESS)
}
