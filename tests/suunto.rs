//! Suunto through the real edge and processor: signed 24/7 and workout webhooks become
//! the right `readings` rows; a workout whose webhook copy is incomplete is fetched by
//! `workoutKey` from a local stand-in for Suunto's cloud (the only stand-in: a
//! third-party API), with the account's token and the APIM subscription key; a
//! tampered delivery is refused and appends nothing.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bridge_tests::*;
use serde_json::{Value, json};
use sqlx::PgPool;
use warp::Filter;

const SECRET: &str = "suunto-test-notification-secret";
const ACCESS: &str = "suunto-access-token";
const APIM_KEY: &str = "suunto-apim-key";
const PARTIAL_KEY: &str = "6760aaaa401b942184620001";

fn fixture(name: &str) -> Value {
    let file = format!(
        "{}/../vendors/tests/fixtures/suunto/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&file).expect("fixture")).expect("JSON")
}

/// Requests the stand-in saw: (path, bearer, subscription key).
type Calls = Arc<Mutex<Vec<(String, Option<String>, Option<String>)>>>;

/// Serves `GET /v2/workouts/{PARTIAL_KEY}` to the right token and key; 401 otherwise.
async fn stand_in() -> (String, Calls) {
    let calls: Calls = Arc::default();
    let seen = calls.clone();
    let routes = warp::path::full()
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::header::optional::<String>(
            "ocp-apim-subscription-key",
        ))
        .map(
            move |path: warp::path::FullPath, auth: Option<String>, key: Option<String>| {
                seen.lock()
                    .unwrap()
                    .push((path.as_str().to_owned(), auth.clone(), key.clone()));
                let authorized = auth.as_deref() == Some(&format!("Bearer {ACCESS}"))
                    && key.as_deref() == Some(APIM_KEY);
                if !authorized {
                    return warp::reply::with_status(
                        warp::reply::json(&json!({"error": "unauthorized"})),
                        warp::http::StatusCode::UNAUTHORIZED,
                    );
                }
                if path.as_str() != format!("/v2/workouts/{PARTIAL_KEY}") {
                    return warp::reply::with_status(
                        warp::reply::json(&json!({"error": "not found"})),
                        warp::http::StatusCode::NOT_FOUND,
                    );
                }
                let doc = json!({"error": null, "metadata": {}, "payload": {
                    "workoutKey": PARTIAL_KEY, "activityId": 1,
                    "startTime": 1_735_732_800_000_i64, "totalTime": 1800.0,
                    "totalDistance": 5000.0, "hrdata": {"workoutAvgHR": 150}}});
                warp::reply::with_status(warp::reply::json(&doc), warp::http::StatusCode::OK)
            },
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    tokio::spawn(warp::serve(routes).incoming(listener).run());
    (format!("http://{addr}"), calls)
}

fn account(args: &[&str]) -> std::process::Output {
    Command::new(binary("processor"))
        .args(args)
        .env("DATABASE_URL", database_url())
        .env("TOKEN_ENCRYPTION_KEY", TEST_TOKEN_KEY)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run processor")
}

async fn post(edge: &Edge, body: &Value, tamper: bool) -> u16 {
    let bytes = body.to_string().into_bytes();
    let mut sig = sign::polar(SECRET, &bytes);
    if tamper {
        sig = sign::polar("not-the-secret", &bytes);
    }
    reqwest::Client::new()
        .post(format!("{}/webhooks/suunto", edge.url))
        .header("x-hmac-sha256-signature", sig)
        .body(bytes)
        .send()
        .await
        .expect("edge answers")
        .status()
        .as_u16()
}

async fn rows(pool: &PgPool, user: &str, want: usize) -> BTreeMap<(String, String), f64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: Vec<(String, String, f64)> = sqlx::query_as(
            "SELECT source_record_id, metric, value FROM readings WHERE user_id = $1 AND vendor = 'suunto'",
        )
        .bind(user)
        .fetch_all(pool)
        .await
        .expect("query");
        if got.len() >= want {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let again: Vec<(String, String, f64)> = sqlx::query_as(
                "SELECT source_record_id, metric, value FROM readings WHERE user_id = $1 AND vendor = 'suunto'",
            )
            .bind(user)
            .fetch_all(pool)
            .await
            .expect("query");
            assert_eq!(again.len(), want, "exactly {want} rows: {again:?}");
            return again.into_iter().map(|(s, m, v)| ((s, m), v)).collect();
        }
        assert!(
            Instant::now() < deadline,
            "{} of {want} rows: {got:?}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn suunto_webhooks_become_rows_and_an_incomplete_workout_is_fetched() {
    let (api, calls) = stand_in().await;
    let topics = PipelineTopics::create(2).await;
    let edge = Edge::start(
        &topics.raw,
        &[("SUUNTO_NOTIFICATION_SECRET", SECRET.into())],
    )
    .await;
    let processor = ProcessorProc::start(
        &topics,
        &[
            ("SUUNTO_API_BASE_URL", api.clone()),
            ("SUUNTO_SUBSCRIPTION_KEY", APIM_KEY.into()),
            ("PARK_POLL_INTERVAL", "200ms".into()),
            ("PARK_RETRY_BASE", "1s".into()),
        ],
    )
    .await;
    let username = unique("suunto-user");
    let user = unique("s-user");
    let out = account(&[
        "link-account",
        "--vendor",
        "suunto",
        "--vendor-user-id",
        &username,
        "--user-id",
        &user,
        "--access-token",
        ACCESS,
        "--refresh-token",
        "suunto-refresh",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let with_user = |mut body: Value| {
        body["username"] = json!(username);
        body
    };
    let sleep = with_user(fixture("sleep_night"));
    let workout = with_user(fixture("workout_created"));
    let partial = with_user(json!({"type": "WORKOUT_CREATED",
        "workout": {"workoutKey": PARTIAL_KEY, "activityId": 1}}));
    let route = with_user(fixture("route_created"));
    assert_eq!(post(&edge, &sleep, true).await, 401, "tampered");
    for body in [&sleep, &workout, &partial, &route] {
        assert_eq!(post(&edge, body, false).await, 202);
    }

    let pool = PgPool::connect(&database_url()).await.expect("postgres");
    // Sleep 12 (fixture: 9 + session, latency, mean HR), complete workout 7 (+ maximum HR,
    // speed), fetched workout 3 (duration, distance, HR).
    let got = rows(&pool, &user, 22).await;
    let at = |id: &str, metric: &str| got.get(&(id.to_owned(), metric.to_owned())).copied();
    assert_eq!(at("sleep:123456", "sleep_total"), Some(25200.0));
    assert_eq!(at("sleep:123456", "sleep_awake"), Some(1200.0));
    assert_eq!(at("sleep:123456", "resting_heart_rate"), Some(47.0));
    assert_eq!(
        at("workout:67604889401b942184624cb8", "step_count"),
        Some(8500.0)
    );
    let fetched = format!("workout:{PARTIAL_KEY}");
    assert_eq!(at(&fetched, "workout_duration"), Some(1800.0));
    assert_eq!(at(&fetched, "distance"), Some(5000.0));
    assert_eq!(at(&fetched, "heart_rate"), Some(150.0));
    assert_eq!(at("sleep:123456", "sleep_session"), Some(28200.0));
    // Sessions carry their activity: the fetched workout's activityId 1 is running.
    let activity: Vec<(String, Option<String>)> = sqlx::query_as(
        "select distinct source_record_id, activity from readings where user_id = $1 order by 1",
    )
    .bind(&user)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        activity,
        [
            ("sleep:123456".into(), Some("sleep".into())),
            (
                "workout:67604889401b942184624cb8".into(),
                Some("cross_country_skiing".into())
            ),
            (fetched.clone(), Some("running".into())),
        ]
    );

    let calls = calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        vec![(
            format!("/v2/workouts/{PARTIAL_KEY}"),
            Some(format!("Bearer {ACCESS}")),
            Some(APIM_KEY.to_owned()),
        )],
        "only the incomplete workout is fetched, with token and subscription key"
    );
    let _ = account(&[
        "unlink-account",
        "--vendor",
        "suunto",
        "--vendor-user-id",
        &username,
    ]);
    drop(processor);
}
