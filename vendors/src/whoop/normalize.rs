//! WHOOP API v2 documents (vendors.md §2.4), as fetched after a webhook notification.
//!
//! A document yields readings only when `score_state == "SCORED"`; otherwise the result
//! is empty and [`score_state`] tells the fetcher whether to come back later.
//! Ids may be UUID strings (v2) or integers (v1, cycles); both become strings.

use serde_json::Value;

use crate::normalize::units::kj_to_kcal;
use super::sports;
use crate::normalize::{
    NormalizeError, Record, clip, get, id_string, interval, num, required_rfc3339,
    seconds_between, shape, text,
};
use bridge_core::model::{Activity, Metric, Normalized, Reading};

/// Vendor route name.
const VENDOR: &str = "whoop";

/// Which WHOOP resource a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WhoopDocKind {
    /// `GET /v2/cycle/{cycleId}/recovery`.
    Recovery,
    /// `GET /v2/activity/sleep/{sleepId}`.
    Sleep,
    /// `GET /v2/cycle/{cycleId}` (physiological day).
    Cycle,
    /// `GET /v2/activity/workout/{workoutId}`.
    Workout,
}

/// WHOOP's `score_state`: whether the document's `score` exists yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScoreState {
    /// `SCORED`: `score` is present and normalized.
    Scored,
    /// `PENDING_SCORE`: WHOOP is still scoring; re-fetch later.
    Pending,
    /// `UNSCORABLE`: WHOOP will never score it; do not re-fetch.
    Unscorable,
    /// No `score_state`, or a value this code does not know: nothing is normalized, and
    /// the fetcher should treat it as an anomaly rather than retry forever.
    Missing,
}

/// The document's score state.
pub fn score_state(doc: &Value) -> ScoreState {
    match doc.get("score_state").and_then(Value::as_str) {
        Some("SCORED") => ScoreState::Scored,
        Some("PENDING_SCORE") => ScoreState::Pending,
        Some("UNSCORABLE") => ScoreState::Unscorable,
        _ => ScoreState::Missing,
    }
}

