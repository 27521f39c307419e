//! Terra webhooks (vendors.md §3): full normalized data inline, one event `type` per body.
//!
//! - `sleep`, `daily`, `body`, `activity` → readings, one set per item of `data`.
//! - Account events (`auth`, `deauth`, `user_reauth`, …) → one [`AccountEvent`], no readings.
//! - Delivery chatter (`healthcheck`, `large_request_*`, `processing`) and data types without
//!   a canonical metric (`athlete`, `nutrition`, `menstruation`, `lab_report.*`) → empty.
//! - `s3_payload` / `s3_upload` → [`NormalizeError::PayloadByReference`].
//! - Anything else → [`NormalizeError::UnsupportedType`], so it is kept in the DLQ.
//!
//! Field names follow Terra's published data models (`tryterra/openapi`,
//! `data_models/specs/data_models/*.tsp`); the few accepted beyond them say "unverified".
//! Summaries cover the document's interval; sample arrays become instants at each
//! sample's `timestamp` (see [`Doc::series`]); `sleep` and `activity` documents are
//! sessions (`Record.activity`). Step, distance and calorie samples are never read: the
//! documents carry the totals, and agents sum those.
//!
//! Terra's own `data_enrichment` scores are not mapped: they are Terra-computed, not the
//! provider's, and mixing both under one `sleep_score` row would make the value flip
//! between two algorithms depending on which arrived last.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::sport;
use crate::normalize::{
    NormalizeError, Record, array, clip, get, interval, num, parse_date, parse_json, parse_rfc3339,
    required_rfc3339, seconds_between, shape, text, units,
};
use bridge_core::model::{AccountEvent, Activity, Metric, Normalized, Reading, SleepStage};
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
    let kind = match kind {
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
    let mut unmapped = Vec::new();
    for item in array(&body, &["data"], "terra `data`")? {
        if !item.is_object() {
            return Err(shape("terra `data` item is not an object"));
        }
        let m = meta(item)?;
        let rec = match kind {
            DocKind::Sleep => Record {
                activity: Some(Activity::Sleep),
                ..summary_record("sleep", item, &m, &base)
            },
            DocKind::Activity => {
                let (sport, gap) = sport::sport(get(item, &["metadata", "type"]));
                unmapped.extend(gap);
                Record {
                    activity: Some(sport),
                    ..summary_record("activity", item, &m, &base)
                }
            }
            DocKind::Daily => day_record("daily", &m, &base)?,
            DocKind::Body => day_record("body", &m, &base)?,
        };
        let from = readings.len();
        let mut doc = Doc {
            rec,
            m,
            out: &mut readings,
            unmapped: &mut unmapped,
        };
        match kind {
            DocKind::Sleep => sleep(&mut doc, item)?,
            DocKind::Daily => daily(&mut doc, item)?,
            DocKind::Body => body_doc(&mut doc, item)?,
            DocKind::Activity => activity(&mut doc, item)?,
        }
        keep_last(&mut readings, from);
    }
    Ok(Normalized {
        readings,
        unmapped,
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

/// One Terra document being normalized: its record, its interval and the output.
struct Doc<'a> {
    rec: Record,
    m: Meta,
    out: &'a mut Vec<Reading>,
    /// The payload's `Normalized::unmapped`.
    unmapped: &'a mut Vec<String>,
}

impl Doc<'_> {
    /// A summary over the document's whole interval.
    fn span(&mut self, metric: Metric, value: Option<f64>) {
        self.rec
            .push(self.out, metric, value, self.m.start, self.m.end);
    }

    /// A reading over its own interval.
    fn between(
        &mut self,
        metric: Metric,
        value: Option<f64>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) {
        self.rec.push(self.out, metric, value, start, end);
    }

    /// One sample array as instants (start == end == the sample's `timestamp`):
    /// `block.<path>[] = {timestamp, <value_key>}`. A sample without a numeric value, with
    /// a value of 0 (see [`measured`]), or without a timestamp is no reading; a present but unreadable timestamp is an
    /// error, as for every other Terra time. `field` names the array in that error.
    fn series(
        &mut self,
        metric: Metric,
        block: &Value,
        path: &[&str],
        value_key: &str,
        field: &'static str,
    ) -> Result<(), NormalizeError> {
        for s in array(block, path, field)? {
            let value = measured(num(s, &[value_key]));
            if let Some((t, v)) = instant(s, "timestamp", field, value)? {
                self.between(metric, Some(v), t, t);
            }
        }
        Ok(())
    }
}

/// A vendor 0 stands for "not measured" in every field this is applied to (heart rate,
/// HRV, saturation, VO2 max, glucose, pressure, absolute temperature, body measurements,
/// MET, speed, cadence, power): none of them is 0 in a living person or a real workout.
fn measured(v: Option<f64>) -> Option<f64> {
    v.filter(|x| *x != 0.0)
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

/// One reading per (metric, start, end) within a document, the last one written: the
/// sink's identity key holds one row for that triple, so two samples of one metric at the
/// same instant (or a sample repeated in two arrays) must not become two rows.
fn keep_last(out: &mut Vec<Reading>, from: usize) {
    let mut last: HashMap<(Metric, DateTime<Utc>, DateTime<Utc>), usize> = HashMap::new();
    for (i, r) in out[from..].iter().enumerate() {
        last.insert((r.metric, r.start_time, r.end_time), i);
    }
    if last.len() == out.len() - from {
        return;
    }
    let doc = out.split_off(from);
    out.extend(
        doc.into_iter()
            .enumerate()
            .filter(|(i, r)| last.get(&(r.metric, r.start_time, r.end_time)) == Some(i))
            .map(|(_, r)| r),
    );
}

/// `heart_rate_data` (Terra's `HeartRateData`, the same shape in every document):
///
/// - `summary`: mean, minimum and maximum over the document's interval, resting HR unless
///   `with_resting` is false, RMSSD and SDNN (each its own metric, never converted), and
///   the time in each heart-rate zone (`hr_zone_data`, see [`zones`]).
/// - `detailed`: `hr_samples[{timestamp, bpm}]`, `hrv_samples_rmssd[{timestamp,
///   hrv_rmssd}]`, `hrv_samples_sdnn[{timestamp, hrv_sdnn}]` as instants.
///
/// A 0 bpm or 0 ms means "not measured". `user_max_hr_bpm` is the user's configured
/// maximum, not a measurement of the interval, and is not emitted.
fn heart(doc: &mut Doc<'_>, hr: &Value, with_resting: bool) -> Result<(), NormalizeError> {
    let at = |k: &str| measured(num(hr, &["summary", k]));
    doc.span(Metric::HeartRate, at("avg_hr_bpm"));
    doc.span(Metric::HeartRateMin, at("min_hr_bpm"));
    doc.span(Metric::HeartRateMax, at("max_hr_bpm"));
    if with_resting {
        doc.span(Metric::RestingHeartRate, at("resting_hr_bpm"));
    }
    doc.span(Metric::HrvRmssd, at("avg_hrv_rmssd"));
    doc.span(Metric::HrvSdnn, at("avg_hrv_sdnn"));
    zones(doc, hr)?;
    let detailed = [
        (Metric::HeartRate, "hr_samples", "bpm", HR_SAMPLES),
        (Metric::HrvRmssd, "hrv_samples_rmssd", "hrv_rmssd", RMSSD_SAMPLES),
        (Metric::HrvSdnn, "hrv_samples_sdnn", "hrv_sdnn", SDNN_SAMPLES),
    ];
    for (metric, key, value_key, field) in detailed {
        doc.series(metric, hr, &["detailed", key], value_key, field)?;
    }
    Ok(())
}

const HR_SAMPLES: &str = "heart_rate_data.detailed.hr_samples";
const RMSSD_SAMPLES: &str = "heart_rate_data.detailed.hrv_samples_rmssd";
const SDNN_SAMPLES: &str = "heart_rate_data.detailed.hrv_samples_sdnn";

/// The catalog's zones, as % of maximum heart rate: zone 0 below 50, then 10-point bands.
const ZONE_METRICS: [(Metric, f64, f64); 6] = [
    (Metric::HeartRateZone0, 0.0, 50.0),
    (Metric::HeartRateZone1, 50.0, 60.0),
    (Metric::HeartRateZone2, 60.0, 70.0),
    (Metric::HeartRateZone3, 70.0, 80.0),
    (Metric::HeartRateZone4, 80.0, 90.0),
    (Metric::HeartRateZone5, 90.0, 100.0),
];

/// `heart_rate_data.summary.hr_zone_data[{zone, start_percentage, end_percentage, name,
/// duration_seconds}]` (Terra's `HeartRateZoneData`; `zone` is its `HeartRateZone` enum,
/// `ZONE_0`…`ZONE_5` = 0…5, `OTHER` = 6) as time in zone over the document's interval.
///
/// Terra's zone numbers match the catalog's only when the zone is the same band of
/// maximum heart rate. A zone whose `start_percentage`/`end_percentage` are given and
/// differ from the catalog's band (a provider's custom zones, heart-rate-reserve zones) is
/// no reading and is counted as `heart_rate_zone:<zone>` in `Normalized::unmapped`;
/// zone 6 (`OTHER`) and unknown numbers are the same. Percentages absent:
/// Terra's number is trusted. Zone 0's lower bound is not checked (it is "below 50 %").
/// A duration of 0 s is a real "no time in this zone", not a missing value.
fn zones(doc: &mut Doc<'_>, hr: &Value) -> Result<(), NormalizeError> {
    let field = "heart_rate_data.summary.hr_zone_data";
    for z in array(hr, &["summary", "hr_zone_data"], field)? {
        let Some(zone) = num(z, &["zone"]) else {
            continue;
        };
        let band = (0..ZONE_METRICS.len()).find(|&n| n as f64 == zone);
        match band.filter(|&n| zone_fits(z, n)) {
            Some(n) => doc.span(ZONE_METRICS[n].0, num(z, &["duration_seconds"])),
            None => doc.unmapped.push(format!("heart_rate_zone:{zone}")),
        }
    }
    Ok(())
}

/// Whether a Terra zone's percentages, where given, are the catalog's band `n`.
fn zone_fits(z: &Value, n: usize) -> bool {
    let (_, lo, hi) = ZONE_METRICS[n];
    let close = |key: &str, want: f64| num(z, &[key]).is_none_or(|v| (v - want).abs() < 0.5);
    (n == 0 || close("start_percentage", lo)) && close("end_percentage", hi)
}

/// `oxygen_data` (daily, body, activity): average saturation (already 0–100), VO2 max,
/// and their samples `saturation_samples[{timestamp, percentage}]` and
/// `vo2_samples[{timestamp, vo2max_ml_per_min_per_kg}]` as instants.
fn oxygen(doc: &mut Doc<'_>, item: &Value) -> Result<(), NormalizeError> {
    let Some(o) = get(item, &["oxygen_data"]) else {
        return Ok(());
    };
    let at = |k: &str| measured(num(o, &[k]));
    doc.span(Metric::OxygenSaturation, at("avg_saturation_percentage"));
    doc.span(Metric::Vo2Max, at("vo2max_ml_per_min_per_kg"));
    doc.series(
        Metric::OxygenSaturation,
        o,
        &["saturation_samples"],
        "percentage",
        "oxygen_data.saturation_samples",
    )?;
    doc.series(
        Metric::Vo2Max,
        o,
        &["vo2_samples"],
        "vo2max_ml_per_min_per_kg",
        "oxygen_data.vo2_samples",
    )
}

/// `temperature_data.{body,skin}_temperature_samples[{timestamp, temperature_celsius}]`
/// (Terra's Body model; accepted in Sleep too, where Terra documents only `delta`:
/// unverified there). Ambient temperature is not a body metric and is not read.
fn temperature_samples(doc: &mut Doc<'_>, item: &Value) -> Result<(), NormalizeError> {
    let samples = [
        ("body_temperature_samples", Metric::BodyTemperature),
        ("skin_temperature_samples", Metric::SkinTemperature),
    ];
    for (key, metric) in samples {
        doc.series(
            metric,
            item,
            &["temperature_data", key],
            "temperature_celsius",
            "temperature_data.*_temperature_samples",
        )?;
    }
    Ok(())
}

/// `MET_data` (daily, activity): `avg_level` over the interval and
/// `MET_samples[{timestamp, level}]` as instants.
fn met(doc: &mut Doc<'_>, item: &Value) -> Result<(), NormalizeError> {
    doc.span(Metric::Met, measured(num(item, &["MET_data", "avg_level"])));
    doc.series(
        Metric::Met,
        item,
        &["MET_data", "MET_samples"],
        "level",
        "MET_data.MET_samples",
    )
}

/// Elevation and floors of a distance block (`distance_data` of a daily,
/// `distance_data.summary` of an activity). Totals only: a 0 is a real "flat".
fn climb(doc: &mut Doc<'_>, distance: &Value) {
    let e = |k: &str| num(distance, &["elevation", k]);
    doc.span(Metric::ElevationGain, e("gain_actual_meters"));
    doc.span(Metric::ElevationLoss, e("loss_actual_meters"));
    doc.span(Metric::FlightsClimbed, num(distance, &["floors_climbed"]));
}

fn sleep(doc: &mut Doc<'_>, item: &Value) -> Result<(), NormalizeError> {
    // `metadata.is_nap` changes nothing here: a nap is its own session with its own interval.
    doc.span(
        Metric::SleepSession,
        Some(seconds_between(doc.m.start, doc.m.end)),
    );
    let d = |a: &str, b: &str| num(item, &["sleep_durations_data", a, b]);
    doc.span(Metric::SleepTotal, d("asleep", "duration_asleep_state_seconds"));
    doc.span(
        Metric::SleepDeep,
        d("asleep", "duration_deep_sleep_state_seconds"),
    );
    doc.span(
        Metric::SleepLight,
        d("asleep", "duration_light_sleep_state_seconds"),
    );
    doc.span(Metric::SleepRem, d("asleep", "duration_REM_sleep_state_seconds"));
    doc.span(Metric::SleepAwake, d("awake", "duration_awake_state_seconds"));
    doc.span(Metric::SleepLatency, d("awake", "sleep_latency_seconds"));
    doc.span(Metric::SleepDisturbances, d("awake", "num_wakeup_events"));
    doc.span(Metric::TimeInBed, d("other", "duration_in_bed_seconds"));
    // Time the device could not stage is the catalog's "recorded nothing" time.
    doc.span(
        Metric::SleepNoData,
        d("other", "duration_unmeasurable_sleep_seconds"),
    );
    // Terra's model types sleep_efficiency as a 0–100 integer, but Terra payloads in
    // third-party test suites carry fractions (0.9; unverified against a live delivery):
    // a value ≤ 1 is read as a fraction, as for Health Auto Export (an efficiency of 1 %
    // or less is not a night's sleep).
    let efficiency = num(item, &["sleep_durations_data", "sleep_efficiency"])
        .and_then(|v| units::to_canonical(Metric::SleepEfficiency, v, "%"));
    doc.span(Metric::SleepEfficiency, efficiency);
    hypnogram(doc, item)?;
    if let Some(hr) = get(item, &["heart_rate_data"]) {
        heart(doc, hr, true)?;
    }
    if let Some(r) = get(item, &["respiration_data"]) {
        let breaths = num(r, &["breaths_data", "avg_breaths_per_min"]);
        doc.span(Metric::RespiratoryRate, measured(breaths));
        doc.series(
            Metric::RespiratoryRate,
            r,
            &["breaths_data", "samples"],
            "breaths_per_min",
            "respiration_data.breaths_data.samples",
        )?;
        let spo2 = num(r, &["oxygen_saturation_data", "avg_saturation_percentage"]);
        doc.span(Metric::OxygenSaturation, measured(spo2));
        doc.series(
            Metric::OxygenSaturation,
            r,
            &["oxygen_saturation_data", "samples"],
            "percentage",
            "respiration_data.oxygen_saturation_data.samples",
        )?;
    }
    let delta = num(item, &["temperature_data", "delta"]);
    doc.span(Metric::SkinTemperatureDeviation, delta);
    temperature_samples(doc, item)?;
    doc.span(Metric::SleepScore, num(item, &["scores", "sleep"]));
    // `readiness_data.recovery_level` is left out: a 1–6 category, not a score.
    let readiness = num(item, &["readiness_data", "readiness"]);
    doc.span(Metric::ReadinessScore, readiness);
    Ok(())
}

/// Terra's `SleepLevel` (enums.tsp): 0 unknown, 1 awake, 2 sleeping (unstaged), 3 out of
/// bed, 4 light, 5 deep, 6 REM. Unknown, out of bed and any other number: no stage.
fn stage(level: f64) -> Option<SleepStage> {
    match level {
        1.0 => Some(SleepStage::Awake),
        2.0 => Some(SleepStage::Asleep),
        4.0 => Some(SleepStage::Light),
        5.0 => Some(SleepStage::Deep),
        6.0 => Some(SleepStage::Rem),
        _ => None,
    }
}

/// `sleep_durations_data.hypnogram_samples[{timestamp, level}]` as `sleep_stage`
/// intervals: each sample's stage holds until the next sample's timestamp (whatever that
/// one's level), the last one until the sleep's `end_time`. Samples are taken in time
/// order; of two at the same instant the later one in the array holds the interval. A
/// sample without a timestamp cannot be placed and is skipped; one without a (known)
/// level still ends the previous stage but gives no reading. An interval that would end
/// at or before its start (a sample at or after the sleep's end) is no reading.
fn hypnogram(doc: &mut Doc<'_>, item: &Value) -> Result<(), NormalizeError> {
    let field = "sleep_durations_data.hypnogram_samples";
    let mut points = Vec::new();
    for s in array(item, &["sleep_durations_data", "hypnogram_samples"], field)? {
        let Some(raw) = text(s, &["timestamp"]) else {
            continue;
        };
        let t = parse_rfc3339(field, raw)?.with_timezone(&Utc);
        points.push((t, num(s, &["level"]).and_then(stage)));
    }
    points.sort_by_key(|p| p.0);
    for (i, &(start, stage)) in points.iter().enumerate() {
        let end = points.get(i + 1).map_or(doc.m.end, |next| next.0);
        if let Some(stage) = stage.filter(|_| end > start) {
            doc.between(Metric::SleepStage, Some(stage.code()), start, end);
        }
    }
    Ok(())
}

fn daily(doc: &mut Doc<'_>, item: &Value) -> Result<(), NormalizeError> {
    // Totals only: `distance_data.detailed.*_samples` and `calories_data.calorie_samples`
    // would count the same steps, metres and kcal a second time.
    if let Some(d) = get(item, &["distance_data"]) {
        doc.span(Metric::StepCount, num(d, &["steps"]));
        doc.span(Metric::Distance, num(d, &["distance_meters"]));
        climb(doc, d);
    }
    let c = |k: &str| num(item, &["calories_data", k]);
    doc.span(Metric::TotalEnergy, c("total_burned_calories"));
    doc.span(Metric::ActiveEnergy, c("net_activity_calories"));
    doc.span(Metric::BasalEnergy, c("BMR_calories"));
    let a = |k: &str| num(item, &["active_durations_data", k]);
    doc.span(Metric::ActivityLowTime, a("low_intensity_seconds"));
    doc.span(Metric::ActivityMediumTime, a("moderate_intensity_seconds"));
    doc.span(Metric::ActivityHighTime, a("vigorous_intensity_seconds"));
    doc.span(Metric::SedentaryTime, a("inactivity_seconds"));
    doc.span(Metric::RestingTime, a("rest_seconds"));
    doc.span(Metric::StandTime, a("standing_seconds"));
    doc.span(Metric::StandHours, a("standing_hours_count"));
    if let Some(hr) = get(item, &["heart_rate_data"]) {
        heart(doc, hr, true)?;
    }
    oxygen(doc, item)?;
    met(doc, item)?;
    doc.span(Metric::ActivityScore, num(item, &["scores", "activity"]));
    doc.span(Metric::RecoveryScore, num(item, &["scores", "recovery"]));
    doc.span(Metric::SleepScore, num(item, &["scores", "sleep"]));
    doc.span(Metric::Strain, num(item, &["strain_data", "strain_level"]));
    Ok(())
}

/// `measurements_data.measurements[]` fields (Terra's `MeasurementDataSample`) with the
/// unit Terra names in the field. `body_fat_percentage` is an unverified spelling
/// accepted beside Terra's `bodyfat_percentage`.
const MEASUREMENTS: [(&str, Metric, &str); 8] = [
    ("weight_kg", Metric::Weight, "kg"),
    ("height_cm", Metric::Height, "cm"),
    ("BMI", Metric::Bmi, "kg/m2"),
    ("bodyfat_percentage", Metric::BodyFatPercentage, "%"),
    ("body_fat_percentage", Metric::BodyFatPercentage, "%"),
    ("muscle_mass_g", Metric::MuscleMass, "g"),
    ("bone_mass_g", Metric::BoneMass, "g"),
    ("lean_mass_g", Metric::LeanBodyMass, "g"),
];

fn body_doc(doc: &mut Doc<'_>, item: &Value) -> Result<(), NormalizeError> {
    if let Some(hr) = get(item, &["heart_data", "heart_rate_data"]) {
        heart(doc, hr, true)?;
    }
    oxygen(doc, item)?;
    temperature_samples(doc, item)?;
    if let Some(g) = get(item, &["glucose_data"]) {
        // Terra's glucose fields are mg/dL by name (`*_mg_per_dL`): no conversion.
        let avg = num(g, &["day_avg_blood_glucose_mg_per_dL"]);
        doc.span(Metric::BloodGlucose, measured(avg));
        // The detailed array is documented as denser but less accurate: read only when
        // the regular one is absent or empty, never mixed into one series.
        let key = match array(g, &["blood_glucose_samples"], GLUCOSE)? {
            [] => "detailed_blood_glucose_samples",
            _ => "blood_glucose_samples",
        };
        doc.series(
            Metric::BloodGlucose,
            g,
            &[key],
            "blood_glucose_mg_per_dL",
            GLUCOSE,
        )?;
    }
    if let Some(bp) = get(item, &["blood_pressure_data"]) {
        let field = "blood_pressure_data.blood_pressure_samples";
        for (metric, key) in [
            (Metric::BloodPressureSystolic, "systolic_bp"),
            (Metric::BloodPressureDiastolic, "diastolic_bp"),
        ] {
            doc.series(metric, bp, &["blood_pressure_samples"], key, field)?;
        }
    }
    let field = "measurements_data.measurements.measurement_time";
    for s in array(
        item,
        &["measurements_data", "measurements"],
        "measurements_data.measurements",
    )? {
        for (key, metric, unit) in MEASUREMENTS {
            let value = measured(num(s, &[key])).and_then(|v| units::to_canonical(metric, v, unit));
            if let Some((t, v)) = instant(s, "measurement_time", field, value)? {
                doc.between(metric, Some(v), t, t);
            }
        }
    }
    Ok(())
}

const GLUCOSE: &str = "glucose_data.blood_glucose_samples";

fn activity(doc: &mut Doc<'_>, item: &Value) -> Result<(), NormalizeError> {
    // The workout's length is its interval, as for the other vendors.
    doc.span(
        Metric::WorkoutDuration,
        Some(seconds_between(doc.m.start, doc.m.end)),
    );
    let c = |k: &str| num(item, &["calories_data", k]);
    doc.span(Metric::TotalEnergy, c("total_burned_calories"));
    doc.span(Metric::ActiveEnergy, c("net_activity_calories"));
    // Totals only: `distance_data.detailed.*_samples` and `calories_data.calorie_samples`
    // would count the same metres, steps and kcal a second time.
    if let Some(d) = get(item, &["distance_data", "summary"]) {
        doc.span(Metric::Distance, num(d, &["distance_meters"]));
        doc.span(Metric::StepCount, num(d, &["steps"]));
        climb(doc, d);
    }
    // A "resting" heart rate measured over a workout interval would mislead: not emitted.
    if let Some(hr) = get(item, &["heart_rate_data"]) {
        heart(doc, hr, false)?;
    }
    oxygen(doc, item)?;
    met(doc, item)?;
    // Means only: the catalog's speed, cadence and power are a sample or a mean, so the
    // maxima have no metric; the per-sample arrays are not read.
    let mv = |k: &str| measured(num(item, &["movement_data", k]));
    doc.span(Metric::Speed, mv("avg_speed_meters_per_second"));
    doc.span(Metric::Cadence, mv("avg_cadence_rpm"));
    let watts = measured(num(item, &["power_data", "avg_watts"]));
    doc.span(Metric::Power, watts);
    doc.span(Metric::Strain, num(item, &["strain_data", "strain_level"]));
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use serde_json::json;

    use super::*;

    fn run(body: &Value) -> Result<Normalized, NormalizeError> {
        normalize(&RawEnvelope {
            event_id: "t".into(),
            vendor: VENDOR.into(),
            received_at_micros: 0,
            headers: HashMap::new(),
            query: None,
            principal: None,
            content_type: Some("application/json".into()),
            body: serde_json::to_vec(body).unwrap(),
            edge_instance: "t".into(),
        })
    }

    fn daily(blocks: Value) -> Value {
        let mut item = json!({"metadata": {"start_time": "2025-01-01T00:00:00.000000+00:00",
            "end_time": "2025-01-02T00:00:00.000000+00:00", "upload_type": 1}});
        for (k, v) in blocks.as_object().unwrap() {
            item[k] = v.clone();
        }
        json!({"type": "daily", "user": {"user_id": "u", "provider": "GARMIN"}, "data": [item]})
    }

    /// A day of per-minute samples is one instant per minute, once each, all of the
    /// document; repeating the whole array changes nothing.
    #[test]
    fn a_day_of_minute_samples_is_one_row_per_minute() {
        let samples: Vec<Value> = (0..1440)
            .map(|m| {
                json!({"timestamp": format!("2025-01-01T{:02}:{:02}:00+00:00", m / 60, m % 60),
                       "bpm": 50 + m % 70})
            })
            .collect();
        let twice: Vec<Value> = samples.iter().chain(&samples).cloned().collect();
        for arr in [samples, twice] {
            let out = run(&daily(json!({"heart_rate_data": {
                "summary": {"avg_hr_bpm": 70},
                "detailed": {"hr_samples": arr}}})))
            .unwrap();
            let instants: Vec<&Reading> = out
                .readings
                .iter()
                .filter(|r| r.start_time == r.end_time)
                .collect();
            assert_eq!(instants.len(), 1440);
            assert_eq!(out.readings.len(), 1441, "plus the day's mean");
            let times: HashSet<_> = instants.iter().map(|r| r.start_time).collect();
            assert_eq!(times.len(), 1440);
            assert!(out.readings.iter().all(|r| r.metric == Metric::HeartRate
                && r.source_record_id == "daily:2025-01-01"
                && r.activity.is_none()));
        }
    }

    #[test]
    fn hostile_sample_blocks_are_errors_or_skipped() {
        // Not a list: a shape error, never a guess.
        for blocks in [
            json!({"heart_rate_data": {"detailed": {"hrv_samples_rmssd": 5}}}),
            json!({"oxygen_data": {"saturation_samples": "x"}}),
            json!({"MET_data": {"MET_samples": {}}}),
            json!({"heart_rate_data": {"summary": {"hr_zone_data": 1}}}),
        ] {
            let err = run(&daily(blocks)).unwrap_err();
            assert_eq!(err.reason(), "unsupported_shape");
        }
        // Items that are not sample objects, or carry strings, are no readings.
        let out = run(&daily(json!({"heart_rate_data": {"detailed": {"hr_samples": [
            7, null, "x", [], {"timestamp": "2025-01-01T06:00:00Z", "bpm": "60"},
            {"timestamp": 5, "bpm": 60}]}}})))
        .unwrap();
        assert_eq!(out.readings, []);
        let sleep = json!({"type": "sleep", "user": {"user_id": "u"}, "data": [{
            "metadata": {"start_time": "2025-01-01T00:00:00Z", "end_time": "2025-01-01T08:00:00Z"},
            "sleep_durations_data": {"hypnogram_samples": {"level": 4}}}]});
        assert_eq!(run(&sleep).unwrap_err().reason(), "unsupported_shape");
    }
}
