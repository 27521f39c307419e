//! HTTP routes: `/webhooks/{vendor}`, `/health`, `/ready`, `/metrics`.
//!
//! Every answer is JSON with a short message; details go to the log, never to the caller.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bridge_core::{RawEnvelope, RegisteredCodec};
use bytes::Buf;
use futures::{Stream, StreamExt};
use http::{HeaderMap, Method, StatusCode};
use rdkafka::producer::FutureProducer;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;
use warp::Filter;
use warp::reply::Response;

use crate::error::IngestError;
use crate::metrics::Metrics;
use crate::producer;
use crate::ready::Readiness;
use crate::trace_context::{self, Incoming};
use vendors::verify::{Head, Request, Verified, Verifier};

/// Everything a request handler needs, shared by all connections.
pub struct App {
    /// Verifier per vendor route name; a vendor absent here answers 404.
    pub verifiers: HashMap<String, Arc<dyn Verifier>>,
    /// Idempotent `acks=all` producer.
    pub producer: FutureProducer,
    /// Envelope codec pinned to the registry id.
    pub codec: RegisteredCodec,
    /// Kafka and registry health, kept current by a background check.
    pub readiness: Arc<Readiness>,
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
    /// Bytes of bodies in flight across all connections, one permit per byte.
    pub body_budget: Arc<Semaphore>,
    /// Recorded in each envelope.
    pub instance_id: String,
    /// Telemetry.
    pub metrics: Metrics,
}

/// How long a body waits for room in the global budget before 503: long enough to
/// ride out a burst of large bodies finishing, short against vendors' timeouts.
const BUDGET_WAIT: Duration = Duration::from_secs(1);

/// Every route of the edge on one listener (no `EDGE_ADMIN_ADDR`).
pub fn routes(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    admin(app.clone())
        .or(webhooks(app))
        .unify()
        .recover(recover)
        .unify()
}

/// `/webhooks/{vendor}` only, for the public listener when an admin listener exists.
pub fn webhook_routes(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    webhooks(app).recover(recover).unify()
}

/// `/health`, `/ready` and `/metrics` only, for the admin listener.
pub fn admin_routes(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    admin(app).recover(recover).unify()
}

