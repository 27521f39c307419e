//! Stage tests over in-memory doubles of the registry, Redis, PostgreSQL and Kafka. The
//! doubles keep the contracts the stages rely on (the sink commits only when
//! `before_commit` succeeded, upserts are idempotent, a refused batch changes nothing);
//! the integration tests in `tests/` run the same paths on the real stack.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bridge_core::envelope::ShapeError;
use bridge_core::{DecodeError, RawEnvelope};
use rdkafka::Timestamp;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::Notify;

use super::deps::{BeforeCommit, DeadLetterQueue, Decode, DecodeFailure, Dedup, Publish, Sink};
use super::stages::{Offsets, Stages};
use super::{BatchError, Deadline, Record, State, write};
use crate::dedup::DedupError;
use crate::error::{Classify, Disposition, DlqReason};
use crate::metrics::Metrics;
use crate::model::{Change, ReadingKey};
use crate::publish::{DeadLetter, DeadLetterError, Provenance, PublishError};
use crate::sink::{Batch, WriteStats, Written};

const RAW: &str = "raw-test";
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
/// The sink double refuses readings of this user, like a CHECK constraint would.
const REFUSED_USER: &str = "refused-user";

// ---- doubles -------------------------------------------------------------------------

/// Payloads are JSON `{"id", "vendor", "principal", "body"}`; anything else is poison,
/// and `{"not": "an envelope"}` decodes but is no envelope.
#[derive(Default)]
struct MemRegistry {
    outages: AtomicUsize,
}

impl Decode for MemRegistry {
    async fn decode<'a>(&'a self, bytes: &'a [u8]) -> Result<RawEnvelope, DecodeFailure> {
        if take(&self.outages) {
            return Err(DecodeError::Transient("registry down".into()).into());
        }
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| DecodeError::Poison(e.to_string()))?;
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        let (Some(id), Some(vendor), Some(body)) = (field("id"), field("vendor"), field("body"))
        else {
            return Err(ShapeError("missing fields".into()).into());
        };
        Ok(RawEnvelope {
            event_id: id,
            vendor,
            received_at_micros: 1_700_000_000_000_000,
            headers: HashMap::from([("traceparent".to_string(), TRACEPARENT.to_string())]),
            query: None,
            principal: field("principal"),
            content_type: Some("application/json".into()),
            body: body.into_bytes(),
            edge_instance: "edge-test".into(),
        })
    }
}

#[derive(Default)]
struct MemRedis {
    keys: Mutex<HashSet<String>>,
    down: AtomicBool,
}

impl Dedup for MemRedis {
    async fn seen_many<'a>(&'a self, keys: &'a [String]) -> Result<Vec<bool>, DedupError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(DedupError::Timeout(Duration::from_millis(200)));
        }
        let stored = self.keys.lock().unwrap();
        Ok(keys.iter().map(|k| stored.contains(k)).collect())
    }

    async fn mark_many<'a>(&'a self, keys: &'a [String]) -> Result<(), DedupError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(DedupError::Timeout(Duration::from_millis(200)));
        }
        self.keys.lock().unwrap().extend(keys.iter().cloned());
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
enum MemSinkError {
    #[error("database unavailable")]
    Outage,
    #[error("check constraint violated (23514)")]
    BadData,
    #[error("rolled back: {0}")]
    BeforeCommit(String),
}

impl Classify for MemSinkError {
    fn disposition(&self) -> Disposition {
        match self {
            MemSinkError::BadData => Disposition::DeadLetter(DlqReason::RejectedByDatabase),
            MemSinkError::Outage | MemSinkError::BeforeCommit(_) => Disposition::Retry,
        }
    }
}

/// A readings table keyed by identity; one transaction per write.
#[derive(Default)]
struct MemPostgres {
    table: Mutex<HashMap<ReadingKey, f64>>,
    outages: AtomicUsize,
    down: AtomicBool,
    commits: AtomicUsize,
}

impl Sink for MemPostgres {
    type Error = MemSinkError;

