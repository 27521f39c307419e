//! Fetch-after-notify for Oura and WHOOP: their webhooks carry only ids, so each
//! notification is turned into REST calls with the linked account's OAuth token, and the
//! fetched documents into readings by the pure normalizers.
//!
//! Nothing here waits long: a request that would wait more than the rate-limit bound, a
//! vendor that answers 429/5xx twice, an account that needs re-authorisation and an
//! unlinked user all end as a [`Park`], which the caller makes durable in
//! `parked_notifications` before it stores the raw offset. [`worker`] retries them.

pub mod accounts;
pub mod api;
pub mod crypto;
pub mod notification;
pub mod parking;
pub mod ratelimit;
pub mod worker;

/// Longest token lifetime believed from a vendor (a year): bounds date arithmetic.
const MAX_TOKEN_LIFETIME_SECS: u64 = 365 * 24 * 3600;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::Value;

use crate::metrics::Metrics;
use crate::model::{Normalized, Tombstone};
use crate::normalize::NormalizeError;
use accounts::{Account, AccountError, AccountStore, Claim, NewTokens, STATUS_ACTIVE};
use api::{GetResult, OAuthClient, RefreshError};
use notification::{Action, Vendor, WhoopId};
use parking::{Backoff, Park, ParkReason, ParkStore};
use ratelimit::RateLimits;
use vendors::oura::normalize as oura;
use vendors::whoop::normalize::{self as whoop, ScoreState, WhoopDocKind};

/// One vendor's endpoints.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// REST base URL, without a trailing slash (`https://api.ouraring.com`).
    pub api_base: String,
    /// OAuth2 client for refreshes.
    pub oauth: OAuthClient,
    /// Name of the client-id variable, for error messages.
    pub client_id_var: &'static str,
    /// Name of the client-secret variable, for error messages.
    pub client_secret_var: &'static str,
}

/// Timing knobs.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Longest a fetch waits for a rate-limit slot (or a short `Retry-After`) before it
    /// parks instead.
    pub max_wait: Duration,
    /// Timeout of one vendor request (API or token endpoint).
    pub request_timeout: Duration,
    /// Refresh the access token when it expires within this margin.
    pub refresh_margin: Duration,
    /// Pause before the one immediate retry after a 5xx or a network error.
    pub short_retry: Duration,
    /// `Retry-After` assumed when a 429 carries none.
    pub default_retry_after: Duration,
}

/// What became of one notification.
#[derive(Debug)]
pub enum Outcome {
    /// Documents fetched (or a deletion resolved): write these records. `note`, when
    /// present, parks the notification as well (a pending score to fetch again, a later
    /// step that must be retried) or records why part of it yielded nothing.
    Ready {
        /// Records to write.
        normalized: Normalized,
        /// Park or close the notification too.
        note: Option<Park>,
    },
    /// Nothing to write now; park it.
    Park(Park),
    /// The notification itself is malformed or unsupported: dead-letter it.
    Reject {
        /// DLQ reason label.
        reason: &'static str,
        /// Detail.
        detail: String,
    },
}

/// Why handling stopped early (internal).
enum Stop {
    Park(ParkReason, Option<Duration>, String),
    NotFound(String),
    Reject(&'static str, String),
    Db(AccountError),
}

impl From<NormalizeError> for Stop {
    fn from(e: NormalizeError) -> Self {
        Stop::Reject(e.reason(), e.to_string())
    }
}

/// Fetches documents for notifications.
pub struct Fetcher {
    accounts: AccountStore,
    http: reqwest::Client,
    oura: Endpoints,
    whoop: Endpoints,
    limits: RateLimits,
    settings: Settings,
    /// One refresh at a time per account within this process (the refresh lease
    /// covers other replicas).
    refresh_locks: std::sync::Mutex<HashMap<(Vendor, String), RefreshLock>>,
    refresher: Arc<Refresher>,
    metrics: Arc<Metrics>,
}

/// Held while one account's token is refreshed.
type RefreshLock = Arc<tokio::sync::Mutex<()>>;

/// The fetch stage as the pipeline and the retry worker use it.
pub struct Fetch {
    /// Fetches documents.
    pub fetcher: Fetcher,
    /// Parked notifications.
    pub parked: ParkStore,
    /// Retry schedule of parked notifications.
    pub backoff: Backoff,
    /// Most notifications fetched at once per batch.
    pub concurrency: usize,
    /// How often the worker looks for due parked notifications.
    pub poll_interval: Duration,
}

/// A fetched account plus whether its token was refreshed during this notification.
struct Session {
    account: Account,
    refreshed: bool,
    /// How long this caller waits for a token refresh before parking.
    refresh_wait: Duration,
}

impl Fetcher {
    /// A fetcher.
    pub fn new(
        accounts: AccountStore,
        http: reqwest::Client,
        oura: Endpoints,
        whoop: Endpoints,
        limits: RateLimits,
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let refresher = Arc::new(Refresher {
            accounts: accounts.clone(),
            http: http.clone(),
            oura: oura.clone(),
            whoop: whoop.clone(),
            metrics: metrics.clone(),
            owner: uuid::Uuid::new_v4(),
        });
        Fetcher {
            accounts,
            http,
            oura,
            whoop,
            limits,
            settings,
            refresh_locks: std::sync::Mutex::new(HashMap::new()),
            refresher,
            metrics,
        }
    }

