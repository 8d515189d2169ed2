//! The `startup` workload's image when none is named: the host's static busybox (Debian's
//! busybox-static) as a one-layer image, imported into the store for the run and removed
//! after. Its server is `busybox httpd`, the workload's default.

use std::path::{Path, PathBuf};

use super::BenchError;
use crate::image::{CephStore, Store};

/// Where the host's busybox is looked for.
pub const BUSYBOX: &str = "/bin/busybox";

/// An image imported for this run, removed from the store when dropped.
#[allow(missing_debug_implementations)]
pub struct HostImage {
    store: Store,
    pub name: String,
}

impl Drop for HostImage {
    fn drop(&mut self) {
        if let Err(e) = self.store.remove(&self.name) {
            tracing::warn!("cannot remove the benchmark image {}: {e}", self.name);
        }
    }
}

/// Whether the ELF file at `path` is statically linked (has no program interpreter).
fn is_static(path: &Path) -> Result<bool, BenchError> {
    let elf = std::fs::read(path).map_err(BenchError::io(format!("cannot read {}", path.display())))?;
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u64_at = |o: usize| elf.get(o..o + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
    // 64-bit little-endian ELF only (the hosts this runs on).
    if elf.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return Err(BenchError::NotElf(path.to_path_buf()));
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return Err(BenchError::TruncatedElf { path: path.to_path_buf(), part: "ELF header" });
    };
    for i in 0..usize::from(phnum) {
        let at = usize::try_from(phoff).unwrap_or(usize::MAX).saturating_add(i * usize::from(phentsize));
        const PT_INTERP: u32 = 3;
        match elf.get(at..at + 4) {
            Some(t) if u32::from_le_bytes([t[0], t[1], t[2], t[3]]) == PT_INTERP => return Ok(false),
            Some(_) => {}
            None => return Err(BenchError::TruncatedElf { path: path.to_path_buf(), part: "program header table" }),
        }
    }
    Ok(true)
}

/// Writes a `docker save` directory of one layer (busybox as `/bin/busybox` and `/bin/sh`,
/// and the directories a container needs) into `dir`.
fn write_image(dir: &Path, name: &str) -> Result<PathBuf, BenchError> {
    std::fs::create_dir_all(dir).map_err(BenchError::create(dir))?;
    let layer = std::fs::File::create(dir.join("layer.tar")).map_err(BenchError::io("cannot create the layer"))?;
    let mut tar = tar::Builder::new(layer);
    let header = |kind: tar::EntryType| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h
    };
    for d in ["bin", "dev", "etc", "proc", "sys", "tmp", "www"] {
        let mut h = header(tar::EntryType::Directory);
        h.set_mode(if d == "tmp" { 0o1777 } else { 0o755 });
        h.set_size(0);
        tar.append_data(&mut h, d, std::io::empty()).map_err(BenchError::io("cannot write the layer"))?;
    }
    tar.append_path_with_name(BUSYBOX, "bin/busybox").map_err(BenchError::io(format!("cannot add {BUSYBOX} to the layer")))?;
    let mut h = header(tar::EntryType::Symlink);
    h.set_mode(0o777);
    h.set_size(0);
    tar.append_link(&mut h, "bin/sh", "busybox").map_err(BenchError::io("cannot write the layer"))?;
    tar.into_inner().and_then(|f| f.sync_all()).map_err(BenchError::io("cannot write the layer"))?;
    let config = r#"{"config": {"Cmd": ["/bin/sh"], "WorkingDir": "/www"}}"#;
    std::fs::write(dir.join("config.json"), config).map_err(BenchError::io("cannot write the image config"))?;
    let manifest = serde_json::json!([{ "Config": "config.json", "RepoTags": [name], "Layers": ["layer.tar"] }]);
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).map_err(BenchError::io("cannot write the image manifest"))?;
    Ok(dir.to_path_buf())
}

/// Why no image can be made of the host's busybox, if none can.
pub fn available() -> Option<String> {
    let bin = Path::new(BUSYBOX);
    match bin.is_file().then(|| is_static(bin)) {
        Some(Ok(true)) => None,
        _ => Some(format!("needs --image NAME, or a static {BUSYBOX} (Debian package busybox-static) to make one of")),
    }
}

/// Builds the host busybox image under `scratch` and imports it into the store of
/// `data_dir`.
pub fn import(data_dir: &Path, scratch: &Path) -> Result<HostImage, BenchError> {
    import_into(data_dir, scratch, "busybox", None)
}

/// As [`import`], with its layer stored in CephFS (under `ceph.dir`), as `image import
/// --ceph-conf` stores one; the record goes when dropped, the layer with the CephFS directory.
pub fn import_to_ceph(data_dir: &Path, scratch: &Path, ceph: &CephStore) -> Result<HostImage, BenchError> {
    import_into(data_dir, scratch, "busybox-cephfs", Some(ceph))
}

fn import_into(data_dir: &Path, scratch: &Path, tag: &str, ceph: Option<&CephStore>) -> Result<HostImage, BenchError> {
    if let Some(why) = available() {
        return Err(BenchError::NoImage(why));
    }
    let name = format!("polytropon-bench/{tag}:{}", std::process::id());
    let dir = write_image(&scratch.join(format!("host-image-{tag}")), &name)?;
    let store = Store::new(data_dir);
    store.import(&dir, None, ceph).map_err(|source| BenchError::Import { path: dir.clone(), source })?;
    Ok(HostImage { store, name })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_static_from_dynamic_binaries() {
        // The test binary itself is dynamically linked (it has an interpreter).
        let me = std::env::current_exe().expect("test binary");
        assert!(!is_static(&me).expect("an ELF file"));
        let dir = tempfile::tempdir().expect("tempdir");
        let text = dir.path().join("text");
        std::fs::write(&text, b"#!/bin/sh\n").expect("write");
        assert!(is_static(&text).is_err(), "not ELF");
        let short = dir.path().join("short");
        std::fs::write(&short, b"\x7fELF\x02\x01\x01").expect("write");
        assert!(is_static(&short).is_err(), "truncated");
        if Path::new(BUSYBOX).is_file() && std::fs::read(BUSYBOX).is_ok_and(|b| b.starts_with(b"\x7fELF")) {
            // Debian's busybox-static is what CI installs.
            assert!(is_static(Path::new(BUSYBOX)).expect("busybox is ELF"));
        }
    }

    #[test]
    fn the_layer_unpacks_with_busybox_and_its_shell() {
        if super::available().is_some() {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        super::write_image(&dir.path().join("img"), "x:1").expect("write");
        let dst = dir.path().join("out");
        std::fs::create_dir(&dst).expect("mkdir");
        let layer = dir.path().join("img/layer.tar");
        let file = std::fs::File::open(&layer).expect("open layer");
        let size = file.metadata().expect("stat layer").len();
        crate::image::unpack::unpack(crate::image::unpack::Blob { file, name: "layer.tar".into(), digest: None, size }, &dst).expect("unpack");
        assert_eq!(std::fs::read(dst.join("bin/busybox")).expect("busybox"), std::fs::read(super::BUSYBOX).expect("host busybox"));
        assert_eq!(std::fs::read_link(dst.join("bin/sh")).expect("sh"), std::path::Path::new("busybox"));
        assert!(dst.join("www").is_dir() && dst.join("tmp").is_dir());
    }
}
