//! Fault-injection drills on the real stack: real load (signed Terra webhooks at a
//! steady rate through the real edge), a real fault, then the accounting every drill
//! reports — sent, 202, rows, missing, extra, readings-topic duplicates, dead letters,
//! time to recover. Every 202 must end as its rows and its readings records, with
//! nothing missing, nothing extra and nothing dead-lettered.
//!
//! The processor `kill -9` drill touches only processes it started and runs in `make
//! test`. The others stop Kafka, the registry, PostgreSQL or Redis: they are
//! `#[ignore]`d here and run by `make faults`, which starts a stack of its own on other
//! ports (they refuse to run against the shared default stack).

mod faultkit;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bridge_tests::*;
use faultkit::{Sent, Tally};

/// Webhooks per second in every drill (the rate the issue measured with).
const RATE: u32 = 40;

/// Small batches, so a crash lands between many commits.
fn small_batches() -> Vec<(&'static str, String)> {
    vec![
        ("BATCH_MAX_RECORDS", "10".into()),
        ("BATCH_MAX_WAIT", "20ms".into()),
    ]
}

/// Load running in the background, with its progress visible for recovery timing.
struct Load {
    progress: Arc<Mutex<Sent>>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(prefix: &str, secs: u64, edge_url: String) -> Load {
        let progress = Arc::new(Mutex::new(Sent::default()));
        let task = tokio::spawn({
            let (prefix, progress) = (prefix.to_string(), progress.clone());
            async move {
                faultkit::load_into(
                    &prefix,
                    RATE,
                    Duration::from_secs(secs),
                    move || edge_url.clone(),
                    progress,
                )
                .await
            }
        });
        Load { progress, task }
    }

    /// Starts timing the recovery now (call as the fault ends).
    fn recovery(&self, pool: &sqlx::PgPool, prefix: &str) -> tokio::task::JoinHandle<Duration> {
        let (pool, prefix, progress) = (pool.clone(), prefix.to_string(), self.progress.clone());
        tokio::spawn(async move {
            faultkit::time_to_recover(&pool, &prefix, &progress, Duration::from_secs(300)).await
        })
    }

    async fn end(self) -> Sent {
        let _ = self.task.await;
        std::mem::take(&mut *self.progress.lock().unwrap())
    }
}

async fn finish(
    drill: &str,
    prefix: &str,
    load: Load,
    recovery: Option<tokio::task::JoinHandle<Duration>>,
    topics: &PipelineTopics,
    pool: &sqlx::PgPool,
) -> Tally {
    let sent = load.end().await;
    let (tally, settled) =
        faultkit::settle(pool, prefix, &sent, topics, Duration::from_secs(300)).await;
    let recover = match recovery {
        Some(r) => r.await.ok(),
        None => None,
    };
    faultkit::report(drill, &tally, recover, settled);
    faultkit::assert_exact(drill, &tally);
    tally
}

#[tokio::test]
async fn processor_kill_9_six_times_under_load() {
    let topics = PipelineTopics::create(2).await;
    let edge = Edge::start(&topics.raw, &[]).await;
    let pool = sqlx::PgPool::connect(&database_url()).await.unwrap();
    let prefix = unique("drill-kill");
    let load = Load::start(&prefix, 30, edge.url.clone());
    let mut processor = ProcessorProc::start(&topics, &small_batches()).await;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_secs(4)).await;
        processor.proc.kill();
        processor = ProcessorProc::start(&topics, &small_batches()).await;
    }
    let recovery = load.recovery(&pool, &prefix);
    finish(
        "processor-kill-9x6",
        &prefix,
        load,
        Some(recovery),
        &topics,
        &pool,
    )
    .await;
    drop(processor);
}

