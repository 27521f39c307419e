//! Logging and tracing set-up, W3C trace context in Kafka headers, and the Prometheus
//! exposition both services serve.
//!
//! Logs go to stderr, filtered by `RUST_LOG` (default `info`; `LOG_FORMAT=json` for
//! JSON lines). With `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! set, spans are also exported over OTLP/HTTP with protobuf bodies, filtered on their
//! own by `OTEL_TRACES_FILTER` (default [`DEFAULT_TRACES_FILTER`]): a quiet log level
//! does not silence the traces, nor does a chatty one flood the collector. The rest is
//! read by the OpenTelemetry SDK from the standard variables: `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`,
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Spans exported when `OTEL_TRACES_FILTER` is unset: our own crates' spans at `info`
/// (one per request, envelope and batch stage), other crates' only at `warn`.
pub const DEFAULT_TRACES_FILTER: &str = "warn,edge=info,processor=info,bridge_core=info";

/// Most span links one span carries. A batch span links every envelope it handled up
/// to this many (the OpenTelemetry SDK's default link limit, which would drop the rest
/// anyway); the number left out is recorded in the span's `links.dropped` attribute.
pub const MAX_LINKS_PER_SPAN: usize = 128;

/// Whether spans are exported: without an exporter, links would be parsed for nothing
/// on the processor's hot path.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Keeps the span exporter alive; dropping it flushes pending spans.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            // The subscriber may already be gone at this point: say it on stderr.
            eprintln!("telemetry: flushing spans at shutdown failed: {error}");
        }
    }
}

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A filter variable does not parse.
    #[error("{var}: {error}")]
    Filter {
        /// The variable.
        var: &'static str,
        /// The parser's complaint.
        error: tracing_subscriber::filter::ParseError,
    },
    /// Only OTLP over HTTP with protobuf bodies is built in.
    #[error(
        "{var}={value}: only `http/protobuf` is supported (OTLP/HTTP, port 4318 by default); point the endpoint at the collector's HTTP receiver"
    )]
    Protocol {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// The exporter refused its configuration.
    #[error("OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// A global subscriber was already installed.
    #[error("installing the tracing subscriber: {0}")]
    Install(#[from] tracing_subscriber::util::TryInitError),
}

fn env_set(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

fn filter_from(var: &'static str, default: &str) -> Result<EnvFilter, TelemetryError> {
    let spec = env_set(var).unwrap_or_else(|| default.to_string());
    EnvFilter::builder()
        .parse(spec)
        .map_err(|error| TelemetryError::Filter { var, error })
}

/// Installs the global subscriber for `service` (the OpenTelemetry service name unless
/// `OTEL_SERVICE_NAME` says otherwise). Call once, early in `main`, and keep the guard
/// until the end of `main`: dropping it flushes the spans still queued.
pub fn init(service: &'static str) -> Result<TelemetryGuard, TelemetryError> {
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    };
    let fmt = fmt.with_filter(filter_from("RUST_LOG", "info")?);
    // Parsed even without an endpoint, so a typo shows at the first start.
    let traces_filter = filter_from("OTEL_TRACES_FILTER", DEFAULT_TRACES_FILTER)?;

    let provider = match exporter()? {
        Some(exporter) => {
            let mut resource = opentelemetry_sdk::Resource::builder();
            // The SDK reads OTEL_SERVICE_NAME itself; ours is only the default.
            if env_set("OTEL_SERVICE_NAME").is_none() {
                resource = resource.with_service_name(service);
            }
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource.build())
                    .build(),
            )
        }
        None => None,
    };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer(service))
            .with_filter(traces_filter)
    });
    tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init()?;
    EXPORTING.store(provider.is_some(), Ordering::Relaxed);
    Ok(TelemetryGuard { provider })
}

/// The OTLP/HTTP span exporter, when an endpoint is configured. Endpoint, headers and
/// timeout come from the standard `OTEL_EXPORTER_OTLP_*` variables.
fn exporter() -> Result<Option<opentelemetry_otlp::SpanExporter>, TelemetryError> {
    if env_set("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
        && env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
    {
        return Ok(None);
    }
    for var in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(value) = env_set(var)
            && value != "http/protobuf"
        {
            return Err(TelemetryError::Protocol { var, value });
        }
    }
    Ok(Some(
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()?,
    ))
}

/// The `traceparent` of `span`, when it belongs to a sampled OpenTelemetry trace.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove("traceparent")
}

