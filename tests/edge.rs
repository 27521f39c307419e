//! The edge against the real stack: signed webhooks → 202 → raw topic, decoded
//! through the registry with byte-identical bodies; refusals append nothing.

use std::time::Duration;

use bridge_core::{RawEnvelope, SchemaRegistry};
use bridge_tests::*;
use rdkafka::message::{Headers, Message};

async fn decoded(topic: &str, n: usize) -> Vec<(Option<Vec<u8>>, RawEnvelope, Vec<String>)> {
    let registry = SchemaRegistry::new(&registry_url()).unwrap();
    let c = consumer(topic);
    let mut out = Vec::new();
    for m in read_n(&c, n, Duration::from_secs(30)).await {
        let env = RawEnvelope::from_avro(registry.decode(payload(&m)).await.unwrap()).unwrap();
        let header_names = m
            .headers()
            .map(|h| h.iter().map(|h| h.key.to_string()).collect())
            .unwrap_or_default();
        out.push((m.key().map(<[u8]>::to_vec), env, header_names));
    }
    // Nothing beyond what we expected was appended.
    assert!(
        drain(&c, Duration::from_secs(2)).await.is_empty(),
        "extra records on {topic}"
    );
    out
}

#[tokio::test]
async fn every_vendor_signed_webhook_lands_byte_identical() {
    let topic = unique("edge-raw");
    create_topic(&topic, 4).await;
    let edge = Edge::start(&topic, &[]).await;
    let http = reqwest::Client::new();
    let now = now_secs();

    // Bodies with whitespace and key order a re-serializer would change.
    let terra = br#"{"type":"daily", "user":{"user_id":"u-terra-1","reference_id":"user-42"},"data":[],"version":"2022-03-16"}"#;
    let whoop = br#"{"user_id":10129,"id":"ecfc6a15-4661-442f-a9a4-f160dd7afae8","type":"sleep.updated","trace_id":"t"}"#;
    let oura = br#"{"event_type":"update","data_type":"daily_sleep","object_id":"o1","event_time":"2025-01-01T08:00:00+00:00","user_id":"oura-user-123"}"#;
    let polar = br#"{"event":"EXERCISE","user_id":475,"entity_id":"aQlC83","timestamp":"2025-01-01T08:00:00Z","url":"https://x"}"#;
    let hk = br#"{"data":{"metrics":[]}}"#;

    let reqs = vec![
        http.post(format!("{}/webhooks/terra", edge.url))
            .header("terra-signature", sign::terra(secrets::TERRA, now, terra))
            .header("x-terra-ordering-timestamp", "1735718400123")
            .header(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )
            .body(terra.to_vec()),
        http.post(format!("{}/webhooks/whoop", edge.url))
            .header(
                "X-WHOOP-Signature",
                sign::whoop(secrets::WHOOP, now * 1000, whoop),
            )
            .header("X-WHOOP-Signature-Timestamp", (now * 1000).to_string())
            .body(whoop.to_vec()),
        http.post(format!("{}/webhooks/oura", edge.url))
            .header("x-oura-signature", sign::oura(secrets::OURA, now, oura))
            .header("x-oura-timestamp", now.to_string())
            .body(oura.to_vec()),
        http.post(format!("{}/webhooks/polar", edge.url))
            .header(
                "Polar-Webhook-Signature",
                sign::polar(secrets::POLAR, polar),
            )
            .body(polar.to_vec()),
        http.post(format!("{}/webhooks/healthkit?source=hae", edge.url))
            .header("api-key", secrets::HEALTHKIT_KEY)
            .header("content-type", "application/json")
            .body(hk.to_vec()),
    ];
    let mut ids = Vec::new();
    for r in reqs {
        let resp = r.send().await.unwrap();
        assert_eq!(resp.status(), 202);
        let body: serde_json::Value = resp.json().await.unwrap();
        ids.push(body["id"].as_str().expect("id in 202 body").to_string());
    }

    let got = decoded(&topic, 5).await;
    let by_vendor = |v: &str| {
        got.iter()
            .find(|(_, e, _)| e.vendor == v)
            .unwrap_or_else(|| panic!("{v} missing"))
    };

    let (key, env, headers) = by_vendor("terra");
    assert_eq!(env.body, terra);
    assert_eq!(key.as_deref(), Some(&b"u-terra-1"[..]));
    assert_eq!(
        env.header("x-terra-ordering-timestamp"),
        Some("1735718400123")
    );
    assert!(env.header("terra-signature").is_some());
    assert!(
        headers.iter().any(|h| h == "traceparent"),
        "traceparent in Kafka headers"
    );
    assert!(ids.contains(&env.event_id));

    let (key, env, _) = by_vendor("whoop");
    assert_eq!(env.body, whoop);
    assert_eq!(key.as_deref(), Some(&b"10129"[..]));
    assert!(env.header("x-whoop-signature-timestamp").is_some());

    let (key, env, _) = by_vendor("oura");
    assert_eq!(env.body, oura);
    assert_eq!(key.as_deref(), Some(&b"oura-user-123"[..]));

    let (key, env, _) = by_vendor("polar");
    assert_eq!(env.body, polar);
    assert_eq!(key.as_deref(), Some(&b"475"[..]));

    let (key, env, _) = by_vendor("healthkit");
    assert_eq!(env.body, hk);
    assert_eq!(env.principal.as_deref(), Some(secrets::HEALTHKIT_USER));
    assert_eq!(key.as_deref(), Some(secrets::HEALTHKIT_USER.as_bytes()));
    assert_eq!(env.query.as_deref(), Some("source=hae"));
    assert_eq!(env.content_type.as_deref(), Some("application/json"));
    assert!(
        !env.headers
            .values()
            .any(|v| v.contains(secrets::HEALTHKIT_KEY)),
        "API keys never reach Kafka"
    );
}

