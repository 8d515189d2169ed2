//! `rocksdb`: RocksDB's own `db_bench` (Debian's rocksdb-tools) filling a database with
//! random puts, then reading it with random gets, in the path's directory. It runs as the
//! worker process itself (under the preload library on the user-level path).

use std::io;
use std::process::Command;

use super::{Job, Output};

/// The tool.
pub const DB_BENCH: &str = "db_bench";

/// The `db_bench` command of `job`.
pub fn command(job: &Job) -> Command {
    let mut cmd = Command::new(DB_BENCH);
    cmd.arg(format!("--db={}", job.root.join(format!("rocksdb-{}-{}", job.rep, job.container)).display()))
        .arg("--benchmarks=fillrandom,readrandom")
        .arg(format!("--num={}", u64::from(job.params.ops) * 2))
        .args(["--value_size=400", "--compression_type=none", "--histogram=1", "--threads=1"])
        .arg(format!("--seed={}", job.seed % 1_000_000 + 1));
    cmd
}

/// Reads `db_bench`'s report: per benchmark, its throughput and its p99 latency.
pub fn parse(stdout: &str) -> io::Result<Output> {
    let mut out = Output::default();
    let mut current: Option<String> = None;
    for line in stdout.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some(name @ ("fillrandom" | "readrandom")), Some(":")) => {
                let rate = line.split_whitespace().zip(line.split_whitespace().skip(1)).find(|(_, u)| *u == "ops/sec").and_then(|(v, _)| v.parse::<f64>().ok());
                let rate = rate.ok_or_else(|| io::Error::other(format!("db_bench: no ops/sec in {line:?}")))?;
                out.samples.push((name.to_string(), "ops/s".into(), vec![rate]));
                current = Some(name.to_string());
            }
            (Some("Percentiles:"), _) => {
                let p99 = line.split_whitespace().skip_while(|w| *w != "P99:").nth(1).and_then(|v| v.parse::<f64>().ok());
                if let (Some(name), Some(p99)) = (current.take(), p99) {
                    out.samples.push((format!("{name} p99"), "us".into(), vec![p99]));
                }
            }
            _ => {}
        }
    }
    if out.samples.iter().filter(|(_, u, _)| u == "ops/s").count() != 2 {
        return Err(io::Error::other(format!("db_bench printed no result: {}", stdout.lines().last().unwrap_or(""))));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_db_bench_output() {
        let text = "Read rate: 0 ops/second\n\
            fillrandom   :       9.518 micros/op 105053 ops/sec 0.190 seconds 20000 operations;   41.7 MB/s\n\
            Percentiles: P50: 7.89 P75: 11.00 P99: 27.90 P99.9: 54.13 P99.99: 110.00\n\
            readrandom   :       3.005 micros/op 332402 ops/sec 0.060 seconds 20000 operations;   84.0 MB/s (12745 of 20000 found)\n\
            Percentiles: P50: 2.02 P75: 3.20 P99: 9.32 P99.9: 32.67 P99.99: 76.00\n";
        let out = parse(text).expect("parse");
        let names: Vec<(&str, &str, f64)> = out.samples.iter().map(|(o, u, s)| (o.as_str(), u.as_str(), s[0])).collect();
        assert_eq!(names, [("fillrandom", "ops/s", 105053.0), ("fillrandom p99", "us", 27.90), ("readrandom", "ops/s", 332402.0), ("readrandom p99", "us", 9.32)]);
        assert!(parse("Initializing RocksDB Options\nerror: IO error\n").is_err());
    }
}
