//! The canonical data contract: one record per measure, canonical units.
//!
//! Every metric has exactly one unit ([`Metric::unit`]); normalizers convert into it.
//! Vendor scores share the unit `score` and are never comparable across vendors.

use chrono::{DateTime, Utc};

/// A canonical metric. The string forms are the `readings.metric` values agents query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// Heart rate, beats per minute.
    HeartRate,
    /// Resting heart rate, beats per minute.
    RestingHeartRate,
    /// Heart rate variability as RMSSD, milliseconds. Never converted to or from SDNN.
    HrvRmssd,
    /// Heart rate variability as SDNN, milliseconds. Never converted to or from RMSSD.
    HrvSdnn,
    /// Respiratory rate, breaths per minute.
    RespiratoryRate,
    /// Blood oxygen saturation, percent 0–100.
    OxygenSaturation,
    /// Skin temperature relative to the vendor's personal baseline, degrees Celsius.
    SkinTemperatureDeviation,
    /// Absolute skin temperature, degrees Celsius.
    SkinTemperature,
    /// Absolute body temperature, degrees Celsius.
    BodyTemperature,
    /// Steps.
    StepCount,
    /// Active energy burned, kilocalories.
    ActiveEnergy,
    /// Total energy burned (active + basal), kilocalories.
    TotalEnergy,
    /// Basal energy burned, kilocalories.
    BasalEnergy,
    /// Distance, metres.
    Distance,
    /// Total sleep time, seconds.
    SleepTotal,
    /// Deep (N3 / slow-wave) sleep, seconds.
    SleepDeep,
    /// Light (N1+N2, Apple "core") sleep, seconds.
    SleepLight,
    /// REM sleep, seconds.
    SleepRem,
    /// Awake time within the sleep period, seconds.
    SleepAwake,
    /// Time in bed, seconds.
    TimeInBed,
    /// Sleep efficiency, percent 0–100.
    SleepEfficiency,
    /// Body mass, kilograms.
    Weight,
    /// VO2 max, mL/kg/min.
    Vo2Max,
    /// Workout duration, seconds (one per workout).
    WorkoutDuration,
    /// Vendor readiness score (Oura, Terra).
    ReadinessScore,
    /// Vendor recovery score (WHOOP, Terra).
    RecoveryScore,
    /// Vendor sleep score.
    SleepScore,
    /// Vendor activity score (Oura, Terra).
    ActivityScore,
    /// Vendor strain (WHOOP 0–21, Terra).
    Strain,
}

impl Metric {
    /// Every metric, for documentation and tests.
    pub const ALL: [Metric; 29] = [
        Metric::HeartRate,
        Metric::RestingHeartRate,
        Metric::HrvRmssd,
        Metric::HrvSdnn,
        Metric::RespiratoryRate,
        Metric::OxygenSaturation,
        Metric::SkinTemperatureDeviation,
        Metric::SkinTemperature,
        Metric::BodyTemperature,
        Metric::StepCount,
        Metric::ActiveEnergy,
        Metric::TotalEnergy,
        Metric::BasalEnergy,
        Metric::Distance,
        Metric::SleepTotal,
        Metric::SleepDeep,
        Metric::SleepLight,
        Metric::SleepRem,
        Metric::SleepAwake,
        Metric::TimeInBed,
        Metric::SleepEfficiency,
        Metric::Weight,
        Metric::Vo2Max,
        Metric::WorkoutDuration,
        Metric::ReadinessScore,
        Metric::RecoveryScore,
        Metric::SleepScore,
        Metric::ActivityScore,
        Metric::Strain,
    ];

