//! Pools and their services on real cgroups, namespaces and FUSE mounts, as an operator drives
//! them from a shell: create, serve, mount, inspect, destroy, and leave the host as it was.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::host::{stderr, Host};

/// Every cgroup directory named `polytropon-NAME` on the host.
fn cgroup_dirs(name: &str) -> Vec<PathBuf> {
    let out = Command::new("find")
        .args(["/sys/fs/cgroup", "-maxdepth", "5", "-type", "d", "-name"])
        .arg(format!("polytropon-{name}"))
        .output()
        .expect("run find");
    String::from_utf8_lossy(&out.stdout).lines().map(PathBuf::from).collect()
}

fn proc_field(pid: u32, file: &str, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
        .unwrap_or_default()
}

fn tasks(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|rd| rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

fn ns(pid: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/ipc")).map(|p| p.display().to_string()).unwrap_or_default()
}

fn mounted(p: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| m.lines().any(|l| l.split(' ').nth(4) == p.to_str()))
}

#[test]
fn two_pools_serve_mounts_on_their_own_cpus_and_leave_nothing_behind() {
    let mut h = Host::new("pools-two");
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").expect("online cpus");
    assert!(online.trim() != "0", "this test needs two cpus");
    let a = h.create("a", &["--cpus", "0", "--memory", "512M", "--pids-max", "256"]);
    let b = h.create("b", &["--cpus", "1", "--cpu-weight", "200"]);
    let mut pids = Vec::new();
    let mut mounts = Vec::new();
    for (name, cpu) in [(&a, "0"), (&b, "1")] {
        let pid: u32 = h.ok(&["service", "run", "--pool", name, "--detach"]).trim().parse().expect("service pid");
        let (lower, upper, mnt) = (h.scratch.mkdir(&format!("{name}/lower")), h.scratch.mkdir(&format!("{name}/upper")), h.scratch.mkdir(&format!("{name}/mnt")));
        std::fs::write(lower.join("image"), b"image").expect("seed");
        let (l, u, m) = (lower.display().to_string(), upper.display().to_string(), mnt.display().to_string());
        h.ok(&["mount", "--pool", name, &m, "--lower", &l, "--upper", &u]);
        std::fs::write(mnt.join("hello"), format!("from {name}")).expect("write through the pool's mount");
        assert_eq!(std::fs::read(upper.join("hello")).expect("upper"), format!("from {name}").as_bytes());
        // The service and every one of its threads: in the pool's cgroups, on the pool's cpus.
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
        for controller in ["cpuset", "memory", "pids", "cpu"] {
            assert!(
                cg.lines().any(|l| l.split(':').nth(1).is_some_and(|c| c.split(',').any(|x| x == controller)) && l.ends_with(&format!("/polytropon-{name}"))),
                "service not in the pool's {controller} cgroup:\n{cg}"
            );
        }
        let threads = tasks(pid);
        assert!(threads.len() > 3, "the service runs several threads");
        for t in threads {
            assert_eq!(proc_field(pid, &format!("task/{t}/status"), "Cpus_allowed_list:"), cpu, "thread {t} of pool {name}");
        }
        pids.push(pid);
        mounts.push(mnt);
    }
    // Private IPC namespaces: different from each other and from the host's.
    let (na, nb) = (ns(&pids[0].to_string()), ns(&pids[1].to_string()));
    assert!(na != nb && na != ns("self") && nb != ns("self"), "{na} {nb}");
    // Shared memory made in pool a is unreachable from pool b and from the host.
    let ipc = |pool: &str| format!("--ipc={}", h.state.join("pools").join(pool).join("ipc").display());
    let made = Command::new("nsenter").arg(ipc(&a)).args(["ipcmk", "-M", "4096"]).output().expect("ipcmk");
    assert!(made.status.success(), "{}", stderr(&made));
    let id = String::from_utf8_lossy(&made.stdout).split_whitespace().last().unwrap_or("").to_string();
    // Segment ids are per namespace: compare the key ipcmk got, not the id.
    let ids = |args: Vec<String>| -> Vec<(String, String)> {
        String::from_utf8_lossy(&Command::new("nsenter").args(args).args(["ipcs", "-m"]).output().expect("ipcs").stdout)
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                Some((f.next()?.to_string(), f.next()?.to_string()))
            })
            .filter(|(key, _)| key.starts_with("0x"))
            .collect()
    };
    let in_a = ids(vec![ipc(&a)]);
    let key = in_a.iter().find(|(_, i)| *i == id).map(|(k, _)| k.clone()).expect("ipcmk's segment listed in pool a");
    assert!(key != "0x00000000", "ipcmk makes a keyed segment");
    assert!(!ids(vec![ipc(&b)]).iter().any(|(k, _)| *k == key), "pool a's segment {key} is visible in pool b");
    let host = String::from_utf8_lossy(&Command::new("ipcs").arg("-m").output().expect("ipcs").stdout).into_owned();
    assert!(!host.lines().any(|l| l.split_whitespace().next() == Some(key.as_str())), "pool a's segment is visible on the host");
    // inspect shows both pools with their services, mounts and FUSE counters.
    let json: serde_json::Value = serde_json::from_str(&h.ok(&["inspect", "--format", "json"])).expect("inspect json");
    let reports = json.as_array().expect("array");
    assert_eq!(reports.len(), 2);
    for (r, pid) in reports.iter().zip(&pids) {
        assert_eq!(r["service"]["pid"].as_u64(), Some(u64::from(*pid)));
        let m = &r["service"]["mounts"][0];
        assert!(m["fuse_ops"]["write"]["count"].as_u64().unwrap_or(0) >= 1, "{m}");
        assert!(r["usage"]["memory_current"].as_u64().unwrap_or(0) > 0);
        assert!(r["usage"]["pids_current"].as_u64().unwrap_or(0) >= 1 || r["pool"]["slice"]["pids_max"].is_null());
        for t in r["service"]["threads"].as_array().expect("threads") {
            assert_eq!(t["allowed"].as_str(), r["pool"]["slice"]["cpus"].as_array().map(|c| c[0].to_string()).as_deref());
        }
    }
    // The user-level path: each service made a segment in its pool's IPC namespace; a client
    // there reaches the pool's instance, and the same id from pool b (or the host) does not.
    std::fs::write(mounts[0].join("only-in-a"), b"0123456789").expect("write in pool a");
    let chan_a = std::ffi::CString::new(reports[0]["service"]["channel"].as_str().expect("channel")).expect("channel path");
    let inst_a = reports[0]["service"]["mounts"][0]["instance"].as_u64().expect("instance") as u32;
    // The pools' lock and records are root's alone: another user who could open the lock
    // could hold it and block `pool create`, and the records name branches and clusters.
    for f in [h.state.join("pools").join(".lock"), h.state.join("pools").join(&a).join("pool.yaml")] {
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&f).expect("pool file").permissions()) & 0o777;
        assert_eq!(mode, 0o600, "{} is {mode:o}", f.display());
    }
    let ns_file = |pool: &str| h.state.join("pools").join(pool).join("ipc");
    let probe = |ns: Option<PathBuf>| {
        let chan_a = chan_a.clone();
        std::thread::spawn(move || -> Option<u64> {
            if let Some(ns) = ns {
                polytropon::pool::ns::join_ipc(&ns).expect("setns into the pool's IPC namespace");
            }
            let mut c = polytropon_ipc::client::Client::connect(&chan_a, 0).ok()?;
            let path = b"only-in-a";
            let d = polytropon_ipc::Descriptor { op: polytropon_ipc::Op::StatPath as u32, instance: inst_a, len: path.len() as u64, ..Default::default() };
            c.call(d, path).ok()?;
            let mut b = [0u8; std::mem::size_of::<polytropon_ipc::WireAttr>()];
            c.data(&mut b);
            Some(polytropon_ipc::WireAttr::from_bytes(&b).size)
        })
        .join()
        .expect("probe thread")
    };
    assert_eq!(probe(Some(ns_file(&a))), Some(10), "a client in pool a reaches pool a's instance over shared memory");
    assert_eq!(probe(Some(ns_file(&b))), None, "pool a's segment is reachable from pool b");
    assert_eq!(probe(None), None, "pool a's segment is reachable from the host");
    let human = h.ok(&["inspect", "--pool", &a]);
    assert!(human.contains(&format!("pool {a}")) && human.contains("fuse write") && !human.contains(&format!("pool {b}")), "{human}");
    let upper_a = h.scratch.path().join(&a).join("upper");
    assert!(human.contains(&format!("{}:rw", upper_a.display())), "branches shown as they are: {human}");
    let list = h.ok(&["pool", "list"]);
    assert!(list.contains(&a) && list.contains(&b) && list.contains(&format!("pid {}", pids[0])), "{list}");
    // A busy pool is not destroyed without --force.
    let out = h.run(&["pool", "destroy", &a]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("busy"), "{}", stderr(&out));
    let dirs_a = cgroup_dirs(&a);
    assert!(dirs_a.len() >= 4, "{dirs_a:?}");
    // service stop + destroy for one, destroy --force for the other.
    h.ok(&["service", "stop", "--pool", &a]);
    assert!(!mounted(&mounts[0]));
    h.ok(&["pool", "destroy", &a]);
    h.ok(&["pool", "destroy", &b, "--force"]);
    for (i, name) in [&a, &b].into_iter().enumerate() {
        assert!(cgroup_dirs(name).is_empty(), "cgroups of {name} left: {:?}", cgroup_dirs(name));
        assert!(!mounted(&mounts[i]), "mount of {name} left");
        assert!(!polytropon::pool::state::pid_alive(pids[i]), "service of {name} still runs");
        assert!(!h.state.join("pools").join(name).exists(), "state of {name} left");
    }
    let ns_files = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!ns_files.contains(h.state.to_str().expect("utf-8")), "a namespace binding is left:\n{ns_files}");
    h.created.clear();
}

