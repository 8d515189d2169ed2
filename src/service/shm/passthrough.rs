//! Descriptors of backing files for the client (`OPEN_PASSED`): after the service has
//! resolved the union, copied up, created and checked permissions, a client that opens a
//! regular file of the writable branch in the `kernel` cache mode gets a descriptor of the
//! backing file, and its reads, writes, seeks and syncs of it are the kernel's own (as FUSE
//! passthrough does for the FUSE path). Names, attributes and permissions stay the service's.
//!
//! What the holder can do with it is what the union lets it do with the file already: it is
//! the client's own data on the writable branch, opened anew (an offset of its own) with the
//! access mode and status flags the service checked (a writer's handle is such a file already),
//! and the kernel checks the holder's own
//! credentials for anything else (a reopen through `/proc/self/fd`, `fchmod`, `fchown`).
//! A lower branch's file is never passed: a reopen for writing would reach a layer other
//! pools share. Writers' files have the FUSE side's caches of them dropped when released
//! (close-to-open on the legacy path; its data path for files of 64 KiB and more is FUSE
//! passthrough to the same backing file, coherent at once).

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use polytropon_fs::backend::local::BranchView;
use tracing::debug;

use crate::libservice::{FileSystem, Inode};

use super::channels::Channel;

/// Status flags the passed descriptor keeps from the open.
const KEEP: i32 = polytropon_ipc::REOPEN_FLAGS;

/// Files opened only to read are passed from this size on: below it, the data comes over
/// shared memory in a round trip or two, cheaper than opening the file anew for the client.
const READ_MIN: u64 = 64 << 10;

/// Whether open file `fd` has the access mode and status flags of `flags` (those a passed
/// descriptor keeps).
fn opened_with(fd: BorrowedFd<'_>, flags: i32) -> bool {
    rustix::fs::fcntl_getfl(fd).is_ok_and(|fl| fl.bits() as i32 & KEEP == flags & KEEP)
}

/// Sends `ch` a descriptor of the backing file of handle `handle` (of `inode`), with `flags`'
/// access mode and status flags; whether it went. A writer's handle already is an open file
/// of its own with those flags (the local backend opens one per such open, and the service
/// makes no I/O on it once passed): that one goes. A reader's is shared between readers (its
/// offset too), so the file is opened anew.
pub(super) fn pass(ch: &Channel, fs: &dyn FileSystem, flags: i32, inode: Inode, handle: u64) -> bool {
    let Ok(b) = fs.backing_file(inode, handle) else { return false };
    if !b.writable {
        return false;
    }
    let regular = |fd: std::os::fd::BorrowedFd<'_>| rustix::fs::fstat(fd).is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile);
    if flags & libc::O_ACCMODE != libc::O_RDONLY {
        if opened_with(b.fd.as_fd(), flags) {
            return regular(b.fd.as_fd()) && ch.send_fd(b.fd.as_fd());
        }
    } else if b.size < READ_MIN {
        return false;
    }
    let proc_path = format!("/proc/self/fd/{}", b.fd.as_raw_fd());
    let oflags = rustix::fs::OFlags::from_bits_retain((flags & KEEP) as u32) | rustix::fs::OFlags::CLOEXEC;
    let Ok(fd) = rustix::fs::open(proc_path.as_str(), oflags, rustix::fs::Mode::empty()) else { return false };
    regular(fd.as_fd()) && ch.send_fd(fd.as_fd())
}

/// Read-only views of an instance's lower branches (`BranchView::read_only`), made when a client first
/// opens a large lower file to read: such a file is passed opened through the view of its
/// branch, so its holder can read it and do nothing else with it (the layer is shared). Only
/// for instances whose every change is reported in the change table: the client watches the
/// file's word and goes back to the service once the file is copied up or changed (see
/// `polytropon_ipc::OPEN_WATCHED`).
#[derive(Debug)]
pub struct LowerViews {
    /// The lower branches, in the union's order (layer 1 first).
    branches: Vec<PathBuf>,
    views: OnceLock<Vec<Option<BranchView>>>,
}

impl LowerViews {
    /// Views of `spec`'s lower branches, where its files may be passed: the local backend in
    /// the `kernel` cache mode (no pool cache in front of the files).
    pub fn for_spec(spec: &crate::spec::InstanceSpec) -> Option<std::sync::Arc<LowerViews>> {
        let eligible = spec.cache.mode == crate::spec::CacheMode::Kernel && matches!(spec.backend, crate::spec::BackendSpec::Local);
        let lowers: Vec<PathBuf> = spec.lowers().map(|b| b.path.clone()).collect();
        (eligible && !lowers.is_empty()).then(|| std::sync::Arc::new(LowerViews::new(lowers)))
    }

    /// Views of `branches`, the union's lower ones in order.
    pub fn new(branches: Vec<PathBuf>) -> LowerViews {
        LowerViews { branches, views: OnceLock::new() }
    }

    fn views(&self) -> &[Option<BranchView>] {
        self.views.get_or_init(|| {
            self.branches
                .iter()
                .map(|b| BranchView::read_only(b).map_err(|e| debug!("no read-only view of {}: {e}", b.display())).ok())
                .collect()
        })
    }

    /// `file`, of the union's layer `layer`, opened anew read-only through the view of that
    /// branch, with `flags`' status flags.
    fn reopen(&self, layer: Option<usize>, file: BorrowedFd<'_>, flags: i32) -> Option<OwnedFd> {
        let view = self.views().get(layer?.checked_sub(1)?)?.as_ref()?;
        view.reopen(file, flags)?.ok()
    }
}

