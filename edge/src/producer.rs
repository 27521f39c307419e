//! The durable append: one Kafka record per accepted webhook, acknowledged by all
//! in-sync replicas before the vendor hears 2xx.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

/// Why a record is not in Kafka. Every variant means "answer 503": the vendor retries.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// librdkafka's local queue is full: backpressure, the broker is slower than intake.
    #[error("producer queue full")]
    QueueFull,
    /// No acknowledgement within the produce timeout (broker down or partition leaderless).
    #[error("delivery timed out")]
    Timeout,
    /// The record exceeds the producer's or the topic's size limit: retrying cannot help.
    #[error("record too large for Kafka")]
    TooLarge,
    /// The broker or client refused the record.
    #[error("delivery failed: {0}")]
    Failed(KafkaError),
}

impl ProduceError {
    /// Bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ProduceError::QueueFull => "queue_full",
            ProduceError::Timeout => "timeout",
            ProduceError::TooLarge => "kafka_too_large",
            ProduceError::Failed(_) => "failed",
        }
    }
}

/// Producer settings for the raw topic.
#[derive(Debug, Clone)]
pub struct ProducerSettings {
    /// Bootstrap servers.
    pub bootstrap_servers: String,
    /// Upper bound on waiting for an acknowledgement.
    pub delivery_timeout: Duration,
    /// Batch fill wait.
    pub linger: Duration,
    /// Largest record the producer sends (envelope included).
    pub max_message_bytes: u64,
}

/// Builds the idempotent, `acks=all` producer.
pub fn build(settings: &ProducerSettings) -> Result<FutureProducer, KafkaError> {
    ClientConfig::new()
        .set("bootstrap.servers", &settings.bootstrap_servers)
        // Durability: the record is on every in-sync replica before we answer 2xx.
        .set("acks", "all")
        // No duplicates or reordering from librdkafka's own retries.
        .set("enable.idempotence", "true")
        // The whole budget for one record, retries included; past it the vendor gets 503.
        .set(
            "message.timeout.ms",
            settings.delivery_timeout.as_millis().to_string(),
        )
        // Above MAX_BODY_BYTES plus the envelope, so every body the edge accepts fits
        // (librdkafka's default of 1,000,000 is below the default 1 MiB body limit).
        .set("message.max.bytes", settings.max_message_bytes.to_string())
        // Throughput: wait a few ms so concurrent requests share a produce request.
        .set("linger.ms", settings.linger.as_millis().to_string())
        // JSON webhooks compress 3-5x; lz4 is the cheapest codec per byte on the CPU.
        .set("compression.type", "lz4")
        // Bounds the edge's memory (RSS target 64 MiB) instead of librdkafka's 1 GiB default;
        // a full queue becomes a 503 rather than unbounded buffering.
        .set("queue.buffering.max.kbytes", "16384")
        // Answers sooner when a broker vanishes, so /ready and 503s follow the outage quickly.
        .set("socket.timeout.ms", "10000")
        .set("reconnect.backoff.max.ms", "1000")
        .create()
}

/// Appends one record and waits for the broker's acknowledgement.
pub async fn append(
    producer: &FutureProducer,
    topic: &str,
    key: &[u8],
    payload: &[u8],
    traceparent: Option<&str>,
    timeout: Duration,
) -> Result<(i32, i64), ProduceError> {
    let mut headers = OwnedHeaders::new_with_capacity(1);
    if let Some(tp) = traceparent {
        headers = headers.insert(Header {
            key: "traceparent",
            value: Some(tp),
        });
    }
    let record = FutureRecord::to(topic)
        .key(key)
        .payload(payload)
        .headers(headers);
    // Timeout::Never would block the request while the local queue is full;
    // zero turns a full queue into an immediate 503 instead.
    let delivery = producer.send(record, Timeout::After(Duration::ZERO));
    // librdkafka's message.timeout.ms already bounds delivery; the outer timeout is a
    // guard in case the delivery report itself is lost.
    match tokio::time::timeout(timeout + Duration::from_secs(1), delivery).await {
        Err(_) => Err(ProduceError::Timeout),
        Ok(Ok(delivery)) => Ok((delivery.partition, delivery.offset)),
        Ok(Err((error, _))) => Err(classify(error)),
    }
}

fn classify(error: KafkaError) -> ProduceError {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::QueueFull) => ProduceError::QueueFull,
        Some(RDKafkaErrorCode::MessageTimedOut) => ProduceError::Timeout,
        Some(RDKafkaErrorCode::MessageSizeTooLarge) => ProduceError::TooLarge,
        _ => ProduceError::Failed(error),
    }
}

/// Whether the cluster answers a metadata request for `topic` within `timeout`.
pub async fn reachable(producer: &FutureProducer, topic: &str, timeout: Duration) -> bool {
    let producer = producer.clone();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(Some(&topic), Timeout::After(timeout))
            .is_ok()
    })
    .await
    .unwrap_or(false)
}

/// Flushes what is queued; used on shutdown.
pub async fn flush(producer: &FutureProducer, timeout: Duration) -> Result<(), KafkaError> {
    let producer = producer.clone();
    tokio::task::spawn_blocking(move || producer.flush(Timeout::After(timeout)))
        .await
        .unwrap_or(Err(KafkaError::Canceled))
}
