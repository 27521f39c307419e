//! Apple HealthKit through Health Auto Export's REST automation (vendors.md §4).
//!
//! Body: `{"data":{"metrics":[{name, units, data:[…]}], "workouts":[…]}}`. Every value is
//! converted from its metric's `units` string; an unknown unit is an error (dead-lettered,
//! replayable). A metric name without a mapping ([`super::names`], rendered in
//! `MAPPING.md`) is reported in [`Normalized::unmapped`], as is any other non-empty
//! top-level list (`data.ecg`, `data.stateOfMind`, …).
//!
//! Modeling choices:
//! - user id: the envelope's `principal` (the edge authenticated the per-user API key);
//!   required.
//! - Quantity samples are instants at their `date`. Health Auto Export aggregates samples
//!   into buckets whose length is a setting on the phone, not in the payload, so the
//!   bucket's end is unknown; the start is what `date` says.
//! - `source_record_id` = `"<metric name>:<date as written>"`, `source` = the sample's
//!   `source`. Re-sent samples ("Since Last Sync") therefore land on the same row.
//! - `heart_rate` `{Min, Avg, Max}` yields `heart_rate` (`Avg`, or `qty` in the plain
//!   shape), `heart_rate_min` and `heart_rate_max`, each only when present.
//!   `blood_pressure` `{systolic, diastolic}` yields both pressures of one entry.
//! - `heart_rate_variability` is Apple's SDNN and goes to `hrv_sdnn`, never `hrv_rmssd`.
//! - Sleep: see [`normalize`] for the aggregated and the unaggregated shapes.
//! - Workouts: see [`workout`].
//! - Two readings of one document with the same metric and interval (the app repeating a
//!   sample): the last one is kept.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, FixedOffset, TimeDelta, Utc};
use serde_json::Value;

use crate::normalize::units::{duration_to_seconds, to_canonical};
use crate::normalize::{
    NormalizeError, Record, array, clip, get, interval, num, parse_json, seconds_between, shape,
    text,
};
use super::names::{self, Shape};
use bridge_core::model::{Activity, Metric, Normalized, Reading, SleepStage};
use bridge_core::RawEnvelope;

/// Vendor route name.
const VENDOR: &str = "healthkit";

/// Health Auto Export's date format, e.g. `2025-01-01 07:00:00 -0500`.
const DATE_FORMAT: &str = "%Y-%m-%d %H:%M:%S %z";

/// Unaggregated sleep segments further apart than this start a new session (a nap after
/// the night, the next night). One hour is longer than any awake gap Apple Watch leaves
/// unrecorded inside a night and shorter than the usual gap between night and nap.
const SESSION_GAP: TimeDelta = TimeDelta::hours(1);

