//! The service's control socket: one JSON request per connection, one JSON response.
//!
//! The socket (`STATE/pools/NAME/control.sock`) is owner-only, and the service also checks the
//! peer's credentials: only root or the service's own user may talk to it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::service::fuse::OpSummary;
use crate::spec::InstanceSpec;

/// A request to the service.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    /// Add an instance, served through FUSE at `mountpoint`.
    Mount { mountpoint: PathBuf, spec: Box<InstanceSpec> },
    /// Remove the instance at `mountpoint`.
    Umount { mountpoint: PathBuf },
    /// Which instance serves `mountpoint`, and the segment (cheap: no counters, no threads).
    Instance { mountpoint: PathBuf },
    /// Report the service's state and counters.
    Stats,
    /// Flush, unmount everything and exit.
    Stop,
}

/// One thread of the service.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ThreadInfo {
    pub tid: u32,
    pub name: String,
    /// The cpu it last ran on.
    pub cpu: u32,
    /// Its affinity (`Cpus_allowed_list`).
    pub allowed: String,
}

/// One served instance.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MountInfo {
    pub mountpoint: PathBuf,
    /// Its index on the user-level path (`Descriptor::instance`).
    pub instance: u32,
    pub spec: InstanceSpec,
    /// The transport of its FUSE requests: `io_uring` or `classic` (`/dev/fuse`).
    #[serde(default)]
    pub fuse_transport: String,
    /// In `writeback` mode, when the service writes dirty data back on its own
    /// (`CacheSpec::write_back_when`): at the last close too, or only once it has been dirty
    /// for `dirty_expire`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_back: Option<String>,
    pub passthrough_opens: u64,
    /// Opens on the user-level path answered with the backing file's descriptor.
    #[serde(default)]
    pub user_passthrough_opens: u64,
    /// Opens on the user-level path answered with the file's bytes (a small file, which the
    /// client then reads without asking again while nobody changes it).
    #[serde(default)]
    pub user_prefetched_opens: u64,
    /// Changes other clients of a shared file system announced (CephFS revoking the
    /// service's capability to cache a file's data or a name): what clients had learned of
    /// those files was forgotten at once, not at the attribute timeout.
    #[serde(default)]
    pub others_changes: u64,
    /// Descriptors the preload library gave to the kernel (reopened through the FUSE mount
    /// for good), by reason (`mmap`, `lock`, `splice`, `stdio`, `process`, `unserved`).
    #[serde(default)]
    pub user_handovers: BTreeMap<String, u64>,
    /// What its writable branch holds and may hold (a quota; `None`: not counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<crate::quota::Usage>,
    /// Per request kind on the FUSE path.
    pub fuse_ops: BTreeMap<String, OpSummary>,
    /// Per request kind on the user-level path.
    #[serde(default)]
    pub user_ops: BTreeMap<String, OpSummary>,
}

/// The service's answer to `Stats`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ServiceStats {
    pub pid: u32,
    pub started: u64,
    /// The pool's SysV segment (an id in the pool's IPC namespace).
    pub shmid: i32,
    /// The channel socket clients of the user-level path connect to.
    #[serde(default)]
    pub channel: PathBuf,
    pub threads: Vec<ThreadInfo>,
    pub mounts: Vec<MountInfo>,
    /// What the user-level path holds (client areas, open files) and took back from
    /// processes that died.
    #[serde(default)]
    pub user_path: UserPath,
    /// What the pool's writable branches hold and may hold (`pool create --storage/--inodes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<crate::quota::Usage>,
    /// The service's own data cache (`writethrough` and `writeback` mounts), if one is in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheInfo>,
    /// Descriptors the service holds now (objects its mounts' kernel side or caches remember
    /// hold one each, up to a bound per local backend), and its limit (`RLIMIT_NOFILE`,
    /// raised at start).
    #[serde(default)]
    pub descriptors: Descriptors,
}

/// The service's open descriptors, for `inspect`.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Descriptors {
    pub open: u64,
    pub limit: u64,
}

