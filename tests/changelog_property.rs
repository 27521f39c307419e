//! Property test of the data contract through the real edge and processor (issue 9):
//! random sequences of document versions, duplicates, out-of-order copies, replays and
//! deletions for a few users end with
//! (a) the `readings` table equal to a reference model computed here, and
//! (b) the fold of the changelog topic from the beginning equal to the table, row for row,
//!     decoded with the registry's schemas fetched by id, not with the project's types.
//!
//! Each case is one document with its own random history: a Terra sleep summary (versions
//! ordered by `x-terra-ordering-timestamp`, sent in random order with duplicates; some
//! values implausible) or an Oura daily document (fetched after a notification from a local
//! stand-in for Oura's cloud; updates at random UTC offsets and deletions, last one wins).
//! The cases are spread over a few users so they run as one stream of webhooks.
//!
//! `PROPERTY_SEED` replays a run; `PROPERTY_CASES` sets the number of documents (≥ 200).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bridge_tests::*;
use chrono::{DateTime, FixedOffset, NaiveDate, TimeDelta, Utc};
use futures::StreamExt;
use serde_json::{Value, json};
use sqlx::PgPool;
use warp::Filter;

#[path = "changelog_reader.rs"]
mod changelog_reader;

use changelog_reader::{Decoder, show};

/// A row as the test compares it: (source_record_id, metric, source, start µs, end µs) → value.
type Rows = BTreeMap<(String, String, Option<String>, i64, i64), f64>;

/// Seeded generator (SplitMix64): a failing seed replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// One webhook to send, in order within its user.
enum Op {
    Terra { body: Value, ordering: i64 },
    OuraUpdate { doc: Value, event_time: String },
    OuraDelete { id: String, event_time: String },
}

const USERS: usize = 4;

fn micros(t: DateTime<FixedOffset>) -> i64 {
    t.with_timezone(&Utc).timestamp_micros()
}

/// A Terra sleep version: random end, random subset of metrics, sometimes implausible.
/// Returns the body, the rows it should leave if it wins, and whether the processor sees it
/// as a version at all (always: a sleep is a session, so even a body naming no value leaves
/// its `sleep_session` row).
fn terra_version(
    rng: &mut Rng,
    user: &str,
    provider: &str,
    id: &str,
    day: u32,
) -> (Value, Rows, bool) {
    let start = format!("2025-04-{day:02}T23:00:00.000000+02:00");
    let hours = 4 + rng.below(5) as i64;
    let start_t = DateTime::parse_from_rfc3339(&start).unwrap();
    let end_t = start_t + TimeDelta::hours(hours) + TimeDelta::minutes(rng.below(4) as i64 * 15);
    let end = end_t.format("%Y-%m-%dT%H:%M:%S%.6f%:z").to_string();
    let asleep = (hours * 3600 - rng.below(1800) as i64) as f64;
    let hr = if rng.chance(10) {
        900.0
    } else {
        45.0 + rng.below(30) as f64
    };
    let spo2 = if rng.chance(10) {
        150.0
    } else {
        90.0 + rng.below(10) as f64
    };
    let mut data = json!({
        "metadata": {"summary_id": id, "start_time": start, "end_time": end, "upload_type": 1},
    });
    let mut rows = Rows::new();
    let key = |metric: &str| {
        (
            id.to_owned(),
            metric.to_owned(),
            Some(provider.to_owned()),
            micros(start_t),
            micros(end_t),
        )
    };
    rows.insert(key("sleep_session"), (end_t - start_t).num_seconds() as f64);
    if rng.chance(85) {
        data["sleep_durations_data"] = json!({"asleep": {"duration_asleep_state_seconds": asleep}});
        rows.insert(key("sleep_total"), asleep);
    }
    if rng.chance(70) {
        data["heart_rate_data"] = json!({"summary": {"avg_hr_bpm": hr}});
        if hr <= 300.0 {
            rows.insert(key("heart_rate"), hr);
        }
    }
    if rng.chance(60) {
        data["respiration_data"] =
            json!({"oxygen_saturation_data": {"avg_saturation_percentage": spo2}});
        if spo2 <= 100.0 {
            rows.insert(key("oxygen_saturation"), spo2);
        }
    }
    let body = json!({"type": "sleep", "version": "2022-03-16",
        "user": {"user_id": format!("tu-{user}"), "provider": provider, "reference_id": user},
        "data": [data]});
    (body, rows, true)
}