/// Normalizes one Health Auto Export body for the envelope's principal.
///
/// Sleep (`sleep_analysis`) comes in two shapes:
/// - Aggregated, one entry per night in `units` (usually `hr`): all metrics cover
///   `sleepStart..sleepEnd`. `totalSleep` → `sleep_total`; `core` → `sleep_light`, `deep`,
///   `rem`, `awake` are emitted only when `core + deep + rem > 0` (a night without stage
///   data reports zeros, which would be false, not absent), and each only when the entry
///   carries it: no `awake` field, no `sleep_awake` row. `time_in_bed` =
///   `inBedEnd − inBedStart` when both are present, else `inBed` when it is > 0.
///   `sleep_efficiency` is derived as `totalSleep / time_in_bed × 100` when that is ≤ 100.
///   `source_record_id` = `sleep_analysis:<date>` (`<sleepStart>` when `date` is absent).
/// - Unaggregated segments `{startDate, endDate, value}`: per `source`, segments sorted by
///   start are grouped into sessions split by gaps over one hour, and each session gives
///   one clean row per metric, the same metrics and rules as the aggregated shape. Stage
///   durations are the summed segment lengths (`endDate − startDate`, not the rounded
///   `qty`); a stage without a segment in the session has no row (not a zero),
///   assuming one source does not overlap itself (Apple writes stages
///   back-to-back). The interval is the span of the non-`In Bed` segments (the span of
///   the `In Bed` segments when there are none); `time_in_bed` is the span of the
///   `In Bed` segments. `Asleep`/`Unspecified` count toward `sleep_total` only; unknown
///   stage names are skipped and reported as `sleep_stage:<value>` in `unmapped`.
///   `source_record_id` = `sleep_analysis:<startDate of the session's first segment, as
///   written>`. Each segment but `In Bed` (not a stage: awake or asleep) is also a
///   `sleep_stage` reading over its own `startDate..endDate`: `Awake` 1, `Core` 2
///   (light), `Deep` 3, `REM` 4, `Asleep`/`Unspecified` 5 ([`SleepStage`] codes).
///
/// Either shape: every night is a session, `activity` = `sleep` on all its readings, and
/// `sleep_session` (value = the interval's length in seconds) over its interval.
pub fn normalize(env: &RawEnvelope) -> Result<Normalized, NormalizeError> {
    let user_id = env
        .principal
        .as_deref()
        .filter(|p| !p.trim().is_empty())
        .ok_or(NormalizeError::MissingUserId(
            "health auto export envelope has no principal",
        ))?;
    let body = parse_json(&env.body)?;
    let data = get(&body, &["data"])
        .filter(|d| d.is_object())
        .ok_or_else(|| shape("health auto export body has no `data` object"))?;

    let mut readings = Vec::new();
    let mut unmapped = BTreeSet::new();
    for metric in array(data, &["metrics"], "data.metrics")? {
        quantity_metric(metric, user_id, &mut readings, &mut unmapped)?;
    }
    for workout_doc in array(data, &["workouts"], "data.workouts")? {
        workout(workout_doc, user_id, &mut readings, &mut unmapped)?;
    }
    // Newer app versions add `stateOfMind`, `medications`, `symptoms`, `cycleTracking`,
    // `ecg`, `heartRateNotifications`: none has a catalog metric yet.
    if let Some(map) = data.as_object() {
        for (key, value) in map {
            let carries = value.as_array().is_some_and(|a| !a.is_empty());
            if carries && key != "metrics" && key != "workouts" {
                unmapped.insert(format!("data.{}", clip(key)));
            }
        }
    }
    Ok(Normalized {
        readings: keep_last(readings),
        unmapped: unmapped.into_iter().collect(),
        ..Normalized::default()
    })
}

/// Drops every reading that a later one of the same document, metric and interval
/// repeats: one row per identity, the last value written.
fn keep_last(readings: Vec<Reading>) -> Vec<Reading> {
    let mut seen = HashSet::new();
    let mut kept: Vec<Reading> = readings
        .into_iter()
        .rev()
        .filter(|r| {
            seen.insert((
                r.source_record_id.clone(),
                r.source.clone(),
                r.metric,
                r.start_time,
                r.end_time,
            ))
        })
        .collect();
    kept.reverse();
    kept
}

/// A `yyyy-MM-dd HH:mm:ss Z` time.
fn parse_hae(field: &'static str, s: &str) -> Result<DateTime<FixedOffset>, NormalizeError> {
    DateTime::parse_from_str(s.trim(), DATE_FORMAT).map_err(|_| NormalizeError::InvalidTimestamp {
        field,
        value: clip(s),
    })
}

/// A required time at `key`, with the string as written.
fn required_hae(
    v: &Value,
    key: &str,
    field: &'static str,
) -> Result<(DateTime<FixedOffset>, String), NormalizeError> {
    let raw = text(v, &[key]).ok_or_else(|| shape(format!("missing {field}")))?;
    Ok((parse_hae(field, raw)?, raw.to_owned()))
}

fn unsupported_unit(metric: &str, unit: &str) -> NormalizeError {
    NormalizeError::UnsupportedUnit {
        metric: clip(metric),
        unit: clip(unit),
    }
}

