//! Polar AccessLink v3 documents of the non-transactional endpoints, as fetched after a
//! webhook notification (/work/wt/notes/polar-spec.md §3; the AccessLink OpenAPI).
//!
//! Each document is keyed by what Polar names it by, so a re-sent day or night replaces
//! its earlier version: `exercise:<id>`, `sleep:<date>`, `nightly_recharge:<date>`,
//! `continuous_heart_rate:<date>`, `activity:<date>`, `physical_info:<modified>`.
//! Polar signals no deletions, so nothing here emits a tombstone.

use chrono::{
    DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Timelike, Utc,
};
use serde_json::Value;

use crate::normalize::{
    NormalizeError, Record, clip, get, interval, iso8601_seconds, num, parse_date, parse_rfc3339,
    required_rfc3339, seconds_between, shape, text,
};
use bridge_core::model::{Activity, Metric, Normalized, Reading, SleepStage};

/// Vendor route name.
const VENDOR: &str = "polar";

/// Which AccessLink resource a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolarDocKind {
    /// `GET /v3/exercises/{id}`.
    Exercise,
    /// `GET /v3/users/sleep/{date}`.
    Sleep,
    /// `GET /v3/users/continuous-heart-rate/{date}`.
    ContinuousHeartRate,
    /// `GET /v3/users/activities/{date}`.
    Activity,
    /// `GET /v3/users/physical-info`.
    PhysicalInfo,
}

/// The sleep period a Nightly Recharge belongs to (its own document carries only a date).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Night {
    /// When the user fell asleep, at the offset Polar wrote.
    pub start: DateTime<FixedOffset>,
    /// When the user woke up.
    pub end: DateTime<FixedOffset>,
}

/// Polar: the Nightly Recharge averages cover "a 4-hour period starting at 30 minutes
/// after falling asleep".
const RECHARGE_DELAY: TimeDelta = TimeDelta::minutes(30);
const RECHARGE_SPAN: TimeDelta = TimeDelta::hours(4);

/// Normalizes one fetched AccessLink document of `kind` for our `user_id`.
///
/// - Exercise: `start_time` is local without an offset; `start_time_utc_offset`
///   (minutes) places it (UTC without one). Interval start .. start + `duration`
///   (ISO 8601). `duration` → `workout_duration`, `calories` → `active_energy` (Polar:
///   "expended calories during training", read as activity like Oura's workout calories),
///   `distance` → `distance`, `heart_rate.average` → `heart_rate` over the interval.
/// - Sleep: see [`normalize_night`]; this is the night without its Nightly Recharge.
/// - Continuous heart rate: `heart_rate` instants at `date` + `sample_time`. Polar writes
///   device time and no offset anywhere in the document, so the times are taken as UTC.
/// - Activity: interval `start_time..end_time`, which Polar documents as UTC (no offset
///   written). `steps` → `step_count`, `active_calories` → `active_energy`, `calories` →
///   `total_energy`, `distance_from_steps` → `distance`. `daily_activity` is a goal
///   percentage (above 100 when the goal is beaten), not a score: not mapped.
/// - Physical info: instants at `modified` (else `created`). `weight` → `weight` unless
///   `weight_source` is `SOURCE_DEFAULT` or `SOURCE_ESTIMATE` (not a measurement);
///   `vo2_max` → `vo2_max`. The resting and maximum heart rates there are user settings.
pub fn normalize_document(
    user_id: &str,
    kind: PolarDocKind,
    doc: &Value,
) -> Result<Normalized, NormalizeError> {
    check(user_id, doc)?;
    let mut readings = Vec::new();
    match kind {
        PolarDocKind::Exercise => {
            let unmapped = exercise(user_id, doc, &mut readings)?;
            return Ok(Normalized {
                readings,
                unmapped: unmapped.into_iter().collect(),
                ..Normalized::default()
            });
        }
        PolarDocKind::Sleep => {
            sleep(user_id, doc, &mut readings)?;
        }
        PolarDocKind::ContinuousHeartRate => continuous_heart_rate(user_id, doc, &mut readings)?,
        PolarDocKind::Activity => activity(user_id, doc, &mut readings)?,
        PolarDocKind::PhysicalInfo => physical_info(user_id, doc, &mut readings)?,
    }
    Ok(readings_only(readings))
}