    fn endpoints(&self, vendor: Vendor) -> &Endpoints {
        match vendor {
            Vendor::Oura => &self.oura,
            Vendor::Whoop => &self.whoop,
        }
    }

    /// Handles one notification body of `vendor` on the hot path (a consumed batch): a
    /// token refresh is started in the background and the notification parked at once,
    /// so no batch, and none of the other vendors' records in it, waits for a token
    /// endpoint. `Err` only when PostgreSQL failed (retry the whole notification later);
    /// every vendor-side problem is an [`Outcome`].
    pub async fn handle(&self, vendor: Vendor, body: &[u8]) -> Result<Outcome, AccountError> {
        self.handle_waiting(vendor, body, Duration::ZERO).await
    }

    /// [`handle`](Self::handle) for the retry task, off the hot path: waits up to
    /// `FETCH_TIMEOUT` for a token refresh before parking again.
    pub async fn handle_patiently(
        &self,
        vendor: Vendor,
        body: &[u8],
    ) -> Result<Outcome, AccountError> {
        self.handle_waiting(vendor, body, self.settings.request_timeout)
            .await
    }

    #[tracing::instrument(skip_all, fields(%vendor))]
    async fn handle_waiting(
        &self,
        vendor: Vendor,
        body: &[u8],
        refresh_wait: Duration,
    ) -> Result<Outcome, AccountError> {
        let n = match notification::parse(vendor, body) {
            Ok(n) => n,
            Err(e) => {
                return Ok(Outcome::Reject {
                    reason: e.reason(),
                    detail: e.to_string(),
                });
            }
        };
        let vuid = n.vendor_user_id.clone();
        let park = |reason, retry_after, detail: String| Park {
            vendor_user_id: vuid.clone(),
            reason,
            retry_after,
            detail,
        };
        if n.action == Action::Nothing {
            return Ok(Outcome::Ready {
                normalized: Normalized::default(),
                note: None,
            });
        }
        let account = match self.accounts.get(vendor, &vuid).await {
            Ok(Some(a)) => a,
            Ok(None) => {
                return Ok(Outcome::Park(park(
                    ParkReason::Unlinked,
                    None,
                    format!("no linked {vendor} account for this user"),
                )));
            }
            Err(e @ (AccountError::NoKey | AccountError::Decrypt(_))) => {
                tracing::error!(message = "Linked-account tokens unreadable; parking.", error = %e, %vendor);
                return Ok(Outcome::Park(park(
                    ParkReason::TokenKey,
                    None,
                    e.to_string(),
                )));
            }
            Err(e) => return Err(e),
        };
        if account.status != STATUS_ACTIVE {
            return Ok(Outcome::Park(park(
                ParkReason::ReauthRequired,
                None,
                "account needs re-authorisation (processor link-account)".into(),
            )));
        }
        let mut session = Session {
            account,
            refreshed: false,
            refresh_wait,
        };
        let mut out = Normalized::default();
        let mut note = None;
        let result = self.run(&mut session, n.action, &mut out, &mut note).await;
        let stopped = match result {
            Ok(()) => None,
            Err(Stop::Db(e)) => return Err(e),
            Err(Stop::Reject(reason, detail)) => {
                return Ok(Outcome::Reject { reason, detail });
            }
            Err(Stop::Park(reason, after, detail)) => Some(park(reason, after, detail)),
            Err(Stop::NotFound(what)) => Some(park(
                ParkReason::NotFound,
                None,
                format!("{what} answered 404"),
            )),
        };
        // A later step that stopped outranks a note from an earlier one; a retried
        // park outranks a closed one, so nothing retriable is closed by accident.
        let note = match (note, stopped) {
            (Some(n), Some(s)) if s.reason.is_closed() && !n.reason.is_closed() => Some(n),
            (n, s) => s.or(n),
        };
        let nothing = out.readings.is_empty() && out.tombstones.is_empty();
        Ok(match note {
            Some(p) if nothing && !p.reason.is_closed() => Outcome::Park(p),
            note => Outcome::Ready {
                normalized: out,
                note,
            },
        })
    }

