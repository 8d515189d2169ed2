//! `polytropon service run|stop`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use polytropon::cli::{ServiceRunArgs, ServiceStopArgs};
use polytropon::pool::{ops, Pools};
use polytropon::service::daemon::{self, ServiceSpec};

const LOG_ENV: &str = "POLYTROPON_SERVICE_LOG";

pub fn run(state_dir: &Path, a: ServiceRunArgs) -> anyhow::Result<ExitCode> {
    ensure!(rustix::process::geteuid().is_root(), "service run needs root (cgroups, namespaces, FUSE)");
    let pools = Pools::new(state_dir);
    let pool = pools.get(&a.pool)?.with_context(|| format!("no pool named {}", a.pool))?;
    if let Some(s) = pools.live_service(&a.pool)? {
        bail!("the service of pool {} already runs (pid {})", a.pool, s.pid);
    }
    let spec = a.file.as_deref().map(ServiceSpec::from_file).transpose()?.unwrap_or_default();
    if a.detach {
        return detach(&pools, &a.pool);
    }
    let log = std::env::var_os(LOG_ENV).map(PathBuf::from);
    daemon::run(&pools, &pool, spec, log, || {}).with_context(|| format!("service of pool {}", a.pool))?;
    Ok(ExitCode::SUCCESS)
}

fn detach(pools: &Pools, pool: &str) -> anyhow::Result<ExitCode> {
    let log = pools.pool_dir(pool).join("service.log");
    let log_file = std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let exe = std::env::current_exe().context("cannot find the polytropon binary")?;
    let args: Vec<_> = std::env::args_os().skip(1).filter(|a| a != "--detach").collect();
    let mut child = {
        use std::os::unix::process::CommandExt;
        Command::new(exe)
            .args(args)
            .env(LOG_ENV, &log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .process_group(0)
            .spawn()
            .context("cannot start the service")?
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if pools.live_service(pool)?.is_some_and(|s| s.pid == child.id()) {
            println!("{}", child.id());
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(status) = child.try_wait()? {
            let msg = std::fs::read_to_string(&log).unwrap_or_default();
            bail!("the service exited ({status}): {}", msg.trim());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the service did not come up within 20 s; see {}", log.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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
