//! Dead letters always land, and topics are checked at start:
//! - a record too large for the DLQ topic is written in reduced form (headers, reason,
//!   raw topic/partition/offset, value hash) while the good records of the same stream
//!   become rows, with no retry loop and no restart;
//! - a missing topic stops the start with the topic's name when creation is off, and
//!   with creation on the processor creates raw, readings and DLQ with their settings;
//! - a DLQ the broker refuses writes to stops the start with its name, and the write
//!   probe that finds it leaves the topics empty.

mod faultkit;

use std::process::Command;
use std::time::{Duration, Instant};

use bridge_tests::*;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::consumer::Consumer;
use sha2::Digest;

#[tokio::test]
async fn oversized_dead_letter_lands_in_reduced_form_and_good_rows_land() {
    let topics = faultkit::topics_with_dlq(1, &[("max.message.bytes", "100000")]).await;
    let edge = Edge::start(&topics.raw, &[]).await;
    let processor = ProcessorProc::start(&topics, &[]).await;
    let pool = sqlx::PgPool::connect(&database_url()).await.unwrap();
    let http = reqwest::Client::new();
    let prefix = unique("dlqbig");

    // 100 good webhooks with one 500 KB poison body (signed, so the edge accepts it;
    // not JSON, so the processor dead-letters it) in the middle. Random hex does not
    // compress below the DLQ's 100 kB limit.
    let mut poison = b"not json ".to_vec();
    while poison.len() < 500_000 {
        poison.extend_from_slice(uuid::Uuid::new_v4().simple().to_string().as_bytes());
    }
    for i in 0..100 {
        if i == 50 {
            assert_eq!(faultkit::post_terra(&http, &edge.url, &poison).await, 202);
        }
        let body = faultkit::terra_daily(&format!("{prefix}-{i}"), "2025-05-01", 1000);
        assert_eq!(faultkit::post_terra(&http, &edge.url, &body).await, 202);
    }

    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let rows: i64 = faultkit::rows_by_user(&pool, &prefix).await.values().sum();
        if rows == 100 * faultkit::DAILY_READINGS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{rows} of {} rows: the poison stalled the stream",
            100 * faultkit::DAILY_READINGS
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let dlq = consumer(&topics.dlq);
    let letters = read_n(&dlq, 1, Duration::from_secs(30)).await;
    let l = &letters[0];
    assert_eq!(
        faultkit::header(l, "dlq.reason").as_deref(),
        Some("invalid_json")
    );
    assert_eq!(faultkit::header(l, "dlq.reduced").as_deref(), Some("true"));
    assert_eq!(
        faultkit::header(l, "dlq.topic").as_deref(),
        Some(topics.raw.as_str())
    );
    let partition: i32 = faultkit::header(l, "dlq.partition")
        .unwrap()
        .parse()
        .unwrap();
    let offset: i64 = faultkit::header(l, "dlq.offset").unwrap().parse().unwrap();
    let value: serde_json::Value = serde_json::from_slice(payload(l)).expect("JSON value");
    assert_eq!(value["reduced"], true);
    assert_eq!(value["raw_offset"], offset);

    // The reference leads to the original bytes on the raw topic, and the hash matches.
    let raw = consumer(&topics.raw);
    let mut original = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while original.is_none() && Instant::now() < deadline {
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(5), raw.recv()).await
            && m.partition() == partition
            && m.offset() == offset
        {
            original = Some(m.detach());
        }
    }
    let original = original.expect("raw record at the referenced offset");
    let sha = hex::encode(sha2::Sha256::digest(payload(&original)));
    assert_eq!(faultkit::header(l, "dlq.value_sha256"), Some(sha));
    assert!(payload(&original).len() > 500_000);
    assert!(
        drain(&dlq, Duration::from_secs(3)).await.is_empty(),
        "one dead letter, not one per retry"
    );

    // No restart loop: the same process is alive, ready, with nothing stuck.
    let mut processor = processor;
    assert!(
        processor.proc.child.try_wait().unwrap().is_none(),
        "processor exited"
    );
    wait_http_ok(&format!("{}/ready", processor.url), Duration::from_secs(10)).await;
    assert_eq!(processor.proc.terminate(Duration::from_secs(30)), Some(0));
}

