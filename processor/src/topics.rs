//! Start-up topic checks: the raw, readings and DLQ topics exist (created here with
//! their intended settings when missing and allowed), can be described by us, the
//! readings and DLQ topics accept our writes, and their durability is logged. A topic that cannot be used stops the start with its
//! name, instead of a batch retrying a refused publish for minutes.

use bridge_core::topics::{self, TopicError, TopicInfo, TopicSpec};

use crate::config::Config;

/// `max.message.bytes` of a raw topic created here: the broker limit of the local stack
/// and compose (4 MiB), room for `MAX_BODY_BYTES` up to ~4 MB plus the envelope.
pub const RAW_MAX_MESSAGE_BYTES: i64 = 4 * 1024 * 1024;

/// `max.message.bytes` of a DLQ topic created here: any raw record plus the `dlq.*`
/// headers (the detail is cut to 1 KiB) fits, so only a DLQ configured smaller by
/// hand needs the reduced form.
pub const DLQ_MAX_MESSAGE_BYTES: i64 = RAW_MAX_MESSAGE_BYTES + 64 * 1024;

/// The checked topics: raw, readings, DLQ, in that order.
pub fn specs(config: &Config) -> Vec<TopicSpec> {
    let spec = |name: &str, max: Option<i64>| TopicSpec {
        name: name.to_string(),
        partitions: config.topic_partitions,
        configs: max
            .map(|m| vec![("max.message.bytes".to_string(), m.to_string())])
            .unwrap_or_default(),
    };
    // The readings topic is the changelog: compacted, keyed by the reading's identity.
    let readings = TopicSpec {
        name: config.readings_topic.clone(),
        partitions: config.topic_partitions,
        configs: vec![("cleanup.policy".to_string(), "compact".to_string())],
    };
    vec![
        spec(&config.raw_topic, Some(RAW_MAX_MESSAGE_BYTES)),
        readings,
        spec(&config.dlq_topic, Some(DLQ_MAX_MESSAGE_BYTES)),
    ]
}

/// Runs the checks; logs durability WARNs and a WARN when the DLQ is smaller than the
/// raw topic (oversized dead letters are then written in reduced form).
pub async fn check(config: &Config) -> Result<Vec<TopicInfo>, TopicError> {
    let infos = topics::ensure(
        &config.kafka_bootstrap_servers,
        &specs(config),
        config.create_topics,
    )
    .await?;
    topics::warn_durability(&infos);
    // The processor writes the readings and DLQ topics; a refusal found on the first
    // dead letter would stall a batch, so it is found here.
    for info in infos.iter().skip(1) {
        topics::probe_write(&config.kafka_bootstrap_servers, info).await?;
    }
    if let [raw, _, dlq] = infos.as_slice()
        && let (Some(r), Some(d)) = (raw.max_message_bytes, dlq.max_message_bytes)
        && d < r
    {
        tracing::warn!(message = "DLQ topic accepts smaller records than the raw topic; a dead letter too large for it is written in reduced form (headers, reason, raw topic/partition/offset, body hash) and its bytes stay on the raw topic.", dlq = %dlq.name, dlq_max_message_bytes = d, raw = %raw.name, raw_max_message_bytes = r);
    }
    Ok(infos)
}
