//! Polytropon: per-tenant user-level storage I/O stacks.
//!
//! See `docs/ARCHITECTURE.md` for the bird's-eye view. The crate is organised by layer:
//!
//! - [`libservice`], [`backend`], [`union`], [`spec`], [`instance`]: the filesystem stack
//!   (crate `polytropon-fs`: the trait, backend clients and their cache, the union, the
//!   instance spec and builder).
//! - [`pool`]: a tenant's slice (crate `polytropon-pool`: cgroups, IPC namespace, cpus).
//! - [`service`]: a pool's filesystem service (FUSE and user-level transports);
//!   [`container`]: containers in a pool; [`image`]: images unpacked into read-only branches;
//!   [`tenant`]: what creates, tears down and reports a whole tenant (pool, service,
//!   containers); [`bench`]: the papers' experiments; [`metrics`]: `inspect`'s figures as
//!   OpenMetrics, printed or served over HTTP.
//! - [`cli`]: the command-line definitions (clap), shared by the binary, completions and man pages.

pub mod bench;
pub mod cli;
pub mod container;
pub mod errors;
pub mod frontend;
pub mod image;
pub mod mount_helper;
pub mod clidocs;
pub mod metrics;
pub mod service;
pub mod tenant;

// The filesystem stack, under the names the rest of the application uses.
pub use polytropon_fs::{backend, instance, libservice, quota, spec, union};
// Pools: the slice only.
pub use polytropon_pool as pool;
