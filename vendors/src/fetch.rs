//! The vendor side of fetch-after-notify, vendor-free: what a notification vendor gives
//! the processor's fetch engine, and what the engine gives back.
//!
//! A vendor parses its webhook body ([`Notify::prepare`]) into the vendor user it is
//! for and a [`Job`]. The engine finds the linked account, then runs the job with an
//! [`Api`] bound to that account: every GET goes to the vendor's configured base URL
//! with the account's token, through the engine's rate limits, refreshes, retries and
//! parking. A job names only a path, never a host, so no webhook body (signed or not)
//! can make the processor call another server.

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use bridge_core::config::Secret;
use bridge_core::model::{Normalized, Tombstone};
use serde_json::Value;

use crate::normalize::NormalizeError;

/// A boxed, sendable future (jobs are trait objects).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a notification was parked (the `reason` column and metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParkReason {
    /// No linked account for the vendor user; retried, and made due by `link-account`.
    Unlinked,
    /// The vendor refused the refresh token; waits for `link-account`.
    ReauthRequired,
    /// Accounts exist but the tokens cannot be decrypted (no or wrong key).
    TokenKey,
    /// The token endpoint failed (outage, timeout) or no client credentials are set.
    RefreshFailed,
    /// Our own rate limit or the vendor's 429 would make it wait too long.
    RateLimited,
    /// The vendor answered 5xx, timed out or could not be reached.
    VendorUnavailable,
    /// The document's score is not computed yet (WHOOP `PENDING_SCORE`): fetched again later.
    PendingScore,
    /// The document will never be scored (WHOOP `UNSCORABLE`): closed, never retried.
    Unscorable,
    /// A document without a known score state: closed, an anomaly to look at.
    NoScoreState,
    /// The vendor answered 404 (the document was deleted meanwhile): closed.
    NotFound,
    /// The vendor refused the request (403, 400…) or the document could not be
    /// normalized: closed.
    Rejected,
    /// PostgreSQL refused the notification's readings for their content (SQLSTATE
    /// class 22/23): retrying the same rows cannot succeed, so it is closed.
    RejectedByDatabase,
}

impl ParkReason {
    /// The stored and exported name.
    pub fn as_str(self) -> &'static str {
        match self {
            ParkReason::Unlinked => "unlinked",
            ParkReason::ReauthRequired => "reauth_required",
            ParkReason::TokenKey => "token_key",
            ParkReason::RefreshFailed => "refresh_failed",
            ParkReason::RateLimited => "rate_limited",
            ParkReason::VendorUnavailable => "vendor_unavailable",
            ParkReason::PendingScore => "pending_score",
            ParkReason::Unscorable => "unscorable",
            ParkReason::NoScoreState => "no_score_state",
            ParkReason::NotFound => "not_found",
            ParkReason::Rejected => "rejected",
            ParkReason::RejectedByDatabase => "rejected_by_database",
        }
    }

    /// Closed reasons are final: the row is kept as a record and never retried.
    pub fn is_closed(self) -> bool {
        matches!(
            self,
            ParkReason::Unscorable
                | ParkReason::NoScoreState
                | ParkReason::NotFound
                | ParkReason::Rejected
                | ParkReason::RejectedByDatabase
        )
    }
}

/// Park (or close) the notification as well as writing what was resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    /// Why.
    pub reason: ParkReason,
    /// The vendor's `Retry-After` or a limiter's wait, when known.
    pub retry_after: Option<Duration>,
    /// Operator-facing detail (no tokens, no bodies).
    pub detail: String,
}

