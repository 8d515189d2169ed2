//! The noisy neighbour of the isolation experiment: threads writing blocks of 4 KiB to 1 MiB
//! at random offsets of their own large files, never syncing, so the host fills with dirty
//! pages and its flushers work (as stress-ng's random I/O stressors do). It runs until it is
//! killed, or its parent is gone.

use std::io;

use super::data::MIB;
use super::{in_threads, Job, Output, Rng};
use crate::bench::sys;

/// Threads of the neighbour.
pub const THREADS: u32 = 2;

fn thread(job: &Job, t: u32, mut rng: Rng) -> io::Result<()> {
    let c = sys::cpath(&job.root.join(format!("noise-{t}")))?;
    let fd = sys::open(&c, libc::O_CREAT | libc::O_WRONLY, 0o644)?;
    let block = vec![0x77u8; MIB];
    let span = job.params.file_mib.max(1) * MIB as u64;
    let parent = rustix::process::getppid();
    for n in 0u64.. {
        let size = 4096usize << rng.below(9);
        let off = rng.below(span / size as u64) * size as u64;
        sys::pwrite(fd, &block[..size], off)?;
        if n % 256 == 0 && rustix::process::getppid() != parent {
            break;
        }
    }
    sys::close(fd)
}

pub fn run(job: &Job, rng: &mut Rng) -> io::Result<Output> {
    in_threads(THREADS, rng, |t, r| thread(job, t, r))?;
    Ok(Output::default())
}