fn quantity_metric(
    m: &Value,
    user_id: &str,
    out: &mut Vec<Reading>,
    unmapped: &mut BTreeSet<String>,
) -> Result<(), NormalizeError> {
    let name = text(m, &["name"]).ok_or_else(|| shape("metric without a `name`"))?;
    let units = text(m, &["units"]).unwrap_or("");
    let entries = array(m, &["data"], "metric `data`")?;
    if name == "sleep_analysis" {
        return sleep(entries, units, user_id, out, unmapped);
    }
    let Some(how) = names::metric(name) else {
        unmapped.insert(clip(name));
        return Ok(());
    };
    // The fields of one entry that become readings.
    let fields: Vec<(&str, Metric)> = match how {
        Shape::Qty(metric) => vec![("qty", metric)],
        Shape::HeartRate => vec![
            ("Avg", Metric::HeartRate),
            ("Min", Metric::HeartRateMin),
            ("Max", Metric::HeartRateMax),
        ],
        Shape::BloodPressure => vec![
            ("systolic", Metric::BloodPressureSystolic),
            ("diastolic", Metric::BloodPressureDiastolic),
        ],
    };
    for e in entries {
        let Some(date) = text(e, &["date"]) else {
            continue;
        };
        let mut values: Vec<(Metric, f64)> = fields
            .iter()
            .filter_map(|(key, metric)| num(e, &[key]).map(|v| (*metric, v)))
            .collect();
        // Unaggregated heart rate is the plain `{qty}` shape.
        if how == Shape::HeartRate
            && num(e, &["Avg"]).is_none()
            && let Some(v) = num(e, &["qty"])
        {
            values.push((Metric::HeartRate, v));
        }
        if values.is_empty() {
            continue;
        }
        let t = parse_hae("data[].date", date)?.with_timezone(&Utc);
        let rec = Record {
            user_id: user_id.to_owned(),
            vendor: VENDOR,
            source_record_id: format!("{name}:{date}"),
            source: text(e, &["source"]).map(str::to_owned),
            ordering: None,
            activity: None,
        };
        for (metric, value) in values {
            let value =
                to_canonical(metric, value, units).ok_or_else(|| unsupported_unit(name, units))?;
            rec.push(out, metric, Some(value), t, t);
        }
    }
    Ok(())
}

/// Durations of one sleep session, in seconds.
#[derive(Debug, Default)]
struct Night {
    total: Option<f64>,
    light: Option<f64>,
    deep: Option<f64>,
    rem: Option<f64>,
    awake: Option<f64>,
    in_bed: Option<f64>,
    /// The hypnogram: stage intervals, in payload order (unaggregated segments only).
    stages: Vec<(DateTime<Utc>, DateTime<Utc>, SleepStage)>,
}

impl Night {
    /// Emits the session's readings over `start..end` (see [`normalize`] for the rules).
    fn emit(&self, rec: &Record, start: DateTime<Utc>, end: DateTime<Utc>, out: &mut Vec<Reading>) {
        rec.push(
            out,
            Metric::SleepSession,
            Some(seconds_between(start, end)),
            start,
            end,
        );
        for (s, e, stage) in &self.stages {
            rec.push(out, Metric::SleepStage, Some(stage.code()), *s, *e);
        }
        rec.push(out, Metric::SleepTotal, self.total, start, end);
        // A night without stage data carries zeros (or nothing) for every stage: those
        // zeros are not measurements. With stage data, each stage the payload carries is
        // a reading (a real zero included) and an absent one is none.
        let staged = [self.light, self.deep, self.rem]
            .iter()
            .any(|v| v.is_some_and(|v| v > 0.0));
        if staged {
            rec.push(out, Metric::SleepLight, self.light, start, end);
            rec.push(out, Metric::SleepDeep, self.deep, start, end);
            rec.push(out, Metric::SleepRem, self.rem, start, end);
            rec.push(out, Metric::SleepAwake, self.awake, start, end);
        }
        let in_bed = self.in_bed.filter(|s| *s > 0.0);
        rec.push(out, Metric::TimeInBed, in_bed, start, end);
        let efficiency = match (self.total, in_bed) {
            (Some(total), Some(bed)) => Some(total / bed * 100.0).filter(|e| *e <= 100.0),
            _ => None,
        };
        rec.push(out, Metric::SleepEfficiency, efficiency, start, end);
    }
}

