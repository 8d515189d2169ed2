//! A pool's network (issue 30): `pool create --net-rate 20mbit` gives the pool's containers a
//! network namespace wired to the host by a veth pair, shaped both ways. Measured here with
//! the test image's busybox `nc` moving 7.5 MiB each way between a container and the host
//! side of the pool network (reported; asserted only within a generous bound); a pool
//! without a rate is not shaped; `--net host` is refused in a shaped pool and `--net pool`
//! in one without a network; `pool destroy` leaves no interface or namespace binding.
//! The service's own traffic to a CephFS cluster goes through the pool's network and is
//! shaped with it (a cluster listening on an address of the host that is not loopback),
//! and a cluster on loopback is refused for such a pool with the reason.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::ceph::Cluster;
use common::host::{stderr, Host};
use common::image_dir;

const IMAGE: &str = "polytropon/test:latest";
/// 120 blocks of 64 KiB: 3.1 s at 20 Mbit/s.
const BLOCKS: usize = 120;
const BYTES: usize = BLOCKS << 16;

fn mbit(bytes: usize, took: Duration) -> f64 {
    bytes as f64 * 8.0 / took.as_secs_f64() / 1e6
}

/// Runs `script` in a new clone of the test image in `pool` (with `extra` exec flags).
fn clone_sh(h: &Host, pool: &str, extra: &[&str], script: &str) -> std::process::Command {
    let mut c = h.cmd();
    c.args(["exec", "--pool", pool, "--clone-of", IMAGE]).args(extra).args(["--", "sh", "-c", script]);
    c
}

/// Receives on `listener` until the sender closes: (bytes, time from accept to the end).
fn receive(listener: TcpListener) -> std::thread::JoinHandle<(usize, Duration)> {
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("the container connects");
        let start = Instant::now();
        let mut buf = vec![0u8; 1 << 16];
        let mut n = 0;
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
        (n, start.elapsed())
    })
}

/// From the container to the host side at `at`: the measured rate in Mbit/s.
fn upload(h: &Host, pool: &str, extra: &[&str], at: Ipv4Addr) -> f64 {
    let listener = TcpListener::bind((at, 0)).expect("listen on the host side");
    let port = listener.local_addr().expect("port").port();
    let got = receive(listener);
    let script = format!("dd if=/dev/zero bs=65536 count={BLOCKS} 2>/dev/null | busybox nc {at} {port}");
    let out = common::host::output_within(clone_sh(h, pool, extra, &script), "the uploading container", Duration::from_secs(120));
    assert!(out.status.success(), "upload failed: {}", stderr(&out));
    let (n, took) = got.join().expect("receiver");
    assert_eq!(n, BYTES, "every byte arrives");
    mbit(n, took)
}

#[test]
fn a_pools_network_is_shaped_both_ways_and_goes_with_the_pool() {
    let mut h = Host::new("netrate");
    h.ok(&["image", "import", image_dir().join("oci").to_str().expect("utf-8 path")]);
    let shaped = h.create("s", &["--net-rate", "20mbit"]);
    let free = h.create("f", &[]);
    h.ok(&["service", "run", "--pool", &shaped, "--detach"]);
    h.ok(&["service", "run", "--pool", &free, "--detach"]);
    let state = h.pools().get(&shaped).expect("state").expect("pool");
    let net = state.net.clone().expect("the pool has a network");
    let host_if = net.host_if();
    assert!(std::path::Path::new("/sys/class/net").join(&host_if).exists(), "no {host_if}");

    // Out of the pool: container -> host side.
    let up = upload(&h, &shaped, &[], net.host_ip());
    // Into the pool: host -> a container listening on the pool side.
    let mut listener = clone_sh(&h, &shaped, &[], "busybox nc -l -p 19923 >/dev/null");
    let mut server = listener.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("start the listening container");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut conn = loop {
        match TcpStream::connect((net.pool_ip(), 19923)) {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                let _ = server.kill();
                panic!("cannot reach the container at {}: {e}", net.pool_ip());
            }
        }
    };
    let start = Instant::now();
    let block = vec![0u8; 1 << 16];
    for _ in 0..BLOCKS {
        conn.write_all(&block).expect("send into the pool");
    }
    conn.shutdown(std::net::Shutdown::Write).expect("shutdown");
    // The container's nc ends when it has read everything.
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    let status = server.wait().expect("the listening container");
    let down = mbit(BYTES, start.elapsed());
    assert!(status.success(), "the listening container failed");
    eprintln!("pool network shaped at 20 Mbit/s: out of the pool {up:.1} Mbit/s, into it {down:.1} Mbit/s");
    for (what, rate) in [("out of the pool", up), ("into the pool", down)] {
        assert!((5.0..=30.0).contains(&rate), "{what}: {rate:.1} Mbit/s at a rate of 20");
    }

    // A pool without a rate: the host's network, not shaped.
    let unshaped = upload(&h, &free, &[], Ipv4Addr::LOCALHOST);
    eprintln!("a pool without a rate (host network, loopback): {unshaped:.0} Mbit/s");
    assert!(unshaped > 100.0, "unshaped: {unshaped:.1} Mbit/s");

    // Which network a container may have.
    let out = h.run(&["exec", "--pool", &shaped, "--net", "host", "--clone-of", IMAGE, "--", "true"]);
    assert!(!out.status.success() && stderr(&out).contains("shapes its network"), "{}", stderr(&out));
    let out = h.run(&["exec", "--pool", &free, "--net", "pool", "--clone-of", IMAGE, "--", "true"]);
    assert!(!out.status.success() && stderr(&out).contains("--net-rate"), "{}", stderr(&out));
    let out = h.run(&["pool", "create", &h.name("bad"), "--net-rate", "20mb"]);
    assert!(!out.status.success() && stderr(&out).contains("--net-rate"), "{}", stderr(&out));

    // Gone with the pool.
    h.ok(&["pool", "destroy", &shaped, "--force"]);
    h.created.retain(|n| n != &shaped);
    assert!(!std::path::Path::new("/sys/class/net").join(&host_if).exists(), "destroy left {host_if}");
    assert!(!net.ns.exists(), "destroy left the namespace binding");
}