/// Normalizes one fetched WHOOP v2 document of `kind` for our `user_id`.
///
/// - Any `score_state` other than `SCORED` → `Ok` with no readings (see [`score_state`]).
/// - Recovery: `source_record_id = "recovery:<cycle_id>"`. A recovery has no interval of
///   its own, so its readings are instants at `created_at`. `created_at` is fixed when
///   WHOOP first creates the recovery and does not move when it is re-scored (that is
///   `updated_at`), so every re-fetch lands on the same row. The sleep's interval would be
///   more descriptive but is not in the document, and a pure normalizer does not fetch it.
///   `recovery_score`, `resting_heart_rate`, `hrv_rmssd_milli` → `hrv_rmssd` (ms, despite
///   the name), `spo2_percentage` → `oxygen_saturation`, `skin_temp_celsius` →
///   `skin_temperature` (absolute °C, not a deviation).
/// - Sleep: a session (`activity` = `sleep` on every reading), interval `start..end`,
///   `source_record_id` = sleep id; `sleep_session` = the interval's length. `stage_summary`
///   ms ÷ 1000: light → `sleep_light`, slow wave → `sleep_deep`, REM → `sleep_rem`, awake →
///   `sleep_awake`, no data → `sleep_no_data`, in bed → `time_in_bed`, and `sleep_total` =
///   light + deep + REM (only when all three are present); `disturbance_count` →
///   `sleep_disturbances`, `sleep_cycle_count` → `sleep_cycles`. `respiratory_rate`,
///   `sleep_efficiency_percentage` → `sleep_efficiency`, `sleep_performance_percentage` →
///   `sleep_score`, `sleep_consistency_percentage` → `sleep_consistency`, and
///   `sleep_needed` (the sum of its four terms, see `sleep_need`) → `sleep_need`. WHOOP
///   gives no hypnogram, so there are no `sleep_stage` readings. Naps are their own sleep
///   with their own id and interval; the `nap` flag changes nothing else.
/// - Cycle: interval `start..end`, `source_record_id` = cycle id. `strain`, `kilojoule` ÷
///   4.184 → `total_energy`, `average_heart_rate` → `heart_rate`, `max_heart_rate` →
///   `heart_rate_max`. A cycle without `end` is still running: nothing is emitted, because
///   its strain keeps growing and an interval ending "now" would need a clock and give a
///   row the final one could never replace.
/// - Workout: a session, interval `start..end`, `source_record_id` = workout id, `activity`
///   from `sport_name` (v2) or `sport_id` (v1) through the table in [`sports`] (unknown →
///   `other` and `activity:<sport_name>` in `unmapped`). The interval's length →
///   `workout_duration`; `strain`, `kilojoule` ÷ 4.184 → `active_energy`, `distance_meter`
///   → `distance`, `altitude_gain_meter` → `elevation_gain`, `average_heart_rate` →
///   `heart_rate`, `max_heart_rate` → `heart_rate_max`, `zone_durations.zone_*_milli` ÷
///   1000 → `heart_rate_zone_0` … `heart_rate_zone_5` (a zone's 0 ms is a measured 0 s).
///   `altitude_change_meter` (net change) and `percent_recorded` have no metric.
pub fn normalize_document(
    user_id: &str,
    kind: WhoopDocKind,
    doc: &Value,
) -> Result<Normalized, NormalizeError> {
    if user_id.trim().is_empty() {
        return Err(NormalizeError::MissingUserId(
            "whoop document without a user id",
        ));
    }
    if !doc.is_object() {
        return Err(shape("whoop document is not an object"));
    }
    if score_state(doc) != ScoreState::Scored {
        return Ok(Normalized::default());
    }
    let mut out = Normalized::default();
    match kind {
        WhoopDocKind::Recovery => recovery(user_id, doc, &mut out.readings)?,
        WhoopDocKind::Sleep => sleep(user_id, doc, &mut out.readings)?,
        WhoopDocKind::Cycle => cycle(user_id, doc, &mut out.readings)?,
        WhoopDocKind::Workout => workout(user_id, doc, &mut out.readings, &mut out.unmapped)?,
    }
    Ok(out)
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

fn doc_id(doc: &Value, what: &str) -> Result<String, NormalizeError> {
    id_string(doc, &["id"]).ok_or_else(|| shape(format!("whoop {what} without `id`")))
}

fn recovery(user_id: &str, doc: &Value, out: &mut Vec<Reading>) -> Result<(), NormalizeError> {
    let cycle =
        id_string(doc, &["cycle_id"]).ok_or_else(|| shape("whoop recovery without `cycle_id`"))?;
    let (at, _) = required_rfc3339(doc, &["created_at"], "created_at")?;
    let (at, _) = interval(at, at)?;
    let rec = record(user_id, format!("recovery:{cycle}"));
    let s = |k: &str| num(doc, &["score", k]);
    rec.push(out, Metric::RecoveryScore, s("recovery_score"), at, at);
    rec.push(
        out,
        Metric::RestingHeartRate,
        s("resting_heart_rate"),
        at,
        at,
    );
    rec.push(out, Metric::HrvRmssd, s("hrv_rmssd_milli"), at, at);
    rec.push(out, Metric::OxygenSaturation, s("spo2_percentage"), at, at);
    rec.push(out, Metric::SkinTemperature, s("skin_temp_celsius"), at, at);
    Ok(())
}

fn sleep(user_id: &str, doc: &Value, out: &mut Vec<Reading>) -> Result<(), NormalizeError> {
    let mut rec = record(user_id, doc_id(doc, "sleep")?);
    rec.activity = Some(Activity::Sleep);
    let (start, _) = required_rfc3339(doc, &["start"], "start")?;
    let (end, _) = required_rfc3339(doc, &["end"], "end")?;
    let (start, end) = interval(start, end)?;
    let session = Some(seconds_between(start, end));
    rec.push(out, Metric::SleepSession, session, start, end);
    let stage = |k: &str| num(doc, &["score", "stage_summary", k]).map(|ms| ms / 1000.0);
    let (light, deep, rem) = (
        stage("total_light_sleep_time_milli"),
        stage("total_slow_wave_sleep_time_milli"),
        stage("total_rem_sleep_time_milli"),
    );
    let total = match (light, deep, rem) {
        (Some(l), Some(d), Some(r)) => Some(l + d + r),
        _ => None,
    };
    let push = |out: &mut Vec<Reading>, metric, v| rec.push(out, metric, v, start, end);
    push(out, Metric::SleepTotal, total);
    push(out, Metric::SleepLight, light);
    push(out, Metric::SleepDeep, deep);
    push(out, Metric::SleepRem, rem);
    push(out, Metric::SleepAwake, stage("total_awake_time_milli"));
    push(out, Metric::TimeInBed, stage("total_in_bed_time_milli"));
    let s = |k: &str| num(doc, &["score", k]);
    push(out, Metric::RespiratoryRate, s("respiratory_rate"));
    push(
        out,
        Metric::SleepEfficiency,
        s("sleep_efficiency_percentage"),
    );
    push(out, Metric::SleepScore, s("sleep_performance_percentage"));
    push(
        out,
        Metric::SleepConsistency,
        s("sleep_consistency_percentage"),
    );
    push(out, Metric::SleepNoData, stage("total_no_data_time_milli"));
    let count = |k: &str| num(doc, &["score", "stage_summary", k]);
    push(out, Metric::SleepDisturbances, count("disturbance_count"));
    push(out, Metric::SleepCycles, count("sleep_cycle_count"));
    push(out, Metric::SleepNeed, sleep_need(doc));
    Ok(())
}

/// WHOOP's sleep need for the night: `baseline + debt + recent strain + recent nap` (the
/// nap term is negative: a nap lowers the need), in seconds; the total the WHOOP app
/// shows as "Sleep Needed". Any term missing → no reading: a partial sum would be a
/// number WHOOP never stated.
fn sleep_need(doc: &Value) -> Option<f64> {
    let term = |k: &str| num(doc, &["score", "sleep_needed", k]);
    let total = term("baseline_milli")?
        + term("need_from_sleep_debt_milli")?
        + term("need_from_recent_strain_milli")?
        + term("need_from_recent_nap_milli")?;
    Some(total / 1000.0)
}

fn cycle(user_id: &str, doc: &Value, out: &mut Vec<Reading>) -> Result<(), NormalizeError> {
    let rec = record(user_id, doc_id(doc, "cycle")?);
    if text(doc, &["end"]).is_none() {
        return Ok(());
    }
    let (start, _) = required_rfc3339(doc, &["start"], "start")?;
    let (end, _) = required_rfc3339(doc, &["end"], "end")?;
    let (start, end) = interval(start, end)?;
    let s = |k: &str| num(doc, &["score", k]);
    rec.push(out, Metric::Strain, s("strain"), start, end);
    rec.push(
        out,
        Metric::TotalEnergy,
        s("kilojoule").map(kj_to_kcal),
        start,
        end,
    );
    rec.push(out, Metric::HeartRate, s("average_heart_rate"), start, end);
    rec.push(out, Metric::HeartRateMax, s("max_heart_rate"), start, end);
    Ok(())
}

/// The workout's activity: `sport_name` (v2), else the deprecated `sport_id` (v1), else
/// `other`. An unknown sport is `other` plus its name in `unmapped`.
fn sport(doc: &Value, unmapped: &mut Vec<String>) -> Activity {
    if let Some(name) = text(doc, &["sport_name"]) {
        return sports::by_name(name).unwrap_or_else(|| {
            unmapped.push(format!("activity:{}", clip(name.trim())));
            Activity::Other
        });
    }
    match get(doc, &["sport_id"]).and_then(Value::as_i64) {
        Some(id) => sports::by_id(id).unwrap_or_else(|| {
            unmapped.push(format!("activity:sport_id:{id}"));
            Activity::Other
        }),
        None => Activity::Other,
    }
}

fn workout(
    user_id: &str,
    doc: &Value,
    out: &mut Vec<Reading>,
    unmapped: &mut Vec<String>,
) -> Result<(), NormalizeError> {
    let mut rec = record(user_id, doc_id(doc, "workout")?);
    rec.activity = Some(sport(doc, unmapped));
    let (start, _) = required_rfc3339(doc, &["start"], "start")?;
    let (end, _) = required_rfc3339(doc, &["end"], "end")?;
    let (start, end) = interval(start, end)?;
    let duration = Some(seconds_between(start, end));
    rec.push(out, Metric::WorkoutDuration, duration, start, end);
    let s = |k: &str| num(doc, &["score", k]);
    rec.push(out, Metric::Strain, s("strain"), start, end);
    rec.push(
        out,
        Metric::ActiveEnergy,
        s("kilojoule").map(kj_to_kcal),
        start,
        end,
    );
    rec.push(out, Metric::Distance, s("distance_meter"), start, end);
    rec.push(out, Metric::HeartRate, s("average_heart_rate"), start, end);
    rec.push(out, Metric::HeartRateMax, s("max_heart_rate"), start, end);
    rec.push(
        out,
        Metric::ElevationGain,
        s("altitude_gain_meter"),
        start,
        end,
    );
    // WHOOP's zones are by default bands of % of maximum heart rate (zone 1 = 50–60 %,
    // …, zone 5 = 90–100 %, zone 0 below 50 %), the catalog's definition [C: WHOOP's app
    // and support text; the API does not say, and a user can switch the app to
    // heart-rate-reserve zones, which the document does not reveal].
    for (key, metric) in [
        ("zone_zero_milli", Metric::HeartRateZone0),
        ("zone_one_milli", Metric::HeartRateZone1),
        ("zone_two_milli", Metric::HeartRateZone2),
        ("zone_three_milli", Metric::HeartRateZone3),
        ("zone_four_milli", Metric::HeartRateZone4),
        ("zone_five_milli", Metric::HeartRateZone5),
    ] {
        let ms = num(doc, &["score", "zone_durations", key]);
        rec.push(out, metric, ms.map(|ms| ms / 1000.0), start, end);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn score_states() {
        let state = |v: Value| score_state(&json!({ "score_state": v }));
        assert_eq!(state(json!("SCORED")), ScoreState::Scored);
        assert_eq!(state(json!("PENDING_SCORE")), ScoreState::Pending);
        assert_eq!(state(json!("UNSCORABLE")), ScoreState::Unscorable);
        assert_eq!(state(json!("scored")), ScoreState::Missing);
        assert_eq!(state(json!(null)), ScoreState::Missing);
        assert_eq!(score_state(&json!({})), ScoreState::Missing);
    }

    #[test]
    fn sleep_need_is_the_whole_sum_or_nothing() {
        let need = |terms: Value| sleep_need(&json!({ "score": { "sleep_needed": terms } }));
        let all = json!({"baseline_milli": 28_800_000, "need_from_sleep_debt_milli": 600_000,
            "need_from_recent_strain_milli": 300_000, "need_from_recent_nap_milli": -900_000});
        assert_eq!(need(all.clone()), Some(28_800.0));
        let mut partial = all;
        partial["need_from_recent_nap_milli"] = Value::Null;
        assert_eq!(need(partial), None, "a missing term is not a zero term");
        assert_eq!(sleep_need(&json!({ "score": {} })), None);
    }

    #[test]
    fn hostile_documents_are_errors_or_empty() {
        let kinds = [
            WhoopDocKind::Recovery,
            WhoopDocKind::Sleep,
            WhoopDocKind::Cycle,
            WhoopDocKind::Workout,
        ];
        let scored_without_fields = json!({ "score_state": "SCORED" });
        let backwards = json!({ "id": "x", "cycle_id": 1, "score_state": "SCORED",
            "created_at": "2025-01-01T00:00:00Z",
            "start": "2025-01-02T00:00:00Z", "end": "2025-01-01T00:00:00Z" });
        for kind in kinds {
            assert!(normalize_document("u", kind, &json!([])).is_err());
            assert!(normalize_document("", kind, &json!({})).is_err());
            assert!(normalize_document("u", kind, &scored_without_fields).is_err());
            if kind != WhoopDocKind::Recovery {
                assert!(normalize_document("u", kind, &backwards).is_err());
            }
        }
    }
}
