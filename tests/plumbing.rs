//! The foundation, end to end on the real stack: registry-framed Avro through an
//! idempotent `acks=all` producer and a consumer group, migrations, Redis.

use std::collections::HashMap;
use std::time::Duration;

use bridge_core::{RawEnvelope, SchemaRegistry, defaults, envelope::RAW_ENVELOPE_SCHEMA};
use bridge_tests::*;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

fn envelope(i: usize) -> RawEnvelope {
    RawEnvelope {
        event_id: uuid::Uuid::now_v7().to_string(),
        vendor: "terra".into(),
        received_at_micros: 1_735_718_400_000_000 + i as i64,
        headers: HashMap::from([("terra-signature".into(), format!("t=1,v1={i:064x}"))]),
        query: i.is_multiple_of(2).then(|| "a=1&b=2".to_string()),
        principal: None,
        content_type: Some("application/json".into()),
        // Not valid UTF-8 on purpose: the body is bytes, never text.
        body: [
            b"{\"n\":".as_slice(),
            i.to_string().as_bytes(),
            b"}\xff\x00",
        ]
        .concat(),
        edge_instance: "test".into(),
    }
}

#[tokio::test]
async fn envelope_round_trips_through_registry_and_kafka() {
    let topic = unique("plumbing");
    create_topic(&topic, 3).await;
    let registry = SchemaRegistry::new(&registry_url()).unwrap();
    let codec = registry
        .register(&defaults::value_subject(&topic), RAW_ENVELOPE_SCHEMA)
        .await
        .expect("schema registered");

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let sent: Vec<RawEnvelope> = (0..20).map(envelope).collect();
    for env in &sent {
        let bytes = codec.encode(env.clone().into_avro()).unwrap();
        // Confluent wire format: magic byte 0 then the registry's id, big-endian.
        assert_eq!(bytes[0], 0);
        assert_eq!(
            u32::from_be_bytes(bytes[1..5].try_into().unwrap()),
            codec.id()
        );
        producer
            .send(
                FutureRecord::to(&topic).key(&env.event_id).payload(&bytes),
                Duration::from_secs(10),
            )
            .await
            .expect("acknowledged");
    }

    let c = consumer(&topic);
    let got = read_n(&c, sent.len(), Duration::from_secs(30)).await;
    let mut decoded = Vec::new();
    for m in &got {
        let value = registry.decode(payload(m)).await.expect("decodes");
        decoded.push(RawEnvelope::from_avro(value).expect("envelope"));
    }
    decoded.sort_by_key(|e| e.received_at_micros);
    assert_eq!(decoded, sent, "byte-identical after the round trip");
}

#[tokio::test]
async fn garbage_is_poison_not_transient() {
    let registry = SchemaRegistry::new(&registry_url()).unwrap();
    for bad in [&b""[..], b"{}", b"\x00\x00", b"\x01\x00\x00\x00\x01abc"] {
        let err = registry.decode(bad).await.unwrap_err();
        assert!(
            matches!(err, bridge_core::DecodeError::Poison(_)),
            "{bad:?} gave {err:?}"
        );
    }
    // A well-framed record naming a schema id the registry does not know is an
    // outage (the registry lost it), not poison: tests/registry_faults.rs.
}

#[tokio::test]
async fn migrations_apply_to_postgres() {
    let sink = processor::sink::postgres::PgSink::connect(&database_url(), 2)
        .await
        .expect("connects");
    sink.migrate().await.expect("migrations apply");
    // Applying twice is a no-op.
    sink.migrate().await.expect("idempotent");
    let cols: Vec<(String,)> = sqlx::query_as(
        "select column_name::text from information_schema.columns where table_name = 'readings'",
    )
    .fetch_all(sink.pool())
    .await
    .unwrap();
    let cols: Vec<String> = cols.into_iter().map(|c| c.0).collect();
    for needed in [
        "user_id",
        "vendor",
        "metric",
        "value",
        "unit",
        "start_time",
        "end_time",
        "source_record_id",
        "ingested_at",
    ] {
        assert!(
            cols.iter().any(|c| c == needed),
            "readings.{needed} missing"
        );
    }
}

#[tokio::test]
async fn redis_answers() {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    assert_eq!(pong, "PONG");
}
