//! Unpacking one layer blob (a tar, gzip-compressed or not) into a directory, hashing the
//! blob as it is read so a corrupt or substituted layer is refused, and bounding what it may
//! unpack to: the blob may not be longer than declared, its unpacked stream and its entries
//! not larger than [`unpacked_limit`], and no tar extension entry the reader keeps in memory
//! larger than [`MAX_TAR_EXTENSION`]. Nothing is read whole into memory.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use super::ImageError;

/// How many times its compressed size a layer may unpack to. gzip's own ceiling is about
/// 1032:1 (what a bomb of zeros reaches); real layers compress 2 to 10 times, text-heavy or
/// zero-filled ones rarely past 30. 64 leaves real layers room and stops bombs well short
/// of their ratio.
pub const MAX_EXPANSION: u64 = 64;
/// What any layer may unpack to whatever its compressed size: a small layer holding one
/// large zero-filled or sparse file (a preallocated database) still imports.
pub const UNPACKED_FLOOR: u64 = 1 << 30;
/// What no layer may unpack to, however large: bounds the disk one import can fill.
pub const UNPACKED_CAP: u64 = 64 << 30;
/// The largest tar extension entry (GNU long name or link, PAX header) accepted: the tar
/// reader holds each whole in memory; real ones are a path or a few records long.
pub const MAX_TAR_EXTENSION: u64 = 1 << 20;

const BLOCK: usize = 512;

/// The most a blob of `packed` bytes may unpack to (its stream, and its entries' sizes).
pub fn unpacked_limit(packed: u64) -> u64 {
    packed.saturating_mul(MAX_EXPANSION).clamp(UNPACKED_FLOOR, UNPACKED_CAP)
}

/// A blob to unpack: an open file, what to call it in errors, its `sha256:` digest when
/// known, and its size (declared by its descriptor, or the file's own).
#[derive(Debug)]
pub struct Blob {
    pub file: File,
    pub name: String,
    pub digest: Option<String>,
    pub size: u64,
}

/// Reads through, hashing every byte, refusing to read past `size` bytes.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
    read: u64,
    size: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.size {
            return Err(io::Error::other(format!("the blob is larger than the {} bytes declared", self.size)));
        }
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

impl<R> Hashing<R> {
    fn new(inner: R, size: u64) -> Self {
        Hashing { inner, hash: Sha256::new(), read: 0, size }
    }

    /// The blob's digest once read to its end, refusing one shorter than declared.
    fn finish(self, name: &str) -> Result<String, ImageError> {
        if self.read != self.size {
            return Err(ImageError::Invalid(format!("{name}: the blob is {} bytes, {} declared", self.read, self.size)));
        }
        Ok(format!("sha256:{:x}", self.hash.finalize()))
    }

    fn over(&self) -> bool {
        self.read > self.size
    }
}

fn check_digest(digest: Option<&str>, actual: String) -> Result<String, ImageError> {
    match digest {
        Some(d) if d != actual => Err(ImageError::Digest { digest: d.to_string(), actual }),
        _ => Ok(actual),
    }
}

/// Checks that `blob` has its size and hashes to its digest (a layer already in the store
/// is not unpacked again, but a corrupt archive is still refused).
pub fn verify(blob: Blob) -> Result<(), ImageError> {
    let mut h = Hashing::new(blob.file, blob.size);
    if let Err(e) = io::copy(&mut h, &mut io::sink()) {
        return Err(ImageError::Invalid(format!("{}: {e}", blob.name)));
    }
    check_digest(blob.digest.as_deref(), h.finish(&blob.name)?).map(drop)
}

/// What to do with the entries of a tar.
enum Entries<'a> {
    /// A layer: every entry, with its mode, owner and times.
    Layer,
    /// An image archive: regular files and directories only; the others are not created but
    /// named in the map with their kind.
    Archive(&'a mut BTreeMap<PathBuf, &'static str>),
}

