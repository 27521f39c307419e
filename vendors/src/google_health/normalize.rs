//! Google Health API data points → canonical readings (google-spec.md §4).
//!
//! Pure: the fetched `dataPoints` of one data type in, readings out. int64 fields are JSON
//! strings [V `format: int64`]; every numeric field is read from a number or a numeric
//! string. A field that is absent is no reading, never a zero.

use bridge_core::model::{Activity, Metric, Reading, SleepStage};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::Value;

use super::VENDOR;
use crate::normalize::NormalizeError;
use crate::normalize::activity::by_words;
use crate::normalize::seconds_between;

fn bad(msg: impl Into<String>) -> NormalizeError {
    NormalizeError::UnsupportedShape(msg.into())
}

/// How a data type's points carry their time [V discovery `DataPoint` union].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `interval.startTime/endTime`.
    Interval,
    /// `sampleTime.physicalTime` (an instant).
    Sample,
    /// `date {year, month, day}`: a civil date, stored as `[D 00:00Z, D+1 00:00Z)`.
    Daily,
    /// Sessions (`sleep`, `exercise`): `interval`, identified by the point's `name`.
    Session,
}

/// One value of a data point: `path` under the type's union key, times `scale`.
struct Field {
    path: &'static [&'static str],
    metric: Metric,
    scale: f64,
    /// Google sends 0 for a statistic the device does not measure (SDNN on Pixel Watch
    /// [C open-wearables #1586]): a zero of such a field is absent, not a measurement.
    zero_is_absent: bool,
}

const fn f(path: &'static [&'static str], metric: Metric) -> Field {
    Field { path, metric, scale: 1.0, zero_is_absent: false }
}

/// A data type the bridge knows.
pub struct DataType {
    /// Kebab-case name as notifications and URLs spell it (`heart-rate`).
    pub name: &'static str,
    /// The `DataPoint` union key (`heartRate`).
    key: &'static str,
    /// Where its points carry their time.
    pub kind: Kind,
    fields: &'static [Field],
}

impl DataType {
    /// The canonical metrics this type's points can yield (for deletions).
    pub fn metrics(&self) -> Vec<Metric> {
        let mut out: Vec<Metric> = self.fields.iter().map(|f| f.metric).collect();
        if self.name == SLEEP {
            out.extend(SLEEP_METRICS.iter().map(|(_, m)| *m));
        }
        if self.name == SLEEP_TEMPERATURE {
            out.push(Metric::SkinTemperatureDeviation);
        }
        if self.name == EXERCISE {
            out.push(Metric::WorkoutDuration);
        }
        out.sort();
        out.dedup();
        out
    }

    /// The `filter` field prefix: kebab-case with `_` [V].
    pub fn filter_name(&self) -> String {
        self.name.replace('-', "_")
    }
}

const SLEEP: &str = "sleep";
const EXERCISE: &str = "exercise";
const SLEEP_TEMPERATURE: &str = "daily-sleep-temperature-derivations";
const MM_TO_M: f64 = 0.001;
const G_TO_KG: f64 = 0.001;

/// Sleep stage summaries (`summary.stagesSummary[].type`) with a canonical metric.
/// CLASSIC sleep's ASLEEP/RESTLESS have none [V `Sleep.type`].
const SLEEP_METRICS: &[(&str, Metric)] = &[
    ("DEEP", Metric::SleepDeep),
    ("LIGHT", Metric::SleepLight),
    ("REM", Metric::SleepRem),
    ("AWAKE", Metric::SleepAwake),
];

