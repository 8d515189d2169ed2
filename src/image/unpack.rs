//! Unpacking one layer blob (a tar, gzip-compressed or not) into a directory, hashing the
//! blob as it is read so a corrupt or substituted layer is refused.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::ImageError;

/// Reads through, hashing every byte.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// Checks that blob `file` hashes to `digest` (a layer already in the store is not unpacked
/// again, but a corrupt archive is still refused).
pub fn verify(file: &Path, digest: &str) -> Result<(), ImageError> {
    let f = File::open(file).map_err(|e| ImageError::io(file, e))?;
    let mut h = Hashing { inner: f, hash: Sha256::new() };
    io::copy(&mut h, &mut io::sink()).map_err(|e| ImageError::io(file, e))?;
    let actual = format!("sha256:{:x}", h.hash.finalize());
    if actual != digest {
        return Err(ImageError::Digest { digest: digest.to_string(), actual });
    }
    Ok(())
}

/// Unpacks layer `file` into the empty directory `dst`, checking its `sha256:` digest when
/// given. Entries keep their mode, owner and times; OCI whiteouts stay as the files they are.
/// Returns the blob's digest.
pub fn unpack(file: &Path, digest: Option<&str>, dst: &Path) -> Result<String, ImageError> {
    let what = digest.map_or_else(|| file.display().to_string(), str::to_string);
    if let Some(d) = digest {
        if !d.starts_with("sha256:") {
            return Err(ImageError::Invalid(format!("layer {d}: only sha256 digests are supported")));
        }
    }
    let f = File::open(file).map_err(|e| ImageError::io(file, e))?;
    let mut hashing = BufReader::with_capacity(1 << 20, Hashing { inner: f, hash: Sha256::new() });
    let magic = hashing.fill_buf().map_err(|e| ImageError::io(file, e))?;
    let tar: Box<dyn Read + '_> = match magic {
        [0x1f, 0x8b, ..] => Box::new(flate2::bufread::GzDecoder::new(&mut hashing)),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => return Err(ImageError::Invalid(format!("layer {what} is zstd-compressed; only tar and tar+gzip layers are supported"))),
        _ => Box::new(&mut hashing),
    };
    let mut archive = tar::Archive::new(tar);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    let bad = |e: io::Error| ImageError::Invalid(format!("layer {what}: {e}"));
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let name = entry.path().map_err(bad)?.display().to_string();
        // `unpack_in` refuses entries that would land outside `dst` (`..`, absolute paths,
        // through a symbolic link of the layer) by returning false.
        if !entry.unpack_in(dst).map_err(|e| ImageError::Invalid(format!("layer {what}: cannot unpack {name}: {e}")))? {
            return Err(ImageError::Invalid(format!("layer {what}: entry {name:?} points outside the layer")));
        }
    }
    drop(archive);
    // The tar ends before the blob may: hash the rest (padding) too.
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| ImageError::io(file, e))?;
    let actual = format!("sha256:{:x}", hashing.into_inner().hash.finalize());
    if let Some(d) = digest {
        if d != actual {
            return Err(ImageError::Digest { digest: d.to_string(), actual });
        }
    }
    Ok(actual)
}
