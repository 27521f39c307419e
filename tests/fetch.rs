//! Fetch-after-notify on the real stack: signed Oura and WHOOP notifications go through
//! the real edge and processor, and a local HTTP server stands in for the vendors' REST
//! APIs and token endpoints (the only stand-in: they are third-party clouds), serving the
//! documented document shapes from `vendors/tests/fixtures`.
//!
//! The tests run one at a time: every processor's retry task serves the whole
//! `parked_notifications` table, and each test's processor talks to its own stand-in.
//! Accounts are linked and unlinked through the `processor` binary, and unlinked when a
//! test ends, so processors started without `TOKEN_ENCRYPTION_KEY` elsewhere still start.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bridge_tests::*;

mod faultkit;
use serde_json::{Value, json};
use sqlx::PgPool;
use warp::Filter;
use warp::http::{Response, StatusCode};

/// Key the processors and `link-account` share in these tests (hex, 32 bytes).
const TEST_KEY: &str = TEST_TOKEN_KEY;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const OURA_SLEEP_ID: &str = "5d3a0c1e-2b7f-4c38-9e51-0f6a1b2c3d4e";
const OURA_DAILY_SLEEP_ID: &str = "d-sleep-2025-01-01";
const OURA_READINESS_ID: &str = "a1b2c3d4-0000-4000-8000-000000000001";
const WHOOP_SLEEP_ID: &str = "ecfc6a15-4661-442f-a9a4-f160dd7afae8";
const WHOOP_CYCLE_ID: i64 = 93845;
const WHOOP_WORKOUT_ID: &str = "7bfc6a15-4661-442f-a9a4-f160dd7a0001";

