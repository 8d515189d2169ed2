//! What `inspect` shows of a pool: its slice, live cgroup usage, service, mounts and
//! containers.

use std::time::Duration;

use serde::Serialize;

use super::cgroups::{self, Usage};
use super::{PoolState, Pools};
use crate::container::state::{ContainerRecord, Containers};
use crate::service::control::{self, Request, ServiceStats};

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
}

/// One container of the pool, as reported.
#[derive(Clone, Debug, Serialize)]
pub struct ContainerReport {
    /// `running`, `exited` or `dead`.
    pub state: &'static str,
    #[serde(flatten)]
    pub record: ContainerRecord,
}

/// Reports on every pool, or on `only`.
pub fn gather(pools: &Pools, only: Option<&str>) -> anyhow::Result<Vec<PoolReport>> {
    let mut out = Vec::new();
    for pool in pools.list()? {
        if only.is_some_and(|o| o != pool.name) {
            continue;
        }
        let usage = cgroups::usage(&pool.cgroups);
        let (service, service_note) = match pools.live_service(&pool.name)? {
            None => (None, Some("not running".to_string())),
            Some(s) => match control::call(&s.socket, &Request::Stats, Duration::from_secs(5)) {
                Ok(r) => (r.stats, None),
                Err(e) => (None, Some(format!("pid {} does not answer: {e}", s.pid))),
            },
        };
        let containers =
            Containers::new(pools, &pool.name).list().into_iter().map(|record| ContainerReport { state: record.state(), record }).collect();
        out.push(PoolReport { pool, usage, service, service_note, containers });
    }
    if let Some(o) = only {
        if out.is_empty() {
            anyhow::bail!("no pool named {o}");
        }
    }
    Ok(out)
}
