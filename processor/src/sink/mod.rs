//! Sinks: where normalized records are made durable.
//!
//! A [`Batch`] is built from consumed messages in offset order and written in one
//! transaction; only after it committed may the consumer store the offsets.

pub mod postgres;

use chrono::{DateTime, Utc};

use crate::model::{AccountEvent, Normalized, Reading, Tombstone};

pub use postgres::{MIGRATOR, PgSink, SinkError};

/// The records of several consumed messages, in offset order, written as one transaction.
///
/// Order matters only between readings and tombstones: a tombstone removes the readings
/// of its source record written *before* it (in earlier batches or earlier in this one),
/// and a reading of the same record that comes *after* it (the vendor re-created the
/// document) survives. Build batches with [`Batch::push`], which records that order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Readings in message order.
    pub readings: Vec<Reading>,
    /// Tombstones with their position: the number of entries of `readings` that precede
    /// the tombstone. A position beyond `readings.len()` means "after all readings".
    pub tombstones: Vec<(usize, Tombstone)>,
    /// Account events: the id stored as `account_events.event_id` (unique, so replays are
    /// no-ops), the event, and when the edge received it.
    pub account_events: Vec<(String, AccountEvent, DateTime<Utc>)>,
}

impl Batch {
    /// Appends everything one envelope normalized to.
    ///
    /// The envelope's tombstones are placed before its readings: an envelope that both
    /// deletes and re-sends a document means "this is the document now". When an envelope
    /// has several account events, the n-th further one (n ≥ 1) gets the id
    /// `<event_id>/<n>`, deterministic so a replay still collides with the first write.
    pub fn push(&mut self, event_id: &str, received_at: DateTime<Utc>, normalized: Normalized) {
        let position = self.readings.len();
        self.tombstones
            .extend(normalized.tombstones.into_iter().map(|t| (position, t)));
        self.readings.extend(normalized.readings);
        for (n, event) in normalized.account_events.into_iter().enumerate() {
            let id = if n == 0 {
                event_id.to_owned()
            } else {
                format!("{event_id}/{n}")
            };
            self.account_events.push((id, event, received_at));
        }
    }

    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.readings.is_empty() && self.tombstones.is_empty() && self.account_events.is_empty()
    }
}

/// What one [`PgSink::write`] did, counted from what PostgreSQL reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Row writes PostgreSQL performed for readings: inserts plus updates that changed a row.
    pub upserted: u64,
    /// Readings sent to PostgreSQL that left the stored row as it was: identical to it, or
    /// older (lower `ordering`) than it.
    pub unchanged: u64,
    /// Readings superseded by another reading with the same key in the same batch segment;
    /// they never reached PostgreSQL.
    pub collapsed: u64,
    /// Reading rows removed by tombstones.
    pub deleted: u64,
    /// Account events stored (replays of stored events are not counted).
    pub account_events: u64,
    /// Records refused before SQL because PostgreSQL would reject or misstore them:
    /// non-finite values, `end_time < start_time`, NUL characters in text.
    pub rejected: u64,
}
