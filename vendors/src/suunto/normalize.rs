//! Suunto documents into canonical readings (accounts.md §4; shapes from Suunto's
//! API Zone representation and Open Wearables' handler).
//!
//! - `SUUNTO_247_SLEEP_CREATED`: one document per `SleepId`, over `BedtimeStart ..
//!   BedtimeEnd`: deep/light/REM as sent; `sleep_total` = deep + light + REM only when
//!   all three are present (absent is not zero); `sleep_awake` = wake after sleep onset
//!   plus wake before getting up, when both are present (the split platforms.md records);
//!   `time_in_bed` = the bedtime span; `HRMin` of a night (not a nap) as
//!   `resting_heart_rate`; `AvgHRV` as `hrv_rmssd` [unverified: Suunto calls it RMSSD
//!   in its apps, the partner schema does not say]; `SleepQualityScore` as `sleep_score`.
//!   Durations are taken as seconds [unverified]. `MaxSpo2` is a maximum, which no
//!   canonical metric means, so it is not a reading. The night is a session:
//!   `sleep_session` over the bedtime span, `activity = sleep` on every reading,
//!   `SleepOnsetLatencyDuration` -> `sleep_latency`, `HRAvg` -> `heart_rate` (the mean).
//! - `SUUNTO_247_ACTIVITY_CREATED`: `HR` -> `heart_rate`, `SpO2` -> `oxygen_saturation`
//!   (a fraction <= 1 is scaled to percent [unverified which Suunto sends]), `HRV` ->
//!   `hrv_rmssd`, each an instant at the sample's `timestamp`. `StepCount` and
//!   `EnergyConsumption` are counts over a period the sample does not state, so placing
//!   them would be a guess: not read.
//! - `SUUNTO_247_RECOVERY_CREATED`: `Balance` (0–1) as `recovery_score` 0–100, an instant.
//! - `WORKOUT_CREATED` and `GET /v2/workouts/{key}`: over `startTime .. startTime +
//!   totalTime` (ms epoch, seconds): `workout_duration`, `distance` (m), `step_count`,
//!   `active_energy` (`energyConsumption`, kcal [C]), average `heart_rate`,
//!   `workoutMaxHR` -> `heart_rate_max`, `avgSpeed` -> `speed` (m/s), `totalAscent` /
//!   `totalDescent` -> `elevation_gain` / `elevation_loss` (m). The workout is a session:
//!   `activityId` -> its activity (`suunto/activity.rs`), on every reading.

use bridge_core::model::{Activity, Metric, Normalized, Reading};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

use crate::normalize::{
    NormalizeError, Record, array, get, id_string, interval, num, parse_rfc3339,
    seconds_between, shape, text,
};

const VENDOR: &str = "suunto";

/// What a Suunto webhook carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// `SUUNTO_247_SLEEP_CREATED`.
    Sleep,
    /// `SUUNTO_247_ACTIVITY_CREATED`.
    Activity,
    /// `SUUNTO_247_RECOVERY_CREATED`.
    Recovery,
    /// `WORKOUT_CREATED`.
    Workout,
    /// `ROUTE_CREATED`: a planned route, no measurement.
    Route,
}

impl Event {
    /// The event of a webhook's `type`.
    pub fn of(kind: &str) -> Result<Event, NormalizeError> {
        Ok(match kind {
            "SUUNTO_247_SLEEP_CREATED" => Event::Sleep,
            "SUUNTO_247_ACTIVITY_CREATED" => Event::Activity,
            "SUUNTO_247_RECOVERY_CREATED" => Event::Recovery,
            "WORKOUT_CREATED" => Event::Workout,
            "ROUTE_CREATED" => Event::Route,
            other => {
                return Err(NormalizeError::UnsupportedType {
                    vendor: VENDOR,
                    kind: other.chars().take(64).collect(),
                });
            }
        })
    }
}

