//! `image import` of hostile layouts and archives: blobs that are symbolic links, FIFOs or
//! hard links, blobs longer than declared, oversized JSON, a gzip bomb. Each is refused with
//! an error naming the file and the problem, and leaves the image store as it was; the bomb
//! is refused with the importing process's peak RSS bounded (measured with wait4).

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::host::{stderr, Host};
use common::image_dir;
use sha2::{Digest, Sha256};

/// What of the image store an import may change: the entries of `images/` (but the lock
/// file and `layers/`, created by any import), of `images/layers/`, and the records.
fn store(host: &Host) -> (Vec<String>, Option<String>) {
    let images = host.data().join("images");
    let names = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default()
    };
    let mut all: Vec<String> = names(&images).into_iter().filter(|n| n != ".lock" && n != "layers").collect();
    all.extend(names(&images.join("layers")).into_iter().map(|n| format!("layers/{n}")));
    all.sort();
    (all, std::fs::read_to_string(images.join("images.json")).ok())
}

/// Imports `path` as `name`, expecting a refusal whose message holds every one of `expect`
/// and the store unchanged.
fn refused(host: &Host, path: &Path, name: &str, expect: &[&str]) {
    let before = store(host);
    let out = host.run(&["image", "import", path.to_str().expect("utf-8"), "--name", name]);
    let err = stderr(&out);
    assert!(!out.status.success(), "importing {} succeeded: {err}", path.display());
    for e in expect {
        assert!(err.contains(e), "error for {name} should say {e:?}: {err}");
    }
    assert_eq!(store(host), before, "a refused import ({name}) changed the store");
}

/// A copy of the test image's OCI layout, to tamper with.
struct Layout {
    dir: PathBuf,
}

impl Layout {
    fn copy(host: &Host, tag: &str) -> Layout {
        let dir = host.scratch.path().join(tag);
        let st = Command::new("cp").arg("-a").arg(image_dir().join("oci")).arg(&dir).status().expect("cp");
        assert!(st.success(), "cp -a of the test layout");
        Layout { dir }
    }

    fn json(&self, rel: &Path) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.dir.join(rel)).expect("read json")).expect("json")
    }

    fn blob(&self, digest: &str) -> PathBuf {
        self.dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
    }

    fn manifest(&self) -> serde_json::Value {
        let index = self.json(Path::new("index.json"));
        self.json(&self.blob(index["manifests"][0]["digest"].as_str().expect("digest")))
    }

    fn config(&self) -> PathBuf {
        self.blob(self.manifest()["config"]["digest"].as_str().expect("digest"))
    }

    /// Layer `i` (0 is the bottom one).
    fn layer(&self, i: usize) -> PathBuf {
        self.blob(self.manifest()["layers"][i]["digest"].as_str().expect("digest"))
    }

    /// Stores `bytes` as a blob; its digest and size.
    fn put(&self, bytes: &[u8]) -> (String, u64) {
        let digest = format!("sha256:{:x}", Sha256::digest(bytes));
        std::fs::write(self.blob(&digest), bytes).expect("write blob");
        (digest, bytes.len() as u64)
    }

    /// Makes `manifest` the image's manifest.
    fn set_manifest(&self, manifest: &serde_json::Value) {
        let (digest, size) = self.put(&serde_json::to_vec(manifest).expect("json"));
        let mut index = self.json(Path::new("index.json"));
        index["manifests"][0]["digest"] = digest.into();
        index["manifests"][0]["size"] = size.into();
        std::fs::write(self.dir.join("index.json"), serde_json::to_vec(&index).expect("json")).expect("write index");
    }

    /// Replaces the top layer by the blob in `file` (moved in under its digest).
    fn set_top_layer(&self, file: &Path) {
        let mut h = Sha256::new();
        let mut f = File::open(file).expect("open");
        let size = std::io::copy(&mut f, &mut h).expect("hash");
        let digest = format!("sha256:{:x}", h.finalize());
        std::fs::rename(file, self.blob(&digest)).expect("move blob");
        let mut m = self.manifest();
        m["layers"][1] = serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": size});
        self.set_manifest(&m);
    }
}

/// A host with the test image imported (the store is not empty when tested unchanged).
fn host_with_image(tag: &str) -> Host {
    let host = Host::new(tag);
    host.ok(&["image", "import", image_dir().join("oci").to_str().expect("utf-8")]);
    host
}

fn replace_with_symlink(path: &Path, target: &Path) {
    std::fs::remove_file(path).expect("rm");
    std::os::unix::fs::symlink(target, path).expect("symlink");
}

