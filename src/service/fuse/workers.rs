//! The FUSE adapter's worker threads.
//!
//! fuser reads kernel requests on one thread; replies are `Send`, so requests that may block
//! (data I/O, namespace changes, anything that may copy up) are handed to these workers and
//! answered from there, so that many requests are served at once.

use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed set of threads running jobs in arrival order.
#[derive(Debug)]
pub struct Workers {
    tx: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts `n` (at least one) threads named `ptn-fuse-N`.
    pub fn start(n: usize) -> std::io::Result<Self> {
        let (tx, rx): (Sender<Job>, Receiver<Job>) = crossbeam_channel::unbounded();
        let threads = (0..n.max(1))
            .map(|i| {
                let rx = rx.clone();
                std::thread::Builder::new().name(format!("ptn-fuse-{i}")).spawn(move || {
                    for job in rx.iter() {
                        job();
                    }
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Workers { tx: Some(tx), threads })
    }

    /// Queues `job`. After shutdown started, runs it on the caller's thread.
    pub fn run(&self, job: impl FnOnce() + Send + 'static) {
        match &self.tx {
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
        // Closing the channel lets every worker finish the queued jobs and exit.
        self.tx = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
