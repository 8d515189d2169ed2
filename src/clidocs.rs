//! Completion scripts and man pages generated from the clap definitions in [`crate::cli`].

use std::io;
use std::path::Path;

use clap::CommandFactory;

use crate::cli::{Cli, Shell};

/// The binary's name as users type it.
pub const BIN: &str = "polytropon";

/// The completion script for `shell`.
pub fn completion(shell: Shell) -> Vec<u8> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(generator, &mut cmd, BIN, &mut out);
    out
}

/// File name under `completions/` of the script for `shell`.
pub fn completion_file(shell: Shell) -> &'static str {
    match shell {
        Shell::Bash => "polytropon.bash",
        Shell::Zsh => "_polytropon",
        Shell::Fish => "polytropon.fish",
    }
}

/// The main man page, `polytropon(1)`.
pub fn main_man_page() -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut out)?;
    Ok(out)
}

/// Writes one man page per command (`polytropon.1`, `polytropon-pool-create.1`, ...) to `dir`.
pub fn write_man_pages(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(Cli::command(), dir)
}
