//! The `cephfs` backend against a real single-node Ceph cluster started for the test
//! (`scripts/ceph-cluster.sh`): a union of CephFS branches through FUSE and the user-level
//! path, and two clients seeing each other's writes. A test that cannot start the cluster
//! fails; it never skips.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::ceph::Cluster;
use common::host::{stderr, Host};

/// A FUSE mount of a CephFS union, unmounted when dropped.
struct Mounted<'a> {
    host: &'a Host,
    at: PathBuf,
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = self.host.run(&["umount", self.at.to_str().expect("utf-8")]);
    }
}

fn mount<'a>(host: &'a Host, at: &Path, conf: &str, lowers: &[&str], upper: &str) -> Mounted<'a> {
    let mut args = vec!["mount", at.to_str().expect("utf-8"), "--backend", "cephfs", "--ceph-conf", conf, "--upper", upper, "--detach"];
    for l in lowers {
        args.extend(["--lower", l]);
    }
    host.ok(&args);
    Mounted { host, at: at.to_path_buf() }
}

/// A pool, its service, and an instance of it on CephFS (`upper` over `lowers`, topmost
/// first) mounted under the scratch directory: (pool, spec file, mountpoint).
fn pool_mount(host: &mut Host, conf: &str, upper: &str, lowers: &[&str]) -> (String, PathBuf, PathBuf) {
    let pool = host.create("p", &["--cpus", "0-1"]);
    host.ok(&["service", "run", "--pool", &pool, "--detach"]);
    let spec = host.scratch.path().join("instance.yaml");
    let mut yaml = format!("backend:\n  type: cephfs\n  conf: {conf}\n  id: admin\nbranches:\n  - path: {upper}\n    mode: rw\n");
    for l in lowers {
        yaml += &format!("  - path: {l}\n    mode: ro\n");
    }
    std::fs::write(&spec, yaml).expect("spec");
    let at = host.scratch.mkdir("pm");
    host.ok(&["mount", "--pool", &pool, at.to_str().expect("utf-8"), "-f", spec.to_str().expect("utf-8")]);
    (pool, spec, at)
}

