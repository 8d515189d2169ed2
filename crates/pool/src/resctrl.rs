//! Memory bandwidth per pool (`pool create --mem-bw PERCENT`) through the kernel's resource
//! control filesystem, resctrl: a control group of the pool's own whose `MB` schemata cap the
//! memory bandwidth its tasks may use on each memory domain (Intel RDT Memory Bandwidth
//! Allocation, a percentage of the domain's bandwidth).
//!
//! Tasks join the group one by one (a write of the task id to `tasks`); a task's children
//! start in their parent's group, so the service, `exec` commands and container inits are
//! placed when they enter the pool, before they start threads or programs.
//!
//! Where the CPU or kernel offers no memory bandwidth allocation (this project's CI hosts:
//! no resctrl at all), or expresses it in absolute units (AMD, or resctrl mounted with
//! `mba_MBps`), the option is refused with what is missing; nothing is made.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Where resctrl is mounted.
pub const ROOT: &str = "/sys/fs/resctrl";

/// Why `--mem-bw` cannot be had here, or a group cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ResctrlError {
    #[error("--mem-bw needs memory bandwidth allocation: {0}")]
    Unavailable(String),
    #[error("--mem-bw {percent}: {why}")]
    Invalid { percent: u32, why: String },
    #[error("cannot set up the pool's resctrl group {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What the host's resctrl offers for memory bandwidth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mba {
    root: PathBuf,
    /// The least percentage a group may get, and the step of the values.
    min: u32,
    granularity: u32,
    /// The memory bandwidth domains (`MB:ID=...` in the schemata).
    domains: Vec<u32>,
}

fn read_number(path: &Path) -> Result<u32, ResctrlError> {
    let text = std::fs::read_to_string(path).map_err(|source| ResctrlError::Io { path: path.to_path_buf(), source })?;
    text.trim().parse().map_err(|_| ResctrlError::Unavailable(format!("{} holds {:?}, not a number", path.display(), text.trim())))
}

/// Whether the running kernel knows resctrl at all.
fn kernel_has_resctrl() -> bool {
    std::fs::read_to_string("/proc/filesystems").is_ok_and(|t| t.lines().any(|l| l.split_whitespace().last() == Some("resctrl")))
}

impl Mba {
    /// Reads what resctrl mounted at `root` offers.
    pub fn probe(root: &Path) -> Result<Mba, ResctrlError> {
        if !root.join("info").is_dir() {
            return Err(ResctrlError::Unavailable(if kernel_has_resctrl() {
                format!("resctrl is not mounted at {} (mount -t resctrl resctrl {})", root.display(), root.display())
            } else {
                "this kernel has no resctrl (it needs CONFIG_X86_CPU_RESCTRL and a CPU with Intel RDT or AMD PQoS)".into()
            }));
        }
        let info = root.join("info/MB");
        if !info.is_dir() {
            return Err(ResctrlError::Unavailable(format!(
                "this CPU offers no memory bandwidth allocation ({} is missing: Intel RDT MBA or AMD's bandwidth enforcement is needed)",
                info.display()
            )));
        }
        let min = read_number(&info.join("min_bandwidth"))?;
        let granularity = read_number(&info.join("bandwidth_gran"))?.max(1);
        let schemata = root.join("schemata");
        let text = std::fs::read_to_string(&schemata).map_err(|source| ResctrlError::Io { path: schemata.clone(), source })?;
        let line = text
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix("MB:"))
            .ok_or_else(|| ResctrlError::Unavailable(format!("{} has no MB line", schemata.display())))?;
        let mut domains = Vec::new();
        for part in line.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || ResctrlError::Unavailable(format!("{}: cannot read MB domain {part:?}", schemata.display()));
            let (id, value) = part.split_once('=').ok_or_else(bad)?;
            let (id, value): (u32, u32) = (id.trim().parse().map_err(|_| bad())?, value.trim().parse().map_err(|_| bad())?);
            if value > 100 {
                return Err(ResctrlError::Unavailable(format!(
                    "this host's resctrl gives memory bandwidth in absolute units (domain {id} = {value}: AMD, or mounted with mba_MBps), and --mem-bw is a percentage"
                )));
            }
            domains.push(id);
        }
        if domains.is_empty() {
            return Err(ResctrlError::Unavailable(format!("{} names no MB domain", schemata.display())));
        }
        Ok(Mba { root: root.to_path_buf(), min, granularity, domains })
    }

    /// The schemata line that caps a group at `percent` of each domain's bandwidth (rounded
    /// up to the hardware's step, at least its minimum).
    pub fn schemata(&self, percent: u32) -> Result<String, ResctrlError> {
        if !(1..=100).contains(&percent) {
            return Err(ResctrlError::Invalid { percent, why: "must be 1-100 (a percentage of each memory domain's bandwidth)".into() });
        }
        let value = percent.div_ceil(self.granularity).saturating_mul(self.granularity).clamp(self.min, 100);
        let parts: Vec<String> = self.domains.iter().map(|d| format!("{d}={value}")).collect();
        Ok(format!("MB:{}\n", parts.join(";")))
    }

    /// Where pool `name`'s group is made.
    pub fn group_dir(&self, name: &str) -> PathBuf {
        self.root.join(format!("polytropon-{name}"))
    }

    /// Makes pool `name`'s group capped at `percent`; returns its directory.
    pub fn create_group(&self, name: &str, percent: u32) -> Result<PathBuf, ResctrlError> {
        let line = self.schemata(percent)?;
        let dir = self.group_dir(name);
        let io = |source| ResctrlError::Io { path: dir.clone(), source };
        std::fs::create_dir(&dir).map_err(io)?;
        let written = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(dir.join("schemata")).and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            let _ = remove_group(&dir);
            return Err(io(e));
        }
        Ok(dir)
    }
}

