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
    /// logged), writing it if no one else is.
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
            let Some((version, text)) = st.staged.take() else { return };
            st.writing = true;
            drop(st);
            if let Err(e) = super::records::write_atomic(&self.path, text.as_bytes()) {
                warn!("cannot write the filesystem table: {e}");
            }
            st = self.lock();
            st.saved = st.saved.max(version);
            st.writing = false;
            self.done.notify_all();
        }
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
    }
}
