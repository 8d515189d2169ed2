//! `fileserver`, after Filebench's fileserver personality: threads each loop over create and
//! write a whole file, append 16 KiB to a file, read a whole file, delete a file, stat a
//! file, over a file set that starts in the shared lower layer (so the union paths copy up,
//! whiteout and read through). Each thread owns a slice of the set as the earlier runs left
//! it: no races between threads.

use std::io;
use std::path::PathBuf;

use super::data::{fileset_size, MIB};
use super::{in_threads, timed, Job, Output, Rng, Warmup};
use crate::bench::sys;

const APPEND: usize = 16 * 1024;
/// The operations of one loop, in report order.
pub const OPS: [&str; 5] = ["create+write", "append 16KiB", "read whole", "delete", "stat"];

/// One thread: a warm-up loop (its first operation's latency is the thread's `first op`), then
/// the measured loops from `start` (set by the first thread past the barrier).
fn thread(job: &Job, set: &[PathBuf], t: u32, mut rng: Rng, warm: &Warmup) -> io::Result<(u64, [Vec<f64>; 5], f64)> {
    let p = &job.params;
    let dir = job.root.join("fileset");
    // This thread's files: every threads-th of the set as it was at the start, plus its own.
    let mut files: Vec<PathBuf> = set.iter().skip(t as usize).step_by(p.threads_of(&job.workload) as usize).cloned().collect();
    let data = vec![0x3cu8; (p.file_kib as usize * 1024 * 3 / 2).max(APPEND)];
    let mut buf = vec![0u8; MIB];
    let mut lat: [Vec<f64>; 5] = Default::default();
    let mut ops = 0u64;
    let mut arrival = warm.arrival();
    let mut until = None;
    let mut first = 0.0;
    let mut k = 0u64;
    loop {
        match until {
            // The warm-up loop is done: its figures go, the measured loops start together.
            None if k == 1 => {
                first = lat[0].first().copied().unwrap_or(0.0);
                lat = Default::default();
                ops = 0;
                arrival.arrive();
                until = Some(super::Until::new(u64::from(p.loops), p.min_time));
                k = 0;
            }
            Some(u) if !u.more(k) => break,
            _ => {}
        }
        let new = dir.join(format!("n{:x}-{t}-{}-{k}", job.seed, u8::from(until.is_some())));
        let c = sys::cpath(&new)?;
        let size = fileset_size(p, k as u32);
        timed(&mut lat[0], || {
            let fd = sys::open(&c, libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY, 0o644)?;
            sys::write_all(fd, &data[..size])?;
            sys::close(fd)
        })?;
        files.push(new);
        let pick = |rng: &mut Rng, files: &[PathBuf]| sys::cpath(&files[rng.below(files.len() as u64) as usize]);
        let c = pick(&mut rng, &files)?;
        timed(&mut lat[1], || {
            let fd = sys::open(&c, libc::O_WRONLY | libc::O_APPEND, 0)?;
            sys::write_all(fd, &data[..APPEND])?;
            sys::close(fd)
        })?;
        let c = pick(&mut rng, &files)?;
        timed(&mut lat[2], || {
            let fd = sys::open(&c, libc::O_RDONLY, 0)?;
            sys::read_to_end(fd, &mut buf)?;
            sys::close(fd)
        })?;
        // Keep at least a few files to work on.
        if files.len() > 2 {
            let victim = files.swap_remove(rng.below(files.len() as u64) as usize);
            let c = sys::cpath(&victim)?;
            timed(&mut lat[3], || sys::unlink(&c))?;
            ops += 1;
        }
        let c = pick(&mut rng, &files)?;
        timed(&mut lat[4], || sys::stat(&c))?;
        ops += 4;
        k += 1;
    }
    Ok((ops, lat, first))
}

pub fn run(job: &Job, rng: &mut Rng) -> io::Result<Output> {
    // The set as earlier runs left it, listed before any thread changes it.
    let mut set: Vec<PathBuf> = std::fs::read_dir(job.root.join("fileset"))?.map(|e| e.map(|e| e.path())).collect::<io::Result<_>>()?;
    set.sort();
    let threads = job.params.threads_of(&job.workload);
    let warm = Warmup::new(threads);
    let results = in_threads(threads, rng, |t, r| thread(job, &set, t, r, &warm))?;
    let mut out = Output::default();
    let mut total = 0;
    let mut all: [Vec<f64>; 5] = Default::default();
    let mut firsts = Vec::new();
    for (n, lat, first) in results {
        total += n;
        firsts.push(first);
        for (a, l) in all.iter_mut().zip(lat) {
            a.extend(l);
        }
    }
    out.span("fileserver", "ops/s", total as f64, warm.started());
    for (op, l) in OPS.iter().zip(all) {
        out.latency(op, l);
    }
    out.latency(super::FIRST_OP, firsts);
    Ok(out)
}
