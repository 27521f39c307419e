//! Start-up durability check of the raw topic: a `202` is only as durable as the
//! topic behind it, so its replication factor and `min.insync.replicas` are read once
//! and a WARN names the topic when they cannot keep a record through a broker loss.

use bridge_core::topics::{self, TopicSpec};

/// Reads the raw topic's durability settings in the background and logs a WARN below
/// replication 3 / `min.insync.replicas` 2. Never delays or fails the start: a Kafka
/// that is down at start is the producer's and `/ready`'s concern, not this check's.
pub fn spawn(bootstrap_servers: &str, raw_topic: &str) {
    let bootstrap = bootstrap_servers.to_string();
    let spec = TopicSpec {
        name: raw_topic.to_string(),
        partitions: -1,
        configs: Vec::new(),
    };
    // Detached: it ends after one look, and a process exiting meanwhile loses nothing.
    tokio::spawn(async move {
        // create=false: the processor owns topic creation and its settings.
        match topics::ensure(&bootstrap, std::slice::from_ref(&spec), false).await {
            Ok(infos) => {
                if topics::warn_durability(&infos) == 0 {
                    tracing::info!(message = "Raw topic durability meets production settings.", topic = %spec.name);
                }
            }
            Err(error) => {
                tracing::warn!(message = "Could not read the raw topic's durability settings at start.", topic = %spec.name, %error);
            }
        }
    });
}
