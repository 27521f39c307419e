//! Edge configuration, from the environment (every field names its variable).

use std::net::SocketAddr;
use std::time::Duration;

use bridge_core::defaults;
use clap::Parser;

/// Everything the edge reads at start. Secrets are comma-separated lists: during a
/// rotation both the old and the new secret are active, and either may sign.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "edge",
    version,
    about = "Authenticates vendor webhooks and appends them untouched to Kafka."
)]
pub struct Config {
    /// Address the HTTP server listens on.
    #[arg(long, env = "EDGE_LISTEN_ADDR", default_value = "0.0.0.0:8088")]
    pub listen_addr: SocketAddr,

    /// Optional second address serving `/health`, `/ready` and `/metrics` only; when
    /// set, the webhook port serves `/webhooks/…` only, so probes and scrapes never
    /// share a connection budget with the public internet. Bind it to loopback or a
    /// private interface.
    #[arg(long, env = "EDGE_ADMIN_ADDR")]
    pub admin_addr: Option<SocketAddr>,

    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS", default_value = defaults::KAFKA_BOOTSTRAP_SERVERS)]
    pub kafka_bootstrap_servers: String,

    /// Confluent-compatible schema registry base URL.
    #[arg(long, env = "SCHEMA_REGISTRY_URL", default_value = defaults::SCHEMA_REGISTRY_URL)]
    pub schema_registry_url: String,

    /// Topic raw envelopes are appended to.
    #[arg(long, env = "RAW_TOPIC", default_value = defaults::RAW_TOPIC)]
    pub raw_topic: String,

    /// Every built-in vendor's settings (secrets, handshake tokens, tolerances), from
    /// its folder in the `vendors` crate.
    #[command(flatten)]
    pub vendors: vendors::EdgeArgs,

    /// JSON list of extra HMAC-signed sources (see `edge::generic_sources` and the README).
    #[arg(long, env = "GENERIC_HMAC_SOURCES", hide_env_values = true)]
    pub generic_hmac_sources: Option<String>,

    /// Accepted clock skew for signed timestamps, both directions (Terra's SDK uses 300 s).
    #[arg(long, env = "SIGNATURE_TOLERANCE", default_value = "300s", value_parser = humantime::parse_duration)]
    pub signature_tolerance: Duration,

    /// Largest accepted body; larger requests get 413 (Hookdeck allows 10 MiB; vendor
    /// webhooks here are a few KiB, Health Auto Export batches well under 1 MiB).
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: u64,

    /// How long a client may take to send its request headers before the connection
    /// is closed (slow-header clients would otherwise hold connections forever).
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,

    /// Largest request head (request line plus headers) in bytes; larger heads get
    /// 431. Also hyper's per-connection read buffer, so it sizes each connection's
    /// share of the memory bound. 32 KiB is nginx's default header budget
    /// (`large_client_header_buffers 4 8k`); vendor requests are under 2 KiB.
    #[arg(long, env = "MAX_HEADER_BYTES", default_value_t = 32 * 1024)]
    pub max_header_bytes: usize,

    /// Bytes of request bodies held in memory across all connections at once. A
    /// request whose body would exceed it waits up to 1 s, then gets 503 with
    /// `Retry-After`. 64 MiB holds 64 maximal bodies, or thousands of typical ones.
    #[arg(long, env = "BODY_BUDGET_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub body_budget_bytes: u64,

    /// After an answer on a connection that is closing (a refusal before the body
    /// was read, say), how long the edge keeps reading and discarding what the
    /// client still sends so that it sees the answer instead of a reset (nginx's
    /// `lingering_timeout` is 5 s).
    #[arg(long, env = "LINGER_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub linger_timeout: Duration,

    /// Most open client connections; at the cap the edge stops accepting until one
    /// closes. 4,096 is 40x the benchmark's 100 connections and bounds buffered bodies.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// How long a client may take to send its body before it gets 408.
    #[arg(long, env = "BODY_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub body_read_timeout: Duration,

    /// How long a request may wait for Kafka's acknowledgement before it gets 503.
    /// Below Terra's ~8 s delivery window so the vendor sees our 503, not its own timeout.
    #[arg(long, env = "PRODUCE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub produce_timeout: Duration,

    /// `Retry-After` seconds sent with 503.
    #[arg(long, env = "RETRY_AFTER_SECS", default_value_t = 5)]
    pub retry_after_secs: u32,

