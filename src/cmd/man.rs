//! `polytropon man [--out DIR]`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use polytropon::cli::ManArgs;
use polytropon::clidocs;

pub fn run(args: ManArgs) -> anyhow::Result<ExitCode> {
    match args.out {
        Some(dir) => clidocs::write_man_pages(&dir)
            .with_context(|| format!("cannot write man pages to {}", dir.display()))?,
        None => {
            let page = clidocs::main_man_page().context("cannot render the man page")?;
            std::io::stdout().write_all(&page).context("cannot write the man page to stdout")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
