//! What the kernel says of a connected client process without formatting `/proc` text: a
//! pidfd's `PIDFD_GET_INFO` (its thread group and filesystem ids), the namespaces a pidfd
//! reaches (`PIDFD_GET_*_NAMESPACE`), a mount namespace's unique id (`NS_GET_MNTNS_ID`), the
//! connection's supplementary groups (`SO_PEERGROUPS`) and a thread's capabilities
//! (`capget`). The pidfd calls answer `Ok(None)` on a kernel that lacks them (before Linux
//! 6.13); the caller then reads `/proc`, as it always did.
//!
//! Every value is what the kernel reports in the service's own namespaces (ids mapped into
//! its user namespace, thread-group ids into its pid namespace), as `/proc` would show them
//! to it.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `struct pidfd_info` as Linux 6.13 published it (`PIDFD_INFO_SIZE_VER0`: 64 bytes; later
/// kernels only add fields past these, which a caller passing this size never sees).
#[repr(C)]
#[derive(Default)]
struct RawInfo {
    mask: u64,
    cgroupid: u64,
    pid: u32,
    tgid: u32,
    ppid: u32,
    ruid: u32,
    rgid: u32,
    euid: u32,
    egid: u32,
    suid: u32,
    sgid: u32,
    fsuid: u32,
    fsgid: u32,
    exit_code: i32,
}

const _: () = assert!(std::mem::size_of::<RawInfo>() == 64);

/// `_IO(type, nr)` and `_IOWR`/`_IOR(type, nr, size)` of `<asm-generic/ioctl.h>`.
const fn io_none(ty: u32, nr: u32) -> u32 {
    (ty << 8) | nr
}
const fn io_read(ty: u32, nr: u32, size: usize) -> u32 {
    (2 << 30) | ((size as u32) << 16) | (ty << 8) | nr
}
const fn io_read_write(ty: u32, nr: u32, size: usize) -> u32 {
    (3 << 30) | ((size as u32) << 16) | (ty << 8) | nr
}

const PIDFS_IOCTL_MAGIC: u32 = 0xFF;
const PIDFD_GET_INFO: u32 = io_read_write(PIDFS_IOCTL_MAGIC, 11, std::mem::size_of::<RawInfo>());
const PIDFD_INFO_PID: u64 = 1 << 0;
const PIDFD_INFO_CREDS: u64 = 1 << 1;
const NSIO: u32 = 0xb7;
const NS_GET_MNTNS_ID: u32 = io_read(NSIO, 5, std::mem::size_of::<u64>());
/// `SO_PEERGROUPS` (Linux 4.13; not in the `libc` crate's generic list).
const SO_PEERGROUPS: libc::c_int = 59;

/// What `PIDFD_GET_INFO` tells of a process or thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Info {
    /// Its thread group (the process), as a pid of the service's namespace.
    pub tgid: u32,
    pub fsuid: u32,
    pub fsgid: u32,
}

/// Whether `e` says the kernel does not know the call (rather than that it failed).
fn unknown_call(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOTTY | libc::EINVAL | libc::EOPNOTSUPP))
}

/// The thread group and filesystem ids of the process or thread `pidfd` refers to.
pub fn info(pidfd: BorrowedFd<'_>) -> io::Result<Option<Info>> {
    let mut raw = RawInfo { mask: PIDFD_INFO_PID | PIDFD_INFO_CREDS, ..RawInfo::default() };
    // SAFETY: PIDFD_GET_INFO reads and fills one `struct pidfd_info` of the size its number
    // encodes, which is `RawInfo`'s (checked above); `raw` is ours and outlives the call.
    if unsafe { libc::ioctl(pidfd.as_raw_fd(), PIDFD_GET_INFO as _, &mut raw as *mut RawInfo) } != 0 {
        let e = io::Error::last_os_error();
        return if unknown_call(&e) { Ok(None) } else { Err(e) };
    }
    if raw.mask & (PIDFD_INFO_PID | PIDFD_INFO_CREDS) != PIDFD_INFO_PID | PIDFD_INFO_CREDS {
        return Ok(None);
    }
    Ok(Some(Info { tgid: raw.tgid, fsuid: raw.fsuid, fsgid: raw.fsgid }))
}

