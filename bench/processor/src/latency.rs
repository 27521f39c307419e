//! End-to-end latency: signed Terra webhooks at a steady rate into the release edge,
//! one release processor behind it, and PostgreSQL polled for when each webhook's rows
//! became visible. Every webhook is its own user, so its rows are found by primary key.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use processor::dedup::Dedup;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::time::MissedTickBehavior;

use crate::Ctx;
use crate::stack::{self, HistogramDelta, MachineCpu, Service};
use crate::terra::{self, User};

/// Webhooks still awaited, of one user each.
const VISIBLE_USERS: &str = include_str!("sql/visible_users.sql");

/// Most user ids one poll asks about (oldest first); bounds the poll's own cost when
/// the processor falls behind.
const POLL_MAX_IDS: usize = 5000;

/// Webhooks sent before measuring, so the group has joined and every connection is warm.
const WARM_UP: usize = 20;

/// What the latency run measured.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    /// Requested webhooks per second.
    pub target_rate: u32,
    /// Webhooks sent.
    pub sent: usize,
    /// First to last send.
    pub send_span: Duration,
    /// 202 answers.
    pub accepted: usize,
    /// Other answers and transport errors, by status or error kind.
    pub refused: BTreeMap<String, usize>,
    /// Send → 202, milliseconds, sorted.
    pub response_ms: Vec<f64>,
    /// 202 → rows seen by the poll (upper bound), milliseconds, sorted.
    pub visible_ms: Vec<f64>,
    /// 202 → `ingested_at` (the upsert transaction's start: lower bound), milliseconds, sorted.
    pub ingested_ms: Vec<f64>,
    /// Accepted webhooks whose rows never became visible.
    pub lost: usize,
    /// Polls run, and their mean and longest duration in milliseconds.
    pub polls: (usize, f64, f64),
    /// Processor raw records per batch during the run.
    pub batch_records: HistogramDelta,
    /// Processor seconds per batch during the run.
    pub batch_seconds: HistogramDelta,
    /// CPU seconds of edge and processor during the run, and the machine's busy fraction.
    pub cpu: (f64, f64, f64),
}

impl Latency {
    /// Webhooks per second actually sent.
    pub fn send_rate(&self) -> f64 {
        if self.sent < 2 {
            return 0.0;
        }
        (self.sent - 1) as f64 / self.send_span.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// One prepared request.
struct Prepared {
    body: Vec<u8>,
    signature: String,
    ordering: String,
}

/// What happened to one request.
struct Outcome {
    sent_at: Instant,
    answered_at: Instant,
    answered_wall: DateTime<Utc>,
    status: Result<u16, String>,
}

/// When the poll first saw all of a webhook's rows.
#[derive(Clone, Copy)]
struct Seen {
    /// Start of the poll whose snapshot held them.
    at: Instant,
    /// `min(ingested_at)` of the rows.
    ingested_at: DateTime<Utc>,
}

/// Runs the latency measurement.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Latency> {
    let cfg = &ctx.cfg;
    let tag = format!("{}.lat", ctx.run_id);
    let raw = format!("bench.proc.raw.{tag}");
    let readings_topic = format!("{raw}.readings");
    let dlq = format!("{raw}.dlq");
    let group = format!("bench-proc-{tag}");
    let prefix = format!("bench-lat-{}-", ctx.run_id);
    ctx.kafka
        .create(&[
            (&raw, cfg.partitions),
            (&readings_topic, cfg.partitions),
            (&dlq, 1),
        ])
        .await?;
    let topics = vec![raw.clone(), readings_topic.clone(), dlq.clone()];
    let mut keys = Vec::new();
    let result = measure(
        ctx,
        [&raw, &readings_topic, &dlq, &group],
        &prefix,
        &mut keys,
    )
    .await;
    if let Err(e) = stack::delete_rows(ctx.sink.pool(), &[&prefix]).await {
        eprintln!("bench: could not delete latency rows: {e}");
    }
    stack::delete_dedup_keys(&cfg.redis_url, &keys).await;
    ctx.drop_topics(&topics).await;
    result
}

async fn measure(
    ctx: &Ctx,
    [raw, readings_topic, dlq, group]: [&str; 4],
    prefix: &str,
    keys: &mut Vec<String>,
) -> anyhow::Result<Latency> {
    let cfg = &ctx.cfg;
    let edge_env = [
        ("RAW_TOPIC", raw.to_string()),
        ("TERRA_SIGNING_SECRET", terra::SIGNING_SECRET.to_string()),
        ("SCHEMA_REGISTRY_URL", cfg.schema_registry_url.clone()),
        (
            "KAFKA_BOOTSTRAP_SERVERS",
            cfg.kafka_bootstrap_servers.clone(),
        ),
    ];
    let mut edge = Service::start(
        &ctx.bin_dir,
        "edge",
        "EDGE_LISTEN_ADDR",
        &edge_env,
        &cfg.out.join("edge-latency.log"),
    )?;
    edge.wait_ok(&ctx.http, "/ready", Duration::from_secs(60))
        .await?;
    let mut proc = Service::start(
        &ctx.bin_dir,
        "processor",
        "PROCESSOR_LISTEN_ADDR",
        &ctx.processor_env(raw, readings_topic, dlq, group),
        &cfg.out.join("processor-latency.log"),
    )?;
    proc.wait_ok(&ctx.http, "/ready", Duration::from_secs(60))
        .await?;
    let webhook_url = format!("{}/webhooks/terra", edge.url);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::MAX)
        .timeout(Duration::from_secs(10))
        .build()?;

