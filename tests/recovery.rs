//! The raw topic is the source of truth: `processor replay` restores a table emptied
//! (as a normalizer fix or a restore would need) by re-running a range, dedup bypassed;
//! `processor redrive` turns dead letters whose cause was fixed into rows. Each test
//! has a database of its own, so TRUNCATE and constraints touch nobody else.

mod faultkit;

use std::time::{Duration, Instant};

use bridge_tests::*;

async fn wait_rows(pool: &sqlx::PgPool, prefix: &str, want: i64, within: Duration) -> i64 {
    let deadline = Instant::now() + within;
    loop {
        let n: i64 = faultkit::rows_by_user(pool, prefix).await.values().sum();
        if n >= want || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn env_for(topics: &PipelineTopics, db: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", db.to_string()),
        ("RAW_TOPIC", topics.raw.clone()),
        ("READINGS_TOPIC", topics.readings.clone()),
        ("DLQ_TOPIC", topics.dlq.clone()),
        ("PROCESSOR_GROUP_ID", topics.group.clone()),
    ]
}

#[tokio::test]
async fn replay_after_truncate_restores_every_row_despite_dedup() {
    let db = faultkit::OwnDatabase::create().await;
    let topics = PipelineTopics::create(2).await;
    let edge = Edge::start(&topics.raw, &[]).await;
    let mut processor = ProcessorProc::start(&topics, &[("DATABASE_URL", db.url.clone())]).await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let http = reqwest::Client::new();
    let prefix = unique("replay-user");
    for i in 0..30 {
        let body = faultkit::terra_daily(&format!("{prefix}-{i}"), "2025-05-01", 1000 + i);
        assert_eq!(faultkit::post_terra(&http, &edge.url, &body).await, 202);
    }
    let want = 30 * faultkit::DAILY_READINGS;
    assert_eq!(
        wait_rows(&pool, &prefix, want, Duration::from_secs(60)).await,
        want
    );
    assert_eq!(processor.proc.terminate(Duration::from_secs(30)), Some(0));

    // A normalizer fix (or a restore) needs the rows rebuilt. The dedup marks of this
    // group are all set: an ordinary re-consume would skip every record.
    sqlx::query("truncate readings")
        .execute(&pool)
        .await
        .unwrap();
    let env = env_for(&topics, &db.url);
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
        faultkit::processor_command(&["replay", "--from-offset", "0"], &env)
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("replayed 30 record(s)"), "{stdout}");
    let by_user = faultkit::rows_by_user(&pool, &prefix).await;
    assert_eq!(by_user.len(), 30, "every user back");
    assert!(by_user.values().all(|n| *n == faultkit::DAILY_READINGS));
    let steps: i64 = sqlx::query_scalar(
        "select count(*) from readings where user_id like $1 || '-%' and metric = 'step_count' and value >= 1000",
    )
    .bind(&prefix)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(steps, 30);

    // Replaying again changes nothing (idempotent by the table's keys).
    let env = env_for(&topics, &db.url);
    let (code, _, stderr) = tokio::task::spawn_blocking(move || {
        faultkit::processor_command(&["replay", "--partition", "0"], &env)
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        faultkit::rows_by_user(&pool, &prefix)
            .await
            .values()
            .sum::<i64>(),
        want
    );
}

#[tokio::test]
async fn redriven_dead_letter_becomes_rows_once_its_cause_is_fixed() {
    let db = faultkit::OwnDatabase::create().await;
    let topics = PipelineTopics::create(1).await;
    let edge = Edge::start(&topics.raw, &[]).await;
    let processor = ProcessorProc::start(&topics, &[("DATABASE_URL", db.url.clone())]).await;
    wait_http_ok(&format!("{}/ready", processor.url), Duration::from_secs(60)).await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    // The cause: a constraint an operator added by mistake refuses big step counts.
    sqlx::query(
        "alter table readings add constraint steps_cap check (metric <> 'step_count' or value < 100000)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let prefix = unique("redrive-user");
    let good = faultkit::terra_daily(&format!("{prefix}-0"), "2025-05-01", 1000);
    let refused = faultkit::terra_daily(&format!("{prefix}-1"), "2025-05-01", 150_000);
    assert_eq!(faultkit::post_terra(&http, &edge.url, &good).await, 202);
    assert_eq!(faultkit::post_terra(&http, &edge.url, &refused).await, 202);
    let dlq = consumer(&topics.dlq);
    let letters = read_n(&dlq, 1, Duration::from_secs(60)).await;
    assert_eq!(
        faultkit::header(&letters[0], "dlq.reason").as_deref(),
        Some("rejected_by_database")
    );
    assert_eq!(
        wait_rows(
            &pool,
            &prefix,
            faultkit::DAILY_READINGS,
            Duration::from_secs(30)
        )
        .await,
        faultkit::DAILY_READINGS,
        "only the good webhook's rows"
    );

    // The fix is deployed; other reasons are left alone, then the right one redriven.
    sqlx::query("alter table readings drop constraint steps_cap")
        .execute(&pool)
        .await
        .unwrap();
    let env = env_for(&topics, &db.url);
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
        faultkit::processor_command(&["redrive", "--reason", "invalid_json"], &env)
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("redrove 0 dead letter(s)"), "{stdout}");
    let env = env_for(&topics, &db.url);
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
        faultkit::processor_command(&["redrive", "--reason", "rejected_by_database"], &env)
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("redrove 1 dead letter(s)"), "{stdout}");
    let want = 2 * faultkit::DAILY_READINGS;
    assert_eq!(
        wait_rows(&pool, &prefix, want, Duration::from_secs(60)).await,
        want
    );
    let steps: f64 = sqlx::query_scalar(
        "select value from readings where user_id = $1 and metric = 'step_count'",
    )
    .bind(format!("{prefix}-1"))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(steps, 150_000.0);
    drop(processor);
}