#[test]
fn blobs_that_are_links_or_special_files_are_refused() {
    let host = host_with_image("imgln");
    let l = Layout::copy(&host, "hostname");
    replace_with_symlink(&l.config(), Path::new("/etc/hostname"));
    refused(&host, &l.dir, "cfg:hostname", &["image config", &l.config().display().to_string(), "is a symbolic link"]);

    let l = Layout::copy(&host, "zero");
    replace_with_symlink(&l.config(), Path::new("/dev/zero"));
    refused(&host, &l.dir, "cfg:zero", &["is a symbolic link"]);

    // The right bytes through a link are refused too: the layout's own files only.
    let l = Layout::copy(&host, "layerlink");
    let layer = l.layer(1);
    let good = image_dir().join("oci/blobs/sha256").join(layer.file_name().expect("name"));
    replace_with_symlink(&layer, &good);
    refused(&host, &l.dir, "layer:link", &[&layer.display().to_string(), "is a symbolic link"]);

    let l = Layout::copy(&host, "fifo");
    let layer = l.layer(1);
    std::fs::remove_file(&layer).expect("rm");
    rustix::fs::mknodat(rustix::fs::CWD, &layer, rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o644), 0).expect("mkfifo");
    refused(&host, &l.dir, "layer:fifo", &[&layer.display().to_string(), "is a FIFO, not a regular file"]);

    let l = Layout::copy(&host, "blobdir");
    let blobs = l.dir.join("blobs/sha256");
    std::fs::rename(&blobs, l.dir.join("elsewhere")).expect("mv");
    std::os::unix::fs::symlink("../elsewhere", &blobs).expect("symlink");
    refused(&host, &l.dir, "dir:link", &["is a symbolic link (or lies under one)"]);

    let l = Layout::copy(&host, "indexlink");
    replace_with_symlink(&l.dir.join("index.json"), &image_dir().join("oci/index.json"));
    refused(&host, &l.dir, "index:link", &["index.json", "is a symbolic link"]);
}

#[test]
fn sizes_other_than_declared_and_oversized_json_are_refused() {
    let host = host_with_image("imgsz");
    // One byte more than the manifest declares (and so another digest).
    let l = Layout::copy(&host, "longer");
    let layer = l.layer(1);
    let mut f = std::fs::OpenOptions::new().append(true).open(&layer).expect("open layer");
    f.write_all(b"\0").expect("append");
    let size = l.manifest()["layers"][1]["size"].as_u64().expect("size");
    refused(&host, &l.dir, "layer:longer", &[&format!("is {} bytes, its manifest declares {size}", size + 1)]);

    // A manifest declaring a smaller size than the blob has: refused before any unpacking.
    let l = Layout::copy(&host, "declared");
    let mut m = l.manifest();
    m["layers"][1]["size"] = (size - 1).into();
    l.set_manifest(&m);
    refused(&host, &l.dir, "layer:declared", &[&format!("its manifest declares {}", size - 1)]);

    // A 5 MiB index (whitespace is valid JSON), and a 5 MiB manifest with its right digest.
    let l = Layout::copy(&host, "bigindex");
    let mut index = std::fs::read(l.dir.join("index.json")).expect("index");
    index.extend(std::iter::repeat_n(b' ', 5 << 20));
    std::fs::write(l.dir.join("index.json"), index).expect("write");
    refused(&host, &l.dir, "json:index", &["index.json", "more than the 4194304 bytes a JSON document may have"]);

    let l = Layout::copy(&host, "bigmanifest");
    let mut m = l.manifest();
    m["annotations"] = serde_json::json!({ "padding": "x".repeat(5 << 20) });
    l.set_manifest(&m);
    refused(&host, &l.dir, "json:manifest", &["image manifest", "more than the 4194304 bytes"]);

    // A config whose bytes are not the ones its descriptor names.
    let l = Layout::copy(&host, "config");
    let config = l.config();
    let mut bytes = std::fs::read(&config).expect("config");
    let n = bytes.len();
    bytes[n - 2] = b' ';
    std::fs::write(&config, bytes).expect("write");
    refused(&host, &l.dir, "cfg:changed", &["image config", "hashes to sha256:"]);
}

