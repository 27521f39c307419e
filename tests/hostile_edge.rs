//! The edge under hostile clients, on the real stack. Each case fills the edge's
//! connection cap (or its body budget) the way an attacker would and asserts what an
//! honest vendor sees at the same time, plus that every hostile socket is closed
//! within its timeout.
//!
//! Bounds documented in the README ("Limits and timeouts"): with the cap filled by
//! silent, preface-only or slow-header sockets, an honest webhook is answered within
//! `HEADER_READ_TIMEOUT` plus its own round trip; with slow bodies, within
//! `BODY_READ_TIMEOUT` + 1 s of lingering. The tests allow a few seconds more for a
//! loaded machine.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use bridge_core::{RawEnvelope, SchemaRegistry};
use bridge_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CAP: usize = 20;
/// Slack for a loaded 2-core machine on top of every documented bound.
const SLACK: Duration = Duration::from_secs(4);

fn addr(edge: &Edge) -> String {
    edge.url.trim_start_matches("http://").to_string()
}

async fn hostile_edge(topic: &str, extra: &[(&str, String)]) -> Edge {
    let mut env = vec![
        ("MAX_CONNECTIONS", CAP.to_string()),
        ("HEADER_READ_TIMEOUT", "2s".to_string()),
        ("BODY_READ_TIMEOUT", "2s".to_string()),
        ("LINGER_TIMEOUT", "2s".to_string()),
    ];
    env.extend(extra.iter().cloned());
    Edge::start(topic, &env).await
}

