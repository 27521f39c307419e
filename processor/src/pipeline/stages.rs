//! The stages, each a small function over the batch's records.

use std::collections::{HashMap, HashSet};

use bridge_core::{RawEnvelope, SchemaRegistry};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use rdkafka::message::{Message, OwnedMessage};
use tracing::Instrument;

use super::BatchError;
use super::deps::{DeadLetterQueue, Decode, Dedup, Dlq, Publish, Sink};
use super::record::{Record, State};
use super::retry::{Deadline, retry};
use crate::error::{DlqReason, ParkError};
use crate::fetch::parking::Origin;
use crate::fetch::{Fetch, Outcome};
use crate::metrics::Metrics;
use crate::model::Change;
use crate::normalize;
use crate::publish::{Changelog, DeadLetter, Provenance};
use crate::sink::{Batch, PgSink, WriteStats, Written};
use vendors::Vendor;

/// The next offset to store, per raw partition.
pub type Offsets = HashMap<i32, i64>;

/// What the stages run against: the real clients in service, in-memory doubles in the
/// stage tests. The fetch engine has no double (it is PostgreSQL and vendor HTTP; the
/// integration tests cover it), so the tests run without it.
pub struct Stages<
    'a,
    D = SchemaRegistry,
    F = crate::dedup::Dedup,
    S = PgSink,
    P = Changelog,
    Q = Dlq<'a>,
> {
    /// Raw bytes to envelopes.
    pub decoder: &'a D,
    /// The Redis filter; `None` runs on PostgreSQL keys alone.
    pub dedup: Option<&'a F>,
    /// PostgreSQL.
    pub sink: &'a S,
    /// The readings changelog.
    pub changelog: &'a P,
    /// The dead-letter topic.
    pub dlq: Q,
    /// Oura/WHOOP fetching and parking; `None` dead-letters their envelopes as
    /// `notification_only`.
    pub fetch: Option<&'a Fetch>,
    /// Telemetry.
    pub metrics: &'a Metrics,
}

