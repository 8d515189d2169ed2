//! A pool's resource slice: as written (flags or pool.yaml) and as validated.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Errors in a pool spec; each names the field (flag) and the bad value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("{field} {value:?}: {why}")]
    Invalid { field: &'static str, value: String, why: String },
    #[error("cannot read {file}: {why}")]
    Read { file: String, why: String },
    #[error("{0}")]
    Other(String),
}

fn invalid(field: &'static str, value: &str, why: impl Into<String>) -> SpecError {
    SpecError::Invalid { field, value: value.to_string(), why: why.into() }
}

/// A pool spec as an operator writes it (pool.yaml keys are the flag names with `_`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolSpec {
    pub cpus: Option<String>,
    pub mems: Option<String>,
    pub memory: Option<String>,
    pub memory_high: Option<String>,
    pub pids_max: Option<u64>,
    pub cpu_weight: Option<u64>,
    pub io_max: Vec<String>,
    pub io_weight: Option<u64>,
    pub cgroup_parent: Option<String>,
    /// Host ids for the pool's containers' user namespace, `FIRST:COUNT` (default: a free
    /// range of 65536 from the host-wide registry).
    pub uid_range: Option<String>,
    /// Bytes the pool's writable branches may hold in all (a size like `20G`).
    pub storage: Option<String>,
    /// Inodes the pool's writable branches may hold in all.
    pub inodes: Option<u64>,
    /// Memory bandwidth, a percentage of each memory domain's (resctrl MBA).
    pub mem_bw: Option<u32>,
    /// The rate of the pool's network, both ways (`20mbit`): the pool gets a network.
    pub net_rate: Option<String>,
}

impl PoolSpec {
    /// Reads a pool.yaml.
    pub fn from_file(path: &Path) -> Result<Self, SpecError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| SpecError::Read { file, why: e.to_string() })?;
        polytropon_fs::spec::from_yaml(&text, path).map_err(|e| SpecError::Other(e.to_string()))
    }

    /// `other`'s fields where set, else ours (flags over a file).
    pub fn overlay(mut self, other: PoolSpec) -> PoolSpec {
        macro_rules! take {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f; } )* };
        }
        take!(cpus, mems, memory, memory_high, pids_max, cpu_weight, io_weight, cgroup_parent, uid_range, storage, inodes, mem_bw, net_rate);
        if !other.io_max.is_empty() {
            self.io_max = other.io_max;
        }
        self
    }
}

/// I/O limits for one block device.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoMax {
    pub major: u64,
    pub minor: u64,
    pub rbps: Option<u64>,
    pub wbps: Option<u64>,
    pub riops: Option<u64>,
    pub wiops: Option<u64>,
}

/// A validated slice.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slice {
    pub cpus: Option<BTreeSet<u32>>,
    pub mems: Option<BTreeSet<u32>>,
    pub memory: Option<u64>,
    pub memory_high: Option<u64>,
    pub pids_max: Option<u64>,
    pub cpu_weight: Option<u64>,
    pub io_max: Vec<IoMax>,
    pub io_weight: Option<u64>,
    /// The storage quota over the pool's writable branches (the service counts them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inodes: Option<u64>,
    /// The memory bandwidth cap (percent of each domain's), through resctrl.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_bw: Option<u32>,
    /// The pool network's rate both ways, bits per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_rate: Option<u64>,
}

/// Parses `2G`, `512M`, `64k`, `1024` (bytes; binary units) for `field`.
pub fn parse_size(field: &'static str, s: &str) -> Result<u64, SpecError> {
    polytropon_fs::spec::parse_size(s).map_err(|why| invalid(field, s, why))
}

/// Parses a cpu or memory-node list like `0-2,5`.
pub fn parse_list(field: &'static str, s: &str) -> Result<BTreeSet<u32>, SpecError> {
    let mut set = BTreeSet::new();
    for part in s.split(',').map(str::trim) {
        let bad = || invalid(field, s, "expected a list like 0-2,5");
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u32>().map_err(|_| bad())?, b.trim().parse::<u32>().map_err(|_| bad())?),
            None => {
                let v = part.parse::<u32>().map_err(|_| bad())?;
                (v, v)
            }
        };
        if a > b || b > 4095 {
            return Err(bad());
        }
        set.extend(a..=b);
    }
    Ok(set)
}

