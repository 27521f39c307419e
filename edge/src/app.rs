//! Start-up: verifiers from configuration, schema registration, the producer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bridge_core::{SchemaRegistry, defaults, envelope::RAW_ENVELOPE_SCHEMA};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::producer::{self, ProducerSettings};
use crate::ready::{self, Readiness};
use crate::routes::App;
use vendors::Vendor;
use vendors::verify::{GenericHmacVerifier, Verifier};

/// Room for the envelope around the body (headers, ids, query): generous, since
/// vendors' header values are small and the edge keeps only a few of them.
const ENVELOPE_OVERHEAD_BYTES: u64 = 64 * 1024;

/// Builds the shared application state, registering the envelope schema first.
pub async fn build(config: &Config) -> anyhow::Result<App> {
    let verifiers = verifiers(config)?;
    for vendor in Vendor::ALL.map(Vendor::as_str) {
        if !verifiers.contains_key(vendor) {
            tracing::warn!(
                message = "Vendor has no secret configured; its route answers 404.",
                vendor
            );
        }
    }
    let registry =
        SchemaRegistry::new(&config.schema_registry_url).context("SCHEMA_REGISTRY_URL")?;
    let subject = defaults::value_subject(&config.raw_topic);
    let codec = register_with_retry(&registry, &subject).await;
    tracing::info!(
        message = "Envelope schema registered.",
        subject,
        id = codec.id()
    );

    let producer = producer::build(&ProducerSettings {
        bootstrap_servers: config.kafka_bootstrap_servers.clone(),
        delivery_timeout: config.produce_timeout,
        linger: config.kafka_linger,
        max_message_bytes: config.max_body_bytes + ENVELOPE_OVERHEAD_BYTES,
    })
    .context("KAFKA_BOOTSTRAP_SERVERS: cannot create producer")?;

    let readiness = Arc::new(Readiness::default());
    ready::spawn(
        ready::Checks {
            producer: producer.clone(),
            topic: config.raw_topic.clone(),
            registry_url: config.schema_registry_url.clone(),
            schema_id: codec.id(),
            canonical_schema: codec.schema().canonical_form(),
        },
        readiness.clone(),
    );

    Ok(App {
        verifiers,
        producer,
        codec,
        readiness,
        topic: config.raw_topic.clone(),
        produce_timeout: config.produce_timeout,
        retry_after_secs: config.retry_after_secs,
        max_body_bytes: config.max_body_bytes,
        body_read_timeout: config.body_read_timeout,
        body_budget: Arc::new(tokio::sync::Semaphore::new(
            usize::try_from(config.body_budget_bytes).unwrap_or(usize::MAX),
        )),
        instance_id: config.instance_id.clone().unwrap_or_else(hostname),
        metrics: Metrics::new(),
    })
}

type Verifiers = HashMap<String, Arc<dyn Verifier>>;

fn verifiers(config: &Config) -> anyhow::Result<Verifiers> {
    let tolerance = config.signature_tolerance;
    let mut map: Verifiers = config
        .vendors
        .verifiers(tolerance)?
        .into_iter()
        .map(|(vendor, verifier)| (vendor.as_str().to_owned(), verifier))
        .collect();
    if let Some(json) = &config.generic_hmac_sources {
        for source in crate::generic_sources::parse(json)? {
            tracing::info!(message = "Generic HMAC source configured.", vendor = %source.name);
            map.insert(
                source.name.clone(),
                Arc::new(GenericHmacVerifier::new(
                    source.config,
                    source.secrets,
                    tolerance,
                )),
            );
        }
    }
    Ok(map)
}

/// The edge cannot encode without a schema id, so it waits for the registry rather
/// than exit; a supervisor restart loop would only add noise.
async fn register_with_retry(
    registry: &SchemaRegistry,
    subject: &str,
) -> bridge_core::RegisteredCodec {
    let mut delay = Duration::from_millis(250);
    loop {
        match registry.register(subject, RAW_ENVELOPE_SCHEMA).await {
            Ok(codec) => return codec,
            Err(error) => {
                tracing::warn!(message = "Schema registry not ready; retrying.", %error, retry_in = ?delay);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "edge".to_string())
}