/// Every data type with a canonical metric (google-spec.md §4).
pub static DATA_TYPES: &[DataType] = &[
    DataType { name: "steps", key: "steps", kind: Kind::Interval, fields: &[f(&["count"], Metric::StepCount)] },
    DataType { name: "distance", key: "distance", kind: Kind::Interval, fields: &[Field { path: &["millimeters"], metric: Metric::Distance, scale: MM_TO_M, zero_is_absent: false }] },
    DataType { name: "active-energy-burned", key: "activeEnergyBurned", kind: Kind::Interval, fields: &[f(&["kcal"], Metric::ActiveEnergy)] },
    DataType { name: "basal-energy-burned", key: "basalEnergyBurned", kind: Kind::Interval, fields: &[f(&["kcal"], Metric::BasalEnergy)] },
    DataType { name: "heart-rate", key: "heartRate", kind: Kind::Sample, fields: &[f(&["beatsPerMinute"], Metric::HeartRate)] },
    DataType { name: "heart-rate-variability", key: "heartRateVariability", kind: Kind::Sample, fields: &[
        Field { path: &["rootMeanSquareOfSuccessiveDifferencesMilliseconds"], metric: Metric::HrvRmssd, scale: 1.0, zero_is_absent: true },
        Field { path: &["standardDeviationMilliseconds"], metric: Metric::HrvSdnn, scale: 1.0, zero_is_absent: true },
    ] },
    DataType { name: "oxygen-saturation", key: "oxygenSaturation", kind: Kind::Sample, fields: &[f(&["percentage"], Metric::OxygenSaturation)] },
    DataType { name: "weight", key: "weight", kind: Kind::Sample, fields: &[Field { path: &["weightGrams"], metric: Metric::Weight, scale: G_TO_KG, zero_is_absent: false }] },
    DataType { name: "run-vo2-max", key: "runVo2Max", kind: Kind::Sample, fields: &[f(&["runVo2Max"], Metric::Vo2Max)] },
    DataType { name: "vo2-max", key: "vo2Max", kind: Kind::Sample, fields: &[f(&["vo2Max"], Metric::Vo2Max)] },
    DataType { name: "respiratory-rate-sleep-summary", key: "respiratoryRateSleepSummary", kind: Kind::Sample, fields: &[f(&["fullSleepStats", "breathsPerMinute"], Metric::RespiratoryRate)] },
    DataType { name: "core-body-temperature", key: "coreBodyTemperature", kind: Kind::Sample, fields: &[f(&["temperatureCelsius"], Metric::BodyTemperature)] },
    DataType { name: "daily-resting-heart-rate", key: "dailyRestingHeartRate", kind: Kind::Daily, fields: &[f(&["beatsPerMinute"], Metric::RestingHeartRate)] },
    DataType { name: "daily-heart-rate-variability", key: "dailyHeartRateVariability", kind: Kind::Daily, fields: &[Field { path: &["averageHeartRateVariabilityMilliseconds"], metric: Metric::HrvRmssd, scale: 1.0, zero_is_absent: true }] },
    DataType { name: "daily-oxygen-saturation", key: "dailyOxygenSaturation", kind: Kind::Daily, fields: &[f(&["averagePercentage"], Metric::OxygenSaturation)] },
    DataType { name: "daily-respiratory-rate", key: "dailyRespiratoryRate", kind: Kind::Daily, fields: &[f(&["breathsPerMinute"], Metric::RespiratoryRate)] },
    DataType { name: "daily-vo2-max", key: "dailyVo2Max", kind: Kind::Daily, fields: &[f(&["vo2Max"], Metric::Vo2Max)] },
    DataType { name: SLEEP_TEMPERATURE, key: "dailySleepTemperatureDerivations", kind: Kind::Daily, fields: &[f(&["nightlyTemperatureCelsius"], Metric::SkinTemperature)] },
    DataType { name: SLEEP, key: "sleep", kind: Kind::Session, fields: &[
        Field { path: &["summary", "minutesAsleep"], metric: Metric::SleepTotal, scale: 60.0, zero_is_absent: false },
        Field { path: &["summary", "minutesInSleepPeriod"], metric: Metric::TimeInBed, scale: 60.0, zero_is_absent: false },
        Field { path: &["summary", "minutesToFallAsleep"], metric: Metric::SleepLatency, scale: 60.0, zero_is_absent: false },
    ] },
    DataType { name: EXERCISE, key: "exercise", kind: Kind::Session, fields: &[] },
];

/// Webhook-enabled or documented types that have no canonical metric: known, and
/// yield no readings (google-spec.md §4).
pub static WITHOUT_METRIC: &[&str] = &[
    "floors", "altitude", "body-fat", "height", "active-minutes", "active-zone-minutes",
    "activity-level", "blood-glucose", "calories-in-heart-rate-zone", "daily-heart-rate-zones",
    "hydration-log", "nutrition-log", "sedentary-period", "time-in-heart-rate-zone",
    "total-calories", "swim-lengths-data", "electrocardiogram", "irregular-rhythm-notification",
];