fn sh(script: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(script).output().expect("sh");
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_union_of_cephfs_branches_serves_fuse_and_the_user_level_path() {
    let mut host = Host::new("ceph");
    let cluster = Cluster::start(&host.scratch.mkdir("cluster"), Cluster::port(0));
    let conf = cluster.conf.clone();

    // The image branch and a clone's upper branch, made in CephFS through a mount of its root.
    let setup = host.scratch.mkdir("setup");
    {
        let _m = mount(&host, &setup, &conf, &[], "/");
        sh(&format!(
            "mkdir -p {s}/image/bin {s}/image/etc {s}/image/data/dir {s}/c1 {s}/c2 && cp /bin/ls {s}/image/bin/ && echo 'image motd' > {s}/image/etc/motd && echo a > {s}/image/data/dir/a && echo gone > {s}/image/etc/gone",
            s = setup.display()
        ));
    }

    // A clone through FUSE: programs from the image, copy-up, whiteouts, opaque directories.
    let c1 = host.scratch.mkdir("c1");
    let m1 = mount(&host, &c1, &conf, &["/image"], "/c1");
    let c = c1.display();
    let out = sh(&format!(
        "{c}/bin/ls {c}/etc && echo 'c1 was here' >> {c}/etc/motd && cat {c}/etc/motd && rm {c}/etc/gone && test ! -e {c}/etc/gone && echo whiteout-ok \
         && rm -rf {c}/data/dir && mkdir {c}/data/dir && ls {c}/data/dir | wc -l && seq 1 10000 > {c}/numbers && sha256sum {c}/numbers | cut -c1-16 \
         && mv {c}/numbers {c}/n2 && ln -s n2 {c}/link && cat {c}/link | wc -l"
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..4], ["gone", "motd", "image motd", "c1 was here"], "{out}");
    assert!(out.contains("whiteout-ok"), "{out}");
    assert_eq!(lines[5], "0", "the recreated directory is opaque: {out}");
    let expect_sum = sh("seq 1 10000 | sha256sum | cut -c1-16");
    assert_eq!(lines[6], expect_sum.trim(), "{out}");
    assert_eq!(lines[7], "10000", "{out}");
    // CephFS's snapshot directories are not served (a snapshot's objects share their live
    // objects' inode numbers: one looked up used to take its directory's place in the
    // client's table, for every instance of the client): the directories stay themselves.
    let out = sh(&format!(
        "for d in {c} {c}/data {c}/etc; do stat $d/.snap > /dev/null 2>&1 && echo served $d/.snap; done; ls {c}/data {c}/etc && touch {c}/data/new {c}/etc/new && ls {c}/data {c}/etc"
    ));
    assert_eq!(out, format!("{c}/data:\ndir\n\n{c}/etc:\nmotd\n{c}/data:\ndir\nnew\n\n{c}/etc:\nmotd\nnew\n"), "{out}");

    // A second clone of the same image sees none of it; the image is untouched.
    let c2 = host.scratch.mkdir("c2");
    let m2 = mount(&host, &c2, &conf, &["/image"], "/c2");
    let out = sh(&format!("cat {0}/etc/motd; ls {0}/data/dir; ls {0}", c2.display()));
    assert_eq!(out, "image motd\na\nbin\ndata\netc\n", "{out}");
    drop(m2);

    // Two clients (two mounts, standing in for two hosts) see each other's writes after close.
    let other = host.scratch.mkdir("other");
    let m3 = mount(&host, &other, &conf, &["/image"], "/c1");
    sh(&format!("echo 'from the first client' > {c}/shared && sync"));
    let out = sh(&format!("cat {}/shared", other.display()));
    assert_eq!(out, "from the first client\n");
    drop(m3);
    drop(m1);

    // The CephFS benchmark paths run and leave nothing in the CephFS or mounted.
    let out = host.ok(&[
        "bench", "--workload", "micro", "--workload", "fileserver", "--workload", "scaling", "--workload", "startup", "--paths", "cephfs-user,cephfs-user-cache,cephfs-fuse,ceph-fuse,unionfs-ceph-fuse",
        "--ceph-conf", &conf, "--reps", "1", "--ops", "20", "--min-time", "0", "--file-mib", "2", "--loops", "5", "--files", "12", "--file-kib", "8",
        "--containers", "1,2", "--clones", "1,2", "--format", "json", "--dir", host.scratch.path().to_str().expect("utf-8"),
    ]);
    let report: serde_json::Value = serde_json::from_str(&out).expect("bench json");
    let rows = report["rows"].as_array().expect("rows");
    // micro: 7 operations; fileserver: 5 operations' latencies and the mix's throughput;
    // each workload's first operation apart; scaling: a throughput per number of containers;
    // startup on the two CephFS paths it compares: a time per number of clones.
    assert_eq!(rows.len(), 5 * (7 + 6 + 2 + 2) + 2 * 2, "{out}");
    for p in ["cephfs-user", "unionfs-ceph-fuse"] {
        for n in [1, 2] {
            assert!(rows.iter().any(|r| r["workload"] == "startup" && r["op"] == format!("{n} clones to first HTTP answer") && r["path"] == p && r["unit"] == "ms"), "startup {p} {n}: {out}");
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
    assert!(!mounts.contains("ceph-fuse") && !mounts.contains("unionfs"), "bench left a FUSE mount: {mounts}");
    for p in ["cephfs-user", "cephfs-user-cache", "cephfs-fuse", "ceph-fuse", "unionfs-ceph-fuse"] {
        assert!(rows.iter().any(|r| r["workload"] == "fileserver" && r["op"] == "fileserver" && r["path"] == p && r["unit"] == "ops/s"), "{p}: {out}");
        for op in ["1 container", "2 containers"] {
            assert!(rows.iter().any(|r| r["workload"] == "scaling" && r["op"] == op && r["path"] == p && r["unit"] == "ops/s"), "{p} {op}: {out}");
        }
    }
    assert!(rows.iter().all(|r| r["median"].as_f64().is_some_and(|m| m > 0.0)), "{out}");
    {
        let _m = mount(&host, &setup, &conf, &[], "/");
        let left = sh(&format!("ls {}", setup.display()));
        assert!(!left.contains("polytropon-bench"), "bench data left in CephFS: {left}");
    }

    // The user-level path: a pool's service serving a CephFS union, a program under the
    // preload library.
    let (pool, _spec, pm) = pool_mount(&mut host, &conf, "/c2", &["/image"]);
    let out = host.run(&[
        "exec", "--pool", &pool, "--preload-only", "--", "sh", "-c",
        &format!("cd {} && for i in $(seq 1 50); do echo $i | tee f$i > /dev/null; cat f$i > /dev/null; done; cat etc/motd; ls | wc -l; for d in . etc; do test -e $d/.snap && echo served $d/.snap; done; touch etc/new; ls etc", pm.display()),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("image motd\n") && text.ends_with("\nmotd\nnew\n") && !text.contains("served"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&host.ok(&["inspect", "--pool", &pool, "--format", "json"])).expect("json");
    let user = &json[0]["service"]["mounts"][0]["user_ops"];
    for op in ["open_path", "write"] {
        assert!(user[op]["count"].as_u64().unwrap_or(0) >= 50, "{op} on the user-level path: {user}");
    }
    // Each small file's bytes came with its open (then read from the library's memory).
    let prefetched = json[0]["service"]["mounts"][0]["user_prefetched_opens"].as_u64().unwrap_or(0);
    let reads = user["read"]["count"].as_u64().unwrap_or(0);
    assert!(prefetched + reads >= 50, "{prefetched} prefetched opens, {reads} reads: {}", json[0]["service"]["mounts"][0]);
    // A larger file read on and on through one descriptor (the image's `ls`, from the lower
    // branch) by four threads at once moves to the kernel once busy: the FUSE mount's page
    // cache serves it, and no thread's read fails or differs meanwhile.
    let reader = "import os, sys, threading\nfd = os.open(sys.argv[1], os.O_RDONLY)\nref = open(sys.argv[2], 'rb').read()\nbad = []\n\
        def run(t):\n    for i in range(64):\n        off = (i * 7919 + t * 131) % len(ref)\n        try:\n            got = os.pread(fd, 4096, off)\n        except OSError as e:\n            bad.append(f'thread {t} read {i}: {e}')\n            continue\n        if got != ref[off:off + 4096]:\n            bad.append(f'thread {t} read {i} at {off} differs')\n\
        ts = [threading.Thread(target=run, args=(t,)) for t in range(4)]\nfor t in ts:\n    t.start()\nfor t in ts:\n    t.join()\nprint('same' if not bad else bad)\n";
    let out = host.run(&["exec", "--pool", &pool, "--preload-only", "--", "python3", "-c", reader, pm.join("bin/ls").to_str().expect("utf-8"), "/bin/ls"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "same", "{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&host.ok(&["inspect", "--pool", &pool, "--format", "json"])).expect("json");
    let busy = json[0]["service"]["mounts"][0]["user_handovers"]["busy"].as_u64().unwrap_or(0);
    assert_eq!(busy, 1, "the busy file was not handed to the kernel once: {}", json[0]["service"]["mounts"][0]["user_handovers"]);
    fsx_through_the_pools_cache(&host, &pool, &conf);
    groups_grant_access_on_both_paths(&host, &pool, &pm);
    // inspect shows the cluster's health, as the monitors report it to the ceph tool.
    let ceph = Command::new("ceph").args(["-c", &conf, "--id", "admin", "health"]).output().expect("ceph health");
    let status = String::from_utf8_lossy(&ceph.stdout).split_whitespace().next().unwrap_or("").to_string();
    assert!(status.starts_with("HEALTH_"), "ceph health: {status}");
    assert_eq!(json[0]["ceph"][0]["health"]["status"], status.as_str(), "{}", json[0]["ceph"]);
    assert_eq!(json[0]["ceph"][0]["conf"], conf.as_str());
    let text = host.ok(&["inspect", "--pool", &pool]);
    assert!(text.contains(&format!("ceph     {conf}  client.admin  {status}")), "{text}");
    // Client sharing: another instance of the same CephFS shares the service's client (no new
    // MDS session); one with `client: private` has its own.
    let sessions = || -> usize {
        let out = Command::new("ceph").args(["-c", &conf, "--id", "admin", "tell", "mds.a", "session", "ls", "--format", "json"]).output().expect("ceph");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("sessions json").as_array().map_or(0, Vec::len)
    };
    let before = sessions();
    for (dir, mode, more) in [("shared-one", "shared", 0), ("private-one", "private", 1)] {
        let spec2 = host.scratch.path().join(format!("{dir}.yaml"));
        std::fs::write(&spec2, format!("backend:\n  type: cephfs\n  conf: {conf}\n  client: {mode}\nbranches:\n  - path: /c1\n    mode: rw\n")).expect("spec");
        let at = host.scratch.mkdir(dir);
        let before_this = sessions();
        host.ok(&["mount", "--pool", &pool, at.to_str().expect("utf-8"), "-f", spec2.to_str().expect("utf-8")]);
        assert_eq!(sessions(), before_this + more, "{mode} client: MDS sessions");
    }
    assert_eq!(sessions(), before + 1);

    // What was fsync'd survives the service's death (kill -9) and a new service, killed while
    // the file is still open (so what made it durable was the fsync, not a close).
    // So does what `sync()` made durable (a file left open, never fsync'd: libcephfs holds
    // its data until then), and a directory's fsync is served.
    let holder_code = "import os, sys\nfd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)\nos.write(fd, b'durable')\nos.fsync(fd)\nfd2 = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)\nos.write(fd2, b'synced by sync')\nos.sync()\nd = os.open(os.path.dirname(sys.argv[2]), os.O_RDONLY)\nos.fsync(d)\nprint('synced', flush=True)\nsys.stdin.read()\n";
    let mut holder = host
        .cmd()
        .args(["exec", "--pool", &pool, "--preload-only", "--", "python3", "-c", holder_code, pm.join("kept").to_str().expect("utf-8"), pm.join("kept-by-sync").to_str().expect("utf-8")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the holder");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(holder.stdout.take().expect("stdout")), &mut line).expect("read");
    assert_eq!(line.trim(), "synced", "the holder did not fsync");
    let pid = json[0]["service"]["pid"].as_u64().expect("service pid") as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).expect("kill -9 the service");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z")) {
        assert!(std::time::Instant::now() < deadline, "the service did not die");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The holder's file stays open until now; it goes with the dead mount.
    let _ = holder.kill();
    let _ = holder.wait();
    let _ = Command::new("umount").arg("-l").arg(&pm).status();
    // Fence the dead client, as an operator does when a client host dies: until the MDS
    // evicts it (on its own after the session timeout, 60 s), its capabilities block others.
    let evicted = Command::new("ceph").args(["-c", &conf, "--id", "admin", "tell", "mds.a", "client", "evict"]).output().expect("run ceph");
    assert!(evicted.status.success(), "ceph tell mds.a client evict: {}", String::from_utf8_lossy(&evicted.stderr));
    // The new service serves the mounts the dead one recorded (no `mount` needed again).
    host.ok(&["service", "run", "--pool", &pool, "--detach"]);
    assert_eq!(std::fs::read_to_string(pm.join("kept")).expect("read after the restart"), "durable");
    assert_eq!(std::fs::read_to_string(pm.join("kept-by-sync")).expect("read after the restart"), "synced by sync", "sync() left data behind");
    host.ok(&["pool", "destroy", &pool, "--force"]);
    host.created.clear();
    drop(cluster);
}

#[test]
fn bad_ceph_input_is_named() {
    let host = Host::new("cephbad");
    let at = host.scratch.mkdir("m");
    let conf = host.scratch.path().join("nope.conf");
    let out = host.run(&["mount", at.to_str().expect("utf-8"), "--backend", "cephfs", "--ceph-conf", conf.to_str().expect("utf-8"), "--upper", "/x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nope.conf"), "{}", stderr(&out));
    // Without libcephfs (here: a name that does not exist) the error names the library.
    let out = host.cmd().env("POLYTROPON_LIBCEPHFS", "/nonexistent/libcephfs.so.2").args(["mount", at.to_str().expect("utf-8"), "--backend", "cephfs", "--ceph-conf", "/etc/hostname", "--upper", "/x"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("needs libcephfs.so.2 (Debian package libcephfs2)"), "{}", stderr(&out));
    // The local default does not load it at all.
    let (l, u) = (host.scratch.mkdir("l"), host.scratch.mkdir("u"));
    let m2 = host.scratch.mkdir("m2");
    let out = host.cmd().env("POLYTROPON_LIBCEPHFS", "/nonexistent/libcephfs.so.2").args(["mount", m2.to_str().expect("utf-8"), "--lower", l.to_str().expect("utf-8"), "--upper", u.to_str().expect("utf-8"), "--detach"]).output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    host.ok(&["umount", m2.to_str().expect("utf-8")]);
    let out = host.run(&["mount", at.to_str().expect("utf-8"), "--backend", "cephfs", "--upper", "/x"]);
    assert!(stderr(&out).contains("--ceph-conf"), "{}", stderr(&out));
    let out = host.run(&["mount", at.to_str().expect("utf-8"), "--backend", "cephfs", "--ceph-conf", "/etc/hostname", "--upper", "relative"]);
    assert!(stderr(&out).contains("absolute path inside the file system"), "{}", stderr(&out));
}

#[test]
fn clones_run_on_image_layers_stored_once_in_cephfs() {
    let mut host = Host::new("cephctr");
    std::fs::set_permissions(host.scratch.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod scratch");
    let cluster = Cluster::start(&host.scratch.mkdir("cluster"), Cluster::port(1));
    let conf = cluster.conf.clone();
    // Two hosts (two data directories) import the image into the same CephFS store: the
    // second finds its layers there (and still checks their digests).
    let image = common::image_dir();
    host.ok(&["image", "import", image.join("oci").to_str().expect("utf-8"), "--name", "shared:1", "--ceph-conf", &conf]);
    let other = host.scratch.mkdir("other-host");
    let out = Command::new(env!("CARGO_BIN_EXE_polytropon"))
        .args(["--state-dir", host.state.to_str().expect("utf-8"), "--data-dir", other.to_str().expect("utf-8"), "--log", "info", "image", "import", image.join("oci.tar").to_str().expect("utf-8"), "--name", "shared:1", "--ceph-conf", &conf])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out).matches("is already in CephFS").count(), 2, "{}", stderr(&out));
    assert!(!host.data().join("images/layers").read_dir().is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("sha256")))), "no local copy of the layers");
    let pool = host.create("p", &["--cpus", "0-1"]);
    host.ok(&["service", "run", "--pool", &pool, "--detach"]);
    // Clones: local upper branches over the layers in CephFS; the user-level path at work.
    let script = "cat /etc/motd; test ! -e /etc/gone && echo whiteout-ok; ls /data/dir; /usr/bin/busybox echo static-ok; \
         echo $(hostname) > /data/mine; cat /data/mine; for i in $(seq 1 40); do echo $i | tee /tmp/f$i > /dev/null; done; cat /tmp/f* | sort -n | tail -1";
    for name in ["k1", "k2"] {
        let out = host.run(&["exec", "--pool", &pool, "--clone-of", "shared:1", "--name", name, "--keep", "--", "sh", "-c", script]);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines, ["welcome to the polytropon test image", "whiteout-ok", "b", "static-ok", name, "40"], "{text}");
        let upper = host.data().join("containers").join(&pool).join(name).join("upper");
        assert_eq!(std::fs::read_to_string(upper.join("data/mine")).expect("the clone's write is on local disk"), format!("{name}\n"));
    }
    host.ok(&["pool", "destroy", &pool, "--force"]);
    host.created.clear();
    drop(cluster);
}

/// Issue 27's coherence across hosts: two pools' services (two clients of one cluster, as two
/// hosts would be) serve one CephFS directory. A program on the first reads a file again and
/// again under the library, which answers from what it learned (no round trip); the second
/// host writes the file, and Ceph's revocation of the first client's capability to cache it
/// (libcephfs' invalidation callback) makes the first program read the new bytes at once,
/// long before the attribute timeout (30 s here) would. With a short timeout (1 s), a change
/// Ceph announces to nobody (a mode changed on the other host) is seen within it.
#[test]
fn what_a_host_learned_of_a_cephfs_file_goes_when_another_host_writes_it() {
    let mut host = Host::new("cephcoh");
    let cluster = Cluster::start(&host.scratch.mkdir("cluster"), Cluster::port(2));
    let conf = cluster.conf.clone();
    let setup = host.scratch.mkdir("setup");
    {
        let _m = mount(&host, &setup, &conf, &[], "/");
        sh(&format!("mkdir -p {0}/long {0}/short {0}/cached && echo first > {0}/long/f && echo first > {0}/short/f && chmod 644 {0}/short/f", setup.display()));
        sh(&format!("head -c 262144 /dev/zero | tr '\\0' a > {}/cached/f", setup.display()));
    }
    let mut mounts = Vec::new();
    for (cpus, dir, ttl) in [("0", "long", 30), ("1", "long", 30), ("0", "short", 1), ("1", "short", 1), ("0", "cached", 30), ("1", "cached", 30)] {
        let pool = match mounts.iter().find(|(c, ..): &&(&str, String, PathBuf)| *c == cpus) {
            Some((_, p, _)) => p.clone(),
            None => {
                let p = host.create(if cpus == "0" { "a" } else { "b" }, &["--cpus", cpus]);
                host.ok(&["service", "run", "--pool", &p, "--detach"]);
                p
            }
        };
        let spec = host.scratch.path().join(format!("{cpus}-{dir}.yaml"));
        let mode = if dir == "cached" { "\n  mode: writethrough" } else { "" };
        std::fs::write(&spec, format!("backend:\n  type: cephfs\n  conf: {conf}\n  id: admin\nbranches:\n  - path: /{dir}\n    mode: rw\ncache:\n  attr_timeout: {ttl}\n  entry_timeout: {ttl}{mode}\n")).expect("spec");
        let at = host.scratch.mkdir(&format!("m{cpus}-{dir}"));
        host.ok(&["mount", "--pool", &pool, at.to_str().expect("utf-8"), "-f", spec.to_str().expect("utf-8")]);
        mounts.push((cpus, pool, at));
    }
    let (first, second) = (&mounts[0].1, &mounts[1].1);
    let (a_long, b_long, a_short, b_short) = (&mounts[0].2, &mounts[1].2, &mounts[2].2, &mounts[3].2);
    // The reader on the first host: prints each new content (and the mode of the short one's
    // file) as it sees it, with the seconds since it started; it ends after 20 s or once it
    // has seen both changes.
    let reader = "import os, sys, time\nlong, short = sys.argv[1], sys.argv[2]\nt0 = time.monotonic()\nseen = (None, None)\nreads = 0\n\
        while time.monotonic() - t0 < 20:\n    with open(long) as f:\n        data = f.read()\n    reads += 1\n    mode = oct(os.stat(short).st_mode & 0o777)\n    if (data, mode) != seen:\n        seen = (data, mode)\n        print(f'{time.monotonic() - t0:.2f} {data.strip()} {mode}', flush=True)\n    if data.strip() == 'second' and mode == '0o600':\n        break\n    time.sleep(0.001)\nprint(f'reads {reads}', flush=True)\n";
    let (mut child, mut lines) = reader_under_library(&host, first, reader, &[a_long.join("f"), a_short.join("f")]);
    let mut next = || lines.next().expect("a line from the reader").expect("read");
    let start = next();
    assert!(start.ends_with(" first 0o644"), "{start}");
    // A reader through the first host's FUSE mount (no library) reads the file once now and
    // once after the write, and sees it. (A reader that reads without pause through the
    // other host's open and write kept the old bytes past the write now and then, with or
    // without the announcement passed on to the kernel: reading between the recall and the
    // write fills the pages again with the old bytes, and nothing tells the kernel to drop
    // them until the attribute timeout; docs/SECURITY.md.)
    let fuse_reader = "import sys\nprint(open(sys.argv[1]).read().strip(), flush=True)\nsys.stdin.readline()\nprint(open(sys.argv[1]).read().strip(), flush=True)\n";
    let mut fuse_child = Command::new("python3")
        .args(["-c", fuse_reader])
        .arg(a_long.join("f"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the FUSE reader");
    let mut fuse_lines = std::io::BufRead::lines(std::io::BufReader::new(fuse_child.stdout.take().expect("stdout")));
    let fuse_start = fuse_lines.next().expect("a line from the FUSE reader").expect("read");
    assert_eq!(fuse_start, "first");
    // Let it read for a while from what it learned, then write on the second host (in
    // place: the same size, so that only the bytes and the times change).
    std::thread::sleep(std::time::Duration::from_secs(2));
    let out = host.run(&["exec", "--pool", second, "--preload-only", "--", "sh", "-c", &format!("printf second | dd of={}/f conv=notrunc status=none && chmod 600 {}/f", b_long.display(), b_short.display())]);
    assert!(out.status.success(), "{}", stderr(&out));
    let written = std::time::Instant::now();
    let mut got = Vec::new();
    loop {
        let l = next();
        if l.starts_with("reads ") {
            got.push(l);
            break;
        }
        got.push(l);
    }
    let status = child.wait().expect("the reader");
    assert!(status.success(), "{got:?}");
    std::io::Write::write_all(fuse_child.stdin.as_mut().expect("stdin"), b"\n").expect("tell the FUSE reader");
    let fuse_again = fuse_lines.next().expect("a line from the FUSE reader").expect("read");
    assert!(fuse_child.wait().expect("the FUSE reader").success());
    assert_eq!(fuse_again, "second", "the first host's FUSE mount kept the old bytes after the second's write");
    // The new bytes and the new mode were seen; the first host's service was told of the
    // write by Ceph (its capability to cache the file revoked), not only by time passing.
    assert!(got.iter().any(|l| l.contains(" second ")), "the first host never saw the second's write: {got:?}");
    assert!(got.iter().any(|l| l.ends_with(" 0o600")), "the mode change was never seen: {got:?}");
    assert!(written.elapsed() < std::time::Duration::from_secs(19), "{got:?}");
    // And the reads were mostly answered from what the library learned: far fewer opens
    // reached the first host's service than the program made.
    let reads: u64 = got.last().and_then(|l| l.strip_prefix("reads ")).and_then(|n| n.parse().ok()).expect("reads");
    let json: serde_json::Value = serde_json::from_str(&host.ok(&["inspect", "--pool", first, "--format", "json"])).expect("json");
    let served: u64 = json[0]["service"]["mounts"].as_array().expect("mounts").iter().filter_map(|m| m["user_ops"]["open_path"]["count"].as_u64()).sum();
    assert!(reads > 200 && served * 4 < reads, "{served} opens served of {reads} reads: {}", json[0]["service"]["mounts"]);
    let long = json[0]["service"]["mounts"].as_array().expect("mounts").iter().find(|m| m["mountpoint"] == a_long.to_str().expect("utf-8")).cloned().expect("the long mount");
    eprintln!("reader: {got:?}; {served} opens served of {reads} reads; changes announced {}", long["others_changes"]);
    assert!(long["others_changes"].as_u64().unwrap_or(0) >= 1, "Ceph announced nothing: {long}");
    a_cached_file_changed_on_another_host(&host, first, second, &mounts[4].2, &mounts[5].2);
    for (_, pool, _) in mounts.iter().take(2).collect::<Vec<_>>() {
        host.ok(&["pool", "destroy", pool, "--force"]);
    }
    host.created.clear();
    drop(cluster);
}

/// Starts Python `script` with `files` in pool `pool` under the preload library: the process
/// and its output's lines.
/// Access granted by a supplementary group alone, as a kernel filesystem grants it: a process
/// of uid 4242 whose only other group is 4243 reads and appends to root's 0660 file of group
/// 4243 on the user-level path and through FUSE; without the group it is refused on both.
fn groups_grant_access_on_both_paths(host: &Host, pool: &str, pm: &Path) {
    let f = pm.join("grp/f");
    sh(&format!("mkdir -p {0}/grp && chmod 0755 {0}/grp && echo shared > {1} && chown 0:4243 {1} && chmod 0660 {1}", pm.display(), f.display()));
    let as_user = |groups: &str, script: &str, library: bool| {
        let setpriv = ["setpriv", "--reuid=4242", "--regid=4242", groups, "sh", "-c", script];
        let out = if library {
            let mut args = vec!["exec", "--pool", pool, "--preload-only", "--"];
            args.extend(setpriv);
            host.run(&args)
        } else {
            Command::new(setpriv[0]).args(&setpriv[1..]).output().expect("setpriv")
        };
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), stderr(&out))
    };
    let user_ops = || -> u64 {
        let json: serde_json::Value = serde_json::from_str(&host.ok(&["inspect", "--pool", pool, "--format", "json"])).expect("json");
        let mounts = json[0]["service"]["mounts"].as_array().cloned().unwrap_or_default();
        let ours = mounts.iter().find(|m| m["mountpoint"].as_str() == pm.to_str()).cloned().unwrap_or_default();
        ours["user_ops"]["open_path"]["count"].as_u64().unwrap_or(0)
    };
    for (library, line) in [(true, "user"), (false, "fuse")] {
        let before = user_ops();
        let (ok, out, err) = as_user("--groups=4243", &format!("cat {0} && echo {line} >> {0}", f.display()), library);
        assert!(ok && out.starts_with("shared\n"), "uid 4242 in group 4243 on the {line} path: {out}{err}");
        assert_eq!(user_ops() > before, library, "served on the wrong path ({line})");
        let (ok, _, err) = as_user("--clear-groups", &format!("cat {}", f.display()), library);
        assert!(!ok && err.contains("Permission denied"), "uid 4242 without the group read it on the {line} path: {err}");
    }
    assert_eq!(std::fs::read_to_string(&f).expect("read"), "shared\nuser\nfuse\n");
}

fn reader_under_library(host: &Host, pool: &str, script: &str, files: &[PathBuf]) -> (std::process::Child, std::io::Lines<std::io::BufReader<std::process::ChildStdout>>) {
    let mut args = vec!["exec", "--pool", pool, "--preload-only", "--", "python3", "-c", script];
    args.extend(files.iter().map(|f| f.to_str().expect("utf-8")));
    let mut child = host.cmd().args(&args).stdout(std::process::Stdio::piped()).spawn().expect("start the reader");
    let lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().expect("stdout")));
    (child, lines)
}

/// The pool's own cache on CephFS (`cache: {mode: writethrough}`): a program on the first host
/// reads a file through one descriptor again and again, served from the first service's
/// cache while Ceph delegates the file to it; the second host opens the file for writing and
/// writes it, which makes Ceph recall the delegation first (the cache stops serving the file
/// and drops its blocks), so the program's next read returns the new bytes. Then a program
/// on the first host itself writes the file (its own service's write recalls the delegation
/// the same way), and the reader sees that too.
fn a_cached_file_changed_on_another_host(host: &Host, first: &str, second: &str, a: &Path, b: &Path) {
    let hits = |pool: &str| -> u64 {
        let json: serde_json::Value = serde_json::from_str(&host.ok(&["inspect", "--pool", pool, "--format", "json"])).expect("json");
        json[0]["service"]["cache"]["hits"].as_u64().unwrap_or(0)
    };
    let before = hits(first);
    let reader = "import os, sys, time\nfd = os.open(sys.argv[1], os.O_RDONLY)\nt0 = time.monotonic()\nseen = None\nreads = 0\n\
        while time.monotonic() - t0 < 20:\n    data = os.pread(fd, 6, 0) + os.pread(fd, 4096, 200000)[:1]\n    reads += 1\n    if data != seen:\n        seen = data\n        print(f'{time.monotonic() - t0:.2f} {data.decode()}', flush=True)\n    if data.startswith(b'third!'):\n        break\n    time.sleep(0.001)\nprint(f'reads {reads}', flush=True)\n";
    let (mut child, mut lines) = reader_under_library(host, first, reader, &[a.join("f")]);
    let mut next = || lines.next().expect("a line from the reader").expect("read");
    let start = next();
    assert!(start.ends_with(" aaaaaaa"), "{start}");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let served = hits(first) - before;
    let writer = "import os, sys\nfd = os.open(sys.argv[1], os.O_WRONLY)\nos.pwrite(fd, sys.argv[2].encode(), 0)\nos.close(fd)\n";
    let write = |pool: &str, file: &Path, what: &str| {
        let t = std::time::Instant::now();
        let out = host.run(&["exec", "--pool", pool, "--preload-only", "--", "python3", "-c", writer, file.join("f").to_str().expect("utf-8"), what]);
        assert!(out.status.success(), "{}", stderr(&out));
        t.elapsed()
    };
    let took = write(second, b, "second");
    let mut got = vec![next()];
    assert!(got[0].ends_with(" seconda"), "the first host did not see the second's write next: {got:?}");
    std::thread::sleep(std::time::Duration::from_secs(1));
    let took_here = write(first, a, "third!");
    loop {
        let l = next();
        let end = l.starts_with("reads ");
        got.push(l);
        if end {
            break;
        }
    }
    assert!(child.wait().expect("the reader").success(), "{got:?}");
    eprintln!("cached reader: {got:?}; {served} cache hits in its first 2 s; writes took {took:?} on the other host, {took_here:?} on its own");
    assert!(got.iter().any(|l| l.ends_with(" third!a")), "the first host's own write was never seen: {got:?}");
    // The reads were the cache's while the file was delegated.
    assert!(served >= 100, "only {served} reads were served from the pool's cache");
}

/// fsx (`tests/py/fsx.py`) on a CephFS instance with the pool's cache (`writethrough`), on the
/// FUSE path and under the library, with read-only phases between its writes: what the cache
/// holds while Ceph delegates the file is checked against the model after every change.
fn fsx_through_the_pools_cache(host: &Host, pool: &str, conf: &str) {
    let spec = host.scratch.path().join("fsx.yaml");
    std::fs::write(&spec, format!("backend:\n  type: cephfs\n  conf: {conf}\n  id: admin\nbranches:\n  - path: /c1\n    mode: rw\ncache:\n  mode: writethrough\n  size: 1M\n")).expect("spec");
    let at = host.scratch.mkdir("fsx");
    host.ok(&["mount", "--pool", pool, at.to_str().expect("utf-8"), "-f", spec.to_str().expect("utf-8")]);
    let hits = || -> u64 {
        let json: serde_json::Value = serde_json::from_str(&host.ok(&["inspect", "--pool", pool, "--format", "json"])).expect("json");
        json[0]["service"]["cache"]["hits"].as_u64().unwrap_or(0)
    };
    let fsx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/fsx.py");
    let before = hits();
    let out = Command::new("python3").arg(&fsx).arg(at.join("fuse.dat")).args(["4000", "1", "ro"]).output().expect("python3");
    assert!(out.status.success(), "fsx on the FUSE path: {}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    let out = host.run(&["exec", "--pool", pool, "--preload-only", "--", "python3", fsx.to_str().expect("utf-8"), at.join("user.dat").to_str().expect("utf-8"), "4000", "2", "ro"]);
    assert!(out.status.success(), "fsx on the user-level path: {}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    let served = hits() - before;
    eprintln!("fsx through the pool's cache on CephFS: {served} cache hits");
    assert!(served > 0, "the pool's cache served none of fsx's reads");
    host.ok(&["umount", at.to_str().expect("utf-8")]);
}
