//! A throwaway Ceph cluster for a test (`scripts/ceph-cluster.sh`), stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Cluster {
    dir: PathBuf,
    pub conf: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ceph-cluster.sh")
}

impl Cluster {
    /// Starts a cluster under `dir` with its mon on `port`; fails the test (never skips) when
    /// it cannot.
    pub fn start(dir: &Path, port: u16) -> Cluster {
        Cluster::start_at(dir, port, "127.0.0.1")
    }

    /// As [`Cluster::start`], its daemons listening on `addr` (an address of this host).
    pub fn start_at(dir: &Path, port: u16, addr: &str) -> Cluster {
        let out = Command::new("bash").arg(script()).arg("start").arg(dir).arg(port.to_string()).arg(addr).output().expect("run ceph-cluster.sh");
        let cluster = Cluster { dir: dir.to_path_buf(), conf: dir.join("ceph.conf").display().to_string() };
        assert!(
            out.status.success(),
            "could not start a Ceph cluster (scripts/install-deps.sh installs Ceph): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }

    /// A mon port for this test process and `slot` (0-3; parallel tests need distinct ones),
    /// below the kernel's ephemeral range (32768 up), where a connection's own port could
    /// take it first.
    pub fn port(slot: u16) -> u16 {
        10000 + ((std::process::id() % 2500) as u16) * 8 + slot * 2
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(script()).arg("stop").arg(&self.dir).status();
    }
}