    async fn run(
        &self,
        s: &mut Session,
        action: Action,
        out: &mut Normalized,
        note: &mut Option<Park>,
    ) -> Result<(), Stop> {
        let user = s.account.user_id.clone();
        let vuid = s.account.vendor_user_id.clone();
        let score_note = |doc: &Value, what: &str| -> Option<Park> {
            let (reason, state) = match whoop::score_state(doc) {
                ScoreState::Scored => return None,
                ScoreState::Pending => (ParkReason::PendingScore, "PENDING_SCORE"),
                ScoreState::Unscorable => (ParkReason::Unscorable, "UNSCORABLE"),
                ScoreState::Missing => (ParkReason::NoScoreState, "missing"),
            };
            Some(Park {
                vendor_user_id: vuid.clone(),
                reason,
                retry_after: None,
                detail: format!("whoop {what} score_state {state}"),
            })
        };
        match action {
            Action::Nothing => {}
            Action::Delete(ids) => {
                let vendor = s.account.vendor.as_str().to_owned();
                out.tombstones.extend(ids.into_iter().map(|id| Tombstone {
                    user_id: user.clone(),
                    vendor: vendor.clone(),
                    source_record_id: id,
                }));
            }
            Action::Oura {
                data_type,
                object_id,
            } => {
                let path = format!(
                    "/v2/usercollection/{}/{object_id}",
                    notification::oura_path_type(&data_type)
                );
                let doc = self.get(s, &path).await?;
                extend(out, oura::normalize_document(&user, &data_type, &doc)?);
            }
            Action::WhoopSleep(id) => {
                let doc = self.get(s, &format!("/v2/activity/sleep/{id}")).await?;
                *note = score_note(&doc, "sleep");
                extend(
                    out,
                    whoop::normalize_document(&user, WhoopDocKind::Sleep, &doc)?,
                );
            }
            Action::WhoopWorkout(id) => {
                let doc = self.get(s, &format!("/v2/activity/workout/{id}")).await?;
                *note = score_note(&doc, "workout");
                extend(
                    out,
                    whoop::normalize_document(&user, WhoopDocKind::Workout, &doc)?,
                );
            }
            Action::WhoopRecovery(id) => {
                let cycle = match id {
                    WhoopId::Int(c) => c,
                    WhoopId::Uuid(sleep) => {
                        // v2 recovery ids are (most likely) sleep ids: the sleep names
                        // its cycle. Its readings come along at no extra request.
                        let doc = self.get(s, &format!("/v2/activity/sleep/{sleep}")).await?;
                        if score_note(&doc, "sleep").is_none() {
                            extend(
                                out,
                                whoop::normalize_document(&user, WhoopDocKind::Sleep, &doc)?,
                            );
                        }
                        cycle_id(&doc)?
                    }
                };
                let doc = self.get(s, &format!("/v2/cycle/{cycle}/recovery")).await?;
                *note = score_note(&doc, "recovery");
                extend(
                    out,
                    whoop::normalize_document(&user, WhoopDocKind::Recovery, &doc)?,
                );
                // Day strain and energy; a cycle still running yields nothing yet.
                let doc = self.get(s, &format!("/v2/cycle/{cycle}")).await?;
                extend(
                    out,
                    whoop::normalize_document(&user, WhoopDocKind::Cycle, &doc)?,
                );
            }
            Action::WhoopRecoveryDeletedBySleep(sleep) => {
                // The recovery's rows are keyed by cycle; only the sleep knows it. If the
                // sleep is gone too, the rows cannot be located (closed as not_found).
                let doc = self.get(s, &format!("/v2/activity/sleep/{sleep}")).await?;
                out.tombstones.push(Tombstone {
                    user_id: user,
                    vendor: "whoop".into(),
                    source_record_id: format!("recovery:{}", cycle_id(&doc)?),
                });
            }
        }
        Ok(())
    }

