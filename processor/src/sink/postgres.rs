//! PostgreSQL sink: batch upserts of canonical readings, vendor deletions and
//! account events, one transaction per [`Batch`].
//!
//! Batch size is bounded by memory and latency, not by PostgreSQL's 65,535
//! bind-parameter limit: every statement binds one array per column (10 for
//! readings), whatever the number of rows, so the SQL text and its prepared
//! statement never change with the batch size.
//!
//! # Semantics of a batch
//!
//! The batch is applied as if its messages were written one at a time, in order,
//! so the outcome does not depend on how the consumer happened to cut batches:
//!
//! * Readings are split into segments at tombstones. A tombstone deletes the rows of
//!   its record written before it; readings after it (a re-created document) are
//!   written after the delete and survive. Tombstones are rare, so a batch is
//!   usually one segment and one upsert.
//! * Within a segment, readings with the same key collapse to what applying them in
//!   order would leave. A reading replaces a row when either has no `ordering` or
//!   the new `ordering` is at least the stored one. That rule is not transitive
//!   (`100`, then `None`, then `50` ends at `50`), so when a key's readings include
//!   one without `ordering` followed by anchored ones, the segment is written in two
//!   passes of the same statement: the last unanchored reading, then the final one.
//! * Records PostgreSQL would reject (non-finite values, `end_time < start_time`,
//!   years outside 1–9999, NUL in text) are dropped and counted in
//!   [`WriteStats::rejected`] instead of failing the whole batch: one bad value from a
//!   normalizer must not hold back or dead-letter a thousand good ones.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Datelike, SecondsFormat, Utc};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgArguments, PgConnection, PgCopyIn, PgPool, PgPoolOptions, Postgres};
use sqlx::query::Query;
use tracing::{instrument, warn};

use super::{Batch, WriteStats};
use crate::model::{AccountEvent, Reading, Tombstone};

/// The workspace's migrations, embedded at compile time; the processor applies them
/// at start and `#[sqlx::test]` applies them to each test database.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

const UPSERT_READINGS: &str = include_str!("upsert_readings.sql");
const DELETE_RECORDS: &str = include_str!("delete_records.sql");
const INSERT_ACCOUNT_EVENTS: &str = include_str!("insert_account_events.sql");
const COPY_READINGS: &str = include_str!("copy_readings.sql");

/// A batch waiting longer than this for a connection means PostgreSQL is down or
/// saturated: fail with a transient error so the consumer backs off, rather than
/// sitting on the partition for sqlx's default 30 s.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// COPY data is sent in chunks of about this size: large enough to amortise the
/// per-message cost, small enough not to hold a whole benchmark load in memory.
const COPY_CHUNK_BYTES: usize = 1 << 20;

/// A PostgreSQL operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Opening the pool failed.
    #[error("could not connect to PostgreSQL: {0}")]
    Connect(sqlx::Error),
    /// Applying the embedded migrations failed.
    #[error("could not apply database migrations: {0}")]
    Migrate(MigrateError),
    /// A statement failed; `op` names what the sink was doing.
    #[error("PostgreSQL failed to {op}: {source}")]
    Query {
        /// What the sink was doing, e.g. `upsert readings`.
        op: &'static str,
        /// The driver's error.
        source: sqlx::Error,
    },
}

impl SinkError {
    fn query(op: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| SinkError::Query { op, source }
    }

    fn sqlx_error(&self) -> Option<&sqlx::Error> {
        match self {
            SinkError::Connect(e) | SinkError::Query { source: e, .. } => Some(e),
            SinkError::Migrate(MigrateError::Execute(e))
            | SinkError::Migrate(MigrateError::ExecuteMigration(e, _)) => Some(e),
            SinkError::Migrate(_) => None,
        }
    }

    /// The data is not at fault and the same write may succeed later: retry with
    /// backoff and do not commit offsets past it. Connection loss, pool timeout,
    /// serialization failure, deadlock, lock or statement timeout, server shutdown or
    /// start-up, resource exhaustion, a read-only server during fail-over, and our own
    /// pool closed at shutdown (the batch is redelivered after restart).
    pub fn is_transient(&self) -> bool {
        let Some(error) = self.sqlx_error() else {
            return false;
        };
        match error {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => db.code().is_some_and(|code| transient_sqlstate(&code)),
            _ => false,
        }
    }

    /// PostgreSQL refused the data itself (SQLSTATE class 22 data exception or 23
    /// integrity constraint violation): retrying the same batch cannot succeed, so it
    /// must be split or dead-lettered. An error that is neither this nor
    /// [`is_transient`](Self::is_transient) (missing table, bad migration, syntax) is a
    /// deployment fault: stop rather than dead-letter good data.
    pub fn is_bad_data(&self) -> bool {
        match self.sqlx_error() {
            Some(sqlx::Error::Database(db)) => db
                .code()
                .is_some_and(|code| code.starts_with("22") || code.starts_with("23")),
            _ => false,
        }
    }
}

