//! `polytropon completions <bash|zsh|fish>`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use polytropon::cli::CompletionsArgs;
use polytropon::clidocs;

pub fn run(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    std::io::stdout()
        .write_all(&clidocs::completion(args.shell))
        .context("cannot write the completion script to stdout")?;
    Ok(ExitCode::SUCCESS)
}
