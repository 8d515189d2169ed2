//! Pools: a tenant's slice of the host (cgroups, cpus, memory, pids, I/O, IPC namespace).
//!
//! Not implemented yet: issue 4 builds pool creation and destruction here.
