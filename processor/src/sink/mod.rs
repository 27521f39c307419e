//! Sinks: where normalized records are made durable.
//!
//! A [`Batch`] is built from consumed messages in offset order and written in one
//! transaction; only after it committed may the consumer store the offsets.

pub mod postgres;
mod range_delete;

use chrono::{DateTime, Utc};

use crate::model::{AccountEvent, Change, Normalized, RangeDeletion, Reading, Tombstone};

pub use postgres::{MIGRATOR, PgSink, SinkError};

/// The records of several consumed messages, in offset order, written as one transaction.
///
/// The readings one envelope carries for one document (same user, vendor,
/// `source_record_id` and `source`) are one *version* of that document; a later version
/// replaces the document's readings as a set when its `ordering` allows. A tombstone
/// removes the readings of its source record written *before* it (in earlier batches or
/// earlier in this one), and a reading of the same record that comes *after* it (the
/// vendor re-created the document) survives. Build batches with [`Batch::push`], which
/// records both the envelope boundaries and that order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Readings in message order.
    pub readings: Vec<Reading>,
    /// Where each pushed envelope's readings start in `readings`, ascending. Empty means
    /// all readings came from one envelope.
    pub envelopes: Vec<usize>,
    /// Tombstones with their position: the number of entries of `readings` that precede
    /// the tombstone. A position beyond `readings.len()` means "after all readings".
    pub tombstones: Vec<(usize, Tombstone)>,
    /// Deletions by time range, positioned like tombstones.
    pub range_deletions: Vec<(usize, RangeDeletion)>,
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
        self.envelopes.push(position);
        self.tombstones
            .extend(normalized.tombstones.into_iter().map(|t| (position, t)));
        self.range_deletions.extend(
            normalized
                .range_deletions
                .into_iter()
                .map(|d| (position, d)),
        );
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

    /// Index of the envelope `reading` (an index into `readings`) came from.
    pub fn envelope_of(&self, reading: usize) -> usize {
        self.envelopes
            .partition_point(|&start| start <= reading)
            .saturating_sub(1)
    }

    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.readings.is_empty()
            && self.tombstones.is_empty()
            && self.range_deletions.is_empty()
            && self.account_events.is_empty()
    }
}

/// What one [`PgSink::write`] did, counted from what PostgreSQL reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Row writes PostgreSQL performed for readings: inserts plus updates that changed a row.
    pub upserted: u64,
    /// Readings sent to PostgreSQL that left the table as it was: identical to the stored
    /// row, or part of a document version older (lower `ordering`) than the stored one.
    pub unchanged: u64,
    /// Readings superseded within the batch: by a later version of their document in the
    /// same batch segment, or by a reading with the same identity in the same version.
    /// They never reached PostgreSQL.
    pub collapsed: u64,
    /// Reading rows removed by tombstones and range deletions.
    pub deleted: u64,
    /// Reading rows removed because a newer version of their document no longer has them
    /// (another interval, a metric gone).
    pub replaced: u64,
    /// Readings dropped because the value lies outside its metric's plausible range
    /// ([`crate::normalize::plausible`]).
    pub implausible: u64,
    /// Account events stored (replays of stored events are not counted).
    pub account_events: u64,
    /// Records refused before SQL because PostgreSQL would reject or misstore them:
    /// non-finite values, `end_time < start_time`, NUL characters in text.
    pub rejected: u64,
}

/// What one [`PgSink::write`] did: the counts, and every change the table made, in the
/// order it made them (the changelog publishes them in this order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Written {
    /// Counts.
    pub stats: WriteStats,
    /// Row changes, in statement order. A key appears at most once per statement, and
    /// statements ran in this order inside the one transaction.
    pub changes: Vec<Change>,
}