/// The data type named `name`: `Ok(Some)` with metrics, `Ok(None)` known without
/// metric, `Err` unknown.
pub fn data_type(name: &str) -> Result<Option<&'static DataType>, NormalizeError> {
    if let Some(t) = DATA_TYPES.iter().find(|t| t.name == name) {
        return Ok(Some(t));
    }
    if WITHOUT_METRIC.contains(&name) {
        return Ok(None);
    }
    Err(NormalizeError::UnsupportedType {
        vendor: VENDOR,
        kind: name.chars().take(64).collect(),
    })
}

/// A fetched list page (`{dataPoints, nextPageToken}`) of `data_type` as readings of
/// `user_id`; the fixture tests' entry point.
pub fn normalize_page(
    user_id: &str,
    data_type: &str,
    page: &Value,
) -> Result<bridge_core::model::Normalized, NormalizeError> {
    let Some(t) = self::data_type(data_type)? else {
        return Ok(Default::default());
    };
    let points = page
        .get("dataPoints")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    Ok(bridge_core::model::Normalized {
        readings: readings(t, points, user_id)?,
        ..Default::default()
    })
}

/// The readings of fetched `points` of type `t` for `user_id`. A point without this
/// type's union key, or without a usable time, is bad data (the API answered for the
/// type we asked); a point without a value yields nothing.
pub fn readings(t: &DataType, points: &[Value], user_id: &str) -> Result<Vec<Reading>, NormalizeError> {
    let mut out = Vec::new();
    for point in points {
        let body = point
            .get(t.key)
            .filter(|b| b.is_object())
            .ok_or_else(|| bad(format!("data point without `{}`", t.key)))?;
        let (start, end) = times(t, body)?;
        let source = source(point.get("dataSource"));
        let record = match point.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            Some(name) => name.to_owned(),
            None => format!("{}/{}", t.name, start.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        };
        let activity = match t.name {
            SLEEP => Some(Activity::Sleep),
            // The exercise type's field name and values are not in the discovery document
            // we read [unverified]: `exerciseType` is read liberally, by its words.
            EXERCISE => Some(
                body.get("exerciseType")
                    .and_then(Value::as_str)
                    .and_then(by_words)
                    .unwrap_or(Activity::Other),
            ),
            _ => None,
        };
        let reading = |metric: Metric, value: f64, start, end| Reading {
            user_id: user_id.to_owned(),
            vendor: VENDOR.to_owned(),
            metric,
            value,
            start_time: start,
            end_time: end,
            source_record_id: record.clone(),
            source: source.clone(),
            ordering: None,
            activity,
        };
        if t.name == SLEEP {
            out.push(reading(Metric::SleepSession, seconds_between(start, end), start, end));
            out.extend(stage_intervals(body)?.into_iter().map(|(stage, from, to)| {
                reading(Metric::SleepStage, stage.code(), from, to)
            }));
        }
        let mut push = |metric: Metric, value: f64| {
            out.push(Reading {
                user_id: user_id.to_owned(),
                vendor: VENDOR.to_owned(),
                metric,
                value,
                start_time: start,
                end_time: end,
                source_record_id: record.clone(),
                source: source.clone(),
                ordering: None,
                activity,
            });
        };
        for field in t.fields {
            if let Some(v) = number_at(body, field.path)? {
                if field.zero_is_absent && v == 0.0 {
                    continue;
                }
                push(field.metric, v * field.scale);
            }
        }
        if t.name == SLEEP {
            for (stage, minutes) in stage_minutes(body)? {
                if let Some((_, metric)) = SLEEP_METRICS.iter().find(|(s, _)| *s == stage) {
                    push(*metric, minutes * 60.0);
                }
            }
        }
        if t.name == EXERCISE
            && let Some(secs) = body.get("activeDuration").map(duration_secs).transpose()?
        {
            push(Metric::WorkoutDuration, secs);
        }
        if t.name == SLEEP_TEMPERATURE
            && let (Some(nightly), Some(baseline)) = (
                number_at(body, &["nightlyTemperatureCelsius"])?,
                number_at(body, &["baselineTemperatureCelsius"])?,
            )
        {
            push(Metric::SkinTemperatureDeviation, nightly - baseline);
        }
    }
    Ok(out)
}

