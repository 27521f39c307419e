//! Publishing: the readings changelog (Avro through the registry, keyed by the reading's
//! identity, tombstones for removals) and dead letters (original bytes and headers,
//! reason in headers).

use std::time::Duration;

use apache_avro::writer::datum::GenericDatumWriter;
use bridge_core::RegisteredCodec;
use futures::future::try_join_all;
use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;

use crate::model::{Change, Reading, ReadingKey};

/// The Avro schema of published readings (the changelog's value).
pub const READING_SCHEMA: &str = include_str!("../../schemas/reading.v1.avsc");

/// The Avro schema of the changelog's key: a reading's identity.
pub const READING_KEY_SCHEMA: &str = include_str!("../../schemas/reading_key.v1.avsc");

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
    /// The changelog topic cannot be used (missing, no partitions, metadata unreadable).
    #[error("topic {0}: {1}")]
    Topic(String, String),
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

/// The changelog's value as `reading.v1.avsc` lays it out, fields in schema order,
/// serialized straight into Avro: no `Value` tree and no string copies per record.
#[derive(serde::Serialize)]
struct ReadingRecord<'a> {
    user_id: &'a str,
    vendor: &'a str,
    metric: &'a str,
    value: f64,
    unit: &'a str,
    start_time: i64,
    end_time: i64,
    source_record_id: &'a str,
    source: Option<&'a str>,
    ordering: Option<i64>,
    raw_event_id: &'a str,
    raw_partition: i32,
    raw_offset: i64,
    unit_ucum: Option<&'a str>,
    loinc: Option<&'a str>,
    activity: Option<&'a str>,
}

impl<'a> ReadingRecord<'a> {
    fn new(r: &'a Reading, p: &'a Provenance) -> Self {
        ReadingRecord {
            user_id: &r.user_id,
            vendor: &r.vendor,
            metric: r.metric.as_str(),
            value: r.value,
            unit: r.metric.unit(),
            start_time: r.start_time.timestamp_micros(),
            end_time: r.end_time.timestamp_micros(),
            source_record_id: &r.source_record_id,
            source: r.source.as_deref(),
            ordering: r.ordering,
            raw_event_id: &p.event_id,
            raw_partition: p.partition,
            raw_offset: p.offset,
            unit_ucum: Some(r.metric.ucum()),
            loinc: r.metric.loinc(),
            activity: r.activity.map(|a| a.as_str()),
        }
    }
}

/// The changelog's key as `reading_key.v1.avsc` lays it out, fields in schema order.
#[derive(serde::Serialize)]
struct KeyRecord<'a> {
    user_id: &'a str,
    vendor: &'a str,
    source_record_id: &'a str,
    source: Option<&'a str>,
    metric: &'a str,
    start_time: i64,
    end_time: i64,
}

impl<'a> KeyRecord<'a> {
    fn of_reading(r: &'a Reading) -> Self {
        KeyRecord {
            user_id: &r.user_id,
            vendor: &r.vendor,
            source_record_id: &r.source_record_id,
            source: r.source.as_deref(),
            metric: r.metric.as_str(),
            start_time: r.start_time.timestamp_micros(),
            end_time: r.end_time.timestamp_micros(),
        }
    }

    fn of_key(k: &'a ReadingKey) -> Self {
        KeyRecord {
            user_id: &k.user_id,
            vendor: &k.vendor,
            source_record_id: &k.source_record_id,
            source: k.source.as_deref(),
            metric: &k.metric,
            start_time: k.start_micros,
            end_time: k.end_micros,
        }
    }
}

/// Encodes records of one registered schema in the Confluent wire format (magic byte,
/// schema id, Avro datum), serializing straight from borrowed fields.
struct Encoder<'s> {
    id: u32,
    writer: GenericDatumWriter<'s>,
}

impl<'s> Encoder<'s> {
    fn new(codec: &'s RegisteredCodec) -> Result<Self, apache_avro::Error> {
        Ok(Encoder {
            id: codec.id(),
            writer: GenericDatumWriter::builder(codec.schema()).build()?,
        })
    }

