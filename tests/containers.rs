//! Containers in a pool, for real: images imported from OCI layouts and archives built from
//! this machine's Debian packages (`scripts/build-image.sh`), clones with private upper
//! branches over shared layers, namespaces, pivot_root into the FUSE tree, the preload
//! library inside, signals, terminals, and clean-up by `pool destroy`.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::host::{stderr, Host};
use common::image_dir;

const IMAGE: &str = "polytropon/test:latest";

/// A pool with its service running and the test image imported.
struct Stage {
    host: Host,
    pool: String,
}

impl Stage {
    fn new(tag: &str) -> Self {
        let mut host = Host::new(tag);
        // Container users other than root walk the branch directories (the default data dir,
        // /var/lib/polytropon, is world-searchable; a temp dir is not).
        std::fs::set_permissions(host.scratch.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).expect("chmod scratch");
        let image = image_dir().join("oci");
        host.ok(&["image", "import", image.to_str().expect("utf-8 path")]);
        let pool = host.create("p", &["--cpus", "0-1", "--pids-max", "2048"]);
        host.ok(&["service", "run", "--pool", &pool, "--detach"]);
        Stage { host, pool }
    }

    fn exec(&self, args: &[&str]) -> Output {
        let mut all = vec!["exec", "--pool", self.pool.as_str()];
        all.extend_from_slice(args);
        self.host.run(&all)
    }

