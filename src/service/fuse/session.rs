//! Mounting, serving and unmounting a FUSE instance.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use fuser::{BackgroundSession, MountOption, Session};
use nix::sys::signal::{SigSet, Signal};
use rustix::mount::UnmountFlags;
use tracing::{debug, info, warn};

use super::classic::Classic;
use super::uring::{self, Active, Plan, Transport};
use super::{FuseAdapter, FuseConfig, OpStats};
use crate::libservice::FileSystem;
use crate::service::shm::KernelCache;

/// The source our mounts show in /proc/self/mountinfo (the filesystem type is `fuse`, or
/// `fuse.polytropon` when mounted through fusermount).
const SOURCE: &str = "polytropon";

fn options() -> Vec<MountOption> {
    vec![
        MountOption::FSName(SOURCE.into()),
        MountOption::Subtype("polytropon".into()),
        // Container roots: many owners, kernel permission checks, setuid and device nodes.
        MountOption::AllowOther,
        MountOption::DefaultPermissions,
        MountOption::Dev,
        MountOption::Suid,
        MountOption::RW,
    ]
}

/// Errors of `unmount`.
#[derive(Debug, thiserror::Error)]
pub enum UnmountError {
    #[error("{0} is not mounted")]
    NotMounted(String),
    #[error("{0} is busy: processes have files open there or use it as their working directory (see `fuser -vm {0}`)")]
    Busy(String),
    #[error("{path} is a {fstype} mount, not a polytropon one; refusing to unmount it")]
    NotOurs { path: String, fstype: String },
    #[error("cannot unmount {path}")]
    Os {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// `(fstype, source)` of the mount at `path`, if `path` is a mount point.
fn mount_type(path: &Path) -> Option<(String, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = path.to_str()?;
    // Fields: id parent maj:min root mountpoint opts [optional...] - fstype source superopts.
    // The last mount on a point is the visible one.
    info.lines()
        .rev()
        .find_map(|line| {
            let mut halves = line.splitn(2, " - ");
            let left: Vec<&str> = halves.next()?.split(' ').collect();
            let mut right = halves.next()?.split(' ');
            let fstype = right.next()?.to_string();
            let source = unescape(right.next()?);
            (unescape(left.get(4)?) == want).then_some((fstype, source))
        })
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

/// Whether a polytropon FUSE instance is mounted at `path`.
pub fn is_our_mount(path: &Path) -> bool {
    is_mount_root(path) != Some(false) && mount_type(path).is_some_and(|(t, s)| is_ours(&t, &s))
}

/// Whether `path` is the root of a mount, as `statx` says without asking the filesystem
/// (`None` where the kernel does not say). Cheap beside reading every mount of the namespace:
/// a service mounting 64 clones at once asks it for each fresh mount point.
fn is_mount_root(path: &Path) -> Option<bool> {
    use rustix::fs::{statx, AtFlags, StatxAttributes, StatxFlags, CWD};
    let flags = AtFlags::STATX_DONT_SYNC | AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT;
    let st = statx(CWD, path, flags, StatxFlags::BASIC_STATS).ok()?;
    st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT).then(|| st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT))
}

fn is_ours(fstype: &str, source: &str) -> bool {
    (fstype == "fuse" || fstype == "fuse.polytropon") && source == SOURCE
}

/// Removes a mount left by a daemon that died (its connection gone: `ENOTCONN`, or
/// `ECONNABORTED` while the kernel is still aborting it) at `path`. Returns whether there was
/// one.
pub fn clear_stale(path: &Path) -> io::Result<bool> {
    // statfs always asks the daemon (a stat may be answered from attributes the kernel still
    // caches for a moment after the daemon died).
    let ask = || rustix::fs::statfs(path).map(|_| ()).map_err(io::Error::from).and_then(|()| std::fs::metadata(path).map(|_| ()));
    let mut asked = ask();
    // On the io_uring transport a request that meets the rings of a daemon that just died is
    // cancelled (`ECANCELED`) until the kernel has torn the rings down and aborted the
    // connection (`ENOTCONN`): ask again for a moment.
    let deadline = Instant::now() + std::time::Duration::from_secs(2);
    while matches!(&asked, Err(e) if e.raw_os_error() == Some(libc::ECANCELED)) && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        asked = ask();
    }
    match asked {
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTCONN) | Some(libc::ECONNABORTED)) && is_our_mount(path) => {
            warn!("{}: removing the mount of a polytropon daemon that died", path.display());
            rustix::mount::unmount(path, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Unmounts the polytropon instance at `path`; a busy mount is reported, not forced.
pub fn unmount(path: &Path) -> Result<(), UnmountError> {
    let shown = path.display().to_string();
    match mount_type(path) {
        None => return Err(UnmountError::NotMounted(shown)),
        Some((t, s)) if !is_ours(&t, &s) => return Err(UnmountError::NotOurs { path: shown, fstype: t }),
        Some(_) => {}
    }
    match rustix::mount::unmount(path, UnmountFlags::NOFOLLOW) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::BUSY => Err(UnmountError::Busy(shown)),
        Err(e) => Err(UnmountError::Os { path: shown, source: e.into() }),
    }
}

/// A mounted instance served by background threads; unmounted when dropped.
pub struct Mounted {
    session: Option<BackgroundSession>,
    ring: Option<Arc<Plan>>,
    mountpoint: PathBuf,
    stats: Arc<OpStats>,
    known: Arc<super::known::KernelInodes>,
    /// The kernel keeps file data it reads through the mount in its page cache (`kernel`
    /// cache mode).
    pages: bool,
}

impl std::fmt::Debug for Mounted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mounted").field("mountpoint", &self.mountpoint).finish_non_exhaustive()
    }
}