    fn encode<T: serde::Serialize>(&self, record: &T) -> Result<Vec<u8>, apache_avro::Error> {
        let mut out = Vec::with_capacity(160);
        out.push(0);
        out.extend_from_slice(&self.id.to_be_bytes());
        self.writer.write_ser(&mut out, record)?;
        Ok(out)
    }
}

/// The readings changelog: a compacted topic keyed by [`ReadingKey`] whose value is the
/// reading as the table now holds it, and whose tombstone (null value) is a removal.
///
/// Every record of one user goes to one partition (murmur2 of `user_id`, the hash Kafka's
/// own default partitioner applies to keys), published in the order the table made the
/// changes. Writers publish from [`PgSink::write_then`](crate::sink::PgSink::write_then),
/// before the commit and under the rows' locks, so records of one key reach the topic
/// in commit order whichever process wrote them.
pub struct Changelog {
    producer: FutureProducer,
    topic: String,
    key_codec: RegisteredCodec,
    value_codec: RegisteredCodec,
    partitions: i32,
}

impl Changelog {
    /// Creates the topic compacted when it does not exist (with [`CHANGELOG_PARTITIONS`];
    /// an existing topic is left as it is), reads its partition count, and pins both
    /// codecs.
    pub async fn new(
        producer: FutureProducer,
        bootstrap: &str,
        topic: &str,
        key_codec: RegisteredCodec,
        value_codec: RegisteredCodec,
    ) -> Result<Self, PublishError> {
        let topic_error = |detail: String| PublishError::Topic(topic.to_owned(), detail);
        // Before any metadata request: the producer's would auto-create the topic with
        // the broker's defaults, which do not compact.
        create_compacted(bootstrap, topic).await?;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let partitions = loop {
            let client = producer.clone();
            let name = topic.to_owned();
            let found = tokio::task::spawn_blocking(move || {
                let metadata = client
                    .client()
                    .fetch_metadata(Some(&name), Duration::from_secs(10))?;
                Ok::<_, KafkaError>(
                    metadata
                        .topics()
                        .first()
                        .filter(|t| t.error().is_none())
                        .map_or(0, |t| t.partitions().len()),
                )
            })
            .await
            .map_err(|e| topic_error(e.to_string()))??;
            if found > 0 {
                break found;
            }
            if std::time::Instant::now() > deadline {
                return Err(topic_error("no partitions within 30 s".into()));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        Ok(Self {
            producer,
            topic: topic.to_owned(),
            key_codec,
            value_codec,
            partitions: i32::try_from(partitions).unwrap_or(i32::MAX),
        })
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partition every record of `user_id` goes to.
    pub fn partition(&self, user_id: &str) -> i32 {
        partition_for(user_id, self.partitions)
    }

    /// Publishes `changes` in order and waits for every acknowledgement. An upsert needs
    /// its provenance; a removal may carry the trace context of what caused it.
    pub async fn publish(
        &self,
        changes: &[(Change, Option<Provenance>)],
    ) -> Result<(), PublishError> {
        // Built per call, not kept: a writer borrows its codec's schema. Cheap next to
        // the thousands of records a batch publishes.
        let (keys, values) = match (
            Encoder::new(&self.key_codec),
            Encoder::new(&self.value_codec),
        ) {
            (Ok(k), Ok(v)) => (k, v),
            (Err(error), _) | (_, Err(error)) => {
                tracing::error!(message = "Changelog schema cannot be written; nothing published.", %error);
                return Err(PublishError::Topic(self.topic.clone(), error.to_string()));
            }
        };
        let mut records = Vec::with_capacity(changes.len());
        for (change, provenance) in changes {
            let (user_id, encoded) = match change {
                Change::Upsert { reading, .. } => {
                    let Some(p) = provenance else {
                        tracing::error!(
                            message = "Upsert without provenance; not published.",
                            metric = reading.metric.as_str()
                        );
                        continue;
                    };
                    let encoded = keys.encode(&KeyRecord::of_reading(reading)).and_then(|k| {
                        Ok((k, Some(values.encode(&ReadingRecord::new(reading, p))?)))
                    });
                    (reading.user_id.as_str(), encoded)
                }
                Change::Delete(key) => (
                    key.user_id.as_str(),
                    keys.encode(&KeyRecord::of_key(key)).map(|k| (k, None)),
                ),
            };
            // The schemas and the model are ours, so a failure is a bug; retrying would
            // stall the partition forever. The row is already in PostgreSQL: skip the
            // record and say so loudly.
            let (key_bytes, value_bytes) = match encoded {
                Ok(kv) => kv,
                Err(error) => {
                    tracing::error!(message = "Changelog record does not fit its Avro schema; not published.", %error, user_id);
                    continue;
                }
            };
            let traceparent = provenance.as_ref().and_then(|p| p.traceparent.as_deref());
            records.push((self.partition(user_id), key_bytes, value_bytes, traceparent));
        }
        let records = records.iter().map(|(partition, key, value, traceparent)| {
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic)
                .partition(*partition)
                .key(key.as_slice());
            if let Some(v) = value {
                record = record.payload(v.as_slice());
            }
            if let Some(tp) = traceparent {
                record = record.headers(OwnedHeaders::new_with_capacity(1).insert(Header {
                    key: "traceparent",
                    value: Some(*tp),
                }));
            }
            record
        });
        send_all(&self.producer, records).await
    }
}

/// Partitions of a changelog topic the processor creates itself. Six leaves room for a
/// few processor replicas' consumers downstream; an operator who creates the topic
/// first chooses otherwise.
pub const CHANGELOG_PARTITIONS: i32 = 6;

/// Creates `topic` with `cleanup.policy=compact` (a concurrent creator is fine).
async fn create_compacted(bootstrap: &str, topic: &str) -> Result<(), PublishError> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    // -1: the broker's default replication factor.
    let new = NewTopic::new(topic, CHANGELOG_PARTITIONS, TopicReplication::Fixed(-1))
        .set("cleanup.policy", "compact");
    let results = admin.create_topics([&new], &AdminOptions::new()).await?;
    for result in results {
        match result {
            Ok(_) => tracing::info!(
                message = "Created the compacted readings changelog topic.",
                topic,
                partitions = CHANGELOG_PARTITIONS
            ),
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            // A cluster with ACLs refuses the create even when the topic exists; the
            // metadata look-up that follows decides whether it is usable.
            Err((_, code)) => {
                tracing::debug!(message = "Changelog topic not created here.", topic, %code);
            }
        }
    }
    Ok(())
}

/// Kafka's default partitioner for a key: `toPositive(murmur2(key)) % partitions`.
pub fn partition_for(key: &str, partitions: i32) -> i32 {
    let hash = murmur2(key.as_bytes()) & 0x7fff_ffff;
    (hash % partitions.max(1) as u32) as i32
}

/// Kafka's murmur2 (seed 0x9747b28c), as `org.apache.kafka.common.utils.Utils.murmur2`.
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
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
mod tests {
    use super::*;
    use apache_avro::Schema;
    use apache_avro::types::Value;
    use chrono::{TimeZone, Utc};