fn terra_body(user: &str) -> Vec<u8> {
    format!(r#"{{"type":"daily","user":{{"user_id":"{user}"}},"data":[]}}"#).into_bytes()
}

/// An honest, signed Terra delivery; returns its status and how long it took.
async fn honest(edge: &Edge, user: &str) -> (u16, Duration) {
    let body = terra_body(user);
    let started = Instant::now();
    let resp = reqwest::Client::new()
        .post(format!("{}/webhooks/terra", edge.url))
        .header(
            "terra-signature",
            sign::terra(secrets::TERRA, now_secs(), &body),
        )
        .body(body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("honest request answered");
    (resp.status().as_u16(), started.elapsed())
}

/// Opens `CAP` sockets, each sending `first` (possibly nothing) and then `drip`
/// one byte at a time every 300 ms, never finishing.
async fn fill(edge: &Edge, first: &[u8], drip: Option<u8>) -> Vec<TcpStream> {
    let mut socks = Vec::new();
    for _ in 0..CAP {
        let mut s = TcpStream::connect(addr(edge)).await.unwrap();
        if !first.is_empty() {
            s.write_all(first).await.unwrap();
        }
        socks.push(s);
    }
    if let Some(byte) = drip {
        for s in &socks {
            let mut s = s.try_clone_std();
            tokio::task::spawn_blocking(move || {
                while s.write_all(&[byte]).is_ok() {
                    std::thread::sleep(Duration::from_millis(300));
                }
            });
        }
    }
    // Let the edge accept them all before the honest client arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    socks
}

trait CloneStd {
    fn try_clone_std(&self) -> std::net::TcpStream;
}

impl CloneStd for TcpStream {
    /// A blocking handle on the same socket, for a dripping writer thread.
    fn try_clone_std(&self) -> std::net::TcpStream {
        let fd = std::os::fd::AsFd::as_fd(self)
            .try_clone_to_owned()
            .expect("dup socket");
        std::net::TcpStream::from(fd)
    }
}

/// Every socket sees the edge close it (EOF or reset) within `within` from `since`;
/// returns what each one read.
async fn all_closed(socks: Vec<TcpStream>, since: Instant, within: Duration) -> Vec<Vec<u8>> {
    let mut reads = Vec::new();
    for mut s in socks {
        let left = (since + within).saturating_duration_since(Instant::now());
        let mut buf = Vec::new();
        let done = tokio::time::timeout(left, s.read_to_end(&mut buf)).await;
        assert!(
            done.is_ok(),
            "a hostile socket was still open {:?} after the cap filled",
            since.elapsed()
        );
        reads.push(buf);
    }
    reads
}

async fn assert_honest_gets_through(edge: &Edge, bound: Duration, user: &str) {
    let (status, took) = honest(edge, user).await;
    assert_eq!(status, 202, "honest webhook");
    assert!(
        took < bound + SLACK,
        "honest webhook took {took:?} (bound {bound:?})"
    );
}

#[tokio::test]
async fn silent_sockets_at_the_cap_do_not_stop_intake() {
    let topic = unique("hostile-silent");
    create_topic(&topic, 1).await;
    let edge = hostile_edge(&topic, &[]).await;
    let filled = Instant::now();
    let socks = fill(&edge, b"", None).await;
    assert_honest_gets_through(&edge, Duration::from_secs(2), "u-silent").await;
    all_closed(socks, filled, Duration::from_secs(2) + SLACK).await;
}

#[tokio::test]
async fn h2_preface_sockets_at_the_cap_do_not_stop_intake() {
    let topic = unique("hostile-h2");
    create_topic(&topic, 1).await;
    let edge = hostile_edge(&topic, &[]).await;
    let filled = Instant::now();
    let socks = fill(&edge, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", None).await;
    assert_honest_gets_through(&edge, Duration::from_secs(2), "u-h2").await;
    all_closed(socks, filled, Duration::from_secs(2) + SLACK).await;
}

#[tokio::test]
async fn slow_headers_at_the_cap_do_not_stop_intake() {
    let topic = unique("hostile-slowhead");
    create_topic(&topic, 1).await;
    let edge = hostile_edge(&topic, &[]).await;
    let filled = Instant::now();
    // Still dripping header bytes: the header timer is not reset by activity.
    let socks = fill(&edge, b"POST /webhooks/terra HTTP/1.1\r\nX-A: ", Some(b'a')).await;
    assert_honest_gets_through(&edge, Duration::from_secs(2), "u-slowhead").await;
    all_closed(socks, filled, Duration::from_secs(2) + SLACK).await;
}

#[tokio::test]
async fn slow_bodies_at_the_cap_do_not_stop_intake() {
    let topic = unique("hostile-slowbody");
    create_topic(&topic, 1).await;
    let edge = hostile_edge(&topic, &[]).await;
    // A head that passes every check the edge can make without the body: fresh t,
    // a well-formed (but wrong) v1. The body then never arrives in full.
    let head = format!(
        "POST /webhooks/terra HTTP/1.1\r\nHost: x\r\nterra-signature: t={},v1={}\r\n\
         Content-Length: 100000\r\n\r\n{{\"type\":",
        now_secs(),
        "ab".repeat(32)
    );
    let filled = Instant::now();
    let socks = fill(&edge, head.as_bytes(), Some(b' ')).await;
    // BODY_READ_TIMEOUT, then at most LINGER_TIMEOUT of a dripping client.
    assert_honest_gets_through(&edge, Duration::from_secs(4), "u-slowbody").await;
    let reads = all_closed(socks, filled, Duration::from_secs(4) + SLACK).await;
    for r in reads {
        let text = String::from_utf8_lossy(&r);
        assert!(
            text.starts_with("HTTP/1.1 408"),
            "slow body answered: {text}"
        );
    }
}

/// Announcing a large body and then stalling reserves nothing: the budget counts
/// bytes received, so stalled announcements cannot lock honest bodies out.
#[tokio::test]
async fn stalled_announced_bodies_do_not_exhaust_the_budget() {
    let topic = unique("hostile-budget");
    create_topic(&topic, 1).await;
    let edge = Edge::start(
        &topic,
        &[
            ("BODY_BUDGET_BYTES", (4 * 1024 * 1024).to_string()),
            ("BODY_READ_TIMEOUT", "20s".to_string()),
        ],
    )
    .await;
    let head = format!(
        "POST /webhooks/terra HTTP/1.1\r\nHost: x\r\nterra-signature: t={},v1={}\r\n\
         Content-Length: 1048000\r\n\r\n{{\"type\":",
        now_secs(),
        "ab".repeat(32)
    );
    let mut socks = Vec::new();
    for _ in 0..30 {
        let mut s = TcpStream::connect(addr(&edge)).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        socks.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..5 {
        let (status, took) = honest(&edge, &format!("u-budget-{i}")).await;
        assert_eq!(status, 202, "honest webhook while 30 MiB are announced");
        assert!(took < Duration::from_secs(1) + SLACK, "took {took:?}");
    }
    drop(socks);
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let topic = unique("hostile-idle");
    create_topic(&topic, 1).await;
    let edge = hostile_edge(&topic, &[]).await;
    let mut s = TcpStream::connect(addr(&edge)).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let idle = Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(2) + SLACK, s.read_to_end(&mut rest))
        .await
        .is_ok();
    assert!(
        closed,
        "idle keep-alive still open after {:?}",
        idle.elapsed()
    );
}

/// Reads `/proc/<pid>/status` field `name` in KiB (VmRSS, VmHWM = peak RSS).
fn status_kib(pid: u32, name: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// The memory bound from the README:
/// RSS ≤ idle RSS + MAX_CONNECTIONS × (MAX_HEADER_BYTES + 16 KiB)
///       + 3 × BODY_BUDGET_BYTES + 16 MiB (librdkafka's queue).
#[tokio::test]
async fn bad_signature_megabyte_bodies_keep_rss_under_the_bound() {
    const CLIENTS: usize = 150;
    const BUDGET: u64 = 16 * 1024 * 1024;
    const HEADER: u64 = 32 * 1024;
    let topic = unique("hostile-rss");
    create_topic(&topic, 1).await;
    let edge = Edge::start(
        &topic,
        &[
            ("MAX_CONNECTIONS", (CLIENTS + 10).to_string()),
            ("BODY_BUDGET_BYTES", BUDGET.to_string()),
            ("MAX_HEADER_BYTES", HEADER.to_string()),
            ("BODY_READ_TIMEOUT", "20s".to_string()),
        ],
    )
    .await;
    let pid = edge.proc.child.id();
    let idle_kib = status_kib(pid, "VmRSS");
    let body = vec![b' '; 1024 * 1024 - 16];
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let addr = addr(&edge);
        let body = body.clone();
        // Half look authentic until their body is read; half lack a signature and
        // must be refused without a byte of body buffered.
        let sig = if i % 2 == 0 {
            format!(
                "terra-signature: t={},v1={}\r\n",
                now_secs(),
                "cd".repeat(32)
            )
        } else {
            String::new()
        };
        tasks.push(tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            let head = format!(
                "POST /webhooks/terra HTTP/1.1\r\nHost: x\r\n{sig}Content-Length: {}\r\n\r\n",
                body.len()
            );
            s.write_all(head.as_bytes()).unwrap();
            // Trickled, so that many bodies are in flight at once.
            for chunk in body.chunks(64 * 1024) {
                if s.write_all(chunk).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let mut answer = Vec::new();
            let _ = s.read_to_end(&mut answer);
            String::from_utf8_lossy(&answer)
                .split_whitespace()
                .nth(1)
                .unwrap_or("none")
                .to_string()
        }));
    }
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for t in tasks {
        *statuses.entry(t.await.unwrap()).or_default() += 1;
    }
    let peak_kib = status_kib(pid, "VmHWM");
    let bound_kib = idle_kib
        + ((CLIENTS as u64 + 10) * (HEADER + 16 * 1024) + 3 * BUDGET + 16 * 1024 * 1024) / 1024;
    eprintln!(
        "statuses {statuses:?}; RSS idle {idle_kib} KiB, peak {peak_kib} KiB, bound {bound_kib} KiB"
    );
    // Every client got an answer: 401 for the forgeries, or 503 while the budget was full.
    let answered: usize = ["401", "503"]
        .iter()
        .map(|s| statuses.get(*s).copied().unwrap_or(0))
        .sum();
    assert_eq!(answered, CLIENTS, "{statuses:?}");
    assert!(
        statuses.get("401").copied().unwrap_or(0) >= CLIENTS / 2,
        "{statuses:?}"
    );
    assert!(
        peak_kib < bound_kib,
        "peak RSS {peak_kib} KiB above the bound {bound_kib} KiB"
    );
    // The process lived through it and still takes honest deliveries.
    let (status, _) = honest(&edge, "u-after-rss").await;
    assert_eq!(status, 202);
}

/// A plain blocking client that writes its whole 2 MiB body before reading still
/// reads the 413 (the lingering close drains what it sends instead of resetting).
#[tokio::test]
async fn a_client_that_writes_its_whole_body_first_reads_the_413() {
    let topic = unique("hostile-413");
    create_topic(&topic, 1).await;
    let edge = Edge::start(&topic, &[]).await;
    let addr = addr(&edge);
    let status = tokio::task::spawn_blocking(move || {
        let body = vec![b' '; 2 * 1024 * 1024];
        let sig = sign::terra(secrets::TERRA, now_secs(), &body);
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let head = format!(
            "POST /webhooks/terra HTTP/1.1\r\nHost: x\r\nterra-signature: {sig}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).expect("head written");
        // Paced like a client on a real link, so it is still writing when the edge
        // has already answered (on loopback the kernel would buffer 2 MiB at once).
        for chunk in body.chunks(64 * 1024) {
            s.write_all(chunk).expect("whole body written without a reset");
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).expect("answer read without a reset");
        String::from_utf8_lossy(&answer).to_string()
    })
    .await
    .unwrap();
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    assert!(status.contains(r#"{"error":"body too large"}"#), "{status}");
}

/// A captured Terra delivery replayed inside the window with `?r=1` and a huge
/// ordering timestamp is refused; replayed with `?r=1` alone it produces the same
/// envelope as the original (no query recorded), so dedup sees a duplicate.
#[tokio::test]
async fn a_replayed_terra_delivery_cannot_change_what_data_means() {
    let topic = unique("hostile-replay");
    create_topic(&topic, 1).await;
    let edge = Edge::start(&topic, &[]).await;
    let http = reqwest::Client::new();
    let body = terra_body("u-replay");
    let t = now_secs();
    let sig = sign::terra(secrets::TERRA, t, &body);
    let ordering = (t * 1000).to_string();
    let send = |query: &str, ordering: &str| {
        http.post(format!("{}/webhooks/terra{query}", edge.url))
            .header("terra-signature", &sig)
            .header("x-terra-ordering-timestamp", ordering)
            .body(body.clone())
            .send()
    };
    assert_eq!(send("", &ordering).await.unwrap().status(), 202);
    let frozen = send("?r=1", "9223372036854775807").await.unwrap();
    assert_eq!(frozen.status(), 400);
    let text = frozen.text().await.unwrap();
    assert_eq!(text, r#"{"error":"bad request"}"#);
    // Later than t + tolerance (300 s) by a millisecond: refused too.
    let ahead = (t * 1000 + 300_001).to_string();
    assert_eq!(send("?r=2", &ahead).await.unwrap().status(), 400);
    assert_eq!(send("?r=1", &ordering).await.unwrap().status(), 202);

    let registry = SchemaRegistry::new(&registry_url()).unwrap();
    let c = consumer(&topic);
    let got = read_n(&c, 2, Duration::from_secs(30)).await;
    assert!(
        drain(&c, Duration::from_secs(2)).await.is_empty(),
        "the refused replays were appended"
    );
    let mut envs = Vec::new();
    for m in got {
        envs.push(RawEnvelope::from_avro(registry.decode(payload(&m)).await.unwrap()).unwrap());
    }
    for e in &envs {
        assert_eq!(e.query, None, "query recorded on an HMAC route");
        assert_eq!(
            e.header("x-terra-ordering-timestamp"),
            Some(ordering.as_str())
        );
    }
    assert_eq!(envs[0].body, envs[1].body);
    assert_eq!(
        envs[0].header("terra-signature"),
        envs[1].header("terra-signature")
    );
}

/// Refusals do not tell an attacker which check failed.
#[tokio::test]
async fn refusal_bodies_are_uniform() {
    let topic = unique("hostile-uniform");
    create_topic(&topic, 1).await;
    let edge = Edge::start(&topic, &[]).await;
    let http = reqwest::Client::new();
    let body = terra_body("u-uniform");
    let now = now_secs();
    let mut bodies = std::collections::BTreeSet::new();
    for sig in [
        sign::terra(secrets::TERRA, now - 301, &body),
        sign::terra(secrets::TERRA, now + 301, &body),
        sign::terra("wrong-secret", now, &body),
        format!("t={now},v1={}", "ab".repeat(32)),
    ] {
        let r = http
            .post(format!("{}/webhooks/terra", edge.url))
            .header("terra-signature", sig)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        bodies.insert(r.text().await.unwrap());
    }
    let none = http
        .post(format!("{}/webhooks/terra", edge.url))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
    bodies.insert(none.text().await.unwrap());
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    for key in [Some("wrong"), None] {
        let mut r = http.post(format!("{}/webhooks/healthkit", edge.url));
        if let Some(k) = key {
            r = r.header("api-key", k);
        }
        let r = r.body("{}").send().await.unwrap();
        assert_eq!(r.status(), 403);
        assert_eq!(r.text().await.unwrap(), r#"{"error":"forbidden"}"#);
    }
}

/// With `EDGE_ADMIN_ADDR`, probes and metrics live only there and the public port
/// serves only webhooks.
#[tokio::test]
async fn the_admin_listener_takes_probes_off_the_webhook_port() {
    let topic = unique("hostile-admin");
    create_topic(&topic, 1).await;
    let port = free_port();
    let admin_port = free_port();
    let env = vec![
        ("EDGE_LISTEN_ADDR", format!("127.0.0.1:{port}")),
        ("EDGE_ADMIN_ADDR", format!("127.0.0.1:{admin_port}")),
        ("KAFKA_BOOTSTRAP_SERVERS", kafka()),
        ("SCHEMA_REGISTRY_URL", registry_url()),
        ("RAW_TOPIC", topic.clone()),
        ("TERRA_SIGNING_SECRET", secrets::TERRA.into()),
    ];
    let _proc = Proc::start("edge", &env);
    let admin = format!("http://127.0.0.1:{admin_port}");
    let public = format!("http://127.0.0.1:{port}");
    wait_http_ok(&format!("{admin}/health"), Duration::from_secs(30)).await;
    wait_http_ok(&format!("{admin}/ready"), Duration::from_secs(30)).await;
    let http = reqwest::Client::new();
    for path in ["/health", "/ready", "/metrics"] {
        let r = http.get(format!("{public}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path} on the public port");
    }
    let body = terra_body("u-admin");
    let r = http
        .post(format!("{public}/webhooks/terra"))
        .header(
            "terra-signature",
            sign::terra(secrets::TERRA, now_secs(), &body),
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = http
        .post(format!("{admin}/webhooks/terra"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "webhooks on the admin port");
    // Prometheus asks for OpenMetrics and gets it, labelled as such.
    let metrics = http
        .get(format!("{admin}/metrics"))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        metrics.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = metrics.text().await.unwrap();
    assert!(text.contains("# TYPE edge_requests counter"), "{text}");
    assert!(
        text.contains("edge_requests_total{vendor=\"terra\",status=\"202\"} 1"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    // Anyone else gets the classic format, whose TYPE lines name the samples.
    let metrics = http.get(format!("{admin}/metrics")).send().await.unwrap();
    assert_eq!(
        metrics.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("# TYPE edge_requests_total counter"),
        "{text}"
    );
    assert!(!text.contains("# EOF"), "{text}");
    // Lint it with a real Prometheus tool where one is installed (Debian's
    // `prometheus` package); the OpenMetrics body is Prometheus's own to parse.
    match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(mut child) => {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool check metrics: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(_) => eprintln!("promtool not installed: exposition lint NOT run"),
    }
}

/// End to end through the processor: a 100 KB `traceparent` leaves the readings with a
/// fresh, valid one; a replay with `?r=1` and a huge ordering is refused and a replay
/// with `?r=1` alone is a dedup hit, so a genuine newer delivery still updates the row.
#[tokio::test]
async fn hostile_headers_and_replays_cannot_reach_the_rows() {
    use rdkafka::message::{Headers, Message};
    let topics = PipelineTopics::create(1).await;
    let edge = Edge::start(
        &topics.raw,
        &[("MAX_HEADER_BYTES", (256 * 1024).to_string())],
    )
    .await;
    let _processor = ProcessorProc::start(&topics, &[]).await;
    let pool = sqlx::PgPool::connect(&database_url()).await.unwrap();
    let http = reqwest::Client::new();
    let user = unique("hostile-e2e");
    let daily = |steps: u32| {
        format!(
            r#"{{"type":"daily","version":"2022-03-16","user":{{"user_id":"tu-{user}","provider":"GARMIN","reference_id":"{user}"}},"data":[{{"metadata":{{"start_time":"2025-04-01T00:00:00.000000+00:00","end_time":"2025-04-01T23:59:59.000000+00:00","upload_type":1,"timestamp_localization":0}},"distance_data":{{"steps":{steps}}}}}]}}"#
        )
        .into_bytes()
    };
    let t = now_secs();
    let first = daily(1000);
    let sig = sign::terra(secrets::TERRA, t, &first);
    let huge = format!(
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01{}",
        "f".repeat(100 * 1024)
    );
    let post = |query: &'static str, body: Vec<u8>, sig: String, ordering: String| {
        http.post(format!("{}/webhooks/terra{query}", edge.url))
            .header("terra-signature", sig)
            .header("x-terra-ordering-timestamp", ordering)
            .header("traceparent", huge.clone())
            .body(body)
            .send()
    };
    let ordering = (t * 1000).to_string();
    assert_eq!(
        post("", first.clone(), sig.clone(), ordering.clone())
            .await
            .unwrap()
            .status(),
        202
    );
    let steps = || async {
        sqlx::query_scalar::<_, f64>(
            "select value from readings where user_id = $1 and metric = 'step_count'",
        )
        .bind(&user)
        .fetch_optional(&pool)
        .await
        .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while steps().await.is_none() {
        assert!(
            Instant::now() < deadline,
            "first delivery never became a row"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The replays: a frozen ordering is refused; `?r=1` alone changes nothing.
    let frozen = post(
        "?r=1",
        first.clone(),
        sig.clone(),
        "9223372036854775807".into(),
    );
    assert_eq!(frozen.await.unwrap().status(), 400);
    assert_eq!(
        post("?r=1", first.clone(), sig, ordering)
            .await
            .unwrap()
            .status(),
        202
    );
    // A genuine newer delivery a few seconds later still wins.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let newer = daily(2000);
    let t2 = now_secs();
    let sig2 = sign::terra(secrets::TERRA, t2, &newer);
    assert_eq!(
        post("", newer, sig2, (t2 * 1000).to_string())
            .await
            .unwrap()
            .status(),
        202
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while steps().await != Some(2000.0) {
        assert!(
            Instant::now() < deadline,
            "the genuine newer delivery never updated the row"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Readings carry a fresh, valid trace context, never the 100 KB value.
    let c = consumer(&topics.readings);
    for m in read_n(&c, 2, Duration::from_secs(30)).await {
        let tp = m
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == "traceparent"))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8(v.to_vec()).unwrap())
            .expect("readings carry a traceparent");
        assert_eq!(tp.len(), 55, "{}", &tp[..tp.len().min(80)]);
        assert!(
            !tp.starts_with("00-0af7651916cd43dd8448eb211c80319c"),
            "{tp}"
        );
        let total: usize = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
                    .sum()
            })
            .unwrap_or(0);
        assert!(total < 1024, "readings headers {total} bytes");
    }
}
