//! Calls that change where the process's paths lead (`chroot`, mount namespaces, mounts and
//! unmounts), after which every path goes to the kernel (`config::paths_moved`); and
//! `syscall(2)`, through which programs make those calls and the credential calls without
//! libc's wrappers (Samba changes a thread's credentials with `syscall(SYS_setresuid, ...)`;
//! container tools call `pivot_root` that way, there being no wrapper).

use std::ffi::{c_char, c_int, c_long, c_uint, c_ulong, c_void};

use super::creds::changed;
use crate::config::paths_moved;

/// `r`, the result of a call that moves paths when it succeeds.
fn moved_if_done<T: PartialEq + Default>(r: T) -> T {
    if r == T::default() {
        paths_moved();
    }
    r
}

/// Whether a successful `mount(2)` with `flags` may change what a path names: not a remount
/// (the same mount's options) nor a change of propagation alone.
fn mounts_something(flags: c_ulong) -> bool {
    let propagation = libc::MS_SHARED | libc::MS_PRIVATE | libc::MS_SLAVE | libc::MS_UNBINDABLE;
    flags & libc::MS_REMOUNT == 0 && (flags & propagation == 0 || flags & (libc::MS_BIND | libc::MS_MOVE) != 0)
}

/// What a successful `unshare(flags)` or `setns(fd, nstype)` (`flags` 0: a namespace of any
/// type) changed for this library.
fn entered(flags: c_long) {
    let any = flags == 0;
    if any || flags & c_long::from(libc::CLONE_NEWNS) != 0 {
        paths_moved();
    }
    if any || flags & c_long::from(libc::CLONE_NEWUSER) != 0 {
        changed(());
    }
}

hooks! {
    fn chroot(path: *const c_char) -> c_int => |kernel| {
        moved_if_done(kernel())
    }

    fn unshare(flags: c_int) -> c_int => |kernel| {
        let r = kernel();
        if r == 0 && flags != 0 {
            entered(c_long::from(flags));
        }
        r
    }

    fn setns(fd: c_int, nstype: c_int) -> c_int => |kernel| {
        let r = kernel();
        if r == 0 {
            entered(c_long::from(nstype));
        }
        r
    }

    fn mount(source: *const c_char, target: *const c_char, fstype: *const c_char, flags: c_ulong, data: *const c_void) -> c_int => |kernel| {
        let r = kernel();
        if r == 0 && mounts_something(flags) {
            paths_moved();
        }
        r
    }

    /// The new mount API's attach (glibc 2.36+); `fsmount` alone attaches nothing.
    fn move_mount(from_dirfd: c_int, from: *const c_char, to_dirfd: c_int, to: *const c_char, flags: c_uint) -> c_int => |kernel| {
        moved_if_done(kernel())
    }

    fn umount(target: *const c_char) -> c_int => |kernel| {
        moved_if_done(kernel())
    }

    fn umount2(target: *const c_char, flags: c_int) -> c_int => |kernel| {
        moved_if_done(kernel())
    }

    /// libc declares it variadic; on x86-64 and aarch64 (Linux) a variadic call passes its
    /// arguments as a call with as many fixed ones does, so the six a system call can take
    /// are taken here, and passed on as they came (those the caller did not pass hold
    /// whatever their registers held, which the kernel ignores, as for libc's own).
    fn syscall(n: c_long, a: c_long, b: c_long, c: c_long, d: c_long, e: c_long, f: c_long) -> c_long => |kernel| {
        // A fork made without libc's `fork` runs no fork handlers: run the library's, so the
        // child connects with clients of its own (a child sharing its parent's memory, or a
        // `clone3`, whose flags are in memory the program passes, is not covered).
        let forks = n == libc::SYS_fork || (n == libc::SYS_clone && a & c_long::from(libc::CLONE_VM | libc::CLONE_THREAD) == 0);
        if forks {
            super::process::before_fork();
        }
        let r = kernel();
        if forks && r == 0 {
            super::process::in_child();
            // A child made in namespaces of its own.
            let new = n == libc::SYS_clone && a & c_long::from(libc::CLONE_NEWNS | libc::CLONE_NEWUSER) != 0;
            if new {
                entered(a & c_long::from(libc::CLONE_NEWNS | libc::CLONE_NEWUSER));
            }
        }
        match n {
            libc::SYS_setuid | libc::SYS_setgid | libc::SYS_setreuid | libc::SYS_setregid | libc::SYS_setresuid | libc::SYS_setresgid | libc::SYS_setfsuid | libc::SYS_setfsgid | libc::SYS_setgroups | libc::SYS_capset => changed(()),
            libc::SYS_mount if r == 0 && mounts_something(d as c_ulong) => paths_moved(),
            libc::SYS_chroot | libc::SYS_pivot_root | libc::SYS_umount2 | libc::SYS_move_mount if r == 0 => paths_moved(),
            libc::SYS_unshare if r == 0 && a != 0 => entered(a),
            libc::SYS_setns if r == 0 => entered(b),
            _ => {}
        }
        r
    }
}
