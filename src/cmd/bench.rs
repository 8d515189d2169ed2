//! `polytropon bench`: run workloads on several paths side by side.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{ensure, Context};
use indicatif::{ProgressBar, ProgressStyle};
use polytropon::bench::{self, isolation::IsolationOptions, BenchOptions, Params, WORKLOADS};
use polytropon::cli::{BenchArgs, OutputFormat};

static BAR: OnceLock<ProgressBar> = OnceLock::new();

fn progress(done: u64, total: u64) {
    let bar = BAR.get_or_init(|| {
        let b = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} batches {elapsed}") {
            b.set_style(style);
        }
        b
    });
    // Each workload counts its own batches.
    bar.set_length(total);
    bar.set_position(done);
    if done == total {
        bar.reset();
    }
}

/// The numbers of clones `scaling` measures, ascending (`--containers`; the papers' curve by
/// default).
fn scaling_points(asked: Option<&[u32]>) -> Vec<u32> {
    let mut points = asked.map_or_else(|| vec![1, 2, 4, 8, 16], <[u32]>::to_vec);
    points.sort_unstable();
    points.dedup();
    points
}

fn cpu_list(flag: &'static str, list: Option<&str>) -> anyhow::Result<Vec<usize>> {
    Ok(match list {
        Some(l) => polytropon::pool::spec::parse_list(flag, l)?.into_iter().map(|c| c as usize).collect(),
        None => Vec::new(),
    })
}

/// The neighbour's storage slice of `isolation` (`--neighbour-io-max`, `--neighbour-io-weight`),
/// checked as `pool create` checks `--io-max` and `--io-weight`.
fn neighbour_slice(args: &BenchArgs) -> anyhow::Result<(Vec<polytropon::pool::spec::IoMax>, Option<u64>)> {
    if args.neighbour_io_max.is_empty() && args.neighbour_io_weight.is_none() {
        return Ok((Vec::new(), None));
    }
    let spec = polytropon::pool::spec::PoolSpec { io_max: args.neighbour_io_max.clone(), io_weight: args.neighbour_io_weight, ..Default::default() };
    let slice = spec.validate(&polytropon::pool::spec::Host::probe()?).context("--neighbour-io-max / --neighbour-io-weight")?;
    Ok((slice.io_max, slice.io_weight))
}

pub fn run(state_dir: &std::path::Path, data_dir: &std::path::Path, args: BenchArgs) -> anyhow::Result<ExitCode> {
    ensure!(rustix::process::geteuid().is_root(), "bench needs root (it mounts FUSE and overlay filesystems)");
    let workloads = if args.all || args.workload.is_empty() {
        WORKLOADS.iter().map(|s| s.to_string()).collect()
    } else {
        args.workload.clone()
    };
    let neighbour = neighbour_slice(&args)?;
    let opts = BenchOptions {
        cpus: cpu_list("--cpus", args.cpus.as_deref())?,
        ceph_conf: args.ceph_conf.clone(),
        workloads,
        paths: args.paths.clone(),
        operations: args.operations.clone(),
        reps: args.reps,
        params: Params {
            ops: args.ops,
            loops: args.loops,
            file_mib: args.file_mib,
            threads: args.threads,
            files: args.files,
            file_kib: args.file_kib,
            containers: args.containers.as_deref().and_then(|c| c.iter().max().copied()).unwrap_or(4),
            scaling: scaling_points(args.containers.as_deref()),
            append_mib: args.append_mib,
            min_time: polytropon::spec::check_seconds("--min-time", args.min_time, 0.0, 3600.0).map_err(anyhow::Error::msg)?.as_secs_f64(),
        },
        dir: args.dir.clone(),
        progress: std::io::stderr().is_terminal().then_some(progress as fn(u64, u64)),
        startup: bench::startup::StartupOptions {
            state_dir: state_dir.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            image: args.image.clone(),
            serve: args.serve.clone(),
            clones: args.clones.clone(),
            ceph_conf: args.ceph_conf.clone(),
        },
        isolation: IsolationOptions {
            victim: args.victim.clone(),
            a_cpus: cpu_list("--pool-a-cpus", args.pool_a_cpus.as_deref())?,
            b_cpus: cpu_list("--pool-b-cpus", args.pool_b_cpus.as_deref())?,
            noise_mib: args.noise_mib,
            warmup: Duration::from_millis(args.warmup_ms),
            b_io_max: neighbour.0,
            b_io_weight: neighbour.1,
        },
    };
    let report = bench::run(&opts)?;
    if let Some(bar) = BAR.get() {
        bar.finish_and_clear();
    }
    let json = || serde_json::to_string_pretty(&report).context("cannot encode the report");
    match args.format {
        OutputFormat::Human => println!("{}", report.table()),
        OutputFormat::Json => println!("{}", json()?),
    }
    if let Some(file) = &args.json {
        std::fs::write(file, json()? + "\n").with_context(|| format!("cannot write {}", file.display()))?;
    }
    if let Some(file) = &args.plot {
        bench::plot::draw(&report, file)?;
    }
    Ok(ExitCode::SUCCESS)
}
