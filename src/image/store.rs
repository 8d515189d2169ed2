//! The image store: layer directories shared by digest, and the image records.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::info;

use super::layout::{ImageConfig, Source};
use super::{unpack, ImageError};
use crate::service::records::write_atomic;

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

    /// The read-only branches of `image`, topmost first (as a union's lower branches).
    pub fn lowers(&self, image: &ImageRecord) -> Vec<PathBuf> {
        image.layers.iter().rev().map(|d| self.layer_dir(d)).collect()
    }

    /// Imports the image at `path` (an OCI layout directory, or an OCI or `docker save` tar
    /// archive, gzip-compressed or not) as `name` (default: the name the image carries).
    /// Layers already in the store are not unpacked again. On failure the store is as before.
    pub fn import(&self, path: &Path, name: Option<&str>) -> Result<ImageRecord, ImageError> {
        let _lock = self.lock()?;
        let meta = self.io(path, std::fs::metadata(path))?;
        let mut scratch = Scratch(None);
        let root = if meta.is_dir() {
            path.to_path_buf()
        } else {
            let tmp = self.dir.join(format!(".import-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&tmp);
            self.io(&tmp, std::fs::create_dir_all(&tmp))?;
            scratch.0 = Some(tmp.clone());
            unpack::unpack(path, None, &tmp).map_err(|e| match e {
                ImageError::Invalid(m) => ImageError::Invalid(format!("{}: not a readable image archive: {m}", path.display())),
                e => e,
            })?;
            tmp
        };
        let src = Source::open(&root)?;
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
        let mut layers = Vec::new();
        for (i, l) in src.layers.iter().enumerate() {
            if let Some(d) = &l.digest {
                if self.layer_dir(d).is_dir() {
                    unpack::verify(&l.file, d)?;
                    info!("layer {d} is already in the store");
                    layers.push(d.clone());
                    continue;
                }
            }
            let tmp = self.dir.join("layers").join(format!(".unpack-{}-{i}", std::process::id()));
            let _ = std::fs::remove_dir_all(&tmp);
            self.io(&tmp, std::fs::create_dir(&tmp))?;
            let guard = Scratch(Some(tmp.clone()));
            let digest = unpack::unpack(&l.file, l.digest.as_deref(), &tmp)?;
            let dst = self.layer_dir(&digest);
            if !dst.is_dir() {
                self.io(&dst, std::fs::rename(&tmp, &dst))?;
            }
            drop(guard);
            layers.push(digest);
        }
        let rec = ImageRecord { name, id: src.id, layers, config: src.config, imported: crate::pool::state::now() };
        records.images.push(rec.clone());
        self.save(&records)?;
        Ok(rec)
    }

    /// Removes image `name`, and the layers no other image uses.
    pub fn remove(&self, name: &str) -> Result<ImageRecord, ImageError> {
        let _lock = self.lock()?;
        let mut records = self.load()?;
        let pos = records.images.iter().position(|i| i.name == name).ok_or_else(|| ImageError::NotFound(name.to_string()))?;
        let gone = records.images.remove(pos);
        self.save(&records)?;
        for d in &gone.layers {
            if !records.images.iter().any(|i| i.layers.contains(d)) {
                let dir = self.layer_dir(d);
                self.io(&dir, std::fs::remove_dir_all(&dir))?;
            }
        }
        Ok(gone)
    }
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
