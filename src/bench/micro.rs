//! The `micro` workload: per-operation latency of stat, open+close, create+unlink and 4 KiB
//! pread, and 1 MiB sequential write and read throughput.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Instant;

use rustix::fs::{self as rfs, Mode, OFlags};

/// Number of small files in the lower branch.
pub const SMALL_FILES: usize = 100;
const MIB: usize = 1 << 20;

/// The operations, in report order: (name, unit).
pub const OPS: [(&str, &str); 6] = [
    ("stat", "us"),
    ("open+close", "us"),
    ("create+unlink", "us"),
    ("pread 4KiB", "us"),
    ("seq write 1MiB", "MiB/s"),
    ("seq read 1MiB", "MiB/s"),
];

/// Builds the lower branch: small files and one large file.
pub fn build_lower(lower: &Path, file_mib: u64) -> io::Result<()> {
    std::fs::create_dir_all(lower.join("small"))?;
    for i in 0..SMALL_FILES {
        std::fs::write(lower.join("small").join(format!("f{i}")), vec![b'x'; 1024])?;
    }
    let big = std::fs::File::create(lower.join("big"))?;
    let chunk: Vec<u8> = (0..MIB).map(|i| (i % 251) as u8).collect();
    for i in 0..file_mib {
        rustix::io::pwrite(&big, &chunk, i * MIB as u64)?;
    }
    big.sync_all()
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Runs `ops` operations of `op` under `root`; returns per-operation latencies in µs, or one
/// throughput sample in MiB/s for the sequential operations.
pub fn run(op: &str, root: &Path, ops: u32, file_mib: u64, rep: u32, rng: &mut u64) -> io::Result<Vec<f64>> {
    let small: Vec<CString> = (0..SMALL_FILES).map(|i| cpath(&root.join("small").join(format!("f{i}")))).collect::<io::Result<_>>()?;
    let mut lat = Vec::with_capacity(ops as usize);
    let mut next = || {
        // xorshift: cheap and deterministic.
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng
    };
    match op {
        "stat" => {
            for i in 0..ops as usize {
                let t = Instant::now();
                rfs::stat(small[i % SMALL_FILES].as_c_str())?;
                lat.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        "open+close" => {
            for i in 0..ops as usize {
                let t = Instant::now();
                drop(rfs::open(small[i % SMALL_FILES].as_c_str(), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?);
                lat.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        "create+unlink" => {
            let names: Vec<CString> = (0..ops).map(|i| cpath(&root.join(format!("new-{rep}-{i}")))).collect::<io::Result<_>>()?;
            for n in &names {
                let t = Instant::now();
                drop(rfs::open(n.as_c_str(), OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC, Mode::from_bits_retain(0o644))?);
                rfs::unlink(n.as_c_str())?;
                lat.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        "pread 4KiB" => {
            let fd = rfs::open(root.join("big"), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
            let mut buf = vec![0u8; 4096];
            let blocks = (file_mib * MIB as u64) / 4096;
            for _ in 0..ops {
                let off = (next() % blocks) * 4096;
                let t = Instant::now();
                rustix::io::pread(&fd, &mut buf, off)?;
                lat.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        "seq write 1MiB" => {
            let path = root.join(format!("seq-{rep}"));
            let chunk = vec![0xa5u8; MIB];
            let t = Instant::now();
            let fd = rfs::open(&path, OFlags::CREATE | OFlags::TRUNC | OFlags::WRONLY | OFlags::CLOEXEC, Mode::from_bits_retain(0o644))?;
            for i in 0..file_mib {
                let mut done = 0;
                while done < MIB {
                    done += rustix::io::pwrite(&fd, &chunk[done..], i * MIB as u64 + done as u64)?;
                }
            }
            drop(fd);
            let secs = t.elapsed().as_secs_f64();
            rfs::unlink(&path)?;
            lat.push(file_mib as f64 / secs);
        }
        "seq read 1MiB" => {
            let mut buf = vec![0u8; MIB];
            let t = Instant::now();
            let fd = rfs::open(root.join("big"), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
            let mut off = 0u64;
            loop {
                let n = rustix::io::pread(&fd, &mut buf, off)?;
                if n == 0 {
                    break;
                }
                off += n as u64;
            }
            drop(fd);
            lat.push((off as f64 / MIB as f64) / t.elapsed().as_secs_f64());
        }
        other => return Err(io::Error::other(format!("unknown operation {other}"))),
    }
    Ok(lat)
}
