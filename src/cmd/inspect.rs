//! `polytropon inspect` (issue 4).

use std::path::Path;
use std::process::ExitCode;

use polytropon::cli::InspectArgs;

use super::not_implemented;

pub fn run(_state_dir: &Path, _args: InspectArgs) -> anyhow::Result<ExitCode> {
    not_implemented("inspect")
}