/// Unpacks layer `blob` into the empty directory `dst`, checking its `sha256:` digest when
/// given. Entries keep their mode, owner and times; OCI whiteouts stay as the files they are.
/// Returns the blob's digest.
pub fn unpack(blob: Blob, dst: &Path) -> Result<String, ImageError> {
    if let Some(d) = &blob.digest {
        if !d.starts_with("sha256:") {
            return Err(ImageError::Invalid(format!("layer {d}: only sha256 digests are supported")));
        }
    }
    read_tar(blob, dst, Entries::Layer)
}

/// Unpacks image archive `blob` (an OCI or docker-save tar, gzip-compressed or not) into
/// `dst`: its regular files and directories only. Returns the entries left out (symbolic and
/// hard links, devices, FIFOs) with their kind.
pub fn unpack_archive(blob: Blob, dst: &Path) -> Result<BTreeMap<PathBuf, &'static str>, ImageError> {
    let mut left_out = BTreeMap::new();
    read_tar(blob, dst, Entries::Archive(&mut left_out))?;
    Ok(left_out)
}

fn read_tar(blob: Blob, dst: &Path, mode: Entries<'_>) -> Result<String, ImageError> {
    let name = blob.digest.clone().unwrap_or_else(|| blob.name.clone());
    let what = format!("layer {name}");
    let what = if matches!(mode, Entries::Layer) { what.as_str() } else { name.as_str() };
    let limit = unpacked_limit(blob.size);
    let mut packed = BufReader::with_capacity(1 << 20, Hashing::new(blob.file, blob.size));
    let magic = packed.fill_buf().map_err(|e| ImageError::Invalid(format!("{what}: {e}")))?;
    let gzip = match magic {
        [0x1f, 0x8b, ..] => true,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => return Err(ImageError::Invalid(format!("{what} is zstd-compressed; only tar and tar+gzip layers are supported"))),
        _ => false,
    };
    let extracted = {
        let stream: Box<dyn Read + '_> = if gzip { Box::new(flate2::bufread::GzDecoder::new(&mut packed)) } else { Box::new(&mut packed) };
        let mut guard = TarGuard::new(stream, limit);
        let r = extract(&mut guard, dst, limit, what, mode);
        r.map_err(|e| guard.refusal.take().map_or(e, |why| ImageError::Invalid(format!("{what}: {why}"))))
    };
    if packed.get_ref().over() {
        return Err(ImageError::Invalid(format!("{what}: the blob is larger than the {} bytes declared", blob.size)));
    }
    extracted?;
    // The tar ends before the blob may: hash the rest (padding) too.
    io::copy(&mut packed, &mut io::sink()).map_err(|e| ImageError::Invalid(format!("{what}: {e}")))?;
    let actual = packed.into_inner().finish(what)?;
    check_digest(blob.digest.as_deref(), actual)
}

/// Unpacks the entries of the tar `stream` into `dst`, their sizes adding up to at most
/// `limit` bytes (a sparse entry counts as what it expands to).
fn extract(stream: &mut dyn Read, dst: &Path, limit: u64, what: &str, mut mode: Entries<'_>) -> Result<(), ImageError> {
    let mut archive = tar::Archive::new(stream);
    let layer = matches!(mode, Entries::Layer);
    archive.set_preserve_permissions(layer);
    archive.set_preserve_ownerships(layer);
    archive.set_preserve_mtime(layer);
    archive.set_overwrite(true);
    let bad = |e: io::Error| ImageError::Invalid(format!("{what}: {e}"));
    let mut total: u64 = 0;
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.into_owned();
        let name = path.display().to_string();
        total = total.saturating_add(entry.size());
        if total > limit {
            return Err(ImageError::Invalid(format!("{what}: entry {name:?} takes its files past {limit} bytes, the most it may unpack to")));
        }
        if let Entries::Archive(left_out) = &mut mode {
            if let Some(kind) = left_out_kind(entry.header().entry_type()) {
                left_out.insert(path.components().filter(|c| matches!(c, Component::Normal(_))).collect(), kind);
                continue;
            }
        }
        // `unpack_in` refuses entries that would land outside `dst` (`..`, absolute paths,
        // through a symbolic link of the layer) by returning false.
        if !entry.unpack_in(dst).map_err(|e| ImageError::Invalid(format!("{what}: cannot unpack {name}: {}", chain(&e))))? {
            return Err(ImageError::Invalid(format!("{what}: entry {name:?} points outside the layer")));
        }
    }
    Ok(())
}

