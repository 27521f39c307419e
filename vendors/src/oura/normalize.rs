//! Oura API v2 documents (vendors.md §1.4), as fetched after a webhook notification.
//!
//! Oura webhooks carry only ids; the fetcher downloads
//! `GET /v2/usercollection/{data_type}/{id}` and hands the document here. Every reading's
//! `source_record_id` is the document `id`, so a `delete` notification for that id (a
//! [`Tombstone`](crate::model::Tombstone) built by the fetcher) removes exactly these rows.

use chrono::FixedOffset;
use serde_json::Value;

use crate::normalize::{
    NormalizeError, Record, clip, day_interval, get, interval, num, parse_date, parse_rfc3339,
    required_rfc3339, seconds_between, shape, text,
};
use bridge_core::model::{Metric, Normalized, Reading, Tombstone};

/// Vendor route name.
const VENDOR: &str = "oura";

/// Data types with no canonical metric: acknowledged with no output.
const UNMAPPED: [&str; 11] = [
    "tag",
    "enhanced_tag",
    "session",
    "sleep_time",
    "rest_mode_period",
    "ring_configuration",
    "daily_stress",
    "daily_cardiovascular_age",
    "daily_resilience",
    "heartrate",
    "personal_info",
];

/// Normalizes one fetched Oura document of `data_type` for our `user_id`.
///
/// - `sleep`: interval `bedtime_start..bedtime_end`. Durations (s) → `sleep_*`,
///   `time_in_bed`; `average_heart_rate` → `heart_rate`; `lowest_heart_rate` →
///   `resting_heart_rate` only for `type == "long_sleep"` (Oura's own resting-HR rule);
///   `average_hrv` → `hrv_rmssd`; `average_breath` → `respiratory_rate`; `efficiency` →
///   `sleep_efficiency`; `readiness.temperature_deviation` → `skin_temperature_deviation`.
///   `type == "deleted"` → one tombstone for the id and no readings.
/// - Daily documents (`daily_sleep`, `daily_readiness`, `daily_activity`, `daily_spo2`,
///   `vO2_max`/`vo2_max`): interval = the whole calendar `day` at the UTC offset of the
///   document's `timestamp` (`2025-01-01` with `timestamp` `…+01:00` →
///   `2025-01-01T00:00+01:00` for 24 h). Without a `timestamp` the day is taken in UTC,
///   because no other field carries the user's offset.
/// - `daily_readiness` contributors are 1–100 sub-scores, never physiological values, so
///   nothing (in particular no resting heart rate) is emitted from them.
/// - `workout`: interval `start_datetime..end_datetime`; `calories` → `active_energy` (Oura
///   does not say whether it includes basal burn; the workout-level number is treated as
///   activity), `distance` → `distance`, the interval's length → `workout_duration`.
/// - Types without a canonical metric (`tag`, `session`, `daily_stress`, …) → empty; any
///   other type → [`NormalizeError::UnsupportedType`].
pub fn normalize_document(
    user_id: &str,
    data_type: &str,
    doc: &Value,
) -> Result<Normalized, NormalizeError> {
    if user_id.trim().is_empty() {
        return Err(NormalizeError::MissingUserId(
            "oura document without a user id",
        ));
    }
    let kind = match data_type {
        "sleep" => Kind::Sleep,
        "daily_sleep" => Kind::Daily(&[(&["score"], Metric::SleepScore)]),
        "daily_readiness" => Kind::Daily(&[
            (&["score"], Metric::ReadinessScore),
            (&["temperature_deviation"], Metric::SkinTemperatureDeviation),
        ]),
        "daily_activity" => Kind::Daily(&[
            (&["steps"], Metric::StepCount),
            (&["active_calories"], Metric::ActiveEnergy),
            (&["total_calories"], Metric::TotalEnergy),
            (&["equivalent_walking_distance"], Metric::Distance),
            (&["score"], Metric::ActivityScore),
        ]),
        "daily_spo2" => Kind::Daily(&[(&["spo2_percentage", "average"], Metric::OxygenSaturation)]),
        "vO2_max" | "vo2_max" => Kind::Daily(&[(&["vo2_max"], Metric::Vo2Max)]),
        "workout" => Kind::Workout,
        t if UNMAPPED.contains(&t) => return Ok(Normalized::default()),
        other => {
            return Err(NormalizeError::UnsupportedType {
                vendor: VENDOR,
                kind: clip(other),
            });
        }
    };
    if !doc.is_object() {
        return Err(shape("oura document is not an object"));
    }
    let id = text(doc, &["id"]).ok_or_else(|| shape("oura document without `id`"))?;
    let rec = Record {
        user_id: user_id.to_owned(),
        vendor: VENDOR,
        source_record_id: id.to_owned(),
        source: None,
        ordering: None,
        activity: None,
    };
    let mut out = Normalized::default();
    match kind {
        Kind::Sleep => {
            if text(doc, &["type"]) == Some("deleted") {
                out.tombstones.push(Tombstone {
                    user_id: rec.user_id,
                    vendor: VENDOR.to_owned(),
                    source_record_id: rec.source_record_id,
                });
                return Ok(out);
            }
            sleep(doc, &rec, &mut out.readings)?;
        }
        Kind::Daily(fields) => daily(doc, &rec, fields, &mut out.readings)?,
        Kind::Workout => workout(doc, &rec, &mut out.readings)?,
    }
    Ok(out)
}

