//! Entering a pool: the one way a process (the service, a command run by `exec`, a
//! container's init) takes its place in a tenant's slice.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::cgroups::CgroupInfo;
use crate::state::PoolState;

/// Why a process could not enter its pool; each names the step.
#[derive(Debug, thiserror::Error)]
pub enum EnterError {
    #[error("cannot move into the pool's cgroups: {0}")]
    Cgroups(String),
    #[error("cannot join the pool's IPC namespace {path}: {source}")]
    Ipc {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot pin to the pool's cpus: cpu {cpu}: {source}")]
    Cpus {
        cpu: u32,
        #[source]
        source: nix::Error,
    },
    #[error("cannot pin to the pool's cpus: {0}")]
    Affinity(#[source] nix::Error),
}

/// What entering a pool means for one process; a part left `None` is skipped (a container's
/// init is moved into the cgroups by its parent, before it runs).
#[derive(Clone, Debug, Default)]
pub struct Entry {
    pub cgroups: Option<CgroupInfo>,
    pub ipc_ns: Option<PathBuf>,
    pub cpus: Option<BTreeSet<u32>>,
}

impl PoolState {
    /// All of the pool: cgroups, IPC namespace and cpus.
    pub fn entry(&self) -> Entry {
        Entry { cgroups: Some(self.cgroups.clone()), ipc_ns: Some(self.ipc_ns.clone()), cpus: self.slice.cpus.clone() }
    }
}

impl Entry {
    /// Moves the calling process into the cgroups, joins the IPC namespace (this thread: call
    /// it before starting threads, or in a child before exec) and pins it to the cpus. It
    /// allocates nothing beyond what the cgroup write needs, so a forked child may call it.
    pub fn enter(&self) -> Result<(), EnterError> {
        if let Some(cg) = &self.cgroups {
            cg.add_process(std::process::id()).map_err(|e| EnterError::Cgroups(e.to_string()))?;
        }
        if let Some(path) = &self.ipc_ns {
            crate::ns::join_ipc(path).map_err(|source| EnterError::Ipc { path: path.clone(), source })?;
        }
        if let Some(cpus) = &self.cpus {
            let mut set = nix::sched::CpuSet::new();
            for &cpu in cpus {
                set.set(cpu as usize).map_err(|source| EnterError::Cpus { cpu, source })?;
            }
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).map_err(EnterError::Affinity)?;
        }
        Ok(())
    }
}
