//! Apple HealthKit through Health Auto Export's REST automation (vendors.md §4).
//!
//! Body: `{"data":{"metrics":[{name, units, data:[…]}], "workouts":[…]}}`. Every value is
//! converted from its metric's `units` string; an unknown unit is an error (dead-lettered,
//! replayable), an unknown metric name is skipped.
//!
//! Modeling choices:
//! - user id: the envelope's `principal` (the edge authenticated the per-user API key);
//!   required.
//! - Quantity samples are instants at their `date`. Health Auto Export aggregates samples
//!   into buckets whose length is a setting on the phone, not in the payload, so the
//!   bucket's end is unknown; the start is what `date` says.
//! - `source_record_id` = `"<metric name>:<date as written>"`, `source` = the sample's
//!   `source`. Re-sent samples ("Since Last Sync") therefore land on the same row.
//! - `heart_rate` `{Min, Avg, Max}` yields `Avg` only (or `qty` in the plain shape).
//! - `heart_rate_variability` is Apple's SDNN and goes to `hrv_sdnn`, never `hrv_rmssd`.
//! - Sleep: see [`normalize`] for the aggregated and the unaggregated shapes.
//! - Workouts: one set of readings over `start..end`, `source_record_id` = workout `id`.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, TimeDelta, Utc};
use serde_json::Value;

use crate::normalize::units::{duration_to_seconds, to_canonical};
use crate::normalize::{
    NormalizeError, Record, array, clip, get, interval, num, parse_json, seconds_between, shape,
    text,
};
use bridge_core::model::{Metric, Normalized, Reading};
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
///   stage names are skipped. `source_record_id` = `sleep_analysis:<startDate of the
///   session's first segment, as written>`.
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
    for metric in array(data, &["metrics"], "data.metrics")? {
        quantity_metric(metric, user_id, &mut readings)?;
    }
    for workout_doc in array(data, &["workouts"], "data.workouts")? {
        workout(workout_doc, user_id, &mut readings)?;
    }
    Ok(Normalized {
        readings,
        ..Normalized::default()
    })
}

/// The canonical metric of a Health Auto Export metric name, if mapped.
fn canonical(name: &str) -> Option<Metric> {
    Some(match name {
        "heart_rate" => Metric::HeartRate,
        "resting_heart_rate" => Metric::RestingHeartRate,
        "heart_rate_variability" => Metric::HrvSdnn,
        "respiratory_rate" => Metric::RespiratoryRate,
        "blood_oxygen_saturation" => Metric::OxygenSaturation,
        "step_count" => Metric::StepCount,
        "active_energy" => Metric::ActiveEnergy,
        "basal_energy_burned" => Metric::BasalEnergy,
        "apple_sleeping_wrist_temperature" => Metric::SkinTemperature,
        "body_temperature" => Metric::BodyTemperature,
        "vo2max" => Metric::Vo2Max,
        "weight_body_mass" => Metric::Weight,
        "walking_running_distance" => Metric::Distance,
        _ => return None,
    })
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

fn quantity_metric(m: &Value, user_id: &str, out: &mut Vec<Reading>) -> Result<(), NormalizeError> {
    let name = text(m, &["name"]).ok_or_else(|| shape("metric without a `name`"))?;
    let units = text(m, &["units"]).unwrap_or("");
    let entries = array(m, &["data"], "metric `data`")?;
    if name == "sleep_analysis" {
        return sleep(entries, units, user_id, out);
    }
    let Some(metric) = canonical(name) else {
        return Ok(());
    };
    for e in entries {
        let value = match metric {
            Metric::HeartRate => num(e, &["Avg"]).or_else(|| num(e, &["qty"])),
            _ => num(e, &["qty"]),
        };
        let (Some(value), Some(date)) = (value, text(e, &["date"])) else {
            continue;
        };
        let value =
            to_canonical(metric, value, units).ok_or_else(|| unsupported_unit(name, units))?;
        let t = parse_hae("data[].date", date)?.with_timezone(&Utc);
        let rec = Record {
            user_id: user_id.to_owned(),
            vendor: VENDOR,
            source_record_id: format!("{name}:{date}"),
            source: text(e, &["source"]).map(str::to_owned),
            ordering: None,
            activity: None,
        };
        rec.push(out, metric, Some(value), t, t);
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
}

impl Night {
    /// Emits the session's readings over `start..end` (see [`normalize`] for the rules).
    fn emit(&self, rec: &Record, start: DateTime<Utc>, end: DateTime<Utc>, out: &mut Vec<Reading>) {
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
) -> Result<(), NormalizeError> {
    let mut segments = Vec::new();
    for e in entries {
        if get(e, &["startDate"]).is_some() {
            if let Some(segment) = Segment::parse(e)? {
                segments.push(segment);
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
    };
    let date = text(e, &["date"]).unwrap_or(&start_raw);
    let rec = Record {
        user_id: user_id.to_owned(),
        vendor: VENDOR,
        source_record_id: format!("sleep_analysis:{date}"),
        source: text(e, &["source"]).map(str::to_owned),
        ordering: None,
        activity: None,
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
    };
    let rec = Record {
        user_id: user_id.to_owned(),
        vendor: VENDOR,
        source_record_id: format!("sleep_analysis:{}", first.start_raw),
        source: source.clone(),
        ordering: None,
        activity: None,
    };
    night.emit(&rec, start, end, out);
}

/// A `{qty, units}` object converted into `metric`'s unit.
fn quantity(w: &Value, key: &str, metric: Metric) -> Result<Option<f64>, NormalizeError> {
    let Some(q) = num(w, &[key, "qty"]) else {
        return Ok(None);
    };
    let units = text(w, &[key, "units"]).unwrap_or("");
    to_canonical(metric, q, units)
        .map(Some)
        .ok_or_else(|| unsupported_unit(key, units))
}

fn workout(w: &Value, user_id: &str, out: &mut Vec<Reading>) -> Result<(), NormalizeError> {
    let (start, start_raw) = required_hae(w, "start", "workouts.start")?;
    let (end, _) = required_hae(w, "end", "workouts.end")?;
    let (start, end) = interval(start, end)?;
    // Older exports have no id; the start as written is the next most stable key.
    let id = text(w, &["id"])
        .map(str::to_owned)
        .unwrap_or_else(|| format!("workout:{start_raw}"));
    let rec = Record {
        user_id: user_id.to_owned(),
        vendor: VENDOR,
        source_record_id: id,
        source: text(w, &["source"]).map(str::to_owned),
        ordering: None,
        activity: None,
    };
    // `duration` (s) excludes pauses; the interval is the fallback.
    let duration = num(w, &["duration"]).unwrap_or_else(|| seconds_between(start, end));
    rec.push(out, Metric::WorkoutDuration, Some(duration), start, end);
    let active = match quantity(w, "activeEnergyBurned", Metric::ActiveEnergy)? {
        Some(v) => Some(v),
        None => quantity(w, "activeEnergy", Metric::ActiveEnergy)?,
    };
    rec.push(out, Metric::ActiveEnergy, active, start, end);
    let total = quantity(w, "totalEnergy", Metric::TotalEnergy)?;
    rec.push(out, Metric::TotalEnergy, total, start, end);
    let distance = quantity(w, "distance", Metric::Distance)?;
    rec.push(out, Metric::Distance, distance, start, end);
    Ok(())
}
