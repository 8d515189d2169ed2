//! `polytropon bench` (issues 3, 5 and 9).

use std::process::ExitCode;

use polytropon::cli::BenchArgs;

use super::not_implemented;

pub fn run(_args: BenchArgs) -> anyhow::Result<ExitCode> {
    not_implemented("bench")
}
