//! Stage profile: the processor's own stage functions (registry decode, Redis check,
//! normalize, `PgSink::write`, `publish::readings`, Redis mark), called in the order
//! `processor/src/pipeline.rs` calls them, on full-size batches, each stage timed.
//! The processor exports only whole-batch timings; this says which stage they are made of.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use bridge_core::{RawEnvelope, defaults, envelope::RAW_ENVELOPE_SCHEMA};
use chrono::{DateTime, Utc};
use processor::dedup::{DEFAULT_TTL, Dedup};
use processor::model::Change;
use processor::publish::{self, Provenance, READING_KEY_SCHEMA, READING_SCHEMA};
use processor::sink::Batch;

use crate::Ctx;
use crate::stack;
use crate::terra::{self, Shape, User};

/// Records per batch: the processor's default `BATCH_MAX_RECORDS`, which the
/// summary rounds fill.
const BATCH: usize = 1000;

/// The processor's default `BATCH_MAX_BYTES`: per-minute dailies fill a batch by bytes
/// long before 1,000 records.
const BATCH_BYTES: usize = 8 * 1024 * 1024;

/// The stage names, in pipeline order.
pub const STAGES: [&str; 6] = [
    "decode",
    "Redis check",
    "normalize",
    "upsert",
    "publish",
    "Redis mark",
];

/// Mean time per batch of each stage, in [`STAGES`] order.
#[derive(Debug, Clone)]
pub struct Stages {
    /// What the batches held.
    pub shape: Shape,
    /// Batches timed (after one untimed warm-up batch).
    pub batches: usize,
    /// Raw records per batch.
    pub records: usize,
    /// Readings per batch.
    pub readings: usize,
    /// Mean per stage.
    pub mean: [Duration; 6],
}

impl Stages {
    /// Sum of the stage means.
    pub fn total(&self) -> Duration {
        self.mean.iter().sum()
    }
}

/// Times `batches` batches (plus one warm-up) of `shape` dailies through the stage
/// functions, each of `records` records (the processor's mean batch in the rounds), or
/// when not measured as large as the processor's limits allow.
pub async fn run(
    ctx: &Ctx,
    shape: Shape,
    batches: usize,
    records: Option<usize>,
) -> anyhow::Result<Stages> {
    let tag = match shape {
        Shape::Summary => "stages",
        Shape::Series => "stages-series",
    };
    let raw = format!("bench.proc.raw.{}.{tag}", ctx.run_id);
    let readings_topic = format!("{raw}.readings");
    let prefix = format!("bench-{tag}-{}-", ctx.run_id);
    ctx.kafka
        .create(&[
            (&raw, ctx.cfg.partitions),
            (&readings_topic, ctx.cfg.partitions),
        ])
        .await?;
    let mut keys = Vec::new();
    let result = profile(
        ctx,
        (shape, records),
        (&raw, &readings_topic),
        &prefix,
        batches,
        &mut keys,
    )
    .await;
    if let Err(e) = stack::delete_rows(ctx.sink.pool(), &[&prefix]).await {
        eprintln!("bench: could not delete stage-profile rows: {e}");
    }
    stack::delete_dedup_keys(&ctx.cfg.redis_url, &keys).await;
    ctx.drop_topics(&[raw, readings_topic]).await;
    result
}

