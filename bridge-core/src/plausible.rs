//! Plausibility ranges: a value outside its metric's range is not a reading.
//!
//! The ranges are wide on purpose (they bound physiology and device limits, not health):
//! they catch unit mistakes, sentinel values and corrupt payloads (a 900 bpm heart rate,
//! 150 % SpO2, a negative duration), never an unusual but real day. A value outside its
//! range is dropped, counted and logged; it is never clamped, because a clamped value
//! would be a made-up measurement. The README's data contract repeats this table.

use std::ops::RangeInclusive;

use crate::model::{Metric, Reading};

/// Seconds in 48 hours: the longest sleep period or time in bed we accept.
const H48: f64 = 48.0 * 3600.0;

/// The inclusive range of plausible values of `metric`, in its canonical unit.
pub fn range(metric: Metric) -> RangeInclusive<f64> {
    use Metric::*;
    match metric {
        HeartRate => 20.0..=300.0,
        RestingHeartRate => 20.0..=200.0,
        HrvRmssd | HrvSdnn => 0.0..=500.0,
        RespiratoryRate => 2.0..=80.0,
        OxygenSaturation => 50.0..=100.0,
        SkinTemperatureDeviation => -10.0..=10.0,
        SkinTemperature => 15.0..=45.0,
        BodyTemperature => 25.0..=45.0,
        StepCount => 0.0..=200_000.0,
        ActiveEnergy => 0.0..=20_000.0,
        TotalEnergy => 0.0..=30_000.0,
        BasalEnergy => 0.0..=10_000.0,
        // 1,000 km: above any single-stage ultra event, below a GPS glitch across continents.
        Distance => 0.0..=1_000_000.0,
        SleepTotal | SleepDeep | SleepLight | SleepRem | SleepAwake | TimeInBed => 0.0..=H48,
        SleepEfficiency => 0.0..=100.0,
        Weight => 1.0..=650.0,
        Vo2Max => 5.0..=100.0,
        // A week: multi-day ultra events are recorded as one workout by some devices.
        WorkoutDuration => 0.0..=7.0 * 24.0 * 3600.0,
        ReadinessScore | RecoveryScore | SleepScore | ActivityScore => 0.0..=100.0,
        // WHOOP strain is 0–21; Terra passes other vendors' strain scales through.
        Strain => 0.0..=100.0,
    }
}

/// True when the reading's value lies in its metric's range. NaN is never plausible.
pub fn is_plausible(r: &Reading) -> bool {
    range(r.metric).contains(&r.value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn reading(metric: Metric, value: f64) -> Reading {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        Reading {
            user_id: "u".into(),
            vendor: "terra".into(),
            metric,
            value,
            start_time: t,
            end_time: t,
            source_record_id: "r".into(),
            source: None,
            ordering: None,
        }
    }

    #[test]
    fn issue_examples_are_implausible_and_edges_are_kept() {
        assert!(!is_plausible(&reading(Metric::HeartRate, 900.0)));
        assert!(!is_plausible(&reading(Metric::OxygenSaturation, 150.0)));
        assert!(!is_plausible(&reading(Metric::SleepTotal, -1.0)));
        assert!(!is_plausible(&reading(Metric::SleepTotal, H48 + 1.0)));
        assert!(!is_plausible(&reading(Metric::HeartRate, f64::NAN)));
        assert!(is_plausible(&reading(Metric::HeartRate, 20.0)));
        assert!(is_plausible(&reading(Metric::HeartRate, 300.0)));
        assert!(is_plausible(&reading(Metric::OxygenSaturation, 100.0)));
        assert!(is_plausible(&reading(Metric::SleepTotal, 0.0)));
        assert!(is_plausible(&reading(Metric::StepCount, 0.0)));
    }

    #[test]
    fn every_metric_has_a_non_empty_range() {
        for m in Metric::ALL {
            let r = range(m);
            assert!(r.start() < r.end(), "{m}");
        }
    }
}
