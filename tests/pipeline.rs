//! The processor on the real stack, fed through the real edge: webhooks become
//! `readings` rows and normalized records; duplicates, stale copies, poison, crashes
//! and a second replica do not change the table.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use bridge_tests::*;

#[path = "changelog_reader.rs"]
mod changelog_reader;
use rdkafka::ClientConfig;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::PgPool;

async fn pool() -> PgPool {
    PgPool::connect(&database_url()).await.expect("postgres")
}

/// (metric → value) of a user's rows, waiting until at least `n` rows exist.
async fn rows(pool: &PgPool, user: &str, n: usize) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: Vec<(String, f64)> =
            sqlx::query_as("select metric, value from readings where user_id = $1")
                .bind(user)
                .fetch_all(pool)
                .await
                .unwrap();
        if got.len() >= n {
            return got.into_iter().collect();
        }
        assert!(
            Instant::now() < deadline,
            "{user}: {} of {n} rows within 60 s: {got:?}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn row_count(pool: &PgPool, user_prefix: &str) -> i64 {
    sqlx::query_scalar("select count(*) from readings where user_id like $1 || '%'")
        .bind(user_prefix)
        .fetch_one(pool)
        .await
        .unwrap()
}

fn terra_daily(reference: &str, day: &str, steps: u32) -> Vec<u8> {
    format!(
        r#"{{"type":"daily","version":"2022-03-16","user":{{"user_id":"tu-{reference}","provider":"GARMIN","reference_id":"{reference}"}},"data":[{{"metadata":{{"start_time":"{day}T00:00:00.000000+00:00","end_time":"{day}T23:59:59.000000+00:00","upload_type":1,"timestamp_localization":0}},"distance_data":{{"steps":{steps},"distance_meters":6310.5}},"calories_data":{{"total_burned_calories":2410.0}},"heart_rate_data":{{"summary":{{"resting_hr_bpm":52,"avg_hrv_rmssd":48.3,"avg_hrv_sdnn":61.7}}}}}}]}}"#
    )
    .into_bytes()
}

/// Readings `terra_daily` normalizes to: steps, distance, total energy, resting HR, RMSSD, SDNN.
const DAILY_READINGS: usize = 6;

fn terra_sleep(reference: &str) -> Vec<u8> {
    format!(
        r#"{{"type":"sleep","version":"2022-03-16","user":{{"user_id":"tu-{reference}","provider":"OURA","reference_id":"{reference}","active":true}},"data":[{{"metadata":{{"summary_id":"slp-{reference}","start_time":"2024-12-31T23:12:00.000000+01:00","end_time":"2025-01-01T07:02:00.000000+01:00","is_nap":false,"upload_type":2,"timestamp_localization":1}},"sleep_durations_data":{{"asleep":{{"duration_asleep_state_seconds":25200,"duration_deep_sleep_state_seconds":5400,"duration_light_sleep_state_seconds":14700,"duration_REM_sleep_state_seconds":5100}},"awake":{{"duration_awake_state_seconds":1500,"sleep_latency_seconds":600}},"other":{{"duration_in_bed_seconds":28200}},"sleep_efficiency":89.4}},"heart_rate_data":{{"summary":{{"avg_hr_bpm":55.2,"min_hr_bpm":47,"resting_hr_bpm":47,"avg_hrv_rmssd":62.0,"avg_hrv_sdnn":null}}}},"respiration_data":{{"breaths_data":{{"avg_breaths_per_min":14.1}},"oxygen_saturation_data":{{"avg_saturation_percentage":96.0}}}},"temperature_data":{{"delta":-0.1}},"scores":{{"sleep":84}}}}]}}"#
    )
    .into_bytes()
}

async fn post_terra(
    edge: &Edge,
    body: &[u8],
    t: i64,
    ordering: Option<i64>,
) -> reqwest::StatusCode {
    post_terra_with(&reqwest::Client::new(), edge, body, t, ordering).await
}

/// [`post_terra`] on a given client. Hundreds of concurrent sends share one: a client
/// per request is built inside each future on the test's single thread (a TLS root
/// store, milliseconds each), so on a loaded machine the first connections waited
/// longer than the edge's HEADER_READ_TIMEOUT for their request head and were rightly
/// closed by the edge.
async fn post_terra_with(
    client: &reqwest::Client,
    edge: &Edge,
    body: &[u8],
    t: i64,
    ordering: Option<i64>,
) -> reqwest::StatusCode {
    let mut req = client
        .post(format!("{}/webhooks/terra", edge.url))
        .header("terra-signature", sign::terra(secrets::TERRA, t, body))
        .body(body.to_vec());
    if let Some(o) = ordering {
        req = req.header("x-terra-ordering-timestamp", o.to_string());
    }
    req.send().await.unwrap().status()
}

