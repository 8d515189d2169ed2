//! `polytropon bench`: run workloads on several paths side by side.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::OnceLock;

use anyhow::{ensure, Context};
use indicatif::{ProgressBar, ProgressStyle};
use polytropon::bench::{self, BenchOptions, WORKLOADS};
use polytropon::cli::{BenchArgs, OutputFormat};

use super::not_implemented;

static BAR: OnceLock<ProgressBar> = OnceLock::new();

fn progress(done: u64, total: u64) {
    let bar = BAR.get_or_init(|| {
        let b = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} batches {elapsed}") {
            b.set_style(style);
        }
        b
    });
    bar.set_position(done);
    if done == total {
        bar.finish_and_clear();
    }
}

pub fn run(state_dir: &std::path::Path, data_dir: &std::path::Path, args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.plot.is_some() {
        return not_implemented("bench --plot");
    }
    ensure!(rustix::process::geteuid().is_root(), "bench needs root (it mounts FUSE and overlay filesystems)");
    let workloads = if args.all || args.workload.is_empty() {
        WORKLOADS.iter().map(|s| s.to_string()).collect()
    } else {
        args.workload.clone()
    };
    let cpus = match &args.cpus {
        Some(l) => polytropon::pool::spec::parse_list("--cpus", l)?.into_iter().map(|c| c as usize).collect(),
        None => Vec::new(),
    };
    let opts = BenchOptions {
        cpus,
        ceph_conf: args.ceph_conf.clone(),
        workloads,
        paths: args.paths.clone(),
        operations: args.operations.clone(),
        reps: args.reps,
        ops: args.ops,
        file_mib: args.file_mib,
        dir: args.dir.clone(),
        progress: std::io::stderr().is_terminal().then_some(progress as fn(u64, u64)),
        startup: args.image.clone().map(|image| bench::startup::StartupOptions {
            state_dir: state_dir.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            image,
            serve: args.serve.clone(),
            clones: args.clones.clone(),
        }),
    };
    let report = bench::run(&opts)?;
    match args.format {
        OutputFormat::Human => println!("{}", report.table()),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report).context("cannot encode the report")?),
    }
    Ok(ExitCode::SUCCESS)
}