#[test]
fn the_memory_limit_holds_inside_the_pool() {
    let mut h = Host::new("pools-mem");
    let name = h.create("m", &["--memory", "64M"]);
    let pool = h.pools().get(&name).expect("state").expect("pool");
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", "import sys; sys.stdin.readline(); b = bytearray(300 << 20); print(len(b))"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start python3");
    pool.cgroups.add_process(child.id()).expect("move the process into the pool");
    use std::io::Write;
    child.stdin.as_mut().expect("stdin").write_all(b"go\n").expect("signal the child");
    let status = child.wait().expect("wait");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "a process over the pool's memory limit is killed ({status:?})");
    let usage = polytropon::pool::cgroups::usage(&pool.cgroups);
    assert_eq!(usage.memory_limit, Some(64 << 20));
    assert!(usage.memory_peak.unwrap_or(u64::MAX) <= 64 << 20, "peak {:?} above the limit", usage.memory_peak);
    h.ok(&["pool", "destroy", &name]);
    h.created.clear();
    assert!(cgroup_dirs(&name).is_empty());
}

#[test]
fn bad_specs_are_refused_by_name_and_leave_nothing() {
    let mut h = Host::new("pools-bad");
    let taken = h.create("taken", &["--cpus", "0"]);
    let spec = h.scratch.path().join("pool.yaml");
    std::fs::write(&spec, "cpus: \"1\"\nmemory: 1G\ncolour: blue\n").expect("write pool.yaml");
    let spec_s = spec.display().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--cpus", "0"], &taken),
        (vec!["--cpus", "0-1"], "already belong to pool"),
        (vec!["--cpus", "7"], "cpu 7 is not online"),
        (vec!["--memory", "8X"], "--memory \"8X\""),
        (vec!["--io-max", "259:99:rbps=1M"], "unknown block device 259:99"),
        (vec!["--io-max", "/dev/null:rbps=1M"], "not a block device"),
        (vec!["-f", &spec_s], "colour"),
        (vec!["--pids-max", "0"], "--pids-max"),
        (vec!["--mem-bw", "0"], "--mem-bw"),
        (vec!["--mem-bw", "150"], "must be 1-100"),
        (vec!["--storage", "0"], "--storage"),
        (vec!["--storage", "lots"], "--storage"),
        (vec!["--inodes", "0"], "--inodes"),
    ];
    for (i, (args, needle)) in cases.iter().enumerate() {
        let name = h.name(&format!("bad{i}"));
        let mut all = vec!["pool", "create", name.as_str()];
        all.extend(args.iter().copied());
        let out = h.run(&all);
        assert_eq!(out.status.code(), Some(1), "{args:?} should fail");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
        assert!(cgroup_dirs(&name).is_empty(), "{args:?} left cgroups");
        assert!(!h.state.join("pools").join(&name).exists(), "{args:?} left state");
    }
    let out = h.run(&["pool", "create", &h.name("yaml"), "-f", &spec_s]);
    assert!(stderr(&out).contains("pool.yaml:3:"), "the file and line are named: {}", stderr(&out));
    // --io-weight needs a weight file (BFQ on cgroup v1): it works, or the error names it.
    let name = h.name("iow");
    let out = h.run(&["pool", "create", &name, "--io-weight", "100"]);
    if out.status.success() {
        h.created.push(name.clone());
        let pool = h.pools().get(&name).expect("state").expect("pool");
        let dir = pool.cgroups.dir("blkio").or(pool.cgroups.dir("io")).expect("an I/O cgroup");
        let set: Vec<String> = ["blkio.weight", "blkio.bfq.weight", "io.weight", "io.bfq.weight"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(dir.join(f)).ok())
            .map(|v| v.split_whitespace().last().unwrap_or("").to_string())
            .collect();
        assert!(set.iter().any(|v| v == "10" || v == "100"), "io weight not applied: {set:?}");
    } else {
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("weight") && stderr(&out).contains("BFQ"), "{}", stderr(&out));
        assert!(cgroup_dirs(&name).is_empty(), "a failed creation left cgroups: {:?}", cgroup_dirs(&name));
        assert!(!h.state.join("pools").join(&name).exists());
    }
    // --mem-bw needs resctrl with memory bandwidth allocation: it works (a group of the
    // pool's own, capped, holding the service; gone with the pool), or the error names what
    // is missing and nothing is made.
    let name = h.name("mbw");
    let out = h.run(&["pool", "create", &name, "--mem-bw", "40"]);
    if out.status.success() {
        h.created.push(name.clone());
        let group = Path::new(polytropon::pool::resctrl::ROOT).join(format!("polytropon-{name}"));
        let schemata = std::fs::read_to_string(group.join("schemata")).expect("the pool's resctrl group");
        assert!(schemata.lines().any(|l| l.trim().starts_with("MB:") && l.contains("=40")), "{schemata}");
        let pid: u32 = h.ok(&["service", "run", "--pool", &name, "--detach"]).trim().parse().expect("service pid");
        let tasks = std::fs::read_to_string(group.join("tasks")).expect("tasks");
        assert!(tasks.lines().any(|t| t.trim() == pid.to_string()), "the service is not in the group: {tasks}");
        h.ok(&["pool", "destroy", &name, "--force"]);
        h.created.retain(|n| n != &name);
        assert!(!group.exists(), "destroy left the resctrl group");
    } else {
        assert_eq!(out.status.code(), Some(1));
        let e = stderr(&out);
        assert!(e.contains("--mem-bw needs memory bandwidth allocation") && (e.contains("resctrl") || e.contains("info/MB")), "{e}");
        assert!(cgroup_dirs(&name).is_empty(), "a refused --mem-bw left cgroups");
        assert!(!h.state.join("pools").join(&name).exists());
    }
    // A non-root caller.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_polytropon"))
        .arg("--state-dir")
        .arg(&h.state)
        .args(["pool", "create", "nobody-pool"])
        .output()
        .expect("run setpriv");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("needs root"), "{}", stderr(&out));
    // Unknown pool, bad name.
    let out = h.run(&["pool", "destroy", "no-such-pool"]);
    assert!(stderr(&out).contains("no pool named no-such-pool"), "{}", stderr(&out));
    let out = h.run(&["pool", "create", "a/b"]);
    assert!(stderr(&out).contains("NAME"), "{}", stderr(&out));
    let out = h.run(&["service", "run", "--pool", "no-such-pool"]);
    assert!(stderr(&out).contains("no pool named no-such-pool"), "{}", stderr(&out));
}