#[tokio::test]
#[ignore = "stops the registry: run by `make faults` on its own stack"]
async fn registry_restart_with_records_queued() {
    faultkit::assert_own_stack();
    let topics = PipelineTopics::create(2).await;
    let edge = Edge::start(&topics.raw, &[]).await;
    let pool = sqlx::PgPool::connect(&database_url()).await.unwrap();
    let prefix = unique("drill-registry");
    let mut processor = ProcessorProc::start(&topics, &[]).await;
    let load = Load::start(&prefix, 40, edge.url.clone());
    tokio::time::sleep(Duration::from_secs(8)).await;
    // Registry down, then the processor restarted while it is down: the new processor
    // has no cached schemas and must resolve the edge's pinned id after the restart.
    faultkit::stack("registry-stop");
    tokio::time::sleep(Duration::from_secs(4)).await;
    processor.proc.kill();
    tokio::time::sleep(Duration::from_secs(4)).await;
    faultkit::stack("registry-start");
    processor = ProcessorProc::start(&topics, &[]).await;
    let recovery = load.recovery(&pool, &prefix);
    finish(
        "registry-restart",
        &prefix,
        load,
        Some(recovery),
        &topics,
        &pool,
    )
    .await;
    drop(processor);
}

#[tokio::test]
#[ignore = "kills the broker: run by `make faults` on its own stack"]
async fn kafka_kill_9_restarted_after_30s() {
    faultkit::assert_own_stack();
    let topics = PipelineTopics::create(2).await;
    let edge = Edge::start(&topics.raw, &[]).await;
    let pool = sqlx::PgPool::connect(&database_url()).await.unwrap();
    let prefix = unique("drill-kafka");
    let processor = ProcessorProc::start(&topics, &[]).await;
    let load = Load::start(&prefix, 60, edge.url.clone());
    tokio::time::sleep(Duration::from_secs(10)).await;
    faultkit::stack("kafka-kill");
    tokio::time::sleep(Duration::from_secs(30)).await;
    faultkit::stack("kafka-start");
    let recovery = load.recovery(&pool, &prefix);
    // Some webhooks got 503 while the broker was gone: they were never accepted.
    let tally = finish(
        "kafka-kill-9",
        &prefix,
        load,
        Some(recovery),
        &topics,
        &pool,
    )
    .await;
    assert!(tally.accepted < tally.sent, "the outage was real: {tally}");
    drop(processor);
}

#[tokio::test]
#[ignore = "stops PostgreSQL: run by `make faults` on its own stack"]
async fn postgres_stopped_immediate_for_60s() {
    faultkit::assert_own_stack();
    let topics = PipelineTopics::create(2).await;
    let edge = Edge::start(&topics.raw, &[]).await;
    let prefix = unique("drill-pg");
    let processor = ProcessorProc::start(&topics, &[]).await;
    let pool = sqlx::PgPool::connect(&database_url()).await.unwrap();
    let load = Load::start(&prefix, 90, edge.url.clone());
    tokio::time::sleep(Duration::from_secs(10)).await;
    faultkit::stack("pg-stop-immediate");
    tokio::time::sleep(Duration::from_secs(60)).await;
    faultkit::stack("pg-start");
    let recovery = load.recovery(&pool, &prefix);
    finish(
        "postgres-stop-60s",
        &prefix,
        load,
        Some(recovery),
        &topics,
        &pool,
    )
    .await;
    assert!(
        faultkit::metric_sum(&processor.url, "processor_retries_total").await > 0.0,
        "the outage was retried"
    );
    drop(processor);
}

