//! Pools: a tenant's slice of the host: cgroups (cpus, memory, pids, cpu and I/O weight and
//! limits) and a private IPC namespace that outlives any process, under the state directory.

pub mod cgroups;
pub mod ns;
pub mod ops;
pub mod report;
pub mod spec;
pub mod state;

pub use spec::{PoolSpec, Slice};
pub use state::{PoolState, Pools};
