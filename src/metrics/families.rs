//! Metric families gathered from one scrape's reports, then written out by the
//! `prometheus-client` encoders (OpenMetrics or the Prometheus text format).
//!
//! The figures are counted elsewhere (the service's atomics, the cgroup files) and arrive
//! here as plain numbers, so they are encoded as constant samples through the encoder's own
//! methods (`encode_counter`, `encode_gauge`, `encode_histogram` with precomputed bucket
//! counts) rather than through the crate's live metric types. Every family has one name, one
//! type, one help text and one unit wherever its samples come from; the encoder adds the
//! `polytropon_` prefix, the unit suffix and `_total` for counters.

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

/// The labels of one sample, in order.
pub(crate) type Labels = Vec<(&'static str, String)>;

/// A sample's number: integers stay exact (byte counts pass 2^53).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Num {
    Int(u64),
    Float(f64),
}

impl From<u64> for Num {
    fn from(v: u64) -> Self {
        Num::Int(v)
    }
}

impl From<u32> for Num {
    fn from(v: u32) -> Self {
        Num::Int(u64::from(v))
    }
}

impl From<f64> for Num {
    fn from(v: f64) -> Self {
        Num::Float(v)
    }
}

#[derive(Debug)]
enum Value {
    Counter(Num),
    Gauge(Num),
    /// Sum, count, and (exclusive upper bound, count in that bucket alone) per bucket, the
    /// last bound `+Inf`.
    Histogram { sum: f64, count: u64, buckets: Vec<(f64, u64)> },
}

#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    kind: MetricType,
    samples: Vec<(Labels, Value)>,
}

/// The families of one scrape, in the order they were first seen.
#[derive(Debug, Default)]
pub(crate) struct Families {
    list: Vec<Family>,
}

impl Families {
    fn add(&mut self, name: &'static str, help: &'static str, unit: Option<Unit>, kind: MetricType, labels: Labels, value: Value) {
        match self.list.iter_mut().find(|f| f.name == name) {
            Some(f) => {
                debug_assert!(f.kind == kind && f.unit == unit, "metric {name} added as two kinds");
                f.samples.push((labels, value));
            }
            None => self.list.push(Family { name, help, unit, kind, samples: vec![(labels, value)] }),
        }
    }

    pub(crate) fn gauge(&mut self, name: &'static str, help: &'static str, unit: Option<Unit>, labels: Labels, v: impl Into<Num>) {
        self.add(name, help, unit, MetricType::Gauge, labels, Value::Gauge(v.into()));
    }

    /// A counter; `name` is without `_total` (the encoder adds it).
    pub(crate) fn counter(&mut self, name: &'static str, help: &'static str, unit: Option<Unit>, labels: Labels, v: impl Into<Num>) {
        self.add(name, help, unit, MetricType::Counter, labels, Value::Counter(v.into()));
    }

    /// A histogram from bucket counts (each bucket's own, not cumulative) with their exclusive
    /// upper bounds; the last bound must be `f64::INFINITY`.
    pub(crate) fn histogram(&mut self, name: &'static str, help: &'static str, unit: Option<Unit>, labels: Labels, sum: f64, buckets: Vec<(f64, u64)>) {
        let count = buckets.iter().map(|b| b.1).sum();
        self.add(name, help, unit, MetricType::Histogram, labels, Value::Histogram { sum, count, buckets });
    }

    /// Writes every family through `encoder`.
    pub(crate) fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.list {
            let mut metric = encoder.encode_descriptor(f.name, f.help, f.unit.as_ref(), f.kind)?;
            for (labels, value) in &f.samples {
                let mut e = metric.encode_family(labels)?;
                match value {
                    Value::Counter(Num::Int(v)) => e.encode_counter::<NoLabelSet, _, u64>(v, None)?,
                    Value::Counter(Num::Float(v)) => e.encode_counter::<NoLabelSet, _, u64>(v, None)?,
                    Value::Gauge(Num::Int(v)) => e.encode_gauge(v)?,
                    Value::Gauge(Num::Float(v)) => e.encode_gauge(v)?,
                    Value::Histogram { sum, count, buckets } => e.encode_histogram::<NoLabelSet>(*sum, *count, buckets, None)?,
                }
            }
        }
        Ok(())
    }

    /// The names of the families, for tests.
    #[cfg(test)]
    pub(crate) fn names(&self) -> Vec<&'static str> {
        self.list.iter().map(|f| f.name).collect()
    }
}
