//! One disposition model for every error the pipeline sees (Arroyo's `ErrorDomain` ×
//! `RetryHint`, reduced to what a consumer can do with a record).
//!
//! Each error type says, through [`Classify`], whether its record is bad data (dead-letter
//! it with a [`DlqReason`] and move the offset on), an outage (retry with backoff, store
//! nothing past it) or fatal (stop the process so an operator acts). [`DlqReason::as_str`]
//! is the only source of `dlq.reason` headers and `processor_dlq_total{reason}` labels.

use bridge_core::envelope::ShapeError;
use bridge_core::registry::DecodeError;

use crate::fetch::accounts::AccountError;
use crate::normalize::NormalizeError;
use crate::publish::{DeadLetterError, PublishError};
use crate::sink::SinkError;

/// What to do with a record whose processing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Deterministic: the same bytes fail the same way. Dead-letter the original
    /// record with this reason and move on.
    DeadLetter(DlqReason),
    /// The data is not at fault: retry with backoff, never store an offset past it.
    Retry,
    /// No retry can fix it and nothing may be skipped: stop; the batch is redelivered.
    Fatal,
}

/// Says what to do with an error.
pub trait Classify {
    /// The disposition of the record this error happened to.
    fn disposition(&self) -> Disposition;

    /// For a [`Disposition::Retry`]: the dependency is up but refuses for a reason of
    /// its own deployment (permissions, a missing table), so waiting alone will not end
    /// it. Logged as an error instead of a warning.
    fn operator_must_act(&self) -> bool {
        false
    }
}

/// Why a raw record went to the dead-letter topic: the `dlq.reason` header and the
/// `reason` label. The strings are an interface (dashboards, `processor redrive
/// --reason`, tests): never change one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DlqReason {
    /// Not Confluent-framed, or does not decode against the schema the registry serves.
    Undecodable,
    /// Decodes, but is not a raw envelope.
    NotAnEnvelope,
    /// [`NormalizeError::InvalidJson`].
    InvalidJson,
    /// [`NormalizeError::UnsupportedShape`].
    UnsupportedShape,
    /// [`NormalizeError::UnknownVendor`].
    UnknownVendor,
    /// [`NormalizeError::NotificationOnly`].
    NotificationOnly,
    /// [`NormalizeError::UnsupportedType`].
    UnsupportedType,
    /// [`NormalizeError::UnsupportedVersion`].
    UnsupportedVersion,
    /// [`NormalizeError::MissingUserId`].
    MissingUserId,
    /// [`NormalizeError::InvalidTimestamp`].
    InvalidTimestamp,
    /// [`NormalizeError::UnsupportedUnit`].
    UnsupportedUnit,
    /// [`NormalizeError::InvalidHeader`].
    InvalidHeader,
    /// [`NormalizeError::PayloadByReference`].
    PayloadByReference,
    /// PostgreSQL refused the envelope's rows (SQLSTATE class 22 or 23).
    RejectedByDatabase,
    /// PostgreSQL refused to park the notification (SQLSTATE class 22 or 23).
    ParkRefused,
}

impl DlqReason {
    /// Every reason, for label pre-registration and for parsing labels back.
    pub const ALL: [DlqReason; 15] = [
        DlqReason::Undecodable,
        DlqReason::NotAnEnvelope,
        DlqReason::InvalidJson,
        DlqReason::UnsupportedShape,
        DlqReason::UnknownVendor,
        DlqReason::NotificationOnly,
        DlqReason::UnsupportedType,
        DlqReason::MissingUserId,
        DlqReason::InvalidTimestamp,
        DlqReason::UnsupportedUnit,
        DlqReason::InvalidHeader,
        DlqReason::PayloadByReference,
        DlqReason::RejectedByDatabase,
        DlqReason::ParkRefused,
        DlqReason::UnsupportedVersion,
    ];