#[test]
fn a_service_spec_mounts_its_table_at_start_and_stop_unmounts_it() {
    let mut h = Host::new("pools-spec");
    let name = h.create("s", &[]);
    let (lower, upper, mnt) = (h.scratch.mkdir("lower"), h.scratch.mkdir("upper"), h.scratch.mkdir("mnt"));
    std::fs::write(lower.join("f"), b"from the image").expect("seed");
    let spec = h.scratch.path().join("service.yaml");
    std::fs::write(
        &spec,
        format!(
            "instances:\n  - mountpoint: {}\n    spec:\n      branches:\n        - {{path: {}, mode: rw}}\n        - {{path: {}, mode: ro}}\n      cache: {{mode: direct}}\n",
            mnt.display(),
            upper.display(),
            lower.display()
        ),
    )
    .expect("write service.yaml");
    let pid: u32 = h.ok(&["service", "run", "--pool", &name, "-f", spec.to_str().expect("utf-8"), "--detach"]).trim().parse().expect("pid");
    assert_eq!(std::fs::read(mnt.join("f")).expect("served at start"), b"from the image");
    let table = std::fs::read_to_string(h.state.join("pools").join(&name).join("mounts.yaml")).expect("filesystem table");
    assert!(table.contains(mnt.to_str().expect("utf-8")), "{table}");
    let json: serde_json::Value = serde_json::from_str(&h.ok(&["inspect", "--pool", &name, "--format", "json"])).expect("json");
    assert_eq!(json[0]["service"]["mounts"][0]["spec"]["cache"]["mode"].as_str(), Some("direct"));
    // A second service for the same pool is refused; a broken spec is named.
    let out = h.run(&["service", "run", "--pool", &name]);
    assert!(stderr(&out).contains("already runs"), "{}", stderr(&out));
    h.ok(&["service", "stop", "--pool", &name]);
    assert!(!mounted(&mnt));
    assert!(!polytropon::pool::state::pid_alive(pid));
    let out = h.run(&["service", "stop", "--pool", &name]);
    assert!(stderr(&out).contains("not running"), "{}", stderr(&out));
    std::fs::write(&spec, "instances:\n  - mountpoint: /x\n    spec: {branches: [{path: /x, mode: maybe}]}\n").expect("write");
    let out = h.run(&["service", "run", "--pool", &name, "-f", spec.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("service.yaml:") && stderr(&out).contains("maybe"), "{}", stderr(&out));
    // The control socket is owner-only.
    use std::os::unix::fs::PermissionsExt;
    let _ = h.ok(&["service", "run", "--pool", &name, "--detach"]);
    let mode = std::fs::metadata(h.state.join("pools").join(&name).join("control.sock")).expect("socket").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    h.ok(&["pool", "destroy", &name, "--force"]);
    h.created.clear();
}

#[test]
fn a_creation_that_fails_half_way_leaves_nothing() {
    // The cgroups are made, then the namespace step fails (no `unshare` on PATH): everything
    // made so far must be undone.
    let h = Host::new("pools-half");
    let name = h.name("h");
    let out = h.cmd().env("PATH", "/nonexistent").args(["pool", "create", &name, "--cpus", "0", "--memory", "128M"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("IPC namespace") && stderr(&out).contains("unshare"), "{}", stderr(&out));
    assert!(cgroup_dirs(&name).is_empty(), "cgroups left: {:?}", cgroup_dirs(&name));
    assert!(!h.state.join("pools").join(&name).exists(), "state left");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!mounts.contains(h.state.to_str().expect("utf-8")));
}

/// A `pool create` killed half-way (here by the `unshare` it runs for the IPC namespace, once
/// its cgroups are made) leaves a pool that `pool create` names as unfinished and `pool
/// destroy` removes whole: cgroups, state and the ids' claim.
#[test]
fn a_create_killed_half_way_is_named_and_destroyed() {
    let h = Host::new("pools-killed");
    let name = h.name("k");
    let registry = h.scratch.mkdir("ids");
    let fake = h.scratch.mkdir("bin");
    std::fs::write(fake.join("unshare"), "#!/bin/sh\nkill -9 $PPID\nsleep 5\n").expect("fake unshare");
    std::fs::set_permissions(fake.join("unshare"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let path = format!("{}:{}", fake.display(), std::env::var("PATH").unwrap_or_default());
    let polytropon = |args: &[&str], path: &str| h.cmd().env("PATH", path).env("POLYTROPON_ID_REGISTRY", &registry).args(args).output().expect("run");
    let out = polytropon(&["pool", "create", &name, "--cpus", "0", "--memory", "128M"], &path);
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&out.status), Some(9), "the create was to be killed: {}", stderr(&out));
    let dir = h.state.join("pools").join(&name);
    let left = cgroup_dirs(&name);
    // Removed by hand if the test fails before `pool destroy` does.
    struct Leftovers(Vec<PathBuf>);
    impl Drop for Leftovers {
        fn drop(&mut self) {
            for d in &self.0 {
                let _ = std::fs::remove_dir(d);
            }
        }
    }
    let _leftovers = Leftovers(left.clone());
    assert!(!left.is_empty() && dir.is_dir(), "the create was killed before it made its cgroups");
    assert_eq!(std::fs::read_dir(&registry).expect("registry").filter(|e| e.as_ref().is_ok_and(|e| !e.file_name().to_string_lossy().starts_with('.'))).count(), 1, "its ids are claimed");

    let system = std::env::var("PATH").unwrap_or_default();
    let again = polytropon(&["pool", "create", &name, "--cpus", "0"], &system);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("never fully created") && stderr(&again).contains("pool destroy"), "{}", stderr(&again));
    assert!(!polytropon(&["pool", "list"], &system).stdout.windows(name.len()).any(|w| w == name.as_bytes()), "an unfinished pool is no pool");
    let destroyed = polytropon(&["pool", "destroy", &name], &system);
    assert!(destroyed.status.success(), "{}", stderr(&destroyed));
    assert!(cgroup_dirs(&name).is_empty(), "cgroups left: {:?}", cgroup_dirs(&name));
    assert!(!dir.exists(), "state left");
    assert_eq!(std::fs::read_dir(&registry).expect("registry").filter(|e| e.as_ref().is_ok_and(|e| !e.file_name().to_string_lossy().starts_with('.'))).count(), 0, "its ids are given back");
    // A directory alone (a create stopped before its first record) goes too, and the name
    // is free again.
    std::fs::create_dir(&dir).expect("mkdir");
    assert!(polytropon(&["pool", "destroy", &name], &system).status.success());
    assert!(!dir.exists());
    assert_eq!(polytropon(&["pool", "destroy", &name], &system).status.code(), Some(1), "no pool left to destroy");
    let made = polytropon(&["pool", "create", &name, "--cpus", "0"], &system);
    assert!(made.status.success(), "{}", stderr(&made));
    assert!(polytropon(&["pool", "destroy", &name], &system).status.success());
}

