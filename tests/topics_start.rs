//! The edge says at start what a `202` is worth: it reads the raw topic's replication
//! factor and `min.insync.replicas` and logs a WARN naming the topic when they cannot
//! keep an acknowledged record through a broker loss (the shared stack is one broker,
//! so its topics are always below 3 / 2).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bridge_tests::*;

/// Starts the edge with JSON logs on `topic`; returns the first WARN/INFO line about
/// the raw topic's durability (or every line seen, when none came within the bound).
fn edge_durability_line(topic: &str) -> Result<serde_json::Value, Vec<String>> {
    let mut child = Command::new(binary("edge"))
        .env("RUST_LOG", "info")
        .env("LOG_FORMAT", "json")
        .env("EDGE_LISTEN_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("KAFKA_BOOTSTRAP_SERVERS", kafka())
        .env("SCHEMA_REGISTRY_URL", registry_url())
        .env("RAW_TOPIC", topic)
        .env("TERRA_SIGNING_SECRET", secrets::TERRA)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn edge");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let found = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            break None;
        };
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
            && v["fields"]["topic"] == topic
            && v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("durability") || m.contains("Durability"))
        {
            break Some(v);
        }
        seen.push(line);
    };
    let _ = child.kill();
    let _ = child.wait();
    found.ok_or(seen)
}

#[tokio::test]
async fn edge_warns_at_start_when_the_raw_topic_is_below_production_durability() {
    let topic = unique("raw");
    create_topic(&topic, 2).await;
    let t = topic.clone();
    let line = tokio::task::spawn_blocking(move || edge_durability_line(&t))
        .await
        .unwrap()
        .unwrap_or_else(|seen| panic!("no durability line for {topic}: {seen:#?}"));
    assert_eq!(line["level"], "WARN", "{line}");
    let f = &line["fields"];
    assert_eq!(f["replication_factor"], 1, "{line}");
    assert_eq!(f["min_insync_replicas"], 1, "{line}");
    assert_eq!(f["want_replication_factor"], 3, "{line}");
    assert_eq!(f["want_min_insync_replicas"], 2, "{line}");
}
