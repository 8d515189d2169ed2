//! The FUSE adapter's worker threads.
//!
//! fuser reads kernel requests on one thread; replies are `Send`, so requests that may block
//! (data I/O, namespace changes, anything that may copy up) are handed to these workers and
//! answered from there, so that many requests are served at once.

use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use tracing::warn;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed set of threads running jobs in arrival order, started on the first job: on the
/// io_uring transport the ring threads serve requests themselves, and a mount's workers are
/// seldom needed (64 clones mounted at once started 256 idle threads).
#[derive(Debug)]
pub struct Workers {
    n: usize,
    started: OnceLock<Started>,
}

#[derive(Debug)]
struct Started {
    tx: Mutex<Option<Sender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Workers {
    /// Workers for `n` (at least one) threads named `ptn-fuse-N`, none started yet.
    pub fn new(n: usize) -> Self {
        Workers { n: n.max(1), started: OnceLock::new() }
    }

    fn start(&self) -> &Started {
        self.started.get_or_init(|| {
            let (tx, rx): (Sender<Job>, Receiver<Job>) = crossbeam_channel::unbounded();
            let mut threads = Vec::with_capacity(self.n);
            for i in 0..self.n {
                let rx = rx.clone();
                let spawned = std::thread::Builder::new().name(format!("ptn-fuse-{i}")).spawn(move || {
                    for job in rx.iter() {
                        job();
                    }
                });
                match spawned {
                    Ok(t) => threads.push(t),
                    Err(e) => warn!("cannot start a FUSE worker thread: {e}"),
                }
            }
            // With no thread at all, jobs run on the caller's thread.
            let tx = (!threads.is_empty()).then_some(tx);
            Started { tx: Mutex::new(tx), threads: Mutex::new(threads) }
        })
    }

    /// Queues `job`, starting the threads on the first one (runs it on the caller's thread
    /// when none could start).
    pub fn run(&self, job: impl FnOnce() + Send + 'static) {
        let tx = self.start().tx.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match tx {
            Some(tx) => {
                if let Err(e) = tx.send(Box::new(job)) {
                    (e.into_inner())();
                }
            }
            None => job(),
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        let Some(started) = self.started.get() else { return };
        // Closing the channel lets every worker finish the queued jobs and exit.
        started.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        for t in started.threads.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_start_with_the_first_job_and_every_job_runs() {
        let w = Workers::new(3);
        assert!(w.started.get().is_none());
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 0..50 {
            let tx = tx.clone();
            w.run(move || {
                let _ = tx.send((i, std::thread::current().name().map(str::to_string)));
            });
        }
        drop(tx);
        let got: Vec<_> = rx.iter().collect();
        assert_eq!(got.len(), 50);
        assert!(got.iter().all(|(_, name)| name.as_deref().is_some_and(|n| n.starts_with("ptn-fuse-"))));
        assert_eq!(w.started.get().map(|s| s.threads.lock().map(|t| t.len()).unwrap_or(0)), Some(3));
        drop(w);
    }
}