impl<D: Decode, F: Dedup, S: Sink, P: Publish, Q: DeadLetterQueue> Stages<'_, D, F, S, P, Q> {
    /// Processes one batch; returns the next offset to store per partition. Nothing is
    /// returned unless every record is committed, parked or dead-lettered.
    pub async fn process(
        &self,
        batch: Vec<OwnedMessage>,
        deadline: &Deadline,
    ) -> Result<Offsets, BatchError> {
        let offsets = next_offsets(&batch);
        let mut records = self.decode(batch, deadline).await?;
        self.dedup(&mut records).await;
        self.resolve(&mut records, deadline).await?;
        normalize_all(&mut records);
        write(
            self.sink,
            self.changelog,
            self.metrics,
            &mut records,
            deadline,
        )
        .await?;
        self.park(&mut records, deadline).await?;
        self.dead_letter(&records, deadline).await?;
        // Only now that PostgreSQL has them: a crash before this line means a replay
        // (idempotent upsert), never a loss.
        self.mark(&records).await;
        Ok(offsets)
    }

    /// Registry outages (an unknown schema id included) retry; only bytes that fail
    /// against a schema the registry serves are refused.
    async fn decode(
        &self,
        batch: Vec<OwnedMessage>,
        deadline: &Deadline,
    ) -> Result<Vec<Record>, BatchError> {
        let mut records = Vec::with_capacity(batch.len());
        for raw in batch {
            let decoded = {
                let payload = raw.payload().unwrap_or_default();
                retry(self.metrics, "decode", deadline, || {
                    self.decoder.decode(payload)
                })
                .await?
            };
            let (state, key) = match decoded {
                Ok(env) => {
                    let key = crate::dedup::Dedup::delivery_key(&env);
                    (State::Envelope(env), Some(key))
                }
                Err((reason, e)) => (refused(reason, &e), None),
            };
            let mut record = Record::consumed(raw, state);
            record.key = key;
            records.push(record);
        }
        Ok(records)
    }

    /// Skips deliveries already committed and second copies within the batch, before
    /// anything is fetched. Redis is only a filter: on error, go on without it.
    async fn dedup(&self, records: &mut [Record]) {
        let seen = self.seen(records).await;
        let mut in_batch = HashSet::new();
        let mut hits = 0u64;
        for (r, seen) in records.iter_mut().zip(seen) {
            let Some(key) = r
                .key
                .as_ref()
                .filter(|_| matches!(r.state, State::Envelope(_)))
            else {
                continue;
            };
            let repeat = !in_batch.insert(key.clone());
            if seen || repeat {
                r.state = State::Repeat;
                hits += 1;
            }
        }
        self.metrics.dedup_hits(hits);
    }

    /// For each record, whether Redis has its delivery key.
    async fn seen(&self, records: &[Record]) -> Vec<bool> {
        let mut out = vec![false; records.len()];
        let Some(dedup) = self.dedup else {
            return out;
        };
        let (at, keys): (Vec<usize>, Vec<String>) = records
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((i, r.key.clone()?)))
            .unzip();
        if keys.is_empty() {
            return out;
        }
        let span = linked(
            tracing::info_span!("seen_many"),
            records.iter().filter_map(Record::traceparent),
        );
        match dedup.seen_many(&keys).instrument(span).await {
            Ok(flags) => at.into_iter().zip(flags).for_each(|(i, f)| out[i] = f),
            Err(e) => self.metrics.dedup_error(&e),
        }
        out
    }

    /// Fetches the documents of Oura/WHOOP notifications, concurrently; whatever cannot
    /// be fetched quickly comes back as a park decision, not a wait.
    async fn resolve(&self, records: &mut [Record], deadline: &Deadline) -> Result<(), BatchError> {
        let Some(fetch) = self.fetch else {
            return Ok(());
        };
        for (i, outcome) in fetch_all(fetch, self.metrics, records, deadline).await? {
            let r = &mut records[i];
            let Some(env) = r.take_envelope() else {
                continue;
            };
            r.state = match outcome {
                Outcome::Ready { normalized, note } => State::Ready {
                    env,
                    normalized,
                    note,
                },
                Outcome::Park(park) => State::Parked { env, park },
                Outcome::Reject { reason, detail } => {
                    tracing::warn!(message = "Notification cannot be fetched; dead-lettering.", reason, %detail, vendor = %env.vendor);
                    State::Refused {
                        reason: fetch_reason(reason),
                        detail,
                    }
                }
            };
        }
        Ok(())
    }

    /// Makes park decisions durable before any offset is stored: a crash before this
    /// point replays the notification, after it the retry task owns it. A row
    /// PostgreSQL refuses for its content is dead-lettered instead.
    async fn park(&self, records: &mut [Record], deadline: &Deadline) -> Result<(), BatchError> {
        let Some(fetch) = self.fetch else {
            return Ok(());
        };
        for r in records.iter_mut() {
            if let Some((reason, detail)) = park_one(fetch, self.metrics, r, deadline).await? {
                r.refuse(reason, detail);
            }
        }
        Ok(())
    }

    /// Publishes the refused records' dead letters; the offsets wait for them.
    async fn dead_letter(&self, records: &[Record], deadline: &Deadline) -> Result<(), BatchError> {
        let letters: Vec<DeadLetter> = records.iter().filter_map(Record::dead_letter).collect();
        if letters.is_empty() {
            return Ok(());
        }
        for r in records {
            if let State::Refused { reason, .. } = r.state {
                self.metrics.dead_lettered(reason);
            }
        }
        let sent = retry(self.metrics, "dead_letter", deadline, || {
            self.dlq.publish_dead_letters(&letters)
        })
        .await?;
        // Every DLQ error is classified retry or fatal; none is a dead letter itself.
        sent.map_err(|(_, e)| BatchError::Fatal(e.to_string()))
    }

    /// Marks the deliveries now committed (written or parked) in Redis.
    async fn mark(&self, records: &[Record]) {
        let Some(dedup) = self.dedup else {
            return;
        };
        let done = || {
            records
                .iter()
                .filter(|r| matches!(r.state, State::Written { .. } | State::Parked { .. }))
        };
        let keys: Vec<String> = done().filter_map(|r| r.key.clone()).collect();
        if keys.is_empty() {
            return;
        }
        let span = linked(
            tracing::info_span!("mark_many", keys = keys.len()),
            done().filter_map(Record::traceparent),
        );
        if let Err(e) = dedup.mark_many(&keys).instrument(span).await {
            self.metrics.dedup_error(&e);
        }
    }
}

