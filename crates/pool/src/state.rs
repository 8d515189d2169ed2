//! Pool state under `STATE/pools/NAME/`: `pool.yaml` (spec, slice, cgroups, namespace),
//! `service.yaml` (the running service), `ipc` (the namespace binding), `control.sock`.

use std::os::unix::fs::OpenOptionsExt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::cgroups::CgroupInfo;
use super::spec::{PoolSpec, Slice};

/// Makes directory `dir` (and its parents) if missing, and takes from its mode any
/// permission `mode` does not give, so that other host users cannot list or enter it
/// beyond what `mode` allows (0700: nothing; 0711: search only).
pub fn private_dir(dir: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::create_dir_all(dir)?;
    let meta = std::fs::metadata(dir)?;
    // Files are made in it by name: a directory another user owns could have them replaced
    // by links while root writes (its owner may rename and plant entries at will).
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != me {
        return Err(io::Error::new(io::ErrorKind::PermissionDenied, format!("{} is owned by uid {}, neither root nor this user: refusing to keep state there", dir.display(), meta.uid())));
    }
    let now = meta.permissions().mode() & 0o7777;
    if now & !mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(now & !(0o077 & !mode)))?;
    }
    Ok(())
}

/// What is known of one pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoolState {
    pub name: String,
    pub spec: PoolSpec,
    pub slice: Slice,
    pub cgroups: CgroupInfo,
    /// The IPC namespace binding.
    pub ipc_ns: PathBuf,
    /// Unix time of creation.
    pub created: u64,
    /// The host ids its containers' user namespace maps onto (none for pools made before
    /// pools had ranges: their containers share the host's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<super::ids::IdRange>,
    /// Its network (`--net-rate`), which its containers join with `exec --net pool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<super::net::PoolNet>,
}

/// What an unfinished `pool create` had planned to make outside the pool's directory,
/// recorded (`creating.yaml`) before it makes each piece: a create that was killed, or whose
/// host crashed, is then undone by `pool destroy` (see [`Pools::unfinished`]). Whatever it made
/// inside the directory (namespace bindings, the id claim's owner) goes with the directory.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Unfinished {
    /// The ids claimed for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<super::ids::IdRange>,
    /// Its cgroups (and resctrl group), as planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroups: Option<CgroupInfo>,
}

/// The running service of a pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub pid: u32,
    pub socket: PathBuf,
    /// Unix time the service started.
    pub started: u64,
    pub log: Option<PathBuf>,
    /// The pool's shared-memory segment id (in the pool's IPC namespace).
    #[serde(default)]
    pub shmid: Option<i32>,
    /// The `service run --restart` process that restarts the service when it dies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervisor: Option<u32>,
}

/// The pools under one state directory.
#[derive(Clone, Debug)]
pub struct Pools {
    dir: PathBuf,
}

/// The record of an unfinished creation in a pool's directory.
const UNFINISHED: &str = "creating.yaml";

