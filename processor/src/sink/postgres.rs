//! PostgreSQL sink: batch upserts of canonical readings, vendor deletions and
//! account events, one transaction per [`Batch`].
//!
//! Batch size is bounded by memory and latency, not by PostgreSQL's 65,535
//! bind-parameter limit: every statement binds one array per column (5 for document
//! versions; 4 and 11 for applying them), whatever the number of rows, so the SQL text
//! and its prepared statement never change with the batch size. A pass of document
//! versions is up to three statements: `accept_versions.sql` takes the documents' locks
//! and applies newer-wins; the readings of documents it created are bulk-loaded with
//! `COPY` (no row can exist for them, so no conflict handling is needed, and nothing needs
//! returning); then `apply_versions.sql` replaces the sets of accepted documents that had
//! a stored version, under a snapshot taken after those locks, so it sees what a
//! concurrent writer of the same document committed while this one waited. Most of a
//! batch is usually new documents, and a day of per-minute samples is 1,440 rows of one:
//! `COPY` is PostgreSQL's fastest way in.
//!
//! # Semantics of a batch
//!
//! The batch is applied as if its messages were written one at a time, in order,
//! so the outcome does not depend on how the consumer happened to cut batches:
//!
//! * Readings are split into segments at tombstones. A tombstone deletes the rows of
//!   its document (and its version row) written before it; readings after it (a
//!   re-created document) are written after the delete and survive. Tombstones are
//!   rare, so a batch is usually one segment.
//! * The readings one envelope carries for one document (user, vendor,
//!   `source_record_id`, `source`) are a *version* of it. A version replaces the
//!   document's rows as a set, in `apply_versions.sql`: rows it does not have are
//!   deleted. It is applied when either it or the stored version has no `ordering`, or
//!   its `ordering` is at least the stored one (`reading_documents`), so an older version
//!   changes and removes nothing.
//! * Within a segment, a document's versions collapse to what applying them in order
//!   would leave. The rule is not transitive (`100`, then `None`, then `50` ends at `50`),
//!   so when a document's versions include one without `ordering` followed by anchored
//!   ones, the segment is written in two passes of the same statement: the last
//!   unanchored version, then the final one.
//! * Records PostgreSQL would reject (non-finite values, `end_time < start_time`,
//!   years outside 1–9999, NUL in text) are dropped and counted in
//!   [`WriteStats::rejected`] instead of failing the whole batch: one bad value from a
//!   normalizer must not hold back or dead-letter a thousand good ones. Values outside
//!   their metric's plausible range are dropped from their version (which still
//!   replaces the document's set) and counted in [`WriteStats::implausible`].
//! * Every change the statements make is returned ([`Written::changes`]), in order, for
//!   the changelog.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Datelike, SecondsFormat, Utc};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnection, PgCopyIn, PgPool, PgPoolOptions};
use tracing::{instrument, warn};

use super::range_delete::RangeColumns;
use super::{Batch, WriteStats, Written};
use crate::metrics::Metrics;
use crate::model::{AccountEvent, Change, RangeDeletion, Reading, ReadingKey, Tombstone};
use crate::normalize::plausible::{self, is_plausible};

/// The workspace's migrations, embedded at compile time; the processor applies them
/// at start and `#[sqlx::test]` applies them to each test database.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