/// Normalizes a `SLEEP` notification's two documents: the night (`GET
/// /v3/users/sleep/{date}`) and, when Polar has one, its Nightly Recharge (`GET
/// /v3/users/nightly-recharge/{date}`).
///
/// - Sleep, interval `sleep_start_time..sleep_end_time` ("between when you fell asleep and
///   when you woke up": not time in bed, so no `time_in_bed`): `light_sleep` (N1+N2) →
///   `sleep_light`, `deep_sleep` (N3) → `sleep_deep`, `rem_sleep` → `sleep_rem`,
///   `total_interruption_duration` → `sleep_awake`, `sleep_total` = light + deep + REM
///   when all three are present, `sleep_score` → `sleep_score`; `heart_rate_samples`
///   (`"HH:MM"` → bpm) → `heart_rate` instants (see [`place_clock_time`]).
/// - Nightly Recharge, interval sleep start + 30 min .. the earlier of + 4 h 30 min and
///   the wake-up: `heart_rate_variability_avg` (RMSSD) → `hrv_rmssd`,
///   `breathing_rate_avg` → `respiratory_rate`, `heart_rate_avg` → `heart_rate`;
///   `hrv_samples` and `breathing_samples` → instants of the same metrics. The status
///   classes (`nightly_recharge_status` 1–6, `ans_charge` −10…+10) are not scores on any
///   canonical scale and are not mapped.
pub fn normalize_night(
    user_id: &str,
    sleep_doc: &Value,
    recharge: Option<&Value>,
) -> Result<Normalized, NormalizeError> {
    check(user_id, sleep_doc)?;
    let mut readings = Vec::new();
    let night = sleep(user_id, sleep_doc, &mut readings)?;
    if let Some(doc) = recharge {
        if !doc.is_object() {
            return Err(shape("polar nightly recharge is not an object"));
        }
        nightly_recharge(user_id, doc, night, &mut readings)?;
    }
    Ok(readings_only(readings))
}

fn check(user_id: &str, doc: &Value) -> Result<(), NormalizeError> {
    if user_id.trim().is_empty() {
        return Err(NormalizeError::MissingUserId(
            "polar document without a user id",
        ));
    }
    if !doc.is_object() {
        return Err(shape("polar document is not an object"));
    }
    Ok(())
}

fn readings_only(readings: Vec<Reading>) -> Normalized {
    Normalized {
        readings,
        ..Normalized::default()
    }
}

fn record(user_id: &str, source_record_id: String) -> Record {
    Record {
        user_id: user_id.to_owned(),
        vendor: VENDOR,
        source_record_id,
        source: None,
        ordering: None,
        activity: None,
    }
}

/// The document's `date`, written back from the parsed value (so an id never carries
/// anything but `YYYY-MM-DD`).
fn doc_date(doc: &Value, what: &str) -> Result<NaiveDate, NormalizeError> {
    let raw = text(doc, &["date"]).ok_or_else(|| shape(format!("polar {what} without `date`")))?;
    parse_date("date", raw)
}