    /// One GET with rate limiting, token refresh (before expiry and once on a 401), one
    /// short retry on 5xx/network errors and one wait on a short `Retry-After`.
    async fn get(&self, s: &mut Session, path: &str) -> Result<Value, Stop> {
        let vendor = s.account.vendor;
        let url = format!(
            "{}{path}",
            self.endpoints(vendor).api_base.trim_end_matches('/')
        );
        let mut retried_unavailable = false;
        let mut retried_429 = false;
        loop {
            let vuid = s.account.vendor_user_id.clone();
            match self
                .limits
                .reserve(vendor, &vuid, Instant::now(), self.settings.max_wait)
            {
                Ok(wait) => {
                    if !wait.is_zero() {
                        self.metrics.rate_limit_wait(vendor.as_str(), wait);
                        tokio::time::sleep(wait).await;
                    }
                }
                Err(wait) => {
                    self.metrics
                        .rate_limit_wait(vendor.as_str(), Duration::ZERO);
                    return Err(Stop::Park(
                        ParkReason::RateLimited,
                        Some(wait),
                        format!("rate limit: next slot in {} ms", wait.as_millis()),
                    ));
                }
            }
            let expiring = s.account.expires_at.is_some_and(|at| {
                at - Utc::now()
                    < chrono::TimeDelta::from_std(self.settings.refresh_margin).unwrap_or_default()
            });
            if expiring && !s.refreshed {
                self.refresh(s).await?;
            }
            let result = api::get(
                &self.http,
                &url,
                &s.account.access_token,
                self.settings.request_timeout,
            )
            .await;
            self.metrics.fetch(vendor.as_str(), result.status_label());
            match result {
                GetResult::Ok(doc) => return Ok(doc),
                GetResult::Unauthorized if !s.refreshed => self.refresh(s).await?,
                GetResult::Unauthorized => {
                    return Err(Stop::Park(
                        ParkReason::ReauthRequired,
                        None,
                        "401 with a freshly refreshed token".into(),
                    ));
                }
                GetResult::NotFound => return Err(Stop::NotFound(path.to_owned())),
                GetResult::RateLimited(after) => {
                    let after = after.unwrap_or(self.settings.default_retry_after);
                    self.limits.block(vendor, &vuid, Instant::now(), after);
                    if retried_429 || after > self.settings.max_wait {
                        return Err(Stop::Park(
                            ParkReason::RateLimited,
                            Some(after),
                            format!("HTTP 429, Retry-After {} s", after.as_secs_f64()),
                        ));
                    }
                    // The limiter now makes the next reserve wait out Retry-After.
                    retried_429 = true;
                }
                GetResult::Unavailable(e) | GetResult::BadBody(e) => {
                    if retried_unavailable {
                        return Err(Stop::Park(ParkReason::VendorUnavailable, None, e));
                    }
                    retried_unavailable = true;
                    tokio::time::sleep(self.settings.short_retry).await;
                }
                GetResult::Rejected(status) => {
                    return Err(Stop::Park(
                        ParkReason::Rejected,
                        None,
                        format!("{path} answered HTTP {status}"),
                    ));
                }
            }
        }
    }

