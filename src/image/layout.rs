//! Reading an image from disk: an OCI image layout (`oci-layout`, `index.json`, `blobs/`) or
//! a `docker save` directory (`manifest.json`), as unpacked from its archive. Only the fields
//! an import needs are parsed: the layers in order, and the config a container honours.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ImageError;

/// What of the image config a container honours.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub working_dir: String,
    #[serde(default)]
    pub user: String,
}

/// One layer blob to unpack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerBlob {
    /// `sha256:<hex>` when known (OCI); docker-save archives name files instead.
    pub digest: Option<String>,
    pub file: PathBuf,
}

/// An image found in a directory.
#[derive(Clone, Debug)]
pub struct Source {
    /// The name the image carries, if any (`org.opencontainers.image.ref.name`,
    /// `io.containerd.image.name`, or docker's `RepoTags`).
    pub name: Option<String>,
    /// Bottom layer first.
    pub layers: Vec<LayerBlob>,
    pub config: ImageConfig,
    /// Digest of the config blob: the image id.
    pub id: String,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

#[derive(Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Manifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct ConfigBlob {
    #[serde(default)]
    config: Option<RawConfig>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RawConfig {
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

const INDEX_TYPES: [&str; 2] = ["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"];

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T, ImageError> {
    let text = std::fs::read(path).map_err(|e| ImageError::io(path, e))?;
    serde_json::from_slice(&text).map_err(|e| ImageError::Invalid(format!("{what} {}: {e}", path.display())))
}

/// `blobs/<alg>/<hex>` of `digest`, refusing anything that is not a plain digest.
fn blob(root: &Path, digest: &str) -> Result<PathBuf, ImageError> {
    let bad = || ImageError::Invalid(format!("bad digest {digest:?}"));
    let (alg, hex) = digest.split_once(':').ok_or_else(bad)?;
    let plain = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !plain(alg) || !plain(hex) {
        return Err(bad());
    }
    Ok(root.join("blobs").join(alg).join(hex))
}

/// A file named inside the image directory, refusing names that leave it.
fn inside(root: &Path, name: &str) -> Result<PathBuf, ImageError> {
    let p = Path::new(name);
    if p.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(ImageError::Invalid(format!("manifest.json names {name:?}, outside the image")));
    }
    Ok(root.join(p))
}

fn config_of(raw: Option<RawConfig>) -> ImageConfig {
    let c = raw.unwrap_or_default();
    ImageConfig {
        env: c.env.unwrap_or_default(),
        entrypoint: c.entrypoint.unwrap_or_default(),
        cmd: c.cmd.unwrap_or_default(),
        working_dir: c.working_dir.unwrap_or_default(),
        user: c.user.unwrap_or_default(),
    }
}

impl Source {
    /// Reads the image in directory `root`: an OCI layout if it has `index.json`, else a
    /// `docker save` directory if it has `manifest.json`.
    pub fn open(root: &Path) -> Result<Source, ImageError> {
        if root.join("index.json").is_file() {
            Self::oci(root)
        } else if root.join("manifest.json").is_file() {
            Self::docker(root)
        } else {
            Err(ImageError::Invalid(format!(
                "{} is neither an OCI image layout (no index.json) nor a docker-save image (no manifest.json)",
                root.display()
            )))
        }
    }

    fn oci(root: &Path) -> Result<Source, ImageError> {
        let index: Index = read_json(&root.join("index.json"), "image index")?;
        let mut desc = pick(index.manifests, "index.json")?;
        let mut name = image_name(&desc.annotations);
        // An index of platform manifests: take this host's.
        for _ in 0..4 {
            if !INDEX_TYPES.contains(&desc.media_type.as_str()) {
                break;
            }
            let inner: Index = read_json(&blob(root, &desc.digest)?, "image index")?;
            desc = pick(inner.manifests, &desc.digest)?;
            name = name.or_else(|| image_name(&desc.annotations));
        }
        let manifest: Manifest = read_json(&blob(root, &desc.digest)?, "image manifest")?;
        let cfg: ConfigBlob = read_json(&blob(root, &manifest.config.digest)?, "image config")?;
        let layers = manifest
            .layers
            .iter()
            .map(|l| Ok(LayerBlob { digest: Some(l.digest.clone()), file: blob(root, &l.digest)? }))
            .collect::<Result<Vec<_>, ImageError>>()?;
        Ok(Source { name, layers, config: config_of(cfg.config), id: manifest.config.digest })
    }

    fn docker(root: &Path) -> Result<Source, ImageError> {
        let entries: Vec<DockerEntry> = read_json(&root.join("manifest.json"), "docker manifest")?;
        let [e] = <[DockerEntry; 1]>::try_from(entries).map_err(|v| {
            ImageError::Invalid(format!("manifest.json lists {} images; import archives of exactly one", v.len()))
        })?;
        let cfg: ConfigBlob = read_json(&inside(root, &e.config)?, "image config")?;
        let layers = e.layers.iter().map(|l| Ok(LayerBlob { digest: None, file: inside(root, l)? })).collect::<Result<Vec<_>, ImageError>>()?;
        let id = e.config.trim_start_matches("blobs/").replacen('/', ":", 1).trim_end_matches(".json").to_string();
        Ok(Source { name: e.repo_tags.and_then(|t| t.into_iter().next()), layers, config: config_of(cfg.config), id })
    }
}

fn image_name(a: &BTreeMap<String, String>) -> Option<String> {
    a.get("io.containerd.image.name").or_else(|| a.get("org.opencontainers.image.ref.name")).cloned()
}

/// The one manifest of an index, or this host's platform among several.
fn pick(mut manifests: Vec<Descriptor>, what: &str) -> Result<Descriptor, ImageError> {
    if manifests.len() > 1 {
        let arch = host_arch();
        manifests.retain(|d| d.platform.as_ref().is_none_or(|p| p.os == "linux" && p.architecture == arch));
    }
    match manifests.len() {
        0 => Err(ImageError::Invalid(format!("{what} lists no manifest for linux/{}", host_arch()))),
        1 => Ok(manifests.remove(0)),
        n => Err(ImageError::Invalid(format!("{what} lists {n} images; import layouts of exactly one"))),
    }
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}
