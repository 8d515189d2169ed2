//! The filesystem instance spec (YAML): backend and its options, branches, cache settings.
//!
//! ```yaml
//! backend:
//!   type: local          # the embedded default
//! branches:              # topmost first; only the first may be rw (the upper)
//!   - path: /var/lib/c1/upper
//!     mode: rw
//!   - path: /images/debian
//!     mode: ro
//! cache:
//!   mode: kernel         # kernel | direct
//!   attr_timeout: 1.0    # seconds
//!   entry_timeout: 1.0
//!   passthrough: true    # kernel mode: FUSE passthrough to backend host files
//!   user_passthrough: false # kernel mode: the library gets the backing file's descriptor
//!   busy_passthrough: true  # ... of a file it keeps writing, from its fourth data call
//!   learn: true          # the library answers unchanged files' reads, reopens and stats itself
//! ```
//!
//! Parsing uses `serde_yaml_ng`, a maintained fork of `serde_yaml` (archived upstream in
//! 2024); see docs/ARCHITECTURE.md. Every error names the file, the line and column, and the
//! field path (`branches[1].mode`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors reading a spec.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read {file}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {message}")]
    Invalid { file: String, line: usize, column: usize, message: String },
    #[error("{file}: {message}")]
    InvalidNoLocation { file: String, message: String },
}

/// Which backend client an instance sits on.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields, from = "RawBackend")]
pub enum BackendSpec {
    /// Branch paths are host directories.
    #[default]
    Local,
    /// Branch paths are absolute paths inside a CephFS, reached through libcephfs.
    Cephfs(CephSpec),
}

/// [`BackendSpec`] as written: serde lets a unit variant of an internally tagged enum take
/// any other keys (`{type: local, conf: ...}` would parse and the `conf` be ignored), so the
/// local backend is read as an empty struct, which refuses them.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum RawBackend {
    Local {},
    Cephfs(CephSpec),
}

impl From<RawBackend> for BackendSpec {
    fn from(raw: RawBackend) -> BackendSpec {
        match raw {
            RawBackend::Local {} => BackendSpec::Local,
            RawBackend::Cephfs(c) => BackendSpec::Cephfs(c),
        }
    }
}

/// How an instance reaches its CephFS.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CephSpec {
    /// The cluster's ceph.conf (its `[client]` section names the keyring).
    pub conf: PathBuf,
    /// Client id (`admin` for `client.admin`).
    #[serde(default = "default_ceph_id")]
    pub id: String,
    /// File system name (default: the cluster's default file system).
    #[serde(default)]
    pub fs: Option<String>,
    /// `shared` (default): every instance of the service using the same conf, id and fs
    /// shares one client and its cache (clones of an image cache it once); `private`: a
    /// client per instance (spreads libcephfs' global client lock).
    #[serde(default)]
    pub client: CephClientMode,
    /// Client cache settings passed to libcephfs (`client_cache_size`, `client_oc_size`,
    /// `client_oc_max_dirty`...).
    #[serde(default)]
    pub settings: std::collections::BTreeMap<String, String>,
}

fn default_ceph_id() -> String {
    "admin".into()
}

/// Whether instances share a CephFS client.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CephClientMode {
    #[default]
    Shared,
    Private,
}

/// Whether a branch takes writes.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BranchMode {
    Ro,
    Rw,
}

/// One branch of the union.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BranchSpec {
    /// Path in the backend (a host directory for `local`). Relative paths are taken relative
    /// to the spec file's directory.
    pub path: PathBuf,
    pub mode: BranchMode,
    /// On a `cephfs` instance: this branch is a host directory instead (a clone's upper on
    /// local disk over image layers in CephFS).
    #[serde(default, skip_serializing_if = "is_false")]
    pub local: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// How a mount caches file data: the kernel's page cache, none, or the pool's own cache.
/// (With the `cli` feature it is also the `mount --cache` value, its help these comments.)
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    /// Kernel page cache with attribute/entry timeouts, and FUSE passthrough (or the
    /// writeback cache) for file data.
    #[default]
    Kernel,
    /// Direct I/O: no kernel page cache; only the backend client caches.
    Direct,
    /// The pool's own cache: file data in the service's memory (a block cache of `size`,
    /// shared by the service's instances, keyed by backend file), written through to the
    /// backend; the FUSE path uses direct I/O so the kernel's page cache holds none of it
    /// (CephFS files only while Ceph delegates them to the service: nobody writes them).
    Writethrough,
    /// The pool's own cache as in `writethrough`, but writes stay in it, dirty, until the
    /// service's threads write them back (`dirty_ratio`, `dirty_expire`,
    /// `writeback_interval`; fsync writes a file back at once, and so does its last close
    /// unless `close_to_open` is off).
    Writeback,
}