const ACCEPT_VERSIONS: &str = include_str!("accept_versions.sql");
const APPLY_VERSIONS: &str = include_str!("apply_versions.sql");
const DELETE_RECORDS: &str = include_str!("delete_records.sql");
const INSERT_ACCOUNT_EVENTS: &str = include_str!("insert_account_events.sql");
const COPY_READINGS: &str = include_str!("copy_readings.sql");
const SYNC_CATALOG: &str = include_str!("sync_catalog.sql");

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
    /// What had to happen before the commit (publishing the changelog) failed; the batch
    /// was rolled back. Always transient.
    #[error("rolled back, the step before commit failed: {0}")]
    BeforeCommit(String),
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
            SinkError::Migrate(_) | SinkError::BeforeCommit(_) => None,
        }
    }

    /// The data is not at fault and the same write may succeed later: retry with
    /// backoff and do not commit offsets past it. Connection loss, pool timeout,
    /// serialization failure, deadlock, lock or statement timeout, server shutdown or
    /// start-up, resource exhaustion, a read-only server during fail-over, and our own
    /// pool closed at shutdown (the batch is redelivered after restart).
    pub fn is_transient(&self) -> bool {
        if matches!(self, SinkError::BeforeCommit(_)) {
            return true;
        }
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
#[derive(Clone)]
pub struct PgSink {
    pool: PgPool,
    /// Where implausible values are counted; `None` in unit tests and tools.
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for PgSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSink").field("pool", &self.pool).finish()
    }
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
        Ok(Self {
            pool,
            metrics: None,
        })
    }

    /// Wraps an existing pool (tests get one per database from `#[sqlx::test]`).
    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            pool,
            metrics: None,
        }
    }

    /// Counts implausible values in `metrics` (`processor_implausible_total`).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Applies the embedded migrations. Safe to run from several processors at once:
    /// sqlx serialises them with an advisory lock.
    pub async fn migrate(&self) -> Result<(), SinkError> {
        MIGRATOR.run(&self.pool).await.map_err(SinkError::Migrate)?;
        self.sync_catalog().await
    }

    /// Makes `metric_catalog` equal to the built-in catalog for every metric this build
    /// knows (rows of metrics it no longer knows stay: old readings may name them). One
    /// statement, idempotent, safe with several replicas starting at once.
    async fn sync_catalog(&self) -> Result<(), SinkError> {
        let rows = bridge_core::catalog::CATALOG;
        sqlx::query(SYNC_CATALOG)
            .bind(rows.iter().map(|s| s.name).collect::<Vec<_>>())
            .bind(rows.iter().map(|s| s.unit).collect::<Vec<_>>())
            .bind(rows.iter().map(|s| s.ucum).collect::<Vec<_>>())
            .bind(rows.iter().map(|s| s.kind.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|s| s.min).collect::<Vec<_>>())
            .bind(rows.iter().map(|s| s.max).collect::<Vec<_>>())
            .bind(rows.iter().map(|s| s.loinc).collect::<Vec<_>>())
            .bind(
                rows.iter()
                    .map(|s| s.metric.loinc_note())
                    .collect::<Vec<_>>(),
            )
            .bind(rows.iter().map(|s| s.description).collect::<Vec<_>>())
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(SinkError::query("sync the metric catalog"))
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
    /// collapse rules. Readings PostgreSQL would reject, or whose value is implausible,
    /// are dropped and counted. Returns the counts and every change the table made.
    pub async fn write(&self, batch: &Batch) -> Result<Written, SinkError> {
        self.write_then(batch, |_| async { Ok(()) }).await
    }

    /// [`write`](Self::write), calling `before_commit` with the changes after every
    /// statement ran and before the commit; its error rolls the batch back (a transient
    /// [`SinkError::BeforeCommit`]).
    ///
    /// The changelog is published here: a publish that fails leaves the table unchanged,
    /// so the redelivered batch makes (and publishes) the same changes again, and the
    /// rows stay locked until their changes are acknowledged, so two writers of one
    /// document, on any replica, publish in the order they commit.
    #[instrument(skip_all, fields(
        readings = batch.readings.len(),
        tombstones = batch.tombstones.len(),
        account_events = batch.account_events.len(),
    ))]
    pub async fn write_then<F, Fut>(
        &self,
        batch: &Batch,
        before_commit: F,
    ) -> Result<Written, SinkError>
    where
        F: FnOnce(&Written) -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let plan = Plan::new(batch);
        let mut written = Written {
            stats: plan.stats,
            changes: Vec::new(),
        };
        if let Some(metrics) = &self.metrics {
            for r in &plan.implausible {
                metrics.implausible(&r.vendor, r.metric.as_str());
            }
        }
        if plan.steps.is_empty() && plan.events.event_id.is_empty() {
            before_commit(&written)
                .await
                .map_err(SinkError::BeforeCommit)?;
            return Ok(written);
        }
        let stats = &mut written.stats;
        let changes = &mut written.changes;

        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(SinkError::query("begin a transaction"))?;
        for step in plan.steps {
            match step {
                Step::Apply(pass) => {
                    let sent = pass.len() as u64;
                    let docs: Vec<DocRow> = sqlx::query_as(ACCEPT_VERSIONS)
                        .bind(&pass.docs.user_id)
                        .bind(&pass.docs.vendor)
                        .bind(&pass.docs.source_record_id)
                        .bind(&pass.docs.source)
                        .bind(&pass.docs.ordering)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(SinkError::query("accept document versions"))?;
                    let Some(mut accepted) = pass.accepted(&docs, &batch.readings, true) else {
                        stats.unchanged += sent;
                        continue;
                    };
                    if !accepted.fresh.is_empty() {
                        // Readings of documents this pass created are bulk-loaded with COPY,
                        // without conflict handling: no rows can exist for a document
                        // without its version row. Should some anyway (written around the
                        // processor), the load fails and the pass runs again the general way.
                        sqlx::query("SAVEPOINT created_documents")
                            .execute(&mut *tx)
                            .await
                            .map_err(SinkError::query("set a savepoint"))?;
                        let fresh = accepted.fresh.iter().map(|&i| &batch.readings[i]);
                        match copy_in(&mut tx, fresh).await {
                            Ok(_) => {}
                            Err(e) if is_identity_conflict(&e) => {
                                warn!(
                                    message = "Readings exist for documents without a version row; \
                                               applying them with conflict handling.",
                                    error = %e
                                );
                                sqlx::query("ROLLBACK TO SAVEPOINT created_documents")
                                    .execute(&mut *tx)
                                    .await
                                    .map_err(SinkError::query("roll back to a savepoint"))?;
                                accepted = pass
                                    .accepted(&docs, &batch.readings, false)
                                    .unwrap_or_else(|| unreachable!("accepted before"));
                            }
                            Err(e) => {
                                return Err(SinkError::query("load readings of new documents")(e));
                            }
                        }
                    }
                    // Only documents that had a stored version can have rows to replace.
                    let rows = if accepted.stored.user_id.is_empty() {
                        Vec::new()
                    } else {
                        apply(&mut tx, &accepted)
                            .await
                            .map_err(SinkError::query("apply document versions"))?
                    };
                    let mut upserted = accepted.fresh.len() as u64;
                    changes.extend(accepted.fresh.iter().map(|&i| Change::Upsert {
                        reading: batch.readings[i].clone(),
                        envelope: batch.envelope_of(i),
                    }));
                    for row in rows {
                        if row.upserted {
                            upserted += 1;
                            if let Some(&i) = accepted.index.get(&row.key_ref()) {
                                changes.push(Change::Upsert {
                                    reading: batch.readings[i].clone(),
                                    envelope: batch.envelope_of(i),
                                });
                            }
                        } else {
                            stats.replaced += 1;
                            changes.push(Change::Delete(row.into_key()));
                        }
                    }
                    stats.upserted += upserted;
                    stats.unchanged += sent.saturating_sub(upserted);
                }
                Step::Delete(columns) => {
                    let rows: Vec<KeyRow> = sqlx::query_as(DELETE_RECORDS)
                        .bind(columns.user_id)
                        .bind(columns.vendor)
                        .bind(columns.source_record_id)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(SinkError::query("delete tombstoned readings"))?;
                    stats.deleted += rows.len() as u64;
                    changes.extend(rows.into_iter().map(|r| Change::Delete(key_of(r))));
                }
                Step::DeleteRanges(columns) => {
                    let keys = columns
                        .run(&mut tx)
                        .await
                        .map_err(SinkError::query("delete readings in ranges"))?;
                    stats.deleted += keys.len() as u64;
                    changes.extend(keys.into_iter().map(Change::Delete));
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
        // Dropping the transaction on error rolls it back.
        before_commit(&written)
            .await
            .map_err(SinkError::BeforeCommit)?;
        tx.commit()
            .await
            .map_err(SinkError::query("commit a batch"))?;
        Ok(written)
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
        copy_in(&mut conn, readings.iter())
            .await
            .map_err(SinkError::query("COPY readings"))
    }
}

/// Loads `readings` with `COPY … FROM STDIN` on `conn` (inside its transaction, if any),
/// skipping those PostgreSQL would reject. Returns the rows loaded.
async fn copy_in<'r>(
    conn: &mut PgConnection,
    readings: impl Iterator<Item = &'r Reading>,
) -> Result<u64, sqlx::Error> {
    let mut copy = conn.copy_in_raw(COPY_READINGS).await?;
    match send_csv(&mut copy, readings).await {
        Ok(()) => copy.finish().await,
        Err(error) => {
            // Best effort: the connection may already be gone, and the send error is the
            // one worth reporting.
            let _ = copy.abort("sending COPY data failed").await;
            Err(error)
        }
    }
}

async fn send_csv<'r>(
    copy: &mut PgCopyIn<&mut PgConnection>,
    readings: impl Iterator<Item = &'r Reading>,
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
    buf.push(b',');
    if let Some(activity) = r.activity {
        text(buf, activity.as_str());
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

/// A changed row's identity as `apply_versions.sql` and `delete_records.sql` return it.
pub(super) type KeyRow = (
    String,
    String,
    String,
    Option<String>,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
);

/// `apply_versions.sql`'s rows: whether the row was upserted (else removed), and its key.
#[derive(sqlx::FromRow)]
struct ChangeRow {
    upserted: bool,
    user_id: String,
    vendor: String,
    source_record_id: String,
    source: Option<String>,
    metric: String,
    start_time: DateTime<Utc>,
    end_time: DateTime<Utc>,
}

impl ChangeRow {
    fn key_ref(&self) -> KeyRef<'_> {
        (
            &self.user_id,
            &self.vendor,
            &self.source_record_id,
            self.source.as_deref(),
            &self.metric,
            self.start_time.timestamp_micros(),
            self.end_time.timestamp_micros(),
        )
    }

    fn into_key(self) -> ReadingKey {
        key_of((
            self.user_id,
            self.vendor,
            self.source_record_id,
            self.source,
            self.metric,
            self.start_time,
            self.end_time,
        ))
    }
}

/// A document `accept_versions.sql` accepted, and whether it created it.
type DocRow = (String, String, String, Option<String>, bool);

pub(super) fn key_of(
    (user_id, vendor, source_record_id, source, metric, start, end): KeyRow,
) -> ReadingKey {
    ReadingKey {
        user_id,
        vendor,
        source_record_id,
        source,
        metric,
        start_micros: start.timestamp_micros(),
        end_micros: end.timestamp_micros(),
    }
}

