//! Attaching a process to a service's user-level path: where the preload library (the front
//! driver) is, and the resolved configuration it reads from the environment.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// File name of the preload library, shipped beside the `polytropon` binary.
pub const LIBRARY: &str = "libpolytropon_preload.so";

/// The preload library beside the running binary.
pub fn library() -> std::io::Result<PathBuf> {
    let exe = crate::container::sealed::origin_exe()?;
    let lib = exe.parent().unwrap_or(Path::new(".")).join(LIBRARY);
    if lib.exists() {
        Ok(lib)
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("the preload library is missing: expected {} beside the polytropon binary", lib.display()),
        ))
    }
}

/// Sets up `cmd` to run with the library connecting to the channel socket `channel`, serving `mounts`
/// (mount point, instance index) on the user-level path. An existing `LD_PRELOAD` is kept,
/// after ours.
pub fn attach(cmd: &mut Command, lib: &Path, channel: &Path, mounts: &[(PathBuf, u32)]) {
    let table: Vec<String> = mounts.iter().map(|(p, i)| format!("{}={i}", p.display())).collect();
    let mut preload: OsString = lib.as_os_str().to_owned();
    if let Some(old) = std::env::var_os("LD_PRELOAD").filter(|o| !o.is_empty()) {
        preload.push(" ");
        preload.push(old);
    }
    cmd.env("POLYTROPON_CHANNEL", channel)
        .env("POLYTROPON_MOUNTS", table.join(":"))
        .env("LD_PRELOAD", preload)
        .env("LD_LIBRARY_PATH", lib.parent().unwrap_or(Path::new(".")));
}
