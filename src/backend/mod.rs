//! Backend clients: the bottom libservice of every filesystem instance.
//!
//! - [`local`]: a host directory (the embedded default).
//! - [`cephfs`] (issue 7, in progress): a CephFS directory through libcephfs, loaded at run
//!   time.

pub mod cephfs;
pub mod local;