fn times(t: &DataType, body: &Value) -> Result<(DateTime<Utc>, DateTime<Utc>), NormalizeError> {
    match t.kind {
        Kind::Interval | Kind::Session => {
            let interval = body.get("interval").ok_or_else(|| bad("data point without `interval`"))?;
            let start = rfc3339(interval.get("startTime"), "interval.startTime")?;
            let end = rfc3339(interval.get("endTime"), "interval.endTime")?;
            if end < start {
                return Err(bad("interval ends before it starts"));
            }
            Ok((start, end))
        }
        Kind::Sample => {
            let at = rfc3339(body.get("sampleTime").and_then(|s| s.get("physicalTime")), "sampleTime.physicalTime")?;
            Ok((at, at))
        }
        Kind::Daily => {
            let day = date(body.get("date"))?;
            let start = day.and_hms_opt(0, 0, 0).map(|d| d.and_utc()).ok_or_else(|| bad("bad date"))?;
            Ok((start, start + Duration::days(1)))
        }
    }
}

/// Device name, else platform, else the uploading app [V `DataSource`]; reconciled
/// points carry none [C].
fn source(data_source: Option<&Value>) -> Option<String> {
    let ds = data_source?;
    let text = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    text(ds.get("device").and_then(|d| d.get("displayName")))
        .or_else(|| text(ds.get("platform")))
        .or_else(|| text(ds.get("application").and_then(|a| a.get("packageName"))))
}

/// A number or a numeric string (int64 is a string on the wire [V]); absent or null is
/// `None`; anything else (or a non-finite value) is bad data.
fn number(v: &Value, what: &str) -> Result<Option<f64>, NormalizeError> {
    let n = match v {
        Value::Null => return Ok(None),
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n.is_finite() => Ok(Some(n)),
        _ => Err(bad(format!("`{what}` is not a number"))),
    }
}

fn number_at(body: &Value, path: &[&str]) -> Result<Option<f64>, NormalizeError> {
    let mut v = body;
    for key in path {
        match v.get(key) {
            Some(next) => v = next,
            None => return Ok(None),
        }
    }
    number(v, &path.join("."))
}

fn stage_minutes(body: &Value) -> Result<Vec<(String, f64)>, NormalizeError> {
    let Some(list) = body.get("summary").and_then(|s| s.get("stagesSummary")) else {
        return Ok(Vec::new());
    };
    let list = list.as_array().ok_or_else(|| bad("`summary.stagesSummary` is not a list"))?;
    let mut out = Vec::new();
    for stage in list {
        let kind = stage.get("type").and_then(Value::as_str).unwrap_or_default();
        if let Some(m) = stage.get("minutes").map(|m| number(m, "stagesSummary.minutes")).transpose()?.flatten() {
            out.push((kind.to_owned(), m));
        }
    }
    Ok(out)
}

/// One stage held from the first instant to the second.
type StageBout = (SleepStage, DateTime<Utc>, DateTime<Utc>);

/// `stages[]` (`{type, startTime, endTime}`) as sleep-stage intervals. CLASSIC sleep's
/// ASLEEP is sleep without staging; RESTLESS and unknown types give none [V `Sleep.type`].
fn stage_intervals(body: &Value) -> Result<Vec<StageBout>, NormalizeError> {
    let Some(list) = body.get("stages") else {
        return Ok(Vec::new());
    };
    let list = list.as_array().ok_or_else(|| bad("`stages` is not a list"))?;
    let mut out = Vec::new();
    for stage in list {
        let code = match stage.get("type").and_then(Value::as_str).unwrap_or_default() {
            "AWAKE" => SleepStage::Awake,
            "LIGHT" => SleepStage::Light,
            "DEEP" => SleepStage::Deep,
            "REM" => SleepStage::Rem,
            "ASLEEP" => SleepStage::Asleep,
            _ => continue,
        };
        let from = rfc3339(stage.get("startTime"), "stages.startTime")?;
        let to = rfc3339(stage.get("endTime"), "stages.endTime")?;
        if to < from {
            return Err(bad("sleep stage ends before it starts"));
        }
        out.push((code, from, to));
    }
    Ok(out)
}

