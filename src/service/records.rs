//! State records of running daemons under the state directory, written atomically.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A FUSE daemon serving one mount (`polytropon mount`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountRecord {
    pub mountpoint: PathBuf,
    pub pid: u32,
    /// Where a detached daemon writes its log.
    pub log: Option<PathBuf>,
}

/// Directory of mount records.
pub fn mounts_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("mounts")
}

/// File name for `mountpoint`: bytes other than `[A-Za-z0-9._-]` as `%XX`.
fn encode(mountpoint: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    mountpoint
        .as_os_str()
        .as_bytes()
        .iter()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' => (*b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Path of the record (`.yaml`) or log (`.log`) of `mountpoint`.
pub fn mount_file(state_dir: &Path, mountpoint: &Path, ext: &str) -> PathBuf {
    mounts_dir(state_dir).join(format!("{}.{ext}", encode(mountpoint)))
}

pub use crate::pool::state::write_atomic;

impl MountRecord {
    pub fn save(&self, state_dir: &Path) -> io::Result<()> {
        let yaml = serde_yaml_ng::to_string(self).map_err(io::Error::other)?;
        write_atomic(&mount_file(state_dir, &self.mountpoint, "yaml"), yaml.as_bytes())
    }

    pub fn load(state_dir: &Path, mountpoint: &Path) -> io::Result<Option<Self>> {
        match std::fs::read_to_string(mount_file(state_dir, mountpoint, "yaml")) {
            Ok(text) => serde_yaml_ng::from_str(&text).map(Some).map_err(io::Error::other),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes the record (and the log) of `mountpoint`.
    pub fn remove(state_dir: &Path, mountpoint: &Path) {
        let _ = std::fs::remove_file(mount_file(state_dir, mountpoint, "yaml"));
        let _ = std::fs::remove_file(mount_file(state_dir, mountpoint, "log"));
    }
}
