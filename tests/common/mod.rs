//! Helpers for integration tests on the real stack: connection settings from the
//! environment (defaults match `scripts/stack`), unique topics, and the project's
//! binaries started as real processes.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};

/// Kafka bootstrap servers under test.
pub fn kafka() -> String {
    std::env::var("KAFKA_BOOTSTRAP_SERVERS")
        .unwrap_or_else(|_| bridge_core::defaults::KAFKA_BOOTSTRAP_SERVERS.into())
}

/// Schema registry under test.
pub fn registry_url() -> String {
    std::env::var("SCHEMA_REGISTRY_URL")
        .unwrap_or_else(|_| bridge_core::defaults::SCHEMA_REGISTRY_URL.into())
}

/// PostgreSQL under test.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| bridge_core::defaults::DATABASE_URL.into())
}

/// Redis under test.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| bridge_core::defaults::REDIS_URL.into())
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Creates `topic` with `partitions` partitions.
pub async fn create_topic(topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .create()
        .expect("admin client");
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create_topics");
    for r in results {
        r.expect("topic created");
    }
}

/// A consumer in a fresh group, reading `topic` from the beginning.
pub fn consumer(topic: &str) -> StreamConsumer {
    let c: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("group.id", unique("test-group"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    c.subscribe(&[topic]).expect("subscribe");
    c
}

/// Reads `n` messages or panics after `timeout`.
pub async fn read_n(c: &StreamConsumer, n: usize, timeout: Duration) -> Vec<OwnedMessage> {
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, c.recv()).await {
            Ok(Ok(m)) => out.push(m.detach()),
            Ok(Err(e)) => panic!("consume error: {e}"),
            Err(_) => panic!("only {} of {n} messages within {timeout:?}", out.len()),
        }
    }
    out
}

/// Reads whatever arrives within `quiet` (for asserting that nothing more came).
pub async fn drain(c: &StreamConsumer, quiet: Duration) -> Vec<OwnedMessage> {
    let mut out = Vec::new();
    while let Ok(Ok(m)) = tokio::time::timeout(quiet, c.recv()).await {
        out.push(m.detach());
    }
    out
}

/// Payload bytes of a message.
pub fn payload(m: &OwnedMessage) -> &[u8] {
    m.payload().unwrap_or_default()
}

/// Path of a workspace binary built by `cargo build --workspace --bins`.
pub fn binary(name: &str) -> PathBuf {
    // Test executables live in target/<profile>/deps; binaries one level up.
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} missing: run `cargo build --workspace --bins` first (make test does)",
        path.display()
    );
    path
}

/// A child process killed on drop.
pub struct Proc {
    /// The child.
    pub child: Child,
}

impl Proc {
    /// Starts a workspace binary with `env`.
    pub fn start(name: &str, env: &[(&str, String)]) -> Proc {
        // Child logs go to a file per process so test output stays readable; the
        // path is printed so a failing test can be read alongside its services.
        let dir = binary(name)
            .parent()
            .map(|d| d.join("test-logs"))
            .expect("target dir");
        let _ = std::fs::create_dir_all(&dir);
        let log = dir.join(format!("{name}-{}.log", uuid::Uuid::new_v4().simple()));
        let file = std::fs::File::create(&log).expect("log file");
        eprintln!("{name} logs: {}", log.display());
        let mut cmd = Command::new(binary(name));
        cmd.env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(file));
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc {
            child: cmd.spawn().expect("spawn"),
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for exit; returns the exit code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// SIGKILL: no drain, no flush.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Polls `url` until it answers 200 or `timeout` passes.
pub async fn wait_http_ok(url: &str, timeout: Duration) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} not ready within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Vendor signatures, computed independently of the edge's verifiers.
pub mod sign {
    use base64::Engine;
    use hmac::{KeyInit, Mac};

    type HmacSha256 = hmac::Hmac<sha2::Sha256>;

    fn mac(secret: &str, parts: &[&[u8]]) -> Vec<u8> {
        let mut m = HmacSha256::new_from_slice(secret.as_bytes()).expect("any key length");
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().to_vec()
    }

    /// `terra-signature` header value.
    pub fn terra(secret: &str, t: i64, body: &[u8]) -> String {
        let t = t.to_string();
        format!(
            "t={t},v1={}",
            hex::encode(mac(secret, &[t.as_bytes(), b".", body]))
        )
    }

    /// `X-WHOOP-Signature` for a millisecond timestamp.
    pub fn whoop(secret: &str, t_ms: i64, body: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD
            .encode(mac(secret, &[t_ms.to_string().as_bytes(), body]))
    }

    /// `x-oura-signature` (upper-case hex, as Oura's example).
    pub fn oura(secret: &str, t: i64, body: &[u8]) -> String {
        hex::encode_upper(mac(secret, &[t.to_string().as_bytes(), body]))
    }