impl Mounted {
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    pub fn stats(&self) -> &OpStats {
        &self.stats
    }

    /// The transport its requests take now.
    pub fn transport(&self) -> Active {
        self.ring.as_ref().map_or(Active::Classic, |r| r.active())
    }

    /// Whether its session has ended: unmounted from outside (umount(8), `umount -l`), or
    /// the connection aborted.
    pub fn ended(&self) -> bool {
        self.session.as_ref().is_none_or(|s| s.guard.is_finished())
    }

    /// A handle through which changes made beside this mount (on the user-level path) drop
    /// the kernel's cached attributes, pages and names.
    pub fn kernel_cache(&self) -> Option<Arc<dyn KernelCache>> {
        self.session.as_ref().map(|s| Arc::new(Invalidator(s.notifier(), self.known.clone(), self.pages)) as Arc<dyn KernelCache>)
    }
}

/// Sends FUSE invalidation notices. Failures are only logged: the kernel may have dropped
/// the inode or name already (that is not an error), or the mount may be going away.
/// Notices go only for inodes the kernel holds (and names in directories it holds).
struct Invalidator(fuser::Notifier, Arc<super::known::KernelInodes>, bool);

impl KernelCache for Invalidator {
    fn keeps_pages(&self) -> bool {
        self.2
    }

    fn inval_inode(&self, inode: u64, offset: i64, len: i64) {
        if !self.1.holds(inode) {
            return;
        }
        if let Err(e) = self.0.inval_inode(inode, offset, len) {
            debug!("inval_inode {inode}: {e}");
        }
    }

    fn grew(&self, inode: u64, end: u64) {
        if !self.1.holds(inode) {
            return;
        }
        // A store of nothing at `end`: the kernel's size becomes `end` if it was below.
        if let Err(e) = self.0.store(inode, end, &[]) {
            debug!("store {inode} at {end}: {e}");
        }
    }

    fn inval_entry(&self, parent: u64, name: &std::ffi::OsStr) {
        if !self.1.holds(parent) {
            return;
        }
        if let Err(e) = self.0.inval_entry(parent, name) {
            debug!("inval_entry {parent}/{name:?}: {e}");
        }
    }

    fn inval_new_entry(&self, parent: u64, name: &std::ffi::OsStr) {
        // The kernel keeps no entry of its own for a name it never saw: only a negative one
        // the adapter answered (a removal's negative dentry is revalidated at its next use).
        if self.1.may_keep_negative(parent, name) {
            self.inval_entry(parent, name);
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            // Detach even when busy, so that a failing test never leaves a mount behind.
            let _ = rustix::mount::unmount(&self.mountpoint, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW);
            // As `BackgroundSession::join` (its mount dropped, then its thread joined), without
            // its panic when the session ended in an error: a connection the kernel ends while
            // a read is in flight reports ECONNABORTED instead of ENODEV.
            let fuser::BackgroundSession { guard, .. } = { s };
            match guard.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!("the FUSE session at {} ended: {e}", self.mountpoint.display()),
                Err(_) => warn!("the FUSE session thread at {} panicked", self.mountpoint.display()),
            }
        }
        // The connection is gone: the kernel has ended every ring command.
        if let Some(ring) = self.ring.take() {
            ring.join();
        }
    }
}

type Served = (Session<Classic>, Arc<OpStats>, Arc<super::known::KernelInodes>, Option<Arc<Plan>>);

