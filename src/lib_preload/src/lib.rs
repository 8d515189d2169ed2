//! The front driver: a small `cdylib` preloaded into container processes.
//!
//! Issue 5 fills it: it intercepts libc I/O on paths under the pool's mounts and sends them to
//! the pool's service over shared memory. Until then the library intercepts nothing, so a
//! process it is preloaded into behaves exactly as without it.

/// Protocol version this library speaks (see the `polytropon-ipc` crate).
#[no_mangle]
pub static POLYTROPON_PRELOAD_PROTOCOL: u32 = polytropon_ipc::PROTOCOL_VERSION;
