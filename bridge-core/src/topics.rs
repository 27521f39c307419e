//! Start-up topic checks shared by edge and processor: a topic must exist (or be
//! created with its intended settings) and be described to us, and its durability
//! settings are logged as a WARN when they cannot keep an acknowledged record through
//! the loss of a broker (replication factor below 3, `min.insync.replicas` below 2).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{
    AdminClient, AdminOptions, ConfigResourceResult, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

/// Bound on each admin call: start-up fails with a message instead of hanging.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Topics whose `max.message.bytes` is above this are not write-probed: the probe
/// record is one byte larger than the limit, and a request this size is the most a
/// start-up check should push through the broker's `socket.request.max.bytes`.
pub const PROBE_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

/// Replication a production topic needs so a `202` survives the loss of a broker.
pub const WANT_REPLICATION: i32 = 3;
/// `min.insync.replicas` a production topic needs with `acks=all`.
pub const WANT_MIN_INSYNC: i32 = 2;

/// A topic a service needs, with the settings it is created with when missing.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Partitions when created (`-1`: the broker's `num.partitions`).
    pub partitions: i32,
    /// Topic configs set when created (e.g. `max.message.bytes`).
    pub configs: Vec<(String, String)>,
}

/// What a topic looks like on the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Partition count.
    pub partitions: usize,
    /// Smallest replica count over its partitions.
    pub replication_factor: i32,
    /// The topic's effective `min.insync.replicas`, when it could be described.
    pub min_insync_replicas: Option<i32>,
    /// The topic's effective `max.message.bytes`, when it could be described.
    pub max_message_bytes: Option<i64>,
}

/// Why a needed topic cannot be used; every message names the topic.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// Not on the cluster and not to be created here.
    #[error("topic {0} does not exist (create it, or allow the service to create it)")]
    Missing(String),
    /// The cluster refused access or creation (ACL, policy, invalid settings).
    #[error("topic {topic} cannot be used: {reason}")]
    Refused {
        /// Topic name.
        topic: String,
        /// What Kafka said.
        reason: String,
    },
    /// Kafka could not be asked.
    #[error("cannot inspect topic {topic}: {source}")]
    Kafka {
        /// Topic name.
        topic: String,
        /// Client error.
        source: KafkaError,
    },
}

/// Checks (and, with `create`, creates) `specs` on the cluster at `bootstrap`.
/// Returns each topic's settings in the order given.
pub async fn ensure(
    bootstrap: &str,
    specs: &[TopicSpec],
    create: bool,
) -> Result<Vec<TopicInfo>, TopicError> {
    let admin: Arc<AdminClient<DefaultClientContext>> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        // A metadata request must not create the topic with broker defaults behind our back.
        .set("allow.auto.create.topics", "false")
        .create()
        .map_err(|source| TopicError::Kafka {
            topic: specs.first().map(|s| s.name.clone()).unwrap_or_default(),
            source,
        })
        .map(Arc::new)?;
    let mut out = Vec::with_capacity(specs.len());
    for spec in specs {
        let info = match describe(&admin, &spec.name).await? {
            Some(info) => info,
            None if create => {
                create_topic(&admin, spec).await?;
                // Freshly created: metadata may lag a moment behind the controller.
                let mut found = None;
                for _ in 0..50 {
                    if let Some(info) = describe(&admin, &spec.name).await? {
                        found = Some(info);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let info = found.ok_or_else(|| TopicError::Missing(spec.name.clone()))?;
                tracing::info!(message = "Topic created.", topic = %spec.name, partitions = info.partitions, replication_factor = info.replication_factor);
                info
            }
            None => return Err(TopicError::Missing(spec.name.clone())),
        };
        out.push(info);
    }
    Ok(out)
}

async fn create_topic(
    admin: &AdminClient<DefaultClientContext>,
    spec: &TopicSpec,
) -> Result<(), TopicError> {
    let mut topic = NewTopic::new(&spec.name, spec.partitions, TopicReplication::Fixed(-1));
    for (k, v) in &spec.configs {
        topic = topic.set(k, v);
    }
    let results = admin
        .create_topics(
            [&topic],
            &AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT)),
        )
        .await
        .map_err(|source| TopicError::Kafka {
            topic: spec.name.clone(),
            source,
        })?;
    for r in results {
        match r {
            Ok(_) => {}
            // Another replica (or the edge) created it first.
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(TopicError::Refused {
                    topic: spec.name.clone(),
                    reason: format!("creation refused: {code}"),
                });
            }
        }
    }
    Ok(())
}

/// `None` when the topic does not exist.
async fn describe(
    admin: &Arc<AdminClient<DefaultClientContext>>,
    topic: &str,
) -> Result<Option<TopicInfo>, TopicError> {
    // fetch_metadata blocks: keep it off the async workers.
    let metadata = {
        let admin = admin.clone();
        let t = topic.to_string();
        tokio::task::spawn_blocking(move || admin.inner().fetch_metadata(Some(&t), ADMIN_TIMEOUT))
            .await
            .map_err(|e| TopicError::Refused {
                topic: topic.to_string(),
                reason: format!("metadata task failed: {e}"),
            })?
    }
    .map_err(|source| TopicError::Kafka {
        topic: topic.to_string(),
        source,
    })?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    if let Some(err) = t.error() {
        let code = RDKafkaErrorCode::from(err);
        return match code {
            RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => Ok(None),
            other => Err(TopicError::Refused {
                topic: topic.to_string(),
                reason: format!("metadata refused: {other}"),
            }),
        };
    }
    if t.partitions().is_empty() {
        return Ok(None);
    }
    let replication_factor = t
        .partitions()
        .iter()
        .map(|p| p.replicas().len() as i32)
        .min()
        .unwrap_or(0);
    let partitions = t.partitions().len();
    let configs = admin
        .describe_configs(
            [&ResourceSpecifier::Topic(topic)],
            &AdminOptions::new().request_timeout(Some(ADMIN_TIMEOUT)),
        )
        .await;
    let (min_insync_replicas, max_message_bytes) = match configs {
        Ok(results) => config_values(results),
        Err(error) => {
            tracing::warn!(message = "Could not describe topic configs.", topic, %error);
            (None, None)
        }
    };
    Ok(Some(TopicInfo {
        name: topic.to_string(),
        partitions,
        replication_factor,
        min_insync_replicas,
        max_message_bytes,
    }))
}

