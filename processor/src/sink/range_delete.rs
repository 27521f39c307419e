//! Deletions by time range ([`RangeDeletion`]): the vendor names a user, a data type
//! and an interval instead of a document (Google Health API `DELETE`). One statement per
//! batch position, like tombstones, so readings written after it in the batch survive.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};

use crate::model::{RangeDeletion, ReadingKey};

const DELETE_RANGES: &str = include_str!("delete_ranges.sql");

/// The deletions at one batch position, one row per (deletion, metric).
#[derive(Debug, Default)]
pub(crate) struct RangeColumns<'a> {
    user_id: Vec<&'a str>,
    vendor: Vec<&'a str>,
    metric: Vec<&'static str>,
    start: Vec<DateTime<Utc>>,
    end: Vec<DateTime<Utc>>,
}

impl<'a> RangeColumns<'a> {
    /// Adds a deletion; `false` (nothing added) when PostgreSQL could not store its text
    /// (a NUL) or the range is empty, so it can match no row.
    pub(crate) fn push(&mut self, d: &'a RangeDeletion) -> bool {
        if d.user_id.contains('\0') || d.vendor.contains('\0') || d.end <= d.start {
            return false;
        }
        for metric in &d.metrics {
            self.user_id.push(&d.user_id);
            self.vendor.push(&d.vendor);
            self.metric.push(metric.as_str());
            self.start.push(d.start);
            self.end.push(d.end);
        }
        true
    }

    /// True when no row would be deleted.
    pub(crate) fn is_empty(&self) -> bool {
        self.user_id.is_empty()
    }

    /// Runs the deletion; returns the removed readings' keys.
    pub(crate) async fn run(
        self,
        tx: &mut Transaction<'_, Postgres>,
    ) -> Result<Vec<ReadingKey>, sqlx::Error> {
        let rows: Vec<super::postgres::KeyRow> = sqlx::query_as(DELETE_RANGES)
            .bind(self.user_id)
            .bind(self.vendor)
            .bind(self.metric)
            .bind(self.start)
            .bind(self.end)
            .fetch_all(&mut **tx)
            .await?;
        Ok(rows.into_iter().map(super::postgres::key_of).collect())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use sqlx::PgPool;

    use crate::model::{Change, Metric, Normalized, Reading};
    use crate::sink::{Batch, MIGRATOR, PgSink};

    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_735_714_800 + secs, 0).unwrap()
    }

    fn reading(user: &str, metric: Metric, start: i64) -> Reading {
        Reading {
            user_id: user.into(),
            vendor: "google_health".into(),
            metric,
            // Plausible for every metric used here (a heart rate of 10 would be dropped).
            value: 60.0,
            start_time: at(start),
            end_time: at(start + 60),
            source_record_id: format!("{metric}/{start}"),
            source: Some("Pixel Watch 3".into()),
            ordering: None,
            activity: None,
        }
    }

    fn deletion(user: &str, metrics: Vec<Metric>, start: i64, end: i64) -> RangeDeletion {
        RangeDeletion {
            user_id: user.into(),
            vendor: "google_health".into(),
            metrics,
            start: at(start),
            end: at(end),
        }
    }

    async fn stored(pool: &PgPool) -> BTreeSet<(String, String, String, i64)> {
        let rows: Vec<(String, String, String, DateTime<Utc>)> =
            sqlx::query_as("SELECT user_id, vendor, metric, start_time FROM readings")
                .fetch_all(pool)
                .await
                .unwrap();
        rows.into_iter()
            .map(|(u, v, m, s)| (u, v, m, s.timestamp() - at(0).timestamp()))
            .collect()
    }

    fn row(user: &str, vendor: &str, metric: Metric, start: i64) -> (String, String, String, i64) {
        (user.into(), vendor.into(), metric.as_str().into(), start)
    }

    #[sqlx::test(migrator = "MIGRATOR")]
    async fn removes_exactly_the_users_metrics_in_the_range(pool: PgPool) {
        let sink = PgSink::from_pool(pool.clone());
        let mut other_vendor = reading("u1", Metric::StepCount, 600);
        other_vendor.vendor = "terra".into();
        let mut batch = Batch::default();
        batch.push(
            "e0",
            at(0),
            Normalized {
                readings: vec![
                    reading("u1", Metric::StepCount, -60), // before the range
                    reading("u1", Metric::StepCount, 0),   // at its start: inclusive
                    reading("u1", Metric::StepCount, 600),
                    reading("u1", Metric::StepCount, 1800), // at its end: exclusive
                    reading("u1", Metric::HeartRate, 600),  // another metric
                    reading("u2", Metric::StepCount, 600),  // another user
                    other_vendor,
                ],
                ..Normalized::default()
            },
        );
        sink.write(&batch).await.unwrap();

        let mut batch = Batch::default();
        batch.push(
            "e1",
            at(0),
            Normalized {
                range_deletions: vec![deletion("u1", vec![Metric::StepCount], 0, 1800)],
                ..Normalized::default()
            },
        );
        let written = sink.write(&batch).await.unwrap();
        assert_eq!(written.stats.deleted, 2);
        let deleted: BTreeSet<i64> = written
            .changes
            .iter()
            .map(|c| match c {
                Change::Delete(k) => {
                    assert_eq!(
                        (k.user_id.as_str(), k.metric.as_str()),
                        ("u1", "step_count")
                    );
                    (k.start_micros - at(0).timestamp_micros()) / 1_000_000
                }
                other => panic!("unexpected change {other:?}"),
            })
            .collect();
        assert_eq!(deleted, BTreeSet::from([0, 600]));
        assert_eq!(
            stored(&pool).await,
            BTreeSet::from([
                row("u1", "google_health", Metric::StepCount, -60),
                row("u1", "google_health", Metric::StepCount, 1800),
                row("u1", "google_health", Metric::HeartRate, 600),
                row("u2", "google_health", Metric::StepCount, 600),
                row("u1", "terra", Metric::StepCount, 600),
            ])
        );
    }

    #[sqlx::test(migrator = "MIGRATOR")]
    async fn a_later_envelope_in_the_same_batch_survives_the_deletion(pool: PgPool) {
        let sink = PgSink::from_pool(pool.clone());
        let mut batch = Batch::default();
        batch.push(
            "e0",
            at(0),
            Normalized {
                readings: vec![reading("u1", Metric::StepCount, 60)],
                ..Normalized::default()
            },
        );
        batch.push(
            "e1",
            at(0),
            Normalized {
                range_deletions: vec![deletion("u1", vec![Metric::StepCount], 0, 600)],
                ..Normalized::default()
            },
        );
        batch.push(
            "e2",
            at(0),
            Normalized {
                readings: vec![reading("u1", Metric::StepCount, 120)],
                ..Normalized::default()
            },
        );
        let written = sink.write(&batch).await.unwrap();
        assert_eq!(written.stats.deleted, 1);
        assert_eq!(
            stored(&pool).await,
            BTreeSet::from([row("u1", "google_health", Metric::StepCount, 120)])
        );
    }

    #[test]
    fn empty_or_unstorable_ranges_are_not_sent() {
        let empty = deletion("u1", vec![Metric::StepCount], 10, 10);
        let nul = deletion("u\0", vec![Metric::StepCount], 0, 10);
        let two = deletion("u1", vec![Metric::StepCount, Metric::Distance], 0, 10);
        let mut c = RangeColumns::default();
        assert!(!c.push(&empty));
        assert!(!c.push(&nul));
        assert!(c.is_empty());
        assert!(c.push(&two));
        assert_eq!(c.metric, ["step_count", "distance"]);
    }
}
