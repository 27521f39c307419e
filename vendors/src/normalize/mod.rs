//! Vendor normalizers: one vendor payload in, canonical [`Normalized`] out.
//!
//! Every function here is pure (no I/O, no clock, no randomness), so re-normalizing a raw
//! envelope later (replay, dead-letter re-drive) yields exactly the same rows.
//! Push vendors (Terra, Health Auto Export) arrive as [`RawEnvelope`]s and go through
//! [`normalize`]. Notify-only vendors (Oura, WHOOP) are fetched elsewhere; the fetched
//! documents go through their vendor's `normalize_document` (e.g. `oura::normalize`).
//!
//! Conventions shared by every vendor:
//! - A missing or `null` field or block yields no reading. A present field that is not a
//!   finite JSON number is treated the same way: nothing is guessed and NaN is never emitted.
//! - Times honour the offset the vendor wrote and are stored as UTC instants. An instant
//!   reading has `start_time == end_time`.
//! - Values are converted into [`Metric::unit`](crate::model::Metric::unit) here and
//!   nowhere else; an unknown unit string is an error, never a guess.
//! - A deterministic problem with the input is a [`NormalizeError`]; the caller
//!   dead-letters the original bytes with [`NormalizeError::reason`] and moves on.

#[cfg_attr(not(feature = "processor"), allow(dead_code))]
pub(crate) mod activity;
pub(crate) mod units;

#[cfg(test)]
mod coverage;

use bridge_core::{RawEnvelope, Vendor};
use chrono::{DateTime, FixedOffset, NaiveDate, TimeDelta, Utc};
use serde_json::Value;

use bridge_core::model::{Activity, Metric, Normalized, Reading};

/// Why a payload could not be normalized.
///
/// Every variant is deterministic: retrying the same bytes gives the same answer, so the
/// caller dead-letters the payload (reason header = [`NormalizeError::reason`]) and commits
/// past it. Messages never echo more than a short, clipped piece of the input.
#[derive(Debug, thiserror::Error)]
pub enum NormalizeError {
    /// The body is not JSON.
    #[error("body is not valid JSON: {0}")]
    InvalidJson(String),
    /// Valid JSON, but not the shape the vendor documents (no `type`, `data` not a list, a
    /// required id or time missing, an interval that ends before it starts…).
    #[error("unexpected payload shape: {0}")]
    UnsupportedShape(String),
    /// No normalizer is registered for this vendor route name.
    #[error("no normalizer for vendor {0:?}")]
    UnknownVendor(String),
    /// The vendor's webhooks carry only ids (Oura, WHOOP, Polar). The envelope belongs to
    /// the fetcher, which normalizes the fetched documents with the `normalize_document`
    /// functions; reaching [`normalize`] with one is a routing mistake.
    #[error("vendor {0:?} sends notifications only; fetch the documents and normalize those")]
    NotificationOnly(String),
    /// A vendor event or document type this code does not know. Dead-lettered rather than
    /// dropped, so it can be replayed once support is added.
    #[error("{vendor} type {kind:?} is not supported")]
    UnsupportedType {
        /// Vendor route name.
        vendor: &'static str,
        /// The type as the vendor named it (clipped).
        kind: String,
    },
    /// A webhook of an API version the vendor no longer serves, so nothing it names can
    /// be fetched (WHOOP's v1 webhook model). The message says what the operator must
    /// change at the vendor.
    #[error("{vendor} {detail}")]
    UnsupportedVersion {
        /// Vendor route name.
        vendor: &'static str,
        /// What was sent and what to change (clipped).
        detail: String,
    },
    /// No user to attribute the data to.
    #[error("no user id: {0}")]
    MissingUserId(&'static str),
    /// A time or date field is present but cannot be parsed.
    #[error("invalid timestamp in {field}: {value:?}")]
    InvalidTimestamp {
        /// Which field (JSON path as documented by the vendor).
        field: &'static str,
        /// The value as sent (clipped).
        value: String,
    },
    /// A unit string the conversion table does not know.
    #[error("unsupported unit {unit:?} for {metric}")]
    UnsupportedUnit {
        /// The vendor's metric name (clipped).
        metric: String,
        /// The unit string as sent (clipped).
        unit: String,
    },
    /// A delivery header that must be machine-readable is not.
    #[error("invalid header {name}: {value:?}")]
    InvalidHeader {
        /// Lower-case header name.
        name: &'static str,
        /// The value as sent (clipped).
        value: String,
    },
    /// Terra `s3_payload`: the data sits behind a pre-signed URL. Fetching is I/O and out
    /// of scope for a pure normalizer, and acknowledging it as empty would silently lose the
    /// data, so it is an error. The URL is a credential and is deliberately not in the message.
    #[error(
        "terra s3_payload: the data is behind a pre-signed URL that the normalizer does not fetch"
    )]
    PayloadByReference,
}