/// Sends `ch` a read-only descriptor of the lower file of handle `handle` (of `inode`), opened
/// to read with `flags`, through `views`; whether it went. Not for a file of the writable
/// branch (see `pass`), nor below `READ_MIN`.
pub(super) fn pass_lower(ch: &Channel, fs: &dyn FileSystem, views: &LowerViews, flags: i32, inode: Inode, handle: u64) -> bool {
    if flags & libc::O_ACCMODE != libc::O_RDONLY {
        return false;
    }
    let Ok(b) = fs.backing_file(inode, handle) else { return false };
    if b.writable || b.size < READ_MIN {
        return false;
    }
    // The view reopens regular files only.
    let Some(fd) = views.reopen(b.layer, b.fd.as_fd(), flags & KEEP) else { return false };
    ch.send_fd(fd.as_fd())
}

/// The writable branch's view (`BranchView::writable`), for files passed once they prove busy
/// (`Op::PassFile`): made on the first such pass, gone with the instance. Only where the
/// data lives in the backing files (the `kernel` cache mode of the local backend) and no
/// storage quota counts the branch (a holder's writes would go uncounted).
#[derive(Debug)]
pub struct UpperView {
    branch: PathBuf,
    view: OnceLock<Option<BranchView>>,
}

impl UpperView {
    /// The view of `spec`'s writable branch, where its busy files may be passed; `None` where
    /// they may not (another cache mode or backend, `busy_passthrough: false`, no writable
    /// branch, or a storage quota: `counted`).
    pub fn for_spec(spec: &crate::spec::InstanceSpec, counted: bool) -> Option<std::sync::Arc<UpperView>> {
        let eligible = spec.cache.mode == crate::spec::CacheMode::Kernel && spec.cache.busy_passthrough && matches!(spec.backend, crate::spec::BackendSpec::Local) && !counted;
        let upper = spec.upper().filter(|_| eligible)?;
        Some(std::sync::Arc::new(UpperView::new(upper.path.clone())))
    }

    /// The view of the writable branch `branch`.
    pub fn new(branch: PathBuf) -> UpperView {
        UpperView { branch, view: OnceLock::new() }
    }

    fn view(&self) -> Option<&BranchView> {
        self.view.get_or_init(|| BranchView::writable(&self.branch).map_err(|e| debug!("no view of {}: {e}", self.branch.display())).ok()).as_ref()
    }
}

/// Sends `ch` a descriptor of the writable branch's file that handle `handle` (of `inode`)
/// holds open, opened anew through `upper`'s view with `flags` (access mode and status flags,
/// as the client keeps them); whether it went. Only with the very access mode and status
/// flags the handle's own open file has (what the service checked at the open: a reader gets
/// nothing, nor does a client that claims more than it opened), and only for a writer.
pub(super) fn pass_busy(ch: &Channel, fs: &dyn FileSystem, upper: &UpperView, flags: i32, inode: Inode, handle: u64) -> bool {
    let Some(b) = busy_passable(fs, flags, inode, handle) else { return false };
    let Some(Ok(fd)) = upper.view().and_then(|v| v.reopen(b.fd.as_fd(), flags & KEEP)) else { return false };
    ch.send_fd(fd.as_fd())
}

/// The backing file of `handle` (of `inode`) if it may be passed to a busy writer: a file of
/// the writable branch, opened for writing with `flags`' access mode and status flags. Asked
/// before the file is counted as written outside the service, so that a request that will be
/// refused moves no change-table word (other clients would drop what they learned of the file).
pub(super) fn busy_passable(fs: &dyn FileSystem, flags: i32, inode: Inode, handle: u64) -> Option<crate::libservice::BackingFile> {
    let b = fs.backing_file(inode, handle).ok()?;
    if !b.writable || b.layer.is_some_and(|l| l != 0) || flags & libc::O_ACCMODE == libc::O_RDONLY {
        return None;
    }
    opened_with(b.fd.as_fd(), flags).then_some(b)
}

/// Handles passed for writing: their release, and a `Getattr` of their file while they
/// live (the library asks before handing the file to the kernel), drop the FUSE side's cached
/// pages and attributes of it.
#[derive(Debug, Default)]
pub(super) struct Writers(Mutex<WriterSets>);

#[derive(Debug, Default)]
struct WriterSets {
    /// (instance, handle) -> inode.
    handles: HashMap<(u32, u64), Inode>,
    /// (instance, inode) -> handles passed for writing.
    inodes: HashMap<(u32, Inode), u32>,
}

impl Writers {
    /// Records `handle` (of `inode`) as passed for writing; whether it was not already.
    pub fn add(&self, instance: u32, handle: u64, inode: Inode) -> bool {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = s.handles.insert((instance, handle), inode).is_none();
        if fresh {
            *s.inodes.entry((instance, inode)).or_default() += 1;
        }
        fresh
    }

    /// Whether `handle` was passed for writing (forgotten now).
    pub fn take(&self, instance: u32, handle: u64) -> bool {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let Some(inode) = s.handles.remove(&(instance, handle)) else { return false };
        if let Some(n) = s.inodes.get_mut(&(instance, inode)) {
            *n -= 1;
            if *n == 0 {
                s.inodes.remove(&(instance, inode));
            }
        }
        true
    }

    /// Whether a client holds `inode` passed for writing.
    pub fn written(&self, instance: u32, inode: Inode) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).inodes.contains_key(&(instance, inode))
    }
}