/// An Oura daily_activity version at a random UTC offset; the rows it leaves.
fn oura_version(rng: &mut Rng, id: &str, day: u32) -> (Value, Rows) {
    let offsets = ["+00:00", "+01:00", "-05:00", "+09:00", "-08:00"];
    let offset = offsets[rng.below(offsets.len() as u64) as usize];
    let date = NaiveDate::from_ymd_opt(2025, 5, day).unwrap();
    let tz: FixedOffset = format!("2025-01-01T00:00:00{offset}")
        .parse::<DateTime<FixedOffset>>()
        .unwrap()
        .timezone();
    let start = date
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_local_timezone(tz)
        .unwrap();
    let end = start + TimeDelta::hours(24);
    let steps = rng.below(20_000) as f64;
    let score = rng.below(101) as f64;
    let doc = json!({"id": id, "day": date.to_string(),
        "timestamp": format!("{date}T04:00:00.000{offset}"), "steps": steps, "score": score});
    let key = |metric: &str| {
        (
            id.to_owned(),
            metric.to_owned(),
            None,
            micros(start),
            micros(end),
        )
    };
    let rows = Rows::from([(key("step_count"), steps), (key("activity_score"), score)]);
    (doc, rows)
}

/// Random cases over `USERS` users: the webhooks per user, in order, and the model.
fn generate(seed: u64, cases: usize, users: &[String]) -> (Vec<Vec<Op>>, Vec<Rows>) {
    let mut rng = Rng(seed);
    let mut ops: Vec<Vec<Op>> = (0..users.len()).map(|_| Vec::new()).collect();
    let mut model: Vec<Rows> = vec![Rows::new(); users.len()];
    let mut clock = 0u64;
    for case in 0..cases {
        let u = rng.below(users.len() as u64) as usize;
        let user = &users[u];
        let day = 1 + (case % 28) as u32;
        let mut doc_ops = Vec::new();
        if rng.chance(60) {
            // Terra: distinct orderings per version; sent shuffled, with duplicates.
            let provider = ["GARMIN", "OURA"][rng.below(2) as usize];
            let id = format!("sleep-{case}");
            let n = 1 + rng.below(4) as usize;
            let versions: Vec<(Value, Rows, i64, bool)> = (0..n)
                .map(|k| {
                    let (body, rows, any) = terra_version(&mut rng, user, provider, &id, day);
                    (body, rows, 1_000 + k as i64 * 10 + rng.below(5) as i64, any)
                })
                .collect();
            let mut order: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                order.swap(i, rng.below(i as u64 + 1) as usize);
            }
            for &k in &order {
                doc_ops.push(Op::Terra {
                    body: versions[k].0.clone(),
                    ordering: versions[k].2,
                });
                if rng.chance(25) {
                    // A replay or duplicate delivery, now or later.
                    let j = order[rng.below(n as u64) as usize];
                    doc_ops.push(Op::Terra {
                        body: versions[j].0.clone(),
                        ordering: versions[j].2,
                    });
                }
            }
            // A version whose body names no value at all yields no readings and is not
            // a version the processor can see (README, "Empty versions").
            if let Some(newest) = versions.iter().filter(|v| v.3).max_by_key(|v| v.2) {
                model[u].extend(newest.1.clone());
            }
        } else {
            // Oura: notifications are processed in order; the last one decides.
            let id = format!("act-{case}");
            let mut state: Option<Rows> = None;
            for _ in 0..1 + rng.below(4) {
                clock += 1;
                let event_time = format!(
                    "2025-05-{day:02}T{:02}:{:02}:{:02}+00:00",
                    (clock / 3600) % 24,
                    (clock / 60) % 60,
                    clock % 60
                );
                if state.is_some() && rng.chance(30) {
                    doc_ops.push(Op::OuraDelete {
                        id: id.clone(),
                        event_time,
                    });
                    state = None;
                } else {
                    let (doc, rows) = oura_version(&mut rng, &id, day);
                    doc_ops.push(Op::OuraUpdate { doc, event_time });
                    state = Some(rows);
                }
            }
            if let Some(rows) = state {
                model[u].extend(rows);
            }
        }
        ops[u].extend(doc_ops);
    }
    (ops, model)
}

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
            let doc = docs.lock().unwrap().get(path.as_str()).cloned();
            let (status, body) = match doc {
                Some(d) => (200, d.to_string()),
                None => (404, r#"{"detail":"not found"}"#.to_string()),
            };
            warp::http::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(body)
                .unwrap()
        });
        tokio::spawn(warp::serve(routes).incoming(listener).run());
        me
    }

    fn serve(&self, doc: &Value) {
        let id = doc["id"].as_str().unwrap();
        self.docs.lock().unwrap().insert(
            format!("/oura/v2/usercollection/daily_activity/{id}"),
            doc.clone(),
        );
    }
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