/// Formats a set as a list (`0-2,5`).
pub fn format_list(set: &BTreeSet<u32>) -> String {
    let mut out = Vec::new();
    let mut it = set.iter().copied().peekable();
    while let Some(start) = it.next() {
        let mut end = start;
        while it.peek() == Some(&(end + 1)) {
            end += 1;
            it.next();
        }
        out.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
    }
    out.join(",")
}

/// Where the host says which cpus and memory nodes are online.
#[derive(Clone, Debug)]
pub struct Host {
    pub online_cpus: BTreeSet<u32>,
    pub online_mems: BTreeSet<u32>,
    /// `/sys/dev/block`, to check devices of `--io-max`.
    pub sys_dev_block: std::path::PathBuf,
}

impl Host {
    pub fn probe() -> Result<Self, SpecError> {
        let read = |p: &str| {
            std::fs::read_to_string(p).map_err(|e| SpecError::Other(format!("cannot read {p}: {e}")))
        };
        let online_cpus = parse_list("cpus", read("/sys/devices/system/cpu/online")?.trim())?;
        let online_mems = std::fs::read_to_string("/sys/devices/system/node/online")
            .ok()
            .and_then(|s| parse_list("mems", s.trim()).ok())
            .unwrap_or_else(|| BTreeSet::from([0]));
        Ok(Host { online_cpus, online_mems, sys_dev_block: "/sys/dev/block".into() })
    }
}

fn parse_device(field: &'static str, whole: &str, dev: &str, host: &Host) -> Result<(u64, u64), SpecError> {
    let (major, minor) = if dev.starts_with('/') {
        let md = std::fs::metadata(dev).map_err(|e| invalid(field, whole, format!("{dev}: {e}")))?;
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        if !md.file_type().is_block_device() {
            return Err(invalid(field, whole, format!("{dev} is not a block device")));
        }
        (rustix::fs::major(md.rdev()) as u64, rustix::fs::minor(md.rdev()) as u64)
    } else {
        let (a, b) = dev.split_once(':').ok_or_else(|| invalid(field, whole, "expected MAJ:MIN or a device path"))?;
        let p = |x: &str| x.parse::<u64>().map_err(|_| invalid(field, whole, "expected MAJ:MIN or a device path"));
        (p(a)?, p(b)?)
    };
    if !host.sys_dev_block.join(format!("{major}:{minor}")).exists() {
        return Err(invalid(field, whole, format!("unknown block device {major}:{minor}")));
    }
    Ok((major, minor))
}

/// Parses `MAJ:MIN:rbps=N,wbps=N,riops=N,wiops=N` or `/dev/X:rbps=...`.
pub fn parse_io_max(s: &str, host: &Host) -> Result<IoMax, SpecError> {
    const F: &str = "--io-max";
    let (dev, limits) = match s.rfind(':') {
        Some(i) if s[i + 1..].contains('=') => (&s[..i], &s[i + 1..]),
        _ => return Err(invalid(F, s, "expected DEV:rbps=..,wbps=..,riops=..,wiops=..")),
    };
    let (major, minor) = parse_device(F, s, dev, host)?;
    let mut io = IoMax { major, minor, ..IoMax::default() };
    for kv in limits.split(',') {
        let (k, v) = kv.split_once('=').ok_or_else(|| invalid(F, s, format!("{kv:?}: expected KEY=VALUE")))?;
        let v = if matches!(k, "rbps" | "wbps") { parse_size(F, v)? } else {
            v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| invalid(F, s, format!("{k}: expected a positive number")))?
        };
        match k {
            "rbps" => io.rbps = Some(v),
            "wbps" => io.wbps = Some(v),
            "riops" => io.riops = Some(v),
            "wiops" => io.wiops = Some(v),
            other => return Err(invalid(F, s, format!("unknown limit {other:?} (rbps, wbps, riops, wiops)"))),
        }
    }
    Ok(io)
}

