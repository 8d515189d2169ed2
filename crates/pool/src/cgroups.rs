//! A pool's cgroups, through cgroups-rs, on cgroup v2, v1 and hybrid hierarchies.
//!
//! Pools are created under a parent per hierarchy: by default the cgroup the command itself
//! runs in (as runc and systemd delegation do), or `--cgroup-parent`. The pool's cgroup is
//! `polytropon-NAME` under it. On a hybrid host (v1 controllers, v2 only for process tracking)
//! the controllers are used through v1.
//!
//! v1 mappings: `--memory-high` is `memory.soft_limit_in_bytes`; `--cpu-weight` is
//! `cpu.shares` (runc's conversion); `--io-weight` needs BFQ (`blkio.weight` or
//! `blkio.bfq.weight`); `--io-max` is `blkio.throttle.*`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use cgroups_rs::{Cgroup, CgroupPid, Subsystem};
use serde::{Deserialize, Serialize};

use super::spec::{format_list, Slice};

/// Errors making or using a pool's cgroups.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup controller {controller} is not available on this host (needed for {needed_for})")]
    MissingController { controller: &'static str, needed_for: &'static str },
    #[error("cannot create the pool's cgroup in the {controller} hierarchy at {path}")]
    Create { controller: String, path: String },
    #[error("cannot set {what} in {path}: {why}")]
    Set { what: String, path: String, why: String },
    #[error("cgroup error: {0}")]
    Cgroups(String),
}

/// Where a pool's cgroups are, as recorded in its state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupInfo {
    pub v2: bool,
    /// Path of the pool's cgroup below each parent (`polytropon-NAME`).
    pub path: String,
    /// Parent per controller (v1), as in /proc/self/cgroup.
    pub parents: HashMap<String, String>,
    /// The pool's cgroup directory per controller.
    pub dirs: BTreeMap<String, PathBuf>,
    /// The pool's resctrl group (`--mem-bw`), which its processes join with its cgroups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resctrl: Option<PathBuf>,
}

fn err(e: cgroups_rs::error::Error) -> CgroupError {
    CgroupError::Cgroups(e.to_string())
}

/// Runc's conversion of a cgroup v2 weight (1-10000) to v1 `cpu.shares` (2-262144).
pub fn weight_to_shares(weight: u64) -> u64 {
    2 + (weight.saturating_sub(1) * 262_142) / 9_999
}

fn write_file(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    let set = |why: String| CgroupError::Set { what: format!("{file}={value}"), path: dir.display().to_string(), why };
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).map_err(|e| set(e.to_string()))?;
    f.write_all(value.as_bytes()).map_err(|e| set(e.to_string()))
}

fn read_file(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file)).ok().map(|s| s.trim().to_string())
}

impl CgroupInfo {
    fn load(&self) -> Cgroup {
        let hier = cgroups_rs::hierarchies::auto();
        Cgroup::load_with_relative_paths(hier, &self.path, self.parents.clone())
    }

    pub fn dir(&self, controller: &str) -> Option<&Path> {
        self.dirs.get(controller).map(PathBuf::as_path)
    }

    /// Moves process `pid` (all its threads) into the pool's cgroups, and into its resctrl
    /// group if it has one (there only the thread `pid`: call it before the process starts
    /// threads; its children start in the group).
    pub fn add_process(&self, pid: u32) -> Result<(), CgroupError> {
        self.load().add_task_by_tgid(CgroupPid::from(u64::from(pid))).map_err(err)?;
        if let Some(dir) = &self.resctrl {
            crate::resctrl::add_task(dir, pid).map_err(|e| CgroupError::Set { what: format!("tasks={pid}"), path: dir.display().to_string(), why: e.to_string() })?;
        }
        Ok(())
    }

    /// Moves process `pid` back into the cgroups the pool's were made under.
    pub fn move_to_parent(&self, pid: u32) -> Result<(), CgroupError> {
        for d in self.dirs.values() {
            if let Some(parent) = d.parent() {
                write_file(parent, "cgroup.procs", &pid.to_string())?;
            }
        }
        Ok(())
    }

