//! The consume → decode → dedup → normalize → upsert → publish → store-offset loop.
//!
//! Batches are taken in offset order from all assigned partitions. A batch's offsets
//! are stored only after its rows are committed in PostgreSQL and its readings and
//! dead letters are acknowledged by Kafka; librdkafka's auto-commit then commits what
//! was stored (and commits it on revoke, so rebalance and shutdown share one path).
//! Deterministic failures go to the DLQ and the offset moves on; transient failures
//! (registry, PostgreSQL, Kafka publish) are retried with backoff without storing
//! anything past them. Those dependencies are shared by every partition, so a retry
//! pauses this replica as a whole rather than one partition.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bridge_core::{RawEnvelope, SchemaRegistry};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientContext, Statistics};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::dedup::Dedup;
use crate::fetch::parking::{Origin, Park};
use crate::fetch::{Fetch, Outcome};
use crate::metrics::Metrics;
use crate::model::Change;
use crate::normalize;
use crate::publish::{self, Changelog, DeadLetter, Provenance};
use crate::sink::postgres::PgSink;
use crate::sink::{Batch, Written};
use vendors::Vendor;

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

struct Decoded {
    msg: OwnedMessage,
    result: Result<RawEnvelope, DeadLetterReason>,
}

/// One envelope that normalized cleanly.
struct Item<'a> {
    msg: &'a OwnedMessage,
    env: &'a RawEnvelope,
    key: Option<String>,
    normalized: crate::model::Normalized,
}

impl Item<'_> {
    fn batch(items: &[Item<'_>]) -> Batch {
        let mut batch = Batch::default();
        for item in items {
            let received = DateTime::<Utc>::from_timestamp_micros(item.env.received_at_micros)
                .unwrap_or_default();
            batch.push(&item.env.event_id, received, item.normalized.clone());
        }
        batch
    }
}

