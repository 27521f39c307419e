//! Processor configuration, from the environment (every field names its variable).

use std::net::SocketAddr;
use std::time::Duration;

use bridge_core::defaults;
use clap::{Args, Parser, Subcommand};

/// Command line: `processor` runs the service (`run` is the default).
#[derive(Debug, Parser)]
#[command(
    name = "processor",
    version,
    about = "Turns raw vendor webhooks into canonical readings."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Service settings.
    #[command(flatten)]
    pub config: Config,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the consumer (default).
    Run,
    /// Apply database migrations and exit.
    Migrate,
}

/// Everything the processor reads at start.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS", default_value = defaults::KAFKA_BOOTSTRAP_SERVERS)]
    pub kafka_bootstrap_servers: String,

    /// Confluent-compatible schema registry base URL.
    #[arg(long, env = "SCHEMA_REGISTRY_URL", default_value = defaults::SCHEMA_REGISTRY_URL)]
    pub schema_registry_url: String,

    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", default_value = defaults::DATABASE_URL, hide_env_values = true)]
    pub database_url: String,

    /// Redis URL for delivery dedup.
    #[arg(long, env = "REDIS_URL", default_value = defaults::REDIS_URL)]
    pub redis_url: String,

    /// Raw topic to consume.
    #[arg(long, env = "RAW_TOPIC", default_value = defaults::RAW_TOPIC)]
    pub raw_topic: String,

    /// Consumer group; replicas with the same group split the partitions.
    #[arg(
        long,
        env = "PROCESSOR_GROUP_ID",
        default_value = "biometrics-processor"
    )]
    pub group_id: String,

    /// Topic canonical readings are published to.
    #[arg(long, env = "READINGS_TOPIC", default_value = "biometrics.readings.v1")]
    pub readings_topic: String,

    /// Dead-letter topic for raw records that cannot be processed.
    #[arg(long, env = "DLQ_TOPIC", default_value = "biometrics.raw.v1.dlq")]
    pub dlq_topic: String,

    /// Health, readiness and metrics listen address.
    #[arg(long, env = "PROCESSOR_LISTEN_ADDR", default_value = "0.0.0.0:8089")]
    pub listen_addr: SocketAddr,

    /// Most raw records per batch. 1,000 webhooks of ~10 readings each make one
    /// ~10k-row upsert: large enough to amortize the round trip, small enough to
    /// finish well inside the drain bound.
    #[arg(long, env = "BATCH_MAX_RECORDS", default_value_t = 1000)]
    pub batch_max_records: usize,

    /// Most raw bytes per batch (bounds memory with large HealthKit exports).
    #[arg(long, env = "BATCH_MAX_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub batch_max_bytes: usize,

    /// Longest a batch waits to fill after its first record; bounds added latency
    /// (the end-to-end p99 target is 500 ms).
    #[arg(long, env = "BATCH_MAX_WAIT", default_value = "50ms", value_parser = humantime::parse_duration)]
    pub batch_max_wait: Duration,

    /// Delivery dedup marks live this long in Redis (Terra retries for up to 8 h;
    /// Health Auto Export re-sends whole days).
    #[arg(long, env = "DEDUP_TTL", default_value = "7days", value_parser = humantime::parse_duration)]
    pub dedup_ttl: Duration,

    /// Kafka consumer session timeout.
    #[arg(long, env = "KAFKA_SESSION_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub session_timeout: Duration,

    /// Bound on finishing the in-flight batch at shutdown or rebalance; must be below
    /// the session timeout so the group never evicts us mid-drain.
    #[arg(long, env = "DRAIN_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,

    /// PostgreSQL pool size.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 4)]
    pub database_max_connections: u32,
}

/// A configuration value that cannot work, naming its variable.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    /// Environment variable at fault.
    pub var: &'static str,
    /// What is wrong.
    pub message: String,
}

impl Config {
    /// Cross-field checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.drain_timeout >= self.session_timeout {
            return Err(ConfigError {
                var: "DRAIN_TIMEOUT",
                message: format!(
                    "must be below KAFKA_SESSION_TIMEOUT ({:?})",
                    self.session_timeout
                ),
            });
        }
        if self.batch_max_records == 0 {
            return Err(ConfigError {
                var: "BATCH_MAX_RECORDS",
                message: "must be at least 1".into(),
            });
        }
        if self.raw_topic == self.dlq_topic || self.raw_topic == self.readings_topic {
            return Err(ConfigError {
                var: "DLQ_TOPIC",
                message: "raw, readings and DLQ topics must differ".into(),
            });
        }
        Ok(())
    }
}
