//! Processor configuration, from the environment (every field names its variable).

use std::net::SocketAddr;
use std::time::Duration;

use bridge_core::defaults;
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};

use crate::fetch::crypto::{KeyError, TokenCipher};
use vendors::Vendor;

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
    /// Link (or re-link) a vendor account: store its OAuth tokens, encrypted with
    /// TOKEN_ENCRYPTION_KEY, and make its parked notifications due now.
    LinkAccount(LinkAccount),
    /// Remove a linked account; its later notifications are parked as `unlinked`.
    UnlinkAccount(UnlinkAccount),
    /// Re-normalize a range of the raw topic into the table and the readings topic,
    /// bypassing dedup (after a restore, a fail-over that lost commits, a normalizer
    /// fix). Idempotent: rows are upserted by their keys.
    Replay(Replay),
    /// Re-feed dead letters (optionally only some reasons) to the raw topic once their
    /// cause is fixed; the running processors then handle them as new records.
    Redrive(Redrive),
}

/// `processor replay` arguments. Without `--from-*`, a partition is replayed from its
/// first offset; without `--to-*`, up to its end when the command starts.
#[derive(Debug, Clone, Args)]
pub struct Replay {
    /// Partitions to replay (repeatable); default every partition of RAW_TOPIC.
    #[arg(long = "partition")]
    pub partitions: Vec<i32>,
    /// First offset to replay, in every selected partition.
    #[arg(long, conflicts_with = "from_time")]
    pub from_offset: Option<i64>,
    /// Replay records appended at or after this time (RFC 3339).
    #[arg(long)]
    pub from_time: Option<DateTime<Utc>>,
    /// Stop before this offset, in every selected partition.
    #[arg(long, conflicts_with = "to_time")]
    pub to_offset: Option<i64>,
    /// Stop at records appended at or after this time (RFC 3339).
    #[arg(long)]
    pub to_time: Option<DateTime<Utc>>,
}

/// `processor redrive` arguments.
#[derive(Debug, Clone, Args)]
pub struct Redrive {
    /// Only dead letters with this `dlq.reason` (repeatable); default every reason.
    #[arg(long = "reason")]
    pub reasons: Vec<String>,
    /// Count what would be redriven without producing anything.
    #[arg(long)]
    pub dry_run: bool,
}

/// A vendor by its route name (`oura`, `whoop`, …), for `--vendor`.
fn vendor_arg(s: &str) -> Result<Vendor, String> {
    s.parse::<Vendor>().map_err(|e| {
        let known: Vec<&str> = Vendor::ALL.iter().map(|v| v.as_str()).collect();
        format!("{e}; one of {}", known.join(", "))
    })
}

/// `processor link-account` arguments.
#[derive(Debug, Clone, Args)]
pub struct LinkAccount {
    /// Vendor route name; its webhooks must be notifications this processor fetches.
    #[arg(long, value_parser = vendor_arg)]
    pub vendor: Vendor,
    /// The vendor's user id, as its webhooks name it (Oura `user_id`, WHOOP `user_id`).
    #[arg(long)]
    pub vendor_user_id: String,
    /// Our user id; readings fetched for this account are stored under it.
    #[arg(long)]
    pub user_id: String,
    /// OAuth access token (or LINK_ACCESS_TOKEN, which keeps it out of `ps`).
    #[arg(long, env = "LINK_ACCESS_TOKEN", hide_env_values = true)]
    pub access_token: Secret,
    /// OAuth refresh token (or LINK_REFRESH_TOKEN).
    #[arg(long, env = "LINK_REFRESH_TOKEN", hide_env_values = true)]
    pub refresh_token: Secret,
    /// When the access token expires (RFC 3339); without it the token is refreshed only
    /// when the vendor answers 401.
    #[arg(long)]
    pub expires_at: Option<DateTime<Utc>>,
    /// Granted scopes, space-separated (informational).
    #[arg(long)]
    pub scopes: Option<String>,
}

/// `processor unlink-account` arguments.
#[derive(Debug, Clone, Args)]
pub struct UnlinkAccount {
    /// Vendor route name.
    #[arg(long, value_parser = vendor_arg)]
    pub vendor: Vendor,
    /// The vendor's user id.
    #[arg(long)]
    pub vendor_user_id: String,
}

pub use bridge_core::config::Secret;

/// Fetch-after-notify settings: the engine's, then every fetched vendor's.
#[derive(Debug, Clone, Args)]
pub struct FetchConfig {
    /// 32-byte key encrypting linked-account tokens at rest, as base64 or hex. Required
    /// as soon as any account is linked; the service refuses to start without it then.
    #[arg(long, env = "TOKEN_ENCRYPTION_KEY", hide_env_values = true)]
    pub token_encryption_key: Option<Secret>,