/// SQLSTATEs after which the same statement may succeed later.
fn transient_sqlstate(code: &str) -> bool {
    matches!(
        code,
        // serialization_failure, statement_completion_unknown, deadlock_detected
        "40001" | "40003" | "40P01"
        // object_in_use, lock_not_available
        | "55006" | "55P03"
        // query_canceled (statement_timeout), admin/crash shutdown, cannot_connect_now,
        // idle_session_timeout
        | "57014" | "57P01" | "57P02" | "57P03" | "57P05"
        // read_only_sql_transaction: we reached a standby during fail-over
        | "25006"
        // snapshot_too_old
        | "72000"
    ) || code.starts_with("08") // connection exception
        || code.starts_with("53") // insufficient resources (disk, memory, connections)
        || code.starts_with("58") // system error (I/O)
}

/// Writes canonical records to PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgSink {
    pool: PgPool,
}

impl PgSink {
    /// Opens a pool of at most `max_connections` and checks one connection works, so a
    /// wrong URL or an unreachable server fails at start.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, SinkError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .map_err(SinkError::Connect)?;
        Ok(Self { pool })
    }

    /// Wraps an existing pool (tests get one per database from `#[sqlx::test]`).
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Applies the embedded migrations. Safe to run from several processors at once:
    /// sqlx serialises them with an advisory lock.
    pub async fn migrate(&self) -> Result<(), SinkError> {
        MIGRATOR.run(&self.pool).await.map_err(SinkError::Migrate)
    }

    /// Checks PostgreSQL answers (`SELECT 1`), for readiness probes.
    pub async fn ping(&self) -> Result<(), SinkError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(SinkError::query("answer a ping"))
    }

    /// The pool, for queries outside the write path.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Writes a batch in one transaction: readings, tombstones and account events
    /// commit together or not at all. See the module documentation for the order and
    /// collapse rules. Readings PostgreSQL would reject are dropped and counted.
    #[instrument(skip_all, fields(
        readings = batch.readings.len(),
        tombstones = batch.tombstones.len(),
        account_events = batch.account_events.len(),
    ))]
    pub async fn write(&self, batch: &Batch) -> Result<WriteStats, SinkError> {
        let plan = Plan::new(batch);
        let mut stats = plan.stats;
        if plan.steps.is_empty() && plan.events.event_id.is_empty() {
            return Ok(stats);
        }

        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(SinkError::query("begin a transaction"))?;
        for step in plan.steps {
            match step {
                Step::Upsert(columns) => {
                    let sent = columns.len() as u64;
                    let written = columns
                        .bind(sqlx::query(UPSERT_READINGS))
                        .execute(&mut *tx)
                        .await
                        .map_err(SinkError::query("upsert readings"))?
                        .rows_affected();
                    stats.upserted += written;
                    stats.unchanged += sent.saturating_sub(written);
                }
                Step::Delete(columns) => {
                    stats.deleted += sqlx::query(DELETE_RECORDS)
                        .bind(columns.user_id)
                        .bind(columns.vendor)
                        .bind(columns.source_record_id)
                        .execute(&mut *tx)
                        .await
                        .map_err(SinkError::query("delete tombstoned readings"))?
                        .rows_affected();
                }
            }
        }
        if !plan.events.event_id.is_empty() {
            let events = plan.events;
            stats.account_events = sqlx::query(INSERT_ACCOUNT_EVENTS)
                .bind(events.event_id)
                .bind(events.vendor)
                .bind(events.kind)
                .bind(events.user_id)
                .bind(events.vendor_user_id)
                .bind(events.received_at)
                .execute(&mut *tx)
                .await
                .map_err(SinkError::query("insert account events"))?
                .rows_affected();
        }
        tx.commit()
            .await
            .map_err(SinkError::query("commit a batch"))?;
        Ok(stats)
    }

    /// Bulk-loads readings with plain `COPY … FROM STDIN`: no conflict handling, no
    /// collapse, so a key already present fails the whole load. This is the
    /// benchmark's ceiling, not a write path. Readings PostgreSQL would reject are
    /// skipped. Returns the number of rows loaded.
    #[instrument(skip_all, fields(readings = readings.len()))]
    pub async fn copy_readings(&self, readings: &[Reading]) -> Result<u64, SinkError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(SinkError::query("acquire a connection for COPY"))?;
        let mut copy = conn
            .copy_in_raw(COPY_READINGS)
            .await
            .map_err(SinkError::query("start COPY readings"))?;
        match send_csv(&mut copy, readings).await {
            Ok(()) => copy
                .finish()
                .await
                .map_err(SinkError::query("finish COPY readings")),
            Err(error) => {
                // Best effort: the connection may already be gone, and the send error
                // is the one worth reporting.
                let _ = copy.abort("sending COPY data failed").await;
                Err(SinkError::Query {
                    op: "send COPY data",
                    source: error,
                })
            }
        }
    }
}