impl NormalizeError {
    /// A bounded, snake_case label for DLQ headers and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            NormalizeError::InvalidJson(_) => "invalid_json",
            NormalizeError::UnsupportedShape(_) => "unsupported_shape",
            NormalizeError::UnknownVendor(_) => "unknown_vendor",
            NormalizeError::NotificationOnly(_) => "notification_only",
            NormalizeError::UnsupportedType { .. } => "unsupported_type",
            NormalizeError::UnsupportedVersion { .. } => "unsupported_version",
            NormalizeError::MissingUserId(_) => "missing_user_id",
            NormalizeError::InvalidTimestamp { .. } => "invalid_timestamp",
            NormalizeError::UnsupportedUnit { .. } => "unsupported_unit",
            NormalizeError::InvalidHeader { .. } => "invalid_header",
            NormalizeError::PayloadByReference => "payload_by_reference",
        }
    }
}

/// Normalizes one raw envelope by its vendor route name, through the registry.
///
/// Push vendors (data inline) yield their readings; notification vendors yield
/// [`NormalizeError::NotificationOnly`] (their documents are fetched and normalized by
/// their fetch job); a route name that is not a built-in vendor (a generic HMAC source)
/// yields [`NormalizeError::UnknownVendor`].
pub fn normalize(env: &RawEnvelope) -> Result<Normalized, NormalizeError> {
    let vendor = env
        .vendor
        .parse::<Vendor>()
        .map_err(|_| NormalizeError::UnknownVendor(clip(&env.vendor)))?;
    crate::push_normalizer(vendor)(env)
}

/// The normalizer of a vendor whose webhooks carry no data: see
/// [`NormalizeError::NotificationOnly`].
pub fn notification_only(env: &RawEnvelope) -> Result<Normalized, NormalizeError> {
    Err(NormalizeError::NotificationOnly(env.vendor.clone()))
}

/// At most 64 characters of hostile input, for error messages.
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

pub(crate) fn shape(msg: impl Into<String>) -> NormalizeError {
    NormalizeError::UnsupportedShape(msg.into())
}

/// The body as JSON.
pub(crate) fn parse_json(body: &[u8]) -> Result<Value, NormalizeError> {
    serde_json::from_slice(body).map_err(|e| NormalizeError::InvalidJson(e.to_string()))
}

/// The value at `path`, if every step exists and the value is not `null`.
pub(crate) fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for key in path {
        cur = cur.get(key)?;
    }
    (!cur.is_null()).then_some(cur)
}

/// A finite number at `path`; anything else (missing, null, string, bool) is `None`.
pub(crate) fn num(v: &Value, path: &[&str]) -> Option<f64> {
    get(v, path)?.as_f64().filter(|x| x.is_finite())
}

/// A non-blank string at `path`.
pub(crate) fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(v, path)?.as_str().filter(|s| !s.trim().is_empty())
}

/// The array at `path`; missing or null is empty, any other type is a shape error.
pub(crate) fn array<'a>(
    v: &'a Value,
    path: &[&str],
    what: &str,
) -> Result<&'a [Value], NormalizeError> {
    match get(v, path) {
        None => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(shape(format!("{what} is not a list"))),
    }
}

