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
