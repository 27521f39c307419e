//! Fetch-after-notify, vendor-free: the webhooks of notification vendors carry only ids,
//! so each notification is turned (by its vendor's [`Notify`] and [`Job`], in the
//! `vendors` crate) into REST calls made here with the linked account's OAuth token,
//! and the fetched documents into readings by the vendor's pure normalizers.
//!
//! Nothing here waits long: a request that would wait more than the rate-limit bound, a
//! vendor that answers 429/5xx twice, an account that needs re-authorisation and an
//! unlinked user all end as a [`Park`], which the caller makes durable in
//! `parked_notifications` before it stores the raw offset. [`worker`] retries them.

pub mod accounts;
pub mod api;
pub mod crypto;
pub mod parking;
pub mod ratelimit;
pub mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::Value;

use crate::metrics::Metrics;
use crate::model::Normalized;
use accounts::{Account, AccountError, AccountStore, Claim, NewTokens, STATUS_ACTIVE};
use api::{GetResult, OAuthClient, RefreshError};
use parking::{Backoff, Park, ParkReason, ParkStore};
use ratelimit::{RateLimits, VendorQuotas};
use vendors::Vendor;
use vendors::fetch::{Api, BoxFuture, FetchSpec, Notify, Stop as VendorStop};

/// Longest token lifetime believed from a vendor (a year): bounds date arithmetic.
const MAX_TOKEN_LIFETIME_SECS: u64 = 365 * 24 * 3600;

/// One vendor's endpoints.
#[derive(Clone)]
pub struct Endpoints {
    /// REST base URL, without a trailing slash (`https://api.ouraring.com`).
    pub api_base: String,
    /// OAuth2 client for refreshes; `None` when the vendor issues no refresh token.
    pub oauth: Option<OAuthClient>,
    /// Name of the client-id variable, for error messages.
    pub client_id_var: &'static str,
    /// Name of the client-secret variable, for error messages.
    pub client_secret_var: &'static str,
    /// Headers sent on every API call besides the token.
    pub headers: Vec<(&'static str, String)>,
}

impl Endpoints {
    fn from_spec(spec: &FetchSpec) -> Self {
        let oauth = spec.oauth.as_ref();
        Endpoints {
            api_base: spec.api_base.clone(),
            oauth: oauth.map(|o| OAuthClient {
                token_url: o.token_url.clone(),
                client_id: o.client_id.clone(),
                client_secret: o.client_secret.as_ref().map(|s| s.expose().to_owned()),
                refresh_scope: o.refresh_scope,
                client_auth: o.client_auth,
            }),
            client_id_var: oauth.map_or("", |o| o.client_id_var),
            client_secret_var: oauth.map_or("", |o| o.client_secret_var),
            headers: spec
                .headers
                .iter()
                .map(|(name, value)| (*name, value.expose().to_owned()))
                .collect(),
        }
    }
}

/// One fetched vendor: how to read its webhooks and where to fetch.
struct Fetched {
    notify: Box<dyn Notify>,
    endpoints: Endpoints,
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

/// Why the engine stopped early (internal): what a vendor job may see, or the
/// engine's own database.
enum Stop {
    Park(ParkReason, Option<Duration>, String),
    NotFound(String),
    Db(AccountError),
}

/// Fetches documents for notifications.
pub struct Fetcher {
    accounts: AccountStore,
    http: reqwest::Client,
    vendors: HashMap<Vendor, Fetched>,
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
    /// A fetcher for these vendors (the registry's `ProcessorArgs::fetched`).
    pub fn new(
        accounts: AccountStore,
        http: reqwest::Client,
        specs: Vec<(Vendor, FetchSpec)>,
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let quotas = specs
            .iter()
            .map(|(v, spec)| {
                let q = VendorQuotas {
                    vendor: spec.vendor_quota,
                    account: spec.account_quota,
                };
                (*v, q)
            })
            .collect();
        let vendors: HashMap<Vendor, Fetched> = specs
            .into_iter()
            .map(|(v, spec)| {
                let endpoints = Endpoints::from_spec(&spec);
                (
                    v,
                    Fetched {
                        notify: spec.notify,
                        endpoints,
                    },
                )
            })
            .collect();
        let refresher = Arc::new(Refresher {
            accounts: accounts.clone(),
            http: http.clone(),
            endpoints: vendors
                .iter()
                .map(|(v, f)| (*v, f.endpoints.clone()))
                .collect(),
            metrics: metrics.clone(),
            owner: uuid::Uuid::new_v4(),
        });
        Fetcher {
            accounts,
            http,
            vendors,
            limits: RateLimits::new(quotas),
            settings,
            refresh_locks: std::sync::Mutex::new(HashMap::new()),
            refresher,
            metrics,
        }
    }

