//! Publishing: canonical readings (Avro through the registry, keyed by user) and
//! dead letters (original bytes and headers, reason in headers).

use std::time::Duration;

use apache_avro::types::Value;
use bridge_core::RegisteredCodec;
use futures::future::try_join_all;
use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;

use crate::model::Reading;

/// The Avro schema of published readings.
pub const READING_SCHEMA: &str = include_str!("../../schemas/reading.v1.avsc");

/// Where a reading came from on the raw topic.
#[derive(Debug, Clone)]
pub struct Provenance {
    /// Raw envelope event id.
    pub event_id: String,
    /// Raw partition.
    pub partition: i32,
    /// Raw offset.
    pub offset: i64,
    /// The webhook's W3C trace context, carried on as a Kafka header so agents'
    /// consumers can join the edge's trace.
    pub traceparent: Option<String>,
}

/// Failed to publish; always transient from the processor's view (retry the batch stage).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Kafka did not acknowledge.
    #[error("kafka publish failed: {0}")]
    Kafka(#[from] KafkaError),
}

/// Builds the idempotent `acks=all` producer used for readings and dead letters.
pub fn producer(bootstrap: &str) -> Result<FutureProducer, KafkaError> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        // A reading or dead letter counts as published only once every in-sync replica has it.
        .set("acks", "all")
        // Retries inside librdkafka must not duplicate or reorder one user's readings.
        .set("enable.idempotence", "true")
        // A batch publishes thousands of small records at once; let them share requests.
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        // Dead letters carry an original raw record (up to the edge's body limit plus
        // the envelope) and their headers; librdkafka's default of 1,000,000 is smaller.
        .set("message.max.bytes", "4194304")
        // Bounded so a broker outage surfaces as a retryable error, not an endless wait.
        .set("message.timeout.ms", "30000")
        .create()
}

fn micros(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_micros()
}

fn reading_value(r: &Reading, p: &Provenance) -> Value {
    Value::Record(vec![
        ("user_id".into(), Value::String(r.user_id.clone())),
        ("vendor".into(), Value::String(r.vendor.clone())),
        ("metric".into(), Value::String(r.metric.as_str().into())),
        ("value".into(), Value::Double(r.value)),
        ("unit".into(), Value::String(r.metric.unit().into())),
        (
            "start_time".into(),
            Value::TimestampMicros(micros(r.start_time)),
        ),
        (
            "end_time".into(),
            Value::TimestampMicros(micros(r.end_time)),
        ),
        (
            "source_record_id".into(),
            Value::String(r.source_record_id.clone()),
        ),
        (
            "source".into(),
            match &r.source {
                Some(s) => Value::Union(1, Box::new(Value::String(s.clone()))),
                None => Value::Union(0, Box::new(Value::Null)),
            },
        ),
        (
            "ordering".into(),
            match r.ordering {
                Some(o) => Value::Union(1, Box::new(Value::Long(o))),
                None => Value::Union(0, Box::new(Value::Null)),
            },
        ),
        ("raw_event_id".into(), Value::String(p.event_id.clone())),
        ("raw_partition".into(), Value::Int(p.partition)),
        ("raw_offset".into(), Value::Long(p.offset)),
    ])
}

/// Publishes readings keyed by user id and waits for every acknowledgement.
pub async fn readings(
    producer: &FutureProducer,
    topic: &str,
    codec: &RegisteredCodec,
    readings: &[(Reading, Provenance)],
) -> Result<(), PublishError> {
    let mut payloads = Vec::with_capacity(readings.len());
    for (r, p) in readings {
        // The schema and the model are ours, so a failure is a bug; retrying would
        // stall the partition forever. The row is already in PostgreSQL: skip the
        // record and say so loudly.
        let bytes = match codec.encode(reading_value(r, p)) {
            Ok(b) => b,
            Err(error) => {
                tracing::error!(message = "Reading does not fit its Avro schema; not published.", %error, metric = r.metric.as_str());
                continue;
            }
        };
        payloads.push((r.user_id.as_str(), bytes, p.traceparent.as_deref()));
    }
    let records = payloads.iter().map(|(key, payload, traceparent)| {
        let mut record = FutureRecord::to(topic).key(*key).payload(payload);
        if let Some(tp) = traceparent {
            record = record.headers(OwnedHeaders::new_with_capacity(1).insert(Header {
                key: "traceparent",
                value: Some(*tp),
            }));
        }
        record
    });
    send_all(producer, records).await
}