#[tokio::test]
async fn refusals_append_nothing() {
    let topic = unique("edge-refuse");
    create_topic(&topic, 1).await;
    let edge = Edge::start(&topic, &[("MAX_BODY_BYTES", "1024".into())]).await;
    let http = reqwest::Client::new();
    let now = now_secs();
    let body = br#"{"type":"daily","user":{"user_id":"u1"},"data":[]}"#;

    let cases: Vec<(reqwest::RequestBuilder, u16)> = vec![
        // Tampered body.
        (
            http.post(format!("{}/webhooks/terra", edge.url))
                .header("terra-signature", sign::terra(secrets::TERRA, now, body))
                .body(br#"{"type":"daily","user":{"user_id":"u2"},"data":[]}"#.to_vec()),
            401,
        ),
        // Stale timestamp.
        (
            http.post(format!("{}/webhooks/terra", edge.url))
                .header(
                    "terra-signature",
                    sign::terra(secrets::TERRA, now - 301, body),
                )
                .body(body.to_vec()),
            401,
        ),
        // Missing signature.
        (
            http.post(format!("{}/webhooks/terra", edge.url))
                .body(body.to_vec()),
            401,
        ),
        // Malformed signature header.
        (
            http.post(format!("{}/webhooks/terra", edge.url))
                .header("terra-signature", "garbage")
                .body(body.to_vec()),
            400,
        ),
        // Unknown HealthKit key, missing key.
        (
            http.post(format!("{}/webhooks/healthkit", edge.url))
                .header("authorization", "Bearer nope")
                .body(b"{}".to_vec()),
            403,
        ),
        (
            http.post(format!("{}/webhooks/healthkit", edge.url))
                .body(b"{}".to_vec()),
            403,
        ),
        // Too large, announced by Content-Length.
        (
            http.post(format!("{}/webhooks/healthkit", edge.url))
                .header("api-key", secrets::HEALTHKIT_KEY)
                .body(vec![b' '; 2048]),
            413,
        ),
        // Unknown vendor, wrong method.
        (
            http.post(format!("{}/webhooks/fitbit", edge.url))
                .body(b"{}".to_vec()),
            404,
        ),
        (
            http.put(format!("{}/webhooks/terra", edge.url))
                .body(body.to_vec()),
            405,
        ),
        // Polar: unsigned PING is answered, not appended; unsigned data is refused.
        (
            http.post(format!("{}/webhooks/polar", edge.url))
                .body(br#"{"event":"PING"}"#.to_vec()),
            200,
        ),
        (
            http.post(format!("{}/webhooks/polar", edge.url))
                .body(br#"{"event":"EXERCISE","user_id":1}"#.to_vec()),
            401,
        ),
    ];
    for (i, (req, want)) in cases.into_iter().enumerate() {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), want, "case {i}");
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        assert_eq!(
            ct.as_deref(),
            Some("application/json"),
            "case {i} answers JSON"
        );
    }

    // Chunked body without Content-Length: the edge stops reading at the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..8).map(|_| Ok(vec![b' '; 512])).collect();
    let resp = http
        .post(format!("{}/webhooks/healthkit", edge.url))
        .header("api-key", secrets::HEALTHKIT_KEY)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);

    let c = consumer(&topic);
    assert!(
        drain(&c, Duration::from_secs(3)).await.is_empty(),
        "refused requests were appended"
    );

    // Refusals are counted by reason.
    let metrics = http
        .get(format!("{}/metrics", edge.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("edge_rejected_total"), "{metrics}");
    assert!(metrics.contains("reason=\"too_large\""), "{metrics}");
}

/// Only a valid W3C `traceparent` is continued; a huge or malformed one never reaches
/// the envelope or the Kafka headers, and the record gets a fresh, valid trace instead.
#[tokio::test]
async fn only_a_valid_traceparent_reaches_the_envelope() {
    let topic = unique("edge-trace");
    create_topic(&topic, 1).await;
    // A header limit above the hostile value, so the edge itself must drop it.
    let edge = Edge::start(&topic, &[("MAX_HEADER_BYTES", (256 * 1024).to_string())]).await;
    let http = reqwest::Client::new();
    let valid = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let huge = format!("{valid}{}", "a".repeat(100 * 1024));
    let cases = [
        ("u-valid", valid.to_string()),
        ("u-huge", huge),
        (
            "u-upper",
            "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01".to_string(),
        ),
        (
            "u-zero",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01".to_string(),
        ),
    ];
    for (user, tp) in &cases {
        let body = format!(r#"{{"type":"daily","user":{{"user_id":"{user}"}},"data":[]}}"#);
        let resp = http
            .post(format!("{}/webhooks/terra", edge.url))
            .header(
                "terra-signature",
                sign::terra(secrets::TERRA, now_secs(), body.as_bytes()),
            )
            .header("traceparent", tp)
            .header("tracestate", "rojo=00f067aa0ba902b7")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202, "{user}");
    }
    let registry = SchemaRegistry::new(&registry_url()).unwrap();
    let c = consumer(&topic);
    for m in read_n(&c, cases.len(), Duration::from_secs(30)).await {
        let env = RawEnvelope::from_avro(registry.decode(payload(&m)).await.unwrap()).unwrap();
        let user = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
        let in_envelope = env
            .header("traceparent")
            .expect("every envelope has a trace");
        let in_kafka = m
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == "traceparent"))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8(v.to_vec()).unwrap())
            .expect("traceparent Kafka header");
        assert_eq!(in_envelope, in_kafka, "{user}");
        assert_eq!(in_envelope.len(), 55, "{user}: {in_envelope}");
        assert!(
            in_envelope.starts_with("00-")
                && in_envelope[3..35].bytes().any(|b| b != b'0')
                && in_envelope
                    .bytes()
                    .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{user}: {in_envelope}"
        );
        let continued = in_envelope.starts_with("00-0af7651916cd43dd8448eb211c80319c-");
        assert_eq!(continued, user == "u-valid", "{user}: {in_envelope}");
        let total: usize = env.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(total < 1024, "{user}: envelope headers {total} bytes");
        let kafka_total: usize = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
                    .sum()
            })
            .unwrap_or(0);
        assert!(
            kafka_total < 1024,
            "{user}: Kafka headers {kafka_total} bytes"
        );
    }
}