/// An OCI archive of the test layout in which `blob` (relative) is a link entry.
fn archive_with_link(host: &Host, tag: &str, blob: &Path, hard: bool) -> PathBuf {
    let src = image_dir().join("oci");
    let path = host.scratch.path().join(format!("{tag}.tar"));
    let mut b = tar::Builder::new(File::create(&path).expect("create archive"));
    for rel in ["oci-layout", "index.json"] {
        b.append_path_with_name(src.join(rel), rel).expect("append");
    }
    for e in std::fs::read_dir(src.join("blobs/sha256")).expect("blobs").flatten() {
        let rel = Path::new("blobs/sha256").join(e.file_name());
        if rel == blob {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(if hard { tar::EntryType::Link } else { tar::EntryType::Symlink });
            h.set_size(0);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            let target = if hard { "index.json" } else { "/etc/hostname" };
            b.append_link(&mut h, &rel, target).expect("link entry");
        } else {
            b.append_path_with_name(e.path(), &rel).expect("append");
        }
    }
    b.finish().expect("finish");
    path
}

#[test]
fn archive_entries_that_are_links_are_refused() {
    let host = host_with_image("imgar");
    let l = Layout::copy(&host, "names");
    let rel = |p: PathBuf| p.strip_prefix(&l.dir).expect("inside").to_path_buf();
    let config = rel(l.config());
    let archive = archive_with_link(&host, "symlink", &config, false);
    refused(&host, &archive, "ar:symlink", &[&config.display().to_string(), "is a symbolic link in the archive"]);
    let layer = rel(l.layer(1));
    let archive = archive_with_link(&host, "hardlink", &layer, true);
    refused(&host, &archive, "ar:hardlink", &[&layer.display().to_string(), "is a hard link in the archive"]);
    // The same archive with every entry a regular file imports (the builder is not at fault).
    let fine = archive_with_link(&host, "fine", Path::new("none"), false);
    host.ok(&["image", "import", fine.to_str().expect("utf-8"), "--name", "ar:fine"]);
}

/// Writes a gzip-compressed tar holding one file of `zeros` zero bytes to `path` without
/// compressing them: one 1 MiB chunk is compressed (ending on a sync flush, its matches
/// reaching no further back than itself) and repeated, the CRC combined. A valid gzip
/// member of a few KiB per GiB.
fn write_bomb(path: &Path, zeros: u64) {
    use flate2::{Compress, Compression, Crc, FlushCompress};
    const CHUNK: usize = 1 << 20;
    assert_eq!(zeros % CHUNK as u64, 0);
    let deflate = |data: &[u8], flush: FlushCompress| -> Vec<u8> {
        let mut c = Compress::new(Compression::best(), false);
        let mut out = Vec::with_capacity(data.len() / 8 + 1024);
        c.compress_vec(data, &mut out, flush).expect("deflate");
        assert_eq!(c.total_in(), data.len() as u64, "one call compresses it all");
        out
    };
    let mut h = tar::Header::new_gnu();
    h.set_path("zeros").expect("path");
    h.set_size(zeros);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    let zero = vec![0u8; CHUNK];
    let mut crc = Crc::new();
    crc.update(h.as_bytes());
    let mut chunk_crc = Crc::new();
    chunk_crc.update(&zero);
    let mut f = std::io::BufWriter::new(File::create(path).expect("create bomb"));
    f.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]).expect("gzip header");
    f.write_all(&deflate(h.as_bytes(), FlushCompress::Sync)).expect("write");
    let packed = deflate(&zero, FlushCompress::Sync);
    for _ in 0..zeros / CHUNK as u64 {
        f.write_all(&packed).expect("write");
        crc.combine(&chunk_crc);
    }
    let end = [0u8; 1024];
    crc.update(&end);
    f.write_all(&deflate(&end, FlushCompress::Finish)).expect("write");
    f.write_all(&crc.sum().to_le_bytes()).expect("crc");
    f.write_all(&crc.amount().to_le_bytes()).expect("isize");
    f.flush().expect("flush");
}

#[test]
fn the_bomb_writer_makes_a_valid_gzip() {
    // The writer checked on a small bomb: it decompresses to the tar it claims.
    let dir = common::Scratch::new("bombcheck");
    let path = dir.path().join("small.gz");
    write_bomb(&path, 4 << 20);
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(File::open(&path).expect("open")).read_to_end(&mut tar).expect("valid gzip, CRC and length");
    assert_eq!(tar.len(), 512 + (4 << 20) + 1024);
    let mut a = tar::Archive::new(&tar[..]);
    let sizes: Vec<u64> = a.entries().expect("entries").map(|e| e.expect("entry").size()).collect();
    assert_eq!(sizes, vec![4 << 20]);
}

