//! The front driver: a small `cdylib` preloaded into container processes.
//!
//! Under `LD_PRELOAD` it intercepts libc's file calls ([`intercept`]) and serves those on the
//! pool's mounts over the shared-memory queues of the pool's service, with no kernel crossing
//! for the data and metadata calls it covers; everything else, and whatever only the kernel
//! can do, goes to the real libc and so through the FUSE mount of the same instance. It also
//! offers a direct API (`include/polytropon.h`: `polytropon_open`, `polytropon_read`, ...) for
//! programs that can be recompiled. No panic crosses the FFI boundary.

mod api;
mod cbuf;
mod client;
mod config;
#[cfg(target_arch = "x86_64")]
mod exec_list;
mod files;
mod intercept;
mod listing;
mod names;
mod ops;
mod path;
mod process;
mod real;
mod streams;

/// Protocol version this library speaks (see the `polytropon-ipc` crate).
#[no_mangle]
pub static POLYTROPON_PRELOAD_PROTOCOL: u32 = polytropon_ipc::PROTOCOL_VERSION;
