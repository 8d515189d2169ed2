//! Reading an image from disk: an OCI image layout (`oci-layout`, `index.json`, `blobs/`) or
//! a `docker save` directory (`manifest.json`), as unpacked from its archive. Only the fields
//! an import needs are parsed: the layers in order, and the config a container honours.
//!
//! Every file is opened beneath the directory without following a symbolic link
//! (`openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`) and read only if it is a regular file;
//! JSON documents are read whole only below [`MAX_JSON`], and blobs named by digest must have
//! the size and digest their descriptor declares.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{self as rfs, FileType, Mode, OFlags, ResolveFlags};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ImageError;

/// The largest JSON document (index, manifest, config, docker `manifest.json`) read: real
/// ones are a few KiB (a config with a long history some hundred KiB), and each is read
/// whole into memory.
pub const MAX_JSON: u64 = 4 << 20;

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
    /// Relative to the image directory.
    pub file: PathBuf,
    /// The size its descriptor declares (OCI); docker-save manifests declare none.
    pub size: Option<u64>,
}

/// The directory an image is read from, and the entries of its archive that were not
/// regular files (never created, named here so that a manifest naming one is refused clearly).
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    /// What errors call it: the directory, or the archive it was unpacked from.
    path: PathBuf,
    refused: BTreeMap<PathBuf, &'static str>,
}

impl Dir {
    /// Opens directory `path` (the operator's path: a symbolic link to it is followed),
    /// called `label` in errors.
    pub fn open(path: &Path, label: &Path, refused: BTreeMap<PathBuf, &'static str>) -> Result<Dir, ImageError> {
        let fd = rfs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).map_err(|e| ImageError::io(path, e.into()))?;
        Ok(Dir { fd, path: label.to_path_buf(), refused })
    }

    fn display(&self, rel: &Path) -> String {
        self.path.join(rel).display().to_string()
    }

    /// Whether `rel` names an entry (of any type, not followed).
    fn has(&self, rel: &str) -> bool {
        self.refused.contains_key(Path::new(rel)) || rfs::statat(&self.fd, rel, rfs::AtFlags::SYMLINK_NOFOLLOW).is_ok()
    }

    /// Opens regular file `rel` beneath the directory, following no symbolic link; returns
    /// it and its size. A FIFO is opened without blocking and refused like any non-file.
    pub fn open_file(&self, rel: &Path) -> Result<(File, u64), ImageError> {
        let bad = |why: String| ImageError::Invalid(format!("{}: {why}", self.display(rel)));
        if let Some(kind) = self.refused.get(rel) {
            return Err(bad(format!("is a {kind} in the archive; only regular files are read")));
        }
        let how = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd = rfs::openat2(&self.fd, rel, flags, Mode::empty(), how).map_err(|e| match e {
            rustix::io::Errno::LOOP => bad("is a symbolic link (or lies under one); only regular files are read".into()),
            rustix::io::Errno::XDEV => bad("leaves the image directory".into()),
            e => ImageError::io(&self.path.join(rel), e.into()),
        })?;
        let st = rfs::fstat(&fd).map_err(|e| ImageError::io(&self.path.join(rel), e.into()))?;
        let kind = FileType::from_raw_mode(st.st_mode);
        if kind != FileType::RegularFile {
            return Err(bad(format!("is a {}, not a regular file", kind_name(kind))));
        }
        // Reads block again; a FIFO is refused above.
        rfs::fcntl_setfl(&fd, OFlags::empty()).map_err(|e| ImageError::io(&self.path.join(rel), e.into()))?;
        Ok((File::from(fd), u64::try_from(st.st_size).unwrap_or(0)))
    }

    /// Reads JSON document `rel` (at most [`MAX_JSON`] bytes; `declared` bytes and digest
    /// `digest` when a descriptor names it).
    fn json<T: serde::de::DeserializeOwned>(&self, rel: &Path, what: &str, declared: Option<(&str, Option<u64>)>) -> Result<T, ImageError> {
        let bad = |why: String| ImageError::Invalid(format!("{what} {}: {why}", self.display(rel)));
        let (file, size) = self.open_file(rel).map_err(|e| match e {
            ImageError::Invalid(m) => ImageError::Invalid(format!("{what} {m}")),
            e => e,
        })?;
        if size > MAX_JSON {
            return Err(bad(format!("is {size} bytes, more than the {MAX_JSON} bytes a JSON document may have")));
        }
        let mut text = Vec::new();
        file.take(MAX_JSON + 1).read_to_end(&mut text).map_err(|e| ImageError::io(&self.path.join(rel), e))?;
        if text.len() as u64 > MAX_JSON {
            return Err(bad(format!("grew past the {MAX_JSON} bytes a JSON document may have")));
        }
        if let Some((digest, size)) = declared {
            check_blob(&text, digest, size).map_err(bad)?;
        }
        serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))
    }
}

fn kind_name(kind: FileType) -> &'static str {
    match kind {
        FileType::Directory => "directory",
        FileType::Symlink => "symbolic link",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        _ => "special file",
    }
}