#[tokio::test]
async fn terra_and_healthkit_webhooks_become_rows_and_records() {
    let topics = PipelineTopics::create(2).await;
    let edge = Edge::start(&topics.raw, &[]).await;
    let _processor = ProcessorProc::start(&topics, &[]).await;
    let pool = pool().await;
    let user = unique("t-user");

    assert_eq!(
        post_terra(&edge, &terra_sleep(&user), now_secs(), None).await,
        202
    );
    assert_eq!(
        post_terra(
            &edge,
            &terra_daily(&user, "2025-01-01", 8421),
            now_secs(),
            Some(1)
        )
        .await,
        202
    );

    let hk_user = secrets::HEALTHKIT_USER;
    let marker = unique("hk");
    // A unique date per run keeps this run's HealthKit rows apart from earlier runs'.
    let minute = (now_secs() / 60) % 60;
    let hk = format!(
        r#"{{"data":{{"metrics":[{{"name":"heart_rate_variability","units":"ms","data":[{{"qty":48.6,"date":"2025-01-01 06:{minute:02}:00 -0500","source":"{marker}"}}]}},{{"name":"blood_oxygen_saturation","units":"%","data":[{{"qty":0.97,"date":"2025-01-01 03:{minute:02}:00 -0500","source":"{marker}"}}]}}]}}}}"#
    );
    let status = reqwest::Client::new()
        .post(format!("{}/webhooks/healthkit", edge.url))
        .header(
            "authorization",
            format!("Bearer {}", secrets::HEALTHKIT_KEY),
        )
        .body(hk)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 202);

    // The sleep document normalizes to 17 readings (its 14 summaries, heart_rate_min, the
    // sleep_session and sleep_latency), the daily to six.
    let expected = 17 + DAILY_READINGS;
    let got = rows(&pool, &user, expected).await;
    assert_eq!(row_count(&pool, &user).await, expected as i64);
    assert_eq!(got.get("sleep_deep"), Some(&5400.0));
    assert_eq!(got.get("sleep_total"), Some(&25200.0));
    assert!(got.contains_key("hrv_rmssd"));
    assert_eq!(got.get("step_count"), Some(&8421.0));
    assert_eq!(
        got.get("hrv_sdnn"),
        Some(&61.7),
        "SDNN kept apart from RMSSD"
    );
    assert_eq!(got.get("oxygen_saturation"), Some(&96.0));

    let deadline = Instant::now() + Duration::from_secs(30);
    let hk_rows = loop {
        let rows: Vec<(String, f64, String)> = sqlx::query_as(
            "select metric, value, unit from readings where user_id = $1 and source = $2 order by metric",
        )
        .bind(hk_user)
        .bind(&marker)
        .fetch_all(&pool)
        .await
        .unwrap();
        if rows.len() >= 2 || Instant::now() >= deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        hk_rows,
        vec![
            ("hrv_sdnn".to_string(), 48.6, "ms".to_string()),
            ("oxygen_saturation".to_string(), 97.0, "%".to_string()),
        ],
        "HealthKit SpO2 0-1 scaled to percent, HRV as SDNN"
    );

    // The changelog carries the same readings, keyed by their identity, Avro via the
    // registry, every record of a user in the partition Kafka's partitioner gives it.
    let c = consumer(&topics.readings);
    let msgs = read_n(&c, expected + 2, Duration::from_secs(30)).await;
    let mut decoder = changelog_reader::Decoder::default();
    let mut for_user = 0;
    for m in &msgs {
        let record = decoder.record(m).await;
        let value = record.value.as_ref().expect("no removals here");
        assert_eq!(
            changelog_reader::show(&value["user_id"]),
            record.key["user_id"],
            "key and value agree"
        );
        if record.key["user_id"] == user {
            assert_eq!(
                record.partition,
                processor::publish::partition_for(&user, 2),
                "one partition per user"
            );
            for_user += 1;
        }
    }
    assert_eq!(for_user, expected);
}

#[tokio::test]
async fn duplicates_and_stale_copies_change_nothing() {
    let topics = PipelineTopics::create(1).await;
    let edge = Edge::start(&topics.raw, &[]).await;
    let pool = pool().await;
    let user = unique("dup-user");
    let now = now_secs();

    // Same delivery twice, re-signed with a new timestamp, as a vendor retry would.
    let body = terra_daily(&user, "2025-02-01", 5000);
    assert_eq!(post_terra(&edge, &body, now - 10, Some(1_000)).await, 202);
    assert_eq!(post_terra(&edge, &body, now, Some(1_000)).await, 202);
    // A newer cumulative copy of another day, then an older copy of it arriving late.
    let newer = terra_daily(&user, "2025-02-02", 9000);
    let older = terra_daily(&user, "2025-02-02", 7000);
    assert_eq!(post_terra(&edge, &newer, now, Some(2_000)).await, 202);
    assert_eq!(post_terra(&edge, &older, now, Some(1_500)).await, 202);

    let processor = ProcessorProc::start(&topics, &[]).await;
    rows(&pool, &user, 2 * DAILY_READINGS).await;
    // Let every record be processed before counting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(row_count(&pool, &user).await, 2 * DAILY_READINGS as i64);
    let steps: Vec<(f64,)> = sqlx::query_as(
        "select value from readings where user_id = $1 and metric = 'step_count' order by start_time",
    )
    .bind(&user)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        steps,
        vec![(5000.0,), (9000.0,)],
        "older copy did not overwrite the newer"
    );

    // The second copy of the first delivery is a dedup hit, counted.
    let hits = metric(&processor.url, "processor_dedup_hits_total").await;
    assert!(hits >= 1.0, "dedup hits: {hits}");
}

