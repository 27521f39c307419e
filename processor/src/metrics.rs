//! The processor's named telemetry events. Bounded labels only.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadingLabels {
    vendor: String,
    metric: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    partition: i32,
}

/// Prometheus registry and the processor's metrics.
pub struct Metrics {
    registry: Registry,
    readings: Family<ReadingLabels, Counter>,
    records: Counter,
    batch_records: Histogram,
    batch_seconds: Histogram,
    dedup_hits: Counter,
    dedup_errors: Counter,
    dlq: Family<ReasonLabels, Counter>,
    retries: Family<StageLabels, Counter>,
    lag: Family<PartitionLabels, Gauge>,
    tombstones: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            readings: Family::default(),
            records: Counter::default(),
            // 1 .. 4096 records.
            batch_records: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            // 1 ms .. ~16 s.
            batch_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            dedup_hits: Counter::default(),
            dedup_errors: Counter::default(),
            dlq: Family::default(),
            retries: Family::default(),
            lag: Family::default(),
            tombstones: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "processor_readings",
            "Canonical readings written, by vendor and metric",
            m.readings.clone(),
        );
        registry.register(
            "processor_raw_records",
            "Raw records consumed",
            m.records.clone(),
        );
        registry.register(
            "processor_batch_records",
            "Raw records per batch",
            m.batch_records.clone(),
        );
        registry.register(
            "processor_batch_duration_seconds",
            "Time to process one batch end to end",
            m.batch_seconds.clone(),
        );
        registry.register(
            "processor_dedup_hits",
            "Deliveries skipped as already processed",
            m.dedup_hits.clone(),
        );
        registry.register(
            "processor_dedup_errors",
            "Redis failures; processing continued without the filter",
            m.dedup_errors.clone(),
        );
        registry.register(
            "processor_dlq",
            "Raw records sent to the dead-letter topic, by reason",
            m.dlq.clone(),
        );
        registry.register(
            "processor_retries",
            "Transient failures retried, by stage",
            m.retries.clone(),
        );
        registry.register(
            "processor_consumer_lag",
            "High watermark minus next offset, by partition",
            m.lag.clone(),
        );
        registry.register(
            "processor_tombstones",
            "Vendor deletions applied",
            m.tombstones.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Readings of `vendor`/`metric` were committed.
    pub fn readings_written(&self, vendor: &str, metric: &'static str, n: u64) {
        self.readings
            .get_or_create(&ReadingLabels {
                vendor: vendor.to_string(),
                metric,
            })
            .inc_by(n);
    }

    /// A batch of `records` raw records finished after `seconds`.
    pub fn batch_done(&self, records: usize, seconds: f64) {
        self.records.inc_by(records as u64);
        self.batch_records.observe(records as f64);
        self.batch_seconds.observe(seconds);
    }

    /// Deliveries skipped by the Redis filter.
    pub fn dedup_hits(&self, n: u64) {
        self.dedup_hits.inc_by(n);
    }

    /// Redis did not answer; the batch went on without it.
    pub fn dedup_error(&self, error: &dyn std::fmt::Display) {
        tracing::warn!(message = "Redis dedup unavailable; relying on PostgreSQL keys.", %error);
        self.dedup_errors.inc();
    }

    /// A raw record went to the DLQ.
    pub fn dead_lettered(&self, reason: &'static str) {
        self.dlq.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// A transient failure in `stage` will be retried.
    pub fn retry(&self, stage: &'static str, error: &dyn std::fmt::Display) {
        tracing::warn!(message = "Transient failure; retrying with backoff.", stage, %error);
        self.retries.get_or_create(&StageLabels { stage }).inc();
    }

    /// Vendor deletions applied.
    pub fn tombstones(&self, n: u64) {
        self.tombstones.inc_by(n);
    }

    /// Consumer lag of one partition.
    pub fn lag(&self, partition: i32, lag: i64) {
        self.lag
            .get_or_create(&PartitionLabels { partition })
            .set(lag);
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
