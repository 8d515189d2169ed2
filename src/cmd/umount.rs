//! `polytropon umount` (issue 3).

use std::path::Path;
use std::process::ExitCode;

use polytropon::cli::UmountArgs;

use super::not_implemented;

pub fn run(_state_dir: &Path, _args: UmountArgs) -> anyhow::Result<ExitCode> {
    not_implemented("umount")
}