/// The statements one batch turns into, in execution order.
struct Plan<'a> {
    steps: Vec<Step<'a>>,
    events: EventColumns<'a>,
    /// `collapsed`, `rejected` and `implausible`, known before any SQL runs.
    stats: WriteStats,
    /// Readings dropped as implausible, for the metric.
    implausible: Vec<&'a Reading>,
}

enum Step<'a> {
    Apply(Box<Pass<'a>>),
    Delete(TombstoneColumns<'a>),
    DeleteRanges(RangeColumns<'a>),
}

/// A document's identity, as stored.
type DocKey<'a> = (&'a str, &'a str, &'a str, Option<&'a str>);

/// One version of one document: the readings one envelope carries for it.
struct Version<'a> {
    doc: DocKey<'a>,
    ordering: Option<i64>,
    /// Indices into the batch's readings; at most one per identity (the last one).
    readings: Vec<usize>,
}

/// What a segment's versions of one document reduce to, as indices into its versions.
struct Slot {
    /// The last version without `ordering`: from it on, the outcome no longer depends
    /// on the stored document.
    unanchored: Option<usize>,
    /// What applying the versions in order leaves.
    current: usize,
}

/// Whether a version with `new` ordering replaces a document holding `stored`; mirrors
/// the gate in `accept_versions.sql`.
fn replaces(stored: Option<i64>, new: Option<i64>) -> bool {
    match (stored, new) {
        (Some(stored), Some(new)) => new >= stored,
        _ => true,
    }
}

/// Logs and reports a reading whose value is outside its metric's plausible range.
fn implausible(r: &Reading) -> bool {
    if is_plausible(r) {
        return false;
    }
    let range = plausible::range(r.metric);
    warn!(
        message = "Implausible value is not a reading; dropped.",
        vendor = %r.vendor,
        metric = %r.metric,
        value = r.value,
        min = range.start(),
        max = range.end(),
        user_id = %r.user_id,
        source_record_id = %r.source_record_id,
    );
    true
}

impl<'a> Plan<'a> {
    fn new(batch: &'a Batch) -> Self {
        let mut plan = Plan {
            steps: Vec::new(),
            events: EventColumns::default(),
            stats: WriteStats::default(),
            implausible: Vec::new(),
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

        let mut ranges: Vec<(usize, &RangeDeletion)> = batch
            .range_deletions
            .iter()
            .map(|(position, d)| ((*position).min(readings.len()), d))
            .collect();
        ranges.sort_by_key(|(position, _)| *position);

        let mut segment_start = 0;
        let (mut i, mut j) = (0, 0);
        while i < tombstones.len() || j < ranges.len() {
            let position = match (tombstones.get(i), ranges.get(j)) {
                (Some(t), Some(r)) => t.0.min(r.0),
                (Some(t), None) => t.0,
                (None, Some(r)) => r.0,
                (None, None) => break,
            };
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
            let mut spans = RangeColumns::default();
            while let Some(&(_, d)) = ranges.get(j).filter(|(p, _)| *p == position) {
                if !spans.push(d) {
                    plan.stats.rejected += 1;
                }
                j += 1;
            }
            if !deletes.user_id.is_empty() || !spans.is_empty() {
                plan.push_segment(batch, segment_start..position);
                if !deletes.user_id.is_empty() {
                    plan.steps.push(Step::Delete(deletes));
                }
                if !spans.is_empty() {
                    plan.steps.push(Step::DeleteRanges(spans));
                }
                segment_start = position;
            }
        }
        plan.push_segment(batch, segment_start..readings.len());

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

    /// Collapses one tombstone-free run of readings into document versions, and those
    /// into at most two passes of `apply_versions.sql`.
    fn push_segment(&mut self, batch: &'a Batch, segment: std::ops::Range<usize>) {
        let readings = &batch.readings;
        // 1. Versions: per envelope, the readings of each document. Within a version the
        // last reading of an identity wins.
        let mut versions: Vec<Version<'a>> = Vec::new();
        let mut open: HashMap<DocKey<'a>, usize> = HashMap::new();
        let mut identities: HashMap<(usize, Key), usize> = HashMap::new();
        let mut envelope = usize::MAX;
        let mut valid = 0u64;
        for index in segment {
            let r = &readings[index];
            if reject_reading(r) {
                self.stats.rejected += 1;
                continue;
            }
            let e = batch.envelope_of(index);
            if e != envelope {
                envelope = e;
                open.clear();
            }
            let doc = (
                r.user_id.as_str(),
                r.vendor.as_str(),
                r.source_record_id.as_str(),
                r.source.as_deref(),
            );
            let v = *open.entry(doc).or_insert_with(|| {
                versions.push(Version {
                    doc,
                    ordering: r.ordering,
                    readings: Vec::new(),
                });
                versions.len() - 1
            });
            // The version stays (it still replaces the document's set) without the value.
            if implausible(r) {
                self.stats.implausible += 1;
                self.implausible.push(r);
                continue;
            }
            valid += 1;
            let key = (
                r.metric.as_str(),
                r.start_time.timestamp_micros(),
                r.end_time.timestamp_micros(),
            );
            match identities.get(&(v, key)) {
                Some(&at) => versions[v].readings[at] = index,
                None => {
                    identities.insert((v, key), versions[v].readings.len());
                    versions[v].readings.push(index);
                }
            }
        }

        // 2. Per document, what applying its versions in order leaves. A BTreeMap sends
        // documents in key order: concurrent batches touching the same documents then
        // lock them in the same order and cannot deadlock each other.
        let mut slots: BTreeMap<DocKey<'a>, Slot> = BTreeMap::new();
        for (v, version) in versions.iter().enumerate() {
            let unanchored = version.ordering.is_none().then_some(v);
            slots
                .entry(version.doc)
                .and_modify(|slot| {
                    if version.ordering.is_none() {
                        *slot = Slot {
                            unanchored,
                            current: v,
                        };
                    } else if replaces(versions[slot.current].ordering, version.ordering) {
                        slot.current = v;
                    }
                })
                .or_insert(Slot {
                    unanchored,
                    current: v,
                });
        }

        let mut first = Pass::default();
        let mut second = Pass::default();
        for slot in slots.values() {
            match slot.unanchored {
                // The stored version could be newer than `current` and block it, but in
                // order the unanchored version would have replaced the stored one and
                // `current` then replaced that: write both, in that order.
                Some(unanchored) if unanchored != slot.current => {
                    first.push(&versions[unanchored]);
                    second.push(&versions[slot.current]);
                }
                _ => first.push(&versions[slot.current]),
            }
        }
        self.stats.collapsed += valid - (first.len() + second.len()) as u64;
        for pass in [first, second] {
            if !pass.docs.user_id.is_empty() {
                self.steps.push(Step::Apply(Box::new(pass)));
            }
        }
    }
}

/// Identity of a reading within its document, with times as stored (microseconds).
type Key = (&'static str, i64, i64);

/// One execution of `accept_versions.sql`, then of `apply_versions.sql` for the versions
/// it accepted: at most one version per document.
#[derive(Default)]
struct Pass<'a> {
    docs: DocColumns<'a>,
    /// Per document, in `docs` order, its version's readings: a range of `indices`.
    spans: Vec<std::ops::Range<usize>>,
    /// Indices into the batch's readings.
    indices: Vec<usize>,
}

/// A reading's identity borrowed from the batch, times as stored (microseconds): how a
/// returned row finds the reading it wrote without allocating a [`ReadingKey`] per reading.
type KeyRef<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Option<&'a str>,
    &'a str,
    i64,
    i64,
);

/// The accepted part of a [`Pass`]: what `apply_versions.sql` binds, and how its rows
/// map back to the batch.
struct Accepted<'a> {
    /// Accepted documents that had a stored version, whose rows may go stale ($1..$4).
    stored: DocColumns<'a>,
    /// The readings of those documents ($5..$15).
    readings: ReadingColumns<'a>,
    /// Batch indices of the readings of documents this pass created: all of them are
    /// loaded with COPY, none goes through `apply_versions.sql`.
    fresh: Vec<usize>,
    /// Identity of each reading of a stored document to its batch index, to turn
    /// returned rows into changelog records.
    index: HashMap<KeyRef<'a>, usize>,
}

/// A reading's identity as [`KeyRef`].
fn key_ref(r: &Reading) -> KeyRef<'_> {
    (
        r.user_id.as_str(),
        r.vendor.as_str(),
        r.source_record_id.as_str(),
        r.source.as_deref(),
        r.metric.as_str(),
        r.start_time.timestamp_micros(),
        r.end_time.timestamp_micros(),
    )
}

