//! The processor's named telemetry events. Bounded labels only.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::TypedMetric;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::fetch::parking::ParkReason;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadingLabels {
    vendor: String,
    metric: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UnmappedLabels {
    vendor: String,
    name: String,
}

/// Distinct `processor_unmapped_total` series at most: names come from payloads (a Health
/// Auto Export metric name is whatever the app writes), so an unbounded label would let
/// one client grow every scrape without limit. Names past the cap count as `other`.
pub const MAX_UNMAPPED_SERIES: usize = 500;

/// The label for an unmapped name: names that are not short snake_case-ish identifiers
/// (what vendors use) count as `invalid`, so hostile bytes never reach the exposition.
fn unmapped_label(name: &str) -> &str {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'.' | b' '));
    if ok { name } else { "invalid" }
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VendorStatusLabels {
    vendor: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VendorReasonLabels {
    vendor: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VendorLabels {
    vendor: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpenReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DependencyLabels {
    dependency: &'static str,
}

/// The dependencies whose health is a gauge (`processor_dependency_up{dependency}`).
pub const DEPENDENCIES: [&str; 4] = ["kafka", "schema_registry", "postgres", "redis"];

/// `processor_batch_age_seconds`, computed at scrape time so it grows while a batch is
/// stuck: the age of the oldest record consumed but not yet stored. No sample while no
/// batch is in flight (an idle replica holds nothing back; it is not "age zero").
#[derive(Debug, Default)]
struct BatchAge {
    /// Kafka timestamp (ms since the epoch) of the in-flight batch's oldest record.
    oldest_ms: Mutex<Option<i64>>,
}

impl Collector for BatchAge {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let oldest = *self.oldest_ms.lock().unwrap_or_else(|e| e.into_inner());
        let metric = encoder.encode_descriptor(
            "processor_batch_age_seconds",
            "Age of the oldest raw record consumed but not yet stored (from its Kafka timestamp); absent while no batch is in flight",
            None,
            ConstGauge::<f64>::TYPE,
        )?;
        match oldest {
            Some(ms) => {
                let now = chrono::Utc::now().timestamp_millis();
                ConstGauge::new((now - ms).max(0) as f64 / 1000.0).encode(metric)
            }
            None => Ok(()),
        }
    }
}

/// Fetched vendors as bounded label values.
fn vendor_label(vendor: &str) -> &'static str {
    match vendor {
        "oura" => "oura",
        "whoop" => "whoop",
        _ => "other",
    }
}

/// Every [`ParkReason`]: the bounded label values of the parked-notification families.
const PARK_REASONS: [ParkReason; 12] = [
    ParkReason::Unlinked,
    ParkReason::ReauthRequired,
    ParkReason::TokenKey,
    ParkReason::RefreshFailed,
    ParkReason::RateLimited,
    ParkReason::VendorUnavailable,
    ParkReason::PendingScore,
    ParkReason::Unscorable,
    ParkReason::NoScoreState,
    ParkReason::NotFound,
    ParkReason::Rejected,
    ParkReason::RejectedByDatabase,
];

/// Parked-notification reasons as bounded label values, named by
/// [`ParkReason::as_str`]; anything else read back from the table is `other`.
fn reason_label(reason: &str) -> &'static str {
    PARK_REASONS
        .iter()
        .map(|r| r.as_str())
        .find(|k| *k == reason)
        .unwrap_or("other")
}

/// A labelled family listed (HELP and TYPE) from the first scrape, before its first
/// sample: an SRE's queries, alerts and Prometheus' metadata see every family at once.
/// (`prometheus-client` leaves an empty family out of the exposition.)
#[derive(Debug)]
struct Listed<M>(M);

impl<M: EncodeMetric> EncodeMetric for Listed<M> {
    fn encode(
        &self,
        encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        self.0.metric_type()
    }