/// One raw record bound for the dead-letter topic.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Original key.
    pub key: Option<Vec<u8>>,
    /// Original value, untouched.
    pub payload: Option<Vec<u8>>,
    /// Original headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Bounded reason label, e.g. `undecodable`, `unknown_vendor`, `invalid_json`.
    pub reason: &'static str,
    /// Human-readable detail for operators.
    pub detail: String,
    /// Where it came from.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
}

/// Why dead letters could not be published.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// Kafka is unavailable for now (broker down, timeout, queue full): retry.
    #[error("dead-letter publish failed, will retry: {0}")]
    Transient(KafkaError),
    /// The DLQ topic refuses our records for a reason retrying cannot change (it does
    /// not exist, an ACL, a record even the reduced form does not fit): an operator
    /// must act, so the process stops with the topic's name instead of retrying.
    #[error("DLQ topic {topic} refuses dead letters: {error}")]
    Fatal {
        /// The DLQ topic.
        topic: String,
        /// What Kafka said.
        error: KafkaError,
    },
}

/// Kafka codes that no retry can fix for a topic we publish to.
fn is_fatal(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
            | RDKafkaErrorCode::InvalidTopic
            | RDKafkaErrorCode::PolicyViolation
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::UnsupportedForMessageFormat
    )
}

fn is_too_large(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::MessageBatchTooLarge
    )
}

/// Original headers kept in the reduced form only up to this total: the reduced form
/// must fit any sensible DLQ limit.
const REDUCED_HEADERS_MAX: usize = 16 * 1024;

/// Publishes dead letters (original bytes and headers plus `dlq.*` headers) and waits
/// for acks. A letter the DLQ refuses as too large is written again in reduced form:
/// no value bytes, the `dlq.*` headers plus `dlq.reduced=true`, `dlq.value_sha256`
/// and `dlq.value_bytes` (the raw topic keeps the bytes at `dlq.topic`/`dlq.partition`/
/// `dlq.offset`), and a small JSON value saying the same.
pub async fn dead_letters(
    producer: &FutureProducer,
    topic: &str,
    letters: &[DeadLetter],
) -> Result<(), DeadLetterError> {
    let sends = letters
        .iter()
        .map(|l| async move { (l, send_letter(producer, topic, l, false).await) });
    let mut transient = None;
    for (letter, result) in futures::future::join_all(sends).await {
        let Err(error) = result else { continue };
        match error.rdkafka_error_code() {
            Some(code) if is_too_large(code) => {
                // The broker judges a whole batch: a small letter batched with a huge
                // one is refused with it. Alone it may fit; only then reduce.
                match send_letter(producer, topic, letter, false).await {
                    Ok(()) => continue,
                    Err(e) if e.rdkafka_error_code().is_some_and(is_too_large) => {}
                    Err(e) if e.rdkafka_error_code().is_some_and(is_fatal) => {
                        return Err(DeadLetterError::Fatal {
                            topic: topic.to_string(),
                            error: e,
                        });
                    }
                    Err(e) => {
                        transient = Some(e);
                        continue;
                    }
                }
                tracing::warn!(message = "Dead letter too large for the DLQ topic; writing it in reduced form. Its bytes stay on the raw topic.", dlq = topic, raw_topic = %letter.topic, raw_partition = letter.partition, raw_offset = letter.offset, bytes = letter.payload.as_ref().map_or(0, Vec::len));
                match send_letter(producer, topic, letter, true).await {
                    Ok(()) => {}
                    Err(e)
                        if e.rdkafka_error_code()
                            .is_some_and(|c| is_fatal(c) || is_too_large(c)) =>
                    {
                        return Err(DeadLetterError::Fatal {
                            topic: topic.to_string(),
                            error: e,
                        });
                    }
                    Err(e) => transient = Some(e),
                }
            }
            Some(code) if is_fatal(code) => {
                return Err(DeadLetterError::Fatal {
                    topic: topic.to_string(),
                    error,
                });
            }
            _ => transient = Some(error),
        }
    }
    match transient {
        Some(e) => Err(DeadLetterError::Transient(e)),
        None => Ok(()),
    }
}

