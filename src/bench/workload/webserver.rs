//! `webserver`, after Filebench's webserver personality: threads each loop over ten
//! whole-file reads of small files of the shared lower layer and a 16 KiB append to a log
//! (one per thread).

use std::io;

use super::data::www_size;
use super::{in_threads, timed, Job, Output, Rng, Until, Warmup};
use crate::bench::sys;

const LOG_APPEND: usize = 16 * 1024;

/// One thread: a warm-up loop (its first read's latency is the thread's `first op`), then the
/// measured loops; its log is removed at the end (untimed).
fn thread(job: &Job, t: u32, mut rng: Rng, warm: &Warmup) -> io::Result<(u64, Vec<f64>, Vec<f64>, f64)> {
    let p = &job.params;
    let dir = job.root.join("www");
    let names: Vec<_> = (0..p.files).map(|i| sys::cpath(&dir.join(format!("f{i}")))).collect::<io::Result<_>>()?;
    let log = sys::cpath(&job.root.join(format!("log-{:x}-{t}", job.seed)))?;
    let mut buf = vec![0u8; www_size(p).next_power_of_two()];
    let entry = vec![b'l'; LOG_APPEND];
    let (mut reads, mut appends) = (Vec::new(), Vec::new());
    let logfd = sys::open(&log, libc::O_CREAT | libc::O_WRONLY | libc::O_APPEND, 0o644)?;
    let mut ops = 0;
    let mut arrival = warm.arrival();
    let mut until: Option<Until> = None;
    let mut first = 0.0;
    let mut k = 0u64;
    loop {
        match until {
            None if k == 1 => {
                first = reads.first().copied().unwrap_or(0.0);
                (reads, appends, ops) = (Vec::new(), Vec::new(), 0);
                arrival.arrive();
                until = Some(Until::new(u64::from(p.loops), p.min_time));
                k = 0;
            }
            Some(u) if !u.more(k) => break,
            _ => {}
        }
        for _ in 0..10 {
            let c = &names[rng.below(names.len() as u64) as usize];
            let n = timed(&mut reads, || {
                let fd = sys::open(c, libc::O_RDONLY, 0)?;
                let n = sys::read_to_end(fd, &mut buf)?;
                sys::close(fd)?;
                Ok(n)
            })?;
            if n != www_size(p) as u64 {
                return Err(io::Error::other(format!("read {n} bytes of a {} byte file", www_size(p))));
            }
        }
        timed(&mut appends, || sys::write_all(logfd, &entry))?;
        ops += 11;
        k += 1;
    }
    sys::close(logfd)?;
    sys::unlink(&log)?;
    Ok((ops, reads, appends, first))
}

pub fn run(job: &Job, rng: &mut Rng) -> io::Result<Output> {
    if job.params.files == 0 {
        return Err(io::Error::other("webserver needs --files of at least 1"));
    }
    let threads = job.params.threads_of("webserver");
    let warm = Warmup::new(threads);
    let results = in_threads(threads, rng, |t, r| thread(job, t, r, &warm))?;
    let (mut total, mut reads, mut appends, mut firsts) = (0, Vec::new(), Vec::new(), Vec::new());
    for (n, r, a, f) in results {
        total += n;
        reads.extend(r);
        appends.extend(a);
        firsts.push(f);
    }
    let mut out = Output::default();
    out.span("webserver", "ops/s", total as f64, warm.started());
    out.latency("read whole", reads);
    out.latency("append log", appends);
    out.latency(super::FIRST_OP, firsts);
    Ok(out)
}