    /// Every fetched vendor's settings (API and token URLs, client credentials, rate
    /// limits), from its folder in the `vendors` crate.
    #[command(flatten)]
    pub vendors: vendors::ProcessorArgs,

    /// Longest a fetch waits for a rate-limit slot or a short Retry-After before the
    /// notification is parked instead, so a partition never waits on one vendor or user.
    #[arg(long, env = "FETCH_MAX_WAIT", default_value = "1s", value_parser = humantime::parse_duration)]
    pub fetch_max_wait: Duration,

    /// Timeout of one vendor request. Oura and WHOOP answer single documents in well
    /// under a second; 10 s bounds a stuck connection without parking slow successes.
    #[arg(long, env = "FETCH_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub fetch_timeout: Duration,

    /// Notifications fetched at once within a batch (and by the retry task).
    #[arg(long, env = "FETCH_CONCURRENCY", default_value_t = 16)]
    pub fetch_concurrency: usize,

    /// Refresh an access token that expires within this margin before using it.
    #[arg(long, env = "TOKEN_REFRESH_MARGIN", default_value = "60s", value_parser = humantime::parse_duration)]
    pub token_refresh_margin: Duration,

    /// How often the retry task looks for due parked notifications.
    #[arg(long, env = "PARK_POLL_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub park_poll_interval: Duration,

    /// First retry delay of a parked notification (doubles per attempt). WHOOP usually
    /// scores within minutes, so 30 s, 1 min, 2 min… catches a pending score quickly.
    #[arg(long, env = "PARK_RETRY_BASE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub park_retry_base: Duration,

    /// Longest retry delay of a parked notification (Retry-After may exceed it).
    #[arg(long, env = "PARK_RETRY_MAX", default_value = "1h", value_parser = humantime::parse_duration)]
    pub park_retry_max: Duration,
}

impl FetchConfig {
    /// The token cipher, when TOKEN_ENCRYPTION_KEY is set.
    pub fn token_cipher(&self) -> Result<Option<TokenCipher>, KeyError> {
        self.token_encryption_key
            .as_ref()
            .map(|k| TokenCipher::from_env_value(k.expose()))
            .transpose()
    }
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

    /// The readings changelog: every change of `readings`, keyed by the reading's
    /// identity, tombstones for removals. Created compacted at start when missing.
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

    /// Bound on finishing the in-flight batch after SIGTERM; must be below the session
    /// timeout so the group never evicts us mid-drain. (At a rebalance the in-flight
    /// batch finishes before the next poll hands partitions over; offsets of revoked
    /// partitions are not stored and their records are redelivered to the new owner.)
    #[arg(long, env = "DRAIN_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,

    /// PostgreSQL pool size. Every statement is short: the batch upsert, parking, the
    /// retry task's claims, and per fetched notification two account queries (read, and
    /// when a token expires a lease claim and a store), none held across a vendor call.
    /// So 4 connections serve `FETCH_CONCURRENCY` 16; raise it with more replicas' worth
    /// of retry-task concurrency, not with vendor latency.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 4)]
    pub database_max_connections: u32,

    /// Whether start-up creates the raw, readings and DLQ topics when they are missing
    /// (with `TOPIC_PARTITIONS` partitions, the broker's replication factor and the
    /// record-size limits the pipeline needs). `false`: a missing topic stops the start.
    #[arg(long, env = "KAFKA_CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub create_topics: bool,

    /// Partitions of topics created at start-up (4: the local stack's `num.partitions`;
    /// the raw topic's count bounds the useful number of processor replicas).
    #[arg(long, env = "TOPIC_PARTITIONS", default_value_t = 4)]
    pub topic_partitions: i32,

    /// Fetch-after-notify settings.
    #[command(flatten)]
    pub fetch: FetchConfig,
}

pub use bridge_core::config::ConfigError;

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
        if let Err(e) = self.fetch.token_cipher() {
            return Err(ConfigError {
                var: "TOKEN_ENCRYPTION_KEY",
                message: e.to_string(),
            });
        }
        let fetched = self.fetch.vendors.fetched();
        for (var, url) in fetched.iter().flat_map(|(_, spec)| {
            [
                (spec.api_base_var, &spec.api_base),
                (spec.oauth.token_url_var, &spec.oauth.token_url),
            ]
        }) {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError {
                    var,
                    message: format!("{url:?} is not an http(s) URL"),
                });
            }
        }
        if self.topic_partitions < 1 {
            return Err(ConfigError {
                var: "TOPIC_PARTITIONS",
                message: "must be at least 1".into(),
            });
        }
        if self.fetch.fetch_concurrency == 0 {
            return Err(ConfigError {
                var: "FETCH_CONCURRENCY",
                message: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}