/// Whether directories with lower parts may be renamed (overlayfs's `redirect_dir`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RedirectDir {
    /// Renamed in place: the upper branch records where the lower parts are
    /// (`trusted.overlay.redirect`), in overlayfs's format.
    #[default]
    On,
    /// Such a rename fails with `EXDEV` (user space then copies the tree); redirects already
    /// in the branches are still followed.
    Off,
}

/// Union settings.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct UnionSpec {
    pub redirect_dir: RedirectDir,
}

impl UnionSpec {
    fn is_default(&self) -> bool {
        *self == UnionSpec::default()
    }
}

/// Cache settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSpec {
    pub mode: CacheMode,
    /// Seconds the kernel may cache attributes.
    pub attr_timeout: f64,
    /// Seconds the kernel may cache name lookups.
    pub entry_timeout: f64,
    /// In `kernel` mode, let the kernel do data I/O directly on the backend's host files
    /// (FUSE passthrough) when the backend has them; otherwise use the writeback cache.
    pub passthrough: bool,
    /// In `kernel` mode with the local backend: a process under the preload library that
    /// opens a file of the writable branch gets the backing file's descriptor, and its reads,
    /// writes, seeks and syncs of it are the kernel's own (the user-level path's passthrough).
    /// Off by default: passing a descriptor costs an open some 7 us, which short-lived files
    /// (the fileserver and webserver mixes) do not win back (docs/BENCHMARKS.md).
    pub user_passthrough: bool,
    /// In `kernel` mode with the local backend and no storage quota: a file of the writable
    /// branch that a process under the preload library opened for writing gets the backing
    /// file's descriptor (opened anew through a view of the branch) once the file proves busy
    /// (its descriptor's fourth data call), so that a log, a database or any file written on
    /// and on is the kernel's from then on; short-lived files never pay for the descriptor.
    pub busy_passthrough: bool,
    /// The preload library keeps what the service tells it of files (small files' bytes and
    /// attributes, where files end, which path led where) and answers repeated reads, `fstat`,
    /// reopens and stats of unchanged files itself, while the service's change table says
    /// nothing changed (docs/ARCHITECTURE.md). Off: every call is a round trip (reads then
    /// update access times as the kernel would). Never with `user_passthrough`.
    pub learn: bool,
    /// In `writethrough` and `writeback` modes: the service's cache size (`256M`, `1G`, ...;
    /// default 256M).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// In `writeback` mode: the share of the cache dirty data may take (0 < r <= 1; a writer
    /// past it writes back first; from half of it on, the flusher does).
    pub dirty_ratio: f64,
    /// In `writeback` mode: seconds after which dirty data is written back.
    pub dirty_expire: f64,
    /// In `writeback` mode: seconds between two looks of the flusher.
    pub writeback_interval: f64,
    /// In `writeback` mode: the last close of a file hands it to the flusher at once, so that
    /// whatever reads the writable branch behind the service (another mount of the same
    /// directory, a process of the host) sees what was written once the file is closed (NFS's
    /// close-to-open). The default. `false` declares the branch the mount's alone (every
    /// access to it through this service): a closed file's dirty data then waits for
    /// `dirty_expire`, and a file removed before then (a temporary file, the fileserver mix's)
    /// never reaches the disk, as with the kernel's own page cache.
    pub close_to_open: bool,
}

/// Longest timeout or expiry a spec or flag may set: a day (a name, an attribute or dirty
/// data kept longer than that is a mistake, and every such number must fit a `Duration`).
pub const MAX_SECONDS: f64 = 86_400.0;

/// Checks that `v` seconds (of field or flag `name`) is a number from `min` to `max`.
pub fn check_seconds(name: &str, v: f64, min: f64, max: f64) -> Result<std::time::Duration, String> {
    if !v.is_finite() || v < min || v > max {
        return Err(format!("{name}: {v} is not a number of seconds from {min} to {max}"));
    }
    std::time::Duration::try_from_secs_f64(v).map_err(|e| format!("{name}: {v}: {e}"))
}

