//! W3C trace context from a webhook's headers: validated, bounded, and attached to
//! the request span before it starts.
//!
//! A request's `traceparent` is continued only when it is a valid W3C version-00
//! value (exactly 55 characters, lower-case hex, non-zero ids); anything else starts
//! a new trace. `tracestate` is kept only within the W3C bounds (at most 32 list
//! members, 512 characters in all, well-formed keys and values); an invalid one is
//! dropped without invalidating the `traceparent` (W3C Trace Context §3.3.1.4). So
//! the only trace header that can reach the envelope is one of exactly 55 bytes.

use std::collections::HashMap;

use http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::{OpenTelemetrySpanExt, SetParentError};

/// Length of a version-00 `traceparent`: `00-<32 hex>-<16 hex>-<2 hex>`.
pub const TRACEPARENT_LEN: usize = 55;
/// Most `tracestate` characters kept (W3C: propagate at least 512).
pub const TRACESTATE_MAX_LEN: usize = 512;
/// Most `tracestate` list members (W3C §3.3.1.1).
pub const TRACESTATE_MAX_MEMBERS: usize = 32;

/// The trace context a request carried, after validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Incoming {
    /// A valid `traceparent`, or `None` to start a new trace.
    pub traceparent: Option<String>,
    /// A valid `tracestate`, only alongside a valid `traceparent`.
    pub tracestate: Option<String>,
}

impl Incoming {
    /// Reads and validates the trace headers. More than one `traceparent` header is
    /// invalid (W3C §3.2), since the receiver cannot tell which one is the parent.
    pub fn from_headers(headers: &HeaderMap) -> Incoming {
        let mut values = headers.get_all("traceparent").iter();
        let traceparent = match (values.next(), values.next()) {
            (Some(v), None) if valid_traceparent(v.as_bytes()) => v.to_str().ok(),
            _ => None,
        };
        let Some(traceparent) = traceparent else {
            return Incoming::default();
        };
        // Several tracestate headers are one list joined by commas (RFC 9110 §5.3).
        let mut joined = String::new();
        let mut ok = true;
        for value in headers.get_all("tracestate") {
            match value.to_str() {
                Ok(v) if joined.len() + v.len() < TRACESTATE_MAX_LEN + 1 => {
                    if !joined.is_empty() {
                        joined.push(',');
                    }
                    joined.push_str(v);
                }
                _ => ok = false,
            }
        }
        let tracestate = (ok && !joined.is_empty() && valid_tracestate(&joined)).then_some(joined);
        Incoming {
            traceparent: Some(traceparent.to_string()),
            tracestate,
        }
    }

    /// Makes `span` a child of the incoming trace. Must run before the span is first
    /// entered: tracing-opentelemetry builds the OpenTelemetry span on first entry and
    /// refuses a new parent afterwards (`SetParentError::AlreadyStarted`), which is why
    /// a parent set from inside the instrumented handler was silently lost.
    pub fn continue_in(&self, span: &tracing::Span) {
        let Some(traceparent) = &self.traceparent else {
            return;
        };
        let mut carrier = HashMap::from([("traceparent".to_string(), traceparent.clone())]);
        if let Some(state) = &self.tracestate {
            carrier.insert("tracestate".into(), state.clone());
        }
        let cx = TraceContextPropagator::new().extract(&carrier);
        match span.set_parent(cx) {
            // No OpenTelemetry layer (OTLP not configured) or span filtered out:
            // nothing to continue; the envelope still carries the incoming value.
            Ok(()) | Err(SetParentError::LayerNotFound | SetParentError::SpanDisabled) => {}
            Err(error) => {
                tracing::warn!(message = "Could not continue the incoming trace.", %error);
            }
        }
    }
}

/// A new random `traceparent`, for envelopes whose request carried none (or an
/// invalid one) while no OpenTelemetry layer gives the edge's span an id. Flagged
/// sampled: the edge made no sampling decision, and a parent-based sampler
/// downstream should still be free to record the processor's spans.
pub fn fresh_traceparent() -> String {
    let trace = uuid::Uuid::new_v4().as_u128().max(1);
    let span = (uuid::Uuid::new_v4().as_u128() as u64).max(1);
    format!("00-{trace:032x}-{span:016x}-01")
}

fn lower_hex(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

/// A W3C version-00 `traceparent`: exact length, lower-case hex fields, dashes in
/// place, trace id and parent id not all zeros. Later versions are refused rather
/// than parsed leniently: nothing sends them, and a strict check keeps the bound.
pub fn valid_traceparent(v: &[u8]) -> bool {
    if v.len() != TRACEPARENT_LEN || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return false;
    }
    let (version, trace, parent, flags) = (&v[0..2], &v[3..35], &v[36..52], &v[53..55]);
    version == b"00"
        && lower_hex(trace)
        && lower_hex(parent)
        && lower_hex(flags)
        && trace.iter().any(|&b| b != b'0')
        && parent.iter().any(|&b| b != b'0')
}