/// Puts task `tid` in the group at `dir` (its later children start there too).
pub fn add_task(dir: &Path, tid: u32) -> std::io::Result<()> {
    std::fs::OpenOptions::new().append(true).create(true).open(dir.join("tasks"))?.write_all(format!("{tid}\n").as_bytes())
}

/// Removes the group at `dir` (its tasks go back to the default group); gone already is fine.
pub fn remove_group(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        // A fake tree (tests) holds the files a real group's directory shows.
        Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty && !dir.starts_with(ROOT) => std::fs::remove_dir_all(dir),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resctrl tree as an Intel host with MBA shows it (two memory domains, 10 % steps).
    fn fake(mb: &str) -> tempfile::TempDir {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(t.path().join("info/MB")).expect("info/MB");
        std::fs::write(t.path().join("info/MB/min_bandwidth"), "10\n").expect("min");
        std::fs::write(t.path().join("info/MB/bandwidth_gran"), "10\n").expect("gran");
        std::fs::write(t.path().join("schemata"), format!("    L3:0=7ff;1=7ff\n    {mb}\n")).expect("schemata");
        t
    }

    #[test]
    fn a_pool_group_gets_its_percentage_on_every_domain_and_its_tasks() {
        let t = fake("MB:0=100;1=100");
        let mba = Mba::probe(t.path()).expect("probe");
        assert_eq!(mba.schemata(30).expect("30"), "MB:0=30;1=30\n");
        assert_eq!(mba.schemata(25).expect("rounded up to the step"), "MB:0=30;1=30\n");
        assert_eq!(mba.schemata(1).expect("at least the minimum"), "MB:0=10;1=10\n");
        assert!(matches!(mba.schemata(0), Err(ResctrlError::Invalid { .. })));
        assert!(mba.schemata(101).expect_err("over 100").to_string().contains("1-100"));
        let dir = mba.create_group("tenant-a", 40).expect("group");
        assert_eq!(dir, t.path().join("polytropon-tenant-a"));
        assert_eq!(std::fs::read_to_string(dir.join("schemata")).expect("schemata"), "MB:0=40;1=40\n");
        add_task(&dir, 4242).expect("task");
        add_task(&dir, 4243).expect("task");
        assert_eq!(std::fs::read_to_string(dir.join("tasks")).expect("tasks"), "4242\n4243\n");
        assert!(mba.create_group("tenant-a", 40).is_err(), "a group that exists is not taken over");
        remove_group(&dir).expect("remove");
        assert!(!dir.exists());
        remove_group(&dir).expect("gone already is fine");
    }

    #[test]
    fn what_is_missing_is_named() {
        let none = tempfile::tempdir().expect("tempdir");
        let e = Mba::probe(none.path()).expect_err("no resctrl").to_string();
        assert!(e.contains("resctrl"), "{e}");
        let t = fake("MB:0=100");
        std::fs::remove_dir_all(t.path().join("info/MB")).expect("no MB");
        let e = Mba::probe(t.path()).expect_err("no MBA").to_string();
        assert!(e.contains("no memory bandwidth allocation") && e.contains("info/MB"), "{e}");
        let amd = fake("MB:0=2048;1=2048");
        let e = Mba::probe(amd.path()).expect_err("absolute units").to_string();
        assert!(e.contains("absolute units"), "{e}");
        let broken = fake("MB:0=lots");
        assert!(Mba::probe(broken.path()).is_err());
    }

    #[test]
    fn this_host_refuses_or_offers_it_and_says_which() {
        // The CI hosts have no resctrl: the refusal names what is missing. A host with MBA
        // probes fine (and nothing is made by probing).
        match Mba::probe(Path::new(ROOT)) {
            Ok(m) => assert!(!m.domains.is_empty()),
            Err(e) => assert!(e.to_string().starts_with("--mem-bw needs memory bandwidth allocation: "), "{e}"),
        }
    }
}