    /// Runs `script` with sh in a new clone; its stdout (asserting success).
    fn clone_sh(&self, extra: &[&str], script: &str) -> String {
        let mut args = vec!["--clone-of", IMAGE];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "sh", "-c", script]);
        let out = self.exec(&args);
        assert!(out.status.success(), "container failed ({}): {}\n{}", out.status, stderr(&out), String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn inspect(&self) -> serde_json::Value {
        let out = self.host.ok(&["inspect", "--pool", &self.pool, "--format", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("inspect json");
        v[0].clone()
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

#[test]
fn images_import_from_layouts_and_archives_once_per_layer() {
    let host = Host::new("img");
    let dir = image_dir();
    let p = |f: &str| dir.join(f).to_str().expect("utf-8").to_string();
    host.ok(&["image", "import", &p("oci")]);
    host.ok(&["image", "import", &p("oci.tar"), "--name", "copy:1"]);
    host.ok(&["image", "import", &p("docker.tar")]);
    let list: serde_json::Value = serde_json::from_str(&host.ok(&["image", "list", "--format", "json"])).expect("json");
    let names: BTreeSet<&str> = list.as_array().expect("array").iter().map(|i| i["name"].as_str().expect("name")).collect();
    assert_eq!(names, BTreeSet::from(["copy:1", "polytropon/test-docker:latest", IMAGE]));
    for i in list.as_array().expect("array") {
        assert_eq!(i["config"]["cmd"], serde_json::json!(["/bin/sh"]));
        assert_eq!(i["config"]["working_dir"], "/srv");
        assert_eq!(i["layers"], list[0]["layers"], "every form names the same two layers");
    }
    // Each layer unpacked once, whiteouts kept in the OCI form the union reads.
    let layers = host.data().join("images/layers");
    let unpacked: Vec<_> = std::fs::read_dir(&layers).expect("layers").flatten().filter(|e| !e.file_name().to_string_lossy().starts_with('.')).collect();
    assert_eq!(unpacked.len(), 2, "three imports of one image unpack its two layers once");
    let app = layers.join(list[0]["layers"][1].as_str().expect("digest").replacen(':', "-", 1));
    assert!(app.join("etc/.wh.gone").exists() && app.join("data/dir/.wh..wh..opq").exists());

    // Bad input: a clear error, and the store as it was.
    let dup = host.run(&["image", "import", &p("oci")]);
    assert_eq!(code(&dup), 1);
    assert!(stderr(&dup).contains("already exists"), "{}", stderr(&dup));
    let scratch = host.scratch.mkdir("bad");
    let corrupt = scratch.join("corrupt");
    copy_tree(&dir.join("oci"), &corrupt);
    let digest = list[0]["layers"][1].as_str().expect("digest").trim_start_matches("sha256:").to_string();
    let blob = corrupt.join("blobs/sha256").join(&digest);
    let mut bytes = std::fs::read(&blob).expect("blob");
    let n = bytes.len();
    bytes[n / 2] ^= 0x20;
    std::fs::write(&blob, bytes).expect("write blob");
    let out = host.run(&["image", "import", corrupt.to_str().expect("utf-8"), "--name", "corrupt:1"]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("is corrupt"), "{}", stderr(&out));
    std::fs::write(corrupt.join("index.json"), "{ not json").expect("write");
    let out = host.run(&["image", "import", corrupt.to_str().expect("utf-8"), "--name", "broken:1"]);
    assert!(code(&out) == 1 && stderr(&out).contains("index.json"), "{}", stderr(&out));
    let out = host.run(&["image", "import", scratch.to_str().expect("utf-8"), "--name", "empty:1"]);
    assert!(code(&out) == 1 && stderr(&out).contains("neither an OCI image layout"), "{}", stderr(&out));
    // A layer whose entry climbs out of it.
    let evil = scratch.join("evil");
    write_layout_with_escaping_layer(&evil);
    let out = host.run(&["image", "import", evil.to_str().expect("utf-8"), "--name", "evil:1"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("outside the layer"), "{}", stderr(&out));
    assert!(!scratch.join("escaped").exists() && !host.data().join("images/escaped").exists(), "nothing lands outside");
    let after: serde_json::Value = serde_json::from_str(&host.ok(&["image", "list", "--format", "json"])).expect("json");
    assert_eq!(after.as_array().map(Vec::len), Some(3), "failed imports leave no record");

    // Removing images frees a layer only when no image uses it.
    host.ok(&["image", "remove", "copy:1"]);
    host.ok(&["image", "remove", "polytropon/test-docker:latest"]);
    assert!(app.exists(), "the remaining image still uses its layers");
    host.ok(&["image", "remove", IMAGE]);
    assert!(!app.exists(), "the last image's layers go with it");
    let out = host.run(&["image", "remove", IMAGE]);
    assert!(code(&out) == 1 && stderr(&out).contains("no image named"), "{}", stderr(&out));
}

fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp").arg("-a").arg(from).arg(to).status().expect("cp");
    assert!(st.success());
}

/// An OCI layout whose one layer holds `../escaped`.
fn write_layout_with_escaping_layer(dir: &Path) {
    use sha2::{Digest, Sha256};
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir");
    let mut layer = Vec::new();
    {
        let mut b = tar::Builder::new(&mut layer);
        let mut h = tar::Header::new_gnu();
        let name = b"../escaped";
        h.as_gnu_mut().expect("gnu header").name[..name.len()].copy_from_slice(name);
        h.set_size(3);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, &b"bad"[..]).expect("append");
        b.finish().expect("finish");
    }
    let put = |data: &[u8]| {
        let d = format!("{:x}", Sha256::digest(data));
        std::fs::write(blobs.join(&d), data).expect("blob");
        format!("sha256:{d}")
    };
    let l = put(&layer);
    let c = put(br#"{"config":{"Cmd":["/bin/sh"]}}"#);
    let m = put(format!(r#"{{"config":{{"digest":"{c}"}},"layers":[{{"digest":"{l}"}}]}}"#).as_bytes());
    std::fs::write(dir.join("index.json"), format!(r#"{{"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{m}"}}]}}"#)).expect("index");
}

#[test]
fn a_container_runs_real_work_in_its_own_root_on_the_user_level_path() {
    let s = Stage::new("ctr");
    let host_marker = s.host.scratch.path().join("host-only");
    std::fs::write(&host_marker, "host").expect("marker");
    let script = format!(
        r#"set -e
cd /srv
echo "hostname=$(hostname) pwd=$(pwd) greeting=$GREETING"
cat /etc/motd
test ! -e /etc/gone && echo "whiteout ok"
echo "opaque: $(ls /data/dir)"
seq 1 2000 > numbers; sort -rn numbers | head -1 | tee top
printf 'pipe:%s\n' "$(cat numbers | wc -l)"
( echo "child $(cat top)" > forked ) & wait
cat forked
/usr/bin/busybox echo "static binary runs"
sha256sum numbers | cut -c1-16
test ! -e {marker} && echo "host not visible"
echo "processes: $(ls /proc | grep -c '^[0-9]')"
grep -c /dev/.polytropon/libpolytropon_preload.so /proc/self/maps
mkdir -p /work/d; for i in $(seq 1 40); do echo $i > /work/d/f$i; done; cat /work/d/f* | wc -l
"#,
        marker = host_marker.display()
    );
    let out = s.clone_sh(&["--name", "worker"], &script);
    let expect = [
        "hostname=worker pwd=/srv greeting=hello from the image",
        "welcome to the polytropon test image",
        "whiteout ok",
        "opaque: b",
        "2000\n",
        "pipe:2000",
        "child 2000",
        "static binary runs",
        "host not visible",
    ];
    for e in expect {
        assert!(out.contains(e), "missing {e:?} in:\n{out}");
    }
    let procs: u32 = out.lines().find_map(|l| l.strip_prefix("processes: ")).and_then(|n| n.trim().parse().ok()).expect("process count");
    assert!(procs < 10, "the container sees only its own processes, saw {procs}");
    assert!(out.lines().any(|l| l.trim() == "40"), "{out}");
    // The clone's branch went with it.
    assert!(!s.host.data().join("containers").join(&s.pool).join("worker").exists());

    // On a pool mount that stays (`--root`), the counters show the user-level path at work.
    let store: serde_json::Value = serde_json::from_str(&s.host.ok(&["image", "list", "--format", "json"])).expect("json");
    let layers = s.host.data().join("images/layers");
    let mut args: Vec<String> = vec!["mount".into(), "--pool".into(), s.pool.clone()];
    let mnt = s.host.scratch.mkdir("mnt");
    let upper = s.host.scratch.mkdir("upper");
    args.push(mnt.display().to_string());
    for d in store[0]["layers"].as_array().expect("layers").iter().rev() {
        args.extend(["--lower".into(), layers.join(d.as_str().expect("digest").replacen(':', "-", 1)).display().to_string()]);
    }
    args.extend(["--upper".into(), upper.display().to_string()]);
    s.host.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let mnt_s = mnt.display().to_string();
    let out = s.exec(&["--root", &mnt_s, "--", "sh", "-c", "for i in $(seq 1 100); do echo $i | tee /tmp/n > /dev/null; cat /tmp/n > /dev/null; done; ls /etc | wc -l"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = s.inspect();
    let m = v["service"]["mounts"].as_array().expect("mounts").iter().find(|m| m["mountpoint"] == mnt_s.as_str()).cloned().expect("the mount");
    let user = |op: &str| m["user_ops"][op]["count"].as_u64().unwrap_or(0);
    assert!(user("open_path") >= 200, "the container's opens take the user-level path: {}", m["user_ops"]);
    // Reads of the small file come with its opens (counted by those opens).
    let reads = user("read") + m["user_prefetched_opens"].as_u64().unwrap_or(0);
    assert!(user("write") >= 100 && reads >= 100, "{}", m);
    assert_eq!(std::fs::read_to_string(upper.join("tmp/n")).expect("written through the union"), "100\n");

    // A non-root user of the container is served at user level too, as itself.
    let (opens, writes) = (user("open_path"), user("write"));
    let out = s.exec(&["--root", &mnt_s, "--user", "app", "--", "sh", "-c", "for i in $(seq 1 100); do echo $i | tee /tmp/app-n > /dev/null; cat /tmp/app-n > /dev/null; done; id -u; cat /root/secret 2>&1 || true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Permission denied") || text.contains("No such file"), "app read /root/secret: {text}");
    let app: u32 = text.lines().find_map(|l| l.trim().parse().ok()).expect("app's uid");
    assert_ne!(app, 0);
    let v = s.inspect();
    let m = v["service"]["mounts"].as_array().expect("mounts").iter().find(|m| m["mountpoint"] == mnt_s.as_str()).cloned().expect("the mount");
    let user = |op: &str| m["user_ops"][op]["count"].as_u64().unwrap_or(0);
    assert!(user("open_path") >= opens + 200 && user("write") >= writes + 100, "the non-root user's I/O took the user-level path: {}", m["user_ops"]);
    let made = std::fs::metadata(upper.join("tmp/app-n")).expect("app's file");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&made), app, "app's file is app's");

    // The runtime's /proc, /dev and /sys go onto the root's own directories, never through a
    // link (a root shared with other containers may have its names changed at any moment):
    // a /proc that is a link to a host directory is refused by name.
    let decoy = s.host.scratch.mkdir("decoy");
    let _ = std::fs::remove_dir(mnt.join("proc"));
    std::os::unix::fs::symlink(&decoy, mnt.join("proc")).expect("proc as a link out");
    let out = s.exec(&["--root", &mnt_s, "--", "true"]);
    assert!(!out.status.success() && stderr(&out).contains("/proc in the container's root is not a directory"), "{}: {}", out.status, stderr(&out));
    assert_eq!(std::fs::read_dir(&decoy).expect("decoy").count(), 0, "something was made in the link's target");
}

#[test]
fn escapes_from_a_container_stay_in_its_root_on_both_paths() {
    let s = Stage::new("ctresc");
    let host_dir = s.host.scratch.mkdir("host-dir");
    std::fs::write(host_dir.join("marker"), "host").expect("marker");
    let d = host_dir.display();
    // The shell's opens take the user-level path (the service resolves them, answering
    // symlinks with a fallback), `cat`'s exec and whatever the library hands over take FUSE.
    let script = format!(
        r#"ln -s / /r; ln -s ../../../../.. /up; mkdir -p /d
cat /r/etc/motd /up/etc/motd /proc/self/root/etc/motd > /dev/null && echo "inside ok"
for p in /../../..{d} /r{d} /up{d} /proc/self/root{d} /proc/1/root{d} /proc/self/cwd/../..{d} /r/r/r{d}; do
  cat $p/marker 2>/dev/null && echo "READ $p"
  (echo x > $p/escaped) 2>/dev/null && test -e {d}/escaped && echo "WROTE $p"
  mkdir $p/newdir 2>/dev/null
  ln $p/marker /hard 2>/dev/null && echo "LINKED $p"
done
# A rename racing the lookups: /d flips between a directory and a symlink to /.
( for i in $(seq 1 300); do mv /d /d.real; ln -s / /d; rm /d; mv /d.real /d; done ) &
for i in $(seq 1 300); do echo $i > /d/f$i 2>/dev/null; cat /d/../..{d}/marker 2>/dev/null && echo "RACE READ"; done
wait
echo done"#
    );
    let out = s.clone_sh(&[], &script);
    assert!(out.trim_end().ends_with("done") && out.contains("inside ok"), "{out}");
    assert!(!out.contains("READ") && !out.contains("WROTE") && !out.contains("LINKED"), "reached the host: {out}");
    let names: Vec<_> = std::fs::read_dir(&host_dir).expect("list").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("marker")], "something was made outside the container");
    assert_eq!(std::fs::read_to_string(host_dir.join("marker")).expect("marker"), "host");
}

#[test]
fn exit_status_signals_users_and_networks_pass_through() {
    let s = Stage::new("sig");
    let run = |args: &[&str]| {
        let mut a = vec!["--clone-of", IMAGE, "--"];
        a.extend_from_slice(args);
        s.exec(&a)
    };
    assert_eq!(code(&run(&["sh", "-c", "exit 7"])), 7);
    assert_eq!(code(&run(&["sh", "-c", "kill -9 $$"])), 137);
    let out = run(&["no-such-command"]);
    assert_eq!(code(&out), 127);
    assert!(stderr(&out).contains("no-such-command: command not found in the container"), "{}", stderr(&out));

    // Another user: the segment is root's, so its calls take the FUSE path, where the
    // kernel checks its permissions.
    let out = s.clone_sh(&["--user", "app", "--workdir", "/tmp", "--env", "A=b"], "id -u; id -g; pwd; echo A=$A; touch mine; stat -c %u mine; cat /root/secret 2>&1 || true");
    assert_eq!(out.lines().take(5).collect::<Vec<_>>(), ["1000", "1000", "/tmp", "A=b", "1000"], "{out}");
    assert!(out.contains("Permission denied") && !out.contains("root only"), "{out}");
    let out = s.clone_sh(&["--net", "none"], "grep -c : /proc/net/dev; grep -o 'lo:' /proc/net/dev");
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["1", "lo:"], "only loopback");

    // A signal to `exec` reaches the command.
    let mut child = s
        .host
        .cmd()
        .args(["exec", "--pool", &s.pool, "--clone-of", IMAGE, "--", "sh", "-c", "trap 'exit 42' TERM; echo ready; while :; do sleep 0.1; done"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().expect("stdout")), &mut line).expect("read");
    assert_eq!(line.trim(), "ready");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).expect("kill");
    assert_eq!(child.wait().expect("wait").code(), Some(42));

    // Detached: shown by inspect, stopped by kill, its status kept until rm.
    let name = s.host.ok(&["exec", "--pool", &s.pool, "--clone-of", IMAGE, "--detach", "--", "sleep", "600"]).trim().to_string();
    let c = s.inspect()["containers"].as_array().expect("containers").iter().find(|c| c["name"] == name.as_str()).cloned().expect("listed");
    assert_eq!(c["state"], "running");
    let pid = c["pid"].as_u64().expect("pid") as u32;
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    s.host.ok(&["kill", "--pool", &s.pool, &name]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = s.inspect()["containers"].as_array().expect("containers").iter().find(|c| c["name"] == name.as_str()).cloned().expect("listed");
        if c["state"] == "exited" {
            assert_eq!(c["exit_code"], 143, "SIGTERM ended sleep");
            break;
        }
        assert!(Instant::now() < deadline, "the container did not stop: {c}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = s.host.run(&["kill", "--pool", &s.pool, &name]);
    assert!(code(&out) == 1 && stderr(&out).contains("is not running"), "{}", stderr(&out));
    s.host.ok(&["rm", "--pool", &s.pool, &name]);
    assert!(s.inspect()["containers"].as_array().expect("containers").is_empty());

    // A detached container's output is kept bounded on the host: 40 MiB written, at most two
    // files of 16 MiB kept, the newest output last and whole.
    let script = "echo first; head -c 41943040 /dev/zero | tr '\\0' x; echo; echo last line >&2";
    let name = s.host.ok(&["exec", "--pool", &s.pool, "--clone-of", IMAGE, "--detach", "--", "sh", "-c", script]).trim().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let c = loop {
        let c = s.inspect()["containers"].as_array().expect("containers").iter().find(|c| c["name"] == name.as_str()).cloned().expect("listed");
        if c["state"] == "exited" {
            break c;
        }
        assert!(Instant::now() < deadline, "the writer did not finish: {c}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(c["exit_code"], 0, "{c}");
    let log = std::path::PathBuf::from(c["log"].as_str().expect("log path"));
    let (new, old) = (std::fs::read(&log).expect("log"), std::fs::read(format!("{}.1", log.display())).expect("rotated log"));
    assert_eq!(old.len(), 16 << 20, "a rotated log holds its cap");
    assert!(new.len() < 16 << 20 && new.ends_with(b"x\nlast line\n"), "the newest output ends the log: {} bytes", new.len());
    assert!(old.iter().chain(&new[..new.len() - 11]).all(|&b| b == b'x' || b == b'\n'), "nothing but the writer's output, in order");
    assert!(old.len() + new.len() < 40 << 20, "older output was let go of");
    s.host.ok(&["rm", "--pool", &s.pool, &name]);
    assert!(!log.exists(), "rm removes the logs with the container");
}

#[test]
fn tty_gives_an_interactive_shell_a_real_terminal() {
    let s = Stage::new("tty");
    let cmd = format!(
        "{} --state-dir {} --data-dir {} exec --pool {} --clone-of {IMAGE} --tty -- /bin/sh",
        env!("CARGO_BIN_EXE_polytropon"),
        s.host.state.display(),
        s.host.data().display(),
        s.pool
    );
    // script(1) gives `exec` a terminal of its own, as an operator's shell would.
    let mut child = Command::new("script").args(["-qec", &cmd, "/dev/null"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("script");
    child.stdin.as_mut().expect("stdin").write_all(b"tty; test -t 0 && echo interactive-$((6*7)); exit 5\n").expect("write");
    let out = child.wait_with_output().expect("wait");
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(text.contains("/dev/pts/0"), "the shell's terminal is the container's own pty:\n{text}");
    assert!(text.contains("interactive-42"), "{text}");
    assert_eq!(out.status.code(), Some(5), "{text}");

    // An interactive shell inside a running container.
    let name = s.host.ok(&["exec", "--pool", &s.pool, "--clone-of", IMAGE, "--detach", "--", "sh", "-c", "echo running > /srv/state; exec sleep 600"]);
    let name = name.trim();
    let cmd = format!(
        "{} --state-dir {} --data-dir {} exec --pool {} --in {name} --tty -- /bin/sh",
        env!("CARGO_BIN_EXE_polytropon"),
        s.host.state.display(),
        s.host.data().display(),
        s.pool
    );
    let mut child = Command::new("script").args(["-qec", &cmd, "/dev/null"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("script");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.host.data().join("containers").join(&s.pool).join(name).join("upper/srv/state").exists() {
        assert!(Instant::now() < deadline, "the container did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.stdin.as_mut().expect("stdin").write_all(b"tty; cat /srv/state; hostname; exit 6\n").expect("write");
    let out = child.wait_with_output().expect("wait");
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(text.contains("/dev/pts/0") && text.contains("running") && text.contains(name), "{text}");
    assert_eq!(out.status.code(), Some(6), "{text}");
}

#[test]
fn sixteen_clones_in_parallel_write_privately_share_layers_and_die_with_the_pool() {
    let mut s = Stage::new("par");
    let names: Vec<String> = (0..16).map(|i| format!("c{i}")).collect();
    let started = Instant::now();
    let children: Vec<_> = names
        .iter()
        .map(|n| {
            s.host
                .cmd()
                .args(["exec", "--pool", &s.pool, "--clone-of", IMAGE, "--name", n, "--detach", "--"])
                .args(["sh", "-c", "echo $(hostname) > /data/mine; echo $(hostname) >> /etc/motd; exec sleep 600"])
                .output_async()
        })
        .collect();
    for (n, c) in names.iter().zip(children) {
        let out = c.wait_with_output().expect("exec");
        assert!(out.status.success(), "{n}: {}", stderr(&out));
    }
    eprintln!("16 clones started in {:?}", started.elapsed());
    let uppers = s.host.data().join("containers").join(&s.pool);
    let deadline = Instant::now() + Duration::from_secs(20);
    while names.iter().any(|n| !uppers.join(n).join("upper/data/mine").exists()) {
        assert!(Instant::now() < deadline, "not every clone wrote");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let v = s.inspect();
    let running: Vec<&serde_json::Value> = v["containers"].as_array().expect("containers").iter().filter(|c| c["state"] == "running").collect();
    assert_eq!(running.len(), 16, "{}", v["containers"]);
    let mounts = v["service"]["mounts"].as_array().expect("mounts");
    assert_eq!(mounts.len(), 16);
    let lowers: BTreeSet<String> = mounts.iter().map(|m| m["spec"]["branches"].as_array().expect("branches")[1..].iter().map(|b| b["path"].to_string()).collect::<Vec<_>>().join(",")).collect();
    assert_eq!(lowers.len(), 1, "every clone stacks on the same layer directories");
    for n in &names {
        let upper = uppers.join(n).join("upper");
        assert_eq!(std::fs::read_to_string(upper.join("data/mine")).expect("own file"), format!("{n}\n"));
        assert_eq!(std::fs::read_to_string(upper.join("etc/motd")).expect("copied up"), format!("welcome to the polytropon test image\n{n}\n"));
    }
    // A command run in one of them (`exec --in`) sees its root, hostname and processes.
    let out = s.host.ok(&["exec", "--pool", &s.pool, "--in", "c3", "--", "sh", "-c", "cat /data/mine; hostname; ls /proc | grep -c '^[0-9]'"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["c3", "c3"], "{out}");
    assert!(lines[2].parse::<u32>().expect("count") < 8, "{out}");
    // Each sees only its own writes, through its own root.
    let pids: Vec<u32> = running.iter().map(|c| c["pid"].as_u64().expect("pid") as u32).collect();
    for c in &running {
        let root = c["root"].as_str().expect("root");
        let name = c["name"].as_str().expect("name");
        assert_eq!(std::fs::read_to_string(Path::new(root).join("data/mine")).expect("through the mount"), format!("{name}\n"));
    }
    let layers = s.host.data().join("images/layers");
    let mut found = Vec::new();
    for e in std::fs::read_dir(&layers).expect("layers").flatten() {
        found.push(e.path().join("data/mine").exists());
    }
    assert!(found.iter().all(|f| !f), "the shared layers are untouched");

    // Their image cannot go while they run.
    let out = s.host.run(&["image", "remove", IMAGE]);
    assert!(code(&out) == 1 && stderr(&out).contains("is in use by container"), "{}", stderr(&out));
    // pool destroy kills them all and removes their branches and mounts.
    let pool = s.pool.clone();
    s.host.ok(&["pool", "destroy", &pool, "--force"]);
    s.host.created.clear();
    for p in pids {
        assert!(!Path::new(&format!("/proc/{p}")).exists() || polytropon_zombie(p), "container init {p} survived pool destroy");
    }
    assert!(!uppers.exists() || std::fs::read_dir(&uppers).expect("dir").next().is_none(), "clone branches removed");
    let mounts = std::fs::read_to_string("/proc/mounts").expect("mounts");
    assert!(!mounts.contains(s.host.state.to_str().expect("utf-8")), "no mount left under the state dir");
}

fn polytropon_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
}

#[test]
fn bad_input_gets_a_clear_error_and_a_nonzero_exit() {
    let s = Stage::new("bad");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["exec", "--pool", "no-such-pool", "--clone-of", IMAGE, "--", "true"], "no pool named no-such-pool"),
        (vec!["exec", "--pool", &s.pool, "--root", "/no/such/root", "--", "true"], "/no/such/root"),
        (vec!["exec", "--pool", &s.pool, "--root", "/tmp", "--", "true"], "is not a mount of pool"),
        (vec!["exec", "--pool", &s.pool, "--clone-of", "no/such:image", "--", "true"], "no image named no/such:image"),
        (vec!["exec", "--pool", &s.pool, "--", "true"], "--root MOUNTPOINT"),
        (vec!["exec", "--pool", &s.pool, "--clone-of", IMAGE, "--user", "nobody-here", "--", "true"], "no user nobody-here"),
        (vec!["exec", "--pool", &s.pool, "--clone-of", IMAGE, "--workdir", "rel", "--", "true"], "must be an absolute path"),
        (vec!["exec", "--pool", &s.pool, "--clone-of", IMAGE, "--env", "NOEQUALS", "--", "true"], "expected K=V"),
        (vec!["kill", "--pool", &s.pool, "nobody"], "has no container named nobody"),
        (vec!["exec", "--pool", &s.pool, "--in", "ghost", "--", "true"], "has no container named ghost"),
        (vec!["kill", "--pool", &s.pool, "x", "--signal", "NOPE"], "no such signal"),
    ];
    for (args, msg) in cases {
        let out = s.host.run(&args);
        assert_eq!(code(&out), 1, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(msg), "{args:?}: expected {msg:?} in {:?}", stderr(&out));
    }
    let out = s.host.run(&["exec", "--pool", &s.pool, "--clone-of", IMAGE, "--tty", "--detach", "--", "sh"]);
    assert_eq!(code(&out), 2, "clap refuses --tty with --detach");
    // A name that is no name is a usage error, refused before anything is looked up.
    let out = s.host.run(&["exec", "--pool", &s.pool, "--clone-of", IMAGE, "--name", "bad/name", "--", "true"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("'bad/name'") && stderr(&out).contains("--name"), "{}", stderr(&out));
    // A name in use.
    let name = s.host.ok(&["exec", "--pool", &s.pool, "--clone-of", IMAGE, "--name", "dup", "--detach", "--", "sleep", "600"]);
    assert_eq!(name.trim(), "dup");
    let out = s.host.run(&["exec", "--pool", &s.pool, "--clone-of", IMAGE, "--name", "dup", "--", "true"]);
    assert!(code(&out) == 1 && stderr(&out).contains("already has a container named dup"), "{}", stderr(&out));
    let out = s.host.run(&["rm", "--pool", &s.pool, "dup"]);
    assert!(code(&out) == 1 && stderr(&out).contains("is running"), "{}", stderr(&out));
    s.host.ok(&["rm", "--pool", &s.pool, "dup", "--force"]);
    // A detached command not in the image fails at once, with the reason.
    let out = s.host.run(&["exec", "--pool", &s.pool, "--clone-of", IMAGE, "--detach", "--", "no-such-command"]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("command not found in the container"), "{}", stderr(&out));
    assert!(s.inspect()["containers"].as_array().expect("containers").is_empty(), "failed containers leave no record");
    assert!(s.inspect()["service"]["mounts"].as_array().expect("mounts").is_empty(), "nor a mount");
}

/// `Command::spawn` with its output captured, for starting many at once.
trait SpawnCaptured {
    fn output_async(&mut self) -> std::process::Child;
}

impl SpawnCaptured for Command {
    fn output_async(&mut self) -> std::process::Child {
        self.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn polytropon")
    }
}

#[test]
fn startup_benchmark_compares_the_three_roots() {
    let s = Stage::new("stb");
    let out = s.host.ok(&["bench", "--workload", "startup", "--image", IMAGE, "--clones", "1,3", "--reps", "1", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let rows = v["rows"].as_array().expect("rows");
    for path in ["user", "fuse-overlayfs", "overlay"] {
        for n in [1, 3] {
            let r = rows.iter().find(|r| r["path"] == path && r["op"] == format!("{n} clones to first HTTP answer")).unwrap_or_else(|| panic!("no row for {n} on {path}: {out}"));
            let ms = r["median"].as_f64().expect("median");
            assert!(ms > 0.0 && ms < 60_000.0, "{path} {n}: {ms} ms");
        }
    }
    // The benchmark's own pool and containers are gone.
    let pools = s.host.ok(&["pool", "list", "--format", "json"]);
    assert!(!pools.contains("bench-"), "{pools}");
    assert!(!s.host.data().join("containers").exists() || std::fs::read_dir(s.host.data().join("containers")).expect("dir").next().is_none());
}

/// A container's command runs as runc runs one by default (issue 24, in part): runc's
/// capability list in every set, none ambient, `no_new_privs`; /proc's windows on the host
/// hidden or read-only; /dev not executable. What a container root may still do (chown)
/// still works.
#[test]
fn a_container_is_confined_as_runc_confines_by_default() {
    let s = Stage::new("ctconf");
    let script = r#"grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status
/bin/busybox mount -t tmpfs x /mnt 2>/dev/null && echo MOUNTED
echo "kcore $(cat /proc/kcore 2>/dev/null | head -c 16 | wc -c)"
(echo h > /proc/sysrq-trigger) 2>/dev/null && echo SYSRQ
(echo 1 > /proc/sys/kernel/sysrq) 2>/dev/null && echo SYSCTL
echo "firmware $(ls /sys/firmware 2>/dev/null | wc -l)"
cp /bin/busybox /dev/bb 2>/dev/null && /dev/bb true 2>/dev/null && echo DEVEXEC
touch /tmp/own && /bin/busybox chown 1:1 /tmp/own && echo "chown ok $(/bin/busybox stat -c %u:%g /tmp/own)"
echo done"#;
    let out = s.clone_sh(&[], script);
    let runc: u64 = [0u32, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31].iter().fold(0, |m, c| m | 1 << c);
    for set in ["CapPrm", "CapEff", "CapBnd"] {
        assert!(out.contains(&format!("{set}:\t{runc:016x}")), "{set} is not runc's default set:\n{out}");
    }
    // No inheritable capabilities (runc and Moby since CVE-2022-24769), no ambient ones.
    assert!(out.contains("CapInh:\t0000000000000000") && out.contains("CapAmb:\t0000000000000000") && out.contains("NoNewPrivs:\t1"), "{out}");
    for bad in ["MOUNTED", "SYSRQ", "SYSCTL", "DEVEXEC"] {
        assert!(!out.contains(bad), "the container could {bad}:\n{out}");
    }
    assert!(out.contains("kcore 0") && out.contains("firmware 0"), "{out}");
    assert!(out.contains("chown ok 1:1") && out.trim_end().ends_with("done"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "no seccomp filter:\n{out}");
    // Loosened on request: a capability list of one, no filter, privileges at exec.
    let out = s.clone_sh(
        &["--cap-drop", "ALL", "--cap-add", "cap_chown", "--seccomp", "unconfined", "--allow-new-privs"],
        "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; touch /tmp/o; busybox chown 3 /tmp/o && echo chown-ok; busybox chmod 600 /tmp/o && busybox chown 4 /tmp/o 2>/dev/null; echo done",
    );
    for line in ["CapEff:\t0000000000000001", "CapBnd:\t0000000000000001", "NoNewPrivs:\t0", "Seccomp:\t0", "chown-ok"] {
        assert!(out.contains(line), "missing {line:?}:\n{out}");
    }
    let bad = s.exec(&["--clone-of", IMAGE, "--cap-add", "CAP_FLY", "--", "true"]);
    assert!(!bad.status.success() && stderr(&bad).contains("unknown capability \"CAP_FLY\""), "{}", stderr(&bad));
}

/// `exec` with `input` on the command's standard input.
fn exec_with_input(s: &Stage, args: &[&str], input: &[u8]) -> Output {
    let mut all = vec!["exec", "--pool", s.pool.as_str()];
    all.extend_from_slice(args);
    let mut child = s.host.cmd().args(&all).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn exec");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().expect("exec output");
    let _ = feeder.join();
    out
}

/// `tests/c/escape.c`, built static (it runs whatever the image holds).
fn escape_probe(s: &Stage) -> Vec<u8> {
    let exe = s.host.scratch.path().join("escape");
    let cc = Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(&exe)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/escape.c"))
        .output()
        .expect("gcc");
    assert!(cc.status.success(), "{}", stderr(&cc));
    std::fs::read(&exe).expect("probe")
}

/// Issue 24's escape suite, in a container with a user namespace of its own (the default)
/// and in one sharing the host's: every way out a hostile container root would try is
/// refused, from a static program (system calls as such) and from the shell under the
/// library (its opens on the user-level path) and without it (the kernel and FUSE path);
/// what a container may still do (chown inside, a low port, ping) works.
#[test]
fn escapes_to_the_host_are_refused_inside_containers_on_both_paths() {
    let s = Stage::new("ctescape");
    let probe = escape_probe(&s);
    let shell = r#"(echo h > /proc/sysrq-trigger) 2>/dev/null && echo "shell sysrq ESCAPED"
(echo x > /proc/sys/kernel/hostname) 2>/dev/null && echo "shell sysctl ESCAPED"
test -s /proc/keys && echo "shell keys ESCAPED"
busybox mknod /dev/sdz b 8 0 2>/dev/null; (cat /dev/sdz > /dev/null) 2>/dev/null && echo "shell blockdev ESCAPED"
(echo x > /proc/1/exe) 2>/dev/null && echo "shell runtime ESCAPED"
"#;
    let script = format!(
        r#"cat > /tmp/escape; chmod 755 /tmp/escape
echo "== user-level path"
/tmp/escape /tmp/sda
{shell}
echo "== kernel path"
env -u LD_PRELOAD sh -c '/tmp/escape /dev/sdb
{shell}'
cp /tmp/escape /tmp/suid; chmod 4755 /tmp/suid; /tmp/escape --as-1000 /tmp/suid
busybox ping -c1 -W2 127.0.0.1 > /dev/null && echo "ping ok"
(busybox nc -l -p 80 -w 3 > /dev/null & sleep 0.3; echo x | busybox nc -w 2 127.0.0.1 80) && echo "port 80 ok"
touch /tmp/own && busybox chown 5:6 /tmp/own && echo "chown ok $(busybox stat -c %u:%g /tmp/own)"
echo done"#
    );
    for userns in ["pool", "host"] {
        let out = exec_with_input(&s, &["--clone-of", IMAGE, "--userns", userns, "--net", "none", "--", "sh", "-c", &script], &probe);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success() && text.trim_end().ends_with("done"), "--userns {userns} ({}): {}\n{text}", out.status, stderr(&out));
        assert!(!text.contains("ESCAPED"), "--userns {userns}: a container reached the host:\n{text}");
        // Refused by the seccomp filter (a plain process may make these calls).
        for call in ["keyctl", "unshare_user", "clone_newuser", "bpf", "perf_event_open", "mount_x32", "fsopen", "mount", "open_by_handle_at", "kexec_load", "init_module"] {
            assert_eq!(text.lines().filter(|l| *l == format!("{call} refused EPERM")).count(), 2, "--userns {userns}: {call} not refused by the filter on both paths:\n{text}");
        }
        assert_eq!(text.lines().filter(|l| *l == "clone3 refused ENOSYS").count(), 2, "{text}");
        for attempt in ["open_block_device", "open_dev_mem", "sysrq", "sysctl", "proc_keys", "kcore", "reboot", "swapon", "ptrace_init", "setns_init_mnt", "write_proc_1_exe"] {
            assert_eq!(text.lines().filter(|l| l.starts_with(&format!("{attempt} refused "))).count(), 2, "--userns {userns}: {attempt}:\n{text}");
        }
        assert!(text.contains("euid 1000"), "--userns {userns}: a set-user-id file gained privileges at exec:\n{text}");
        for still in ["ping ok", "port 80 ok", "chown ok 5:6"] {
            assert!(text.contains(still), "--userns {userns}: {still:?} missing:\n{text}");
        }
    }
    // Descriptors the caller of `exec` holds open (here 8: a host file for append, 9: the
    // host's root) reach neither a new container nor one joined with `exec --in`.
    let host_file = s.host.scratch.path().join("host-secret");
    std::fs::write(&host_file, "secret\n").expect("host file");
    let inside = "(echo pwned >&8) 2>/dev/null && echo LEAK8; ls /proc/self/fd/9/ >/dev/null 2>&1 && echo LEAK9; echo checked";
    let run_with_fds = |args: &[&str]| -> String {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(format!("exec 8>>{} 9</; exec \"$0\" \"$@\"", host_file.display())).arg(env!("CARGO_BIN_EXE_polytropon"));
        cmd.args(["--state-dir", s.host.state.to_str().expect("utf-8"), "--data-dir", s.host.data().to_str().expect("utf-8")]);
        let out = cmd.args(args).output().expect("exec with descriptors");
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = run_with_fds(&["exec", "--pool", &s.pool, "--clone-of", IMAGE, "--", "sh", "-c", inside]);
    assert_eq!(out.trim(), "checked", "a new container got the caller's descriptors");
    // Nor through the working directory (runc's CVE-2024-21626): `/proc/self/fd/9` would name
    // the caller's descriptor 9, the host's root, were it only marked close-on-exec when the
    // command enters its directory.
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg("exec 9</; exec \"$0\" \"$@\"").arg(env!("CARGO_BIN_EXE_polytropon"));
    cmd.args(["--state-dir", s.host.state.to_str().expect("utf-8"), "--data-dir", s.host.data().to_str().expect("utf-8")]);
    let escape = cmd.args(["exec", "--pool", &s.pool, "--clone-of", IMAGE, "--workdir", "/proc/self/fd/9", "--", "sh", "-c", "pwd; ls ../../.. | head -3; echo RAN"]).output().expect("exec");
    let text = String::from_utf8_lossy(&escape.stdout).into_owned();
    assert!(!escape.status.success() && !text.contains("RAN"), "the command ran in a directory of the host ({}):\n{text}", escape.status);
    assert!(stderr(&escape).contains("working directory /proc/self/fd/9"), "{}", stderr(&escape));
    // The runtime a container sees is a sealed view of its binary: its pid 1 runs from a
    // lower-only overlayfs mounted nowhere (or, where that cannot be made, a sealed memfd)
    // that nobody, not even the host's root, can write.
    let name = s.host.ok(&["exec", "--pool", &s.pool, "--clone-of", IMAGE, "--detach", "--", "sleep", "60"]).trim().to_string();
    let v = s.inspect();
    let pid = v["containers"].as_array().expect("containers").iter().find(|c| c["name"] == name.as_str()).and_then(|c| c["pid"].as_u64()).expect("init pid");
    let exe_path = format!("/proc/{pid}/exe");
    let exe = std::fs::read_link(&exe_path).expect("init exe");
    let on_overlay = rustix::fs::statfs(exe_path.as_str()).expect("statfs of the init's exe").f_type as i64 == 0x794c_7630;
    assert!(on_overlay || exe.to_string_lossy().starts_with("/memfd:polytropon"), "pid 1 runs from {}", exe.display());
    assert_ne!(exe.as_path(), Path::new(env!("CARGO_BIN_EXE_polytropon")), "pid 1 runs from the host's binary");
    let w = std::fs::OpenOptions::new().write(true).open(&exe_path);
    assert!(w.is_err(), "the runtime's view can be opened for writing");
    if on_overlay {
        // The view is the binary itself (its page cache shared), not a copy.
        assert_eq!(std::fs::read(&exe_path).expect("read the view"), std::fs::read(env!("CARGO_BIN_EXE_polytropon")).expect("read the binary"));
        assert_eq!(w.err().and_then(|e| e.raw_os_error()), Some(libc::EROFS));
    }
    let out = run_with_fds(&["exec", "--pool", &s.pool, "--in", &name, "--", "sh", "-c", inside]);
    assert_eq!(out.trim(), "checked", "a joined container got the caller's descriptors");
    assert_eq!(std::fs::read_to_string(&host_file).expect("host file"), "secret\n");
    s.host.ok(&["kill", "--pool", &s.pool, &name, "--signal", "KILL"]);
}

/// Each pool's containers run in a user namespace mapped onto the pool's own host ids: files
/// made by the container's root and its users, on either path, and copies up of the image's
/// files land on the host with the mapped ids; the image's files show their own ids inside
/// every pool that shares them; two pools' ranges never overlap, and a destroyed pool's
/// range is released.
#[test]
fn user_namespaces_map_each_pool_onto_its_own_host_ids() {
    let mut s = Stage::new("ctuserns");
    let other = s.host.create("q", &[]);
    s.host.ok(&["service", "run", "--pool", &other, "--detach"]);
    let first = |pool: &str| -> u32 {
        let v = s.host.inspect(pool);
        assert_eq!(v["pool"]["ids"]["count"].as_u64(), Some(65536), "{}", v["pool"]);
        v["pool"]["ids"]["first"].as_u64().and_then(|f| u32::try_from(f).ok()).expect("the pool's id range")
    };
    let (a, b) = (first(&s.pool), first(&other));
    assert!(a > 0 && b > 0 && (a + 65536 <= b || b + 65536 <= a), "ranges overlap: {a} and {b}");
    let registry = Path::new("/var/lib/polytropon/id-ranges");
    assert!(registry.join(format!("{b}-65536")).exists(), "pool {other}'s range is not claimed");

    let script = r#"set -e
echo "inside $(id -u):$(id -g)"
echo lib > /made-lib
env -u LD_PRELOAD sh -c 'echo fuse > /made-fuse'
echo more >> /etc/motd
echo "lib stat $(stat -c %u:%g /etc/passwd)"
env -u LD_PRELOAD sh -c 'echo "kernel stat $(stat -c %u:%g /etc/passwd)"'
mkdir /home-app && busybox chown app:app /home-app
busybox su app -s /bin/sh -c 'echo app > /home-app/lib; env -u LD_PRELOAD sh -c "echo app > /home-app/fuse"; echo "app $(id -u)"'
echo "app file $(stat -c %u:%g /home-app/lib)"
busybox chown 4242:4243 /made-lib && echo "chown $(stat -c %u:%g /made-lib)"
busybox chown 70000 /made-lib 2>/dev/null || echo "unmapped chown refused"
echo done"#;
    let out = s.clone_sh(&["--keep", "--name", "kept"], script);
    for e in ["inside 0:0", "lib stat 0:0", "kernel stat 0:0", "app 1000", "app file 1000:1000", "chown 4242:4243", "unmapped chown refused"] {
        assert!(out.contains(e), "missing {e:?}:\n{out}");
    }
    let upper = s.host.data().join("containers").join(&s.pool).join("kept/upper");
    let ids = |rel: &str| {
        let m = std::fs::symlink_metadata(upper.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        (std::os::unix::fs::MetadataExt::uid(&m), std::os::unix::fs::MetadataExt::gid(&m))
    };
    assert_eq!(ids("made-fuse"), (a, a), "root's file through FUSE");
    assert_eq!(ids("made-lib"), (a + 4242, a + 4243), "root's file through the library, chowned inside");
    assert_eq!(ids("etc/motd"), (a, a), "a copy-up of an image file owned by root");
    assert_eq!(ids("home-app/lib"), (a + 1000, a + 1000), "app's file through the library");
    assert_eq!(ids("home-app/fuse"), (a + 1000, a + 1000), "app's file through FUSE");
    // The shared layers keep the image's own ids on the host.
    let layers = s.host.data().join("images/layers");
    for layer in std::fs::read_dir(&layers).expect("layers").flatten() {
        if let Ok(m) = std::fs::metadata(layer.path().join("etc/passwd")) {
            assert_eq!(std::os::unix::fs::MetadataExt::uid(&m), 0, "a shared layer changed owner");
        }
    }
    // `exec --in` joins the running container's user namespace too.
    let name = s.host.ok(&["exec", "--pool", &s.pool, "--clone-of", IMAGE, "--detach", "--keep", "--name", "joined", "--", "sleep", "60"]).trim().to_string();
    let out = s.exec(&["--in", &name, "--", "sh", "-c", "id -u; cat /proc/self/uid_map; echo in > /joined-file"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.split_whitespace().collect::<Vec<_>>(), ["0", "0", &a.to_string(), "65536"], "{text}");
    let joined = std::fs::metadata(s.host.data().join("containers").join(&s.pool).join("joined/upper/joined-file")).expect("joined-file");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&joined), a);
    s.host.ok(&["kill", "--pool", &s.pool, &name, "--signal", "KILL"]);
    // The same image in the other pool: its own ids inside, its own range on the host.
    let out = s.host.run(&["exec", "--pool", &other, "--clone-of", IMAGE, "--keep", "--name", "kq", "--", "sh", "-c", "stat -c %u:%g /etc/passwd; touch /q-file"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0:0");
    let q = std::fs::metadata(s.host.data().join("containers").join(&other).join("kq/upper/q-file")).expect("q-file");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&q), b);
    // `--userns host` keeps the host's ids, as before.
    let out = s.host.run(&["exec", "--pool", &other, "--clone-of", IMAGE, "--userns", "host", "--", "cat", "/proc/self/uid_map"]);
    assert!(String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"], "{}", String::from_utf8_lossy(&out.stdout));
    s.host.ok(&["pool", "destroy", &other, "--force"]);
    assert!(!registry.join(format!("{b}-65536")).exists(), "pool {other}'s range outlived it");
}
