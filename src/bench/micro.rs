//! The `micro` workload: per-operation latency of stat, open+close, create+unlink and 4 KiB
//! pread, and 1 MiB sequential write and read throughput.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Instant;


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

/// The return of a libc call, as an `io::Result`.
fn check<T: Copy + PartialOrd + Default>(r: T) -> io::Result<T> {
    if r < T::default() {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Thin wrappers over libc (not raw syscalls), so that under the preload library the
/// workload takes the user-level path exactly as an application would.
mod c {
    use std::ffi::CStr;
    use std::io;

    use super::check;

    pub fn stat(p: &CStr) -> io::Result<()> {
        // SAFETY: zeroed `stat` is a valid out-parameter; `p` is NUL-terminated.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        check(unsafe { libc::stat(p.as_ptr(), &mut st) }).map(drop)
    }

    pub fn open(p: &CStr, flags: i32, mode: u32) -> io::Result<i32> {
        // SAFETY: `p` is NUL-terminated.
        check(unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC, mode) })
    }

    pub fn close(fd: i32) -> io::Result<()> {
        // SAFETY: closing a descriptor this workload opened.
        check(unsafe { libc::close(fd) }).map(drop)
    }

    pub fn unlink(p: &CStr) -> io::Result<()> {
        // SAFETY: `p` is NUL-terminated.
        check(unsafe { libc::unlink(p.as_ptr()) }).map(drop)
    }

    pub fn pread(fd: i32, buf: &mut [u8], off: u64) -> io::Result<usize> {
        // SAFETY: `buf` is writable for its length.
        check(unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), off as i64) }).map(|n| n as usize)
    }

    pub fn pwrite(fd: i32, buf: &[u8], off: u64) -> io::Result<usize> {
        // SAFETY: `buf` is readable for its length.
        check(unsafe { libc::pwrite(fd, buf.as_ptr().cast(), buf.len(), off as i64) }).map(|n| n as usize)
    }
}

/// Runs `ops` operations of `op` under `root`; returns per-operation latencies in µs, or one
/// throughput sample in MiB/s for the sequential operations.
pub fn run(op: &str, root: &Path, ops: u32, file_mib: u64, rep: u32, rng: &mut u64) -> io::Result<Vec<f64>> {
    let small: Vec<CString> = (0..SMALL_FILES).map(|i| cpath(&root.join("small").join(format!("f{i}")))).collect::<io::Result<_>>()?;
    let big = cpath(&root.join("big"))?;
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
                c::stat(&small[i % SMALL_FILES])?;
                lat.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        "open+close" => {
            for i in 0..ops as usize {
                let t = Instant::now();
                c::close(c::open(&small[i % SMALL_FILES], libc::O_RDONLY, 0)?)?;
                lat.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        "create+unlink" => {
            let names: Vec<CString> = (0..ops).map(|i| cpath(&root.join(format!("new-{rep}-{i}")))).collect::<io::Result<_>>()?;
            for n in &names {
                let t = Instant::now();
                c::close(c::open(n, libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY, 0o644)?)?;
                c::unlink(n)?;
                lat.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        "pread 4KiB" => {
            let fd = c::open(&big, libc::O_RDONLY, 0)?;
            let mut buf = vec![0u8; 4096];
            let blocks = (file_mib * MIB as u64) / 4096;
            for _ in 0..ops {
                let off = (next() % blocks) * 4096;
                let t = Instant::now();
                c::pread(fd, &mut buf, off)?;
                lat.push(t.elapsed().as_secs_f64() * 1e6);
            }
            c::close(fd)?;
        }
        "seq write 1MiB" => {
            let path = cpath(&root.join(format!("seq-{rep}")))?;
            let chunk = vec![0xa5u8; MIB];
            let t = Instant::now();
            let fd = c::open(&path, libc::O_CREAT | libc::O_TRUNC | libc::O_WRONLY, 0o644)?;
            for i in 0..file_mib {
                let mut done = 0;
                while done < MIB {
                    done += c::pwrite(fd, &chunk[done..], i * MIB as u64 + done as u64)?;
                }
            }
            c::close(fd)?;
            let secs = t.elapsed().as_secs_f64();
            c::unlink(&path)?;
            lat.push(file_mib as f64 / secs);
        }
        "seq read 1MiB" => {
            let mut buf = vec![0u8; MIB];
            let t = Instant::now();
            let fd = c::open(&big, libc::O_RDONLY, 0)?;
            let mut off = 0u64;
            loop {
                let n = c::pread(fd, &mut buf, off)?;
                if n == 0 {
                    break;
                }
                off += n as u64;
            }
            c::close(fd)?;
            lat.push((off as f64 / MIB as f64) / t.elapsed().as_secs_f64());
        }
        other => return Err(io::Error::other(format!("unknown operation {other}"))),
    }
    Ok(lat)
}
