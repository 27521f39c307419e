//! Start-up wiring: connections, schema registration, the HTTP probe server, the pipeline.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bridge_core::{SchemaRegistry, defaults};
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::util::Timeout;
use tokio_util::sync::CancellationToken;
use warp::Filter;
use warp::http::StatusCode;

use crate::config::Config;
use crate::dedup::Dedup;
use crate::fetch::accounts::{AccountError, AccountStore};
use crate::fetch::parking::{Backoff, ParkStore};
use crate::fetch::{Fetch, Fetcher, Settings};
use crate::metrics::Metrics;
use crate::pipeline::{BatchLimits, LagContext, Pipeline, Topics};
use crate::publish::{self, READING_KEY_SCHEMA, READING_SCHEMA};
use crate::sink::postgres::PgSink;

/// Registers the changelog's key and value schemas and opens the changelog on
/// `producer`; returns it with the value schema's id (the `/ready` check pins it). The
/// live pipeline and `processor replay` publish through the same one.
pub(crate) async fn changelog(
    config: &Config,
    registry: &SchemaRegistry,
    producer: &rdkafka::producer::FutureProducer,
) -> anyhow::Result<(Arc<publish::Changelog>, u32)> {
    let readings_codec = registry
        .register(
            &defaults::value_subject(&config.readings_topic),
            READING_SCHEMA,
        )
        .await
        .context("registering the readings schema")?;
    let readings_key_codec = registry
        .register(
            &format!("{}-key", config.readings_topic),
            READING_KEY_SCHEMA,
        )
        .await
        .context("registering the readings key schema")?;
    let id = readings_codec.id();
    let changelog = publish::Changelog::new(
        producer.clone(),
        &config.kafka_bootstrap_servers,
        &config.readings_topic,
        readings_key_codec,
        readings_codec,
    )
    .await
    .context("READINGS_TOPIC: the changelog topic is unusable")?;
    Ok((Arc::new(changelog), id))
}

/// Connects everything, applies migrations, starts the probe server, and returns the
/// pipeline's future (resolves after a clean drain).
pub async fn start(
    config: &Config,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> anyhow::Result<impl std::future::Future<Output = anyhow::Result<()>>> {
    let sink = PgSink::connect(&config.database_url, config.database_max_connections)
        .await
        .context("DATABASE_URL: cannot connect to PostgreSQL")?
        .with_metrics(metrics.clone());
    sink.migrate().await.context("applying migrations")?;

    let fetch = Arc::new(fetch_stage(config, &sink, metrics.clone()).await?);

    // Lazy: a Redis that is down at start is retried per call; PostgreSQL keys keep
    // results correct meanwhile, Redis only saves work.
    let dedup = Some(
        Dedup::connect_lazy(&config.redis_url, config.dedup_ttl)
            .context("REDIS_URL")?
            .with_namespace(&config.group_id),
    );

    let registry =
        SchemaRegistry::new(&config.schema_registry_url).context("SCHEMA_REGISTRY_URL")?;

    // Before subscribing: a missing topic would otherwise greet every start with
    // librdkafka's UnknownTopicOrPartition ERROR, and an unusable DLQ would only show
    // when a batch first needs it.
    crate::topics::check(config)
        .await
        .context("checking the raw, readings and DLQ topics")?;

    let consumer: StreamConsumer<LagContext> = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka_bootstrap_servers)
        .set("group.id", &config.group_id)
        // At-least-once: commit periodically, but only offsets we stored after the
        // batch was durable (rust-rdkafka at_least_once.rs).
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        // A new group starts from the beginning: nothing the edge accepted is skipped.
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            config.session_timeout.as_millis().to_string(),
        )
        // Processing happens between polls; allow a slow batch plus its drain bound.
        .set(
            "max.poll.interval.ms",
            crate::pipeline::MAX_POLL_INTERVAL.as_millis().to_string(),
        )
        // Spreads partitions evenly over replicas; cooperative avoids stop-the-world.
        .set("partition.assignment.strategy", "cooperative-sticky")
        // Feeds the consumer-lag gauge.
        .set("statistics.interval.ms", "5000")
        .create_with_context(LagContext {
            metrics: metrics.clone(),
        })
        .context("KAFKA_BOOTSTRAP_SERVERS: cannot create consumer")?;
    consumer
        .subscribe(&[&config.raw_topic])
        .context("subscribing to RAW_TOPIC")?;
    let consumer = Arc::new(consumer);
    let producer = publish::producer(&config.kafka_bootstrap_servers)
        .context("KAFKA_BOOTSTRAP_SERVERS: cannot create producer")?;
    let (changelog, readings_schema_id) = changelog(config, &registry, &producer).await?;

    let probe = Probe {
        consumer: consumer.clone(),
        registry: registry.clone(),
        readings_schema_id,
        sink: sink.clone(),
        metrics: metrics.clone(),
        topic: config.raw_topic.clone(),
    };
    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("PROCESSOR_LISTEN_ADDR: cannot bind {}", config.listen_addr))?;
    let server_shutdown = shutdown.clone();
    tokio::spawn(
        warp::serve(probe.routes())
            .incoming(listener)
            .graceful(async move { server_shutdown.cancelled().await })
            .run(),
    );

    tokio::spawn(crate::health::run(
        crate::health::Dependencies {
            consumer: consumer.clone(),
            topic: config.raw_topic.clone(),
            registry: registry.clone(),
            sink: sink.clone(),
            dedup: dedup.clone(),
        },
        metrics.clone(),
        shutdown.clone(),
    ));

    tokio::spawn(crate::fetch::worker::run(
        fetch.clone(),
        crate::fetch::worker::Outputs {
            sink: sink.clone(),
            changelog: changelog.clone(),
        },
        metrics.clone(),
        shutdown.clone(),
    ));

    let pipeline = Pipeline {
        consumer,
        registry,
        changelog,
        producer,
        sink,
        dedup,
        fetch: Some(fetch),
        topics: Topics {
            raw: config.raw_topic.clone(),
            readings: config.readings_topic.clone(),
            dlq: config.dlq_topic.clone(),
        },
        limits: BatchLimits {
            max_records: config.batch_max_records,
            max_bytes: config.batch_max_bytes,
            max_wait: config.batch_max_wait,
        },
        drain_timeout: config.drain_timeout,
        metrics,
    };
    tracing::info!(message = "Processor started.", topic = %config.raw_topic, group = %config.group_id);
    Ok(pipeline.run(shutdown))
}

