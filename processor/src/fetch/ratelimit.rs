//! Client-side rate limits per vendor and per account, plus `Retry-After` blocks.
//!
//! Token buckets that may be reserved into debt: a caller that accepts a short wait
//! takes its token now and sleeps, so concurrent callers queue fairly. A caller whose
//! wait would exceed its bound takes nothing and parks its work instead.

/// Longest a vendor's Retry-After is believed (a day).
const MAX_BLOCK: Duration = Duration::from_secs(24 * 3600);

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use vendors::Vendor;

pub use vendors::fetch::Quota;

#[derive(Debug)]
struct Bucket {
    /// May go negative: tokens already promised to waiting callers.
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(q: Quota, now: Instant) -> Self {
        Bucket {
            tokens: f64::from(q.requests),
            last: now,
        }
    }

    fn refill(&mut self, q: Quota, now: Instant) {
        let rate = f64::from(q.requests) / q.period.as_secs_f64();
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(q.requests));
        self.last = now;
    }

    fn wait(&self, q: Quota) -> Duration {
        if self.tokens >= 1.0 {
            return Duration::ZERO;
        }
        let rate = f64::from(q.requests) / q.period.as_secs_f64();
        Duration::from_secs_f64((1.0 - self.tokens) / rate)
    }
}

/// Quotas for one vendor.
#[derive(Debug, Clone, Copy)]
pub struct VendorQuotas {
    /// Shared by every account of the vendor (the application's limit).
    pub vendor: Quota,
    /// Per linked account.
    pub account: Quota,
}

#[derive(Default)]
struct State {
    vendors: HashMap<Vendor, Bucket>,
    accounts: HashMap<(Vendor, String), Bucket>,
    blocked: HashMap<(Vendor, String), Instant>,
    /// Last time idle entries were dropped.
    pruned: Option<Instant>,
}

/// How often idle account buckets and expired blocks are dropped. A bucket that has
/// refilled completely is the same as a new one, so dropping it changes no decision.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

impl State {
    fn prune(&mut self, now: Instant, quotas: impl Fn(Vendor) -> VendorQuotas) {
        if self
            .pruned
            .is_some_and(|t| now.saturating_duration_since(t) < PRUNE_EVERY)
        {
            return;
        }
        self.pruned = Some(now);
        self.accounts.retain(|(vendor, _), b| {
            let q = quotas(*vendor).account;
            b.refill(q, now);
            b.tokens < f64::from(q.requests)
        });
        self.blocked.retain(|_, until| *until > now);
    }
}

/// The limits of every fetched vendor.
pub struct RateLimits {
    quotas: HashMap<Vendor, VendorQuotas>,
    state: Mutex<State>,
}

impl RateLimits {
    /// Limits with these quotas.
    pub fn new(quotas: HashMap<Vendor, VendorQuotas>) -> Self {
        RateLimits {
            quotas,
            state: Mutex::new(State::default()),
        }
    }

    fn quotas(&self, vendor: Vendor) -> VendorQuotas {
        // Only fetched vendors make requests, and each brings its quotas; a vendor
        // without any is not limited here rather than blocked by accident.
        const UNLIMITED: Quota = Quota {
            requests: u32::MAX,
            period: Duration::from_secs(1),
        };
        self.quotas.get(&vendor).copied().unwrap_or(VendorQuotas {
            vendor: UNLIMITED,
            account: UNLIMITED,
        })
    }

    /// Reserves one request for `account` of `vendor` if it may start within `max_wait`:
    /// `Ok(wait)` (sleep that long, then send). Otherwise nothing is reserved and
    /// `Err(wait)` says how long until it could start.
    pub fn reserve(
        &self,
        vendor: Vendor,
        account: &str,
        now: Instant,
        max_wait: Duration,
    ) -> Result<Duration, Duration> {
        let q = self.quotas(vendor);
        // A poisoned lock only means another thread panicked mid-update; the numbers
        // are still usable.
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.prune(now, |v| self.quotas(v));
        let key = (vendor, account.to_owned());
        let blocked = st
            .blocked
            .get(&key)
            .map_or(Duration::ZERO, |until| until.saturating_duration_since(now));
        let v = st
            .vendors
            .entry(vendor)
            .or_insert_with(|| Bucket::new(q.vendor, now));
        v.refill(q.vendor, now);
        let vendor_wait = v.wait(q.vendor);
        let a = st
            .accounts
            .entry(key.clone())
            .or_insert_with(|| Bucket::new(q.account, now));
        a.refill(q.account, now);
        let wait = vendor_wait.max(a.wait(q.account)).max(blocked);
        if wait > max_wait {
            return Err(wait);
        }
        a.tokens -= 1.0;
        if let Some(v) = st.vendors.get_mut(&vendor) {
            v.tokens -= 1.0;
        }
        if blocked.is_zero() {
            st.blocked.remove(&key);
        }
        Ok(wait)
    }

