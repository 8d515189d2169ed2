//! `polytropon mount` (issue 3).

use std::path::Path;
use std::process::ExitCode;

use polytropon::cli::MountArgs;

use super::not_implemented;

pub fn run(_state_dir: &Path, _args: MountArgs) -> anyhow::Result<ExitCode> {
    not_implemented("mount")
}
