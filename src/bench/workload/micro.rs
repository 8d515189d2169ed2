//! `micro` (per-operation latency of stat, open+close, create+unlink, 4 KiB pread and pwrite, and
//! 1 MiB sequential write and read throughput) and `metadata` (stat, open+close,
//! create+unlink, readdir).

use std::ffi::CString;
use std::io;
use std::path::Path;

use super::data::{MIB, SMALL_FILES};
use super::{stream, timed, Output, Params, Rng};
use crate::bench::sys;

/// The operations of `micro`, in report order: (name, unit).
pub const OPS: [(&str, &str); 7] = [
    ("stat", "us"),
    ("open+close", "us"),
    ("create+unlink", "us"),
    ("pread 4KiB", "us"),
    ("pwrite 4KiB", "us"),
    ("seq write 1MiB", "MiB/s"),
    ("seq read 1MiB", "MiB/s"),
];

/// Size of the file `pwrite 4KiB` overwrites.
const PWRITE_FILE: u64 = 8 * MIB as u64;

/// The operations of `metadata`.
pub const METADATA: [&str; 4] = ["stat", "open+close", "create+unlink", "readdir"];

/// Runs `params.ops` operations of `op` under `root`: per-operation latencies in µs, or a
/// span for the sequential operations.
/// Several threads (`thread` of them is this one) each use names and files of their own.
pub fn run(op: &str, root: &Path, params: &Params, (rep, thread): (u32, u32), rng: &mut Rng) -> io::Result<Output> {
    let ops = params.ops as usize;
    let small: Vec<CString> = (0..SMALL_FILES).map(|i| sys::cpath(&root.join("small").join(format!("f{i}")))).collect::<io::Result<_>>()?;
    let mut out = Output::default();
    let mut lat = Vec::with_capacity(ops);
    match op {
        "stat" => {
            for i in 0..ops {
                timed(&mut lat, || sys::stat(&small[i % SMALL_FILES]))?;
            }
        }
        "open+close" => {
            for i in 0..ops {
                timed(&mut lat, || sys::close(sys::open(&small[i % SMALL_FILES], libc::O_RDONLY, 0)?))?;
            }
        }
        "create+unlink" => {
            let names: Vec<CString> = (0..ops).map(|i| sys::cpath(&root.join(format!("new-{rep}-{thread}-{i}")))).collect::<io::Result<_>>()?;
            for n in &names {
                timed(&mut lat, || {
                    sys::close(sys::open(n, libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY, 0o644)?)?;
                    sys::unlink(n)
                })?;
            }
        }
        "readdir" => {
            let dir = sys::cpath(&root.join("small"))?;
            for _ in 0..ops.div_ceil(10) {
                let n = timed(&mut lat, || sys::list_dir(&dir))?;
                if n < SMALL_FILES {
                    return Err(io::Error::other(format!("readdir saw {n} entries of {SMALL_FILES}")));
                }
            }
        }
        "pread 4KiB" => {
            let fd = sys::open(&sys::cpath(&root.join("big"))?, libc::O_RDONLY, 0)?;
            let mut buf = vec![0u8; 4096];
            let blocks = (params.file_mib * MIB as u64) / 4096;
            for _ in 0..ops {
                let off = rng.below(blocks) * 4096;
                timed(&mut lat, || sys::pread(fd, &mut buf, off))?;
            }
            sys::close(fd)?;
        }
        "pwrite 4KiB" => {
            // Overwrites at random block offsets of a file of this rep's, written beforehand
            // (untimed) so that every timed write lands in cached blocks of an existing file.
            let name = sys::cpath(&root.join(format!("pwrite-{rep}-{thread}")))?;
            let fd = sys::open(&name, libc::O_CREAT | libc::O_TRUNC | libc::O_RDWR, 0o644)?;
            let blocks = PWRITE_FILE / 4096;
            let chunk = vec![0x5au8; MIB];
            for _ in 0..PWRITE_FILE / MIB as u64 {
                sys::write_all(fd, &chunk)?;
            }
            let buf = vec![0xa5u8; 4096];
            for _ in 0..ops {
                let off = rng.below(blocks) * 4096;
                let n = timed(&mut lat, || sys::pwrite(fd, &buf, off))?;
                if n != buf.len() {
                    return Err(io::Error::other(format!("short pwrite: {n} bytes of 4096")));
                }
            }
            sys::close(fd)?;
            sys::unlink(&name)?;
        }
        "seq write 1MiB" => {
            stream::write_new(&root.join(format!("seq-{rep}-{thread}")), params.file_mib, op, &mut out)?;
            return Ok(out);
        }
        "seq read 1MiB" => {
            stream::read_whole(&root.join("big"), op, &mut out)?;
            return Ok(out);
        }
        other => return Err(io::Error::other(format!("unknown operation {other}"))),
    }
    out.latency(op, lat);
    Ok(out)
}