/// Why a job stopped before it resolved the notification.
#[derive(Debug)]
pub enum Stop {
    /// Park the notification (retried later) or close it (see [`ParkReason::is_closed`]).
    Park(ParkReason, Option<Duration>, String),
    /// The named resource answered 404.
    NotFound(String),
    /// The notification or a fetched document cannot be normalized: dead-letter it with
    /// this reason label and detail.
    Reject(&'static str, String),
    /// The engine itself failed (its database); it kept the error and retries the
    /// whole notification.
    Engine,
}

impl From<NormalizeError> for Stop {
    fn from(e: NormalizeError) -> Self {
        Stop::Reject(e.reason(), e.to_string())
    }
}

/// The vendor's REST API, bound to one linked account.
pub trait Api: Send {
    /// GET `path` (with its query string) below the vendor's configured API base URL,
    /// as JSON.
    fn get<'a>(&'a mut self, path: &'a str) -> BoxFuture<'a, Result<Value, Stop>>;
}

/// What a job resolved.
#[derive(Debug, Default)]
pub struct Resolved {
    /// Records to write.
    pub normalized: Normalized,
    /// Park or close the notification too (a pending score to fetch again, a part that
    /// yielded nothing).
    pub note: Option<Note>,
}

/// The work one notification asks for.
pub trait Job: Send {
    /// Resolves the notification for our user `user_id`, fetching through `api`, into
    /// `out`. What a job put in `out` before it stopped is kept: the engine writes it
    /// and parks the notification (a WHOOP recovery whose cycle is not there yet still
    /// delivers the recovery).
    fn run<'a>(
        self: Box<Self>,
        api: &'a mut dyn Api,
        user_id: &'a str,
        out: &'a mut Resolved,
    ) -> BoxFuture<'a, Result<(), Stop>>;
}

/// A parsed notification.
pub struct Prepared {
    /// The vendor's user id (the linked account's key).
    pub vendor_user_id: String,
    /// What to do; `None` for a known type that has no canonical metric (acknowledged,
    /// nothing fetched, no account needed).
    pub job: Option<Box<dyn Job>>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("vendor_user_id", &self.vendor_user_id)
            .field("job", &self.job.is_some())
            .finish()
    }
}

/// A vendor whose webhooks carry ids, not data.
pub trait Notify: Send + Sync {
    /// Parses a webhook body. Pure; errors are deterministic (dead-letter them).
    fn prepare(&self, body: &[u8]) -> Result<Prepared, NormalizeError>;
}

/// A job that deletes documents: no request, tombstones for the user's readings of
/// these source records.
pub struct Delete {
    /// Vendor route name.
    pub vendor: &'static str,
    /// `source_record_id`s as the vendor's normalizers set them.
    pub source_record_ids: Vec<String>,
}

impl Job for Delete {
    fn run<'a>(
        self: Box<Self>,
        _api: &'a mut dyn Api,
        user_id: &'a str,
        out: &'a mut Resolved,
    ) -> BoxFuture<'a, Result<(), Stop>> {
        let vendor = self.vendor;
        out.normalized
            .tombstones
            .extend(self.source_record_ids.into_iter().map(|id| Tombstone {
                user_id: user_id.to_owned(),
                vendor: vendor.to_owned(),
                source_record_id: id,
            }));
        Box::pin(std::future::ready(Ok(())))
    }
}

/// `N` requests per `period`, written `N/period` (`100/1m`, `5000/5m`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    /// Requests allowed per period (also the burst).
    pub requests: u32,
    /// The period.
    pub period: Duration,
}

impl FromStr for Quota {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (n, period) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: expected N/period, e.g. 100/1m"))?;
        let requests: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("{n:?} is not a request count"))?;
        let period = humantime::parse_duration(period.trim()).map_err(|e| e.to_string())?;
        if requests == 0 || period.is_zero() {
            return Err("requests and period must be positive".into());
        }
        Ok(Quota { requests, period })
    }
}

/// A vendor's OAuth2 client, for the refresh grant.
#[derive(Debug, Clone)]
pub struct OAuth {
    /// Token endpoint.
    pub token_url: String,
    /// Client id.
    pub client_id: Option<String>,
    /// Client secret.
    pub client_secret: Option<Secret>,
    /// Variables naming the client id and secret, for error messages.
    pub client_id_var: &'static str,
    /// See `client_id_var`.
    pub client_secret_var: &'static str,
    /// Variable naming the token endpoint, for error messages.
    pub token_url_var: &'static str,
    /// Scope to request on refresh (WHOOP only issues a new refresh token when the
    /// request asks for `offline`).
    pub refresh_scope: Option<&'static str>,
    /// How the client authenticates to the token endpoint.
    pub client_auth: ClientAuth,
}

/// Client authentication at the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_id` and `client_secret` in the form body (Oura, WHOOP).
    Post,
    /// HTTP Basic with the client id and secret (Suunto).
    Basic,
}

