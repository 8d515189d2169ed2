//! Building a filesystem instance (a stack of libservices) from its spec.

use std::sync::Arc;

use crate::backend::local::{LocalError, LocalFs, LocalOptions};
use crate::libservice::FileSystem;
use crate::spec::{BackendSpec, InstanceSpec};
use crate::union::{UnionError, UnionFs};

/// Errors building an instance.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("branch {path}")]
    Branch {
        path: String,
        #[source]
        source: LocalError,
    },
    #[error(transparent)]
    Union(#[from] UnionError),
}

/// Builds the union of the spec's branches over its backend.
pub fn build(spec: &InstanceSpec) -> Result<Arc<dyn FileSystem>, InstanceError> {
    let open = |path: &std::path::Path, read_only: bool| -> Result<Arc<dyn FileSystem>, InstanceError> {
        match spec.backend {
            BackendSpec::Local => LocalFs::new(path, LocalOptions { read_only })
                .map(|fs| Arc::new(fs) as Arc<dyn FileSystem>)
                .map_err(|source| InstanceError::Branch { path: path.display().to_string(), source }),
        }
    };
    let upper = spec.upper().map(|b| open(&b.path, false)).transpose()?;
    let lowers = spec.lowers().map(|b| open(&b.path, true)).collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(UnionFs::new(upper, lowers)?))
}