/// Normalizes the inline samples of a 24/7 webhook body for our user `user_id`.
pub fn normalize_samples(
    user_id: &str,
    event: Event,
    body: &Value,
) -> Result<Normalized, NormalizeError> {
    let mut readings = Vec::new();
    for sample in array(body, &["samples"], "samples")? {
        match event {
            Event::Sleep => sleep(user_id, sample, &mut readings)?,
            Event::Activity => activity(user_id, sample, &mut readings)?,
            Event::Recovery => recovery(user_id, sample, &mut readings)?,
            Event::Workout | Event::Route => {}
        }
    }
    Ok(Normalized {
        readings,
        ..Normalized::default()
    })
}

fn instant_record(user_id: &str, kind: &str, sample: &Value) -> Result<(Record, DateTime<Utc>), NormalizeError> {
    let raw = text(sample, &["timestamp"]).ok_or_else(|| shape("sample without timestamp"))?;
    let at = parse_rfc3339("timestamp", raw)?.with_timezone(&Utc);
    // A 24/7 sample has no id of its own: the kind and instant are its identity, so a
    // re-sent sample replaces itself.
    let record = Record {
        user_id: user_id.to_owned(),
        vendor: VENDOR,
        source_record_id: format!("{kind}:{}", at.timestamp_millis()),
        source: None,
        ordering: None,
        activity: None,
    };
    Ok((record, at))
}

fn sleep(user_id: &str, sample: &Value, out: &mut Vec<Reading>) -> Result<(), NormalizeError> {
    let d = get(sample, &["entryData"]).ok_or_else(|| shape("sleep sample without entryData"))?;
    let start = text(d, &["BedtimeStart"]).ok_or_else(|| shape("sleep without BedtimeStart"))?;
    let end = text(d, &["BedtimeEnd"]).ok_or_else(|| shape("sleep without BedtimeEnd"))?;
    let (start, end) = interval(
        parse_rfc3339("entryData.BedtimeStart", start)?,
        parse_rfc3339("entryData.BedtimeEnd", end)?,
    )?;
    let id = id_string(d, &["SleepId"]).unwrap_or_else(|| start.timestamp_millis().to_string());
    let r = Record {
        user_id: user_id.to_owned(),
        vendor: VENDOR,
        source_record_id: format!("sleep:{id}"),
        source: None,
        ordering: None,
        activity: Some(Activity::Sleep),
    };
    let n = |k: &str| num(d, &[k]);
    let (deep, light, rem) = (n("DeepSleepDuration"), n("LightSleepDuration"), n("REMSleepDuration"));
    let total = match (deep, light, rem) {
        (Some(a), Some(b), Some(c)) => Some(a + b + c),
        _ => None,
    };
    let awake = match (n("WakeAfterSleepOnsetDuration"), n("WakeBeforeOffBedDuration")) {
        (Some(a), Some(b)) => Some(a + b),
        _ => None,
    };
    let nap = get(d, &["IsNap"]).and_then(Value::as_bool).unwrap_or(false);
    r.push(out, Metric::SleepTotal, total, start, end);
    r.push(out, Metric::SleepDeep, deep, start, end);
    r.push(out, Metric::SleepLight, light, start, end);
    r.push(out, Metric::SleepRem, rem, start, end);
    r.push(out, Metric::SleepAwake, awake, start, end);
    r.push(out, Metric::TimeInBed, Some(seconds_between(start, end)), start, end);
    r.push(out, Metric::SleepSession, Some(seconds_between(start, end)), start, end);
    r.push(out, Metric::SleepLatency, n("SleepOnsetLatencyDuration"), start, end);
    if !nap {
        r.push(out, Metric::RestingHeartRate, n("HRMin"), start, end);
    }
    r.push(out, Metric::HeartRate, n("HRAvg"), start, end);
    r.push(out, Metric::HrvRmssd, n("AvgHRV"), start, end);
    r.push(out, Metric::SleepScore, n("SleepQualityScore"), start, end);
    Ok(())
}

