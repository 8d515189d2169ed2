//! Polytropon's filesystem stack, one layer per module:
//!
//! - [`libservice`]: the trait every filesystem layer implements, and its types.
//! - [`backend`]: backend clients (a local directory, CephFS through libcephfs) and the
//!   pool's block cache in front of them.
//! - [`union`]: the copy-on-write union libservice over branches.
//! - [`spec`]: the YAML filesystem instance spec; [`instance`]: builds an instance from it.
//! - [`throttle`]: messages a tenant can cause, written at most once per interval.
//!
//! This crate depends on no other polytropon crate: a service, a pool, a container or the
//! command line cannot be named here (the application crate builds on it).

pub mod backend;
pub mod quota;
pub mod instance;
pub mod libservice;
pub mod spec;
pub mod throttle;
pub mod union;
