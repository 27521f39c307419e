//! The canonical data contract: one record per measure, canonical units.
//!
//! Every metric has exactly one unit ([`Metric::unit`]); normalizers convert into it.
//! The metrics themselves are data: [`crate::catalog`].
//! Vendor scores share the unit `score` and are never comparable across vendors.

use chrono::{DateTime, Utc};

pub use crate::catalog::{Activity, Kind, Metric, SleepStage};

/// One canonical measurement. `start_time == end_time` for instants.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Our user id (see the README's user-id rules per vendor).
    pub user_id: String,
    /// Vendor the data came through (`terra`, `healthkit`, `oura`, `whoop`, …).
    pub vendor: String,
    /// What was measured.
    pub metric: Metric,
    /// Value in `metric.unit()`.
    pub value: f64,
    /// Start of the interval, or the instant.
    pub start_time: DateTime<Utc>,
    /// End of the interval; equals `start_time` for instants.
    pub end_time: DateTime<Utc>,
    /// The vendor's id of the document this came from (summary id, sleep id, workout id…).
    pub source_record_id: String,
    /// Provider or device that produced it, when the vendor says (`OURA` via Terra,
    /// `Apple Watch`). Part of the document's identity.
    pub source: Option<String>,
    /// Vendor recency of the document version (Terra `x-terra-ordering-timestamp`, ms):
    /// a version replaces the document's rows only when its ordering is at least the
    /// stored version's, or when either has none.
    pub ordering: Option<i64>,
    /// The session this reading belongs to, by its type: set on every reading of a workout
    /// (its sport) or sleep document (`sleep`), `None` for readings outside a session. Not
    /// part of the identity; the session's readings share `source_record_id`.
    pub activity: Option<Activity>,
}

/// What identifies a reading: its source document (user, vendor, vendor document id,
/// provider/device) plus what was measured over which interval. The changelog topic is
/// keyed by it; `readings_identity_key` is the same columns.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReadingKey {
    /// Our user id.
    pub user_id: String,
    /// Vendor.
    pub vendor: String,
    /// The vendor's document id.
    pub source_record_id: String,
    /// Provider or device, when the vendor names one.
    pub source: Option<String>,
    /// Canonical metric name ([`Metric::as_str`]).
    pub metric: String,
    /// Start of the interval, microseconds since the Unix epoch (as stored).
    pub start_micros: i64,
    /// End of the interval, microseconds since the Unix epoch (as stored).
    pub end_micros: i64,
}

impl Reading {
    /// This reading's identity, with times truncated to microseconds as PostgreSQL stores them.
    pub fn key(&self) -> ReadingKey {
        ReadingKey {
            user_id: self.user_id.clone(),
            vendor: self.vendor.clone(),
            source_record_id: self.source_record_id.clone(),
            source: self.source.clone(),
            metric: self.metric.as_str().to_owned(),
            start_micros: self.start_time.timestamp_micros(),
            end_micros: self.end_time.timestamp_micros(),
        }
    }
}

/// One change the `readings` table made, as the changelog publishes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A row was inserted or its value changed; `reading` is the row now stored.
    /// `envelope` is the position, in its write batch (`processor::sink::Batch`), of the envelope
    /// the reading came from (0 for batches not built with `push`).
    Upsert {
        /// The stored reading.
        reading: Reading,
        /// Index of the originating envelope within the batch.
        envelope: usize,
    },
    /// A row was removed: a newer version of its document no longer has it, or the vendor
    /// deleted the document.
    Delete(ReadingKey),
}

impl Change {
    /// The user whose row changed.
    pub fn user_id(&self) -> &str {
        match self {
            Change::Upsert { reading, .. } => &reading.user_id,
            Change::Delete(key) => &key.user_id,
        }
    }
}

/// A deletion named by the vendor: every reading of that source record goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    /// Our user id.
    pub user_id: String,
    /// Vendor.
    pub vendor: String,
    /// The vendor's id of the deleted document.
    pub source_record_id: String,
}

/// An account-level event (Terra auth/deauth/reauth…): no readings, recorded for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountEvent {
    /// Our user id, when known.
    pub user_id: Option<String>,
    /// Vendor.
    pub vendor: String,
    /// Event kind as the vendor names it (`auth`, `deauth`, `user_reauth`, …).
    pub kind: String,
    /// Vendor's user id.
    pub vendor_user_id: Option<String>,
}

/// A deletion named by time instead of document (Google Health API `DELETE`): every
/// reading of the user, vendor and metrics whose `start_time` lies in `[start, end)` goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeDeletion {
    /// Our user id.
    pub user_id: String,
    /// Vendor.
    pub vendor: String,
    /// The metrics removed.
    pub metrics: Vec<Metric>,
    /// Inclusive start of the `start_time` range.
    pub start: DateTime<Utc>,
    /// Exclusive end of the `start_time` range.
    pub end: DateTime<Utc>,
}

/// Everything one raw webhook turns into.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Normalized {
    /// Readings to upsert and publish.
    pub readings: Vec<Reading>,
    /// Records the vendor deleted.
    pub tombstones: Vec<Tombstone>,
    /// Time ranges the vendor deleted. Applied where tombstones are: before the
    /// envelope's readings.
    pub range_deletions: Vec<RangeDeletion>,
    /// Account events.
    pub account_events: Vec<AccountEvent>,
    /// Vendor metric or field names the payload carried and no mapping exists for (HAE
    /// metric names, unknown sports as `activity:<name>`), for
    /// `processor_unmapped_total{vendor,name}`: coverage gaps are visible in production,
    /// not only in fixtures.
    pub unmapped: Vec<String>,
}