/// Whether `value` has the shape of a W3C `traceparent` (version 00 layout: lowercase
/// hex `vv-<32>-<16>-ff`, version not `ff`). The SDK's propagator is laxer (it takes a
/// short trace id, for one), so this is checked first.
pub fn well_formed_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    // Future versions may append fields; version 00 has exactly four.
    let fields_ok = match parts.first() {
        Some(&"00") => parts.len() == 4,
        Some(v) => parts.len() >= 4 && *v != "ff",
        None => false,
    };
    fields_ok && hex(parts[0], 2) && hex(parts[1], 32) && hex(parts[2], 16) && hex(parts[3], 2)
}

/// The span context a `traceparent` header value names, if it is valid W3C trace context.
pub fn span_context(traceparent: &str) -> Option<SpanContext> {
    if !well_formed_traceparent(traceparent) {
        return None;
    }
    let carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

/// Makes `span` a child of the trace named by a `traceparent` header value. Must be
/// called before the span is first entered (OpenTelemetry fixes a span's parent when
/// it starts); returns whether the parent was taken.
pub fn set_parent(span: &tracing::Span, traceparent: &str) -> bool {
    match span_context(traceparent) {
        Some(sc) => span
            .set_parent(opentelemetry::Context::new().with_remote_span_context(sc))
            .is_ok(),
        None => false,
    }
}

/// Adds a span link from `span` to each distinct valid trace context in
/// `traceparents`, at most [`MAX_LINKS_PER_SPAN`]; records how many were left out as
/// `links.dropped`. Returns the number of links added. This is how a batch span points
/// back at the requests whose data it carried (OpenTelemetry's model for batch work).
/// Does nothing (and costs nothing) when no exporter is configured.
pub fn link_all<'a>(
    span: &tracing::Span,
    traceparents: impl IntoIterator<Item = &'a str>,
) -> usize {
    if !EXPORTING.load(Ordering::Relaxed) {
        return 0;
    }
    let mut seen = HashSet::new();
    let mut dropped = 0u64;
    for tp in traceparents {
        let Some(sc) = span_context(tp) else {
            continue;
        };
        if !seen.insert((sc.trace_id(), sc.span_id())) {
            continue;
        }
        if seen.len() > MAX_LINKS_PER_SPAN {
            dropped += 1;
            continue;
        }
        span.add_link(sc);
    }
    if dropped > 0 {
        span.set_attribute("links.dropped", dropped as i64);
    }
    seen.len().min(MAX_LINKS_PER_SPAN)
}

/// Content type of the OpenMetrics text format (what `prometheus-client` encodes).
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Content type of Prometheus' classic text format, version 0.0.4.
pub const CLASSIC_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Picks the exposition for a scrape from its `Accept` header, as the official clients
/// do: OpenMetrics when the scraper asks for it (Prometheus does), otherwise the classic
/// text format that every parser (`promtool check metrics`, `curl | grep`) reads.
/// Returns the content type and the body for `openmetrics`, the OpenMetrics text of a
/// `prometheus-client` registry.
pub fn exposition(openmetrics: String, accept: Option<&str>) -> (&'static str, String) {
    if accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
        (OPENMETRICS_CONTENT_TYPE, openmetrics)
    } else {
        (CLASSIC_CONTENT_TYPE, to_classic(&openmetrics))
    }
}

