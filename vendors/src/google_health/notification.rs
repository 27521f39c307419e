//! The notification body (google-spec.md §3) and what it asks for: list queries for
//! UPSERT, reading ranges for DELETE.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::Value;

use super::normalize::{DataType, Kind};

/// UPSERT or DELETE [C].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Data in the intervals was added or changed: fetch it.
    Upsert,
    /// Data in the intervals was deleted: delete our readings there.
    Delete,
}

/// One notification of a body.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// `healthUserId`.
    pub user: String,
    /// What happened.
    pub operation: Operation,
    /// Kebab-case data type.
    pub data_type: String,
    /// Physical intervals `[start, end)`; intervals in another shape are skipped.
    pub intervals: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

/// Every notification of a body: a JSON array of `{"data":{…}}` envelopes, one envelope,
/// or a bare `data` object — sources disagree [C/U], so all three are read.
pub fn parse(body: &[u8]) -> Result<Vec<Notification>, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let items = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    if items.is_empty() {
        return Err("no notification in the body".into());
    }
    items.iter().map(one).collect()
}

fn one(item: &Value) -> Result<Notification, String> {
    let data = item.get("data").unwrap_or(item);
    let text = |key: &str| {
        data.get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| format!("notification without `{key}`"))
    };
    let user = text("healthUserId")?;
    let operation = match text("operation")?.as_str() {
        "UPSERT" => Operation::Upsert,
        "DELETE" => Operation::Delete,
        other => return Err(format!("unknown operation `{}`", other.chars().take(32).collect::<String>())),
    };
    let data_type = text("dataType")?;
    let mut intervals = Vec::new();
    for interval in data.get("intervals").and_then(Value::as_array).into_iter().flatten() {
        let Some(physical) = interval.get("physicalTimeInterval") else {
            continue;
        };
        let time = |key: &str| {
            physical
                .get(key)
                .and_then(Value::as_str)
                .and_then(|s| DateTime::parse_from_rfc3339(s.trim()).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        match (time("startTime"), time("endTime")) {
            (Some(start), Some(end)) if end >= start => intervals.push((start, end)),
            _ => return Err("physicalTimeInterval without a valid startTime/endTime".into()),
        }
    }
    Ok(Notification { user, operation, data_type, intervals })
}

/// The AIP-160 `filter` selecting `t`'s points over `[start, end)` (google-spec.md §5).
/// Daily and civil session filters are widened a day or so each way: the civil dates of a
/// physical interval depend on the user's offset, and upserting more is harmless.
pub fn filter(t: &DataType, start: DateTime<Utc>, end: DateTime<Utc>) -> String {
    let field = t.filter_name();
    let instant = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    let civil = |d: NaiveDate| d.format("%Y-%m-%d").to_string();
    let (member, low, high) = match (t.kind, t.name) {
        (Kind::Interval, _) => (format!("{field}.interval.start_time"), instant(start), instant(end)),
        (Kind::Sample, _) => (format!("{field}.sample_time.physical_time"), instant(start), instant(end)),
        (Kind::Daily, _) => (
            format!("{field}.date"),
            civil(start.date_naive() - Duration::days(1)),
            civil(end.date_naive() + Duration::days(2)),
        ),
        // Sleep is filtered on its end [V]; a session ending at the interval's end must
        // not fall off the exclusive bound.
        (Kind::Session, "sleep") => (
            format!("{field}.interval.end_time"),
            instant(start),
            instant(end + Duration::days(1)),
        ),
        (Kind::Session, _) => (
            format!("{field}.interval.civil_start_time"),
            civil(start.date_naive() - Duration::days(1)),
            civil(end.date_naive() + Duration::days(2)),
        ),
    };
    format!(r#"{member} >= "{low}" AND {member} < "{high}""#)
}

/// The `start_time` range of our readings a DELETE of `[start, end)` removes
/// (google-spec.md §6): the same range, except daily readings (stored at their civil
/// date's 00:00Z), which go when the date's noon UTC is in the interval — exactly the
/// civil day for UTC offsets in [−12 h, +12 h).
pub fn deleted_range(t: &DataType, start: DateTime<Utc>, end: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    match t.kind {
        Kind::Daily => (start - Duration::hours(12), end - Duration::hours(12)),
        _ => (start, end),
    }
}
