//! Redis delivery dedup: a fast filter in front of PostgreSQL.
//!
//! Vendors retry webhooks, and the edge accepts every retry. A delivery already
//! written is recognised by its key and skipped before normalizing and upserting.
//! PostgreSQL's unique keys stay the idempotency authority: a delivery the filter
//! misses (Redis down, slow, flushed, key expired) is upserted again, harmlessly.
//! So a Redis error must never drop data: callers treat it as "not seen", count
//! it, and carry on. Keys are marked only after the batch committed.
//!
//! Marks are namespaced by consumer group and [`NORMALIZER_VERSION`]: another group
//! (a replay, a second deployment) and a new normalizer see old deliveries as new, so
//! re-processing after a fix or a restore is never skipped as "already done". `processor
//! replay` bypasses the filter altogether.

use std::time::Duration;

use bridge_core::RawEnvelope;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest, Sha256};
use tracing::instrument;

/// Prefix of every delivery key (`bb` = biometric bridge, `dlv` = delivery).
pub const KEY_PREFIX: &str = "bb:dlv:";

/// Version of the normalizers' output, part of every dedup mark. Bump it with a
/// normalizer change whose fix must reach deliveries already processed (then the
/// redelivered or replayed records are not skipped as duplicates).
pub const NORMALIZER_VERSION: u32 = 1;

/// How long a delivery is remembered. Vendor retries of one delivery span hours
/// (Terra retries for about 8 h, Oura for about 1 h), but Health Auto Export re-sends
/// its "since last sync" window days later when a sync failed on the phone; a week
/// covers that with margin. Memory is about 150 bytes per delivery.
pub const DEFAULT_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Default bound on one Redis call. Redis answers in well under a millisecond
/// when healthy; past this the filter is not worth stalling a partition for.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_millis(200);

/// Bound on one connection attempt (start-up and each background reconnect).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A Redis dedup call failed. Callers log, count, and treat the keys as not seen.
#[derive(Debug, thiserror::Error)]
pub enum DedupError {
    /// The URL is not a valid Redis URL: a configuration error.
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(redis::RedisError),
    /// Redis refused the connection or the command.
    #[error("Redis dedup call failed: {0}")]
    Redis(redis::RedisError),
    /// Redis did not answer in time.
    #[error("Redis dedup call did not finish within {0:?}")]
    Timeout(Duration),
}

/// Delivery dedup over one auto-reconnecting, multiplexed Redis connection.
/// Cloning is cheap and shares the connection.
#[derive(Clone)]
pub struct Dedup {
    conn: ConnectionManager,
    ttl_secs: u64,
    call_timeout: Duration,
    /// `<group>:n<normalizer version>`.
    namespace: String,
}

