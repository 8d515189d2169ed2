//! The service's own traffic to a CephFS cluster, in a pool with a network of its own
//! (`pool create --net-rate`): the instance's Ceph client is made on a thread that joined the
//! pool's network namespace, so the threads libcephfs starts from it (its messenger's workers,
//! which open and carry every connection to the monitors, MDSs and OSDs) are in that
//! namespace too, and the pool's traffic shaping counts the tenant's Ceph traffic as it
//! counts its containers'. The cluster must then be reachable from the pool's network: an
//! address the host routes for it, never a loopback one (checked before the client is made,
//! so the mount fails at once with the reason rather than after libcephfs's mount timeout).

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a monitor may take to accept a connection from the pool's network.
const REACH: Duration = Duration::from_secs(3);

/// Why a CephFS instance cannot be served from a pool's network.
#[derive(Debug, thiserror::Error)]
pub enum CephNetError {
    #[error("cannot join pool {pool}'s network namespace {ns}")]
    Join {
        pool: String,
        ns: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pool {pool} has a network of its own (--net-rate), and its Ceph traffic goes through it, but {conf} names monitors on loopback ({addr}), which the pool's network cannot reach: give the cluster an address of the host (or a routed one)")]
    Loopback { pool: String, conf: PathBuf, addr: SocketAddr },
    #[error("no Ceph monitor of {conf} ({addrs}) accepts a connection from pool {pool}'s network (--net-rate): the cluster must be reachable from 10.213.0.0/16 through the host")]
    Unreachable { pool: String, conf: PathBuf, addrs: String },
    #[error("the thread that builds the instance in pool {0}'s network ended abnormally")]
    Thread(String),
}

/// Runs `build` on a thread of its own inside the network namespace bound at `ns`, after
/// checking that `conf`'s monitors are reachable from there.
pub fn within<T: Send, E: Send>(pool: &str, ns: &Path, conf: &Path, build: impl FnOnce() -> Result<T, E> + Send) -> Result<Result<T, E>, CephNetError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            crate::pool::ns::join_net(ns).map_err(|source| CephNetError::Join { pool: pool.to_string(), ns: ns.to_path_buf(), source })?;
            reachable(pool, conf)?;
            Ok(build())
        })
        .join()
        .unwrap_or_else(|_| Err(CephNetError::Thread(pool.to_string())))
    })
}

/// Checks, from the calling thread's network, that one of `conf`'s monitors accepts a
/// connection. A conf naming its monitors otherwise than by address (DNS names, SRV
/// records) is not checked: libcephfs's mount reports what it finds.
fn reachable(pool: &str, conf: &Path) -> Result<(), CephNetError> {
    let text = std::fs::read_to_string(conf).unwrap_or_default();
    let addrs = mon_addrs(&text);
    if let Some(addr) = addrs.iter().find(|a| a.ip().is_loopback()) {
        return Err(CephNetError::Loopback { pool: pool.to_string(), conf: conf.to_path_buf(), addr: *addr });
    }
    if addrs.is_empty() || addrs.iter().any(|a| TcpStream::connect_timeout(a, REACH).is_ok()) {
        return Ok(());
    }
    let list = addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    Err(CephNetError::Unreachable { pool: pool.to_string(), conf: conf.to_path_buf(), addrs: list })
}

/// The monitor addresses of a ceph.conf's `mon host` (or `mon_host`, `mon addr`) setting, in
/// any of Ceph's forms: `10.0.0.1`, `10.0.0.1:6789`, `[v2:10.0.0.1:3300,v1:10.0.0.1:6789]`,
/// several separated by commas or spaces. Names are left out.
pub fn mon_addrs(conf: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for line in conf.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("").trim();
        let Some((key, value)) = line.split_once('=') else { continue };
        let key = key.trim().replace('_', " ");
        if key != "mon host" && key != "mon addr" {
            continue;
        }
        for token in value.split(|c: char| c == ',' || c == '[' || c == ']' || c.is_whitespace()) {
            let (token, default_port) = match token.split_once(':') {
                Some(("v1", rest)) => (rest, 6789),
                Some(("v2", rest)) => (rest, 3300),
                _ => (token, 6789),
            };
            let token = token.split('/').next().unwrap_or("");
            if let Ok(a) = token.parse::<SocketAddr>() {
                out.push(a);
            } else if let Ok(ip) = token.parse::<IpAddr>() {
                out.push(SocketAddr::new(ip, default_port));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_addresses_in_cephs_forms() {
        let conf = "[global]\nfsid = x\nmon host = [v2:10.214.0.1:40001,v1:10.214.0.1:40000] 10.0.0.9, mon.example.com\n# mon host = 1.2.3.4\n";
        let got: Vec<String> = mon_addrs(conf).iter().map(ToString::to_string).collect();
        assert_eq!(got, ["10.214.0.1:40001", "10.214.0.1:40000", "10.0.0.9:6789"]);
        assert_eq!(mon_addrs("mon_host = 127.0.0.1:6789/0\n")[0].to_string(), "127.0.0.1:6789");
        assert_eq!(mon_addrs("mon_host=v2:192.168.1.2\n")[0].to_string(), "192.168.1.2:3300");
        assert!(mon_addrs("[global]\nmon host = ceph-mon.local\n").is_empty());
    }

    #[test]
    fn a_loopback_monitor_is_refused_before_anything_is_tried() {
        let dir = std::env::temp_dir().join(format!("polytropon-cephnet-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let conf = dir.join("ceph.conf");
        std::fs::write(&conf, "[global]\nmon host = [v2:127.0.0.1:3300,v1:127.0.0.1:6789]\n").expect("conf");
        let err = reachable("p", &conf).expect_err("loopback");
        assert!(matches!(err, CephNetError::Loopback { .. }), "{err}");
        assert!(err.to_string().contains("127.0.0.1:3300") && err.to_string().contains("--net-rate"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
