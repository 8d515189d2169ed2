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
    run_kernel(op, root, ops, file_mib, rep, rng)
}

fn run_kernel(op: &str, root: &Path, ops: u32, file_mib: u64, rep: u32, rng: &mut u64) -> io::Result<Vec<f64>> {
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

/// The same operations on the user-level path, through a client of the back driver.
pub mod user {
    use std::io;
    use std::time::Instant;

    use polytropon_ipc::client::Client;
    use polytropon_ipc::{Descriptor, Op};

    use super::{MIB, SMALL_FILES};

    fn err(e: i32) -> io::Error {
        io::Error::from_raw_os_error(e)
    }

    fn open(c: &mut Client, path: &str, flags: i32, mode: u32) -> io::Result<(u64, u64)> {
        let d = Descriptor { op: Op::OpenPath as u32, len: path.len() as u64, arg: (flags as u32 as u64) | (u64::from(mode) << 32), ..Descriptor::default() };
        let r = c.call(d, path.as_bytes()).map_err(err)?;
        Ok((r.aux[0], r.aux[1]))
    }

    fn close(c: &mut Client, (ino, fh): (u64, u64)) -> io::Result<()> {
        c.call(Descriptor { op: Op::Release as u32, inode: ino, handle: fh, ..Descriptor::default() }, &[]).map(|_| ()).map_err(err)
    }

    fn io(c: &mut Client, op: Op, (ino, fh): (u64, u64), offset: u64, data: &[u8], len: u64) -> io::Result<u64> {
        let d = Descriptor { op: op as u32, inode: ino, handle: fh, offset, len, ..Descriptor::default() };
        Ok(c.call(d, data).map_err(err)?.value)
    }

    /// As `super::run`, on the user-level path.
    pub fn run(op: &str, c: &mut Client, ops: u32, file_mib: u64, rep: u32, rng: &mut u64) -> io::Result<Vec<f64>> {
        let small: Vec<String> = (0..SMALL_FILES).map(|i| format!("small/f{i}")).collect();
        let mut lat = Vec::with_capacity(ops as usize);
        let mut next = || {
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            *rng
        };
        let us = |t: Instant| t.elapsed().as_secs_f64() * 1e6;
        match op {
            "stat" => {
                for i in 0..ops as usize {
                    let p = &small[i % SMALL_FILES];
                    let t = Instant::now();
                    c.call(Descriptor { op: Op::StatPath as u32, len: p.len() as u64, ..Descriptor::default() }, p.as_bytes()).map_err(err)?;
                    lat.push(us(t));
                }
            }
            "open+close" => {
                for i in 0..ops as usize {
                    let t = Instant::now();
                    let f = open(c, &small[i % SMALL_FILES], libc::O_RDONLY, 0)?;
                    close(c, f)?;
                    lat.push(us(t));
                }
            }
            "create+unlink" => {
                for i in 0..ops {
                    let name = format!("new-{rep}-{i}");
                    let t = Instant::now();
                    let f = open(c, &name, libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY, 0o644)?;
                    close(c, f)?;
                    c.call(Descriptor { op: Op::UnlinkPath as u32, len: name.len() as u64, ..Descriptor::default() }, name.as_bytes()).map_err(err)?;
                    lat.push(us(t));
                }
            }
            "pread 4KiB" => {
                let f = open(c, "big", libc::O_RDONLY, 0)?;
                let blocks = (file_mib * MIB as u64) / 4096;
                let mut out = [0u8; 4096];
                for _ in 0..ops {
                    let off = (next() % blocks) * 4096;
                    let t = Instant::now();
                    io(c, Op::Read, f, off, &[], 4096)?;
                    c.data(&mut out);
                    lat.push(us(t));
                }
                close(c, f)?;
            }
            "seq write 1MiB" => {
                let name = format!("seq-{rep}");
                let chunk = vec![0xa5u8; MIB];
                let t = Instant::now();
                let f = open(c, &name, libc::O_CREAT | libc::O_TRUNC | libc::O_WRONLY, 0o644)?;
                for i in 0..file_mib {
                    io(c, Op::Write, f, i * MIB as u64, &chunk, MIB as u64)?;
                }
                close(c, f)?;
                let secs = t.elapsed().as_secs_f64();
                c.call(Descriptor { op: Op::UnlinkPath as u32, len: name.len() as u64, ..Descriptor::default() }, name.as_bytes()).map_err(err)?;
                lat.push(file_mib as f64 / secs);
            }
            "seq read 1MiB" => {
                let mut out = vec![0u8; MIB];
                let t = Instant::now();
                let f = open(c, "big", libc::O_RDONLY, 0)?;
                let mut off = 0u64;
                loop {
                    let n = io(c, Op::Read, f, off, &[], MIB as u64)?;
                    if n == 0 {
                        break;
                    }
                    c.data(&mut out[..n as usize]);
                    off += n;
                }
                close(c, f)?;
                lat.push((off as f64 / MIB as f64) / t.elapsed().as_secs_f64());
            }
            other => return Err(io::Error::other(format!("unknown operation {other}"))),
        }
        Ok(lat)
    }
}
