//! The consume loop and its stages, as in the README's diagram:
//!
//! ```text
//! decode -> dedup -> resolve (fetch) -> normalize -> write (publish, then commit) -> park
//!        -> dead-letter -> mark -> store offsets
//! ```
//!
//! Batches are taken in offset order from all assigned partitions; each record carries
//! its own [`State`] through the stages (`stages.rs`). A batch's offsets are stored only
//! after its rows are committed in PostgreSQL and its readings and dead letters are
//! acknowledged by Kafka; librdkafka's auto-commit then commits what was stored (and
//! commits it on revoke, so rebalance and shutdown share one path). What each error
//! means is decided in one place ([`crate::error`]): bad data goes to the DLQ and the
//! offset moves on; outages (registry, PostgreSQL, Kafka publish) are retried with
//! backoff without storing anything past them. Those dependencies are shared by every
//! partition, so a retry pauses this replica as a whole rather than one partition.

mod deps;
mod record;
mod retry;
mod stages;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bridge_core::SchemaRegistry;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientContext, Statistics};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::dedup::Dedup;
use crate::fetch::Fetch;
use crate::metrics::Metrics;
use crate::publish::Changelog;
use crate::sink::postgres::PgSink;

use deps::Dlq;
pub(crate) use record::{Record, State};
pub(crate) use retry::Deadline;
pub(crate) use stages::write;
use stages::{Offsets, Stages};

/// Consumer context that turns librdkafka statistics into the per-partition lag gauge
/// (no extra broker round trips: librdkafka already tracks the high watermark).
pub struct LagContext {
    /// Where the gauge lives.
    pub metrics: Arc<Metrics>,
}

