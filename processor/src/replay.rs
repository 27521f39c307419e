//! Kafka-native recovery: `processor replay` re-runs a range of the raw topic through
//! the pipeline's stages (dedup bypassed; the upsert is idempotent by the table's keys,
//! readings are published again), and `processor redrive` re-feeds dead letters to the
//! raw topic once their cause is fixed.
//!
//! Both read with a consumer of their own (a fresh group id, nothing committed), so the
//! running processors' positions are untouched and a command can be re-run.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bridge_core::SchemaRegistry;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::config::{Config, Redrive, Replay};
use crate::metrics::Metrics;
use crate::pipeline::{BatchLimits, LagContext, Pipeline, Topics};
use crate::publish;
use crate::sink::postgres::PgSink;

/// Bound on metadata, watermark and offset look-ups.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(15);

/// How long reading waits for the next record before it counts the range as read to
/// its end (the end offsets are known, so this only guards a broker that stalls).
const READ_STALL: Duration = Duration::from_secs(30);

/// What a command did, for its summary line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Records read and handled.
    pub records: u64,
    /// Records skipped (redrive: other reasons, other topics, reduced letters).
    pub skipped: u64,
    /// Reduced dead letters (no bytes): to be replayed from the raw topic instead.
    pub reduced: Vec<(i32, i64)>,
}

