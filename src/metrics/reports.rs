//! What `inspect` reports, as metric families: the same `PoolReport`s its JSON is made of.
//!
//! Names (after the `polytropon_` prefix the encoder adds) and labels are stable: dashboards
//! and alerts are written against them (`docs/ARCHITECTURE.md` lists them). Descriptive
//! strings (cpu lists, mountpoints, images) go into labels of `*_info` gauges that are always 1;
//! those are plain gauges, not OpenMetrics `info` metrics, since node_exporter's textfile
//! collector (the Prometheus text parser) refuses the `info` type.

use prometheus_client::registry::Unit;

use super::families::{Families, Labels};
use crate::pool::spec::format_list;
use crate::service::control::{MountInfo, ServiceStats};
use crate::service::stats::{bucket_bound_ns, BUCKETS};
use crate::spec::{BackendSpec, BranchMode};
use crate::tenant::report::PoolReport;

fn with(base: &Labels, more: impl IntoIterator<Item = (&'static str, String)>) -> Labels {
    base.iter().cloned().chain(more).collect()
}

/// Every figure of `reports`.
pub(crate) fn families(reports: &[PoolReport]) -> Families {
    let mut f = Families::default();
    for r in reports {
        pool(&mut f, r);
    }
    f
}

fn pool(f: &mut Families, r: &PoolReport) {
    let p = &r.pool;
    let s = &p.slice;
    let base: Labels = vec![("pool", p.name.clone())];
    let info = [
        ("cpus", s.cpus.as_ref().map(format_list).unwrap_or_default()),
        ("mems", s.mems.as_ref().map(format_list).unwrap_or_default()),
        ("ids", p.ids.map(|r| format!("{}:{}", r.first, r.count)).unwrap_or_default()),
    ];
    f.gauge("pool_info", "A pool: its exclusive cpus and memory nodes, and the host ids (FIRST:COUNT) its containers map onto (empty: not set); always 1", None, with(&base, info), 1u64);
    f.gauge("pool_created_timestamp", "When the pool was created (Unix time)", Some(Unit::Seconds), base.clone(), p.created);
    if let Some(c) = &s.cpus {
        f.gauge("pool_slice_cpus", "CPUs reserved for the pool (pool create --cpus)", None, base.clone(), c.len() as u64);
    }
    let slice: [(&'static str, &'static str, Option<Unit>, Option<u64>); 5] = [
        ("pool_slice_memory", "The pool's hard memory limit (pool create --memory)", Some(Unit::Bytes), s.memory),
        ("pool_slice_memory_high", "The pool's memory throttling threshold (pool create --memory-high)", Some(Unit::Bytes), s.memory_high),
        ("pool_slice_pids_max", "The pool's limit on processes and threads (pool create --pids-max)", None, s.pids_max),
        ("pool_slice_cpu_weight", "The pool's relative CPU weight (pool create --cpu-weight)", None, s.cpu_weight),
        ("pool_slice_io_weight", "The pool's relative I/O weight (pool create --io-weight)", None, s.io_weight),
    ];
    for (name, help, unit, v) in slice {
        if let Some(v) = v {
            f.gauge(name, help, unit, base.clone(), v);
        }
    }
    f.gauge("pool_slice_io_max_devices", "Block devices with I/O limits for the pool (pool create --io-max)", None, base.clone(), s.io_max.len() as u64);

    let u = &r.usage;
    if let Some(ns) = u.cpu_ns {
        f.counter("pool_cpu", "CPU time used by the pool's cgroup", Some(Unit::Seconds), base.clone(), ns as f64 / 1e9);
    }
    let usage: [(&'static str, &'static str, Option<Unit>, Option<u64>); 4] = [
        ("pool_memory", "Memory the pool's cgroup uses now (memory.current)", Some(Unit::Bytes), u.memory_current),
        ("pool_memory_peak", "Most memory the pool's cgroup used (memory.peak)", Some(Unit::Bytes), u.memory_peak),
        ("pool_memory_limit", "The pool's cgroup memory limit (memory.max)", Some(Unit::Bytes), u.memory_limit),
        ("pool_pids", "Processes and threads in the pool's cgroup (pids.current)", None, u.pids_current),
    ];
    for (name, help, unit, v) in usage {
        if let Some(v) = v {
            f.gauge(name, help, unit, base.clone(), v);
        }
    }
    // `max` (no limit) leaves it out: the encoder would write infinity as `inf`, which
    // OpenMetrics does not spell that way.
    if let Some(v) = u.pids_max.as_deref().and_then(|m| m.trim().parse::<u64>().ok()) {
        f.gauge("pool_pids_limit", "The pool's cgroup limit on processes and threads (pids.max; absent: no limit)", None, base.clone(), v);
    }

    f.gauge("service_up", "1 when the pool's service runs and answered this scrape, else 0", None, base.clone(), u64::from(r.service.is_some()));
    if let Some(svc) = &r.service {
        service(f, &base, svc);
    }
    for c in &r.ceph {
        let labels = with(&base, [("conf", c.conf.display().to_string()), ("client", c.id.clone())]);
        let status = c.health.as_ref().map_or_else(|| "unknown".to_string(), |h| h.status.clone());
        f.gauge("ceph_health", "The health of a Ceph cluster the pool's mounts use (status HEALTH_OK, HEALTH_WARN, HEALTH_ERR, or unknown when the monitors did not answer); always 1", None, with(&labels, [("status", status)]), 1u64);
        if let Some(h) = &c.health {
            f.gauge("ceph_health_checks", "Failing health checks of a Ceph cluster the pool's mounts use", None, labels, h.checks.len() as u64);
        }
    }
    for state in ["running", "exited", "dead"] {
        let n = r.containers.iter().filter(|c| c.state == state).count() as u64;
        f.gauge("containers", "The pool's containers by state (running, exited, dead)", None, with(&base, [("state", state.to_string())]), n);
    }
    for c in &r.containers {
        let rec = &c.record;
        let labels = with(&base, [("container", rec.name.clone())]);
        let info = [
            ("state", c.state.to_string()),
            ("image", rec.image.clone().unwrap_or_default()),
            ("pid", rec.pid.to_string()),
            ("root", rec.root.display().to_string()),
        ];
        f.gauge("container_info", "A container of the pool: its state, image (empty: none), host pid and root; always 1", None, with(&labels, info), 1u64);
        f.gauge("container_start_time", "When the container started (Unix time)", Some(Unit::Seconds), labels.clone(), rec.started);
        if let Some(code) = rec.exit_code {
            f.gauge("container_exit_code", "The exit status of a container that exited (128+N for signal N)", None, labels, f64::from(code));
        }
    }
}

fn service(f: &mut Families, base: &Labels, svc: &ServiceStats) {
    let info = [("pid", svc.pid.to_string()), ("shmid", svc.shmid.to_string()), ("channel", svc.channel.display().to_string())];
    f.gauge("service_info", "The pool's service: its pid, the shmid of its user-level segment and its channel socket; always 1", None, with(base, info), 1u64);
    f.gauge("service_start_time", "When the service started (Unix time)", Some(Unit::Seconds), base.clone(), svc.started);
    f.gauge("service_threads", "Threads of the service", None, base.clone(), svc.threads.len() as u64);
    for t in &svc.threads {
        let labels = with(base, [("tid", t.tid.to_string()), ("thread", t.name.clone()), ("allowed", t.allowed.clone())]);
        f.gauge("service_thread_last_cpu", "The cpu a service thread last ran on (allowed: its affinity)", None, labels, t.cpu);
    }
    f.gauge("service_open_fds", "Descriptors the service holds open", None, base.clone(), svc.descriptors.open);
    f.gauge("service_max_fds", "The service's descriptor limit (RLIMIT_NOFILE)", None, base.clone(), svc.descriptors.limit);

    let u = &svc.user_path;
    f.gauge("user_path_clients", "Client areas of the user-level path in use", None, base.clone(), u.clients);
    f.gauge("user_path_client_areas", "Client areas of the user-level path in all", None, base.clone(), u.areas);
    f.gauge("user_path_open_files", "Files open on the user-level path", None, base.clone(), u.open_files);
    f.gauge("user_path_max_open_files_per_process", "Files one process may hold open on the user-level path", None, base.clone(), u.max_open_per_process);
    f.counter("user_path_reclaimed_files", "Files of dead processes the service released", None, base.clone(), u.reclaimed_files);
    f.counter("user_path_reclaimed_clients", "Client areas given back (their thread or process ended)", None, base.clone(), u.reclaimed_clients);

    if let Some(q) = &svc.storage {
        storage(f, "pool_storage", "pool_storage_inodes", base.clone(), q);
    }
    if let Some(c) = &svc.cache {
        f.gauge("cache", "Clean data the service's cache holds now", Some(Unit::Bytes), base.clone(), c.bytes);
        f.gauge("cache_dirty", "Dirty data the service's cache holds now (whole blocks)", Some(Unit::Bytes), base.clone(), c.dirty);
        f.gauge("cache_limit", "The size of the service's cache", Some(Unit::Bytes), base.clone(), c.limit);
        let counters: [(&'static str, &'static str, u64); 7] = [
            ("cache_hits", "Reads the service's cache answered", c.hits),
            ("cache_misses", "Reads the service's cache did not hold", c.misses),
            ("cache_insertions", "Blocks put in the service's cache", c.insertions),
            ("cache_evictions", "Blocks evicted from the service's cache", c.evictions),
            ("cache_invalidations", "Blocks of the service's cache dropped because their file changed", c.invalidations),
            ("cache_writebacks", "Dirty blocks the service's cache wrote back", c.writebacks),
            ("cache_writeback_errors", "Write-backs of the service's cache that failed", c.writeback_errors),
        ];
        for (name, help, v) in counters {
            f.counter(name, help, None, base.clone(), v);
        }
    }
    for m in &svc.mounts {
        mount(f, base, m);
    }
}

/// What writable branches hold under a storage quota, and its limits (absent: none).
fn storage(f: &mut Families, bytes: &'static str, inodes: &'static str, labels: Labels, q: &crate::quota::Usage) {
    f.gauge(bytes, "What the writable branches counted against a storage quota hold", Some(Unit::Bytes), labels.clone(), q.bytes);
    f.gauge(inodes, "Inodes the writable branches counted against a storage quota hold", None, labels.clone(), q.inodes);
    if let Some(max) = q.bytes_max {
        let name = if bytes == "pool_storage" { "pool_storage_limit" } else { "instance_storage_limit" };
        f.gauge(name, "The storage quota's byte limit", Some(Unit::Bytes), labels.clone(), max);
    }
    if let Some(max) = q.inodes_max {
        let name = if bytes == "pool_storage" { "pool_storage_inodes_limit" } else { "instance_storage_inodes_limit" };
        f.gauge(name, "The storage quota's inode limit", None, labels, max);
    }
}

fn mount(f: &mut Families, base: &Labels, m: &MountInfo) {
    let labels = with(base, [("instance", m.instance.to_string()), ("mountpoint", m.mountpoint.display().to_string())]);
    let backend = match &m.spec.backend {
        BackendSpec::Local => "local",
        BackendSpec::Cephfs(_) => "cephfs",
    };
    let cache = serde_json::to_value(m.spec.cache.mode).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let branches: Vec<String> =
        m.spec.branches.iter().map(|b| format!("{}:{}", b.path.display(), if b.mode == BranchMode::Rw { "rw" } else { "ro" })).collect();
    let info = [("backend", backend.to_string()), ("cache", cache), ("branches", branches.join(" "))];
    f.gauge("instance_info", "A filesystem instance the service serves: its backend, cache mode and branches (PATH:rw|ro, topmost first); always 1", None, with(&labels, info), 1u64);
    f.counter("instance_passthrough_opens", "Opens the instance answered with FUSE passthrough", None, labels.clone(), m.passthrough_opens);
    f.counter("instance_user_passthrough_opens", "Opens on the user-level path answered with the backing file's descriptor", None, labels.clone(), m.user_passthrough_opens);
    f.counter("instance_user_prefetched_opens", "Opens on the user-level path answered with the file's bytes", None, labels.clone(), m.user_prefetched_opens);
    f.counter("instance_others_changes", "Changes other clients of a shared file system announced (what clients learned of those files forgotten at once)", None, labels.clone(), m.others_changes);
    if let Some(q) = &m.storage {
        storage(f, "instance_storage", "instance_storage_inodes", labels.clone(), q);
    }
    for (why, n) in &m.user_handovers {
        f.counter("instance_user_handovers", "Descriptors the preload library gave to the kernel (reopened through the FUSE mount), by reason", None, with(&labels, [("reason", why.clone())]), *n);
    }
    for (path, ops) in [("fuse", &m.fuse_ops), ("user", &m.user_ops)] {
        for (op, o) in ops {
            let n = o.buckets.len().min(BUCKETS);
            let buckets: Vec<(f64, u64)> = o.buckets[..n]
                .iter()
                .enumerate()
                .map(|(i, c)| (if i + 1 == BUCKETS { f64::INFINITY } else { bucket_bound_ns(i) as f64 / 1e9 }, *c))
                .collect();
            let buckets = if buckets.is_empty() {
                // A service from before the buckets were reported: its count alone.
                vec![(f64::INFINITY, o.count)]
            } else {
                buckets
            };
            let labels = with(&labels, [("path", path.to_string()), ("op", op.clone())]);
            f.histogram(
                "op_duration",
                "Time the service took to answer a request, by path (fuse: the FUSE mount; user: the user-level path) and request kind (buckets are powers of two of nanoseconds, each bound exclusive)",
                Some(Unit::Seconds),
                labels,
                o.sum_ns as f64 / 1e9,
                buckets,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bounds_end_with_inf_and_rise() {
        let bounds: Vec<f64> = (0..BUCKETS).map(|i| if i + 1 == BUCKETS { f64::INFINITY } else { bucket_bound_ns(i) as f64 / 1e9 }).collect();
        assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(bounds[0], 2e-9);
        assert_eq!(bounds[BUCKETS - 1], f64::INFINITY);
    }
}
