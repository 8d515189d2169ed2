//! Where a shared-memory worker runs: pinned to its queue's cpu, or moved off a cpu it shares
//! with the client it serves.
//!
//! A client and the worker serving it that the scheduler put on one cpu take turns on it (a
//! context switch per request, ~5 µs instead of ~1.5), while another of the pool's cpus may sit
//! idle: both are always runnable and recently run ("cache hot"), so the load balancer leaves
//! them together for many milliseconds. Requests flagged `FLAG_NEAR` tell the worker; after
//! [`HOP_AFTER`] in a row it moves itself to another cpu it may use.

use std::time::{Duration, Instant};

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use tracing::{debug, warn};

/// Requests in a row from a client on the worker's cpu before the worker moves.
pub const HOP_AFTER: u32 = 16;
/// Least time between two moves of one worker (when every other cpu is busy, the scheduler
/// may bring the pair together again at once: then moving is wasted work).
const HOP_EVERY: Duration = Duration::from_millis(20);

/// Pins the calling thread to `cpu`.
pub fn pin(cpu: usize) {
    let mut set = CpuSet::new();
    if set.set(cpu).is_ok() {
        if let Err(e) = sched_setaffinity(Pid::from_raw(0), &set) {
            warn!("cannot pin a shared-memory worker to cpu {cpu}: {e}");
        }
    }
}

/// The queue a client of thread `tid` on cpu `cpu` (plus one; 0: unknown) sends its first
/// request to, as `Client::finish` and `Client::near_worker` choose it, given the cpu (plus
/// one) each queue's worker last ran on: its own queue unless that worker runs on its cpu,
/// else the next one whose worker runs elsewhere. `None` without the cpu or a queue.
pub fn likely_queue(tid: u32, cpu: u32, queues: u32, worker_cpu: impl Fn(u32) -> u32) -> Option<u32> {
    if queues == 0 || cpu == 0 {
        return None;
    }
    let first = tid % queues;
    (0..queues).map(|i| (first + i) % queues).find(|&q| worker_cpu(q) != cpu)
}

/// A yield that kept a worker off its cpu longer than this gave the cpu to a thread that ran
/// a whole scheduler slice; a thread that yielded runs again only when that slice ends (up
/// to a tick, 4 ms), while a request that arrives meanwhile waits.
const COSTLY_YIELD: Duration = Duration::from_micros(50);

/// Yields the cpu; whether that was costly (see [`COSTLY_YIELD`]).
pub fn costly_yield() -> bool {
    let before = Instant::now();
    std::thread::yield_now();
    before.elapsed() > COSTLY_YIELD
}

/// Counts requests from clients on the worker's cpu and moves the worker when they keep
/// coming.
#[derive(Debug, Default)]
pub struct Hopper {
    near_run: u32,
    last: Option<Instant>,
    /// Moves made (for tests and counters).
    pub hops: u64,
}

impl Hopper {
    /// Notes a request (`near`: sent from this thread's cpu); moves this thread off its cpu
    /// after [`HOP_AFTER`] such requests in a row. Returns whether it moved.
    pub fn note(&mut self, near: bool) -> bool {
        if !near {
            self.near_run = 0;
            return false;
        }
        self.near_run += 1;
        if self.near_run < HOP_AFTER || self.last.is_some_and(|t| t.elapsed() < HOP_EVERY) {
            return false;
        }
        self.near_run = 0;
        self.last = Some(Instant::now());
        let moved = hop();
        self.hops += u64::from(moved);
        moved
    }
}

