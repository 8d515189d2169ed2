//! The FUSE legacy path: a filesystem instance served through the kernel's FUSE driver, for
//! what the preload library cannot see (exec, mmap of libraries, static binaries).

mod adapter;
mod answer;
mod classic;
mod known;
mod passthrough_id;
mod session;
pub mod uring;
mod wire;
mod workers;

use std::time::Duration;

pub use adapter::{fuse_attr, FuseAdapter};
pub use crate::service::stats::{OpStats, OpSummary};
pub use session::{
    clear_stale, is_our_mount, run_foreground, spawn, unmount, Mounted, UnmountError,
};

use crate::spec::{CacheMode, CacheSpec};

/// How an instance is served through FUSE.
#[derive(Clone, Debug)]
pub struct FuseConfig {
    /// `Kernel`: page cache, entry/attr timeouts, passthrough or writeback cache.
    /// `Direct`: `FOPEN_DIRECT_IO`, no kernel page cache for file data.
    pub cache: CacheMode,
    pub attr_ttl: Duration,
    pub entry_ttl: Duration,
    /// Use FUSE passthrough for files with a host descriptor (kernel mode only).
    pub passthrough: bool,
    /// Files smaller than this, opened read-only, are served through the page cache instead
    /// of passthrough: for them the kernel's per-open backing-file setup costs more than it
    /// saves. A writer of any size gets passthrough.
    pub passthrough_min_size: u64,
    /// Worker threads for requests that may block.
    pub workers: usize,
    /// Run create/mkdir/mknod/symlink/unlink/rmdir on the reader thread (right for backends
    /// that answer in microseconds, like the local one).
    pub inline_namespace: bool,
    /// `/dev/fuse` or io_uring.
    pub transport: crate::spec::FuseTransport,
    /// The instance is served at user level too (a pool's service): the kernel never gets
    /// the writeback cache then (see `Adapter::init`).
    pub user_level: bool,
}

impl FuseConfig {
    /// The configuration a spec's cache section asks for.
    pub fn from_spec(cache: &CacheSpec) -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        FuseConfig {
            cache: cache.mode,
            attr_ttl: crate::spec::seconds(cache.attr_timeout),
            entry_ttl: crate::spec::seconds(cache.entry_timeout),
            passthrough: cache.passthrough,
            passthrough_min_size: 64 << 10,
            workers: (cpus * 2).max(4),
            inline_namespace: true,
            transport: crate::spec::FuseTransport::default(),
            user_level: false,
        }
    }

    /// The configuration an instance spec asks for (its cache and FUSE sections).
    pub fn from_instance(spec: &crate::spec::InstanceSpec) -> Self {
        FuseConfig { transport: spec.fuse.transport, ..Self::from_spec(&spec.cache) }
    }
}

impl Default for FuseConfig {
    fn default() -> Self {
        Self::from_spec(&CacheSpec::default())
    }
}