    /// Accounts with a bucket or a block in memory (for tests and sizing).
    pub fn tracked(&self) -> usize {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.accounts.len() + st.blocked.len()
    }

    /// The vendor answered 429 with `Retry-After`: no request for this account before
    /// `now + after`.
    pub fn block(&self, vendor: Vendor, account: &str, now: Instant, after: Duration) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // Clamped: `after` comes from a vendor's Retry-After, and Instant + a huge
        // Duration panics.
        let until = now + after.min(MAX_BLOCK);
        let slot = st
            .blocked
            .entry((vendor, account.to_owned()))
            .or_insert(until);
        *slot = (*slot).max(until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quota {
        s.parse().unwrap()
    }

    fn limits(vendor: &str, account: &str) -> RateLimits {
        let v = VendorQuotas {
            vendor: q(vendor),
            account: q(account),
        };
        RateLimits::new([(Vendor::Oura, v), (Vendor::Whoop, v)].into())
    }

    #[test]
    fn quota_parsing() {
        assert_eq!(
            q("100/1m"),
            Quota {
                requests: 100,
                period: Duration::from_secs(60)
            }
        );
        assert_eq!(q("5000/5m").period, Duration::from_secs(300));
        assert!("0/1m".parse::<Quota>().is_err());
        assert!("100".parse::<Quota>().is_err());
        assert!("x/1m".parse::<Quota>().is_err());
    }

    #[test]
    fn burst_then_wait_then_park() {
        let l = limits("100/1m", "2/1s");
        let t0 = Instant::now();
        let max = Duration::from_secs(1);
        assert_eq!(l.reserve(Vendor::Whoop, "a", t0, max), Ok(Duration::ZERO));
        assert_eq!(l.reserve(Vendor::Whoop, "a", t0, max), Ok(Duration::ZERO));
        // Third within the second: half a second of debt, accepted.
        assert_eq!(
            l.reserve(Vendor::Whoop, "a", t0, max),
            Ok(Duration::from_millis(500))
        );
        // Fourth would wait a full second more than allowed → refused, nothing taken.
        let e = l.reserve(Vendor::Whoop, "a", t0, Duration::from_millis(600));
        assert_eq!(e, Err(Duration::from_secs(1)));
        // Another account is not affected; another vendor neither.
        assert_eq!(l.reserve(Vendor::Whoop, "b", t0, max), Ok(Duration::ZERO));
        assert_eq!(l.reserve(Vendor::Oura, "a", t0, max), Ok(Duration::ZERO));
    }

    #[test]
    fn vendor_quota_is_shared() {
        let l = limits("2/1m", "100/1m");
        let t0 = Instant::now();
        let max = Duration::from_secs(1);
        assert!(l.reserve(Vendor::Oura, "a", t0, max).is_ok());
        assert!(l.reserve(Vendor::Oura, "b", t0, max).is_ok());
        assert!(l.reserve(Vendor::Oura, "c", t0, max).is_err());
    }

    #[test]
    fn idle_accounts_are_forgotten() {
        let l = limits("1000/1s", "10/1s");
        let t0 = Instant::now();
        let max = Duration::from_secs(1);
        for i in 0..500 {
            assert!(l.reserve(Vendor::Oura, &format!("u{i}"), t0, max).is_ok());
        }
        l.block(Vendor::Oura, "blocked", t0, Duration::from_secs(5));
        assert_eq!(l.tracked(), 501);
        // A minute on, every bucket has refilled and the block expired: only the
        // account asking now remains.
        let later = t0 + PRUNE_EVERY + Duration::from_secs(1);
        assert!(l.reserve(Vendor::Oura, "new", later, max).is_ok());
        assert_eq!(l.tracked(), 1);
        // A bucket still in debt is kept: forgetting it would hand out a fresh burst.
        let l = limits("1000/1s", "1/1h");
        assert!(l.reserve(Vendor::Oura, "slow", t0, max).is_ok());
        assert!(l.reserve(Vendor::Oura, "other", later, max).is_ok());
        assert_eq!(l.tracked(), 2);
    }

    #[test]
    fn retry_after_blocks_the_account() {
        let l = limits("100/1m", "100/1m");
        let t0 = Instant::now();
        l.block(Vendor::Oura, "a", t0, Duration::from_secs(5));
        assert_eq!(
            l.reserve(Vendor::Oura, "a", t0, Duration::from_secs(1)),
            Err(Duration::from_secs(5))
        );
        let later = t0 + Duration::from_secs(5);
        assert_eq!(
            l.reserve(Vendor::Oura, "a", later, Duration::from_secs(1)),
            Ok(Duration::ZERO)
        );
    }
}