/// The next offset per partition: one past the highest offset of the batch.
fn next_offsets(batch: &[OwnedMessage]) -> Offsets {
    let mut offsets = Offsets::new();
    for m in batch {
        let next = offsets.entry(m.partition()).or_insert(m.offset() + 1);
        *next = (*next).max(m.offset() + 1);
    }
    offsets
}

fn refused(reason: DlqReason, error: &dyn std::fmt::Display) -> State {
    State::Refused {
        reason,
        detail: error.to_string(),
    }
}

/// The fetch engine reports rejections by the label of the normalizer error it hit.
fn fetch_reason(label: &'static str) -> DlqReason {
    DlqReason::from_label(label).unwrap_or_else(|| {
        tracing::error!(
            message = "Fetch rejection with a reason label the DLQ does not know; filed as unsupported_shape.",
            label
        );
        DlqReason::UnsupportedShape
    })
}

/// Fetches every notification of the batch still undecided, at most
/// `fetch.concurrency` at once. PostgreSQL failures are retried one by one with the
/// batch's backoff; vendor problems are already outcomes.
async fn fetch_all(
    fetch: &Fetch,
    metrics: &Metrics,
    records: &[Record],
    deadline: &Deadline,
) -> Result<Vec<(usize, Outcome)>, BatchError> {
    let jobs: Vec<(usize, Vendor, &RawEnvelope)> = records
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match &r.state {
            State::Envelope(env) => Some((i, fetch.fetcher.vendor_of(&env.vendor)?, env)),
            _ => None,
        })
        .collect();
    let run = futures::stream::iter(jobs.iter().enumerate().map(|(j, &(_, vendor, env))| {
        let span = tracing::info_span!("fetch", vendor = %env.vendor, event_id = %env.event_id);
        if let Some(tp) = env.header("traceparent") {
            bridge_core::telemetry::set_parent(&span, tp);
        }
        async move { (j, fetch.fetcher.handle(vendor, &env.body).await) }.instrument(span)
    }))
    .buffer_unordered(fetch.concurrency.max(1))
    .collect::<Vec<_>>();
    let results = tokio::select! {
        r = run => r,
        _ = deadline.passed() => return Err(BatchError::Aborted("fetch")),
    };
    let mut out = Vec::with_capacity(results.len());
    for (j, result) in results {
        let (i, vendor, env) = jobs[j];
        let outcome = match result {
            Ok(o) => o,
            Err(first) => {
                metrics.retry("fetch", &first);
                let again = retry(metrics, "fetch", deadline, || {
                    fetch.fetcher.handle(vendor, &env.body)
                });
                match again.await? {
                    Ok(o) => o,
                    Err((reason, e)) => Outcome::Reject {
                        reason: reason.as_str(),
                        detail: e.to_string(),
                    },
                }
            }
        };
        out.push((i, outcome));
    }
    Ok(out)
}

