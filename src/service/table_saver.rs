//! Writing the filesystem table durably, once for every change made while the previous write
//! was going on (a group commit).
//!
//! A mount is acknowledged only once the table that holds it is on disk (a restarted service
//! serves what the table says). Writing it under the table's lock made concurrent mounts wait
//! for one `fsync` each, in turn: 64 clones started at once paid 64 `fsync`s one after another.
//! Now a change stages the table's new text under the lock (so versions follow the table's
//! order) and waits outside it; one writer at a time writes the newest staged text, which
//! covers every change staged before it.

use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard};

use tracing::warn;

#[derive(Debug, Default)]
struct State {
    /// The newest staged text and its version, not yet taken by a writer.
    staged: Option<(u64, String)>,
    /// Versions handed out, and the newest one on disk.
    next: u64,
    saved: u64,
    writing: bool,
    /// The service stops: nothing is written any more.
    closed: bool,
}

/// The filesystem table's writer.
#[derive(Debug)]
pub struct TableSaver {
    path: PathBuf,
    state: Mutex<State>,
    done: Condvar,
}

impl TableSaver {
    pub fn new(path: PathBuf) -> Self {
        TableSaver { path, state: Mutex::new(State::default()), done: Condvar::new() }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stages `text` as the table's newest content (call it under the table's lock); the
    /// version to wait for.
    pub fn stage(&self, text: String) -> u64 {
        let mut st = self.lock();
        st.next += 1;
        let v = st.next;
        st.staged = Some((v, text));
        v
    }

    /// Returns once version `v` or a later one is on disk (or failed to be written, which is
    /// logged, or the saver is closed), writing it if no one else is.
    pub fn wait(&self, v: u64) {
        let mut st = self.lock();
        loop {
            if st.saved >= v {
                return;
            }
            if st.writing {
                st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            if st.closed {
                return;
            }
            let Some((version, text)) = st.staged.take() else { return };
            st.writing = true;
            drop(st);
            // Marks the write done however it ends (a panic included), or every later waiter
            // would wait for good.
            let done = Done { saver: self, version };
            if let Err(e) = super::records::write_atomic(&self.path, text.as_bytes()) {
                warn!("cannot write the filesystem table: {e}");
            }
            drop(done);
            st = self.lock();
        }
    }

    /// Waits for a write in progress, then lets no other start (the service stops and
    /// removes the table).
    pub fn close(&self) {
        let mut st = self.lock();
        while st.writing {
            st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st.closed = true;
        st.staged = None;
    }
}

/// The end of one write of the table.
struct Done<'a> {
    saver: &'a TableSaver,
    version: u64,
}

impl Drop for Done<'_> {
    fn drop(&mut self) {
        let mut st = self.saver.lock();
        st.saved = st.saved.max(self.version);
        st.writing = false;
        self.saver.done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_waiter_returns_after_a_write_that_covers_its_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mounts.yaml");
        let saver = std::sync::Arc::new(TableSaver::new(path.clone()));
        let table = std::sync::Arc::new(Mutex::new(Vec::<u32>::new()));
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let (saver, table, path) = (saver.clone(), table.clone(), path.clone());
                std::thread::spawn(move || {
                    let v = {
                        let mut t = table.lock().expect("table");
                        t.push(i);
                        saver.stage(format!("{:?}", *t))
                    };
                    saver.wait(v);
                    // What is on disk now holds this change.
                    let text = std::fs::read_to_string(&path).expect("table written");
                    assert!(text.trim_start_matches('[').trim_end_matches(']').split(", ").any(|x| x == i.to_string()), "{text} lacks {i}");
                })
            })
            .collect();
        for t in threads {
            t.join().expect("waiter");
        }
        let last = std::fs::read_to_string(&path).expect("table");
        assert_eq!(last.split(", ").count(), 16, "the newest table is the last written: {last}");
        // Closed (the service stops and removes the table): nothing is written any more.
        saver.close();
        std::fs::remove_file(&path).expect("remove the table");
        let v = saver.stage("[late]".into());
        saver.wait(v);
        assert!(!path.exists(), "a write after close put the table back");
    }
}
