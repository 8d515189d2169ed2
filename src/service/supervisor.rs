//! `service run --restart`: a supervisor process runs the pool's service as its child and
//! starts it again when it dies (killed, crashed, or failed after it was up). The new service
//! removes the dead one's mounts and segment and serves the table the dead one recorded, each
//! mount under its old user-level index, so that new opens work again, through the legacy
//! mounts and through the libraries of running processes (which move to the new segment).
//!
//! The supervisor stays where it was started (the service moves itself into the pool). It ends
//! when the service exits cleanly (`service stop`), when it is told to stop (SIGINT, SIGTERM,
//! SIGHUP: passed on to the service as SIGTERM), or after too many deaths in a row.

use std::ffi::OsString;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};
use tracing::{info, warn};

use crate::pool::Pools;

/// Set in the service's environment: the supervisor's pid (recorded with the service).
pub const SUPERVISOR_ENV: &str = "POLYTROPON_SUPERVISOR";
/// Set in a restarted service's environment: serve the recorded table.
pub const RECOVER_ENV: &str = "POLYTROPON_RECOVER";

/// Deaths within `WINDOW` after which the supervisor gives up.
const MAX_DEATHS: usize = 5;
const WINDOW: Duration = Duration::from_secs(60);
/// First wait before a restart; doubled for each recent death, at most `MAX_BACKOFF`.
const BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Why the supervisor stopped supervising.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("cannot block signals")]
    Signals(#[source] nix::Error),
    #[error("cannot {what}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the service of pool {pool} did not start ({status})")]
    NeverUp { pool: String, status: std::process::ExitStatus },
    #[error("the service of pool {pool} died {deaths} times within {window} s; not starting it again")]
    TooManyDeaths { pool: String, deaths: usize, window: u64 },
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> SupervisorError {
    move |source| SupervisorError::Io { what, source }
}

/// Runs `polytropon ARGS` (a `service run` without `--restart`) for pool `pool` until it exits
/// cleanly or this process is told to stop.
pub fn supervise(pools: &Pools, pool: &str, args: &[OsString]) -> Result<(), SupervisorError> {
    let mut signals = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(s);
    }
    signals.thread_block().map_err(SupervisorError::Signals)?;
    let stop = Arc::new(AtomicBool::new(false));
    let child_pid = Arc::new(AtomicI32::new(0));
    {
        let (stop, child_pid) = (stop.clone(), child_pid.clone());
        std::thread::Builder::new().name("ptn-supervisor-signals".into()).spawn(move || {
            while let Ok(sig) = signals.wait() {
                info!("{}: stopping the service", sig.as_str());
                stop.store(true, Ordering::Release);
                pass_stop(child_pid.load(Ordering::Acquire));
            }
        }).map_err(io("start the signal thread"))?;
    }
    let exe = crate::container::sealed::origin_exe().map_err(io("find the polytropon binary"))?;
    let me = std::process::id().to_string();
    let mut deaths: std::collections::VecDeque<Instant> = std::collections::VecDeque::new();
    let mut recover = false;
    loop {
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(args).env(SUPERVISOR_ENV, &me);
        if recover {
            cmd.env(RECOVER_ENV, "1");
        }
        let mut child = cmd.spawn().map_err(io("start the service"))?;
        let pid = child.id() as i32;
        child_pid.store(pid, Ordering::Release);
        if stop.load(Ordering::Acquire) {
            // Told to stop before the child's pid was known.
            pass_stop(pid);
        }
        let status = child.wait().map_err(io("wait for the service"))?;
        child_pid.store(0, Ordering::Release);
        if stop.load(Ordering::Acquire) || status.success() {
            return Ok(());
        }
        // A service that never came up has a problem a restart will not fix.
        let was_up = pools.service(pool).ok().flatten().is_some_and(|r| r.pid == pid as u32);
        if !was_up {
            return Err(SupervisorError::NeverUp { pool: pool.to_string(), status });
        }
        let now = Instant::now();
        deaths.push_back(now);
        while deaths.front().is_some_and(|t| now.duration_since(*t) > WINDOW) {
            deaths.pop_front();
        }
        if deaths.len() > MAX_DEATHS {
            return Err(SupervisorError::TooManyDeaths { pool: pool.to_string(), deaths: deaths.len(), window: WINDOW.as_secs() });
        }
        let wait = BACKOFF.saturating_mul(1 << (deaths.len() - 1)).min(MAX_BACKOFF);
        warn!("the service of pool {pool} (pid {pid}) died ({status}); starting it again in {} ms", wait.as_millis());
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if stop.load(Ordering::Acquire) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        recover = true;
    }
}

/// Asks service `pid` (0: none yet) to stop cleanly.
fn pass_stop(pid: i32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
    }
}
