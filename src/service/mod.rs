//! The per-pool filesystem service: its filesystem table, transports (FUSE adapter,
//! shared-memory back driver) and control socket.
//!
//! Not implemented yet: issues 3-5 build the transports and the service here.