impl PoolSpec {
    /// Validates against the host.
    pub fn validate(&self, host: &Host) -> Result<Slice, SpecError> {
        let cpus = self.cpus.as_deref().map(|c| parse_list("--cpus", c)).transpose()?;
        if let (Some(set), Some(raw)) = (&cpus, &self.cpus) {
            if let Some(off) = set.iter().find(|c| !host.online_cpus.contains(c)) {
                return Err(invalid("--cpus", raw, format!("cpu {off} is not online (online: {})", format_list(&host.online_cpus))));
            }
        }
        let mems = self.mems.as_deref().map(|m| parse_list("--mems", m)).transpose()?;
        if let (Some(set), Some(raw)) = (&mems, &self.mems) {
            if let Some(off) = set.iter().find(|m| !host.online_mems.contains(m)) {
                return Err(invalid("--mems", raw, format!("memory node {off} is not online (online: {})", format_list(&host.online_mems))));
            }
        }
        let memory = self.memory.as_deref().map(|m| parse_size("--memory", m)).transpose()?;
        let memory_high = self.memory_high.as_deref().map(|m| parse_size("--memory-high", m)).transpose()?;
        if let (Some(max), Some(high)) = (memory, memory_high) {
            if high > max {
                return Err(invalid("--memory-high", self.memory_high.as_deref().unwrap_or(""), "is above --memory"));
            }
        }
        if let Some(w) = self.cpu_weight.filter(|w| !(1..=10000).contains(w)) {
            return Err(invalid("--cpu-weight", &w.to_string(), "must be 1-10000"));
        }
        if let Some(parent) = &self.cgroup_parent {
            check_cgroup_parent(parent)?;
        }
        if let Some(w) = self.io_weight.filter(|w| !(1..=10000).contains(w)) {
            return Err(invalid("--io-weight", &w.to_string(), "must be 1-10000"));
        }
        if self.pids_max == Some(0) {
            return Err(invalid("--pids-max", "0", "must be at least 1"));
        }
        let io_max = self.io_max.iter().map(|s| parse_io_max(s, host)).collect::<Result<Vec<_>, _>>()?;
        let storage = self.storage.as_deref().map(|s| parse_size("--storage", s)).transpose()?;
        if storage == Some(0) {
            return Err(invalid("--storage", self.storage.as_deref().unwrap_or(""), "must be more than 0"));
        }
        if self.inodes == Some(0) {
            return Err(invalid("--inodes", "0", "must be at least 1"));
        }
        let net_rate = self.net_rate.as_deref().map(|r| crate::net::parse_rate(r).map_err(|why| invalid("--net-rate", r, why))).transpose()?;
        if let Some(p) = self.mem_bw.filter(|p| !(1..=100).contains(p)) {
            return Err(invalid("--mem-bw", &p.to_string(), "must be 1-100 (a percentage of each memory domain's bandwidth)"));
        }
        Ok(Slice { cpus, mems, memory, memory_high, pids_max: self.pids_max, cpu_weight: self.cpu_weight, io_max, io_weight: self.io_weight, storage, inodes: self.inodes, mem_bw: self.mem_bw, net_rate })
    }
}

/// A cgroup path under each hierarchy's root (`/tenants`, `tenants.slice/t1`,
/// `machine-qemu\x2d1.scope`): names of letters, digits and `._@:-+,=\`, never `.` or `..` (which would make the pool's cgroups
/// elsewhere than under the root, or under another's).
pub fn check_cgroup_parent(parent: &str) -> Result<(), SpecError> {
    let names: Vec<&str> = parent.trim_start_matches('/').split('/').filter(|n| !n.is_empty()).collect();
    let ok = parent.len() <= 1024
        && names.iter().all(|n| *n != "." && *n != ".." && n.chars().all(|c| c.is_ascii_alphanumeric() || "._@:-+,=\\".contains(c)));
    if ok { Ok(()) } else { Err(invalid("--cgroup-parent", parent, "use a cgroup path of names made of letters, digits and ._@:-+,=\\ (no '.' or '..')")) }
}

