//! Polar AccessLink on the real stack: signed notifications go through the real edge and
//! processor, and local HTTP servers stand in for AccessLink (the only stand-ins: it is
//! a third-party cloud), serving the documented shapes from `vendors/tests/fixtures/polar`.
//!
//! A second stand-in plays "another host": every notification's `url` names it, and it
//! must never be asked for anything. Accounts are linked through the `processor` binary
//! (which makes Polar's user registration) and unlinked when a test ends.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bridge_tests::*;
use serde_json::{Value, json};
use sqlx::PgPool;
use warp::Filter;
use warp::http::{Response, StatusCode};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const DATE: &str = "2025-01-01";
const EXERCISE_ID: &str = "aQlC83";

fn fixture(name: &str) -> Value {
    let file = format!(
        "{}/../vendors/tests/fixtures/polar/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// One request a stand-in saw.
#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
    bearer: Option<String>,
    body: Value,
}

#[derive(Default)]
struct State {
    /// Path → document served with 200 to a valid token.
    docs: HashMap<String, Value>,
    /// Paths answered `204 No Content` (AccessLink's "no activity for that day").
    empty: HashSet<String>,
    /// Access tokens AccessLink accepts.
    tokens: HashSet<String>,
    /// Polar user id the registration answers with.
    polar_user: i64,
    /// Status of `POST /v3/users` (200, or 403 for missing consents).
    registration_status: u16,
    calls: Vec<Call>,
}

/// AccessLink stand-in: `POST /v3/users` and the GETs of the v3 data endpoints.
#[derive(Clone)]
struct AccessLink {
    state: Arc<Mutex<State>>,
    url: String,
}

impl AccessLink {
    async fn start(polar_user: i64) -> AccessLink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let me = AccessLink {
            state: Arc::new(Mutex::new(State {
                polar_user,
                registration_status: 200,
                ..State::default()
            })),
            url: format!("http://{addr}"),
        };
        let handler = me.clone();
        let routes = warp::method()
            .and(warp::path::full())
            .and(warp::header::optional::<String>("authorization"))
            .and(warp::body::bytes())
            .map(
                move |method: warp::http::Method,
                      path: warp::path::FullPath,
                      auth: Option<String>,
                      body: bytes::Bytes| {
                    handler.answer(method.as_str(), path.as_str(), auth, &body)
                },
            );
        tokio::spawn(
            warp::serve(routes)
                .incoming(listener)
                .graceful(std::future::pending::<()>())
                .run(),
        );
        me
    }

    fn answer(
        &self,
        method: &str,
        path: &str,
        auth: Option<String>,
        body: &[u8],
    ) -> Response<String> {
        let mut st = self.state.lock().unwrap();
        let bearer = auth.and_then(|a| a.strip_prefix("Bearer ").map(str::to_owned));
        st.calls.push(Call {
            method: method.into(),
            path: path.into(),
            bearer: bearer.clone(),
            body: serde_json::from_slice(body).unwrap_or(Value::Null),
        });
        let reply = |status: u16, body: String| {
            Response::builder()
                .status(StatusCode::from_u16(status).unwrap())
                .header("content-type", "application/json")
                .body(body)
                .unwrap()
        };
        if !bearer.as_ref().is_some_and(|b| st.tokens.contains(b)) {
            return reply(401, r#"{"error":"unauthorized"}"#.into());
        }
        match (method, path) {
            ("POST", "/v3/users") => {
                let member = serde_json::from_slice::<Value>(body).unwrap_or_default();
                let user = json!({"polar-user-id": st.polar_user,
                                  "member-id": member["member-id"],
                                  "registration-date": "2025-01-01T06:00:00.000Z"});
                reply(st.registration_status, user.to_string())
            }
            ("GET", _) if st.empty.contains(path) => reply(204, String::new()),
            ("GET", _) => match st.docs.get(path) {
                Some(doc) => reply(200, doc.to_string()),
                None => reply(404, r#"{"error":"no data"}"#.into()),
            },
            _ => reply(405, "{}".into()),
        }
    }

    fn serve(&self, path: &str, doc: Value) {
        self.state.lock().unwrap().docs.insert(path.into(), doc);
    }

    fn accept_token(&self, token: &str) {
        self.state.lock().unwrap().tokens.insert(token.into());
    }

    fn refuse_tokens(&self) {
        self.state.lock().unwrap().tokens.clear();
    }

    fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }
}

/// A Polar user id (int64) no other run uses.
fn polar_user() -> i64 {
    (uuid::Uuid::new_v4().as_u128() % 1_000_000_000_000) as i64 + 1
}

fn account_command(args: &[&str], env: &[(&str, String)]) -> std::process::Output {
    let mut cmd = Command::new(binary("processor"));
    cmd.args(args)
        .env("DATABASE_URL", database_url())
        .env("TOKEN_ENCRYPTION_KEY", TEST_TOKEN_KEY)
        .env("RUST_LOG", "warn")
        .env_remove("LINK_REFRESH_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run processor")
}

/// (The tests run on a multi-threaded runtime: `link-account` blocks its thread while
/// the stand-in answers its registration.)
///
/// A linked account, unlinked again (through the binary) when the test ends.
struct Linked {
    vendor_user_id: String,
}

impl Drop for Linked {
    fn drop(&mut self) {
        let _ = account_command(
            &[
                "unlink-account",
                "--vendor",
                "polar",
                "--vendor-user-id",
                &self.vendor_user_id,
            ],
            &[],
        );
    }
}

fn link_polar(api: &AccessLink, vuid: i64, user: &str, token: &str) -> std::process::Output {
    account_command(
        &[
            "link-account",
            "--vendor",
            "polar",
            "--vendor-user-id",
            &vuid.to_string(),
            "--user-id",
            user,
        ],
        &[
            ("LINK_ACCESS_TOKEN", token.into()),
            ("POLAR_API_BASE_URL", api.url.clone()),
        ],
    )
}

async fn post_polar(edge: &Edge, body: &Value) {
    let body = body.to_string().into_bytes();
    let status = reqwest::Client::new()
        .post(format!("{}/webhooks/polar", edge.url))
        .header(
            "Polar-Webhook-Signature",
            sign::polar(secrets::POLAR, &body),
        )
        .body(body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 202);
}

/// ((metric, source_record_id, start) → value) of a user's rows once exactly `n` exist.
async fn rows(pool: &PgPool, user: &str, n: usize) -> BTreeMap<(String, String, String), f64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: Vec<(String, String, String, f64)> = sqlx::query_as(
            "select metric, source_record_id, \
                    to_char(start_time at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), value \
             from readings where user_id = $1 and vendor = 'polar'",
        )
        .bind(user)
        .fetch_all(pool)
        .await
        .unwrap();
        if got.len() == n {
            return got.into_iter().map(|(m, s, t, v)| ((m, s, t), v)).collect();
        }
        assert!(
            Instant::now() < deadline,
            "{user}: {} rows, want {n}, within 60 s: {got:?}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The five data notifications, each with a `url` on `elsewhere`.
fn notifications(vuid: i64, elsewhere: &str) -> Vec<Value> {
    let at = "2025-01-02T00:10:00Z";
    vec![
        json!({"event": "EXERCISE", "user_id": vuid, "entity_id": EXERCISE_ID, "timestamp": at,
               "url": format!("{elsewhere}/v3/exercises/{EXERCISE_ID}")}),
        json!({"event": "SLEEP", "user_id": vuid, "date": DATE, "timestamp": at,
               "url": format!("{elsewhere}/v3/users/sleep/{DATE}")}),
        json!({"event": "CONTINUOUS_HEART_RATE", "user_id": vuid, "date": DATE, "timestamp": at,
               "url": format!("{elsewhere}/v3/users/continuous-heart-rate/{DATE}")}),
        json!({"event": "ACTIVITY_SUMMARY", "user_id": vuid, "date": DATE, "timestamp": at,
               "url": format!("{elsewhere}/v3/users/activities/{DATE}")}),
        json!({"event": "PHYSICAL_INFORMATION", "user_id": vuid, "timestamp": at,
               "url": format!("{elsewhere}/v3/users/physical-info")}),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polar_notifications_become_rows_and_their_url_is_never_fetched() {
    let _serial = SERIAL.lock().await;
    let vuid = polar_user();
    let user = unique("polar-u");
    let token = unique("polar-access");
    let api = AccessLink::start(vuid).await;
    // "Another host": what every notification's `url` names.
    let elsewhere = AccessLink::start(vuid).await;
    elsewhere.accept_token(&token);
    api.accept_token(&token);
    let night = fixture("night");
    for (path, doc) in [
        (format!("/v3/exercises/{EXERCISE_ID}"), fixture("exercise")),
        (format!("/v3/users/sleep/{DATE}"), night["sleep"].clone()),
        (
            format!("/v3/users/nightly-recharge/{DATE}"),
            night["nightly_recharge"].clone(),
        ),
        (
            format!("/v3/users/continuous-heart-rate/{DATE}"),
            fixture("continuous_heart_rate"),
        ),
        (format!("/v3/users/activities/{DATE}"), fixture("activity")),
        ("/v3/users/physical-info".into(), fixture("physical_info")),
    ] {
        api.serve(&path, doc.clone());
        elsewhere.serve(&path, doc);
    }

    // link-account registers the user with AccessLink, with the user's token.
    let out = link_polar(&api, vuid, &user, &token);
    assert!(
        out.status.success(),
        "link-account failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _linked = Linked {
        vendor_user_id: vuid.to_string(),
    };
    let registration: Vec<Call> = api
        .calls()
        .into_iter()
        .filter(|c| c.method == "POST")
        .collect();
    assert_eq!(registration.len(), 1, "{registration:?}");
    assert_eq!(registration[0].path, "/v3/users");
    assert_eq!(registration[0].body, json!({"member-id": user}));
    assert_eq!(registration[0].bearer.as_deref(), Some(token.as_str()));

    let topics = PipelineTopics::create(2).await;
    let edge = Edge::start(&topics.raw, &[]).await;
    let processor = ProcessorProc::start(&topics, &[("POLAR_API_BASE_URL", api.url.clone())]).await;
    let pool = PgPool::connect(&database_url()).await.expect("postgres");

    // PING (unsigned, as Polar sends it when the webhook is created) is answered, not appended.
    let ping = reqwest::Client::new()
        .post(format!("{}/webhooks/polar", edge.url))
        .body(r#"{"timestamp":"2025-01-01T08:00:00Z","event":"PING"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), 200);
    let sent = notifications(vuid, &elsewhere.url);
    for n in &sent {
        post_polar(&edge, n).await;
    }

    // exercise 5 + night 15 (9 + session, cycles, 4 hypnogram bouts) + recharge 6 +
    // continuous HR 3 + activity 4 + physical 2.
    let got = rows(&pool, &user, 35).await;
    let key = |m: &str, id: &str, t: &str| (m.to_string(), id.to_string(), t.to_string());
    let exercise = format!("exercise:{EXERCISE_ID}");
    assert_eq!(
        got[&key("workout_duration", &exercise, "2025-01-01T06:10:00Z")],
        3750.0
    );
    assert_eq!(
        got[&key("heart_rate", &exercise, "2025-01-01T06:10:00Z")],
        142.0
    );
    let sleep = format!("sleep:{DATE}");
    assert_eq!(
        got[&key("sleep_total", &sleep, "2024-12-31T21:40:30Z")],
        25800.0
    );
    assert_eq!(
        got[&key("heart_rate", &sleep, "2024-12-31T22:05:00Z")],
        55.0
    );
    let recharge = format!("nightly_recharge:{DATE}");
    assert_eq!(
        got[&key("hrv_rmssd", &recharge, "2024-12-31T22:10:30Z")],
        48.0
    );
    let chr = format!("continuous_heart_rate:{DATE}");
    assert_eq!(got[&key("heart_rate", &chr, "2025-01-01T23:57:08Z")], 71.0);
    let activity = format!("activity:{DATE}");
    assert_eq!(
        got[&key("step_count", &activity, "2025-01-01T00:00:00Z")],
        8823.0
    );
    let physical = "physical_info:2025-01-02T09:00:00Z";
    assert_eq!(got[&key("weight", physical, "2025-01-02T09:00:00Z")], 70.5);
    assert_eq!(
        got[&key("sleep_stage", &sleep, "2024-12-31T23:00:00Z")],
        f64::from(bridge_core::model::SleepStage::Deep.code() as u8)
    );
    // Sessions: every row of the exercise and of the night carries its activity; the
    // other documents none.
    let activities: Vec<(String, Option<String>, i64)> = sqlx::query_as(
        "select source_record_id, activity, count(*) from readings \
         where user_id = $1 group by 1, 2 order by 1, 2",
    )
    .bind(&user)
    .fetch_all(&pool)
    .await
    .unwrap();
    let of = |id: &str| -> Vec<(Option<String>, i64)> {
        activities
            .iter()
            .filter(|(d, _, _)| d == id)
            .map(|(_, a, n)| (a.clone(), *n))
            .collect()
    };
    assert_eq!(of(&exercise), [(Some("running".into()), 5)]);
    assert_eq!(of(&sleep), [(Some("sleep".into()), 15)]);
    assert_eq!(of(&recharge), [(None, 6)]);

    // Every GET went to the configured AccessLink with the account's token; the host
    // the notifications named saw nothing.
    let gets: Vec<Call> = api
        .calls()
        .into_iter()
        .filter(|c| c.method == "GET")
        .collect();
    let paths: HashSet<&str> = gets.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(paths.len(), 6, "{paths:?}");
    assert!(
        gets.iter()
            .all(|c| c.bearer.as_deref() == Some(token.as_str()))
    );
    assert!(elsewhere.calls().is_empty(), "{:?}", elsewhere.calls());

    // The raw topic holds the five notifications and no PING.
    let c = consumer(&topics.raw);
    let mut raw = read_n(&c, sent.len(), Duration::from_secs(60)).await;
    raw.extend(drain(&c, Duration::from_secs(3)).await);
    assert_eq!(raw.len(), sent.len());
    assert!(
        raw.iter()
            .all(|m| !payload(m).windows(6).any(|w| w == b"\"PING\""))
    );

    // A day without activity (204) closes its notification as not_found, no rows.
    let empty_day = "/v3/users/activities/2025-01-03";
    api.state.lock().unwrap().empty.insert(empty_day.into());
    let none = json!({"event": "ACTIVITY_SUMMARY", "user_id": vuid, "date": "2025-01-03",
                      "timestamp": "2025-01-04T00:10:00Z",
                      "url": format!("{}{empty_day}", elsewhere.url)});
    post_polar(&edge, &none).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let closed: Option<(String, String)> = sqlx::query_as(
            "select reason, detail from parked_notifications where vendor = 'polar' \
             and vendor_user_id = $1 and closed_at is not null",
        )
        .bind(vuid.to_string())
        .fetch_optional(&pool)
        .await
        .unwrap();
        if let Some((reason, detail)) = closed {
            assert_eq!(reason, "not_found", "{detail}");
            assert!(detail.contains(empty_day), "{detail}");
            break;
        }
        assert!(Instant::now() < deadline, "204 not closed as not_found");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = rows(&pool, &user, 35).await;

    // A revoked token: Polar has no refresh token, so the account needs linking again.
    api.refuse_tokens();
    let later = json!({"event": "ACTIVITY_SUMMARY", "user_id": vuid, "date": "2025-01-02",
                       "timestamp": "2025-01-03T00:10:00Z",
                       "url": format!("{}/v3/users/activities/2025-01-02", elsewhere.url)});
    post_polar(&edge, &later).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status: Option<(String,)> = sqlx::query_as(
            "select status from linked_accounts where vendor = 'polar' and vendor_user_id = $1",
        )
        .bind(vuid.to_string())
        .fetch_optional(&pool)
        .await
        .unwrap();
        let parked: Option<(String,)> = sqlx::query_as(
            "select reason from parked_notifications where vendor = 'polar' \
             and vendor_user_id = $1 and closed_at is null",
        )
        .bind(vuid.to_string())
        .fetch_optional(&pool)
        .await
        .unwrap();
        if status.as_ref().map(|s| s.0.as_str()) == Some("reauth_required")
            && parked.as_ref().map(|p| p.0.as_str()) == Some("reauth_required")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "account {status:?}, parked {parked:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(elsewhere.calls().is_empty());
    let _ = rows(&pool, &user, 35).await;
    drop(processor);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_account_needs_polars_registration() {
    let _serial = SERIAL.lock().await;
    let vuid = polar_user();
    let user = unique("polar-u");
    let api = AccessLink::start(vuid).await;
    api.accept_token("good");
    let linked = |pool: &PgPool| {
        let pool = pool.clone();
        async move {
            let row: Option<(String,)> = sqlx::query_as(
                "select user_id from linked_accounts where vendor = 'polar' and vendor_user_id = $1",
            )
            .bind(vuid.to_string())
            .fetch_optional(&pool)
            .await
            .unwrap();
            row.is_some()
        }
    };
    let pool = PgPool::connect(&database_url()).await.expect("postgres");
    let _cleanup = Linked {
        vendor_user_id: vuid.to_string(),
    };

    // Consents not accepted: the link is refused and nothing is stored.
    api.state.lock().unwrap().registration_status = 403;
    let out = link_polar(&api, vuid, &user, "good");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("consents"));
    assert!(!linked(&pool).await);

    // A token AccessLink refuses.
    api.state.lock().unwrap().registration_status = 200;
    let out = link_polar(&api, vuid, &user, "bad");
    assert!(!out.status.success());
    assert!(!linked(&pool).await);

    // A token of another Polar user than the one named.
    let out = link_polar(&api, vuid + 1, &user, "good");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("--vendor-user-id {vuid}")));

    // Polar issues no refresh token, so one given is a mistake.
    let out = account_command(
        &[
            "link-account",
            "--vendor",
            "polar",
            "--vendor-user-id",
            &vuid.to_string(),
            "--user-id",
            &user,
            "--refresh-token",
            "r",
        ],
        &[
            ("LINK_ACCESS_TOKEN", "good".into()),
            ("POLAR_API_BASE_URL", api.url.clone()),
        ],
    );
    assert!(!out.status.success());
    assert!(!linked(&pool).await);

    // Already registered (409) is a re-link, and links.
    api.state.lock().unwrap().registration_status = 409;
    let out = link_polar(&api, vuid, &user, "good");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(linked(&pool).await);
}
