//! Metrics an operator can scrape (issue 26), with a real pool, service and clients on both
//! paths: `inspect --format openmetrics` and the service's `--metrics-listen` endpoint are
//! read by Prometheus's own parser (the Python client's OpenMetrics parser), their figures
//! are `inspect --format json`'s, a non-loopback listen address is refused without
//! `--metrics-allow-remote`, and hostile HTTP peers do not stop the service.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::host::{stderr, Host};
use serde_json::Value;

/// Parses stdin with the Python client's parser for `argv[1]` (`openmetrics` or
/// `prometheus`, the text format 0.0.4) and prints the families as JSON; any parse error
/// fails it.
const PARSE: &str = r#"
import json, sys
if sys.argv[1] == "openmetrics":
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
else:
    from prometheus_client.parser import text_string_to_metric_families
out = {}
for fam in text_string_to_metric_families(sys.stdin.read()):
    samples = [[s.name, s.labels, s.value] for s in fam.samples]
    if fam.name in out:
        out[fam.name]["samples"] += samples
    else:
        out[fam.name] = {"type": fam.type, "unit": getattr(fam, "unit", ""), "samples": samples}
print(json.dumps(out))
"#;

/// The families of `text` as the parser for `format` reads them.
fn parse(text: &str, format: &str) -> Value {
    let mut child = Command::new("python3")
        .args(["-c", PARSE, format])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write to the parser");
    let out = child.wait_with_output().expect("wait for the parser");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("No module named 'prometheus_client"),
        "python3 lacks prometheus_client (the parser this test checks with); scripts/install-deps.sh installs it"
    );
    assert!(out.status.success(), "the {format} parser refused the text: {err}\n--- text ---\n{text}");
    serde_json::from_slice(&out.stdout).expect("the parser's JSON")
}

/// The value of sample `name` whose labels include `labels`.
fn sample(families: &Value, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    families.as_object()?.values().flat_map(|f| f["samples"].as_array().into_iter().flatten()).find_map(|s| {
        let matches = s[0] == name && labels.iter().all(|(k, v)| s[1][*k] == *v);
        if matches {
            s[2].as_f64()
        } else {
            None
        }
    })
}

/// A port on loopback nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// Sends `request` to `addr` and returns the answer (empty when the peer closed without
/// one); a peer that resets the connection is fine too.
fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let _ = s.write_all(request);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    answer
}