async fn send_csv(
    copy: &mut PgCopyIn<&mut PgConnection>,
    readings: &[Reading],
) -> Result<(), sqlx::Error> {
    let mut buf = Vec::with_capacity(COPY_CHUNK_BYTES + 4096);
    for reading in readings {
        if reject_reading(reading) {
            continue;
        }
        write_csv_row(&mut buf, reading);
        if buf.len() >= COPY_CHUNK_BYTES {
            copy.send(buf.as_slice()).await?;
            buf.clear();
        }
    }
    if !buf.is_empty() {
        copy.send(buf.as_slice()).await?;
    }
    Ok(())
}

/// One CSV line. Text is always quoted so an empty string stays distinct from NULL,
/// which CSV writes as an unquoted empty field.
fn write_csv_row(buf: &mut Vec<u8>, r: &Reading) {
    fn text(buf: &mut Vec<u8>, s: &str) {
        buf.push(b'"');
        for b in s.bytes() {
            if b == b'"' {
                buf.push(b'"');
            }
            buf.push(b);
        }
        buf.push(b'"');
    }
    fn time(buf: &mut Vec<u8>, t: DateTime<Utc>) {
        buf.extend_from_slice(
            truncate_to_micros(t)
                .to_rfc3339_opts(SecondsFormat::Micros, true)
                .as_bytes(),
        );
    }
    text(buf, &r.user_id);
    buf.push(b',');
    text(buf, &r.vendor);
    buf.push(b',');
    text(buf, r.metric.as_str());
    buf.push(b',');
    // Display for f64 prints the shortest string that round-trips, never an exponent.
    buf.extend_from_slice(r.value.to_string().as_bytes());
    buf.push(b',');
    text(buf, r.metric.unit());
    buf.push(b',');
    time(buf, r.start_time);
    buf.push(b',');
    time(buf, r.end_time);
    buf.push(b',');
    text(buf, &r.source_record_id);
    buf.push(b',');
    if let Some(source) = &r.source {
        text(buf, source);
    }
    buf.push(b',');
    if let Some(ordering) = r.ordering {
        buf.extend_from_slice(ordering.to_string().as_bytes());
    }
    buf.push(b'\n');
}

/// PostgreSQL stores microseconds. Truncating here, the way the row will be stored,
/// keeps the in-memory collapse key equal to PostgreSQL's conflict key: two readings
/// a few nanoseconds apart are one row, and must be one row of the statement.
fn truncate_to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// Why PostgreSQL would refuse or misstore a reading, if it would. The pipeline uses
/// the same check so it never publishes a reading the table does not hold.
pub fn reading_problem(r: &Reading) -> Option<&'static str> {
    if !r.value.is_finite() {
        return Some("non_finite_value");
    }
    // Years outside 1–9999 are corrupt input, and would need BC / 5-digit forms in
    // COPY text.
    let years = 1..=9999;
    if !years.contains(&r.start_time.year()) || !years.contains(&r.end_time.year()) {
        return Some("time_out_of_range");
    }
    if r.end_time < r.start_time {
        return Some("inverted_interval");
    }
    let texts = [
        r.user_id.as_str(),
        r.vendor.as_str(),
        r.source_record_id.as_str(),
    ];
    if texts
        .into_iter()
        .chain(r.source.as_deref())
        .any(|s| s.contains('\0'))
    {
        return Some("nul_in_text");
    }
    None
}

/// True (and logged) when the reading must not reach PostgreSQL.
fn reject_reading(r: &Reading) -> bool {
    let Some(reason) = reading_problem(r) else {
        return false;
    };
    warn!(
        message = "Rejected reading before PostgreSQL.",
        reason,
        vendor = %r.vendor,
        metric = %r.metric,
    );
    true
}

/// PostgreSQL text cannot hold NUL; such a tombstone could never match a stored row,
/// and such an account event could not be stored.
fn reject_text(kind: &'static str, vendor: &str, texts: &[Option<&str>]) -> bool {
    if !texts.iter().flatten().any(|s| s.contains('\0')) {
        return false;
    }
    warn!(
        message = "Rejected record before PostgreSQL.",
        reason = "nul_in_text",
        kind,
        vendor = %vendor.replace('\0', ""),
    );
    true
}

/// The statements one batch turns into, in execution order.
struct Plan<'a> {
    steps: Vec<Step<'a>>,
    events: EventColumns<'a>,
    /// `collapsed` and `rejected`, known before any SQL runs.
    stats: WriteStats,
}

enum Step<'a> {
    Upsert(ReadingColumns<'a>),
    Delete(TombstoneColumns<'a>),
}

/// Conflict key of `readings`, with times as stored (microseconds).
type Key<'a> = (&'a str, &'a str, &'static str, i64, i64);

/// What a segment's readings for one key reduce to, as indices into the segment.
struct Slot {
    /// The last reading without `ordering`: from it on, the outcome no longer depends
    /// on the stored row.
    unanchored: Option<usize>,
    /// What applying the readings in order leaves.
    current: usize,
}