fn fixture(path: &str) -> Value {
    let file = format!(
        "{}/../vendors/tests/fixtures/{path}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// One request the stand-in saw.
#[derive(Debug, Clone)]
struct Call {
    path: String,
    at: Instant,
    bearer: Option<String>,
    status: u16,
}

#[derive(Default)]
struct State {
    /// Path → document served with 200 to a valid token.
    docs: HashMap<String, Value>,
    /// Path → responses served first, in order, whatever the token (status, Retry-After).
    scripted: HashMap<String, VecDeque<(u16, Option<String>)>>,
    /// Access tokens the API accepts.
    tokens: HashSet<String>,
    /// Refresh token → (new access token, new refresh token); used once (rotation).
    refresh: HashMap<String, (String, String)>,
    calls: Vec<Call>,
    /// Form fields of each token-endpoint request.
    token_calls: Vec<HashMap<String, String>>,
    /// How long the token endpoints take to answer (a slow vendor).
    token_delay: Duration,
}

/// Oura and WHOOP stand-in: `/oura/...` and `/whoop/developer/...` APIs, and token
/// endpoints at the vendors' documented paths under `/oura` and `/whoop`.
#[derive(Clone, Default)]
struct StandIn {
    state: Arc<Mutex<State>>,
    url: String,
}

fn form(body: &[u8]) -> HashMap<String, String> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        let mut out = Vec::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%'
                && i + 2 < b.len()
                && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
            out.push(b[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

impl StandIn {
    async fn start() -> StandIn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let me = StandIn {
            state: Arc::default(),
            url: format!("http://{addr}"),
        };
        let handler = me.clone();
        let routes = warp::method()
            .and(warp::path::full())
            .and(warp::query::raw().or(warp::any().map(String::new)).unify())
            .and(warp::header::optional::<String>("authorization"))
            .and(warp::body::bytes())
            .then(
                move |method: warp::http::Method,
                      path: warp::path::FullPath,
                      query: String,
                      auth: Option<String>,
                      body: bytes::Bytes| {
                    let handler = handler.clone();
                    async move {
                        if path.as_str().ends_with("/token") {
                            let delay = handler.state.lock().unwrap().token_delay;
                            tokio::time::sleep(delay).await;
                        }
                        // Documents are served by path, or by path and query (collections).
                        let path = if query.is_empty() {
                            path.as_str().to_owned()
                        } else {
                            format!("{}?{query}", path.as_str())
                        };
                        handler.answer(method.as_str(), &path, auth, &body)
                    }
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
        let reply = |status: u16, body: String| {
            Response::builder()
                .status(StatusCode::from_u16(status).unwrap())
                .header("content-type", "application/json")
                .body(body)
                .unwrap()
        };
        if method == "POST" && (path == "/oura/oauth/token" || path == "/whoop/oauth/oauth2/token")
        {
            let f = form(body);
            st.token_calls.push(f.clone());
            let known = f
                .get("refresh_token")
                .and_then(|r| st.refresh.remove(r))
                .filter(|_| f.get("grant_type").map(String::as_str) == Some("refresh_token"));
            return match known {
                Some((access, refresh)) => {
                    st.tokens.insert(access.clone());
                    reply(
                        200,
                        json!({"access_token": access, "refresh_token": refresh,
                               "expires_in": 3600, "token_type": "bearer"})
                        .to_string(),
                    )
                }
                None => reply(400, r#"{"error":"invalid_grant"}"#.into()),
            };
        }
        let bearer = auth.and_then(|a| a.strip_prefix("Bearer ").map(str::to_owned));
        let (status, retry_after, doc) =
            if let Some((s, ra)) = st.scripted.get_mut(path).and_then(VecDeque::pop_front) {
                (s, ra, None)
            } else if !bearer.as_ref().is_some_and(|b| st.tokens.contains(b)) {
                (401, None, None)
            } else if let Some(doc) = st.docs.get(path) {
                (200, None, Some(doc.clone()))
            } else {
                (404, None, None)
            };
        st.calls.push(Call {
            path: path.to_owned(),
            at: Instant::now(),
            bearer,
            status,
        });
        let mut r = reply(
            status,
            doc.map_or_else(|| r#"{"detail":"stand-in"}"#.into(), |d| d.to_string()),
        );
        if let Some(ra) = retry_after {
            r.headers_mut()
                .insert("retry-after", ra.parse().expect("header value"));
        }
        r
    }

    fn serve_fixtures(&self) {
        let mut st = self.state.lock().unwrap();
        let oura = "/oura/v2/usercollection";
        let whoop = "/whoop/developer/v2";
        for (path, file) in [
            (
                format!("{oura}/daily_sleep/{OURA_DAILY_SLEEP_ID}"),
                "oura/daily_sleep",
            ),
            (
                format!("{oura}/sleep/{OURA_SLEEP_ID}"),
                "oura/sleep_long_sleep",
            ),
            (
                format!("{oura}/daily_readiness/{OURA_READINESS_ID}"),
                "oura/daily_readiness_contributors",
            ),
            (
                format!("{whoop}/activity/sleep/{WHOOP_SLEEP_ID}"),
                "whoop/sleep_scored",
            ),
            (
                format!("{whoop}/cycle/{WHOOP_CYCLE_ID}/recovery"),
                "whoop/recovery_scored",
            ),
            (
                format!("{whoop}/cycle/{WHOOP_CYCLE_ID}"),
                "whoop/cycle_scored",
            ),
            (
                format!("{whoop}/activity/workout/{WHOOP_WORKOUT_ID}"),
                "whoop/workout_scored",
            ),
        ] {
            st.docs.insert(path, fixture(file));
        }
    }

    fn accept_token(&self, token: &str) {
        self.state.lock().unwrap().tokens.insert(token.into());
    }

    fn calls(&self, path_suffix: &str) -> Vec<Call> {
        let st = self.state.lock().unwrap();
        st.calls
            .iter()
            .filter(|c| c.path.ends_with(path_suffix))
            .cloned()
            .collect()
    }

    /// Processor environment pointing at this stand-in.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("TOKEN_ENCRYPTION_KEY", TEST_KEY.into()),
            ("OURA_API_BASE_URL", format!("{}/oura", self.url)),
            (
                "WHOOP_API_BASE_URL",
                format!("{}/whoop/developer", self.url),
            ),
            ("OURA_TOKEN_URL", format!("{}/oura/oauth/token", self.url)),
            (
                "WHOOP_TOKEN_URL",
                format!("{}/whoop/oauth/oauth2/token", self.url),
            ),
            ("OURA_CLIENT_ID", "oura-client".into()),
            ("OURA_CLIENT_SECRET", secrets::OURA.into()),
            ("WHOOP_CLIENT_ID", "whoop-client".into()),
            ("WHOOP_CLIENT_SECRET", secrets::WHOOP.into()),
            // Quick retries so parked notifications come back within the test.
            ("PARK_POLL_INTERVAL", "200ms".into()),
            ("PARK_RETRY_BASE", "1s".into()),
        ]
    }
}

/// A linked account, unlinked again (through the binary) when the test ends.
struct Linked {
    vendor: &'static str,
    vendor_user_id: String,
}

fn account_command(args: &[&str]) -> std::process::Output {
    Command::new(binary("processor"))
        .args(args)
        .env("DATABASE_URL", database_url())
        .env("TOKEN_ENCRYPTION_KEY", TEST_KEY)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run processor")
}

fn link(
    vendor: &'static str,
    vendor_user_id: &str,
    user_id: &str,
    access: &str,
    refresh: &str,
    expires_at: Option<&str>,
) -> Linked {
    let mut args = vec![
        "link-account",
        "--vendor",
        vendor,
        "--vendor-user-id",
        vendor_user_id,
        "--user-id",
        user_id,
        "--access-token",
        access,
        "--refresh-token",
        refresh,
    ];
    if let Some(at) = expires_at {
        args.extend(["--expires-at", at]);
    }
    let out = account_command(&args);
    assert!(
        out.status.success(),
        "link-account failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Linked {
        vendor,
        vendor_user_id: vendor_user_id.into(),
    }
}

impl Drop for Linked {
    fn drop(&mut self) {
        let _ = account_command(&[
            "unlink-account",
            "--vendor",
            self.vendor,
            "--vendor-user-id",
            &self.vendor_user_id,
        ]);
    }
}

async fn pool() -> PgPool {
    PgPool::connect(&database_url()).await.expect("postgres")
}

/// (metric → value) of a user's rows once exactly `n` exist.
async fn rows(pool: &PgPool, user: &str, n: usize) -> BTreeMap<(String, String), f64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: Vec<(String, String, f64)> = sqlx::query_as(
            "select metric, source_record_id, value from readings where user_id = $1",
        )
        .bind(user)
        .fetch_all(pool)
        .await
        .unwrap();
        if got.len() == n {
            return got.into_iter().map(|(m, s, v)| ((m, s), v)).collect();
        }
        assert!(
            Instant::now() < deadline,
            "{user}: {} rows, want {n}, within 60 s: {got:?}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn post_oura(edge: &Edge, body: &Value) {
    let body = body.to_string().into_bytes();
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

async fn post_whoop(edge: &Edge, body: &Value) {
    let body = body.to_string().into_bytes();
    let ms = now_secs() * 1000;
    let status = reqwest::Client::new()
        .post(format!("{}/webhooks/whoop", edge.url))
        .header("X-WHOOP-Signature", sign::whoop(secrets::WHOOP, ms, &body))
        .header("X-WHOOP-Signature-Timestamp", ms.to_string())
        .body(body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 202);
}

fn oura_event(event_type: &str, data_type: &str, object_id: &str, user: &str) -> Value {
    json!({"event_type": event_type, "data_type": data_type, "object_id": object_id,
           "event_time": "2025-01-01T07:42:10+00:00", "user_id": user})
}

fn whoop_event(kind: &str, id: Value, user: i64) -> Value {
    json!({"user_id": user, "id": id, "type": kind, "trace_id": unique("trace")})
}

/// A WHOOP user id (int64) no other run uses.
fn whoop_user() -> i64 {
    let n = uuid::Uuid::new_v4().as_u128();
    (n % 1_000_000_000_000) as i64 + 1
}

async fn metric(processor: &ProcessorProc, line_prefix: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", processor.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(line_prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

struct Stack {
    edge: Edge,
    processor: ProcessorProc,
    api: StandIn,
    pool: PgPool,
    dlq: String,
}

async fn stack() -> Stack {
    let api = StandIn::start().await;
    api.serve_fixtures();
    let topics = PipelineTopics::create(2).await;
    let edge = Edge::start(&topics.raw, &[]).await;
    let processor = ProcessorProc::start(&topics, &api.env()).await;
    Stack {
        edge,
        processor,
        api,
        pool: pool().await,
        dlq: topics.dlq.clone(),
    }
}

#[tokio::test]
async fn oura_and_whoop_notifications_become_rows_and_deletes_remove_them() {
    let _serial = SERIAL.lock().await;
    let s = stack().await;
    let (oura_user, whoop_user_id) = (unique("oura-u"), unique("whoop-u"));
    let oura_vuid = unique("oura-vu");
    let whoop_vuid = whoop_user();
    s.api.accept_token("oura-access");
    s.api.accept_token("whoop-access");
    let _a = link("oura", &oura_vuid, &oura_user, "oura-access", "r1", None);
    let _b = link(
        "whoop",
        &whoop_vuid.to_string(),
        &whoop_user_id,
        "whoop-access",
        "r2",
        Some("2999-01-01T00:00:00Z"),
    );

    for (t, id) in [
        ("daily_sleep", OURA_DAILY_SLEEP_ID),
        ("sleep", OURA_SLEEP_ID),
        ("daily_readiness", OURA_READINESS_ID),
    ] {
        post_oura(&s.edge, &oura_event("update", t, id, &oura_vuid)).await;
    }
    // v2 recovery ids are sleep UUIDs: sleep → cycle_id → recovery and cycle.
    post_whoop(
        &s.edge,
        &whoop_event("recovery.updated", json!(WHOOP_SLEEP_ID), whoop_vuid),
    )
    .await;
    post_whoop(
        &s.edge,
        &whoop_event("sleep.updated", json!(WHOOP_SLEEP_ID), whoop_vuid),
    )
    .await;
    post_whoop(
        &s.edge,
        &whoop_event("workout.updated", json!(WHOOP_WORKOUT_ID), whoop_vuid),
    )
    .await;

    // Oura: daily_sleep 1 + long sleep 31 (12 summaries + session, latency, trend,
    // 3 heart-rate and 3 HRV samples, 10 stage intervals) + readiness 3.
    let oura = rows(&s.pool, &oura_user, 35).await;
    let key = |m: &str, id: &str| (m.to_string(), id.to_string());
    assert_eq!(oura[&key("sleep_score", OURA_DAILY_SLEEP_ID)], 84.0);
    assert_eq!(oura[&key("resting_heart_rate", OURA_SLEEP_ID)], 47.0);
    // The night's mean HRV (over the period) beside its three 5-minute samples (instants).
    let hrv: Vec<(f64, bool)> = sqlx::query_as(
        "select value, start_time = end_time from readings
         where user_id = $1 and metric = 'hrv_rmssd' and source_record_id = $2
         order by start_time, end_time desc",
    )
    .bind(&oura_user)
    .bind(OURA_SLEEP_ID)
    .fetch_all(&s.pool)
    .await
    .unwrap();
    assert_eq!(
        hrv,
        [(58.0, false), (44.0, true), (61.0, true), (70.0, true)]
    );
    assert_eq!(oura[&key("readiness_score", OURA_READINESS_ID)], 82.0);
    // WHOOP: sleep 15 + recovery 5 + cycle 4 + workout 13 (the second sleep.updated
    // lands on the same rows).
    let whoop = rows(&s.pool, &whoop_user_id, 37).await;
    let recovery = format!("recovery:{WHOOP_CYCLE_ID}");
    assert_eq!(whoop[&key("recovery_score", &recovery)], 64.0);
    assert_eq!(whoop[&key("hrv_rmssd", &recovery)], 71.42);
    assert_eq!(whoop[&key("strain", &WHOOP_CYCLE_ID.to_string())], 13.8734);
    assert_eq!(whoop[&key("sleep_deep", WHOOP_SLEEP_ID)], 5520.0);
    assert_eq!(whoop[&key("distance", WHOOP_WORKOUT_ID)], 7105.2);
    // Sessions: every row of a sleep or workout carries its activity; the others none.
    let activities = |user: String| {
        let pool = s.pool.clone();
        async move {
            let got: Vec<(String, Option<String>, i64)> = sqlx::query_as(
                "select source_record_id, activity, count(*) from readings \
                 where user_id = $1 group by 1, 2 order by 1, 2",
            )
            .bind(user)
            .fetch_all(&pool)
            .await
            .unwrap();
            got
        }
    };
    let of = |rows: &[(String, Option<String>, i64)], id: &str| -> Vec<(Option<String>, i64)> {
        rows.iter()
            .filter(|(d, _, _)| d == id)
            .map(|(_, a, n)| (a.clone(), *n))
            .collect()
    };
    let o = activities(oura_user.clone()).await;
    assert_eq!(of(&o, OURA_SLEEP_ID), [(Some("sleep".into()), 31)]);
    assert_eq!(of(&o, OURA_READINESS_ID), [(None, 3)]);
    let w = activities(whoop_user_id.clone()).await;
    assert_eq!(of(&w, WHOOP_SLEEP_ID), [(Some("sleep".into()), 15)]);
    assert_eq!(of(&w, WHOOP_WORKOUT_ID), [(Some("running".into()), 13)]);
    assert_eq!(of(&w, &recovery), [(None, 5)]);
    let bearers: HashSet<_> = s
        .api
        .calls("")
        .into_iter()
        .filter_map(|c| c.bearer)
        .collect();
    assert_eq!(
        bearers,
        HashSet::from(["oura-access".to_string(), "whoop-access".to_string()])
    );

    // Deletes remove exactly the deleted record's rows, without a fetch.
    let calls_before = s.api.calls("").len();
    post_oura(
        &s.edge,
        &oura_event("delete", "sleep", OURA_SLEEP_ID, &oura_vuid),
    )
    .await;
    post_whoop(
        &s.edge,
        &whoop_event("workout.deleted", json!(WHOOP_WORKOUT_ID), whoop_vuid),
    )
    .await;
    post_whoop(
        &s.edge,
        &whoop_event("recovery.deleted", json!(WHOOP_CYCLE_ID), whoop_vuid),
    )
    .await;
    let oura = rows(&s.pool, &oura_user, 4).await;
    assert!(oura.keys().all(|(_, id)| id != OURA_SLEEP_ID));
    let whoop = rows(&s.pool, &whoop_user_id, 19).await;
    assert!(
        whoop
            .keys()
            .all(|(_, id)| id != WHOOP_WORKOUT_ID && *id != recovery)
    );
    assert_eq!(s.api.calls("").len(), calls_before, "deletes fetch nothing");
    assert!(
        metric(
            &s.processor,
            "processor_fetches_total{vendor=\"whoop\",status=\"ok\"}"
        )
        .await
            >= 5.0
    );
}

#[tokio::test]
async fn expired_and_rejected_tokens_are_refreshed_once() {
    let _serial = SERIAL.lock().await;
    let s = stack().await;
    let (oura_user, whoop_user_id) = (unique("oura-u"), unique("whoop-u"));
    let oura_vuid = unique("oura-vu");
    let whoop_vuid = whoop_user();
    {
        let mut st = s.api.state.lock().unwrap();
        // Neither old access token is accepted; each refresh token is good once.
        st.refresh
            .insert("oura-r1".into(), ("oura-new".into(), "oura-r2".into()));
        st.refresh
            .insert("whoop-r1".into(), ("whoop-new".into(), "whoop-r2".into()));
    }
    // Oura: known to be expired → refreshed before the request.
    let _a = link(
        "oura",
        &oura_vuid,
        &oura_user,
        "oura-old",
        "oura-r1",
        Some("2001-01-01T00:00:00Z"),
    );
    // WHOOP: expiry unknown → the 401 to the old token triggers the refresh.
    let _b = link(
        "whoop",
        &whoop_vuid.to_string(),
        &whoop_user_id,
        "whoop-old",
        "whoop-r1",
        None,
    );
    post_oura(
        &s.edge,
        &oura_event("create", "daily_sleep", OURA_DAILY_SLEEP_ID, &oura_vuid),
    )
    .await;
    post_whoop(
        &s.edge,
        &whoop_event("workout.updated", json!(WHOOP_WORKOUT_ID), whoop_vuid),
    )
    .await;
    rows(&s.pool, &oura_user, 1).await;
    rows(&s.pool, &whoop_user_id, 13).await;

    let oura_calls = s.api.calls(&format!("/daily_sleep/{OURA_DAILY_SLEEP_ID}"));
    assert_eq!(
        oura_calls.len(),
        1,
        "refreshed before the request: {oura_calls:?}"
    );
    assert_eq!(oura_calls[0].bearer.as_deref(), Some("oura-new"));
    let whoop_calls = s.api.calls(&format!("/workout/{WHOOP_WORKOUT_ID}"));
    let statuses: Vec<(u16, Option<String>)> = whoop_calls
        .iter()
        .map(|c| (c.status, c.bearer.clone()))
        .collect();
    assert_eq!(
        statuses,
        vec![
            (401, Some("whoop-old".into())),
            (200, Some("whoop-new".into()))
        ]
    );
    {
        let st = s.api.state.lock().unwrap();
        assert_eq!(st.token_calls.len(), 2, "{:?}", st.token_calls);
        let whoop = st
            .token_calls
            .iter()
            .find(|f| f.get("refresh_token").map(String::as_str) == Some("whoop-r1"))
            .expect("whoop refresh");
        assert_eq!(
            whoop.get("client_id").map(String::as_str),
            Some("whoop-client")
        );
        assert_eq!(whoop.get("scope").map(String::as_str), Some("offline"));
    }

    // The new pair is stored (encrypted) and used from now on: no second refresh.
    let (version, access, expires): (i64, Vec<u8>, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as(
            "select token_version, access_token, expires_at from linked_accounts
             where vendor = 'oura' and vendor_user_id = $1",
        )
        .bind(&oura_vuid)
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(version, 2);
    assert!(!access.windows(8).any(|w| w == b"oura-new"));
    assert!(expires.is_some_and(|e| e > chrono::Utc::now()));
    post_oura(
        &s.edge,
        &oura_event("update", "daily_readiness", OURA_READINESS_ID, &oura_vuid),
    )
    .await;
    rows(&s.pool, &oura_user, 4).await;
    assert_eq!(s.api.state.lock().unwrap().token_calls.len(), 2);
    assert_eq!(
        metric(
            &s.processor,
            "processor_token_refreshes_total{vendor=\"oura\",status=\"ok\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn retry_after_on_429_is_honoured() {
    let _serial = SERIAL.lock().await;
    let s = stack().await;
    let user = unique("oura-u");
    let vuid = unique("oura-vu");
    s.api.accept_token("oura-access");
    let path = format!("/oura/v2/usercollection/daily_sleep/{OURA_DAILY_SLEEP_ID}");
    s.api
        .state
        .lock()
        .unwrap()
        .scripted
        .insert(path.clone(), VecDeque::from([(429, Some("2".to_string()))]));
    let _a = link("oura", &vuid, &user, "oura-access", "r", None);
    post_oura(
        &s.edge,
        &oura_event("update", "daily_sleep", OURA_DAILY_SLEEP_ID, &vuid),
    )
    .await;
    rows(&s.pool, &user, 1).await;
    let calls = s.api.calls(&path);
    assert_eq!(
        calls.iter().map(|c| c.status).collect::<Vec<_>>(),
        vec![429, 200]
    );
    let gap = calls[1].at - calls[0].at;
    assert!(gap >= Duration::from_millis(1950), "retried after {gap:?}");
    assert_eq!(
        metric(
            &s.processor,
            "processor_fetches_total{vendor=\"oura\",status=\"rate_limited\"}"
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(
            &s.processor,
            "processor_parked_notifications_total{vendor=\"oura\",reason=\"rate_limited\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn unlinked_users_notification_is_processed_after_link_account() {
    let _serial = SERIAL.lock().await;
    let s = stack().await;
    let user = unique("whoop-u");
    let vuid = whoop_user();
    s.api.accept_token("whoop-access");
    post_whoop(
        &s.edge,
        &whoop_event("recovery.updated", json!(WHOOP_CYCLE_ID), vuid),
    )
    .await;

    // Parked durably as unlinked; nothing fetched, nothing written.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let reason: Option<String> = sqlx::query_scalar(
            "select reason from parked_notifications where vendor = 'whoop' and vendor_user_id = $1",
        )
        .bind(vuid.to_string())
        .fetch_optional(&s.pool)
        .await
        .unwrap();
        if let Some(reason) = reason {
            assert_eq!(reason, "unlinked");
            break;
        }
        assert!(Instant::now() < deadline, "not parked within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(s.api.calls("").is_empty());

    // Linking (the real command) makes it due now: recovery 5 + cycle 4 (integer id:
    // the cycle's recovery directly).
    let _a = link("whoop", &vuid.to_string(), &user, "whoop-access", "r", None);
    let got = rows(&s.pool, &user, 9).await;
    assert_eq!(
        got[&(
            "recovery_score".to_string(),
            format!("recovery:{WHOOP_CYCLE_ID}")
        )],
        64.0
    );
    // The row goes once the readings are also published.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left: i64 = sqlx::query_scalar(
            "select count(*) from parked_notifications where vendor = 'whoop' and vendor_user_id = $1",
        )
        .bind(vuid.to_string())
        .fetch_one(&s.pool)
        .await
        .unwrap();
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "parked row not removed after its rows were committed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn pending_whoop_score_is_fetched_again_later() {
    let _serial = SERIAL.lock().await;
    let s = stack().await;
    let user = unique("whoop-u");
    let vuid = whoop_user();
    s.api.accept_token("whoop-access");
    let path = format!("/whoop/developer/v2/activity/sleep/{WHOOP_SLEEP_ID}");
    let scored = fixture("whoop/sleep_scored");
    let mut pending = scored.clone();
    pending["score_state"] = json!("PENDING_SCORE");
    pending.as_object_mut().unwrap().remove("score");
    s.api
        .state
        .lock()
        .unwrap()
        .docs
        .insert(path.clone(), pending);
    let _a = link("whoop", &vuid.to_string(), &user, "whoop-access", "r", None);
    post_whoop(
        &s.edge,
        &whoop_event("sleep.updated", json!(WHOOP_SLEEP_ID), vuid),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.api.calls(&path).is_empty() {
        assert!(Instant::now() < deadline, "never fetched");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // WHOOP finishes scoring; the parked notification (PARK_RETRY_BASE=1s) fetches again.
    s.api
        .state
        .lock()
        .unwrap()
        .docs
        .insert(path.clone(), scored);
    rows(&s.pool, &user, 15).await;
    assert!(s.api.calls(&path).len() >= 2);
    assert!(
        metric(
            &s.processor,
            "processor_parked_notifications_total{vendor=\"whoop\",reason=\"pending_score\"}"
        )
        .await
            >= 1.0
    );
}

/// The retry task writes through the pipeline's write stage, bad-data branch included: a
/// parked notification whose readings PostgreSQL refuses for their content (here a CHECK
/// an operator added, SQLSTATE 23514, in a database of this test's own) is closed as
/// `rejected_by_database`, not fetched again with every lease.
#[tokio::test]
async fn a_parked_retry_postgres_refuses_is_closed_not_retried_forever() {
    let _serial = SERIAL.lock().await;
    let db = faultkit::OwnDatabase::create().await;
    let api = StandIn::start().await;
    api.serve_fixtures();
    let topics = PipelineTopics::create(1).await;
    let edge = Edge::start(&topics.raw, &[]).await;
    let mut env = api.env();
    env.push(("DATABASE_URL", db.url.clone()));
    let processor = ProcessorProc::start(&topics, &env).await;
    wait_http_ok(&format!("{}/ready", processor.url), Duration::from_secs(60)).await;
    let pool = PgPool::connect(&db.url).await.unwrap();
    let user = unique("whoop-refused");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "alter table readings add constraint refuse_{} check (user_id <> '{user}')",
        user.replace('-', "_")
    )))
    .execute(&pool)
    .await
    .unwrap();
    let vuid = whoop_user();
    let out = Command::new(binary("processor"))
        .args(["link-account", "--vendor", "whoop", "--vendor-user-id"])
        .arg(vuid.to_string())
        .args(["--user-id", &user, "--access-token", "whoop-access"])
        .args([
            "--refresh-token",
            "r",
            "--expires-at",
            "2999-01-01T00:00:00Z",
        ])
        .env("DATABASE_URL", &db.url)
        .env("TOKEN_ENCRYPTION_KEY", TEST_KEY)
        .output()
        .expect("run processor");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    api.accept_token("whoop-access");
    let path = format!("/whoop/developer/v2/activity/sleep/{WHOOP_SLEEP_ID}");
    let scored = fixture("whoop/sleep_scored");
    let mut pending = scored.clone();
    pending["score_state"] = json!("PENDING_SCORE");
    pending.as_object_mut().unwrap().remove("score");
    api.state.lock().unwrap().docs.insert(path.clone(), pending);
    post_whoop(
        &edge,
        &whoop_event("sleep.updated", json!(WHOOP_SLEEP_ID), vuid),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while api.calls(&path).is_empty() {
        assert!(Instant::now() < deadline, "never fetched");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Scored now: the retry (PARK_RETRY_BASE=1s) fetches it and PostgreSQL refuses it.
    api.state.lock().unwrap().docs.insert(path.clone(), scored);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let row: Option<(String, bool)> = sqlx::query_as(
            "select reason, closed_at is not null from parked_notifications where vendor = 'whoop'",
        )
        .fetch_optional(&pool)
        .await
        .unwrap();
        if row == Some(("rejected_by_database".into(), true)) {
            break;
        }
        assert!(Instant::now() < deadline, "not closed within 60 s: {row:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fetched = api.calls(&path).len();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        api.calls(&path).len(),
        fetched,
        "a closed row was fetched again"
    );
    let (readings,): (i64,) = sqlx::query_as("select count(*) from readings where user_id = $1")
        .bind(&user)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(readings, 0);
}

#[tokio::test]
async fn service_refuses_to_start_without_the_key_when_accounts_exist() {
    let _serial = SERIAL.lock().await;
    let _a = link(
        "oura",
        &unique("oura-vu"),
        &unique("oura-u"),
        "a",
        "r",
        None,
    );
    let port = free_port();
    let out = Command::new(binary("processor"))
        .env("DATABASE_URL", database_url())
        .env("PROCESSOR_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("RAW_TOPIC", unique("raw"))
        .env_remove("TOKEN_ENCRYPTION_KEY")
        .output()
        .expect("run processor");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("TOKEN_ENCRYPTION_KEY"), "{stderr}");
    // A wrong key is refused as well.
    let out = Command::new(binary("processor"))
        .env("DATABASE_URL", database_url())
        .env("PROCESSOR_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("RAW_TOPIC", unique("raw"))
        .env("TOKEN_ENCRYPTION_KEY", "ab".repeat(32))
        .output()
        .expect("run processor");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not decrypt"));
}

/// A token endpoint that takes 9 s holds up neither other vendors' records (no pool
/// connection or lock is held across the call, and the batch does not wait for it) nor
/// loses the rotated token: the notification is parked, the background refresh stores
/// the new pair, and the retry uses it. One refresh, not one per retry.
#[tokio::test]
async fn slow_token_endpoint_holds_up_nothing_and_loses_no_token() {
    let _serial = SERIAL.lock().await;
    let api = StandIn::start().await;
    api.serve_fixtures();
    let topics = PipelineTopics::create(1).await;
    let edge = Edge::start(&topics.raw, &[]).await;
    let mut env = api.env();
    // A pool smaller than the work: a refresh holding a connection would starve it.
    env.push(("DATABASE_MAX_CONNECTIONS", "1".into()));
    let processor = ProcessorProc::start(&topics, &env).await;
    let pool = pool().await;
    {
        let mut st = api.state.lock().unwrap();
        st.token_delay = Duration::from_secs(9);
        st.refresh
            .insert("slow-r1".into(), ("slow-new".into(), "slow-r2".into()));
    }
    let (user, vuid) = (unique("slow-u"), unique("slow-vu"));
    let _a = link(
        "oura",
        &vuid,
        &user,
        "slow-old",
        "slow-r1",
        Some("2001-01-01T00:00:00Z"),
    );
    post_oura(
        &edge,
        &oura_event("create", "daily_sleep", OURA_DAILY_SLEEP_ID, &vuid),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Terra webhooks right behind it become rows long before the token endpoint answers.
    let started = Instant::now();
    let prefix = unique("slow-terra");
    let http = reqwest::Client::new();
    for i in 0..20 {
        let body = faultkit::terra_daily(&format!("{prefix}-{i}"), "2025-05-01", 1000);
        assert_eq!(faultkit::post_terra(&http, &edge.url, &body).await, 202);
    }
    loop {
        let n: i64 = faultkit::rows_by_user(&pool, &prefix).await.values().sum();
        if n == 20 * faultkit::DAILY_READINGS {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "Terra rows waited for the token endpoint: {n} rows after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The Oura notification lands once the slow refresh is stored, with the new token.
    rows(&pool, &user, 1).await;
    let calls = api.calls(&format!("/daily_sleep/{OURA_DAILY_SLEEP_ID}"));
    assert!(
        calls
            .iter()
            .all(|c| c.bearer.as_deref() == Some("slow-new")),
        "{calls:?}"
    );
    assert_eq!(
        api.state.lock().unwrap().token_calls.len(),
        1,
        "one refresh"
    );
    let version: i64 = sqlx::query_scalar(
        "select token_version from linked_accounts where vendor = 'oura' and vendor_user_id = $1",
    )
    .bind(&vuid)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(version, 2, "rotated pair stored");
    drop(processor);
}

/// A v1-model WHOOP webhook names its sleep by the integer v1 id, which no v2 path takes:
/// it used to be fetched into a 404 and closed as `not_found` (silently nothing). It is
/// dead-lettered before any request, with a reason and a detail that say what to change.
#[tokio::test]
async fn whoop_v1_webhook_is_dead_lettered_with_its_reason_not_fetched() {
    let _serial = SERIAL.lock().await;
    let s = stack().await;
    let user = unique("whoop-u");
    let vuid = whoop_user();
    s.api.accept_token("whoop-access");
    let _a = link("whoop", &vuid.to_string(), &user, "whoop-access", "r", None);
    let dlq = consumer(&s.dlq);
    post_whoop(&s.edge, &whoop_event("sleep.updated", json!(10235), vuid)).await;
    let letters = read_n(&dlq, 1, Duration::from_secs(60)).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(
        faultkit::header(&letters[0], "dlq.reason").as_deref(),
        Some("unsupported_version")
    );
    let detail = faultkit::header(&letters[0], "dlq.detail").unwrap_or_default();
    assert!(
        detail.contains("v1 webhook sleep.updated") && detail.contains("10235"),
        "{detail}"
    );
    assert!(s.api.calls("").is_empty(), "nothing fetched");
    let parked: i64 = sqlx::query_scalar(
        "select count(*) from parked_notifications where vendor = 'whoop' and vendor_user_id = $1",
    )
    .bind(vuid.to_string())
    .fetch_one(&s.pool)
    .await
    .unwrap();
    assert_eq!(parked, 0, "not parked or closed as not_found");
    assert!(
        metric(
            &s.processor,
            "processor_dlq_total{reason=\"unsupported_version\"}"
        )
        .await
            >= 1.0
    );
}

/// `n` heart-rate items every 5 minutes from `first` (an index into the day's slots).
fn heart_rate_items(first: usize, n: usize) -> Vec<Value> {
    let day = chrono::DateTime::parse_from_rfc3339("2025-01-01T05:00:00Z").unwrap();
    (first..first + n)
        .map(|i| {
            let at = day + chrono::TimeDelta::minutes(5 * i as i64);
            json!({"bpm": 50 + (i % 60), "source": "awake", "timestamp": at.to_rfc3339()})
        })
        .collect()
}

/// Oura's heart-rate collection has no webhook: a `daily_activity` notification reads the
/// day's collection (every page) and writes one `heart_rate` row per item, keyed by the
/// day, so a re-delivery lands on the same rows and a grown day replaces the set.
#[tokio::test]
async fn oura_heart_rate_collection_becomes_rows_once_across_redeliveries() {
    let _serial = SERIAL.lock().await;
    let s = stack().await;
    let (user, vuid) = (unique("oura-u"), unique("oura-vu"));
    s.api.accept_token("oura-access");
    let activity_id = "d-act-2025-01-01";
    // The fixture's day: 2025-01-01 at -05:00 = 05:00Z .. 2025-01-02T05:00Z.
    let hr = "/oura/v2/usercollection/heartrate?start_datetime=2025-01-01T05%3A00%3A00Z&end_datetime=2025-01-02T05%3A00%3A00Z";
    let page2 = format!("{hr}&next_token=p2");
    let mut second = heart_rate_items(150, 138);
    // A repeated instant (the last is kept) and an item of the next day (not this set's).
    second.push(json!({"bpm": 99, "source": "rest", "timestamp": "2025-01-01T05:50:00+00:00"}));
    second.push(json!({"bpm": 70, "source": "rest", "timestamp": "2025-01-02T05:00:00+00:00"}));
    {
        let mut st = s.api.state.lock().unwrap();
        st.docs.insert(
            format!("/oura/v2/usercollection/daily_activity/{activity_id}"),
            fixture("oura/daily_activity_offset"),
        );
        st.docs.insert(
            hr.to_owned(),
            json!({"data": heart_rate_items(0, 150), "next_token": "p2"}),
        );
        st.docs
            .insert(page2.clone(), json!({"data": second, "next_token": null}));
    }
    let _a = link("oura", &vuid, &user, "oura-access", "r", None);
    let event = oura_event("update", "daily_activity", activity_id, &vuid);
    post_oura(&s.edge, &event).await;
    // daily_activity 13 (5 totals, 6 time buckets, 2 MET samples) + 288 heart rates.
    rows(&s.pool, &user, 13 + 288).await;
    let heart_rates = || async {
        let got: Vec<(String, f64)> = sqlx::query_as(
            "select source_record_id, value from readings
             where user_id = $1 and metric = 'heart_rate' order by start_time",
        )
        .bind(&user)
        .fetch_all(&s.pool)
        .await
        .unwrap();
        got
    };
    let got = heart_rates().await;
    assert_eq!(got.len(), 288);
    assert!(got.iter().all(|(id, _)| id == "heartrate:2025-01-01"));
    assert_eq!(got[10].1, 99.0, "the repeated instant keeps the last item");

    // Oura's retry of the same webhook (same bytes) is a duplicate: nothing is fetched.
    // A later notification of the same document (new `event_time`) fetches the day again
    // and lands on the same rows, not a second set.
    post_oura(&s.edge, &event).await;
    let mut again = event.clone();
    again["event_time"] = json!("2025-01-01T09:12:00+00:00");
    post_oura(&s.edge, &again).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.api.calls(&page2).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the later notification never fetched"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        s.api.calls(&page2).len(),
        2,
        "the duplicate fetched nothing"
    );
    // The day grows by one item; its next version replaces the set (same partition, so
    // it is written after the re-delivery): exactly one more row, never 288 more.
    {
        let mut st = s.api.state.lock().unwrap();
        let doc = st.docs.get_mut(&page2).unwrap();
        doc["data"]
            .as_array_mut()
            .unwrap()
            .extend(heart_rate_items(288, 1).into_iter().map(|mut v| {
                v["timestamp"] = json!("2025-01-02T04:59:00+00:00");
                v
            }));
    }
    let mut grown = event.clone();
    grown["event_time"] = json!("2025-01-01T10:30:00+00:00");
    post_oura(&s.edge, &grown).await;
    rows(&s.pool, &user, 13 + 289).await;
    assert_eq!(heart_rates().await.len(), 289);
    assert_eq!(s.api.calls(&page2).len(), 3);
}

/// A WHOOP workout whose sport the table does not know is still a session (`other`), and
/// the name is counted where an operator sees the gap.
#[tokio::test]
async fn unknown_whoop_sport_is_a_session_of_other_and_counted_as_unmapped() {
    let _serial = SERIAL.lock().await;
    let s = stack().await;
    let user = unique("whoop-u");
    let vuid = whoop_user();
    let id = "7bfc6a15-4661-442f-a9a4-f160dd7a0003";
    s.api.accept_token("whoop-access");
    s.api.state.lock().unwrap().docs.insert(
        format!("/whoop/developer/v2/activity/workout/{id}"),
        fixture("whoop/workout_unknown_sport"),
    );
    let _a = link("whoop", &vuid.to_string(), &user, "whoop-access", "r", None);
    post_whoop(&s.edge, &whoop_event("workout.updated", json!(id), vuid)).await;
    // duration, strain, energy, mean and max heart rate.
    rows(&s.pool, &user, 5).await;
    let activities: Vec<Option<String>> =
        sqlx::query_scalar("select distinct activity from readings where user_id = $1")
            .bind(&user)
            .fetch_all(&s.pool)
            .await
            .unwrap();
    assert_eq!(activities, [Some("other".to_string())]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let line = "processor_unmapped_total{vendor=\"whoop\",name=\"activity:axe-throwing\"}";
    while metric(&s.processor, line).await < 1.0 {
        assert!(Instant::now() < deadline, "{line} never counted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