/// Rewrites `prometheus-client`'s OpenMetrics text as the classic text format: counter
/// families are named with their `_total` suffix (OpenMetrics names the family without
/// it), and `# UNIT` and `# EOF` lines, which the classic format lacks, are left out.
/// Gauges and histograms are the same in both. Exemplars are not used here.
pub fn to_classic(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line.starts_with("# HELP ") {
            // Held until the TYPE line says whether the family is a counter.
            if let Some(h) = help.replace(line) {
                out.push_str(h);
                out.push('\n');
            }
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let classic = if kind == "counter" && !name.ends_with("_total") {
                format!("{name}_total")
            } else {
                name.to_string()
            };
            if let Some(h) = help.take() {
                let text = h
                    .strip_prefix("# HELP ")
                    .and_then(|r| r.split_once(' '))
                    .map_or("", |(_, t)| t);
                out.push_str(&format!("# HELP {classic} {text}\n"));
            }
            out.push_str(&format!("# TYPE {classic} {kind}\n"));
        } else if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        } else {
            if let Some(h) = help.take() {
                out.push_str(h);
                out.push('\n');
            }
            out.push_str(line);
            out.push('\n');
        }
    }
    if let Some(h) = help {
        out.push_str(h);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_names_counter_families_with_total_and_drops_openmetrics_only_lines() {
        let om = "# HELP a_requests Requests.\n# TYPE a_requests counter\n\
                  a_requests_total{vendor=\"x\"} 3\n\
                  # HELP a_wait_seconds Wait.\n# TYPE a_wait_seconds histogram\n# UNIT a_wait_seconds seconds\n\
                  a_wait_seconds_sum 1.5\na_wait_seconds_count 2\na_wait_seconds_bucket{le=\"+Inf\"} 2\n\
                  # HELP a_lag Lag.\n# TYPE a_lag gauge\na_lag{partition=\"0\"} 7\n# EOF\n";
        let classic = to_classic(om);
        assert_eq!(
            classic,
            "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\n\
             a_requests_total{vendor=\"x\"} 3\n\
             # HELP a_wait_seconds Wait.\n# TYPE a_wait_seconds histogram\n\
             a_wait_seconds_sum 1.5\na_wait_seconds_count 2\na_wait_seconds_bucket{le=\"+Inf\"} 2\n\
             # HELP a_lag Lag.\n# TYPE a_lag gauge\na_lag{partition=\"0\"} 7\n"
        );
    }

    #[test]
    fn exposition_follows_accept() {
        let om = "# HELP c C.\n# TYPE c counter\nc_total 1\n# EOF\n".to_string();
        let prometheus_accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let (ct, body) = exposition(om.clone(), Some(prometheus_accept));
        assert_eq!(ct, OPENMETRICS_CONTENT_TYPE);
        assert_eq!(body, om);
        let (ct, body) = exposition(om.clone(), None);
        assert_eq!(ct, CLASSIC_CONTENT_TYPE);
        assert!(body.contains("# TYPE c_total counter") && !body.contains("# EOF"));
        let (ct, _) = exposition(om, Some("*/*"));
        assert_eq!(ct, CLASSIC_CONTENT_TYPE);
    }

    #[test]
    fn links_are_distinct_valid_and_capped_and_the_rest_counted() {
        use opentelemetry_sdk::trace::InMemorySpanExporter;
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        EXPORTING.store(true, Ordering::Relaxed);
        let distinct: Vec<String> = (1..=200u32)
            .map(|i| format!("00-{i:032x}-{i:016x}-01"))
            .collect();
        let linked = tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("batch");
            let all = distinct
                .iter()
                .map(String::as_str)
                // Repeats and garbage are not links.
                .chain(distinct.iter().take(10).map(String::as_str))
                .chain([
                    "garbage",
                    "00-00000000000000000000000000000000-0000000000000001-01",
                ]);
            link_all(&span, all)
        });
        assert_eq!(linked, MAX_LINKS_PER_SPAN);
        let spans = exporter.get_finished_spans().expect("spans");
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].links.links.len(), MAX_LINKS_PER_SPAN);
        let dropped = spans[0]
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == "links.dropped")
            .map(|kv| kv.value.clone());
        assert_eq!(
            dropped,
            Some(opentelemetry::Value::I64(200 - MAX_LINKS_PER_SPAN as i64))
        );
    }

    #[test]
    fn span_context_accepts_valid_and_refuses_invalid_traceparents() {
        let ok = "00-36da7afe5d3f4c2b8a1e9f0c7b6d5a41-1a2b3c4d5e6f7a8b-01";
        let sc = span_context(ok).expect("valid");
        assert_eq!(
            format!("{:032x}", sc.trace_id()),
            "36da7afe5d3f4c2b8a1e9f0c7b6d5a41"
        );
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-1a2b3c4d5e6f7a8b-01",
            "00-36da7afe5d3f4c2b8a1e9f0c7b6d5a41-0000000000000000-01",
            "00-36da7afe-1a2b3c4d5e6f7a8b-01",
            "00-36DA7AFE5D3F4C2B8A1E9F0C7B6D5A41-1a2b3c4d5e6f7a8b-01",
            "ff-36da7afe5d3f4c2b8a1e9f0c7b6d5a41-1a2b3c4d5e6f7a8b-01",
            "00-36da7afe5d3f4c2b8a1e9f0c7b6d5a41-1a2b3c4d5e6f7a8b-01-extra",
        ] {
            assert!(span_context(bad).is_none(), "{bad:?} accepted");
        }
    }
}