/// A protobuf JSON duration, `"3600s"` or `"1.5s"` [V `google-duration`].
fn duration_secs(v: &Value) -> Result<f64, NormalizeError> {
    let s = v.as_str().ok_or_else(|| bad("duration is not a string"))?;
    s.trim()
        .strip_suffix('s')
        .and_then(|n| n.parse::<f64>().ok())
        .filter(|n| n.is_finite() && *n >= 0.0)
        .ok_or_else(|| bad(format!("`{s}` is not a duration")))
}

fn rfc3339(v: Option<&Value>, what: &str) -> Result<DateTime<Utc>, NormalizeError> {
    v.and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s.trim()).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| bad(format!("`{what}` is not an RFC 3339 time")))
}

fn date(v: Option<&Value>) -> Result<NaiveDate, NormalizeError> {
    let part = |k: &str| v.and_then(|d| d.get(k)).and_then(Value::as_i64);
    match (part("year"), part("month"), part("day")) {
        (Some(y), Some(m), Some(d)) => i32::try_from(y)
            .ok()
            .zip(u32::try_from(m).ok())
            .zip(u32::try_from(d).ok())
            .and_then(|((y, m), d)| NaiveDate::from_ymd_opt(y, m, d))
            .ok_or_else(|| bad("`date` is not a calendar date")),
        _ => Err(bad("data point without a full `date`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/tests/fixtures/google_health/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect("fixture JSON")
    }

    fn points(name: &str) -> Vec<Value> {
        fixture(name)["dataPoints"].as_array().cloned().unwrap_or_default()
    }

    fn rows(t: &str, file: &str) -> Vec<(String, f64, String, String, String, Option<String>)> {
        let t = data_type(t).unwrap().unwrap();
        let mut out: Vec<_> = readings(t, &points(file), "u-1")
            .unwrap()
            .into_iter()
            .map(|r| {
                assert_eq!(r.user_id, "u-1");
                assert_eq!(r.vendor, VENDOR);
                (
                    r.metric.as_str().to_owned(),
                    r.value,
                    r.start_time.to_rfc3339(),
                    r.end_time.to_rfc3339(),
                    r.source_record_id,
                    r.source,
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0).then(a.2.cmp(&b.2)));
        out
    }

    fn s(x: &str) -> String {
        x.to_owned()
    }

    #[test]
    fn steps_int64_strings_and_numbers() {
        let mut got = rows("steps", "list_steps_page1.json");
        got.extend(rows("steps", "list_steps_page2.json"));
        got.sort_by(|a, b| a.2.cmp(&b.2));
        let watch = Some(s("Pixel Watch 3"));
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], (s("step_count"), 40.0, s("2025-01-01T07:01:00+00:00"), s("2025-01-01T07:02:00+00:00"), s("steps/2025-01-01T07:01:00Z"), watch.clone()));
        assert_eq!(got[1].1, 87.0);
        assert_eq!(got[2], (s("step_count"), 112.0, s("2025-01-01T07:31:00+00:00"), s("2025-01-01T07:32:00+00:00"), s("steps/2025-01-01T07:31:00Z"), watch));
    }

    #[test]
    fn heart_rate_samples_are_instants() {
        let got = rows("heart-rate", "list_heart_rate.json");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], (s("heart_rate"), 58.0, s("2025-01-01T03:09:00+00:00"), s("2025-01-01T03:09:00+00:00"), s("heart-rate/2025-01-01T03:09:00Z"), Some(s("Pixel Watch 3"))));
        assert_eq!(got[1].1, 61.0);
    }

    #[test]
    fn hrv_zero_sdnn_is_absent_not_zero() {
        let got = rows("heart-rate-variability", "list_hrv.json");
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!((got[0].0.as_str(), got[0].1), ("hrv_rmssd", 38.5));
    }

    #[test]
    fn daily_resting_heart_rate_is_the_civil_day() {
        let got = rows("daily-resting-heart-rate", "list_daily_resting_heart_rate.json");
        assert_eq!(got, vec![(s("resting_heart_rate"), 52.0, s("2025-01-01T00:00:00+00:00"), s("2025-01-02T00:00:00+00:00"), s("daily-resting-heart-rate/2025-01-01T00:00:00Z"), Some(s("FITBIT")))]);
    }

    #[test]
    fn weight_grams_to_kilograms_source_is_the_app() {
        let got = rows("weight", "list_weight.json");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "weight");
        assert!((got[0].1 - 72.45).abs() < 1e-9);
        // No device: the platform names the source.
        assert_eq!(got[0].5, Some(s("HEALTH_CONNECT")));
    }

    #[test]
    fn sleep_summary_and_stages_in_seconds() {
        let got = rows("sleep", "list_sleep.json");
        let name = s("users/ghu-1a2b3c/dataTypes/sleep/dataPoints/a1b2c3d4-e5f6-7890-1234-567890abcdef");
        let by: std::collections::BTreeMap<_, _> = got.iter().map(|r| (r.0.as_str(), r.1)).collect();
        assert_eq!(by.get("sleep_total"), Some(&(431.0 * 60.0)));
        assert_eq!(by.get("time_in_bed"), Some(&(470.0 * 60.0)));
        assert_eq!(by.get("sleep_deep"), Some(&(82.0 * 60.0)));
        assert_eq!(by.get("sleep_light"), Some(&(251.0 * 60.0)));
        assert_eq!(by.get("sleep_rem"), Some(&(98.0 * 60.0)));
        assert_eq!(by.get("sleep_awake"), Some(&(39.0 * 60.0)));
        assert_eq!(got.len(), 9, "6 summaries + session, latency, one stage");
        assert_eq!(by.get("sleep_stage"), Some(&2.0));
        for r in &got {
            // Summaries span the session; the stage has its own interval.
            let stage = r.0 == "sleep_stage";
            assert_eq!(r.2, if stage { "2024-12-31T22:20:00+00:00" } else { "2024-12-31T22:12:00+00:00" });
            assert_eq!(r.3, if stage { "2024-12-31T22:48:00+00:00" } else { "2025-01-01T06:02:00+00:00" });
            assert_eq!(r.4, name);
        }
    }

    #[test]
    fn known_without_metric_and_unknown_types() {
        assert!(matches!(data_type("floors"), Ok(None)));
        assert!(data_type("made-up").is_err());
        for t in DATA_TYPES {
            assert!(!t.metrics().is_empty(), "{}", t.name);
            assert!(!WITHOUT_METRIC.contains(&t.name), "{}", t.name);
        }
    }

    #[test]
    fn hostile_values_are_bad_data_not_panics() {
        let t = data_type("steps").unwrap().unwrap();
        let point = |v: Value| vec![serde_json::json!({"steps": {"count": v, "interval": {"startTime": "2025-01-01T00:00:00Z", "endTime": "2025-01-01T00:01:00Z"}}})];
        for bad in [serde_json::json!("many"), serde_json::json!([1]), serde_json::json!("NaN"), serde_json::json!("inf")] {
            assert!(readings(t, &point(bad.clone()), "u").is_err(), "{bad}");
        }
        assert_eq!(readings(t, &point(Value::Null), "u").unwrap(), vec![]);
        assert!(readings(t, &[serde_json::json!({"heartRate": {}})], "u").is_err());
        assert!(readings(t, &[serde_json::json!({"steps": {"count": "1", "interval": {"startTime": "2025-01-01T01:00:00Z", "endTime": "2025-01-01T00:00:00Z"}}})], "u").is_err());
        let daily = data_type("daily-resting-heart-rate").unwrap().unwrap();
        assert!(readings(daily, &[serde_json::json!({"dailyRestingHeartRate": {"beatsPerMinute": "50", "date": {"year": 2025, "month": 2, "day": 30}}})], "u").is_err());
        let ex = data_type("exercise").unwrap().unwrap();
        let workout = serde_json::json!({"name": "users/u/dataTypes/exercise/dataPoints/1", "exercise": {"activeDuration": "1800.5s", "interval": {"startTime": "2025-01-01T10:00:00Z", "endTime": "2025-01-01T10:40:00Z"}}});
        let got = readings(ex, &[workout], "u").unwrap();
        assert_eq!((got[0].metric, got[0].value), (Metric::WorkoutDuration, 1800.5));
        assert!(readings(ex, &[serde_json::json!({"exercise": {"activeDuration": "-5s", "interval": {"startTime": "2025-01-01T10:00:00Z", "endTime": "2025-01-01T10:40:00Z"}}})], "u").is_err());
    }
}