/// Parks one record if it has a park decision; returns why PostgreSQL refused it.
async fn park_one(
    fetch: &Fetch,
    metrics: &Metrics,
    r: &Record,
    deadline: &Deadline,
) -> Result<Option<(DlqReason, String)>, BatchError> {
    let (env, park) = match &r.state {
        State::Parked { env, park }
        | State::Written {
            env,
            note: Some(park),
        } => (env, park),
        _ => return Ok(None),
    };
    let origin = Origin {
        event_id: &env.event_id,
        vendor: &env.vendor,
        body: &env.body,
        headers: &env.headers,
        received_at: Record::received_at(env),
        partition: r.partition,
        offset: r.offset,
    };
    let delay = fetch.backoff.delay(park, 0);
    let parked = retry(metrics, "park", deadline, || async {
        fetch
            .parked
            .park(&origin, park, delay)
            .await
            .map_err(ParkError::from)
    })
    .await?;
    match parked {
        Ok(()) => {
            metrics.parked(&env.vendor, park.reason.as_str());
            tracing::info!(message = "Notification parked.", vendor = %env.vendor, event_id = %env.event_id, reason = park.reason.as_str(), detail = %park.detail);
            Ok(None)
        }
        Err((reason, e)) => Ok(Some((reason, e.to_string()))),
    }
}

/// Normalizes (pure) what nothing else resolved, in offset order.
fn normalize_all(records: &mut [Record]) {
    for r in records.iter_mut() {
        let Some(env) = r.take_envelope() else {
            continue;
        };
        let span = tracing::info_span!("normalize", vendor = %env.vendor, event_id = %env.event_id);
        if let Some(tp) = env.header("traceparent") {
            bridge_core::telemetry::set_parent(&span, tp);
        }
        let _enter = span.enter();
        r.state = match normalize::normalize(&env) {
            Ok(normalized) => State::Ready {
                env,
                normalized,
                note: None,
            },
            Err(e) => {
                tracing::warn!(message = "Raw record cannot be normalized; dead-lettering.", error = %e, vendor = %env.vendor);
                refused((&e).into(), &e)
            }
        };
    }
}

/// Writes every [`State::Ready`] record in one transaction, publishing its changes to
/// the changelog before the commit, and moves it to [`State::Written`]. If PostgreSQL
/// refuses the batch for its data, falls back to one record at a time so only the
/// offending records are refused. Shared with the parked-notification retry task.
pub async fn write<S: Sink, P: Publish>(
    sink: &S,
    changelog: &P,
    metrics: &Metrics,
    records: &mut [Record],
    deadline: &Deadline,
) -> Result<(), BatchError> {
    let ready: Vec<usize> = (0..records.len())
        .filter(|&i| matches!(records[i].state, State::Ready { .. }))
        .collect();
    if ready.is_empty() {
        return Ok(());
    }
    let span = linked(
        tracing::info_span!("upsert", rows = ready_rows(records, &ready)),
        ready.iter().filter_map(|&i| records[i].traceparent()),
    );
    let refusal = write_group(sink, changelog, metrics, records, &ready, deadline)
        .instrument(span)
        .await?;
    let Some(error) = refusal else {
        return Ok(());
    };
    if let [only] = ready[..] {
        records[only].refuse(error.0, error.1);
        return Ok(());
    }
    tracing::warn!(message = "Batch refused by PostgreSQL; writing envelope by envelope.", error = %error.1);
    for i in ready {
        if let Some((reason, detail)) =
            write_group(sink, changelog, metrics, records, &[i], deadline).await?
        {
            records[i].refuse(reason, detail);
        }
    }
    Ok(())
}

fn ready_rows(records: &[Record], ready: &[usize]) -> usize {
    ready
        .iter()
        .map(|&i| match &records[i].state {
            State::Ready { normalized, .. } => normalized.readings.len(),
            _ => 0,
        })
        .sum()
}