    fn is_empty(&self) -> bool {
        false
    }
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
    fetches: Family<VendorStatusLabels, Counter>,
    refreshes: Family<VendorStatusLabels, Counter>,
    parked: Family<VendorReasonLabels, Counter>,
    parked_open: Family<OpenReasonLabels, Gauge>,
    parked_retries: Family<VendorStatusLabels, Counter>,
    rate_limit_waits: Family<VendorStatusLabels, Counter>,
    rate_limit_wait_seconds: Family<VendorLabels, Histogram>,
    in_flight: Gauge,
    batch_age: std::sync::Arc<BatchAge>,
    dependency_up: Family<DependencyLabels, Gauge>,
    parked_oldest: Family<OpenReasonLabels, Gauge<f64, AtomicU64>>,
    start_time: Gauge<f64, AtomicU64>,
    implausible: Family<ReadingLabels, Counter>,
    unmapped: Family<UnmappedLabels, Counter>,
    unmapped_series: Mutex<std::collections::HashSet<UnmappedLabels>>,
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
            fetches: Family::default(),
            refreshes: Family::default(),
            parked: Family::default(),
            parked_open: Family::default(),
            parked_retries: Family::default(),
            rate_limit_waits: Family::default(),
            // 1 ms .. ~2 s: waits above the bound (1 s by default) park instead.
            rate_limit_wait_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 12))
            }),
            in_flight: Gauge::default(),
            batch_age: std::sync::Arc::new(BatchAge::default()),
            dependency_up: Family::default(),
            parked_oldest: Family::default(),
            start_time: Gauge::default(),
            implausible: Family::default(),
            unmapped: Family::default(),
            unmapped_series: Mutex::default(),
            registry: Registry::default(),
        };
        m.start_time
            .set(chrono::Utc::now().timestamp_micros() as f64 / 1e6);
        registry.register(
            "processor_readings",
            "Canonical readings written, by vendor and metric",
            Listed(m.readings.clone()),
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
            Listed(m.dlq.clone()),
        );
        registry.register(
            "processor_retries",
            "Transient failures retried, by stage",
            Listed(m.retries.clone()),
        );
        registry.register(
            "processor_consumer_lag",
            "High watermark minus next offset, by partition",
            Listed(m.lag.clone()),
        );
        registry.register(
            "processor_tombstones",
            "Vendor deletions applied",
            m.tombstones.clone(),
        );
        registry.register(
            "processor_fetches",
            "Vendor API requests for notifications, by vendor and status \
             (ok, unauthorized, not_found, rate_limited, unavailable, rejected, bad_body)",
            Listed(m.fetches.clone()),
        );
        registry.register(
            "processor_token_refreshes",
            "OAuth token refreshes, by vendor and status (ok, reused, revoked, error, not_configured)",
            Listed(m.refreshes.clone()),
        );
        registry.register(
            "processor_parked_notifications",
            "Notifications parked (or closed without readings), by vendor and reason",
            Listed(m.parked.clone()),
        );
        registry.register(
            "processor_parked_notifications_open",
            "Parked notifications waiting for a retry, by reason",
            Listed(m.parked_open.clone()),
        );
        registry.register(
            "processor_parked_retries",
            "Retries of parked notifications, by vendor and status (done, parked_again, closed)",
            Listed(m.parked_retries.clone()),
        );
        registry.register(
            "processor_rate_limit_waits",
            "Requests held by the client-side rate limit, by vendor and status (waited, parked)",
            Listed(m.rate_limit_waits.clone()),
        );
        registry.register(
            "processor_rate_limit_wait_seconds",
            "Time requests waited for a rate-limit slot, by vendor",
            Listed(m.rate_limit_wait_seconds.clone()),
        );
        registry.register(
            "processor_records_in_flight",
            "Raw records consumed whose offsets are not stored yet (the batch being processed)",
            m.in_flight.clone(),
        );
        registry.register_collector(Box::new(m.batch_age.clone()));
        registry.register(
            "processor_dependency_up",
            "1 when the dependency answered the last health probe, 0 when it did not \
             (kafka, schema_registry, postgres, redis)",
            Listed(m.dependency_up.clone()),
        );
        registry.register(
            "processor_parked_notifications_oldest_age_seconds",
            "Age of the oldest open parked notification, by reason",
            Listed(m.parked_oldest.clone()),
        );
        registry.register(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds",
            m.start_time.clone(),
        );
        registry.register(
            "processor_implausible",
            "Values outside their metric's plausible range, not stored, by vendor and metric",
            Listed(m.implausible.clone()),
        );
        registry.register(
            "processor_unmapped",
            "Names payloads carried that no mapping covers (vendor metric names, \
             activity:<sport>), by vendor and name; at most 500 series, the rest as other",
            Listed(m.unmapped.clone()),
        );
        Metrics { registry, ..m }
    }

    /// A batch of `records` raw records, the oldest stamped `oldest_ms` by Kafka (ms
    /// since the epoch), is now being processed.
    pub fn batch_started(&self, records: usize, oldest_ms: Option<i64>) {
        self.in_flight.set(records as i64);
        // A record without a timestamp counts from now: never older than it is.
        let oldest = oldest_ms.unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
        *self
            .batch_age
            .oldest_ms
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(oldest);
    }

    /// The in-flight batch was stored, abandoned or failed: nothing is held any more.
    pub fn batch_ended(&self) {
        self.in_flight.set(0);
        *self
            .batch_age
            .oldest_ms
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Result of one health probe of `dependency` (one of [`DEPENDENCIES`]).
    pub fn dependency(&self, dependency: &'static str, up: bool) {
        self.dependency_up
            .get_or_create(&DependencyLabels { dependency })
            .set(i64::from(up));
    }

    /// Age in seconds of the oldest open parked notification per reason, as read from
    /// PostgreSQL; reasons without open rows have no sample.
    pub fn parked_oldest(&self, ages: &[(String, f64)]) {
        self.parked_oldest.clear();
        for (reason, age) in ages {
            self.parked_oldest
                .get_or_create(&OpenReasonLabels {
                    reason: reason_label(reason).to_owned(),
                })
                .set(*age);
        }
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

    /// A value of `vendor`/`metric` was outside its plausible range and not stored.
    pub fn implausible(&self, vendor: &str, metric: &'static str) {
        self.implausible
            .get_or_create(&ReadingLabels {
                vendor: vendor.to_string(),
                metric,
            })
            .inc();
    }

    /// A payload of `vendor` carried `name` (a vendor metric or field, `activity:<sport>`)
    /// that no mapping covers: the value was not turned into a reading.
    pub fn unmapped(&self, vendor: &str, name: &str) {
        let mut labels = UnmappedLabels {
            vendor: vendor.to_string(),
            name: unmapped_label(name).to_string(),
        };
        {
            let mut seen = self
                .unmapped_series
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if !seen.contains(&labels) {
                if seen.len() < MAX_UNMAPPED_SERIES {
                    seen.insert(labels.clone());
                } else {
                    labels.name = "other".into();
                }
            }
        }
        self.unmapped.get_or_create(&labels).inc();
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
    pub fn dead_lettered(&self, reason: crate::error::DlqReason) {
        self.dlq
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
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

    /// A vendor API request finished with `status`.
    pub fn fetch(&self, vendor: &str, status: &'static str) {
        self.fetches
            .get_or_create(&VendorStatusLabels {
                vendor: vendor_label(vendor),
                status,
            })
            .inc();
    }

    /// A token refresh ended with `status`.
    pub fn token_refresh(&self, vendor: &str, status: &'static str) {
        self.refreshes
            .get_or_create(&VendorStatusLabels {
                vendor: vendor_label(vendor),
                status,
            })
            .inc();
    }

    /// A notification was parked or closed for `reason`.
    pub fn parked(&self, vendor: &str, reason: &str) {
        self.parked
            .get_or_create(&VendorReasonLabels {
                vendor: vendor_label(vendor),
                reason: reason_label(reason),
            })
            .inc();
    }

    /// Open parked notifications per reason, as counted in PostgreSQL.
    pub fn parked_open(&self, counts: &[(String, i64)]) {
        // Reasons that dropped to zero are absent from the query: reset all first.
        self.parked_open.clear();
        for (reason, n) in counts {
            self.parked_open
                .get_or_create(&OpenReasonLabels {
                    reason: reason_label(reason).to_owned(),
                })
                .set(*n);
        }
    }

    /// A parked notification was retried with `status`.
    pub fn parked_retry(&self, vendor: &str, status: &'static str) {
        self.parked_retries
            .get_or_create(&VendorStatusLabels {
                vendor: vendor_label(vendor),
                status,
            })
            .inc();
    }

    /// The rate limit held a request for `wait`; zero means it parked instead.
    pub fn rate_limit_wait(&self, vendor: &str, wait: std::time::Duration) {
        let vendor = vendor_label(vendor);
        let status = if wait.is_zero() { "parked" } else { "waited" };
        self.rate_limit_waits
            .get_or_create(&VendorStatusLabels { vendor, status })
            .inc();
        if !wait.is_zero() {
            self.rate_limit_wait_seconds
                .get_or_create(&VendorLabels { vendor })
                .observe(wait.as_secs_f64());
        }
    }

    /// Consumer lag of one partition.
    pub fn lag(&self, partition: i32, lag: i64) {
        self.lag
            .get_or_create(&PartitionLabels { partition })
            .set(lag);
    }

    /// OpenMetrics text exposition (see `bridge_core::telemetry::exposition` for what a
    /// scrape is served).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn park_reasons_are_their_own_labels() {
        let mut seen = std::collections::HashSet::new();
        for r in PARK_REASONS {
            // Exhaustive: a new variant does not compile here until it is listed above.
            match r {
                ParkReason::Unlinked
                | ParkReason::ReauthRequired
                | ParkReason::TokenKey
                | ParkReason::RefreshFailed
                | ParkReason::RateLimited
                | ParkReason::VendorUnavailable
                | ParkReason::PendingScore
                | ParkReason::Unscorable
                | ParkReason::NoScoreState
                | ParkReason::NotFound
                | ParkReason::Rejected
                | ParkReason::RejectedByDatabase => {}
            }
            assert!(seen.insert(r), "{r:?} listed twice");
            assert_eq!(reason_label(r.as_str()), r.as_str());
        }
        assert_eq!(reason_label("bogus"), "other");
    }

    fn sample(text: &str, name: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
    }

    #[test]
    fn unmapped_names_are_counted_sanitized_and_bounded() {
        let m = Metrics::new();
        m.unmapped("healthkit", "walking_steadiness");
        m.unmapped("healthkit", "walking_steadiness");
        m.unmapped("terra", "activity:108");
        m.unmapped("healthkit", "evil\"} 1\nfake_metric 9");
        let text = m.encode();
        assert!(text.contains("# TYPE processor_unmapped counter"), "{text}");
        let line = |labels: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("processor_unmapped_total{{{labels}}}")))
                .and_then(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        };
        assert_eq!(
            line(r#"vendor="healthkit",name="walking_steadiness""#),
            Some(2.0)
        );
        assert_eq!(line(r#"vendor="terra",name="activity:108""#), Some(1.0));
        assert_eq!(line(r#"vendor="healthkit",name="invalid""#), Some(1.0));
        assert!(!text.contains("fake_metric"), "{text}");

        // A client sending endless fresh names cannot grow the exposition past the cap.
        for i in 0..MAX_UNMAPPED_SERIES + 50 {
            m.unmapped("healthkit", &format!("name_{i}"));
        }
        let series = m
            .encode()
            .lines()
            .filter(|l| l.starts_with("processor_unmapped_total{"))
            .count();
        assert_eq!(
            series,
            MAX_UNMAPPED_SERIES + 1,
            "the cap plus the `other` series"
        );
    }

    #[test]
    fn batch_age_grows_from_the_oldest_record_and_vanishes_when_stored() {
        let m = Metrics::new();
        let text = m.encode();
        assert!(text.contains("# TYPE processor_batch_age_seconds gauge"));
        assert_eq!(sample(&text, "processor_batch_age_seconds"), None);

        let ten_s_ago = chrono::Utc::now().timestamp_millis() - 10_000;
        m.batch_started(7, Some(ten_s_ago));
        let text = m.encode();
        let age = sample(&text, "processor_batch_age_seconds").expect("age while in flight");
        assert!((10.0..60.0).contains(&age), "age {age}");
        assert_eq!(sample(&text, "processor_records_in_flight"), Some(7.0));

        m.batch_ended();
        let text = m.encode();
        assert_eq!(sample(&text, "processor_batch_age_seconds"), None);
        assert_eq!(sample(&text, "processor_records_in_flight"), Some(0.0));
    }

    #[test]
    fn empty_families_are_listed_and_parked_ages_are_replaced_not_accumulated() {
        let m = Metrics::new();
        let text = m.encode();
        for family in [
            "# TYPE processor_dlq counter",
            "# TYPE processor_consumer_lag gauge",
            "# TYPE processor_dependency_up gauge",
            "# TYPE processor_parked_notifications_oldest_age_seconds gauge",
            "# TYPE processor_rate_limit_wait_seconds histogram",
        ] {
            assert!(text.contains(family), "{family} missing:\n{text}");
        }
        m.parked_oldest(&[("unlinked".into(), 30.0), ("bogus".into(), 5.0)]);
        let text = m.encode();
        assert!(text.contains(
            "processor_parked_notifications_oldest_age_seconds{reason=\"unlinked\"} 30.0"
        ));
        assert!(
            text.contains(
                "processor_parked_notifications_oldest_age_seconds{reason=\"other\"} 5.0"
            )
        );
        m.parked_oldest(&[]);
        assert!(
            !m.encode()
                .contains("processor_parked_notifications_oldest_age_seconds{")
        );
    }
}
