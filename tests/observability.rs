//! What an SRE sees, checked with the real tools: a webhook's trace in a real Jaeger
//! (edge request span, the processor's per-envelope spans beneath it, the batch spans
//! linked to it), both services scraped by a real Prometheus (targets up, every
//! documented metric family present with its documented type), `promtool` on both
//! expositions, on the alert rules, and on every PromQL expression of the dashboard.
//!
//! Jaeger and Prometheus come from `scripts/stack observe-up` (`make test` runs it).
//! The Jaeger test is skipped, saying so, only where Go (needed to build Jaeger) is
//! absent; a missing Prometheus fails.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bridge_tests::{
    Edge, PipelineTopics, Proc, ProcessorProc, database_url, free_port, now_secs, secrets, sign,
    unique, wait_http_ok,
};
use rdkafka::message::{Headers, Message};
use serde_json::Value;
use sqlx::PgPool;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn jaeger_query_url() -> String {
    std::env::var("JAEGER_QUERY_URL").unwrap_or_else(|_| "http://127.0.0.1:16686".into())
}

fn jaeger_otlp_url() -> String {
    std::env::var("JAEGER_OTLP_URL").unwrap_or_else(|_| "http://127.0.0.1:4318".into())
}

fn on_path(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn terra_daily(reference: &str) -> Vec<u8> {
    format!(
        r#"{{"type":"daily","version":"2022-03-16","user":{{"user_id":"tu-{reference}","provider":"GARMIN","reference_id":"{reference}"}},"data":[{{"metadata":{{"start_time":"2025-03-01T00:00:00.000000+00:00","end_time":"2025-03-01T23:59:59.000000+00:00","upload_type":1,"timestamp_localization":0}},"distance_data":{{"steps":8123,"distance_meters":6310.5}},"heart_rate_data":{{"summary":{{"resting_hr_bpm":52,"avg_hrv_rmssd":48.3}}}}}}]}}"#
    )
    .into_bytes()
}

async fn post_terra(edge: &Edge, body: &[u8], traceparent: Option<&str>) -> u16 {
    let mut req = reqwest::Client::new()
        .post(format!("{}/webhooks/terra", edge.url))
        .header("content-type", "application/json")
        .header(
            "terra-signature",
            sign::terra(secrets::TERRA, now_secs(), body),
        )
        .body(body.to_vec());
    if let Some(tp) = traceparent {
        req = req.header("traceparent", tp);
    }
    req.send().await.expect("edge answers").status().as_u16()
}

async fn wait_rows(pool: &PgPool, user: &str, timeout: Duration) -> i64 {
    let deadline = Instant::now() + timeout;
    loop {
        let n: i64 = sqlx::query_scalar("select count(*) from readings where user_id = $1")
            .bind(user)
            .fetch_one(pool)
            .await
            .expect("count readings");
        if n > 0 {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "no readings for {user} within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn random_hex(bytes: usize) -> String {
    let mut s = String::new();
    while s.len() < bytes * 2 {
        s.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    s.truncate(bytes * 2);
    s
}

// ------------------------------------------------------------------ Jaeger

/// One span of a Jaeger API trace.
#[derive(Debug)]
struct JSpan {
    trace: String,
    id: String,
    name: String,
    service: String,
    /// (refType, traceID, spanID)
    refs: Vec<(String, String, String)>,
}

fn spans_of(trace: &Value) -> Vec<JSpan> {
    let services: HashMap<&str, &str> = trace["processes"]
        .as_object()
        .map(|p| {
            p.iter()
                .map(|(k, v)| (k.as_str(), v["serviceName"].as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    trace["spans"]
        .as_array()
        .map(|spans| {
            spans
                .iter()
                .map(|s| JSpan {
                    trace: s["traceID"].as_str().unwrap_or("").to_string(),
                    id: s["spanID"].as_str().unwrap_or("").to_string(),
                    name: s["operationName"].as_str().unwrap_or("").to_string(),
                    service: services
                        .get(s["processID"].as_str().unwrap_or(""))
                        .copied()
                        .unwrap_or("")
                        .to_string(),
                    refs: s["references"]
                        .as_array()
                        .map(|r| {
                            r.iter()
                                .map(|r| {
                                    (
                                        r["refType"].as_str().unwrap_or("").to_string(),
                                        r["traceID"].as_str().unwrap_or("").to_string(),
                                        r["spanID"].as_str().unwrap_or("").to_string(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Jaeger pads trace ids to 32 hex digits, but may drop leading zeros: compare numerically.
fn same_id(a: &str, b: &str) -> bool {
    a.trim_start_matches('0') == b.trim_start_matches('0')
}

async fn jaeger_trace(client: &reqwest::Client, trace_id: &str) -> Vec<JSpan> {
    let r = client
        .get(format!("{}/api/traces/{trace_id}", jaeger_query_url()))
        .send()
        .await
        .expect("Jaeger query API");
    if !r.status().is_success() {
        return Vec::new();
    }
    let v: Value = r.json().await.expect("Jaeger JSON");
    v["data"]
        .as_array()
        .map(|d| d.iter().flat_map(spans_of).collect())
        .unwrap_or_default()
}

async fn jaeger_service_spans(client: &reqwest::Client, service: &str) -> Vec<JSpan> {
    let r = client
        .get(format!(
            "{}/api/traces?service={service}&limit=100&lookback=1h",
            jaeger_query_url()
        ))
        .send()
        .await
        .expect("Jaeger query API");
    if !r.status().is_success() {
        return Vec::new();
    }
    let v: Value = r.json().await.expect("Jaeger JSON");
    v["data"]
        .as_array()
        .map(|d| d.iter().flat_map(spans_of).collect())
        .unwrap_or_default()
}

/// A webhook sent with a known `traceparent` yields one trace in Jaeger with that id:
/// the edge's request span (child of the caller's span), the processor's per-envelope
/// `normalize` span beneath it, and the batch spans (`batch`, `seen_many`, `upsert`,
/// `publish`, `mark_many`) in the processor's batch trace, each linked to the edge's
/// span. Both services log at `warn` (export must not depend on the log level), and
/// the batch export delay is a minute: the spans arrive only because shutdown flushes.
#[tokio::test]
async fn webhook_trace_reaches_jaeger_with_processor_spans_and_batch_links() {
    let client = reqwest::Client::new();
    let up = client
        .get(format!("{}/api/services", jaeger_query_url()))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    if !up {
        if !on_path("go") && !Path::new("/usr/local/go/bin/go").exists() {
            eprintln!(
                "SKIPPED: Go is not installed, so scripts/stack cannot build Jaeger; \
                 install Go and run `scripts/stack observe-up` to run this test"
            );
            return;
        }
        panic!(
            "Jaeger does not answer at {}: run `scripts/stack observe-up` (make test does)",
            jaeger_query_url()
        );
    }

    let run = uuid::Uuid::new_v4().simple().to_string();
    let edge_service = format!("edge-test-{run}");
    let processor_service = format!("processor-test-{run}");
    let otel = |service: &str| {
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", jaeger_otlp_url()),
            ("OTEL_SERVICE_NAME", service.to_string()),
            ("OTEL_BSP_SCHEDULE_DELAY", "60000".to_string()),
            ("RUST_LOG", "warn".to_string()),
        ]
    };
    let topics = PipelineTopics::create(1).await;
    let mut edge = Edge::start(&topics.raw, &otel(&edge_service)).await;
    let mut processor = ProcessorProc::start(&topics, &otel(&processor_service)).await;

    let trace_id = random_hex(16);
    let caller_span = random_hex(8);
    let traceparent = format!("00-{trace_id}-{caller_span}-01");
    let user = unique("trace-user");
    assert_eq!(
        post_terra(&edge, &terra_daily(&user), Some(&traceparent)).await,
        202
    );
    let pool = PgPool::connect(&database_url()).await.expect("postgres");
    wait_rows(&pool, &user, Duration::from_secs(60)).await;
    // The upsert committed; mark_many comes after publish: let the batch finish.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(edge.proc.terminate(Duration::from_secs(30)), Some(0));
    assert_eq!(processor.proc.terminate(Duration::from_secs(30)), Some(0));

    // Spans were flushed at exit; Jaeger's own batching adds a moment.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (trace, batch_spans) = loop {
        let trace = jaeger_trace(&client, &trace_id).await;
        let batch = jaeger_service_spans(&client, &processor_service).await;
        let has = |spans: &[JSpan], name: &str| spans.iter().any(|s| s.name == name);
        let done = has(&trace, "webhook")
            && has(&trace, "normalize")
            && ["batch", "seen_many", "upsert", "publish", "mark_many"]
                .iter()
                .all(|n| has(&batch, n));
        if done || Instant::now() > deadline {
            break (trace, batch);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    let webhook = trace
        .iter()
        .find(|s| s.name == "webhook" && s.service == edge_service)
        .unwrap_or_else(|| {
            panic!(
                "no edge `webhook` span in trace {trace_id}; spans there: {trace:?}; \
                 the edge did not continue the incoming traceparent"
            )
        });
    assert!(
        webhook
            .refs
            .iter()
            .any(|(t, tr, sp)| t == "CHILD_OF" && same_id(tr, &trace_id) && sp == &caller_span),
        "the edge span is not a child of the caller's span {caller_span}: {webhook:?}"
    );

    // Per-envelope spans: descendants of the edge span, in the same trace.
    let by_id: HashMap<&str, &JSpan> = trace.iter().map(|s| (s.id.as_str(), s)).collect();
    let descends_from_webhook = |s: &JSpan| {
        let mut cur = s;
        for _ in 0..16 {
            let Some((_, _, parent)) = cur.refs.iter().find(|(t, _, _)| t == "CHILD_OF") else {
                return false;
            };
            if parent == &webhook.id {
                return true;
            }
            match by_id.get(parent.as_str()) {
                Some(p) => cur = p,
                None => return false,
            }
        }
        false
    };
    let normalize = trace
        .iter()
        .find(|s| s.name == "normalize" && s.service == processor_service)
        .unwrap_or_else(|| panic!("no processor `normalize` span in trace {trace_id}: {trace:?}"));
    assert!(
        descends_from_webhook(normalize),
        "normalize is not beneath the edge span: {normalize:?}"
    );

    // What scripts/trace (the README's way to look at a trace) prints for it.
    let out = Command::new(repo_root().join("scripts/trace"))
        .arg(&trace_id)
        .env("JAEGER_QUERY_URL", jaeger_query_url())
        .output()
        .expect("scripts/trace");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && text.contains(&format!("webhook  ({edge_service}"))
            && text.contains(&format!("    normalize  ({processor_service}")),
        "scripts/trace {trace_id}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Batch spans: their own trace, linked (FOLLOWS_FROM in Jaeger's model) to the
    // edge span of every webhook they carried.
    for name in ["batch", "seen_many", "upsert", "publish", "mark_many"] {
        let linked = batch_spans.iter().any(|s| {
            s.name == name
                && s.refs.iter().any(|(t, tr, sp)| {
                    t == "FOLLOWS_FROM" && same_id(tr, &trace_id) && sp == &webhook.id
                })
        });
        assert!(
            linked,
            "no `{name}` span of {processor_service} links to trace {trace_id} span {}; \
             batch spans seen: {:?}",
            webhook.id,
            batch_spans
                .iter()
                .map(|s| (&s.name, &s.trace, &s.refs))
                .collect::<Vec<_>>()
        );
    }
}

// ------------------------------------------------------------------ Prometheus, promtool

/// Metric families the README documents (its Observability table): name → type.
fn documented_families() -> BTreeMap<String, String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let mut out = BTreeMap::new();
    for line in readme.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `name` | type | labels | meaning |
        if cells.len() < 5 {
            continue;
        }
        let name = cells[1].trim_matches('`');
        if cells[1].starts_with('`')
            && (name.starts_with("edge_")
                || name.starts_with("processor_")
                || name.starts_with("process_"))
            && ["counter", "gauge", "histogram"].contains(&cells[2])
        {
            out.insert(name.to_string(), cells[2].to_string());
        }
    }
    assert!(
        out.len() > 20,
        "README's metric table not found or too short: {out:?}"
    );
    out
}

/// Families (name as queried: counters with `_total`) and types from a classic exposition.
fn families(classic: &str) -> BTreeMap<String, String> {
    classic
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|r| r.split_once(' '))
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

async fn get_metrics(base: &str, accept: Option<&str>) -> (String, String) {
    let mut req = reqwest::Client::new().get(format!("{base}/metrics"));
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let r = req.send().await.expect("metrics endpoint");
    assert!(r.status().is_success(), "{base}/metrics: {}", r.status());
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (ct, r.text().await.expect("metrics body"))
}

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write;
    assert!(
        on_path("promtool"),
        "promtool missing: run `scripts/stack observe-up` (installs Debian's prometheus package)"
    );
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write promtool stdin");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("promtool output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Every PromQL expression of the dashboard.
fn dashboard_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join("ops/grafana-dashboard.json"))
        .expect("ops/grafana-dashboard.json");
    let v: Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let mut out = Vec::new();
    for panel in v["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().into_iter().flatten() {
            out.push(t["expr"].as_str().expect("target expr").to_string());
        }
    }
    assert!(out.len() >= 12, "dashboard has too few queries: {out:?}");
    out
}

/// Every alert expression of ops/alerts.yml.
fn alert_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join("ops/alerts.yml")).expect("alerts.yml");
    let v: serde_yaml::Value = serde_yaml::from_str(&text).expect("alerts.yml is YAML");
    let mut out = Vec::new();
    for g in v["groups"].as_sequence().expect("groups") {
        for r in g["rules"].as_sequence().expect("rules") {
            assert!(
                r["annotations"]["runbook"]
                    .as_str()
                    .is_some_and(|s| s.len() > 20),
                "alert {:?} has no runbook line",
                r["alert"]
            );
            out.push(r["expr"].as_str().expect("expr").to_string());
        }
    }
    out
}

/// Metric names (our prefixes) an expression refers to.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_alphabetic() || bytes[i] == '_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == '_') {
                i += 1;
            }
            let word: String = bytes[start..i].iter().collect();
            if word.starts_with("edge_")
                || word.starts_with("processor_")
                || word.starts_with("process_")
            {
                out.insert(word);
            }
        } else if bytes[i] == '"' {
            // Skip label values.
            i += 1;
            while i < bytes.len() && bytes[i] != '"' {
                i += 1;
            }
            i += 1;
        } else {
            i += 1;
        }
    }
    out
}

/// Series names a family exposes (histograms: `_bucket`, `_sum`, `_count`).
fn series_names(families: &BTreeMap<String, String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (name, kind) in families {
        if kind == "histogram" {
            for s in ["_bucket", "_sum", "_count"] {
                out.insert(format!("{name}{s}"));
            }
        } else {
            out.insert(name.clone());
        }
    }
    out
}

/// Runs a real Prometheus against both services, plus `promtool` on their expositions,
/// the alert rules and the dashboard.
#[tokio::test]
async fn prometheus_scrapes_both_services_and_ops_files_hold() {
    assert!(
        on_path("prometheus"),
        "prometheus missing: run `scripts/stack observe-up` (installs Debian's prometheus package)"
    );
    let topics = PipelineTopics::create(1).await;
    let edge = Edge::start(&topics.raw, &[]).await;
    let processor = ProcessorProc::start(&topics, &[]).await;

    // Samples for the labelled families: one accepted webhook, one refused.
    let user = unique("prom-user");
    // With a traceparent: its trace must reach every reading record (spans are not
    // exported in this test; the context travels anyway).
    let trace_id = random_hex(16);
    let traceparent = format!("00-{trace_id}-{}-01", random_hex(8));
    let readings = bridge_tests::consumer(&topics.readings);
    assert_eq!(
        post_terra(&edge, &terra_daily(&user), Some(&traceparent)).await,
        202
    );
    let refused = reqwest::Client::new()
        .post(format!("{}/webhooks/terra", edge.url))
        .header("terra-signature", "t=1,v1=00")
        .body("{}")
        .send()
        .await
        .expect("edge answers");
    assert_eq!(refused.status().as_u16(), 401);
    let pool = PgPool::connect(&database_url()).await.expect("postgres");
    let rows = wait_rows(&pool, &user, Duration::from_secs(60)).await;
    let records = bridge_tests::read_n(&readings, rows as usize, Duration::from_secs(60)).await;
    for r in &records {
        let tp = r
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == "traceparent"))
            .and_then(|h| std::str::from_utf8(h.value?).ok())
            .unwrap_or_default();
        assert!(
            tp.starts_with(&format!("00-{trace_id}-")),
            "reading record without the webhook's trace: {tp:?}"
        );
    }

    // Both expositions: classic by default, OpenMetrics when asked, each labelled as such.
    let mut exposed = BTreeMap::new();
    for (service, base) in [("edge", &edge.url), ("processor", &processor.url)] {
        let (ct, classic) = get_metrics(base, None).await;
        assert!(
            ct.starts_with("text/plain; version=0.0.4"),
            "{service} classic content type: {ct}"
        );
        let (ok, out) = promtool(&["check", "metrics"], Some(&classic));
        assert!(
            ok && out.trim().is_empty(),
            "promtool check metrics on {service}: {out}\n{classic}"
        );
        let (ct, om) = get_metrics(base, Some("application/openmetrics-text;version=1.0.0")).await;
        assert!(
            ct.starts_with("application/openmetrics-text; version=1.0.0"),
            "{service} OpenMetrics content type: {ct}"
        );
        assert!(om.ends_with("# EOF\n"), "{service} OpenMetrics body: {om}");
        exposed.extend(families(&classic));
    }
    let documented = documented_families();
    for (name, kind) in &documented {
        assert_eq!(
            exposed.get(name),
            Some(kind),
            "documented family {name} ({kind}) not exposed as such"
        );
    }
    for name in exposed.keys() {
        assert!(
            documented.contains_key(name),
            "{name} is exposed but not in the README's metric table"
        );
    }

    // ops/: rules and config check, and every expression (rules and dashboard) parses
    // and names only metrics that exist.
    let ops = repo_root().join("ops");
    let (ok, out) = promtool(
        &[
            "check",
            "rules",
            ops.join("alerts.yml").to_str().expect("path"),
        ],
        None,
    );
    assert!(ok, "promtool check rules: {out}");
    let (ok, out) = promtool(
        &[
            "check",
            "config",
            ops.join("prometheus.yml").to_str().expect("path"),
        ],
        None,
    );
    assert!(ok, "promtool check config: {out}");
    let series = series_names(&exposed);
    let dir = std::env::temp_dir().join(unique("obs-test"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in dashboard_exprs()
        .iter()
        .chain(alert_exprs().iter())
        .enumerate()
    {
        let names = metric_names(expr);
        // `up` is Prometheus' own per-target series.
        assert!(
            !names.is_empty() || expr.starts_with("up{"),
            "expression names none of our metrics: {expr}"
        );
        for n in names {
            assert!(
                series.contains(&n),
                "`{expr}` names {n}, which no service exposes"
            );
        }
        rules.push_str(&format!(
            "      - record: check:expr_{i}\n        expr: {}\n",
            serde_json::to_string(expr).expect("quote")
        ));
    }
    let rules_file = dir.join("exprs.yml");
    std::fs::write(&rules_file, rules).expect("write rules");
    let (ok, out) = promtool(
        &["check", "rules", rules_file.to_str().expect("path")],
        None,
    );
    assert!(ok, "a dashboard or alert expression does not parse: {out}");

    // A real Prometheus scrapes both, with the shipped alert rules loaded.
    let port = free_port();
    let target = |url: &str| url.trim_start_matches("http://").to_string();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
         scrape_configs:\n  - job_name: edge\n    static_configs:\n      - targets: [\"{}\"]\n\
         \x20 - job_name: processor\n    static_configs:\n      - targets: [\"{}\"]\n",
        ops.join("alerts.yml").display(),
        target(&edge.url),
        target(&processor.url)
    );
    std::fs::write(dir.join("prometheus.yml"), config).expect("write config");
    let log = std::fs::File::create(dir.join("prometheus.log")).expect("log");
    let prometheus = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn prometheus");
    let _prometheus = Proc { child: prometheus };
    let prom = format!("http://127.0.0.1:{port}");
    wait_http_ok(&format!("{prom}/-/ready"), Duration::from_secs(60)).await;

    let client = reqwest::Client::new();
    let get = |path: String| {
        let client = client.clone();
        let prom = prom.clone();
        async move {
            let v: Value = client
                .get(format!("{prom}{path}"))
                .send()
                .await
                .expect("prometheus API")
                .json()
                .await
                .expect("prometheus JSON");
            v
        }
    };
    // Targets up, scraped a few times without error.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = get("/api/v1/targets".into()).await;
        let targets = v["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let healthy = targets.len() == 2
            && targets
                .iter()
                .all(|t| t["health"] == "up" && t["lastError"] == "");
        let scrapes = get("/api/v1/query?query=count_over_time(up[1m])".into()).await;
        let enough = scrapes["data"]["result"].as_array().is_some_and(|r| {
            r.len() == 2
                && r.iter().all(|s| {
                    s["value"][1]
                        .as_str()
                        .and_then(|v| v.parse::<f64>().ok())
                        .is_some_and(|n| n >= 3.0)
                })
        });
        if healthy && enough {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "targets not healthy: {targets:?}; scrapes: {scrapes}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Every documented family, with its type, in what Prometheus parsed (metadata keys
    // counters without `_total`, as OpenMetrics names the family).
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for job in ["edge", "processor"] {
        let v = get(format!(
            "/api/v1/targets/metadata?match_target={{job=\"{job}\"}}"
        ))
        .await;
        for m in v["data"].as_array().expect("metadata") {
            seen.insert(
                m["metric"].as_str().unwrap_or("").to_string(),
                m["type"].as_str().unwrap_or("").to_string(),
            );
        }
    }
    for (name, kind) in &documented {
        let family = if kind == "counter" {
            name.strip_suffix("_total").unwrap_or(name)
        } else {
            name
        };
        assert_eq!(
            seen.get(family),
            Some(kind),
            "Prometheus has no {kind} family {family}; it parsed: {seen:?}"
        );
    }
    // The counters' samples are there under their `_total` names, and the rules load.
    let v = get("/api/v1/query?query=edge_requests_total".into()).await;
    assert!(
        v["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
        "edge_requests_total has no samples: {v}"
    );
    let v = get("/api/v1/rules".into()).await;
    let rules = v["data"]["groups"][0]["rules"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(rules.len(), alert_exprs().len(), "rules loaded: {v}");
    assert!(
        rules.iter().all(|r| r["health"] != "err"),
        "a rule fails to evaluate: {v}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `bin` with `env` until it exits (at most 30 s); returns its exit code and stderr.
fn run_to_exit(bin: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(bridge_tests::binary(bin));
    cmd.env("RUST_LOG", "info")
        .env("EDGE_LISTEN_ADDR", format!("127.0.0.1:{}", free_port()))
        .env(
            "PROCESSOR_LISTEN_ADDR",
            format!("127.0.0.1:{}", free_port()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Trace export settings we cannot honour stop the service at start, naming the
/// variable, rather than silently exporting nothing.
#[test]
fn unsupported_trace_settings_refuse_to_start() {
    for bin in ["edge", "processor"] {
        let (code, err) = run_to_exit(
            bin,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ],
        );
        assert!(
            code.is_some_and(|c| c != 0),
            "{bin} started with OTLP/gRPC: {code:?} {err}"
        );
        assert!(
            err.contains("OTEL_EXPORTER_OTLP_PROTOCOL=grpc") && err.contains("http/protobuf"),
            "{bin}: {err}"
        );
        let (code, err) = run_to_exit(bin, &[("OTEL_TRACES_FILTER", "processor=loud")]);
        assert!(
            code.is_some_and(|c| c != 0) && err.contains("OTEL_TRACES_FILTER"),
            "{bin} with a bad OTEL_TRACES_FILTER: {code:?} {err}"
        );
    }
}

/// The dependency gauges tell a reachable dependency from an unreachable one: a
/// processor pointed at a Redis port nothing listens on (it starts anyway: Redis is only
/// a filter) reports `redis` 0 and the others 1. The parked-age gauge reads PostgreSQL:
/// a notification parked a day ago shows as at least a day old.
#[tokio::test]
async fn dependency_gauges_follow_reachability() {
    let topics = PipelineTopics::create(1).await;
    let dead_redis = format!("redis://127.0.0.1:{}", free_port());
    // Started first: it applies the migrations the parked row below needs.
    let processor = ProcessorProc::start(&topics, &[("REDIS_URL", dead_redis)]).await;
    let pool = PgPool::connect(&database_url()).await.expect("postgres");
    // Due tomorrow, so no retry task claims it meanwhile; removed at the end.
    let event_id = unique("obs-parked");
    sqlx::query(
        "insert into parked_notifications (event_id, vendor, vendor_user_id, body, headers, \
         received_at, raw_partition, raw_offset, reason, next_attempt_at, parked_at) \
         values ($1, 'oura', $1, '\\x7b7d', '{}', now(), 0, 0, 'unlinked', \
         now() + interval '1 day', now() - interval '1 day')",
    )
    .bind(&event_id)
    .execute(&pool)
    .await
    .expect("park a notification");

    // Probes run every 5 s: poll until the gauges show the dependencies and the row.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (values, unlinked_age, text) = loop {
        let (_, text) = get_metrics(&processor.url, None).await;
        let values: BTreeMap<String, String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("processor_dependency_up{dependency=\""))
            .filter_map(|r| r.split_once("\"} "))
            .map(|(d, v)| (d.to_string(), v.to_string()))
            .collect();
        let unlinked_age = text
            .lines()
            .find_map(|l| {
                l.strip_prefix(
                    "processor_parked_notifications_oldest_age_seconds{reason=\"unlinked\"} ",
                )
            })
            .and_then(|v| v.parse::<f64>().ok());
        if (values.len() == 4 && unlinked_age.is_some_and(|a| a >= 86_399.0))
            || Instant::now() > deadline
        {
            break (values, unlinked_age, text);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    sqlx::query("delete from parked_notifications where event_id = $1")
        .bind(&event_id)
        .execute(&pool)
        .await
        .expect("remove the test row");
    let expected: BTreeMap<String, String> = [
        ("kafka", "1"),
        ("postgres", "1"),
        ("redis", "0"),
        ("schema_registry", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(values, expected);
    assert!(
        unlinked_age.is_some_and(|a| a >= 86_399.0),
        "oldest unlinked parked age: {unlinked_age:?}\n{text}"
    );
}