    /// The name stored in `readings.metric`.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::HeartRate => "heart_rate",
            Metric::RestingHeartRate => "resting_heart_rate",
            Metric::HrvRmssd => "hrv_rmssd",
            Metric::HrvSdnn => "hrv_sdnn",
            Metric::RespiratoryRate => "respiratory_rate",
            Metric::OxygenSaturation => "oxygen_saturation",
            Metric::SkinTemperatureDeviation => "skin_temperature_deviation",
            Metric::SkinTemperature => "skin_temperature",
            Metric::BodyTemperature => "body_temperature",
            Metric::StepCount => "step_count",
            Metric::ActiveEnergy => "active_energy",
            Metric::TotalEnergy => "total_energy",
            Metric::BasalEnergy => "basal_energy",
            Metric::Distance => "distance",
            Metric::SleepTotal => "sleep_total",
            Metric::SleepDeep => "sleep_deep",
            Metric::SleepLight => "sleep_light",
            Metric::SleepRem => "sleep_rem",
            Metric::SleepAwake => "sleep_awake",
            Metric::TimeInBed => "time_in_bed",
            Metric::SleepEfficiency => "sleep_efficiency",
            Metric::Weight => "weight",
            Metric::Vo2Max => "vo2_max",
            Metric::WorkoutDuration => "workout_duration",
            Metric::ReadinessScore => "readiness_score",
            Metric::RecoveryScore => "recovery_score",
            Metric::SleepScore => "sleep_score",
            Metric::ActivityScore => "activity_score",
            Metric::Strain => "strain",
        }
    }

    /// The only unit this metric is stored in.
    pub fn unit(self) -> &'static str {
        use Metric::*;
        match self {
            HeartRate | RestingHeartRate => "bpm",
            HrvRmssd | HrvSdnn => "ms",
            RespiratoryRate => "breaths/min",
            OxygenSaturation | SleepEfficiency => "%",
            SkinTemperatureDeviation | SkinTemperature | BodyTemperature => "degC",
            StepCount => "count",
            ActiveEnergy | TotalEnergy | BasalEnergy => "kcal",
            Distance => "m",
            SleepTotal | SleepDeep | SleepLight | SleepRem | SleepAwake | TimeInBed
            | WorkoutDuration => "s",
            Weight => "kg",
            Vo2Max => "mL/kg/min",
            ReadinessScore | RecoveryScore | SleepScore | ActivityScore | Strain => "score",
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One canonical measurement. `start_time == end_time` for instants.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Our user id (see the README's user-id rules per vendor).
    pub user_id: String,
    /// Vendor the data came through (`terra`, `healthkit`, `oura`, `whoop`, …).
    pub vendor: String,
    /// What was measured.
    pub metric: Metric,
    /// Value in `metric.unit()`.
    pub value: f64,
    /// Start of the interval, or the instant.
    pub start_time: DateTime<Utc>,
    /// End of the interval; equals `start_time` for instants.
    pub end_time: DateTime<Utc>,
    /// The vendor's id of the document this came from (summary id, sleep id, workout id…).
    pub source_record_id: String,
    /// Provider or device that produced it, when the vendor says (`OURA` via Terra,
    /// `Apple Watch`). Part of the document's identity.
    pub source: Option<String>,
    /// Vendor recency of the document version (Terra `x-terra-ordering-timestamp`, ms):
    /// a version replaces the document's rows only when its ordering is at least the
    /// stored version's, or when either has none.
    pub ordering: Option<i64>,
}

/// What identifies a reading: its source document (user, vendor, vendor document id,
/// provider/device) plus what was measured over which interval. The changelog topic is
/// keyed by it; `readings_identity_key` is the same columns.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReadingKey {
    /// Our user id.
    pub user_id: String,
    /// Vendor.
    pub vendor: String,
    /// The vendor's document id.
    pub source_record_id: String,
    /// Provider or device, when the vendor names one.
    pub source: Option<String>,
    /// Canonical metric name ([`Metric::as_str`]).
    pub metric: String,
    /// Start of the interval, microseconds since the Unix epoch (as stored).
    pub start_micros: i64,
    /// End of the interval, microseconds since the Unix epoch (as stored).
    pub end_micros: i64,
}

impl Reading {
    /// This reading's identity, with times truncated to microseconds as PostgreSQL stores them.
    pub fn key(&self) -> ReadingKey {
        ReadingKey {
            user_id: self.user_id.clone(),
            vendor: self.vendor.clone(),
            source_record_id: self.source_record_id.clone(),
            source: self.source.clone(),
            metric: self.metric.as_str().to_owned(),
            start_micros: self.start_time.timestamp_micros(),
            end_micros: self.end_time.timestamp_micros(),
        }
    }
}

/// One change the `readings` table made, as the changelog publishes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A row was inserted or its value changed; `reading` is the row now stored.
    /// `envelope` is the position, in its write batch (`processor::sink::Batch`), of the envelope
    /// the reading came from (0 for batches not built with `push`).
    Upsert {
        /// The stored reading.
        reading: Reading,
        /// Index of the originating envelope within the batch.
        envelope: usize,
    },
    /// A row was removed: a newer version of its document no longer has it, or the vendor
    /// deleted the document.
    Delete(ReadingKey),
}

impl Change {
    /// The user whose row changed.
    pub fn user_id(&self) -> &str {
        match self {
            Change::Upsert { reading, .. } => &reading.user_id,
            Change::Delete(key) => &key.user_id,
        }
    }
}

/// A deletion named by the vendor: every reading of that source record goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    /// Our user id.
    pub user_id: String,
    /// Vendor.
    pub vendor: String,
    /// The vendor's id of the deleted document.
    pub source_record_id: String,
}

/// An account-level event (Terra auth/deauth/reauth…): no readings, recorded for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountEvent {
    /// Our user id, when known.
    pub user_id: Option<String>,
    /// Vendor.
    pub vendor: String,
    /// Event kind as the vendor names it (`auth`, `deauth`, `user_reauth`, …).
    pub kind: String,
    /// Vendor's user id.
    pub vendor_user_id: Option<String>,
}

/// Everything one raw webhook turns into.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Normalized {
    /// Readings to upsert and publish.
    pub readings: Vec<Reading>,
    /// Records the vendor deleted.
    pub tombstones: Vec<Tombstone>,
    /// Account events.
    pub account_events: Vec<AccountEvent>,
}
