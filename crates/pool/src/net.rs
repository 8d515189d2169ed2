//! A pool's network (`pool create --net-rate RATE`): one network namespace shared by the
//! pool's containers (`exec --net pool`), kept alive by a binding under the pool's state
//! directory, wired to the host by a veth pair with private addresses (a /30 of
//! 10.213.0.0/16 per pool: the host side `.1`, the pool side `.2`, the pool's default route
//! through the host), its traffic shaped both ways with a token bucket (`tbf`) at the rate:
//! what leaves the pool on the pool side's `eth0`, what enters it on the host side.
//!
//! Set up with iproute2 (`ip`, `tc`, and util-linux `nsenter`), as a shell user would; every
//! failure names the command and what it said, and undoes what was made.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

/// Pools a host can give a network to (/30s of 10.213.0.0/16).
const MAX_POOLS: u32 = 16_384;

/// Why a pool network cannot be made or removed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{command}: {why}")]
    Command { command: String, why: String },
    #[error("every pool network address of 10.213.0.0/16 is taken")]
    Exhausted,
    #[error("cannot create the pool's network namespace")]
    Namespace(#[source] std::io::Error),
}

/// A pool's network, as recorded in its state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolNet {
    /// The network namespace binding.
    pub ns: PathBuf,
    /// Which /30 of 10.213.0.0/16 (and the interface names `ptnINDEXh`).
    pub index: u32,
    /// The rate both ways, bits per second.
    pub rate: u64,
}

/// Parses a rate as tc writes one: `20mbit`, `1gbit`, `500kbit`, `100000bit` (decimal units).
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| "expected a number and a unit: bit, kbit, mbit or gbit (e.g. 20mbit)".to_string())?;
    let mult = match unit {
        "bit" => 1,
        "kbit" => 1_000,
        "mbit" => 1_000_000,
        "gbit" => 1_000_000_000,
        other => return Err(format!("unknown unit {other:?}: bit, kbit, mbit or gbit (e.g. 20mbit)")),
    };
    let rate = n.checked_mul(mult).ok_or("too large")?;
    if !(8_000..=100_000_000_000).contains(&rate) {
        return Err("must be between 8kbit and 100gbit".into());
    }
    Ok(rate)
}

impl PoolNet {
    /// The host side's interface.
    pub fn host_if(&self) -> String {
        format!("ptn{}h", self.index)
    }

    /// The host side's address (the pool's gateway).
    pub fn host_ip(&self) -> Ipv4Addr {
        address(self.index, 1)
    }

    /// The pool side's address (`eth0` in the pool's namespace).
    pub fn pool_ip(&self) -> Ipv4Addr {
        address(self.index, 2)
    }

    /// Makes the network of a pool at `ns` (a file to bind the namespace at) with the first
    /// free index (`taken`: those of the other pools), shaped at `rate`.
    pub fn create(ns: &Path, taken: &[u32], rate: u64) -> Result<PoolNet, NetError> {
        let index = (0..MAX_POOLS)
            .find(|i| !taken.contains(i) && !Path::new("/sys/class/net").join(format!("ptn{i}h")).exists())
            .ok_or(NetError::Exhausted)?;
        crate::ns::create(ns, "--net").map_err(NetError::Namespace)?;
        let net = PoolNet { ns: ns.to_path_buf(), index, rate };
        if let Err(e) = net.wire() {
            let _ = net.remove();
            return Err(e);
        }
        Ok(net)
    }

    fn wire(&self) -> Result<(), NetError> {
        let (host, pool_side) = (self.host_if(), format!("ptn{}p", self.index));
        let ns = self.ns.display().to_string();
        let host_cidr = format!("{}/30", self.host_ip());
        let pool_cidr = format!("{}/30", self.pool_ip());
        let gateway = self.host_ip().to_string();
        let rate = format!("{}bit", self.rate);
        let burst = burst(self.rate).to_string();
        run("ip", &["link", "add", &host, "type", "veth", "peer", "name", &pool_side])?;
        run("ip", &["link", "set", &pool_side, "netns", &ns])?;
        run("ip", &["addr", "add", &host_cidr, "dev", &host])?;
        run("ip", &["link", "set", &host, "up"])?;
        run("tc", &["qdisc", "add", "dev", &host, "root", "tbf", "rate", &rate, "burst", &burst, "latency", "50ms"])?;
        let inside = |args: &[&str]| {
            let mut all = vec![format!("--net={ns}")];
            all.extend(args.iter().map(|a| a.to_string()));
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            run("nsenter", &all)
        };
        inside(&["ip", "link", "set", &pool_side, "name", "eth0"])?;
        inside(&["ip", "addr", "add", &pool_cidr, "dev", "eth0"])?;
        inside(&["ip", "link", "set", "eth0", "up"])?;
        inside(&["ip", "link", "set", "lo", "up"])?;
        inside(&["ip", "route", "add", "default", "via", &gateway])?;
        inside(&["tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", &rate, "burst", &burst, "latency", "50ms"])
    }

    /// Removes the veth pair and the namespace binding; what is gone already is fine.
    pub fn remove(&self) -> Result<(), NetError> {
        if Path::new("/sys/class/net").join(self.host_if()).exists() {
            run("ip", &["link", "del", &self.host_if()])?;
        }
        crate::ns::remove(&self.ns).map_err(NetError::Namespace)
    }
}

/// The bucket: 10 ms at the rate, at least 32 KiB (a few full-size frames).
fn burst(rate: u64) -> u64 {
    (rate / 8 / 100).max(32 << 10)
}

fn address(index: u32, host: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 213, 0, 0)) + index * 4 + host)
}

fn run(program: &str, args: &[&str]) -> Result<(), NetError> {
    let command = format!("{program} {}", args.join(" "));
    match Command::new(program).args(args).output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(NetError::Command { command, why: String::from_utf8_lossy(&o.stderr).trim().to_string() }),
        Err(e) => Err(NetError::Command { command, why: format!("cannot run it ({e}): is iproute2 installed?") }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_addresses() {
        assert_eq!(parse_rate("20mbit"), Ok(20_000_000));
        assert_eq!(parse_rate(" 1Gbit "), Ok(1_000_000_000));
        assert_eq!(parse_rate("500kbit"), Ok(500_000));
        assert!(parse_rate("20").expect_err("no unit").contains("unit"));
        assert!(parse_rate("20mb").expect_err("bytes?").contains("mbit"));
        assert!(parse_rate("1kbit").expect_err("too slow").contains("between"));
        assert!(parse_rate("fast").is_err());
        let n = PoolNet { ns: PathBuf::new(), index: 0, rate: 1 };
        assert_eq!((n.host_ip(), n.pool_ip(), n.host_if()), (Ipv4Addr::new(10, 213, 0, 1), Ipv4Addr::new(10, 213, 0, 2), "ptn0h".into()));
        let n = PoolNet { index: 65, ..n };
        assert_eq!((n.host_ip(), n.pool_ip()), (Ipv4Addr::new(10, 213, 1, 5), Ipv4Addr::new(10, 213, 1, 6)));
        let last = PoolNet { index: MAX_POOLS - 1, ..n };
        assert_eq!(last.pool_ip(), Ipv4Addr::new(10, 213, 255, 254));
        assert_eq!(burst(20_000_000), 32 << 10);
        assert_eq!(burst(10_000_000_000), 12_500_000);
    }
}
