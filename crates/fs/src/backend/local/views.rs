//! Views of branches, for descriptors a client may hold.
//!
//! A client of the user-level path may get a descriptor of a backing file itself, so that its
//! reads (and writes) are the kernel's. The descriptor must let it do nothing the union would
//! not, and tell it nothing of the host. So the file is opened anew (by its file handle)
//! through a *view* of its branch: a detached clone of the branch's mount with no set-id, no
//! devices and no exec (`open_tree` + `mount_setattr`), mounted nowhere, gone with its last
//! descriptor.
//!
//! - A lower branch is an image layer other pools share: its view is read-only too. A reopen
//!   through `/proc/self/fd` for writing, `fchmod`, `fchown`, `fsetxattr` and `futimens`
//!   then fail with `EROFS` whoever holds it.
//! - The writable branch's view keeps the open's access mode (the service checked it); the
//!   kernel checks the holder's own credentials for anything else, and the file cannot be
//!   executed. Its path through `/proc/self/fd` is the file's path in the branch, not the
//!   branch's place on the host.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use super::handles;

/// A view of one branch (see the module's comment).
#[derive(Debug)]
pub struct BranchView {
    view: OwnedFd,
    /// `st_dev` of the branch's filesystem: files of other filesystems are not opened here.
    dev: u64,
    /// Files reopened here keep their access mode (otherwise they are read-only).
    writable: bool,
}

impl BranchView {
    /// A read-only view of the directory `branch` (which needs `CAP_SYS_ADMIN` over the mount
    /// namespace: the service's).
    pub fn read_only(branch: &Path) -> io::Result<BranchView> {
        Self::of(branch, false)
    }

    /// A view of the directory `branch` whose files keep the access mode they are reopened
    /// with.
    pub fn writable(branch: &Path) -> io::Result<BranchView> {
        Self::of(branch, true)
    }

    fn of(branch: &Path, writable: bool) -> io::Result<BranchView> {
        let read_only = if writable { 0 } else { libc::MOUNT_ATTR_RDONLY };
        let view = detached(branch, read_only | libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV | libc::MOUNT_ATTR_NOEXEC, false)?;
        // `open_by_handle_at` takes no `O_PATH` descriptor for its mount: the view's root,
        // opened (on the view's mount, so what it finds is on the view too).
        let view = rustix::fs::openat(&view, ".", rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty())?;
        let dev = rustix::fs::fstat(&view)?.st_dev;
        Ok(BranchView { view, dev, writable })
    }

    /// The regular file `file` holds (a descriptor on the branch's own mount) opened anew
    /// through the view with `flags`: its status flags (`O_APPEND`, `O_NONBLOCK`, `O_DIRECT`,
    /// `O_NOATIME`...), and its access mode on a writable view (read-only otherwise); `None`
    /// when it is no regular file of this view's filesystem.
    pub fn reopen(&self, file: BorrowedFd<'_>, flags: i32) -> Option<io::Result<OwnedFd>> {
        let st = match rustix::fs::fstat(file) {
            Ok(st) => st,
            Err(e) => return Some(Err(e.into())),
        };
        if st.st_dev != self.dev || rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
            return None;
        }
        let mode = if self.writable { flags & libc::O_ACCMODE } else { libc::O_RDONLY };
        let flags = flags & !(libc::O_ACCMODE | libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC);
        let opened = handles::handle_of(file).and_then(|(h, _)| handles::open_with(self.view.as_fd(), &h, flags | mode));
        Some(opened)
    }
}

