//! Google Health API through the real edge and processor, with a local HTTP stand-in for
//! Google's API and token endpoint (the only stand-in: a third-party cloud): the
//! subscriber verification handshake (201 with the configured Authorization, 401
//! without, nothing appended), ECDSA-signed notifications appended byte for byte,
//! forgeries refused; an UPSERT fetched page by page with a refreshed token ends in the
//! right `readings` rows, a DELETE removes exactly the readings of its interval and
//! publishes tombstones.
//!
//! The processor test needs a database with this branch's migrations: run it with
//! `DATABASE_URL` pointing at a database of its own.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bridge_core::{RawEnvelope, SchemaRegistry};
use bridge_tests::*;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::elliptic_curve::Generate as _;
use p256::pkcs8::{EncodePublicKey as _, LineEnding};
use rdkafka::message::Message;

const AUTH: &str = "Bearer google-subscriber-test-secret";

/// Google's key pair for this test and the edge settings that trust it.
fn google_key() -> (SigningKey, Vec<(&'static str, String)>) {
    let sk = SigningKey::try_generate().expect("key");
    let pem = sk
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("pem");
    (
        sk,
        vec![
            ("GOOGLE_HEALTH_PUBLIC_KEYS", pem),
            ("GOOGLE_HEALTH_AUTHORIZATION", AUTH.to_owned()),
        ],
    )
}

/// `X-HEALTHAPI-SIGNATURE` as Google sends it: base64(0x01 ‖ key id ‖ DER) (google-spec.md §1).
fn signature(sk: &SigningKey, body: &[u8]) -> String {
    let sig: Signature = sk.sign(body);
    let mut raw = vec![0x01, 0, 0, 0, 42];
    raw.extend(sig.to_der().as_bytes());
    base64::engine::general_purpose::STANDARD.encode(raw)
}

#[tokio::test]
async fn verification_handshake_and_signed_notifications_at_the_edge() {
    let topic = unique("google-raw");
    create_topic(&topic, 2).await;
    let (sk, env) = google_key();
    let edge = Edge::start(&topic, &env).await;
    let url = format!("{}/webhooks/google_health", edge.url);
    let http = reqwest::Client::new();
    let verification = br#"{"type": "verification"}"#;

    // Google's two verification POSTs (discovery `projects.subscribers.create`).
    let with = http
        .post(&url)
        .header("content-type", "application/json")
        .header("authorization", AUTH)
        .body(verification.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(with.status(), 201);
    let without = http
        .post(&url)
        .header("content-type", "application/json")
        .body(verification.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(without.status(), 401);
    let body: serde_json::Value = without.json().await.unwrap();
    assert!(body["error"].is_string(), "{body}");
    let wrong = http
        .post(&url)
        .header("authorization", "Bearer guess")
        .body(verification.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    // A signed notification: 202, appended byte for byte, keyed by the user.
    let notification = br#"[{"data":{"version":"1","healthUserId":"ghu-edge-1","operation":"UPSERT","dataType":"steps","intervals":[{"physicalTimeInterval":{"startTime":"2025-01-01T07:00:00Z","endTime":"2025-01-01T08:00:00Z"}}]}}]"#;
    let sig = signature(&sk, notification);
    let ok = http
        .post(&url)
        .header("x-healthapi-signature", &sig)
        .header("authorization", AUTH)
        .body(notification.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 202);

    // Forgeries: tampered body, another key, no signature.
    let mut tampered = notification.to_vec();
    tampered[30] ^= 1;
    let (other, _) = google_key();
    for (body, sig) in [
        (tampered, Some(sig.clone())),
        (notification.to_vec(), Some(signature(&other, notification))),
        (notification.to_vec(), None),
    ] {
        let mut r = http.post(&url).header("authorization", AUTH).body(body);
        if let Some(sig) = sig {
            r = r.header("x-healthapi-signature", sig);
        }
        assert_eq!(r.send().await.unwrap().status(), 401);
    }

    let registry = SchemaRegistry::new(&registry_url()).unwrap();
    let c = consumer(&topic);
    let got = read_n(&c, 1, Duration::from_secs(30)).await;
    let env = RawEnvelope::from_avro(registry.decode(payload(&got[0])).await.unwrap()).unwrap();
    assert_eq!(env.vendor, "google_health");
    assert_eq!(env.body, notification.to_vec());
    assert_eq!(got[0].key(), Some(&b"ghu-edge-1"[..]));
    assert_eq!(
        env.headers.get("x-healthapi-signature").map(String::as_str),
        Some(sig.as_str())
    );
    // The handshakes and the forgeries appended nothing.
    assert!(
        drain(&c, Duration::from_secs(2)).await.is_empty(),
        "extra records on {topic}"
    );
}

fn fixture(name: &str) -> serde_json::Value {
    let file = format!(
        "{}/../vendors/tests/fixtures/google_health/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&file).expect(&file)).expect("fixture JSON")
}

/// One API request the stand-in saw.
#[derive(Debug)]
struct ApiCall {
    path: String,
    filter: Option<String>,
    page_token: Option<String>,
    bearer: Option<String>,
}

/// What the stand-in saw and answers.
#[derive(Default)]
struct Seen {
    /// Access tokens the API accepts.
    tokens: Vec<String>,
    /// Each API request.
    api: Vec<ApiCall>,
    /// Form fields of each token request.
    token: Vec<HashMap<String, String>>,
}

/// Google's list endpoint for `steps` (two pages of the documented shape) and token
/// endpoint, under `/google`.
async fn stand_in() -> (String, Arc<Mutex<Seen>>) {
    use warp::Filter;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let state = seen.clone();
    let routes = warp::path::full()
        .and(warp::query::<HashMap<String, String>>())
        .and(warp::header::optional::<String>("authorization"))
        .and(
            warp::body::form::<HashMap<String, String>>()
                .or(warp::any().map(HashMap::new))
                .unify(),
        )
        .map(
            move |path: warp::path::FullPath,
                  query: HashMap<String, String>,
                  auth: Option<String>,
                  form: HashMap<String, String>| {
                let mut st = state.lock().unwrap();
                let reply = |status: u16, body: serde_json::Value| {
                    warp::http::Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(body.to_string())
                        .unwrap()
                };
                if path.as_str() == "/google/token" {
                    st.token.push(form.clone());
                    // Google's refresh answer: a new access token, no new refresh token.
                    if form.get("refresh_token").map(String::as_str) == Some("refresh-1") {
                        st.tokens.push("ya29.fresh".into());
                        return reply(
                            200,
                            serde_json::json!({"access_token": "ya29.fresh",
                            "expires_in": 3599, "token_type": "Bearer"}),
                        );
                    }
                    return reply(400, serde_json::json!({"error": "invalid_grant"}));
                }
                let bearer = auth.and_then(|a| a.strip_prefix("Bearer ").map(str::to_owned));
                st.api.push(ApiCall {
                    path: path.as_str().to_owned(),
                    filter: query.get("filter").cloned(),
                    page_token: query.get("pageToken").cloned(),
                    bearer: bearer.clone(),
                });
                if !bearer.is_some_and(|b| st.tokens.contains(&b)) {
                    return reply(401, serde_json::json!({"error": {"code": 401}}));
                }
                match (path.as_str(), query.get("pageToken").map(String::as_str)) {
                    ("/google/v4/users/me/dataTypes/steps/dataPoints", None) => {
                        reply(200, fixture("list_steps_page1.json"))
                    }
                    ("/google/v4/users/me/dataTypes/steps/dataPoints", Some("page-2")) => {
                        reply(200, fixture("list_steps_page2.json"))
                    }
                    _ => reply(404, serde_json::json!({"error": {"code": 404}})),
                }
            },
        );
    tokio::spawn(
        warp::serve(routes)
            .incoming(listener)
            .graceful(std::future::pending::<()>())
            .run(),
    );
    (format!("http://{addr}"), seen)
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

/// (start, end, value) of the user's google_health step rows once `want(rows)` holds.
async fn rows_until(
    pool: &sqlx::PgPool,
    user: &str,
    want: impl Fn(&[(String, String, f64)]) -> bool,
) -> Vec<(String, String, f64)> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let rows: Vec<(
            chrono::DateTime<chrono::Utc>,
            chrono::DateTime<chrono::Utc>,
            f64,
        )> = sqlx::query_as(
            "SELECT start_time, end_time, value FROM readings \
                 WHERE user_id = $1 AND vendor = 'google_health' AND metric = 'step_count' \
                 ORDER BY start_time",
        )
        .bind(user)
        .fetch_all(pool)
        .await
        .unwrap();
        let rows: Vec<(String, String, f64)> = rows
            .into_iter()
            .map(|(s, e, v)| (s.to_rfc3339(), e.to_rfc3339(), v))
            .collect();
        if want(&rows) {
            return rows;
        }
        assert!(Instant::now() < deadline, "rows never matched: {rows:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn notification(user: &str, operation: &str, start: &str, end: &str) -> Vec<u8> {
    format!(
        r#"[{{"data":{{"version":"1","clientProvidedSubscriptionName":"bridge","healthUserId":"{user}","operation":"{operation}","dataType":"steps","intervals":[{{"physicalTimeInterval":{{"startTime":"{start}","endTime":"{end}"}}}}]}}}}]"#
    )
    .into_bytes()
}

#[tokio::test]
async fn upsert_fetches_the_interval_and_delete_removes_exactly_its_readings() {
    let topics = PipelineTopics::create(2).await;
    let (sk, edge_env) = google_key();
    let edge = Edge::start(&topics.raw, &edge_env).await;
    let (google, seen) = stand_in().await;
    let processor = ProcessorProc::start(
        &topics,
        &[
            ("GOOGLE_HEALTH_API_BASE_URL", format!("{google}/google")),
            ("GOOGLE_HEALTH_TOKEN_URL", format!("{google}/google/token")),
            ("GOOGLE_HEALTH_CLIENT_ID", "google-client".into()),
            ("GOOGLE_HEALTH_CLIENT_SECRET", "google-client-secret".into()),
            ("PARK_POLL_INTERVAL", "200ms".into()),
            ("PARK_RETRY_BASE", "1s".into()),
        ],
    )
    .await;
    let health_user = format!("ghu-{}", uuid::Uuid::new_v4().simple());
    let user = unique("google-user");
    // An access token that has expired: the first fetch refreshes it at Google's
    // token endpoint (client credentials in the body) and uses the new one.
    account(&[
        "link-account",
        "--vendor",
        "google_health",
        "--vendor-user-id",
        &health_user,
        "--user-id",
        &user,
        "--access-token",
        "ya29.expired",
        "--refresh-token",
        "refresh-1",
        "--expires-at",
        "2020-01-01T00:00:00Z",
    ]);
    let pool = sqlx::PgPool::connect(&database_url()).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/webhooks/google_health", edge.url);
    let post = |body: Vec<u8>| {
        http.post(&url)
            .header("x-healthapi-signature", signature(&sk, &body))
            .header("authorization", AUTH)
            .body(body)
            .send()
    };

    let upsert = notification(
        &health_user,
        "UPSERT",
        "2025-01-01T07:00:00Z",
        "2025-01-01T08:00:00Z",
    );
    assert_eq!(post(upsert).await.unwrap().status(), 202);
    let rows = rows_until(&pool, &user, |r| r.len() == 3).await;
    assert_eq!(
        rows,
        vec![
            (
                "2025-01-01T07:01:00+00:00".into(),
                "2025-01-01T07:02:00+00:00".into(),
                40.0
            ),
            (
                "2025-01-01T07:10:00+00:00".into(),
                "2025-01-01T07:11:00+00:00".into(),
                87.0
            ),
            (
                "2025-01-01T07:31:00+00:00".into(),
                "2025-01-01T07:32:00+00:00".into(),
                112.0
            ),
        ]
    );
    let source: Vec<(Option<String>, String)> =
        sqlx::query_as("SELECT DISTINCT source, unit FROM readings WHERE user_id = $1")
            .bind(&user)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(source, vec![(Some("Pixel Watch 3".into()), "count".into())]);
    {
        let st = seen.lock().unwrap();
        let refresh = st.token.first().expect("a refresh");
        assert_eq!(
            refresh.get("grant_type").map(String::as_str),
            Some("refresh_token")
        );
        assert_eq!(
            refresh.get("client_id").map(String::as_str),
            Some("google-client")
        );
        assert_eq!(
            refresh.get("client_secret").map(String::as_str),
            Some("google-client-secret")
        );
        let fetched: Vec<_> = st
            .api
            .iter()
            .filter(|c| c.bearer.as_deref() == Some("ya29.fresh"))
            .collect();
        assert_eq!(fetched.len(), 2, "{:?}", st.api);
        assert_eq!(
            fetched[0].filter.as_deref(),
            Some(
                r#"steps.interval.start_time >= "2025-01-01T07:00:00Z" AND steps.interval.start_time < "2025-01-01T08:00:00Z""#
            )
        );
        assert_eq!(fetched[1].page_token.as_deref(), Some("page-2"));
        assert!(
            st.api
                .iter()
                .all(|c| c.path.starts_with("/google/v4/users/me/"))
        );
    }

    // DELETE [07:00, 07:30): the 07:01 and 07:10 readings go, 07:31 stays; no request.
    let calls_before = seen.lock().unwrap().api.len();
    let delete = notification(
        &health_user,
        "DELETE",
        "2025-01-01T07:00:00Z",
        "2025-01-01T07:30:00Z",
    );
    assert_eq!(post(delete).await.unwrap().status(), 202);
    let rows = rows_until(&pool, &user, |r| r.len() == 1).await;
    assert_eq!(
        rows,
        vec![(
            "2025-01-01T07:31:00+00:00".into(),
            "2025-01-01T07:32:00+00:00".into(),
            112.0
        )]
    );
    assert_eq!(
        seen.lock().unwrap().api.len(),
        calls_before,
        "a DELETE fetches nothing"
    );

    // The changelog: three upserts, then two tombstones (null values) for the deleted rows.
    let c = consumer(&topics.readings);
    let records = read_n(&c, 5, Duration::from_secs(60)).await;
    let tombstones = records.iter().filter(|m| m.payload().is_none()).count();
    assert_eq!(tombstones, 2, "{} records", records.len());

    account(&[
        "unlink-account",
        "--vendor",
        "google_health",
        "--vendor-user-id",
        &health_user,
    ]);
    drop(processor);
}
