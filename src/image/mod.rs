//! Container images as read-only branches: `image import` unpacks each layer of an OCI image
//! layout (a directory or a tar archive) or of a `docker save` archive once into a directory
//! of the image store, and records the image's layers and config. A clone container's root is
//! a union of its own writable upper branch over those layer directories.
//!
//! Store layout under `DATA/images/`: `layers/<algorithm>-<hex>/` (one per layer blob,
//! shared by every image that names it, OCI whiteouts `.wh.NAME` and `.wh..wh..opq` kept as
//! the union reads them in lower branches), `images.json` (the records), `.lock`.

mod layout;
mod store;
pub(crate) mod unpack;

pub use layout::{Dir, ImageConfig, Source};
pub use store::{CephStore, ImageRecord, Store};

/// Errors of the image store.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
    #[error("layer {digest} is corrupt: its content hashes to {actual}")]
    Digest { digest: String, actual: String },
    #[error("no image named {0}")]
    NotFound(String),
    #[error("an image named {0} already exists (remove it first)")]
    Exists(String),
}

impl ImageError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        ImageError::Io { path: path.display().to_string(), source }
    }
}