#[tokio::test]
async fn poison_goes_to_the_dlq_and_the_partition_moves_on() {
    let topics = PipelineTopics::create(1).await;
    let edge = Edge::start(&topics.raw, &[]).await;
    let pool = pool().await;
    let user = unique("poison-user");

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::to(&topics.raw)
                .key("k")
                .payload("not avro at all"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    // An authentic envelope whose body no normalizer accepts.
    assert_eq!(
        post_terra(
            &edge,
            br#"{"type":"daily","user":{"user_id":"x"},"data":"#,
            now_secs(),
            None
        )
        .await,
        202
    );
    assert_eq!(
        post_terra(
            &edge,
            &terra_daily(&user, "2025-03-01", 1234),
            now_secs(),
            None
        )
        .await,
        202
    );

    let _processor = ProcessorProc::start(&topics, &[]).await;
    let got = rows(&pool, &user, DAILY_READINGS).await;
    assert_eq!(got.get("step_count"), Some(&1234.0));

    let c = consumer(&topics.dlq);
    let letters = read_n(&c, 2, Duration::from_secs(30)).await;
    let reason = |m: &rdkafka::message::OwnedMessage| {
        m.headers()
            .and_then(|h| {
                h.iter()
                    .find(|h| h.key == "dlq.reason")
                    .and_then(|h| h.value)
            })
            .map(|v| String::from_utf8_lossy(v).to_string())
    };
    assert_eq!(
        payload(&letters[0]),
        b"not avro at all",
        "original bytes kept"
    );
    assert_eq!(reason(&letters[0]).as_deref(), Some("undecodable"));
    assert_eq!(reason(&letters[1]).as_deref(), Some("invalid_json"));
}

/// Sends `n` Terra daily webhooks for users `<prefix>-<i>` through the edge.
async fn send_many(edge: &Edge, prefix: &str, n: usize) {
    let now = now_secs();
    let client = reqwest::Client::new();
    let sends = (0..n).map(|i| {
        let body = terra_daily(&format!("{prefix}-{i}"), "2025-04-01", 1000 + i as u32);
        let client = &client;
        async move { post_terra_with(client, edge, &body, now, None).await }
    });
    for status in futures::future::join_all(sends).await {
        assert_eq!(status, 202);
    }
}

async fn wait_count(pool: &PgPool, prefix: &str, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let n = row_count(pool, prefix).await;
        if n >= want {
            // Nothing beyond the expected rows either.
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert_eq!(row_count(pool, prefix).await, want);
            return;
        }
        assert!(Instant::now() < deadline, "{n} of {want} rows within 90 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn killed_mid_stream_and_restarted_loses_nothing() {
    let topics = PipelineTopics::create(2).await;
    let edge = Edge::start(&topics.raw, &[]).await;
    let pool = pool().await;
    let prefix = unique("crash");
    let n = 300;
    send_many(&edge, &prefix, n).await;

    // Small batches so the kill lands mid-stream.
    let small = [("BATCH_MAX_RECORDS", "10".to_string())];
    let mut first = ProcessorProc::start(&topics, &small).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while row_count(&pool, &prefix).await == 0 {
        assert!(Instant::now() < deadline, "no progress before the kill");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.proc.kill();
    let at_kill = row_count(&pool, &prefix).await;
    let _second = ProcessorProc::start(&topics, &small).await;
    wait_count(&pool, &prefix, (n * DAILY_READINGS) as i64).await;
    eprintln!("rows at kill: {at_kill} of {}", n * DAILY_READINGS);
}

#[tokio::test]
async fn two_replicas_split_partitions_and_process_everything_once() {
    let topics = PipelineTopics::create(4).await;
    let edge = Edge::start(&topics.raw, &[]).await;
    let pool = pool().await;
    let a = ProcessorProc::start(&topics, &[]).await;
    let b = ProcessorProc::start(&topics, &[]).await;
    // Let the group settle with both members before traffic.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let prefix = unique("pair");
    let n = 200;
    send_many(&edge, &prefix, n).await;
    wait_count(&pool, &prefix, (n * DAILY_READINGS) as i64).await;

    let mut consumed = Vec::new();
    for p in [&a, &b] {
        consumed.push(metric(&p.url, "processor_raw_records_total").await);
    }
    assert!(
        consumed.iter().all(|c| *c > 0.0),
        "both replicas took partitions: {consumed:?}"
    );
    assert_eq!(
        consumed.iter().sum::<f64>(),
        n as f64,
        "each raw record processed once"
    );
    let users: HashSet<String> = sqlx::query_scalar::<_, String>(
        "select distinct user_id from readings where user_id like $1 || '%'",
    )
    .bind(&prefix)
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(users.len(), n);
}
