//! Throughput: N raw envelopes pre-filled into a fresh topic, drained by one release
//! processor; then the same readings bulk-loaded with `PgSink::copy_readings`, the
//! PostgreSQL ceiling. Both start from the same table state (earlier rows deleted and
//! vacuumed) and use distinct user ids, so neither ever conflicts with the other.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use bridge_core::{defaults, envelope::RAW_ENVELOPE_SCHEMA};
use chrono::Utc;
use processor::dedup::Dedup;
use processor::model::Reading;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::Ctx;
use crate::stack::{self, HistogramDelta, MachineCpu, Scrape, Service};
use crate::terra::{self, Shape, User};

/// How long rows may lag the processor's "records done" counter before the round is
/// called incomplete. Rows commit before offsets are stored, so any lag is a bug.
const ROWS_GRACE: Duration = Duration::from_secs(5);

/// What a round pre-fills: `messages` Terra dailies of one shape.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Summary-only or per-minute dailies.
    pub shape: Shape,
    /// Raw envelopes per round.
    pub messages: usize,
}

impl Workload {
    /// Short name, part of topic, group, user id and log file names.
    fn tag(&self) -> &'static str {
        match self.shape {
            Shape::Summary => "r",
            Shape::Series => "s",
        }
    }
}

/// One round's measurements.
#[derive(Debug, Clone)]
pub struct Round {
    /// Raw envelopes pre-filled.
    pub records: usize,
    /// Readings those envelopes normalize to (= rows expected).
    pub readings: usize,
    /// Process start until `/ready` answered 200.
    pub start_to_ready: Duration,
    /// `/ready` answered until every record was done and every row visible.
    pub ready_to_done: Duration,
    /// From the first finished batch to the end: records processed in that span and
    /// its length (excludes the group join and the first fetch).
    pub steady: Option<(usize, Duration)>,
    /// Whether all records and rows arrived before the timeout.
    pub complete: bool,
    /// Rows found at the end.
    pub rows_found: i64,
    /// Records the processor had finished at the end.
    pub records_done: f64,
    /// Uncommitted records of the group after the processor stopped.
    pub lag_after: Option<i64>,
    /// Records dead-lettered.
    pub dead_letters: f64,
    /// Records skipped by the Redis filter.
    pub dedup_hits: f64,
    /// Raw records per batch.
    pub batch_records: HistogramDelta,
    /// Seconds per batch.
    pub batch_seconds: HistogramDelta,
    /// Bucket bounds of batch-duration p50 and p99, seconds.
    pub batch_seconds_p50_p99: (Option<f64>, Option<f64>),
    /// Processor CPU seconds from ready to done.
    pub processor_cpu: f64,
    /// Fraction of the machine's cores busy from ready to done.
    pub machine_busy: f64,
    /// Length of the COPY of the same readings.
    pub copy: Duration,
    /// Rows the COPY loaded.
    pub copy_rows: u64,
}

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(f64::MIN_POSITIVE)
}

impl Round {
    /// Readings per second, `/ready` to done.
    pub fn readings_per_sec(&self) -> f64 {
        per_sec(self.readings, self.ready_to_done)
    }

    /// Raw records per second, `/ready` to done.
    pub fn records_per_sec(&self) -> f64 {
        per_sec(self.records, self.ready_to_done)
    }

    /// Readings per second after the first batch.
    pub fn steady_readings_per_sec(&self) -> Option<f64> {
        let (records, span) = self.steady?;
        let per_record = self.readings as f64 / self.records as f64;
        Some(per_sec(records, span) * per_record)
    }

    /// Readings per second of the COPY ceiling.
    pub fn copy_readings_per_sec(&self) -> f64 {
        per_sec(self.copy_rows as usize, self.copy)
    }
}

/// The envelopes of one round, produced and ready for the processor.
struct Prefill {
    records: usize,
    copy_readings: Vec<Reading>,
    dedup_keys: Vec<String>,
}