fn processor_once(env: &[(&str, String)]) -> (Option<i32>, String) {
    let port = free_port();
    let mut cmd = Command::new(binary("processor"));
    cmd.env("RUST_LOG", "info")
        .env("PROCESSOR_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("KAFKA_BOOTSTRAP_SERVERS", kafka())
        .env("SCHEMA_REGISTRY_URL", registry_url())
        .env("DATABASE_URL", database_url())
        .env("REDIS_URL", redis_url())
        .env("TOKEN_ENCRYPTION_KEY", TEST_TOKEN_KEY)
        .env("PROCESSOR_GROUP_ID", unique("group"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    // Bounded: a processor that wrongly starts is stopped and its log returned, so the
    // test fails on its assertions instead of hanging.
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("processor runs");
    let pid = child.id();
    let (done, waited) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if waited.recv_timeout(Duration::from_secs(90)).is_err() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    });
    let out = child.wait_with_output().expect("processor output");
    let _ = done.send(());
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn missing_topic_stops_the_start_with_its_name() {
    let raw = unique("raw");
    create_topic(&raw, 1).await;
    create_topic(&format!("{raw}.readings"), 1).await;
    let dlq = format!("{raw}.dlq-missing");
    let env = [
        ("RAW_TOPIC", raw.clone()),
        ("READINGS_TOPIC", format!("{raw}.readings")),
        ("DLQ_TOPIC", dlq.clone()),
        ("KAFKA_CREATE_TOPICS", "false".into()),
    ];
    let (code, stderr) = tokio::task::spawn_blocking(move || processor_once(&env))
        .await
        .unwrap();
    assert_ne!(code, Some(0), "must not start: {stderr}");
    assert!(code.is_some(), "exited by itself");
    assert!(
        stderr.contains(&dlq) && stderr.contains("does not exist"),
        "the error names the topic: {stderr}"
    );
}

#[tokio::test]
async fn start_creates_missing_topics_with_their_settings() {
    let topics = PipelineTopics {
        raw: unique("raw"),
        readings: unique("readings"),
        dlq: unique("dlq"),
        group: unique("group"),
    };
    let mut p = ProcessorProc::start(&topics, &[("TOPIC_PARTITIONS", "3".into())]).await;
    wait_http_ok(&format!("{}/ready", p.url), Duration::from_secs(60)).await;
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .create()
        .unwrap();
    let c = consumer(&topics.raw);
    let md = c
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    for t in [&topics.raw, &topics.readings, &topics.dlq] {
        let found = md.topics().iter().find(|m| m.name() == t.as_str());
        assert_eq!(
            found.map(|m| m.partitions().len()),
            Some(3),
            "{t} created with TOPIC_PARTITIONS"
        );
    }
    let configs = admin
        .describe_configs(
            [
                &ResourceSpecifier::Topic(&topics.raw),
                &ResourceSpecifier::Topic(&topics.dlq),
            ],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    let max = |i: usize| -> i64 {
        configs[i]
            .as_ref()
            .unwrap()
            .get("max.message.bytes")
            .and_then(|e| e.value.clone())
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(max(0), processor::topics::RAW_MAX_MESSAGE_BYTES);
    assert_eq!(max(1), processor::topics::DLQ_MAX_MESSAGE_BYTES);
    assert!(max(1) > max(0), "any raw record fits the DLQ");
    assert_eq!(p.proc.terminate(Duration::from_secs(30)), Some(0));
}

#[tokio::test]
async fn unwritable_dlq_stops_the_start_with_its_name() {
    // A real refusal the shared stack can give without an authorizer: the broker
    // refuses client writes to an internal topic, which exists and describes fine,
    // as it refuses a topic an ACL denies. (min.insync.replicas above the replica count
    // does not do: Kafka 4 caps it at the replication factor.)
    let raw = unique("raw");
    create_topic(&raw, 1).await;
    create_topic(&format!("{raw}.readings"), 1).await;
    let dlq = "__consumer_offsets";
    let env = [
        ("RAW_TOPIC", raw.clone()),
        ("READINGS_TOPIC", format!("{raw}.readings")),
        ("DLQ_TOPIC", dlq.into()),
        ("KAFKA_CREATE_TOPICS", "false".into()),
    ];
    let started = Instant::now();
    let (code, stderr) = tokio::task::spawn_blocking(move || processor_once(&env))
        .await
        .unwrap();
    assert_ne!(code, Some(0), "must not start: {stderr}");
    assert!(code.is_some(), "exited by itself");
    assert!(
        stderr.contains(&format!("topic {dlq} cannot be used"))
            && stderr.contains("refuses client writes"),
        "the error names the DLQ topic and why: {stderr}"
    );
    assert!(
        !stderr.contains(&format!("topic {raw}.readings cannot be used")),
        "the writable readings topic passed: {stderr}"
    );
    assert!(
        !stderr.contains("Processor started"),
        "found before consuming: {stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "found at start, not after a batch's retries"
    );
}

#[tokio::test]
async fn start_write_probe_leaves_the_topics_empty() {
    let topics = PipelineTopics::create(2).await;
    let mut p = ProcessorProc::start(&topics, &[]).await;
    wait_http_ok(&format!("{}/ready", p.url), Duration::from_secs(60)).await;
    let c = consumer(&topics.readings);
    for t in [&topics.readings, &topics.dlq] {
        let (low, high) = c
            .fetch_watermarks(t, 0, Duration::from_secs(10))
            .expect("watermarks");
        assert_eq!((low, high), (0, 0), "{t}: the probe appended nothing");
    }
    assert_eq!(p.proc.terminate(Duration::from_secs(30)), Some(0));
}
