//! `polytropon rm`: forget a container that has ended (its record and log; a clone's
//! writable branch went with it unless kept).

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::Signal;
use polytropon::cli::RmArgs;
use polytropon::container::state::Containers;
use polytropon::container::{self};
use polytropon::pool::state::pid_alive;
use polytropon::pool::Pools;

pub fn run(state_dir: &Path, a: RmArgs) -> anyhow::Result<ExitCode> {
    let pools = Pools::new(state_dir);
    pools.get(&a.pool)?.with_context(|| format!("no pool named {}", a.pool))?;
    let containers = Containers::new(&pools, &a.pool);
    let rec = containers.get(&a.name)?.with_context(|| format!("pool {} has no container named {}", a.pool, a.name))?;
    if rec.state() == "running" {
        if !a.force {
            bail!("container {} is running; stop it with `polytropon kill`, or use --force", a.name);
        }
        let _ = container::signal_init(&rec, Signal::SIGKILL);
        // Its monitor unmounts the clone's root and removes its branch, then records the end.
        let deadline = Instant::now() + Duration::from_secs(15);
        while pid_alive(rec.monitor) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    containers.remove(&a.name).with_context(|| format!("cannot remove {}", containers.dir(&a.name).display()))?;
    if let (true, Some(u)) = (rec.keep, &rec.upper) {
        eprintln!("polytropon: kept the writable branch {}", u.display());
    }
    Ok(ExitCode::SUCCESS)
}