/// Whether `new` replaces a row holding `stored`; mirrors the upsert's WHERE.
fn replaces(stored: Option<i64>, new: Option<i64>) -> bool {
    match (stored, new) {
        (Some(stored), Some(new)) => new >= stored,
        _ => true,
    }
}

impl<'a> Plan<'a> {
    fn new(batch: &'a Batch) -> Self {
        let mut plan = Plan {
            steps: Vec::new(),
            events: EventColumns::default(),
            stats: WriteStats::default(),
        };
        let readings = &batch.readings;

        let mut tombstones: Vec<(usize, &Tombstone)> = batch
            .tombstones
            .iter()
            .map(|(position, t)| ((*position).min(readings.len()), t))
            .collect();
        // Stable: tombstones at one position keep their order (it does not matter
        // between deletes, but keeps plans deterministic).
        tombstones.sort_by_key(|(position, _)| *position);

        let mut segment_start = 0;
        let mut i = 0;
        while i < tombstones.len() {
            let position = tombstones[i].0;
            let mut deletes = TombstoneColumns::default();
            while let Some(&(_, t)) = tombstones.get(i).filter(|(p, _)| *p == position) {
                let texts = [
                    Some(t.user_id.as_str()),
                    Some(t.vendor.as_str()),
                    Some(t.source_record_id.as_str()),
                ];
                if reject_text("tombstone", &t.vendor, &texts) {
                    plan.stats.rejected += 1;
                } else {
                    deletes.push(t);
                }
                i += 1;
            }
            if !deletes.user_id.is_empty() {
                plan.push_segment(&readings[segment_start..position]);
                plan.steps.push(Step::Delete(deletes));
                segment_start = position;
            }
        }
        plan.push_segment(&readings[segment_start..]);

        for (event_id, event, received_at) in &batch.account_events {
            let texts = [
                Some(event_id.as_str()),
                Some(event.vendor.as_str()),
                Some(event.kind.as_str()),
                event.user_id.as_deref(),
                event.vendor_user_id.as_deref(),
            ];
            if reject_text("account_event", &event.vendor, &texts) {
                plan.stats.rejected += 1;
            } else {
                plan.events.push(event_id, event, *received_at);
            }
        }
        plan
    }

    /// Collapses one tombstone-free run of readings into at most two upserts.
    fn push_segment(&mut self, segment: &'a [Reading]) {
        // A BTreeMap sends rows in key order: concurrent batches touching the same
        // keys then lock them in the same order and cannot deadlock each other.
        let mut slots: BTreeMap<Key<'a>, Slot> = BTreeMap::new();
        let mut valid = 0u64;
        for (index, r) in segment.iter().enumerate() {
            if reject_reading(r) {
                self.stats.rejected += 1;
                continue;
            }
            valid += 1;
            let key = (
                r.user_id.as_str(),
                r.vendor.as_str(),
                r.metric.as_str(),
                r.start_time.timestamp_micros(),
                r.end_time.timestamp_micros(),
            );
            let unanchored = r.ordering.is_none().then_some(index);
            slots
                .entry(key)
                .and_modify(|slot| {
                    if r.ordering.is_none() {
                        *slot = Slot {
                            unanchored,
                            current: index,
                        };
                    } else if replaces(segment[slot.current].ordering, r.ordering) {
                        slot.current = index;
                    }
                })
                .or_insert(Slot {
                    unanchored,
                    current: index,
                });
        }

        let mut first = ReadingColumns::with_capacity(slots.len());
        let mut second = ReadingColumns::default();
        for slot in slots.values() {
            match slot.unanchored {
                // The stored row could be newer than `current` and block it, but in
                // order the unanchored reading would have replaced the stored row and
                // `current` then replaced that: write both, in that order.
                Some(unanchored) if unanchored != slot.current => {
                    first.push(&segment[unanchored]);
                    second.push(&segment[slot.current]);
                }
                _ => first.push(&segment[slot.current]),
            }
        }
        self.stats.collapsed += valid - (first.len() + second.len()) as u64;
        for columns in [first, second] {
            if !columns.is_empty() {
                self.steps.push(Step::Upsert(columns));
            }
        }
    }
}

/// The upsert's parameters, one vector per column, in `upsert_readings.sql` order.
#[derive(Default)]
struct ReadingColumns<'a> {
    user_id: Vec<&'a str>,
    vendor: Vec<&'a str>,
    metric: Vec<&'static str>,
    value: Vec<f64>,
    unit: Vec<&'static str>,
    start_time: Vec<DateTime<Utc>>,
    end_time: Vec<DateTime<Utc>>,
    source_record_id: Vec<&'a str>,
    source: Vec<Option<&'a str>>,
    ordering: Vec<Option<i64>>,
}