    use crate::model::Metric;

    fn union(v: Option<Value>) -> Value {
        match v {
            Some(v) => Value::Union(1, Box::new(v)),
            None => Value::Union(0, Box::new(Value::Null)),
        }
    }

    /// The reading as the generic `Value` API builds it: the reference the direct
    /// serialization must match byte for byte.
    fn reading_value(r: &Reading, p: &Provenance) -> Value {
        Value::Record(vec![
            ("user_id".into(), Value::String(r.user_id.clone())),
            ("vendor".into(), Value::String(r.vendor.clone())),
            ("metric".into(), Value::String(r.metric.as_str().into())),
            ("value".into(), Value::Double(r.value)),
            ("unit".into(), Value::String(r.metric.unit().into())),
            (
                "start_time".into(),
                Value::TimestampMicros(r.start_time.timestamp_micros()),
            ),
            (
                "end_time".into(),
                Value::TimestampMicros(r.end_time.timestamp_micros()),
            ),
            (
                "source_record_id".into(),
                Value::String(r.source_record_id.clone()),
            ),
            ("source".into(), union(r.source.clone().map(Value::String))),
            ("ordering".into(), union(r.ordering.map(Value::Long))),
            ("raw_event_id".into(), Value::String(p.event_id.clone())),
            ("raw_partition".into(), Value::Int(p.partition)),
            ("raw_offset".into(), Value::Long(p.offset)),
            (
                "unit_ucum".into(),
                union(Some(Value::String(r.metric.ucum().into()))),
            ),
            (
                "loinc".into(),
                union(r.metric.loinc().map(|c| Value::String(c.into()))),
            ),
            (
                "activity".into(),
                union(r.activity.map(|a| Value::String(a.as_str().into()))),
            ),
        ])
    }

