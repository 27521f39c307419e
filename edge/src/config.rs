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

    /// Oura OAuth client secret(s); signs `x-oura-signature`. Unset disables `/webhooks/oura`.
    #[arg(
        long,
        env = "OURA_CLIENT_SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub oura_client_secret: Vec<String>,

    /// Token Oura echoes in the subscription handshake (`GET /webhooks/oura?verification_token=…`).
    #[arg(long, env = "OURA_VERIFICATION_TOKEN", hide_env_values = true)]
    pub oura_verification_token: Option<String>,

    /// WHOOP OAuth client secret(s); signs `X-WHOOP-Signature`. Unset disables `/webhooks/whoop`.
    #[arg(
        long,
        env = "WHOOP_CLIENT_SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub whoop_client_secret: Vec<String>,

    /// Terra destination signing secret(s). Unset disables `/webhooks/terra`.
    #[arg(
        long,
        env = "TERRA_SIGNING_SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub terra_signing_secret: Vec<String>,

    /// Polar AccessLink `signature_secret_key`(s). Unset disables `/webhooks/polar`.
    #[arg(
        long,
        env = "POLAR_SIGNATURE_SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub polar_signature_secret: Vec<String>,

    /// Health Auto Export API keys as `user_id=api_key` pairs. Unset disables `/webhooks/healthkit`.
    #[arg(
        long,
        env = "HEALTHKIT_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub healthkit_api_keys: Vec<String>,

    /// JSON list of extra HMAC-signed sources (see `edge::generic_sources` and the README).
    #[arg(long, env = "GENERIC_HMAC_SOURCES", hide_env_values = true)]
    pub generic_hmac_sources: Option<String>,

    /// Accepted clock skew for signed timestamps, both directions (Terra's SDK uses 300 s).
    #[arg(long, env = "SIGNATURE_TOLERANCE", default_value = "300s", value_parser = humantime::parse_duration)]
    pub signature_tolerance: Duration,

    /// Per-vendor override of the tolerance for Oura.
    #[arg(long, env = "OURA_SIGNATURE_TOLERANCE", value_parser = humantime::parse_duration)]
    pub oura_signature_tolerance: Option<Duration>,

    /// Per-vendor override of the tolerance for WHOOP.
    #[arg(long, env = "WHOOP_SIGNATURE_TOLERANCE", value_parser = humantime::parse_duration)]
    pub whoop_signature_tolerance: Option<Duration>,

    /// Per-vendor override of the tolerance for Terra.
    #[arg(long, env = "TERRA_SIGNATURE_TOLERANCE", value_parser = humantime::parse_duration)]
    pub terra_signature_tolerance: Option<Duration>,

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
        for pair in self
            .healthkit_api_keys
            .iter()
            .filter(|p| !p.trim().is_empty())
        {
            match pair.split_once('=') {
                Some((user, key)) if !user.trim().is_empty() && !key.trim().is_empty() => {}
                _ => {
                    return Err(ConfigError {
                        var: "HEALTHKIT_API_KEYS",
                        message: "expected comma-separated user_id=api_key pairs".into(),
                    });
                }
            }
        }
        // The first matching key would win, landing one user's data under another.
        let mut seen: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
        for (user, key) in self
            .healthkit_api_keys
            .iter()
            .filter_map(|p| p.split_once('='))
            .map(|(u, k)| (u.trim(), k.trim()))
        {
            if let Some(first) = seen.insert(key, user) {
                return Err(ConfigError {
                    var: "HEALTHKIT_API_KEYS",
                    message: format!(
                        "users `{first}` and `{user}` have the same API key; every user needs their own"
                    ),
                });
            }
        }
        if self.oura_verification_token().is_some()
            && Self::keys(&self.oura_client_secret).is_empty()
        {
            return Err(ConfigError {
                var: "OURA_CLIENT_SECRET",
                message: "OURA_VERIFICATION_TOKEN is set but no client secret to verify deliveries"
                    .into(),
            });
        }
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

    /// Secrets as key bytes, empty entries dropped (a trailing comma is not a secret).
    pub fn keys(list: &[String]) -> Vec<Vec<u8>> {
        list.iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| s.as_bytes().to_vec())
            .collect()
    }

    /// The Oura handshake token; an empty variable counts as unset.
    pub fn oura_verification_token(&self) -> Option<String> {
        self.oura_verification_token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
    }

    /// HealthKit `(user_id, api_key)` pairs.
    pub fn healthkit_keys(&self) -> Vec<(String, String)> {
        self.healthkit_api_keys
            .iter()
            .filter_map(|p| p.split_once('='))
            .map(|(u, k)| (u.trim().to_string(), k.trim().to_string()))
            .collect()
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
    fn duplicate_healthkit_keys_refuse_start_without_naming_the_key() {
        assert!(parse(&["--healthkit-api-keys", "alice=k1,bob=k2,alice=k3"]).is_ok());
        let err = parse(&["--healthkit-api-keys", "alice=sk-secret-1,bob= sk-secret-1"])
            .expect_err("duplicate key");
        assert_eq!(err.var, "HEALTHKIT_API_KEYS");
        let text = err.to_string();
        assert!(text.contains("alice") && text.contains("bob"), "{text}");
        assert!(!text.contains("sk-secret-1"), "{text}");
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
