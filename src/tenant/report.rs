//! What `inspect` shows of a pool: its slice, live cgroup usage, service, mounts,
//! containers, and the health of the Ceph clusters it uses.

use std::time::Duration;

use serde::Serialize;

use crate::pool::cgroups::{self, Usage};
use crate::pool::{PoolState, Pools};
use crate::backend::cephfs::health::{self, Health};
use crate::container::state::{ContainerRecord, Containers};
use crate::service::control::{self, Request, ServiceStats};
use crate::spec::BackendSpec;

/// One pool, as reported.
#[derive(Clone, Debug, Serialize)]
pub struct PoolReport {
    pub pool: PoolState,
    pub usage: Usage,
    /// The running service's own report, if it runs and answers.
    pub service: Option<ServiceStats>,
    /// Why there is no service report.
    pub service_note: Option<String>,
    pub containers: Vec<ContainerReport>,
    /// The health of each Ceph cluster the pool's mounts use.
    pub ceph: Vec<CephReport>,
}

/// A Ceph cluster a pool uses, and its health.
#[derive(Clone, Debug, Serialize)]
pub struct CephReport {
    pub conf: std::path::PathBuf,
    pub id: String,
    pub health: Option<Health>,
    /// Why there is no health.
    pub error: Option<String>,
}

/// How long `inspect` waits for a cluster's monitors.
const CEPH_TIMEOUT_S: u32 = 5;

/// The health of each cluster (by conf and client id) the service's mounts use.
fn ceph_health(service: Option<&ServiceStats>) -> Vec<CephReport> {
    let mut out: Vec<CephReport> = Vec::new();
    for m in service.map_or(&[][..], |s| &s.mounts) {
        let BackendSpec::Cephfs(c) = &m.spec.backend else { continue };
        if out.iter().any(|r| r.conf == c.conf && r.id == c.id) {
            continue;
        }
        let (health, error) = match health::health(&c.conf, &c.id, CEPH_TIMEOUT_S) {
            Ok(h) => (Some(h), None),
            Err(e) => (None, Some(e)),
        };
        out.push(CephReport { conf: c.conf.clone(), id: c.id.clone(), health, error });
    }
    out
}

/// One container of the pool, as reported.
#[derive(Clone, Debug, Serialize)]
pub struct ContainerReport {
    /// `running`, `exited` or `dead`.
    pub state: &'static str,
    #[serde(flatten)]
    pub record: ContainerRecord,
}

/// The report on `pool`, given its service's own report (or why there is none): the rest
/// (cgroup usage, containers, Ceph health) is read here. The service uses it for its own
/// pool (`--metrics-listen`), `gather` for every pool.
pub fn pool_report(pools: &Pools, pool: PoolState, service: Result<ServiceStats, String>) -> PoolReport {
    let usage = cgroups::usage(&pool.cgroups);
    let (service, service_note) = match service {
        Ok(s) => (Some(s), None),
        Err(why) => (None, Some(why)),
    };
    let containers = Containers::new(pools, &pool.name).list().into_iter().map(|record| ContainerReport { state: record.state(), record }).collect();
    let ceph = ceph_health(service.as_ref());
    PoolReport { pool, usage, service, service_note, containers, ceph }
}

/// Reports on every pool, or on `only`.
pub fn gather(pools: &Pools, only: Option<&str>) -> Result<Vec<PoolReport>, super::TenantError> {
    let mut out = Vec::new();
    for pool in pools.list()? {
        if only.is_some_and(|o| o != pool.name) {
            continue;
        }
        let service = match pools.live_service(&pool.name)? {
            None => Err("not running".to_string()),
            Some(s) => match control::call(&s.socket, &Request::Stats, Duration::from_secs(5)) {
                Ok(r) => r.stats.ok_or_else(|| format!("pid {} answered without its figures", s.pid)),
                Err(e) => Err(format!("pid {} does not answer: {e}", s.pid)),
            },
        };
        out.push(pool_report(pools, pool, service));
    }
    if let Some(o) = only {
        if out.is_empty() {
            return Err(super::TenantError::NoPool(o.to_string()));
        }
    }
    Ok(out)
}
