//! `micro` (per-operation latency of stat, open+close, create+unlink, 4 KiB pread and pwrite, and
//! 1 MiB sequential write and read throughput) and `metadata` (stat, stat of a name nobody
//! looked up, open+close, create+unlink, listings of 100 and 1,000 entries).

use std::ffi::CString;
use std::io;
use std::path::Path;

use super::data::{LISTED, MIB, SMALL_FILES};
use super::{stream, timed, Output, Params, Rng, Until};
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
pub const METADATA: [&str; 6] = ["stat", "stat missing", "open+close", "create+unlink", "readdir", "readdir 1000"];

/// Latencies of `f` on what `prep(i)` makes (untimed): the first call into `first`, then calls
/// into `lat` until `until` says enough.
fn measure<T>(first: &mut Vec<f64>, lat: &mut Vec<f64>, until: impl FnOnce() -> Until, mut prep: impl FnMut(u64) -> io::Result<T>, mut f: impl FnMut(&T) -> io::Result<()>) -> io::Result<()> {
    let x = prep(0)?;
    timed(first, || f(&x))?;
    let until = until();
    let mut i = 0;
    while until.more(i) {
        let x = prep(i + 1)?;
        timed(lat, || f(&x))?;
        i += 1;
    }
    Ok(())
}

/// Runs `params.ops` operations of `op` under `root` (and more until `params.min_time` has
/// passed): per-operation latencies in µs, or a span for the sequential operations. The first
/// operation is timed apart (`first op`). Several threads (`thread` of them is this one) each
/// use names and files of their own.
pub fn run(op: &str, root: &Path, params: &Params, (rep, thread): (u32, u32), rng: &mut Rng) -> io::Result<Output> {
    let ops = u64::from(params.ops);
    let small: Vec<CString> = (0..SMALL_FILES).map(|i| sys::cpath(&root.join("small").join(format!("f{i}")))).collect::<io::Result<_>>()?;
    let small = |i: u64| Ok(&small[i as usize % SMALL_FILES]);
    let mut out = Output::default();
    let (mut lat, mut first) = (Vec::with_capacity(ops as usize), Vec::with_capacity(1));
    let until = || Until::new(ops, params.min_time);
    match op {
        "stat" => measure(&mut first, &mut lat, until, small, |c| sys::stat(c).map(drop))?,
        "open+close" => measure(&mut first, &mut lat, until, small, |c| sys::close(sys::open(c, libc::O_RDONLY, 0)?))?,
        "create+unlink" => {
            let name = |i| sys::cpath(&root.join(format!("new-{rep}-{thread}-{i}")));
            measure(&mut first, &mut lat, until, name, |n| {
                sys::close(sys::open(n, libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY, 0o644)?)?;
                sys::unlink(n)
            })?;
        }
        // A name never looked up before (so never in the kernel's dentry cache): a lookup
        // that reaches the filesystem on every path, answered ENOENT.
        "stat missing" => {
            let name = |i| sys::cpath(&root.join("small").join(format!("missing-{rep}-{thread}-{i}")));
            measure(&mut first, &mut lat, until, name, |n| match sys::stat(n) {
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
                Err(e) => Err(e),
                Ok(_) => Err(io::Error::other("a missing name exists")),
            })?;
        }
        "readdir" | "readdir 1000" => {
            let (dir, want) = if op == "readdir" { ("small", SMALL_FILES) } else { ("listed", LISTED) };
            let dir = sys::cpath(&root.join(dir))?;
            // Listings take longer: a tenth as many at least.
            let until = || Until::new(ops.div_ceil(10), params.min_time);
            measure(&mut first, &mut lat, until, |_| Ok(&dir), |d| {
                let n = sys::list_dir(d)?;
                if n < want {
                    return Err(io::Error::other(format!("readdir saw {n} entries of {want}")));
                }
                Ok(())
            })?;
        }
        "pread 4KiB" => {
            let fd = sys::open(&sys::cpath(&root.join("big"))?, libc::O_RDONLY, 0)?;
            let mut buf = vec![0u8; 4096];
            let blocks = (params.file_mib * MIB as u64) / 4096;
            measure(&mut first, &mut lat, until, |_| Ok(rng.below(blocks) * 4096), |&off| sys::pread(fd, &mut buf, off).map(drop))?;
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
            measure(&mut first, &mut lat, until, |_| Ok(rng.below(blocks) * 4096), |&off| {
                let n = sys::pwrite(fd, &buf, off)?;
                if n != buf.len() {
                    return Err(io::Error::other(format!("short pwrite: {n} bytes of 4096")));
                }
                Ok(())
            })?;
            sys::close(fd)?;
            sys::unlink(&name)?;
        }
        "seq write 1MiB" => {
            let until = Until::new(1, params.min_time);
            let mut i = 0;
            while until.more(i) {
                stream::write_new(&root.join(format!("seq-{rep}-{thread}-{i}")), params.file_mib, op, &mut out)?;
                i += 1;
            }
            return Ok(out);
        }
        "seq read 1MiB" => {
            let until = Until::new(1, params.min_time);
            let mut i = 0;
            while until.more(i) {
                stream::read_whole(&root.join("big"), op, &mut out)?;
                i += 1;
            }
            return Ok(out);
        }
        other => return Err(io::Error::other(format!("unknown operation {other}"))),
    }
    out.latency(op, lat);
    out.latency(super::FIRST_OP, first);
    Ok(out)
}
