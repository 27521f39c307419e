//! With Kafka stopped the edge answers 503 with `Retry-After` within the produce
//! timeout (never a 2xx, never a hang), and recovers by itself when Kafka returns.
//!
//! This binary stops the stack's only broker, so it holds a single test: cargo runs
//! test binaries one after another, so no other test sees the outage.

use std::process::Command;
use std::time::{Duration, Instant};

use bridge_tests::*;

fn stack(cmd: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/stack");
    let status = Command::new(script)
        .arg(cmd)
        .status()
        .expect("scripts/stack");
    assert!(status.success(), "scripts/stack {cmd} failed");
}

/// Restarts Kafka even when an assertion fails, so later tests find it running.
struct RestartOnDrop;

impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        stack("kafka-start");
    }
}

#[tokio::test]
async fn broker_down_means_503_then_recovery() {
    let topic = unique("outage");
    create_topic(&topic, 1).await;
    let edge = Edge::start(&topic, &[("PRODUCE_TIMEOUT", "2s".into())]).await;
    // No pooled connections: the edge closes a keep-alive connection idle past its
    // header timeout, and a request racing that close fails in the client (as with any
    // server's keep-alive bound), which is not what this test is about.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let body = br#"{"type":"daily","user":{"user_id":"outage-user"},"data":[]}"#;
    let post = || {
        http.post(format!("{}/webhooks/terra", edge.url))
            .header(
                "terra-signature",
                sign::terra(secrets::TERRA, now_secs(), body),
            )
            .body(body.to_vec())
            .timeout(Duration::from_secs(30))
            .send()
    };
    assert_eq!(post().await.unwrap().status(), 202);

    let _guard = RestartOnDrop;
    stack("kafka-stop");
    for _ in 0..3 {
        let started = Instant::now();
        let resp = post().await.unwrap();
        let took = started.elapsed();
        assert_eq!(resp.status(), 503, "no 2xx while Kafka is down");
        assert!(resp.headers().contains_key("retry-after"));
        assert!(
            took < Duration::from_secs(5),
            "answered in {took:?}, beyond the 2 s produce timeout + margin"
        );
    }
    // Readiness is a background check (every 5 s, 2 s per call): it must turn within
    // one period plus a call, never by a probe's own request.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = http
            .get(format!("{}/ready", edge.url))
            .send()
            .await
            .unwrap();
        if ready.status() == 503 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/ready still 200 with Kafka down"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    stack("kafka-start");
    // The producer reconnects on its own; no edge restart.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = post().await.unwrap().status();
        if status == 202 {
            break;
        }
        assert_eq!(status, 503);
        assert!(
            Instant::now() < deadline,
            "edge did not recover within 60 s of Kafka's return"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Every 202 is on the topic: the first one and the recovery one.
    let c = consumer(&topic);
    let got = read_n(&c, 2, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 2);
}