/// Hex SHA-256 of a dead letter's value (empty value for none).
pub fn value_sha256(payload: Option<&[u8]>) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(payload.unwrap_or_default()))
}

async fn send_letter(
    producer: &FutureProducer,
    topic: &str,
    l: &DeadLetter,
    reduced: bool,
) -> Result<(), KafkaError> {
    let partition = l.partition.to_string();
    let offset = l.offset.to_string();
    let value_len = l.payload.as_ref().map_or(0, Vec::len).to_string();
    let sha = reduced.then(|| value_sha256(l.payload.as_deref()));
    let keep_headers = !reduced
        || l.headers
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
            <= REDUCED_HEADERS_MAX;
    let mut headers = OwnedHeaders::new_with_capacity(l.headers.len() + 8);
    if keep_headers {
        for (k, v) in &l.headers {
            headers = headers.insert(Header {
                key: k.as_str(),
                value: Some(v.as_slice()),
            });
        }
    }
    for (k, v) in [
        ("dlq.reason", l.reason),
        ("dlq.detail", truncate(&l.detail, 1024)),
        ("dlq.topic", l.topic.as_str()),
        ("dlq.partition", partition.as_str()),
        ("dlq.offset", offset.as_str()),
    ] {
        headers = headers.insert(Header {
            key: k,
            value: Some(v),
        });
    }
    let reduced_value;
    if let Some(sha) = &sha {
        for (k, v) in [
            ("dlq.reduced", "true"),
            ("dlq.value_sha256", sha.as_str()),
            ("dlq.value_bytes", value_len.as_str()),
        ] {
            headers = headers.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        reduced_value = serde_json::json!({
            "reduced": true,
            "reason": l.reason,
            "raw_topic": l.topic,
            "raw_partition": l.partition,
            "raw_offset": l.offset,
            "value_sha256": sha,
            "value_bytes": l.payload.as_ref().map_or(0, Vec::len),
            "headers_dropped": !keep_headers,
        })
        .to_string()
        .into_bytes();
    } else {
        reduced_value = Vec::new();
    }
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
    if let Some(k) = &l.key {
        record = record.key(k.as_slice());
    }
    if reduced {
        record = record.payload(reduced_value.as_slice());
    } else if let Some(p) = &l.payload {
        record = record.payload(p.as_slice());
    }
    producer
        .send(record, Timeout::After(Duration::from_secs(30)))
        .await
        .map(|_| ())
        .map_err(|(e, _)| e)
}

/// At most `max` bytes of `s`, cut on a character boundary: error details can echo
/// input, and a dead letter must stay within Kafka's record size.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Sends every record and waits until Kafka acknowledged all of them.
async fn send_all<'a, K, P>(
    producer: &FutureProducer,
    records: impl Iterator<Item = FutureRecord<'a, K, P>>,
) -> Result<(), PublishError>
where
    K: rdkafka::message::ToBytes + ?Sized + 'a,
    P: rdkafka::message::ToBytes + ?Sized + 'a,
{
    let sends = records.map(|record| async move {
        producer
            .send(record, Timeout::After(Duration::from_secs(30)))
            .await
            .map_err(|(e, _)| e)
    });
    try_join_all(sends).await?;
    Ok(())
}

#[cfg(test)]
mod dead_letter_tests {
    use super::*;

    #[test]
    fn produce_errors_are_classified() {
        for code in [
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::ClusterAuthorizationFailed,
            RDKafkaErrorCode::PolicyViolation,
        ] {
            assert!(is_fatal(code), "{code:?}");
            assert!(!is_too_large(code), "{code:?}");
        }
        assert!(is_too_large(RDKafkaErrorCode::MessageSizeTooLarge));
        for code in [
            RDKafkaErrorCode::QueueFull,
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::NotEnoughReplicas,
            RDKafkaErrorCode::LeaderNotAvailable,
            RDKafkaErrorCode::BrokerTransportFailure,
        ] {
            assert!(
                !is_fatal(code) && !is_too_large(code),
                "{code:?} is retried"
            );
        }
    }

    #[test]
    fn value_hash_is_sha256_hex() {
        assert_eq!(
            value_sha256(Some(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(value_sha256(None), value_sha256(Some(b"")));
    }
}