fn config_values(results: Vec<ConfigResourceResult>) -> (Option<i32>, Option<i64>) {
    let Some(Ok(resource)) = results.into_iter().next() else {
        return (None, None);
    };
    let value = |name: &str| {
        resource
            .get(name)
            .and_then(|e| e.value.as_deref())
            .map(str::to_string)
    };
    (
        value("min.insync.replicas").and_then(|v| v.parse().ok()),
        value("max.message.bytes").and_then(|v| v.parse().ok()),
    )
}

/// Logs a WARN for each topic whose replication or `min.insync.replicas` cannot keep
/// an acknowledged record through a broker loss; returns how many were weak.
pub fn warn_durability(topics: &[TopicInfo]) -> usize {
    let mut weak = 0;
    for t in topics {
        let min_isr = t.min_insync_replicas.unwrap_or(1);
        if t.replication_factor < WANT_REPLICATION || min_isr < WANT_MIN_INSYNC {
            weak += 1;
            tracing::warn!(
                message = "Topic durability below production settings: an acknowledged record can be lost with one broker. Fine for a single-node development stack (make run); in production use replication factor 3, min.insync.replicas 2, unclean.leader.election.enable false.",
                topic = %t.name,
                replication_factor = t.replication_factor,
                min_insync_replicas = min_isr,
                want_replication_factor = WANT_REPLICATION,
                want_min_insync_replicas = WANT_MIN_INSYNC,
            );
        }
    }
    weak
}

/// Checks that the broker accepts writes to partition 0 of `topic` from this client,
/// without adding a record: the probe record is one byte larger than the topic's
/// `max.message.bytes`, so a broker that authorized the write, found the partition and
/// had enough in-sync replicas (`acks=all`) then refuses it as too large before the
/// append. Any other answer (ACL refusal, unknown topic, `NotEnoughReplicas`, timeout)
/// is an error naming the topic.
///
/// Limits: one partition is probed (ACLs are per topic; in-sync replicas are per
/// partition); a topic whose `max.message.bytes` could not be described, or is above
/// [`PROBE_LIMIT_BYTES`], is skipped with a WARN; the probe uses a plain producer, so
/// a cluster that grants plain writes but refuses idempotent ones is not caught here.
pub async fn probe_write(bootstrap: &str, topic: &TopicInfo) -> Result<(), TopicError> {
    let name = topic.name.as_str();
    let max = match topic.max_message_bytes {
        Some(m) if (1..=PROBE_LIMIT_BYTES).contains(&m) => m,
        other => {
            tracing::warn!(message = "Topic not write-probed at start: its max.message.bytes is unknown or too large to send past; a refused write shows on first use.", topic = name, max_message_bytes = ?other);
            return Ok(());
        }
    };
    let size = usize::try_from(max).unwrap_or(0) + 1;
    let kafka = |source| TopicError::Kafka {
        topic: name.to_string(),
        source,
    };
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "false")
        // The broker compares the batch as sent: uncompressed, it is over the limit.
        .set("compression.type", "none")
        // Lets the record leave the client; only the broker's limit may refuse it.
        .set("message.max.bytes", (size + 64 * 1024).to_string())
        .set("allow.auto.create.topics", "false")
        // A leader election at start is retried; the broker's last answer is reported.
        .set("retries", "2")
        .set("retry.backoff.ms", "500")
        .set("message.timeout.ms", ADMIN_TIMEOUT.as_millis().to_string())
        .create()
        .map_err(kafka)?;
    let payload = vec![0u8; size];
    let record = FutureRecord::to(name)
        .partition(0)
        .key("bridge-write-probe")
        .payload(&payload);
    let delivery = producer
        .send_result(record)
        .map_err(|(source, _)| kafka(source))?
        .await
        .map_err(|_| TopicError::Refused {
            topic: name.to_string(),
            reason: "write probe cancelled".to_string(),
        })?;
    let refused = |reason: String| TopicError::Refused {
        topic: name.to_string(),
        reason,
    };
    match delivery {
        // The broker got as far as the size check: authorized, partition led, ISR met.
        Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _)) => Ok(()),
        Ok(_) => {
            tracing::warn!(
                message = "Write probe was appended: the topic accepts larger records than it described. It is a keyed record of zero bytes; consumers of this topic may see it once.",
                topic = name,
                key = "bridge-write-probe"
            );
            Ok(())
        }
        Err((KafkaError::MessageProduction(code), _)) => Err(match code {
            RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => {
                TopicError::Missing(name.to_string())
            }
            RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed => {
                refused(format!("writes refused by the cluster's ACLs ({code})"))
            }
            RDKafkaErrorCode::NotEnoughReplicas
            | RDKafkaErrorCode::NotEnoughReplicasAfterAppend => refused(format!(
                "writes with acks=all refused: fewer in-sync replicas than its min.insync.replicas ({code})"
            )),
            RDKafkaErrorCode::InvalidTopic => refused(format!(
                "the broker refuses client writes to it, as to an internal topic ({code})"
            )),
            other => refused(format!("write probe refused: {other}")),
        }),
        Err((source, _)) => Err(kafka(source)),
    }
}
