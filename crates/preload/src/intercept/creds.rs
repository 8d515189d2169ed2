//! Calls that change the process's credentials (user and group ids, supplementary groups,
//! capabilities). The service serves each client with the credentials the kernel showed it
//! when the client connected, so after a change every thread's client is dropped and the
//! next call connects again, to be identified anew: a process that drops privileges is served
//! with what it has left (or, when it may no longer use the pool's segment at all, by the
//! kernel). glibc applies `setuid` and friends to every thread, so all of them move at once.

use std::ffi::{c_char, c_int, c_void};

use libc::{gid_t, size_t, uid_t};

use crate::config::GENERATION;

/// After a call that may have changed the credentials: clients made before are not reused.
pub(super) fn changed<T>(r: T) -> T {
    GENERATION.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    r
}

hooks! {
    fn setuid(uid: uid_t) -> c_int => |kernel| {
        changed(kernel())
    }

    fn setgid(gid: gid_t) -> c_int => |kernel| {
        changed(kernel())
    }

    fn seteuid(uid: uid_t) -> c_int => |kernel| {
        changed(kernel())
    }

    fn setegid(gid: gid_t) -> c_int => |kernel| {
        changed(kernel())
    }

    fn setreuid(r: uid_t, e: uid_t) -> c_int => |kernel| {
        changed(kernel())
    }

    fn setregid(r: gid_t, e: gid_t) -> c_int => |kernel| {
        changed(kernel())
    }

    fn setresuid(r: uid_t, e: uid_t, s: uid_t) -> c_int => |kernel| {
        changed(kernel())
    }

    fn setresgid(r: gid_t, e: gid_t, s: gid_t) -> c_int => |kernel| {
        changed(kernel())
    }

    fn setfsuid(uid: uid_t) -> c_int => |kernel| {
        changed(kernel())
    }

    fn setfsgid(gid: gid_t) -> c_int => |kernel| {
        changed(kernel())
    }

    fn setgroups(n: size_t, list: *const gid_t) -> c_int => |kernel| {
        changed(kernel())
    }

    fn initgroups(user: *const c_char, group: gid_t) -> c_int => |kernel| {
        changed(kernel())
    }

    fn capset(header: *mut c_void, data: *const c_void) -> c_int => |kernel| {
        changed(kernel())
    }
}
