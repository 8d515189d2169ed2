//! The service's own descriptor limit. Objects a mount's kernel side or the service's caches
//! remember hold `O_PATH` descriptors in the local backend (up to a bound per backend, more
//! where file handles cannot be used), and every open file holds one; the limit the service
//! inherited from whoever started it (often 1,024) would make every other container of the
//! pool fail with `EMFILE`. The service raises its soft limit to its hard limit, and the hard
//! limit to the kernel's `fs.nr_open` when it may (root).

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use tracing::{info, warn};

/// The kernel's ceiling for `RLIMIT_NOFILE` (`/proc/sys/fs/nr_open`), if readable.
fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open").ok()?.trim().parse().ok()
}

/// Raises `RLIMIT_NOFILE` as far as this process may. Failure is logged, not fatal: the
/// service then runs with what it has, and `inspect` shows it.
pub fn raise_descriptor_limit() {
    let old = getrlimit(Resource::Nofile);
    let hard = match (old.maximum, nr_open()) {
        (Some(h), Some(n)) => Some(h.max(n)),
        (h, _) => h,
    };
    let want = Rlimit { current: hard, maximum: hard };
    if setrlimit(Resource::Nofile, want).is_err() {
        // Not allowed to raise the hard limit: the soft one up to the hard one at least.
        let soft = Rlimit { current: old.maximum, maximum: old.maximum };
        if let Err(e) = setrlimit(Resource::Nofile, soft) {
            warn!("cannot raise the descriptor limit from {:?}: {e}", old.current);
            return;
        }
    }
    info!("descriptor limit {:?} (was {:?})", getrlimit(Resource::Nofile).current, old.current);
}

/// The soft descriptor limit now (`u64::MAX` when unlimited).
pub fn descriptor_limit() -> u64 {
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Descriptors this process holds now.
pub fn open_descriptors() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count().saturating_sub(1) as u64)
}
