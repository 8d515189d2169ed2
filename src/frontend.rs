//! Attaching a process to a service's user-level path: where the preload library (the front
//! driver) is, and the resolved configuration it reads from the environment.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::process::Command;

/// File name of the preload library wherever it is placed.
pub const LIBRARY: &str = "libpolytropon_preload.so";

/// The preload library, built with this binary and carried inside it (`build.rs`).
static EMBEDDED: &[u8] = include_bytes!(env!("POLYTROPON_PRELOAD_SO"));

/// The SHA-256 of [`EMBEDDED`] in hex, computed at build time.
const DIGEST: &str = env!("POLYTROPON_PRELOAD_SHA256");

/// Where the library is placed under `dir` (the state directory for `exec`): named by its
/// digest, so that binaries of different builds never share (or overwrite) one.
pub fn library_path(dir: &Path) -> PathBuf {
    dir.join("lib").join(&DIGEST[..16]).join(LIBRARY)
}

/// The preload library carried by this binary, as a file under `dir` that processes and
/// containers can load: written once (a temporary file renamed into place, readable by
/// everyone, writable by no one), and checked byte for byte against the binary's copy
/// whenever it is already there (a file that differs is replaced).
pub fn library(dir: &Path) -> std::io::Result<PathBuf> {
    let path = library_path(dir);
    // Anything but the right file there (nothing, a link, other bytes, an unreadable path) is
    // replaced, or fails below with the place named.
    if placed(&path).unwrap_or(false) {
        return Ok(path);
    }
    let place = path.parent().unwrap_or(dir);
    let unwritable = |e: std::io::Error| std::io::Error::new(e.kind(), format!("cannot place the preload library under {}: {e} (it needs a writable --state-dir)", place.display()));
    for d in [dir.join("lib"), place.to_path_buf()] {
        match std::fs::DirBuilder::new().mode(0o755).create(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(unwritable(e)),
        }
    }
    let mut tmp = tempfile::Builder::new().prefix(".lib").tempfile_in(place).map_err(unwritable)?;
    tmp.write_all(EMBEDDED).map_err(unwritable)?;
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o444)).map_err(unwritable)?;
    tmp.persist(&path).map_err(|e| unwritable(e.error))?;
    Ok(path)
}

/// Whether `path` holds exactly the embedded library, as a regular file (not a link) that only
/// its owner, root or the caller, could have written.
fn placed(path: &Path) -> std::io::Result<bool> {
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path)?;
    let meta = file.metadata()?;
    let trusted_owner = meta.uid() == 0 || meta.uid() == rustix::process::geteuid().as_raw();
    if !meta.is_file() || meta.len() != EMBEDDED.len() as u64 || meta.mode() & 0o022 != 0 || !trusted_owner {
        return Ok(false);
    }
    let mut bytes = Vec::with_capacity(EMBEDDED.len());
    (&file).read_to_end(&mut bytes)?;
    Ok(bytes == EMBEDDED)
}

/// Sets up `cmd` to run with the library connecting to the channel socket `channel`, serving `mounts`
/// (mount point, instance index) on the user-level path. An existing `LD_PRELOAD` is kept,
/// after ours.
pub fn attach(cmd: &mut Command, lib: &Path, channel: &Path, mounts: &[(PathBuf, u32)]) {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    use polytropon_ipc::mount_table;
    let mut table = Vec::new();
    for (n, (p, i)) in mounts.iter().enumerate() {
        if n > 0 {
            table.push(mount_table::ENTRIES);
        }
        mount_table::escape(p.as_os_str().as_bytes(), |b| table.push(b));
        table.push(mount_table::INSTANCE);
        table.extend_from_slice(i.to_string().as_bytes());
    }
    let mut preload: OsString = lib.as_os_str().to_owned();
    if let Some(old) = std::env::var_os("LD_PRELOAD").filter(|o| !o.is_empty()) {
        preload.push(" ");
        preload.push(old);
    }
    // No `LD_LIBRARY_PATH`: programs linked against the library's direct API
    // (`-lpolytropon_preload`) get the preloaded copy by its `DT_SONAME`, and every other
    // program's libraries are found without first searching the library's directory.
    cmd.env("POLYTROPON_CHANNEL", channel).env("POLYTROPON_MOUNTS", OsString::from_vec(table)).env("LD_PRELOAD", preload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_is_placed_once_and_an_unusable_place_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let placed = library(dir.path()).expect("placed");
        assert_eq!(placed, library_path(dir.path()));
        assert_eq!(std::fs::read(&placed).expect("read"), EMBEDDED);
        let inode = std::fs::metadata(&placed).expect("stat").ino();
        assert_eq!(std::fs::metadata(library(dir.path()).expect("again")).expect("stat").ino(), inode, "written twice");
        // A link in its place is not followed, and is replaced.
        std::fs::remove_file(&placed).expect("rm");
        std::os::unix::fs::symlink("/etc/hostname", &placed).expect("symlink");
        library(dir.path()).expect("replaced");
        assert!(std::fs::symlink_metadata(&placed).expect("lstat").is_file());
        let blocked = tempfile::tempdir().expect("tempdir");
        std::fs::write(blocked.path().join("lib"), b"a file where the directory goes").expect("write");
        let e = library(blocked.path()).expect_err("no place").to_string();
        assert!(e.contains("cannot place the preload library") && e.contains("--state-dir"), "{e}");
    }
}
