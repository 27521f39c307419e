//! Plausibility ranges: a value outside its metric's range is not a reading.
//!
//! The ranges are wide on purpose (they bound physiology and device limits, not health):
//! they catch unit mistakes, sentinel values and corrupt payloads (a 900 bpm heart rate,
//! 150 % SpO2, a negative duration), never an unusual but real day. A value outside its
//! range is dropped, counted and logged; it is never clamped, because a clamped value
//! would be a made-up measurement. The README's data contract repeats this table.

use std::ops::RangeInclusive;

use crate::model::{Metric, Reading};

/// The inclusive range of plausible values of `metric`, in its canonical unit (the
/// catalog's `min`/`max`).
pub fn range(metric: Metric) -> RangeInclusive<f64> {
    let spec = metric.spec();
    spec.min..=spec.max
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
            activity: None,
        }
    }

    #[test]
    fn issue_examples_are_implausible_and_edges_are_kept() {
        assert!(!is_plausible(&reading(Metric::HeartRate, 900.0)));
        assert!(!is_plausible(&reading(Metric::OxygenSaturation, 150.0)));
        assert!(!is_plausible(&reading(Metric::SleepTotal, -1.0)));
        assert!(!is_plausible(&reading(
            Metric::SleepTotal,
            48.0 * 3600.0 + 1.0
        )));
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
