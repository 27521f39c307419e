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
use rdkafka::types::RDKafkaErrorCode;

/// Bound on each admin call: start-up fails with a message instead of hanging.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);

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