/// An exclusive lock over the pools (creation and destruction), released on drop.
#[derive(Debug)]
pub struct PoolsLock(#[allow(dead_code)] File);

fn yaml_err(e: serde_yaml_ng::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

impl Pools {
    pub fn new(state_dir: &Path) -> Self {
        Pools { dir: state_dir.join("pools") }
    }

    pub fn pool_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn lock(&self) -> io::Result<PoolsLock> {
        // Searchable, not listable: a host user's process reaches a pool's channel socket by
        // its path, and nothing else.
        if let Some(state_dir) = self.dir.parent() {
            private_dir(state_dir, 0o711)?;
        }
        private_dir(&self.dir, 0o711)?;
        // Root's alone: another user who could open it could hold the lock for ever.
        let f = std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(self.dir.join(".lock"))?;
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)?;
        Ok(PoolsLock(f))
    }

    pub fn get(&self, name: &str) -> io::Result<Option<PoolState>> {
        let file = self.pool_dir(name).join("pool.yaml");
        match std::fs::read_to_string(&file) {
            Ok(t) => serde_yaml_ng::from_str(&t).map(Some).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", file.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn save(&self, pool: &PoolState) -> io::Result<()> {
        let yaml = serde_yaml_ng::to_string(pool).map_err(yaml_err)?;
        write_atomic(&self.pool_dir(&pool.name).join("pool.yaml"), yaml.as_bytes())
    }

    /// Pool `name`'s unfinished creation: `Some` when its directory is there without a
    /// `pool.yaml` (the create that made it never finished: under [`Pools::lock`], no create
    /// is running), with what it recorded of its plan (nothing, if it was stopped before its
    /// first record).
    pub fn unfinished(&self, name: &str) -> io::Result<Option<Unfinished>> {
        let dir = self.pool_dir(name);
        if !dir.is_dir() || dir.join("pool.yaml").exists() {
            return Ok(None);
        }
        let file = dir.join(UNFINISHED);
        match std::fs::read_to_string(&file) {
            Ok(t) => serde_yaml_ng::from_str(&t).map(Some).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", file.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Some(Unfinished::default())),
            Err(e) => Err(e),
        }
    }

    /// Records what pool `name`'s creation has planned so far (see [`Unfinished`]).
    pub fn save_unfinished(&self, name: &str, plan: &Unfinished) -> io::Result<()> {
        let yaml = serde_yaml_ng::to_string(plan).map_err(yaml_err)?;
        write_atomic(&self.pool_dir(name).join(UNFINISHED), yaml.as_bytes())
    }

    /// Drops pool `name`'s record of an unfinished creation (it finished).
    pub fn finished(&self, name: &str) {
        let _ = std::fs::remove_file(self.pool_dir(name).join(UNFINISHED));
    }

    /// Every pool, by name.
    pub fn list(&self) -> io::Result<Vec<PoolState>> {
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for e in rd {
            let e = e?;
            // Only directories are pools (a stray file beside them is no pool, and no error).
            if !e.path().is_dir() {
                continue;
            }
            if let Some(name) = e.file_name().to_str().filter(|n| !n.starts_with('.')) {
                if let Some(p) = self.get(name)? {
                    out.push(p);
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub fn service(&self, name: &str) -> io::Result<Option<ServiceRecord>> {
        match std::fs::read_to_string(self.pool_dir(name).join("service.yaml")) {
            Ok(t) => serde_yaml_ng::from_str(&t).map(Some).map_err(yaml_err),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn save_service(&self, name: &str, rec: &ServiceRecord) -> io::Result<()> {
        let yaml = serde_yaml_ng::to_string(rec).map_err(yaml_err)?;
        write_atomic(&self.pool_dir(name).join("service.yaml"), yaml.as_bytes())
    }

    pub fn remove_service(&self, name: &str) {
        let _ = std::fs::remove_file(self.pool_dir(name).join("service.yaml"));
    }

    /// The running service of pool `name`, if its process is alive.
    pub fn live_service(&self, name: &str) -> io::Result<Option<ServiceRecord>> {
        Ok(self.service(name)?.filter(|s| pid_alive(s.pid)))
    }
}

/// Whether process `pid` exists and has a thread that is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let zombie = stat.rsplit_once(") ").is_none_or(|(_, rest)| rest.starts_with('Z'));
    // A killed process's leader turns zombie before its other threads have exited, and those
    // still hold the process's files (a FUSE device, a socket): it is gone once they are too.
    !zombie || std::fs::read_dir(format!("/proc/{pid}/task")).is_ok_and(|tasks| tasks.count() > 1)
}

/// When process `pid` started (clock ticks since boot: field 22 of `/proc/PID/stat`): with
/// the pid, it names one process, never one that takes the number later. `None` when there is
/// no such process.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command's closing parenthesis: the state is field 3, the start time field 22.
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Writes `data` to `path` atomically (temporary file, fsync, rename): a reader sees the old
/// content or the new, never a part; a crash leaves one of them.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    // Records are root's (or the service user's) alone: they name branches, clusters, ids.
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    // A leftover of a crash keeps the mode it was made with.
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    // The rename itself lasts once the directory is synced.
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state directory another user owns is refused (its owner could swap the files root
    /// writes there for links); one of root's (or this user's) is narrowed to the mode asked.
    #[test]
    fn state_is_kept_only_in_directories_of_root_or_this_user() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let mine = tmp.path().join("mine");
        std::fs::create_dir(&mine).expect("mkdir");
        std::fs::set_permissions(&mine, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        private_dir(&mine, 0o711).expect("a directory of this user");
        assert_eq!(std::fs::metadata(&mine).expect("stat").permissions().mode() & 0o777, 0o711);
        let theirs = tmp.path().join("theirs");
        std::fs::create_dir(&theirs).expect("mkdir");
        if rustix::fs::chown(&theirs, Some(rustix::fs::Uid::from_raw(12345)), None).is_err() {
            return; // not root: no directory of another user to make
        }
        let err = private_dir(&theirs, 0o711).expect_err("a directory of uid 12345 was taken");
        assert!(err.to_string().contains("uid 12345"), "{err}");
    }

    /// A stray file among the pools is no pool and no error; a pool file that does not parse
    /// is named in the error.
    #[test]
    fn pools_are_listed_past_a_stray_file_and_a_broken_one_is_named() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let pools = Pools::new(tmp.path());
        std::fs::create_dir_all(pools.pool_dir("a")).expect("mkdir");
        std::fs::write(tmp.path().join("pools/README"), b"notes").expect("stray file");
        assert_eq!(pools.list().expect("listed past the stray file").len(), 0);
        std::fs::write(pools.pool_dir("a").join("pool.yaml"), b"name: [").expect("broken");
        let err = pools.list().expect_err("a broken pool file");
        assert!(err.to_string().contains("pools/a/pool.yaml"), "{err}");
    }
}
