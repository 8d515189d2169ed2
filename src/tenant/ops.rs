//! Creating and destroying pools, all-or-nothing.

use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::TenantError;

use crate::pool::spec::{check_name, format_list, Host};
use crate::pool::state::{now, pid_alive, PoolState, Pools, Unfinished};
use crate::pool::{cgroups, ids, net, ns, resctrl, PoolSpec};
use crate::container::launch::remove_branch;
use crate::container::state::Containers;
use crate::service::control::{self, Request};
use crate::service::{daemon, fuse};

/// Creates pool `name`. On any failure nothing is left: no cgroup, namespace file or state.
pub fn create(pools: &Pools, name: &str, spec: PoolSpec) -> Result<PoolState, TenantError> {
    check_name(name)?;
    let host = Host::probe()?;
    let slice = spec.validate(&host)?;
    let _lock = pools.lock().map_err(TenantError::Lock)?;
    if pools.get(name)?.is_none() && !matches!(pools.unfinished(name), Ok(None)) {
        return Err(TenantError::Unfinished(name.to_string()));
    }
    if pools.get(name)?.is_some() || pools.pool_dir(name).exists() {
        return Err(TenantError::Exists(name.to_string()));
    }
    if let Some(cpus) = &slice.cpus {
        for other in pools.list()? {
            if let Some(theirs) = &other.slice.cpus {
                let shared: std::collections::BTreeSet<u32> = cpus.intersection(theirs).copied().collect();
                if !shared.is_empty() {
                    return Err(TenantError::CpusTaken { cpus: format_list(cpus), shared: format_list(&shared), owner: other.name });
                }
            }
        }
    }
    // What memory bandwidth allocation needs is checked before anything is made.
    let mba = slice.mem_bw.map(|_| resctrl::Mba::probe(std::path::Path::new(resctrl::ROOT))).transpose()?;
    let asked = spec.uid_range.as_deref().map(ids::parse).transpose()?;
    let dir = pools.pool_dir(name);
    crate::pool::state::private_dir(&dir, 0o711).map_err(|source| TenantError::Dir { path: dir.clone(), source })?;
    // What is made outside the directory is recorded before it is made: a create stopped
    // half-way (killed, a crash) leaves what `pool destroy` needs to undo it.
    let mut plan = Unfinished::default();
    if let Err(e) = pools.save_unfinished(name, &plan) {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(TenantError::Record(e));
    }
    let range = match ids::claim(asked, &dir) {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e.into());
        }
    };
    let undo_dir = || {
        ids::release(&range);
        let _ = std::fs::remove_dir_all(&dir);
    };
    plan.ids = Some(range);
    let planned = cgroups::plan(name, &slice, spec.cgroup_parent.as_deref()).map(|mut cg| {
        cg.resctrl = mba.as_ref().map(|m| m.group_dir(name));
        cg
    });
    let mut cg = match planned {
        Ok(cg) => cg,
        Err(e) => {
            undo_dir();
            return Err(TenantError::CreateCgroups { name: name.to_string(), source: e });
        }
    };
    plan.cgroups = Some(cg.clone());
    if let Err(e) = pools.save_unfinished(name, &plan) {
        undo_dir();
        return Err(TenantError::Record(e));
    }
    if let Err(e) = cgroups::make(&cg, &slice) {
        undo_dir();
        return Err(TenantError::CreateCgroups { name: name.to_string(), source: e });
    }
    if let (Some(mba), Some(percent)) = (&mba, slice.mem_bw) {
        match mba.create_group(name, percent) {
            Ok(dir) => cg.resctrl = Some(dir),
            Err(e) => {
                let _ = cg.delete();
                undo_dir();
                return Err(e.into());
            }
        }
    }
    let ipc = dir.join("ipc");
    if let Err(e) = ns::create_ipc(&ipc) {
        let _ = cg.delete();
        undo_dir();
        return Err(TenantError::CreateIpc(e));
    }
    let net = match slice.net_rate {
        Some(rate) => {
            let taken: Vec<u32> = pools.list()?.iter().filter_map(|p| p.net.as_ref().map(|n| n.index)).collect();
            match net::PoolNet::create(&dir.join("net"), &taken, rate) {
                Ok(n) => Some(n),
                Err(e) => {
                    let _ = ns::remove(&ipc);
                    let _ = cg.delete();
                    undo_dir();
                    return Err(e.into());
                }
            }
        }
        None => None,
    };
    let state = PoolState { name: name.to_string(), spec, slice, cgroups: cg, ipc_ns: ipc.clone(), created: now(), ids: Some(range), net };
    if let Err(e) = pools.save(&state) {
        if let Some(n) = &state.net {
            let _ = n.remove();
        }
        let _ = ns::remove(&ipc);
        let _ = state.cgroups.delete();
        undo_dir();
        return Err(TenantError::Record(e));
    }
    pools.finished(name);
    Ok(state)
}