fn admin(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static {
    let with_app = warp::any().map(move || app.clone());
    let health = warp::path!("health")
        .and(warp::get())
        .map(|| json(StatusCode::OK, r#"{"status":"ok"}"#));
    let ready = warp::path!("ready")
        .and(warp::get())
        .and(with_app.clone())
        .map(|app: Arc<App>| ready(&app));
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(warp::header::optional::<String>("accept"))
        .and(with_app)
        .map(|accept: Option<String>, app: Arc<App>| {
            // Each body is labelled with the format it is in, or a scraper picks the
            // wrong parser: OpenMetrics for those that ask (Prometheus does), the
            // classic text format otherwise (promtool, curl).
            let (content_type, body) =
                bridge_core::telemetry::exposition(app.metrics.encode(), accept.as_deref());
            let mut r = Response::new(body.into());
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(content_type),
            );
            r
        });
    health.or(ready).unify().or(metrics).unify()
}

fn webhooks(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static {
    let with_app = warp::any().map(move || app.clone());
    warp::path!("webhooks" / String)
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
        )
}

async fn recover(rejection: warp::Rejection) -> Result<Response, Infallible> {
    let (status, message) = if rejection.is_not_found() {
        (StatusCode::NOT_FOUND, "not found")
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        (StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
    } else {
        (StatusCode::BAD_REQUEST, "bad request")
    };
    Ok(json_error(status, message))
}

fn ready(app: &App) -> Response {
    let kafka = app.readiness.kafka();
    let registry = app.readiness.registry();
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
    match ingest(app, vendor, method, headers, query, body, trace).await {
        Ok(response) => response,
        Err(IngestError::UnknownVendor) => IngestError::UnknownVendor.respond(app, "unknown"),
        Err(e) => e.respond(app, vendor),
    }
}

/// Authenticates and appends one webhook: `Ok` is the answer to give (202 with the
/// envelope id, or a handshake's or ping's answer), `Err` why nothing was appended.
async fn ingest<S, B>(
    app: &App,
    vendor: &str,
    method: Method,
    headers: HeaderMap,
    query: Option<String>,
    body: S,
    trace: Incoming,
) -> Result<Response, IngestError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let verifier = app
        .verifiers
        .get(vendor)
        .ok_or(IngestError::UnknownVendor)?;
    if method == Method::GET
        && let Some(answer) = verifier.handshake(query.as_deref())
    {
        return Ok(json(StatusCode::OK, &answer?));
    }
    if method != Method::POST {
        return Err(IngestError::Method);
    }
    // Everything decidable from the head is decided before one body byte is read:
    // an unauthenticated client costs no buffer and no budget.
    let content_length = match headers.get(http::header::CONTENT_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or(IngestError::BadContentLength)?,
        ),
    };
    let head = Head {
        headers: &headers,
        content_length,
        now: unix_now(),
    };
    verifier.precheck(&head)?;
    if content_length.is_some_and(|n| n > app.max_body_bytes) {
        return Err(IngestError::TooLarge);
    }
    // A client that trickles its body must not hold a connection and a buffer forever.
    let read = tokio::time::timeout(
        app.body_read_timeout,
        read_body(body, content_length, app.max_body_bytes, &app.body_budget),
    );
    let (body, _budget) = read.await.unwrap_or(Err(IngestError::BodyTimeout))?;
    let now = unix_now();
    let query = query.filter(|_| verifier.records_query());
    let request = Request {
        headers: &headers,
        query: query.as_deref(),
        body: &body,
        now,
    };
    let principal = match verifier.verify(&request)? {
        Verified::Accept { principal } => principal,
        Verified::Ping => return Ok(json(StatusCode::OK, r#"{"status":"ok"}"#)),
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
    // Bounded by MAX_HEADER_BYTES, like everything else taken from the head.
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
        // Moved, not copied: the budget counts each body once per copy we can avoid.
        body,
        edge_instance: app.instance_id.clone(),
    };
    // The schema is ours and fixed: failing here is a bug, not bad input.
    let payload = app
        .codec
        .encode(envelope.into_avro())
        .map_err(|e| IngestError::Encode(e.to_string()))?;
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
    let outcome = match &appended {
        Ok(_) => "acked",
        Err(e) => e.reason(),
    };
    app.metrics
        .produced(outcome, produce_started.elapsed().as_secs_f64());
    appended?;
    Ok(json(
        StatusCode::ACCEPTED,
        &format!(r#"{{"id":"{event_id}"}}"#),
    ))
}

/// Reads the body into memory, holding budget permits for every byte buffered, taken
/// chunk by chunk as bytes arrive: reserving an announced length up front would let
/// a few clients that announce 1 MiB and then send nothing hold the whole budget.
/// Stops at `max`.
async fn read_body<S, B>(
    mut body: S,
    announced: Option<u64>,
    max: u64,
    budget: &Arc<Semaphore>,
) -> Result<(Vec<u8>, Option<OwnedSemaphorePermit>), IngestError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let mut held: Option<OwnedSemaphorePermit> = None;
    let mut reserved = 0u64;
    // Capped: a client announcing 1 MiB and sending nothing must not get it allocated.
    let mut buf = Vec::with_capacity(announced.unwrap_or(0).min(max).min(64 * 1024) as usize);
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|_| IngestError::BodyRead)?;
        let len = (buf.len() + chunk.remaining()) as u64;
        if len > max {
            return Err(IngestError::TooLarge);
        }
        if len > reserved {
            let more = reserve(budget, len - reserved).await?;
            match &mut held {
                Some(h) => h.merge(more),
                None => held = Some(more),
            }
            reserved = len;
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            buf.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    Ok((buf, held))
}

async fn reserve(budget: &Arc<Semaphore>, bytes: u64) -> Result<OwnedSemaphorePermit, IngestError> {
    let n = u32::try_from(bytes).map_err(|_| IngestError::TooLarge)?;
    match tokio::time::timeout(BUDGET_WAIT, budget.clone().acquire_many_owned(n)).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(IngestError::BodyBudget),
    }
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

/// A JSON error body `{"error": message}` with `status`.
pub(crate) fn json_error(status: StatusCode, message: &str) -> Response {
    json(status, &serde_json::json!({ "error": message }).to_string())
}
