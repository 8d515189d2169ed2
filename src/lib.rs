//! Polytropon: per-tenant user-level storage I/O stacks.
//!
//! See `docs/ARCHITECTURE.md` for the bird's-eye view. The crate is organised by layer:
//!
//! - [`libservice`]: the trait every filesystem layer implements.
//! - [`backend`]: backend clients (local directory; CephFS later).
//! - [`union`]: the copy-on-write union libservice over branches.
//! - [`spec`]: the YAML filesystem instance spec.
//! - [`pool`]: pools (cgroups, IPC namespace); [`container`]: containers in a pool;
//!   [`image`]: images unpacked into read-only branches.
//! - [`cli`]: the command-line definitions (clap), shared by the binary, completions and man pages.

pub mod backend;
pub mod bench;
pub mod cli;
pub mod container;
pub mod frontend;
pub mod image;
pub mod instance;
pub mod clidocs;
pub mod libservice;
pub mod pool;
pub mod service;
pub mod spec;
pub mod union;
