//! `polytropon service run|stop`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use polytropon::cli::{ServiceRunArgs, ServiceStopArgs};
use polytropon::pool::Pools;
use polytropon::tenant::ops;
use polytropon::metrics::http;
use polytropon::service::daemon::{self, MetricsListen, ServiceSpec, Startup};
use polytropon::service::supervisor::{self, RECOVER_ENV, SUPERVISOR_ENV};

const LOG_ENV: &str = "POLYTROPON_SERVICE_LOG";

pub fn run(state_dir: &Path, a: ServiceRunArgs) -> anyhow::Result<ExitCode> {
    ensure!(rustix::process::geteuid().is_root(), "service run needs root (cgroups, namespaces, FUSE)");
    let pools = Pools::new(state_dir);
    let pool = pools.get(&a.pool)?.with_context(|| format!("no pool named {}", a.pool))?;
    if let Some(s) = pools.live_service(&a.pool)? {
        bail!("the service of pool {} already runs (pid {})", a.pool, s.pid);
    }
    let spec = a.file.as_deref().map(ServiceSpec::from_file).transpose()?.unwrap_or_default();
    // Refused here, before anything starts, and not only by the service's log.
    if let Some(addr) = a.metrics_listen {
        http::check_listen(addr, a.metrics_allow_remote)?;
    }
    let metrics = a.metrics_listen.map(|addr| MetricsListen { addr, allow_remote: a.metrics_allow_remote });
    if a.detach {
        return detach(&pools, &a.pool);
    }
    let supervisor = std::env::var(SUPERVISOR_ENV).ok().and_then(|p| p.parse().ok());
    if a.restart && supervisor.is_none() {
        // This process supervises; the service is the same command without `--restart`.
        let args: Vec<_> = std::env::args_os().skip(1).filter(|a| a != "--restart").collect();
        supervisor::supervise(&pools, &a.pool, &args).with_context(|| format!("supervisor of pool {}", a.pool))?;
        return Ok(ExitCode::SUCCESS);
    }
    let start = Startup { spec, recover: supervisor.is_some() && std::env::var_os(RECOVER_ENV).is_some(), supervisor, log: std::env::var_os(LOG_ENV).map(PathBuf::from), metrics };
    daemon::run(&pools, &pool, start, || {}).with_context(|| format!("service of pool {}", a.pool))?;
    Ok(ExitCode::SUCCESS)
}

fn detach(pools: &Pools, pool: &str) -> anyhow::Result<ExitCode> {
    let log = pools.pool_dir(pool).join("service.log");
    let pid = super::spawn_detached("service", &log, LOG_ENV, &[], Duration::from_secs(20), |pid| {
        // The service itself, or (with --restart) its supervisor.
        Ok(pools.live_service(pool)?.is_some_and(|s| s.pid == pid || s.supervisor == Some(pid)))
    })?;
    println!("{pid}");
    Ok(ExitCode::SUCCESS)
}

pub fn stop(state_dir: &Path, a: ServiceStopArgs) -> anyhow::Result<ExitCode> {
    ensure!(rustix::process::geteuid().is_root(), "service stop needs root");
    let pools = Pools::new(state_dir);
    pools.get(&a.pool)?.with_context(|| format!("no pool named {}", a.pool))?;
    if !ops::stop_service(&pools, &a.pool)? {
        bail!("the service of pool {} is not running", a.pool);
    }
    Ok(ExitCode::SUCCESS)
}