impl ClientContext for LagContext {
    fn stats(&self, statistics: Statistics) {
        for topic in statistics.topics.values() {
            for (partition, p) in &topic.partitions {
                // -1 is librdkafka's internal unassigned partition; lag -1 means unknown.
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.metrics.lag(*partition, p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for LagContext {}

/// librdkafka `max.poll.interval.ms`: the group evicts a member that does not poll
/// for this long. The pipeline polls between batches.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(300);

/// Longest one batch may spend retrying an outage; a minute below
/// [`MAX_POLL_INTERVAL`] so the member leaves the group before it would be evicted.
pub const MAX_BATCH_TIME: Duration = Duration::from_secs(240);

/// Batch limits.
#[derive(Debug, Clone)]
pub struct BatchLimits {
    /// Most records.
    pub max_records: usize,
    /// Most payload bytes.
    pub max_bytes: usize,
    /// Longest wait after the first record.
    pub max_wait: Duration,
}

/// Topics the pipeline reads and writes.
#[derive(Debug, Clone)]
pub struct Topics {
    /// Raw envelopes (consumed).
    pub raw: String,
    /// Canonical readings (published).
    pub readings: String,
    /// Dead letters (published).
    pub dlq: String,
}

/// The running pipeline's parts.
pub struct Pipeline {
    /// Subscribed consumer.
    pub consumer: Arc<StreamConsumer<LagContext>>,
    /// Registry client (envelope decoding).
    pub registry: SchemaRegistry,
    /// The readings changelog (its producer is `producer`).
    pub changelog: Arc<Changelog>,
    /// Producer for readings and dead letters.
    pub producer: FutureProducer,
    /// PostgreSQL.
    pub sink: PgSink,
    /// Redis filter; `None` runs on PostgreSQL keys alone.
    pub dedup: Option<Dedup>,
    /// Fetch stage for notification-only vendors (Oura, WHOOP); `None` dead-letters
    /// their envelopes as `notification_only`.
    pub fetch: Option<Arc<Fetch>>,
    /// Topics.
    pub topics: Topics,
    /// Batch limits.
    pub limits: BatchLimits,
    /// Bound on finishing the in-flight batch after shutdown was requested.
    pub drain_timeout: Duration,
    /// Telemetry.
    pub metrics: Arc<Metrics>,
}

/// Why a batch did not finish.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Shutdown plus the drain bound, or MAX_BATCH_TIME, passed while a stage was
    /// still retrying.
    #[error("gave up retrying {0}")]
    Aborted(&'static str),
    /// A failure no retry can fix (e.g. the DLQ topic refuses our records): stop now.
    #[error("{0}")]
    Fatal(String),
}

impl Pipeline {
    /// Runs until `shutdown` is cancelled, then drains the in-flight batch (bounded by
    /// the drain timeout), commits stored offsets and returns.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        loop {
            let batch = tokio::select! {
                _ = shutdown.cancelled() => break,
                batch = self.collect() => batch,
            };
            let batch = self.assigned_only(batch);
            if batch.is_empty() {
                continue;
            }
            let n = batch.len();
            let started = Instant::now();
            let result = self.run_batch(batch, &shutdown).await;
            match result {
                Ok(offsets) => {
                    self.store_offsets(&offsets);
                    self.metrics.batch_done(n, started.elapsed().as_secs_f64());
                }
                Err(BatchError::Fatal(error)) => {
                    tracing::error!(message = "Unrecoverable publish failure; exiting. The batch will be redelivered.", %error, records = n);
                    self.commit_stored();
                    anyhow::bail!("{error}");
                }
                Err(error) if shutdown.is_cancelled() => {
                    tracing::error!(message = "Batch abandoned at shutdown; it will be redelivered.", %error, records = n);
                    break;
                }
                Err(error) => {
                    // Exiting makes the group rebalance now, cleanly, instead of evicting
                    // us later; the orchestrator restarts the process.
                    tracing::error!(message = "Outage outlasted the batch time bound; exiting so the group rebalances. The batch will be redelivered.", %error, records = n, bound = ?MAX_BATCH_TIME);
                    self.commit_stored();
                    anyhow::bail!(
                        "a dependency stayed unavailable for {MAX_BATCH_TIME:?}: {error}"
                    );
                }
            }
        }
        self.commit_stored();
        tracing::info!(message = "Pipeline stopped.");
        Ok(())
    }

    /// One batch through the stages, in one trace linked to the request trace of each
    /// record in it. It ends by succeeding, by shutdown plus the drain bound, or after
    /// MAX_BATCH_TIME of retrying an outage: past max.poll.interval.ms the group would
    /// evict this member and hand its partitions over while the batch could still
    /// commit older data after the new owner's.
    async fn run_batch(
        &self,
        batch: Vec<OwnedMessage>,
        shutdown: &CancellationToken,
    ) -> Result<Offsets, BatchError> {
        self.metrics.batch_started(
            batch.len(),
            batch.iter().filter_map(|m| m.timestamp().to_millis()).min(),
        );
        let span = tracing::info_span!("batch", records = batch.len());
        bridge_core::telemetry::link_all(&span, batch.iter().filter_map(kafka_traceparent));
        let deadline = Deadline::for_batch(shutdown, self.drain_timeout, MAX_BATCH_TIME);
        let result = self
            .stages()
            .process(batch, &deadline)
            .instrument(span)
            .await;
        self.metrics.batch_ended();
        result
    }

    /// Processes records outside the consume loop (`processor replay`): the same stages,
    /// bounded by [`MAX_BATCH_TIME`], no offsets stored.
    pub async fn process_records(&self, batch: Vec<OwnedMessage>) -> Result<(), BatchError> {
        let deadline = Deadline::after(MAX_BATCH_TIME);
        self.stages().process(batch, &deadline).await.map(|_| ())
    }

    /// The stages over this pipeline's real clients.
    fn stages(&self) -> Stages<'_> {
        Stages {
            decoder: &self.registry,
            dedup: self.dedup.as_ref(),
            sink: &self.sink,
            changelog: self.changelog.as_ref(),
            dlq: Dlq {
                producer: &self.producer,
                topic: &self.topics.dlq,
            },
            fetch: self.fetch.as_deref(),
            metrics: &self.metrics,
        }
    }

    /// Drops records of partitions revoked while the batch was collected: their offsets
    /// can no longer be stored, and the new owner is already replaying them, so
    /// processing them here could only write older data after the new owner's.
    fn assigned_only(&self, batch: Vec<OwnedMessage>) -> Vec<OwnedMessage> {
        let Ok(assignment) = self.consumer.assignment() else {
            return batch;
        };
        let owned: HashSet<i32> = assignment
            .elements_for_topic(&self.topics.raw)
            .iter()
            .map(|e| e.partition())
            .collect();
        let before = batch.len();
        let kept: Vec<OwnedMessage> = batch
            .into_iter()
            .filter(|m| owned.contains(&m.partition()))
            .collect();
        if kept.len() < before {
            tracing::info!(
                message = "Dropped records of revoked partitions; their new owner processes them.",
                dropped = before - kept.len()
            );
        }
        kept
    }

    /// Commits stored offsets now rather than at the next auto-commit tick.
    fn commit_stored(&self) {
        match self
            .consumer
            .commit_consumer_state(rdkafka::consumer::CommitMode::Sync)
        {
            Ok(()) => {}
            // Nothing stored since the last auto-commit: nothing to do.
            Err(e)
                if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::NoOffset) => {}
            Err(error) => {
                tracing::warn!(message = "Final offset commit failed; uncommitted records will be redelivered.", %error);
            }
        }
    }

    /// Waits for one record, then gathers more until a limit is hit.
    async fn collect(&self) -> Vec<OwnedMessage> {
        let mut batch = Vec::new();
        let mut bytes = 0usize;
        let first = loop {
            match self.consumer.recv().await {
                Ok(m) => break m.detach(),
                Err(error) => {
                    tracing::warn!(message = "Kafka consume error.", %error);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        bytes += first.payload().map_or(0, <[u8]>::len);
        batch.push(first);
        let deadline = tokio::time::Instant::now() + self.limits.max_wait;
        while batch.len() < self.limits.max_records && bytes < self.limits.max_bytes {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(Ok(m)) => {
                    bytes += m.payload().map_or(0, <[u8]>::len);
                    batch.push(m.detach());
                }
                Ok(Err(error)) => {
                    tracing::warn!(message = "Kafka consume error.", %error);
                    break;
                }
                Err(_) => break,
            }
        }
        batch
    }

    fn store_offsets(&self, offsets: &Offsets) {
        let mut tpl = TopicPartitionList::new();
        for (p, o) in offsets {
            // Cannot fail for a fresh list and a valid offset.
            let _ = tpl.add_partition_offset(&self.topics.raw, *p, Offset::Offset(*o));
        }
        // Fails for partitions revoked meanwhile: their new owner replays them, which
        // the idempotent upsert absorbs.
        if let Err(error) = self.consumer.store_offsets(&tpl) {
            tracing::debug!(message = "Offsets not stored (partition revoked?).", %error);
        }
    }
}

/// The `traceparent` Kafka header the edge put on a raw record.
fn kafka_traceparent(m: &OwnedMessage) -> Option<&str> {
    m.headers()?
        .iter()
        .find(|h| h.key == "traceparent")
        .and_then(|h| std::str::from_utf8(h.value?).ok())
}
