//! Terra webhooks (vendors.md §3): full normalized data inline, one event `type` per body.
//!
//! - `sleep`, `daily`, `body`, `activity` → readings, one set per item of `data`.
//! - Account events (`auth`, `deauth`, `user_reauth`, …) → one [`AccountEvent`], no readings.
//! - Delivery chatter (`healthcheck`, `large_request_*`, `processing`) and data types without
//!   a canonical metric (`athlete`, `nutrition`, `menstruation`, `lab_report.*`) → empty.
//! - `s3_payload` / `s3_upload` → [`NormalizeError::PayloadByReference`].
//! - Anything else → [`NormalizeError::UnsupportedType`], so it is kept in the DLQ.
//!
//! Terra's own `data_enrichment` scores are not mapped: they are Terra-computed, not the
//! provider's, and mixing both under one `sleep_score` row would make the value flip
//! between two algorithms depending on which arrived last.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::normalize::{
    NormalizeError, Record, array, clip, get, interval, num, parse_date, parse_json, parse_rfc3339,
    required_rfc3339, seconds_between, shape, text,
};
use bridge_core::model::{AccountEvent, Metric, Normalized, Reading};
use bridge_core::RawEnvelope;

/// Vendor route name.
const VENDOR: &str = "terra";

/// Header carrying Terra's recency stamp (unix milliseconds, unchanged across retries).
pub const ORDERING_HEADER: &str = "x-terra-ordering-timestamp";

/// Event types that describe the user's connection, not data.
const ACCOUNT_EVENTS: [&str; 9] = [
    "auth",
    "auth_cancelled",
    "deauth",
    "user_reauth",
    "access_revoked",
    "permission_change",
    "connection_error",
    "google_no_datasource",
    "rate_limit_hit",
];

/// Event types acknowledged without output: delivery chatter, or data with no canonical
/// metric yet (the raw topic keeps the bytes for a later re-normalization).
const IGNORED: [&str; 8] = [
    "healthcheck",
    "large_request_processing",
    "large_request_sending",
    "processing",
    "athlete",
    "nutrition",
    "menstruation",
    "planned_workout",
];

/// Normalizes one Terra webhook body.
///
/// - user id: `user.reference_id` when present and non-blank, else `terra:<user.user_id>`.
/// - source: `user.provider` (`OURA`, `GARMIN`, …).
/// - ordering: the `x-terra-ordering-timestamp` header (unix ms) on every reading of the
///   payload, `None` when the header is absent. Terra omits it only on payloads without a
///   recency anchor and says to treat those as newest, so the sink must treat `None` as
///   newest (always overwrite). Mapping "absent" to `i64::MAX` instead would make that row
///   unbeatable by every later delivery, so it is deliberately not done. The header is set
///   on sleep and activity readings too: it costs nothing and stops a late retry of an
///   older version of the same summary from overwriting a newer one.
/// - `daily`/`body`: `source_record_id = "<type>:<date part of metadata.start_time>"` (the
///   date as written, never shifted to UTC), interval = `metadata.start_time..end_time`.
/// - `sleep`/`activity`: `source_record_id = metadata.summary_id`, falling back to
///   `"<type>:<start_time>"` as written; interval = `metadata.start_time..end_time`.
/// - The document identity also holds `source` (`user.provider`): one user's GARMIN and
///   OURA documents of the same day are two documents, never one row.
pub fn normalize(env: &RawEnvelope) -> Result<Normalized, NormalizeError> {
    let body = parse_json(&env.body)?;
    let kind = body
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| shape("terra body has no string `type`"))?;
    let doc = match kind {
        "sleep" => DocKind::Sleep,
        "daily" => DocKind::Daily,
        "body" => DocKind::Body,
        "activity" => DocKind::Activity,
        "s3_payload" | "s3_upload" => return Err(NormalizeError::PayloadByReference),
        k if ACCOUNT_EVENTS.contains(&k) => {
            return Ok(Normalized {
                account_events: vec![account_event(&body, k)],
                ..Normalized::default()
            });
        }
        k if IGNORED.contains(&k) || k.starts_with("lab_report.") => {
            return Ok(Normalized::default());
        }
        other => {
            return Err(NormalizeError::UnsupportedType {
                vendor: VENDOR,
                kind: clip(other),
            });
        }
    };

    let user = body.get("user").unwrap_or(&Value::Null);
    let user_id = user_id(user).ok_or(NormalizeError::MissingUserId(
        "terra payload has neither user.reference_id nor user.user_id",
    ))?;
    let base = Record {
        user_id,
        vendor: VENDOR,
        source_record_id: String::new(),
        source: text(user, &["provider"]).map(str::to_owned),
        ordering: ordering(env)?,
        activity: None,
    };

    let mut readings = Vec::new();
    for item in array(&body, &["data"], "terra `data`")? {
        if !item.is_object() {
            return Err(shape("terra `data` item is not an object"));
        }
        match doc {
            DocKind::Sleep => sleep(item, &base, &mut readings)?,
            DocKind::Daily => daily(item, &base, &mut readings)?,
            DocKind::Body => body_doc(item, &base, &mut readings)?,
            DocKind::Activity => activity(item, &base, &mut readings)?,
        }
    }
    Ok(Normalized {
        readings,
        ..Normalized::default()
    })
}