#[test]
fn exec_preload_only_runs_a_client_inside_the_pool() {
    let mut h = Host::new("pools-exec");
    let name = h.create("x", &["--cpus", "1", "--pids-max", "64"]);
    h.ok(&["service", "run", "--pool", &name, "--detach"]);
    let (lower, upper, mnt) = (h.scratch.mkdir("lower"), h.scratch.mkdir("upper"), h.scratch.mkdir("mnt"));
    std::fs::create_dir(lower.join("etc")).expect("mkdir");
    std::fs::write(lower.join("etc/motd"), b"from the image\n").expect("seed");
    let (l, u, m) = (lower.display().to_string(), upper.display().to_string(), mnt.display().to_string());
    h.ok(&["mount", "--pool", &name, &m, "--lower", &l, "--upper", &u]);
    // A program using the direct API, compiled against the header and the library.
    let target = Path::new(env!("CARGO_BIN_EXE_polytropon")).parent().expect("target dir").to_path_buf();
    assert!(target.join("libpolytropon_preload.so").exists(), "build the workspace first (cargo build --workspace)");
    let src = h.scratch.path().join("prog.c");
    std::fs::write(&src, include_str!("c/direct_api.c")).expect("write program");
    let exe = h.scratch.path().join("prog");
    let cc = Command::new("gcc")
        .arg("-I")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/preload/include"))
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(&target)
        .arg("-lpolytropon_preload")
        .output()
        .expect("gcc");
    assert!(cc.status.success(), "{}", stderr(&cc));
    let script = format!("grep -E 'cpuset|memory|pids' /proc/self/cgroup; readlink /proc/self/ns/ipc; grep Cpus_allowed_list /proc/self/status; {} {m}", exe.display());
    let out = h.run(&["exec", "--pool", &name, "--preload-only", "--", "sh", "-c", &script]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.lines().filter(|l| l.ends_with(&format!("/polytropon-{name}"))).count() >= 3, "not in the pool's cgroups:\n{text}");
    assert!(!text.contains(&ns("self")), "still in the host's IPC namespace:\n{text}");
    let pool_ns = std::fs::metadata(h.state.join("pools").join(&name).join("ipc")).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).expect("ns file");
    assert!(text.contains(&format!("ipc:[{pool_ns}]")), "not in the pool's IPC namespace:\n{text}");
    assert!(text.contains("Cpus_allowed_list:\t1"), "{text}");
    assert!(text.trim_end().ends_with("ok"), "{text}");
    assert_eq!(std::fs::read(upper.join("notes")).expect("written over shared memory"), b"hello world\n");
    // inspect proves those operations arrived on the user-level path.
    let json: serde_json::Value = serde_json::from_str(&h.ok(&["inspect", "--pool", &name, "--format", "json"])).expect("json");
    let user = &json[0]["service"]["mounts"][0]["user_ops"];
    for op in ["open_path", "write", "release", "stat_path", "unlink_path"] {
        assert!(user[op]["count"].as_u64().unwrap_or(0) >= 1, "no {op} on the user-level path: {user}");
    }
    // Reads: served, or with the bytes that came with an open.
    assert!(common::stage::user_data(&json[0]["service"]["mounts"][0], "read") >= 1, "no read on the user-level path: {user}");
    assert!(json[0]["service"]["mounts"][0]["fuse_ops"]["write"].is_null(), "the program's writes went through FUSE");
    // The user-level path's writes and the FUSE path serve the same instance.
    assert_eq!(std::fs::read(mnt.join("notes")).expect("read through FUSE"), b"hello world\n");
    // Exit status and signals pass through; container flags are refused here.
    assert_eq!(h.run(&["exec", "--pool", &name, "--preload-only", "--", "sh", "-c", "exit 7"]).status.code(), Some(7));
    assert_eq!(h.run(&["exec", "--pool", &name, "--preload-only", "--", "sh", "-c", "kill -TERM $$"]).status.code(), Some(128 + 15));
    let out = h.run(&["exec", "--pool", &name, "--preload-only", "--tty", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("'--preload-only' cannot be used with '--tty'"), "{}", stderr(&out));
    h.ok(&["pool", "destroy", &name, "--force"]);
    h.created.clear();
}

