//! The pool's own cache in `writeback` mode (issue 8), with real pools, services and
//! clients on the user-level path: written data survives `service stop`, fsync'd data
//! survives kill -9 of the service, and the cache stays within its bound by the pool's
//! memory cgroup's own figures.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};

use common::host::Host;

/// Writes 4 MiB to `argv[1]`, fsyncs (or syncs) when `argv[2]` says so, says "written", then
/// holds the file open until killed.
const WRITER: &str = r#"
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
block = bytes(range(256)) * 4096
for i in range(4):
    os.write(fd, block[i:] + block[:i])
if sys.argv[2] == "fsync":
    os.fsync(fd)
if sys.argv[2] == "sync":
    os.sync()
print("written", flush=True)
time.sleep(600)
"#;

fn expected() -> Vec<u8> {
    let block: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
    (0..4).flat_map(|i| [&block[i..], &block[..i]].concat()).collect()
}

/// Kills a client that holds its file open (and one a failed assertion left running).
struct Client(Child);

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the writer on `file` through the preload library; returns once it wrote.
fn writer(h: &Host, pool: &str, file: &Path, mode: &str) -> Client {
    let mut child = h
        .cmd()
        .args(["exec", "--pool", pool, "--preload-only", "--", "python3", "-c", WRITER])
        .arg(file)
        .arg(mode)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn writer");
    let mut line = String::new();
    let out = child.stdout.take().expect("stdout");
    BufReader::new(out).read_line(&mut line).expect("read");
    let client = Client(child);
    assert_eq!(line.trim(), "written", "the writer of {} failed", file.display());
    client
}

fn inspect(h: &Host, pool: &str) -> serde_json::Value {
    let json: serde_json::Value = serde_json::from_str(&h.ok(&["inspect", "--pool", pool, "--format", "json"])).expect("json");
    json[0].clone()
}

fn dirty(h: &Host, pool: &str) -> u64 {
    inspect(h, pool)["service"]["cache"]["dirty"].as_u64().unwrap_or(0)
}

/// A write-back instance over `upper`, with a dirty expiry long enough that only the events
/// under test write back.
fn mount(h: &Host, pool: &str, mnt: &Path, upper: &Path) {
    let spec = h.scratch.path().join("wb.yaml");
    std::fs::write(
        &spec,
        format!(
            "branches:\n  - path: {}\n    mode: rw\ncache:\n  mode: writeback\n  size: 64M\n  dirty_expire: 600\n",
            upper.display()
        ),
    )
    .expect("spec");
    h.ok(&["mount", "--pool", pool, &mnt.display().to_string(), "-f", &spec.display().to_string()]);
}

/// A pool made with `args`, its service running, and an upper and a mount directory.
fn served_pool(h: &mut Host, args: &[&str]) -> (String, std::path::PathBuf, std::path::PathBuf) {
    let pool = h.create("p", args);
    let (upper, mnt) = (h.scratch.mkdir("upper"), h.scratch.mkdir("mnt"));
    h.ok(&["service", "run", "--pool", &pool, "--detach"]);
    (pool, upper, mnt)
}

#[test]
fn written_data_survives_service_stop_and_fsynced_data_survives_kill_9() {
    let mut h = Host::new("wbstop");
    let (pool, upper, mnt) = served_pool(&mut h, &["--cpus", "0-1"]);
    mount(&h, &pool, &mnt, &upper);

    // Written, not fsync'd, the file still open: the data waits in the pool's cache.
    let a = writer(&h, &pool, &mnt.join("a"), "keep");
    assert!(std::fs::metadata(upper.join("a")).expect("created").len() < 4 << 20, "written back already");
    assert!(dirty(&h, &pool) >= 4 << 20, "not dirty in the cache");
    h.ok(&["service", "stop", "--pool", &pool]);
    assert!(std::fs::read(upper.join("a")).expect("a") == expected(), "service stop lost dirty data");
    drop(a);

    // Again: one file fsync'd, one not; then kill -9.
    h.ok(&["service", "run", "--pool", &pool, "--detach"]);
    mount(&h, &pool, &mnt, &upper);
    let b = writer(&h, &pool, &mnt.join("b"), "fsync");
    // sync(2) reaches the pool's cache too (the kernel's does not).
    let s = writer(&h, &pool, &mnt.join("s"), "sync");
    let c = writer(&h, &pool, &mnt.join("c"), "keep");
    assert!(dirty(&h, &pool) >= 4 << 20, "c is not dirty in the cache");
    let pid = inspect(&h, &pool)["service"]["pid"].as_i64().expect("service pid");
    // SAFETY: kill(2) with a pid read from the service's record.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let gone = std::time::Instant::now();
    while polytropon::pool::state::pid_alive(pid as u32) && gone.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(std::fs::read(upper.join("b")).expect("b") == expected(), "fsync'd data lost with the service");
    assert!(std::fs::read(upper.join("s")).expect("s") == expected(), "data written before a sync(2) lost with the service");
    drop((b, s, c));
    h.ok(&["pool", "destroy", &pool, "--force"]);
    h.created.clear();
}

