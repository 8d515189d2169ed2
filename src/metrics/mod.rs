//! Metrics an operator can scrape: every figure `inspect` shows, in the OpenMetrics text
//! format (`inspect --format openmetrics`, and `service run --metrics-listen` over HTTP) or
//! the Prometheus text format 0.0.4 (`inspect --format prometheus`, for node_exporter's
//! textfile collector, which reads only that).
//!
//! A `prometheus-client` [`Collector`] reads the reports at encode time, from a snapshot
//! (`inspect`) or live from the service (`--metrics-listen`); [`reports`] turns them into
//! families, [`families`] writes them through the crate's encoders, and [`http`] serves them.

mod families;
pub mod http;
mod reports;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;

use crate::tenant::report::PoolReport;

/// The prefix of every metric name.
pub const PREFIX: &str = "polytropon";

/// The `Content-Type` of the OpenMetrics text format.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A text exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exposition {
    /// OpenMetrics 1.0 text (ends with `# EOF`).
    OpenMetrics,
    /// The Prometheus text format 0.0.4.
    Prometheus,
}

/// Errors encoding metrics.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The encoder failed (it writes into a string, so only a bug makes it fail).
    #[error("cannot encode the metrics")]
    Encode(#[source] std::fmt::Error),
}

/// Where the collector finds the reports, at each encode.
type Source = Box<dyn Fn() -> Vec<PoolReport> + Send + Sync>;

/// The collector: gathers the reports when the registry is encoded.
struct ReportCollector {
    source: Source,
}

impl std::fmt::Debug for ReportCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportCollector").finish_non_exhaustive()
    }
}

impl Collector for ReportCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        reports::families(&(self.source)()).encode(encoder)
    }
}

/// A registry holding the one collector, ready to encode.
#[derive(Debug)]
pub struct Exporter {
    registry: Registry,
}

impl Exporter {
    /// An exporter whose figures come from `source`, called at each encode.
    pub fn new(source: impl Fn() -> Vec<PoolReport> + Send + Sync + 'static) -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        registry.register_collector(Box::new(ReportCollector { source: Box::new(source) }));
        Exporter { registry }
    }

    /// The metrics, as text in `format`.
    pub fn encode(&self, format: Exposition) -> Result<String, MetricsError> {
        let mut out = String::new();
        match format {
            Exposition::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &self.registry),
            Exposition::Prometheus => prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry),
        }
        .map_err(MetricsError::Encode)?;
        Ok(out)
    }
}

/// `reports` as text in `format` (what `inspect --format openmetrics|prometheus` prints).
pub fn render(reports: Vec<PoolReport>, format: Exposition) -> Result<String, MetricsError> {
    Exporter::new(move || reports.clone()).encode(format)
}

#[cfg(test)]
mod tests {
    use super::families::Families;
    use super::*;
    use prometheus_client::registry::Unit;

    #[derive(Debug)]
    struct Fixed;

    impl Collector for Fixed {
        fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            let mut f = Families::default();
            let l = |op: &str| vec![("pool", "a".to_string()), ("op", op.to_string())];
            f.counter("cache_hits", "Hits", None, l("x"), 7u64);
            f.gauge("cache_dirty", "Dirty", Some(Unit::Bytes), l("x"), 4096u64);
            f.histogram("op_duration", "Latency", Some(Unit::Seconds), l("read"), 0.5, vec![(0.25, 1), (1.0, 2), (f64::INFINITY, 1)]);
            f.counter("cache_hits", "Hits", None, l("y"), 1u64);
            assert_eq!(f.names(), ["cache_hits", "cache_dirty", "op_duration"]);
            f.encode(encoder)
        }
    }

    fn text(format: Exposition) -> String {
        let mut registry = Registry::with_prefix(PREFIX);
        registry.register_collector(Box::new(Fixed));
        Exporter { registry }.encode(format).expect("encode")
    }

    #[test]
    fn openmetrics_has_units_totals_cumulative_buckets_and_eof() {
        let t = text(Exposition::OpenMetrics);
        for line in [
            "# TYPE polytropon_cache_hits counter",
            "polytropon_cache_hits_total{pool=\"a\",op=\"x\"} 7",
            "polytropon_cache_hits_total{pool=\"a\",op=\"y\"} 1",
            "# UNIT polytropon_cache_dirty_bytes bytes",
            "polytropon_cache_dirty_bytes{pool=\"a\",op=\"x\"} 4096",
            "polytropon_op_duration_seconds_count{pool=\"a\",op=\"read\"} 4",
            "polytropon_op_duration_seconds_bucket{le=\"1.0\",pool=\"a\",op=\"read\"} 3",
            "polytropon_op_duration_seconds_bucket{le=\"+Inf\",pool=\"a\",op=\"read\"} 4",
        ] {
            assert!(t.lines().any(|l| l == line), "no line {line:?} in\n{t}");
        }
        assert!(t.ends_with("# EOF\n"));
    }

    #[test]
    fn prometheus_text_names_counters_with_total_and_has_no_eof() {
        let t = text(Exposition::Prometheus);
        assert!(t.lines().any(|l| l == "# TYPE polytropon_cache_hits_total counter"), "{t}");
        assert!(!t.contains("# EOF"));
    }
}
