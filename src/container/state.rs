//! Container records under `STATE/pools/POOL/containers/NAME/`: `record.yaml` (what `inspect`
//! shows), `log` (a detached container's output), `root/` (a clone's mountpoint).

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::pool::state::pid_alive;
use crate::pool::Pools;
use crate::service::records::write_atomic;

/// Where a container is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Running,
    Exited,
}

/// One container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub name: String,
    pub pool: String,
    pub phase: Phase,
    /// Host pid of the container's init.
    pub pid: u32,
    /// When the init started (see `pool::state::start_time`): what tells it from a process
    /// that took its pid after it ended (`None` in records of older versions).
    #[serde(default)]
    pub init_start: Option<u64>,
    /// The `polytropon exec` process that started it and waits for it.
    pub monitor: u32,
    pub exit_code: Option<i32>,
    pub started: u64,
    pub finished: Option<u64>,
    pub command: Vec<String>,
    /// The image a clone was made of.
    pub image: Option<String>,
    /// Host path of its root.
    pub root: PathBuf,
    /// A clone's private writable branch.
    pub upper: Option<PathBuf>,
    /// Keep the upper branch when the container is removed.
    pub keep: bool,
    pub log: Option<PathBuf>,
    /// The command's environment, working directory and user: what `exec --in` starts with.
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub workdir: PathBuf,
    #[serde(default)]
    pub user: Option<(u32, u32)>,
}

impl ContainerRecord {
    /// Whether the recorded pid still names the container's init (alive, and started when it
    /// did).
    pub fn init_current(&self) -> bool {
        crate::pool::state::pid_alive(self.pid) && (self.init_start.is_none() || crate::pool::state::start_time(self.pid) == self.init_start)
    }

    /// `running`, `exited`, or `dead` (recorded as running, but neither it nor its monitor
    /// is alive: killed with its monitor, or the host restarted).
    pub fn state(&self) -> &'static str {
        match self.phase {
            Phase::Exited => "exited",
            Phase::Running if self.init_current() || pid_alive(self.monitor) => "running",
            Phase::Running => "dead",
        }
    }
}

/// The containers of one pool.
#[derive(Clone, Debug)]
pub struct Containers {
    dir: PathBuf,
}

impl Containers {
    pub fn new(pools: &Pools, pool: &str) -> Self {
        Containers { dir: pools.pool_dir(pool).join("containers") }
    }

    pub fn dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Claims `name`: fails with `AlreadyExists` when a container of the pool has it.
    pub fn reserve(&self, name: &str) -> io::Result<PathBuf> {
        // Clone roots, logs and records: the host's root only.
        crate::pool::state::private_dir(&self.dir, 0o700)?;
        let d = self.dir(name);
        std::fs::create_dir(&d)?;
        Ok(d)
    }

    /// Writes `rec`; never re-creates the directory of a container (or pool) removed meanwhile.
    pub fn save(&self, rec: &ContainerRecord) -> io::Result<()> {
        let d = self.dir(&rec.name);
        if !d.is_dir() {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("{} is gone", d.display())));
        }
        let yaml = serde_yaml_ng::to_string(rec).map_err(io::Error::other)?;
        write_atomic(&d.join("record.yaml"), yaml.as_bytes())
    }

    pub fn get(&self, name: &str) -> io::Result<Option<ContainerRecord>> {
        match std::fs::read_to_string(self.dir(name).join("record.yaml")) {
            Ok(t) => serde_yaml_ng::from_str(&t).map(Some).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every recorded container, by name.
    pub fn list(&self) -> Vec<ContainerRecord> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut out: Vec<ContainerRecord> =
            rd.flatten().filter_map(|e| e.file_name().to_str().and_then(|n| self.get(n).ok().flatten())).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Removes the container's directory (record, log, empty mountpoint).
    pub fn remove(&self, name: &str) -> io::Result<()> {
        remove_tree(&self.dir(name))
    }
}

/// Removes `dir` and what is under it, staying on its filesystem (a mount left under it is
/// an error, never a path into someone else's data).
pub fn remove_tree(dir: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    let status = std::process::Command::new("rm").arg("-rf").arg("--one-file-system").arg("--").arg(dir).status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("rm -rf --one-file-system {} failed ({status})", dir.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(pid: u32, init_start: Option<u64>) -> ContainerRecord {
        ContainerRecord {
            name: "c".into(),
            pool: "p".into(),
            phase: Phase::Running,
            pid,
            init_start,
            monitor: 0,
            exit_code: None,
            started: 0,
            finished: None,
            command: Vec::new(),
            image: None,
            root: PathBuf::new(),
            upper: None,
            keep: false,
            log: None,
            env: Vec::new(),
            workdir: PathBuf::new(),
            user: None,
        }
    }

    /// A recorded pid names the init only while the process holding it started when the init
    /// did: one that took the number later (here: this process, recorded with another start
    /// time) is not the container, and is never signalled as it.
    #[test]
    fn a_pid_taken_by_another_process_is_not_the_container() {
        let me = std::process::id();
        let started = crate::pool::state::start_time(me).expect("own start time");
        assert!(record(me, Some(started)).init_current());
        assert!(record(me, None).init_current(), "records of older versions trust the pid");
        let other = record(me, Some(started + 1));
        assert!(!other.init_current());
        let sent = super::super::signal_init(&other, nix::sys::signal::Signal::SIGCONT);
        assert_eq!(sent.map_err(|e| e.raw_os_error()), Err(Some(libc::ESRCH)));
        super::super::signal_init(&record(me, Some(started)), nix::sys::signal::Signal::SIGCONT).expect("the right process is signalled");
    }
}
