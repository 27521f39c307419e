//! The edge's named telemetry events: each function logs and bumps its metric together.
//! Labels are bounded (vendor, status, reason); never error strings.

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    vendor: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VendorLabels {
    vendor: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabels {
    vendor: String,
    reason: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~16 s: from loopback acks to past the produce timeout (5 s default).
    Histogram::new(exponential_buckets(0.000_25, 2.0, 17))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Prometheus registry and the edge's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: HistogramFamily<VendorLabels>,
    produce_seconds: HistogramFamily<ResultLabels>,
    in_flight: Gauge<i64, AtomicI64>,
    rejected: Family<RejectLabels, Counter>,
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
        let requests = Family::<RequestLabels, Counter>::default();
        let request_seconds: HistogramFamily<VendorLabels> =
            Family::new_with_constructor(latency_histogram);
        let produce_seconds: HistogramFamily<ResultLabels> =
            Family::new_with_constructor(latency_histogram);
        let in_flight = Gauge::<i64, AtomicI64>::default();
        let rejected = Family::<RejectLabels, Counter>::default();
        registry.register(
            "edge_requests",
            "Webhook requests by vendor and HTTP status",
            requests.clone(),
        );
        registry.register(
            "edge_request_duration_seconds",
            "Time from request start to answer, by vendor",
            request_seconds.clone(),
        );
        registry.register(
            "edge_produce_duration_seconds",
            "Time from enqueue to Kafka's answer, by result (acked, timeout, queue_full, ...)",
            produce_seconds.clone(),
        );
        registry.register(
            "edge_in_flight_requests",
            "Webhook requests being handled",
            in_flight.clone(),
        );
        registry.register(
            "edge_rejected",
            "Webhook requests refused, by vendor and reason",
            rejected.clone(),
        );
        Metrics {
            registry,
            requests,
            request_seconds,
            produce_seconds,
            in_flight,
            rejected,
        }
    }

    /// A request finished with `status` after `seconds`.
    pub fn request_done(&self, vendor: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                vendor: vendor.to_string(),
                status,
            })
            .inc();
        self.request_seconds
            .get_or_create(&VendorLabels {
                vendor: vendor.to_string(),
            })
            .observe(seconds);
    }

    /// A request was refused for `reason` (bounded label).
    pub fn rejected(&self, vendor: &str, reason: &'static str) {
        tracing::debug!(message = "Rejected webhook.", vendor, reason);
        self.rejected
            .get_or_create(&RejectLabels {
                vendor: vendor.to_string(),
                reason,
            })
            .inc();
    }

    /// Kafka answered a produce after `seconds`: `result` is `acked` or the failure reason.
    pub fn produced(&self, result: &'static str, seconds: f64) {
        self.produce_seconds
            .get_or_create(&ResultLabels { result })
            .observe(seconds);
    }

    /// Marks a request in flight until the guard drops.
    pub fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(&self.in_flight)
    }

    /// OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Decrements the in-flight gauge on drop, whichever way the request ends.
pub struct InFlight<'a>(&'a Gauge<i64, AtomicI64>);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_text_names_counter_families_by_their_samples() {
        let m = Metrics::new();
        m.rejected("terra", "bad_signature");
        m.request_done("terra", 401, 0.01);
        let open = m.encode();
        assert!(open.contains("# TYPE edge_rejected counter"), "{open}");
        assert!(open.ends_with("# EOF\n"), "{open}");
        let classic = bridge_core::telemetry::to_classic(&m.encode());
        assert!(
            classic.contains("# TYPE edge_rejected_total counter\n"),
            "{classic}"
        );
        assert!(
            classic.contains("# HELP edge_rejected_total Webhook requests refused"),
            "{classic}"
        );
        assert!(
            classic.contains("edge_rejected_total{vendor=\"terra\",reason=\"bad_signature\"} 1\n"),
            "{classic}"
        );
        assert!(
            classic.contains("# TYPE edge_request_duration_seconds histogram\n"),
            "{classic}"
        );
        assert!(
            classic.contains("# TYPE edge_in_flight_requests gauge\n"),
            "{classic}"
        );
        assert!(!classic.contains("# EOF"), "{classic}");
    }
}
