//! `polytropon pool create|list|destroy` (issue 4).

use std::path::Path;
use std::process::ExitCode;

use polytropon::cli::{PoolCreateArgs, PoolDestroyArgs, PoolListArgs};

use super::not_implemented;

pub fn create(_state_dir: &Path, _args: PoolCreateArgs) -> anyhow::Result<ExitCode> {
    not_implemented("pool create")
}

pub fn list(_state_dir: &Path, _args: PoolListArgs) -> anyhow::Result<ExitCode> {
    not_implemented("pool list")
}

pub fn destroy(_state_dir: &Path, _args: PoolDestroyArgs) -> anyhow::Result<ExitCode> {
    not_implemented("pool destroy")
}