/// What to read from a document type.
enum Kind {
    Sleep,
    /// A daily document: `(path, metric)` pairs, each value already in canonical units.
    Daily(&'static [(&'static [&'static str], Metric)]),
    Workout,
}

fn sleep(doc: &Value, rec: &Record, out: &mut Vec<Reading>) -> Result<(), NormalizeError> {
    let (start, _) = required_rfc3339(doc, &["bedtime_start"], "bedtime_start")?;
    let (end, _) = required_rfc3339(doc, &["bedtime_end"], "bedtime_end")?;
    let (start, end) = interval(start, end)?;
    let push = |out: &mut Vec<Reading>, metric, path: &[&str]| {
        rec.push(out, metric, num(doc, path), start, end)
    };
    push(out, Metric::SleepTotal, &["total_sleep_duration"]);
    push(out, Metric::SleepDeep, &["deep_sleep_duration"]);
    push(out, Metric::SleepLight, &["light_sleep_duration"]);
    push(out, Metric::SleepRem, &["rem_sleep_duration"]);
    push(out, Metric::SleepAwake, &["awake_time"]);
    push(out, Metric::TimeInBed, &["time_in_bed"]);
    push(out, Metric::SleepEfficiency, &["efficiency"]);
    push(out, Metric::HeartRate, &["average_heart_rate"]);
    if text(doc, &["type"]) == Some("long_sleep") {
        push(out, Metric::RestingHeartRate, &["lowest_heart_rate"]);
    }
    // Oura computes nightly HRV as RMSSD (vendors.md §1.5).
    push(out, Metric::HrvRmssd, &["average_hrv"]);
    // The spec text says breaths/second, but documented values (12–16) are per minute.
    push(out, Metric::RespiratoryRate, &["average_breath"]);
    push(
        out,
        Metric::SkinTemperatureDeviation,
        &["readiness", "temperature_deviation"],
    );
    Ok(())
}

fn daily(
    doc: &Value,
    rec: &Record,
    fields: &[(&[&str], Metric)],
    out: &mut Vec<Reading>,
) -> Result<(), NormalizeError> {
    let day = text(doc, &["day"]).ok_or_else(|| shape("oura daily document without `day`"))?;
    let day = parse_date("day", day)?;
    let offset = match get(doc, &["timestamp"]).and_then(Value::as_str) {
        Some(ts) => *parse_rfc3339("timestamp", ts)?.offset(),
        None => FixedOffset::east_opt(0).ok_or_else(|| shape("UTC offset"))?,
    };
    let (start, end) = day_interval(day, offset)?;
    for (path, metric) in fields {
        rec.push(out, *metric, num(doc, path), start, end);
    }
    Ok(())
}

fn workout(doc: &Value, rec: &Record, out: &mut Vec<Reading>) -> Result<(), NormalizeError> {
    let (start, _) = required_rfc3339(doc, &["start_datetime"], "start_datetime")?;
    let (end, _) = required_rfc3339(doc, &["end_datetime"], "end_datetime")?;
    let (start, end) = interval(start, end)?;
    rec.push(
        out,
        Metric::WorkoutDuration,
        Some(seconds_between(start, end)),
        start,
        end,
    );
    rec.push(
        out,
        Metric::ActiveEnergy,
        num(doc, &["calories"]),
        start,
        end,
    );
    rec.push(out, Metric::Distance, num(doc, &["distance"]), start, end);
    Ok(())
}
