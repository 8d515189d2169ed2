//! The shared-memory protocol between a pool's filesystem service (back driver) and the
//! preload library in container processes (front driver).
//!
//! Both sides depend on this crate and nothing heavier, so the preload library stays small.
//! Issue 5 defines the segment layout, request queues and descriptors here. Every type placed
//! in the segment will be `#[repr(C)]`, hold offsets (never pointers) and implement
//! [`ShmSafe`].

#![no_std]

/// Marker for types that may live in a shared-memory segment mapped by untrusted processes.
///
/// # Safety
/// Implementors must be `#[repr(C)]`, contain no pointers or references (only integers and
/// offsets), and stay valid for every bit pattern, since the other side may write anything.
pub unsafe trait ShmSafe: Copy {}

/// Version of the protocol; the service and the library refuse to talk across versions.
pub const PROTOCOL_VERSION: u32 = 0;
