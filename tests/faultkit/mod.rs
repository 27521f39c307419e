//! Shared parts of the fault-injection tests: a switchable proxy in front of the real
//! schema registry (injects 5xx, 429, 404 and stalls on the real traffic), Terra load
//! through the real edge, and the accounting every drill reports (sent, 202, rows,
//! missing, extra, topic duplicates).

#![allow(dead_code)] // each test binary uses its own subset

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use bridge_tests::*;
use warp::Filter;

/// What the registry proxy does with each request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward to the real registry.
    Pass,
    /// Answer this status without forwarding.
    Status(u16),
    /// Hold the request for 30 s (longer than every client timeout), then 504.
    Stall,
}

/// A proxy in front of the real registry whose behaviour a test switches at will.
#[derive(Clone)]
pub struct RegistryProxy {
    /// Base URL to give clients (same path layout as the real registry URL).
    pub url: String,
    mode: Arc<AtomicU16>,
}

const PASS: u16 = 0;
const STALL: u16 = 1;

impl RegistryProxy {
    /// Starts a proxy to `registry_url()` on a free port.
    pub async fn start() -> RegistryProxy {
        let upstream = registry_url();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        // Keep the path of the real URL (e.g. /apis/ccompat/v7).
        let (origin, path) = split_url(&upstream);
        let mode = Arc::new(AtomicU16::new(PASS));
        let proxy = RegistryProxy {
            url: format!("http://{addr}{path}"),
            mode: mode.clone(),
        };
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let routes = warp::method()
            .and(warp::path::full())
            .and(warp::query::raw().or(warp::any().map(String::new)).unify())
            .and(warp::header::optional::<String>("content-type"))
            .and(warp::body::bytes())
            .then(
                move |method: warp::http::Method,
                      full: warp::path::FullPath,
                      query: String,
                      ctype: Option<String>,
                      body: bytes::Bytes| {
                    let mode = mode.load(Ordering::SeqCst);
                    let http = http.clone();
                    let target = if query.is_empty() {
                        format!("{origin}{}", full.as_str())
                    } else {
                        format!("{origin}{}?{query}", full.as_str())
                    };
                    async move {
                        let reply = |status: u16, body: Vec<u8>| {
                            warp::http::Response::builder()
                                .status(status)
                                .header("content-type", "application/vnd.schemaregistry.v1+json")
                                .body(body)
                                .unwrap()
                        };
                        match mode {
                            PASS => {
                                let mut req = http.request(method, &target).body(body.to_vec());
                                if let Some(c) = ctype {
                                    req = req.header("content-type", c);
                                }
                                match req.send().await {
                                    Ok(r) => {
                                        let status = r.status().as_u16();
                                        let body = r.bytes().await.unwrap_or_default().to_vec();
                                        reply(status, body)
                                    }
                                    Err(_) => reply(502, b"{}".to_vec()),
                                }
                            }
                            STALL => {
                                tokio::time::sleep(Duration::from_secs(30)).await;
                                reply(504, b"{}".to_vec())
                            }
                            status => reply(
                                status,
                                format!(r#"{{"error_code":{status}00,"message":"injected"}}"#)
                                    .into_bytes(),
                            ),
                        }
                    }
                },
            );
        tokio::spawn(
            warp::serve(routes)
                .incoming(listener)
                .graceful(std::future::pending::<()>())
                .run(),
        );
        proxy
    }

    /// Switches the fault from the next request on.
    pub fn set(&self, fault: Fault) {
        let v = match fault {
            Fault::Pass => PASS,
            Fault::Stall => STALL,
            Fault::Status(s) => s,
        };
        self.mode.store(v, Ordering::SeqCst);
    }
}

fn split_url(url: &str) -> (String, String) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let scheme = url.split_once("://").map_or("http", |(s, _)| s);
    match rest.find('/') {
        Some(i) => (
            format!("{scheme}://{}", &rest[..i]),
            rest[i..].trim_end_matches('/').to_string(),
        ),
        None => (format!("{scheme}://{rest}"), String::new()),
    }
}

