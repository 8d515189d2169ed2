//! What can go wrong running a benchmark: bad options, a path that cannot be set up, a tool
//! or a workload that fails. Each names the step; the cause is the source.

use std::io;
use std::path::PathBuf;

use crate::backend::cephfs::CephError;
use crate::backend::local::LocalError;
use crate::image::ImageError;
use crate::pool::cgroups::CgroupError;
use crate::tenant::TenantError;
use crate::union::UnionError;

use super::workload::micro;
use super::{targets, WORKLOADS};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("unknown workload {0:?}; available: {available}", available = WORKLOADS.join(", "))]
    UnknownWorkload(String),
    #[error("--reps, --ops, --loops, --file-mib, --threads, --files, --file-kib, --containers and --append-mib must be at least 1")]
    NotPositive,
    #[error("unknown operation {0:?}; available: {available}, readdir", available = micro::OPS.map(|(op, _)| op).join(", "))]
    UnknownOperation(String),
    #[error("unknown path {0:?}; known: {known}", known = targets::ALL.join(", "))]
    UnknownPath(String),
    /// A path `targets::setup` does not know.
    #[error("unknown path {0:?}")]
    UnknownTarget(String),
    /// A path asked for that cannot run here.
    #[error("path {path}: {why}")]
    Unavailable { path: String, why: String },
    #[error("the rocksdb workload needs {0}")]
    NoRocksdb(&'static str),
    #[error("the startup workload: {0}")]
    NoStartup(String),
    /// No image named and none can be made of the host's busybox.
    #[error("{0}")]
    NoImage(String),
    #[error("--victim {0:?}: not a workload that runs on the file paths here")]
    BadVictim(String),
    #[error("the isolation experiment places pools A and B itself: use --pool-a-cpus and --pool-b-cpus, not --cpus")]
    IsolationCpus,
    #[error("the isolation experiment needs at least 2 cpus (pool A and pool B), this process may use {0}")]
    TooFewCpus(usize),
    #[error("pools A and B must not share cpus")]
    SharedCpus,
    /// The subject of "... --ceph-conf": "the CephFS paths need", "ceph-fuse needs".
    #[error("{0} --ceph-conf")]
    NoCephConf(&'static str),
    /// Setting or reading which cpus this process runs on.
    #[error("{what}")]
    Cpus {
        what: String,
        #[source]
        source: nix::Error,
    },
    #[error("cannot create {}", .path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Any other file or process step, named by `what`.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    /// A workload's job (its worker processes) failed.
    #[error("{what}")]
    Workload {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot run {tool}")]
    Spawn {
        tool: String,
        #[source]
        source: io::Error,
    },
    #[error("{tool} failed: {stderr}")]
    Tool { tool: String, stderr: String },
    #[error("overlay options")]
    OverlayOptions(#[source] std::ffi::NulError),
    #[error("cannot mount kernel overlayfs")]
    Overlay(#[source] rustix::io::Errno),
    #[error("branch {}", .path.display())]
    Branch {
        path: PathBuf,
        #[source]
        source: LocalError,
    },
    #[error(transparent)]
    Union(#[from] UnionError),
    /// The preload library is missing.
    #[error(transparent)]
    Library(io::Error),
    #[error("cannot connect to CephFS")]
    CephConnect(#[source] CephError),
    /// A CephFS directory cannot be opened as a branch.
    #[error(transparent)]
    Ceph(io::Error),
    #[error("{what}")]
    Cgroups {
        what: &'static str,
        #[source]
        source: CgroupError,
    },
    #[error("the startup workload needs an imported image (--image): {name}")]
    Image {
        name: String,
        #[source]
        source: ImageError,
    },
    #[error("cannot import {}", .path.display())]
    Import {
        path: PathBuf,
        #[source]
        source: ImageError,
    },
    #[error("{} is not a 64-bit little-endian ELF file", .0.display())]
    NotElf(PathBuf),
    /// `part`: "ELF header" or "program header table".
    #[error("{} has a truncated {part}", .path.display())]
    TruncatedElf { path: PathBuf, part: &'static str },
    #[error("cannot create the benchmark pool")]
    Pool(#[source] TenantError),
    #[error("the benchmark pool's service did not start")]
    ServiceDown,
    #[error("no free port found")]
    NoFreePort,
    #[error("a container did not start: {0}")]
    ContainerFailed(String),
    #[error("a container did not answer within 60 s")]
    NoAnswer,
    #[error("the startup workload does not know path {0:?} (it compares {known})", known = super::startup::PATHS.join(", "))]
    NotStartupPath(String),
    #[error("nothing to plot: the run measured nothing")]
    NothingToPlot,
    #[error("cannot draw {}", .path.display())]
    Draw {
        path: PathBuf,
        #[source]
        source: PlotError,
    },
    #[error("cannot set up path {path}")]
    SetUp {
        path: String,
        #[source]
        source: Box<BenchError>,
    },
    #[error("{n} clones on {path}")]
    Clones {
        n: usize,
        path: String,
        #[source]
        source: Box<BenchError>,
    },
    #[error("the isolation experiment")]
    Isolation(#[source] Box<BenchError>),
}

/// What plotters reported (its errors are neither `Send` nor `Sync`: kept as text).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PlotError(pub String);

impl BenchError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> BenchError {
        let what = what.into();
        move |source| BenchError::Io { what, source }
    }

    pub(crate) fn create(path: &std::path::Path) -> impl FnOnce(io::Error) -> BenchError + '_ {
        move |source| BenchError::Create { path: path.to_path_buf(), source }
    }

    pub(crate) fn spawn(tool: &str) -> impl FnOnce(io::Error) -> BenchError + '_ {
        move |source| BenchError::Spawn { tool: tool.to_string(), source }
    }

    /// `tool` exited unsuccessfully; its stderr, trimmed, says why.
    pub(crate) fn tool(tool: &str, stderr: &[u8]) -> BenchError {
        BenchError::Tool { tool: tool.to_string(), stderr: String::from_utf8_lossy(stderr).trim().to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::BenchError;
    use crate::errors::chain;

    #[test]
    fn messages_name_the_bad_input_as_before() {
        let e = BenchError::UnknownWorkload("nope".into());
        assert!(e.to_string().starts_with("unknown workload \"nope\"; available: micro, "), "{e}");
        assert!(BenchError::UnknownPath("nope".into()).to_string().starts_with("unknown path \"nope\"; known: user, "));
        assert_eq!(BenchError::UnknownOperation("x".into()).to_string(), format!("unknown operation \"x\"; available: {}, readdir", super::micro::OPS.map(|(op, _)| op).join(", ")));
        assert!(BenchError::NotPositive.to_string().ends_with("must be at least 1"));
        assert!(BenchError::BadVictim("startup".into()).to_string().starts_with("--victim \"startup\": "));
        assert_eq!(BenchError::NoCephConf("ceph-fuse needs").to_string(), "ceph-fuse needs --ceph-conf");
        let e = BenchError::Isolation(Box::new(BenchError::SharedCpus));
        assert_eq!(chain(&e), "the isolation experiment: pools A and B must not share cpus");
        let e = BenchError::SetUp { path: "fuse".into(), source: Box::new(BenchError::tool("cp -a", b" no space \n")) };
        assert_eq!(chain(&e), "cannot set up path fuse: cp -a failed: no space");
    }

    #[test]
    fn pinning_to_a_cpu_that_does_not_exist_names_it() {
        let e = super::super::pin(&[usize::MAX]).expect_err("no such cpu");
        assert!(chain(&e).starts_with(&format!("--cpus: cpu {}: ", usize::MAX)), "{}", chain(&e));
    }
}
