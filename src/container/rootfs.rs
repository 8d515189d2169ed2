//! The container's file tree, set up by its init in the new mount namespace: the pool
//! mount's FUSE tree as `/`, a fresh /proc, a minimal /dev (its own tmpfs: device nodes,
//! devpts, shm), a read-only /sys, and the preload library under /dev where the image cannot
//! see it as its own file. Nothing of this propagates to the host.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::symlink;
use std::path::Path;

use rustix::fs::{self as rfs, OFlags, ResolveFlags};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use nix::unistd::{chdir, pivot_root};

/// Where the preload library appears inside every container.
pub const PRELOAD_DIR: &str = "/dev/.polytropon";
/// Where the pool service's channel socket appears inside every container that has the
/// library.
pub const CHANNEL: &str = "/dev/.polytropon/channel";
/// Trees over the root that are not the pool mount's: the library leaves them to the kernel.
pub const KERNEL_TREES: [&str; 3] = ["/proc", "/dev", "/sys"];

type Step<T = ()> = Result<T, String>;

fn ctx<T, E: std::fmt::Display>(r: Result<T, E>, what: impl FnOnce() -> String) -> Step<T> {
    r.map_err(|e| format!("{}: {e}", what()))
}

fn mount_at(src: &str, dst: &Path, fstype: Option<&str>, flags: MsFlags, data: Option<&str>) -> Step {
    ctx(mount(Some(src), dst, fstype, flags, data), || format!("cannot mount {} on {}", fstype.unwrap_or(src), dst.display()))
}

/// Where, under the root, each tree made in the staging directory goes.
const TREES: [&str; 3] = ["proc", "dev", "sys"];

/// The directory `name` of the root opened (`O_PATH`) beneath `root` without following any
/// link, made if the image lacks it (in the container's writable branch; never in the
/// image's layers). A link or a file there is refused by name.
fn target(root: BorrowedFd<'_>, name: &str) -> Step<OwnedFd> {
    let open = || {
        rfs::openat2(
            root,
            name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            rfs::Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )
    };
    let refused = |e: rustix::io::Errno| format!("/{name} in the container's root: {e}");
    match open() {
        Ok(fd) => return Ok(fd),
        Err(rustix::io::Errno::NOENT) => {}
        Err(e @ (rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR)) => return Err(format!("/{name} in the container's root is not a directory ({e})")),
        Err(e) => return Err(refused(e)),
    }
    match rfs::mkdirat(root, name, rfs::Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(format!("cannot create /{name} in the container's root: {e}")),
    }
    open().map_err(|e| if matches!(e, rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) { format!("/{name} in the container's root is not a directory ({e})") } else { refused(e) })
}