#[derive(Debug, Clone, Copy)]
enum DocKind {
    Sleep,
    Daily,
    Body,
    Activity,
}

/// Our user id for a Terra user object.
fn user_id(user: &Value) -> Option<String> {
    if let Some(reference) = text(user, &["reference_id"]) {
        return Some(reference.to_owned());
    }
    text(user, &["user_id"]).map(|id| format!("terra:{id}"))
}

/// The ordering header as unix milliseconds; absent → `None` (newest, see [`normalize`]).
/// A present but unreadable value is an error: guessing "newest" could let a stale copy win.
fn ordering(env: &RawEnvelope) -> Result<Option<i64>, NormalizeError> {
    let Some(raw) = env.header(ORDERING_HEADER) else {
        return Ok(None);
    };
    raw.trim()
        .parse::<i64>()
        .map(Some)
        .map_err(|_| NormalizeError::InvalidHeader {
            name: ORDERING_HEADER,
            value: clip(raw),
        })
}

/// The user an account event is about: `user` (most events), `new_user` (`user_reauth`:
/// the surviving connection), or the top-level `reference_id`/`user_id` (`auth_cancelled`,
/// where no Terra user exists yet).
fn account_event(body: &Value, kind: &str) -> AccountEvent {
    let user = ["user", "new_user"]
        .iter()
        .find_map(|k| get(body, &[k]).filter(|u| u.is_object()))
        .unwrap_or(body);
    AccountEvent {
        user_id: user_id(user),
        vendor: VENDOR.to_owned(),
        kind: kind.to_owned(),
        vendor_user_id: text(user, &["user_id"]).map(str::to_owned),
    }
}

/// `metadata.start_time..end_time`, plus the start as written.
struct Meta {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    start_raw: String,
}

fn meta(item: &Value) -> Result<Meta, NormalizeError> {
    let (start, start_raw) =
        required_rfc3339(item, &["metadata", "start_time"], "metadata.start_time")?;
    let (end, _) = required_rfc3339(item, &["metadata", "end_time"], "metadata.end_time")?;
    let (start, end) = interval(start, end)?;
    Ok(Meta {
        start,
        end,
        start_raw,
    })
}

/// `summary_id`, or `<kind>:<start_time as written>` when a provider sends none. Not
/// the end: a night that is still syncing is re-sent with a later `end_time`, and must
/// stay the same document so the new version replaces the old one.
fn summary_record(kind: &str, item: &Value, m: &Meta, base: &Record) -> Record {
    let id = text(item, &["metadata", "summary_id"])
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{kind}:{}", m.start_raw));
    Record {
        source_record_id: id,
        ..base.clone()
    }
}

/// `<kind>:<date part of start_time>`. The date is taken from the string, not from the
/// UTC instant: a day starting at `00:00-05:00` belongs to that local date.
fn day_record(kind: &str, m: &Meta, base: &Record) -> Result<Record, NormalizeError> {
    let date = m.start_raw.get(..10).unwrap_or(&m.start_raw);
    let date = parse_date("metadata.start_time", date)?;
    Ok(Record {
        source_record_id: format!("{kind}:{date}"),
        ..base.clone()
    })
}

/// `heart_rate_data`: the summary (mean, minimum and maximum over the document's
/// interval, resting HR unless `with_resting` is false, RMSSD and SDNN, each its own
/// metric) and the per-sample series of `detailed`. A 0 bpm or 0 ms means "not measured".
fn heart(
    hr: &Value,
    rec: &Record,
    out: &mut Vec<Reading>,
    m: &Meta,
    with_resting: bool,
) -> Result<(), NormalizeError> {
    let at = |k: &str| measured(num(hr, &["summary", k]));
    rec.push(out, Metric::HeartRate, at("avg_hr_bpm"), m.start, m.end);
    rec.push(out, Metric::HeartRateMin, at("min_hr_bpm"), m.start, m.end);
    rec.push(out, Metric::HeartRateMax, at("max_hr_bpm"), m.start, m.end);
    if with_resting {
        rec.push(
            out,
            Metric::RestingHeartRate,
            at("resting_hr_bpm"),
            m.start,
            m.end,
        );
    }
    rec.push(out, Metric::HrvRmssd, at("avg_hrv_rmssd"), m.start, m.end);
    rec.push(out, Metric::HrvSdnn, at("avg_hrv_sdnn"), m.start, m.end);
    let hr_samples = Series::read(
        hr,
        &["detailed", "hr_samples"],
        "bpm",
        "heart_rate_data.detailed.hr_samples.timestamp",
    )?;
    hr_samples.push(rec, out, Metric::HeartRate);
    Ok(())
}