    async fn write_then<'a>(
        &'a self,
        batch: &'a Batch,
        before_commit: BeforeCommit<'a>,
    ) -> Result<Written, MemSinkError> {
        if self.down.load(Ordering::SeqCst) || take(&self.outages) {
            return Err(MemSinkError::Outage);
        }
        if batch.readings.iter().any(|r| r.user_id == REFUSED_USER) {
            return Err(MemSinkError::BadData);
        }
        let changes: Vec<Change> = {
            let table = self.table.lock().unwrap();
            batch
                .readings
                .iter()
                .enumerate()
                .filter(|(_, r)| table.get(&r.key()) != Some(&r.value))
                .map(|(i, r)| Change::Upsert {
                    reading: r.clone(),
                    envelope: batch.envelope_of(i),
                })
                .collect()
        };
        let written = Written {
            stats: WriteStats {
                upserted: changes.len() as u64,
                unchanged: batch.readings.len() as u64 - changes.len() as u64,
                ..WriteStats::default()
            },
            changes,
        };
        // The rows stay uncommitted until the changes are acknowledged.
        before_commit(&written)
            .await
            .map_err(MemSinkError::BeforeCommit)?;
        let mut table = self.table.lock().unwrap();
        for r in &batch.readings {
            table.insert(r.key(), r.value);
        }
        self.commits.fetch_add(1, Ordering::SeqCst);
        Ok(written)
    }
}

/// A Kafka topic: what was acknowledged, with failures and a crash point to inject.
struct MemTopic<T> {
    acked: Mutex<Vec<T>>,
    outages: AtomicUsize,
    fatal: AtomicBool,
    /// Notified, then never answers: the process dies with the send in flight.
    crash: Option<Notify>,
}

impl<T> Default for MemTopic<T> {
    fn default() -> Self {
        MemTopic {
            acked: Mutex::new(Vec::new()),
            outages: AtomicUsize::new(0),
            fatal: AtomicBool::new(false),
            crash: None,
        }
    }
}

impl<T> MemTopic<T> {
    fn crashing() -> Self {
        MemTopic {
            crash: Some(Notify::new()),
            ..MemTopic::default()
        }
    }

    fn len(&self) -> usize {
        self.acked.lock().unwrap().len()
    }
}

impl Publish for MemTopic<(Change, Option<Provenance>)> {
    async fn publish_changes<'a>(
        &'a self,
        changes: &'a [(Change, Option<Provenance>)],
    ) -> Result<(), PublishError> {
        if let Some(crash) = &self.crash {
            crash.notify_one();
            std::future::pending::<()>().await;
        }
        if take(&self.outages) {
            return Err(PublishError::Topic("readings".into(), "broker down".into()));
        }
        self.acked.lock().unwrap().extend(changes.iter().cloned());
        Ok(())
    }
}

impl DeadLetterQueue for &MemTopic<DeadLetter> {
    async fn publish_dead_letters<'a>(
        &'a self,
        letters: &'a [DeadLetter],
    ) -> Result<(), DeadLetterError> {
        if let Some(crash) = &self.crash {
            crash.notify_one();
            std::future::pending::<()>().await;
        }
        let error = KafkaError::MessageProduction(RDKafkaErrorCode::UnknownTopicOrPartition);
        if self.fatal.load(Ordering::SeqCst) {
            return Err(DeadLetterError::Fatal {
                topic: "dlq".into(),
                error,
            });
        }
        if take(&self.outages) {
            return Err(DeadLetterError::Transient(KafkaError::MessageProduction(
                RDKafkaErrorCode::QueueFull,
            )));
        }
        self.acked.lock().unwrap().extend(letters.iter().cloned());
        Ok(())
    }
}

/// Decrements a failure budget; true while it lasts.
fn take(budget: &AtomicUsize) -> bool {
    budget
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

#[derive(Default)]
struct World {
    registry: MemRegistry,
    redis: MemRedis,
    postgres: MemPostgres,
    changelog: MemTopic<(Change, Option<Provenance>)>,
    dlq: MemTopic<DeadLetter>,
    metrics: Metrics,
}

type MemStages<'a> = Stages<
    'a,
    MemRegistry,
    MemRedis,
    MemPostgres,
    MemTopic<(Change, Option<Provenance>)>,
    &'a MemTopic<DeadLetter>,
>;

impl World {
    fn stages(&self) -> MemStages<'_> {
        Stages {
            decoder: &self.registry,
            dedup: Some(&self.redis),
            sink: &self.postgres,
            changelog: &self.changelog,
            dlq: &self.dlq,
            fetch: None,
            metrics: &self.metrics,
        }
    }

    async fn process(&self, batch: Vec<OwnedMessage>) -> Result<Offsets, BatchError> {
        let deadline = Deadline::after(Duration::from_secs(60));
        self.stages().process(batch, &deadline).await
    }

    /// Runs the batch until it finishes or the process "crashes" at `crash_point`.
    async fn process_until(
        &self,
        batch: Vec<OwnedMessage>,
        crash_point: &Notify,
    ) -> Option<Result<Offsets, BatchError>> {
        tokio::select! {
            r = self.process(batch) => Some(r),
            _ = crash_point.notified() => None,
        }
    }

    fn table(&self) -> HashMap<ReadingKey, f64> {
        self.postgres.table.lock().unwrap().clone()
    }

    fn metric(&self, sample: &str) -> bool {
        self.metrics.encode().lines().any(|l| l == sample)
    }
}

