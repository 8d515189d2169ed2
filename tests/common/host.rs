//! Driving the `polytropon` binary as an operator does, with pools that are force-destroyed
//! when the test ends, pass or fail.

use std::path::PathBuf;
use std::process::{Command, Output};

use polytropon::pool::Pools;

use super::{require_root, Scratch};

/// A state directory whose pools are force-destroyed when the test ends, pass or fail.
pub struct Host {
    pub scratch: Scratch,
    pub state: PathBuf,
    pub tag: String,
    pub created: Vec<String>,
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `cmd` to its end as `Command::output` does, but kills it (and fails the test, naming
/// `what`) after `limit`: a program that hangs under the library must fail the test, not
/// stall the suite.
pub fn output_within(mut cmd: Command, what: &str, limit: std::time::Duration) -> Output {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let err = drain(child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if std::time::Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what}: still running after {limit:?}, killed");
            }
        }
    };
    Output { status, stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() }
}

impl Host {
    pub fn new(tag: &str) -> Self {
        require_root();
        let scratch = Scratch::new(tag);
        let state = scratch.mkdir("state");
        // Cgroup names are global: make this test's pool names unique, also between two
        // tests of one binary that share a tag.
        static HOSTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = HOSTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("{}{}x{n}", tag.replace('-', ""), std::process::id() % 100_000);
        Host { scratch, state, tag, created: Vec::new() }
    }

    pub fn name(&self, n: &str) -> String {
        format!("{}-{n}", self.tag)
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_polytropon"));
        c.arg("--state-dir").arg(&self.state).arg("--data-dir").arg(self.data());
        c
    }

    /// The data directory (images, clones' branches) of this host's commands.
    pub fn data(&self) -> PathBuf {
        self.scratch.path().join("data")
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run polytropon")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "polytropon {args:?} failed: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn create(&mut self, n: &str, args: &[&str]) -> String {
        let name = self.name(n);
        let mut all = vec!["pool", "create", name.as_str()];
        all.extend_from_slice(args);
        // Recorded first: a create that fails half-way is still destroyed at the end.
        self.created.push(name.clone());
        self.ok(&all);
        name
    }

    /// `inspect --format json` of `pool`: its report.
    pub fn inspect(&self, pool: &str) -> serde_json::Value {
        let json: serde_json::Value = serde_json::from_str(&self.ok(&["inspect", "--pool", pool, "--format", "json"])).expect("inspect prints JSON");
        json[0].clone()
    }

    pub fn pools(&self) -> Pools {
        Pools::new(&self.state)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for name in &self.created {
            let _ = self.run(&["pool", "destroy", name, "--force"]);
        }
    }
}