/// Runs round `round` (1-based) of `work`: prefill, processor, COPY, clean-up.
pub async fn round(ctx: &Ctx, work: Workload, round: usize) -> anyhow::Result<Round> {
    let tag = format!("{}.{}{round}", ctx.run_id, work.tag());
    let raw = format!("bench.proc.raw.{tag}");
    let readings_topic = format!("{raw}.readings");
    let dlq = format!("{raw}.dlq");
    let group = format!("bench-proc-{tag}");
    let prefix = format!("bench-proc-{}-{}{round}-", ctx.run_id, work.tag());
    let copy_prefix = format!("copy-{prefix}");
    let partitions = ctx.cfg.partitions;
    ctx.kafka
        .create(&[(&raw, partitions), (&readings_topic, partitions), (&dlq, 1)])
        .await?;
    let topics = vec![raw.clone(), readings_topic.clone(), dlq.clone()];

    let result = async {
        let prefill = prefill(ctx, work, &raw, &prefix).await?;
        let expected = prefill.copy_readings.len();
        let names = Names {
            raw: &raw,
            readings: &readings_topic,
            dlq: &dlq,
            group: &group,
            prefix: &prefix,
        };
        let mut measured = drain(ctx, &names, work, expected as i64, round).await?;
        measured.records = prefill.records;
        measured.readings = expected;
        stack::delete_rows(ctx.sink.pool(), &[&prefix]).await?;

        let started = Instant::now();
        measured.copy_rows = ctx
            .sink
            .copy_readings(&prefill.copy_readings)
            .await
            .context("COPY baseline")?;
        measured.copy = started.elapsed();
        stack::delete_dedup_keys(&ctx.cfg.redis_url, &prefill.dedup_keys).await;
        anyhow::Ok(measured)
    }
    .await;
    // Clean up whatever happened: this round's rows, then its topics.
    if let Err(e) = stack::delete_rows(ctx.sink.pool(), &[&prefix, &copy_prefix]).await {
        eprintln!("bench: could not delete round {round} rows: {e}");
    }
    ctx.drop_topics(&topics).await;
    result
}

/// Builds N envelopes as the edge would, counts their readings with the processor's
/// own normalizer, and appends them to `raw` through the registry.
async fn prefill(ctx: &Ctx, work: Workload, raw: &str, prefix: &str) -> anyhow::Result<Prefill> {
    let cfg = &ctx.cfg;
    let users: Vec<User> = (0..cfg.users)
        .map(|u| User::new(format!("{prefix}u{u:04}")))
        .collect();
    let codec = ctx
        .registry
        .register(&defaults::value_subject(raw), RAW_ENVELOPE_SCHEMA)
        .await
        .context("registering the raw envelope schema")?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &cfg.kafka_bootstrap_servers)
        // As the edge produces (edge/src/producer.rs), so the processor decompresses
        // what it would in production.
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .create()
        .context("creating the prefill producer")?;

    let now = Utc::now();
    let per_message = 10 + work.shape.hr_samples() as usize;
    let mut copy_readings = Vec::with_capacity(work.messages * per_message);
    let mut dedup_keys = Vec::with_capacity(work.messages);
    let mut deliveries = Vec::with_capacity(work.messages);
    for i in 0..work.messages {
        let user = &users[i % users.len()];
        let day = (i / users.len()) as u64;
        let body = terra::daily_body(user, day, &i.to_string(), work.shape);
        let env = terra::envelope(
            body,
            now.timestamp(),
            now.timestamp_millis(),
            now.timestamp_micros(),
        );
        let normalized = processor::normalize::normalize(&env)
            .with_context(|| format!("normalizing bench envelope {i}"))?;
        copy_readings.extend(normalized.readings.into_iter().map(|mut r| {
            r.user_id = format!("copy-{}", r.user_id);
            r
        }));
        dedup_keys.push(Dedup::delivery_key(&env));
        let payload = codec.encode(env.into_avro())?;
        let mut record = FutureRecord::to(raw)
            .key(user.terra_id.as_bytes())
            .payload(&payload);
        // Enqueue now (the delivery future owns no borrow); a full local queue waits.
        let delivery = loop {
            match producer.send_result(record) {
                Ok(delivery) => break delivery,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err((e, _)) => anyhow::bail!("prefill produce failed: {e}"),
            }
        };
        deliveries.push(delivery);
    }
    for result in futures::future::join_all(deliveries).await {
        result
            .context("prefill delivery report lost")?
            .map_err(|(e, _)| anyhow::anyhow!("prefill produce failed: {e}"))?;
    }
    Ok(Prefill {
        records: work.messages,
        copy_readings,
        dedup_keys,
    })
}

