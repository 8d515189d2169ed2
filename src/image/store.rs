//! The image store: layer directories shared by digest, and the image records.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::info;

use super::layout::{Dir, ImageConfig, LayerBlob, Source};
use crate::backend::cephfs::{CephBranch, CephClient, CephOptions};
use crate::libservice::copy::{copy_tree, mkdir_all, remove_tree};
use crate::libservice::{Context, FileSystem, Inode, RENAME_NOREPLACE};
use super::unpack::Blob;
use super::{unpack, ImageError};
use crate::service::records::write_atomic;

/// Where an image's layers live in a CephFS: under `dir/layers/`, shared by every host and
/// pool that imports the image there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CephStore {
    pub conf: PathBuf,
    pub id: String,
    #[serde(default)]
    pub fs: Option<String>,
    /// Absolute directory inside the CephFS.
    pub dir: PathBuf,
}

impl CephStore {
    fn options(&self) -> CephOptions {
        CephOptions { conf: self.conf.clone(), id: self.id.clone(), fs: self.fs.clone(), settings: Vec::new() }
    }
}

/// One imported image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub name: String,
    /// Digest of the image config.
    pub id: String,
    /// Layer digests, bottom first.
    pub layers: Vec<String>,
    pub config: ImageConfig,
    /// Unix time of the import.
    pub imported: u64,
    /// Its layers are in a CephFS (else in this store's `layers/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceph: Option<CephStore>,
}

#[derive(Default, Serialize, Deserialize)]
struct Records {
    images: Vec<ImageRecord>,
}

/// The images under one data directory.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