async fn profile(
    ctx: &Ctx,
    (shape, records): (Shape, Option<usize>),
    (raw, readings_topic): (&str, &str),
    prefix: &str,
    batches: usize,
    all_keys: &mut Vec<String>,
) -> anyhow::Result<Stages> {
    let raw_codec = ctx
        .registry
        .register(&defaults::value_subject(raw), RAW_ENVELOPE_SCHEMA)
        .await?;
    let readings_codec = ctx
        .registry
        .register(&defaults::value_subject(readings_topic), READING_SCHEMA)
        .await?;
    let readings_key_codec = ctx
        .registry
        .register(&format!("{readings_topic}-key"), READING_KEY_SCHEMA)
        .await?;
    let producer = publish::producer(&ctx.cfg.kafka_bootstrap_servers)?;
    let changelog = publish::Changelog::new(
        producer,
        &ctx.cfg.kafka_bootstrap_servers,
        readings_topic,
        readings_key_codec,
        readings_codec,
    )
    .await?;
    let dedup = Dedup::connect(&ctx.cfg.redis_url, DEFAULT_TTL)
        .await
        .context("REDIS_URL")?;
    let users: Vec<User> = (0..ctx.cfg.users)
        .map(|u| User::new(format!("{prefix}u{u:04}")))
        .collect();
    let now = Utc::now();
    let sample = terra::daily_body(&users[0], 0, "0", shape).len();
    let size = records
        .unwrap_or_else(|| BATCH.min(BATCH_BYTES / sample.max(1)))
        .max(1);
    let mut out = Stages {
        shape,
        batches,
        records: size,
        readings: 0,
        mean: [Duration::ZERO; 6],
    };
    let mut totals = [Duration::ZERO; 6];

    for b in 0..=batches {
        // Untimed: what the edge and Kafka would have delivered.
        let mut payloads = Vec::with_capacity(size);
        for i in 0..size {
            let n = b * size + i;
            let user = &users[n % users.len()];
            let body = terra::daily_body(user, (n / users.len()) as u64, &n.to_string(), shape);
            let env = terra::envelope(
                body,
                now.timestamp(),
                now.timestamp_millis(),
                now.timestamp_micros(),
            );
            payloads.push(raw_codec.encode(env.into_avro())?);
        }

        let mut took = [Duration::ZERO; 6];
        let t = Instant::now();
        let mut envs: Vec<RawEnvelope> = Vec::with_capacity(size);
        for p in &payloads {
            let value = ctx.registry.decode(p).await?;
            envs.push(RawEnvelope::from_avro(value)?);
        }
        took[0] = t.elapsed();

        let t = Instant::now();
        let keys: Vec<String> = envs.iter().map(Dedup::delivery_key).collect();
        dedup.seen_many(&keys).await?;
        took[1] = t.elapsed();

        let t = Instant::now();
        let mut batch = Batch::default();
        let mut provenance = Vec::with_capacity(envs.len());
        for (offset, env) in envs.iter().enumerate() {
            let normalized = processor::normalize::normalize(env)?;
            provenance.push(Provenance {
                event_id: env.event_id.clone(),
                partition: 0,
                offset: offset as i64,
                traceparent: None,
            });
            let received =
                DateTime::<Utc>::from_timestamp_micros(env.received_at_micros).unwrap_or_default();
            batch.push(&env.event_id, received, normalized);
        }
        took[2] = t.elapsed();

        let t = Instant::now();
        // The processor publishes before the commit; timed apart here, after it.
        let written = ctx.sink.write(&batch).await?;
        took[3] = t.elapsed();

        let t = Instant::now();
        let changes: Vec<_> = written
            .changes
            .into_iter()
            .map(|change| {
                let p = match &change {
                    Change::Upsert { envelope, .. } => provenance.get(*envelope).cloned(),
                    Change::Delete(_) => None,
                };
                (change, p)
            })
            .collect();
        changelog.publish(&changes).await?;
        took[4] = t.elapsed();

        let t = Instant::now();
        dedup.mark_many(&keys).await?;
        took[5] = t.elapsed();
        all_keys.extend(keys);

        out.readings = batch.readings.len();
        // Batch 0 warms the registry cache, the pools and the producer.
        if b > 0 {
            for (total, t) in totals.iter_mut().zip(took) {
                *total += t;
            }
        }
    }
    for (mean, total) in out.mean.iter_mut().zip(totals) {
        *mean = total / batches.max(1) as u32;
    }
    Ok(out)
}