fn sleep(
    entries: &[Value],
    units: &str,
    user_id: &str,
    out: &mut Vec<Reading>,
    unmapped: &mut BTreeSet<String>,
) -> Result<(), NormalizeError> {
    let mut segments = Vec::new();
    for e in entries {
        if get(e, &["startDate"]).is_some() {
            match Segment::parse(e)? {
                Some(segment) => segments.push(segment),
                None => {
                    let value = text(e, &["value"]).unwrap_or("");
                    unmapped.insert(format!("sleep_stage:{}", clip(value)));
                }
            }
        } else {
            aggregated_night(e, units, user_id, out)?;
        }
    }
    unaggregated_nights(segments, user_id, out);
    Ok(())
}

fn aggregated_night(
    e: &Value,
    units: &str,
    user_id: &str,
    out: &mut Vec<Reading>,
) -> Result<(), NormalizeError> {
    // `date` is a plain calendar date; the session's instants come from sleepStart/sleepEnd.
    let (start, start_raw) = required_hae(e, "sleepStart", "sleep_analysis.sleepStart")?;
    let (end, _) = required_hae(e, "sleepEnd", "sleep_analysis.sleepEnd")?;
    let (start, end) = interval(start, end)?;
    let hours = |k: &str| -> Result<Option<f64>, NormalizeError> {
        num(e, &[k])
            .map(|v| {
                duration_to_seconds(v, units)
                    .ok_or_else(|| unsupported_unit("sleep_analysis", units))
            })
            .transpose()
    };
    let in_bed_span = match (text(e, &["inBedStart"]), text(e, &["inBedEnd"])) {
        (Some(s), Some(t)) => {
            let (s, t) = interval(
                parse_hae("sleep_analysis.inBedStart", s)?,
                parse_hae("sleep_analysis.inBedEnd", t)?,
            )?;
            Some(seconds_between(s, t))
        }
        _ => None,
    };
    let night = Night {
        total: hours("totalSleep")?,
        light: hours("core")?,
        deep: hours("deep")?,
        rem: hours("rem")?,
        awake: hours("awake")?,
        in_bed: in_bed_span.or(hours("inBed")?),
        stages: Vec::new(),
    };
    let date = text(e, &["date"]).unwrap_or(&start_raw);
    let rec = Record {
        user_id: user_id.to_owned(),
        vendor: VENDOR,
        source_record_id: format!("sleep_analysis:{date}"),
        source: text(e, &["source"]).map(str::to_owned),
        ordering: None,
        activity: Some(Activity::Sleep),
    };
    night.emit(&rec, start, end, out);
    Ok(())
}

/// Apple sleep stages as Health Auto Export names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    InBed,
    Awake,
    Core,
    Deep,
    Rem,
    Unspecified,
}

impl Stage {
    /// The hypnogram code; `In Bed` is not a stage (the person may be awake or asleep).
    fn code(self) -> Option<SleepStage> {
        Some(match self {
            Stage::InBed => return None,
            Stage::Awake => SleepStage::Awake,
            Stage::Core => SleepStage::Light,
            Stage::Deep => SleepStage::Deep,
            Stage::Rem => SleepStage::Rem,
            Stage::Unspecified => SleepStage::Asleep,
        })
    }
}

/// One unaggregated sleep segment.
#[derive(Debug)]
struct Segment {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    start_raw: String,
    stage: Stage,
    source: Option<String>,
}

impl Segment {
    /// `None` for a stage name this code does not know.
    fn parse(e: &Value) -> Result<Option<Segment>, NormalizeError> {
        let stage = match text(e, &["value"]) {
            Some("In Bed" | "InBed" | "inBed") => Stage::InBed,
            Some("Awake" | "awake") => Stage::Awake,
            Some("Core" | "core") => Stage::Core,
            Some("Deep" | "deep") => Stage::Deep,
            Some("REM" | "rem") => Stage::Rem,
            Some("Asleep" | "asleep" | "Unspecified" | "unspecified") => Stage::Unspecified,
            _ => return Ok(None),
        };
        let (start, start_raw) = required_hae(e, "startDate", "sleep_analysis.startDate")?;
        let (end, _) = required_hae(e, "endDate", "sleep_analysis.endDate")?;
        let (start, end) = interval(start, end)?;
        Ok(Some(Segment {
            start,
            end,
            start_raw,
            stage,
            source: text(e, &["source"]).map(str::to_owned),
        }))
    }
}

