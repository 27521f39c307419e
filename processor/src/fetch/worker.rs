//! The retry task: takes due rows of `parked_notifications`, fetches again, writes and
//! publishes what it got, then deletes the row (or parks it again with backoff).
//!
//! Claims are leases (see `sql/claim_due.sql`), so several replicas can run this task and
//! a crash mid-retry only delays a notification. Writes are the same idempotent upserts
//! as the pipeline's, so a retry that runs twice changes nothing.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::parking::{Claimed, Park, ParkReason};
use super::{Fetch, Outcome};
use crate::metrics::Metrics;
use crate::publish::{Changelog, Provenance};
use crate::sink::Batch;
use crate::sink::postgres::PgSink;

/// How long a claimed row stays hidden from other workers: far above one retry's
/// duration (a few bounded requests), short enough that a crashed worker's rows come
/// back soon.
const LEASE: Duration = Duration::from_secs(300);

/// Rows claimed per poll.
const CLAIM_LIMIT: i64 = 64;

/// What the worker writes to.
pub struct Outputs {
    /// PostgreSQL.
    pub sink: PgSink,
    /// The readings changelog, shared with the pipeline.
    pub changelog: Arc<Changelog>,
}

/// Runs until `shutdown`; every poll interval retries the due parked notifications.
pub async fn run(
    fetch: Arc<Fetch>,
    out: Outputs,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(fetch.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        match fetch.parked.open_counts().await {
            Ok(counts) => metrics.parked_open(&counts),
            Err(error) => {
                tracing::warn!(message = "Parked notifications unreadable; will retry.", %error);
                continue;
            }
        }
        let claimed = match fetch.parked.claim_due(CLAIM_LIMIT, LEASE).await {
            Ok(c) => c,
            Err(error) => {
                tracing::warn!(message = "Claiming parked notifications failed; will retry.", %error);
                continue;
            }
        };
        if claimed.is_empty() {
            continue;
        }
        let concurrency = fetch.concurrency.max(1);
        futures::stream::iter(claimed)
            .for_each_concurrent(concurrency, |c| retry_one(&fetch, &out, &metrics, c))
            .await;
    }
    tracing::info!(message = "Parked-notification retry task stopped.");
}

async fn retry_one(fetch: &Fetch, out: &Outputs, metrics: &Metrics, c: Claimed) {
    let Some(vendor) = fetch.fetcher.vendor_of(&c.vendor) else {
        let park = Park {
            vendor_user_id: String::new(),
            reason: ParkReason::Rejected,
            retry_after: None,
            detail: format!("vendor {:?} is not fetched", c.vendor),
        };
        reschedule(fetch, metrics, &c, &park).await;
        return;
    };
    let outcome = match fetch.fetcher.handle_patiently(vendor, &c.body).await {
        Ok(o) => o,
        Err(error) => {
            // Left claimed: the lease brings it back.
            tracing::warn!(message = "Parked notification retry failed on PostgreSQL.", %error);
            return;
        }
    };
    match outcome {
        Outcome::Ready { normalized, note } => {
            let readings = normalized.readings.clone();
            let tombstones = normalized.tombstones.len() as u64;
            let mut batch = Batch::default();
            batch.push(&c.event_id, c.received_at, normalized);
            // The same path as the pipeline: the changes are published before the commit.
            let prov = Provenance {
                event_id: c.event_id.clone(),
                partition: c.partition,
                offset: c.offset,
                traceparent: None,
            };
            let publish = |written: &crate::sink::Written| {
                let changes: Vec<_> = written
                    .changes
                    .iter()
                    .map(|change| (change.clone(), Some(prov.clone())))
                    .collect();
                async move {
                    out.changelog
                        .publish(&changes)
                        .await
                        .map_err(|e| e.to_string())
                }
            };
            match out.sink.write_then(&batch, publish).await {
                Ok(_) => {}
                // The same rows will be refused every time: close with the reason
                // instead of retrying forever.
                Err(error) if error.is_bad_data() => {
                    tracing::warn!(message = "PostgreSQL refused a parked notification's readings; closing it.", %error, vendor = %c.vendor);
                    let park = Park {
                        vendor_user_id: String::new(),
                        reason: ParkReason::RejectedByDatabase,
                        retry_after: None,
                        detail: error.to_string(),
                    };
                    reschedule(fetch, metrics, &c, &park).await;
                    return;
                }
                Err(error) => {
                    // Rolled back: the lease re-runs the retry.
                    tracing::warn!(message = "Writing a parked notification's readings failed; will retry.", %error);
                    return;
                }
            }
            for r in &readings {
                metrics.readings_written(&r.vendor, r.metric.as_str(), 1);
            }
            metrics.tombstones(tombstones);
            match note {
                Some(park) => reschedule(fetch, metrics, &c, &park).await,
                None => {
                    metrics.parked_retry(vendor.as_str(), "done");
                    if let Err(error) = fetch.parked.unpark(&c.event_id).await {
                        tracing::warn!(message = "Parked row not removed; it will be retried (idempotent).", %error);
                    }
                }
            }
        }
        Outcome::Park(park) => reschedule(fetch, metrics, &c, &park).await,
        Outcome::Reject { reason, detail } => {
            let park = Park {
                vendor_user_id: String::new(),
                reason: ParkReason::Rejected,
                retry_after: None,
                detail: format!("{reason}: {detail}"),
            };
            reschedule(fetch, metrics, &c, &park).await;
        }
    }
}

async fn reschedule(fetch: &Fetch, metrics: &Metrics, c: &Claimed, park: &Park) {
    let delay = fetch.backoff.delay(park, c.attempts);
    metrics.parked(&c.vendor, park.reason.as_str());
    metrics.parked_retry(
        &c.vendor,
        if park.reason.is_closed() {
            "closed"
        } else {
            "parked_again"
        },
    );
    if let Err(error) = fetch.parked.reschedule(&c.event_id, park, delay).await {
        tracing::warn!(message = "Parked row not updated; the lease brings it back.", %error);
    }
}
