//! Oura API v2 documents (vendors.md §1.4), as fetched after a webhook notification.
//!
//! Oura webhooks carry only ids; the fetcher downloads
//! `GET /v2/usercollection/{data_type}/{id}` and hands the document here. Every reading's
//! `source_record_id` is the document `id`, so a `delete` notification for that id (a
//! [`Tombstone`] built by the fetcher) removes exactly these rows. Sample series,
//! hypnograms and sessions: see [`normalize_document`].

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, TimeDelta, Utc};
use serde_json::Value;

use super::activities;
use crate::normalize::{
    NormalizeError, Record, array, clip, day_interval, get, interval, num, parse_date,
    parse_rfc3339, required_rfc3339, seconds_between, shape, text,
};
use bridge_core::model::{Activity, Metric, Normalized, Reading, SleepStage, Tombstone};

/// Vendor route name.
const VENDOR: &str = "oura";

/// Data types with no canonical metric: acknowledged with no output.
const UNMAPPED: [&str; 10] = [
    "tag",
    "enhanced_tag",
    "session",
    "sleep_time",
    "rest_mode_period",
    "ring_configuration",
    "daily_stress",
    "daily_cardiovascular_age",
    "daily_resilience",
    "personal_info",
];

/// Normalizes one fetched Oura document of `data_type` for our `user_id`.
///
/// - `sleep`: a session (`activity` = `sleep` on every reading), interval
///   `bedtime_start..bedtime_end`, `sleep_session` = its length. Durations (s) →
///   `sleep_*`, `time_in_bed`, `latency` → `sleep_latency`; `average_heart_rate` →
///   `heart_rate`; `lowest_heart_rate` → `resting_heart_rate` only for `type ==
///   "long_sleep"` (Oura's own resting-HR rule); `average_hrv` → `hrv_rmssd`;
///   `average_breath` → `respiratory_rate`; `efficiency` → `sleep_efficiency`;
///   `readiness.temperature_deviation` / `temperature_trend_deviation` →
///   `skin_temperature_deviation` / `skin_temperature_trend_deviation`. The `heart_rate`
///   and `hrv` sample models → instant `heart_rate` / `hrv_rmssd` readings (see
///   `samples`); `sleep_phase_5_min` → 5-minute `sleep_stage` intervals (see
///   `hypnogram`). `type == "deleted"` → one tombstone for the id and no readings.
/// - Daily documents (`daily_sleep`, `daily_readiness`, `daily_activity`, `daily_spo2`,
///   `vO2_max`/`vo2_max`): interval = the whole calendar `day` at the UTC offset of the
///   document's `timestamp` (`2025-01-01` with `timestamp` `…+01:00` →
///   `2025-01-01T00:00+01:00` for 24 h). Without a `timestamp` the day is taken in UTC,
///   because no other field carries the user's offset.
/// - `daily_readiness`: `score`, `temperature_deviation`, `temperature_trend_deviation`
///   (°C, → `skin_temperature_trend_deviation`). Its contributors are 1–100 sub-scores,
///   never physiological values, so nothing (in particular no resting heart rate) is
///   emitted from them.
/// - `daily_activity`: `steps`, calories, `equivalent_walking_distance`, `score`, and the
///   time buckets (s) `high/medium/low_activity_time` → `activity_high/medium/low_time`,
///   `sedentary_time`, `resting_time`, `non_wear_time` over the day; its `met` sample model
///   → instant `met` readings. The `*_met_minutes` are derived from the same samples and
///   `class_5_min` is a category string: neither has a metric.
/// - `workout`: a session, interval `start_datetime..end_datetime`, `activity` from Oura's
///   `activity` name through [`activities`] (unknown → `other` and `activity:<name>` in
///   `unmapped`); the interval's length → `workout_duration`, `calories` → `active_energy`
///   (Oura does not say whether it includes basal burn; the workout-level number is
///   treated as activity), `distance` → `distance`. `intensity` (`easy`/`moderate`/`hard`)
///   is a label, not a quantity: no metric.
/// - `heartrate`: one local day of the collection as the fetch job assembles it, see
///   `heart_rate_day`.
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
            (
                &["temperature_trend_deviation"],
                Metric::SkinTemperatureTrendDeviation,
            ),
        ]),
        "daily_activity" => Kind::Daily(&[
            (&["steps"], Metric::StepCount),
            (&["active_calories"], Metric::ActiveEnergy),
            (&["total_calories"], Metric::TotalEnergy),
            (&["equivalent_walking_distance"], Metric::Distance),
            (&["score"], Metric::ActivityScore),
            (&["high_activity_time"], Metric::ActivityHighTime),
            (&["medium_activity_time"], Metric::ActivityMediumTime),
            (&["low_activity_time"], Metric::ActivityLowTime),
            (&["sedentary_time"], Metric::SedentaryTime),
            (&["resting_time"], Metric::RestingTime),
            (&["non_wear_time"], Metric::NonWearTime),
        ]),
        "daily_spo2" => Kind::Daily(&[(&["spo2_percentage", "average"], Metric::OxygenSaturation)]),
        "vO2_max" | "vo2_max" => Kind::Daily(&[(&["vo2_max"], Metric::Vo2Max)]),
        "workout" => Kind::Workout,
        "heartrate" => Kind::HeartRate,
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
    if let Kind::HeartRate = kind {
        return heart_rate_day(user_id, doc);
    }
    let id = text(doc, &["id"]).ok_or_else(|| shape("oura document without `id`"))?;
    let mut rec = Record {
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
            rec.activity = Some(Activity::Sleep);
            sleep(doc, &rec, &mut out.readings)?;
        }
        Kind::Daily(fields) => {
            daily(doc, &rec, fields, &mut out.readings)?;
            // MET samples: only daily_activity carries them (absent elsewhere).
            samples(doc, &["met"], &rec, Metric::Met, &mut out.readings)?;
        }
        Kind::Workout => {
            let name = text(doc, &["activity"]);
            rec.activity = Some(match name.map(|n| (n, activities::by_name(n))) {
                Some((_, Some(a))) => a,
                Some((n, None)) => {
                    out.unmapped.push(format!("activity:{}", clip(n.trim())));
                    Activity::Other
                }
                None => Activity::Other,
            });
            workout(doc, &rec, &mut out.readings)?;
        }
        Kind::HeartRate => unreachable!("handled above"),
    }
    Ok(out)
}