/// The io_uring transport a mount gets: none for `classic`, or for `auto` where the host does
/// not allow it; for `uring`, an error naming what is missing.
fn ring_plan(adapter: &Arc<FuseAdapter>, cfg: &FuseConfig) -> io::Result<Option<Arc<Plan>>> {
    if cfg.transport == Transport::Classic {
        return Ok(None);
    }
    let plan = uring::host_allows().and_then(|()| Plan::new(adapter.clone(), super::adapter::MAX_WRITE as usize));
    match (plan, cfg.transport) {
        (Ok(p), _) => Ok(Some(p)),
        (Err(e), Transport::Uring) => Err(io::Error::new(io::ErrorKind::Unsupported, e)),
        (Err(e), _) => {
            debug!("classic FUSE transport: {e}");
            Ok(None)
        }
    }
}

fn session(fs: Arc<dyn FileSystem>, mountpoint: &Path, cfg: &FuseConfig) -> io::Result<Served> {
    clear_stale(mountpoint)?;
    let stats = Arc::new(OpStats::default());
    let known = Arc::new(super::known::KernelInodes::default());
    let adapter = Arc::new(FuseAdapter::new(fs, cfg.clone(), stats.clone(), known.clone())?);
    let ring = ring_plan(&adapter, cfg)?;
    let se = Session::new(Classic { adapter, ring: ring.clone() }, mountpoint, &options())?;
    if let Some(plan) = &ring {
        use std::os::fd::AsFd;
        plan.set_device(se.as_fd().try_clone_to_owned()?);
    }
    Ok((se, stats, known, ring))
}

/// Mounts `fs` at `mountpoint` and serves it from background threads.
pub fn spawn(fs: Arc<dyn FileSystem>, mountpoint: &Path, cfg: &FuseConfig) -> io::Result<Mounted> {
    let (se, stats, known, ring) = session(fs, mountpoint, cfg)?;
    let session = se.spawn()?;
    Ok(Mounted { session: Some(session), ring, mountpoint: mountpoint.to_owned(), stats, known, pages: cfg.cache == crate::spec::CacheMode::Kernel })
}

/// Mounts `fs` at `mountpoint` and serves it on this thread until it is unmounted or the
/// process gets SIGINT, SIGTERM or SIGHUP. A signal unmounts the instance (detached if it is
/// busy, so open files keep working until closed); a second one aborts the connection.
/// `ready` runs once the mount is in place.
pub fn run_foreground(fs: Arc<dyn FileSystem>, mountpoint: &Path, cfg: &FuseConfig, ready: impl FnOnce()) -> io::Result<()> {
    let mut signals = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(s);
    }
    // Blocked before any thread starts, so that only the waiter below receives them.
    signals.thread_block().map_err(io::Error::from)?;
    let (mut se, _stats, _known, ring) = session(fs, mountpoint, cfg)?;
    ready();
    let target = mountpoint.to_owned();
    std::thread::Builder::new().name("ptn-signals".into()).spawn(move || {
        let mut first: Option<Instant> = None;
        while let Ok(sig) = signals.wait() {
            if first.is_none() {
                info!("{sig}: unmounting {}", target.display());
                first = Some(Instant::now());
                if let Err(e) = rustix::mount::unmount(&target, UnmountFlags::NOFOLLOW) {
                    warn!("{} busy ({e}); detaching it: open files keep working until closed", target.display());
                    let _ = rustix::mount::unmount(&target, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW);
                }
            } else {
                warn!("{sig} again: aborting the FUSE connection");
                abort_connection(&target);
                std::process::exit(1);
            }
        }
    })?;
    let r = se.run();
    drop(se);
    if let Some(ring) = ring {
        ring.join();
    }
    r
}

/// Aborts the FUSE connection of the mount at `path` through fusectl, if it can be found.
fn abort_connection(path: &Path) {
    let Ok(md) = std::fs::metadata(path) else { return };
    use std::os::unix::fs::MetadataExt;
    let dev = md.dev();
    let minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
    let _ = std::fs::write(format!("/sys/fs/fuse/connections/{minor}/abort"), b"1");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mount_root_is_told_from_a_plain_directory_without_mountinfo() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(is_mount_root(dir.path()), Some(false));
        assert_eq!(is_mount_root(Path::new("/")), Some(true));
        assert_eq!(is_mount_root(Path::new("/proc")), Some(true));
        assert_eq!(is_mount_root(&dir.path().join("missing")), None);
        // A plain directory is never taken for one of our mounts.
        assert!(!is_our_mount(dir.path()));
    }
}
