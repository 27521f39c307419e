//! Conversion of vendor values into the one canonical unit of each [`Metric`].
//!
//! Unit strings are matched exactly as vendors send them (after trimming), because case
//! carries meaning: Apple's `Cal` is a kilocalorie, `cal` is a small calorie.
//! An unknown unit string is never guessed at: the caller turns `None` into
//! [`NormalizeError::UnsupportedUnit`](super::NormalizeError::UnsupportedUnit) so the
//! payload is dead-lettered and can be replayed once the unit is added here.

use bridge_core::model::Metric;

/// Kilojoules per kilocalorie (thermochemical calorie, the one Apple Health and WHOOP use).
pub(crate) const KJ_PER_KCAL: f64 = 4.184;

/// Metres per international mile.
const M_PER_MILE: f64 = 1609.344;
/// Metres per international foot.
const M_PER_FOOT: f64 = 0.3048;
/// Metres per international yard.
const M_PER_YARD: f64 = 0.9144;
/// Kilograms per avoirdupois pound.
const KG_PER_POUND: f64 = 0.453_592_37;
/// Kilograms per stone (14 lb).
const KG_PER_STONE: f64 = 6.350_293_18;

/// Kilojoules to kilocalories.
pub(crate) fn kj_to_kcal(kj: f64) -> f64 {
    kj / KJ_PER_KCAL
}

/// A duration in `unit` (`hr`, `min`, `s`, …) as seconds.
pub(crate) fn duration_to_seconds(value: f64, unit: &str) -> Option<f64> {
    let factor = match unit.trim() {
        "hr" | "h" | "hour" | "hours" => 3600.0,
        "min" | "mins" | "minute" | "minutes" => 60.0,
        "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "ms" => 0.001,
        _ => return None,
    };
    Some(value * factor)
}

/// `value` expressed in `unit` converted into `metric.unit()`; `None` when the unit is not
/// one this metric can come in, or the result is not finite.
pub(crate) fn to_canonical(metric: Metric, value: f64, unit: &str) -> Option<f64> {
    use Metric::*;
    let unit = unit.trim();
    let converted = match metric {
        HeartRate | RestingHeartRate | RespiratoryRate => match unit {
            "bpm" | "count/min" | "beats/min" | "breaths/min" | "/min" | "min^-1" => value,
            "count/s" | "Hz" => value * 60.0,
            _ => return None,
        },
        HrvRmssd | HrvSdnn => match unit {
            "ms" => value,
            "s" => value * 1000.0,
            _ => return None,
        },
        // HealthKit stores percentages as 0.0–1.0 while exporters usually print 0–100 with
        // the same `%` label, so the scale is inferred from the value. A value of exactly
        // 1.0 is read as a fraction (100 %): 1 % saturation is not survivable, 100 % is a
        // common reading. Anything in (1, 100] is already a percentage.
        OxygenSaturation | SleepEfficiency => match unit {
            "%" | "percent" => {
                if value <= 1.0 {
                    value * 100.0
                } else {
                    value
                }
            }
            _ => return None,
        },
        StepCount => match unit {
            "count" | "steps" | "step" => value,
            _ => return None,
        },
        ActiveEnergy | TotalEnergy | BasalEnergy => match unit {
            "kcal" | "Cal" | "Kcal" => value,
            "kJ" | "kj" | "KJ" => kj_to_kcal(value),
            "cal" => value / 1000.0,
            "J" => kj_to_kcal(value / 1000.0),
            _ => return None,
        },
        Distance => match unit {
            "m" => value,
            "km" => value * 1000.0,
            "cm" => value / 100.0,
            "mi" => value * M_PER_MILE,
            "ft" => value * M_PER_FOOT,
            "yd" => value * M_PER_YARD,
            _ => return None,
        },
        Weight => match unit {
            "kg" => value,
            "g" => value / 1000.0,
            "lb" | "lbs" => value * KG_PER_POUND,
            "st" => value * KG_PER_STONE,
            _ => return None,
        },
        SkinTemperature | BodyTemperature => match unit {
            "degC" | "°C" | "C" | "celsius" => value,
            "degF" | "°F" | "F" | "fahrenheit" => (value - 32.0) * 5.0 / 9.0,
            _ => return None,
        },
        // A deviation has no zero-point offset: only the scale changes.
        SkinTemperatureDeviation => match unit {
            "degC" | "°C" | "C" => value,
            "degF" | "°F" | "F" => value * 5.0 / 9.0,
            _ => return None,
        },
        SleepTotal | SleepDeep | SleepLight | SleepRem | SleepAwake | TimeInBed
        | WorkoutDuration => duration_to_seconds(value, unit)?,
        Vo2Max => {
            // Exporters spell it `ml/(kg·min)`, `mL/min·kg`, `ml/kg/min`…: compare the letters.
            let letters: String = unit
                .chars()
                .filter(char::is_ascii_alphabetic)
                .map(|c| c.to_ascii_lowercase())
                .collect();
            match letters.as_str() {
                "mlkgmin" | "mlminkg" => value,
                _ => return None,
            }
        }
        ReadinessScore | RecoveryScore | SleepScore | ActivityScore | Strain => value,
    };
    converted.is_finite().then_some(converted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn energy_distance_mass_temperature() {
        assert!(close(
            to_canonical(Metric::ActiveEnergy, 418.4, "kJ"),
            100.0
        ));
        assert!(close(
            to_canonical(Metric::ActiveEnergy, 100.0, "Cal"),
            100.0
        ));
        assert!(close(to_canonical(Metric::Distance, 2.0, "mi"), 3218.688));
        assert!(close(to_canonical(Metric::Weight, 100.0, "lb"), 45.359237));
        assert!(close(
            to_canonical(Metric::BodyTemperature, 212.0, "degF"),
            100.0
        ));
        assert!(close(
            to_canonical(Metric::SkinTemperatureDeviation, 1.8, "degF"),
            1.0
        ));
    }

    #[test]
    fn saturation_scale_is_inferred_and_one_means_full() {
        assert!(close(
            to_canonical(Metric::OxygenSaturation, 0.97, "%"),
            97.0
        ));
        assert!(close(
            to_canonical(Metric::OxygenSaturation, 1.0, "%"),
            100.0
        ));
        assert!(close(
            to_canonical(Metric::OxygenSaturation, 96.5, "%"),
            96.5
        ));
    }

    #[test]
    fn unknown_units_are_refused_not_guessed() {
        assert_eq!(to_canonical(Metric::Weight, 1.0, "stone-ish"), None);
        assert_eq!(to_canonical(Metric::HeartRate, 60.0, ""), None);
        assert_eq!(to_canonical(Metric::HrvSdnn, 40.0, "bpm"), None);
        assert!(close(
            to_canonical(Metric::Vo2Max, 40.0, "ml/(kg·min)"),
            40.0
        ));
    }

    #[test]
    fn overflow_is_not_emitted() {
        assert_eq!(to_canonical(Metric::Distance, f64::MAX, "km"), None);
    }
}
