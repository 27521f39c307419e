//! Registry failures are outages, never poison: 5xx, 429, a stalled registry and a
//! schema id the registry no longer knows hold the record (the processor retries,
//! reports `/ready` 503, dead-letters nothing) and the same records become rows once
//! the registry answers again. Only a datum that fails against a schema the registry
//! serves is poison. Faults are injected by a proxy in front of the real registry.

mod faultkit;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bridge_core::{RawEnvelope, SchemaRegistry, defaults, envelope::RAW_ENVELOPE_SCHEMA};
use bridge_tests::*;
use faultkit::{Fault, RegistryProxy};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

fn envelope() -> RawEnvelope {
    RawEnvelope {
        event_id: uuid::Uuid::now_v7().to_string(),
        vendor: "terra".into(),
        received_at_micros: 1_735_718_400_000_000,
        headers: HashMap::new(),
        query: None,
        principal: None,
        content_type: Some("application/json".into()),
        body: b"{}".to_vec(),
        edge_instance: "test".into(),
    }
}

async fn encoded() -> (u32, Vec<u8>) {
    let registry = SchemaRegistry::new(&registry_url()).unwrap();
    let codec = registry
        .register(
            &defaults::value_subject(&unique("regfault")),
            RAW_ENVELOPE_SCHEMA,
        )
        .await
        .expect("registered");
    (codec.id(), codec.encode(envelope().into_avro()).unwrap())
}

#[tokio::test]
async fn registry_errors_are_outages_and_heal_without_poison() {
    let (_, bytes) = encoded().await;
    let proxy = RegistryProxy::start().await;
    for fault in [
        Fault::Status(500),
        Fault::Status(502),
        Fault::Status(503),
        Fault::Status(504),
        Fault::Status(429),
        Fault::Stall,
    ] {
        // A cold client each time: the first lookup of the id meets the fault.
        let client = SchemaRegistry::new(&proxy.url).unwrap();
        proxy.set(fault);
        for attempt in 0..2 {
            let err = client
                .decode(&bytes)
                .await
                .expect_err("registry is failing");
            assert!(
                err.is_outage(),
                "{fault:?} attempt {attempt}: {err:?} must be an outage"
            );
            assert_eq!(err.reason(), "registry_unavailable", "{fault:?}");
            assert!(client.outage().is_some(), "outage reported for /ready");
        }
        // The converter cached the failure as final; the same client must recover.
        proxy.set(Fault::Pass);
        let value = client.decode(&bytes).await.expect("decodes once healed");
        assert!(RawEnvelope::from_avro(value).is_ok());
        assert!(client.outage().is_none(), "outage cleared by a good decode");
    }
}

#[tokio::test]
async fn unknown_schema_id_is_an_outage_and_a_bad_datum_is_poison() {
    let registry = SchemaRegistry::new(&registry_url()).unwrap();
    let err = registry
        .decode(b"\x00\x7f\xff\xff\xf0\x02")
        .await
        .expect_err("unknown id");
    assert!(
        matches!(err, bridge_core::DecodeError::UnknownSchema(0x7fff_fff0)),
        "{err:?}"
    );
    assert!(err.is_outage());
    assert!(registry.check_id(0x7fff_fff0).await.is_err());

    // A served schema and a datum that cannot be read with it: the only poison.
    let (id, _) = encoded().await;
    assert!(registry.check_id(id).await.is_ok());
    let mut bad = vec![0u8];
    bad.extend_from_slice(&id.to_be_bytes());
    bad.push(0x01); // string length -1
    let err = registry.decode(&bad).await.expect_err("bad datum");
    assert!(
        matches!(err, bridge_core::DecodeError::Poison(_)),
        "{err:?}"
    );
}

async fn ready_status(url: &str) -> (u16, String) {
    match reqwest::get(format!("{url}/ready")).await {
        Ok(r) => {
            let s = r.status().as_u16();
            (s, r.text().await.unwrap_or_default())
        }
        Err(_) => (0, String::new()),
    }
}

#[tokio::test]
async fn processor_holds_records_through_registry_errors_and_an_unknown_id() {
    let topics = PipelineTopics::create(1).await;
    let edge = Edge::start(&topics.raw, &[]).await;
    let proxy = RegistryProxy::start().await;
    let processor =
        ProcessorProc::start(&topics, &[("SCHEMA_REGISTRY_URL", proxy.url.clone())]).await;
    wait_http_ok(&format!("{}/ready", processor.url), Duration::from_secs(60)).await;
    let pool = sqlx::PgPool::connect(&database_url()).await.unwrap();
    let http = reqwest::Client::new();
    let prefix = unique("regfault-user");

    // 1. The registry answers 500 while webhooks arrive.
    proxy.set(Fault::Status(500));
    for i in 0..10 {
        let body = faultkit::terra_daily(&format!("{prefix}-{i}"), "2025-05-01", 1000);
        assert_eq!(faultkit::post_terra(&http, &edge.url, &body).await, 202);
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (status, body) = ready_status(&processor.url).await;
    assert_eq!(status, 503, "not ready while the registry fails: {body}");
    assert!(faultkit::rows_by_user(&pool, &prefix).await.is_empty());
    assert_eq!(
        faultkit::metric_sum(&processor.url, "processor_dlq_total").await,
        0.0,
        "nothing dead-lettered"
    );
    assert!(
        faultkit::metric_sum(&processor.url, "processor_retries_total").await > 0.0,
        "the outage is counted"
    );
    proxy.set(Fault::Pass);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows: i64 = faultkit::rows_by_user(&pool, &prefix).await.values().sum();
        if rows == 10 * faultkit::DAILY_READINGS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{rows} rows after the registry healed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // 2. A record whose schema id the registry does not know (as after a registry
    // restart without storage): held, not dead-lettered, and /ready says so.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::to(&topics.raw)
                .key("k")
                .payload(&b"\x00\x7f\xff\xff\xf0\x02"[..]),
            Duration::from_secs(10),
        )
        .await
        .expect("produced");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = ready_status(&processor.url).await;
        if status == 503 && body.contains(r#""schema_registry":false"#) {
            break;
        }
        assert!(Instant::now() < deadline, "/ready stayed {status} {body}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let dlq = consumer(&topics.dlq);
    let letters = drain(&dlq, Duration::from_secs(5)).await;
    assert!(letters.is_empty(), "{} dead letters", letters.len());
    assert_eq!(
        faultkit::metric_sum(&processor.url, "processor_dlq_total").await,
        0.0
    );
}