fn unaggregated_nights(segments: Vec<Segment>, user_id: &str, out: &mut Vec<Reading>) {
    let mut by_source: BTreeMap<Option<String>, Vec<Segment>> = BTreeMap::new();
    for s in segments {
        by_source.entry(s.source.clone()).or_default().push(s);
    }
    for (source, mut segs) in by_source {
        segs.sort_by_key(|s| (s.start, s.end));
        let mut session: Vec<Segment> = Vec::new();
        let mut session_end: Option<DateTime<Utc>> = None;
        for s in segs {
            let gap_end = session_end.and_then(|e| e.checked_add_signed(SESSION_GAP));
            if gap_end.is_some_and(|g| s.start > g) {
                emit_session(&std::mem::take(&mut session), &source, user_id, out);
                session_end = None;
            }
            session_end = Some(session_end.map_or(s.end, |e| e.max(s.end)));
            session.push(s);
        }
        emit_session(&session, &source, user_id, out);
    }
}

fn emit_session(
    session: &[Segment],
    source: &Option<String>,
    user_id: &str,
    out: &mut Vec<Reading>,
) {
    let Some(first) = session.first() else {
        return;
    };
    let span = |segs: &mut dyn Iterator<Item = &Segment>| {
        segs.fold(None, |acc: Option<(DateTime<Utc>, DateTime<Utc>)>, s| {
            Some(match acc {
                None => (s.start, s.end),
                Some((a, b)) => (a.min(s.start), b.max(s.end)),
            })
        })
    };
    let bed = span(&mut session.iter().filter(|s| s.stage == Stage::InBed));
    let asleep_span = span(&mut session.iter().filter(|s| s.stage != Stage::InBed));
    let Some((start, end)) = asleep_span.or(bed) else {
        return;
    };
    // A stage without a segment is not in the payload: no reading (never a zero, and
    // never the -0.0 an empty float sum gives).
    let sum = |stage: Stage| {
        session
            .iter()
            .filter(|s| s.stage == stage)
            .map(|s| seconds_between(s.start, s.end))
            .reduce(|a, b| a + b)
    };
    let (light, deep, rem) = (sum(Stage::Core), sum(Stage::Deep), sum(Stage::Rem));
    let asleep = [light, deep, rem, sum(Stage::Unspecified)]
        .into_iter()
        .flatten()
        .sum::<f64>()
        + 0.0;
    let has_sleep = session
        .iter()
        .any(|s| !matches!(s.stage, Stage::InBed | Stage::Awake));
    let night = Night {
        total: has_sleep.then_some(asleep),
        light,
        deep,
        rem,
        awake: sum(Stage::Awake),
        in_bed: bed.map(|(a, b)| seconds_between(a, b)),
        stages: session
            .iter()
            .filter_map(|s| Some((s.start, s.end, s.stage.code()?)))
            .collect(),
    };
    let rec = Record {
        user_id: user_id.to_owned(),
        vendor: VENDOR,
        source_record_id: format!("sleep_analysis:{}", first.start_raw),
        source: source.clone(),
        ordering: None,
        activity: Some(Activity::Sleep),
    };
    night.emit(&rec, start, end, out);
}

/// A `{qty, units}` object at `path` converted into `metric`'s unit. A zero is no
/// reading: workouts of the version 1 export write `{"qty": 0}` for every field the
/// workout did not record (0 bpm, 0 steps and 0 °C for a swim in a real export), so a
/// zero there cannot be told from "not measured".
fn quantity(w: &Value, path: &[&str], metric: Metric) -> Result<Option<f64>, NormalizeError> {
    let Some(q) = num(w, &[path, &["qty"]].concat()).filter(|q| *q != 0.0) else {
        return Ok(None);
    };
    let units = text(w, &[path, &["units"]].concat()).unwrap_or("");
    to_canonical(metric, q, units)
        .map(Some)
        .ok_or_else(|| unsupported_unit(&path.join("."), units))
}