/// An address of this host for the test's cluster (on `lo`, /32), removed when dropped.
struct HostAddr(String);

impl HostAddr {
    fn add() -> HostAddr {
        let a = HostAddr(format!("10.214.{}.1", std::process::id() % 250));
        let out = std::process::Command::new("ip").args(["addr", "add", &format!("{}/32", a.0), "dev", "lo"]).output().expect("run ip");
        assert!(out.status.success(), "ip addr add: {}", stderr(&out));
        a
    }
}

impl Drop for HostAddr {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["addr", "del", &format!("{}/32", self.0), "dev", "lo"]).output();
    }
}

/// Unmounts a pool mount when dropped.
struct Mounted<'a>(&'a Host, std::path::PathBuf);

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["umount", self.1.to_str().expect("utf-8")]);
    }
}

fn mount_ceph<'a>(h: &'a Host, pool: &str, conf: &str, name: &str) -> Mounted<'a> {
    let at = h.scratch.mkdir(name);
    h.ok(&["mount", at.to_str().expect("utf-8"), "--pool", pool, "--backend", "cephfs", "--ceph-conf", conf, "--upper", "/", "--detach"]);
    Mounted(h, at)
}

/// Writes `BYTES` to `path` and syncs them: the rate in Mbit/s.
fn write_synced(path: &std::path::Path) -> f64 {
    let start = Instant::now();
    let mut f = std::fs::File::create(path).expect("create on CephFS");
    let block = vec![7u8; 1 << 16];
    for _ in 0..BLOCKS {
        f.write_all(&block).expect("write on CephFS");
    }
    f.sync_all().expect("fsync on CephFS");
    mbit(BYTES, start.elapsed())
}

#[test]
fn the_services_ceph_traffic_goes_through_the_pools_network() {
    let mut h = Host::new("netceph");
    let addr = HostAddr::add();
    let cluster = Cluster::start_at(&h.scratch.mkdir("cluster"), Cluster::port(0), &addr.0);
    let shaped = h.create("s", &["--net-rate", "20mbit"]);
    let free = h.create("f", &[]);
    h.ok(&["service", "run", "--pool", &shaped, "--detach"]);
    h.ok(&["service", "run", "--pool", &free, "--detach"]);
    let ns = h.pools().get(&shaped).expect("state").expect("pool").net.expect("the pool has a network").ns;
    let s = mount_ceph(&h, &shaped, &cluster.conf, "shaped");
    let f = mount_ceph(&h, &free, &cluster.conf, "free");

    // Out of the pool: a synced write through the shaped pool's instance.
    let up = write_synced(&s.1.join("up"));
    // The connections that carried it are the service's, in the pool's namespace.
    let out = std::process::Command::new("nsenter").arg(format!("--net={}", ns.display())).args(["ss", "-tnp"]).output().expect("run nsenter ss");
    let seen = String::from_utf8_lossy(&out.stdout);
    assert!(seen.contains(&format!("{}:", addr.0)) && seen.contains("polytropon"), "no connection of the service to the cluster in the pool's network:\n{seen}");
    // Into the pool: what another client wrote, read cold through the shaped pool.
    let unshaped = write_synced(&f.1.join("down"));
    let start = Instant::now();
    let back = std::fs::read(s.1.join("down")).expect("read through the shaped pool");
    let down = mbit(back.len(), start.elapsed());
    assert_eq!(back.len(), BYTES, "the whole file comes back");
    assert!(back.iter().all(|&b| b == 7), "the data comes back intact");
    eprintln!("CephFS through a pool shaped at 20 Mbit/s: writes {up:.1} Mbit/s, reads {down:.1} Mbit/s; through an unshaped pool: writes {unshaped:.0} Mbit/s");
    for (what, rate) in [("writes out of the pool", up), ("reads into the pool", down)] {
        assert!((5.0..=30.0).contains(&rate), "{what}: {rate:.1} Mbit/s at a rate of 20");
    }
    assert!(unshaped > 60.0, "unshaped: {unshaped:.1} Mbit/s");
    drop((s, f));

    // A cluster on loopback cannot be reached from the pool's network: refused at once.
    let conf = h.scratch.path().join("loopback.conf");
    std::fs::write(&conf, "[global]\nmon host = [v2:127.0.0.1:3300,v1:127.0.0.1:6789]\n").expect("conf");
    let at = h.scratch.mkdir("refused");
    let out = h.run(&["mount", at.to_str().expect("utf-8"), "--pool", &shaped, "--backend", "cephfs", "--ceph-conf", conf.to_str().expect("utf-8"), "--upper", "/", "--detach"]);
    assert!(!out.status.success() && stderr(&out).contains("loopback") && stderr(&out).contains("127.0.0.1:3300"), "{}", stderr(&out));
    h.ok(&["pool", "destroy", &shaped, "--force"]);
    h.created.retain(|n| n != &shaped);
    drop(cluster);
}