/// Status code, headers and body of an HTTP answer.
fn split(answer: &[u8]) -> (u16, String, String) {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// `GET /metrics`, tried again while the endpoint says it is busy (503).
fn scrape(addr: SocketAddr) -> (u16, String, String) {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = split(&exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: application/openmetrics-text\r\n\r\n"));
        if answer.0 != 503 || Instant::now() > until {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn json_ops<'a>(report: &'a Value, path: &str, op: &str) -> &'a Value {
    &report["service"]["mounts"][0][format!("{path}_ops")][op]
}

#[test]
fn inspect_and_the_endpoint_export_inspects_figures_to_a_real_parser() {
    let mut h = Host::new("metrics");
    let pool = h.create("p", &["--cpus", "0-1"]);
    let (upper, mnt) = (h.scratch.mkdir("upper"), h.scratch.mkdir("mnt"));
    let m = mnt.display().to_string();

    // (d) Not on a non-loopback address without the flag, and nothing starts.
    let out = h.run(&["service", "run", "--pool", &pool, "--detach", "--metrics-listen", "0.0.0.0:0"]);
    assert!(!out.status.success(), "a non-loopback --metrics-listen was accepted");
    assert!(stderr(&out).contains("--metrics-allow-remote"), "the refusal does not name the flag: {}", stderr(&out));
    assert!(h.inspect(&pool)["service"].is_null(), "a refused service runs anyway");

    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    h.ok(&["service", "run", "--pool", &pool, "--detach", "--metrics-listen", &addr.to_string()]);
    let spec = h.scratch.path().join("wt.yaml");
    std::fs::write(&spec, format!("branches:\n  - path: {}\n    mode: rw\ncache:\n  mode: writethrough\n  size: 16M\n", upper.display())).expect("spec");
    h.ok(&["mount", "--pool", &pool, &m, "-f", &spec.display().to_string()]);

    // I/O on both paths: FUSE from this process, the user-level path from a preloaded shell.
    std::fs::write(mnt.join("fuse.txt"), vec![7u8; 300_000]).expect("write through FUSE");
    assert_eq!(std::fs::read(mnt.join("fuse.txt")).expect("read through FUSE").len(), 300_000);
    let script = format!("cat {m}/fuse.txt > /dev/null && cat {m}/fuse.txt > /dev/null && echo user > {m}/user.txt && cat {m}/user.txt");
    assert_eq!(h.ok(&["exec", "--pool", &pool, "--preload-only", "--", "sh", "-c", &script]).trim(), "user");

    // (a) inspect --format openmetrics parses; (b) its figures are the JSON's, read between
    //     two JSON reports (nothing else touches the mount, so they agree).
    let before = h.inspect(&pool);
    let text = h.ok(&["inspect", "--pool", &pool, "--format", "openmetrics"]);
    let after = h.inspect(&pool);
    assert!(text.ends_with("# EOF\n"), "no EOF marker");
    let om = parse(&text, "openmetrics");
    assert_eq!(om["polytropon_op_duration_seconds"]["type"], "histogram");
    assert_eq!(om["polytropon_op_duration_seconds"]["unit"], "seconds");
    assert_eq!(om["polytropon_cache_hits"]["type"], "counter");
    let p = pool.as_str();
    let between = |what: &str, json: &dyn Fn(&Value) -> Option<f64>, got: Option<f64>| {
        let (lo, hi) = (json(&before).unwrap_or_else(|| panic!("no {what} in the JSON")), json(&after).unwrap_or(f64::MAX));
        let got = got.unwrap_or_else(|| panic!("no {what} in the OpenMetrics text:\n{text}"));
        assert!(lo <= got && got <= hi, "{what}: {got} in the OpenMetrics text, {lo}..{hi} in the JSON");
    };
    for (path, op) in [("fuse", "write"), ("fuse", "read"), ("user", "open_path"), ("user", "read")] {
        between(
            &format!("the {path} path's {op} count"),
            &|r| json_ops(r, path, op)["count"].as_f64(),
            sample(&om, "polytropon_op_duration_seconds_count", &[("pool", p), ("instance", "0"), ("mountpoint", &m), ("path", path), ("op", op)]),
        );
        let inf = sample(&om, "polytropon_op_duration_seconds_bucket", &[("pool", p), ("path", path), ("op", op), ("le", "+Inf")]);
        let count = sample(&om, "polytropon_op_duration_seconds_count", &[("pool", p), ("path", path), ("op", op)]);
        assert_eq!(inf, count, "the {path} {op} histogram's +Inf bucket is not its count");
    }
    for (field, name) in [("hits", "polytropon_cache_hits_total"), ("misses", "polytropon_cache_misses_total"), ("insertions", "polytropon_cache_insertions_total")] {
        between(&format!("cache {field}"), &|r| r["service"]["cache"][field].as_f64(), sample(&om, name, &[("pool", p)]));
    }
    assert_eq!(sample(&om, "polytropon_cache_limit_bytes", &[("pool", p)]), before["service"]["cache"]["limit"].as_f64(), "cache limit");
    assert!(before["service"]["cache"]["misses"].as_u64() > Some(0), "the I/O missed no cache block: {}", before["service"]["cache"]);
    assert!(json_ops(&before, "user", "open_path")["count"].as_u64() > Some(0), "nothing took the user-level path");
    assert_eq!(sample(&om, "polytropon_service_up", &[("pool", p)]), Some(1.0));
    assert_eq!(sample(&om, "polytropon_service_info", &[("pool", p), ("pid", &before["service"]["pid"].to_string())]), Some(1.0));
    assert_eq!(sample(&om, "polytropon_pool_slice_cpus", &[("pool", p)]), Some(2.0));

    // The Prometheus text format (for node_exporter's textfile collector) parses too.
    let prom = parse(&h.ok(&["inspect", "--pool", &pool, "--format", "prometheus"]), "prometheus");
    assert!(sample(&prom, "polytropon_cache_misses_total", &[("pool", p)]).is_some(), "no cache misses in the Prometheus text");
    assert!(prom.as_object().expect("families").values().any(|f| f["type"] == "histogram"), "no histogram in the Prometheus text");

    // (c) The endpoint: 200, the OpenMetrics content type, a text the parser takes.
    let (status, head, body) = scrape(addr);
    assert_eq!(status, 200, "GET /metrics: {head}");
    assert!(
        head.lines().any(|l| l.eq_ignore_ascii_case("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8")),
        "content type: {head}"
    );
    let scraped = parse(&body, "openmetrics");
    assert_eq!(sample(&scraped, "polytropon_service_up", &[("pool", p)]), Some(1.0));
    let scraped_reads = sample(&scraped, "polytropon_op_duration_seconds_count", &[("pool", p), ("path", "user"), ("op", "open_path")]);
    assert_eq!(scraped_reads, json_ops(&after, "user", "open_path")["count"].as_f64(), "the endpoint's user-level opens");
    assert_eq!(split(&exchange(addr, b"GET /other HTTP/1.1\r\n\r\n")).0, 404);
    assert_eq!(split(&exchange(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")).0, 405);

    // (e) Hostile peers: garbage, a request head of 1 MiB, binary noise, peers that connect
    //     and send nothing (more of them than the endpoint serves at once), one that stops
    //     half-way. The service lives on and the endpoint answers again.
    let pid = before["service"]["pid"].clone();
    assert_eq!(split(&exchange(addr, b"\x00\xff\xfe garbage\r\n\r\n")).0, 400);
    let huge = [&b"GET /metrics HTTP/1.1\r\nX-Big: "[..], &vec![b'a'; 1 << 20], b"\r\n\r\n"].concat();
    let big = split(&exchange(addr, &huge)).0;
    assert!(big == 431 || big == 0, "a 1 MiB request head got {big}");
    let noise: Vec<u8> = (0..64 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let _ = exchange(addr, &noise);
    let idle: Vec<TcpStream> = (0..12).filter_map(|_| TcpStream::connect(addr).ok()).collect();
    let mut half = TcpStream::connect(addr).expect("connect");
    let _ = half.write_all(b"GET /metr");
    drop(half);
    drop(idle);
    let (status, _, body) = scrape(addr);
    assert_eq!(status, 200, "the endpoint stopped answering after hostile peers");
    parse(&body, "openmetrics");
    let now = h.inspect(&pool);
    assert_eq!(now["service"]["pid"], pid, "the service died or was replaced");

    // The endpoint stops with the service.
    h.ok(&["umount", &m]);
    h.ok(&["service", "stop", "--pool", &pool]);
    let gone = Instant::now();
    while TcpStream::connect(addr).is_ok() {
        assert!(gone.elapsed() < Duration::from_secs(10), "the endpoint outlived the service");
        std::thread::sleep(Duration::from_millis(50));
    }
}
