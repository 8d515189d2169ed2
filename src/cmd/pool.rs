//! `polytropon pool create|list|destroy`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{ensure, Context};
use polytropon::cli::{OutputFormat, PoolCreateArgs, PoolDestroyArgs, PoolListArgs};
use polytropon::pool::spec::{format_list, PoolSpec};
use polytropon::pool::Pools;
use polytropon::tenant::ops;

fn require_root(what: &str) -> anyhow::Result<()> {
    ensure!(rustix::process::geteuid().is_root(), "{what} needs root (it creates cgroups and namespaces)");
    Ok(())
}

pub fn create(state_dir: &Path, a: PoolCreateArgs) -> anyhow::Result<ExitCode> {
    require_root("pool create")?;
    let file = a.file.as_deref().map(PoolSpec::from_file).transpose()?.unwrap_or_default();
    let flags = PoolSpec {
        cpus: a.cpus,
        mems: a.mems,
        memory: a.memory,
        memory_high: a.memory_high,
        pids_max: a.pids_max,
        cpu_weight: a.cpu_weight,
        io_max: a.io_max,
        io_weight: a.io_weight,
        cgroup_parent: a.cgroup_parent,
        uid_range: a.uid_range,
        storage: a.storage,
        inodes: a.inodes,
        mem_bw: a.mem_bw,
        net_rate: a.net_rate,
    };
    let pool = ops::create(&Pools::new(state_dir), &a.name, file.overlay(flags))
        .with_context(|| format!("cannot create pool {}", a.name))?;
    println!("{}", pool.name);
    Ok(ExitCode::SUCCESS)
}

fn human_size(b: Option<u64>) -> String {
    match b {
        None => "-".into(),
        Some(b) if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{}G", b >> 30),
        Some(b) if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}M", b >> 20),
        Some(b) => b.to_string(),
    }
}

pub fn list(state_dir: &Path, a: PoolListArgs) -> anyhow::Result<ExitCode> {
    let pools = Pools::new(state_dir);
    let all = pools.list().context("cannot read the pool state")?;
    match a.format {
        OutputFormat::Json => {
            let rows: Vec<_> = all
                .iter()
                .map(|p| serde_json::json!({"name": p.name, "spec": p.spec, "slice": p.slice, "cgroups": p.cgroups, "ipc_ns": p.ipc_ns, "created": p.created, "service": pools.live_service(&p.name).ok().flatten()}))
                .collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        OutputFormat::Human => {
            println!("{:<16} {:<8} {:<8} {:<8} {:<10}", "NAME", "CPUS", "MEMORY", "PIDS", "SERVICE");
            for p in &all {
                let svc = pools.live_service(&p.name).ok().flatten().map_or("-".to_string(), |s| format!("pid {}", s.pid));
                println!(
                    "{:<16} {:<8} {:<8} {:<8} {:<10}",
                    p.name,
                    p.slice.cpus.as_ref().map_or("-".into(), format_list),
                    human_size(p.slice.memory),
                    p.slice.pids_max.map_or("-".into(), |n| n.to_string()),
                    svc
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn destroy(state_dir: &Path, a: PoolDestroyArgs) -> anyhow::Result<ExitCode> {
    require_root("pool destroy")?;
    ops::destroy(&Pools::new(state_dir), &a.name, a.force).with_context(|| format!("cannot destroy pool {}", a.name))?;
    Ok(ExitCode::SUCCESS)
}
