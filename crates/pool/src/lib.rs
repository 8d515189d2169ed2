//! Pools: a tenant's slice of the host: cgroups (cpus, memory, pids, cpu and I/O weight and
//! limits) and a private IPC namespace that outlives any process, under the state directory.
//!
//! Only the slice: what runs in a pool (its service, its containers) and what tears a whole
//! tenant down or reports on it live in the application crate, which this crate cannot name.

pub mod cgroups;
pub mod devices;
pub mod enter;
pub mod ids;
pub mod net;
pub mod ns;
pub mod resctrl;
pub mod spec;
pub mod state;

pub use enter::{EnterError, Entry};
pub use spec::{PoolSpec, Slice};
pub use state::{PoolState, Pools};