    fn refresh_lock(&self, vendor: Vendor, vuid: &str) -> RefreshLock {
        let mut locks = self.refresh_locks.lock().unwrap_or_else(|e| e.into_inner());
        // Entries nobody holds or waits for are dropped, so the map tracks the accounts
        // being refreshed now, not every account ever refreshed.
        if locks.len() >= REFRESH_LOCKS_PRUNE_AT {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry((vendor, vuid.to_owned())).or_default().clone()
    }

    /// Refreshes the session's token off the hot path: the vendor call and the storing
    /// of its answer run in a task of their own, so a caller that gives up (batch
    /// deadline, shutdown, its refresh wait) never loses a rotated refresh token. The
    /// caller waits at most the session's refresh wait (none on the hot path), then
    /// parks the notification; its retry finds the stored pair.
    async fn refresh(&self, s: &mut Session) -> Result<(), Stop> {
        let vendor = s.account.vendor;
        let vuid = s.account.vendor_user_id.clone();
        s.refreshed = true;
        let lock = self.refresh_lock(vendor, &vuid);
        let refresher = self.refresher.clone();
        let seen = s.account.version;
        let job = tokio::spawn(async move {
            // One refresher per account in this process; the lease covers other replicas.
            let _guard = lock.lock_owned().await;
            refresher.refresh(vendor, vuid, seen).await
        });
        match tokio::time::timeout(s.refresh_wait, job).await {
            Ok(Ok(Ok(account))) => {
                s.account = account;
                Ok(())
            }
            Ok(Ok(Err(stop))) => Err(stop),
            Ok(Err(join)) => Err(Stop::Park(
                ParkReason::RefreshFailed,
                None,
                format!("token refresh task failed: {join}"),
            )),
            Err(_) => Err(Stop::Park(
                ParkReason::RefreshFailed,
                Some(REFRESH_PARK_RETRY),
                "token refresh still running; retried once its answer is stored".into(),
            )),
        }
    }
}

/// When a notification parked behind a running refresh is retried.
const REFRESH_PARK_RETRY: Duration = Duration::from_secs(1);

/// Longest the background refresh waits for the token endpoint: long, because an
/// answer given up on may carry a rotated refresh token that is then lost for good.
const REFRESH_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The refresh lease outlives the call so a crashed refresher's lease frees itself.
const REFRESH_LEASE: Duration = Duration::from_secs(90);

/// How long storing an answered refresh is retried through a PostgreSQL outage.
const STORE_RETRY_FOR: Duration = Duration::from_secs(300);

/// The per-account lock map is pruned of idle entries once it holds this many.
const REFRESH_LOCKS_PRUNE_AT: usize = 256;

/// What a background refresh needs, shared with its task.
struct Refresher {
    accounts: AccountStore,
    http: reqwest::Client,
    oura: Endpoints,
    whoop: Endpoints,
    metrics: Arc<Metrics>,
    /// Lease owner id of this process.
    owner: uuid::Uuid,
}

impl Refresher {
    fn endpoints(&self, vendor: Vendor) -> &Endpoints {
        match vendor {
            Vendor::Oura => &self.oura,
            Vendor::Whoop => &self.whoop,
        }
    }

    fn reuse(&self, vendor: Vendor, current: Account) -> Result<Account, Stop> {
        self.metrics.token_refresh(vendor.as_str(), "reused");
        if current.status == STATUS_ACTIVE {
            Ok(current)
        } else {
            Err(Stop::Park(
                ParkReason::ReauthRequired,
                None,
                "account needs re-authorisation".into(),
            ))
        }
    }