/// A pool name: letters, digits, `-`, `_`; 1-64 characters, not starting with `-`.
pub fn check_name(name: &str) -> Result<(), SpecError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('-')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok { Ok(()) } else { Err(invalid("NAME", name, "use 1-64 letters, digits, '-' or '_'")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Host {
        Host { online_cpus: (0..4).collect(), online_mems: BTreeSet::from([0]), sys_dev_block: "/sys/dev/block".into() }
    }

    #[test]
    fn a_cgroup_parent_stays_under_the_hierarchy_root() {
        for good in ["tenants", "/tenants", "tenants.slice/t-1", "/", "user@1000.service", "machine-qemu\\x2d1.scope", "a+b,c=d"] {
            assert_eq!(check_cgroup_parent(good), Ok(()), "{good}");
        }
        for bad in ["../../..", "/a/../b", "a/./b", "a b", "a\nb", "a\0b"] {
            assert!(check_cgroup_parent(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_lists_and_names() {
        assert_eq!(parse_size("--memory", "2G"), Ok(2 << 30));
        assert_eq!(parse_size("--memory", "512m"), Ok(512 << 20));
        assert_eq!(parse_size("--memory", "4096"), Ok(4096));
        let e = parse_size("--memory", "8X").expect_err("bad unit").to_string();
        assert!(e.contains("--memory") && e.contains("8X") && e.contains("unit"), "{e}");
        assert!(parse_size("--memory", "G").is_err());
        assert!(parse_size("--memory", "0").is_err());
        assert_eq!(parse_list("--cpus", "0-2,5"), Ok(BTreeSet::from([0, 1, 2, 5])));
        assert!(parse_list("--cpus", "2-1").is_err());
        assert!(parse_list("--cpus", "a").is_err());
        assert_eq!(format_list(&BTreeSet::from([0, 1, 2, 5, 7, 8])), "0-2,5,7-8");
        assert!(check_name("tenant-a_1").is_ok());
        for bad in ["", "-x", "a/b", "a b", "..", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn validation_names_the_problem() {
        let h = host();
        let spec = PoolSpec { cpus: Some("1-2".into()), memory: Some("1G".into()), memory_high: Some("512M".into()), pids_max: Some(64), ..PoolSpec::default() };
        let s = spec.validate(&h).expect("valid");
        assert_eq!(s.cpus, Some(BTreeSet::from([1, 2])));
        assert_eq!((s.memory, s.memory_high), (Some(1 << 30), Some(512 << 20)));
        let e = PoolSpec { cpus: Some("3-5".into()), ..PoolSpec::default() }.validate(&h).expect_err("offline").to_string();
        assert!(e.contains("cpu 4 is not online"), "{e}");
        let e = PoolSpec { memory: Some("1G".into()), memory_high: Some("2G".into()), ..PoolSpec::default() }.validate(&h).expect_err("high").to_string();
        assert!(e.contains("--memory-high"), "{e}");
        let e = PoolSpec { io_max: vec!["259:99:rbps=1M".into()], ..PoolSpec::default() }.validate(&h).expect_err("device").to_string();
        assert!(e.contains("unknown block device 259:99"), "{e}");
        let e = PoolSpec { io_max: vec!["/dev/null:rbps=1M".into()], ..PoolSpec::default() }.validate(&h).expect_err("chr").to_string();
        assert!(e.contains("not a block device"), "{e}");
        let e = PoolSpec { io_max: vec!["8:0:speed=1".into()], ..PoolSpec::default() }.validate(&h).expect_err("key").to_string();
        assert!(e.contains("--io-max"), "{e}");
        let e = PoolSpec { cpu_weight: Some(0), ..PoolSpec::default() }.validate(&h).expect_err("weight").to_string();
        assert!(e.contains("--cpu-weight"), "{e}");
    }

    #[test]
    fn flags_override_the_file() {
        let file = PoolSpec { cpus: Some("0".into()), memory: Some("1G".into()), ..PoolSpec::default() };
        let flags = PoolSpec { cpus: Some("1".into()), ..PoolSpec::default() };
        let m = file.overlay(flags);
        assert_eq!((m.cpus.as_deref(), m.memory.as_deref()), (Some("1"), Some("1G")));
    }
}