#[test]
fn the_cache_stays_within_its_bound_by_the_pools_memory_figures() {
    // The binary's and the library's pages go into the page cache charged to whoever reads
    // them first: on a fresh build that would be the pool (its service's code paths, the
    // library mapped by the client), 35 MiB that are not the cache. Read them here first.
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_polytropon"));
    for file in [exe.to_path_buf(), exe.with_file_name(polytropon::frontend::LIBRARY)] {
        let _ = std::fs::read(&file);
    }
    // The same for python3 and the modules the script imports (on a fresh machine this is the
    // first python run, and its pages would be charged to the pool).
    let _ = std::process::Command::new("python3").args(["-c", "import hashlib, os, sys"]).status();
    let mut h = Host::new("wbbound");
    let (pool, upper, mnt) = served_pool(&mut h, &["--cpus", "0-1"]);
    let m = mnt.display().to_string();
    let u = upper.display().to_string();
    h.ok(&["mount", "--pool", &pool, &m, "--upper", &u, "--cache", "writeback", "--cache-size", "32M"]);
    let before = inspect(&h, &pool)["usage"]["memory_current"].as_u64().expect("memory figure");
    // 256 MiB written and read back on the user-level path: 8 times the cache.
    let script = r#"
import hashlib, os, sys
d = sys.argv[1]
blk = os.urandom(1 << 20)
want = []
for f in range(8):
    h = hashlib.sha256()
    with open(os.path.join(d, f"f{f}"), "wb") as out:
        for i in range(32):
            b = blk[i:] + blk[:i]
            out.write(b)
            h.update(b)
    want.append(h.hexdigest())
for f in range(8):
    h = hashlib.sha256()
    with open(os.path.join(d, f"f{f}"), "rb") as inp:
        while chunk := inp.read(1 << 20):
            h.update(chunk)
    assert h.hexdigest() == want[f], f"f{f} read back wrong"
print("ok")
"#;
    let out = h.run(&["exec", "--pool", &pool, "--preload-only", "--", "python3", "-c", script, &m]);
    assert!(out.status.success(), "{}", common::host::stderr(&out));
    let info = inspect(&h, &pool);
    let (usage, cache) = (&info["usage"], &info["service"]["cache"]);
    let peak = usage["memory_peak"].as_u64().expect("peak figure");
    println!("pool memory before {before}, peak {peak}; cache {cache}");
    let n = |k: &str| cache[k].as_u64().unwrap_or(0);
    assert!(n("writebacks") >= 256 * 16 && n("misses") > 0, "the data did not go through the cache: {cache}");
    assert!(n("bytes") + n("dirty") <= n("limit") && n("limit") <= 32 << 20, "{cache}");
    // The pool's memory (service, client, shared memory, page cache charged to it) grew by
    // at most the cache and some working room (python's buffers, the service's threads, the
    // segment): not by the 256 MiB that went through.
    assert!(peak <= before + (32 << 20) + (64 << 20), "pool memory peaked {} MiB above its start", (peak - before) >> 20);
    // What is still dirty reaches the branch once it has been dirty for `dirty_expire` (5 s).
    let since = std::time::Instant::now();
    while dirty(&h, &pool) > 0 && since.elapsed().as_secs() < 30 {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(std::fs::metadata(upper.join("f7")).expect("f7").len(), 32 << 20);
    h.ok(&["pool", "destroy", &pool, "--force"]);
    h.created.clear();
}

#[test]
fn a_cache_that_would_not_fit_the_pools_memory_limit_is_refused() {
    let mut h = Host::new("wbfit");
    let (pool, upper, mnt) = served_pool(&mut h, &["--memory", "128M"]);
    let (m, u) = (mnt.display().to_string(), upper.display().to_string());
    let out = h.run(&["mount", "--pool", &pool, &m, "--upper", &u, "--cache", "writeback", "--cache-size", "100M"]);
    let err = common::host::stderr(&out);
    assert!(!out.status.success() && err.contains("memory limit") && err.contains("--cache-size"), "{err}");
    assert!(!std::fs::read_to_string("/proc/self/mounts").expect("mounts").contains(&m), "mounted anyway");
    h.ok(&["mount", "--pool", &pool, &m, "--upper", &u, "--cache", "writeback", "--cache-size", "32M"]);
    std::fs::write(mnt.join("f"), b"fits").expect("write through FUSE");
    h.ok(&["pool", "destroy", &pool, "--force"]);
    h.created.clear();
}

/// An open with `O_TRUNC` of a file whose written data still waits in the cache (another
/// descriptor of it open) empties it for good: the waiting blocks are not written back into it
/// later, its size reads 0 at once, and a quota counts what it holds. (They were: the file read
/// its old size, and after the write-back held its 8 MiB while the quota counted 0.)
#[test]
fn an_open_that_truncates_drops_the_data_waiting_in_the_cache() {
    let mut h = Host::new("wbtrunc");
    let (pool, upper, mnt) = served_pool(&mut h, &["--cpus", "0-1"]);
    let spec = h.scratch.path().join("wbq.yaml");
    std::fs::write(&spec, format!("branches:\n  - path: {}\n    mode: rw\ncache:\n  mode: writeback\n  size: 64M\n  dirty_expire: 600\nquota:\n  bytes: 10M\n", upper.display())).expect("spec");
    h.ok(&["mount", "--pool", &pool, &mnt.display().to_string(), "-f", &spec.display().to_string()]);
    let script = "import os, sys\nd = sys.argv[1]\nfor name in ('a', 'b'):\n    p = os.path.join(d, name)\n    fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)\n    os.write(fd, b'x' * (8 << 20))\n    again = os.open(p, os.O_WRONLY | os.O_TRUNC)\n    print(name, os.fstat(fd).st_size, os.stat(p).st_size)\n    os.close(again)\n    os.close(fd)\nfd = os.open(os.path.join(d, 'c'), os.O_WRONLY | os.O_CREAT, 0o644)\ntotal = 0\ntry:\n    while total < (12 << 20):\n        total += os.write(fd, b'y' * (1 << 20))\n    print('c written')\nexcept OSError as e:\n    print('c', total >> 20, e.errno)\n";
    let out = h.run(&["exec", "--pool", &pool, "--preload-only", "--", "python3", "-c", script, &mnt.display().to_string()]);
    assert!(out.status.success(), "{}", common::host::stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("a 0 0\nb 0 0\nc 10 {}\n", libc::EDQUOT), "{}", common::host::stderr(&out));
    let storage = inspect(&h, &pool)["service"]["mounts"][0]["storage"]["bytes"].as_u64();
    h.ok(&["service", "stop", "--pool", &pool]);
    for name in ["a", "b"] {
        assert_eq!(std::fs::metadata(upper.join(name)).expect("in the upper branch").len(), 0, "{name}'s truncated data came back with the write-back");
    }
    assert_eq!(storage, Some(10 << 20), "the quota's count: two empty files and c's 10 MiB");
}

/// Writes 4 MiB to `argv[1]/kept` and to `argv[1]/removed`, closes both, removes `removed`.
const KEEP_AND_REMOVE: &str = r#"
import os, sys
d = sys.argv[1]
block = bytes(range(256)) * 4096
for name in ("kept", "removed"):
    with open(os.path.join(d, name), "wb") as f:
        for i in range(4):
            f.write(block[i:] + block[:i])
os.unlink(os.path.join(d, "removed"))
print("done")
"#;

/// A write-back mount writes a closed file back at once (close-to-open, the default: something
/// may read the branch behind the service); one whose spec declares the branch its own
/// (`close_to_open: false`, issue 25) keeps a closed file's data in the cache for
/// `dirty_expire`, so a file removed before then never reaches the disk, and one that lives is
/// written back once it expires. `inspect` says which applies.
#[test]
fn a_closed_file_waits_for_its_expiry_only_where_the_branch_is_declared_the_mounts_own() {
    let mut h = Host::new("wbclose");
    // A pool each: a service's one cache has the first write-back mount's expiry.
    let (pool, upper, mnt) = served_pool(&mut h, &["--cpus", "0"]);
    let other = h.create("q", &["--cpus", "1"]);
    h.ok(&["service", "run", "--pool", &other, "--detach"]);
    let writebacks = |h: &Host, pool: &str| inspect(h, pool)["service"]["cache"]["writebacks"].as_u64().unwrap_or(0);
    for close_to_open in [false, true] {
        let (upper, mnt) = if close_to_open { (h.scratch.mkdir("upper-cto"), h.scratch.mkdir("mnt-cto")) } else { (upper.clone(), mnt.clone()) };
        let pool = if close_to_open { other.as_str() } else { pool.as_str() };
        let spec = h.scratch.path().join(format!("wb-{close_to_open}.yaml"));
        let expire = if close_to_open { 600 } else { 3 };
        // Close-to-open by default.
        let private = if close_to_open { "" } else { "  close_to_open: false\n" };
        std::fs::write(&spec, format!("branches:\n  - path: {}\n    mode: rw\ncache:\n  mode: writeback\n  size: 64M\n  dirty_expire: {expire}\n{private}", upper.display())).expect("spec");
        let m = mnt.display().to_string();
        h.ok(&["mount", "--pool", pool, &m, "-f", &spec.display().to_string()]);
        let shown = inspect(&h, pool)["service"]["mounts"].as_array().expect("mounts").iter().find(|x| x["mountpoint"] == m.as_str()).map(|x| x["write_back"].clone());
        let want = if close_to_open { format!("at the last close, after {expire} s dirty") } else { format!("after {expire} s dirty") };
        assert_eq!(shown.and_then(|w| w.as_str().map(String::from)), Some(want), "inspect");
        let before = writebacks(&h, pool);
        let written = std::time::Instant::now();
        assert_eq!(h.ok(&["exec", "--pool", pool, "--preload-only", "--", "python3", "-c", KEEP_AND_REMOVE, &m]).trim(), "done");
        let on_disk = || std::fs::metadata(upper.join("kept")).map(|m| m.len()).unwrap_or(0);
        if close_to_open {
            let t = std::time::Instant::now();
            while on_disk() < 4 << 20 && t.elapsed().as_secs() < 10 {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            assert!(std::fs::read(upper.join("kept")).expect("kept") == expected(), "the close did not write the file back");
        } else {
            assert_eq!(on_disk(), 0, "the close wrote the file back");
            assert!(dirty(&h, pool) >= 4 << 20, "the kept file is not dirty in the cache");
            let t = std::time::Instant::now();
            while dirty(&h, pool) > 0 && t.elapsed().as_secs() < 30 {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            assert!(written.elapsed().as_secs() >= expire, "written back before its expiry");
            assert!(std::fs::read(upper.join("kept")).expect("kept") == expected(), "the kept file after its expiry");
            // 4 MiB in 64 KiB blocks: the kept file's; the removed one's never.
            assert_eq!(writebacks(&h, pool) - before, 64, "the removed file was written back too");
        }
        assert!(!upper.join("removed").exists());
        h.ok(&["umount", &m]);
    }
    for p in [&pool, &other] {
        h.ok(&["pool", "destroy", p, "--force"]);
    }
    h.created.clear();
}

/// `service stop` waits for a write-back that takes longer than its 15 s of grace while the
/// service keeps writing (a pool whose writes are limited to 1 MB/s with 20 MiB dirty): no
/// data is lost to the kill that used to come at 15 s.
#[test]
fn service_stop_waits_for_a_slow_write_back() {
    let mut h = Host::new("wbslow");
    let Some(disk) = common::disk_of(h.scratch.path()) else {
        eprintln!("the scratch directory is on no block device: skipped");
        return;
    };
    let (pool, upper, mnt) = served_pool(&mut h, &["--cpus", "0-1", "--io-max", &format!("{disk}:wbps=1M")]);
    mount(&h, &pool, &mnt, &upper);
    // Five writers of 4 MiB each, holding their files open: 20 MiB dirty.
    let writers: Vec<Client> = (0..5).map(|i| writer(&h, &pool, &mnt.join(format!("f{i}")), "keep")).collect();
    assert!(dirty(&h, &pool) >= 20 << 20, "not dirty in the cache");
    let t = std::time::Instant::now();
    h.ok(&["service", "stop", "--pool", &pool]);
    let took = t.elapsed();
    for i in 0..5 {
        assert!(std::fs::read(upper.join(format!("f{i}"))).expect("written back") == expected(), "f{i} lost at service stop (after {took:?})");
    }
    assert!(took.as_secs() >= 15, "the write-back was not slowed ({took:?}): the test tests nothing");
    drop(writers);
}