/// A pidfd of thread `tid` alone (`PIDFD_THREAD`, Linux 6.9): it becomes readable when that
/// thread exits, whatever the rest of its process does.
pub fn open_thread(tid: u32) -> io::Result<OwnedFd> {
    let tid = libc::pid_t::try_from(tid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: pidfd_open takes a pid and flags (PIDFD_THREAD is O_EXCL) and returns a new
    // descriptor or -1; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, tid, libc::O_EXCL) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just returned to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// A namespace of the process `pidfd` refers to.
#[derive(Clone, Copy, Debug)]
pub enum Namespace {
    Ipc,
    Mount,
    Pid,
    User,
}

/// A descriptor of the `which` namespace of the process `pidfd` refers to.
pub fn namespace(pidfd: BorrowedFd<'_>, which: Namespace) -> io::Result<Option<OwnedFd>> {
    let nr = match which {
        Namespace::Ipc => 2,
        Namespace::Mount => 3,
        Namespace::Pid => 5,
        Namespace::User => 9,
    };
    // SAFETY: the PIDFD_GET_*_NAMESPACE ioctls take no argument (it must be 0: the kernel
    // refuses any other with EINVAL) and return a new namespace descriptor or -1.
    let fd = unsafe { libc::ioctl(pidfd.as_raw_fd(), io_none(PIDFS_IOCTL_MAGIC, nr) as _, 0 as libc::c_ulong) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return if unknown_call(&e) { Ok(None) } else { Err(e) };
    }
    // SAFETY: the descriptor was just returned to us and nothing else owns it.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// The identity of a namespace descriptor: its device and inode (what `/proc/PID/ns/*`
/// links name).
pub fn identity(ns: &OwnedFd) -> io::Result<(u64, u64)> {
    let st = rustix::fs::fstat(ns).map_err(io::Error::from)?;
    Ok((st.st_dev, st.st_ino))
}

/// A mount namespace's id: unique for the kernel's uptime, never reused (unlike its inode).
pub fn mount_ns_id(ns: &OwnedFd) -> io::Result<Option<u64>> {
    let mut id = 0u64;
    // SAFETY: NS_GET_MNTNS_ID writes one u64 through the pointer, which is ours.
    if unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_MNTNS_ID as _, &mut id as *mut u64) } != 0 {
        let e = io::Error::last_os_error();
        return if unknown_call(&e) { Ok(None) } else { Err(e) };
    }
    Ok(Some(id))
}

/// The supplementary groups of the process at the other end of `conn`, as they were when it
/// connected.
pub fn groups(conn: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    let mut out: Vec<libc::gid_t> = vec![0; 32];
    loop {
        let mut len = libc::socklen_t::try_from(out.len() * std::mem::size_of::<libc::gid_t>()).map_err(|_| io::Error::from_raw_os_error(libc::ERANGE))?;
        // SAFETY: `out` has room for `len` bytes of gids, which the kernel fills, setting
        // `len` to the bytes written (or to the bytes needed, with ERANGE).
        let r = unsafe { libc::getsockopt(conn.as_raw_fd(), libc::SOL_SOCKET, SO_PEERGROUPS, out.as_mut_ptr().cast(), &mut len) };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        if r == 0 {
            out.truncate(n);
            return Ok(out);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) || n <= out.len() || n > 65_536 {
            return Err(e);
        }
        out.resize(n, 0);
    }
}

/// The supplementary groups a `/proc/PID/status` text names (its `Groups:` line; none if it
/// has none).
pub fn groups_in(status: &str) -> Vec<u32> {
    let line = status.lines().find_map(|l| l.strip_prefix("Groups:")).unwrap_or("");
    line.split_whitespace().filter_map(|g| g.parse().ok()).collect()
}

/// The effective capabilities of thread `tid` (`CapEff`).
pub fn effective_caps(tid: u32) -> io::Result<u64> {
    let pid = rustix::process::Pid::from_raw(i32::try_from(tid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?).ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
    Ok(rustix::thread::capabilities(Some(pid)).map_err(io::Error::from)?.effective.bits())
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn the_kernel_reports_this_process_as_proc_does() {
        let me = rustix::process::getpid();
        let pidfd = rustix::process::pidfd_open(me, rustix::process::PidfdFlags::empty()).expect("pidfd of self");
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim).expect("field").to_string();
        let fs_id = |name: &str| field(name).split_whitespace().nth(3).and_then(|v| v.parse::<u32>().ok()).expect("fs id");
        if let Some(i) = info(pidfd.as_fd()).expect("info") {
            assert_eq!(i.tgid, me.as_raw_nonzero().get() as u32);
            assert_eq!((i.fsuid, i.fsgid), (fs_id("Uid:"), fs_id("Gid:")));
        }
        let mut groups: Vec<u32> = rustix::process::getgroups().expect("getgroups").into_iter().map(|g| g.as_raw()).collect();
        let mut parsed = groups_in(&status);
        groups.sort_unstable();
        parsed.sort_unstable();
        assert_eq!(parsed, groups);
        let caps = u64::from_str_radix(&field("CapEff:"), 16).expect("caps");
        assert_eq!(effective_caps(me.as_raw_nonzero().get() as u32).expect("capget"), caps);
        if let Some(ns) = namespace(pidfd.as_fd(), Namespace::Mount).expect("mount ns") {
            let link = std::fs::metadata("/proc/self/ns/mnt").expect("ns link");
            use std::os::unix::fs::MetadataExt;
            assert_eq!(identity(&ns).expect("identity"), (link.dev(), link.ino()));
            let a = mount_ns_id(&ns).expect("id");
            let b = namespace(pidfd.as_fd(), Namespace::Mount).expect("again").map(|n| mount_ns_id(&n).expect("id"));
            assert_eq!(Some(a), b, "one namespace, one id");
        }
    }

    #[test]
    fn a_connected_peer_s_groups_are_its_own() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().expect("pair");
        let mut want: Vec<u32> = nix::unistd::getgroups().expect("groups").into_iter().map(|g| g.as_raw()).collect();
        let mut got = groups(a.as_fd()).expect("peer groups");
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want);
    }

    #[test]
    fn a_thread_pidfd_is_refused_for_a_thread_that_does_not_exist() {
        assert!(open_thread(u32::MAX - 1).is_err());
    }
}