    // Warm-up: rows of a few webhooks must come through before the clock starts.
    let warm_prefix = format!("{prefix}warm-");
    let now = Utc::now();
    let mut per_webhook = 0;
    for i in 0..WARM_UP {
        let p = prepare(&User::new(format!("{warm_prefix}{i}")), i, now);
        keys.push(delivery_key(&p.body));
        per_webhook = readings_of(&p.body)?;
        let status = send(&client, &webhook_url, p).await.status;
        if status != Ok(202) {
            bail!("warm-up webhook answered {status:?}, expected 202");
        }
    }
    let expected_warm = (WARM_UP * per_webhook) as i64;
    let warm_deadline = Instant::now() + Duration::from_secs(60);
    while stack::count_rows(ctx.sink.pool(), &warm_prefix).await? < expected_warm {
        if Instant::now() > warm_deadline {
            bail!("warm-up rows not visible within 60 s (see target/bench/*latency.log)");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Prepared up front: signing and JSON cost stay out of the timed loop.
    let total = (f64::from(cfg.rate) * cfg.latency_duration.as_secs_f64()).round() as usize;
    let now = Utc::now();
    let users: Vec<String> = (0..total).map(|i| format!("{prefix}{i:06}")).collect();
    let prepared: Vec<Prepared> = users
        .iter()
        .enumerate()
        .map(|(i, u)| prepare(&User::new(u.clone()), i, now))
        .collect();
    keys.extend(prepared.iter().map(|p| delivery_key(&p.body)));
    if let Some(p) = prepared.first() {
        per_webhook = readings_of(&p.body)?;
    }

    let pool = PgPoolOptions::new()
        .max_connections(1)
        // The table was just vacuumed nearly empty, so the planner's statistics favour
        // a sequential scan, which at 1,000 webhooks/s soon costs tens of ms per poll
        // and CPU the system under test needs. The poll is a primary-key lookup.
        .after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::query("SET enable_seqscan = off")
                    .execute(conn)
                    .await
                    .map(|_| ())
            })
        })
        .connect(&cfg.database_url)
        .await
        .context("DATABASE_URL: poll connection")?;
    let sent_count = Arc::new(AtomicUsize::new(0));
    let seen: Arc<Mutex<Vec<Option<Seen>>>> = Arc::new(Mutex::new(vec![None; total]));
    let stop = Arc::new(AtomicBool::new(false));
    let poller = tokio::spawn(poll(
        pool,
        Arc::new(users),
        prefix.to_string(),
        per_webhook as i64,
        cfg.poll,
        sent_count.clone(),
        seen.clone(),
        stop.clone(),
    ));

    let before = proc.metrics(&ctx.http).await?;
    let cpu0 = (
        stack::process_cpu_seconds(edge.pid()).unwrap_or(0.0),
        stack::process_cpu_seconds(proc.pid()).unwrap_or(0.0),
        MachineCpu::now(),
    );

    // Steady load: one request per tick, each in its own task so a slow answer never
    // delays the next send. Burst catches up a late tick, keeping the average rate.
    let period = Duration::from_secs_f64(1.0 / f64::from(cfg.rate));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(total);
    let mut first_send = None;
    let mut last_send = Instant::now();
    for (i, p) in prepared.into_iter().enumerate() {
        tick.tick().await;
        last_send = Instant::now();
        first_send.get_or_insert(last_send);
        sent_count.store(i + 1, Ordering::Release);
        let (client, url) = (client.clone(), webhook_url.clone());
        tasks.push(tokio::spawn(async move { send(&client, &url, p).await }));
    }
    let mut outcomes = Vec::with_capacity(total);
    for t in tasks {
        outcomes.push(t.await?);
    }

    // Wait for the rows of every accepted webhook, or give up after the timeout.
    let accepted: Vec<usize> = (0..outcomes.len())
        .filter(|&i| outcomes[i].status == Ok(202))
        .collect();
    let give_up = Instant::now() + cfg.timeout.min(Duration::from_secs(60));
    loop {
        let missing = {
            let seen = seen
                .lock()
                .map_err(|_| anyhow::anyhow!("poller panicked"))?;
            accepted.iter().filter(|&&i| seen[i].is_none()).count()
        };
        if missing == 0 || Instant::now() > give_up {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu1 = (
        stack::process_cpu_seconds(edge.pid()).unwrap_or(cpu0.0),
        stack::process_cpu_seconds(proc.pid()).unwrap_or(cpu0.1),
        MachineCpu::now(),
    );
    let after = proc.metrics(&ctx.http).await?;
    stop.store(true, Ordering::Release);
    let polls = poller.await??;
    proc.stop(Duration::from_secs(40)).await?;
    edge.stop(Duration::from_secs(20)).await?;

    let seen = seen
        .lock()
        .map_err(|_| anyhow::anyhow!("poller panicked"))?;
    let mut out = Latency {
        target_rate: cfg.rate,
        sent: outcomes.len(),
        send_span: first_send.map_or(Duration::ZERO, |f| last_send - f),
        accepted: accepted.len(),
        polls,
        batch_records: HistogramDelta::between(&before, &after, "processor_batch_records"),
        batch_seconds: HistogramDelta::between(&before, &after, "processor_batch_duration_seconds"),
        cpu: (cpu1.0 - cpu0.0, cpu1.1 - cpu0.1, cpu0.2.busy_until(&cpu1.2)),
        ..Latency::default()
    };
    for (i, o) in outcomes.iter().enumerate() {
        match &o.status {
            Ok(202) => {}
            Ok(code) => *out.refused.entry(format!("HTTP {code}")).or_default() += 1,
            Err(kind) => *out.refused.entry(kind.clone()).or_default() += 1,
        }
        if o.status != Ok(202) {
            continue;
        }
        out.response_ms.push(ms(o.answered_at - o.sent_at));
        match seen[i] {
            Some(s) => {
                out.visible_ms.push(signed_ms(s.at, o.answered_at));
                let wall = (s.ingested_at - o.answered_wall)
                    .num_microseconds()
                    .unwrap_or(0);
                out.ingested_ms.push(wall as f64 / 1000.0);
            }
            None => out.lost += 1,
        }
    }
    for v in [
        &mut out.response_ms,
        &mut out.visible_ms,
        &mut out.ingested_ms,
    ] {
        v.sort_by(f64::total_cmp);
    }
    Ok(out)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `a − b` in milliseconds, negative when `a` came first.
fn signed_ms(a: Instant, b: Instant) -> f64 {
    if a >= b { ms(a - b) } else { -ms(b - a) }
}

/// A signed `daily` webhook for `user`; `i` marks the body so every body is unique.
fn prepare(user: &User, i: usize, now: DateTime<Utc>) -> Prepared {
    let body = terra::daily_body(user, 0, &format!("lat-{i}"), terra::Shape::Summary);
    let headers = terra::headers(&body, now.timestamp(), now.timestamp_millis());
    Prepared {
        signature: headers["terra-signature"].clone(),
        ordering: headers["x-terra-ordering-timestamp"].clone(),
        body,
    }
}

/// Readings the processor makes of `body` (its own normalizer decides).
fn readings_of(body: &[u8]) -> anyhow::Result<usize> {
    let env = terra::envelope(body.to_vec(), 0, 0, 0);
    Ok(processor::normalize::normalize(&env)?.readings.len())
}

/// The processor's Redis key for a Terra delivery of `body` (for clean-up).
fn delivery_key(body: &[u8]) -> String {
    Dedup::delivery_key(&terra::envelope(body.to_vec(), 0, 0, 0))
}

async fn send(client: &reqwest::Client, url: &str, p: Prepared) -> Outcome {
    let sent_at = Instant::now();
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("terra-signature", p.signature)
        .header("x-terra-ordering-timestamp", p.ordering)
        .body(p.body)
        .send()
        .await;
    let answered_at = Instant::now();
    let answered_wall = Utc::now();
    let status = match response {
        Ok(r) => {
            let code = r.status().as_u16();
            // Read the body so the connection goes back to the pool.
            let _ = r.bytes().await;
            Ok(code)
        }
        Err(e) if e.is_timeout() => Err("timeout".into()),
        Err(e) if e.is_connect() => Err("connect error".into()),
        Err(_) => Err("transport error".into()),
    };
    Outcome {
        sent_at,
        answered_at,
        answered_wall,
        status,
    }
}

/// Polls PostgreSQL every `period` for the rows of webhooks sent and not yet seen,
/// until `stop`. Returns (polls, mean ms, max ms).
#[allow(clippy::too_many_arguments)]
async fn poll(
    pool: PgPool,
    users: Arc<Vec<String>>,
    prefix: String,
    per_webhook: i64,
    period: Duration,
    sent_count: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Option<Seen>>>>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<(usize, f64, f64)> {
    let mut pending = BTreeSet::new();
    let mut added = 0;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let (mut polls, mut total, mut longest) = (0usize, 0.0f64, 0.0f64);
    while !stop.load(Ordering::Acquire) {
        tick.tick().await;
        let sent = sent_count.load(Ordering::Acquire);
        pending.extend(added..sent);
        added = sent;
        if pending.is_empty() {
            continue;
        }
        let ids: Vec<&str> = pending
            .iter()
            .take(POLL_MAX_IDS)
            .map(|&i: &usize| users[i].as_str())
            .collect();
        let started = Instant::now();
        let rows: Vec<(String, i64, DateTime<Utc>)> = sqlx::query_as(VISIBLE_USERS)
            .bind(&ids)
            .fetch_all(&pool)
            .await
            .context("latency poll")?;
        let took = ms(started.elapsed());
        polls += 1;
        total += took;
        longest = longest.max(took);
        let mut seen = seen.lock().map_err(|_| anyhow::anyhow!("lock poisoned"))?;
        for (user, count, ingested_at) in rows {
            // All of a webhook's rows commit in one transaction; the count is a check.
            let Some(i) = user
                .strip_prefix(&prefix)
                .and_then(|n| n.parse::<usize>().ok())
            else {
                continue;
            };
            if count >= per_webhook && i < seen.len() {
                seen[i] = Some(Seen {
                    at: started,
                    ingested_at,
                });
                pending.remove(&i);
            }
        }
    }
    Ok((polls, total / polls.max(1) as f64, longest))
}
