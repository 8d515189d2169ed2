//! The image layout reader against arbitrary JSON: the input (after a first byte choosing
//! the form) becomes `index.json` of an OCI layout or `manifest.json` of a docker-save
//! directory, and also the blob `sha256:0` so that references can resolve. Reading either
//! refuses it or names layer files inside the image directory only (relative, no `..`).

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use polytropon::image::{Dir, Source};

/// One scratch directory per fuzzing process (`scripts/fuzz.sh` removes it).
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("polytropon-fuzz-image-{}", std::process::id()));
        std::fs::create_dir_all(d.join("blobs/sha256")).expect("scratch directory");
        d
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, json)) = data.split_first() else { return };
    let root = dir();
    let (file, other) = if kind & 1 == 0 { ("index.json", "manifest.json") } else { ("manifest.json", "index.json") };
    let _ = std::fs::remove_file(root.join(other));
    std::fs::write(root.join(file), json).expect("write the layout file");
    std::fs::write(root.join("blobs/sha256/0"), json).expect("write the blob");
    let Ok(layout) = Dir::open(root, root, Default::default()) else { return };
    if let Ok(src) = Source::open(layout) {
        // Layer files are named relative to the image directory (and opened beneath it).
        for l in &src.layers {
            assert!(l.file.is_relative(), "layer file {} is not relative to the image", l.file.display());
            assert!(!l.file.components().any(|c| matches!(c, std::path::Component::ParentDir)), "{}", l.file.display());
        }
    }
});