/// A W3C `tracestate` list within the bounds: at most 32 non-empty members, 512
/// characters in all, each `key=value` well formed, keys unique.
pub fn valid_tracestate(v: &str) -> bool {
    if v.len() > TRACESTATE_MAX_LEN {
        return false;
    }
    let mut keys = Vec::new();
    for member in v.split(',') {
        let member = member.trim_matches([' ', '\t']);
        if member.is_empty() {
            continue;
        }
        let Some((key, value)) = member.split_once('=') else {
            return false;
        };
        if !valid_key(key) || !valid_value(value) || keys.contains(&key) {
            return false;
        }
        keys.push(key);
    }
    keys.len() <= TRACESTATE_MAX_MEMBERS
}

fn key_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'*' | b'/')
}

/// `simple-key` (lcalpha then up to 255 key chars) or `tenant@system` (W3C §3.3.1.3.1).
fn valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    match key.split_once('@') {
        None => {
            (1..=256).contains(&b.len())
                && b[0].is_ascii_lowercase()
                && b.iter().copied().all(key_char)
        }
        Some((tenant, system)) => {
            let (t, s) = (tenant.as_bytes(), system.as_bytes());
            (1..=241).contains(&t.len())
                && (t[0].is_ascii_lowercase() || t[0].is_ascii_digit())
                && t.iter().copied().all(key_char)
                && (1..=14).contains(&s.len())
                && s[0].is_ascii_lowercase()
                && s.iter().copied().all(key_char)
        }
    }
}

/// 1–256 printable ASCII characters except `,` and `=`, not ending in a space.
fn valid_value(value: &str) -> bool {
    let b = value.as_bytes();
    (1..=256).contains(&b.len())
        && b.iter()
            .all(|&c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
        && b.last() != Some(&b' ')
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
    use tracing_subscriber::layer::SubscriberExt;

    const VALID: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn only_valid_version_00_traceparents_are_continued() {
        assert!(valid_traceparent(VALID.as_bytes()));
        for bad in [
            "",
            "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331_01",
            "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0x",
        ] {
            assert!(!valid_traceparent(bad.as_bytes()), "{bad}");
        }
        let huge = format!("{VALID}{}", "a".repeat(100 * 1024));
        assert!(!valid_traceparent(huge.as_bytes()));
        assert_eq!(
            Incoming::from_headers(&headers(&[("traceparent", &huge)])),
            Incoming::default()
        );
    }

    #[test]
    fn two_traceparent_headers_start_a_new_trace() {
        let h = headers(&[("traceparent", VALID), ("traceparent", VALID)]);
        assert_eq!(Incoming::from_headers(&h), Incoming::default());
    }

    #[test]
    fn tracestate_within_bounds_is_kept_and_otherwise_dropped() {
        let ok = headers(&[
            ("traceparent", VALID),
            ("tracestate", "rojo=00f067aa0ba902b7"),
            ("tracestate", "congo=t61rcWkgMzE, tenant1@vendor=x y"),
        ]);
        let got = Incoming::from_headers(&ok);
        assert_eq!(got.traceparent.as_deref(), Some(VALID));
        assert_eq!(
            got.tracestate.as_deref(),
            Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE, tenant1@vendor=x y")
        );
        let members: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        for bad in [
            "Rojo=1".to_string(),
            "rojo".to_string(),
            "rojo=1,rojo=2".to_string(),
            "rojo=a=b".to_string(),
            "rojo=a\tb".to_string(),
            members.join(","),
            format!("k={}", "v".repeat(600)),
        ] {
            let h = headers(&[("traceparent", VALID), ("tracestate", &bad)]);
            let got = Incoming::from_headers(&h);
            assert_eq!(got.traceparent.as_deref(), Some(VALID), "{bad}");
            assert_eq!(got.tracestate, None, "{bad}");
        }
        // Without a valid traceparent nothing is kept.
        let h = headers(&[("tracestate", "rojo=1")]);
        assert_eq!(Incoming::from_headers(&h), Incoming::default());
    }

    #[test]
    fn fresh_traceparents_are_valid_and_distinct() {
        let a = fresh_traceparent();
        assert!(valid_traceparent(a.as_bytes()), "{a}");
        assert_ne!(a, fresh_traceparent());
    }

    /// The bug this module fixes: the parent must be set before the span is entered.
    #[test]
    fn the_request_span_joins_the_incoming_trace() {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let incoming = Incoming::from_headers(&headers(&[("traceparent", VALID)]));
            let span = tracing::info_span!("webhook");
            incoming.continue_in(&span);
            let _entered = span.enter();
            let cx = span.context();
            let sc = cx.span().span_context().clone();
            assert_eq!(
                format!("{:032x}", sc.trace_id()),
                "0af7651916cd43dd8448eb211c80319c"
            );
            assert_ne!(format!("{:016x}", sc.span_id()), "b7ad6b7169203331");
            // The edge's own traceparent names the same trace.
            let tp = bridge_core::telemetry::traceparent(&span).expect("sampled");
            assert!(
                tp.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
                "{tp}"
            );

            // And a span entered before the parent is set cannot join: the old code path.
            let late = tracing::info_span!("late");
            let _e = late.enter();
            let cx = TraceContextPropagator::new().extract(&HashMap::from([(
                "traceparent".to_string(),
                VALID.to_string(),
            )]));
            assert!(matches!(
                late.set_parent(cx),
                Err(SetParentError::AlreadyStarted)
            ));
        });
    }
}
