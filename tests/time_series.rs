//! A day of per-minute heart rate (issue 11) through the real edge, Kafka, registry,
//! processor, Redis and PostgreSQL: a Terra `daily` with 1,440 `hr_samples` becomes its
//! summary rows plus 1,440 instant `heart_rate` rows, once. Re-deliveries (the same bytes,
//! and a Terra retry: the same document re-serialized, signed again, a new event id) leave
//! exactly that set and publish nothing; a revision with a later ordering, some samples
//! changed and some gone, replaces the set exactly. The changelog topic's records for the
//! user, decoded with the registry's schemas and folded, equal the table at every step.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bridge_tests::*;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;

#[path = "changelog_reader.rs"]
mod changelog_reader;

use changelog_reader::{Changelog, Key, Record, show};

/// Rows as `(metric, start, end) → value` (UTC, seconds), for one user.
type Rows = BTreeMap<(String, String, String), f64>;

/// Samples in a day: one a minute.
const MINUTES: u32 = 1440;

/// What one version of the day carries.
#[derive(Clone)]
struct Day {
    steps: f64,
    total_kcal: f64,
    avg_hr: f64,
    resting_hr: f64,
    /// Minute of the day → bpm.
    samples: BTreeMap<u32, f64>,
}

/// The local day is 2025-03-02 at +01:00: it starts at 2025-03-01T23:00:00Z.
fn day_start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 23, 0, 0).unwrap()
}

fn utc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S").to_string()
}

fn first_version() -> Day {
    Day {
        steps: 9_876.0,
        total_kcal: 2_345.0,
        avg_hr: 71.0,
        resting_hr: 52.0,
        // 48..=144 bpm, varied, all plausible.
        samples: (0..MINUTES)
            .map(|m| (m, f64::from(48 + (m * 37) % 97)))
            .collect(),
    }
}

/// The revision: minutes 600..660 gone (a gap the device re-synced without), every tenth
/// other minute 5 bpm higher, and the summary revised.
fn revised_version() -> Day {
    let mut day = first_version();
    day.steps = 10_002.0;
    day.avg_hr = 72.0;
    day.samples.retain(|m, _| !(600..660).contains(m));
    for (m, bpm) in day.samples.iter_mut() {
        if m % 10 == 0 {
            *bpm += 5.0;
        }
    }
    day
}

/// The Terra `daily` webhook of `day` (Terra's documented shape, local offsets as sent).
fn body(user: &str, day: &Day) -> Value {
    let samples: Vec<Value> = day
        .samples
        .iter()
        .map(|(m, bpm)| {
            json!({
                "timestamp": format!("2025-03-02T{:02}:{:02}:00.000000+01:00", m / 60, m % 60),
                "bpm": bpm,
            })
        })
        .collect();
    json!({
        "type": "daily",
        "version": "2022-03-16",
        "user": {"user_id": format!("tu-{user}"), "provider": "GARMIN", "reference_id": user},
        "data": [{
            "metadata": {
                "start_time": "2025-03-02T00:00:00.000000+01:00",
                "end_time": "2025-03-03T00:00:00.000000+01:00",
                "upload_type": 1,
            },
            "distance_data": {"steps": day.steps},
            "calories_data": {"total_burned_calories": day.total_kcal},
            "heart_rate_data": {
                "summary": {"avg_hr_bpm": day.avg_hr, "resting_hr_bpm": day.resting_hr},
                "detailed": {"hr_samples": samples},
            },
        }],
    })
}

/// The rows `day` must leave, computed here from the payload's values, not by the
/// normalizer: four summaries over the day, one instant per sample.
fn expected(day: &Day) -> Rows {
    let (start, end) = (day_start(), day_start() + chrono::Duration::days(1));
    let over_day = |metric: &str, v: f64| ((metric.to_string(), utc(start), utc(end)), v);
    let mut rows: Rows = [
        over_day("step_count", day.steps),
        over_day("total_energy", day.total_kcal),
        over_day("heart_rate", day.avg_hr),
        over_day("resting_heart_rate", day.resting_hr),
    ]
    .into_iter()
    .collect();
    for (m, bpm) in &day.samples {
        let t = utc(start + chrono::Duration::minutes(i64::from(*m)));
        rows.insert(("heart_rate".into(), t.clone(), t), *bpm);
    }
    rows
}