    /// Takes the lease (waiting for another refresher's answer if it holds it), calls
    /// the token endpoint with no connection held, stores the answer, releases.
    async fn refresh(&self, vendor: Vendor, vuid: String, seen: i64) -> Result<Account, Stop> {
        let key_error = |e: AccountError| match e {
            e @ (AccountError::NoKey | AccountError::Decrypt(_)) => {
                Stop::Park(ParkReason::TokenKey, None, e.to_string())
            }
            e => Stop::Db(e),
        };
        let waited_since = Instant::now();
        let current = loop {
            match self
                .accounts
                .claim_refresh(vendor, &vuid, self.owner, REFRESH_LEASE)
                .await
                .map_err(key_error)?
            {
                Claim::Gone => {
                    return Err(Stop::Park(
                        ParkReason::Unlinked,
                        None,
                        "account unlinked during fetch".into(),
                    ));
                }
                Claim::Claimed(current) => break current,
                // Someone stored a newer pair: use it.
                Claim::Busy(current) if current.version != seen => {
                    return self.reuse(vendor, current);
                }
                Claim::Busy(_) if waited_since.elapsed() > REFRESH_LEASE => {
                    return Err(Stop::Park(
                        ParkReason::RefreshFailed,
                        None,
                        "another processor's token refresh did not finish".into(),
                    ));
                }
                Claim::Busy(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        };
        if current.version != seen || current.status != STATUS_ACTIVE {
            let _ = self
                .accounts
                .release_refresh(vendor, &vuid, self.owner)
                .await;
            return self.reuse(vendor, current);
        }
        let ep = self.endpoints(vendor);
        let answer = ep
            .oauth
            .refresh(
                &self.http,
                &current.refresh_token,
                REFRESH_CALL_TIMEOUT,
                ep.client_id_var,
                ep.client_secret_var,
            )
            .await;
        match answer {
            Ok(t) => {
                let tokens = NewTokens {
                    // Clamped: the value is the vendor's, and chrono panics on overflow.
                    expires_at: t.expires_in.map(|secs| {
                        Utc::now()
                            + chrono::TimeDelta::seconds(secs.min(MAX_TOKEN_LIFETIME_SECS) as i64)
                    }),
                    refresh_token: t
                        .refresh_token
                        .unwrap_or_else(|| current.refresh_token.clone()),
                    access_token: t.access_token,
                    scopes: t.scope,
                };
                self.store(vendor, current, tokens).await
            }
            Err(RefreshError::Revoked(status)) => {
                self.metrics.token_refresh(vendor.as_str(), "revoked");
                tracing::warn!(message = "Refresh token refused; account needs re-authorisation.", %vendor, status);
                self.accounts
                    .mark_reauth(&current)
                    .await
                    .map_err(Stop::Db)?;
                Err(Stop::Park(
                    ParkReason::ReauthRequired,
                    None,
                    format!("token endpoint answered HTTP {status}"),
                ))
            }
            Err(e) => {
                let _ = self
                    .accounts
                    .release_refresh(vendor, &vuid, self.owner)
                    .await;
                if matches!(e, RefreshError::NotConfigured(_)) {
                    self.metrics
                        .token_refresh(vendor.as_str(), "not_configured");
                    tracing::error!(message = "Cannot refresh tokens.", error = %e, %vendor);
                } else {
                    self.metrics.token_refresh(vendor.as_str(), "error");
                    tracing::warn!(message = "Token refresh failed; parking.", error = %e, %vendor);
                }
                Err(Stop::Park(ParkReason::RefreshFailed, None, e.to_string()))
            }
        }
    }

    /// Stores an answered refresh, retrying PostgreSQL outages: the vendor may have
    /// rotated the refresh token, and this pair is then the only valid one.
    async fn store(
        &self,
        vendor: Vendor,
        current: Account,
        tokens: NewTokens,
    ) -> Result<Account, Stop> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(100);
        loop {
            match self.accounts.store_tokens(&current, &tokens).await {
                Ok(Some(version)) => {
                    self.metrics.token_refresh(vendor.as_str(), "ok");
                    tracing::info!(message = "Access token refreshed.", %vendor);
                    return Ok(Account {
                        access_token: tokens.access_token,
                        refresh_token: tokens.refresh_token,
                        expires_at: tokens.expires_at,
                        status: STATUS_ACTIVE.into(),
                        version,
                        ..current
                    });
                }
                // Re-linked meanwhile: the operator's pair wins.
                Ok(None) => {
                    return match self.accounts.get(vendor, &current.vendor_user_id).await {
                        Ok(Some(a)) => self.reuse(vendor, a),
                        Ok(None) => Err(Stop::Park(
                            ParkReason::Unlinked,
                            None,
                            "account unlinked during refresh".into(),
                        )),
                        Err(e) => Err(Stop::Db(e)),
                    };
                }
                Err(e) if started.elapsed() < STORE_RETRY_FOR => {
                    tracing::error!(message = "Refreshed tokens not stored yet; retrying (the vendor may have rotated the refresh token).", error = %e, %vendor);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::error!(message = "Refreshed tokens could not be stored; the account may need re-linking.", error = %e, %vendor);
                    return Err(Stop::Db(e));
                }
            }
        }
    }
}

fn extend(out: &mut Normalized, more: Normalized) {
    out.readings.extend(more.readings);
    out.tombstones.extend(more.tombstones);
    out.account_events.extend(more.account_events);
}

/// The integer `cycle_id` of a WHOOP sleep (also a URL path segment, so integers only).
fn cycle_id(sleep: &Value) -> Result<i64, Stop> {
    sleep
        .get("cycle_id")
        .and_then(Value::as_i64)
        .ok_or_else(|| {
            Stop::Reject(
                "unsupported_shape",
                "whoop sleep without an integer cycle_id".into(),
            )
        })
}
