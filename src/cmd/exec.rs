//! `polytropon exec`: `--preload-only` runs a host process inside a pool (its cgroups, IPC
//! namespace and cpus) with the user-level path configured; containers come with issue 6.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use polytropon::cli::ExecArgs;
use polytropon::frontend;
use polytropon::pool::{ns, Pools};
use polytropon::service::control::{self, Request};

use super::not_implemented;

pub fn run(state_dir: &Path, a: ExecArgs) -> anyhow::Result<ExitCode> {
    if !a.preload_only {
        return not_implemented("exec (containers; use --preload-only for a host process)");
    }
    for (set, flag) in [
        (a.root.is_some(), "--root"),
        (a.name.is_some(), "--name"),
        (a.hostname.is_some(), "--hostname"),
        (a.user.is_some(), "--user"),
        (a.tty, "--tty"),
        (a.detach, "--detach"),
    ] {
        ensure!(!set, "{flag} applies to containers, not to --preload-only");
    }
    ensure!(rustix::process::geteuid().is_root(), "exec needs root (it joins the pool's cgroups and namespace)");
    let pools = Pools::new(state_dir);
    let pool = pools.get(&a.pool)?.with_context(|| format!("no pool named {}", a.pool))?;
    let svc = pools.live_service(&a.pool)?.with_context(|| format!("the service of pool {} is not running", a.pool))?;
    let stats = control::call(&svc.socket, &Request::Stats, Duration::from_secs(5))?
        .stats
        .context("the service sent no stats")?;
    let mounts: Vec<(PathBuf, u32)> = stats.mounts.iter().map(|m| (m.mountpoint.clone(), m.instance)).collect();
    let lib = frontend::library()?;
    let Some((program, args)) = a.command.split_first() else { bail!("no command given") };
    let mut cmd = Command::new(program);
    cmd.args(args);
    frontend::attach(&mut cmd, &lib, stats.shmid, &mounts);
    for kv in &a.env {
        let (k, v) = kv.split_once('=').with_context(|| format!("--env {kv:?}: expected K=V"))?;
        cmd.env(k, v);
    }
    if let Some(dir) = &a.workdir {
        cmd.current_dir(dir);
    }
    let cgroups = pool.cgroups.clone();
    let ipc = pool.ipc_ns.clone();
    let cpus = pool.slice.cpus.clone();
    // SAFETY: runs in the forked child before exec. This command has started no thread, so
    // the child may allocate; every step reports failure through the returned error.
    unsafe {
        cmd.pre_exec(move || {
            cgroups.add_process(std::process::id()).map_err(std::io::Error::other)?;
            ns::join_ipc(&ipc)?;
            if let Some(cpus) = &cpus {
                let mut set = nix::sched::CpuSet::new();
                for c in cpus {
                    set.set(*c as usize).map_err(std::io::Error::from)?;
                }
                nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).map_err(std::io::Error::from)?;
            }
            Ok(())
        });
    }
    let status = cmd.status().with_context(|| format!("cannot run {program} in pool {}", a.pool))?;
    // The command's own status passes through; a signal becomes 128 + its number.
    let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
