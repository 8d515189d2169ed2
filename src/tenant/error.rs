//! What can go wrong creating, stopping, destroying or reporting a tenant; each names the
//! pool and the step.

use std::io;
use std::path::PathBuf;

use crate::pool::cgroups::CgroupError;
use crate::pool::spec::SpecError;

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("cannot read the pool state")]
    State(#[from] io::Error),
    #[error("cannot lock the pool state")]
    Lock(#[source] io::Error),
    #[error("pool {0} already exists")]
    Exists(String),
    #[error("pool {0} was never fully created (its `pool create` was stopped): `polytropon pool destroy {0}` removes what it made")]
    Unfinished(String),
    #[error(transparent)]
    Ids(#[from] crate::pool::ids::IdError),
    #[error("--cpus {cpus}: cpus {shared} already belong to pool {owner} (pool cpus are exclusive)")]
    CpusTaken { cpus: String, shared: String, owner: String },
    #[error("no pool named {0}")]
    NoPool(String),
    #[error("cannot create {}", .path.display())]
    Dir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot create the cgroups of pool {name}")]
    CreateCgroups {
        name: String,
        #[source]
        source: CgroupError,
    },
    #[error(transparent)]
    Resctrl(#[from] crate::pool::resctrl::ResctrlError),
    #[error("cannot make the pool's network")]
    Net(#[from] crate::pool::net::NetError),
    #[error("cannot create the pool's IPC namespace")]
    CreateIpc(#[source] io::Error),
    #[error("cannot record the pool")]
    Record(#[source] io::Error),
    #[error("pool {name} is busy: its service runs (pid {pid}); stop it with `polytropon service stop --pool {name}`, or use --force")]
    ServiceRuns { name: String, pid: u32 },
    #[error("pool {name} is busy: processes {procs:?} run in it; stop them, or use --force")]
    Busy { name: String, procs: Vec<u32> },
    #[error("processes {procs:?} of pool {name} did not exit")]
    Stayed { name: String, procs: Vec<u32> },
    #[error("bad service pid {0}")]
    BadPid(u32),
    #[error("cannot remove the cgroups of pool {name}")]
    RemoveCgroups {
        name: String,
        #[source]
        source: CgroupError,
    },
    #[error("cannot remove the pool's IPC namespace binding")]
    RemoveIpc(#[source] io::Error),
    #[error("cannot remove {}", .path.display())]
    RemoveDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}
