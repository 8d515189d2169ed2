//! The binary called by another name (multi-call): `mount.polytropon` and
//! `mount.fuse.polytropon` for mount(8), `umount.fuse.polytropon` for umount(8).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use polytropon::cli::{Cli, UmountArgs};
use polytropon::mount_helper::{self, Helper, MountCall, MountFlags, UmountCall};

/// mount(8)'s exit status for a usage error, and for a mount that failed.
const USAGE: u8 = 1;
const FAILED: u8 = 32;

/// Runs the helper `helper` with the arguments after its name.
pub fn run(helper: Helper, name: &str, args: &[OsString]) -> ExitCode {
    let done = match helper {
        Helper::Mount => mount_helper::mount_call(args).map(|c| mount(name, c)),
        Helper::Umount => mount_helper::umount_call(args).map(|c| umount(name, c)),
    };
    match done {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            eprintln!("{name}: {e:#}");
            ExitCode::from(FAILED)
        }
        Err(usage) => {
            eprintln!("{name}: {usage}");
            ExitCode::from(USAGE)
        }
    }
}

fn mount(name: &str, call: MountCall) -> anyhow::Result<ExitCode> {
    for ignored in &call.ignored {
        eprintln!("{name}: ignoring option {ignored:?} (-s)");
    }
    let exe = polytropon::container::sealed::origin_exe().context("cannot find the polytropon binary")?;
    if call.verbose || call.fake {
        let line: Vec<_> = call.args.iter().map(|a| a.to_string_lossy()).collect();
        eprintln!("{name}: polytropon {}", line.join(" "));
    }
    if call.fake {
        return Ok(ExitCode::SUCCESS);
    }
    // `polytropon mount` itself (a daemon that detaches re-runs its own command line).
    // Its output (a detached daemon's pid) is not mount(8)'s, except with -v.
    let out = if call.verbose { std::process::Stdio::inherit() } else { std::process::Stdio::null() };
    let status = std::process::Command::new(exe).arg0("polytropon").args(&call.args).stdout(out).status().context("cannot run polytropon mount")?;
    if !status.success() {
        return Ok(ExitCode::from(FAILED));
    }
    if call.flags.any() {
        if let Err(e) = remount(&call.mountpoint, call.flags) {
            let _ = umount(name, UmountCall { mountpoint: call.mountpoint.clone(), verbose: false });
            return Err(e);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Applies `nosuid`, `nodev`, `noexec` to the mount now at `dir` (a bind remount changes the
/// mount's flags only).
fn remount(dir: &Path, f: MountFlags) -> anyhow::Result<()> {
    use nix::mount::MsFlags;
    let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND;
    for (on, flag) in [(f.nosuid, MsFlags::MS_NOSUID), (f.nodev, MsFlags::MS_NODEV), (f.noexec, MsFlags::MS_NOEXEC)] {
        if on {
            flags |= flag;
        }
    }
    nix::mount::mount(None::<&str>, dir, None::<&str>, flags, None::<&str>).with_context(|| format!("cannot apply nosuid/nodev/noexec to {}", dir.display()))
}

fn umount(name: &str, call: UmountCall) -> anyhow::Result<ExitCode> {
    // The state directory as `polytropon` would take it (POLYTROPON_STATE_DIR or the default).
    let cli = Cli::try_parse_from([OsString::from("polytropon"), "umount".into(), call.mountpoint.clone().into_os_string()])?;
    let pool = owning_pool(&cli.state_dir, &call.mountpoint);
    if call.verbose {
        eprintln!("{name}: polytropon umount {}{}", call.mountpoint.display(), pool.as_ref().map(|p| format!(" --pool {p}")).unwrap_or_default());
    }
    super::umount::run(&cli.state_dir, UmountArgs { mountpoint: call.mountpoint, pool })
}

/// The pool whose running service serves the mount at `dir`, if one does.
fn owning_pool(state_dir: &Path, dir: &Path) -> Option<String> {
    use polytropon::pool::Pools;
    use polytropon::service::control::{self, Request};
    let dir = std::fs::canonicalize(dir).ok()?;
    let pools = Pools::new(state_dir);
    pools.list().ok()?.into_iter().find_map(|p| {
        let svc = pools.live_service(&p.name).ok()??;
        let stats = control::call(&svc.socket, &Request::Stats, std::time::Duration::from_secs(5)).ok()?.stats?;
        stats.mounts.iter().any(|m| m.mountpoint == dir).then_some(p.name)
    })
}
