//! `polytropon exec`: a container in a pool (`container::launch`), or with `--preload-only`
//! a host process inside the pool (its cgroups, IPC namespace and cpus) with the user-level
//! path configured.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use polytropon::cli::{ExecArgs, SeccompMode};
use polytropon::container::Confinement;
use polytropon::frontend;
use polytropon::pool::Pools;
use polytropon::service::control::{self, Request};

use polytropon::container::launch::{self, LaunchError, Request as Container, Root};
use polytropon::container::state::Containers;

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

pub fn run(state_dir: &Path, data_dir: &Path, a: ExecArgs) -> anyhow::Result<ExitCode> {
    ensure!(rustix::process::geteuid().is_root(), "exec needs root (it joins the pool's cgroups and namespaces)");
    if a.preload_only {
        return preload_only(state_dir, a);
    }
    // What a container can reach of the runtime is a sealed view of it.
    polytropon::container::sealed::reexec_sealed(state_dir).context("cannot run the runtime from a sealed view of its binary")?;
    let root = match (&a.root, &a.clone_of) {
        _ if a.in_container.is_some() => Root::Mount(PathBuf::new()),
        (Some(r), None) if a.unmanaged_root => Root::Unmanaged(r.clone()),
        (Some(r), None) => Root::Mount(r.clone()),
        (None, Some(i)) => Root::Clone { image: i.clone(), keep: a.keep },
        _ => bail!("give the container's root: --root MOUNTPOINT (a mount of the pool) or --clone-of IMAGE, or --in NAME for a running container"),
    };
    if a.command.is_empty() && (a.clone_of.is_none() || a.in_container.is_some()) {
        bail!("no command given (after `--`)");
    }
    let confine = Confinement::new(&a.cap_add, &a.cap_drop, !a.allow_new_privs, a.seccomp == SeccompMode::Default)?;
    let req = Container {
        pool: a.pool.clone(),
        root,
        name: a.name.clone(),
        hostname: a.hostname.clone(),
        env: a.env.clone(),
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        net: a.net,
        tty: a.tty,
        command: a.command.clone(),
        entrypoint: a.entrypoint.clone(),
        confine,
        userns: a.userns,
    };
    if a.detach {
        return detach(state_dir, &a);
    }
    let log = std::env::var_os(launch::LOG_ENV).map(PathBuf::from);
    let ran = match &a.in_container {
        Some(name) => launch::run_in(state_dir, name, &req),
        None => launch::run(state_dir, data_dir, req, log),
    };
    match ran {
        Ok(code) => Ok(exit(code)),
        Err(LaunchError::Failed { msg, code }) => {
            eprintln!("polytropon: {msg}");
            Ok(exit(code))
        }
        Err(e) => Err(e.into()),
    }
}

/// Starts this command again without `--detach` as the container's monitor, and returns once
/// the container runs.
fn detach(state_dir: &Path, a: &ExecArgs) -> anyhow::Result<ExitCode> {
    let pools = Pools::new(state_dir);
    let name = a.name.clone().unwrap_or_else(launch::generated_name);
    let dir = launch::reserve(&pools, &a.pool, &name)?;
    let containers = Containers::new(&pools, &a.pool);
    let log = dir.join("log");
    let started = super::spawn_detached("container", &log, launch::LOG_ENV, &[(launch::RESERVED_ENV, &name)], Duration::from_secs(60), |_| {
        Ok(containers.get(&name)?.is_some())
    });
    if let Err(e) = started {
        let _ = containers.remove(&name);
        return Err(e);
    }
    println!("{name}");
    Ok(ExitCode::SUCCESS)
}

fn preload_only(state_dir: &Path, a: ExecArgs) -> anyhow::Result<ExitCode> {
    let pools = Pools::new(state_dir);
    let pool = pools.get(&a.pool)?.with_context(|| format!("no pool named {}", a.pool))?;
    let svc = pools.live_service(&a.pool)?.with_context(|| format!("the service of pool {} is not running", a.pool))?;
    let stats = control::call(&svc.socket, &Request::Stats, Duration::from_secs(5))?
        .stats
        .context("the service sent no stats")?;
    let mounts: Vec<(PathBuf, u32)> = stats.mounts.iter().map(|m| (m.mountpoint.clone(), m.instance)).collect();
    let lib = frontend::library(state_dir)?;
    let Some((program, args)) = a.command.split_first() else { bail!("no command given") };
    let mut cmd = Command::new(program);
    cmd.args(args);
    frontend::attach(&mut cmd, &lib, &stats.channel, &mounts);
    for kv in &a.env {
        let (k, v) = kv.split_once('=').with_context(|| format!("--env {kv:?}: expected K=V"))?;
        cmd.env(k, v);
    }
    if let Some(dir) = &a.workdir {
        cmd.current_dir(dir);
    }
    let entry = pool.entry();
    // SAFETY: runs in the forked child before exec. This command has started no thread, so
    // the child may allocate; failure is reported through the returned error.
    unsafe {
        cmd.pre_exec(move || entry.enter().map_err(std::io::Error::other));
    }
    let status = cmd.status().with_context(|| format!("cannot run {program} in pool {}", a.pool))?;
    // The command's own status passes through; a signal becomes 128 + its number.
    Ok(exit(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))))
}