/// An error and its sources (the `tar` crate's errors say what failed in their source).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(&format!(": {c}"));
        cur = c.source();
    }
    s
}

/// The kind of an archive entry that is not unpacked from an image archive, if it is not.
fn left_out_kind(kind: tar::EntryType) -> Option<&'static str> {
    use tar::EntryType as T;
    match kind {
        T::Regular | T::Continuous | T::GNUSparse | T::Directory | T::XGlobalHeader => None,
        T::Symlink => Some("symbolic link"),
        T::Link => Some("hard link"),
        T::Char => Some("character device"),
        T::Block => Some("block device"),
        T::Fifo => Some("FIFO"),
        _ => Some("special entry"),
    }
}

/// Follows the tar headers of an unpacked stream as it passes to the tar reader, so that a
/// stream longer than `limit`, entries declaring more than `limit` bytes in all, or an
/// extension entry (which the reader holds in memory whole) larger than
/// [`MAX_TAR_EXTENSION`] are refused before the reader reads them. Mirrors how the `tar`
/// crate finds the next header: the entry's size (or its PAX `size`), rounded up to a
/// block, and GNU sparse extension blocks.
struct TarGuard<R> {
    inner: R,
    limit: u64,
    passed: u64,
    declared: u64,
    block: [u8; BLOCK],
    filled: usize,
    /// Bytes of the current entry (data and padding) before the next header.
    skip: u64,
    /// The next block is a GNU sparse extension block; then `after_ext` bytes of data.
    sparse_ext: bool,
    after_ext: u64,
    /// The records of a PAX header being read, and how many of its bytes are still to come.
    pax: Option<Vec<u8>>,
    pax_left: u64,
    /// The size a PAX header gave the next entry.
    pax_size: Option<u64>,
    /// Why the stream was refused.
    refusal: Option<String>,
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(why) = &self.refusal {
            return Err(io::Error::other(why.clone()));
        }
        let n = self.inner.read(buf)?;
        self.passed += n as u64;
        if self.passed > self.limit {
            return Err(self.refuse(format!("it unpacks to more than {} bytes, the most it may", self.limit)));
        }
        self.observe(&buf[..n])?;
        Ok(n)
    }
}

fn blocks(size: u64) -> u64 {
    size.saturating_add(BLOCK as u64 - 1) & !(BLOCK as u64 - 1)
}

impl<R> TarGuard<R> {
    fn new(inner: R, limit: u64) -> Self {
        TarGuard {
            inner,
            limit,
            passed: 0,
            declared: 0,
            block: [0; BLOCK],
            filled: 0,
            skip: 0,
            sparse_ext: false,
            after_ext: 0,
            pax: None,
            pax_left: 0,
            pax_size: None,
            refusal: None,
        }
    }

    fn refuse(&mut self, why: String) -> io::Error {
        let e = io::Error::other(why.clone());
        self.refusal = Some(why);
        e
    }