/// A detached clone of the mount of directory `dir` (rooted at `dir`, mounted nowhere; with
/// the mounts below it when `recursive`) with the `MOUNT_ATTR_*` flags `set`. Needs
/// `CAP_SYS_ADMIN` over the mount namespace.
pub(super) fn detached(dir: &Path, set: u64, recursive: bool) -> io::Result<OwnedFd> {
    use rustix::mount::{open_tree, OpenTreeFlags};
    let below = if recursive { OpenTreeFlags::AT_RECURSIVE } else { OpenTreeFlags::empty() };
    let view = open_tree(rustix::fs::CWD, dir, OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC | below)?;
    let at = libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 };
    let attr = libc::mount_attr { attr_set: set, attr_clr: 0, propagation: 0, userns_fd: 0 };
    // SAFETY: `mount_setattr(2)` on the descriptor of the detached mount just made, with an
    // empty path and `AT_EMPTY_PATH` (the mount itself), reading `attr`, whose size is
    // passed, during the call only.
    let rc = unsafe {
        libc::syscall(libc::SYS_mount_setattr, view.as_raw_fd(), c"".as_ptr(), at, std::ptr::addr_of!(attr), std::mem::size_of::<libc::mount_attr>())
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs root (a mount) and file handles (`CAP_DAC_READ_SEARCH`); skipped without them.
    #[test]
    fn a_file_reopened_through_a_view_reads_alike_and_can_change_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"layer bytes").expect("write");
        let view = match BranchView::read_only(dir.path()) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("skipped: no view here ({e})");
                return;
            }
        };
        let file = std::fs::File::open(&path).expect("open");
        let fd = match view.reopen(file.as_fd(), libc::O_NONBLOCK) {
            Some(Ok(fd)) => fd,
            Some(Err(e)) if e.raw_os_error() == Some(libc::EPERM) => {
                eprintln!("skipped: no file handles here");
                return;
            }
            other => panic!("reopen: {other:?}"),
        };
        let mut buf = [0u8; 32];
        let n = rustix::io::pread(&fd, &mut buf, 0).expect("pread");
        assert_eq!(&buf[..n], b"layer bytes");
        let fl = rustix::fs::fcntl_getfl(&fd).expect("getfl");
        assert!(fl.contains(rustix::fs::OFlags::NONBLOCK));
        assert_eq!(fl & rustix::fs::OFlags::RWMODE, rustix::fs::OFlags::RDONLY);
        // Nothing through it changes the file, even for its owner (root here).
        let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let reopened = std::fs::OpenOptions::new().write(true).open(&proc_path).expect_err("reopened for writing");
        assert_eq!(reopened.raw_os_error(), Some(libc::EROFS));
        assert_eq!(rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode(0o777)).map_err(|e| e.raw_os_error()), Err(libc::EROFS));
        assert_eq!(rustix::fs::fchown(&fd, Some(rustix::process::Uid::from_raw(1)), None).map_err(|e| e.raw_os_error()), Err(libc::EROFS));
        assert_eq!(std::fs::read(&path).expect("read"), b"layer bytes");
        // A file of another filesystem is not this view's, nor is a directory.
        let other = std::fs::File::open("/proc/self/status").expect("open");
        assert!(view.reopen(other.as_fd(), 0).is_none());
        let dir_fd = std::fs::File::open(dir.path()).expect("open the directory");
        assert!(view.reopen(dir_fd.as_fd(), 0).is_none());
    }

    /// The writable branch's view keeps the access mode and status flags, shows the file by
    /// its path in the branch only, and runs nothing. Skipped where views or file handles
    /// are not allowed.
    #[test]
    fn a_file_reopened_through_a_writable_view_writes_the_file_and_shows_no_host_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"start ").expect("write");
        let Ok(view) = BranchView::writable(dir.path()) else {
            eprintln!("skipped: no view here");
            return;
        };
        let file = std::fs::OpenOptions::new().append(true).open(&path).expect("open");
        let fd = match view.reopen(file.as_fd(), libc::O_WRONLY | libc::O_APPEND | libc::O_TRUNC) {
            Some(Ok(fd)) => fd,
            Some(Err(e)) if e.raw_os_error() == Some(libc::EPERM) => {
                eprintln!("skipped: no file handles here");
                return;
            }
            other => panic!("reopen: {other:?}"),
        };
        let fl = rustix::fs::fcntl_getfl(&fd).expect("getfl");
        assert_eq!(fl & rustix::fs::OFlags::RWMODE, rustix::fs::OFlags::WRONLY);
        assert!(fl.contains(rustix::fs::OFlags::APPEND));
        rustix::io::write(&fd, b"appended").expect("write");
        // O_TRUNC is not the reopen's to do.
        assert_eq!(std::fs::read(&path).expect("read"), b"start appended");
        let shown = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("readlink");
        assert_eq!(shown, Path::new("/f"));
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let reopened = std::fs::File::open(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("reopen to read");
        drop(reopened);
        let err = std::process::Command::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).status().expect_err("ran a program from the view");
        assert_eq!(err.raw_os_error(), Some(libc::EACCES));
    }
}