    /// The bounded snake_case label.
    pub fn as_str(self) -> &'static str {
        match self {
            DlqReason::Undecodable => "undecodable",
            DlqReason::NotAnEnvelope => "not_an_envelope",
            DlqReason::InvalidJson => "invalid_json",
            DlqReason::UnsupportedShape => "unsupported_shape",
            DlqReason::UnknownVendor => "unknown_vendor",
            DlqReason::NotificationOnly => "notification_only",
            DlqReason::UnsupportedType => "unsupported_type",
            DlqReason::UnsupportedVersion => "unsupported_version",
            DlqReason::MissingUserId => "missing_user_id",
            DlqReason::InvalidTimestamp => "invalid_timestamp",
            DlqReason::UnsupportedUnit => "unsupported_unit",
            DlqReason::InvalidHeader => "invalid_header",
            DlqReason::PayloadByReference => "payload_by_reference",
            DlqReason::RejectedByDatabase => "rejected_by_database",
            DlqReason::ParkRefused => "park_refused",
        }
    }

    /// The reason a label names. The fetch engine still reports rejections as the
    /// label of the [`NormalizeError`] it hit (`fetch::Outcome::Reject`); this turns
    /// them back into the enum.
    pub fn from_label(label: &str) -> Option<DlqReason> {
        DlqReason::ALL.into_iter().find(|r| r.as_str() == label)
    }
}

impl std::fmt::Display for DlqReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&NormalizeError> for DlqReason {
    fn from(e: &NormalizeError) -> Self {
        match e {
            NormalizeError::InvalidJson(_) => DlqReason::InvalidJson,
            NormalizeError::UnsupportedShape(_) => DlqReason::UnsupportedShape,
            NormalizeError::UnknownVendor(_) => DlqReason::UnknownVendor,
            NormalizeError::NotificationOnly(_) => DlqReason::NotificationOnly,
            NormalizeError::UnsupportedType { .. } => DlqReason::UnsupportedType,
            NormalizeError::UnsupportedVersion { .. } => DlqReason::UnsupportedVersion,
            NormalizeError::MissingUserId(_) => DlqReason::MissingUserId,
            NormalizeError::InvalidTimestamp { .. } => DlqReason::InvalidTimestamp,
            NormalizeError::UnsupportedUnit { .. } => DlqReason::UnsupportedUnit,
            NormalizeError::InvalidHeader { .. } => DlqReason::InvalidHeader,
            NormalizeError::PayloadByReference => DlqReason::PayloadByReference,
        }
    }
}

impl Classify for NormalizeError {
    fn disposition(&self) -> Disposition {
        Disposition::DeadLetter(self.into())
    }
}

/// Registry outages, an unknown schema id included, are held: the edge registered every
/// id it produced with, so only bytes that fail against a served schema are bad data.
impl Classify for DecodeError {
    fn disposition(&self) -> Disposition {
        match self {
            DecodeError::Poison(_) => Disposition::DeadLetter(DlqReason::Undecodable),
            DecodeError::UnknownSchema(_) | DecodeError::Transient(_) => Disposition::Retry,
        }
    }
}

impl Classify for ShapeError {
    fn disposition(&self) -> Disposition {
        Disposition::DeadLetter(DlqReason::NotAnEnvelope)
    }
}

/// Only the sink knows PostgreSQL's SQLSTATE rules ([`SinkError::is_bad_data`]). An
/// error that is neither bad data nor transient is a deployment fault (permissions, a
/// missing table): good data must not be dead-lettered for it, so it is held too, and
/// the write stage says loudly that an operator has to act.
impl Classify for SinkError {
    fn disposition(&self) -> Disposition {
        if self.is_bad_data() {
            Disposition::DeadLetter(DlqReason::RejectedByDatabase)
        } else {
            Disposition::Retry
        }
    }

    fn operator_must_act(&self) -> bool {
        !self.is_bad_data() && !self.is_transient()
    }
}

/// Publishing the changelog happens before the commit, so a failure rolls the batch
/// back and the retry publishes again.
impl Classify for PublishError {
    fn disposition(&self) -> Disposition {
        Disposition::Retry
    }
}

/// A DLQ topic that refuses our records can only be fixed by an operator, and the
/// records cannot be skipped (they would be lost).
impl Classify for DeadLetterError {
    fn disposition(&self) -> Disposition {
        match self {
            DeadLetterError::Transient(_) => Disposition::Retry,
            DeadLetterError::Fatal { .. } => Disposition::Fatal,
        }
    }
}