#[test]
// The child is reaped by wait4 (for its own rusage), not by `Child::wait`.
#[allow(clippy::zombie_processes)]
fn a_gzip_bomb_layer_is_refused_in_bounded_memory() {
    // A fresh store: the bottom layer, new, is unpacked before the bomb and must not stay.
    let host = Host::new("imgbomb");
    let l = Layout::copy(&host, "bomb");
    let bomb = host.scratch.path().join("bomb.gz");
    let zeros: u64 = 2 << 30;
    write_bomb(&bomb, zeros);
    let packed = std::fs::metadata(&bomb).expect("stat").len();
    assert!(packed < 16 << 20, "2 GiB of zeros packs to {packed} bytes");
    l.set_top_layer(&bomb);
    let before = store(&host);
    let log = host.scratch.path().join("bomb.err");
    let child = host
        .cmd()
        .args(["image", "import", l.dir.to_str().expect("utf-8"), "--name", "bomb:1"])
        .stdout(Stdio::null())
        .stderr(File::create(&log).expect("log"))
        .spawn()
        .expect("spawn import");
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our unwaited child (std's Child does not reap it unless waited); status
    // and usage are valid for writes.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    let err = std::fs::read_to_string(&log).expect("log");
    let status = std::process::ExitStatus::from_raw(status);
    let peak_kib = usage.ru_maxrss;
    eprintln!("bomb import: {status}, peak RSS {peak_kib} KiB, {packed} bytes packed; {err}");
    assert!(!status.success(), "the bomb was imported: {err}");
    assert!(err.contains("most it may unpack to") && err.contains("sha256:"), "{err}");
    assert!(peak_kib < 256 * 1024, "peak RSS {peak_kib} KiB while refusing the bomb");
    assert_eq!(store(&host), before, "a refused bomb changed the store");
}

/// An archive nested in the layer's compression (a gzip of the gzip bomb): the unpacker
/// decompresses one level, finds no tar, and refuses it without unpacking the inner bomb.
#[test]
fn a_nested_archive_bomb_is_refused() {
    let host = Host::new("imgnest");
    let l = Layout::copy(&host, "nest");
    let inner = host.scratch.path().join("inner.gz");
    write_bomb(&inner, 1 << 30);
    let outer = host.scratch.path().join("outer.gz");
    {
        let mut enc = flate2::write::GzEncoder::new(File::create(&outer).expect("outer"), flate2::Compression::fast());
        std::io::copy(&mut File::open(&inner).expect("inner"), &mut enc).expect("compress");
        enc.finish().expect("finish");
    }
    l.set_top_layer(&outer);
    let before = store(&host);
    let out = host.run(&["image", "import", l.dir.to_str().expect("utf-8"), "--name", "nest:1"]);
    assert!(!out.status.success(), "the nested bomb was imported");
    assert!(stderr(&out).contains("sha256:"), "the error names the layer: {}", stderr(&out));
    assert_eq!(store(&host), before, "a refused nested bomb changed the store");
}

/// An image listing more layers than a union should walk is refused by name; one listing a
/// layer again and again imports, each distinct layer stored once (a listed-again blob is not
/// unpacked again: a small layer listed a thousand times no longer fills the disk that holds
/// every tenant's branches).
#[test]
fn layers_listed_again_are_stored_once_and_too_many_are_refused() {
    let host = Host::new("img-layers");
    let l = Layout::copy(&host, "many");
    let m = l.manifest();
    let (bottom, top) = (m["layers"][0].clone(), m["layers"][1].clone());
    let mut many = m.clone();
    many["layers"] = serde_json::Value::Array(std::iter::repeat_n(top.clone(), 129).collect());
    l.set_manifest(&many);
    refused(&host, &l.dir, "too:many", &["129 layers", "at most 128"]);
    let mut again = m.clone();
    again["layers"] = serde_json::Value::Array(std::iter::repeat_n(bottom, 60).chain([top]).collect());
    l.set_manifest(&again);
    host.ok(&["image", "import", l.dir.to_str().expect("utf-8"), "--name", "again:1"]);
    let list: serde_json::Value = serde_json::from_str(&host.ok(&["image", "list", "--format", "json"])).expect("json");
    assert_eq!(list[0]["layers"].as_array().map(Vec::len), Some(61), "{list}");
    let (entries, _) = store(&host);
    assert_eq!(entries.iter().filter(|e| e.starts_with("layers/")).count(), 2, "{entries:?}");
}