async fn table(pool: &PgPool, user: &str) -> Rows {
    let rows: Vec<(String, String, String, f64, String, String)> = sqlx::query_as(
        "select metric, to_char(start_time at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS'), \
         to_char(end_time at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS'), value, \
         source_record_id, coalesce(source, '') \
         from readings where user_id = $1",
    )
    .bind(user)
    .fetch_all(pool)
    .await
    .unwrap();
    // Every row belongs to the day's document: a new version must replace all of them.
    for (metric, start, _, _, record, source) in &rows {
        assert_eq!(
            (record.as_str(), source.as_str()),
            ("daily:2025-03-02", "GARMIN"),
            "{metric} at {start}: the document's identity"
        );
    }
    rows.into_iter()
        .map(|(m, a, b, v, _, _)| ((m, a, b), v))
        .collect()
}

/// Posts `body` signed as Terra signs (`t=…,v1=hex(HMAC(t.body))`), returns the edge's
/// event id.
async fn post(edge: &Edge, body: &[u8], ordering: i64) -> String {
    let response = reqwest::Client::new()
        .post(format!("{}/webhooks/terra", edge.url))
        .header(
            "terra-signature",
            sign::terra(secrets::TERRA, now_secs(), body),
        )
        .header("x-terra-ordering-timestamp", ordering.to_string())
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let answer: Value = response.json().await.unwrap();
    answer["id"].as_str().expect("event id").to_owned()
}