    /// How long SIGTERM waits for in-flight requests and the producer flush.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// Name recorded in each envelope's `edge_instance`; defaults to the host name.
    #[arg(long, env = "EDGE_INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// librdkafka `linger.ms`: how long the producer waits to fill a batch. Every
    /// request waits for its ack, so linger adds straight to latency and, at a fixed
    /// number of connections, divides throughput; 1 ms measured best (BENCHMARKS.md:
    /// 5 ms gave 14k req/s, 1 ms 36k, 0 ms 29k).
    #[arg(long, env = "KAFKA_LINGER", default_value = "1ms", value_parser = humantime::parse_duration)]
    pub kafka_linger: Duration,
}

pub use bridge_core::config::ConfigError;

impl Config {
    /// Cross-field and format checks that clap cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.vendors.verifiers(self.signature_tolerance)?;
        if let Some(json) = &self.generic_hmac_sources {
            crate::generic_sources::parse(json)?;
        }
        // librdkafka refuses message.timeout.ms <= linger.ms and values beyond i32 ms;
        // name the variables here instead of failing later as a producer error.
        if self.kafka_linger >= self.produce_timeout {
            return Err(ConfigError {
                var: "KAFKA_LINGER",
                message: "must be below PRODUCE_TIMEOUT".into(),
            });
        }
        if self.produce_timeout.as_millis() > i32::MAX as u128 {
            return Err(ConfigError {
                var: "PRODUCE_TIMEOUT",
                message: "must be at most 24 days".into(),
            });
        }
        if self.shutdown_timeout <= self.produce_timeout {
            return Err(ConfigError {
                var: "SHUTDOWN_TIMEOUT",
                message: "must exceed PRODUCE_TIMEOUT so in-flight requests get their answer"
                    .into(),
            });
        }
        if self.max_body_bytes > 16 * 1024 * 1024 {
            return Err(ConfigError {
                var: "MAX_BODY_BYTES",
                message: "at most 16 MiB (the broker's message.max.bytes must also allow it)"
                    .into(),
            });
        }
        if !(8 * 1024..=1024 * 1024).contains(&self.max_header_bytes) {
            return Err(ConfigError {
                var: "MAX_HEADER_BYTES",
                message: "must be between 8 KiB (hyper's minimum buffer) and 1 MiB".into(),
            });
        }
        if self.body_budget_bytes < self.max_body_bytes
            || self.body_budget_bytes > u64::from(u32::MAX)
        {
            return Err(ConfigError {
                var: "BODY_BUDGET_BYTES",
                message: "must be at least MAX_BODY_BYTES (or no maximal body could be read) and below 4 GiB".into(),
            });
        }
        if self.admin_addr.is_some_and(|a| a == self.listen_addr) {
            return Err(ConfigError {
                var: "EDGE_ADMIN_ADDR",
                message: "must differ from EDGE_LISTEN_ADDR".into(),
            });
        }
        if self.max_connections == 0 {
            return Err(ConfigError {
                var: "MAX_CONNECTIONS",
                message: "must be at least 1".into(),
            });
        }
        if self.produce_timeout < Duration::from_millis(100) {
            return Err(ConfigError {
                var: "PRODUCE_TIMEOUT",
                message: "must be at least 100ms".into(),
            });
        }
        if self.raw_topic.is_empty() {
            return Err(ConfigError {
                var: "RAW_TOPIC",
                message: "must not be empty".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(env: &[&str]) -> Result<(), ConfigError> {
        let args = std::iter::once("edge").chain(env.iter().copied());
        Config::try_parse_from(args).expect("parses").validate()
    }

    #[test]
    fn vendor_settings_are_checked_at_start() {
        assert!(parse(&["--healthkit-api-keys", "alice=k1,bob=k2,alice=k3"]).is_ok());
        let err = parse(&["--healthkit-api-keys", "alice=sk-secret-1,bob= sk-secret-1"])
            .expect_err("duplicate key");
        assert_eq!(err.var, "HEALTHKIT_API_KEYS");
        let err = parse(&["--oura-verification-token", "t"]).expect_err("token without secret");
        assert_eq!(err.var, "OURA_CLIENT_SECRET");
    }

    #[test]
    fn limits_are_checked() {
        let err = parse(&["--max-header-bytes", "4096"]).expect_err("too small for hyper");
        assert_eq!(err.var, "MAX_HEADER_BYTES");
        let err = parse(&["--body-budget-bytes", "1000"]).expect_err("below MAX_BODY_BYTES");
        assert_eq!(err.var, "BODY_BUDGET_BYTES");
        let err = parse(&[
            "--listen-addr",
            "127.0.0.1:1",
            "--admin-addr",
            "127.0.0.1:1",
        ])
        .expect_err("same address");
        assert_eq!(err.var, "EDGE_ADMIN_ADDR");
        assert!(parse(&[]).is_ok());
    }
}