/// Builds the fetch stage for every fetched vendor. Refuses to start when linked accounts exist and
/// TOKEN_ENCRYPTION_KEY is missing or does not decrypt them.
pub(crate) async fn fetch_stage(
    config: &Config,
    sink: &PgSink,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Fetch> {
    let f = &config.fetch;
    let cipher = f.token_cipher().context("TOKEN_ENCRYPTION_KEY")?;
    let accounts = AccountStore::new(sink.pool().clone(), cipher);
    match accounts.check_key().await {
        Ok(_) => {}
        Err(AccountError::NoKey) => anyhow::bail!(
            "TOKEN_ENCRYPTION_KEY is not set, but linked accounts exist: set it to the key they were linked with"
        ),
        Err(e @ AccountError::Decrypt(_)) => {
            anyhow::bail!(
                "TOKEN_ENCRYPTION_KEY does not decrypt the stored linked-account tokens: {e}"
            )
        }
        Err(e) => return Err(e).context("reading linked_accounts"),
    }
    let specs = f.vendors.fetched();
    for (vendor, spec) in &specs {
        for (var, set) in [
            (spec.oauth.client_id_var, spec.oauth.client_id.is_some()),
            (
                spec.oauth.client_secret_var,
                spec.oauth.client_secret.is_some(),
            ),
        ] {
            if !set {
                tracing::warn!(
                    message =
                        "OAuth client setting missing; tokens of that vendor cannot be refreshed.",
                    %vendor,
                    var
                );
            }
        }
    }
    let http = reqwest::Client::builder()
        .user_agent(concat!(
            "biometric-bridge-processor/",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
        .context("building the HTTP client")?;
    let settings = Settings {
        max_wait: f.fetch_max_wait,
        request_timeout: f.fetch_timeout,
        refresh_margin: f.token_refresh_margin,
        // Long enough to ride out a load balancer's hiccup, short enough not to hold the batch.
        short_retry: Duration::from_millis(250),
        // WHOOP and Oura document no default; a minute is a polite guess.
        default_retry_after: Duration::from_secs(60),
    };
    Ok(Fetch {
        fetcher: Fetcher::new(accounts, http, specs, settings, metrics),
        parked: ParkStore::new(sink.pool().clone()),
        backoff: Backoff {
            base: f.park_retry_base,
            max: f.park_retry_max,
        },
        concurrency: f.fetch_concurrency,
        poll_interval: f.park_poll_interval,
    })
}

#[derive(Clone)]
struct Probe {
    consumer: Arc<StreamConsumer<LagContext>>,
    registry: SchemaRegistry,
    readings_schema_id: u32,
    sink: PgSink,
    metrics: Arc<Metrics>,
    topic: String,
}

impl Probe {
    fn routes(
        self,
    ) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible>
    + Clone
    + Send
    + Sync
    + 'static {
        let health =
            warp::path!("health").map(|| reply(StatusCode::OK, r#"{"status":"ok"}"#.into()));
        let me = self.clone();
        let ready = warp::path!("ready").then(move || {
            let me = me.clone();
            async move { me.ready().await }
        });
        let metrics = warp::path!("metrics")
            .and(warp::header::optional::<String>("accept"))
            .map(move |accept: Option<String>| {
                let (content_type, body) =
                    bridge_core::telemetry::exposition(self.metrics.encode(), accept.as_deref());
                let mut r = warp::reply::Response::new(body.into());
                r.headers_mut().insert(
                    "content-type",
                    warp::http::HeaderValue::from_static(content_type),
                );
                r
            });
        warp::get()
            .and(health.or(ready).unify().or(metrics).unify())
            .recover(|_| async {
                Ok::<_, Infallible>(reply(
                    StatusCode::NOT_FOUND,
                    r#"{"error":"not found"}"#.into(),
                ))
            })
            .unify()
    }

    async fn ready(&self) -> warp::reply::Response {
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        let kafka = tokio::task::spawn_blocking(move || {
            consumer
                .fetch_metadata(Some(&topic), Timeout::After(Duration::from_secs(2)))
                .is_ok()
        });
        // The registry is ready only if it still serves the id readings are published
        // with and the pipeline is not holding records on a registry outage.
        let (kafka, registry, db) = tokio::join!(
            kafka,
            self.registry.check_id(self.readings_schema_id),
            self.sink.ping()
        );
        let registry = registry.is_ok() && self.registry.outage().is_none();
        let (kafka, db) = (kafka.unwrap_or(false), db.is_ok());
        let status = if kafka && registry && db {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        reply(
            status,
            format!(r#"{{"kafka":{kafka},"schema_registry":{registry},"postgres":{db}}}"#),
        )
    }
}

fn reply(status: StatusCode, body: String) -> warp::reply::Response {
    let mut r = warp::reply::Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        warp::http::HeaderValue::from_static("application/json"),
    );
    r
}
