//! `polytropon inspect`: pools, their live usage, services, mounts and counters.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use polytropon::cli::{InspectArgs, InspectFormat};
use polytropon::metrics::{self, Exposition};
use polytropon::tenant::report::{gather, PoolReport};
use polytropon::pool::spec::format_list;
use polytropon::pool::state::now;
use polytropon::pool::Pools;
use polytropon::spec::BranchMode;

fn mib(b: Option<u64>) -> String {
    b.map_or("-".into(), |b| format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64))
}

fn human(reports: &[PoolReport]) -> String {
    let mut s = String::new();
    if reports.is_empty() {
        s += "no pools\n";
    }
    for r in reports {
        let p = &r.pool;
        let u = &r.usage;
        let _ = writeln!(s, "pool {}", p.name);
        let _ = writeln!(
            s,
            "  slice    cpus {}  mems {}  memory {}  memory-high {}  pids-max {}  cpu-weight {}  io-weight {}  io-max {}  mem-bw {}",
            p.slice.cpus.as_ref().map_or("-".into(), format_list),
            p.slice.mems.as_ref().map_or("-".into(), format_list),
            mib(p.slice.memory),
            mib(p.slice.memory_high),
            p.slice.pids_max.map_or("-".into(), |v| v.to_string()),
            p.slice.cpu_weight.map_or("-".into(), |v| v.to_string()),
            p.slice.io_weight.map_or("-".into(), |v| v.to_string()),
            p.slice.io_max.len(),
            p.slice.mem_bw.map_or("-".into(), |v| format!("{v} %"))
        );
        if let Some(n) = &p.net {
            let _ = writeln!(
                s,
                "  network  {} Mbit/s both ways  host {} ({})  pool {} (eth0 in {})",
                n.rate as f64 / 1e6,
                n.host_ip(),
                n.host_if(),
                n.pool_ip(),
                n.ns.display()
            );
        }
        let _ = writeln!(s, "  ids      {}", p.ids.map_or("- (containers share the host's user namespace)".into(), |r| format!("host uids/gids {}:{} (container 0 is host {})", r.first, r.count, r.first)));
        let _ = writeln!(
            s,
            "  usage    cpu {}  memory {} (peak {}, limit {})  pids {} / {}",
            u.cpu_ns.map_or("-".into(), |n| format!("{:.3} s", n as f64 / 1e9)),
            mib(u.memory_current),
            mib(u.memory_peak),
            mib(u.memory_limit),
            u.pids_current.map_or("-".into(), |v| v.to_string()),
            u.pids_max.clone().unwrap_or_else(|| "-".into())
        );
        match (&r.service, &r.service_note) {
            (Some(svc), _) => {
                let _ = writeln!(
                    s,
                    "  service  pid {}  up {} s  {} threads  descriptors {} of {}  user-level segment shmid {}",
                    svc.pid,
                    now().saturating_sub(svc.started),
                    svc.threads.len(),
                    svc.descriptors.open,
                    svc.descriptors.limit,
                    svc.shmid
                );
                let u = &svc.user_path;
                let _ = writeln!(
                    s,
                    "  user-level path  clients {}/{}  open files {} (at most {} per process)  files taken back from dead processes {}  client areas given back {}",
                    u.clients, u.areas, u.open_files, u.max_open_per_process, u.reclaimed_files, u.reclaimed_clients
                );
                if let Some(q) = &svc.storage {
                    let _ = writeln!(s, "  storage  {} (the pool's writable branches)", storage_line(q));
                }
                if let Some(c) = &svc.cache {
                    let _ = writeln!(
                        s,
                        "  cache  {} of {} MiB  hits {}  misses {}  evictions {}  invalidations {}  dirty {} KiB  write-backs {} (failed {})",
                        (c.bytes + c.dirty) >> 20,
                        c.limit >> 20,
                        c.hits,
                        c.misses,
                        c.evictions,
                        c.invalidations,
                        c.dirty >> 10,
                        c.writebacks,
                        c.writeback_errors
                    );
                }
                for t in &svc.threads {
                    let _ = writeln!(s, "    thread {:<8} {:<16} last cpu {}  allowed {}", t.tid, t.name, t.cpu, t.allowed);
                }
                for m in &svc.mounts {
                    let branches: Vec<String> = m
                        .spec
                        .branches
                        .iter()
                        .map(|b| format!("{}:{}", b.path.display(), if b.mode == BranchMode::Rw { "rw" } else { "ro" }))
                        .collect();
                    let _ = writeln!(
                        s,
                        "  mount    {}  instance {}  backend {:?}  cache {:?}  fuse transport {}  passthrough opens {} (user-level {})  prefetched opens {}  others' changes {}  branches {}",
                        m.mountpoint.display(),
                        m.instance,
                        m.spec.backend,
                        m.spec.cache.mode,
                        m.fuse_transport,
                        m.passthrough_opens,
                        m.user_passthrough_opens,
                        m.user_prefetched_opens,
                        m.others_changes,
                        branches.join(" ")
                    );
                    if let Some(when) = &m.write_back {
                        let _ = writeln!(s, "    write-back {when}");
                    }
                    if let Some(q) = &m.storage {
                        let _ = writeln!(s, "    storage {}", storage_line(q));
                    }
                    let total = |ops: &std::collections::BTreeMap<String, polytropon::service::stats::OpSummary>| ops.values().map(|o| o.count).sum::<u64>();
                    let (user, fuse) = (total(&m.user_ops), total(&m.fuse_ops));
                    let handed: Vec<String> = m.user_handovers.iter().map(|(why, n)| format!("{why} {n}")).collect();
                    let _ = writeln!(
                        s,
                        "    user-level share {}  handed to the kernel: {}",
                        if user + fuse == 0 { "-".to_string() } else { format!("{:.1} %", 100.0 * user as f64 / (user + fuse) as f64) },
                        if handed.is_empty() { "none".to_string() } else { handed.join(", ") }
                    );
                    for (path, ops) in [("fuse", &m.fuse_ops), ("user", &m.user_ops)] {
                        for (op, o) in ops {
                            let _ = writeln!(s, "    {path} {:<12} {:>9} ops  p50 {:>9.1} us  p99 {:>9.1} us", op, o.count, o.p50_us, o.p99_us);
                        }
                    }
                }
            }
            (None, note) => {
                let _ = writeln!(s, "  service  {}", note.clone().unwrap_or_default());
            }
        }
        for c in &r.ceph {
            match (&c.health, &c.error) {
                (Some(h), _) => {
                    let checks: Vec<String> = h.checks.iter().map(|(code, msg)| format!("{code}: {msg}")).collect();
                    let detail = if checks.is_empty() { String::new() } else { format!("  ({})", checks.join("; ")) };
                    let _ = writeln!(s, "  ceph     {}  client.{}  {}{detail}", c.conf.display(), c.id, h.status);
                }
                (None, e) => {
                    let _ = writeln!(s, "  ceph     {}  client.{}  health unknown: {}", c.conf.display(), c.id, e.clone().unwrap_or_default());
                }
            }
        }
        for c in &r.containers {
            let rec = &c.record;
            let status = match (c.state, rec.exit_code) {
                ("exited", Some(code)) => format!("exited ({code})"),
                (state, _) => state.to_string(),
            };
            let _ = writeln!(
                s,
                "  container {:<16} pid {:<8} {:<12} image {}  root {}  command {}",
                rec.name,
                rec.pid,
                status,
                rec.image.as_deref().unwrap_or("-"),
                rec.root.display(),
                rec.command.join(" ")
            );
        }
    }
    s
}

