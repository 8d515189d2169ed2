//! The read-only lower branch every path serves: built once per run, with only what the
//! chosen workloads read.

use std::io;
use std::path::Path;

use super::Params;

pub const MIB: usize = 1 << 20;
/// Number of small files (`micro`, `metadata`).
pub const SMALL_FILES: usize = 100;
/// Entries of the directory `metadata`'s `readdir 1000` lists (an image's `/usr/bin`).
pub const LISTED: usize = 1000;

/// Size in bytes of file `i` of the fileserver set: between half and one and a half times
/// the mean, the same on every path.
pub fn fileset_size(p: &Params, i: u32) -> usize {
    let mean = p.file_kib as usize * 1024;
    mean / 2 + (i as usize * 7919 % 1024) * mean / 1024
}

/// Size in bytes of each file `spawn`'s processes read.
pub const SPAWN_FILE: usize = 4096;

/// How many files each `spawn` process reads.
pub const fn spawn_files() -> usize {
    3
}

/// Size in bytes of a webserver file.
pub fn www_size(p: &Params) -> usize {
    (p.file_kib as usize * 1024 / 4).max(1024)
}

/// Size in MiB of each `fileappend` file before the appends.
pub fn append_base_mib(p: &Params) -> u64 {
    (p.file_mib / 4).max(1)
}

fn write_file(path: &Path, bytes: u64) -> io::Result<()> {
    let f = std::fs::File::create(path)?;
    let chunk: Vec<u8> = (0..MIB).map(|i| (i % 251) as u8).collect();
    let mut off = 0u64;
    while off < bytes {
        let n = (bytes - off).min(MIB as u64) as usize;
        rustix::io::pwrite(&f, &chunk[..n], off)?;
        off += n as u64;
    }
    Ok(())
}

/// Builds `lower` for `workloads` (run `reps` times).
pub fn build_lower(lower: &Path, workloads: &[&str], p: &Params, reps: u32) -> io::Result<()> {
    let any = |ws: &[&str]| workloads.iter().any(|w| ws.contains(w));
    std::fs::create_dir_all(lower)?;
    if any(&["micro", "metadata"]) {
        std::fs::create_dir_all(lower.join("small"))?;
        for i in 0..SMALL_FILES {
            std::fs::write(lower.join("small").join(format!("f{i}")), vec![b'x'; 1024])?;
        }
    }
    if any(&["metadata"]) {
        std::fs::create_dir_all(lower.join("listed"))?;
        for i in 0..LISTED {
            std::fs::write(lower.join("listed").join(format!("entry-{i:04}")), b"")?;
        }
    }
    if any(&["micro", "seqread", "fileread"]) {
        write_file(&lower.join("big"), p.file_mib * MIB as u64)?;
    }
    if any(&["fileappend"]) {
        std::fs::create_dir_all(lower.join("append"))?;
        for rep in 0..reps {
            write_file(&lower.join("append").join(format!("r{rep}")), append_base_mib(p) * MIB as u64)?;
        }
    }
    if any(&["fileserver", "scaling"]) {
        std::fs::create_dir_all(lower.join("fileset"))?;
        for i in 0..p.files {
            write_file(&lower.join("fileset").join(format!("f{i}")), fileset_size(p, i) as u64)?;
        }
    }
    if any(&["spawn"]) {
        std::fs::create_dir_all(lower.join("spawn"))?;
        for i in 0..spawn_files() {
            write_file(&lower.join("spawn").join(format!("f{i}")), SPAWN_FILE as u64)?;
        }
    }
    if any(&["webserver"]) {
        std::fs::create_dir_all(lower.join("www"))?;
        for i in 0..p.files {
            write_file(&lower.join("www").join(format!("f{i}")), www_size(p) as u64)?;
        }
    }
    rustix::fs::sync();
    Ok(())
}
