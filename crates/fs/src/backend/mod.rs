//! Backend clients: the bottom libservice of every filesystem instance.
//!
//! - [`local`]: a host directory (the embedded default).
//! - [`cache`]: the data cache backend clients keep in the service's memory (issue 8, in
//!   progress: the cache and its replacement policy; not yet used by a backend).
//! - [`cephfs`] (issue 7, in progress): a CephFS directory through libcephfs, loaded at run
//!   time.

pub mod cache;
pub mod cephfs;
pub mod local;