/// The service's block cache, for `inspect`.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CacheInfo {
    /// Bytes held now, and at most.
    pub bytes: u64,
    pub limit: u64,
    pub hits: u64,
    pub misses: u64,
    pub insertions: u64,
    pub evictions: u64,
    pub invalidations: u64,
    /// Write-back: bytes dirty now (whole blocks), blocks written back, failed write-backs.
    #[serde(default)]
    pub dirty: u64,
    #[serde(default)]
    pub writebacks: u64,
    #[serde(default)]
    pub writeback_errors: u64,
}

/// The user-level path's resources, for `inspect`.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserPath {
    /// Client areas in use, of `areas`.
    pub clients: u32,
    pub areas: u32,
    pub open_files: u64,
    /// Files of dead processes the service released.
    pub reclaimed_files: u64,
    /// Client areas given back (their connections closed: the thread or process ended).
    pub reclaimed_clients: u64,
    /// Open files one process may hold.
    pub max_open_per_process: u32,
}

/// Where a mountpoint is served on the user-level path (the answer to `Mount` and
/// `Instance`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserPathAddress {
    /// Its index in the filesystem table (`Descriptor::instance`).
    pub instance: u32,
    /// The pool's channel socket (what the preload library connects to).
    pub channel: PathBuf,
}

/// The service's answer.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    pub error: Option<String>,
    pub stats: Option<ServiceStats>,
    #[serde(default)]
    pub served: Option<UserPathAddress>,
}

impl Response {
    pub fn ok() -> Self {
        Response { ok: true, ..Response::default() }
    }

    pub fn err(e: impl std::fmt::Display) -> Self {
        Response { ok: false, error: Some(e.to_string()), ..Response::default() }
    }

    pub fn served(s: UserPathAddress) -> Self {
        Response { ok: true, served: Some(s), ..Response::default() }
    }
}

/// Errors talking to a service.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot reach the service at {path}: {source}")]
    Connect { path: String, source: std::io::Error },
    #[error("service protocol error: {0}")]
    Protocol(String),
    #[error("{0}")]
    Refused(String),
}

/// The start of a service's refusal when it serves as many requests as it may.
pub const BUSY: &str = "the service is busy";

/// Sends one request and returns the response (an error when the service refused). A service
/// that is busy is asked again, every 50 ms, until `timeout` has passed.
pub fn call(socket: &Path, req: &Request, timeout: Duration) -> Result<Response, ControlError> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match call_once(socket, req, timeout) {
            Err(ControlError::Refused(why)) if why.starts_with(BUSY) && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

fn call_once(socket: &Path, req: &Request, timeout: Duration) -> Result<Response, ControlError> {
    let connect = |source| ControlError::Connect { path: socket.display().to_string(), source };
    let mut s = UnixStream::connect(socket).map_err(connect)?;
    s.set_read_timeout(Some(timeout)).map_err(connect)?;
    let mut line = serde_json::to_string(req).map_err(|e| ControlError::Protocol(e.to_string()))?;
    line.push('\n');
    s.write_all(line.as_bytes()).map_err(connect)?;
    let mut reply = String::new();
    BufReader::new(&s).read_line(&mut reply).map_err(connect)?;
    let resp: Response = serde_json::from_str(&reply).map_err(|e| ControlError::Protocol(format!("{e}: {reply:?}")))?;
    if !resp.ok {
        return Err(ControlError::Refused(resp.error.unwrap_or_else(|| "refused".into())));
    }
    Ok(resp)
}

/// Reads one request from a connection (at most 1 MiB).
pub fn read_request(s: &UnixStream) -> Result<Request, String> {
    let mut line = String::new();
    let mut r = BufReader::new(s).take(1 << 20);
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    serde_json::from_str(&line).map_err(|e| format!("bad request: {e}"))
}

/// Writes one response.
pub fn write_response(mut s: &UnixStream, resp: &Response) {
    if let Ok(mut line) = serde_json::to_string(resp) {
        line.push('\n');
        let _ = s.write_all(line.as_bytes());
    }
}