/// Removes what the unfinished creation of pool `name` made (see [`Unfinished`]): its
/// cgroups and resctrl group as planned (a create starts no process, so they are empty), the
/// namespaces bound in its directory (a pool's veth pair goes with its network namespace),
/// the directory, and its ids' claim.
fn undo_unfinished(pools: &Pools, name: &str, plan: &Unfinished) -> Result<(), TenantError> {
    warn!("pool {name} was never fully created (its `pool create` was stopped); removing what it made");
    if let Some(cg) = &plan.cgroups {
        cg.delete().map_err(|source| TenantError::RemoveCgroups { name: name.to_string(), source })?;
    }
    let dir = pools.pool_dir(name);
    for ns in ["ipc", "net"] {
        ns::remove(&dir.join(ns)).map_err(TenantError::RemoveIpc)?;
    }
    std::fs::remove_dir_all(&dir).map_err(|source| TenantError::RemoveDir { path: dir.clone(), source })?;
    if let Some(r) = &plan.ids {
        ids::release(r);
    }
    Ok(())
}

/// How long a stopping service has before it is killed, and how much longer at most while it
/// keeps writing: it writes its pool cache's dirty data back before it exits, which the pool's
/// own `io.max` may slow to far more than the grace.
const STOP_GRACE: Duration = Duration::from_secs(15);
const STOP_WRITING_MAX: Duration = Duration::from_secs(600);
/// The window in which a stopping service past its grace must have written something (one
/// write-back call of 1 MiB at a slow `io.max` takes seconds).
const STOP_PROGRESS: Duration = Duration::from_secs(10);

/// Waits for the service `pid` to be `gone`: its grace, then for as long as it keeps writing
/// (`wchar` of `/proc/PID/io` growing from one window to the next, up to a bound). Whether it
/// went.
fn wait_for_stop(pid: u32, gone: impl Fn() -> bool) -> bool {
    if wait_until(STOP_GRACE, &gone) {
        return true;
    }
    let start = Instant::now();
    let mut last = bytes_written(pid);
    while start.elapsed() < STOP_WRITING_MAX {
        if wait_until(STOP_PROGRESS, &gone) {
            return true;
        }
        let now = bytes_written(pid);
        match (last, now) {
            (Some(a), Some(b)) if b > a => last = now,
            _ => return false,
        }
        info!("service (pid {pid}) still writing back as it stops ({} bytes written)", now.unwrap_or(0));
    }
    false
}

/// What process `pid` has written through system calls (`wchar`), if its `/proc` says.
fn bytes_written(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines().find_map(|l| l.strip_prefix("wchar:")).and_then(|v| v.trim().parse().ok())
}

fn wait_until(deadline: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Sends SIGKILL to every process in the pool but `spare`.
fn kill_all(pool: &PoolState, spare: Option<u32>) {
    for pid in pool.cgroups.procs().into_iter().filter(|p| Some(*p) != spare) {
        if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        }
    }
}

/// Stops pool `name`'s service: a stop request, then SIGTERM, then SIGKILL.
pub fn stop_service(pools: &Pools, name: &str) -> Result<bool, TenantError> {
    let Some(svc) = pools.live_service(name)? else {
        pools.remove_service(name);
        return Ok(false);
    };
    // A supervisor first, so that it does not start the service again: it passes the stop on.
    let supervisor = svc.supervisor.filter(|p| pid_alive(*p));
    if let Some(p) = supervisor.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
    }
    // Signals go to the recorded pid only while it is a process of the pool's cgroups (the
    // service runs in them): a process that took the number after the service ended, maybe
    // another tenant's, is never signalled. (A pool whose record cannot be read keeps the old
    // behaviour.)
    let cgroups = pools.get(name).ok().flatten().map(|p| p.cgroups);
    let ours = |pid: u32| cgroups.as_ref().is_none_or(|c| c.procs().contains(&pid));
    if control::call(&svc.socket, &Request::Stop, Duration::from_secs(5)).is_err() && ours(svc.pid) {
        let pid = rustix::process::Pid::from_raw(svc.pid as i32).ok_or(TenantError::BadPid(svc.pid))?;
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    if !wait_for_stop(svc.pid, || !pid_alive(svc.pid) || !ours(svc.pid)) {
        warn!("service of pool {name} (pid {}) did not stop; killing it", svc.pid);
        if let Some(p) = rustix::process::Pid::from_raw(svc.pid as i32).filter(|_| ours(svc.pid)) {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        }
        wait_until(Duration::from_secs(5), || !pid_alive(svc.pid) || !ours(svc.pid));
    }
    if let Some(p) = supervisor {
        if !wait_until(Duration::from_secs(5), || !pid_alive(p)) {
            warn!("the supervisor of pool {name}'s service (pid {p}) did not stop");
        }
    }
    pools.remove_service(name);
    Ok(true)
}

