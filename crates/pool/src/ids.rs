//! A pool's range of host user and group ids: its containers run in a user namespace mapped
//! onto it, so their root is an unprivileged user of the host, and no two pools share an id.
//!
//! Ranges are claimed host-wide (several state directories may live on one host) in a
//! registry directory, one file per range named `FIRST-COUNT` holding its owner (the pool's
//! state directory), made with `O_EXCL` under a lock; `pool destroy` releases its file. A
//! claim whose pool no longer exists is taken back when a new range is claimed. Allocated
//! ranges start at 2^30, above ordinary users and the usual `/etc/subuid` ranges.

use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where claims live unless `POLYTROPON_ID_REGISTRY` says otherwise.
pub const REGISTRY: &str = "/var/lib/polytropon/id-ranges";
/// Ids per pool by default (as `/etc/subuid` ranges: every 16-bit id a container image uses).
pub const DEFAULT_COUNT: u32 = 65536;
/// The first id allocated ranges use.
pub const BASE: u32 = 1 << 30;

/// `count` host ids from `first`: container id `n` is host id `first + n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    pub first: u32,
    pub count: u32,
}

impl IdRange {
    fn end(&self) -> u64 {
        u64::from(self.first) + u64::from(self.count)
    }

    fn overlaps(&self, o: &IdRange) -> bool {
        u64::from(self.first) < o.end() && u64::from(o.first) < self.end()
    }
}

impl std::fmt::Display for IdRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.first, self.count)
    }
}

/// What is wrong with a range asked for, or with the registry.
#[derive(Debug, thiserror::Error)]
pub enum IdError {
    #[error("--uid-range {0:?}: expected FIRST:COUNT or FIRST (host ids; COUNT defaults to 65536)")]
    Syntax(String),
    #[error("--uid-range {0}: must start above 0 (host root), hold at least one id and end below 2^32 - 1")]
    OutOfRange(IdRange),
    #[error("--uid-range {asked}: overlaps {owner}'s ids {theirs}")]
    Taken { asked: IdRange, theirs: IdRange, owner: String },
    #[error("no free range of {0} ids is left")]
    Exhausted(u32),
    #[error("id range registry {}", .path.display())]
    Registry {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Parses `FIRST:COUNT` or `FIRST`.
pub fn parse(s: &str) -> Result<IdRange, IdError> {
    let bad = || IdError::Syntax(s.to_string());
    let (first, count) = match s.trim().split_once(':') {
        Some((f, c)) => (f.trim().parse::<u32>().map_err(|_| bad())?, c.trim().parse::<u32>().map_err(|_| bad())?),
        None => (s.trim().parse::<u32>().map_err(|_| bad())?, DEFAULT_COUNT),
    };
    let r = IdRange { first, count };
    if first == 0 || count == 0 || r.end() >= u64::from(u32::MAX) {
        return Err(IdError::OutOfRange(r));
    }
    Ok(r)
}

fn registry() -> PathBuf {
    std::env::var_os("POLYTROPON_ID_REGISTRY").map_or_else(|| PathBuf::from(REGISTRY), PathBuf::from)
}

fn file_name(r: &IdRange) -> String {
    format!("{}-{}", r.first, r.count)
}

/// One claim: its range, its file, and its owner (the pool's directory).
struct Claim {
    range: IdRange,
    path: PathBuf,
    owner: String,
}

fn claims(dir: &Path) -> std::io::Result<Vec<Claim>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let Some((f, c)) = name.to_str().and_then(|n| n.split_once('-')) else { continue };
        let (Ok(first), Ok(count)) = (f.parse::<u32>(), c.parse::<u32>()) else { continue };
        let owner = std::fs::read_to_string(e.path()).unwrap_or_default().trim().to_string();
        out.push(Claim { range: IdRange { first, count }, path: e.path(), owner });
    }
    Ok(out)
}

/// Whether the pool a claim names still exists (its directory is there; an unreadable
/// claim is kept, to be safe).
fn alive(owner: &str) -> bool {
    owner.is_empty() || Path::new(owner).exists()
}

/// Claims `asked` (or, when `None`, the lowest free range of [`DEFAULT_COUNT`] ids from
/// [`BASE`]) for the pool whose state directory is `pool_dir`.
pub fn claim(asked: Option<IdRange>, pool_dir: &Path) -> Result<IdRange, IdError> {
    let dir = registry();
    let reg = |source| IdError::Registry { path: dir.clone(), source };
    crate::state::private_dir(&dir, 0o700).map_err(reg)?;
    let lock = std::fs::File::create(dir.join(".lock")).map_err(reg)?;
    rustix::fs::flock(lock.as_fd(), rustix::fs::FlockOperation::LockExclusive).map_err(|e| reg(e.into()))?;
    let mut taken = Vec::new();
    for c in claims(&dir).map_err(reg)? {
        if alive(&c.owner) {
            taken.push(c);
        } else {
            let _ = std::fs::remove_file(&c.path);
        }
    }
    let range = match asked {
        Some(r) => {
            if let Some(c) = taken.iter().find(|c| c.range.overlaps(&r)) {
                return Err(IdError::Taken { asked: r, theirs: c.range, owner: c.owner.clone() });
            }
            r
        }
        None => (0..)
            .map(|i: u64| u64::from(BASE) + i * u64::from(DEFAULT_COUNT))
            .take_while(|first| first + u64::from(DEFAULT_COUNT) < u64::from(u32::MAX))
            .map(|first| IdRange { first: first as u32, count: DEFAULT_COUNT })
            .find(|r| !taken.iter().any(|c| c.range.overlaps(r)))
            .ok_or(IdError::Exhausted(DEFAULT_COUNT))?,
    };
    let path = dir.join(file_name(&range));
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&path).map_err(reg)?;
    writeln!(f, "{}", pool_dir.display()).map_err(reg)?;
    Ok(range)
}

/// Gives `range` back.
pub fn release(range: &IdRange) {
    let _ = std::fs::remove_file(registry().join(file_name(range)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_are_checked() {
        assert_eq!(parse("200000:1000").expect("ok"), IdRange { first: 200000, count: 1000 });
        assert_eq!(parse("300000").expect("ok").count, DEFAULT_COUNT);
        for bad in ["0:10", "5:0", "x", "1:2:3", "4294967000:1000"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let a = IdRange { first: 10, count: 10 };
        assert!(a.overlaps(&IdRange { first: 19, count: 5 }) && !a.overlaps(&IdRange { first: 20, count: 5 }));
    }
}
