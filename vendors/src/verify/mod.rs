//! Webhook authentication: the [`Verifier`] trait every vendor implements (in its
//! own folder, `verify.rs`) and the vendor-free mechanisms they share.
//!
//! A verifier sees the raw request (headers, query, body bytes) and the current
//! time, and decides whether the edge may append the body to Kafka. It does no
//! I/O and reads no clock, so every branch is unit-tested with the vectors from
//! `shared/reference/vendors.md` §8.
//!
//! Every HMAC scheme goes through one mechanism (`scheme.rs`): decode the
//! presented MAC, rebuild the signed bytes from the raw body, MAC them with each
//! active secret (several during rotation) and compare with
//! [`hmac::Mac::verify_slice`], which is constant-time. Only then is the
//! timestamp window checked, so `stale_timestamp` counts authentic but late
//! deliveries (replays, clock skew), not forged noise. JSON is parsed only after
//! verification succeeded, except for the few bytes of an unsigned Polar PING.

mod generic;
pub(crate) mod partition;
pub(crate) mod scheme;
#[cfg(test)]
pub(crate) mod testing;

pub use generic::{GenericHmacConfig, GenericHmacVerifier, SignedContent, TimestampHeader};
pub use scheme::{Algorithm, Encoding, TimestampUnit};

/// What the edge needs from a request to authenticate it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// All request headers as received; names are matched case-insensitively.
    pub headers: &'a http::HeaderMap,
    /// The raw query string without the leading `?`, if the URL had one.
    pub query: Option<&'a str>,
    /// The raw body bytes, exactly as received: signatures cover these bytes.
    pub body: &'a [u8],
    /// now, seconds since Unix epoch
    pub now: i64,
}

/// What the edge knows about a request before reading its body.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    /// All request headers as received.
    pub headers: &'a http::HeaderMap,
    /// The announced body length; `None` for a chunked body.
    pub content_length: Option<u64>,
    /// now, seconds since Unix epoch
    pub now: i64,
}

/// The outcome of a successful verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// append to Kafka; principal = authenticated user when the scheme identifies one (HealthKit)
    Accept {
        /// The user the credential belongs to; `None` when the scheme only
        /// authenticates the vendor (every HMAC scheme).
        principal: Option<String>,
    },
    /// answer 200 and append nothing (Polar unsigned PING)
    Ping,
}

/// Why a request was refused. Each variant maps to one HTTP status and one
/// bounded metric label, so the HTTP layer needs no vendor knowledge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The named signature (or signed timestamp) header is absent or empty.
    #[error("missing signature header `{0}`")]
    MissingSignature(&'static str),
    /// The named header is present but cannot be parsed (e.g. no `t=` in a
    /// Terra header, or a timestamp that is not a number).
    #[error("malformed signature header `{0}`")]
    MalformedSignature(&'static str),
    /// No presented signature matches any configured secret, including values
    /// in the wrong encoding or of the wrong length.
    #[error("signature does not match any configured secret")]
    BadSignature,
    /// The signed timestamp is older than the tolerance allows.
    #[error("signed timestamp is older than the tolerance window")]
    StaleTimestamp,
    /// The signed timestamp is further ahead than the tolerance allows.
    #[error("signed timestamp is further in the future than the tolerance window")]
    FutureTimestamp,
    /// Terra's unsigned `x-terra-ordering-timestamp` is not a unix-millisecond
    /// value (digits only) at or before the signed `t` plus the tolerance: honouring it would let
    /// a replayer freeze rows under the newer-wins rule.
    #[error("ordering timestamp is not plausible for the signed time")]
    ImplausibleOrdering,
    /// Neither `Authorization: Bearer …` nor `api-key` carried a key.
    #[error("missing API key (send `Authorization: Bearer <key>` or `api-key: <key>`)")]
    MissingApiKey,
    /// The presented API key matches no configured key.
    #[error("API key does not match any configured key")]
    UnknownApiKey,
}

impl VerifyError {
    /// HTTP status to answer: 400 when the signature header cannot be parsed
    /// (the sender is misconfigured, retrying will not help), 401 for absent,
    /// wrong or out-of-window signatures, 403 for API-key failures.
    pub fn status(&self) -> u16 {
        match self {
            Self::MalformedSignature(_) | Self::ImplausibleOrdering => 400,
            Self::MissingSignature(_)
            | Self::BadSignature
            | Self::StaleTimestamp
            | Self::FutureTimestamp => 401,
            Self::MissingApiKey | Self::UnknownApiKey => 403,
        }
    }

    /// Bounded snake_case label for the `reason` metric label; never carries
    /// request data.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingSignature(_) => "missing_signature",
            Self::MalformedSignature(_) => "malformed_signature",
            Self::BadSignature => "bad_signature",
            Self::StaleTimestamp => "stale_timestamp",
            Self::ImplausibleOrdering => "implausible_ordering",
            Self::FutureTimestamp => "future_timestamp",
            Self::MissingApiKey => "missing_api_key",
            Self::UnknownApiKey => "unknown_api_key",
        }
    }
}