/// `v` seconds as a duration, clamped to `0..=MAX_SECONDS` (NaN is 0): for numbers validated
/// when parsed, so that one built otherwise can never panic.
pub fn seconds(v: f64) -> std::time::Duration {
    std::time::Duration::from_secs_f64(if v.is_nan() { 0.0 } else { v.clamp(0.0, MAX_SECONDS) })
}

/// Cache size when the spec names none.
pub const DEFAULT_CACHE_SIZE: u64 = 256 << 20;

impl CacheSpec {
    /// Whether file data goes through the service's own block cache.
    pub fn own_cache(&self) -> bool {
        matches!(self.mode, CacheMode::Writethrough | CacheMode::Writeback)
    }

    /// The write-back settings of a `writeback` cache of [`CacheSpec::size_bytes`].
    pub fn writeback(&self) -> crate::backend::cache::Writeback {
        crate::backend::cache::Writeback {
            dirty_limit: (self.size_bytes() as f64 * self.dirty_ratio) as u64,
            // Validated when parsed (`check_seconds`); a value built in code past the bound is
            // clamped rather than trusted.
            expire: seconds(self.dirty_expire),
            interval: seconds(self.writeback_interval),
        }
    }

    /// When the service writes dirty data back on its own (fsync, `O_SYNC`, the dirty limit,
    /// unmount and `service stop` aside), for `inspect`; `None` outside `writeback` mode.
    /// `expire`: the expiry the service's cache has (the first write-back instance's settings
    /// hold for the whole cache), if it has one.
    pub fn write_back_when(&self, expire: Option<std::time::Duration>) -> Option<String> {
        (self.mode == CacheMode::Writeback).then(|| {
            let expiry = format!("after {} s dirty", expire.map_or(self.dirty_expire, |e| e.as_secs_f64()));
            if self.close_to_open { format!("at the last close, {expiry}") } else { expiry }
        })
    }

    /// The cache size in bytes (the spec was validated when parsed).
    pub fn size_bytes(&self) -> u64 {
        self.size.as_deref().and_then(|s| parse_size(s).ok()).unwrap_or(DEFAULT_CACHE_SIZE)
    }
}

impl Default for CacheSpec {
    fn default() -> Self {
        CacheSpec {
            mode: CacheMode::Kernel,
            attr_timeout: 1.0,
            entry_timeout: 1.0,
            passthrough: true,
            user_passthrough: false,
            busy_passthrough: true,
            learn: true,
            size: None,
            dirty_ratio: 0.5,
            dirty_expire: 5.0,
            writeback_interval: 1.0,
            close_to_open: true,
        }
    }
}

/// Owner and group ids of the read-only branches as the instance shows them: id `n` below
/// `count` is `first + n`; any other is the overflow id. For a container in a user namespace
/// mapped onto `first..first+count`: the image's files keep their ids as seen inside, and
/// copy-up stores them shifted (the upper branch holds host ids).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IdShift {
    pub first: u32,
    pub count: u32,
}

impl IdShift {
    /// `id` of a read-only branch as the instance shows it.
    pub fn apply(&self, id: u32) -> u32 {
        if id < self.count {
            self.first + id
        } else {
            crate::libservice::access::OVERFLOW_ID
        }
    }
}

/// A filesystem instance: a union of branches over one backend.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, try_from = "RawInstance")]
pub struct InstanceSpec {
    pub backend: BackendSpec,
    /// Topmost first.
    pub branches: Vec<BranchSpec>,
    pub cache: CacheSpec,
    /// Union behaviour (`redirect_dir`).
    #[serde(default, skip_serializing_if = "UnionSpec::is_default")]
    pub union: UnionSpec,
    /// Ids of the read-only branches shifted (a clone for a container in a user namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_shift: Option<IdShift>,
    /// What the writable branch may hold (`EDQUOT` past it).
    #[serde(default, skip_serializing_if = "QuotaSpec::is_default")]
    pub quota: QuotaSpec,
    /// How the FUSE path talks to the kernel.
    #[serde(default, skip_serializing_if = "FuseSpec::is_default")]
    pub fuse: FuseSpec,
}

/// The FUSE path's settings: `transport`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FuseSpec {
    #[serde(default)]
    pub transport: FuseTransport,
}

impl FuseSpec {
    fn is_default(&self) -> bool {
        *self == FuseSpec::default()
    }
}

/// How FUSE requests travel between the kernel and the service.
/// (With the `cli` feature it is also the `mount --fuse-transport` value, its help these comments.)
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum FuseTransport {
    /// io_uring where the host allows it (the fuse module's enable_uring is Y), else classic.
    #[default]
    Auto,
    /// io_uring, or the mount fails naming what is missing.
    Uring,
    /// /dev/fuse reads and writes.
    Classic,
}

