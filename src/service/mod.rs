//! The per-pool filesystem service: its filesystem table, transports (FUSE adapter,
//! shared-memory back driver) and control socket.
//!
//! Today: the FUSE transport ([`fuse`]). Issues 4-5 add the service itself and the
//! shared-memory back driver.

pub mod control;
pub mod daemon;
pub mod fuse;
pub mod records;
pub mod shm;
pub mod stats;