pub fn run(state_dir: &Path, a: InspectArgs) -> anyhow::Result<ExitCode> {
    let pools = Pools::new(state_dir);
    loop {
        let reports = gather(&pools, a.pool.as_deref()).context("cannot inspect")?;
        match a.format {
            InspectFormat::Json => println!("{}", serde_json::to_string_pretty(&reports)?),
            InspectFormat::Openmetrics => print!("{}", metrics::render(reports, Exposition::OpenMetrics)?),
            InspectFormat::Prometheus => print!("{}", metrics::render(reports, Exposition::Prometheus)?),
            InspectFormat::Human => {
                if a.watch.is_some() {
                    print!("\x1b[2J\x1b[H");
                }
                print!("{}", human(&reports));
            }
        }
        match a.watch {
            Some(secs) => std::thread::sleep(Duration::from_secs(secs.max(1))),
            None => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// `1.0 of 6.0 MiB, 4 of 40 inodes` (a limit absent: `-`).
fn storage_line(q: &polytropon::quota::Usage) -> String {
    let mib = |b: u64| format!("{:.1}", b as f64 / f64::from(1u32 << 20));
    format!(
        "{} of {} MiB, {} of {} inodes",
        mib(q.bytes),
        q.bytes_max.map_or("-".into(), mib),
        q.inodes,
        q.inodes_max.map_or("-".into(), |n| n.to_string())
    )
}