#[tokio::test]
async fn oura_handshake() {
    let topic = unique("edge-hs");
    create_topic(&topic, 1).await;
    let edge = Edge::start(&topic, &[]).await;
    let http = reqwest::Client::new();
    let ok = http
        .get(format!(
            "{}/webhooks/oura?verification_token={}&challenge=abc",
            edge.url,
            secrets::OURA_TOKEN
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let body: serde_json::Value = ok.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"challenge": "abc"}));
    let bad = http
        .get(format!(
            "{}/webhooks/oura?verification_token=wrong&challenge=abc",
            edge.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let no_challenge = http
        .get(format!(
            "{}/webhooks/oura?verification_token={}",
            edge.url,
            secrets::OURA_TOKEN
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(no_challenge.status(), 400);
}

#[tokio::test]
async fn ready_reports_dependencies_and_sigterm_exits_zero() {
    let topic = unique("edge-ready");
    create_topic(&topic, 1).await;
    let mut edge = Edge::start(&topic, &[]).await;
    // Readiness comes from a background check every 5 s; the first runs at start.
    wait_http_ok(&format!("{}/ready", edge.url), Duration::from_secs(15)).await;
    let ready: serde_json::Value = reqwest::get(format!("{}/ready", edge.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        ready,
        serde_json::json!({"kafka": true, "schema_registry": true})
    );
    assert_eq!(edge.proc.terminate(Duration::from_secs(15)), Some(0));
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish_with_their_true_answer() {
    let topic = unique("edge-drain");
    create_topic(&topic, 1).await;
    let mut edge = Edge::start(&topic, &[]).await;
    let body = br#"{"type":"daily","user":{"user_id":"drain-user"},"data":[]}"#.to_vec();
    let signature = sign::terra(secrets::TERRA, now_secs(), &body);
    // The body arrives in two halves; SIGTERM lands between them.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let request = reqwest::Client::new()
        .post(format!("{}/webhooks/terra", edge.url))
        .header("terra-signature", signature)
        .body(reqwest::Body::wrap_stream(stream))
        .send();
    let in_flight = tokio::spawn(request);
    let (first, second) = body.split_at(body.len() / 2);
    tx.send(Ok(first.to_vec())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = edge.proc.child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.send(Ok(second.to_vec())).await.unwrap();
    drop(tx);
    let resp = in_flight.await.unwrap().expect("answered, not cut off");
    assert_eq!(resp.status(), 202);
    assert_eq!(edge.proc.terminate(Duration::from_secs(15)), Some(0));
    let c = consumer(&topic);
    assert_eq!(
        read_n(&c, 1, Duration::from_secs(20)).await.len(),
        1,
        "the 202 is in Kafka"
    );
}

#[tokio::test]
async fn a_configured_generic_hmac_source_is_verified_and_appended() {
    let topic = unique("edge-generic");
    create_topic(&topic, 1).await;
    // Fitbit's legacy scheme, with the vendors.md §8.5 vector.
    let sources = r#"[{"name":"fitbit","signature_header":"X-Fitbit-Signature","algorithm":"sha1",
        "encoding":"base64","signed":"body","secrets":["fitbit-test-client-secret&"]}]"#;
    let edge = Edge::start(&topic, &[("GENERIC_HMAC_SOURCES", sources.into())]).await;
    let body = br#"[{"collectionType":"sleep","date":"2025-01-01","ownerId":"228S74","ownerType":"user","subscriptionId":"user-42-sleep"}]"#;
    let http = reqwest::Client::new();
    let good = http
        .post(format!("{}/webhooks/fitbit", edge.url))
        .header("X-Fitbit-Signature", "eD0NYUIehGEh8MAVeEs9of85+OU=")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 202);
    let bad = http
        .post(format!("{}/webhooks/fitbit", edge.url))
        .header("X-Fitbit-Signature", "AAAAUIehGEh8MAVeEs9of85+OU=")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let got = decoded(&topic, 1).await;
    assert_eq!(got[0].1.vendor, "fitbit");
    assert_eq!(got[0].1.body, body);
}

#[tokio::test]
async fn a_body_at_the_limit_is_accepted_not_503() {
    let topic = unique("edge-big");
    create_topic(&topic, 1).await;
    let edge = Edge::start(&topic, &[]).await;
    // Just under the default 1 MiB limit, above librdkafka's default message size.
    let mut body = br#"{"data":{"metrics":[]},"pad":""#.to_vec();
    body.resize(1024 * 1024 - 2, b'x');
    body.extend_from_slice(b"\"}");
    let resp = reqwest::Client::new()
        .post(format!("{}/webhooks/healthkit", edge.url))
        .header("api-key", secrets::HEALTHKIT_KEY)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let got = decoded(&topic, 1).await;
    assert_eq!(got[0].1.body.len(), body.len());
}

#[tokio::test]
async fn a_trickled_body_gets_408_and_appends_nothing() {
    let topic = unique("edge-slow");
    create_topic(&topic, 1).await;
    let edge = Edge::start(&topic, &[("BODY_READ_TIMEOUT", "1s".into())]).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    tx.send(Ok(b"{\"data\":".to_vec())).await.unwrap();
    let resp = reqwest::Client::new()
        .post(format!("{}/webhooks/healthkit", edge.url))
        .header("api-key", secrets::HEALTHKIT_KEY)
        .body(reqwest::Body::wrap_stream(stream))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 408);
    drop(tx);
    let c = consumer(&topic);
    assert!(drain(&c, Duration::from_secs(2)).await.is_empty());
}

#[tokio::test]
async fn half_sent_headers_are_cut_off_after_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let topic = unique("edge-slowloris");
    create_topic(&topic, 1).await;
    let edge = Edge::start(&topic, &[("HEADER_READ_TIMEOUT", "1s".into())]).await;
    let addr = edge.url.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(b"POST /webhooks/terra HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    // The server closes the connection (possibly after a 408); a read returns.
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "connection still open after 10 s");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        started.elapsed()
    );
}