/// What to read from a document type.
enum Kind {
    Sleep,
    /// A daily document: `(path, metric)` pairs, each value already in canonical units.
    Daily(&'static [(&'static [&'static str], Metric)]),
    Workout,
    /// One local day of the `heartrate` collection, as the fetch job assembles it.
    HeartRate,
}

fn sleep(doc: &Value, rec: &Record, out: &mut Vec<Reading>) -> Result<(), NormalizeError> {
    let (start, _) = required_rfc3339(doc, &["bedtime_start"], "bedtime_start")?;
    let (end, _) = required_rfc3339(doc, &["bedtime_end"], "bedtime_end")?;
    let (start, end) = interval(start, end)?;
    let push = |out: &mut Vec<Reading>, metric, path: &[&str]| {
        rec.push(out, metric, num(doc, path), start, end)
    };
    let session = Some(seconds_between(start, end));
    rec.push(out, Metric::SleepSession, session, start, end);
    push(out, Metric::SleepLatency, &["latency"]);
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
    push(
        out,
        Metric::SkinTemperatureTrendDeviation,
        &["readiness", "temperature_trend_deviation"],
    );
    samples(doc, &["heart_rate"], rec, Metric::HeartRate, out)?;
    samples(doc, &["hrv"], rec, Metric::HrvRmssd, out)?;
    hypnogram(doc, rec, start, out)?;
    Ok(())
}

/// Length of one `sleep_phase_5_min` character.
const PHASE: TimeDelta = TimeDelta::seconds(300);

/// `sleep_phase_5_min`: one character per 5 minutes from `bedtime_start` (vendors.md
/// §1.4: `1` deep, `2` light, `3` REM, `4` awake) → one `sleep_stage` interval reading
/// per character. Any other character is a stage Oura does not define: no reading for
/// that slot (never guessed), the slots after it keep their times.
fn hypnogram(
    doc: &Value,
    rec: &Record,
    start: DateTime<Utc>,
    out: &mut Vec<Reading>,
) -> Result<(), NormalizeError> {
    let Some(phases) = get(doc, &["sleep_phase_5_min"]) else {
        return Ok(());
    };
    let phases = phases
        .as_str()
        .ok_or_else(|| shape("oura sleep_phase_5_min is not a string"))?;
    let mut at = start;
    for c in phases.chars() {
        let next = at
            .checked_add_signed(PHASE)
            .ok_or_else(|| shape("oura sleep_phase_5_min runs out of range"))?;
        let stage = match c {
            '1' => Some(SleepStage::Deep),
            '2' => Some(SleepStage::Light),
            '3' => Some(SleepStage::Rem),
            '4' => Some(SleepStage::Awake),
            _ => None,
        };
        rec.push(out, Metric::SleepStage, stage.map(SleepStage::code), at, next);
        at = next;
    }
    Ok(())
}

/// An Oura SampleModel `{interval (s), items[], timestamp}` at `path` → instant readings,
/// item `i` at `timestamp + i × interval`. A `null` item is a gap (no reading), and so
/// is a 0: no heart rate, HRV or MET of 0 is a measurement. Absent or `null` → nothing.
fn samples(
    doc: &Value,
    path: &[&str],
    rec: &Record,
    metric: Metric,
    out: &mut Vec<Reading>,
) -> Result<(), NormalizeError> {
    let Some(model) = get(doc, path) else {
        return Ok(());
    };
    let what = path.join(".");
    let items = array(model, &["items"], &what)?;
    if items.is_empty() {
        return Ok(());
    }
    let (t0, _) = required_rfc3339(model, &["timestamp"], "sample timestamp")?;
    let step = num(model, &["interval"])
        .filter(|s| *s > 0.0 && *s <= 86_400.0)
        .ok_or_else(|| shape(format!("oura {what}.interval is not a positive number")))?;
    let t0 = t0.with_timezone(&Utc);
    for (i, item) in items.iter().enumerate() {
        let Some(v) = item.as_f64().filter(|v| *v != 0.0) else {
            continue;
        };
        // Milliseconds keep a fractional interval exact enough and cannot overflow here.
        let offset = TimeDelta::milliseconds((step * 1000.0 * i as f64).round() as i64);
        let at = t0
            .checked_add_signed(offset)
            .ok_or_else(|| shape(format!("oura {what} runs out of range")))?;
        rec.push(out, metric, Some(v), at, at);
    }
    Ok(())
}

/// The local day a daily document covers: `(day, start, end)`. For `daily_activity` it is
/// also the window of the `heartrate` collection its fetch job reads.
pub fn day_window(doc: &Value) -> Result<(String, DateTime<Utc>, DateTime<Utc>), NormalizeError> {
    let raw = text(doc, &["day"]).ok_or_else(|| shape("oura daily document without `day`"))?;
    let day = parse_date("day", raw)?;
    let (start, end) = day_interval(day, day_offset(doc)?)?;
    Ok((day.format("%Y-%m-%d").to_string(), start, end))
}

/// The UTC offset of a daily document's `timestamp`, UTC without one.
fn day_offset(doc: &Value) -> Result<FixedOffset, NormalizeError> {
    match get(doc, &["timestamp"]).and_then(Value::as_str) {
        Some(ts) => Ok(*parse_rfc3339("timestamp", ts)?.offset()),
        None => FixedOffset::east_opt(0).ok_or_else(|| shape("UTC offset")),
    }
}

/// One local day of `GET /v2/usercollection/heartrate`, assembled by the fetch job as
/// `{"day", "start_datetime", "end_datetime", "data": [every page's items]}`.
///
/// Every item `{bpm, source, timestamp}` inside `[start_datetime, end_datetime)` → an
/// instant `heart_rate` reading; `source_record_id = "heartrate:<day>"`, so the next fetch
/// of the same day replaces the whole set (the collection grows during the day). Oura's
/// `source` (`awake`, `rest`, `sleep`, `session`, `live`, `workout`) says what the user
/// was doing, not which device or provider measured, so it is not the reading's `source`
/// (which is part of the document's identity and would split one day into six). Items
/// outside the window, with no or 0 `bpm`, are skipped; two items at one instant keep the
/// last. The night's items overlap the sleep document's own 5-minute `heart_rate`
/// samples (another document): both are kept, as nothing says they are the same numbers.
fn heart_rate_day(user_id: &str, doc: &Value) -> Result<Normalized, NormalizeError> {
    let day = text(doc, &["day"]).ok_or_else(|| shape("oura heartrate day without `day`"))?;
    let day = parse_date("day", day)?;
    let (start, _) = required_rfc3339(doc, &["start_datetime"], "start_datetime")?;
    let (end, _) = required_rfc3339(doc, &["end_datetime"], "end_datetime")?;
    let (start, end) = interval(start, end)?;
    let rec = Record {
        user_id: user_id.to_owned(),
        vendor: VENDOR,
        source_record_id: format!("heartrate:{}", day.format("%Y-%m-%d")),
        source: None,
        ordering: None,
        activity: None,
    };
    let mut by_time: BTreeMap<DateTime<Utc>, f64> = BTreeMap::new();
    for item in array(doc, &["data"], "oura heartrate data")? {
        let Some(bpm) = num(item, &["bpm"]).filter(|b| *b != 0.0) else {
            continue;
        };
        let (at, _) = required_rfc3339(item, &["timestamp"], "heartrate timestamp")?;
        let at = at.with_timezone(&Utc);
        if at >= start && at < end {
            by_time.insert(at, bpm);
        }
    }
    let mut out = Normalized::default();
    for (at, bpm) in by_time {
        rec.push(&mut out.readings, Metric::HeartRate, Some(bpm), at, at);
    }
    Ok(out)
}

fn daily(
    doc: &Value,
    rec: &Record,
    fields: &[(&[&str], Metric)],
    out: &mut Vec<Reading>,
) -> Result<(), NormalizeError> {
    let (_, start, end) = day_window(doc)?;
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sleep_with(extra: Value) -> Value {
        let mut doc = json!({"id": "s1", "type": "sleep",
            "bedtime_start": "2025-01-01T00:00:00+00:00",
            "bedtime_end": "2025-01-01T01:00:00+00:00"});
        for (k, v) in extra.as_object().unwrap() {
            doc[k] = v.clone();
        }
        doc
    }

    #[test]
    fn broken_sample_models_are_errors_not_guesses() {
        for bad in [
            json!({"heart_rate": {"interval": 0, "items": [60], "timestamp": "2025-01-01T00:00:00Z"}}),
            json!({"heart_rate": {"interval": -300, "items": [60], "timestamp": "2025-01-01T00:00:00Z"}}),
            json!({"heart_rate": {"items": [60], "timestamp": "2025-01-01T00:00:00Z"}}),
            json!({"heart_rate": {"interval": 300, "items": [60]}}),
            json!({"hrv": {"interval": 300, "items": 60, "timestamp": "2025-01-01T00:00:00Z"}}),
            json!({"sleep_phase_5_min": 4422}),
        ] {
            let e = normalize_document("u", "sleep", &sleep_with(bad.clone())).unwrap_err();
            assert!(
                matches!(e.reason(), "unsupported_shape" | "invalid_timestamp"),
                "{bad}: {e}"
            );
        }
        // No items at all: nothing to place, no error.
        let ok = sleep_with(json!({"hrv": {"interval": null, "items": [], "timestamp": null}}));
        let n = normalize_document("u", "sleep", &ok).unwrap();
        assert!(n.readings.iter().all(|r| r.metric != Metric::HrvRmssd));
    }

    #[test]
    fn every_sleep_reading_belongs_to_the_sleep_session() {
        let doc = sleep_with(json!({"sleep_phase_5_min": "12",
            "heart_rate": {"interval": 300, "items": [60], "timestamp": "2025-01-01T00:00:00Z"}}));
        let n = normalize_document("u", "sleep", &doc).unwrap();
        assert!(n.readings.len() >= 4);
        assert!(n.readings.iter().all(|r| r.activity == Some(Activity::Sleep)
            && r.source_record_id == "s1"));
    }

    #[test]
    fn heart_rate_days_need_their_window() {
        for bad in [
            json!({"start_datetime": "2025-01-01T00:00:00Z", "end_datetime": "2025-01-02T00:00:00Z", "data": []}),
            json!({"day": "2025-01-01", "end_datetime": "2025-01-02T00:00:00Z", "data": []}),
            json!({"day": "2025-01-01", "start_datetime": "2025-01-02T00:00:00Z", "end_datetime": "2025-01-01T00:00:00Z", "data": []}),
            json!({"day": "2025-01-01", "start_datetime": "2025-01-01T00:00:00Z", "end_datetime": "2025-01-02T00:00:00Z", "data": {}}),
            json!({"day": "2025-01-01", "start_datetime": "2025-01-01T00:00:00Z", "end_datetime": "2025-01-02T00:00:00Z", "data": [{"bpm": 60, "timestamp": "noon"}]}),
        ] {
            assert!(normalize_document("u", "heartrate", &bad).is_err(), "{bad}");
        }
    }
}