/// Moves the calling thread off its current cpu, to another it may run on, and then lets it
/// run on all of them again. False when it may run on one cpu only, or on failure.
fn hop() -> bool {
    let Ok(allowed) = sched_getaffinity(Pid::from_raw(0)) else { return false };
    let Ok(here) = usize::try_from(polytropon_ipc::current_cpu().wrapping_sub(1)) else { return false };
    let mut elsewhere = allowed;
    if elsewhere.unset(here).is_err() || !(0..CpuSet::count()).any(|c| elsewhere.is_set(c).unwrap_or(false)) {
        return false;
    }
    // The kernel migrates the thread before the call returns; the second call only widens the
    // mask again, leaving the thread where it now is.
    if let Err(e) = sched_setaffinity(Pid::from_raw(0), &elsewhere) {
        debug!("cannot move a shared-memory worker off cpu {here}: {e}");
        return false;
    }
    if let Err(e) = sched_setaffinity(Pid::from_raw(0), &allowed) {
        warn!("cannot give a shared-memory worker its cpus back: {e}");
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(cpus: &[usize]) {
        let mut set = CpuSet::new();
        for &c in cpus {
            set.set(c).expect("cpu number");
        }
        sched_setaffinity(Pid::from_raw(0), &set).expect("setaffinity");
    }

    fn allowed() -> Vec<usize> {
        let set = sched_getaffinity(Pid::from_raw(0)).expect("getaffinity");
        (0..CpuSet::count()).filter(|&c| set.is_set(c).unwrap_or(false)).collect()
    }

    #[test]
    fn a_client_s_first_request_is_expected_where_the_client_will_send_it() {
        // Two queues whose workers last ran on cpus 0 and 1 (1 and 2 as numbered here).
        let workers = |q: u32| q + 1;
        // Its own queue (by thread id) when that worker runs elsewhere.
        assert_eq!(likely_queue(7, 1, 2, workers), Some(1));
        assert_eq!(likely_queue(8, 2, 2, workers), Some(0));
        // Else the next queue whose worker runs elsewhere.
        assert_eq!(likely_queue(7, 2, 2, workers), Some(0));
        assert_eq!(likely_queue(8, 1, 2, workers), Some(1));
        // Workers that have not run yet (cpu 0: unknown) are elsewhere.
        assert_eq!(likely_queue(5, 1, 4, |_| 0), Some(1));
        // No hint, no queue, or every worker on the client's cpu: nothing to expect.
        assert_eq!(likely_queue(7, 0, 2, workers), None);
        assert_eq!(likely_queue(7, 1, 0, workers), None);
        assert_eq!(likely_queue(7, 3, 2, |_| 3), None);
        // A hostile hint names no queue out of range.
        assert!(likely_queue(u32::MAX, u32::MAX, 3, workers).is_some_and(|q| q < 3));
    }

    #[test]
    fn a_worker_moves_off_a_shared_cpu_after_a_run_of_near_requests_only() {
        if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
            eprintln!("skipped: needs two cpus");
            return;
        }
        std::thread::spawn(|| {
            allow(&[0, 1]);
            let mut h = Hopper::default();
            // A run broken by a request from elsewhere starts again.
            for _ in 0..HOP_AFTER - 1 {
                assert!(!h.note(true));
            }
            assert!(!h.note(false));
            for _ in 0..HOP_AFTER - 1 {
                assert!(!h.note(true));
            }
            let before = polytropon_ipc::current_cpu();
            let hopped = Instant::now();
            assert!(h.note(true), "the run's last request moves the worker");
            assert_ne!(polytropon_ipc::current_cpu(), before, "it runs on another cpu");
            assert_eq!(allowed(), vec![0, 1], "and may run on both again");
            // Not again within `HOP_EVERY` (a loaded machine may take that long for the next
            // run: then a move is right).
            for _ in 0..HOP_AFTER {
                if h.note(true) {
                    assert!(hopped.elapsed() >= HOP_EVERY, "moved again {:?} after the first move", hopped.elapsed());
                }
            }
            assert!(h.hops == 1 || hopped.elapsed() >= HOP_EVERY, "{} moves within {:?}", h.hops, hopped.elapsed());
            // A worker pinned to one cpu stays.
            allow(&[1]);
            std::thread::sleep(HOP_EVERY);
            for _ in 0..HOP_AFTER {
                assert!(!h.note(true));
            }
            assert_eq!(allowed(), vec![1]);
        })
        .join()
        .expect("test thread");
    }
}