/// A storage quota of one instance's writable branch: `bytes` (a size like `2G`) and
/// `inodes`; either may be absent (no limit).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct QuotaSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inodes: Option<u64>,
}

impl QuotaSpec {
    fn is_default(&self) -> bool {
        *self == QuotaSpec::default()
    }

    /// Whether it limits anything.
    pub fn limits(&self) -> bool {
        !self.is_default()
    }

    /// The byte limit (checked when the spec was read).
    pub fn bytes_max(&self) -> Option<u64> {
        self.bytes.as_deref().and_then(|b| parse_size(b).ok())
    }

    /// Parses `--quota BYTES[,INODES]` (`2G`, `2G,100000`, `,5000`).
    pub fn parse(s: &str) -> Result<QuotaSpec, String> {
        let (bytes, inodes) = s.split_once(',').unwrap_or((s, ""));
        let bytes = bytes.trim();
        let inodes = inodes.trim();
        let q = QuotaSpec {
            bytes: (!bytes.is_empty()).then(|| bytes.to_string()),
            inodes: if inodes.is_empty() { None } else { Some(inodes.parse().map_err(|_| format!("inodes {inodes:?}: expected a whole number"))?) },
        };
        q.check()?;
        if !q.limits() {
            return Err("expected BYTES[,INODES], e.g. 2G or 2G,100000".into());
        }
        Ok(q)
    }

