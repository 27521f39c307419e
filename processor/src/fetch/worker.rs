//! The retry task: takes due rows of `parked_notifications`, fetches again, writes and
//! publishes what it got, then deletes the row (or parks it again with backoff).
//!
//! Claims are leases (see `sql/claim_due.sql`), so several replicas can run this task and
//! a crash mid-retry only delays a notification. Writing goes through the pipeline's own
//! write stage (publish the changes, then commit; PostgreSQL's refusals classified in one
//! place), so a retry that runs twice changes nothing and a row PostgreSQL refuses for
//! its data is closed with that reason instead of coming back forever.

use std::sync::Arc;
use std::time::Duration;

use bridge_core::RawEnvelope;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::parking::{Claimed, Park, ParkReason};
use super::{Fetch, Outcome};
use crate::metrics::Metrics;
use crate::model::Normalized;
use crate::pipeline::{Deadline, Record, State};
use crate::publish::Changelog;
use crate::sink::postgres::PgSink;

/// How long a claimed row stays hidden from other workers: far above one retry's
/// duration (a few bounded requests), short enough that a crashed worker's rows come
/// back soon.
const LEASE: Duration = Duration::from_secs(300);

/// Rows claimed per poll.
const CLAIM_LIMIT: i64 = 64;

/// Longest one retry keeps retrying a PostgreSQL or Kafka outage while writing: well
/// inside [`LEASE`], so no other worker takes the row over meanwhile. After it the row
/// stays claimed and the lease brings it back.
const WRITE_TIME: Duration = Duration::from_secs(60);

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
            .for_each_concurrent(concurrency, |c| {
                retry_one(&fetch, &out, &metrics, c, &shutdown)
            })
            .await;
    }
    tracing::info!(message = "Parked-notification retry task stopped.");
}

async fn retry_one(
    fetch: &Fetch,
    out: &Outputs,
    metrics: &Metrics,
    c: Claimed,
    shutdown: &CancellationToken,
) {
    let Some(vendor) = fetch.fetcher.vendor_of(&c.vendor) else {
        let detail = format!("vendor {:?} is not fetched", c.vendor);
        reschedule(fetch, metrics, &c, &closed(ParkReason::Rejected, detail)).await;
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
            write_ready(fetch, out, metrics, &c, normalized, note, shutdown).await;
        }
        Outcome::Park(park) => reschedule(fetch, metrics, &c, &park).await,
        Outcome::Reject { reason, detail } => {
            let park = closed(ParkReason::Rejected, format!("{reason}: {detail}"));
            reschedule(fetch, metrics, &c, &park).await;
        }
    }
}

/// Writes what the retry fetched through the pipeline's write stage, then removes the
/// row, parks it again (`note`) or closes it with PostgreSQL's refusal.
async fn write_ready(
    fetch: &Fetch,
    out: &Outputs,
    metrics: &Metrics,
    c: &Claimed,
    normalized: Normalized,
    note: Option<Park>,
    shutdown: &CancellationToken,
) {
    let mut records = [Record::replayed(
        c.partition,
        c.offset,
        envelope(c),
        normalized,
        note,
    )];
    let deadline = Deadline::for_batch(shutdown, Duration::ZERO, WRITE_TIME);
    let sink = &out.sink;
    let changelog = out.changelog.as_ref();
    let write = crate::pipeline::write(sink, changelog, metrics, &mut records, &deadline);
    if let Err(error) = write.await {
        // Rolled back: the lease re-runs the retry.
        tracing::warn!(message = "Writing a parked notification's readings failed; will retry.", %error);
        return;
    }
    let [record] = records;
    match record.state {
        State::Written {
            note: Some(park), ..
        } => reschedule(fetch, metrics, c, &park).await,
        State::Written { note: None, .. } => {
            metrics.parked_retry(&c.vendor, "done");
            if let Err(error) = fetch.parked.unpark(&c.event_id).await {
                tracing::warn!(message = "Parked row not removed; it will be retried (idempotent).", %error);
            }
        }
        // The same rows will be refused every time: close with the reason instead of
        // retrying forever.
        State::Refused { reason, detail } => {
            tracing::warn!(message = "PostgreSQL refused a parked notification's readings; closing it.", %reason, %detail, vendor = %c.vendor);
            let park = closed(ParkReason::RejectedByDatabase, detail);
            reschedule(fetch, metrics, c, &park).await;
        }
        State::Envelope(_) | State::Repeat | State::Ready { .. } | State::Parked { .. } => {
            tracing::error!(message = "Write stage left a parked notification undecided; the lease brings it back.", event_id = %c.event_id);
        }
    }
}

/// What the write stage reads of the original delivery: its event id (the readings'
/// provenance), receipt time and headers (trace context).
fn envelope(c: &Claimed) -> RawEnvelope {
    RawEnvelope {
        event_id: c.event_id.clone(),
        vendor: c.vendor.clone(),
        received_at_micros: c.received_at.timestamp_micros(),
        headers: c.headers.clone(),
        query: None,
        principal: None,
        content_type: None,
        body: Vec::new(),
        edge_instance: String::new(),
    }
}

/// A decision that closes the row: no user to wait for, nothing to retry.
fn closed(reason: ParkReason, detail: String) -> Park {
    Park {
        vendor_user_id: String::new(),
        reason,
        retry_after: None,
        detail,
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
