//! Processes: fork, vfork, exec (fexecve too) and spawn.
//!
//! An open file of ours lives in this process's memory, which neither a new program (exec)
//! nor a forked child can share with us, so before either every one of our descriptors is
//! handed over to the kernel (reopened on the FUSE mount at the same offset under the same
//! number): offsets are then shared with the child as POSIX says, and inherited descriptors
//! keep working in the new program (`sh -c 'cmd > /mnt/f'`). A forked child gets its own
//! client of the segment on its first call.

use std::ffi::{c_char, c_int};
use std::sync::atomic::Ordering;

use libc::pid_t;

use crate::config::{Busy, GENERATION};
use crate::{files, real};

/// Hands every descriptor of ours over to the kernel (before fork and exec); `only_inherited`
/// skips those exec would close anyway.
fn hand_over_all(only_inherited: bool) {
    let mut fds = Vec::new();
    files::ours(&mut fds);
    for fd in fds {
        // SAFETY: F_GETFD on a descriptor of this process; integer arguments only.
        if only_inherited && unsafe { real::fcntl(fd, libc::F_GETFD, 0) } & libc::FD_CLOEXEC != 0 {
            continue;
        }
        let _ = super::hand_over(fd, super::HandOver::Process);
    }
}

pub(super) extern "C" fn before_fork() {
    if let Some(_busy) = Busy::enter() {
        let _ = std::panic::catch_unwind(|| hand_over_all(false));
    }
}

pub(super) extern "C" fn in_child() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
    crate::config::cwd_after_fork();
    files::disown_dir_handles();
}

/// Registers the fork handlers (once, when the library is loaded).
pub fn register_fork_handlers() {
    // SAFETY: registering plain `extern "C"` functions that live as long as the process
    // (this library is never unloaded: it is preloaded).
    unsafe { libc::pthread_atfork(Some(before_fork), None, Some(in_child)) };
}

/// Before a spawn with file actions: those may copy any descriptor (close-on-exec or not)
/// onto one the new program inherits, so every directory the kernel has not opened is.
fn spawn_actions() {
    if let Some(_busy) = Busy::enter() {
        let _ = std::panic::catch_unwind(|| crate::listing::open_inherited_dirs_in_kernel(true));
    }
}

/// Before exec: hand over the descriptors the new program inherits.
fn before_exec() {
    if let Some(_busy) = Busy::enter() {
        let _ = std::panic::catch_unwind(|| {
            hand_over_all(true);
            crate::listing::open_inherited_dirs_in_kernel(false);
            // The new program starts with no memory of opens: the handles it kept go now,
            // answered each (posted, they could still wait in the area when exec closes the
            // connection, and be lost with it).
            for l in crate::opens::take_all(crate::client::change_table()) {
                crate::ops::release_now(&l);
            }
        });
    }
}

/// vfork shares our memory with the child until it execs; fork is a correct (if slower)
/// vfork, and keeps the child from touching our tables.
#[no_mangle]
pub unsafe extern "C" fn vfork() -> pid_t {
    // SAFETY: plain fork; the fork handlers above run as for any fork.
    unsafe { real::fork() }
}

hooks! {
    fn execve(path: *const c_char, argv: *const *const c_char, envp: *const *const c_char) -> c_int => |kernel| {
        before_exec();
        kernel()
    }

    fn execv(path: *const c_char, argv: *const *const c_char) -> c_int => |kernel| {
        before_exec();
        kernel()
    }

    fn execvp(file: *const c_char, argv: *const *const c_char) -> c_int => |kernel| {
        before_exec();
        kernel()
    }

    fn execvpe(file: *const c_char, argv: *const *const c_char, envp: *const *const c_char) -> c_int => |kernel| {
        before_exec();
        kernel()
    }

    /// fexecve: an exec like the others (the new program inherits our descriptors, handed over
    /// first), of a program the kernel reads from `fd`, which it must hold even when `fd` is
    /// close-on-exec and so left alone by the hand-over of inherited descriptors.
    fn fexecve(fd: c_int, argv: *const *const c_char, envp: *const *const c_char) -> c_int => |kernel| {
        before_exec();
        if let Err(e) = crate::intercept::hand_over(fd, crate::intercept::HandOver::Process) {
            crate::config::set_errno(e);
            return -1;
        }
        kernel()
    }

    fn posix_spawn(
    pid: *mut pid_t,
    path: *const c_char,
    acts: *const libc::posix_spawn_file_actions_t,
    attr: *const libc::posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int => |kernel| {
        before_exec();
        if !acts.is_null() {
            spawn_actions();
        }
        kernel()
    }

    fn posix_spawnp(
    pid: *mut pid_t,
    file: *const c_char,
    acts: *const libc::posix_spawn_file_actions_t,
    attr: *const libc::posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int => |kernel| {
        before_exec();
        if !acts.is_null() {
            spawn_actions();
        }
        kernel()
    }

    fn system(cmd: *const c_char) -> c_int => |kernel| {
        before_exec();
        kernel()
    }

    fn popen(cmd: *const c_char, mode: *const c_char) -> *mut libc::FILE => |kernel| {
        before_exec();
        kernel()
    }
}