    fn check(&self) -> Result<(), String> {
        if let Some(b) = &self.bytes {
            let n = parse_size(b).map_err(|why| format!("quota.bytes {b:?}: {why}"))?;
            if n == 0 {
                return Err(format!("quota.bytes {b:?}: must be more than 0"));
            }
        }
        if self.inodes == Some(0) {
            return Err("quota.inodes: must be more than 0".into());
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstance {
    #[serde(default)]
    backend: BackendSpec,
    branches: Vec<BranchSpec>,
    #[serde(default)]
    cache: CacheSpec,
    #[serde(default)]
    union: UnionSpec,
    #[serde(default)]
    id_shift: Option<IdShift>,
    #[serde(default)]
    quota: QuotaSpec,
    #[serde(default)]
    fuse: FuseSpec,
}

impl TryFrom<RawInstance> for InstanceSpec {
    type Error = String;

    fn try_from(raw: RawInstance) -> Result<Self, String> {
        let spec = InstanceSpec { backend: raw.backend, branches: raw.branches, cache: raw.cache, union: raw.union, id_shift: raw.id_shift, quota: raw.quota, fuse: raw.fuse };
        spec.check()?;
        Ok(spec)
    }
}

impl InstanceSpec {
    /// What a spec file's instance must be (checked as it is read; a spec made another way,
    /// as `mount`'s quick form makes one, is checked with this too): the error names the field.
    pub fn check(&self) -> Result<(), String> {
        let raw = self;
        if raw.branches.is_empty() {
            return Err("branches: at least one branch is needed".into());
        }
        for (i, b) in raw.branches.iter().enumerate() {
            if b.mode == BranchMode::Rw && i != 0 {
                return Err(format!(
                    "branches[{i}].mode: only the first (topmost) branch may be rw"
                ));
            }
            if b.path.as_os_str().is_empty() {
                return Err(format!("branches[{i}].path: empty path"));
            }
            if let Some(j) = raw.branches[..i].iter().position(|o| o.path == b.path) {
                return Err(format!("branches[{i}].path: same directory as branches[{j}]"));
            }
        }
        for (name, v) in [
            ("cache.attr_timeout", raw.cache.attr_timeout),
            ("cache.entry_timeout", raw.cache.entry_timeout),
            ("cache.dirty_expire", raw.cache.dirty_expire),
        ] {
            check_seconds(name, v, 0.0, MAX_SECONDS)?;
        }
        check_seconds("cache.writeback_interval", raw.cache.writeback_interval, 0.01, 3600.0)?;
        let ratio = raw.cache.dirty_ratio;
        if !ratio.is_finite() || ratio <= 0.0 || ratio > 1.0 {
            return Err("cache.dirty_ratio: must be a share of the cache, above 0 and at most 1".into());
        }
        if let Some(size) = &raw.cache.size {
            parse_size(size).map_err(|why| format!("cache.size {size:?}: {why}"))?;
        }
        if let Some(shift) = raw.id_shift {
            if shift.count == 0 || shift.first.checked_add(shift.count).is_none() {
                return Err(format!("id_shift: {} ids from {} do not fit in 32-bit ids", shift.count, shift.first));
            }
        }
        raw.quota.check()?;
        if raw.quota.limits() && raw.branches.first().is_none_or(|b| b.mode != BranchMode::Rw) {
            return Err("quota: a quota needs a writable (rw) first branch".into());
        }
        Ok(())
    }
}

impl InstanceSpec {
    /// Parses `text`; `origin` names the file in errors and anchors relative branch paths.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, SpecError> {
        let mut spec: InstanceSpec = from_yaml(text, origin)?;
        for (i, b) in spec.branches.iter().enumerate() {
            if b.path.is_relative() && !spec.on_host(b) {
                // A path inside CephFS has no directory to be relative to.
                return Err(SpecError::InvalidNoLocation {
                    file: origin.display().to_string(),
                    message: format!("branches[{i}].path: {} must be absolute (a path inside the CephFS)", b.path.display()),
                });
            }
        }
        spec.anchor(origin.parent().unwrap_or(Path::new(".")));
        Ok(spec)
    }

    /// Whether branch `b` is a directory of this host (every branch of the local backend, a
    /// `local` branch of CephFS), not a path inside the CephFS.
    fn on_host(&self, b: &BranchSpec) -> bool {
        b.local || matches!(self.backend, BackendSpec::Local)
    }

    /// Makes the host paths given relative (branches on this host, the CephFS configuration
    /// file) relative to `base`.
    pub fn anchor(&mut self, base: &Path) {
        let local = matches!(self.backend, BackendSpec::Local);
        for b in self.branches.iter_mut().filter(|b| (local || b.local) && b.path.is_relative()) {
            b.path = base.join(&b.path);
        }
        if let BackendSpec::Cephfs(c) = &mut self.backend {
            if c.conf.is_relative() {
                c.conf = base.join(&c.conf);
            }
        }
    }

    /// The first host path given relative (see [`InstanceSpec::anchor`]), if any: a service
    /// would take it from its own working directory.
    pub fn relative_host_path(&self) -> Option<&Path> {
        let branch = self.branches.iter().find(|b| self.on_host(b) && b.path.is_relative()).map(|b| b.path.as_path());
        branch.or(match &self.backend {
            BackendSpec::Cephfs(c) if c.conf.is_relative() => Some(c.conf.as_path()),
            _ => None,
        })
    }

    /// Reads and parses the spec file at `path` (relative branch paths are taken from its
    /// directory, made absolute from the working directory when `path` is relative).
    pub fn from_file(path: &Path) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| SpecError::Read { file: path.display().to_string(), source })?;
        let anchored = std::path::absolute(path).map_err(|source| SpecError::Read { file: path.display().to_string(), source })?;
        Self::parse(&text, &anchored)
    }

    /// The writable branch, if any.
    pub fn upper(&self) -> Option<&BranchSpec> {
        self.branches.first().filter(|b| b.mode == BranchMode::Rw)
    }

    /// The read-only branches, topmost first.
    pub fn lowers(&self) -> impl Iterator<Item = &BranchSpec> {
        self.branches.iter().filter(|b| b.mode == BranchMode::Ro)
    }
}

/// Parses `2G`, `512M`, `64k`, `1024` (bytes; binary units, above 0); the error says why not.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| "expected a number with an optional unit K, M, G or T".to_string())?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        u => return Err(format!("unknown unit {u:?} (use K, M, G or T)")),
    };
    let v = n.checked_mul(mult).ok_or_else(|| "too large".to_string())?;
    if v == 0 {
        return Err("must be more than 0".into());
    }
    Ok(v)
}

/// Parses a YAML document from `origin`; errors name the file, line, column and field path.
pub fn from_yaml<T: serde::de::DeserializeOwned>(text: &str, origin: &Path) -> Result<T, SpecError> {
    let file = origin.display().to_string();
    serde_yaml_ng::from_str(text).map_err(|e| match e.location() {
        Some(loc) => SpecError::Invalid { file, line: loc.line(), column: loc.column(), message: strip_location(&e.to_string()) },
        None => SpecError::InvalidNoLocation { file, message: e.to_string() },
    })
}

/// serde_yaml_ng appends " at line L column C"; the location is reported separately.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

#[cfg(test)]
mod tests;
