//! `polytropon`: the one binary. Thin: parses the command line and dispatches to `cmd/`.
//!
//! Exit codes: 0 success; 1 failure; 2 bad usage or a command not implemented yet;
//! `exec` passes the command's own status through.

mod cmd;
mod logging;

use std::process::ExitCode;

use clap::Parser;
use polytropon::cli::{Cli, Command, ImageCommand, PoolCommand, ServiceCommand};

fn main() -> ExitCode {
    // `bench` runs its user-level workload in a child of this binary under the preload library.
    if let Some(code) = polytropon::bench::worker::serve_if_asked() {
        return code;
    }
    // Multi-call: called as a mount(8) or umount(8) helper (`install-links`).
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(helper) = argv.first().and_then(|a| polytropon::mount_helper::Helper::for_name(a)) {
        let name = std::path::Path::new(&argv[0]).file_name().map_or_else(|| "polytropon".into(), |n| n.to_string_lossy().into_owned());
        logging::init("warn", polytropon::cli::LogFormat::Text);
        return cmd::helpers::run(helper, &name, &argv[1..]);
    }
    let cli = Cli::parse();
    logging::init(&cli.log, cli.log_format);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("polytropon: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(mut cli: Cli) -> anyhow::Result<ExitCode> {
    // Paths under these go to the pool's service, which runs in another directory.
    cli.state_dir = std::path::absolute(&cli.state_dir).map_err(|e| anyhow::anyhow!("--state-dir {}: {e}", cli.state_dir.display()))?;
    cli.data_dir = std::path::absolute(&cli.data_dir).map_err(|e| anyhow::anyhow!("--data-dir {}: {e}", cli.data_dir.display()))?;
    match cli.command {
        Command::Pool(PoolCommand::Create(a)) => cmd::pool::create(&cli.state_dir, a),
        Command::Pool(PoolCommand::List(a)) => cmd::pool::list(&cli.state_dir, a),
        Command::Pool(PoolCommand::Destroy(a)) => cmd::pool::destroy(&cli.state_dir, a),
        Command::Service(ServiceCommand::Run(a)) => cmd::service::run(&cli.state_dir, a),
        Command::Service(ServiceCommand::Stop(a)) => cmd::service::stop(&cli.state_dir, a),
        Command::Mount(a) => cmd::mount::run(&cli.state_dir, a),
        Command::Umount(a) => cmd::umount::run(&cli.state_dir, a),
        Command::Exec(a) => cmd::exec::run(&cli.state_dir, &cli.data_dir, a),
        Command::Kill(a) => cmd::kill::run(&cli.state_dir, a),
        Command::Rm(a) => cmd::rm::run(&cli.state_dir, a),
        Command::Image(ImageCommand::Import(a)) => cmd::image::import(&cli.data_dir, a),
        Command::Image(ImageCommand::List(a)) => cmd::image::list(&cli.data_dir, a),
        Command::Image(ImageCommand::Remove(a)) => cmd::image::remove(&cli.state_dir, &cli.data_dir, a),
        Command::Bench(a) => cmd::bench::run(&cli.state_dir, &cli.data_dir, a),
        Command::Inspect(a) => cmd::inspect::run(&cli.state_dir, a),
        Command::Completions(a) => cmd::completions::run(a),
        Command::Man(a) => cmd::man::run(a),
        Command::InstallLinks(a) => cmd::install_links::run(a),
    }
}