/// A vendor 0 stands for "not measured" in every field this is applied to.
fn measured(v: Option<f64>) -> Option<f64> {
    v.filter(|x| *x != 0.0)
}

/// One sample array as instants: `[{timestamp, <value key>}]`.
///
/// - A sample without a numeric value, with a value of 0 ("not measured"), or without a
///   timestamp is skipped; a present but unreadable timestamp is an error, as for every
///   other Terra time.
/// - Two samples at the same instant keep the last one, in the first one's place: the
///   sink's key holds one row per metric and instant of a document.
struct Series(Vec<(DateTime<Utc>, f64)>);

impl Series {
    fn read(
        block: &Value,
        path: &[&str],
        value_key: &str,
        field: &'static str,
    ) -> Result<Series, NormalizeError> {
        let mut points: Vec<(DateTime<Utc>, f64)> = Vec::new();
        let mut at: HashMap<DateTime<Utc>, usize> = HashMap::new();
        for s in array(block, path, field)? {
            let value = measured(num(s, &[value_key]));
            let Some((t, v)) = instant(s, "timestamp", field, value)? else {
                continue;
            };
            match at.get(&t) {
                Some(&i) => points[i].1 = v,
                None => {
                    at.insert(t, points.len());
                    points.push((t, v));
                }
            }
        }
        Ok(Series(points))
    }

    fn push(&self, rec: &Record, out: &mut Vec<Reading>, metric: Metric) {
        for &(t, v) in &self.0 {
            rec.push(out, metric, Some(v), t, t);
        }
    }
}

/// `oxygen_data`: average saturation (already 0–100) and VO2 max.
fn oxygen(item: &Value, rec: &Record, out: &mut Vec<Reading>, m: &Meta) {
    let o = |k: &str| num(item, &["oxygen_data", k]);
    rec.push(
        out,
        Metric::OxygenSaturation,
        o("avg_saturation_percentage"),
        m.start,
        m.end,
    );
    rec.push(
        out,
        Metric::Vo2Max,
        o("vo2max_ml_per_min_per_kg"),
        m.start,
        m.end,
    );
}

fn sleep(item: &Value, base: &Record, out: &mut Vec<Reading>) -> Result<(), NormalizeError> {
    let m = meta(item)?;
    // `metadata.is_nap` changes nothing here: a nap is its own summary with its own interval.
    let rec = summary_record("sleep", item, &m, base);
    let push = |out: &mut Vec<Reading>, metric, v| rec.push(out, metric, v, m.start, m.end);
    let asleep = |k: &str| num(item, &["sleep_durations_data", "asleep", k]);
    push(
        out,
        Metric::SleepTotal,
        asleep("duration_asleep_state_seconds"),
    );
    push(
        out,
        Metric::SleepDeep,
        asleep("duration_deep_sleep_state_seconds"),
    );
    push(
        out,
        Metric::SleepLight,
        asleep("duration_light_sleep_state_seconds"),
    );
    push(
        out,
        Metric::SleepRem,
        asleep("duration_REM_sleep_state_seconds"),
    );
    let durations = |a: &str, b: &str| num(item, &["sleep_durations_data", a, b]);
    push(
        out,
        Metric::SleepAwake,
        durations("awake", "duration_awake_state_seconds"),
    );
    push(
        out,
        Metric::TimeInBed,
        durations("other", "duration_in_bed_seconds"),
    );
    // Terra documents sleep_efficiency as a 0–100 percentage.
    let efficiency = num(item, &["sleep_durations_data", "sleep_efficiency"]);
    push(out, Metric::SleepEfficiency, efficiency);
    if let Some(hr) = get(item, &["heart_rate_data"]) {
        heart(hr, &rec, out, &m, true)?;
    }
    let r = |a: &str, b: &str| num(item, &["respiration_data", a, b]);
    push(
        out,
        Metric::RespiratoryRate,
        r("breaths_data", "avg_breaths_per_min"),
    );
    let spo2 = r("oxygen_saturation_data", "avg_saturation_percentage");
    push(out, Metric::OxygenSaturation, spo2);
    let delta = num(item, &["temperature_data", "delta"]);
    push(out, Metric::SkinTemperatureDeviation, delta);
    push(out, Metric::SleepScore, num(item, &["scores", "sleep"]));
    // `readiness_data.recovery_level` is left out: its scale is not documented.
    let readiness = num(item, &["readiness_data", "readiness"]);
    push(out, Metric::ReadinessScore, readiness);
    Ok(())
}