/// A JSON blob has the size (when declared) and `sha256:` digest its descriptor declares.
fn check_blob(text: &[u8], digest: &str, size: Option<u64>) -> Result<(), String> {
    if let Some(size) = size.filter(|&s| s != text.len() as u64) {
        return Err(format!("is {} bytes, its descriptor declares {size}", text.len()));
    }
    let actual = format!("sha256:{:x}", Sha256::digest(text));
    if actual != digest {
        return Err(format!("hashes to {actual}, its descriptor declares {digest}"));
    }
    Ok(())
}

/// An image found in a directory.
#[derive(Debug)]
pub struct Source {
    /// The name the image carries, if any (`org.opencontainers.image.ref.name`,
    /// `io.containerd.image.name`, or docker's `RepoTags`).
    pub name: Option<String>,
    /// Bottom layer first.
    pub layers: Vec<LayerBlob>,
    pub config: ImageConfig,
    /// Digest of the config blob: the image id.
    pub id: String,
    /// Where the blobs are.
    pub dir: Dir,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    /// Required by the OCI image spec; without one, the file's own size is taken (the
    /// digest still binds the content, the bounds still apply).
    #[serde(default)]
    size: Option<u64>,
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

/// `blobs/<alg>/<hex>` of `digest` (relative), refusing anything that is not a plain digest.
fn blob(digest: &str) -> Result<PathBuf, ImageError> {
    let bad = || ImageError::Invalid(format!("bad digest {digest:?}"));
    let (alg, hex) = digest.split_once(':').ok_or_else(bad)?;
    let plain = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !plain(alg) || !plain(hex) {
        return Err(bad());
    }
    Ok(Path::new("blobs").join(alg).join(hex))
}

/// The blob of descriptor `d` and its declared digest and size, refusing a digest other
/// than sha256 (the only one checked).
fn described(d: &Descriptor) -> Result<(PathBuf, (&str, Option<u64>)), ImageError> {
    let size = d.size;
    if !d.digest.starts_with("sha256:") {
        return Err(ImageError::Invalid(format!("blob {}: only sha256 digests are supported", d.digest)));
    }
    Ok((blob(&d.digest)?, (d.digest.as_str(), size)))
}

/// A file named inside the image directory (relative, normalised), refusing names that
/// leave it.
pub fn inside(name: &str) -> Result<PathBuf, ImageError> {
    let p = Path::new(name);
    if p.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(ImageError::Invalid(format!("manifest.json names {name:?}, outside the image")));
    }
    let rel: PathBuf = p.components().filter(|c| matches!(c, Component::Normal(_))).collect();
    if rel.as_os_str().is_empty() {
        return Err(ImageError::Invalid(format!("manifest.json names {name:?}, not a file")));
    }
    Ok(rel)
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
    /// Reads the image in directory `dir`: an OCI layout if it has `index.json`, else a
    /// `docker save` directory if it has `manifest.json`.
    pub fn open(dir: Dir) -> Result<Source, ImageError> {
        if dir.has("index.json") {
            Self::oci(dir)
        } else if dir.has("manifest.json") {
            Self::docker(dir)
        } else {
            Err(ImageError::Invalid(format!(
                "{} is neither an OCI image layout (no index.json) nor a docker-save image (no manifest.json)",
                dir.path.display()
            )))
        }
    }

    fn oci(root: Dir) -> Result<Source, ImageError> {
        let index: Index = root.json(Path::new("index.json"), "image index", None)?;
        let mut desc = pick(index.manifests, "index.json")?;
        let mut name = image_name(&desc.annotations);
        // An index of platform manifests: take this host's.
        for _ in 0..4 {
            if !INDEX_TYPES.contains(&desc.media_type.as_str()) {
                break;
            }
            let (path, declared) = described(&desc)?;
            let inner: Index = root.json(&path, "image index", Some(declared))?;
            desc = pick(inner.manifests, &desc.digest)?;
            name = name.or_else(|| image_name(&desc.annotations));
        }
        let (path, declared) = described(&desc)?;
        let manifest: Manifest = root.json(&path, "image manifest", Some(declared))?;
        let (path, declared) = described(&manifest.config)?;
        let cfg: ConfigBlob = root.json(&path, "image config", Some(declared))?;
        let layers = manifest
            .layers
            .iter()
            .map(|l| {
                let (file, (_, size)) = described(l)?;
                Ok(LayerBlob { digest: Some(l.digest.clone()), file, size })
            })
            .collect::<Result<Vec<_>, ImageError>>()?;
        Ok(Source { name, layers, config: config_of(cfg.config), id: manifest.config.digest, dir: root })
    }

    fn docker(root: Dir) -> Result<Source, ImageError> {
        let entries: Vec<DockerEntry> = root.json(Path::new("manifest.json"), "docker manifest", None)?;
        let [e] = <[DockerEntry; 1]>::try_from(entries).map_err(|v| {
            ImageError::Invalid(format!("manifest.json lists {} images; import archives of exactly one", v.len()))
        })?;
        let cfg: ConfigBlob = root.json(&inside(&e.config)?, "image config", None)?;
        let layers = e.layers.iter().map(|l| Ok(LayerBlob { digest: None, file: inside(l)?, size: None })).collect::<Result<Vec<_>, ImageError>>()?;
        let id = e.config.trim_start_matches("blobs/").replacen('/', ":", 1).trim_end_matches(".json").to_string();
        Ok(Source { name: e.repo_tags.and_then(|t| t.into_iter().next()), layers, config: config_of(cfg.config), id, dir: root })
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
