//! Why the edge refused a webhook, and the one place that turns a refusal into an
//! HTTP status, a JSON body, a metric label and a log line.
//!
//! Bodies are deliberately coarse ("unauthorized", never "stale timestamp"), so a
//! caller learns nothing about which check failed; the metric label and the log say it.

use http::StatusCode;
use vendors::verify::VerifyError;
use warp::reply::Response;

use crate::producer::ProduceError;
use crate::routes::{App, json_error};

/// A webhook the edge did not append.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// No verifier for this route name.
    #[error("unknown vendor")]
    UnknownVendor,
    /// Not a POST (nor a GET the vendor's handshake answers).
    #[error("method not allowed")]
    Method,
    /// `Content-Length` is not a number.
    #[error("bad Content-Length")]
    BadContentLength,
    /// Authentication failed.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// Announced or sent body above `MAX_BODY_BYTES`.
    #[error("body too large")]
    TooLarge,
    /// The body did not arrive within `BODY_READ_TIMEOUT`.
    #[error("body not received in time")]
    BodyTimeout,
    /// The connection failed while the body was read.
    #[error("could not read body")]
    BodyRead,
    /// The global body budget stayed exhausted.
    #[error("body budget exhausted")]
    BodyBudget,
    /// The envelope could not be encoded: the schema is ours, so this is a bug.
    #[error("envelope encoding failed: {0}")]
    Encode(String),
    /// Kafka refused or did not acknowledge the record.
    #[error(transparent)]
    Produce(#[from] ProduceError),
}

impl IngestError {
    /// The HTTP status answered.
    pub fn status(&self) -> StatusCode {
        match self {
            IngestError::UnknownVendor => StatusCode::NOT_FOUND,
            IngestError::Method => StatusCode::METHOD_NOT_ALLOWED,
            IngestError::BadContentLength | IngestError::BodyRead => StatusCode::BAD_REQUEST,
            IngestError::Verify(e) => {
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED)
            }
            IngestError::TooLarge | IngestError::Produce(ProduceError::TooLarge) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            IngestError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            IngestError::BodyBudget | IngestError::Produce(_) => StatusCode::SERVICE_UNAVAILABLE,
            IngestError::Encode(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `reason` label of `edge_rejected_total`; `None` for a bug, which is logged
    /// as an error instead of counted as a refusal.
    pub fn reason(&self) -> Option<&'static str> {
        Some(match self {
            IngestError::UnknownVendor => "unknown_vendor",
            IngestError::Method => "method",
            IngestError::BadContentLength => "bad_content_length",
            IngestError::Verify(e) => e.reason(),
            IngestError::TooLarge => "too_large",
            IngestError::BodyTimeout => "body_timeout",
            IngestError::BodyRead => "body_read",
            IngestError::BodyBudget => "body_budget",
            IngestError::Encode(_) => return None,
            IngestError::Produce(e) => e.reason(),
        })
    }

    /// The JSON body's message: one per status, so it names no check.
    fn message(&self) -> &'static str {
        match self {
            IngestError::UnknownVendor => "unknown vendor",
            IngestError::Method => "method not allowed",
            IngestError::BodyTimeout => "body not received in time",
            IngestError::BodyRead => "could not read body",
            IngestError::Encode(_) => "internal error",
            _ => match self.status() {
                StatusCode::BAD_REQUEST => "bad request",
                StatusCode::FORBIDDEN => "forbidden",
                StatusCode::PAYLOAD_TOO_LARGE => "body too large",
                StatusCode::SERVICE_UNAVAILABLE => "temporarily unavailable",
                _ => "unauthorized",
            },
        }
    }

    /// Counts, logs and answers the refusal for `vendor` (the route's metric label).
    pub fn respond(&self, app: &App, vendor: &str) -> Response {
        match self {
            IngestError::Encode(_) => {
                tracing::error!(message = "Failed to encode envelope.", error = %self, vendor);
            }
            IngestError::BodyBudget => {
                tracing::warn!(message = "Body budget exhausted; answering 503.", vendor);
            }
            IngestError::Produce(ProduceError::TooLarge) => {
                tracing::warn!(
                    message = "Record larger than Kafka accepts; answering 413.",
                    vendor
                );
            }
            IngestError::Produce(e) => {
                tracing::warn!(message = "Kafka did not take the record; answering 503.", error = %e, vendor);
            }
            _ => {}
        }
        if let Some(reason) = self.reason() {
            app.metrics.rejected(vendor, reason);
        }
        let mut response = json_error(self.status(), self.message());
        if self.status() == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from(app.retry_after_secs),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_one_status_and_a_coarse_message() {
        let cases = [
            (IngestError::UnknownVendor, 404, "unknown vendor"),
            (IngestError::Method, 405, "method not allowed"),
            (IngestError::BadContentLength, 400, "bad request"),
            (
                IngestError::Verify(VerifyError::StaleTimestamp),
                401,
                "unauthorized",
            ),
            (
                IngestError::Verify(VerifyError::BadSignature),
                401,
                "unauthorized",
            ),
            (
                IngestError::Verify(VerifyError::UnknownApiKey),
                403,
                "forbidden",
            ),
            (
                IngestError::Verify(VerifyError::MalformedSignature("x")),
                400,
                "bad request",
            ),
            (IngestError::TooLarge, 413, "body too large"),
            (
                IngestError::Produce(ProduceError::TooLarge),
                413,
                "body too large",
            ),
            (IngestError::BodyTimeout, 408, "body not received in time"),
            (IngestError::BodyRead, 400, "could not read body"),
            (IngestError::BodyBudget, 503, "temporarily unavailable"),
            (
                IngestError::Produce(ProduceError::Timeout),
                503,
                "temporarily unavailable",
            ),
            (IngestError::Encode("x".into()), 500, "internal error"),
        ];
        for (e, status, message) in cases {
            assert_eq!(e.status().as_u16(), status, "{e}");
            assert_eq!(e.message(), message, "{e}");
        }
        assert_eq!(IngestError::Encode("x".into()).reason(), None);
        assert_eq!(
            IngestError::Produce(ProduceError::TooLarge).reason(),
            Some("kafka_too_large")
        );
    }
}