/// The first of `paths` that holds a (non-zero) quantity.
fn first_quantity(
    w: &Value,
    paths: &[&[&str]],
    metric: Metric,
) -> Result<Option<f64>, NormalizeError> {
    for path in paths {
        if let Some(v) = quantity(w, path, metric)? {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// The sum of a per-sample list `[{date, qty, units}]` at `key` (the version 2 export's
/// "workout metrics"), `None` when the list is absent, not a list or empty.
fn sample_sum(w: &Value, key: &str, metric: Metric) -> Result<Option<f64>, NormalizeError> {
    let Some(samples) = get(w, &[key]).and_then(Value::as_array) else {
        return Ok(None);
    };
    let mut total = None;
    for s in samples {
        let Some(q) = num(s, &["qty"]) else {
            continue;
        };
        let units = text(s, &["units"]).unwrap_or("");
        let v = to_canonical(metric, q, units).ok_or_else(|| unsupported_unit(key, units))?;
        total = Some(total.unwrap_or(0.0) + v);
    }
    Ok(total)
}

/// A workout's total of an amount: the summary field when the workout has one, else the
/// sum of its per-sample list. Never both: agents sum interval metrics, so the samples
/// beside a total would count the same energy twice.
fn total(
    w: &Value,
    summaries: &[&[&str]],
    samples: &[&str],
    metric: Metric,
) -> Result<Option<f64>, NormalizeError> {
    if let Some(v) = first_quantity(w, summaries, metric)? {
        return Ok(Some(v));
    }
    let mut sum = None;
    for key in samples {
        if let Some(v) = sample_sum(w, key, metric)? {
            sum = Some(sum.unwrap_or(0.0) + v);
        }
    }
    Ok(sum.filter(|v| *v != 0.0))
}

/// A version 1 `elevation {ascent, descent, units}` field, converted to metres.
fn elevation_v1(w: &Value, key: &str) -> Result<Option<f64>, NormalizeError> {
    let Some(q) = num(w, &["elevation", key]).filter(|q| *q != 0.0) else {
        return Ok(None);
    };
    let units = text(w, &["elevation", "units"]).unwrap_or("");
    to_canonical(Metric::ElevationGain, q, units)
        .map(Some)
        .ok_or_else(|| unsupported_unit("elevation", units))
}

/// Heart-rate samples `[{date, Avg|qty, units}]` at `key` as instant `heart_rate`
/// readings of the session.
fn heart_rate_samples(
    w: &Value,
    key: &str,
    rec: &Record,
    out: &mut Vec<Reading>,
) -> Result<(), NormalizeError> {
    for s in array(w, &[key], key)? {
        // A bucket of 0 bpm is a gap in the recording, not a heart rate.
        let Some(v) = num(s, &["Avg"])
            .or_else(|| num(s, &["qty"]))
            .filter(|v| *v != 0.0)
        else {
            continue;
        };
        let Some(date) = text(s, &["date"]) else {
            continue;
        };
        let units = text(s, &["units"]).unwrap_or("");
        let v = to_canonical(Metric::HeartRate, v, units)
            .ok_or_else(|| unsupported_unit(key, units))?;
        let t = parse_hae("workouts.heartRateData[].date", date)?.with_timezone(&Utc);
        rec.push(out, Metric::HeartRate, Some(v), t, t);
    }
    Ok(())
}

/// One workout: a session over `start..end` whose readings share the workout's
/// `source_record_id` (`id`, else `workout:<start as written>`) and its activity (from
/// `name`, [`names::WORKOUTS`]; an unknown name is `other`, reported as
/// `activity:<name>`).
///
/// Both export versions are read (version 2 first where they differ):
/// - `workout_duration` = `duration` (excludes pauses), else the interval.
/// - `active_energy` = `activeEnergyBurned`, v1 `activeEnergy {qty}`, else the sum of the
///   v2 `activeEnergy [..]` samples; `total_energy` = `totalEnergy`; `basal_energy` = the
///   sum of `basalEnergy [..]`; `distance` = `distance`, else the sum of the
///   `walkingAndRunningDistance`/`cyclingDistance`/`swimDistance` samples; `step_count` =
///   v1 `stepCount {qty}`, else the sum of v2 `stepCount [..]`; `flights_climbed` =
///   `flightsClimbed`. A per-sample list is never emitted beside its total.
/// - `heart_rate` = `avgHeartRate`, else `heartRate.avg`; `heart_rate_max` =
///   `maxHeartRate`, else `heartRate.max`; `heart_rate_min` = `heartRate.min`.
/// - `elevation_gain`/`elevation_loss` = v2 `elevationUp`/`elevationDown`, else v1
///   `elevation.ascent`/`descent`.
/// - `speed` = `avgSpeed`, else `speed`; `cadence` = `stepCadence`; `met` = `intensity`.
/// - `heartRateData` samples → instant `heart_rate` readings; so do the
///   `heartRateRecovery` samples, the heart rate measured after the workout ended
///   (absolute bpm per bucket: they are not Apple's one-minute recovery drop, which
///   arrives as the `cardio_recovery` metric).
/// - A summary quantity of 0 is not a reading (see [`quantity`]).
fn workout(
    w: &Value,
    user_id: &str,
    out: &mut Vec<Reading>,
    unmapped: &mut BTreeSet<String>,
) -> Result<(), NormalizeError> {
    let (start, start_raw) = required_hae(w, "start", "workouts.start")?;
    let (end, _) = required_hae(w, "end", "workouts.end")?;
    let (start, end) = interval(start, end)?;
    // Older exports have no id; the start as written is the next most stable key.
    let id = text(w, &["id"])
        .map(str::to_owned)
        .unwrap_or_else(|| format!("workout:{start_raw}"));
    // A workout without a name has no sport to map (nothing to report either).
    let name = text(w, &["name"]).map(str::trim);
    let activity = match name.map(|n| (n, names::workout(n))) {
        Some((_, Some(a))) => a,
        Some((n, None)) => {
            unmapped.insert(format!("activity:{}", clip(n)));
            Activity::Other
        }
        None => Activity::Other,
    };
    let rec = Record {
        user_id: user_id.to_owned(),
        vendor: VENDOR,
        source_record_id: id,
        source: text(w, &["source"]).map(str::to_owned),
        ordering: None,
        activity: Some(activity),
    };
    let duration = num(w, &["duration"]).unwrap_or_else(|| seconds_between(start, end));
    let mut session = |metric: Metric, value: Option<f64>| rec.push(out, metric, value, start, end);
    session(Metric::WorkoutDuration, Some(duration));
    // Version 1 writes `activeEnergy` as one total; version 2 as a list of samples.
    let active = total(
        w,
        &[&["activeEnergyBurned"], &["activeEnergy"]],
        &["activeEnergy"],
        Metric::ActiveEnergy,
    )?;
    session(Metric::ActiveEnergy, active);
    let total_energy = first_quantity(w, &[&["totalEnergy"]], Metric::TotalEnergy)?;
    session(Metric::TotalEnergy, total_energy);
    let basal = total(w, &[], &["basalEnergy"], Metric::BasalEnergy)?;
    session(Metric::BasalEnergy, basal);
    let distance = total(
        w,
        &[&["distance"]],
        &["walkingAndRunningDistance", "cyclingDistance", "swimDistance"],
        Metric::Distance,
    )?;
    session(Metric::Distance, distance);
    let steps = total(w, &[&["stepCount"]], &["stepCount"], Metric::StepCount)?;
    session(Metric::StepCount, steps);
    let flights = first_quantity(w, &[&["flightsClimbed"]], Metric::FlightsClimbed)?;
    session(Metric::FlightsClimbed, flights);
    let hr = |paths: &[&[&str]], metric| first_quantity(w, paths, metric);
    session(
        Metric::HeartRate,
        hr(&[&["avgHeartRate"], &["heartRate", "avg"]], Metric::HeartRate)?,
    );
    session(
        Metric::HeartRateMax,
        hr(&[&["maxHeartRate"], &["heartRate", "max"]], Metric::HeartRateMax)?,
    );
    session(
        Metric::HeartRateMin,
        hr(&[&["heartRate", "min"]], Metric::HeartRateMin)?,
    );
    let gain = match quantity(w, &["elevationUp"], Metric::ElevationGain)? {
        Some(v) => Some(v),
        None => elevation_v1(w, "ascent")?,
    };
    session(Metric::ElevationGain, gain);
    let loss = match quantity(w, &["elevationDown"], Metric::ElevationLoss)? {
        Some(v) => Some(v),
        None => elevation_v1(w, "descent")?,
    };
    session(Metric::ElevationLoss, loss);
    let speed = first_quantity(w, &[&["avgSpeed"], &["speed"]], Metric::Speed)?;
    session(Metric::Speed, speed);
    let cadence = first_quantity(w, &[&["stepCadence"]], Metric::Cadence)?;
    session(Metric::Cadence, cadence);
    let intensity = first_quantity(w, &[&["intensity"]], Metric::Met)?;
    session(Metric::Met, intensity);
    heart_rate_samples(w, "heartRateData", &rec, out)?;
    heart_rate_samples(w, "heartRateRecovery", &rec, out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use bridge_core::catalog::Kind;

    use super::*;

    fn envelope(body: Vec<u8>) -> RawEnvelope {
        RawEnvelope {
            event_id: "test".into(),
            vendor: VENDOR.into(),
            received_at_micros: 0,
            headers: Default::default(),
            query: None,
            principal: Some("hk-user".into()),
            content_type: Some("application/json".into()),
            body,
            edge_instance: "test".into(),
        }
    }

    /// Agents sum interval metrics per document: across every fixture that normalizes,
    /// no document carries two readings of one interval metric (a per-sample list beside
    /// its total would).
    #[test]
    fn no_document_counts_an_amount_twice() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/healthkit");
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let companion = [".expected.json", ".args.json", ".headers.json"];
            if !name.ends_with(".json") || companion.iter().any(|c| name.ends_with(c)) {
                continue;
            }
            let Ok(out) = normalize(&envelope(std::fs::read(&path).unwrap())) else {
                continue;
            };
            let mut per_doc: HashMap<_, usize> = HashMap::new();
            for r in out.readings.iter().filter(|r| r.metric.kind() == Kind::Interval) {
                *per_doc
                    .entry((r.source_record_id.clone(), r.source.clone(), r.metric))
                    .or_default() += 1;
            }
            for (key, n) in per_doc {
                assert_eq!(n, 1, "{name}: {key:?} has {n} readings");
            }
            checked += 1;
        }
        assert!(checked >= 10, "only {checked} fixtures normalized");
    }

    #[test]
    fn a_workout_total_wins_over_its_samples_and_zero_is_absent() {
        let body = br#"{"data":{"workouts":[{"id":"w","name":"Indoor Walk",
            "start":"2025-01-01 10:00:00 +0000","end":"2025-01-01 10:10:00 +0000",
            "activeEnergyBurned":{"qty":50,"units":"kcal"},
            "activeEnergy":[{"date":"2025-01-01 10:00:00 +0000","qty":20,"units":"kcal"}],
            "stepCount":[{"date":"2025-01-01 10:00:00 +0000","qty":0,"units":"count"}],
            "distance":{"qty":0,"units":"km"}}]}}"#;
        let out = normalize(&envelope(body.to_vec())).unwrap();
        let got: Vec<(Metric, f64)> = out.readings.iter().map(|r| (r.metric, r.value)).collect();
        assert_eq!(
            got,
            vec![(Metric::WorkoutDuration, 600.0), (Metric::ActiveEnergy, 50.0)]
        );
        assert!(
            out.readings
                .iter()
                .all(|r| r.activity == Some(Activity::Walking))
        );
        assert!(out.unmapped.is_empty());
    }
}
