//! Readings an agent can sum (issue 9), through the real edge and processor: one row per
//! measure across revisions and devices, implausible values kept out, and a changelog
//! whose fold equals the table. Oura is fetch-after-notify: a local HTTP server stands in
//! for Oura's cloud (the only stand-in), as in `fetch.rs`.
//!
//! Every check of the table is followed by the same check of the changelog: its records
//! for the test's users, decoded with the registry's schemas fetched by id and folded from
//! the beginning, equal the table row for row.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bridge_tests::*;
use serde_json::{Value, json};
use sqlx::PgPool;
use warp::Filter;

#[path = "changelog_reader.rs"]
mod changelog_reader;

use changelog_reader::{Changelog, Key, show};

/// Rows as `(metric, source, start, end) → value`, for one user.
type Rows = BTreeMap<(String, Option<String>, String, String), f64>;

async fn pool() -> PgPool {
    PgPool::connect(&database_url()).await.expect("postgres")
}

async fn table(pool: &PgPool, user: &str) -> Rows {
    let rows: Vec<(String, Option<String>, String, String, f64)> = sqlx::query_as(
        "select metric, source, to_char(start_time at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS'), \
         to_char(end_time at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS'), value \
         from readings where user_id = $1",
    )
    .bind(user)
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(m, s, a, b, v)| ((m, s, a, b), v))
        .collect()
}