fn activity(user_id: &str, sample: &Value, out: &mut Vec<Reading>) -> Result<(), NormalizeError> {
    let Some(d) = get(sample, &["entryData"]) else {
        return Ok(());
    };
    let (r, at) = instant_record(user_id, "activity", sample)?;
    r.push(out, Metric::HeartRate, num(d, &["HR"]), at, at);
    let spo2 = num(d, &["SpO2"]).map(|v| if v <= 1.0 { v * 100.0 } else { v });
    r.push(out, Metric::OxygenSaturation, spo2, at, at);
    r.push(out, Metric::HrvRmssd, num(d, &["HRV"]), at, at);
    Ok(())
}

fn recovery(user_id: &str, sample: &Value, out: &mut Vec<Reading>) -> Result<(), NormalizeError> {
    let Some(d) = get(sample, &["entryData"]) else {
        return Ok(());
    };
    let (r, at) = instant_record(user_id, "recovery", sample)?;
    r.push(out, Metric::RecoveryScore, num(d, &["Balance"]).map(|b| b * 100.0), at, at);
    Ok(())
}

/// The workout's key, from a webhook's `workout` or a fetched document's `payload`.
pub fn workout_key(workout: &Value) -> Option<String> {
    id_string(workout, &["workoutKey"])
}

/// Whether a workout copy has what its readings need (a start and a duration).
pub fn workout_is_complete(workout: &Value) -> bool {
    num(workout, &["startTime"]).is_some() && num(workout, &["totalTime"]).is_some()
}

/// Normalizes one workout (the webhook's `workout` object or a fetched `payload`).
pub fn normalize_workout(user_id: &str, workout: &Value) -> Result<Normalized, NormalizeError> {
    let key = workout_key(workout).ok_or_else(|| shape("workout without workoutKey"))?;
    let start_ms = num(workout, &["startTime"]).ok_or_else(|| shape("workout without startTime"))?;
    let seconds = num(workout, &["totalTime"]).ok_or_else(|| shape("workout without totalTime"))?;
    if !(0.0..=1e9).contains(&seconds) || !(0.0..=1e14).contains(&start_ms) {
        return Err(shape("workout time out of range"));
    }
    let start = DateTime::<Utc>::from_timestamp_millis(start_ms as i64)
        .ok_or_else(|| shape("workout startTime out of range"))?;
    let end = start
        .checked_add_signed(TimeDelta::milliseconds((seconds * 1000.0) as i64))
        .ok_or_else(|| shape("workout end out of range"))?;
    let (sport, unmapped) = super::activity::activity(get(workout, &["activityId"]).and_then(Value::as_i64));
    let r = Record {
        user_id: user_id.to_owned(),
        vendor: VENDOR,
        source_record_id: format!("workout:{key}"),
        source: None,
        ordering: None,
        activity: Some(sport),
    };
    let mut readings = Vec::new();
    r.push(&mut readings, Metric::WorkoutDuration, Some(seconds), start, end);
    r.push(&mut readings, Metric::Distance, num(workout, &["totalDistance"]), start, end);
    r.push(&mut readings, Metric::StepCount, num(workout, &["stepCount"]), start, end);
    r.push(&mut readings, Metric::ActiveEnergy, num(workout, &["energyConsumption"]), start, end);
    r.push(&mut readings, Metric::HeartRate, num(workout, &["hrdata", "workoutAvgHR"]), start, end);
    r.push(&mut readings, Metric::HeartRateMax, num(workout, &["hrdata", "workoutMaxHR"]), start, end);
    r.push(&mut readings, Metric::Speed, num(workout, &["avgSpeed"]), start, end);
    r.push(&mut readings, Metric::ElevationGain, num(workout, &["totalAscent"]), start, end);
    r.push(&mut readings, Metric::ElevationLoss, num(workout, &["totalDescent"]), start, end);
    Ok(Normalized {
        readings,
        unmapped: unmapped.into_iter().collect(),
        ..Normalized::default()
    })
}