async fn send(client: &reqwest::Client, edge: &str, api: &OuraStandIn, vuid: &str, op: &Op) {
    let (path, body, headers): (&str, Vec<u8>, Vec<(&str, String)>) = match op {
        Op::Terra { body, ordering } => {
            let b = body.to_string().into_bytes();
            let sig = sign::terra(secrets::TERRA, now_secs(), &b);
            (
                "terra",
                b,
                vec![
                    ("terra-signature", sig),
                    ("x-terra-ordering-timestamp", ordering.to_string()),
                ],
            )
        }
        Op::OuraUpdate { doc, event_time } => {
            api.serve(doc);
            oura_notification(vuid, "update", doc["id"].as_str().unwrap(), event_time)
        }
        Op::OuraDelete { id, event_time } => oura_notification(vuid, "delete", id, event_time),
    };
    let mut req = client.post(format!("{edge}/webhooks/{path}")).body(body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let status = req.send().await.unwrap().status();
    assert_eq!(status, 202);
}

fn oura_notification(
    vuid: &str,
    event: &str,
    id: &str,
    event_time: &str,
) -> (&'static str, Vec<u8>, Vec<(&'static str, String)>) {
    let body = json!({"event_type": event, "data_type": "daily_activity", "object_id": id,
                      "event_time": event_time, "user_id": vuid})
    .to_string()
    .into_bytes();
    let now = now_secs();
    let sig = sign::oura(secrets::OURA, now, &body);
    (
        "oura",
        body,
        vec![
            ("x-oura-signature", sig),
            ("x-oura-timestamp", now.to_string()),
        ],
    )
}

/// A `readings` row as selected by [`table`].
type StoredRow = (
    String,
    String,
    Option<String>,
    DateTime<Utc>,
    DateTime<Utc>,
    f64,
);

async fn table(pool: &PgPool, user: &str) -> Rows {
    let rows: Vec<StoredRow> = sqlx::query_as(
        "select source_record_id, metric, source, start_time, end_time, value \
             from readings where user_id = $1",
    )
    .bind(user)
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(id, m, s, a, b, v)| ((id, m, s, a.timestamp_micros(), b.timestamp_micros()), v))
        .collect()
}