impl<'a> Pass<'a> {
    fn push(&mut self, version: &Version<'a>) {
        self.docs.push(version.doc, version.ordering);
        let start = self.indices.len();
        self.indices.extend_from_slice(&version.readings);
        self.spans.push(start..self.indices.len());
    }

    /// Readings sent with this pass.
    fn len(&self) -> usize {
        self.indices.len()
    }

    /// The versions `accept_versions.sql` accepted (`rows`); `None` when it accepted
    /// none. With `trust_created` false, documents it reports as created are treated
    /// like stored ones.
    fn accepted(
        &self,
        rows: &[DocRow],
        readings: &'a [Reading],
        trust_created: bool,
    ) -> Option<Accepted<'a>> {
        if rows.is_empty() {
            return None;
        }
        let wanted: HashMap<DocKey<'_>, bool> = rows
            .iter()
            .map(|(user_id, vendor, record, source, created)| {
                let key = (
                    user_id.as_str(),
                    vendor.as_str(),
                    record.as_str(),
                    source.as_deref(),
                );
                (key, *created && trust_created)
            })
            .collect();
        let mut accepted = Accepted {
            stored: DocColumns::default(),
            readings: ReadingColumns::default(),
            fresh: Vec::new(),
            index: HashMap::new(),
        };
        for (d, span) in self.spans.iter().enumerate() {
            let doc = self.docs.key(d);
            let Some(&created) = wanted.get(&doc) else {
                continue;
            };
            if !created {
                accepted.stored.push(doc, None);
            }
            for &i in &self.indices[span.clone()] {
                if created {
                    accepted.fresh.push(i);
                } else {
                    let r = &readings[i];
                    accepted.readings.push(r);
                    accepted.index.insert(key_ref(r), i);
                }
            }
        }
        Some(accepted)
    }
}

/// Runs `apply_versions.sql` for `a`.
async fn apply(conn: &mut PgConnection, a: &Accepted<'_>) -> Result<Vec<ChangeRow>, sqlx::Error> {
    let (docs, r) = (&a.stored, &a.readings);
    sqlx::query_as(APPLY_VERSIONS)
        .bind(&docs.user_id)
        .bind(&docs.vendor)
        .bind(&docs.source_record_id)
        .bind(&docs.source)
        .bind(&r.user_id)
        .bind(&r.vendor)
        .bind(&r.metric)
        .bind(&r.value)
        .bind(&r.unit)
        .bind(&r.start_time)
        .bind(&r.end_time)
        .bind(&r.source_record_id)
        .bind(&r.source)
        .bind(&r.ordering)
        .bind(&r.activity)
        .fetch_all(conn)
        .await
}

/// A unique violation on the readings' identity.
fn is_identity_conflict(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db)
        if db.code().as_deref() == Some("23505")
            && db.constraint() == Some("readings_identity_key"))
}

/// The document columns of `accept_versions.sql` ($1..$5; `apply_versions.sql` binds the
/// first four).
#[derive(Default)]
struct DocColumns<'a> {
    user_id: Vec<&'a str>,
    vendor: Vec<&'a str>,
    source_record_id: Vec<&'a str>,
    source: Vec<Option<&'a str>>,
    ordering: Vec<Option<i64>>,
}

impl<'a> DocColumns<'a> {
    fn push(&mut self, (user_id, vendor, record, source): DocKey<'a>, ordering: Option<i64>) {
        self.user_id.push(user_id);
        self.vendor.push(vendor);
        self.source_record_id.push(record);
        self.source.push(source);
        self.ordering.push(ordering);
    }

    fn key(&self, i: usize) -> DocKey<'a> {
        (
            self.user_id[i],
            self.vendor[i],
            self.source_record_id[i],
            self.source[i],
        )
    }
}

/// The reading columns of `apply_versions.sql` ($5..$15).
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
    activity: Vec<Option<&'static str>>,
}

impl<'a> ReadingColumns<'a> {
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
        self.activity.push(r.activity.map(|a| a.as_str()));
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
            activity: None,
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

    /// One envelope per reading, in order.
    fn envelopes(readings: Vec<Reading>) -> Batch {
        let mut batch = Batch::default();
        for (i, r) in readings.into_iter().enumerate() {
            batch.push(&format!("e{i}"), at(0), message(vec![r], vec![]));
        }
        batch
    }

    fn message(readings: Vec<Reading>, tombstones: Vec<Tombstone>) -> Normalized {
        Normalized {
            readings,
            tombstones,
            ..Normalized::default()
        }
    }

    #[sqlx::test(migrator = "MIGRATOR")]
    async fn upsert_inserts_rows(pool: PgPool) {
        let sink = PgSink::from_pool(pool.clone());
        let mut with_nanos = reading("s1", Metric::StepCount, 0, 1000.0, None);
        with_nanos.source = None;
        with_nanos.start_time += chrono::Duration::nanoseconds(1_500);
        let batch = readings(vec![
            reading("s1", Metric::Distance, 0, 61.5, Some(7)),
            with_nanos.clone(),
        ]);

        let stats = sink.write(&batch).await.unwrap().stats;

        assert_eq!(stats.upserted, 2);
        let mut expected = row(&with_nanos);
        expected.5 = truncate_to_micros(with_nanos.start_time);
        assert_eq!(stored(&pool).await, vec![row(&batch.readings[0]), expected]);
        // Applying the migrations again is a no-op.
        sink.migrate().await.unwrap();
        sink.ping().await.unwrap();
    }

