//! `polytropon service run|stop` (issue 4).

use std::path::Path;
use std::process::ExitCode;

use polytropon::cli::{ServiceRunArgs, ServiceStopArgs};

use super::not_implemented;

pub fn run(_state_dir: &Path, _args: ServiceRunArgs) -> anyhow::Result<ExitCode> {
    not_implemented("service run")
}

pub fn stop(_state_dir: &Path, _args: ServiceStopArgs) -> anyhow::Result<ExitCode> {
    not_implemented("service stop")
}
