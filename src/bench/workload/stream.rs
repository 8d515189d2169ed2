//! Streams of 1 MiB calls: `seqwrite` and `seqread` (one stream), `fileappend` (each
//! container appends to its own copy of a large file of the shared lower layer: the union
//! paths copy it up first) and `fileread` (each container reads the same lower file).

use std::io;
use std::path::Path;

use super::data::{append_base_mib, MIB};
use super::{Job, Output, Until};
use crate::bench::sys;

/// Writes a new `mib` MiB file at `path` in 1 MiB writes (removed afterwards, untimed).
pub fn write_new(path: &Path, mib: u64, op: &str, out: &mut Output) -> io::Result<()> {
    let c = sys::cpath(path)?;
    let chunk = vec![0xa5u8; MIB];
    let start = sys::now();
    let fd = sys::open(&c, libc::O_CREAT | libc::O_TRUNC | libc::O_WRONLY, 0o644)?;
    for _ in 0..mib {
        sys::write_all(fd, &chunk)?;
    }
    sys::close(fd)?;
    out.span(op, "MiB/s", mib as f64, start);
    sys::unlink(&c)
}

/// Reads the file at `path` to its end in 1 MiB reads; the bytes read.
pub fn read_whole(path: &Path, op: &str, out: &mut Output) -> io::Result<u64> {
    let c = sys::cpath(path)?;
    let mut buf = vec![0u8; MIB];
    let start = sys::now();
    let fd = sys::open(&c, libc::O_RDONLY, 0)?;
    let bytes = sys::read_to_end(fd, &mut buf)?;
    sys::close(fd)?;
    out.span(op, "MiB/s", bytes as f64 / MIB as f64, start);
    Ok(bytes)
}

/// Thread `thread` of a container's job (several threads: one stream each; appenders share
/// the container's file), repeated until the job's minimum time has passed.
pub fn run(job: &Job, thread: u32) -> io::Result<Output> {
    let mut out = Output::default();
    let p = &job.params;
    let until = Until::new(1, p.min_time);
    let mut i = 0;
    match job.workload.as_str() {
        "seqwrite" => {
            while until.more(i) {
                write_new(&job.root.join(format!("seqwrite-{}-{}-{thread}-{i}", job.rep, job.container)), p.file_mib, "seqwrite", &mut out)?;
                i += 1;
            }
        }
        "seqread" | "fileread" => {
            while until.more(i) {
                let bytes = read_whole(&job.root.join("big"), &job.workload, &mut out)?;
                if bytes != p.file_mib * MIB as u64 {
                    return Err(io::Error::other(format!("read {bytes} bytes of a {} MiB file", p.file_mib)));
                }
                i += 1;
            }
        }
        "fileappend" => {
            let path = job.root.join("append").join(format!("r{}", job.rep));
            let c = sys::cpath(&path)?;
            let chunk = vec![0x5au8; MIB];
            while until.more(i) {
                let start = sys::now();
                let fd = sys::open(&c, libc::O_WRONLY | libc::O_APPEND, 0)?;
                for _ in 0..p.append_mib {
                    sys::write_all(fd, &chunk)?;
                }
                sys::close(fd)?;
                out.span("fileappend", "MiB/s", f64::from(p.append_mib), start);
                i += 1;
            }
        }
        other => return Err(io::Error::other(format!("{other} is not a stream workload"))),
    }
    Ok(out)
}

/// After every thread of a `fileappend` job: fails unless the container's file holds the base
/// and the `mib` its threads appended (the workload saw what it should).
pub fn check_appended(job: &Job, mib: f64) -> io::Result<()> {
    let path = job.root.join("append").join(format!("r{}", job.rep));
    let bytes = append_base_mib(&job.params) * MIB as u64 + (mib * MIB as f64) as u64;
    let size = sys::stat(&sys::cpath(&path)?)?.st_size as u64;
    if size != bytes {
        return Err(io::Error::other(format!("{} holds {size} bytes, not {bytes}", path.display())));
    }
    Ok(())
}