    /// The vendor of a raw envelope's route name, when its webhooks are notifications
    /// this fetcher resolves.
    pub fn vendor_of(&self, route: &str) -> Option<Vendor> {
        route
            .parse::<Vendor>()
            .ok()
            .filter(|v| self.vendors.contains_key(v))
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
        let Some(fetched) = self.vendors.get(&vendor) else {
            return Ok(Outcome::Reject {
                reason: "unknown_vendor",
                detail: format!("{vendor} is not fetched by this processor"),
            });
        };
        let prepared = match fetched.notify.prepare(body) {
            Ok(p) => p,
            Err(e) => {
                return Ok(Outcome::Reject {
                    reason: e.reason(),
                    detail: e.to_string(),
                });
            }
        };
        let vuid = prepared.vendor_user_id;
        let park = |reason, retry_after, detail: String| Park {
            vendor_user_id: vuid.clone(),
            reason,
            retry_after,
            detail,
        };
        let Some(job) = prepared.job else {
            return Ok(Outcome::Ready {
                normalized: Normalized::default(),
                note: None,
            });
        };
        let account = match self.accounts.get(vendor, &vuid).await {
            Ok(Some(a)) => a,
            Ok(None) => {
                return Ok(Outcome::Park(park(
                    ParkReason::Unlinked,
                    None,
                    format!("no linked {vendor} account for this user"),
                )));
            }
            Err(
                e @ (AccountError::NoKey
                | AccountError::Decrypt(_)
                | AccountError::UnknownVendor(_)),
            ) => {
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
        let user = account.user_id.clone();
        let mut api = SessionApi {
            fetcher: self,
            session: Session {
                account,
                refreshed: false,
                refresh_wait,
            },
            db_error: None,
        };
        let mut resolved = vendors::fetch::Resolved::default();
        let result = job.run(&mut api, &user, &mut resolved).await;
        let out = resolved.normalized;
        let note = resolved
            .note
            .map(|n| park(n.reason, n.retry_after, n.detail));
        let stopped = match result {
            Ok(()) => None,
            Err(VendorStop::Engine) => match api.db_error.take() {
                Some(e) => return Err(e),
                // Only the engine's Api returns `Engine`; a job that invents one is a bug,
                // closed with a record rather than retried forever as a database error.
                None => {
                    tracing::error!(message = "A fetch job stopped with Stop::Engine on its own.", %vendor);
                    Some(park(
                        ParkReason::Rejected,
                        None,
                        format!(
                            "{vendor} job stopped with an engine error the engine did not raise"
                        ),
                    ))
                }
            },
            Err(VendorStop::Reject(reason, detail)) => {
                return Ok(Outcome::Reject { reason, detail });
            }
            Err(VendorStop::Park(reason, after, detail)) => Some(park(reason, after, detail)),
            Err(VendorStop::NotFound(what)) => Some(park(
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
        let nothing =
            out.readings.is_empty() && out.tombstones.is_empty() && out.range_deletions.is_empty();
        Ok(match note {
            Some(p) if nothing && !p.reason.is_closed() => Outcome::Park(p),
            note => Outcome::Ready {
                normalized: out,
                note,
            },
        })
    }

    /// One GET with rate limiting, token refresh (before expiry and once on a 401), one
    /// short retry on 5xx/network errors and one wait on a short `Retry-After`.
    async fn get(&self, s: &mut Session, path: &str) -> Result<Value, Stop> {
        let vendor = s.account.vendor;
        let Some(fetched) = self.vendors.get(&vendor) else {
            return Err(Stop::Park(
                ParkReason::Rejected,
                None,
                format!("{vendor} is not fetched"),
            ));
        };
        // Only ever below the configured base URL: a job names a path, never a host.
        let url = format!("{}{path}", fetched.endpoints.api_base.trim_end_matches('/'));
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
                &fetched.endpoints.headers,
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

/// The vendor's API as a job sees it: one linked account's session on this fetcher.
struct SessionApi<'a> {
    fetcher: &'a Fetcher,
    session: Session,
    /// A database failure met on the way; the job sees [`VendorStop::Engine`].
    db_error: Option<AccountError>,
}

impl Api for SessionApi<'_> {
    fn get<'a>(&'a mut self, path: &'a str) -> BoxFuture<'a, Result<Value, VendorStop>> {
        Box::pin(async move {
            match self.fetcher.get(&mut self.session, path).await {
                Ok(doc) => Ok(doc),
                Err(Stop::Park(reason, after, detail)) => {
                    Err(VendorStop::Park(reason, after, detail))
                }
                Err(Stop::NotFound(what)) => Err(VendorStop::NotFound(what)),
                Err(Stop::Db(e)) => {
                    self.db_error = Some(e);
                    Err(VendorStop::Engine)
                }
            }
        })
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
    endpoints: HashMap<Vendor, Endpoints>,
    metrics: Arc<Metrics>,
    /// Lease owner id of this process.
    owner: uuid::Uuid,
}

impl Refresher {
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
            e @ (AccountError::NoKey
            | AccountError::Decrypt(_)
            | AccountError::UnknownVendor(_)) => {
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
        let Some(ep) = self.endpoints.get(&vendor) else {
            return Err(Stop::Park(
                ParkReason::RefreshFailed,
                None,
                format!("{vendor} has no token endpoint configured"),
            ));
        };
        let Some(oauth) = &ep.oauth else {
            // Nothing to refresh with: the token the user granted is the only one.
            self.metrics.token_refresh(vendor.as_str(), "revoked");
            tracing::warn!(message = "Access token refused and the vendor issues no refresh token; account needs re-authorisation.", %vendor);
            self.accounts
                .mark_reauth(&current)
                .await
                .map_err(Stop::Db)?;
            return Err(Stop::Park(
                ParkReason::ReauthRequired,
                None,
                format!("{vendor} issues no refresh token; link the account again"),
            ));
        };
        let answer = oauth
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