/// Held while the store changes (import, remove); released on drop.
struct Lock(#[allow(dead_code)] File);

/// A directory removed on drop unless kept.
struct Scratch(Option<PathBuf>);

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// The most layers an image may have: each is a branch every lookup of its clones may walk
/// (Docker stops at 127, overlayfs at 500).
pub const MAX_LAYERS: usize = 128;

/// What an import leaves free on the store's filesystem at least, checked before and after
/// each layer it unpacks (one layer may still take up to its own unpacked limit past it):
/// the larger of this and a twentieth of the filesystem. The disk holding the
/// store holds every tenant's writable branches too; a hostile image (one small layer listed
/// a thousand times, each unpacking to its limit) must not fill it.
pub const IMPORT_RESERVE: u64 = 1 << 30;

/// Fails when the filesystem holding `dir` has less than the import reserve free (or cannot
/// tell).
fn check_room(dir: &Path) -> Result<(), ImageError> {
    let st = rustix::fs::statvfs(dir).map_err(|e| ImageError::Invalid(format!("cannot tell the free space of the image store ({}): {e}", dir.display())))?;
    let (free, total) = (st.f_bavail.saturating_mul(st.f_frsize), st.f_blocks.saturating_mul(st.f_frsize));
    let reserve = IMPORT_RESERVE.max(total / 20);
    if free < reserve {
        return Err(ImageError::Invalid(format!("the image store's filesystem ({}) has {} MiB free, under the {} MiB an import leaves: import stopped", dir.display(), free >> 20, reserve >> 20)));
    }
    Ok(())
}

fn layer_name(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

impl Store {
    pub fn new(data_dir: &Path) -> Self {
        Store { dir: data_dir.join("images") }
    }

    fn io<T>(&self, path: &Path, r: std::io::Result<T>) -> Result<T, ImageError> {
        r.map_err(|e| ImageError::io(path, e))
    }

    fn lock(&self) -> Result<Lock, ImageError> {
        // Layers keep the images' set-id files: out of other host users' reach.
        if let Some(data_dir) = self.dir.parent() {
            self.io(data_dir, crate::pool::state::private_dir(data_dir, 0o700))?;
        }
        let layers = self.dir.join("layers");
        self.io(&layers, std::fs::create_dir_all(&layers))?;
        let path = self.dir.join(".lock");
        let f = self.io(&path, File::create(&path))?;
        self.io(&path, rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).map_err(Into::into))?;
        Ok(Lock(f))
    }

    fn load(&self) -> Result<Records, ImageError> {
        let path = self.dir.join("images.json");
        match std::fs::read(&path) {
            Ok(t) => serde_json::from_slice(&t).map_err(|e| ImageError::Invalid(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Records::default()),
            Err(e) => Err(ImageError::io(&path, e)),
        }
    }

    fn save(&self, r: &Records) -> Result<(), ImageError> {
        let path = self.dir.join("images.json");
        let text = serde_json::to_vec_pretty(r).map_err(|e| ImageError::Invalid(e.to_string()))?;
        self.io(&path, write_atomic(&path, &text))
    }

    /// Every image, by name.
    pub fn list(&self) -> Result<Vec<ImageRecord>, ImageError> {
        let mut v = self.load()?.images;
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    pub fn get(&self, name: &str) -> Result<ImageRecord, ImageError> {
        self.load()?.images.into_iter().find(|i| i.name == name).ok_or_else(|| ImageError::NotFound(name.to_string()))
    }

    /// The directory of layer `digest`.
    pub fn layer_dir(&self, digest: &str) -> PathBuf {
        self.dir.join("layers").join(layer_name(digest))
    }

    /// The read-only branches of `image`, topmost first (as a union's lower branches): host
    /// directories, or CephFS paths for an image stored in CephFS.
    pub fn lowers(&self, image: &ImageRecord) -> Vec<PathBuf> {
        match &image.ceph {
            Some(c) => image.layers.iter().rev().map(|d| c.dir.join("layers").join(layer_name(d))).collect(),
            None => image.layers.iter().rev().map(|d| self.layer_dir(d)).collect(),
        }
    }

    /// Imports the image at `path` (an OCI layout directory, or an OCI or `docker save` tar
    /// archive, gzip-compressed or not) as `name` (default: the name the image carries).
    /// Layers already in the store are not unpacked again. Every new layer is unpacked into
    /// a scratch directory first and moved into the store only once all are: on failure the
    /// store is as before.
    pub fn import(&self, path: &Path, name: Option<&str>, ceph: Option<&CephStore>) -> Result<ImageRecord, ImageError> {
        let _lock = self.lock()?;
        let meta = self.io(path, std::fs::metadata(path))?;
        let mut scratch = Scratch(None);
        let dir = if meta.is_dir() {
            Dir::open(path, path, Default::default())?
        } else {
            let tmp = self.dir.join(format!(".import-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&tmp);
            self.io(&tmp, std::fs::create_dir_all(&tmp))?;
            scratch.0 = Some(tmp.clone());
            let file = self.io(path, File::open(path))?;
            let blob = Blob { file, name: path.display().to_string(), digest: None, size: meta.len() };
            let left_out = unpack::unpack_archive(blob, &tmp).map_err(|e| match e {
                ImageError::Invalid(m) => ImageError::Invalid(format!("{}: not a readable image archive: {m}", path.display())),
                e => e,
            })?;
            Dir::open(&tmp, path, left_out)?
        };
        let src = Source::open(dir)?;
        let name = name.map(str::to_string).or(src.name.clone()).ok_or_else(|| {
            ImageError::Invalid(format!("{} carries no image name; give one with --name", path.display()))
        })?;
        check_name(&name)?;
        let mut records = self.load()?;
        if records.images.iter().any(|i| i.name == name) {
            return Err(ImageError::Exists(name));
        }
        if src.layers.is_empty() {
            return Err(ImageError::Invalid(format!("{} has no layers", path.display())));
        }
        if src.layers.len() > MAX_LAYERS {
            return Err(ImageError::Invalid(format!("{} has {} layers; at most {MAX_LAYERS} are supported", path.display(), src.layers.len())));
        }
        let cephfs = match ceph {
            Some(c) => Some(CephLayers::open(c)?),
            None => None,
        };
        let mut layers: Vec<String> = Vec::new();
        let mut staged: Vec<(Scratch, String, usize)> = Vec::new();
        // Layers already unpacked by this import, by digest or (a docker archive names no
        // digests) by file: a blob listed again is not unpacked again.
        let mut done: std::collections::HashMap<String, String> = std::collections::HashMap::new();
        for (i, l) in src.layers.iter().enumerate() {
            let key = l.digest.clone().unwrap_or_else(|| l.file.display().to_string());
            if let Some(d) = done.get(&key) {
                layers.push(d.clone());
                continue;
            }
            let blob = open_blob(&src, l)?;
            if let Some(d) = &l.digest {
                let present = match &cephfs {
                    Some(cl) => cl.has(&layer_name(d))?,
                    None => self.layer_dir(d).is_dir(),
                };
                if present {
                    unpack::verify(blob)?;
                    info!("layer {d} is already in {}", if cephfs.is_some() { "CephFS" } else { "the store" });
                    done.insert(key, d.clone());
                    layers.push(d.clone());
                    continue;
                }
            }
            check_room(&self.dir)?;
            let tmp = self.dir.join("layers").join(format!(".unpack-{}-{i}", std::process::id()));
            let _ = std::fs::remove_dir_all(&tmp);
            self.io(&tmp, std::fs::create_dir(&tmp))?;
            let guard = Scratch(Some(tmp.clone()));
            let digest = unpack::unpack(blob, &tmp)?;
            done.insert(key, digest.clone());
            // The same layer under another file name: its copy goes at once.
            if !staged.iter().any(|(_, d, _)| *d == digest) {
                staged.push((guard, digest.clone(), i));
            }
            layers.push(digest);
            check_room(&self.dir)?;
        }
        self.publish(cephfs.as_ref(), staged)?;
        let rec = ImageRecord { name, id: src.id, layers, config: src.config, imported: crate::pool::state::now(), ceph: ceph.cloned() };
        records.images.push(rec.clone());
        self.save(&records)?;
        Ok(rec)
    }

    /// Moves the layers unpacked in scratch directories into the store (or CephFS). A layer
    /// already there meanwhile is kept; on failure the layers moved in are removed again.
    fn publish(&self, cephfs: Option<&CephLayers>, staged: Vec<(Scratch, String, usize)>) -> Result<(), ImageError> {
        let mut moved: Vec<PathBuf> = Vec::new();
        for (tmp, digest, i) in staged {
            let Some(local) = tmp.0.as_deref() else { continue };
            let r = match cephfs {
                Some(cl) => cl.publish(local, &layer_name(&digest), i),
                None => {
                    let dst = self.layer_dir(&digest);
                    if dst.is_dir() {
                        Ok(())
                    } else {
                        let r = self.io(&dst, std::fs::rename(local, &dst));
                        if r.is_ok() {
                            moved.push(dst);
                        }
                        r
                    }
                }
            };
            if let Err(e) = r {
                for m in &moved {
                    let _ = std::fs::remove_dir_all(m);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Removes image `name`, and the layers no other image uses.
    pub fn remove(&self, name: &str) -> Result<ImageRecord, ImageError> {
        let _lock = self.lock()?;
        let mut records = self.load()?;
        let pos = records.images.iter().position(|i| i.name == name).ok_or_else(|| ImageError::NotFound(name.to_string()))?;
        let gone = records.images.remove(pos);
        self.save(&records)?;
        // Layers in CephFS stay: other hosts may use them.
        for d in gone.layers.iter().filter(|_| gone.ceph.is_none()) {
            if !records.images.iter().any(|i| i.ceph.is_none() && i.layers.contains(d)) {
                let dir = self.layer_dir(d);
                self.io(&dir, std::fs::remove_dir_all(&dir))?;
            }
        }
        Ok(gone)
    }
}

/// The `layers/` directory of a CephFS image store.
struct CephLayers {
    branch: CephBranch,
    layers: Inode,
    dir: PathBuf,
}

impl CephLayers {
    fn open(c: &CephStore) -> Result<CephLayers, ImageError> {
        let invalid = |e: String| ImageError::Invalid(e);
        let client = CephClient::connect(&c.options()).map_err(|e| invalid(format!("cannot connect to CephFS: {e}")))?;
        let branch = CephBranch::new(std::sync::Arc::new(client), Path::new("/"), false, None).map_err(|e| invalid(format!("CephFS root: {e}")))?;
        let dir = c.dir.join("layers");
        let layers = mkdir_all(&branch, &Context::current(), &dir).map_err(|e| invalid(format!("cannot create {} in CephFS: {e}", dir.display())))?;
        Ok(CephLayers { branch, layers, dir })
    }

    fn has(&self, name: &str) -> Result<bool, ImageError> {
        match self.branch.lookup(&Context::current(), self.layers, name.as_ref()) {
            Ok(e) => {
                self.branch.forget(e.inode, 1);
                Ok(true)
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(ImageError::io(&self.dir.join(name), e)),
        }
    }

    /// Copies unpacked layer `local` in as `name`, under a temporary name first, so that a
    /// layer is either whole or absent (a host importing the same layer meanwhile wins).
    fn publish(&self, local: &Path, name: &str, i: usize) -> Result<(), ImageError> {
        let ctx = Context::current();
        let tmp = format!(".import-{}-{i}", std::process::id());
        let io = |e: std::io::Error| ImageError::io(&self.dir.join(name), e);
        let d = self.branch.mkdir(&ctx, self.layers, tmp.as_ref(), 0o755, 0).map_err(io)?;
        let copied = copy_tree(&self.branch, &ctx, d.inode, local);
        self.branch.forget(d.inode, 1);
        let moved = copied.and_then(|_| self.branch.rename(&ctx, self.layers, tmp.as_ref(), self.layers, name.as_ref(), RENAME_NOREPLACE));
        match moved {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = remove_tree(&self.branch, &ctx, self.layers, tmp.as_ref());
                if e.raw_os_error() == Some(libc::EEXIST) {
                    Ok(())
                } else {
                    Err(io(e))
                }
            }
        }
    }
}

impl Drop for CephLayers {
    fn drop(&mut self) {
        self.branch.forget(self.layers, 1);
    }
}

/// Opens layer `l` of `src`, refusing one whose file is not the size its descriptor declares.
fn open_blob(src: &Source, l: &LayerBlob) -> Result<Blob, ImageError> {
    let (file, actual) = src.dir.open_file(&l.file)?;
    let name = l.digest.clone().unwrap_or_else(|| l.file.display().to_string());
    if let Some(size) = l.size.filter(|&s| s != actual) {
        return Err(ImageError::Invalid(format!("layer {name}: {} is {actual} bytes, its manifest declares {size}", l.file.display())));
    }
    Ok(Blob { file, name, digest: l.digest.clone(), size: l.size.unwrap_or(actual) })
}

/// Image names: a reference such as `registry/name:tag`, without control or path-escaping
/// characters.
fn check_name(name: &str) -> Result<(), ImageError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-:/@".contains(&b))
        && !name.split('/').any(|c| c.is_empty() || c == "." || c == "..");
    if ok {
        Ok(())
    } else {
        Err(ImageError::Invalid(format!("image name {name:?}: use letters, digits and . _ - : / @")))
    }
}