/// Topics, group and user-id prefix of one round.
struct Names<'a> {
    raw: &'a str,
    readings: &'a str,
    dlq: &'a str,
    group: &'a str,
    prefix: &'a str,
}

/// Starts one processor on the round's raw topic and times it until every record is
/// done and all `expected` rows are visible. `records`, `readings` and the COPY fields
/// are filled in by the caller.
async fn drain(
    ctx: &Ctx,
    names: &Names<'_>,
    work: Workload,
    expected: i64,
    round: usize,
) -> anyhow::Result<Round> {
    let cfg = &ctx.cfg;
    let n = work.messages as f64;
    let log = cfg
        .out
        .join(format!("processor-throughput-{}{round}.log", work.tag()));
    let mut proc = Service::start(
        &ctx.bin_dir,
        "processor",
        "PROCESSOR_LISTEN_ADDR",
        &ctx.processor_env(names.raw, names.readings, names.dlq, names.group),
        &log,
    )?;
    let spawned = Instant::now();
    let ready = proc
        .wait_ok(&ctx.http, "/ready", Duration::from_secs(60))
        .await?;
    let cpu0 = stack::process_cpu_seconds(proc.pid()).unwrap_or(0.0);
    let machine0 = MachineCpu::now();

    let deadline = ready + cfg.timeout;
    let mut first: Option<(Instant, f64)> = None;
    let mut rows_since: Option<Instant> = None;
    let mut last = Scrape::default();
    let mut rows_found = 0;
    let mut done = None;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while Instant::now() < deadline {
        tick.tick().await;
        let scraped_at = Instant::now();
        last = proc.metrics(&ctx.http).await?;
        let records = last.sum("processor_raw_records_total");
        if first.is_none() && records > 0.0 {
            first = Some((scraped_at, records));
        }
        if records < n {
            continue;
        }
        // Rows commit before offsets are stored, so this is a check, not a wait.
        let since = *rows_since.get_or_insert(scraped_at);
        rows_found = stack::count_rows(ctx.sink.pool(), names.prefix).await?;
        if rows_found >= expected {
            done = Some(scraped_at);
            break;
        }
        if since.elapsed() > ROWS_GRACE {
            break;
        }
    }
    let cpu1 = stack::process_cpu_seconds(proc.pid()).unwrap_or(cpu0);
    let machine1 = MachineCpu::now();
    let end = done.unwrap_or_else(Instant::now);
    proc.stop(Duration::from_secs(40)).await?;
    let lag_after = ctx
        .kafka
        .committed_lag(names.group, names.raw, cfg.partitions)
        .await
        .ok();

    let zero = Scrape::default();
    Ok(Round {
        records: 0,
        readings: 0,
        start_to_ready: ready - spawned,
        ready_to_done: end - ready,
        steady: first.map(|(at, records)| ((n - records) as usize, end - at)),
        complete: done.is_some(),
        rows_found,
        records_done: last.sum("processor_raw_records_total"),
        lag_after,
        dead_letters: last.sum("processor_dlq_total"),
        dedup_hits: last.sum("processor_dedup_hits_total"),
        batch_records: HistogramDelta::between(&zero, &last, "processor_batch_records"),
        batch_seconds: HistogramDelta::between(&zero, &last, "processor_batch_duration_seconds"),
        batch_seconds_p50_p99: (
            last.quantile_bound("processor_batch_duration_seconds", 0.5),
            last.quantile_bound("processor_batch_duration_seconds", 0.99),
        ),
        processor_cpu: cpu1 - cpu0,
        machine_busy: machine0.busy_until(&machine1),
        copy: Duration::ZERO,
        copy_rows: 0,
    })
}