    fn observe(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            if self.skip > 0 {
                let k = data.len().min(usize::try_from(self.skip).unwrap_or(usize::MAX));
                self.keep_pax(&data[..k]);
                self.skip -= k as u64;
                data = &data[k..];
                continue;
            }
            let k = data.len().min(BLOCK - self.filled);
            self.block[self.filled..self.filled + k].copy_from_slice(&data[..k]);
            self.filled += k;
            data = &data[k..];
            if self.filled == BLOCK {
                self.filled = 0;
                self.header()?;
            }
        }
        Ok(())
    }

    /// Keeps the bytes of a PAX header's records; its `size` once they are all read.
    fn keep_pax(&mut self, data: &[u8]) {
        let Some(p) = &mut self.pax else { return };
        let take = data.len().min(usize::try_from(self.pax_left).unwrap_or(usize::MAX));
        p.extend_from_slice(&data[..take]);
        self.pax_left -= take as u64;
        if self.pax_left == 0 {
            self.pax_size = self.pax.take().and_then(|p| pax_size(&p));
        }
    }

    /// A block where a header is due.
    fn header(&mut self) -> io::Result<()> {
        if self.sparse_ext {
            // GnuExtSparseHeader: 21 sparse entries of 24 bytes, then `isextended`.
            self.sparse_ext = self.block[504] == 1;
            if !self.sparse_ext {
                self.skip = self.after_ext;
            }
            return Ok(());
        }
        if self.block.iter().all(|&b| b == 0) {
            return Ok(());
        }
        let block = self.block;
        let h = tar::Header::from_byte_slice(&block);
        let sum: u32 = block.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { u32::from(b' ') } else { u32::from(b) }).sum();
        if h.cksum().ok() != Some(sum) {
            return Err(self.refuse(format!("malformed tar header at byte {}", self.passed)));
        }
        let size = match h.entry_size() {
            Ok(s) => s,
            Err(e) => return Err(self.refuse(e.to_string())),
        };
        let kind = h.entry_type();
        if kind.is_gnu_longname() || kind.is_gnu_longlink() || kind.is_pax_local_extensions() || kind.is_pax_global_extensions() {
            return self.extension(h, size);
        }
        let data = self.pax_size.take().unwrap_or(size);
        self.declared = self.declared.saturating_add(data);
        if self.declared > self.limit {
            let name = String::from_utf8_lossy(&h.path_bytes()).into_owned();
            return Err(self.refuse(format!("entry {name:?} declares {data} bytes, past {} bytes in all, the most it may unpack to", self.limit)));
        }
        if kind.is_gnu_sparse() && h.as_gnu().is_some_and(|g| g.is_extended()) {
            self.sparse_ext = true;
            self.after_ext = blocks(data);
        } else {
            self.skip = blocks(data);
        }
        Ok(())
    }

    /// An extension header of `size` bytes: a GNU long name or link, or PAX records.
    fn extension(&mut self, h: &tar::Header, size: u64) -> io::Result<()> {
        if size > MAX_TAR_EXTENSION {
            return Err(self.refuse(format!("a tar extension entry ({:?}) of {size} bytes, more than the {MAX_TAR_EXTENSION} accepted", h.entry_type())));
        }
        let recognized = h.as_gnu().is_some() || h.as_ustar().is_some();
        if recognized && h.entry_type().is_pax_local_extensions() && size > 0 {
            self.pax = Some(Vec::with_capacity(usize::try_from(size).unwrap_or(0)));
            self.pax_left = size;
        }
        self.skip = blocks(size);
        Ok(())
    }
}