/// An id that vendors send either as a string (UUID) or as an integer.
pub(crate) fn id_string(v: &Value, path: &[&str]) -> Option<String> {
    match get(v, path)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// An ISO-8601 / RFC 3339 instant with an offset (`Z` or `±hh:mm`).
pub(crate) fn parse_rfc3339(
    field: &'static str,
    s: &str,
) -> Result<DateTime<FixedOffset>, NormalizeError> {
    DateTime::parse_from_rfc3339(s.trim()).map_err(|_| NormalizeError::InvalidTimestamp {
        field,
        value: clip(s),
    })
}

/// A required RFC 3339 string at `path`.
pub(crate) fn required_rfc3339(
    v: &Value,
    path: &[&str],
    field: &'static str,
) -> Result<(DateTime<FixedOffset>, String), NormalizeError> {
    let raw = text(v, path).ok_or_else(|| shape(format!("missing {field}")))?;
    Ok((parse_rfc3339(field, raw)?, raw.to_owned()))
}

/// A `YYYY-MM-DD` calendar date.
pub(crate) fn parse_date(field: &'static str, s: &str) -> Result<NaiveDate, NormalizeError> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|_| NormalizeError::InvalidTimestamp {
        field,
        value: clip(s),
    })
}

/// The whole calendar `day` at `offset`, as a UTC interval of 24 hours. A fixed offset has
/// no DST, so the day is always exactly 24 h long.
pub(crate) fn day_interval(
    day: NaiveDate,
    offset: FixedOffset,
) -> Result<(DateTime<Utc>, DateTime<Utc>), NormalizeError> {
    let start = day
        .and_hms_opt(0, 0, 0)
        .and_then(|midnight| midnight.and_local_timezone(offset).single())
        .ok_or_else(|| shape("day cannot be placed at its offset"))?
        .with_timezone(&Utc);
    let end = start
        .checked_add_signed(TimeDelta::days(1))
        .ok_or_else(|| shape("day out of range"))?;
    Ok((start, end))
}

/// `start..end` as UTC, refusing intervals that run backwards.
pub(crate) fn interval(
    start: DateTime<FixedOffset>,
    end: DateTime<FixedOffset>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), NormalizeError> {
    if end < start {
        return Err(shape("interval ends before it starts"));
    }
    Ok((start.with_timezone(&Utc), end.with_timezone(&Utc)))
}

/// An ISO 8601 duration (`PT2H44M`, `PT4.5S`, `P1DT2H`, `P2W`) in seconds. Years and
/// months have no fixed length and are refused, as is anything after the duration.
pub(crate) fn iso8601_seconds(field: &'static str, s: &str) -> Result<f64, NormalizeError> {
    let bad = || NormalizeError::InvalidTimestamp {
        field,
        value: clip(s),
    };
    let (rest, d) = iso8601::parsers::parse_duration(s.trim().as_bytes()).map_err(|_| bad())?;
    if !rest.is_empty() {
        return Err(bad());
    }
    let seconds = match d {
        iso8601::Duration::YMDHMS {
            year: 0,
            month: 0,
            day,
            hour,
            minute,
            second,
            millisecond,
        } => {
            let whole = u64::from(day) * 86_400
                + u64::from(hour) * 3600
                + u64::from(minute) * 60
                + u64::from(second);
            whole as f64 + f64::from(millisecond) / 1000.0
        }
        iso8601::Duration::YMDHMS { .. } => return Err(bad()),
        iso8601::Duration::Weeks(w) => f64::from(w) * 7.0 * 86_400.0,
    };
    Ok(seconds)
}

/// Whole seconds (with sub-second fraction) between two instants.
pub(crate) fn seconds_between(start: DateTime<Utc>, end: DateTime<Utc>) -> f64 {
    let d = end - start;
    d.num_milliseconds() as f64 / 1000.0
}