/// Waits until the processor finished `n` raw records (rows committed, changelog
/// acknowledged: its counter moves after both).
async fn processed(processor: &ProcessorProc, n: f64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = metric(&processor.url, "processor_raw_records_total").await;
        assert!(done <= n, "{done} records processed, only {n} sent");
        if done == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {n} records processed in time"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads the changelog until it is quiet for three seconds; returns the records of
/// `user` this call read.
async fn caught_up(log: &mut Changelog, user: &str) -> Vec<Record> {
    log.catch_up(Duration::from_secs(3))
        .await
        .iter()
        .filter(|r| r.key["user_id"] == user)
        .cloned()
        .collect()
}

/// The fold of every record of `user` so far, in the table's row shape.
fn fold(log: &Changelog, user: &str) -> Rows {
    log.fold_user(user)
        .into_iter()
        .map(|(k, v): (Key, _)| {
            let value: f64 = show(&v["value"]).parse().unwrap();
            (row_key(&k), value)
        })
        .collect()
}

/// A changelog key as `(metric, start, end)`.
fn row_key(k: &Key) -> (String, String, String) {
    let at = |f: &str| {
        let micros: i64 = k[f].parse().unwrap();
        utc(DateTime::from_timestamp_micros(micros).unwrap())
    };
    (k["metric"].clone(), at("start_time"), at("end_time"))
}

#[tokio::test]
async fn a_day_of_minute_heart_rate_is_one_set_once_across_redeliveries_and_revisions() {
    // One raw partition: the deliveries are processed in the order they were accepted.
    let topics = PipelineTopics::create(1).await;
    let edge = Edge::start(&topics.raw, &[]).await;
    let processor = ProcessorProc::start(&topics, &[]).await;
    let pool = PgPool::connect(&database_url()).await.expect("postgres");
    let mut log = Changelog::new(&topics.readings);
    let user = unique("minutes");

    // First delivery: 4 summaries + 1,440 instants, every value as sent.
    let day = first_version();
    let want = expected(&day);
    assert_eq!(want.len(), 4 + 1440, "the test's own arithmetic");
    let bytes = body(&user, &day).to_string().into_bytes();
    let first_id = post(&edge, &bytes, 1_000).await;
    processed(&processor, 1.0).await;
    assert_eq!(table(&pool, &user).await, want, "first delivery");
    let records = caught_up(&mut log, &user).await;
    assert_eq!(records.len(), want.len(), "one changelog record per row");
    assert!(records.iter().all(|r| r.value.is_some()), "no tombstones");
    let keys: BTreeSet<_> = records.iter().map(|r| row_key(&r.key)).collect();
    assert_eq!(keys.len(), records.len(), "each row published once");
    assert_eq!(fold(&log, &user), want, "changelog fold = table");

    // The same bytes again (a duplicate delivery): the Redis filter skips it.
    let hits = metric(&processor.url, "processor_dedup_hits_total").await;
    post(&edge, &bytes, 1_000).await;
    processed(&processor, 2.0).await;
    assert_eq!(
        metric(&processor.url, "processor_dedup_hits_total").await,
        hits + 1.0,
        "identical bytes are a dedup hit"
    );
    // A Terra retry: the same document and ordering, other bytes (pretty-printed), a
    // fresh signature and a new event id. Redis cannot know it; the
    // readings' identity in PostgreSQL keeps it one set, and no row changes.
    let retry = serde_json::to_vec_pretty(&body(&user, &day)).unwrap();
    assert_ne!(retry, bytes);
    let retry_id = post(&edge, &retry, 1_000).await;
    assert_ne!(retry_id, first_id, "a new event id");
    processed(&processor, 3.0).await;
    assert_eq!(
        metric(&processor.url, "processor_dedup_hits_total").await,
        hits + 1.0,
        "the retry went through to PostgreSQL"
    );
    assert_eq!(
        table(&pool, &user).await,
        want,
        "re-deliveries leave the set"
    );
    let records = caught_up(&mut log, &user).await;
    assert!(
        records.is_empty(),
        "identical re-deliveries publish nothing, got {} records",
        records.len()
    );

    // A revision (later ordering): 60 samples gone, 138 changed, the summary revised.
    let revised = revised_version();
    let want = expected(&revised);
    assert_eq!(want.len(), 4 + 1380, "the test's own arithmetic");
    let before = expected(&day);
    let gone: BTreeSet<_> = before
        .keys()
        .filter(|k| !want.contains_key(*k))
        .cloned()
        .collect();
    assert_eq!(gone.len(), 60);
    let changed: BTreeSet<_> = want
        .iter()
        .filter(|(k, v)| before.get(*k).is_some_and(|old| old != *v))
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(
        changed.len(),
        138 + 2,
        "every tenth kept minute, steps and mean"
    );
    post(
        &edge,
        &body(&user, &revised).to_string().into_bytes(),
        2_000,
    )
    .await;
    processed(&processor, 4.0).await;
    assert_eq!(
        table(&pool, &user).await,
        want,
        "the revision replaced the set"
    );
    let records = caught_up(&mut log, &user).await;
    let tombstones: BTreeSet<_> = records
        .iter()
        .filter(|r| r.value.is_none())
        .map(|r| row_key(&r.key))
        .collect();
    assert_eq!(tombstones, gone, "a tombstone for each removed sample");
    let upserts: BTreeSet<_> = records
        .iter()
        .filter(|r| r.value.is_some())
        .map(|r| row_key(&r.key))
        .collect();
    assert!(
        changed.is_subset(&upserts),
        "every changed row published: missing {:?}",
        changed.difference(&upserts).collect::<Vec<_>>()
    );
    assert_eq!(fold(&log, &user), want, "changelog fold = table");

    // The first version arriving late (lower ordering) changes and publishes nothing.
    // Both of its serializations were seen (marked in Redis): one more, so it reaches
    // PostgreSQL.
    let late: Vec<u8> = [b" ".as_slice(), &bytes].concat();
    post(&edge, &late, 1_000).await;
    processed(&processor, 5.0).await;
    assert_eq!(
        table(&pool, &user).await,
        want,
        "an older version is refused"
    );
    assert!(
        caught_up(&mut log, &user).await.is_empty(),
        "a refused version publishes nothing"
    );
}
