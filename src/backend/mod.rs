//! Backend clients: the bottom libservice of every filesystem instance.
//!
//! - [`local`]: a host directory (the embedded default).
//! - `cephfs` (issue 7): CephFS through libcephfs.

pub mod local;