fn reader(config: &Config, purpose: &str) -> anyhow::Result<StreamConsumer<LagContext>> {
    ClientConfig::new()
        .set("bootstrap.servers", &config.kafka_bootstrap_servers)
        // A group of its own: nothing of the running processors' positions is touched.
        .set(
            "group.id",
            format!("{}-{purpose}-{}", config.group_id, uuid::Uuid::new_v4()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create_with_context(LagContext {
            metrics: Arc::new(Metrics::new()),
        })
        .context("KAFKA_BOOTSTRAP_SERVERS: cannot create consumer")
}

/// Partitions of `topic` (all, or the ones asked for, checked to exist).
fn partitions(
    consumer: &impl Consumer<LagContext>,
    topic: &str,
    wanted: &[i32],
) -> anyhow::Result<Vec<i32>> {
    let md = consumer
        .fetch_metadata(Some(topic), LOOKUP_TIMEOUT)
        .with_context(|| format!("metadata of {topic}"))?;
    let all: Vec<i32> = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    anyhow::ensure!(!all.is_empty(), "topic {topic} does not exist");
    if wanted.is_empty() {
        return Ok(all);
    }
    for p in wanted {
        anyhow::ensure!(all.contains(p), "topic {topic} has no partition {p}");
    }
    Ok(wanted.to_vec())
}

/// Offset of the first record at or after `t` in each partition (`high` when none).
fn offsets_at(
    consumer: &impl Consumer<LagContext>,
    topic: &str,
    parts: &[i32],
    t: chrono::DateTime<chrono::Utc>,
    high: &HashMap<i32, i64>,
) -> anyhow::Result<HashMap<i32, i64>> {
    let mut tpl = TopicPartitionList::new();
    for p in parts {
        tpl.add_partition_offset(topic, *p, Offset::Offset(t.timestamp_millis()))?;
    }
    let found = consumer
        .offsets_for_times(tpl, LOOKUP_TIMEOUT)
        .context("offsets for time")?;
    let mut out = HashMap::new();
    for e in found.elements() {
        let o = match e.offset() {
            Offset::Offset(o) => o,
            _ => high.get(&e.partition()).copied().unwrap_or(0),
        };
        out.insert(e.partition(), o);
    }
    Ok(out)
}

/// `[start, end)` per partition of `topic` for a replay request.
fn ranges(
    consumer: &impl Consumer<LagContext>,
    topic: &str,
    args: &Replay,
) -> anyhow::Result<Vec<(i32, i64, i64)>> {
    let parts = partitions(consumer, topic, &args.partitions)?;
    let mut low = HashMap::new();
    let mut high = HashMap::new();
    for p in &parts {
        let (l, h) = consumer
            .fetch_watermarks(topic, *p, LOOKUP_TIMEOUT)
            .with_context(|| format!("watermarks of {topic}/{p}"))?;
        low.insert(*p, l);
        high.insert(*p, h);
    }
    let from = match (args.from_offset, args.from_time) {
        (Some(o), _) => parts.iter().map(|p| (*p, o)).collect(),
        (None, Some(t)) => offsets_at(consumer, topic, &parts, t, &high)?,
        (None, None) => low.clone(),
    };
    let to = match (args.to_offset, args.to_time) {
        (Some(o), _) => parts.iter().map(|p| (*p, o)).collect(),
        (None, Some(t)) => offsets_at(consumer, topic, &parts, t, &high)?,
        (None, None) => high.clone(),
    };
    Ok(parts
        .iter()
        .map(|p| {
            let lo = low[p];
            let hi = high[p];
            let start = from.get(p).copied().unwrap_or(lo).clamp(lo, hi);
            let end = to.get(p).copied().unwrap_or(hi).clamp(start, hi);
            (*p, start, end)
        })
        .collect())
}

/// Reads `[start, end)` of every range, handing records to `handle` in batches of at
/// most `max` records, in offset order per partition.
async fn read_ranges<F, Fut>(
    consumer: &StreamConsumer<LagContext>,
    topic: &str,
    ranges: &[(i32, i64, i64)],
    max: usize,
    mut handle: F,
) -> anyhow::Result<()>
where
    F: FnMut(Vec<OwnedMessage>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut open: HashMap<i32, i64> = ranges
        .iter()
        .filter(|(_, s, e)| s < e)
        .map(|(p, _, e)| (*p, *e))
        .collect();
    if open.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for (p, start, end) in ranges {
        if start < end {
            tpl.add_partition_offset(topic, *p, Offset::Offset(*start))?;
        }
    }
    consumer.assign(&tpl).context("assigning the range")?;
    let mut batch = Vec::new();
    while !open.is_empty() {
        let msg = match tokio::time::timeout(READ_STALL, consumer.recv()).await {
            Ok(Ok(m)) => m.detach(),
            Ok(Err(e)) => return Err(e).context("reading"),
            Err(_) => anyhow::bail!(
                "no record for {READ_STALL:?} with partitions {:?} unfinished",
                open.keys().collect::<Vec<_>>()
            ),
        };
        let Some(end) = open.get(&msg.partition()).copied() else {
            continue;
        };
        if msg.offset() >= end {
            open.remove(&msg.partition());
            continue;
        }
        if msg.offset() + 1 >= end {
            open.remove(&msg.partition());
        }
        batch.push(msg);
        if batch.len() >= max {
            handle(std::mem::take(&mut batch)).await?;
        }
    }
    if !batch.is_empty() {
        handle(batch).await?;
    }
    Ok(())
}

/// `processor replay`.
pub async fn replay(config: &Config, args: &Replay) -> anyhow::Result<Summary> {
    let metrics = Arc::new(Metrics::new());
    let sink = PgSink::connect(&config.database_url, config.database_max_connections)
        .await
        .context("DATABASE_URL: cannot connect to PostgreSQL")?;
    sink.migrate().await.context("applying migrations")?;
    let fetch = Arc::new(crate::service::fetch_stage(config, &sink, metrics.clone()).await?);
    let registry =
        SchemaRegistry::new(&config.schema_registry_url).context("SCHEMA_REGISTRY_URL")?;
    crate::topics::check(config)
        .await
        .context("checking topics")?;
    let producer = publish::producer(&config.kafka_bootstrap_servers)
        .context("KAFKA_BOOTSTRAP_SERVERS: cannot create producer")?;
    // Replayed readings go through the same changelog as live ones.
    let (changelog, _) = crate::service::changelog(config, &registry, &producer).await?;
    let consumer = Arc::new(reader(config, "replay")?);
    let ranges = ranges(consumer.as_ref(), &config.raw_topic, args)?;
    for (p, start, end) in &ranges {
        tracing::info!(message = "Replaying.", topic = %config.raw_topic, partition = p, from = start, to = end);
    }
    let pipeline = Pipeline {
        consumer: consumer.clone(),
        registry,
        changelog,
        producer,
        sink,
        // Bypassed: a replay exists to redo what the filter would call done.
        dedup: None,
        fetch: Some(fetch),
        topics: Topics {
            raw: config.raw_topic.clone(),
            readings: config.readings_topic.clone(),
            dlq: config.dlq_topic.clone(),
        },
        limits: BatchLimits {
            max_records: config.batch_max_records,
            max_bytes: config.batch_max_bytes,
            max_wait: config.batch_max_wait,
        },
        drain_timeout: config.drain_timeout,
        metrics,
    };
    let mut summary = Summary::default();
    read_ranges(
        consumer.as_ref(),
        &config.raw_topic,
        &ranges,
        config.batch_max_records,
        |batch| {
            summary.records += batch.len() as u64;
            let pipeline = &pipeline;
            async move {
                pipeline
                    .process_records(batch)
                    .await
                    .map_err(|e| anyhow::anyhow!("batch failed: {e}"))
            }
        },
    )
    .await?;
    Ok(summary)
}

/// `processor redrive`: every dead letter of RAW_TOPIC on DLQ_TOPIC (up to its end at
/// start) whose reason is selected goes back to the raw topic with its original key,
/// value and headers (`dlq.*` removed, `redrive.from` added).
pub async fn redrive(config: &Config, args: &Redrive) -> anyhow::Result<Summary> {
    let consumer = reader(config, "redrive")?;
    let ranges = ranges(
        &consumer,
        &config.dlq_topic,
        &Replay {
            partitions: Vec::new(),
            from_offset: None,
            from_time: None,
            to_offset: None,
            to_time: None,
        },
    )?;
    let producer: FutureProducer = publish::producer(&config.kafka_bootstrap_servers)
        .context("KAFKA_BOOTSTRAP_SERVERS: cannot create producer")?;
    let mut summary = Summary::default();
    let raw_topic = config.raw_topic.clone();
    let dlq_topic = config.dlq_topic.clone();
    let mut picked: Vec<OwnedMessage> = Vec::new();
    read_ranges(&consumer, &config.dlq_topic, &ranges, 1000, |batch| {
        for m in batch {
            let header = |name: &str| {
                m.headers().and_then(|h| {
                    h.iter()
                        .find(|h| h.key == name)
                        .and_then(|h| h.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                })
            };
            let reason = header("dlq.reason").unwrap_or_default();
            if header("dlq.topic").as_deref() != Some(raw_topic.as_str())
                || !(args.reasons.is_empty() || args.reasons.contains(&reason))
            {
                summary.skipped += 1;
                continue;
            }
            if header("dlq.reduced").as_deref() == Some("true") {
                let p = header("dlq.partition").and_then(|v| v.parse().ok());
                let o = header("dlq.offset").and_then(|v| v.parse().ok());
                if let (Some(p), Some(o)) = (p, o) {
                    summary.reduced.push((p, o));
                }
                summary.skipped += 1;
                continue;
            }
            picked.push(m);
        }
        async { Ok(()) }
    })
    .await?;
    if args.dry_run {
        summary.records = picked.len() as u64;
        return Ok(summary);
    }
    for m in &picked {
        let from = format!("{dlq_topic}/{}/{}", m.partition(), m.offset());
        let mut headers = OwnedHeaders::new();
        if let Some(h) = m.headers() {
            for h in h.iter().filter(|h| !h.key.starts_with("dlq.")) {
                headers = headers.insert(Header {
                    key: h.key,
                    value: h.value,
                });
            }
        }
        headers = headers.insert(Header {
            key: "redrive.from",
            value: Some(from.as_str()),
        });
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&config.raw_topic).headers(headers);
        if let Some(k) = m.key() {
            record = record.key(k);
        }
        if let Some(v) = m.payload() {
            record = record.payload(v);
        }
        producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .with_context(|| format!("redriving {from} to {}", config.raw_topic))?;
        summary.records += 1;
    }
    Ok(summary)
}