/// Writes the `group` of ready records as one batch; `Some` is PostgreSQL's refusal.
async fn write_group<S: Sink, P: Publish>(
    sink: &S,
    changelog: &P,
    metrics: &Metrics,
    records: &mut [Record],
    group: &[usize],
    deadline: &Deadline,
) -> Result<Option<(DlqReason, String)>, BatchError> {
    let mut batch = Batch::default();
    // `provenance[e]` is where envelope `e` of `batch` came from.
    let mut provenance = Vec::with_capacity(group.len());
    for &i in group {
        if let State::Ready {
            env, normalized, ..
        } = &records[i].state
        {
            batch.push(&env.event_id, Record::received_at(env), normalized.clone());
            provenance.push(records[i].provenance());
        }
    }
    let written = retry(metrics, "upsert", deadline, || {
        let provenance = &provenance;
        sink.write_then(
            &batch,
            Box::new(move |w: &Written| publish(changelog, w, provenance)),
        )
    })
    .await?;
    match written {
        Ok(written) => {
            written_event(&written.stats);
            count_written(metrics, records, group);
            for &i in group {
                mark_written(&mut records[i]);
            }
            Ok(None)
        }
        Err((reason, e)) => Ok(Some((reason, e.to_string()))),
    }
}

/// Publishes the changelog records of one write, each upsert with the provenance of its
/// envelope.
fn publish<'a, P: Publish>(
    changelog: &'a P,
    written: &Written,
    provenance: &[Option<Provenance>],
) -> BoxFuture<'a, Result<(), String>> {
    let changes: Vec<(Change, Option<Provenance>)> = written
        .changes
        .iter()
        .map(|change| {
            let p = match change {
                Change::Upsert { envelope, .. } => provenance.get(*envelope).cloned().flatten(),
                Change::Delete(_) => None,
            };
            (change.clone(), p)
        })
        .collect();
    let span = linked(
        tracing::info_span!("publish", records = changes.len()),
        changes
            .iter()
            .filter_map(|(_, p)| p.as_ref()?.traceparent.as_deref()),
    );
    async move {
        changelog
            .publish_changes(&changes)
            .await
            .map_err(|e| e.to_string())
    }
    .instrument(span)
    .boxed()
}

/// What the sink measured, at the stage boundary (the counters the sink keeps itself,
/// implausible values, are already metrics).
fn written_event(stats: &WriteStats) {
    tracing::debug!(
        message = "Batch written.",
        upserted = stats.upserted,
        unchanged = stats.unchanged,
        collapsed = stats.collapsed,
        deleted = stats.deleted,
        replaced = stats.replaced,
        implausible = stats.implausible,
        rejected = stats.rejected,
        account_events = stats.account_events,
    );
}

/// Counts the readings and tombstones of the written `group`, one metric call per
/// (vendor, metric) rather than per reading.
fn count_written(metrics: &Metrics, records: &[Record], group: &[usize]) {
    let mut counts: HashMap<(&str, &'static str), u64> = HashMap::new();
    for &i in group {
        if let State::Ready {
            env, normalized, ..
        } = &records[i].state
        {
            for name in &normalized.unmapped {
                metrics.unmapped(&env.vendor, name);
            }
            for r in &normalized.readings {
                *counts
                    .entry((r.vendor.as_str(), r.metric.as_str()))
                    .or_default() += 1;
            }
            metrics.tombstones(normalized.tombstones.len() as u64);
        }
    }
    for ((vendor, metric), n) in counts {
        metrics.readings_written(vendor, metric, n);
    }
}

fn mark_written(r: &mut Record) {
    r.state = match std::mem::replace(&mut r.state, State::Repeat) {
        State::Ready { env, note, .. } => State::Written { env, note },
        other => other,
    };
}

/// `span` with a link to each trace context in `traceparents` (capped: see
/// `bridge_core::telemetry::MAX_LINKS_PER_SPAN`).
fn linked<'a>(
    span: tracing::Span,
    traceparents: impl IntoIterator<Item = &'a str>,
) -> tracing::Span {
    bridge_core::telemetry::link_all(&span, traceparents);
    span
}