    /// `Polar-Webhook-Signature`.
    pub fn polar(secret: &str, body: &[u8]) -> String {
        hex::encode(mac(secret, &[body]))
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Test secrets every spawned edge is configured with.
pub mod secrets {
    /// Oura client secret.
    pub const OURA: &str = "oura-test-client-secret";
    /// Oura verification token.
    pub const OURA_TOKEN: &str = "tok-123";
    /// WHOOP client secret.
    pub const WHOOP: &str = "whoop-test-client-secret";
    /// Terra signing secret.
    pub const TERRA: &str = "terra-test-signing-secret";
    /// Polar signature secret.
    pub const POLAR: &str = "polar-test-signature-secret-key";
    /// HealthKit user and key.
    pub const HEALTHKIT_USER: &str = "user-hk-1";
    /// HealthKit API key.
    pub const HEALTHKIT_KEY: &str = "sk-test-healthkit";
}

/// A running edge process on a free port, appending to `topic`.
pub struct Edge {
    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    /// The process.
    pub proc: Proc,
}

impl Edge {
    /// Starts the edge binary configured with the test secrets, waits for `/health`.
    pub async fn start(topic: &str, extra: &[(&str, String)]) -> Edge {
        let port = free_port();
        let mut env = vec![
            ("EDGE_LISTEN_ADDR", format!("127.0.0.1:{port}")),
            ("KAFKA_BOOTSTRAP_SERVERS", kafka()),
            ("SCHEMA_REGISTRY_URL", registry_url()),
            ("RAW_TOPIC", topic.to_string()),
            ("OURA_CLIENT_SECRET", secrets::OURA.into()),
            ("OURA_VERIFICATION_TOKEN", secrets::OURA_TOKEN.into()),
            ("WHOOP_CLIENT_SECRET", secrets::WHOOP.into()),
            ("TERRA_SIGNING_SECRET", secrets::TERRA.into()),
            ("POLAR_SIGNATURE_SECRET", secrets::POLAR.into()),
            (
                "HEALTHKIT_API_KEYS",
                format!("{}={}", secrets::HEALTHKIT_USER, secrets::HEALTHKIT_KEY),
            ),
        ];
        env.extend(extra.iter().cloned());
        let proc = Proc::start("edge", &env);
        let url = format!("http://127.0.0.1:{port}");
        wait_http_ok(&format!("{url}/health"), Duration::from_secs(30)).await;
        Edge { url, proc }
    }
}

/// Token encryption key every test processor gets (32 bytes, hex).
pub const TEST_TOKEN_KEY: &str = "6b6579206f6e6c7920666f722074657374732c206e6f7420666f72207573652e";

/// A running processor process with its own group and topics.
pub struct ProcessorProc {
    /// Probe base URL.
    pub url: String,
    /// The process.
    pub proc: Proc,
}

/// Topics one pipeline test uses.
#[derive(Clone, Debug)]
pub struct PipelineTopics {
    /// Raw.
    pub raw: String,
    /// Readings.
    pub readings: String,
    /// Dead letters.
    pub dlq: String,
    /// Consumer group.
    pub group: String,
}

impl PipelineTopics {
    /// Fresh names; creates raw (with `partitions`), readings and DLQ topics.
    pub async fn create(partitions: i32) -> PipelineTopics {
        let raw = unique("raw");
        let t = PipelineTopics {
            readings: format!("{raw}.readings"),
            dlq: format!("{raw}.dlq"),
            group: unique("group"),
            raw,
        };
        create_topic(&t.raw, partitions).await;
        create_topic(&t.readings, partitions).await;
        create_topic(&t.dlq, 1).await;
        t
    }
}

impl ProcessorProc {
    /// Starts the processor binary on `topics`, waits for `/health`.
    pub async fn start(topics: &PipelineTopics, extra: &[(&str, String)]) -> ProcessorProc {
        let port = free_port();
        let mut env = vec![
            ("PROCESSOR_LISTEN_ADDR", format!("127.0.0.1:{port}")),
            ("KAFKA_BOOTSTRAP_SERVERS", kafka()),
            ("SCHEMA_REGISTRY_URL", registry_url()),
            ("DATABASE_URL", database_url()),
            ("REDIS_URL", redis_url()),
            ("RAW_TOPIC", topics.raw.clone()),
            ("READINGS_TOPIC", topics.readings.clone()),
            ("DLQ_TOPIC", topics.dlq.clone()),
            ("PROCESSOR_GROUP_ID", topics.group.clone()),
            // Short so rebalances in tests settle quickly.
            ("KAFKA_SESSION_TIMEOUT", "10s".into()),
            ("DRAIN_TIMEOUT", "5s".into()),
            // The shared database may hold linked accounts from the fetch tests; a
            // processor refuses to start without the key once any account exists.
            ("TOKEN_ENCRYPTION_KEY", TEST_TOKEN_KEY.into()),
        ];
        env.extend(extra.iter().cloned());
        let proc = Proc::start("processor", &env);
        let url = format!("http://127.0.0.1:{port}");
        wait_http_ok(&format!("{url}/health"), Duration::from_secs(60)).await;
        ProcessorProc { url, proc }
    }
}

/// The value of an unlabelled metric from a Prometheus `/metrics` page (0 when absent).
pub async fn metric(base_url: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{base_url}/metrics"))
        .await
        .and_then(|r| r.error_for_status())
        .expect("metrics endpoint")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
