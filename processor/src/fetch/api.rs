//! Vendor REST calls: one authenticated GET, and the OAuth2 refresh grant, each with
//! its answer classified into what the fetcher should do.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// The answer to one GET.
#[derive(Debug)]
pub enum GetResult {
    /// 200 with a JSON body.
    Ok(Value),
    /// 401: the access token is not (or no longer) valid.
    Unauthorized,
    /// 404: the document does not exist (deleted meanwhile).
    NotFound,
    /// 429, with `Retry-After` when the vendor sent one.
    RateLimited(Option<Duration>),
    /// 5xx, a timeout or a connection failure: worth retrying later.
    Unavailable(String),
    /// Any other status (400, 403, …): retrying the same request will not help.
    Rejected(u16),
    /// 200, but the body is not JSON.
    BadBody(String),
}

impl GetResult {
    /// Bounded label for the fetch metric.
    pub fn status_label(&self) -> &'static str {
        match self {
            GetResult::Ok(_) => "ok",
            GetResult::Unauthorized => "unauthorized",
            GetResult::NotFound => "not_found",
            GetResult::RateLimited(_) => "rate_limited",
            GetResult::Unavailable(_) => "unavailable",
            GetResult::Rejected(_) => "rejected",
            GetResult::BadBody(_) => "bad_body",
        }
    }
}

/// `Retry-After`: delta-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    // Clamped to a day: the value is the vendor's and feeds Instant and SQL interval
    // arithmetic, which overflow (or panic) on absurd values.
    const MAX: u64 = 24 * 3600;
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(MAX)));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs(MAX)),
    )
}

/// Largest vendor document read (Oura and WHOOP documents are a few KiB; a day of
/// Oura sleep with its 5-minute series stays under 100 KiB): a hostile or broken
/// endpoint cannot make us buffer without bound.
pub const MAX_DOCUMENT_BYTES: usize = 4 * 1024 * 1024;

/// Largest token-endpoint answer read (an OAuth token response is well under 4 KiB).
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// Reads at most `max` bytes of a body; `Err` names the cap when the body is longer.
pub async fn capped_body(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(format!("body larger than {max} bytes"));
    }
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if out.len() + chunk.len() > max {
            return Err(format!("body larger than {max} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// `GET url` with a bearer token and the vendor's extra headers (API keys).
#[tracing::instrument(skip(http, token, headers), fields(status))]
pub async fn get(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    headers: &[(&'static str, String)],
    timeout: Duration,
) -> GetResult {
    let mut request = http
        .get(url)
        .bearer_auth(token)
        .header("accept", "application/json")
        .timeout(timeout);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => return GetResult::Unavailable(e.to_string()),
    };
    let status = response.status();
    tracing::Span::current().record("status", status.as_u16());
    match status.as_u16() {
        200 => match capped_body(response, MAX_DOCUMENT_BYTES).await {
            Ok(body) => match serde_json::from_slice(&body) {
                Ok(v) => GetResult::Ok(v),
                Err(e) => GetResult::BadBody(e.to_string()),
            },
            // An oversized document is not worth waiting out; a short read is an outage.
            Err(e) if e.starts_with("body larger") => GetResult::BadBody(e),
            Err(e) => GetResult::Unavailable(e),
        },
        401 => GetResult::Unauthorized,
        404 => GetResult::NotFound,
        429 => GetResult::RateLimited(
            response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry_after(v, Utc::now())),
        ),
        s if s >= 500 => GetResult::Unavailable(format!("HTTP {s}")),
        s => GetResult::Rejected(s),
    }
}

/// A vendor's OAuth2 client.
#[derive(Clone)]
pub struct OAuthClient {
    /// Token endpoint.
    pub token_url: String,
    /// Client id (`OURA_CLIENT_ID` / `WHOOP_CLIENT_ID`).
    pub client_id: Option<String>,
    /// Client secret (`OURA_CLIENT_SECRET` / `WHOOP_CLIENT_SECRET`).
    pub client_secret: Option<String>,
    /// Scope to request on refresh: WHOOP only issues a new refresh token when the
    /// request asks for `offline`.
    pub refresh_scope: Option<&'static str>,
    /// Client credentials in the body or as HTTP Basic.
    pub client_auth: vendors::fetch::ClientAuth,
}

impl std::fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthClient")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// What the token endpoint answered.
#[derive(Clone, serde::Deserialize)]
pub struct TokenResponse {
    /// New access token.
    pub access_token: String,
    /// New refresh token, when the vendor rotates it.
    pub refresh_token: Option<String>,
    /// Lifetime of the access token, seconds.
    pub expires_in: Option<u64>,
    /// Granted scopes.
    pub scope: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens stay out of logs.
        f.debug_struct("TokenResponse")
            .field("rotated", &self.refresh_token.is_some())
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// Why a refresh failed.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// No client id or secret configured; an operator must set the named variable.
    #[error("{0} is not set; tokens cannot be refreshed")]
    NotConfigured(&'static str),
    /// The vendor refused the refresh token (revoked, expired): the user must re-link.
    #[error("token endpoint refused the refresh token (HTTP {0})")]
    Revoked(u16),
    /// Outage, timeout or a malformed answer: retry later.
    #[error("token endpoint unavailable: {0}")]
    Unavailable(String),
}

impl OAuthClient {
    /// The OAuth2 `refresh_token` grant (RFC 6749 §6), client credentials in the body
    /// or as HTTP Basic, as the vendor documents.
    #[tracing::instrument(skip_all, fields(token_url = %self.token_url))]
    pub async fn refresh(
        &self,
        http: &reqwest::Client,
        refresh_token: &str,
        timeout: Duration,
        id_var: &'static str,
        secret_var: &'static str,
    ) -> Result<TokenResponse, RefreshError> {
        let id = self
            .client_id
            .as_deref()
            .ok_or(RefreshError::NotConfigured(id_var))?;
        let secret = self
            .client_secret
            .as_deref()
            .ok_or(RefreshError::NotConfigured(secret_var))?;
        let basic = self.client_auth == vendors::fetch::ClientAuth::Basic;
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ];
        if !basic {
            form.extend([("client_id", id), ("client_secret", secret)]);
        }
        if let Some(scope) = self.refresh_scope {
            form.push(("scope", scope));
        }
        let mut request = http.post(&self.token_url).form(&form).timeout(timeout);
        if basic {
            request = request.basic_auth(id, Some(secret));
        }
        let response = request
            .send()
            .await
            .map_err(|e| RefreshError::Unavailable(e.to_string()))?;
        let status = response.status().as_u16();
        match status {
            200 => {
                let body = capped_body(response, MAX_TOKEN_RESPONSE_BYTES)
                    .await
                    .map_err(|e| RefreshError::Unavailable(format!("token response: {e}")))?;
                serde_json::from_slice::<TokenResponse>(&body)
                    .map_err(|e| RefreshError::Unavailable(format!("token response: {e}")))
            }
            // invalid_grant and friends (RFC 6749 §5.2).
            400 | 401 | 403 => Err(RefreshError::Revoked(status)),
            s => Err(RefreshError::Unavailable(format!("HTTP {s}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            retry_after("Wed, 01 Jan 2025 00:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after("Tue, 31 Dec 2024 00:00:30 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now), None);
    }
}
