//! A detached container's log, kept bounded: the command writes into a pipe, the runtime
//! (its monitor) copies what comes into the log file, and once the file holds [`LOG_CAP`]
//! bytes it becomes `<log>.1` (replacing an older one) and a new file starts. The host keeps
//! at most two files of a container's output, however much it writes (as `docker`'s
//! `max-size`/`max-file`).

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use nix::errno::Errno;

/// Bytes of output one log file holds before it is rotated.
pub const LOG_CAP: u64 = 16 << 20;

/// Bytes copied from the pipe before the monitor looks at its signals again.
const COPY_ROUND: usize = 1 << 20;

/// The path of the older log, next to `log`.
pub fn rotated(log: &std::path::Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// The monitor's end of the output pipe and the file it copies into.
#[derive(Debug)]
pub struct CappedLog {
    pipe: OwnedFd,
    path: PathBuf,
    file: File,
    size: u64,
    cap: u64,
}

impl CappedLog {
    /// Copies from `pipe` (the read end, made non-blocking here) into the log at `path`, which
    /// `exec --detach` made and this process's stderr already writes to (appending).
    pub fn new(pipe: OwnedFd, path: PathBuf) -> std::io::Result<CappedLog> {
        Self::with_cap(pipe, path, LOG_CAP)
    }

    fn with_cap(pipe: OwnedFd, path: PathBuf, cap: u64) -> std::io::Result<CappedLog> {
        nix::fcntl::fcntl(&pipe, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK)).map_err(std::io::Error::from)?;
        let file = append_to(&path, false)?;
        let size = file.metadata()?.len();
        Ok(CappedLog { pipe, path, file, size, cap })
    }

    pub fn pipe(&self) -> BorrowedFd<'_> {
        self.pipe.as_fd()
    }

    /// Copies what the pipe holds now, at most [`COPY_ROUND`] bytes (the monitor's other
    /// work, forwarding signals, waits no longer than that for a writer that never pauses);
    /// false once every writer has closed it (or it failed).
    pub fn copy(&mut self, buf: &mut [u8]) -> bool {
        self.copy_at_most(buf, COPY_ROUND)
    }

    /// Copies all the pipe holds now (once the container has ended).
    pub fn drain(&mut self, buf: &mut [u8]) {
        self.copy_at_most(buf, usize::MAX);
    }

    fn copy_at_most(&mut self, buf: &mut [u8], round: usize) -> bool {
        let mut copied = 0usize;
        loop {
            if copied >= round {
                return true;
            }
            match nix::unistd::read(&self.pipe, buf) {
                Ok(0) => return false,
                Ok(n) => {
                    self.write(&buf[..n]);
                    copied = copied.saturating_add(n);
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return true,
                Err(_) => return false,
            }
        }
    }

    fn write(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.size >= self.cap && self.rotate().is_err() {
                // No new file: the output is dropped rather than let grow past the cap.
                return;
            }
            let room = (self.cap - self.size).min(data.len() as u64) as usize;
            if self.file.write_all(&data[..room]).is_err() {
                return;
            }
            self.size += room as u64;
            data = &data[room..];
        }
    }

    /// The full log becomes `<log>.1`; a new one starts, and this process's own messages
    /// (its stderr) follow it there.
    fn rotate(&mut self) -> std::io::Result<()> {
        std::fs::rename(&self.path, rotated(&self.path))?;
        self.file = append_to(&self.path, true)?;
        self.size = 0;
        // SAFETY: dup2 onto the standard error number of this single-threaded monitor; the
        // source is the open file just made.
        unsafe { libc::dup2(self.file.as_raw_fd(), libc::STDERR_FILENO) };
        Ok(())
    }
}

/// The log at `path` opened to append (`fresh`: made anew, owner-only).
fn append_to(path: &std::path::Path, fresh: bool) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.append(true).mode(0o600);
    if fresh {
        o.create_new(true);
    }
    o.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_past_its_cap_is_rotated_and_keeps_the_newest_output() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        std::fs::write(&path, b"monitor says hi\n").expect("log");
        let (r, w) = nix::unistd::pipe().expect("pipe");
        let mut log = CappedLog::with_cap(r, path.clone(), 1000).expect("log");
        let mut buf = vec![0u8; 300];
        let mut written = Vec::new();
        for i in 0..40u32 {
            let line = format!("line {i:04} {}\n", "x".repeat(40));
            nix::unistd::write(&w, line.as_bytes()).expect("write");
            written.extend_from_slice(line.as_bytes());
            assert!(log.copy(&mut buf), "the pipe is still open");
        }
        drop(w);
        assert!(!log.copy(&mut buf), "every writer closed the pipe");
        let (new, old) = (std::fs::read(&path).expect("log"), std::fs::read(rotated(&path)).expect("log.1"));
        assert!(new.len() as u64 <= 1000 && old.len() == 1000, "{} {}", new.len(), old.len());
        // The two files hold the newest output, in order, without a gap.
        let kept = [old, new].concat();
        assert!([b"monitor says hi\n".as_slice(), &written].concat().ends_with(&kept), "the newest output is kept whole");
        assert!(kept.ends_with(b"line 0039 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"));
    }
}