/// Relative branch paths and spec files name what they name from where the operator runs the
/// command, not from the pool's service's working directory: `mount --pool` with `--upper
/// rel`, and with `-f spec.yaml` holding `path: rel`, both write into the directories beside
/// the operator (the service used to open `rel` from `/`).
#[test]
fn relative_branch_paths_are_the_operators() {
    let mut h = Host::new("pools-relative");
    let pool = h.create("r", &["--cpus", "0-1"]);
    h.ok(&["service", "run", "--pool", &pool, "--detach"]);
    let base = h.scratch.path().to_path_buf();
    for d in ["lower", "upper-a", "upper-b", "mnt-a", "mnt-b"] {
        std::fs::create_dir(base.join(d)).expect("mkdir");
    }
    std::fs::write(base.join("spec.yaml"), "branches:\n  - {path: upper-b, mode: rw}\n  - {path: lower, mode: ro}\n").expect("spec");
    let mut quick = h.cmd();
    quick.current_dir(&base).args(["mount", "--pool", &pool, "mnt-a", "--upper", "upper-a", "--lower", "lower"]);
    let mut file = h.cmd();
    file.current_dir(&base).args(["mount", "--pool", &pool, "mnt-b", "-f", "spec.yaml"]);
    for (mut cmd, mnt, upper) in [(quick, "mnt-a", "upper-a"), (file, "mnt-b", "upper-b")] {
        let out = cmd.output().expect("run mount");
        assert!(out.status.success(), "mount with relative paths failed: {}", stderr(&out));
        std::fs::write(base.join(mnt).join("written"), b"here").expect("write through the mount");
        assert_eq!(std::fs::read(base.join(upper).join("written")).expect("in the operator's upper branch"), b"here");
        h.ok(&["umount", "--pool", &pool, &base.join(mnt).display().to_string()]);
    }
}