/// Waits until `check` accepts the user's rows (a loaded machine may be slow), then
/// returns them.
async fn settle(pool: &PgPool, user: &str, what: &str, check: impl Fn(&Rows) -> bool) -> Rows {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let rows = table(pool, user).await;
        if check(&rows) {
            return rows;
        }
        assert!(Instant::now() < deadline, "{what}: rows now {rows:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Quiet time after which the changelog is taken as caught up.
const QUIET: Duration = Duration::from_secs(2);

/// The fold of `user`'s changelog records, in the table's row shape.
fn fold(log: &Changelog, user: &str) -> Rows {
    log.fold_user(user)
        .into_iter()
        .map(|(k, v): (Key, _)| {
            let source = Some(k["source"].clone()).filter(|s| s != "null");
            let micros = |f: &str| {
                let n: i64 = k[f].parse().unwrap();
                chrono::DateTime::from_timestamp_micros(n)
                    .unwrap()
                    .format("%Y-%m-%dT%H:%M:%S")
                    .to_string()
            };
            let value: f64 = show(&v["value"]).parse().unwrap();
            (
                (
                    k["metric"].clone(),
                    source,
                    micros("start_time"),
                    micros("end_time"),
                ),
                value,
            )
        })
        .collect()
}

/// Asserts the fold of `user`'s records equals the table, waiting for late records.
async fn equals_table(log: &mut Changelog, pool: &PgPool, user: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        log.catch_up(QUIET).await;
        let (folded, rows) = (fold(log, user), table(pool, user).await);
        if folded == rows {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{user}: changelog fold {folded:#?} != table {rows:#?}"
        );
    }
}

async fn post_terra(edge: &Edge, body: &Value, ordering: i64) {
    let body = body.to_string().into_bytes();
    let status = reqwest::Client::new()
        .post(format!("{}/webhooks/terra", edge.url))
        .header(
            "terra-signature",
            sign::terra(secrets::TERRA, now_secs(), &body),
        )
        .header("x-terra-ordering-timestamp", ordering.to_string())
        .body(body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 202);
}

fn terra_sleep(user: &str, end: &str, asleep: u32, hr: f64, spo2: f64) -> Value {
    json!({"type": "sleep", "version": "2022-03-16",
    "user": {"user_id": format!("tu-{user}"), "provider": "OURA", "reference_id": user},
    "data": [{
        "metadata": {"summary_id": "night-1", "start_time": "2025-03-01T23:00:00.000000+01:00",
                     "end_time": end, "is_nap": false, "upload_type": 1},
        "sleep_durations_data": {"asleep": {"duration_asleep_state_seconds": asleep}},
        "heart_rate_data": {"summary": {"avg_hr_bpm": hr}},
        "respiration_data": {"oxygen_saturation_data": {"avg_saturation_percentage": spo2}}
    }]})
}

fn terra_daily(user: &str, provider: &str, steps: u32) -> Value {
    json!({"type": "daily", "version": "2022-03-16",
    "user": {"user_id": format!("tu-{user}-{provider}"), "provider": provider, "reference_id": user},
    "data": [{
        "metadata": {"start_time": "2025-03-02T00:00:00.000000+01:00",
                     "end_time": "2025-03-03T00:00:00.000000+01:00", "upload_type": 1},
        "distance_data": {"steps": steps}
    }]})
}

async fn start(extra: &[(&str, String)]) -> (PipelineTopics, Edge, ProcessorProc, PgPool) {
    let topics = PipelineTopics::create(2).await;
    let edge = Edge::start(&topics.raw, &[]).await;
    let processor = ProcessorProc::start(&topics, extra).await;
    (topics, edge, processor, pool().await)
}

fn value_of(rows: &Rows, metric: &str) -> Vec<f64> {
    rows.iter()
        .filter(|(k, _)| k.0 == metric)
        .map(|(_, v)| *v)
        .collect()
}

#[tokio::test]
async fn terra_revisions_devices_and_implausible_values() {
    let (topics, edge, processor, pool) = start(&[]).await;
    let mut log = Changelog::new(&topics.readings);
    let user = unique("rev");

    // A night re-sent with a later end as it syncs: one row per metric, new values.
    post_terra(
        &edge,
        &terra_sleep(
            &user,
            "2025-03-02T06:00:00.000000+01:00",
            25_200,
            55.0,
            96.0,
        ),
        100,
    )
    .await;
    settle(&pool, &user, "first version", |r| {
        value_of(r, "sleep_total") == [25_200.0]
    })
    .await;
    post_terra(
        &edge,
        &terra_sleep(
            &user,
            "2025-03-02T06:30:00.000000+01:00",
            27_000,
            54.0,
            95.0,
        ),
        200,
    )
    .await;
    let rows = settle(&pool, &user, "second version", |r| {
        value_of(r, "sleep_total") == [27_000.0]
    })
    .await;
    // sleep_total, heart_rate, oxygen_saturation and the night's sleep_session.
    assert_eq!(rows.len(), 4, "one set: {rows:#?}");
    assert_eq!(value_of(&rows, "heart_rate"), [54.0]);
    assert!(
        rows.keys().all(|k| k.3 == "2025-03-02T05:30:00"),
        "the new interval only"
    );
    equals_table(&mut log, &pool, &user).await;

    // The older revision arriving last changes nothing, and publishes nothing.
    let before = log.records.len();
    post_terra(
        &edge,
        &terra_sleep(
            &user,
            "2025-03-02T06:00:00.000000+01:00",
            25_200,
            55.0,
            96.0,
        ),
        100,
    )
    .await;
    // A marker user behind it on the same partition proves the stale copy was processed.
    let marker = format!("{user}-m");
    post_terra(&edge, &terra_daily(&marker, "GARMIN", 1), 1).await;
    settle(&pool, &marker, "marker", |r| !r.is_empty()).await;
    log.catch_up(QUIET).await;
    assert_eq!(table(&pool, &user).await, rows, "stale revision ignored");
    assert!(
        log.records[before..]
            .iter()
            .all(|r| r.key["user_id"] != user),
        "no changelog record for a refused copy"
    );

    // Implausible values are not readings: the next revision's 900 bpm and 150 % SpO2
    // are dropped (the old values go with the old version), counted, never clamped.
    post_terra(
        &edge,
        &terra_sleep(
            &user,
            "2025-03-02T06:30:00.000000+01:00",
            27_000,
            900.0,
            150.0,
        ),
        300,
    )
    .await;
    let rows = settle(&pool, &user, "implausible dropped", |r| r.len() == 2).await;
    assert_eq!(value_of(&rows, "sleep_total"), [27_000.0]);
    assert_eq!(value_of(&rows, "sleep_session"), [27_000.0]);
    let text = reqwest::get(format!("{}/metrics", processor.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for metric in ["heart_rate", "oxygen_saturation"] {
        let line = format!("processor_implausible_total{{vendor=\"terra\",metric=\"{metric}\"}} 1");
        assert!(text.lines().any(|l| l == line), "{line} in {text}");
    }
    equals_table(&mut log, &pool, &user).await;

    // Two devices of one user, one day: both kept, whatever order the copies come in.
    let alice = unique("alice");
    for (provider, steps, ordering) in [("GARMIN", 1000, 1), ("OURA", 2000, 1), ("GARMIN", 1500, 2)]
    {
        post_terra(&edge, &terra_daily(&alice, provider, steps), ordering).await;
    }
    let want = |r: &Rows| {
        let steps: BTreeMap<Option<String>, f64> = r
            .iter()
            .filter(|(k, _)| k.0 == "step_count")
            .map(|(k, v)| (k.1.clone(), *v))
            .collect();
        steps
            == BTreeMap::from([
                (Some("GARMIN".into()), 1500.0),
                (Some("OURA".into()), 2000.0),
            ])
    };
    settle(&pool, &alice, "two devices", want).await;
    // Re-deliveries in another order, the old GARMIN copy among them.
    for (provider, steps, ordering) in [
        ("OURA", 2000, 1),
        ("GARMIN", 1000, 1),
        ("GARMIN", 1500, 2),
        ("OURA", 2000, 1),
    ] {
        post_terra(&edge, &terra_daily(&alice, provider, steps), ordering).await;
    }
    let marker = format!("{alice}-m");
    post_terra(&edge, &terra_daily(&marker, "GARMIN", 1), 1).await;
    settle(&pool, &marker, "marker", |r| !r.is_empty()).await;
    let rows = table(&pool, &alice).await;
    assert!(want(&rows), "stable across re-deliveries: {rows:#?}");
    equals_table(&mut log, &pool, &alice).await;
}

#[tokio::test]
async fn a_growing_health_auto_export_sleep_session_is_one_set() {
    let (topics, edge, _processor, pool) = start(&[]).await;
    let mut log = Changelog::new(&topics.readings);
    // The HealthKit principal is shared by every run: this run's rows are told apart by
    // a source (device) name no other run uses, which is part of the identity.
    let device = unique("watch");
    let user = secrets::HEALTHKIT_USER;
    let segment = |start: &str, end: &str, stage: &str| json!({"startDate": start, "endDate": end, "qty": 1, "value": stage, "source": device});
    let post = |segments: Vec<Value>| {
        let body = json!({"data": {"metrics": [{"name": "sleep_analysis", "units": "hr", "data": segments}]}});
        let url = format!("{}/webhooks/healthkit", edge.url);
        async move {
            let status = reqwest::Client::new()
                .post(url)
                .header(
                    "authorization",
                    format!("Bearer {}", secrets::HEALTHKIT_KEY),
                )
                .body(body.to_string())
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 202);
        }
    };
    let mine = |rows: &Rows| -> Rows {
        rows.iter()
            .filter(|(k, _)| k.1.as_deref() == Some(device.as_str()))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    };

    // 3 h synced at 02:00, then the same session at 05:00, grown to 6 h.
    post(vec![segment(
        "2025-03-01 23:00:00 +0000",
        "2025-03-02 02:00:00 +0000",
        "Core",
    )])
    .await;
    settle(&pool, user, "3 h", |r| {
        value_of(&mine(r), "sleep_total") == [10_800.0]
    })
    .await;
    post(vec![
        segment(
            "2025-03-01 23:00:00 +0000",
            "2025-03-02 02:00:00 +0000",
            "Core",
        ),
        segment(
            "2025-03-02 02:00:00 +0000",
            "2025-03-02 05:00:00 +0000",
            "Deep",
        ),
    ])
    .await;
    let rows = settle(&pool, user, "6 h", |r| {
        value_of(&mine(r), "sleep_total") == [21_600.0]
    })
    .await;
    let rows = mine(&rows);
    // Stage rows carry their segment's own interval; every other row spans the session.
    assert!(
        rows.keys()
            .filter(|k| k.0 != "sleep_stage")
            .all(|k| k.3 == "2025-03-02T05:00:00"),
        "one set: {rows:#?}"
    );
    assert_eq!(value_of(&rows, "sleep_deep"), [10_800.0]);
    // The hypnogram: Core (light, 2) then Deep (3), one row per segment.
    assert_eq!(value_of(&rows, "sleep_stage"), [2.0, 3.0]);
    log.catch_up(QUIET).await;
    let folded: Rows = fold(&log, user)
        .into_iter()
        .filter(|(k, _)| k.1.as_deref() == Some(device.as_str()))
        .collect();
    assert_eq!(folded, rows, "changelog fold equals the table");
}

/// Oura's API, as far as these tests need it: documents by path, any bearer token.
#[derive(Clone, Default)]
struct OuraStandIn {
    docs: Arc<Mutex<HashMap<String, Value>>>,
    url: String,
}

impl OuraStandIn {
    async fn start() -> OuraStandIn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let me = OuraStandIn {
            docs: Arc::default(),
            url: format!("http://{addr}"),
        };
        let docs = me.docs.clone();
        let routes = warp::path::full().map(move |path: warp::path::FullPath| {
            match docs.lock().unwrap().get(path.as_str()) {
                Some(doc) => warp::http::Response::builder()
                    .status(200)
                    .header("content-type", "application/json")
                    .body(doc.to_string()),
                None => warp::http::Response::builder()
                    .status(404)
                    .body(r#"{"detail":"not found"}"#.to_string()),
            }
            .unwrap()
        });
        tokio::spawn(warp::serve(routes).incoming(listener).run());
        me
    }

    fn serve(&self, data_type: &str, doc: Value) {
        let id = doc["id"].as_str().unwrap().to_owned();
        self.docs
            .lock()
            .unwrap()
            .insert(format!("/oura/v2/usercollection/{data_type}/{id}"), doc);
    }
}

async fn post_oura(edge: &Edge, event_type: &str, data_type: &str, id: &str, vuid: &str) {
    let body = json!({"event_type": event_type, "data_type": data_type, "object_id": id,
                      "event_time": "2025-03-02T07:42:10+00:00", "user_id": vuid})
    .to_string()
    .into_bytes();
    let now = now_secs();
    let status = reqwest::Client::new()
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

fn account(args: &[&str]) {
    let out = Command::new(binary("processor"))
        .args(args)
        .env("DATABASE_URL", database_url())
        .env("TOKEN_ENCRYPTION_KEY", TEST_TOKEN_KEY)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run processor");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_refetched_oura_day_with_another_offset_is_one_set_and_deletes_remove() {
    let api = OuraStandIn::start().await;
    let env = vec![
        ("OURA_API_BASE_URL", format!("{}/oura", api.url)),
        ("OURA_TOKEN_URL", format!("{}/oura/oauth/token", api.url)),
        ("OURA_CLIENT_ID", "oura-client".into()),
        ("OURA_CLIENT_SECRET", secrets::OURA.into()),
        ("PARK_POLL_INTERVAL", "200ms".into()),
    ];
    let (topics, edge, _processor, pool) = start(&env).await;
    let mut log = Changelog::new(&topics.readings);
    let (user, vuid) = (unique("oura-u"), unique("oura-vu"));
    account(&[
        "link-account",
        "--vendor",
        "oura",
        "--vendor-user-id",
        &vuid,
        "--user-id",
        &user,
        "--access-token",
        "a",
        "--refresh-token",
        "r",
        "--expires-at",
        "2999-01-01T00:00:00Z",
    ]);
    let day = |offset: &str, steps: u32| {
        json!({"id": "act-2025-03-02", "day": "2025-03-02", "timestamp": format!("2025-03-02T04:00:00.000{offset}"),
               "steps": steps, "score": 70})
    };

    api.serve("daily_activity", day("+01:00", 8000));
    post_oura(&edge, "create", "daily_activity", "act-2025-03-02", &vuid).await;
    settle(&pool, &user, "first fetch", |r| {
        value_of(r, "step_count") == [8000.0]
    })
    .await;
    // The user travelled: the same day, re-fetched at another offset.
    api.serve("daily_activity", day("-05:00", 9100));
    post_oura(&edge, "update", "daily_activity", "act-2025-03-02", &vuid).await;
    let rows = settle(&pool, &user, "re-fetch", |r| {
        value_of(r, "step_count") == [9100.0]
    })
    .await;
    assert_eq!(rows.len(), 2, "steps and score, once: {rows:#?}");
    assert!(
        rows.keys().all(|k| k.2 == "2025-03-02T05:00:00"),
        "the day at -05:00"
    );
    equals_table(&mut log, &pool, &user).await;

    // A delete removes the document's rows, and the changelog says so with tombstones.
    post_oura(&edge, "delete", "daily_activity", "act-2025-03-02", &vuid).await;
    settle(&pool, &user, "deleted", Rows::is_empty).await;
    equals_table(&mut log, &pool, &user).await;
    assert!(
        log.records
            .iter()
            .any(|r| r.key["user_id"] == user && r.value.is_none()),
        "tombstones published"
    );
    account(&[
        "unlink-account",
        "--vendor",
        "oura",
        "--vendor-user-id",
        &vuid,
    ]);

    // A notification of a user not linked yet is parked; after link-account the retry
    // task fetches it and goes through the same path: rows and changelog records.
    let (late, late_vuid) = (unique("oura-late"), unique("oura-late-vu"));
    let late_doc = json!({"id": "act-late", "day": "2025-03-03",
        "timestamp": "2025-03-03T04:00:00.000+00:00", "steps": 4321});
    api.serve("daily_activity", late_doc);
    post_oura(&edge, "create", "daily_activity", "act-late", &late_vuid).await;
    let parked = Instant::now() + Duration::from_secs(60);
    loop {
        let n: i64 = sqlx::query_scalar(
            "select count(*) from parked_notifications where vendor_user_id = $1 and closed_at is null",
        )
        .bind(&late_vuid)
        .fetch_one(&pool)
        .await
        .unwrap();
        if n == 1 {
            break;
        }
        assert!(Instant::now() < parked, "notification not parked");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    account(&[
        "link-account",
        "--vendor",
        "oura",
        "--vendor-user-id",
        &late_vuid,
        "--user-id",
        &late,
        "--access-token",
        "a",
        "--refresh-token",
        "r",
        "--expires-at",
        "2999-01-01T00:00:00Z",
    ]);
    settle(&pool, &late, "parked retry", |r| {
        value_of(r, "step_count") == [4321.0]
    })
    .await;
    equals_table(&mut log, &pool, &late).await;
    account(&[
        "unlink-account",
        "--vendor",
        "oura",
        "--vendor-user-id",
        &late_vuid,
    ]);
}

#[tokio::test]
async fn a_missing_changelog_topic_is_created_compacted() {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    let topics = PipelineTopics::create(1).await;
    let changelog = format!("{}.changelog", topics.raw);
    let _processor = ProcessorProc::start(&topics, &[("READINGS_TOPIC", changelog.clone())]).await;
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .create()
        .unwrap();
    let configs = admin
        .describe_configs(
            [&ResourceSpecifier::Topic(&changelog)],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    let config = configs.into_iter().next().unwrap().expect("topic exists");
    let policy = config.get("cleanup.policy").and_then(|e| e.value.clone());
    assert_eq!(policy.as_deref(), Some("compact"));
}