impl std::fmt::Debug for Dedup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dedup")
            .field("ttl_secs", &self.ttl_secs)
            .field("call_timeout", &self.call_timeout)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Dedup {
    /// Connects and checks Redis answers, failing within about a second when it does
    /// not, so a wrong URL shows at start. Keys live for `ttl` (at least one second).
    /// After start, outages are survived: calls fail fast and the connection is
    /// re-established in the background.
    pub async fn connect(url: &str, ttl: Duration) -> Result<Self, DedupError> {
        let dedup = Self::connect_lazy(url, ttl)?;
        let mut conn = dedup.conn.clone();
        let ping = redis::cmd("PING");
        match tokio::time::timeout(CONNECT_TIMEOUT, ping.query_async::<()>(&mut conn)).await {
            Ok(Ok(())) => Ok(dedup),
            Ok(Err(e)) => Err(DedupError::Redis(e)),
            Err(_) => Err(DedupError::Timeout(CONNECT_TIMEOUT)),
        }
    }

    /// Like [`connect`](Self::connect) but without touching the network: the first
    /// call connects. For starting while Redis is down; only the URL is checked.
    pub fn connect_lazy(url: &str, ttl: Duration) -> Result<Self, DedupError> {
        let client = redis::Client::open(url).map_err(DedupError::InvalidUrl)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            // The per-call timeout below is the one bound callers see.
            .set_response_timeout(None)
            // One attempt per reconnect: the next call after a failure triggers the
            // next attempt, so a down Redis costs each call a fast error, not a wait
            // behind a multi-second backoff loop.
            .set_number_of_retries(0);
        let conn =
            ConnectionManager::new_lazy_with_config(client, config).map_err(DedupError::Redis)?;
        Ok(Self {
            conn,
            ttl_secs: ttl.as_secs().max(1),
            call_timeout: DEFAULT_CALL_TIMEOUT,
            namespace: format!("default:n{NORMALIZER_VERSION}"),
        })
    }

    /// Whether Redis answers a `PING` within the call timeout (the health gauge).
    pub async fn ping(&self) -> bool {
        let mut conn = self.conn.clone();
        let ping = redis::cmd("PING");
        matches!(
            tokio::time::timeout(self.call_timeout, ping.query_async::<()>(&mut conn)).await,
            Ok(Ok(()))
        )
    }

    /// Keeps this consumer group's marks apart from every other group's (and from
    /// other normalizer versions).
    pub fn with_namespace(mut self, group: &str) -> Self {
        self.namespace = format!("{group}:n{NORMALIZER_VERSION}");
        self
    }

    /// The Redis key a [`delivery_key`](Self::delivery_key) is stored under:
    /// `bb:dlv:<group>:n<version>:<vendor>:<hash>`.
    pub fn redis_key(&self, key: &str) -> String {
        let rest = key.strip_prefix(KEY_PREFIX).unwrap_or(key);
        format!("{KEY_PREFIX}{}:{rest}", self.namespace)
    }

    /// Sets the bound on each [`seen_many`](Self::seen_many) /
    /// [`mark_many`](Self::mark_many) call (default [`DEFAULT_CALL_TIMEOUT`]).
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// The key identifying one delivery: `bb:dlv:<vendor>:<hash>`.
    ///
    /// Vendors re-sign a retry with a new timestamp (and signature) header, so headers
    /// differ between attempts while the body is byte-identical: the body identifies
    /// the delivery (Terra documents no delivery-id header). The principal and query
    /// string go into the hash too, so two users sending identical bytes (an empty
    /// Health Auto Export sync, say) are never mistaken for one delivery. SHA-256
    /// rather than a fast hash because a collision silently drops a delivery and
    /// bodies come from outside; truncated to 128 bits to halve Redis memory, which
    /// keeps second preimages out of reach.
    pub fn delivery_key(env: &RawEnvelope) -> String {
        let mut hasher = Sha256::new();
        // Length-prefixed fields, and a distinct marker for "absent", so no two
        // different field combinations hash the same bytes.
        let mut field = |value: Option<&[u8]>| match value {
            Some(bytes) => {
                hasher.update((bytes.len() as u64).to_be_bytes());
                hasher.update(bytes);
            }
            None => hasher.update(u64::MAX.to_be_bytes()),
        };
        field(env.principal.as_deref().map(str::as_bytes));
        field(env.query.as_deref().map(str::as_bytes));
        field(Some(&env.body));
        let digest = hasher.finalize();
        format!("{KEY_PREFIX}{}:{}", env.vendor, hex::encode(&digest[..16]))
    }

    /// For each key, whether it was marked (and has not expired). One round trip
    /// (`MGET`), bounded by the call timeout.
    #[instrument(skip_all, fields(keys = keys.len()))]
    pub async fn seen_many(&self, keys: &[String]) -> Result<Vec<bool>, DedupError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = keys.iter().map(|k| self.redis_key(k)).collect();
        let mut conn = self.conn.clone();
        let values: Vec<redis::Value> = self
            .bounded(redis::cmd("MGET").arg(&keys).query_async(&mut conn))
            .await?;
        Ok(values
            .iter()
            .map(|v| !matches!(v, redis::Value::Nil))
            .collect())
    }

    /// Marks keys as written, each with the TTL. One round trip (a pipeline of
    /// `SET key 1 EX ttl`), bounded by the call timeout. Call only after the batch
    /// committed: marking first would lose data if the write then failed.
    #[instrument(skip_all, fields(keys = keys.len()))]
    pub async fn mark_many(&self, keys: &[String]) -> Result<(), DedupError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("SET")
                .arg(self.redis_key(key))
                .arg(1)
                .arg("EX")
                .arg(self.ttl_secs)
                .ignore();
        }
        let mut conn = self.conn.clone();
        self.bounded(pipe.query_async::<()>(&mut conn)).await
    }

    async fn bounded<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, DedupError> {
        match tokio::time::timeout(self.call_timeout, call).await {
            Ok(result) => result.map_err(DedupError::Redis),
            Err(_) => Err(DedupError::Timeout(self.call_timeout)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Instant;

    use super::*;

    fn redis_url() -> String {
        std::env::var("REDIS_URL").unwrap_or_else(|_| bridge_core::defaults::REDIS_URL.to_owned())
    }

    /// Keys under a prefix of their own, so concurrent test runs never collide.
    fn test_keys(n: usize) -> Vec<String> {
        let run = uuid::Uuid::new_v4();
        (0..n).map(|i| format!("bbtest:{run}:{i}")).collect()
    }

    fn envelope(body: &[u8]) -> RawEnvelope {
        RawEnvelope {
            event_id: uuid::Uuid::now_v7().to_string(),
            vendor: "terra".into(),
            received_at_micros: 1_700_000_000_000_000,
            headers: HashMap::from([("terra-signature".into(), "t=1,v1=aa".into())]),
            query: None,
            principal: None,
            content_type: Some("application/json".into()),
            body: body.to_vec(),
            edge_instance: "edge-1".into(),
        }
    }

    #[test]
    fn retries_share_a_key_and_other_deliveries_do_not() {
        let first = envelope(br#"{"type":"daily"}"#);
        let key = Dedup::delivery_key(&first);
        assert!(key.starts_with("bb:dlv:terra:"), "{key}");
        assert_eq!(key.len(), "bb:dlv:terra:".len() + 32);

        // A retry: new event id, receive time and signature header, same body.
        let mut retry = envelope(br#"{"type":"daily"}"#);
        retry.received_at_micros += 3_600_000_000;
        retry
            .headers
            .insert("terra-signature".into(), "t=2,v1=bb".into());
        assert_eq!(Dedup::delivery_key(&retry), key);

        let other_body = envelope(br#"{"type":"sleep"}"#);
        let mut other_user = envelope(br#"{"type":"daily"}"#);
        other_user.principal = Some("u2".into());
        let mut other_query = envelope(br#"{"type":"daily"}"#);
        other_query.query = Some(String::new());
        let mut other_vendor = envelope(br#"{"type":"daily"}"#);
        other_vendor.vendor = "oura".into();
        for other in [other_body, other_user, other_query, other_vendor] {
            assert_ne!(Dedup::delivery_key(&other), key, "{other:?}");
        }
    }

    #[tokio::test]
    async fn marked_keys_are_seen_until_they_expire() {
        let dedup = Dedup::connect(&redis_url(), Duration::from_secs(60))
            .await
            .unwrap();
        let keys = test_keys(3);

        dedup.mark_many(&keys[..2]).await.unwrap();

        assert_eq!(dedup.seen_many(&keys).await.unwrap(), [true, true, false]);
        let mut conn = dedup.conn.clone();
        let ttl: i64 = redis::cmd("TTL")
            .arg(dedup.redis_key(&keys[0]))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!((55..=60).contains(&ttl), "ttl {ttl}");
        // Another group, or the same group under another namespace, sees nothing.
        let other = Dedup::connect(&redis_url(), Duration::from_secs(60))
            .await
            .unwrap()
            .with_namespace("another-group");
        assert_eq!(other.seen_many(&keys).await.unwrap(), [false, false, false]);
        let raw: Vec<String> = keys.iter().map(|k| dedup.redis_key(k)).collect();
        let _: () = redis::cmd("DEL")
            .arg(&raw)
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn marks_are_namespaced_by_group_and_normalizer_version() {
        let a = Dedup::connect_lazy(&redis_url(), DEFAULT_TTL)
            .unwrap()
            .with_namespace("group-a");
        let b = Dedup::connect_lazy(&redis_url(), DEFAULT_TTL)
            .unwrap()
            .with_namespace("group-b");
        let key = Dedup::delivery_key(&envelope(b"{}"));
        let hash = key.strip_prefix("bb:dlv:").unwrap();
        assert_eq!(
            a.redis_key(&key),
            format!("bb:dlv:group-a:n{NORMALIZER_VERSION}:{hash}")
        );
        assert_ne!(a.redis_key(&key), b.redis_key(&key));
    }

    #[tokio::test]
    async fn unknown_keys_are_unseen() {
        let dedup = Dedup::connect(&redis_url(), DEFAULT_TTL).await.unwrap();
        let keys = test_keys(2);
        assert_eq!(dedup.seen_many(&keys).await.unwrap(), [false, false]);
        assert!(dedup.seen_many(&[]).await.unwrap().is_empty());
        dedup.mark_many(&[]).await.unwrap();
    }

    #[tokio::test]
    async fn unreachable_redis_fails_fast() {
        let started = Instant::now();
        assert!(
            Dedup::connect("redis://127.0.0.1:1", DEFAULT_TTL)
                .await
                .is_err()
        );

        let dedup = Dedup::connect_lazy("redis://127.0.0.1:1", DEFAULT_TTL).unwrap();
        let keys = test_keys(1);
        assert!(dedup.seen_many(&keys).await.is_err());
        assert!(dedup.mark_many(&keys).await.is_err());
        // Again: each call retries the connection, and fails as fast.
        assert!(dedup.seen_many(&keys).await.is_err());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn hung_redis_times_out() {
        // Accepts connections and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let holder = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        let dedup = Dedup::connect_lazy(&url, DEFAULT_TTL)
            .unwrap()
            .with_call_timeout(Duration::from_millis(100));
        let keys = test_keys(1);

        let started = Instant::now();
        let result = dedup.seen_many(&keys).await;

        assert!(matches!(result, Err(DedupError::Timeout(_))), "{result:?}");
        assert!(started.elapsed() < Duration::from_millis(500));
        assert!(Dedup::connect(&url, DEFAULT_TTL).await.is_err());
        holder.abort();
    }

    #[test]
    fn invalid_url_is_a_configuration_error() {
        let result = Dedup::connect_lazy("http://127.0.0.1:6379", DEFAULT_TTL);
        assert!(
            matches!(result, Err(DedupError::InvalidUrl(_))),
            "{result:?}"
        );
    }
}