#[tokio::test]
async fn table_equals_model_and_changelog_fold_equals_table() {
    let seed = std::env::var("PROPERTY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| uuid::Uuid::new_v4().as_u64_pair().0);
    let cases: usize = std::env::var("PROPERTY_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(240)
        .max(200);
    println!("PROPERTY_SEED={seed} PROPERTY_CASES={cases}");

    let api = OuraStandIn::start().await;
    let env = vec![
        ("OURA_API_BASE_URL", format!("{}/oura", api.url)),
        ("OURA_TOKEN_URL", format!("{}/oura/oauth/token", api.url)),
        ("OURA_CLIENT_ID", "oura-client".into()),
        ("OURA_CLIENT_SECRET", secrets::OURA.into()),
    ];
    let topics = PipelineTopics::create(3).await;
    let edge = Edge::start(&topics.raw, &[]).await;
    let _processor = ProcessorProc::start(&topics, &env).await;
    let pool = PgPool::connect(&database_url()).await.unwrap();

    let run = unique("prop");
    let users: Vec<String> = (0..USERS).map(|i| format!("{run}-u{i}")).collect();
    let vuids: Vec<String> = (0..USERS).map(|i| format!("{run}-vu{i}")).collect();
    for (user, vuid) in users.iter().zip(&vuids) {
        account(&[
            "link-account",
            "--vendor",
            "oura",
            "--vendor-user-id",
            vuid,
            "--user-id",
            user,
            "--access-token",
            "a",
            "--refresh-token",
            "r",
            "--expires-at",
            "2999-01-01T00:00:00Z",
        ]);
    }
    let (ops, model) = generate(seed, cases, &users);
    let webhooks: usize = ops.iter().map(Vec::len).sum();
    println!("{webhooks} webhooks for {cases} documents over {USERS} users");

    // Users in parallel, each user's webhooks in order (the edge keys them by user, so the
    // processor sees them in this order).
    let client = reqwest::Client::new();
    let started = Instant::now();
    futures::stream::iter(ops.iter().zip(&vuids))
        .for_each_concurrent(USERS, |(user_ops, vuid)| {
            let (client, api, edge) = (&client, &api, edge.url.as_str());
            async move {
                for op in user_ops {
                    send(client, edge, api, vuid, op).await;
                }
            }
        })
        .await;
    println!("sent in {:?}", started.elapsed());

    // (a) The table converges to the model (a loaded machine may take a while).
    let deadline = Instant::now() + Duration::from_secs(180);
    for (user, want) in users.iter().zip(&model) {
        loop {
            let got = table(&pool, user).await;
            if &got == want {
                break;
            }
            if Instant::now() > deadline {
                let missing: Vec<_> = want
                    .iter()
                    .filter(|(k, v)| got.get(*k) != Some(*v))
                    .collect();
                let extra: Vec<_> = got
                    .iter()
                    .filter(|(k, v)| want.get(*k) != Some(*v))
                    .collect();
                panic!(
                    "seed {seed}, {user}: table != model\nmissing or different: {missing:#?}\nextra or different: {extra:#?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    // Nothing more arrives later and changes it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (user, want) in users.iter().zip(&model) {
        assert_eq!(
            &table(&pool, user).await,
            want,
            "seed {seed}, {user}: table moved"
        );
    }

    // (b) The changelog from the beginning, folded, equals the table.
    let c = consumer(&topics.readings);
    let mut decoder = Decoder::default();
    let mut records = Vec::new();
    for m in drain(&c, Duration::from_secs(5)).await {
        records.push(decoder.record(&m).await);
    }
    let mut partitions: HashMap<String, i32> = HashMap::new();
    for r in &records {
        let p = *partitions
            .entry(r.key["user_id"].clone())
            .or_insert(r.partition);
        assert_eq!(p, r.partition, "one partition per user");
    }
    for (user, want) in users.iter().zip(&model) {
        let mine: Vec<_> = records
            .iter()
            .filter(|r| &r.key["user_id"] == user)
            .cloned()
            .collect();
        let folded: Rows = changelog_reader::fold(&mine)
            .into_iter()
            .map(|(k, v)| {
                let source = Some(k["source"].clone()).filter(|s| s != "null");
                let value: f64 = show(&v["value"]).parse().unwrap();
                (
                    (
                        k["source_record_id"].clone(),
                        k["metric"].clone(),
                        source,
                        k["start_time"].parse().unwrap(),
                        k["end_time"].parse().unwrap(),
                    ),
                    value,
                )
            })
            .collect();
        assert_eq!(
            &folded, want,
            "seed {seed}, {user}: changelog fold != table"
        );
    }
    let tombstones = records.iter().filter(|r| r.value.is_none()).count();
    println!(
        "{} changelog records, {tombstones} tombstones",
        records.len()
    );
    assert!(tombstones > 0, "seed {seed}: the run exercised removals");

    for vuid in &vuids {
        account(&[
            "unlink-account",
            "--vendor",
            "oura",
            "--vendor-user-id",
            vuid,
        ]);
    }
}
