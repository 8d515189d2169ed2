//! The noisy neighbour of the isolation experiment: threads writing blocks of 4 KiB to 1 MiB
//! at random offsets of their own large files (as stress-ng's random I/O stressors do),
//! leaving dirty pages to the host's flushers and forcing them out every 32 MiB with
//! `fdatasync`, so that the device, the file system's journal and the kernel's writeback
//! stay busy. It runs until it is killed, or its parent is gone.

use std::io;

use super::data::MIB;
use super::{in_threads, Job, Output, Rng};
use crate::bench::sys;

/// Threads of the neighbour.
pub const THREADS: u32 = 2;
/// Bytes a thread writes between two `fdatasync`s.
const SYNC_EVERY: usize = 32 * MIB;

fn thread(job: &Job, t: u32, mut rng: Rng) -> io::Result<()> {
    let c = sys::cpath(&job.root.join(format!("noise-{t}")))?;
    let fd = sys::open(&c, libc::O_CREAT | libc::O_WRONLY, 0o644)?;
    let block = vec![0x77u8; MIB];
    let span = job.params.file_mib.max(1) * MIB as u64;
    let parent = rustix::process::getppid();
    let mut dirty = 0;
    for n in 0u64.. {
        let size = 4096usize << rng.below(9);
        let off = rng.below(span / size as u64) * size as u64;
        sys::pwrite(fd, &block[..size], off)?;
        dirty += size;
        if dirty >= SYNC_EVERY {
            sys::fdatasync(fd)?;
            dirty = 0;
        }
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