#[tokio::test]
#[ignore = "stops PostgreSQL for 4+ minutes: run by `make faults` on its own stack"]
async fn postgres_outage_past_240s_exits_and_a_restart_finishes() {
    faultkit::assert_own_stack();
    let topics = PipelineTopics::create(1).await;
    let edge = Edge::start(&topics.raw, &[]).await;
    let prefix = unique("drill-pg-long");
    let mut processor = ProcessorProc::start(&topics, &[]).await;
    faultkit::stack("pg-stop-immediate");
    let load = Load::start(&prefix, 10, edge.url.clone());
    let started = Instant::now();
    let code = loop {
        if let Some(status) = processor.proc.child.try_wait().unwrap() {
            break status.code();
        }
        assert!(
            started.elapsed() < Duration::from_secs(330),
            "processor still running after the 240 s bound"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_ne!(code, Some(0), "an outage exit is a failure exit");
    println!(
        "processor exited after {:.0}s of outage",
        started.elapsed().as_secs_f64()
    );
    faultkit::stack("pg-start");
    let pool = sqlx::PgPool::connect(&database_url()).await.unwrap();
    let recovery = load.recovery(&pool, &prefix);
    processor = ProcessorProc::start(&topics, &[]).await;
    finish(
        "postgres-past-240s",
        &prefix,
        load,
        Some(recovery),
        &topics,
        &pool,
    )
    .await;
    drop(processor);
}

#[tokio::test]
#[ignore = "stops Redis: run by `make faults` on its own stack"]
async fn redis_stopped_mid_load() {
    faultkit::assert_own_stack();
    let topics = PipelineTopics::create(2).await;
    let edge = Edge::start(&topics.raw, &[]).await;
    let pool = sqlx::PgPool::connect(&database_url()).await.unwrap();
    let prefix = unique("drill-redis");
    let processor = ProcessorProc::start(&topics, &[]).await;
    let load = Load::start(&prefix, 30, edge.url.clone());
    tokio::time::sleep(Duration::from_secs(8)).await;
    faultkit::stack("redis-stop");
    tokio::time::sleep(Duration::from_secs(15)).await;
    faultkit::stack("redis-start");
    let recovery = load.recovery(&pool, &prefix);
    finish("redis-stop", &prefix, load, Some(recovery), &topics, &pool).await;
    assert!(
        metric(&processor.url, "processor_dedup_errors_total").await > 0.0,
        "Redis errors were counted"
    );
    drop(processor);
}

#[tokio::test]
#[ignore = "long rebalance drill: run by `make faults`"]
async fn rebalance_under_load() {
    let topics = PipelineTopics::create(4).await;
    let edge = Edge::start(&topics.raw, &[]).await;
    let pool = sqlx::PgPool::connect(&database_url()).await.unwrap();
    let prefix = unique("drill-rebalance");
    let mut a = ProcessorProc::start(&topics, &small_batches()).await;
    let load = Load::start(&prefix, 75, edge.url.clone());
    tokio::time::sleep(Duration::from_secs(20)).await;
    let b = ProcessorProc::start(&topics, &small_batches()).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(
        a.proc.terminate(Duration::from_secs(30)),
        Some(0),
        "A drains"
    );
    tokio::time::sleep(Duration::from_secs(20)).await;
    a = ProcessorProc::start(&topics, &small_batches()).await;
    let recovery = load.recovery(&pool, &prefix);
    finish("rebalance", &prefix, load, Some(recovery), &topics, &pool).await;
    // Committed offsets reach the log end once everything settled.
    let c = {
        use rdkafka::consumer::Consumer;
        let c: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", kafka())
            .set("group.id", &topics.group)
            .create()
            .unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..4 {
            tpl.add_partition(&topics.raw, p);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let committed = c
                .committed_offsets(tpl.clone(), Duration::from_secs(10))
                .unwrap();
            let behind: Vec<(i32, i64, i64)> = (0..4)
                .filter_map(|p| {
                    let (_, high) = c
                        .fetch_watermarks(&topics.raw, p, Duration::from_secs(10))
                        .unwrap();
                    let at = committed
                        .find_partition(&topics.raw, p)
                        .and_then(|e| e.offset().to_raw())
                        .unwrap_or(-1);
                    (at != high).then_some((p, at, high))
                })
                .collect();
            if behind.is_empty() || Instant::now() > deadline {
                break behind;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    assert!(c.is_empty(), "committed offsets behind the log end: {c:?}");
    drop((a, b));
}

/// Stand-in for Oura's REST API and token endpoint (a third-party cloud): any bearer
/// gets the daily_sleep fixture; the token endpoint answers after `delay`.
async fn oura_stand_in(delay: Duration) -> String {
    use warp::Filter;
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../vendors/tests/fixtures/oura/daily_sleep.json"
    ))
    .expect("fixture");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let token = warp::post()
        .and(warp::path!("oura" / "oauth" / "token"))
        .then(move || async move {
            tokio::time::sleep(delay).await;
            let n = uuid::Uuid::new_v4().simple().to_string();
            warp::reply::json(&serde_json::json!({
                "access_token": format!("a-{n}"), "refresh_token": format!("r-{n}"),
                "expires_in": 3600, "token_type": "bearer"}))
        });
    let docs = warp::get()
        .and(warp::path!(
            "oura" / "v2" / "usercollection" / "daily_sleep" / String
        ))
        .map(move |_id: String| {
            warp::http::Response::builder()
                .header("content-type", "application/json")
                .body(doc.clone())
                .unwrap()
        });
    tokio::spawn(
        warp::serve(token.or(docs))
            .incoming(listener)
            .graceful(std::future::pending::<()>())
            .run(),
    );
    format!("http://{addr}")
}

/// A Terra user and when its webhook got 202.
type Answered = (String, chrono::DateTime<chrono::Utc>);

/// Terra end-to-end latency (202 answer → row in PostgreSQL) at `rate`/s for `secs`,
/// with `accounts` expired Oura accounts notified at the start. Returns (p50, p99, n).
async fn terra_latency_with_expired_accounts(
    token_delay: Duration,
    rate: u32,
    secs: u64,
    accounts: usize,
) -> (f64, f64, usize) {
    let api = oura_stand_in(token_delay).await;
    let topics = PipelineTopics::create(2).await;
    let edge = Edge::start(&topics.raw, &[]).await;
    let env = vec![
        ("OURA_API_BASE_URL", format!("{api}/oura")),
        ("OURA_TOKEN_URL", format!("{api}/oura/oauth/token")),
        ("OURA_CLIENT_ID", "oura-client".into()),
        ("OURA_CLIENT_SECRET", secrets::OURA.into()),
        ("PARK_POLL_INTERVAL", "200ms".into()),
    ];
    let processor = ProcessorProc::start(&topics, &env).await;
    let pool = sqlx::PgPool::connect(&database_url()).await.unwrap();
    let run = unique("drill8");
    let vuids: Vec<String> = (0..accounts).map(|i| format!("{run}-vu{i}")).collect();
    for (i, vuid) in vuids.iter().enumerate() {
        let (code, _, err) = faultkit::processor_command(
            &[
                "link-account",
                "--vendor",
                "oura",
                "--vendor-user-id",
                vuid,
                "--user-id",
                &format!("{run}-oura{i}"),
                "--access-token",
                "expired",
                "--refresh-token",
                "r0",
                "--expires-at",
                "2001-01-01T00:00:00Z",
            ],
            &[("DATABASE_URL", database_url())],
        );
        assert_eq!(code, Some(0), "{err}");
    }
    let http = reqwest::Client::new();
    for vuid in &vuids {
        let body = serde_json::json!({"event_type": "create", "data_type": "daily_sleep",
            "object_id": "d-sleep-2025-01-01", "event_time": "2025-01-01T07:42:10+00:00",
            "user_id": vuid})
        .to_string()
        .into_bytes();
        let now = now_secs();
        let status = http
            .post(format!("{}/webhooks/oura", edge.url))
            .header("x-oura-signature", sign::oura(secrets::OURA, now, &body))
            .header("x-oura-timestamp", now.to_string())
            .body(body)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 202);
    }
    // Terra load, each webhook's 202 time recorded.
    let prefix = format!("{run}-terra");
    let answered: Arc<Mutex<Vec<Answered>>> = Arc::default();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    let started = Instant::now();
    let mut tasks = Vec::new();
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(secs) {
        tick.tick().await;
        let (http, url, answered) = (http.clone(), edge.url.clone(), answered.clone());
        let user = format!("{prefix}-{i}");
        i += 1;
        tasks.push(tokio::spawn(async move {
            let body = faultkit::terra_daily(&user, "2025-05-01", 1000);
            if faultkit::post_terra(&http, &url, &body).await == 202 {
                answered.lock().unwrap().push((user, chrono::Utc::now()));
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let answered = std::mem::take(&mut *answered.lock().unwrap());
    let deadline = Instant::now() + Duration::from_secs(120);
    let landed: std::collections::HashMap<String, chrono::DateTime<chrono::Utc>> = loop {
        let rows: Vec<(String, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
            "select user_id, min(ingested_at) from readings where user_id like $1 || '-%' group by 1",
        )
        .bind(&prefix)
        .fetch_all(&pool)
        .await
        .unwrap();
        if rows.len() >= answered.len() || Instant::now() > deadline {
            break rows.into_iter().collect();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(landed.len(), answered.len(), "every Terra 202 has rows");
    let mut lat: Vec<f64> = answered
        .iter()
        .map(|(u, at)| ((landed[u] - *at).num_microseconds().unwrap_or(0) as f64 / 1e6).max(0.0))
        .collect();
    // Where the tail is: seconds into the load of the slowest webhooks.
    let t0 = answered.iter().map(|(_, at)| *at).min().unwrap_or_default();
    let mut worst: Vec<(f64, f64)> = answered
        .iter()
        .zip(&lat)
        .map(|((_, at), l)| ((*at - t0).num_milliseconds() as f64 / 1e3, *l))
        .collect();
    worst.sort_by(|a, b| b.1.total_cmp(&a.1));
    let tail: Vec<String> = worst
        .iter()
        .take(40)
        .step_by(8)
        .map(|(t, l)| format!("{l:.2}s@{t:.1}s"))
        .collect();
    println!(
        "terra latency tail (token delay {token_delay:?}): {}",
        tail.join(" ")
    );
    lat.sort_by(f64::total_cmp);
    let pick = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    // The Oura notifications land too, once their refreshes are stored.
    let oura_rows = {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let n: i64 = sqlx::query_scalar(
                "select count(distinct user_id) from readings where user_id like $1 || '-oura%'",
            )
            .bind(&run)
            .fetch_one(&pool)
            .await
            .unwrap();
            if n as usize >= accounts || Instant::now() > deadline {
                break n;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    for vuid in &vuids {
        let _ = faultkit::processor_command(
            &[
                "unlink-account",
                "--vendor",
                "oura",
                "--vendor-user-id",
                vuid,
            ],
            &[("DATABASE_URL", database_url())],
        );
    }
    assert_eq!(
        oura_rows as usize, accounts,
        "every notification fetched after its refresh"
    );
    drop(processor);
    (pick(0.5), pick(0.99), lat.len())
}

#[tokio::test]
#[ignore = "latency comparison under load: run by `make faults`"]
async fn slow_token_endpoint_keeps_terra_latency() {
    faultkit::assert_own_stack();
    let (rate, secs, accounts) = (200, 20, 20);
    let (p50_a, p99_a, n_a) =
        terra_latency_with_expired_accounts(Duration::from_millis(50), rate, secs, accounts).await;
    let (p50_b, p99_b, n_b) =
        terra_latency_with_expired_accounts(Duration::from_secs(9), rate, secs, accounts).await;
    println!(
        "DRILL slow-token-endpoint: terra_webhooks={n_a}/{n_b} p50={p50_a:.3}s/{p50_b:.3}s p99={p99_a:.3}s/{p99_b:.3}s ratio_p99={:.2} (no fault / 9 s token endpoint)",
        p99_b / p99_a
    );
    assert!(
        p99_b <= 2.0 * p99_a,
        "Terra p99 {p99_b:.3}s with a 9 s token endpoint, {p99_a:.3}s without"
    );
}