// ---- records -------------------------------------------------------------------------

/// A Health Auto Export body with one heart-rate sample.
fn heart_rate(bpm: f64, hour: u32) -> String {
    format!(
        r#"{{"data":{{"metrics":[{{"name":"heart_rate","units":"count/min","data":[{{"date":"2025-01-01 {hour:02}:00:00 -0500","qty":{bpm}}}]}}]}}}}"#
    )
}

fn payload(id: &str, vendor: &str, principal: &str, body: &str) -> Vec<u8> {
    serde_json::json!({"id": id, "vendor": vendor, "principal": principal, "body": body})
        .to_string()
        .into_bytes()
}

fn message(payload: Vec<u8>, partition: i32, offset: i64) -> OwnedMessage {
    let headers = OwnedHeaders::new().insert(Header {
        key: "traceparent",
        value: Some(TRACEPARENT),
    });
    OwnedMessage::new(
        Some(payload),
        Some(b"user-key".to_vec()),
        RAW.to_string(),
        Timestamp::CreateTime(1_700_000_000_000),
        partition,
        offset,
        Some(headers),
    )
}

fn reading(user: &str, hour: u32, offset: i64) -> OwnedMessage {
    let id = format!("evt-{user}-{hour}");
    message(
        payload(
            &id,
            "healthkit",
            user,
            &heart_rate(60.0 + f64::from(hour), hour),
        ),
        0,
        offset,
    )
}

fn batch() -> Vec<OwnedMessage> {
    vec![
        reading("u1", 1, 10),
        reading("u1", 2, 11),
        message(
            payload("evt-u2", "healthkit", "u2", &heart_rate(70.0, 3)),
            1,
            5,
        ),
    ]
}

// ---- tests ---------------------------------------------------------------------------

#[tokio::test]
async fn a_clean_batch_is_written_published_and_marked_before_its_offsets_return() {
    let w = World::default();
    let offsets = w.process(batch()).await.expect("batch succeeds");
    assert_eq!(offsets, Offsets::from([(0, 12), (1, 6)]));
    assert_eq!(w.table().len(), 3);
    let changes = w.changelog.acked.lock().unwrap().clone();
    assert_eq!(changes.len(), 3);
    let p = changes[2]
        .1
        .as_ref()
        .expect("an upsert carries its provenance");
    assert_eq!(
        (p.event_id.as_str(), p.partition, p.offset),
        ("evt-u2", 1, 5)
    );
    assert_eq!(p.traceparent.as_deref(), Some(TRACEPARENT));
    assert_eq!(w.redis.keys.lock().unwrap().len(), 3);
    assert_eq!(w.dlq.len(), 0);
    assert!(w.metric("processor_readings_total{vendor=\"healthkit\",metric=\"heart_rate\"} 3"));
}

