//! Dependency health as gauges: every [`PROBE_INTERVAL`] the processor asks Kafka, the
//! schema registry, PostgreSQL and Redis whether they answer, and reads the age of the
//! oldest open parked notification per reason. An SRE alerts on the gauges instead of
//! inferring an outage from retry counters.

use std::sync::Arc;
use std::time::Duration;

use bridge_core::SchemaRegistry;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::util::Timeout;
use tokio_util::sync::CancellationToken;

use crate::dedup::Dedup;
use crate::metrics::Metrics;
use crate::pipeline::LagContext;
use crate::sink::postgres::PgSink;

/// How often dependencies are probed: the lag statistics' period, so the dashboard's
/// gauges move together.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// Bound on each probe: a dependency slower than this counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

const PARKED_OLDEST: &str = include_str!("sql/parked_oldest.sql");

/// What the probes talk to.
pub struct Dependencies {
    /// The pipeline's consumer (metadata request for the raw topic).
    pub consumer: Arc<StreamConsumer<LagContext>>,
    /// The raw topic.
    pub topic: String,
    /// Schema registry.
    pub registry: SchemaRegistry,
    /// PostgreSQL.
    pub sink: PgSink,
    /// Redis; `None` when dedup is off (no `redis` sample then).
    pub dedup: Option<Dedup>,
}

/// Probes until `shutdown`.
pub async fn run(deps: Dependencies, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        probe(&deps, &metrics).await;
    }
}

async fn probe(deps: &Dependencies, metrics: &Metrics) {
    let consumer = deps.consumer.clone();
    let topic = deps.topic.clone();
    let kafka = tokio::task::spawn_blocking(move || {
        consumer
            .fetch_metadata(Some(&topic), Timeout::After(PROBE_TIMEOUT))
            .is_ok()
    });
    let registry = tokio::time::timeout(PROBE_TIMEOUT, deps.registry.check());
    let postgres = tokio::time::timeout(PROBE_TIMEOUT, deps.sink.ping());
    let redis = async {
        match &deps.dedup {
            Some(d) => Some(d.ping().await),
            None => None,
        }
    };
    let (kafka, registry, postgres, redis) = tokio::join!(kafka, registry, postgres, redis);
    metrics.dependency("kafka", kafka.unwrap_or(false));
    metrics.dependency("schema_registry", matches!(registry, Ok(Ok(()))));
    let pg_up = matches!(postgres, Ok(Ok(())));
    metrics.dependency("postgres", pg_up);
    if let Some(up) = redis {
        metrics.dependency("redis", up);
    }
    if pg_up {
        let ages = tokio::time::timeout(
            PROBE_TIMEOUT,
            sqlx::query_as::<_, (String, f64)>(PARKED_OLDEST).fetch_all(deps.sink.pool()),
        )
        .await;
        match ages {
            Ok(Ok(ages)) => metrics.parked_oldest(&ages),
            // Stale ages are worse than none: the parked-age alert must not fire on them.
            Ok(Err(error)) => {
                tracing::warn!(message = "Cannot read parked notification ages.", %error);
                metrics.parked_oldest(&[]);
            }
            Err(_) => metrics.parked_oldest(&[]),
        }
    } else {
        metrics.parked_oldest(&[]);
    }
}
