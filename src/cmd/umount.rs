//! `polytropon umount`: unmount an instance mounted with `mount`.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use polytropon::cli::UmountArgs;
use polytropon::service::fuse;
use polytropon::service::records::MountRecord;


fn alive(pid: u32) -> bool {
    rustix::process::Pid::from_raw(pid as i32)
        .is_some_and(|p| rustix::process::test_kill_process(p).is_ok())
}

pub fn run(state_dir: &Path, args: UmountArgs) -> anyhow::Result<ExitCode> {
    ensure!(rustix::process::geteuid().is_root(), "umount needs root");
    if let Some(pool) = &args.pool {
        use polytropon::pool::Pools;
        use polytropon::service::control::{self, Request};
        let pools = Pools::new(state_dir);
        pools.get(pool)?.with_context(|| format!("no pool named {pool}"))?;
        let svc = pools.live_service(pool)?.with_context(|| format!("the service of pool {pool} is not running"))?;
        control::call(&svc.socket, &Request::Umount { mountpoint: args.mountpoint.clone() }, Duration::from_secs(30))?;
        return Ok(ExitCode::SUCCESS);
    }
    // A dead daemon's mount is removed here; that is the unmount asked for.
    let cleared = fuse::clear_stale(&args.mountpoint).unwrap_or(false);
    let mountpoint = std::fs::canonicalize(&args.mountpoint)
        .with_context(|| format!("mount point {}", args.mountpoint.display()))?;
    let record = MountRecord::load(state_dir, &mountpoint).ok().flatten();
    match fuse::unmount(&mountpoint) {
        Ok(()) => {}
        Err(fuse::UnmountError::NotMounted(_)) if cleared => {
            MountRecord::remove(state_dir, &mountpoint);
            eprintln!("polytropon: {}: its daemon had died; removed its mount", mountpoint.display());
            return Ok(ExitCode::SUCCESS);
        }
        Err(fuse::UnmountError::NotMounted(_)) if record.is_some() => {
            MountRecord::remove(state_dir, &mountpoint);
            eprintln!("polytropon: {} was no longer mounted; removed its stale record", mountpoint.display());
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e.into()),
    }
    // The daemon exits once its connection ends; wait for it so that its data is synced.
    if let Some(r) = record {
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(r.pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        ensure!(!alive(r.pid), "{} is unmounted but its daemon (pid {}) has not exited", mountpoint.display(), r.pid);
        MountRecord::remove(state_dir, &mountpoint);
    }
    Ok(ExitCode::SUCCESS)
}