/// The fetch engine turns vendor and token problems into outcomes (park, reject); what
/// reaches the caller as an error is PostgreSQL failing under the account store.
impl Classify for AccountError {
    fn disposition(&self) -> Disposition {
        Disposition::Retry
    }
}

/// Making a park decision durable failed.
#[derive(Debug, thiserror::Error)]
#[error("could not park the notification: {0}")]
pub struct ParkError(pub SinkError);

impl From<sqlx::Error> for ParkError {
    fn from(source: sqlx::Error) -> Self {
        ParkError(SinkError::Query {
            op: "park a notification",
            source,
        })
    }
}

/// The sink's rule decides; a refused row is dead-lettered as `park_refused` so the
/// notification is kept on the DLQ instead of being lost or retried forever.
impl Classify for ParkError {
    fn disposition(&self) -> Disposition {
        match self.0.disposition() {
            Disposition::DeadLetter(_) => Disposition::DeadLetter(DlqReason::ParkRefused),
            other => other,
        }
    }

    fn operator_must_act(&self) -> bool {
        self.0.operator_must_act()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique_and_parse_back() {
        let mut seen = std::collections::HashSet::new();
        for r in DlqReason::ALL {
            assert!(seen.insert(r.as_str()), "duplicate label {r}");
            assert_eq!(DlqReason::from_label(r.as_str()), Some(r));
        }
        assert_eq!(DlqReason::from_label("registry_unavailable"), None);
    }

    #[test]
    fn the_published_reason_strings_are_unchanged() {
        let labels: Vec<&str> = DlqReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            labels,
            [
                "undecodable",
                "not_an_envelope",
                "invalid_json",
                "unsupported_shape",
                "unknown_vendor",
                "notification_only",
                "unsupported_type",
                "missing_user_id",
                "invalid_timestamp",
                "unsupported_unit",
                "invalid_header",
                "payload_by_reference",
                "rejected_by_database",
                "park_refused",
                "unsupported_version",
            ]
        );
    }

    /// The normalizer still has its own `reason()`; both must name the same label, or
    /// the fetch engine's rejections would stop parsing back.
    #[test]
    fn normalize_errors_map_to_their_own_label() {
        let errors = [
            NormalizeError::InvalidJson(String::new()),
            NormalizeError::UnsupportedShape(String::new()),
            NormalizeError::UnknownVendor(String::new()),
            NormalizeError::NotificationOnly(String::new()),
            NormalizeError::UnsupportedType {
                vendor: "oura",
                kind: String::new(),
            },
            NormalizeError::UnsupportedVersion {
                vendor: "whoop",
                detail: String::new(),
            },
            NormalizeError::MissingUserId("user_id"),
            NormalizeError::InvalidTimestamp {
                field: "start",
                value: String::new(),
            },
            NormalizeError::UnsupportedUnit {
                metric: String::new(),
                unit: String::new(),
            },
            NormalizeError::InvalidHeader {
                name: "x",
                value: String::new(),
            },
            NormalizeError::PayloadByReference,
        ];
        for e in errors {
            assert_eq!(DlqReason::from(&e).as_str(), e.reason());
            assert_eq!(DlqReason::from_label(e.reason()), Some((&e).into()));
        }
    }

    #[test]
    fn decode_outages_are_held_and_poison_is_dead_lettered() {
        assert_eq!(
            DecodeError::Poison("x".into()).disposition(),
            Disposition::DeadLetter(DlqReason::Undecodable)
        );
        assert_eq!(
            DecodeError::UnknownSchema(7).disposition(),
            Disposition::Retry
        );
        assert_eq!(
            DecodeError::Transient("down".into()).disposition(),
            Disposition::Retry
        );
    }

    #[test]
    fn a_pool_timeout_is_retried_even_while_parking() {
        assert_eq!(
            ParkError::from(sqlx::Error::PoolTimedOut).disposition(),
            Disposition::Retry
        );
        assert_eq!(
            SinkError::BeforeCommit("kafka".into()).disposition(),
            Disposition::Retry
        );
    }
}
