//! `webserver`, after Filebench's webserver personality: threads each loop over ten
//! whole-file reads of small files of the shared lower layer and a 16 KiB append to a log
//! (one per thread).

use std::io;

use super::data::www_size;
use super::{in_threads, timed, Job, Output, Rng};
use crate::bench::sys;

const LOG_APPEND: usize = 16 * 1024;

fn thread(job: &Job, t: u32, mut rng: Rng) -> io::Result<(u64, Vec<f64>, Vec<f64>)> {
    let p = &job.params;
    let dir = job.root.join("www");
    let names: Vec<_> = (0..p.files).map(|i| sys::cpath(&dir.join(format!("f{i}")))).collect::<io::Result<_>>()?;
    let log = sys::cpath(&job.root.join(format!("log-{:x}-{t}", job.seed)))?;
    let mut buf = vec![0u8; www_size(p).next_power_of_two()];
    let entry = vec![b'l'; LOG_APPEND];
    let (mut reads, mut appends) = (Vec::new(), Vec::new());
    let logfd = sys::open(&log, libc::O_CREAT | libc::O_WRONLY | libc::O_APPEND, 0o644)?;
    let mut ops = 0;
    for _ in 0..p.loops {
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
    }
    sys::close(logfd)?;
    Ok((ops, reads, appends))
}

pub fn run(job: &Job, rng: &mut Rng) -> io::Result<Output> {
    if job.params.files == 0 {
        return Err(io::Error::other("webserver needs --files of at least 1"));
    }
    let start = sys::now();
    let results = in_threads(job.params.threads_of("webserver"), rng, |t, r| thread(job, t, r))?;
    let (mut total, mut reads, mut appends) = (0, Vec::new(), Vec::new());
    for (n, r, a) in results {
        total += n;
        reads.extend(r);
        appends.extend(a);
    }
    let mut out = Output::default();
    out.span("webserver", "ops/s", total as f64, start);
    out.latency("read whole", reads);
    out.latency("append log", appends);
    Ok(out)
}
