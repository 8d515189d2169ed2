//! The front driver: a small `cdylib` attached to container processes.
//!
//! Today it offers the direct user-level API (`include/polytropon.h`: `polytropon_open`,
//! `polytropon_read`, ...) for programs that can be recompiled; interception of libc calls
//! under `LD_PRELOAD` is still to come (issue 5). Every entry point catches panics, so none
//! crosses the FFI boundary.

mod api;

/// Protocol version this library speaks (see the `polytropon-ipc` crate).
#[no_mangle]
pub static POLYTROPON_PRELOAD_PROTOCOL: u32 = polytropon_ipc::PROTOCOL_VERSION;