/// Everything the fetch engine needs from one notification vendor.
pub struct FetchSpec {
    /// Parses its webhooks.
    pub notify: Box<dyn Notify>,
    /// REST base URL without a trailing slash; every job path is appended to it.
    pub api_base: String,
    /// Variable naming `api_base`, for error messages.
    pub api_base_var: &'static str,
    /// Headers sent on every API call besides the bearer token (Suunto's APIM
    /// subscription key); lower-case names.
    pub headers: Vec<(&'static str, Secret)>,
    /// Token refresh.
    pub oauth: OAuth,
    /// Requests per period for the whole application.
    pub vendor_quota: Quota,
    /// Requests per period for one linked account.
    pub account_quota: Quota,
}

/// Longest id accepted; real ids are UUIDs or int64s.
pub const MAX_ID_LEN: usize = 128;

/// An id that goes into a URL path: anything but `[A-Za-z0-9_-]` could walk the path
/// (`../`) or change the query, so it is refused.
pub fn checked_id(id: &str, what: &str) -> Result<String, NormalizeError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(id.to_owned())
    } else {
        Err(NormalizeError::UnsupportedShape(format!(
            "{what} is not a plain id"
        )))
    }
}

/// A string or integer id field of a JSON object.
pub fn id_field(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// The body as a JSON object and its checked vendor user id at `key`.
pub fn notification_object(body: &[u8], key: &str) -> Result<(Value, String), NormalizeError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| NormalizeError::InvalidJson(e.to_string()))?;
    if !v.is_object() {
        return Err(NormalizeError::UnsupportedShape(
            "notification is not an object".into(),
        ));
    }
    let vendor_user_id = id_field(&v, key)
        .filter(|s| !s.trim().is_empty() && s.len() <= MAX_ID_LEN)
        .ok_or(NormalizeError::MissingUserId(
            "notification without user_id",
        ))?;
    // Vendor user ids are UUID-like or integers; anything else (NUL, control
    // characters) would only fail later in SQL, where it looks transient.
    let vendor_user_id = checked_id(&vendor_user_id, "user_id")?;
    Ok((v, vendor_user_id))
}

/// Appends `more` to `out`.
pub fn extend(out: &mut Normalized, more: Normalized) {
    out.readings.extend(more.readings);
    out.tombstones.extend(more.tombstones);
    out.account_events.extend(more.account_events);
}

/// An in-memory [`Api`] for the vendors' job tests: records the paths asked for and
/// answers from a table. The engine's real API is tested on the real stack.
#[cfg(test)]
pub(crate) mod testing {
    use std::collections::HashMap;
    use std::task::{Context, Poll, Waker};

    use serde_json::Value;

    use super::{Api, BoxFuture, Job, Resolved, Stop};

    /// Answers `answers[path]`, else `default`, else 404.
    #[derive(Default)]
    pub(crate) struct Recorded {
        pub(crate) paths: Vec<String>,
        answers: HashMap<String, Value>,
        default: Option<Value>,
    }

    impl Recorded {
        /// Answers every path with `doc`.
        pub(crate) fn answering(doc: Value) -> Self {
            Recorded {
                default: Some(doc),
                ..Recorded::default()
            }
        }

        /// Answers `path` with `doc`.
        pub(crate) fn on(mut self, path: &str, doc: Value) -> Self {
            self.answers.insert(path.to_owned(), doc);
            self
        }
    }

    impl Api for Recorded {
        fn get<'a>(&'a mut self, path: &'a str) -> BoxFuture<'a, Result<Value, Stop>> {
            self.paths.push(path.to_owned());
            let answer = self
                .answers
                .get(path)
                .or(self.default.as_ref())
                .cloned()
                .ok_or_else(|| Stop::NotFound(path.to_owned()));
            Box::pin(std::future::ready(answer))
        }
    }

    /// Runs a job to completion; over a [`Recorded`] API every await is ready at once.
    /// What the job resolved, with how it ended.
    pub(crate) fn run(
        job: Box<dyn Job>,
        api: &mut Recorded,
        user_id: &str,
    ) -> (Resolved, Result<(), Stop>) {
        let mut out = Resolved::default();
        let result = {
            let mut fut = job.run(api, user_id, &mut out);
            match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
                Poll::Ready(r) => r,
                Poll::Pending => panic!("a job over a recorded API must not wait"),
            }
        };
        (out, result)
    }
}
