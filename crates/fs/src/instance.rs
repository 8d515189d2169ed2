//! Building a filesystem instance (a stack of libservices) from its spec.

use std::sync::{Arc, Mutex, Weak};

use crate::backend::cephfs::{CephBranch, CephClient, CephError, CephOptions};
use crate::backend::local::{LocalError, LocalFs, LocalOptions};
use crate::libservice::FileSystem;
use crate::quota::{Quota, QuotaFs};
use crate::spec::{BackendSpec, CephClientMode, CephSpec, InstanceSpec};
use crate::union::{UnionError, UnionFs};

/// Errors building an instance.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("cannot connect to CephFS")]
    Ceph(#[from] CephError),
    #[error("CephFS branch {path}")]
    CephBranch {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("branch {path}")]
    Branch {
        path: String,
        #[source]
        source: LocalError,
    },
    #[error(transparent)]
    Union(#[from] UnionError),
    #[error("cannot start the cache's write-back thread")]
    Flusher(#[source] std::io::Error),
    #[error("cannot count what the writable branch holds (for its quota)")]
    Quota(#[source] std::io::Error),
}

/// Clients shared by the instances of this process, by (conf, id, fs).
static SHARED: Mutex<Vec<(CephOptions, Weak<CephClient>)>> = Mutex::new(Vec::new());

/// The CephFS client an instance of `spec` uses: the process's shared one for the same
/// cluster, file system and settings, or a new one.
fn ceph_client(spec: &CephSpec) -> Result<Arc<CephClient>, CephError> {
    let opts = CephOptions {
        conf: spec.conf.clone(),
        id: spec.id.clone(),
        fs: spec.fs.clone(),
        settings: spec.settings.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    };
    if spec.client == CephClientMode::Private {
        return Ok(Arc::new(CephClient::connect(&opts)?));
    }
    let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    shared.retain(|(_, w)| w.strong_count() > 0);
    if let Some(c) = shared.iter().find(|(o, _)| *o == opts).and_then(|(_, w)| w.upgrade()) {
        return Ok(c);
    }
    let c = Arc::new(CephClient::connect(&opts)?);
    shared.push((opts, Arc::downgrade(&c)));
    Ok(c)
}

/// The service's block cache for an instance with `cache` settings (made on first use, write-
/// back and its flusher started when asked for), or `None` when its mode keeps no cache of
/// the pool's own.
pub fn pool_cache(cache: &crate::spec::CacheSpec) -> std::io::Result<Option<Arc<crate::backend::cache::BlockCache>>> {
    if !cache.own_cache() {
        return Ok(None);
    }
    let c = crate::backend::cache::shared(cache.size_bytes());
    if cache.mode == crate::spec::CacheMode::Writeback {
        crate::backend::local::enable_writeback(&c, cache.writeback())?;
    }
    Ok(Some(c))
}

/// The options of a local branch of an instance with `spec` cache settings, served through
/// `cache` (its [`pool_cache`]). The backend reuses names and attributes as long as the kernel
/// does on the FUSE path; attributes only when every change of file data reaches the backend
/// (the pool's own cache): FUSE passthrough and the kernel's writeback cache change files
/// behind it.
pub fn local_options(spec: &crate::spec::CacheSpec, cache: Option<Arc<crate::backend::cache::BlockCache>>, read_only: bool) -> LocalOptions {
    let writeback = spec.mode == crate::spec::CacheMode::Writeback;
    let entry_ttl = crate::spec::seconds(spec.entry_timeout);
    let attr_ttl = if spec.own_cache() { crate::spec::seconds(spec.attr_timeout) } else { std::time::Duration::ZERO };
    LocalOptions { read_only, cache, writeback, close_to_open: spec.close_to_open, entry_ttl, attr_ttl, max_descriptors: 0 }
}

/// Builds the union of the spec's branches over its backend.
pub fn build(spec: &InstanceSpec) -> Result<Arc<dyn FileSystem>, InstanceError> {
    build_with(spec, None).map(|(fs, _)| fs)
}

/// An instance and what its writable branch holds (`None`: not counted, no quota applies).
pub type Counted = (Arc<dyn FileSystem>, Option<Arc<Quota>>);

/// Builds the instance with its writable branch counted against `pool` (the pool's storage
/// quota, shared by its instances) and the spec's own `quota`.
pub fn build_with(spec: &InstanceSpec, pool: Option<Arc<Quota>>) -> Result<Counted, InstanceError> {
    let client = match &spec.backend {
        BackendSpec::Cephfs(c) => Some(ceph_client(c)?),
        BackendSpec::Local => None,
    };
    // The service's one block cache, shared by its instances (so clones cache a shared lower
    // branch once).
    let cache = pool_cache(&spec.cache).map_err(InstanceError::Flusher)?;
    let local_opts = |read_only| local_options(&spec.cache, cache.clone(), read_only);
    let open = |path: &std::path::Path, read_only: bool, local: bool| -> Result<Arc<dyn FileSystem>, InstanceError> {
        match &client {
            _ if local => LocalFs::new(path, local_opts(read_only))
                .map(|fs| Arc::new(fs) as Arc<dyn FileSystem>)
                .map_err(|source| InstanceError::Branch { path: path.display().to_string(), source }),
            None => LocalFs::new(path, local_opts(read_only))
                .map(|fs| Arc::new(fs) as Arc<dyn FileSystem>)
                .map_err(|source| InstanceError::Branch { path: path.display().to_string(), source }),
            Some(c) => CephBranch::new(c.clone(), path, read_only, cache.clone())
                .map(|fs| Arc::new(fs) as Arc<dyn FileSystem>)
                .map_err(|source| InstanceError::CephBranch { path: path.display().to_string(), source }),
        }
    };
    let mut upper = spec.upper().map(|b| open(&b.path, false, b.local)).transpose()?;
    let mut mine = None;
    if let Some(u) = upper.take() {
        if spec.quota.limits() || pool.is_some() {
            let q = Quota::within(spec.quota.bytes_max(), spec.quota.inodes, libc::EDQUOT, pool);
            let counted = QuotaFs::new(u, q.clone()).map_err(InstanceError::Quota)?;
            mine = Some(q);
            upper = Some(Arc::new(counted));
        } else {
            upper = Some(u);
        }
    }
    let lowers = spec.lowers().map(|b| open(&b.path, true, b.local)).collect::<Result<Vec<_>, _>>()?;
    let union = UnionFs::new(upper, lowers)?.with_id_shift(spec.id_shift).with_redirect_dir(spec.union.redirect_dir == crate::spec::RedirectDir::On);
    Ok((Arc::new(union), mine))
}
