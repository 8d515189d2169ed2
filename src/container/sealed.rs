//! The runtime a container can see is a sealed view of its binary (the CVE-2019-5736 class):
//! before `exec` starts a container it re-executes itself from a file nobody can write, as
//! runc does, so a container root that opens `/proc/1/exe` (or its own `exe` before the
//! command's exec) for writing reaches that view, never the host's binary. The container's
//! pid 1 and every process `exec --in` starts there are clones of it.
//!
//! Two views, the first that works:
//! - **a lower-only overlayfs** over the binary's directory, made with the new mount API and
//!   never attached anywhere (`fsopen`/`fsmount`): overlayfs with lower layers only is
//!   read-only whatever is done to the mount, and the view shares the binary's page cache, so
//!   it costs one mount's set-up. Needs root, overlayfs and Linux 5.2+.
//! - **a memfd copy** sealed against every change (write, grow, shrink, further seals): a
//!   copy of the whole binary per `exec` (a few ms of cpu for 10 MB, and its own pages).
use std::ffi::CString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

/// Set in the re-executed runtime: the path of the binary it was copied from (where the
/// preload library and the binary to start services are).
pub const ORIGIN_ENV: &str = "POLYTROPON_RUNTIME_EXE";

const SEALS: libc::c_int = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// Attempts at sealing the copy (see `reexec_sealed`).
const SEAL_TRIES: u32 = 10;

/// `statfs` type of overlayfs.
const OVERLAYFS_MAGIC: i64 = 0x794c_7630;

/// Whether this process runs from a sealed view of its binary: a sealed memfd, or (once this
/// module re-executed it, [`ORIGIN_ENV`]) a read-only overlayfs.
fn running_sealed() -> bool {
    let Ok(target) = std::fs::read_link("/proc/self/exe") else { return false };
    let Ok(exe) = std::fs::File::open("/proc/self/exe") else { return false };
    if target.as_os_str().as_bytes().starts_with(b"/memfd:") {
        return rustix::fs::fcntl_get_seals(&exe).is_ok_and(|s| s.bits() & SEALS as u32 == SEALS as u32);
    }
    std::env::var_os(ORIGIN_ENV).is_some()
        && rustix::fs::fstatfs(&exe).is_ok_and(|st| st.f_type == OVERLAYFS_MAGIC)
        && rustix::fs::fstatvfs(&exe).is_ok_and(|st| st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
}

/// The binary this process was started from: for a sealed runtime, the one it was copied
/// from.
pub fn origin_exe() -> io::Result<PathBuf> {
    match std::env::var_os(ORIGIN_ENV) {
        Some(p) if running_sealed() => Ok(PathBuf::from(p)),
        _ => std::env::current_exe(),
    }
}

/// Re-executes this process from a sealed view of its binary (see the module's comment),
/// with the same arguments and environment (plus [`ORIGIN_ENV`]); returns only if it already
/// runs sealed, or with the reason it cannot. `scratch` is a directory of the runtime's own
/// where the overlayfs view keeps its (empty) second layer. Call before any thread starts.
pub fn reexec_sealed(scratch: &Path) -> io::Result<()> {
    if running_sealed() {
        return Ok(());
    }
    let origin = std::env::current_exe()?;
    let view = match overlay_view(&origin, scratch) {
        Ok(fd) => fd,
        Err(e) => {
            tracing::debug!("no overlayfs view of the runtime ({e}): a sealed copy instead");
            sealed_copy()?
        }
    };
    let cstr = |b: &[u8]| CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "an argument or variable holds a NUL byte"));
    let argv = std::env::args_os().map(|a| cstr(a.as_bytes())).collect::<io::Result<Vec<_>>>()?;
    let mut env = std::env::vars_os().filter(|(k, _)| k != ORIGIN_ENV).map(|(k, v)| cstr(&[k.as_bytes(), b"=", v.as_bytes()].concat())).collect::<io::Result<Vec<_>>>()?;
    env.push(cstr(&[ORIGIN_ENV.as_bytes(), b"=", origin.as_os_str().as_bytes()].concat())?);
    let e = nix::unistd::fexecve(&view, &argv, &env).err().unwrap_or(nix::errno::Errno::UnknownErrno);
    Err(e.into())
}

/// `path` as one overlayfs `lowerdir` entry (`:` separates entries, `\` escapes).
fn lower_entry(path: &Path) -> io::Result<String> {
    let s = path.to_str().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a path that is not UTF-8"))?;
    Ok(s.replace('\\', "\\\\").replace(':', "\\:"))
}

