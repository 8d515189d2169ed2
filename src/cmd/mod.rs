//! One module per subcommand; each is thin and calls into the library.

pub mod bench;
pub mod completions;
pub mod exec;
pub mod inspect;
pub mod man;
pub mod mount;
pub mod pool;
pub mod service;
pub mod umount;

use std::process::ExitCode;

/// The answer of a command whose issue has not landed: exit status 2, and no pretending.
pub fn not_implemented(command: &str) -> anyhow::Result<ExitCode> {
    eprintln!("polytropon: not implemented yet: {command}");
    Ok(ExitCode::from(2))
}