/// The `size` record of PAX records, as the `tar` crate reads it (none past a bad record).
fn pax_size(records: &[u8]) -> Option<u64> {
    for r in tar::PaxExtensions::new(records) {
        let r = r.ok()?;
        if r.key() == Ok("size") {
            return r.value().ok()?.parse().ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn header(path: &str, kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_path(path).expect("path");
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        h
    }

    /// Reads `stream` through a guard of `limit` bytes; the refusal, if any.
    fn guarded(stream: impl Read, limit: u64) -> Option<String> {
        let mut g = TarGuard::new(stream, limit);
        let dst = tempfile::tempdir().expect("tempdir");
        let r = extract(&mut g, dst.path(), limit, "test", Entries::Layer);
        match r {
            Ok(()) => None,
            Err(e) => Some(g.refusal.take().unwrap_or_else(|| e.to_string())),
        }
    }

    #[test]
    fn a_long_name_entry_past_the_bound_is_refused_before_it_is_read() {
        let h = header("././@LongLink", tar::EntryType::GNULongName, 64 << 20);
        // The data is never produced: the header alone is refused.
        let stream = io::Cursor::new(h.as_bytes().to_vec()).chain(io::repeat(b'a'));
        let why = guarded(stream, UNPACKED_FLOOR).expect("refused");
        assert!(why.contains("tar extension entry") && why.contains("67108864"), "{why}");
    }

    #[test]
    fn entries_declaring_more_than_the_limit_are_refused_at_their_header() {
        let h = header("zeros", tar::EntryType::Regular, 10 << 20);
        let stream = io::Cursor::new(h.as_bytes().to_vec()).chain(io::repeat(0));
        let why = guarded(stream, 1 << 20).expect("refused");
        assert!(why.contains("entry \"zeros\" declares 10485760 bytes"), "{why}");
    }

    #[test]
    fn a_stream_past_the_limit_is_refused_as_it_is_read() {
        // Many entries each within the bound, more than it together: the stream count stops
        // it (the header count too; here the stream count is the smaller).
        let mut b = tar::Builder::new(Vec::new());
        for i in 0..8 {
            let data = vec![0u8; 100_000];
            b.append(&header(&format!("f{i}"), tar::EntryType::Regular, data.len() as u64), &data[..]).expect("append");
        }
        let tar = b.into_inner().expect("tar");
        assert_eq!(guarded(io::Cursor::new(tar.clone()), 1 << 20), None, "within the bound");
        let why = guarded(io::Cursor::new(tar), 500_000).expect("refused");
        assert!(why.contains("500000"), "{why}");
    }

    #[test]
    fn pax_sizes_and_long_names_keep_the_guard_in_step() {
        let mut b = tar::Builder::new(Vec::new());
        let long = format!("{}file", "dir/".repeat(60));
        let mut h = header("x", tar::EntryType::Regular, 3);
        b.append_data(&mut h, &long, &b"abc"[..]).expect("long name");
        b.append_pax_extensions([("size", &b"5"[..])]).expect("pax");
        b.append(&header("paxed", tar::EntryType::Regular, 0), &b"hello"[..]).expect("append");
        let mut g = header("x", tar::EntryType::Regular, 2);
        b.append_data(&mut g, format!("{}x", "gnu/".repeat(40)), &b"hi"[..]).expect("gnu long name");
        let tar = b.into_inner().expect("tar");
        assert_eq!(guarded(io::Cursor::new(tar), 1 << 20), None);
    }

    #[test]
    fn a_blob_longer_than_declared_is_refused() {
        let mut f = tempfile::tempfile().expect("tempfile");
        let mut b = tar::Builder::new(Vec::new());
        b.append(&header("a", tar::EntryType::Regular, 4), &b"abcd"[..]).expect("append");
        let tar = b.into_inner().expect("tar");
        f.write_all(&tar).expect("write");
        let dst = tempfile::tempdir().expect("tempdir");
        let open = |f: &File| {
            let mut f = f.try_clone().expect("clone");
            io::Seek::rewind(&mut f).expect("rewind");
            f
        };
        let short = Blob { file: open(&f), name: "l".into(), digest: None, size: tar.len() as u64 - 512 };
        let e = unpack(short, dst.path()).expect_err("longer than declared").to_string();
        assert!(e.contains("larger than the"), "{e}");
        let long = Blob { file: open(&f), name: "l".into(), digest: None, size: tar.len() as u64 + 1 };
        let e = unpack(long, dst.path()).expect_err("shorter than declared").to_string();
        assert!(e.contains("declared"), "{e}");
    }
}
