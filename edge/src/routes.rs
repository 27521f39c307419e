//! HTTP routes: `/webhooks/{vendor}`, `/health`, `/ready`, `/metrics`.
//!
//! Every answer is JSON with a short message; details go to the log, never to the caller.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bridge_core::{RawEnvelope, RegisteredCodec, SchemaRegistry};
use bytes::{Buf, BytesMut};
use futures::{Stream, StreamExt};
use http::{HeaderMap, Method, StatusCode};
use rdkafka::producer::FutureProducer;
use tracing::Instrument;
use warp::Filter;
use warp::reply::Response;

use crate::metrics::Metrics;
use crate::producer;
use crate::trace_context::{self, Incoming};
use crate::verify::{OuraVerifier, Request, Verified, Verifier};

/// Everything a request handler needs, shared by all connections.
pub struct App {
    /// Verifier per vendor route name; a vendor absent here answers 404.
    pub verifiers: HashMap<String, Arc<dyn Verifier>>,
    /// Oura's verifier again, for the subscription handshake (GET).
    pub oura: Option<Arc<OuraVerifier>>,
    /// Idempotent `acks=all` producer.
    pub producer: FutureProducer,
    /// Envelope codec pinned to the registry id.
    pub codec: RegisteredCodec,
    /// Registry client, for `/ready`.
    pub registry: SchemaRegistry,
    /// Raw topic.
    pub topic: String,
    /// Wait for an acknowledgement at most this long.
    pub produce_timeout: Duration,
    /// `Retry-After` on 503.
    pub retry_after_secs: u32,
    /// Body size limit.
    pub max_body_bytes: u64,
    /// Longest a client may take to send its body.
    pub body_read_timeout: Duration,
    /// Recorded in each envelope.
    pub instance_id: String,
    /// Telemetry.
    pub metrics: Metrics,
}

