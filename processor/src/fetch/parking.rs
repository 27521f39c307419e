//! `parked_notifications`: notifications that could not be fetched yet (retried by
//! [`super::worker`]) and closed rows recording the ones that yielded nothing.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

const PARK: &str = include_str!("sql/park.sql");
const CLAIM_DUE: &str = include_str!("sql/claim_due.sql");
const RESCHEDULE: &str = include_str!("sql/reschedule.sql");
const UNPARK: &str = include_str!("sql/unpark.sql");
const PARKED_COUNTS: &str = include_str!("sql/parked_counts.sql");

pub use vendors::fetch::ParkReason;

/// A decision to park (or close) a notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Park {
    /// The vendor's user id.
    pub vendor_user_id: String,
    /// Why.
    pub reason: ParkReason,
    /// The vendor's `Retry-After` or our limiter's wait, when known.
    pub retry_after: Option<Duration>,
    /// Operator-facing detail (no tokens, no bodies).
    pub detail: String,
}

/// When parked notifications are tried again.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Delay before the first retry; doubles per attempt.
    pub base: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Backoff {
    /// Delay before the next attempt after `attempts` attempts. `Retry-After` wins
    /// when present (even above `max`: the vendor said so).
    pub fn delay(&self, park: &Park, attempts: i32) -> Duration {
        if park.reason.is_closed() {
            return Duration::ZERO;
        }
        if let Some(after) = park.retry_after {
            return after;
        }
        let factor = 2u32.saturating_pow(attempts.clamp(0, 20) as u32);
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// Where a parked notification came from on the raw topic.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    /// Envelope id.
    pub event_id: &'a str,
    /// Vendor route name.
    pub vendor: &'a str,
    /// Notification body.
    pub body: &'a [u8],
    /// Delivery headers.
    pub headers: &'a HashMap<String, String>,
    /// When the edge received it.
    pub received_at: DateTime<Utc>,
    /// Raw partition.
    pub partition: i32,
    /// Raw offset.
    pub offset: i64,
}

/// A parked notification claimed for a retry.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Envelope id.
    pub event_id: String,
    /// Vendor route name.
    pub vendor: String,
    /// Notification body.
    pub body: Vec<u8>,
    /// Delivery headers.
    pub headers: HashMap<String, String>,
    /// When the edge received it.
    pub received_at: DateTime<Utc>,
    /// Raw partition.
    pub partition: i32,
    /// Raw offset.
    pub offset: i64,
    /// Attempts so far, this one included.
    pub attempts: i32,
}

type ClaimedRow = (
    String,
    String,
    Vec<u8>,
    serde_json::Value,
    DateTime<Utc>,
    i32,
    i64,
    i32,
);

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Reads and writes `parked_notifications`.
#[derive(Clone, Debug)]
pub struct ParkStore {
    pool: PgPool,
}

impl ParkStore {
    /// A store on `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Parks (or records as closed) a notification, due after `delay`. Idempotent per
    /// envelope id.
    pub async fn park(
        &self,
        origin: &Origin<'_>,
        park: &Park,
        delay: Duration,
    ) -> Result<(), sqlx::Error> {
        let headers = serde_json::to_value(origin.headers).unwrap_or_default();
        sqlx::query(PARK)
            .bind(origin.event_id)
            .bind(origin.vendor)
            .bind(&park.vendor_user_id)
            .bind(origin.body)
            .bind(headers)
            .bind(origin.received_at)
            .bind(origin.partition)
            .bind(origin.offset)
            .bind(park.reason.as_str())
            .bind(&park.detail)
            .bind(millis(delay))
            .bind(park.reason.is_closed())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Claims up to `limit` due notifications, hiding them from other workers for `lease`.
    pub async fn claim_due(
        &self,
        limit: i64,
        lease: Duration,
    ) -> Result<Vec<Claimed>, sqlx::Error> {
        let rows: Vec<ClaimedRow> = sqlx::query_as(CLAIM_DUE)
            .bind(limit)
            .bind(millis(lease))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(
                |(event_id, vendor, body, headers, received_at, partition, offset, attempts)| {
                    Claimed {
                        event_id,
                        vendor,
                        body,
                        headers: serde_json::from_value(headers).unwrap_or_default(),
                        received_at,
                        partition,
                        offset,
                        attempts,
                    }
                },
            )
            .collect())
    }

    /// Parks a claimed notification again (or closes it) with a new reason.
    pub async fn reschedule(
        &self,
        event_id: &str,
        park: &Park,
        delay: Duration,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(RESCHEDULE)
            .bind(event_id)
            .bind(park.reason.as_str())
            .bind(&park.detail)
            .bind(millis(delay))
            .bind(park.reason.is_closed())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Removes a notification whose readings are committed.
    pub async fn unpark(&self, event_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query(UNPARK)
            .bind(event_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Open (not closed) parked notifications by reason.
    pub async fn open_counts(&self) -> Result<Vec<(String, i64)>, sqlx::Error> {
        sqlx::query_as(PARKED_COUNTS).fetch_all(&self.pool).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn park(reason: ParkReason, retry_after: Option<Duration>) -> Park {
        Park {
            vendor_user_id: "u".into(),
            reason,
            retry_after,
            detail: String::new(),
        }
    }

    #[test]
    fn backoff_doubles_caps_and_honours_retry_after() {
        let b = Backoff {
            base: Duration::from_secs(30),
            max: Duration::from_secs(3600),
        };
        let p = park(ParkReason::VendorUnavailable, None);
        assert_eq!(b.delay(&p, 0), Duration::from_secs(30));
        assert_eq!(b.delay(&p, 2), Duration::from_secs(120));
        assert_eq!(b.delay(&p, 30), Duration::from_secs(3600));
        let p = park(ParkReason::RateLimited, Some(Duration::from_secs(7200)));
        assert_eq!(b.delay(&p, 3), Duration::from_secs(7200));
        assert_eq!(
            b.delay(&park(ParkReason::Unscorable, None), 0),
            Duration::ZERO
        );
    }
}
