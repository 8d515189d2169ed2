//! The few raw system calls the container runtime makes that neither nix nor rustix wraps
//! in the form needed: each a small safe function.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use nix::sched::CloneFlags;
use nix::unistd::Pid;

/// Makes `target` (0, 1 or 2) a copy of `fd`.
pub fn dup_onto(fd: BorrowedFd<'_>, target: RawFd) -> io::Result<()> {
    // SAFETY: dup2 on an open descriptor; `target` is a standard stream number the caller
    // owns in this (single-threaded, about to exec) process.
    if unsafe { libc::dup2(fd.as_raw_fd(), target) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the terminal `fd` the calling session leader's controlling terminal.
pub fn set_controlling_tty(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an int argument (0: do not steal); `fd` is open.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The window size of terminal `fd`.
pub fn window_size(fd: BorrowedFd<'_>) -> Option<libc::winsize> {
    // SAFETY: a zeroed winsize is a valid out-parameter for TIOCGWINSZ.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `fd` is open.
    (unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } == 0).then_some(ws)
}

/// Sets the window size of terminal `fd`.
pub fn set_window_size(fd: BorrowedFd<'_>, ws: &libc::winsize) {
    // SAFETY: TIOCSWINSZ reads one winsize; `fd` is open. Failure only leaves the size.
    unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, ws as *const libc::winsize) };
}

/// Brings the loopback interface of the current network namespace up.
pub fn loopback_up() -> io::Result<()> {
    let sock = rustix::net::socket(rustix::net::AddressFamily::INET, rustix::net::SocketType::DGRAM, None)?;
    // SAFETY: a zeroed ifreq is valid; the name "lo" fits IFNAMSIZ with its NUL.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS fills `ifr_ifru.ifru_flags` of a valid ifreq naming an interface.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the union member SIOCGIFFLAGS just filled.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads the same ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Starts a child in new namespaces (`flags`) running `f` on a stack of its own; the child
/// exits with what `f` returns. SIGCHLD reports its end.
///
/// The caller must be single-threaded (the child is a copy of it, and `f` may allocate).
pub fn spawn(flags: CloneFlags, f: &mut dyn FnMut() -> isize) -> io::Result<Pid> {
    let mut stack = vec![0u8; 8 << 20];
    // SAFETY: without CLONE_VM the child gets a copy of this address space and runs `f` on
    // the copy of `stack`; the caller is single-threaded, so no lock is held in the copy.
    let pid = unsafe { nix::sched::clone(Box::new(f), &mut stack, flags, Some(libc::SIGCHLD)) }?;
    Ok(pid)
}

/// `prctl` with integer arguments (the calls used here take no pointers).
fn prctl(option: libc::c_int, arg: libc::c_ulong) -> io::Result<()> {
    // SAFETY: the options passed by this module (PR_CAPBSET_DROP, PR_CAP_AMBIENT,
    // PR_SET_NO_NEW_PRIVS) take integer arguments only.
    if unsafe { libc::prctl(option, arg, 0 as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Closes every descriptor from 3 up. A container's processes get nothing the runtime or its
/// caller held open but the standard streams.
pub fn close_from_3() -> io::Result<()> {
    close_all_but(-1)
}

/// Closes every descriptor from 3 up but `keep` (which stays as it is; none below 3), for a
/// process about to exec that must hold nothing of its parent's while it still resolves paths.
pub fn close_all_but(keep: RawFd) -> io::Result<()> {
    let range = |first: RawFd, last: libc::c_uint| -> io::Result<()> {
        // SAFETY: close_range on a range of this process's descriptor table; the caller (a
        // freshly forked, single-threaded process about to exec) owns every descriptor above 2
        // and uses none but `keep` afterwards.
        if unsafe { libc::close_range(first as libc::c_uint, last, 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    };
    if keep < 3 {
        return range(3, libc::c_uint::MAX);
    }
    if keep > 3 {
        range(3, (keep - 1) as libc::c_uint)?;
    }
    range(keep + 1, libc::c_uint::MAX)
}

/// Makes the calling process non-dumpable: its `/proc/PID` files belong to root and no
/// other process of the container may ptrace it. Exec makes the command dumpable again.
pub fn not_dumpable() -> io::Result<()> {
    prctl(libc::PR_SET_DUMPABLE, 0)
}

/// Drops capability `cap` from the calling thread's bounding set.
pub fn drop_bounding(cap: u32) -> io::Result<()> {
    prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap))
}

/// Clears the calling thread's ambient capabilities.
pub fn clear_ambient() -> io::Result<()> {
    // PR_CAP_AMBIENT_CLEAR_ALL is the second argument; the kernel wants the rest zero.
    // SAFETY: integer arguments only.
    if unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets `no_new_privs` on the calling thread (kept across exec, never undone).
pub fn no_new_privs() -> io::Result<()> {
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1)
}

/// The calling thread's capability sets: (effective, permitted, inheritable) as 64-bit masks.
pub fn capabilities() -> io::Result<(u64, u64, u64)> {
    let mut header = CapHeader { version: CAP_VERSION_3, pid: 0 };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget fills two `CapData` for version 3; both pointers are valid.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header as *mut CapHeader, data.as_mut_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let join = |f: fn(&CapData) -> u32| u64::from(f(&data[0])) | u64::from(f(&data[1])) << 32;
    Ok((join(|d| d.effective), join(|d| d.permitted), join(|d| d.inheritable)))
}

/// Sets the calling thread's capability sets (each at most what the kernel allows).
pub fn set_capabilities(effective: u64, permitted: u64, inheritable: u64) -> io::Result<()> {
    let mut header = CapHeader { version: CAP_VERSION_3, pid: 0 };
    let split = |m: u64| [m as u32, (m >> 32) as u32];
    let (e, p, i) = (split(effective), split(permitted), split(inheritable));
    let data = [CapData { effective: e[0], permitted: p[0], inheritable: i[0] }, CapData { effective: e[1], permitted: p[1], inheritable: i[1] }];
    // SAFETY: capset reads two `CapData` for version 3; both pointers are valid.
    if unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut CapHeader, data.as_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Installs the seccomp `program` on the calling thread (kept across fork and exec, never
/// undone). Without `no_new_privs` the kernel asks for CAP_SYS_ADMIN.
pub fn install_seccomp(program: &[seccompiler::sock_filter]) -> io::Result<()> {
    let len = u16::try_from(program.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
    let prog = libc::sock_fprog { len, filter: program.as_ptr() as *mut libc::sock_filter };
    // SAFETY: seccompiler's `sock_filter` is `#[repr(C)]` with the kernel's layout (u16, u8,
    // u8, u32), the same as libc's; `prog` points at `len` of them, alive for the call (the
    // kernel copies the program).
    if unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0 as libc::c_ulong, &prog as *const libc::sock_fprog) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

const CAP_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}
