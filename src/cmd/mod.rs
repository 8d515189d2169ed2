//! One module per subcommand; each is thin and calls into the library.

pub mod bench;
pub mod completions;
pub mod exec;
pub mod helpers;
pub mod image;
pub mod inspect;
pub mod install_links;
pub mod kill;
pub mod man;
pub mod mount;
pub mod pool;
pub mod rm;
pub mod service;
pub mod umount;


/// The answer of a command whose issue has not landed: exit status 2, and no pretending.
/// Re-runs this very command without `--detach` as a daemon in its own process group, its
/// stderr going to `log` (whose path it also gets in `log_env`), and waits until `ready()`
/// says it is up. Returns the daemon's pid; fails with its log when it exits first.
pub fn spawn_detached(
    what: &str,
    log: &std::path::Path,
    log_env: &str,
    envs: &[(&str, &str)],
    timeout: std::time::Duration,
    mut ready: impl FnMut(u32) -> anyhow::Result<bool>,
) -> anyhow::Result<u32> {
    use anyhow::{bail, Context};
    use std::os::unix::process::CommandExt;
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let log_file = {
        use std::os::unix::fs::OpenOptionsExt;
        // Appending: a detached container's monitor writes to it beside its copy of the
        // container's output (`container::log`).
        let f = std::fs::OpenOptions::new().append(true).create(true).custom_flags(libc::O_TRUNC).mode(0o600).open(log).with_context(|| format!("cannot create {}", log.display()))?;
        // A log of an older version keeps the mode it was made with.
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600)).with_context(|| format!("cannot chmod {}", log.display()))?;
        f
    };
    let exe = polytropon::container::sealed::origin_exe().context("cannot find the polytropon binary")?;
    let args = without_detach(std::env::args_os().skip(1));
    let mut child = std::process::Command::new(exe)
        .args(args)
        .env(log_env, log)
        .envs(envs.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log_file)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start the {what}"))?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if ready(child.id())? {
            return Ok(child.id());
        }
        if let Some(status) = child.try_wait().with_context(|| format!("cannot wait for the {what}"))? {
            let msg = std::fs::read_to_string(log).unwrap_or_default();
            bail!("the {what} exited ({status}): {}", msg.trim());
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            bail!("the {what} did not come up within {} s; see {}", timeout.as_secs(), log.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The command line again without its `--detach` flag: polytropon's own (before `--`), never
/// an argument of the command a container runs (`exec ... --detach -- server --detach`).
fn without_detach(args: impl IntoIterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut command = false;
    args.into_iter()
        .filter(|a| {
            if command {
                return true;
            }
            command = a == "--";
            a != "--detach"
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_our_own_detach_flag_is_dropped() {
        let args = ["exec", "--pool", "p", "--detach", "--clone-of", "img", "--", "server", "--detach", "--"];
        let kept = super::without_detach(args.iter().map(std::ffi::OsString::from));
        assert_eq!(kept, ["exec", "--pool", "p", "--clone-of", "img", "--", "server", "--detach", "--"].map(std::ffi::OsString::from));
    }
}