/// What every reading of one vendor document shares.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) user_id: String,
    pub(crate) vendor: &'static str,
    pub(crate) source_record_id: String,
    pub(crate) source: Option<String>,
    pub(crate) ordering: Option<i64>,
    /// Set when the document is a session (a workout's sport, `sleep`): every reading of
    /// it carries the activity.
    pub(crate) activity: Option<Activity>,
}

impl Record {
    /// Appends a reading when `value` is present and finite.
    pub(crate) fn push(
        &self,
        out: &mut Vec<Reading>,
        metric: Metric,
        value: Option<f64>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) {
        let Some(value) = value.filter(|v| v.is_finite()) else {
            return;
        };
        out.push(Reading {
            user_id: self.user_id.clone(),
            vendor: self.vendor.to_owned(),
            metric,
            value,
            start_time: start,
            end_time: end,
            source_record_id: self.source_record_id.clone(),
            source: self.source.clone(),
            ordering: self.ordering,
            activity: self.activity,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn envelope(vendor: &str, body: &[u8]) -> RawEnvelope {
        RawEnvelope {
            event_id: "0192".into(),
            vendor: vendor.into(),
            received_at_micros: 0,
            headers: HashMap::new(),
            query: None,
            principal: Some("user-1".into()),
            content_type: Some("application/json".into()),
            body: body.to_vec(),
            edge_instance: "edge-1".into(),
        }
    }

    #[test]
    fn registry_routes_by_vendor() {
        let err = normalize(&envelope("oura", b"{}")).unwrap_err();
        assert!(matches!(err, NormalizeError::NotificationOnly(ref v) if v == "oura"));
        assert_eq!(err.reason(), "notification_only");
        for v in ["whoop", "polar"] {
            assert_eq!(
                normalize(&envelope(v, b"{}")).unwrap_err().reason(),
                "notification_only"
            );
        }
        let err = normalize(&envelope("fitbit", b"{}")).unwrap_err();
        assert_eq!(err.reason(), "unknown_vendor");
        let ok = normalize(&envelope("terra", br#"{"type":"healthcheck"}"#)).unwrap();
        assert_eq!(ok, Normalized::default());
        let ok = normalize(&envelope("healthkit", br#"{"data":{}}"#)).unwrap();
        assert_eq!(ok, Normalized::default());
    }

    #[test]
    fn hostile_bodies_are_errors_not_panics() {
        let deep = "[".repeat(10_000);
        let bodies: [&[u8]; 8] = [
            b"",
            b"\xff\xfe",
            b"null",
            b"[]",
            b"{\"type\":7}",
            b"{\"data\":[]}",
            b"{\"data\":{\"metrics\":{}}}",
            deep.as_bytes(),
        ];
        for body in bodies {
            for vendor in ["terra", "healthkit"] {
                assert!(
                    normalize(&envelope(vendor, body)).is_err(),
                    "{vendor} {body:?}"
                );
            }
        }
    }

    #[test]
    fn error_messages_clip_input() {
        let long = "x".repeat(10_000);
        let msg = normalize(&envelope(&long, b"{}")).unwrap_err().to_string();
        assert!(msg.len() < 200, "{msg}");
    }

    #[test]
    fn reasons_are_snake_case() {
        let errors = [
            NormalizeError::InvalidJson(String::new()),
            NormalizeError::UnsupportedShape(String::new()),
            NormalizeError::UnknownVendor(String::new()),
            NormalizeError::NotificationOnly(String::new()),
            NormalizeError::UnsupportedType {
                vendor: "terra",
                kind: String::new(),
            },
            NormalizeError::UnsupportedVersion {
                vendor: "whoop",
                detail: String::new(),
            },
            NormalizeError::MissingUserId(""),
            NormalizeError::InvalidTimestamp {
                field: "",
                value: String::new(),
            },
            NormalizeError::UnsupportedUnit {
                metric: String::new(),
                unit: String::new(),
            },
            NormalizeError::InvalidHeader {
                name: "",
                value: String::new(),
            },
            NormalizeError::PayloadByReference,
        ];
        for e in errors {
            let r = e.reason();
            assert!(r.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{r}");
        }
    }

    #[test]
    fn day_interval_keeps_the_local_day() {
        let day = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
        let plus_one = FixedOffset::east_opt(3600).unwrap();
        let (s, e) = day_interval(day, plus_one).unwrap();
        assert_eq!(s.to_rfc3339(), "2024-12-31T23:00:00+00:00");
        assert_eq!(e.to_rfc3339(), "2025-01-01T23:00:00+00:00");
    }
}

/// Fixture harness: every `vendors/tests/fixtures/<vendor>/<case>.json` is normalized and
/// compared with `<case>.expected.json`, written by hand.
///
/// Beside each input: `<case>.expected.json` (required) is either a JSON array of readings
/// `{metric, value, unit, start_time, end_time, source_record_id, user_id, source?,
/// ordering?, activity?}` (an absent `source`/`ordering`/`activity` means `None`, and
/// tombstones, account events and unmapped names must be empty) or an object `{readings,
/// tombstones, account_events, error, score_state, unmapped}` with every key optional. `<case>.headers.json` (delivery headers) and
/// `<case>.args.json` (`principal` for push vendors; `user_id`, `data_type` or `kind` for
/// fetched documents) are optional; `<case>.md` holds the arithmetic where it is not obvious.
#[cfg(test)]
pub(super) mod fixture_tests {
    use std::collections::HashMap;
    use std::fs;
    use std::path::{Path, PathBuf};

    use serde::Deserialize;

    use super::*;
    use crate::oura::normalize as oura;
    use crate::polar::normalize as polar;
    use crate::whoop::normalize as whoop;

    /// Absolute tolerance on values: hand-computed expectations are written with enough
    /// digits that only float rounding separates them from the code's result.
    const TOLERANCE: f64 = 1e-9;
    pub(super) const VENDOR_DIRS: [&str; 7] = [
        "terra",
        "healthkit",
        "oura",
        "whoop",
        "google_health",
        "suunto",
        "polar",
    ];

    #[derive(Debug, Clone, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Args {
        principal: Option<String>,
        user_id: Option<String>,
        data_type: Option<String>,
        kind: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ExpectedReading {
        metric: String,
        value: f64,
        unit: String,
        start_time: String,
        end_time: String,
        source_record_id: String,
        user_id: String,
        source: Option<String>,
        ordering: Option<i64>,
        /// The session's activity code; absent means the reading belongs to no session.
        activity: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ExpectedTombstone {
        user_id: String,
        source_record_id: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ExpectedAccountEvent {
        user_id: Option<String>,
        kind: String,
        vendor_user_id: Option<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Expected {
        #[serde(default)]
        readings: Vec<ExpectedReading>,
        #[serde(default)]
        tombstones: Vec<ExpectedTombstone>,
        #[serde(default)]
        account_events: Vec<ExpectedAccountEvent>,
        /// `NormalizeError::reason()` of the expected error.
        error: Option<String>,
        /// `whoop::score_state` of the input, in snake_case.
        score_state: Option<String>,
        /// `Normalized::unmapped`, in any order.
        #[serde(default)]
        unmapped: Vec<String>,
    }

    /// One reading in comparable form.
    #[derive(Debug, Clone, PartialEq)]
    struct Row {
        metric: Metric,
        value: f64,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        source_record_id: String,
        user_id: String,
        vendor: String,
        source: Option<String>,
        ordering: Option<i64>,
        activity: Option<String>,
    }

    impl Row {
        fn matches(&self, other: &Row) -> bool {
            (self.value - other.value).abs() <= TOLERANCE
                && Row {
                    value: 0.0,
                    ..self.clone()
                } == Row {
                    value: 0.0,
                    ..other.clone()
                }
        }

        fn sort_key(&self) -> (&'static str, DateTime<Utc>, DateTime<Utc>, String) {
            (
                self.metric.as_str(),
                self.start,
                self.end,
                self.source_record_id.clone(),
            )
        }
    }

    impl From<&Reading> for Row {
        fn from(r: &Reading) -> Self {
            Row {
                metric: r.metric,
                value: r.value,
                start: r.start_time,
                end: r.end_time,
                source_record_id: r.source_record_id.clone(),
                user_id: r.user_id.clone(),
                vendor: r.vendor.clone(),
                source: r.source.clone(),
                ordering: r.ordering,
                activity: r.activity.map(|a| a.as_str().to_owned()),
            }
        }
    }

    pub(super) fn fixtures_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
    }

    fn read(path: &Path) -> Result<Vec<u8>, String> {
        fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, String> {
        serde_json::from_slice(&read(path)?).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub(super) fn read_optional<T: for<'de> Deserialize<'de> + Default>(
        path: &Path,
    ) -> Result<T, String> {
        if path.exists() {
            read_json(path)
        } else {
            Ok(T::default())
        }
    }

    fn expected_row(vendor: &str, e: &ExpectedReading) -> Result<Row, String> {
        let metric: Metric = e.metric.parse().map_err(|err| format!("{err}"))?;
        if e.unit != metric.unit() {
            return Err(format!(
                "{}: unit {:?}, canonical is {:?}",
                e.metric,
                e.unit,
                metric.unit()
            ));
        }
        let time = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|err| format!("{s:?}: {err}"))
        };
        Ok(Row {
            metric,
            value: e.value,
            start: time(&e.start_time)?,
            end: time(&e.end_time)?,
            source_record_id: e.source_record_id.clone(),
            user_id: e.user_id.clone(),
            vendor: vendor.to_owned(),
            source: e.source.clone(),
            ordering: e.ordering,
            activity: e.activity.clone(),
        })
    }

    fn load_expected(path: &Path) -> Result<Expected, String> {
        let value: Value = read_json(path)?;
        let parsed = if value.is_array() {
            serde_json::from_value(value).map(|readings| Expected {
                readings,
                ..Expected::default()
            })
        } else {
            serde_json::from_value(value)
        };
        parsed.map_err(|e| format!("{}: {e}", path.display()))
    }

    pub(super) fn run(
        vendor: &str,
        input: &[u8],
        args: Args,
        headers: HashMap<String, String>,
    ) -> Result<Result<Normalized, (&'static str, String)>, String> {
        let doc = || serde_json::from_slice::<Value>(input).map_err(|e| format!("input: {e}"));
        let user = || args.user_id.clone().unwrap_or_default();
        let found: Result<Normalized, NormalizeError> = match vendor {
            "terra" | "healthkit" => normalize(&RawEnvelope {
                event_id: "fixture".into(),
                vendor: vendor.into(),
                received_at_micros: 1_735_718_400_000_000,
                headers: headers
                    .into_iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v))
                    .collect(),
                query: None,
                principal: args.principal.clone(),
                content_type: Some("application/json".into()),
                body: input.to_vec(),
                edge_instance: "fixture".into(),
            }),
            "google_health" => {
                let data_type = args
                    .data_type
                    .as_deref()
                    .ok_or("google_health case needs args.data_type")?;
                crate::google_health::normalize::normalize_page(&user(), data_type, &doc()?)
            }
            "oura" => {
                let data_type = args
                    .data_type
                    .as_deref()
                    .ok_or("oura case needs args.data_type")?;
                oura::normalize_document(&user(), data_type, &doc()?)
            }
            "whoop" => {
                let kind = match args.kind.as_deref() {
                    Some("recovery") => whoop::WhoopDocKind::Recovery,
                    Some("sleep") => whoop::WhoopDocKind::Sleep,
                    Some("cycle") => whoop::WhoopDocKind::Cycle,
                    Some("workout") => whoop::WhoopDocKind::Workout,
                    other => return Err(format!("whoop case needs args.kind, got {other:?}")),
                };
                whoop::normalize_document(&user(), kind, &doc()?)
            }
            // The webhook body through the vendor's own notification path; a job that
            // asks for a document fails the case (fixtures hold complete copies).
            "suunto" => {
                use crate::fetch::Notify;
                let prepared = match crate::suunto::fetch::SuuntoNotify.prepare(input) {
                    Ok(p) => p,
                    Err(e) => return Ok(Err((e.reason(), e.to_string()))),
                };
                let Some(job) = prepared.job else {
                    return Ok(Ok(Normalized::default()));
                };
                let mut api = crate::fetch::testing::Recorded::default();
                let (out, result) = crate::fetch::testing::run(job, &mut api, &user());
                return match result {
                    Ok(()) => Ok(Ok(out.normalized)),
                    Err(crate::fetch::Stop::Reject(reason, detail)) => Ok(Err((reason, detail))),
                    Err(stop) => Err(format!("job stopped: {stop:?} after {:?}", api.paths)),
                };
            }
            "polar" => {
                let doc = doc()?;
                let kind = match args.kind.as_deref() {
                    Some("night") => {
                        let recharge = doc.get("nightly_recharge");
                        let night = polar::normalize_night(&user(), &doc["sleep"], recharge);
                        return Ok(night.map_err(|e| (e.reason(), e.to_string())));
                    }
                    Some("exercise") => polar::PolarDocKind::Exercise,
                    Some("sleep") => polar::PolarDocKind::Sleep,
                    Some("continuous_heart_rate") => polar::PolarDocKind::ContinuousHeartRate,
                    Some("activity") => polar::PolarDocKind::Activity,
                    Some("physical_info") => polar::PolarDocKind::PhysicalInfo,
                    other => return Err(format!("polar case needs args.kind, got {other:?}")),
                };
                polar::normalize_document(&user(), kind, &doc)
            }
            other => return Err(format!("no runner for fixture directory {other:?}")),
        };
        Ok(found.map_err(|e| (e.reason(), e.to_string())))
    }

    fn run_case(vendor: &str, dir: &Path, case: &str) -> Result<(), String> {
        let input = read(&dir.join(format!("{case}.json")))?;
        let args: Args = read_optional(&dir.join(format!("{case}.args.json")))?;
        let headers: HashMap<String, String> =
            read_optional(&dir.join(format!("{case}.headers.json")))?;
        let expected = load_expected(&dir.join(format!("{case}.expected.json")))?;

        if let Some(want) = &expected.score_state {
            let got = match whoop::score_state(
                &serde_json::from_slice(&input).map_err(|e| e.to_string())?,
            ) {
                whoop::ScoreState::Scored => "scored",
                whoop::ScoreState::Pending => "pending",
                whoop::ScoreState::Unscorable => "unscorable",
                whoop::ScoreState::Missing => "missing",
            };
            if got != want {
                return Err(format!("score_state {got}, expected {want}"));
            }
        }

        let normalized = match (run(vendor, &input, args, headers)?, &expected.error) {
            (Err((reason, _)), Some(want)) if reason == want => return Ok(()),
            (Err((reason, e)), _) => {
                return Err(format!(
                    "error {reason} ({e}), expected {:?}",
                    expected.error
                ));
            }
            (Ok(_), Some(want)) => return Err(format!("succeeded, expected error {want}")),
            (Ok(n), None) => n,
        };

        let mut problems = Vec::new();
        let want_tombs: Vec<(String, String)> = expected
            .tombstones
            .iter()
            .map(|t| (t.user_id.clone(), t.source_record_id.clone()))
            .collect();
        let got_tombs: Vec<(String, String)> = normalized
            .tombstones
            .iter()
            .map(|t| {
                if t.vendor != vendor {
                    problems.push(format!("tombstone vendor {:?}", t.vendor));
                }
                (t.user_id.clone(), t.source_record_id.clone())
            })
            .collect();
        if want_tombs != got_tombs {
            problems.push(format!("tombstones {got_tombs:?}, expected {want_tombs:?}"));
        }
        let want_events: Vec<(Option<String>, String, Option<String>)> = expected
            .account_events
            .iter()
            .map(|e| (e.user_id.clone(), e.kind.clone(), e.vendor_user_id.clone()))
            .collect();
        let got_events: Vec<(Option<String>, String, Option<String>)> = normalized
            .account_events
            .iter()
            .map(|e| {
                if e.vendor != vendor {
                    problems.push(format!("account event vendor {:?}", e.vendor));
                }
                (e.user_id.clone(), e.kind.clone(), e.vendor_user_id.clone())
            })
            .collect();
        if want_events != got_events {
            problems.push(format!(
                "account events {got_events:?}, expected {want_events:?}"
            ));
        }

        let mut want_unmapped = expected.unmapped.clone();
        let mut got_unmapped = normalized.unmapped.clone();
        want_unmapped.sort();
        got_unmapped.sort();
        if want_unmapped != got_unmapped {
            problems.push(format!(
                "unmapped {got_unmapped:?}, expected {want_unmapped:?}"
            ));
        }

        let mut want = expected
            .readings
            .iter()
            .map(|e| expected_row(vendor, e))
            .collect::<Result<Vec<_>, _>>()?;
        let mut got: Vec<Row> = normalized.readings.iter().map(Row::from).collect();
        want.sort_by_key(Row::sort_key);
        got.sort_by_key(Row::sort_key);
        let mut used = vec![false; got.len()];
        for w in &want {
            match (0..got.len()).find(|&i| !used[i] && got[i].matches(w)) {
                Some(i) => used[i] = true,
                None => problems.push(format!("missing {w:?}")),
            }
        }
        for (g, _) in got.iter().zip(&used).filter(|(_, u)| !**u) {
            problems.push(format!("extra   {g:?}"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }

    /// Runs every case of one vendor directory and fails with all problems at once.
    fn run_vendor(vendor: &str) {
        let dir = fixtures_root().join(vendor);
        let mut names: Vec<String> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        let companion = [".expected.json", ".headers.json", ".args.json", ".md"];
        // The coverage report's list of non-health leaves (normalize/coverage.rs).
        names.retain(|n| n != super::coverage::IGNORE_FILE);
        let cases: Vec<&str> = names
            .iter()
            .filter(|n| !companion.iter().any(|c| n.ends_with(c)))
            .filter_map(|n| n.strip_suffix(".json"))
            .collect();
        let mut failures = Vec::new();
        for n in &names {
            let case = companion
                .iter()
                .find_map(|c| n.strip_suffix(c))
                .or_else(|| n.strip_suffix(".json"));
            match case {
                Some(c) if cases.contains(&c) => {}
                _ => failures.push(format!(
                    "{vendor}/{n}: stray file (no matching <case>.json)"
                )),
            }
        }
        assert!(!cases.is_empty(), "no fixtures in {}", dir.display());
        for case in &cases {
            if let Err(e) = run_case(vendor, &dir, case) {
                failures.push(format!("{vendor}/{case}:\n{e}"));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} cases failed:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n\n")
        );
    }

    #[test]
    fn every_fixture_directory_has_a_runner() {
        let root = fixtures_root();
        for entry in fs::read_dir(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display())) {
            let name = entry.map(|e| e.file_name()).unwrap_or_default();
            let name = name.to_string_lossy();
            assert!(
                VENDOR_DIRS.contains(&name.as_ref()),
                "fixture directory {name:?} is never run"
            );
        }
    }

    #[test]
    fn google_health_fixtures() {
        run_vendor("google_health");
    }

    #[test]
    fn terra_fixtures() {
        run_vendor("terra");
    }

    #[test]
    fn healthkit_fixtures() {
        run_vendor("healthkit");
    }

    #[test]
    fn oura_fixtures() {
        run_vendor("oura");
    }

    #[test]
    fn whoop_fixtures() {
        run_vendor("whoop");
    }

    #[test]
    fn suunto_fixtures() {
        run_vendor("suunto");
    }

    #[test]
    fn polar_fixtures() {
        run_vendor("polar");
    }
}