/// A local date-time as Polar writes it (`2025-01-01T07:10:00`, optionally with
/// fractional seconds), placed at `offset`; a value that carries its own offset keeps it.
fn local_time(
    field: &'static str,
    raw: &str,
    offset: FixedOffset,
) -> Result<DateTime<FixedOffset>, NormalizeError> {
    if let Ok(t) = parse_rfc3339(field, raw) {
        return Ok(t);
    }
    NaiveDateTime::parse_from_str(raw.trim(), "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .and_then(|t| t.and_local_timezone(offset).single())
        .ok_or_else(|| NormalizeError::InvalidTimestamp {
            field,
            value: clip(raw),
        })
}

/// Pushes the exercise's readings; returns the sport name to report when it maps to no
/// activity.
fn exercise(
    user_id: &str,
    doc: &Value,
    out: &mut Vec<Reading>,
) -> Result<Option<String>, NormalizeError> {
    let id = text(doc, &["id"]).ok_or_else(|| shape("polar exercise without `id`"))?;
    let offset = match get(doc, &["start_time_utc_offset"]) {
        None => FixedOffset::east_opt(0),
        Some(v) => v
            .as_i64()
            .and_then(|m| i32::try_from(m.checked_mul(60)?).ok())
            .and_then(FixedOffset::east_opt),
    }
    .ok_or_else(|| shape("polar exercise `start_time_utc_offset` is not an offset in minutes"))?;
    let raw_start =
        text(doc, &["start_time"]).ok_or_else(|| shape("polar exercise without `start_time`"))?;
    let start = local_time("start_time", raw_start, offset)?;
    let raw_duration =
        text(doc, &["duration"]).ok_or_else(|| shape("polar exercise without `duration`"))?;
    let seconds = iso8601_seconds("duration", raw_duration)?;
    let end = TimeDelta::try_milliseconds((seconds * 1000.0).round() as i64)
        .and_then(|d| start.checked_add_signed(d))
        .ok_or_else(|| shape("polar exercise `duration` out of range"))?;
    let (start, end) = interval(start, end)?;
    let (sport, unmapped) = super::activity::activity(
        text(doc, &["sport"]),
        text(doc, &["detailed_sport_info"]),
    );
    let rec = Record {
        activity: Some(sport),
        ..record(user_id, format!("exercise:{id}"))
    };
    rec.push(out, Metric::WorkoutDuration, Some(seconds), start, end);
    rec.push(out, Metric::ActiveEnergy, num(doc, &["calories"]), start, end);
    rec.push(out, Metric::Distance, num(doc, &["distance"]), start, end);
    let hr = num(doc, &["heart_rate", "average"]);
    rec.push(out, Metric::HeartRate, hr, start, end);
    let max = num(doc, &["heart_rate", "maximum"]);
    rec.push(out, Metric::HeartRateMax, max, start, end);
    Ok(unmapped)
}

/// Pushes the night's readings and returns its period (for the Nightly Recharge).
fn sleep(user_id: &str, doc: &Value, out: &mut Vec<Reading>) -> Result<Night, NormalizeError> {
    let date = doc_date(doc, "sleep")?;
    let (start, _) = required_rfc3339(doc, &["sleep_start_time"], "sleep_start_time")?;
    let (end, _) = required_rfc3339(doc, &["sleep_end_time"], "sleep_end_time")?;
    let (from, to) = interval(start, end)?;
    let rec = Record {
        activity: Some(Activity::Sleep),
        ..record(user_id, format!("sleep:{date}"))
    };
    rec.push(out, Metric::SleepSession, Some(seconds_between(from, to)), from, to);
    let s = |k: &str| num(doc, &[k]);
    let (light, deep, rem) = (s("light_sleep"), s("deep_sleep"), s("rem_sleep"));
    let total = match (light, deep, rem) {
        (Some(l), Some(d), Some(r)) => Some(l + d + r),
        _ => None,
    };
    rec.push(out, Metric::SleepTotal, total, from, to);
    rec.push(out, Metric::SleepLight, light, from, to);
    rec.push(out, Metric::SleepDeep, deep, from, to);
    rec.push(out, Metric::SleepRem, rem, from, to);
    let awake = s("total_interruption_duration");
    rec.push(out, Metric::SleepAwake, awake, from, to);
    rec.push(out, Metric::SleepScore, s("sleep_score"), from, to);
    rec.push(out, Metric::SleepCycles, s("sleep_cycles"), from, to);
    clock_samples(doc, "heart_rate_samples", start, &rec, Metric::HeartRate, out)?;
    hypnogram(doc, start, to, &rec, out)?;
    Ok(Night { start, end })
}

fn nightly_recharge(
    user_id: &str,
    doc: &Value,
    night: Night,
    out: &mut Vec<Reading>,
) -> Result<(), NormalizeError> {
    let date = doc_date(doc, "nightly recharge")?;
    let from = night.start + RECHARGE_DELAY;
    let to = (night.start + RECHARGE_DELAY + RECHARGE_SPAN).min(night.end);
    let rec = record(user_id, format!("nightly_recharge:{date}"));
    // A night shorter than the delay has no measurement window at all.
    if from <= to {
        let (from, to) = interval(from, to)?;
        let s = |k: &str| num(doc, &[k]);
        rec.push(out, Metric::HrvRmssd, s("heart_rate_variability_avg"), from, to);
        rec.push(out, Metric::RespiratoryRate, s("breathing_rate_avg"), from, to);
        rec.push(out, Metric::HeartRate, s("heart_rate_avg"), from, to);
    }
    let anchor = night.start;
    clock_samples(doc, "hrv_samples", anchor, &rec, Metric::HrvRmssd, out)?;
    let breathing = Metric::RespiratoryRate;
    clock_samples(doc, "breathing_samples", anchor, &rec, breathing, out)
}

/// Polar's hypnogram stage codes (30-second epochs, accounts.md): 0 wake, 1 REM, 2 lighter
/// NREM (N1), 3 light NREM (N2), 4 deep NREM (N3), 5 unknown (no reading).
fn polar_stage(code: &Value) -> Option<SleepStage> {
    Some(match code.as_i64()? {
        0 => SleepStage::Awake,
        1 => SleepStage::Rem,
        2 | 3 => SleepStage::Light,
        4 => SleepStage::Deep,
        _ => return None,
    })
}

/// `hypnogram` (`{"HH:MM": stage}`, each key the start of a bout) as `sleep_stage`
/// intervals: each bout lasts until the next key, the last until the wake-up.
fn hypnogram(
    doc: &Value,
    anchor: DateTime<FixedOffset>,
    wake: DateTime<Utc>,
    rec: &Record,
    out: &mut Vec<Reading>,
) -> Result<(), NormalizeError> {
    let asleep = anchor.with_timezone(&Utc);
    let bouts = match get(doc, &["hypnogram"]) {
        None => return Ok(()),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(shape("polar `hypnogram` is not an object")),
    };
    let mut placed = Vec::with_capacity(bouts.len());
    for (clock, code) in bouts {
        placed.push((place_clock_time("hypnogram", clock, anchor)?, code));
    }
    placed.sort_by_key(|(at, _)| *at);
    for (i, (at, code)) in placed.iter().enumerate() {
        let until = placed.get(i + 1).map_or(wake, |(next, _)| *next);
        // Keys have minute precision: the first bout may start before the sleep does.
        let from = (*at).max(asleep);
        if let (Some(stage), true) = (polar_stage(code), until > from) {
            rec.push(out, Metric::SleepStage, Some(stage.code()), from, until);
        }
    }
    Ok(())
}

/// `{"HH:MM": value}` samples of a night as instants of `metric`.
fn clock_samples(
    doc: &Value,
    field: &'static str,
    anchor: DateTime<FixedOffset>,
    rec: &Record,
    metric: Metric,
    out: &mut Vec<Reading>,
) -> Result<(), NormalizeError> {
    let samples = match get(doc, &[field]) {
        None => return Ok(()),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(shape(format!("polar `{field}` is not an object"))),
    };
    for (clock, value) in samples {
        let at = place_clock_time(field, clock, anchor)?;
        rec.push(out, metric, value.as_f64(), at, at);
    }
    Ok(())
}

/// A wall-clock `HH:MM` (or `HH:MM:SS`) key of a night's samples as an instant: at the
/// offset of the sleep start, on the first date at which it is not before the sleep start
/// (compared to the minute, the keys' precision). This places a night that crosses
/// midnight right whatever order the keys come in.
pub fn place_clock_time(
    field: &'static str,
    clock: &str,
    anchor: DateTime<FixedOffset>,
) -> Result<DateTime<Utc>, NormalizeError> {
    let bad = || NormalizeError::InvalidTimestamp {
        field,
        value: clip(clock),
    };
    let time = NaiveTime::parse_from_str(clock, "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(clock, "%H:%M:%S"))
        .map_err(|_| bad())?;
    let floor = anchor
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .ok_or_else(bad)?;
    let mut at = anchor
        .date_naive()
        .and_time(time)
        .and_local_timezone(*anchor.offset())
        .single()
        .ok_or_else(bad)?;
    if at < floor {
        at = at.checked_add_signed(TimeDelta::days(1)).ok_or_else(bad)?;
    }
    Ok(at.with_timezone(&Utc))
}

fn continuous_heart_rate(
    user_id: &str,
    doc: &Value,
    out: &mut Vec<Reading>,
) -> Result<(), NormalizeError> {
    let date = doc_date(doc, "continuous heart rate")?;
    let rec = record(user_id, format!("continuous_heart_rate:{date}"));
    let samples = match get(doc, &["heart_rate_samples"]) {
        None => return Ok(()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(shape("polar `heart_rate_samples` is not a list")),
    };
    for sample in samples {
        let raw = text(sample, &["sample_time"])
            .ok_or_else(|| shape("polar heart rate sample without `sample_time`"))?;
        let time = NaiveTime::parse_from_str(raw, "%H:%M:%S")
            .or_else(|_| NaiveTime::parse_from_str(raw, "%H:%M"))
            .map_err(|_| NormalizeError::InvalidTimestamp {
                field: "sample_time",
                value: clip(raw),
            })?;
        let at = date.and_time(time).and_utc();
        rec.push(out, Metric::HeartRate, num(sample, &["heart_rate"]), at, at);
    }
    Ok(())
}

fn activity(user_id: &str, doc: &Value, out: &mut Vec<Reading>) -> Result<(), NormalizeError> {
    let utc = FixedOffset::east_opt(0).expect("zero offset");
    let raw_start =
        text(doc, &["start_time"]).ok_or_else(|| shape("polar activity without `start_time`"))?;
    let raw_end =
        text(doc, &["end_time"]).ok_or_else(|| shape("polar activity without `end_time`"))?;
    let start = local_time("start_time", raw_start, utc)?;
    let end = local_time("end_time", raw_end, utc)?;
    // The document has no date of its own: the day is the start's date as written.
    let day = start.date_naive();
    let (start, end) = interval(start, end)?;
    let rec = record(user_id, format!("activity:{day}"));
    let s = |k: &str| num(doc, &[k]);
    rec.push(out, Metric::StepCount, s("steps"), start, end);
    rec.push(out, Metric::ActiveEnergy, s("active_calories"), start, end);
    rec.push(out, Metric::TotalEnergy, s("calories"), start, end);
    rec.push(out, Metric::Distance, s("distance_from_steps"), start, end);
    Ok(())
}

fn physical_info(user_id: &str, doc: &Value, out: &mut Vec<Reading>) -> Result<(), NormalizeError> {
    let (at, raw) = match text(doc, &["modified"]) {
        Some(_) => required_rfc3339(doc, &["modified"], "modified")?,
        None => required_rfc3339(doc, &["created"], "created")
            .map_err(|_| shape("polar physical info without `modified` or `created`"))?,
    };
    let (at, _) = interval(at, at)?;
    let rec = record(user_id, format!("physical_info:{raw}"));
    let estimated = matches!(
        text(doc, &["weight_source"]),
        Some("SOURCE_DEFAULT" | "SOURCE_ESTIMATE")
    );
    if !estimated {
        rec.push(out, Metric::Weight, num(doc, &["weight"]), at, at);
    }
    rec.push(out, Metric::Vo2Max, num(doc, &["vo2_max"]), at, at);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn iso8601_durations() {
        let secs = |s| crate::normalize::iso8601_seconds("duration", s);
        assert_eq!(secs("PT2H44M").unwrap(), 9840.0);
        assert_eq!(secs("PT4.5S").unwrap(), 4.5);
        assert_eq!(secs("PT90M").unwrap(), 5400.0);
        assert_eq!(secs("P1DT2H").unwrap(), 93_600.0);
        assert_eq!(secs("P2W").unwrap(), 1_209_600.0);
        for bad in ["", "2H", "PT1H garbage", "P1Y", "P1M", "PT-5S"] {
            assert!(secs(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn clock_keys_after_midnight_land_on_the_next_day() {
        let start = DateTime::parse_from_rfc3339("2024-12-31T23:40:30+02:00").unwrap();
        let place = |k| place_clock_time("hypnogram", k, start).unwrap();
        assert_eq!(place("23:40"), at("2024-12-31T21:40:00Z"));
        assert_eq!(place("23:59"), at("2024-12-31T21:59:00Z"));
        assert_eq!(place("00:05"), at("2024-12-31T22:05:00Z"));
        assert_eq!(place("23:39"), at("2025-01-01T21:39:00Z"));
        assert!(place_clock_time("x", "24:10", start).is_err());
        assert!(place_clock_time("x", "7 am", start).is_err());
    }

    #[test]
    fn exercise_without_offset_is_utc_and_bad_offsets_are_errors() {
        let doc = json!({"id": "X1", "start_time": "2025-01-01T07:10:00", "duration": "PT30M"});
        let n = normalize_document("u", PolarDocKind::Exercise, &doc).unwrap();
        assert_eq!(n.readings.len(), 1);
        assert_eq!(n.readings[0].start_time, at("2025-01-01T07:10:00Z"));
        assert_eq!(n.readings[0].end_time, at("2025-01-01T07:40:00Z"));
        for offset in [json!(100_000), json!("60"), json!(1.5)] {
            let mut d = doc.clone();
            d["start_time_utc_offset"] = offset;
            let e = normalize_document("u", PolarDocKind::Exercise, &d).unwrap_err();
            assert_eq!(e.reason(), "unsupported_shape");
        }
        let mut d = doc.clone();
        d["duration"] = json!("P1M");
        let e = normalize_document("u", PolarDocKind::Exercise, &d).unwrap_err();
        assert_eq!(e.reason(), "invalid_timestamp");
    }

    #[test]
    fn a_night_shorter_than_the_recharge_delay_has_only_samples() {
        let sleep = json!({"date": "2025-01-01", "sleep_start_time": "2025-01-01T03:00:00Z",
                           "sleep_end_time": "2025-01-01T03:20:00Z"});
        let recharge = json!({"date": "2025-01-01", "heart_rate_avg": 50,
                              "hrv_samples": {"03:05": 40}});
        let n = normalize_night("u", &sleep, Some(&recharge)).unwrap();
        let metrics: Vec<_> = n.readings.iter().map(|r| r.metric).collect();
        assert_eq!(metrics, [Metric::SleepSession, Metric::HrvRmssd]);
        assert_eq!(n.readings[1].start_time, at("2025-01-01T03:05:00Z"));
    }

    #[test]
    fn estimated_weight_is_not_a_measurement() {
        let doc = json!({"weight": 70.0, "weight_source": "SOURCE_DEFAULT",
                         "modified": "2025-01-01T00:00:00Z"});
        let n = normalize_document("u", PolarDocKind::PhysicalInfo, &doc).unwrap();
        assert!(n.readings.is_empty());
        let e = normalize_document("u", PolarDocKind::PhysicalInfo, &json!({"weight": 70.0}))
            .unwrap_err();
        assert_eq!(e.reason(), "unsupported_shape");
    }

    #[test]
    fn hostile_documents_are_errors_not_panics() {
        let kinds = [
            PolarDocKind::Exercise,
            PolarDocKind::Sleep,
            PolarDocKind::ContinuousHeartRate,
            PolarDocKind::Activity,
            PolarDocKind::PhysicalInfo,
        ];
        let docs = [
            json!(null),
            json!([]),
            json!({}),
            json!({"date": "2025-13-01"}),
            json!({"date": "2025-01-01", "heart_rate_samples": "x"}),
            json!({"date": "2025-01-01", "heart_rate_samples": [{"sample_time": "99:00:00"}]}),
            json!({"id": "a", "start_time": "2025-01-01T00:00:00", "duration": "PT99999999999H"}),
        ];
        for kind in kinds {
            for doc in &docs {
                assert!(
                    normalize_document("u", kind, doc).is_err(),
                    "{kind:?} {doc}"
                );
            }
            assert!(normalize_document("", kind, &json!({})).is_err());
        }
    }
}