/// Destroys pool `name`: its service, containers, mounts, cgroups and namespace. While it is
/// busy (a running service or processes in its cgroups) it refuses unless `force`.
pub fn destroy(pools: &Pools, name: &str, force: bool) -> Result<(), TenantError> {
    check_name(name)?;
    let _lock = pools.lock().map_err(TenantError::Lock)?;
    let Some(pool) = pools.get(name)? else {
        return match pools.unfinished(name) {
            Ok(Some(plan)) => undo_unfinished(pools, name, &plan),
            Ok(None) => Err(TenantError::NoPool(name.to_string())),
            // Its record is unreadable: what is in the directory still goes.
            Err(e) => {
                warn!("{e}: the cgroups of pool {name}'s unfinished creation, if it made any, stay");
                undo_unfinished(pools, name, &Unfinished::default())
            }
        };
    };
    let service = pools.live_service(name)?;
    let procs: Vec<u32> = pool.cgroups.procs().into_iter().filter(|p| Some(*p) != service.as_ref().map(|s| s.pid)).collect();
    if !force {
        if let Some(s) = &service {
            return Err(TenantError::ServiceRuns { name: name.to_string(), pid: s.pid });
        }
        if !procs.is_empty() {
            return Err(TenantError::Busy { name: name.to_string(), procs });
        }
    }
    // Containers first (their roots are the service's mounts), then the service.
    let containers = Containers::new(pools, name).list();
    kill_all(&pool, service.as_ref().map(|s| s.pid));
    let only_service = || pool.cgroups.procs().iter().all(|p| Some(*p) == service.as_ref().map(|s| s.pid));
    if !wait_until(Duration::from_secs(10), only_service) {
        warn!("processes {:?} of pool {name} did not exit", pool.cgroups.procs());
    }
    stop_service(pools, name)?;
    // Mounts a dead service may have left.
    for mp in daemon::recorded_mounts(pools, name) {
        let _ = fuse::clear_stale(&mp);
        if fuse::is_our_mount(&mp) {
            let _ = rustix::mount::unmount(&mp, rustix::mount::UnmountFlags::DETACH | rustix::mount::UnmountFlags::NOFOLLOW);
        }
    }
    // Anything else left in the pool.
    kill_all(&pool, None);
    if !wait_until(Duration::from_secs(10), || pool.cgroups.procs().is_empty()) {
        return Err(TenantError::Stayed { name: name.to_string(), procs: pool.cgroups.procs() });
    }
    // Each container's monitor removes its clone's branch; wait for them, then remove what
    // a monitor killed with the container left.
    for c in &containers {
        wait_until(Duration::from_secs(10), || !pid_alive(c.monitor));
        if let (Some(upper), false) = (&c.upper, c.keep) {
            if let Err(e) = remove_branch(upper) {
                warn!("cannot remove {}: {e}", upper.display());
            }
        }
    }
    let mut deleted = pool.cgroups.delete();
    for _ in 0..50 {
        if deleted.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        deleted = pool.cgroups.delete();
    }
    deleted.map_err(|source| TenantError::RemoveCgroups { name: name.to_string(), source })?;
    ns::remove(&pool.ipc_ns).map_err(TenantError::RemoveIpc)?;
    if let Some(n) = &pool.net {
        n.remove()?;
    }
    let dir = pools.pool_dir(name);
    std::fs::remove_dir_all(&dir).map_err(|source| TenantError::RemoveDir { path: dir.clone(), source })?;
    if let Some(r) = &pool.ids {
        ids::release(r);
    }
    Ok(())
}