/// A vendor's authentication scheme, as the edge's HTTP layer uses it.
pub trait Verifier: Send + Sync + 'static {
    /// Everything checkable before the body is read: signature headers present and
    /// well formed, signed timestamps within the window, API keys. The edge calls
    /// it first, so no body byte is buffered for a request that cannot be authentic.
    fn precheck(&self, head: &Head<'_>) -> Result<(), VerifyError>;

    /// Whether the query string goes into the envelope. Only where the scheme
    /// authenticates it: an HMAC over the body leaves the query open to a replayer,
    /// who could otherwise change the dedup key of a captured delivery.
    fn records_query(&self) -> bool {
        false
    }

    /// Authenticate the request from its raw bytes; no JSON parsing happens
    /// before the signature has been checked.
    fn verify(&self, req: &Request<'_>) -> Result<Verified, VerifyError>;

    /// The answer to a `GET /webhooks/<vendor>`: `None` (the default) when the vendor
    /// makes no such request (the edge answers 405); else the JSON body for a 200 or why
    /// the request is refused. Subscription handshakes (Oura's challenge echo) go here,
    /// so the HTTP layer needs no vendor knowledge.
    fn handshake(&self, _query: Option<&str>) -> Option<Result<String, VerifyError>> {
        None
    }

    /// lower-case header names to keep in the envelope (signature, timestamp, ordering, delivery ids)
    fn kept_headers(&self) -> &'static [&'static str];

    /// partition key: the vendor's user id when it is in a header or cheaply readable from the JSON top level, else None (caller hashes the body)
    ///
    /// Call only after [`Verifier::verify`] accepted the request.
    fn partition_key(&self, req: &Request<'_>, principal: Option<&str>) -> Option<String>;
}

/// Secrets from a comma-separated list as key bytes, empty entries dropped (a trailing
/// comma is not a secret).
pub fn keys(list: &[String]) -> Vec<Vec<u8>> {
    list.iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| s.as_bytes().to_vec())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::VerifyError;

    #[test]
    fn statuses_and_reasons() {
        let cases = [
            (VerifyError::MissingSignature("x"), 401, "missing_signature"),
            (
                VerifyError::MalformedSignature("x"),
                400,
                "malformed_signature",
            ),
            (VerifyError::BadSignature, 401, "bad_signature"),
            (VerifyError::StaleTimestamp, 401, "stale_timestamp"),
            (VerifyError::FutureTimestamp, 401, "future_timestamp"),
            (
                VerifyError::ImplausibleOrdering,
                400,
                "implausible_ordering",
            ),
            (VerifyError::MissingApiKey, 403, "missing_api_key"),
            (VerifyError::UnknownApiKey, 403, "unknown_api_key"),
        ];
        for (error, status, reason) in cases {
            assert_eq!(error.status(), status, "{error}");
            assert_eq!(error.reason(), reason, "{error}");
        }
    }
}