    /// Processes in the pool's cgroups, its containers' included.
    pub fn procs(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.load().procs().into_iter().map(|p| p.pid as u32).collect();
        for child in self.dirs.values().flat_map(|d| children(d)) {
            v.extend(read_file(&child, "cgroup.procs").iter().flat_map(|s| s.lines().filter_map(|l| l.parse::<u32>().ok()).collect::<Vec<_>>()));
        }
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The cgroup that holds container `name`'s processes: a child of the pool's in the
    /// unified hierarchy (v2; no controllers of its own, so the pool's limits cover it) or in
    /// the `devices` hierarchy (v1; the other controllers stay the pool's).
    fn container_dir(&self, name: &str) -> Option<PathBuf> {
        let parent = if self.v2 { self.dirs.values().next().map(PathBuf::as_path) } else { self.dir("devices") };
        parent.map(|p| p.join(format!("container-{name}")))
    }

    /// Moves process `pid` into the pool's cgroups and into container `name`'s own cgroup,
    /// made (with the device allowlist, [`crate::devices`]) if it is not there yet.
    pub fn add_container_process(&self, pid: u32, name: &str) -> Result<(), CgroupError> {
        self.add_process(pid)?;
        let Some(dir) = self.container_dir(name) else {
            return Err(CgroupError::MissingController { controller: "devices", needed_for: "the containers' device allowlist" });
        };
        let set = |what: &str, e: std::io::Error| CgroupError::Set { what: what.to_string(), path: dir.display().to_string(), why: e.to_string() };
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                let restricted = if self.v2 { crate::devices::restrict_v2(&dir) } else { crate::devices::restrict_v1(&dir) };
                if let Err(e) = restricted {
                    let _ = std::fs::remove_dir(&dir);
                    return Err(set("the device allowlist", e));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(set("a container cgroup", e)),
        }
        write_file(&dir, "cgroup.procs", &pid.to_string())
    }

    /// Removes container `name`'s cgroup once its processes are gone (they die with its
    /// init, a few milliseconds later).
    pub fn remove_container(&self, name: &str) -> Result<(), CgroupError> {
        let Some(dir) = self.container_dir(name) else { return Ok(()) };
        remove_when_empty(&dir)
    }

    /// Removes the pool's cgroups (they must be empty); those not there (never made, or
    /// removed already) are fine.
    pub fn delete(&self) -> Result<(), CgroupError> {
        for child in self.dirs.values().flat_map(|d| children(d)) {
            remove_when_empty(&child)?;
        }
        for d in self.dirs.values() {
            remove_when_empty(d)?;
        }
        if let Some(dir) = &self.resctrl {
            crate::resctrl::remove_group(dir).map_err(|e| CgroupError::Cgroups(format!("cannot remove the resctrl group {}: {e}", dir.display())))?;
        }
        for (c, d) in &self.dirs {
            if d.exists() {
                return Err(CgroupError::Cgroups(format!("{c} cgroup {} is still there", d.display())));
            }
        }
        Ok(())
    }
}

/// The child cgroups of `dir`.
fn children(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()).collect()
}

/// Removes the (childless) cgroup `dir`, waiting up to a second for its last processes to
/// leave.
fn remove_when_empty(dir: &Path) -> Result<(), CgroupError> {
    for _ in 0..100 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => std::thread::sleep(std::time::Duration::from_millis(10)),
            Err(e) => return Err(CgroupError::Set { what: "removal".into(), path: dir.display().to_string(), why: e.to_string() }),
        }
    }
    Err(CgroupError::Cgroups(format!("cgroup {} still has processes", dir.display())))
}

/// Creates the cgroups of pool `name` with `slice` and returns where they are. On failure,
/// nothing is left behind.
pub fn create(name: &str, slice: &Slice, parent: Option<&str>) -> Result<CgroupInfo, CgroupError> {
    let info = plan(name, slice, parent)?;
    make(&info, slice)?;
    Ok(info)
}