/// Mounts /proc, /dev and /sys over `root`, and the preload `library` and the service's
/// `channel` socket (if any) under /dev. `owner`: the host id of the container's root in its
/// user namespace, which then owns /dev and /dev/shm.
///
/// Every tree is made whole, masks included, in `stage` (an empty host directory no tenant
/// can reach, under which a tmpfs of this mount namespace alone is mounted), and then moved
/// onto its directory of the root, opened beneath the root without following links. Another
/// container sharing the root's mount may rename the root's names at any moment (its renames
/// move this namespace's mounts with the names): it can move a finished, masked tree, never
/// make a step land elsewhere (a mask on another directory, a node or a file of the host).
pub fn populate(root: &Path, stage: &Path, library: Option<&Path>, channel: Option<&Path>, owner: Option<u32>) -> Step {
    let own = owner.map_or(String::new(), |id| format!(",uid={id},gid={id}"));
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    // Nothing mounted from here on reaches the host.
    ctx(mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_SLAVE, None::<&str>), || "cannot make / a slave mount".into())?;
    let root_fd = ctx(rfs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, rfs::Mode::empty()), || format!("cannot open the root {}", root.display()))?;
    mount_at("tmpfs", stage, Some("tmpfs"), nosuid, Some("mode=700,size=64k"))?;
    for name in TREES {
        ctx(std::fs::create_dir(stage.join(name)), || format!("cannot make the staging directory for /{name}"))?;
    }
    mount_at("proc", &stage.join("proc"), Some("proc"), nosuid, None)?;
    let dev = stage.join("dev");
    mount_at("tmpfs", &dev, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_STRICTATIME, Some(&format!("mode=755,size=65536k{own}")))?;
    for (name, major, minor) in [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)] {
        let p = dev.join(name);
        ctx(mknod(&p, SFlag::S_IFCHR, Mode::from_bits_truncate(0o666), makedev(major, minor)), || format!("cannot create /dev/{name}"))?;
        // mknod's mode is cut by the umask.
        ctx(nix::sys::stat::fchmodat(nix::fcntl::AT_FDCWD, &p, Mode::from_bits_truncate(0o666), nix::sys::stat::FchmodatFlags::FollowSymlink), || format!("cannot chmod /dev/{name}"))?;
    }
    let pts = dev.join("pts");
    ctx(std::fs::create_dir(&pts), || "cannot create /dev/pts".into())?;
    mount_at("devpts", &pts, Some("devpts"), MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC, Some("newinstance,ptmxmode=0666,mode=0620"))?;
    let shm = dev.join("shm");
    ctx(std::fs::create_dir(&shm), || "cannot create /dev/shm".into())?;
    mount_at("shm", &shm, Some("tmpfs"), nosuid, Some(&format!("mode=1777,size=65536k{own}")))?;
    for (link, target) in [("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")] {
        ctx(symlink(target, dev.join(link)), || format!("cannot create /dev/{link}"))?;
    }
    if let Some(lib) = library {
        let d = dev.join(PRELOAD_DIR.trim_start_matches("/dev/"));
        ctx(std::fs::create_dir(&d), || format!("cannot create {PRELOAD_DIR}"))?;
        let name = lib.file_name().ok_or_else(|| format!("bad preload library path {}", lib.display()))?;
        let target = d.join(name);
        ctx(std::fs::File::create(&target), || format!("cannot create {}", target.display()))?;
        let lib_s = lib.to_str().ok_or_else(|| format!("preload library path {} is not UTF-8", lib.display()))?;
        mount_at(lib_s, &target, None, MsFlags::MS_BIND, None)?;
        mount_at("none", &target, None, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV, None)?;
        if let Some(sock) = channel {
            let inside = dev.join(CHANNEL.trim_start_matches("/dev/"));
            ctx(std::fs::File::create(&inside), || format!("cannot create {}", inside.display()))?;
            let sock_s = sock.to_str().ok_or_else(|| format!("channel socket path {} is not UTF-8", sock.display()))?;
            mount_at(sock_s, &inside, None, MsFlags::MS_BIND, None)?;
        }
    }
    mount_at("sysfs", &stage.join("sys"), Some("sysfs"), nosuid | MsFlags::MS_RDONLY, None)?;
    mask(stage)?;
    for name in TREES {
        let to = target(root_fd.as_fd(), name)?;
        let at = format!("/proc/self/fd/{}", to.as_raw_fd());
        ctx(mount(Some(&stage.join(name)), at.as_str(), None::<&str>, MsFlags::MS_MOVE, None::<&str>), || format!("cannot move /{name} into the container's root"))?;
    }
    Ok(())
}

/// Files of /proc and /sys that show the host (its memory, keys, timers, firmware): hidden
/// behind /dev/null or an empty read-only tmpfs, as runc hides them.
const MASKED: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Parts of /proc through which a process changes the host's kernel: read-only, as runc
/// makes them.
const READ_ONLY: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Hides [`MASKED`] and makes [`READ_ONLY`] read-only under `root` (the staging directory: no
/// tenant reaches it; what this kernel lacks is skipped).
fn mask(root: &Path) -> Step {
    for p in MASKED {
        let at = root.join(p.trim_start_matches('/'));
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => mount_at("tmpfs", &at, Some("tmpfs"), MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, Some("size=0"))?,
            Ok(_) => mount_at("/dev/null", &at, None, MsFlags::MS_BIND, None)?,
            Err(_) => {}
        }
    }
    for p in READ_ONLY {
        let at = root.join(p.trim_start_matches('/'));
        if std::fs::symlink_metadata(&at).is_err() {
            continue;
        }
        let at_s = at.to_str().ok_or_else(|| format!("{} is not UTF-8", at.display()))?.to_string();
        mount_at(&at_s, &at, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
        mount_at("none", &at, None, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, None)?;
    }
    Ok(())
}

/// Makes `root` the root of this mount namespace and drops every other mount of the host.
pub fn enter(root: &Path) -> Step {
    ctx(chdir(root), || format!("cannot enter {}", root.display()))?;
    ctx(pivot_root(".", "."), || format!("cannot pivot_root into {}", root.display()))?;
    // The old root is now stacked under the new one at "/": detach it.
    ctx(umount2(".", MntFlags::MNT_DETACH), || "cannot detach the host's root".into())?;
    ctx(chdir("/"), || "cannot enter /".into())
}