    #[sqlx::test(migrator = "MIGRATOR")]
    async fn activity_is_stored_and_a_changed_activity_is_a_change(pool: PgPool) {
        use crate::model::Activity;
        let sink = PgSink::from_pool(pool.clone());
        let mut run = reading("w1", Metric::Distance, 0, 5000.0, None);
        run.activity = Some(Activity::Running);
        let plain = reading("d1", Metric::StepCount, 0, 10.0, None);

        sink.write(&envelopes(vec![run.clone(), plain.clone()]))
            .await
            .unwrap();
        let activity = |record: &'static str| {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, Option<String>>(
                    "SELECT activity FROM readings WHERE source_record_id = $1",
                )
                .bind(record)
                .fetch_one(&pool)
                .await
                .unwrap()
            }
        };
        assert_eq!(activity("w1").await.as_deref(), Some("running"));
        assert_eq!(activity("d1").await, None);

        // The vendor re-classifies the workout: same value, new activity, one change.
        run.activity = Some(Activity::Walking);
        let written = sink.write(&envelopes(vec![run.clone()])).await.unwrap();
        assert_eq!(written.stats.upserted, 1);
        assert!(
            matches!(&written.changes[..], [Change::Upsert { reading, .. }] if reading.activity == Some(Activity::Walking))
        );
        assert_eq!(activity("w1").await.as_deref(), Some("walking"));
        // The identical copy again changes nothing.
        let again = sink.write(&envelopes(vec![run])).await.unwrap();
        assert_eq!((again.stats.upserted, again.changes.len()), (0, 0));

        // The plain bulk path (the benchmark's ceiling) stores the same column.
        let mut copied = reading("c1", Metric::HeartRate, 0, 61.0, None);
        copied.activity = Some(Activity::Sleep);
        sink.copy_readings(&[copied]).await.unwrap();
        assert_eq!(activity("c1").await.as_deref(), Some("sleep"));
    }

    #[sqlx::test(migrator = "MIGRATOR")]
    async fn the_metric_catalog_table_equals_the_built_in_catalog(pool: PgPool) {
        let sink = PgSink::from_pool(pool.clone());
        sink.migrate().await.unwrap();
        type CatalogRow = (
            String,
            String,
            String,
            String,
            f64,
            f64,
            Option<String>,
            Option<String>,
        );
        let stored: Vec<CatalogRow> = sqlx::query_as(
            "SELECT metric, unit, ucum, kind, min_value, max_value, loinc, loinc_note \
             FROM metric_catalog ORDER BY metric",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        let mut want: Vec<CatalogRow> = bridge_core::catalog::CATALOG
            .iter()
            .map(|s| {
                (
                    s.name.into(),
                    s.unit.into(),
                    s.ucum.into(),
                    s.kind.as_str().into(),
                    s.min,
                    s.max,
                    s.loinc.map(str::to_owned),
                    s.metric.loinc_note().map(str::to_owned),
                )
            })
            .collect();
        want.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(stored, want);

        // A drifted row is put right by the next start; an unchanged one is not rewritten.
        sqlx::query("UPDATE metric_catalog SET ucum = 'bogus' WHERE metric = 'heart_rate'")
            .execute(&pool)
            .await
            .unwrap();
        let xmin_before: String =
            sqlx::query_scalar("SELECT xmin::text FROM metric_catalog WHERE metric = 'weight'")
                .fetch_one(&pool)
                .await
                .unwrap();
        sink.migrate().await.unwrap();
        sink.write(&readings(vec![reading(
            "h1",
            Metric::HeartRate,
            0,
            61.0,
            None,
        )]))
        .await
        .unwrap();
        let coded: (String, Option<String>, String) =
            sqlx::query_as("SELECT unit_ucum, loinc, kind FROM readings_coded")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(
            coded,
            ("/min".into(), Some("8867-4".into()), "instant".into())
        );
        let fixed: String =
            sqlx::query_scalar("SELECT ucum FROM metric_catalog WHERE metric = 'heart_rate'")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(fixed, "/min");
        let xmin_after: String =
            sqlx::query_scalar("SELECT xmin::text FROM metric_catalog WHERE metric = 'weight'")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(xmin_before, xmin_after, "an unchanged row was rewritten");
    }

    #[sqlx::test(migrator = "MIGRATOR")]
    async fn same_batch_twice_is_idempotent(pool: PgPool) {
        let sink = PgSink::from_pool(pool.clone());
        let batch = readings(vec![
            reading("s1", Metric::Distance, 0, 61.0, Some(1)),
            reading("s1", Metric::Distance, 60, 62.0, None),
        ]);
        sink.write(&batch).await.unwrap();
        let first = stored(&pool).await;
        let touched: Vec<(DateTime<Utc>,)> = sqlx::query_as("SELECT updated_at FROM readings")
            .fetch_all(&pool)
            .await
            .unwrap();

        let stats = sink.write(&batch).await.unwrap().stats;

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
        let newest = reading("s1", Metric::Distance, 0, 3.0, Some(30));
        let batch = envelopes(vec![
            reading("s1", Metric::Distance, 0, 1.0, Some(10)),
            newest.clone(),
            // Older than what precedes it in the batch: must not win.
            reading("s1", Metric::Distance, 0, 2.0, Some(20)),
        ]);

        let stats = sink.write(&batch).await.unwrap().stats;

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
            Metric::Distance,
            0,
            1.0,
            Some(100),
        )]))
        .await
        .unwrap();
        // One by one: 100, then None replaces it, then 50 replaces the None.
        let last = reading("s1", Metric::Distance, 0, 3.0, Some(50));
        let batch = envelopes(vec![
            reading("s1", Metric::Distance, 0, 2.0, None),
            last.clone(),
        ]);

        sink.write(&batch).await.unwrap();

        assert_eq!(stored(&pool).await, vec![row(&last)]);
    }

    #[sqlx::test(migrator = "MIGRATOR")]
    async fn tombstone_deletes_its_record_across_metrics_only(pool: PgPool) {
        let sink = PgSink::from_pool(pool.clone());
        let mut other_user = reading("s1", Metric::Distance, 0, 9.0, None);
        other_user.user_id = "u2".into();
        let mut other_vendor = reading("s1", Metric::Distance, 0, 8.0, None);
        other_vendor.vendor = "oura".into();
        let kept = reading("s2", Metric::Distance, 120, 70.0, None);
        sink.write(&readings(vec![
            reading("s1", Metric::Distance, 0, 60.0, None),
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
        let stats = sink.write(&batch).await.unwrap().stats;

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
        let recreated = reading("s1", Metric::Distance, 0, 3.0, Some(1));
        let mut batch = Batch::default();
        // Before the tombstone in this batch: removed too, though it has a higher ordering.
        batch.push(
            "e1",
            at(0),
            message(
                vec![reading("s1", Metric::Distance, 0, 2.0, Some(9))],
                vec![],
            ),
        );
        batch.push("e2", at(1), message(vec![], vec![tombstone("s1")]));
        batch.push("e3", at(2), message(vec![recreated.clone()], vec![]));

        let stats = sink.write(&batch).await.unwrap().stats;

        assert_eq!(stored(&pool).await, vec![row(&recreated)]);
        // e1 replaced the earlier version's set (one row), the tombstone removed e1's row.
        assert_eq!((stats.replaced, stats.deleted), (1, 1));
    }

    #[sqlx::test(migrator = "MIGRATOR")]
    async fn invalid_readings_are_rejected_and_counted(pool: PgPool) {
        let sink = PgSink::from_pool(pool.clone());
        let good = reading("s1", Metric::Distance, 0, 60.0, None);
        let mut inverted = reading("s1", Metric::Distance, 600, 1.0, None);
        inverted.end_time = at(0);
        let mut nul = reading("s\0", Metric::Distance, 1200, 1.0, None);
        nul.source = Some("x\0".into());
        let mut ancient = reading("s1", Metric::Distance, 1800, 1.0, None);
        ancient.start_time = DateTime::from_timestamp(-70_000_000_000, 0).unwrap();
        let batch = readings(vec![
            reading("s1", Metric::Distance, 60, f64::NAN, None),
            reading("s1", Metric::Distance, 120, f64::INFINITY, None),
            reading("s1", Metric::Distance, 180, f64::NEG_INFINITY, None),
            inverted,
            nul,
            ancient,
            good.clone(),
        ]);

        let stats = sink.write(&batch).await.unwrap().stats;
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
            .map(|i| reading("bulk", Metric::Distance, i * 60, i as f64 / 3.0, Some(i)))
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

        assert_eq!(sink.write(&batch).await.unwrap().stats.account_events, 2);
        assert_eq!(sink.write(&batch).await.unwrap().stats.account_events, 0);
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

    /// A message as a vendor would send it: one ordering for the whole payload, a few
    /// documents of two sources, intervals that change between versions, now and then an
    /// implausible value or a deletion.
    fn random_message(rng: &mut Lcg, value: &mut f64) -> Normalized {
        let records = ["a", "b", "c"];
        let sources = [Some("OURA"), Some("GARMIN"), None];
        let metrics = [Metric::HeartRate, Metric::StepCount];
        let mut out = Normalized::default();
        if rng.below(5) == 0 {
            out.tombstones
                .push(tombstone(records[rng.below(3) as usize]));
        }
        let ordering = match rng.below(4) {
            0 => None,
            n => Some(n as i64 * 10 + rng.below(3) as i64),
        };
        for _ in 0..rng.below(5) {
            *value += 1.0;
            let mut r = reading(
                records[rng.below(3) as usize],
                metrics[rng.below(2) as usize],
                rng.below(2) as i64 * 60,
                if rng.below(8) == 0 {
                    900.0
                } else {
                    40.0 + *value
                },
                ordering,
            );
            r.end_time = r.start_time + chrono::Duration::seconds(rng.below(3) as i64 * 60);
            r.source = sources[rng.below(3) as usize].map(str::to_owned);
            out.readings.push(r);
        }
        out
    }

    type OwnedDoc = (String, String, String, Option<String>);

    /// The table as the data contract defines it, computed without PostgreSQL.
    #[derive(Default)]
    struct Model {
        /// Document → (ordering of the version held, its readings by identity).
        docs: BTreeMap<OwnedDoc, (Option<i64>, BTreeMap<ReadingKey, Row>)>,
    }

    impl Model {
        fn apply(&mut self, m: &Normalized) {
            for t in &m.tombstones {
                self.docs.retain(|(u, v, id, _), _| {
                    !(u == &t.user_id && v == &t.vendor && id == &t.source_record_id)
                });
            }
            let mut versions: Vec<(OwnedDoc, Option<i64>, BTreeMap<ReadingKey, Row>)> = Vec::new();
            for r in &m.readings {
                let doc = (
                    r.user_id.clone(),
                    r.vendor.clone(),
                    r.source_record_id.clone(),
                    r.source.clone(),
                );
                let at = match versions.iter().position(|v| v.0 == doc) {
                    Some(at) => at,
                    None => {
                        versions.push((doc, r.ordering, BTreeMap::new()));
                        versions.len() - 1
                    }
                };
                if is_plausible(r) {
                    versions[at].2.insert(r.key(), row(r));
                }
            }
            for (doc, ordering, set) in versions {
                let accepted = self
                    .docs
                    .get(&doc)
                    .is_none_or(|(stored, _)| replaces(*stored, ordering));
                if accepted {
                    self.docs.insert(doc, (ordering, set));
                }
            }
        }

        fn rows(&self) -> Vec<Row> {
            let mut rows: Vec<Row> = self
                .docs
                .values()
                .flat_map(|(_, set)| set.values().cloned())
                .collect();
            rows.sort_by(|a, b| {
                (&a.0, &a.1, &a.2, a.5, a.6, &a.7, &a.8)
                    .cmp(&(&b.0, &b.1, &b.2, b.5, b.6, &b.7, &b.8))
            });
            rows
        }
    }

    /// Folds changelog records into the state a consumer would hold.
    fn fold(state: &mut BTreeMap<ReadingKey, Row>, changes: &[Change]) {
        for c in changes {
            match c {
                Change::Upsert { reading, .. } => {
                    state.insert(reading.key(), row(reading));
                }
                Change::Delete(key) => {
                    state.remove(key);
                }
            }
        }
    }

    fn sorted(state: &BTreeMap<ReadingKey, Row>) -> Vec<Row> {
        let mut rows: Vec<Row> = state.values().cloned().collect();
        rows.sort_by(|a, b| {
            (&a.0, &a.1, &a.2, a.5, a.6, &a.7, &a.8).cmp(&(&b.0, &b.1, &b.2, b.5, b.6, &b.7, &b.8))
        });
        rows
    }

    /// Whatever the batching, the table ends as the reference model says and as if every
    /// message had been written on its own, in order; and folding the changes the sink
    /// reported gives the table, row for row.
    #[sqlx::test(migrator = "MIGRATOR")]
    async fn outcome_matches_the_model_whatever_the_batching(pool: PgPool) {
        let sink = PgSink::from_pool(pool.clone());
        for seed in 0..40 {
            let mut rng = Lcg(seed);
            let mut value = 0.0;
            let initial = random_message(&mut rng, &mut value);
            let messages: Vec<Normalized> = (0..12)
                .map(|_| random_message(&mut rng, &mut value))
                .collect();
            let mut model = Model::default();
            model.apply(&initial);
            for m in &messages {
                model.apply(m);
            }
            let expected = model.rows();
            let reset = || async {
                sqlx::query("TRUNCATE readings, reading_documents")
                    .execute(&pool)
                    .await
                    .unwrap();
                let mut batch = Batch::default();
                batch.push("init", at(0), initial.clone());
                let mut state = BTreeMap::new();
                fold(&mut state, &sink.write(&batch).await.unwrap().changes);
                state
            };

            let mut state = reset().await;
            for m in &messages {
                let mut single = Batch::default();
                single.push("e", at(0), m.clone());
                fold(&mut state, &sink.write(&single).await.unwrap().changes);
            }
            assert_eq!(
                sorted_stored(&pool).await,
                expected,
                "seed {seed}, one by one"
            );
            assert_eq!(
                sorted(&state),
                expected,
                "seed {seed}, changelog one by one"
            );

            let mut state = reset().await;
            let mut whole = Batch::default();
            for (i, m) in messages.iter().enumerate() {
                whole.push(&format!("e{i}"), at(0), m.clone());
            }
            fold(&mut state, &sink.write(&whole).await.unwrap().changes);
            assert_eq!(
                sorted_stored(&pool).await,
                expected,
                "seed {seed}, one batch"
            );
            assert_eq!(sorted(&state), expected, "seed {seed}, changelog one batch");

            let mut state = reset().await;
            for chunk in messages.chunks(1 + seed as usize % 5) {
                let mut batch = Batch::default();
                for (i, m) in chunk.iter().enumerate() {
                    batch.push(&format!("e{i}"), at(0), m.clone());
                }
                fold(&mut state, &sink.write(&batch).await.unwrap().changes);
            }
            assert_eq!(sorted_stored(&pool).await, expected, "seed {seed}, chunks");
            assert_eq!(sorted(&state), expected, "seed {seed}, changelog chunks");
        }
    }

    async fn sorted_stored(pool: &PgPool) -> Vec<Row> {
        let mut rows = stored(pool).await;
        rows.sort_by(|a, b| {
            (&a.0, &a.1, &a.2, a.5, a.6, &a.7, &a.8).cmp(&(&b.0, &b.1, &b.2, b.5, b.6, &b.7, &b.8))
        });
        rows
    }

    #[sqlx::test(migrator = "MIGRATOR")]
    async fn a_day_of_minute_samples_is_loaded_kept_and_replaced_as_one_set(pool: PgPool) {
        let sink = PgSink::from_pool(pool.clone());
        // One document: a day's summary and 1,440 instants, the shape COPY takes in.
        let day = |ordering: i64, bpm: &dyn Fn(i64) -> Option<f64>| {
            let mut rs = vec![reading("d1", Metric::StepCount, 0, 9000.0, Some(ordering))];
            for m in 0..1440 {
                if let Some(v) = bpm(m) {
                    let mut r = reading("d1", Metric::HeartRate, m * 60, v, Some(ordering));
                    r.end_time = r.start_time;
                    rs.push(r);
                }
            }
            let mut batch = Batch::default();
            batch.push("e", at(0), message(rs.clone(), vec![]));
            (batch, rs)
        };
        let (first, rows) = day(1, &|m| Some(50.0 + (m % 60) as f64));
        let written = sink.write(&first).await.unwrap();
        assert_eq!(written.stats.upserted, 1441);
        assert_eq!(written.changes.len(), 1441);
        let mut want: Vec<Row> = rows.iter().map(row).collect();
        want.sort_by(|a, b| (&a.2, a.5).cmp(&(&b.2, b.5)));
        assert_eq!(sorted_stored(&pool).await, want);

        // The identical version again: nothing written, nothing to publish.
        let again = sink.write(&first).await.unwrap();
        assert_eq!((again.stats.upserted, again.stats.unchanged), (0, 1441));
        assert!(again.changes.is_empty());

        // A revision: the first hour gone, the rest 1 bpm higher.
        let (revised, rows) = day(2, &|m| (m >= 60).then_some(51.0 + (m % 60) as f64));
        let written = sink.write(&revised).await.unwrap();
        assert_eq!(written.stats.replaced, 60);
        let deleted: Vec<_> = written
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::Delete(k) => Some((k.start_micros - at(0).timestamp_micros()) / 60_000_000),
                Change::Upsert { .. } => None,
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(deleted, (0..60).collect::<Vec<_>>());
        let mut want: Vec<Row> = rows.iter().map(row).collect();
        want.sort_by(|a, b| (&a.2, a.5).cmp(&(&b.2, b.5)));
        assert_eq!(sorted_stored(&pool).await, want);
    }

    #[sqlx::test(migrator = "MIGRATOR")]
    async fn a_new_version_replaces_its_documents_set(pool: PgPool) {
        let sink = PgSink::from_pool(pool.clone());
        let night = |end: i64, value: f64, ordering: i64| {
            let mut r = reading("sleep-1", Metric::SleepTotal, 0, value, Some(ordering));
            r.end_time = at(end);
            r
        };
        let mut garmin = reading("daily:2025-03-02", Metric::StepCount, 0, 1000.0, Some(1));
        garmin.source = Some("GARMIN".into());
        let mut oura = garmin.clone();
        oura.source = Some("OURA".into());
        oura.value = 2000.0;
        let first = night(25_200, 25_200.0, 100);
        let mut batch = Batch::default();
        batch.push(
            "e1",
            at(0),
            message(vec![first.clone(), garmin.clone()], vec![]),
        );
        batch.push("e2", at(0), message(vec![oura.clone()], vec![]));
        let written = sink.write(&batch).await.unwrap();
        assert_eq!(written.stats.upserted, 3);
        assert_eq!(written.changes.len(), 3);

        // The night synced further: a later end, a new value, one set.
        let second = night(27_000, 27_000.0, 200);
        let written = sink.write(&envelopes(vec![second.clone()])).await.unwrap();
        assert_eq!(
            written.changes,
            vec![
                Change::Delete(first.key()),
                Change::Upsert {
                    reading: second.clone(),
                    envelope: 0
                }
            ]
        );
        assert_eq!(written.stats.replaced, 1);
        let mut expected = vec![row(&second), row(&garmin), row(&oura)];
        expected.sort_by(|a, b| (&a.2, &a.8).cmp(&(&b.2, &b.8)));
        let mut got = stored(&pool).await;
        got.sort_by(|a, b| (&a.2, &a.8).cmp(&(&b.2, &b.8)));
        assert_eq!(got, expected, "both devices kept, one night");

        // An older version arriving last changes nothing and reports nothing.
        let written = sink.write(&envelopes(vec![first.clone()])).await.unwrap();
        assert_eq!(written.changes, vec![]);
        assert_eq!(written.stats.unchanged, 1);
        let mut got = stored(&pool).await;
        got.sort_by(|a, b| (&a.2, &a.8).cmp(&(&b.2, &b.8)));
        assert_eq!(got, expected);
    }

    /// Two writers of one document: the second waits for the first's lock, and must then
    /// replace what the first committed, including rows the first inserted while it
    /// waited. A single statement would not see them (its snapshot predates the wait) and
    /// would leave the first writer's interval beside its own.
    #[sqlx::test(migrator = "MIGRATOR")]
    async fn a_writer_waiting_for_a_document_replaces_what_the_holder_committed(pool: PgPool) {
        let sink = PgSink::from_pool(pool.clone());
        let night = |end: i64, ordering: i64| {
            let mut r = reading("sleep-1", Metric::SleepTotal, 0, end as f64, Some(ordering));
            r.end_time = at(end);
            r
        };
        sink.write(&envelopes(vec![night(3_600, 1)])).await.unwrap();

        // The holder: version 2 (another interval), paused before its commit.
        let (locked_tx, locked) = tokio::sync::oneshot::channel::<()>();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let holder = {
            let sink = sink.clone();
            let batch = envelopes(vec![night(7_200, 2)]);
            tokio::spawn(async move {
                sink.write_then(&batch, |_| async move {
                    let _ = locked_tx.send(());
                    let _ = released.await;
                    Ok(())
                })
                .await
                .unwrap()
            })
        };
        locked.await.unwrap();

        // The waiter: version 3, yet another interval; it blocks on the document's lock.
        let waiter = {
            let sink = sink.clone();
            let batch = envelopes(vec![night(10_800, 3)]);
            tokio::spawn(async move { sink.write(&batch).await.unwrap() })
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            if waiting > 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the second writer never waited for the document's lock"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        release.send(()).unwrap();
        let held = holder.await.unwrap();
        let waited = waiter.await.unwrap();

        assert_eq!(stored(&pool).await, vec![row(&night(10_800, 3))]);
        // Its changes say so too: the holder's row removed, its own written.
        assert_eq!(
            waited.changes,
            vec![
                Change::Delete(night(7_200, 2).key()),
                Change::Upsert {
                    reading: night(10_800, 3),
                    envelope: 0
                }
            ]
        );
        assert_eq!(held.stats.replaced, 1);
    }

    /// Rows written around the processor (a bulk load, a manual fix) have no version row,
    /// so their document looks new. Its next version must still replace them as a set and
    /// report every change: the conflict-free insert for new documents falls back.
    #[sqlx::test(migrator = "MIGRATOR")]
    async fn rows_without_a_version_row_are_still_replaced(pool: PgPool) {
        let sink = PgSink::from_pool(pool.clone());
        let kept = reading("s1", Metric::HeartRate, 0, 60.0, Some(1));
        let stale = reading("s1", Metric::HeartRate, 600, 61.0, Some(1));
        let other = reading("s2", Metric::StepCount, 0, 10.0, Some(1));
        assert_eq!(
            sink.copy_readings(&[kept.clone(), stale.clone()])
                .await
                .unwrap(),
            2
        );
        let revised = Reading {
            value: 62.0,
            ordering: Some(2),
            ..kept.clone()
        };
        let mut batch = Batch::default();
        batch.push("e1", at(0), message(vec![revised.clone()], vec![]));
        batch.push("e2", at(0), message(vec![other.clone()], vec![]));

        let written = sink.write(&batch).await.unwrap();

        let mut want = vec![row(&revised), row(&other)];
        want.sort_by(|a, b| a.7.cmp(&b.7));
        assert_eq!(stored(&pool).await, want);
        assert_eq!(written.stats.upserted, 2);
        assert_eq!(written.stats.replaced, 1);
        let mut changes = written.changes;
        changes.sort_by_key(|c| format!("{c:?}"));
        let mut expected = vec![
            Change::Delete(stale.key()),
            Change::Upsert {
                reading: revised,
                envelope: 0,
            },
            Change::Upsert {
                reading: other,
                envelope: 1,
            },
        ];
        expected.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(changes, expected);
    }

    #[sqlx::test(migrator = "MIGRATOR")]
    async fn implausible_values_are_dropped_and_still_replace(pool: PgPool) {
        let sink = PgSink::from_pool(pool.clone());
        let good = reading("s1", Metric::HeartRate, 0, 60.0, Some(1));
        sink.write(&envelopes(vec![good.clone()])).await.unwrap();
        let mut spo2 = reading("s1", Metric::OxygenSaturation, 0, 150.0, Some(2));
        spo2.value = 150.0;
        let batch = envelopes(vec![]);
        let mut batch = batch;
        batch.push(
            "e",
            at(0),
            message(
                vec![reading("s1", Metric::HeartRate, 0, 900.0, Some(2)), spo2],
                vec![],
            ),
        );
        let written = sink.write(&batch).await.unwrap();
        assert_eq!(written.stats.implausible, 2);
        // The newer version says the value is not a reading: the old one goes, nothing
        // is clamped.
        assert_eq!(written.changes, vec![Change::Delete(good.key())]);
        assert_eq!(stored(&pool).await, vec![]);
    }

    /// Migration 0003 on a database holding rows the code before it wrote: every row is
    /// kept, each document gets its version row, and the next version of a document
    /// replaces the rows it no longer has.
    #[sqlx::test(migrations = false)]
    async fn migration_keeps_rows_written_the_old_way(pool: PgPool) {
        let before = Migrator {
            migrations: std::borrow::Cow::Owned(
                MIGRATOR.iter().filter(|m| m.version < 3).cloned().collect(),
            ),
            ..Migrator::DEFAULT
        };
        before.run(&pool).await.unwrap();
        // The pre-0003 upsert, verbatim in what matters: keyed by interval, not document.
        let old_upsert = "INSERT INTO readings AS r (user_id, vendor, metric, value, unit, \
             start_time, end_time, source_record_id, source, ordering) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::float8[], $5::text[], \
             $6::timestamptz[], $7::timestamptz[], $8::text[], $9::text[], $10::int8[]) \
             ON CONFLICT (user_id, vendor, metric, start_time, end_time) DO UPDATE \
             SET value = EXCLUDED.value, source_record_id = EXCLUDED.source_record_id, \
             source = EXCLUDED.source, ordering = EXCLUDED.ordering";
        // The orphan the issue measured: one Terra night at two intervals; and a daily.
        let t0 = at(0);
        let (e1, e2) = (at(25_200), at(27_000));
        sqlx::query(old_upsert)
            .bind(vec!["u1", "u1", "u1", "u2"])
            .bind(vec!["terra", "terra", "healthkit", "terra"])
            .bind(vec![
                "sleep_total",
                "sleep_total",
                "step_count",
                "sleep_total",
            ])
            .bind(vec![25_200.0, 27_000.0, 1500.0, 3600.0])
            .bind(vec!["s", "s", "count", "s"])
            .bind(vec![t0, t0, t0, t0])
            .bind(vec![e1, e2, t0, e1])
            .bind(vec![
                "night-1",
                "night-1",
                "step_count:2025-03-02",
                "2025-03-01T23:00:00+01:00/2025-03-02T07:00:00+01:00",
            ])
            .bind(vec![Some("OURA"), Some("OURA"), None, Some("GARMIN")])
            .bind(vec![Some(100i64), Some(200), None, Some(5)])
            .execute(&pool)
            .await
            .unwrap();
        let mut old_rows = stored(&pool).await;
        assert_eq!(old_rows.len(), 4);

        PgSink::from_pool(pool.clone()).migrate().await.unwrap();

        // Every row kept; the summary without summary_id renamed to its stable id.
        old_rows[3].7 = "sleep:2025-03-01T23:00:00+01:00".into();
        assert_eq!(stored(&pool).await, old_rows, "every row kept");
        let docs: Vec<(String, String, Option<String>, Option<i64>)> = sqlx::query_as(
            "SELECT vendor, source_record_id, source, ordering FROM reading_documents \
             ORDER BY 1, 2",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(
            docs,
            vec![
                (
                    "healthkit".into(),
                    "step_count:2025-03-02".into(),
                    None,
                    None
                ),
                (
                    "terra".into(),
                    "night-1".into(),
                    Some("OURA".into()),
                    Some(200)
                ),
                (
                    "terra".into(),
                    "sleep:2025-03-01T23:00:00+01:00".into(),
                    Some("GARMIN".into()),
                    Some(5)
                ),
            ]
        );

        // The next version of the night leaves one set; an older one changes nothing.
        let sink = PgSink::from_pool(pool.clone());
        let mut night = reading("night-1", Metric::SleepTotal, 0, 27_600.0, Some(300));
        night.end_time = at(27_600);
        let mut stale = night.clone();
        stale.ordering = Some(150);
        stale.value = 1.0;
        sink.write(&envelopes(vec![night.clone()])).await.unwrap();
        sink.write(&envelopes(vec![stale])).await.unwrap();
        let rows = stored(&pool).await;
        assert_eq!(
            rows,
            vec![old_rows[0].clone(), row(&night), old_rows[3].clone()]
        );
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
            message(vec![reading("a", Metric::Distance, 0, 1.0, None)], vec![]),
        );
        batch.push(
            "e2",
            at(0),
            message(
                vec![reading("b", Metric::Distance, 0, 1.0, None)],
                vec![tombstone("b")],
            ),
        );
        assert_eq!(batch.tombstones, vec![(1, tombstone("b"))]);
        assert_eq!(batch.readings.len(), 2);
        assert!(!batch.is_empty() && Batch::default().is_empty());
    }
}