/// All routes of the edge.
pub fn routes(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    let with_app = {
        let app = app.clone();
        warp::any().map(move || app.clone())
    };
    let health = warp::path!("health")
        .and(warp::get())
        .map(|| json(StatusCode::OK, r#"{"status":"ok"}"#));
    let ready = warp::path!("ready")
        .and(warp::get())
        .and(with_app.clone())
        .then(ready);
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(warp::header::optional::<String>("accept"))
        .and(with_app.clone())
        .map(|accept: Option<String>, app: Arc<App>| {
            // OpenMetrics for scrapers that ask (Prometheus), classic text otherwise.
            let (content_type, body) =
                bridge_core::telemetry::exposition(app.metrics.encode(), accept.as_deref());
            let mut r = Response::new(body.into());
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(content_type),
            );
            r
        });
    let webhook = warp::path!("webhooks" / String)
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(
            warp::query::raw()
                .map(Some)
                .or(warp::any().map(|| None))
                .unify(),
        )
        .and(warp::body::stream())
        .and(with_app)
        .then(
            |vendor: String, method, headers, query, body, app: Arc<App>| async move {
                let started = Instant::now();
                let _in_flight = app.metrics.in_flight();
                let span = tracing::info_span!("webhook", vendor = %vendor);
                let trace = Incoming::from_headers(&headers);
                // Before the span is entered: see `Incoming::continue_in`.
                trace.continue_in(&span);
                let response = handle(&app, &vendor, method, headers, query, body, trace)
                    .instrument(span)
                    .await;
                let label = if app.verifiers.contains_key(&vendor) {
                    vendor.as_str()
                } else {
                    "unknown"
                };
                app.metrics.request_done(
                    label,
                    response.status().as_u16(),
                    started.elapsed().as_secs_f64(),
                );
                response
            },
        );
    health
        .or(ready)
        .unify()
        .or(metrics)
        .unify()
        .or(webhook)
        .unify()
        .recover(|rejection: warp::Rejection| async move {
            let (status, message) = if rejection.is_not_found() {
                (StatusCode::NOT_FOUND, "not found")
            } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
                (StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            } else {
                (StatusCode::BAD_REQUEST, "bad request")
            };
            Ok::<_, Infallible>(error(status, message))
        })
        .unify()
}

async fn ready(app: Arc<App>) -> Response {
    let (kafka, registry) = tokio::join!(
        producer::reachable(&app.producer, &app.topic, Duration::from_secs(2)),
        app.registry.check()
    );
    // A fatal idempotent-producer error never clears: report not-ready so the
    // orchestrator restarts the edge instead of it answering 503 forever.
    let fatal = rdkafka::producer::Producer::client(&app.producer)
        .fatal_error()
        .map(|(_, reason)| reason);
    if let Some(reason) = &fatal {
        tracing::error!(message = "Kafka producer is in a fatal state; restart the edge.", %reason);
    }
    let kafka = kafka && fatal.is_none();
    let registry = registry.is_ok();
    let body = format!(r#"{{"kafka":{kafka},"schema_registry":{registry}}}"#);
    let status = if kafka && registry {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(status, &body)
}

async fn handle<S, B>(
    app: &App,
    vendor: &str,
    method: Method,
    headers: HeaderMap,
    query: Option<String>,
    body: S,
    trace: Incoming,
) -> Response
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let Some(verifier) = app.verifiers.get(vendor) else {
        app.metrics.rejected("unknown", "unknown_vendor");
        return error(StatusCode::NOT_FOUND, "unknown vendor");
    };
    if method == Method::GET && vendor == "oura" {
        return oura_handshake(app, query.as_deref());
    }
    if method != Method::POST {
        app.metrics.rejected(vendor, "method");
        return error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    // A client that trickles its body must not hold a connection and a buffer forever.
    let read = tokio::time::timeout(
        app.body_read_timeout,
        read_body(&headers, body, app.max_body_bytes),
    );
    let body = match read.await.unwrap_or(Err(BodyError::Timeout)) {
        Ok(body) => body,
        Err(BodyError::Timeout) => {
            app.metrics.rejected(vendor, "body_timeout");
            return error(StatusCode::REQUEST_TIMEOUT, "body not received in time");
        }
        Err(BodyError::TooLarge) => {
            app.metrics.rejected(vendor, "too_large");
            return error(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
        }
        Err(BodyError::Read) => {
            app.metrics.rejected(vendor, "body_read");
            return error(StatusCode::BAD_REQUEST, "could not read body");
        }
    };
    let now = unix_now();
    let request = Request {
        headers: &headers,
        query: query.as_deref(),
        body: &body,
        now,
    };
    let principal = match verifier.verify(&request) {
        Ok(Verified::Accept { principal }) => principal,
        Ok(Verified::Ping) => return json(StatusCode::OK, r#"{"status":"ok"}"#),
        Err(e) => {
            app.metrics.rejected(vendor, e.reason());
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED);
            return error(status, &e.to_string());
        }
    };
    let key = verifier
        .partition_key(&request, principal.as_deref())
        .unwrap_or_else(|| format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&body)));

    let event_id = uuid::Uuid::now_v7().to_string();
    // The edge span's own context when OpenTelemetry is on (same trace, our span
    // id); else the validated incoming value; else a new trace. Never the raw header.
    let traceparent = bridge_core::telemetry::traceparent(&tracing::Span::current())
        .or(trace.traceparent)
        .unwrap_or_else(trace_context::fresh_traceparent);
    let mut kept = HashMap::new();
    for name in verifier.kept_headers() {
        if let Some(v) = headers.get(*name).and_then(|v| v.to_str().ok()) {
            kept.insert((*name).to_string(), v.to_string());
        }
    }
    kept.insert("traceparent".into(), traceparent.clone());
    let envelope = RawEnvelope {
        event_id: event_id.clone(),
        vendor: vendor.to_string(),
        received_at_micros: now_micros(),
        headers: kept,
        query,
        principal,
        content_type: headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: body.to_vec(),
        edge_instance: app.instance_id.clone(),
    };
    let payload = match app.codec.encode(envelope.into_avro()) {
        Ok(p) => p,
        Err(e) => {
            // The schema is ours and fixed: failing here is a bug, not bad input.
            tracing::error!(message = "Failed to encode envelope.", error = %e, vendor);
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
    };
    let produce_started = Instant::now();
    let appended = producer::append(
        &app.producer,
        &app.topic,
        key.as_bytes(),
        &payload,
        Some(&traceparent),
        app.produce_timeout,
    )
    .await;
    if let Err(e) = &appended {
        app.metrics
            .produced(e.reason(), produce_started.elapsed().as_secs_f64());
    }
    match appended {
        Ok(_) => {
            app.metrics
                .produced("acked", produce_started.elapsed().as_secs_f64());
            json(StatusCode::ACCEPTED, &format!(r#"{{"id":"{event_id}"}}"#))
        }
        Err(producer::ProduceError::TooLarge) => {
            tracing::warn!(
                message = "Record larger than Kafka accepts; answering 413.",
                vendor,
                bytes = payload.len()
            );
            app.metrics.rejected(vendor, "kafka_too_large");
            error(StatusCode::PAYLOAD_TOO_LARGE, "body too large")
        }
        Err(e) => {
            tracing::warn!(message = "Kafka did not take the record; answering 503.", error = %e, vendor);
            app.metrics.rejected(vendor, e.reason());
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable");
            r.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from(app.retry_after_secs),
            );
            r
        }
    }
}

fn oura_handshake(app: &App, query: Option<&str>) -> Response {
    let Some(oura) = &app.oura else {
        return error(StatusCode::NOT_FOUND, "unknown vendor");
    };
    match oura.handshake(query.unwrap_or("")) {
        Ok(challenge) => {
            let body = serde_json::json!({ "challenge": challenge }).to_string();
            json(StatusCode::OK, &body)
        }
        Err(e) => {
            app.metrics.rejected("oura", e.reason());
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED);
            error(status, &e.to_string())
        }
    }
}

enum BodyError {
    TooLarge,
    Read,
    Timeout,
}

/// Refuses by Content-Length before reading, and stops reading at the limit for
/// chunked bodies that did not announce their size.
async fn read_body<S, B>(
    headers: &HeaderMap,
    mut body: S,
    max: u64,
) -> Result<bytes::Bytes, BodyError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let announced = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max) {
        return Err(BodyError::TooLarge);
    }
    // Capped: a client announcing 1 MiB and sending nothing must not reserve it.
    let mut buf = BytesMut::with_capacity(announced.unwrap_or(0).min(max).min(64 * 1024) as usize);
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|_| BodyError::Read)?;
        if (buf.len() + chunk.remaining()) as u64 > max {
            return Err(BodyError::TooLarge);
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            buf.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    Ok(buf.freeze())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

fn json(status: StatusCode, body: &str) -> Response {
    let mut r = Response::new(body.to_string().into());
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, message: &str) -> Response {
    json(status, &serde_json::json!({ "error": message }).to_string())
}
