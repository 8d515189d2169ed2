//! A pool with its service and one mount, beside a plain directory to compare with: the stage
//! of the tests that run programs under the preload library on the mount and plainly on the
//! directory (`preload_programs.rs`, `entry_points.rs`). The pool goes when the stage is
//! destroyed, or when its [`Host`] is dropped (a failing test).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::host::{stderr, Host};

/// A pool with its service and one mount (lower and upper branches), and a plain directory.
pub struct Stage {
    pub h: Host,
    pub name: String,
    pub mnt: PathBuf,
    pub plain: PathBuf,
}

/// `program` run under the library in `pool` when given (`exec --preload-only`), else plainly.
pub fn command(h: &Host, pool: Option<&str>, program: &Path) -> Command {
    match pool {
        Some(p) => {
            let mut c = h.cmd();
            c.args(["exec", "--pool", p, "--preload-only", "--"]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// Runs `script` with bash in `dir`: under the library in `pool` when given, else plainly.
pub fn bash(h: &Host, pool: Option<&str>, dir: &Path, script: &str) -> Output {
    command(h, pool, Path::new("bash"))
        .args(["-c", script])
        .current_dir(dir)
        .env("LC_ALL", "C")
        .env("STDIO_PROGRAM", h.scratch.path().join("stdio"))
        .output()
        .expect("run bash")
}

/// Reads or writes (`op`) a mount's user-level path served: by the service, through the
/// backing file's descriptors it passed (counted by the opens that passed one, and by the
/// data calls made on them, `passed_data`, which their releases report), or, for reads,
/// from the bytes that came with an open (counted by those opens).
pub fn user_data(mount: &serde_json::Value, op: &str) -> u64 {
    let prefetched = if op == "read" { mount["user_prefetched_opens"].as_u64().unwrap_or(0) } else { 0 };
    count(mount, "user_ops", op) + mount["user_passthrough_opens"].as_u64().unwrap_or(0) + count(mount, "user_ops", "passed_data") + prefetched
}

/// Count of request kind `op` on `path` (`user_ops`, `fuse_ops`) of a mount's counters.
pub fn count(mount: &serde_json::Value, path: &str, op: &str) -> u64 {
    mount[path][op]["count"].as_u64().unwrap_or(0)
}

impl Stage {
    /// `prepare` fills the lower branch and the plain directory alike first.
    pub fn new(tag: &str, pool: &str, prepare: impl Fn(&Path)) -> Stage {
        Stage::on_cpus(tag, pool, "1", prepare)
    }

    /// As `new`, with the pool on `cpus` (`--cpus`).
    pub fn on_cpus(tag: &str, pool: &str, cpus: &str, prepare: impl Fn(&Path)) -> Stage {
        Stage::mounted_with(tag, pool, cpus, &[], prepare)
    }

    /// As `on_cpus`, with `mount_args` added to the mount (`--no-passthrough`, `--cache ...`).
    pub fn mounted_with(tag: &str, pool: &str, cpus: &str, mount_args: &[&str], prepare: impl Fn(&Path)) -> Stage {
        let mut h = Host::new(tag);
        let name = h.create(pool, &["--cpus", cpus]);
        h.ok(&["service", "run", "--pool", &name, "--detach"]);
        let (lower, upper, mnt, plain) = (h.scratch.mkdir("lower"), h.scratch.mkdir("upper"), h.scratch.mkdir("mnt"), h.scratch.mkdir("plain"));
        prepare(&lower);
        prepare(&plain);
        let (l, u, m) = (lower.display().to_string(), upper.display().to_string(), mnt.display().to_string());
        let mut args = vec!["mount", "--pool", &name, &m, "--lower", &l, "--upper", &u];
        args.extend_from_slice(mount_args);
        h.ok(&args);
        Stage { h, name, mnt, plain }
    }

    /// Compiles `tests/c/SRC.c` into the scratch directory.
    pub fn compile(&self, src: &str) -> PathBuf {
        self.compile_with(src, src, &[])
    }

    /// Compiles `tests/c/SRC.c` with `flags` into the scratch directory as `out`.
    pub fn compile_with(&self, src: &str, out: &str, flags: &[&str]) -> PathBuf {
        let exe = self.h.scratch.path().join(out);
        let cc = Command::new("gcc")
            .args(flags)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/c/{src}.c")))
            .arg("-o")
            .arg(&exe)
            .output()
            .expect("gcc");
        assert!(cc.status.success(), "{}", stderr(&cc));
        exe
    }

    /// `program` under the library in this stage's pool (`preloaded`), or plainly.
    pub fn command(&self, preloaded: bool, program: &Path) -> Command {
        command(&self.h, preloaded.then_some(self.name.as_str()), program)
    }

    /// `script` on the plain directory (which must succeed) and on the mount under the library.
    pub fn both(&self, script: &str) -> (Output, Output) {
        let expected = bash(&self.h, None, &self.plain, script);
        assert!(expected.status.success(), "the script fails on a plain directory: {}", stderr(&expected));
        (expected, bash(&self.h, Some(&self.name), &self.mnt, script))
    }

    /// The service's counters of the mount (`user_ops`, `fuse_ops`).
    pub fn counters(&self) -> serde_json::Value {
        let json: serde_json::Value = serde_json::from_str(&self.h.ok(&["inspect", "--pool", &self.name, "--format", "json"])).expect("json");
        json[0]["service"]["mounts"][0].clone()
    }

    /// The pool's service log (for a failure's message): what the service said meanwhile.
    pub fn service_log(&self) -> String {
        let log = self.h.pools().service(&self.name).ok().flatten().and_then(|s| s.log);
        log.and_then(|l| std::fs::read_to_string(l).ok()).unwrap_or_else(|| "(no service log)".into())
    }

    pub fn destroy(mut self) {
        self.h.ok(&["pool", "destroy", &self.name, "--force"]);
        self.h.created.clear();
    }
}
