//! Readiness as state: a background task checks Kafka and the registry on a fixed
//! period, and `/ready` only reads the result. A flood of probes therefore costs no
//! broker or registry call, and cannot itself make the fleet look unready.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::producer::{FutureProducer, Producer};

use crate::producer;

/// How often the dependencies are checked; `/ready` lags an outage by at most this
/// plus a check's own timeout, well inside a typical 10 s probe period.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// Bound on each dependency call of a check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The last check's outcome; everything starts not ready.
#[derive(Debug, Default)]
pub struct Readiness {
    kafka: AtomicBool,
    registry: AtomicBool,
}

impl Readiness {
    /// Kafka answered metadata for the raw topic and the producer is not fatally failed.
    pub fn kafka(&self) -> bool {
        self.kafka.load(Ordering::Relaxed)
    }

    /// The registry still serves the edge's schema under the id it encodes with.
    pub fn registry(&self) -> bool {
        self.registry.load(Ordering::Relaxed)
    }
}

/// What the checks need.
#[derive(Clone)]
pub struct Checks {
    /// The edge's producer.
    pub producer: FutureProducer,
    /// Raw topic.
    pub topic: String,
    /// Registry base URL (Confluent-compatible API).
    pub registry_url: String,
    /// The id every envelope is framed with.
    pub schema_id: u32,
    /// The schema the edge encodes with, in Avro canonical form.
    pub canonical_schema: String,
}

/// Runs the checks every [`CHECK_INTERVAL`] for as long as the process lives.
pub fn spawn(checks: Checks, state: Arc<Readiness>) {
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let mut tick = tokio::time::interval(CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (kafka, registry) = tokio::join!(
                producer::reachable(&checks.producer, &checks.topic, CHECK_TIMEOUT),
                schema_resolves(&http, &checks)
            );
            // A fatal idempotent-producer error never clears: report not-ready so the
            // orchestrator restarts the edge instead of it answering 503 forever.
            let fatal = checks.producer.client().fatal_error();
            if let Some((_, reason)) = &fatal {
                tracing::error!(message = "Kafka producer is in a fatal state; restart the edge.", %reason);
            }
            let kafka = kafka && fatal.is_none();
            if state.kafka.swap(kafka, Ordering::Relaxed) != kafka {
                tracing::warn!(message = "Kafka readiness changed.", ready = kafka);
            }
            if state.registry.swap(registry, Ordering::Relaxed) != registry {
                tracing::warn!(
                    message = "Schema registry readiness changed.",
                    ready = registry,
                    schema_id = checks.schema_id
                );
            }
        }
    });
}

/// True when `GET /schemas/ids/{id}` serves the edge's own schema. A registry that
/// lost its storage answers 404, or another schema under a reused id: either way
/// the processor could no longer decode what the edge appends.
async fn schema_resolves(http: &reqwest::Client, checks: &Checks) -> bool {
    let url = format!(
        "{}/schemas/ids/{}",
        checks.registry_url.trim_end_matches('/'),
        checks.schema_id
    );
    let response = match http.get(&url).timeout(CHECK_TIMEOUT).send().await {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => {
            tracing::debug!(message = "Registry does not serve our schema id.", status = %r.status());
            return false;
        }
        Err(error) => {
            tracing::debug!(message = "Registry unreachable.", %error);
            return false;
        }
    };
    #[derive(serde::Deserialize)]
    struct Served {
        schema: String,
    }
    match response.json::<Served>().await {
        Ok(served) => apache_avro::Schema::parse_str(&served.schema)
            .is_ok_and(|s| s.canonical_form() == checks.canonical_schema),
        Err(_) => false,
    }
}