/// Where the cgroups of pool `name` with `slice` would be made, made nothing yet: refused if
/// the hierarchy lacks a controller the slice needs, or if they exist already. (A caller
/// records the plan first, so that the cgroups of an interrupted creation can be found.)
pub fn plan(name: &str, slice: &Slice, parent: Option<&str>) -> Result<CgroupInfo, CgroupError> {
    let hier = cgroups_rs::hierarchies::auto();
    let v2 = hier.v2();
    let available: Vec<String> = hier.subsystems().iter().map(Subsystem::controller_name).collect();
    let has = |c: &str| available.iter().any(|a| a == c);
    let io = if v2 { "io" } else { "blkio" };
    let needs: [(bool, &'static str, &'static str); 7] = [
        (slice.cpus.is_some() || slice.mems.is_some(), "cpuset", "--cpus/--mems"),
        (slice.memory.is_some() || slice.memory_high.is_some(), "memory", "--memory/--memory-high"),
        (slice.pids_max.is_some(), "pids", "--pids-max"),
        (slice.cpu_weight.is_some(), "cpu", "--cpu-weight"),
        (!slice.io_max.is_empty(), io, "--io-max"),
        (slice.io_weight.is_some(), io, "--io-weight"),
        (true, if v2 { "memory" } else { "cpuacct" }, "resource accounting"),
    ];
    for (needed, controller, flag) in needs {
        if needed && !has(controller) {
            return Err(CgroupError::MissingController { controller, needed_for: flag });
        }
    }
    let parents = match parent {
        Some(p) => available.iter().map(|c| (c.clone(), p.to_string())).collect(),
        None => cgroups_rs::cgroup::get_cgroups_relative_paths().map_err(err)?,
    };
    let path = format!("polytropon-{name}");
    let cg = Cgroup::load_with_relative_paths(hier, &path, parents.clone());
    let dirs: BTreeMap<String, PathBuf> =
        cg.subsystems().iter().map(|s| (s.controller_name(), s.to_controller().path().to_path_buf())).collect();
    let info = CgroupInfo { v2, path, parents, dirs, resctrl: None };
    if info.dirs.values().any(|d| d.exists()) {
        return Err(already(&info));
    }
    Ok(info)
}

fn already(info: &CgroupInfo) -> CgroupError {
    CgroupError::Cgroups(format!("cgroup {} already exists (a pool of that name under another state directory?)", info.path))
}

/// Makes the cgroups `info` plans (see [`plan`]) and applies `slice` to them. On failure,
/// nothing is left behind.
pub fn make(info: &CgroupInfo, slice: &Slice) -> Result<(), CgroupError> {
    let cg = info.load();
    let exists = || already(info);
    // Claimed with one mkdir that fails if another command made it meanwhile (two pools of
    // one name created at once under different state directories must not share a cgroup).
    if let Some(first) = info.dirs.values().next() {
        match std::fs::create_dir(first) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(exists()),
            _ => {}
        }
    }
    if let Err(e) = cg.create().map_err(err).and_then(|_| {
        for (c, d) in &info.dirs {
            if !d.is_dir() {
                return Err(CgroupError::Create { controller: c.clone(), path: d.display().to_string() });
            }
        }
        apply(info, slice)
    }) {
        let _ = cg.delete();
        return Err(e);
    }
    Ok(())
}