impl<'a> ReadingColumns<'a> {
    fn with_capacity(n: usize) -> Self {
        Self {
            user_id: Vec::with_capacity(n),
            vendor: Vec::with_capacity(n),
            metric: Vec::with_capacity(n),
            value: Vec::with_capacity(n),
            unit: Vec::with_capacity(n),
            start_time: Vec::with_capacity(n),
            end_time: Vec::with_capacity(n),
            source_record_id: Vec::with_capacity(n),
            source: Vec::with_capacity(n),
            ordering: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, r: &'a Reading) {
        self.user_id.push(&r.user_id);
        self.vendor.push(&r.vendor);
        self.metric.push(r.metric.as_str());
        self.value.push(r.value);
        // The unit comes from the metric, never from the vendor: one unit per metric.
        self.unit.push(r.metric.unit());
        self.start_time.push(truncate_to_micros(r.start_time));
        self.end_time.push(truncate_to_micros(r.end_time));
        self.source_record_id.push(&r.source_record_id);
        self.source.push(r.source.as_deref());
        self.ordering.push(r.ordering);
    }

    fn len(&self) -> usize {
        self.user_id.len()
    }

    fn is_empty(&self) -> bool {
        self.user_id.is_empty()
    }

    fn bind<'q>(self, query: Query<'q, Postgres, PgArguments>) -> Query<'q, Postgres, PgArguments>
    where
        'a: 'q,
    {
        query
            .bind(self.user_id)
            .bind(self.vendor)
            .bind(self.metric)
            .bind(self.value)
            .bind(self.unit)
            .bind(self.start_time)
            .bind(self.end_time)
            .bind(self.source_record_id)
            .bind(self.source)
            .bind(self.ordering)
    }
}

#[derive(Default)]
struct TombstoneColumns<'a> {
    user_id: Vec<&'a str>,
    vendor: Vec<&'a str>,
    source_record_id: Vec<&'a str>,
}

impl<'a> TombstoneColumns<'a> {
    fn push(&mut self, t: &'a Tombstone) {
        self.user_id.push(&t.user_id);
        self.vendor.push(&t.vendor);
        self.source_record_id.push(&t.source_record_id);
    }
}

#[derive(Default)]
struct EventColumns<'a> {
    event_id: Vec<&'a str>,
    vendor: Vec<&'a str>,
    kind: Vec<&'a str>,
    user_id: Vec<Option<&'a str>>,
    vendor_user_id: Vec<Option<&'a str>>,
    received_at: Vec<DateTime<Utc>>,
}