    fn key_value(k: &ReadingKey) -> Value {
        Value::Record(vec![
            ("user_id".into(), Value::String(k.user_id.clone())),
            ("vendor".into(), Value::String(k.vendor.clone())),
            (
                "source_record_id".into(),
                Value::String(k.source_record_id.clone()),
            ),
            ("source".into(), union(k.source.clone().map(Value::String))),
            ("metric".into(), Value::String(k.metric.clone())),
            ("start_time".into(), Value::TimestampMicros(k.start_micros)),
            ("end_time".into(), Value::TimestampMicros(k.end_micros)),
        ])
    }

    #[test]
    fn direct_encoding_matches_the_generic_value_encoding() {
        let value_schema = Schema::parse_str(READING_SCHEMA).unwrap();
        let key_schema = Schema::parse_str(READING_KEY_SCHEMA).unwrap();
        let value_writer = GenericDatumWriter::builder(&value_schema).build().unwrap();
        let key_writer = GenericDatumWriter::builder(&key_schema).build().unwrap();
        let start = Utc.with_ymd_and_hms(2025, 3, 2, 0, 0, 0).unwrap();
        let base = Reading {
            user_id: "alice-ü".into(),
            vendor: "terra".into(),
            metric: Metric::StepCount,
            value: 1234.5,
            start_time: start,
            end_time: start + chrono::Duration::microseconds(86_400_000_001),
            source_record_id: "daily:2025-03-02".into(),
            source: Some("GARMIN".into()),
            ordering: Some(1_740_873_600_123),
            activity: None,
        };
        let anonymous = Reading {
            source: None,
            ordering: None,
            value: -0.0,
            ..base.clone()
        };
        // A session reading, and one of a metric without a LOINC code.
        let session = Reading {
            metric: Metric::HrvRmssd,
            activity: Some(crate::model::Activity::Running),
            ..base.clone()
        };
        let p = Provenance {
            event_id: "evt-1".into(),
            partition: 3,
            offset: 1 << 40,
            traceparent: None,
        };
        for r in [base, anonymous, session] {
            let direct = value_writer
                .write_ser_to_vec(&ReadingRecord::new(&r, &p))
                .unwrap();
            let generic = value_writer
                .write_value_to_vec(reading_value(&r, &p))
                .unwrap();
            assert_eq!(direct, generic, "value of {r:?}");
            let key = r.key();
            let generic = key_writer.write_value_to_vec(key_value(&key)).unwrap();
            let from_key = key_writer
                .write_ser_to_vec(&KeyRecord::of_key(&key))
                .unwrap();
            let from_reading = key_writer
                .write_ser_to_vec(&KeyRecord::of_reading(&r))
                .unwrap();
            assert_eq!(from_key, generic, "key of {r:?}");
            assert_eq!(from_reading, generic, "key of {r:?}");
        }
    }

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's UtilsTest.testMurmur2.
        let cases: [(&[u8], i32); 3] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
        ];
        for (input, want) in cases {
            assert_eq!(murmur2(input) as i32, want, "{input:?}");
        }
    }

    #[test]
    fn one_user_one_partition() {
        let p = partition_for("alice", 12);
        assert!((0..12).contains(&p));
        assert_eq!(partition_for("alice", 12), p);
        assert_eq!(partition_for("anyone", 1), 0);
    }
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