/// An `O_PATH` descriptor of `binary` seen through a lower-only overlayfs of its directory
/// (over an empty directory under `scratch`: overlayfs needs two lower layers to have no
/// upper one), mounted nowhere. Refused unless the view shows the file `/proc/self/exe` is
/// (same size and modification time).
fn overlay_view(binary: &Path, scratch: &Path) -> io::Result<OwnedFd> {
    use rustix::mount::{fsconfig_create, fsconfig_set_string, fsmount, fsopen, FsMountFlags, FsOpenFlags, MountAttrFlags};
    let (Some(dir), Some(name)) = (binary.parent(), binary.file_name()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "the binary's path has no directory"));
    };
    let empty = scratch.join("exe-view");
    match std::fs::DirBuilder::new().mode(0o700).create(&empty) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    if std::fs::read_dir(&empty)?.next().is_some() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{} is not empty", empty.display())));
    }
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    fsconfig_set_string(&fs, "lowerdir", format!("{}:{}", lower_entry(dir)?, lower_entry(&empty)?))?;
    // Inode-number remapping is not wanted (and logs when the layers' file systems differ).
    let _ = fsconfig_set_string(&fs, "xino", "off");
    fsconfig_create(&fs)?;
    let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::MOUNT_ATTR_RDONLY | MountAttrFlags::MOUNT_ATTR_NODEV | MountAttrFlags::MOUNT_ATTR_NOSUID)?;
    let view = rustix::fs::openat(&mnt, name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
    let (seen, running) = (rustix::fs::fstat(&view)?, rustix::fs::stat("/proc/self/exe")?);
    if seen.st_size != running.st_size || (seen.st_mtime, seen.st_mtime_nsec) != (running.st_mtime, running.st_mtime_nsec) {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{} through overlayfs is not the running binary", binary.display())));
    }
    Ok(view)
}

/// A memfd copy of the running binary, sealed against every change.
fn sealed_copy() -> io::Result<OwnedFd> {
    let mut exe = std::fs::File::open("/proc/self/exe")?;
    let memfd = rustix::fs::memfd_create("polytropon", rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING)?;
    let mut copy = std::fs::File::from(memfd);
    io::copy(&mut exe, &mut copy)?;
    // Sealing against writes fails with EBUSY while the copy's pages are still referenced
    // from elsewhere (the kernel waits a little for them): the splice `io::copy` uses may
    // leave them so a moment longer on a loaded machine. Tried again a few times.
    let mut tries = 0;
    loop {
        match rustix::fs::fcntl_add_seals(&copy, rustix::fs::SealFlags::from_bits_retain(SEALS as u32)) {
            Err(rustix::io::Errno::BUSY) if tries < SEAL_TRIES => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => break r?,
        }
    }
    Ok(copy.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_open(fd: &OwnedFd) -> io::Result<std::fs::File> {
        use std::os::fd::AsRawFd;
        std::fs::OpenOptions::new().write(true).open(format!("/proc/self/fd/{}", fd.as_raw_fd()))
    }

    #[test]
    fn the_overlay_view_is_the_binary_and_refuses_writes() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let scratch = tempfile::tempdir().expect("tempdir");
        let exe = std::env::current_exe().expect("current exe");
        let view = overlay_view(&exe, scratch.path()).expect("an overlayfs view (root, overlayfs, Linux 5.2+)");
        assert_eq!(rustix::fs::fstatfs(&view).expect("fstatfs").f_type, OVERLAYFS_MAGIC);
        assert_eq!(write_open(&view).err().and_then(|e| e.raw_os_error()), Some(libc::EROFS));
        use std::os::fd::AsRawFd;
        let seen = std::fs::read(format!("/proc/self/fd/{}", view.as_raw_fd())).expect("read through the view");
        assert_eq!(seen, std::fs::read(&exe).expect("read the binary"));
        // A second layer that is not empty could add files beside the binary: refused.
        std::fs::write(scratch.path().join("exe-view/extra"), b"x").expect("write");
        assert!(overlay_view(&exe, scratch.path()).is_err());
    }

    #[test]
    fn the_copy_is_sealed_against_every_change() {
        let copy = sealed_copy().expect("a sealed copy");
        let seals = rustix::fs::fcntl_get_seals(&copy).expect("seals");
        assert_eq!(seals.bits() & SEALS as u32, SEALS as u32);
        assert!(write_open(&copy).and_then(|mut f| std::io::Write::write_all(&mut f, b"x")).is_err());
    }
}