#[tokio::test]
async fn bad_input_is_dead_lettered_with_its_original_bytes_and_the_offset_moves_on() {
    let w = World::default();
    let poison = message(b"\0\0\0\0\x01garbage".to_vec(), 0, 1);
    let cases = vec![
        poison.clone(),
        message(br#"{"not":"an envelope"}"#.to_vec(), 0, 2),
        message(payload("e3", "healthkit", "u1", "{"), 0, 3),
        message(payload("e4", "oura", "u1", "{}"), 0, 4),
        reading("u1", 5, 5),
    ];
    let offsets = w
        .process(cases)
        .await
        .expect("bad input does not stop the batch");
    assert_eq!(offsets, Offsets::from([(0, 6)]));
    let letters = w.dlq.acked.lock().unwrap().clone();
    let reasons: Vec<&str> = letters.iter().map(|l| l.reason).collect();
    assert_eq!(
        reasons,
        [
            "undecodable",
            "not_an_envelope",
            "invalid_json",
            "notification_only"
        ]
    );
    let first = &letters[0];
    assert_eq!(first.payload.as_deref(), Some(&b"\0\0\0\0\x01garbage"[..]));
    assert_eq!(first.key.as_deref(), Some(&b"user-key"[..]));
    assert_eq!(
        (first.topic.as_str(), first.partition, first.offset),
        (RAW, 0, 1)
    );
    assert!(first.headers.iter().any(|(k, _)| k == "traceparent"));
    assert_eq!(w.table().len(), 1, "the good record is still written");
    // Dead letters are not "done": a redrive must not be skipped by the filter.
    assert_eq!(w.redis.keys.lock().unwrap().len(), 1);
    assert!(w.metric("processor_dlq_total{reason=\"undecodable\"} 1"));
    assert!(w.metric("processor_dlq_total{reason=\"notification_only\"} 1"));
}

#[tokio::test]
async fn a_registry_outage_is_retried_never_dead_lettered() {
    let w = World::default();
    w.registry.outages.store(2, Ordering::SeqCst);
    w.process(batch())
        .await
        .expect("batch succeeds after the outage");
    assert_eq!(w.table().len(), 3);
    assert_eq!(w.dlq.len(), 0);
    assert!(w.metric("processor_retries_total{stage=\"decode\"} 2"));
}

#[tokio::test]
async fn repeats_are_skipped_and_a_redis_outage_only_costs_the_filter() {
    let w = World::default();
    w.process(vec![reading("u1", 1, 0)]).await.unwrap();
    let commits = w.postgres.commits.load(Ordering::SeqCst);
    // Already marked, plus a second copy of one delivery within the batch.
    let again = vec![
        reading("u1", 1, 1),
        reading("u1", 2, 2),
        reading("u1", 2, 3),
    ];
    let offsets = w.process(again).await.unwrap();
    assert_eq!(offsets, Offsets::from([(0, 4)]));
    assert_eq!(w.table().len(), 2);
    assert_eq!(w.changelog.len(), 2, "no repeat reached the changelog");
    assert_eq!(w.postgres.commits.load(Ordering::SeqCst), commits + 1);
    assert!(w.metric("processor_dedup_hits_total 2"));

    w.redis.down.store(true, Ordering::SeqCst);
    w.process(vec![reading("u1", 3, 4)]).await.unwrap();
    assert_eq!(w.table().len(), 3);
    assert!(
        w.metric("processor_dedup_errors_total 2"),
        "seen and mark both failed"
    );
}

#[tokio::test]
async fn a_refused_batch_falls_back_so_only_the_offending_envelope_is_dead_lettered() {
    let w = World::default();
    let mut records = batch();
    records.insert(1, reading(REFUSED_USER, 4, 20));
    w.process(records)
        .await
        .expect("refusals do not stop the batch");
    assert_eq!(w.table().len(), 3);
    let letters = w.dlq.acked.lock().unwrap().clone();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].reason, letters[0].offset),
        ("rejected_by_database", 20)
    );
    assert_eq!(
        w.changelog.len(),
        3,
        "the refused envelope published nothing"
    );
    assert_eq!(w.redis.keys.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn a_changelog_outage_rolls_the_write_back_and_retries_it() {
    let w = World::default();
    w.changelog.outages.store(2, Ordering::SeqCst);
    w.process(batch())
        .await
        .expect("batch succeeds after the outage");
    assert_eq!(w.postgres.commits.load(Ordering::SeqCst), 1);
    assert_eq!(w.changelog.len(), 3);
    assert!(w.metric("processor_retries_total{stage=\"upsert\"} 2"));
}

/// The crash the issue names: the rows are written but their changes are not yet
/// acknowledged on the changelog. Nothing commits, no offset is stored, nothing is
/// marked; the redelivery writes and publishes it all.
#[tokio::test]
async fn a_crash_between_write_and_publish_stores_no_offset_and_the_redelivery_converges() {
    let clean = World::default();
    clean.process(batch()).await.unwrap();

    let mut w = World {
        changelog: MemTopic::crashing(),
        ..World::default()
    };
    let crash_point = w.changelog.crash.as_ref().unwrap();
    let crashed = w.process_until(batch(), crash_point).await;
    assert!(crashed.is_none(), "the process died mid-publish");
    assert!(
        w.table().is_empty(),
        "nothing committed before the changes were acked"
    );
    assert!(w.redis.keys.lock().unwrap().is_empty());

    w.changelog.crash = None;
    let offsets = w.process(batch()).await.expect("redelivery succeeds");
    assert_eq!(offsets, Offsets::from([(0, 12), (1, 6)]));
    assert_eq!(w.table(), clean.table());
    assert_eq!(w.changelog.len(), 3);
}

/// A crash after the commit, before the dead letters are acked (so before any offset is
/// stored): the redelivery finds the rows in place, publishes no change twice and
/// delivers the dead letter.
#[tokio::test]
async fn a_crash_after_the_commit_stores_no_offset_and_the_redelivery_converges() {
    let clean = World::default();
    let with_poison = || {
        let mut b = batch();
        b.push(message(b"poison".to_vec(), 0, 12));
        b
    };
    clean.process(with_poison()).await.unwrap();

    let mut w = World {
        dlq: MemTopic::crashing(),
        ..World::default()
    };
    let crash_point = w.dlq.crash.as_ref().unwrap();
    assert!(w.process_until(with_poison(), crash_point).await.is_none());
    assert_eq!(w.table(), clean.table(), "the rows committed");
    assert!(
        w.redis.keys.lock().unwrap().is_empty(),
        "marked only after the DLQ"
    );

    w.dlq.crash = None;
    let offsets = w.process(with_poison()).await.expect("redelivery succeeds");
    assert_eq!(offsets, Offsets::from([(0, 13), (1, 6)]));
    assert_eq!(w.table(), clean.table());
    assert_eq!(
        w.changelog.len(),
        3,
        "unchanged rows are not published again"
    );
    assert_eq!(w.dlq.len(), 1);
    assert_eq!(w.redis.keys.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn an_outage_past_the_deadline_aborts_the_batch_without_offsets() {
    let w = World::default();
    w.postgres.down.store(true, Ordering::SeqCst);
    let deadline = Deadline::after(Duration::from_millis(500));
    let result = w.stages().process(batch(), &deadline).await;
    assert!(
        matches!(result, Err(BatchError::Aborted("upsert"))),
        "{result:?}"
    );
    assert!(w.table().is_empty());
    assert!(w.redis.keys.lock().unwrap().is_empty());
    assert_eq!(w.changelog.len(), 0);
}

#[tokio::test]
async fn a_dlq_that_refuses_dead_letters_stops_the_batch() {
    let w = World::default();
    w.dlq.fatal.store(true, Ordering::SeqCst);
    let result = w.process(vec![message(b"poison".to_vec(), 0, 0)]).await;
    assert!(matches!(result, Err(BatchError::Fatal(_))), "{result:?}");
}

/// The retry task's use of the write stage: a replayed record that PostgreSQL refuses
/// ends refused (the task closes it), not retried, and has no dead letter to send.
#[tokio::test]
async fn the_write_stage_refuses_a_replayed_record_without_a_dead_letter() {
    let w = World::default();
    let env = RawEnvelope {
        event_id: "parked-1".into(),
        vendor: "oura".into(),
        received_at_micros: 0,
        headers: HashMap::new(),
        query: None,
        principal: None,
        content_type: None,
        body: Vec::new(),
        edge_instance: String::new(),
    };
    let normalized = crate::normalize::normalize(&RawEnvelope {
        vendor: "healthkit".into(),
        principal: Some(REFUSED_USER.into()),
        body: heart_rate(61.0, 1).into_bytes(),
        ..env.clone()
    })
    .expect("fixture normalizes");
    let mut records = [Record::replayed(3, 40, env, normalized, None)];
    let deadline = Deadline::after(Duration::from_secs(60));
    write(
        &w.postgres,
        &w.changelog,
        &w.metrics,
        &mut records,
        &deadline,
    )
    .await
    .unwrap();
    assert!(matches!(
        records[0].state,
        State::Refused {
            reason: DlqReason::RejectedByDatabase,
            ..
        }
    ));
    assert!(records[0].dead_letter().is_none());
    assert_eq!(w.postgres.commits.load(Ordering::SeqCst), 0);
}