impl<'a> EventColumns<'a> {
    fn push(&mut self, event_id: &'a str, e: &'a AccountEvent, received_at: DateTime<Utc>) {
        self.event_id.push(event_id);
        self.vendor.push(&e.vendor);
        self.kind.push(&e.kind);
        self.user_id.push(e.user_id.as_deref());
        self.vendor_user_id.push(e.vendor_user_id.as_deref());
        self.received_at.push(received_at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Metric, Normalized};

    /// A stored row without the bookkeeping timestamps.
    type Row = (
        String,
        String,
        String,
        f64,
        String,
        DateTime<Utc>,
        DateTime<Utc>,
        String,
        Option<String>,
        Option<i64>,
    );

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    fn reading(
        record: &str,
        metric: Metric,
        start: i64,
        value: f64,
        ordering: Option<i64>,
    ) -> Reading {
        Reading {
            user_id: "u1".into(),
            vendor: "terra".into(),
            metric,
            value,
            start_time: at(start),
            end_time: at(start + 60),
            source_record_id: record.into(),
            source: Some("OURA".into()),
            ordering,
        }
    }

    fn tombstone(record: &str) -> Tombstone {
        Tombstone {
            user_id: "u1".into(),
            vendor: "terra".into(),
            source_record_id: record.into(),
        }
    }

    fn row(r: &Reading) -> Row {
        (
            r.user_id.clone(),
            r.vendor.clone(),
            r.metric.as_str().into(),
            r.value,
            r.metric.unit().into(),
            r.start_time,
            r.end_time,
            r.source_record_id.clone(),
            r.source.clone(),
            r.ordering,
        )
    }

    async fn stored(pool: &PgPool) -> Vec<Row> {
        sqlx::query_as(
            "SELECT user_id, vendor, metric, value, unit, start_time, end_time, \
             source_record_id, source, ordering FROM readings ORDER BY 1, 2, 3, 6, 7",
        )
        .fetch_all(pool)
        .await
        .unwrap()
    }

    fn readings(readings: Vec<Reading>) -> Batch {
        Batch {
            readings,
            ..Batch::default()
        }
    }

    fn message(readings: Vec<Reading>, tombstones: Vec<Tombstone>) -> Normalized {
        Normalized {
            readings,
            tombstones,
            account_events: Vec::new(),
        }
    }

    #[sqlx::test(migrator = "MIGRATOR")]
    async fn upsert_inserts_rows(pool: PgPool) {
        let sink = PgSink::from_pool(pool.clone());
        let mut with_nanos = reading("s1", Metric::StepCount, 0, 1000.0, None);
        with_nanos.source = None;
        with_nanos.start_time += chrono::Duration::nanoseconds(1_500);
        let batch = readings(vec![
            reading("s1", Metric::HeartRate, 0, 61.5, Some(7)),
            with_nanos.clone(),
        ]);

        let stats = sink.write(&batch).await.unwrap();

        assert_eq!(stats.upserted, 2);
        let mut expected = row(&with_nanos);
        expected.5 = truncate_to_micros(with_nanos.start_time);
        assert_eq!(stored(&pool).await, vec![row(&batch.readings[0]), expected]);
        // Applying the migrations again is a no-op.
        sink.migrate().await.unwrap();
        sink.ping().await.unwrap();
    }

    #[sqlx::test(migrator = "MIGRATOR")]
    async fn same_batch_twice_is_idempotent(pool: PgPool) {
        let sink = PgSink::from_pool(pool.clone());
        let batch = readings(vec![
            reading("s1", Metric::HeartRate, 0, 61.0, Some(1)),
            reading("s1", Metric::HeartRate, 60, 62.0, None),
        ]);
        sink.write(&batch).await.unwrap();
        let first = stored(&pool).await;
        let touched: Vec<(DateTime<Utc>,)> = sqlx::query_as("SELECT updated_at FROM readings")
            .fetch_all(&pool)
            .await
            .unwrap();

        let stats = sink.write(&batch).await.unwrap();

        assert_eq!((stats.upserted, stats.unchanged), (0, 2));
        assert_eq!(stored(&pool).await, first);
        let touched_again: Vec<(DateTime<Utc>,)> =
            sqlx::query_as("SELECT updated_at FROM readings")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(touched_again, touched, "identical rows are not rewritten");
    }

    #[sqlx::test(migrator = "MIGRATOR")]
    async fn duplicates_within_a_batch_collapse(pool: PgPool) {
        let sink = PgSink::from_pool(pool.clone());
        let newest = reading("s1", Metric::HeartRate, 0, 3.0, Some(30));
        let batch = readings(vec![
            reading("s1", Metric::HeartRate, 0, 1.0, Some(10)),
            newest.clone(),
            // Older than what precedes it in the batch: must not win.
            reading("s1", Metric::HeartRate, 0, 2.0, Some(20)),
        ]);

        let stats = sink.write(&batch).await.unwrap();

        assert_eq!((stats.upserted, stats.collapsed), (1, 2));
        assert_eq!(stored(&pool).await, vec![row(&newest)]);
    }

    #[sqlx::test(migrator = "MIGRATOR")]
    async fn ordering_decides_which_reading_wins(pool: PgPool) {
        let sink = PgSink::from_pool(pool.clone());
        let write = |value: f64, ordering: Option<i64>| {
            let sink = sink.clone();
            async move {
                let r = reading("s1", Metric::SleepScore, 0, value, ordering);
                sink.write(&readings(vec![r.clone()])).await.unwrap();
                r
            }
        };

        let stored_100 = write(1.0, Some(100)).await;
        write(2.0, Some(50)).await;
        assert_eq!(
            stored(&pool).await,
            vec![row(&stored_100)],
            "older never overwrites"
        );

        let equal = write(3.0, Some(100)).await;
        assert_eq!(stored(&pool).await, vec![row(&equal)], "equal overwrites");

        let newer = write(4.0, Some(150)).await;
        assert_eq!(stored(&pool).await, vec![row(&newer)], "newer overwrites");

        let unanchored = write(5.0, None).await;
        assert_eq!(
            stored(&pool).await,
            vec![row(&unanchored)],
            "None is newest"
        );

        let anchored = write(6.0, Some(10)).await;
        assert_eq!(
            stored(&pool).await,
            vec![row(&anchored)],
            "a stored None is replaced by anything"
        );
    }

    #[sqlx::test(migrator = "MIGRATOR")]
    async fn unanchored_then_anchored_in_one_batch_matches_one_by_one(pool: PgPool) {
        let sink = PgSink::from_pool(pool.clone());
        sink.write(&readings(vec![reading(
            "s1",
            Metric::HeartRate,
            0,
            1.0,
            Some(100),
        )]))
        .await
        .unwrap();
        // One by one: 100, then None replaces it, then 50 replaces the None.
        let last = reading("s1", Metric::HeartRate, 0, 3.0, Some(50));
        let batch = readings(vec![
            reading("s1", Metric::HeartRate, 0, 2.0, None),
            last.clone(),
        ]);

        sink.write(&batch).await.unwrap();

        assert_eq!(stored(&pool).await, vec![row(&last)]);
    }

    #[sqlx::test(migrator = "MIGRATOR")]
    async fn tombstone_deletes_its_record_across_metrics_only(pool: PgPool) {
        let sink = PgSink::from_pool(pool.clone());
        let mut other_user = reading("s1", Metric::HeartRate, 0, 9.0, None);
        other_user.user_id = "u2".into();
        let mut other_vendor = reading("s1", Metric::HeartRate, 0, 8.0, None);
        other_vendor.vendor = "oura".into();
        let kept = reading("s2", Metric::HeartRate, 120, 70.0, None);
        sink.write(&readings(vec![
            reading("s1", Metric::HeartRate, 0, 60.0, None),
            reading("s1", Metric::StepCount, 0, 500.0, None),
            reading("s1", Metric::SleepTotal, 60, 3600.0, None),
            kept.clone(),
            other_user.clone(),
            other_vendor.clone(),
        ]))
        .await
        .unwrap();

        let mut batch = Batch::default();
        batch.push("e1", at(0), message(vec![], vec![tombstone("s1")]));
        let stats = sink.write(&batch).await.unwrap();

        assert_eq!(stats.deleted, 3);
        let mut expected = vec![row(&kept), row(&other_user), row(&other_vendor)];
        expected.sort_by(|a, b| (&a.0, &a.1, &a.2, a.5).cmp(&(&b.0, &b.1, &b.2, b.5)));
        assert_eq!(stored(&pool).await, expected);
    }

    #[sqlx::test(migrator = "MIGRATOR")]
    async fn tombstone_then_recreated_reading_in_one_batch_keeps_the_recreated(pool: PgPool) {
        let sink = PgSink::from_pool(pool.clone());
        // Written by an earlier batch: the tombstone must remove it.
        sink.write(&readings(vec![reading(
            "s1",
            Metric::StepCount,
            0,
            1.0,
            Some(1),
        )]))
        .await
        .unwrap();
        let recreated = reading("s1", Metric::HeartRate, 0, 3.0, Some(1));
        let mut batch = Batch::default();
        // Before the tombstone in this batch: removed too, though it has a higher ordering.
        batch.push(
            "e1",
            at(0),
            message(
                vec![reading("s1", Metric::HeartRate, 0, 2.0, Some(9))],
                vec![],
            ),
        );
        batch.push("e2", at(1), message(vec![], vec![tombstone("s1")]));
        batch.push("e3", at(2), message(vec![recreated.clone()], vec![]));

        let stats = sink.write(&batch).await.unwrap();

        assert_eq!(stored(&pool).await, vec![row(&recreated)]);
        assert_eq!(stats.deleted, 2);
    }

    #[sqlx::test(migrator = "MIGRATOR")]
    async fn invalid_readings_are_rejected_and_counted(pool: PgPool) {
        let sink = PgSink::from_pool(pool.clone());
        let good = reading("s1", Metric::HeartRate, 0, 60.0, None);
        let mut inverted = reading("s1", Metric::HeartRate, 600, 1.0, None);
        inverted.end_time = at(0);
        let mut nul = reading("s\0", Metric::HeartRate, 1200, 1.0, None);
        nul.source = Some("x\0".into());
        let mut ancient = reading("s1", Metric::HeartRate, 1800, 1.0, None);
        ancient.start_time = DateTime::from_timestamp(-70_000_000_000, 0).unwrap();
        let batch = readings(vec![
            reading("s1", Metric::HeartRate, 60, f64::NAN, None),
            reading("s1", Metric::HeartRate, 120, f64::INFINITY, None),
            reading("s1", Metric::HeartRate, 180, f64::NEG_INFINITY, None),
            inverted,
            nul,
            ancient,
            good.clone(),
        ]);

        let stats = sink.write(&batch).await.unwrap();
        assert_eq!((stats.rejected, stats.upserted), (6, 1));
        assert_eq!(stored(&pool).await, vec![row(&good)]);

        assert_eq!(sink.copy_readings(&batch.readings[..3]).await.unwrap(), 0);

        // The table refuses non-finite values from any writer, as bad data.
        let error = sqlx::query(
            "INSERT INTO readings (user_id, vendor, metric, value, unit, start_time, end_time, \
             source_record_id) VALUES ('u', 'v', 'm', 'NaN', 'bpm', now(), now(), 'r')",
        )
        .execute(&pool)
        .await
        .map_err(SinkError::query("insert"))
        .unwrap_err();
        assert!(error.is_bad_data() && !error.is_transient(), "{error}");
    }

    #[sqlx::test(migrator = "MIGRATOR")]
    async fn copy_readings_loads_rows(pool: PgPool) {
        let sink = PgSink::from_pool(pool.clone());
        let mut quoted = reading("s,\"2\"\n", Metric::Weight, 0, 72.125, Some(-3));
        quoted.source = Some(String::new());
        let mut unsourced = reading("s3", Metric::Distance, 60, 1e-7, None);
        unsourced.source = None;
        let mut many: Vec<Reading> = (0..20_000)
            .map(|i| reading("bulk", Metric::HeartRate, i * 60, i as f64 / 3.0, Some(i)))
            .collect();
        many.push(quoted.clone());
        many.push(unsourced.clone());

        assert_eq!(sink.copy_readings(&many).await.unwrap(), 20_002);

        let rows = stored(&pool).await;
        assert_eq!(rows.len(), 20_002);
        for r in [&many[0], &many[12_345], &quoted, &unsourced] {
            assert!(rows.contains(&row(r)), "missing {r:?}");
        }
        // A key already present fails the whole COPY, and the pool stays usable.
        let error = sink.copy_readings(&many[..1]).await.unwrap_err();
        assert!(error.is_bad_data(), "{error}");
        sink.ping().await.unwrap();
    }

    #[sqlx::test(migrator = "MIGRATOR")]
    async fn account_event_replays_are_no_ops(pool: PgPool) {
        let sink = PgSink::from_pool(pool.clone());
        let event = |kind: &str| AccountEvent {
            user_id: Some("u1".into()),
            vendor: "terra".into(),
            kind: kind.into(),
            vendor_user_id: None,
        };
        let mut batch = Batch::default();
        batch.push(
            "e1",
            at(0),
            Normalized {
                account_events: vec![event("auth"), event("user_reauth")],
                ..Normalized::default()
            },
        );

        assert_eq!(sink.write(&batch).await.unwrap().account_events, 2);
        assert_eq!(sink.write(&batch).await.unwrap().account_events, 0);
        let ids: Vec<(String, String)> =
            sqlx::query_as("SELECT event_id, kind FROM account_events ORDER BY id")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(
            ids,
            vec![
                ("e1".into(), "auth".into()),
                ("e1/1".into(), "user_reauth".into())
            ]
        );
    }

    /// Tiny deterministic generator; the tests need no statistical quality.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n
        }
    }

    fn random_message(rng: &mut Lcg, value: &mut f64) -> Normalized {
        let records = ["a", "b", "c"];
        let metrics = [Metric::HeartRate, Metric::StepCount];
        let mut out = Normalized::default();
        if rng.below(5) == 0 {
            out.tombstones
                .push(tombstone(records[rng.below(3) as usize]));
        }
        for _ in 0..rng.below(4) {
            *value += 1.0;
            let ordering = match rng.below(4) {
                0 => None,
                n => Some(n as i64 * 10 + rng.below(3) as i64),
            };
            out.readings.push(reading(
                records[rng.below(3) as usize],
                metrics[rng.below(2) as usize],
                rng.below(2) as i64 * 60,
                *value,
                ordering,
            ));
        }
        out
    }

    /// Whatever the batching, the table ends as if every reading and tombstone had been
    /// written on its own, in order.
    #[sqlx::test(migrator = "MIGRATOR")]
    async fn outcome_does_not_depend_on_batching(pool: PgPool) {
        let sink = PgSink::from_pool(pool.clone());
        for seed in 0..40 {
            let mut rng = Lcg(seed);
            let mut value = 0.0;
            let initial = random_message(&mut rng, &mut value).readings;
            let messages: Vec<Normalized> = (0..12)
                .map(|_| random_message(&mut rng, &mut value))
                .collect();
            let reset = || async {
                sqlx::query("TRUNCATE readings")
                    .execute(&pool)
                    .await
                    .unwrap();
                for r in &initial {
                    sink.write(&readings(vec![r.clone()])).await.unwrap();
                }
            };

            reset().await;
            for m in &messages {
                let mut single = Batch::default();
                for t in &m.tombstones {
                    single.tombstones = vec![(0, t.clone())];
                    sink.write(&single).await.unwrap();
                }
                single.tombstones.clear();
                for r in &m.readings {
                    single.readings = vec![r.clone()];
                    sink.write(&single).await.unwrap();
                }
            }
            let one_by_one = stored(&pool).await;

            reset().await;
            let mut whole = Batch::default();
            for (i, m) in messages.iter().enumerate() {
                whole.push(&format!("e{i}"), at(0), m.clone());
            }
            sink.write(&whole).await.unwrap();
            assert_eq!(stored(&pool).await, one_by_one, "seed {seed}, one batch");

            reset().await;
            for chunk in messages.chunks(1 + seed as usize % 5) {
                let mut batch = Batch::default();
                for (i, m) in chunk.iter().enumerate() {
                    batch.push(&format!("e{i}"), at(0), m.clone());
                }
                sink.write(&batch).await.unwrap();
            }
            assert_eq!(stored(&pool).await, one_by_one, "seed {seed}, chunks");
        }
    }

    #[tokio::test]
    async fn unreachable_server_is_a_transient_error() {
        let error = PgSink::connect("postgres://bridge:bridge@127.0.0.1:1/bridge", 1)
            .await
            .unwrap_err();
        assert!(error.is_transient() && !error.is_bad_data(), "{error}");
    }

    #[test]
    fn push_places_tombstones_before_the_envelopes_readings() {
        let mut batch = Batch::default();
        batch.push(
            "e1",
            at(0),
            message(vec![reading("a", Metric::HeartRate, 0, 1.0, None)], vec![]),
        );
        batch.push(
            "e2",
            at(0),
            message(
                vec![reading("b", Metric::HeartRate, 0, 1.0, None)],
                vec![tombstone("b")],
            ),
        );
        assert_eq!(batch.tombstones, vec![(1, tombstone("b"))]);
        assert_eq!(batch.readings.len(), 2);
        assert!(!batch.is_empty() && Batch::default().is_empty());
    }
}