/// Pairs each change with the provenance of the envelope it came from: `items[i]` is
/// envelope `i` of the batch `Item::batch(items)` built.
fn with_provenance(
    changes: Vec<Change>,
    items: &[Item<'_>],
) -> impl Iterator<Item = (Change, Option<Provenance>)> {
    changes.into_iter().map(move |change| {
        let provenance = match &change {
            Change::Upsert { envelope, .. } => items.get(*envelope).map(|item| Provenance {
                event_id: item.env.event_id.clone(),
                partition: item.msg.partition(),
                offset: item.msg.offset(),
                // Raw records the edge did not write (redriven, older, other producers)
                // can carry anything: only a valid W3C value travels on.
                traceparent: item
                    .env
                    .header("traceparent")
                    .filter(|tp| {
                        tp.len() == 55 && bridge_core::telemetry::well_formed_traceparent(tp)
                    })
                    .map(str::to_string),
            }),
            Change::Delete(_) => None,
        };
        (change, provenance)
    })
}

struct DeadLetterReason {
    reason: &'static str,
    detail: String,
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
            let started = Instant::now();
            let n = batch.len();
            self.metrics.batch_started(
                n,
                batch.iter().filter_map(|m| m.timestamp().to_millis()).min(),
            );
            // One trace per batch, linked to the request trace of each record in it.
            let span = stage_span(
                tracing::info_span!("batch", records = n),
                batch.iter().filter_map(kafka_traceparent),
            );
            // A batch ends by succeeding, by shutdown plus the drain bound, or after
            // MAX_BATCH_TIME of retrying an outage: past max.poll.interval.ms the group
            // would evict this member and hand its partitions over while the batch could
            // still commit older data after the new owner's.
            let deadline = {
                let shutdown = shutdown.clone();
                let drain = self.drain_timeout;
                async move {
                    tokio::select! {
                        _ = async {
                            shutdown.cancelled().await;
                            tokio::time::sleep(drain).await;
                        } => {}
                        _ = tokio::time::sleep(MAX_BATCH_TIME) => {}
                    }
                }
            };
            let result = self.process(batch, deadline).instrument(span).await;
            self.metrics.batch_ended();
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

    /// Processes records outside the consume loop (`processor replay`): the same stages,
    /// bounded by [`MAX_BATCH_TIME`], no offsets stored.
    pub async fn process_records(&self, batch: Vec<OwnedMessage>) -> Result<(), BatchError> {
        self.process(batch, tokio::time::sleep(MAX_BATCH_TIME))
            .await
            .map(|_| ())
    }

    /// Drops records of partitions revoked while the batch was collected: their offsets
    /// can no longer be stored, and the new owner is already replaying them, so
    /// processing them here could only write older data after the new owner's.
    fn assigned_only(&self, batch: Vec<OwnedMessage>) -> Vec<OwnedMessage> {
        let Ok(assignment) = self.consumer.assignment() else {
            return batch;
        };
        let owned: std::collections::HashSet<i32> = assignment
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

    /// Processes one batch; returns the next offset to store per partition.
    async fn process(
        &self,
        batch: Vec<OwnedMessage>,
        deadline: impl Future<Output = ()>,
    ) -> Result<HashMap<i32, i64>, BatchError> {
        tokio::pin!(deadline);
        let mut offsets = HashMap::new();
        for m in &batch {
            let next = offsets.entry(m.partition()).or_insert(m.offset() + 1);
            *next = (*next).max(m.offset() + 1);
        }

        // 1. Decode. Registry outages (an unknown schema id included) retry; only bytes
        // that fail against a schema the registry serves become dead letters.
        let mut decoded = Vec::with_capacity(batch.len());
        for msg in batch {
            let payload = msg.payload().unwrap_or_default().to_vec();
            let value = retry(&self.metrics, "decode", &mut deadline, || async {
                match self.registry.decode(&payload).await {
                    Err(e) if e.is_outage() => Err(Transient(e.to_string())),
                    other => Ok(other),
                }
            })
            .await?;
            let result = value
                .map_err(|e| DeadLetterReason {
                    reason: e.reason(),
                    detail: e.to_string(),
                })
                .and_then(|v| {
                    RawEnvelope::from_avro(v).map_err(|e| DeadLetterReason {
                        reason: "not_an_envelope",
                        detail: e.to_string(),
                    })
                });
            decoded.push(Decoded { msg, result });
        }

        // 2. Skip deliveries already committed (Redis is only a filter: on error, go on).
        let keys: Vec<Option<String>> = decoded
            .iter()
            .map(|d| d.result.as_ref().ok().map(Dedup::delivery_key))
            .collect();
        let span = stage_span(
            tracing::info_span!("seen_many"),
            decoded
                .iter()
                .filter_map(|d| d.result.as_ref().ok()?.header("traceparent")),
        );
        let seen = self.seen(&keys).instrument(span).await;

        // 3a. Which envelopes are repeats (already committed, or a second copy within
        // this batch): decided first so that no repeat is fetched.
        let mut in_batch = std::collections::HashSet::new();
        let mut skip = vec![false; decoded.len()];
        let mut hits = 0u64;
        for (i, d) in decoded.iter().enumerate() {
            if d.result.is_err() {
                continue;
            }
            let repeat = keys
                .get(i)
                .and_then(Option::as_ref)
                .is_some_and(|k| !in_batch.insert(k.clone()));
            if seen.get(i).copied().unwrap_or(false) || repeat {
                skip[i] = true;
                hits += 1;
            }
        }

        // 3b. Fetch the documents of Oura/WHOOP notifications, concurrently; whatever
        // cannot be fetched quickly comes back as a park decision, not a wait.
        let mut fetched = self.fetch_all(&decoded, &skip, &mut deadline).await?;

        // 3c. Normalize (pure) in offset order.
        let mut items: Vec<Item<'_>> = Vec::new();
        let mut letters = Vec::new();
        let mut parks: Vec<(&OwnedMessage, &RawEnvelope, Park)> = Vec::new();
        let mut parked_keys = Vec::new();
        for (i, d) in decoded.iter().enumerate() {
            let env = match &d.result {
                Ok(env) => env,
                Err(r) => {
                    letters.push(self.dead_letter(&d.msg, r.reason, r.detail.clone()));
                    continue;
                }
            };
            if skip[i] {
                continue;
            }
            let key = keys.get(i).cloned().flatten();
            if let Some(outcome) = fetched.remove(&i) {
                match outcome {
                    Outcome::Ready { normalized, note } => {
                        if let Some(park) = note {
                            parks.push((&d.msg, env, park));
                        }
                        items.push(Item {
                            msg: &d.msg,
                            env,
                            key,
                            normalized,
                        });
                    }
                    Outcome::Park(park) => {
                        parks.push((&d.msg, env, park));
                        parked_keys.extend(key);
                    }
                    Outcome::Reject { reason, detail } => {
                        tracing::warn!(message = "Notification cannot be fetched; dead-lettering.", reason, %detail, vendor = %env.vendor);
                        letters.push(self.dead_letter(&d.msg, reason, detail));
                    }
                }
                continue;
            }
            let span =
                tracing::info_span!("normalize", vendor = %env.vendor, event_id = %env.event_id);
            if let Some(tp) = env.header("traceparent") {
                bridge_core::telemetry::set_parent(&span, tp);
            }
            let _enter = span.enter();
            match normalize::normalize(env) {
                Ok(normalized) => items.push(Item {
                    msg: &d.msg,
                    env,
                    key,
                    normalized,
                }),
                Err(e) => {
                    tracing::warn!(message = "Raw record cannot be normalized; dead-lettering.", error = %e, vendor = %env.vendor);
                    letters.push(self.dead_letter(&d.msg, e.reason(), e.to_string()));
                }
            }
        }
        self.metrics.dedup_hits(hits);

        // 4. Upsert in one transaction, publishing the changelog before it commits. If
        // PostgreSQL refuses the batch for a reason retrying cannot fix, fall back to one
        // envelope at a time so only the offending envelope goes to the DLQ.
        let batch = Item::batch(&items);
        if !batch.is_empty() {
            let span = stage_span(
                tracing::info_span!("upsert", rows = batch.readings.len()),
                items.iter().filter_map(|i| i.env.header("traceparent")),
            );
            match self
                .write(&batch, &items, &mut deadline)
                .instrument(span)
                .await?
            {
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(message = "Batch refused by PostgreSQL; writing envelope by envelope.", %error);
                    let mut kept = Vec::with_capacity(items.len());
                    for item in items {
                        let one = std::slice::from_ref(&item);
                        match self.write(&Item::batch(one), one, &mut deadline).await? {
                            Ok(_) => kept.push(item),
                            Err(e) => letters.push(self.dead_letter(
                                item.msg,
                                "rejected_by_database",
                                e.to_string(),
                            )),
                        }
                    }
                    items = kept;
                }
            }
            let mut counts: HashMap<(&str, &'static str), u64> = HashMap::new();
            for item in &items {
                for r in &item.normalized.readings {
                    *counts
                        .entry((r.vendor.as_str(), r.metric.as_str()))
                        .or_default() += 1;
                }
                self.metrics
                    .tombstones(item.normalized.tombstones.len() as u64);
            }
            for ((vendor, metric), n) in counts {
                self.metrics.readings_written(vendor, metric, n);
            }
        }
        let mut processed_keys: Vec<String> = items.iter().filter_map(|i| i.key.clone()).collect();

        // 4b. Park what must wait, durably, before any offset is stored: a crash before
        // this point replays the notification, after it the retry task owns it.
        for (msg, env, park) in &parks {
            self.park(msg, env, park, &mut deadline, &mut letters)
                .await?;
        }
        processed_keys.extend(parked_keys);

        // 5. Publish dead letters; offsets wait for them (the changes are already out).
        if !letters.is_empty() {
            for l in &letters {
                self.metrics.dead_lettered(l.reason);
            }
            retry(&self.metrics, "dead_letter", &mut deadline, || async {
                match publish::dead_letters(&self.producer, &self.topics.dlq, &letters).await {
                    Ok(()) => Ok(Ok(())),
                    Err(e @ publish::DeadLetterError::Fatal { .. }) => Ok(Err(e)),
                    Err(e) => Err(Transient(e.to_string())),
                }
            })
            .await?
            .map_err(|e| BatchError::Fatal(e.to_string()))?;
        }

        // 6. Mark deliveries only now that PostgreSQL has them: a crash before this
        // line means a replay (idempotent upsert), never a loss.
        if let Some(dedup) = &self.dedup
            && !processed_keys.is_empty()
        {
            let span = stage_span(
                tracing::info_span!("mark_many", keys = processed_keys.len()),
                items
                    .iter()
                    .map(|i| i.env)
                    .chain(parks.iter().map(|(_, env, _)| *env))
                    .filter_map(|env| env.header("traceparent")),
            );
            if let Err(e) = dedup.mark_many(&processed_keys).instrument(span).await {
                self.metrics.dedup_error(&e);
            }
        }
        Ok(offsets)
    }

    /// Fetches every Oura/WHOOP notification of the batch (not the repeats), at most
    /// `FETCH_CONCURRENCY` at once. PostgreSQL failures are retried one by one with the
    /// batch's backoff; vendor problems are already outcomes.
    async fn fetch_all(
        &self,
        decoded: &[Decoded],
        skip: &[bool],
        deadline: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Result<HashMap<usize, Outcome>, BatchError> {
        let Some(fetch) = &self.fetch else {
            return Ok(HashMap::new());
        };
        let jobs: Vec<(usize, Vendor, &RawEnvelope)> = decoded
            .iter()
            .enumerate()
            .filter(|(i, _)| !skip.get(*i).copied().unwrap_or(false))
            .filter_map(|(i, d)| {
                let env = d.result.as_ref().ok()?;
                Some((i, fetch.fetcher.vendor_of(&env.vendor)?, env))
            })
            .collect();
        if jobs.is_empty() {
            return Ok(HashMap::new());
        }
        let run = futures::stream::iter(jobs.iter().map(|&(i, vendor, env)| {
            let span = tracing::info_span!("fetch", vendor = %env.vendor, event_id = %env.event_id);
            if let Some(tp) = env.header("traceparent") {
                bridge_core::telemetry::set_parent(&span, tp);
            }
            async move { (i, fetch.fetcher.handle(vendor, &env.body).await) }.instrument(span)
        }))
        .buffer_unordered(fetch.concurrency.max(1))
        .collect::<Vec<_>>();
        let results = tokio::select! {
            r = run => r,
            _ = deadline.as_mut() => return Err(BatchError::Aborted("fetch")),
        };
        let mut out = HashMap::with_capacity(results.len());
        for (i, result) in results {
            let outcome = match result {
                Ok(o) => o,
                Err(first) => {
                    self.metrics.retry("fetch", &first);
                    let Some(&(_, vendor, env)) = jobs.iter().find(|j| j.0 == i) else {
                        continue;
                    };
                    retry(&self.metrics, "fetch", deadline, || async {
                        fetch
                            .fetcher
                            .handle(vendor, &env.body)
                            .await
                            .map_err(|e| Transient(e.to_string()))
                    })
                    .await?
                }
            };
            out.insert(i, outcome);
        }
        Ok(out)
    }

    /// Makes a park decision durable (retrying PostgreSQL outages). A row PostgreSQL
    /// refuses for its content is dead-lettered instead, so nothing is lost either way.
    async fn park(
        &self,
        msg: &OwnedMessage,
        env: &RawEnvelope,
        park: &Park,
        deadline: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
        letters: &mut Vec<DeadLetter>,
    ) -> Result<(), BatchError> {
        let Some(fetch) = &self.fetch else {
            return Ok(());
        };
        let origin = Origin {
            event_id: &env.event_id,
            vendor: &env.vendor,
            body: &env.body,
            headers: &env.headers,
            received_at: DateTime::<Utc>::from_timestamp_micros(env.received_at_micros)
                .unwrap_or_default(),
            partition: msg.partition(),
            offset: msg.offset(),
        };
        let delay = fetch.backoff.delay(park, 0);
        let outcome = retry(&self.metrics, "park", deadline, || async {
            match fetch.parked.park(&origin, park, delay).await {
                Ok(()) => Ok(Ok(())),
                Err(sqlx::Error::Database(e))
                    if e.code()
                        .is_some_and(|c| c.starts_with("22") || c.starts_with("23")) =>
                {
                    Ok(Err(e.to_string()))
                }
                Err(e) => Err(Transient(e.to_string())),
            }
        })
        .await?;
        match outcome {
            Ok(()) => {
                self.metrics.parked(&env.vendor, park.reason.as_str());
                tracing::info!(message = "Notification parked.", vendor = %env.vendor, event_id = %env.event_id, reason = park.reason.as_str(), detail = %park.detail);
            }
            Err(detail) => letters.push(self.dead_letter(msg, "park_refused", detail)),
        }
        Ok(())
    }

    /// Writes with retries on transient errors, publishing the changes (`items[i]` is
    /// envelope `i` of `batch`) before the commit; `Ok(Err(_))` is a permanent refusal.
    async fn write(
        &self,
        batch: &Batch,
        items: &[Item<'_>],
        deadline: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Result<Result<Written, crate::sink::SinkError>, BatchError> {
        retry(&self.metrics, "upsert", deadline, || async {
            let publish = |written: &Written| {
                let changes: Vec<_> = with_provenance(written.changes.clone(), items).collect();
                let span = stage_span(
                    tracing::info_span!("publish", records = changes.len()),
                    changes
                        .iter()
                        .filter_map(|(_, p)| p.as_ref()?.traceparent.as_deref()),
                );
                async move {
                    self.changelog
                        .publish(&changes)
                        .await
                        .map_err(|e| e.to_string())
                }
                .instrument(span)
            };
            match self.sink.write_then(batch, publish).await {
                Ok(written) => Ok(Ok(written)),
                Err(e) if e.is_bad_data() => Ok(Err(e)),
                Err(e) if e.is_transient() => Err(Transient(e.to_string())),
                // A deployment fault (permissions, missing table, bad migration): good
                // data must not be dead-lettered for it. Hold the batch, retry, and say
                // loudly that an operator has to act.
                Err(e) => {
                    tracing::error!(message = "PostgreSQL refused the batch for a reason that is not the data; holding it until fixed.", error = %e);
                    Err(Transient(e.to_string()))
                }
            }
        })
        .await
    }

    async fn seen(&self, keys: &[Option<String>]) -> Vec<bool> {
        let Some(dedup) = &self.dedup else {
            return vec![false; keys.len()];
        };
        let present: Vec<(usize, String)> = keys
            .iter()
            .enumerate()
            .filter_map(|(i, k)| k.clone().map(|k| (i, k)))
            .collect();
        if present.is_empty() {
            return vec![false; keys.len()];
        }
        let query: Vec<String> = present.iter().map(|(_, k)| k.clone()).collect();
        match dedup.seen_many(&query).await {
            Ok(flags) => {
                let mut out = vec![false; keys.len()];
                for ((i, _), f) in present.iter().zip(flags) {
                    out[*i] = f;
                }
                out
            }
            Err(e) => {
                self.metrics.dedup_error(&e);
                vec![false; keys.len()]
            }
        }
    }

    fn dead_letter(&self, msg: &OwnedMessage, reason: &'static str, detail: String) -> DeadLetter {
        let headers = msg
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        DeadLetter {
            key: msg.key().map(<[u8]>::to_vec),
            payload: msg.payload().map(<[u8]>::to_vec),
            headers,
            reason,
            detail,
            topic: msg.topic().to_string(),
            partition: msg.partition(),
            offset: msg.offset(),
        }
    }

    fn store_offsets(&self, offsets: &HashMap<i32, i64>) {
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

/// `span` with a link to each trace context in `traceparents` (capped: see
/// `bridge_core::telemetry::MAX_LINKS_PER_SPAN`).
fn stage_span<'a>(
    span: tracing::Span,
    traceparents: impl IntoIterator<Item = &'a str>,
) -> tracing::Span {
    bridge_core::telemetry::link_all(&span, traceparents);
    span
}

/// The `traceparent` Kafka header the edge put on a raw record.
fn kafka_traceparent(m: &OwnedMessage) -> Option<&str> {
    m.headers()?
        .iter()
        .find(|h| h.key == "traceparent")
        .and_then(|h| std::str::from_utf8(h.value?).ok())
}

/// A failure worth retrying.
struct Transient(String);

impl std::fmt::Display for Transient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Retries `op` with exponential backoff (100 ms .. 5 s) until it succeeds, or until
/// `deadline` (shutdown + drain bound) fires.
async fn retry<T, F, Fut>(
    metrics: &Metrics,
    stage: &'static str,
    deadline: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    mut op: F,
) -> Result<T, BatchError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Transient>>,
{
    let mut delay = Duration::from_millis(100);
    loop {
        tokio::select! {
            biased;
            r = op() => match r {
                Ok(v) => return Ok(v),
                Err(e) => metrics.retry(stage, &e),
            },
            _ = deadline.as_mut() => return Err(BatchError::Aborted(stage)),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {},
            _ = deadline.as_mut() => return Err(BatchError::Aborted(stage)),
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
