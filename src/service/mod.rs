//! The per-pool filesystem service: its filesystem table, transports (FUSE adapter,
//! shared-memory back driver) and control socket.
//!
//! The daemon ([`daemon`]) serves a table of instances through FUSE ([`fuse`]) and the
//! shared-memory back driver ([`shm`]); [`supervisor`] restarts it when it dies.

pub mod ceph_net;
pub mod control;
pub mod daemon;
pub mod fuse;
pub mod limits;
pub(crate) mod mounts;
pub mod records;
pub mod shm;
pub mod stats;
pub mod supervisor;
mod table_saver;
pub(crate) use polytropon_fs::throttle::Throttle;
