//! The pool's private IPC namespace, kept alive by a bind mount of its nsfs file under the
//! state directory, so the service and every container of the pool join the same one.

use std::io;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;

/// Creates a new IPC namespace bound at `file` (util-linux `unshare --ipc=FILE`).
pub fn create_ipc(file: &Path) -> io::Result<()> {
    create(file, "--ipc")
}

/// Creates a new namespace of the kind `unshare` option `kind` names (`--ipc`, `--net`),
/// bound at `file`.
pub fn create(file: &Path, kind: &str) -> io::Result<()> {
    std::fs::File::create(file)?;
    let out = Command::new("unshare").arg(format!("{kind}={}", file.display())).arg("true").output();
    let failed = match out {
        Ok(o) if o.status.success() => return Ok(()),
        Ok(o) => io::Error::other(format!("unshare {kind} failed: {}", String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => io::Error::other(format!("cannot run unshare (util-linux): {e}")),
    };
    let _ = std::fs::remove_file(file);
    Err(failed)
}

/// The namespace inode bound at `file` (it differs from the host's when the binding holds).
pub fn ns_inode(file: &Path) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(file)?.ino())
}

/// Whether process `pid` is in the calling process's user namespace (the two namespace links
/// name the same one); `None` when either cannot be read.
pub fn shares_user_namespace(pid: u32) -> Option<bool> {
    let own = std::fs::read_link("/proc/self/ns/user").ok()?;
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/user")).ok()?;
    Some(own == theirs)
}

/// Joins the IPC namespace bound at `file` (this thread; call before starting threads).
pub fn join_ipc(file: &Path) -> io::Result<()> {
    let f = std::fs::File::open(file)?;
    nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWIPC).map_err(io::Error::from)
}

/// Joins the network namespace bound at `file` (this thread).
pub fn join_net(file: &Path) -> io::Result<()> {
    let f = std::fs::File::open(file)?;
    nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
}

/// Unbinds and removes the namespace file (the namespace ends with its last member).
pub fn remove(file: &Path) -> io::Result<()> {
    match rustix::mount::unmount(file, rustix::mount::UnmountFlags::DETACH) {
        Ok(()) => {}
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOENT => {}
        Err(e) => return Err(e.into()),
    }
    match std::fs::remove_file(file) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