fn daily(item: &Value, base: &Record, out: &mut Vec<Reading>) -> Result<(), NormalizeError> {
    let m = meta(item)?;
    let rec = day_record("daily", &m, base)?;
    let push = |out: &mut Vec<Reading>, metric, v| rec.push(out, metric, v, m.start, m.end);
    push(
        out,
        Metric::StepCount,
        num(item, &["distance_data", "steps"]),
    );
    push(
        out,
        Metric::Distance,
        num(item, &["distance_data", "distance_meters"]),
    );
    let c = |k: &str| num(item, &["calories_data", k]);
    push(out, Metric::TotalEnergy, c("total_burned_calories"));
    push(out, Metric::ActiveEnergy, c("net_activity_calories"));
    push(out, Metric::BasalEnergy, c("BMR_calories"));
    if let Some(hr) = get(item, &["heart_rate_data"]) {
        heart(hr, &rec, out, &m, true)?;
    }
    oxygen(item, &rec, out, &m);
    push(
        out,
        Metric::ActivityScore,
        num(item, &["scores", "activity"]),
    );
    push(
        out,
        Metric::RecoveryScore,
        num(item, &["scores", "recovery"]),
    );
    push(out, Metric::SleepScore, num(item, &["scores", "sleep"]));
    push(
        out,
        Metric::Strain,
        num(item, &["strain_data", "strain_level"]),
    );
    Ok(())
}

fn body_doc(item: &Value, base: &Record, out: &mut Vec<Reading>) -> Result<(), NormalizeError> {
    let m = meta(item)?;
    let rec = day_record("body", &m, base)?;
    if let Some(hr) = get(item, &["heart_data", "heart_rate_data"]) {
        heart(hr, &rec, out, &m, true)?;
    }
    oxygen(item, &rec, out, &m);
    // Samples are instants at their own timestamp; one without a timestamp cannot be placed.
    let samples = [
        ("body_temperature_samples", Metric::BodyTemperature),
        ("skin_temperature_samples", Metric::SkinTemperature),
    ];
    for (key, metric) in samples {
        for s in array(
            item,
            &["temperature_data", key],
            "terra temperature samples",
        )? {
            let value = num(s, &["temperature_celsius"]);
            if let Some((t, v)) = instant(s, "timestamp", "temperature_data.*.timestamp", value)? {
                rec.push(out, metric, Some(v), t, t);
            }
        }
    }
    let measurements = array(
        item,
        &["measurements_data", "measurements"],
        "terra measurements",
    )?;
    for s in measurements {
        let field = "measurements_data.measurements.measurement_time";
        let value = num(s, &["weight_kg"]);
        if let Some((t, v)) = instant(s, "measurement_time", field, value)? {
            rec.push(out, Metric::Weight, Some(v), t, t);
        }
    }
    Ok(())
}

/// A sample's value at its timestamp: `None` when the value or the timestamp is missing,
/// an error when the timestamp is present but unreadable.
fn instant(
    sample: &Value,
    key: &str,
    field: &'static str,
    value: Option<f64>,
) -> Result<Option<(DateTime<Utc>, f64)>, NormalizeError> {
    let (Some(v), Some(raw)) = (value, text(sample, &[key])) else {
        return Ok(None);
    };
    Ok(Some((parse_rfc3339(field, raw)?.with_timezone(&Utc), v)))
}

fn activity(item: &Value, base: &Record, out: &mut Vec<Reading>) -> Result<(), NormalizeError> {
    let m = meta(item)?;
    let rec = summary_record("activity", item, &m, base);
    let push = |out: &mut Vec<Reading>, metric, v| rec.push(out, metric, v, m.start, m.end);
    // The workout's length is its interval, as for the other vendors.
    push(
        out,
        Metric::WorkoutDuration,
        Some(seconds_between(m.start, m.end)),
    );
    let c = |k: &str| num(item, &["calories_data", k]);
    push(out, Metric::TotalEnergy, c("total_burned_calories"));
    push(out, Metric::ActiveEnergy, c("net_activity_calories"));
    let d = |k: &str| num(item, &["distance_data", "summary", k]);
    push(out, Metric::Distance, d("distance_meters"));
    push(out, Metric::StepCount, d("steps"));
    // A "resting" heart rate measured over a workout interval would mislead: not emitted.
    if let Some(hr) = get(item, &["heart_rate_data"]) {
        heart(hr, &rec, out, &m, false)?;
    }
    oxygen(item, &rec, out, &m);
    push(
        out,
        Metric::Strain,
        num(item, &["strain_data", "strain_level"]),
    );
    Ok(())
}