fn apply(info: &CgroupInfo, slice: &Slice) -> Result<(), CgroupError> {
    let dir = |c: &str| info.dir(c).map(Path::to_path_buf);
    if let Some(d) = dir("cpuset") {
        // v1 cpusets start empty: give them the pool's cpus and nodes, or the parent's.
        let parent = d.parent().map(Path::to_path_buf).unwrap_or_default();
        let eff = |f: &str| read_file(&parent, &format!("cpuset.effective_{f}")).or_else(|| read_file(&parent, &format!("cpuset.{f}")));
        let cpus = slice.cpus.as_ref().map(format_list).or_else(|| eff("cpus")).unwrap_or_default();
        let mems = slice.mems.as_ref().map(format_list).or_else(|| eff("mems")).unwrap_or_default();
        if !info.v2 || slice.mems.is_some() {
            write_file(&d, "cpuset.mems", &mems)?;
        }
        if !info.v2 || slice.cpus.is_some() {
            write_file(&d, "cpuset.cpus", &cpus)?;
        }
    }
    if let Some(d) = dir("memory") {
        if let Some(m) = slice.memory {
            let file = if info.v2 { "memory.max" } else { "memory.limit_in_bytes" };
            write_file(&d, file, &m.to_string())?;
        }
        if let Some(h) = slice.memory_high {
            let file = if info.v2 { "memory.high" } else { "memory.soft_limit_in_bytes" };
            write_file(&d, file, &h.to_string())?;
        }
    }
    if let (Some(d), Some(p)) = (dir("pids"), slice.pids_max) {
        write_file(&d, "pids.max", &p.to_string())?;
    }
    if let (Some(d), Some(w)) = (dir("cpu"), slice.cpu_weight) {
        if info.v2 {
            write_file(&d, "cpu.weight", &w.to_string())?;
        } else {
            write_file(&d, "cpu.shares", &weight_to_shares(w).to_string())?;
        }
    }
    let io = if info.v2 { "io" } else { "blkio" };
    if let Some(d) = dir(io) {
        if let Some(w) = slice.io_weight {
            let files = if info.v2 { ["io.weight", "io.bfq.weight"] } else { ["blkio.weight", "blkio.bfq.weight"] };
            let file = files.into_iter().find(|f| d.join(f).exists()).ok_or_else(|| CgroupError::Set {
                what: format!("io weight {w}"),
                path: d.display().to_string(),
                why: format!("neither {} nor {} exists (on cgroup v1 this needs the BFQ I/O scheduler)", files[0], files[1]),
            })?;
            // v1 blkio weights are 10-1000.
            let w = if info.v2 { w } else { (w / 10).clamp(10, 1000) };
            write_file(&d, file, &w.to_string())?;
        }
        for m in &slice.io_max {
            let dev = format!("{}:{}", m.major, m.minor);
            if info.v2 {
                let mut line = dev.clone();
                for (k, v) in [("rbps", m.rbps), ("wbps", m.wbps), ("riops", m.riops), ("wiops", m.wiops)] {
                    if let Some(v) = v {
                        line += &format!(" {k}={v}");
                    }
                }
                write_file(&d, "io.max", &line)?;
            } else {
                for (f, v) in [
                    ("blkio.throttle.read_bps_device", m.rbps),
                    ("blkio.throttle.write_bps_device", m.wbps),
                    ("blkio.throttle.read_iops_device", m.riops),
                    ("blkio.throttle.write_iops_device", m.wiops),
                ] {
                    if let Some(v) = v {
                        write_file(&d, f, &format!("{dev} {v}"))?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Live resource use of a pool.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Usage {
    pub cpu_ns: Option<u64>,
    pub memory_current: Option<u64>,
    pub memory_peak: Option<u64>,
    pub memory_limit: Option<u64>,
    pub pids_current: Option<u64>,
    pub pids_max: Option<String>,
}

/// Reads the pool's current usage from its cgroup files.
pub fn usage(info: &CgroupInfo) -> Usage {
    let num = |c: &str, f: &str| info.dir(c).and_then(|d| read_file(d, f)).and_then(|s| s.parse::<u64>().ok());
    if info.v2 {
        let cpu = info.dir("cpu").or(info.dir("memory")).and_then(|d| read_file(d, "cpu.stat")).and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("usage_usec ")).and_then(|v| v.parse::<u64>().ok()).map(|us| us * 1000)
        });
        Usage {
            cpu_ns: cpu,
            memory_current: num("memory", "memory.current"),
            memory_peak: num("memory", "memory.peak"),
            memory_limit: num("memory", "memory.max"),
            pids_current: num("pids", "pids.current"),
            pids_max: info.dir("pids").and_then(|d| read_file(d, "pids.max")),
        }
    } else {
        Usage {
            cpu_ns: num("cpuacct", "cpuacct.usage"),
            memory_current: num("memory", "memory.usage_in_bytes"),
            memory_peak: num("memory", "memory.max_usage_in_bytes"),
            memory_limit: num("memory", "memory.limit_in_bytes").filter(|l| *l < (1 << 62)),
            pids_current: num("pids", "pids.current"),
            pids_max: info.dir("pids").and_then(|d| read_file(d, "pids.max")),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The controller-file mappings against a fake cgroupfs in a tempdir (as youki tests its
    //! cgroup code): the v2 layout cannot be exercised for real on a host whose controllers
    //! are all bound to v1 hierarchies. Real v1/hybrid cgroups are covered by tests/pools.rs.

    use std::collections::BTreeSet;

    use super::*;
    use crate::spec::IoMax;

    fn fake(v2: bool, files: &[(&str, &str, &str)]) -> (tempfile::TempDir, CgroupInfo) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut dirs = BTreeMap::new();
        for (controller, file, content) in files {
            let d = dir.path().join(controller).join("polytropon-t");
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join(file), content).expect("write");
            dirs.insert(controller.to_string(), d);
        }
        (dir, CgroupInfo { v2, path: "polytropon-t".into(), parents: HashMap::new(), dirs, resctrl: None })
    }

    fn read(info: &CgroupInfo, controller: &str, file: &str) -> String {
        std::fs::read_to_string(info.dir(controller).expect("dir").join(file)).expect("read").trim().to_string()
    }

    fn slice() -> Slice {
        Slice {
            cpus: Some(BTreeSet::from([2, 3])),
            mems: Some(BTreeSet::from([0])),
            memory: Some(1 << 30),
            memory_high: Some(512 << 20),
            pids_max: Some(100),
            cpu_weight: Some(200),
            io_max: vec![IoMax { major: 8, minor: 0, rbps: Some(1 << 20), wbps: None, riops: None, wiops: Some(500) }],
            io_weight: Some(300),
            storage: None,
            inodes: None,
            mem_bw: None,
            net_rate: None,
        }
    }

    #[test]
    fn cgroup_v2_files() {
        // One unified directory holds every controller's files on v2.
        let files = ["cpuset.cpus", "cpuset.mems", "memory.max", "memory.high", "pids.max", "cpu.weight", "io.max", "io.weight"];
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().join("polytropon-t");
        std::fs::create_dir_all(&d).expect("mkdir");
        for f in files {
            std::fs::write(d.join(f), "").expect("write");
        }
        let dirs = ["cpuset", "memory", "pids", "cpu", "io"].into_iter().map(|c| (c.to_string(), d.clone())).collect();
        let info = CgroupInfo { v2: true, path: "polytropon-t".into(), parents: HashMap::new(), dirs, resctrl: None };
        apply(&info, &slice()).expect("apply");
        assert_eq!(read(&info, "cpuset", "cpuset.cpus"), "2-3");
        assert_eq!(read(&info, "cpuset", "cpuset.mems"), "0");
        assert_eq!(read(&info, "memory", "memory.max"), (1u64 << 30).to_string());
        assert_eq!(read(&info, "memory", "memory.high"), (512u64 << 20).to_string());
        assert_eq!(read(&info, "pids", "pids.max"), "100");
        assert_eq!(read(&info, "cpu", "cpu.weight"), "200");
        assert_eq!(read(&info, "io", "io.max"), "8:0 rbps=1048576 wiops=500");
        assert_eq!(read(&info, "io", "io.weight"), "300");
        std::fs::write(d.join("memory.current"), "4096\n").expect("write");
        std::fs::write(d.join("memory.peak"), "8192\n").expect("write");
        std::fs::write(d.join("pids.current"), "3\n").expect("write");
        std::fs::write(d.join("cpu.stat"), "usage_usec 1500\nuser_usec 1000\n").expect("write");
        let u = usage(&info);
        assert_eq!((u.cpu_ns, u.memory_current, u.memory_peak, u.pids_current), (Some(1_500_000), Some(4096), Some(8192), Some(3)));
        assert_eq!(u.memory_limit, Some(1 << 30));
    }

    #[test]
    fn cgroup_v1_files_and_a_missing_weight_file() {
        let (_d, info) = fake(
            false,
            &[
                ("cpuset", "cpuset.cpus", ""),
                ("memory", "memory.limit_in_bytes", ""),
                ("pids", "pids.max", ""),
                ("cpu", "cpu.shares", ""),
                ("blkio", "blkio.throttle.read_bps_device", ""),
            ],
        );
        for (c, f) in [("cpuset", "cpuset.mems"), ("memory", "memory.soft_limit_in_bytes"), ("blkio", "blkio.throttle.write_iops_device")] {
            std::fs::write(info.dir(c).expect("dir").join(f), "").expect("write");
        }
        let mut s = slice();
        s.io_weight = None;
        apply(&info, &s).expect("apply");
        assert_eq!(read(&info, "cpu", "cpu.shares"), weight_to_shares(200).to_string());
        assert_eq!(read(&info, "memory", "memory.soft_limit_in_bytes"), (512u64 << 20).to_string());
        assert_eq!(read(&info, "blkio", "blkio.throttle.read_bps_device"), "8:0 1048576");
        assert_eq!(read(&info, "blkio", "blkio.throttle.write_iops_device"), "8:0 500");
        let e = apply(&info, &slice()).expect_err("no weight file").to_string();
        assert!(e.contains("blkio.weight") && e.contains("BFQ"), "{e}");
        assert_eq!((weight_to_shares(1), weight_to_shares(100), weight_to_shares(10000)), (2, 2597, 262144));
    }
}
