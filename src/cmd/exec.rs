//! `polytropon exec` (issue 5 and 6).

use std::path::Path;
use std::process::ExitCode;

use polytropon::cli::ExecArgs;

use super::not_implemented;

pub fn run(_state_dir: &Path, _args: ExecArgs) -> anyhow::Result<ExitCode> {
    not_implemented("exec")
}