/// A Terra `daily` body for `reference`: normalizes to [`DAILY_READINGS`] readings.
pub fn terra_daily(reference: &str, day: &str, steps: u32) -> Vec<u8> {
    format!(
        r#"{{"type":"daily","version":"2022-03-16","user":{{"user_id":"tu-{reference}","provider":"GARMIN","reference_id":"{reference}"}},"data":[{{"metadata":{{"start_time":"{day}T00:00:00.000000+00:00","end_time":"{day}T23:59:59.000000+00:00","upload_type":1,"timestamp_localization":0}},"distance_data":{{"steps":{steps},"distance_meters":6310.5}},"calories_data":{{"total_burned_calories":2410.0}},"heart_rate_data":{{"summary":{{"resting_hr_bpm":52,"avg_hrv_rmssd":48.3,"avg_hrv_sdnn":61.7}}}}}}]}}"#
    )
    .into_bytes()
}

/// Readings one [`terra_daily`] body becomes.
pub const DAILY_READINGS: i64 = 6;

/// Posts a signed Terra webhook; the status, or 0 when the request failed.
pub async fn post_terra(http: &reqwest::Client, edge: &str, body: &[u8]) -> u16 {
    http.post(format!("{edge}/webhooks/terra"))
        .header("content-type", "application/json")
        .header(
            "terra-signature",
            sign::terra(secrets::TERRA, now_secs(), body),
        )
        .body(body.to_vec())
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// What a load run sent and what the edge accepted, per user (one webhook per user).
#[derive(Debug, Default)]
pub struct Sent {
    /// Users whose webhook was attempted.
    pub sent: Vec<String>,
    /// Users whose webhook got 202.
    pub accepted: Vec<String>,
}

/// Sends one webhook per user `<prefix>-<i>` at `rate` per second for `duration`,
/// through `edge_url()` (re-read per request so a test can restart the edge).
pub async fn load(
    prefix: &str,
    rate: u32,
    duration: Duration,
    edge_url: impl Fn() -> String,
) -> Sent {
    let progress = Arc::new(std::sync::Mutex::new(Sent::default()));
    load_into(prefix, rate, duration, edge_url, progress.clone()).await;
    std::mem::take(&mut *progress.lock().unwrap())
}

/// [`load`], recording each answer in `progress` as it comes (for recovery timing).
pub async fn load_into(
    prefix: &str,
    rate: u32,
    duration: Duration,
    edge_url: impl Fn() -> String,
    progress: Arc<std::sync::Mutex<Sent>>,
) {
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    let mut tasks = Vec::new();
    let mut i = 0u32;
    while started.elapsed() < duration {
        tick.tick().await;
        let user = format!("{prefix}-{i}");
        i += 1;
        let http = http.clone();
        let url = edge_url();
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let body = terra_daily(&user, "2025-05-01", 1000);
            let status = post_terra(&http, &url, &body).await;
            let mut p = progress.lock().unwrap();
            if status == 202 {
                p.accepted.push(user.clone());
            }
            p.sent.push(user);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Time from now until every webhook accepted so far (per `progress`) has its rows:
/// the time to recover, when called as a fault ends.
pub async fn time_to_recover(
    pool: &sqlx::PgPool,
    prefix: &str,
    progress: &Arc<std::sync::Mutex<Sent>>,
    timeout: Duration,
) -> Duration {
    let started = Instant::now();
    let due: Vec<String> = progress.lock().unwrap().accepted.clone();
    loop {
        let rows = rows_by_user(pool, prefix).await;
        if due
            .iter()
            .all(|u| rows.get(u).copied().unwrap_or(0) >= DAILY_READINGS)
            || started.elapsed() > timeout
        {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The figures every drill reports.
#[derive(Debug, Default)]
pub struct Tally {
    /// Webhooks attempted.
    pub sent: usize,
    /// Answered 202.
    pub accepted: usize,
    /// Rows in `readings` for the run's users.
    pub rows: i64,
    /// Accepted users with fewer rows than expected.
    pub missing: usize,
    /// Rows beyond one set per accepted user.
    pub extra: i64,
    /// Users never answered 202 whose rows landed anyway (the edge answered 503 or the
    /// request failed, yet Kafka had the record): not a loss, but a 503 that was not
    /// "not taken".
    pub unacknowledged: usize,
    /// Readings-topic records beyond one per (user, metric).
    pub topic_duplicates: usize,
    /// Readings-topic (user, metric) pairs absent for accepted users.
    pub topic_missing: usize,
    /// Records in the dead-letter topic.
    pub dead_letters: usize,
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent={} 202={} rows={} missing={} extra={} landed_without_202={} topic_missing={} topic_duplicates={} dlq={}",
            self.sent,
            self.accepted,
            self.rows,
            self.missing,
            self.extra,
            self.unacknowledged,
            self.topic_missing,
            self.topic_duplicates,
            self.dead_letters
        )
    }
}

/// Rows per user of `prefix`, from PostgreSQL.
pub async fn rows_by_user(pool: &sqlx::PgPool, prefix: &str) -> HashMap<String, i64> {
    let got: Vec<(String, i64)> = sqlx::query_as(
        "select user_id, count(*) from readings where user_id like $1 || '-%' group by user_id",
    )
    .bind(prefix)
    .fetch_all(pool)
    .await
    .expect("count rows");
    got.into_iter().collect()
}

/// Waits until every accepted user has its rows (or `timeout`), then tallies table,
/// readings topic and DLQ. Returns the tally and how long the wait took.
pub async fn settle(
    pool: &sqlx::PgPool,
    prefix: &str,
    sent: &Sent,
    topics: &PipelineTopics,
    timeout: Duration,
) -> (Tally, Duration) {
    let started = Instant::now();
    let accepted: HashSet<&String> = sent.accepted.iter().collect();
    let mut by_user;
    loop {
        by_user = rows_by_user(pool, prefix).await;
        let complete = accepted
            .iter()
            .all(|u| by_user.get(*u).copied().unwrap_or(0) >= DAILY_READINGS);
        if complete || started.elapsed() > timeout {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let waited = started.elapsed();
    let rows: i64 = by_user.values().sum();
    let missing = accepted
        .iter()
        .filter(|u| by_user.get(**u).copied().unwrap_or(0) < DAILY_READINGS)
        .count();
    let extra = by_user
        .iter()
        .filter(|(u, _)| accepted.contains(u))
        .map(|(_, n)| (n - DAILY_READINGS).max(0))
        .sum();
    let unacknowledged = by_user.keys().filter(|u| !accepted.contains(u)).count();
    let mut tally = Tally {
        sent: sent.sent.len(),
        accepted: sent.accepted.len(),
        rows,
        missing,
        extra,
        unacknowledged,
        ..Tally::default()
    };
    // Readings topic: count (user, metric) records.
    let registry = bridge_core::SchemaRegistry::new(&registry_url()).expect("registry");
    let c = consumer(&topics.readings);
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for m in drain(&c, Duration::from_secs(5)).await {
        let Ok(apache_avro::types::Value::Record(fields)) = registry.decode(payload(&m)).await
        else {
            continue;
        };
        let field = |n: &str| {
            fields
                .iter()
                .find(|(k, _)| k == n)
                .and_then(|(_, v)| match v {
                    apache_avro::types::Value::String(s) => Some(s.clone()),
                    _ => None,
                })
        };
        if let (Some(u), Some(metric)) = (field("user_id"), field("metric"))
            && u.starts_with(prefix)
        {
            *seen.entry((u, metric)).or_default() += 1;
        }
    }
    tally.topic_duplicates = seen.values().map(|n| n - 1).sum();
    let users_on_topic: HashMap<&String, usize> =
        seen.keys().fold(HashMap::new(), |mut m, (u, _)| {
            *m.entry(u).or_default() += 1;
            m
        });
    tally.topic_missing = accepted
        .iter()
        .map(|u| {
            (DAILY_READINGS as usize).saturating_sub(users_on_topic.get(*u).copied().unwrap_or(0))
        })
        .sum();
    let d = consumer(&topics.dlq);
    tally.dead_letters = drain(&d, Duration::from_secs(3)).await.len();
    (tally, waited)
}

/// Sum over every label set of a Prometheus metric on `base_url`'s `/metrics`.
pub async fn metric_sum(base_url: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{base_url}/metrics"))
        .await
        .expect("metrics endpoint")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .filter(|l| {
            let n = l.split(['{', ' ']).next().unwrap_or_default();
            n == name
        })
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum()
}

/// Creates `topic` with `partitions` and topic-level `configs`.
pub async fn create_topic_with(topic: &str, partitions: i32, configs: &[(&str, &str)]) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .create()
        .expect("admin client");
    let mut t = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    for r in admin
        .create_topics(
            [&t],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create_topics")
    {
        r.expect("topic created");
    }
}

/// Pipeline topics whose DLQ has topic-level `configs` (e.g. a small `max.message.bytes`).
pub async fn topics_with_dlq(partitions: i32, dlq_configs: &[(&str, &str)]) -> PipelineTopics {
    let raw = unique("raw");
    let t = PipelineTopics {
        readings: format!("{raw}.readings"),
        dlq: format!("{raw}.dlq"),
        group: unique("group"),
        raw,
    };
    create_topic(&t.raw, partitions).await;
    create_topic(&t.readings, partitions).await;
    create_topic_with(&t.dlq, 1, dlq_configs).await;
    t
}

/// Value of header `name` of a Kafka message, as text.
pub fn header(m: &rdkafka::message::OwnedMessage, name: &str) -> Option<String> {
    use rdkafka::message::{Headers, Message};
    m.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// A PostgreSQL database of the test's own on the stack's server (dropped on drop), so
/// a test may TRUNCATE or constrain `readings` without touching anyone else's rows.
pub struct OwnDatabase {
    /// Its URL.
    pub url: String,
    name: String,
}

impl OwnDatabase {
    /// Creates an empty database (the processor applies the migrations).
    pub async fn create() -> OwnDatabase {
        let name = format!("bbtest_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(&database_url())
            .await
            .expect("postgres");
        sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}")))
            .execute(&admin)
            .await
            .expect("create database");
        let base = database_url();
        let cut = base.rfind('/').expect("database in URL");
        OwnDatabase {
            url: format!("{}/{name}", &base[..cut]),
            name,
        }
    }
}

impl Drop for OwnDatabase {
    fn drop(&mut self) {
        // Best effort, outside the test's runtime.
        let (url, name) = (database_url(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let admin = sqlx::PgPool::connect(&url).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "drop database if exists {name} with (force)"
                )))
                .execute(&admin)
                .await
                .ok()
            })
        })
        .join();
    }
}

/// Runs `processor <args>` to completion with `env`; (exit code, stdout, stderr).
pub fn processor_command(args: &[&str], env: &[(&str, String)]) -> (Option<i32>, String, String) {
    let mut cmd = std::process::Command::new(binary("processor"));
    cmd.args(args)
        .env("RUST_LOG", "info")
        .env("KAFKA_BOOTSTRAP_SERVERS", kafka())
        .env("SCHEMA_REGISTRY_URL", registry_url())
        .env("REDIS_URL", redis_url())
        .env("TOKEN_ENCRYPTION_KEY", TEST_TOKEN_KEY);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("processor runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `scripts/stack <cmd>` against the stack the environment points at (its
/// BRIDGE_STATE_DIR and port variables); panics on failure.
pub fn stack(cmd: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/stack");
    let status = std::process::Command::new(script)
        .arg(cmd)
        .status()
        .expect("scripts/stack");
    assert!(status.success(), "scripts/stack {cmd} failed");
}

/// Drills that stop shared services run only against a stack of their own (`make
/// faults` starts one on other ports), unless FAULTS_ALLOW_SHARED=1 (CI, where nothing
/// else runs).
pub fn assert_own_stack() {
    let shared = kafka() == bridge_core::defaults::KAFKA_BOOTSTRAP_SERVERS;
    assert!(
        !shared || std::env::var("FAULTS_ALLOW_SHARED").as_deref() == Ok("1"),
        "this drill stops services: run it with `make faults` (its own stack), or set FAULTS_ALLOW_SHARED=1 where nothing else uses the stack"
    );
}

/// Prints a drill's figures in the form RELIABILITY.md quotes them: `recover` from
/// the end of the fault until every webhook accepted by then had its rows, `settle`
/// after the load ended until every `202` had them.
pub fn report(drill: &str, tally: &Tally, recover: Option<Duration>, settle: Duration) {
    let recover = recover.map_or("-".to_string(), |d| format!("{:.1}s", d.as_secs_f64()));
    println!(
        "DRILL {drill}: {tally} recover={recover} settle={:.1}s",
        settle.as_secs_f64()
    );
}

/// The assertions every drill shares: nothing accepted is missing, nothing extra,
/// nothing dead-lettered.
pub fn assert_exact(drill: &str, tally: &Tally) {
    assert!(tally.accepted > 0, "{drill}: nothing accepted");
    assert_eq!(tally.missing, 0, "{drill}: rows missing: {tally}");
    assert_eq!(tally.extra, 0, "{drill}: extra rows: {tally}");
    // The README says a 503 means Kafka did not take the record.
    assert_eq!(
        tally.unacknowledged, 0,
        "{drill}: rows of webhooks that got no 202: {tally}"
    );
    assert_eq!(
        tally.topic_missing, 0,
        "{drill}: readings missing on the topic: {tally}"
    );
    assert_eq!(tally.dead_letters, 0, "{drill}: dead letters: {tally}");
}
