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

/// Metres per second in a kilometre per hour.
const MPS_PER_KMH: f64 = 1000.0 / 3600.0;
/// Metres per second in a mile per hour.
const MPS_PER_MPH: f64 = M_PER_MILE / 3600.0;
/// mg/dL of glucose per mmol/L (molar mass 180.156 g/mol).
const GLUCOSE_MGDL_PER_MMOL: f64 = 18.0156;
/// mmHg per kilopascal.
const MMHG_PER_KPA: f64 = 7.500_615_75;

/// `value` expressed in `unit` converted into `metric.unit()`; `None` when the unit is not
/// one this metric can come in, or the result is not finite.
///
/// Conversions are chosen by the metric's canonical unit (one family per catalog unit),
/// so a new catalog metric in an existing unit needs no change here.
pub(crate) fn to_canonical(metric: Metric, value: f64, unit: &str) -> Option<f64> {
    use Metric::*;
    let unit = unit.trim();
    let converted = match metric.unit() {
        "bpm" | "breaths/min" | "/min" => match unit {
            "bpm" | "count/min" | "beats/min" | "breaths/min" | "/min" | "min^-1" | "rpm"
            | "spm" | "steps/min" => value,
            "count/s" | "Hz" => value * 60.0,
            _ => return None,
        },
        "/h" => match unit {
            "/h" | "count/hr" | "count/h" | "events/hr" | "events/h" => value,
            // Apple writes breathing disturbances as a bare `count` that its app shows per
            // hour (unverified against Apple's documentation: accepted as per hour).
            "count" if metric == BreathingDisturbances => value,
            _ => return None,
        },
        "ms" => match unit {
            "ms" => value,
            "s" => value * 1000.0,
            _ => return None,
        },
        // HealthKit stores percentages as 0.0–1.0 while exporters usually print 0–100 with
        // the same `%` label, so the scale is inferred from the value. A value of exactly
        // 1.0 is read as a fraction (100 %) for saturation only: 1 % saturation is not
        // survivable, 100 % is a common reading. Anything in (1, 100] is already a
        // percentage. For other percentages a value ≤ 1 is ambiguous (1 % body fat is as
        // implausible as 100 %, 0.5 % double support is not) and is read as a fraction
        // only when the unit says so.
        "%" => match unit {
            "%" | "percent" if metric == OxygenSaturation || metric == SleepEfficiency => {
                if value <= 1.0 { value * 100.0 } else { value }
            }
            "%" | "percent" => value,
            "fraction" | "ratio" => value * 100.0,
            _ => return None,
        },
        "count" => match unit {
            "count" | "steps" | "step" | "flights" | "floors" | "hr" | "hours" | "events" => value,
            _ => return None,
        },
        "kcal" => match unit {
            "kcal" | "Cal" | "Kcal" => value,
            "kJ" | "kj" | "KJ" => kj_to_kcal(value),
            "cal" => value / 1000.0,
            "J" => kj_to_kcal(value / 1000.0),
            _ => return None,
        },
        "MET" => match unit {
            "MET" | "met" | "METs" | "kcal/hr·kg" | "kcal/(hr·kg)" | "kcal/(kg·hr)"
            | "kcal/kg/hr" | "kcal/hr/kg" | "kcal/(kg.h)" => value,
            _ => return None,
        },
        "m" => match unit {
            "m" => value,
            "km" => value * 1000.0,
            "cm" => value / 100.0,
            "mm" => value / 1000.0,
            "mi" => value * M_PER_MILE,
            "ft" => value * M_PER_FOOT,
            "in" => value * M_PER_FOOT / 12.0,
            "yd" => value * M_PER_YARD,
            _ => return None,
        },
        "m/s" => match unit {
            "m/s" | "mps" => value,
            "km/h" | "km/hr" | "kph" | "kmph" => value * MPS_PER_KMH,
            // Health Auto Export writes swim speeds as metres per hour.
            "m/hr" | "m/h" => value / 3600.0,
            "mi/hr" | "mi/h" | "mph" => value * MPS_PER_MPH,
            "ft/s" => value * M_PER_FOOT,
            "m/min" => value / 60.0,
            _ => return None,
        },
        "W" => match unit {
            "W" | "watts" | "watt" => value,
            "kW" => value * 1000.0,
            _ => return None,
        },
        "kg" => match unit {
            "kg" => value,
            "g" => value / 1000.0,
            "lb" | "lbs" => value * KG_PER_POUND,
            "st" => value * KG_PER_STONE,
            _ => return None,
        },
        "kg/m2" => match unit {
            "kg/m2" | "kg/m^2" | "kg/m²" | "count" | "" => value,
            _ => return None,
        },
        // A deviation has no zero-point offset: only the scale changes.
        "degC"
            if matches!(
                metric,
                SkinTemperatureDeviation | SkinTemperatureTrendDeviation
            ) =>
        {
            match unit {
                "degC" | "°C" | "C" => value,
                "degF" | "°F" | "F" => value * 5.0 / 9.0,
                _ => return None,
            }
        }
        "degC" => match unit {
            "degC" | "°C" | "C" | "celsius" => value,
            "degF" | "°F" | "F" | "fahrenheit" => (value - 32.0) * 5.0 / 9.0,
            _ => return None,
        },
        "mg/dL" => match unit {
            "mg/dL" | "mg/dl" => value,
            "mmol/L" | "mmol/l" | "mmol<180.1558800000541>/L" => value * GLUCOSE_MGDL_PER_MMOL,
            _ => return None,
        },
        "mmHg" => match unit {
            "mmHg" | "mm[Hg]" | "mmhg" => value,
            "kPa" => value * MMHG_PER_KPA,
            _ => return None,
        },
        "dB" => match unit {
            "dB" | "dBASPL" | "dBA" | "dB SPL" => value,
            _ => return None,
        },
        "s" => duration_to_seconds(value, unit)?,
        "mL/kg/min" => {
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
        "score" => value,
        // Stage codes are assigned by the normalizer, never converted from a vendor unit.
        _ => return None,
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

    /// Units Health Auto Export writes in real exports, each checked against a value
    /// worked out by hand (comment beside it).
    #[test]
    fn health_auto_export_units() {
        use Metric::*;
        let cases: &[(Metric, f64, &str, f64)] = &[
            // (98.6 − 32) × 5 / 9 = 66.6 × 5 / 9
            (BodyTemperature, 98.6, "degF", 37.0),
            (Distance, 1.0, "mi", 1609.344),
            // 10 × 1609.344 / 3600 = 16093.44 / 3600
            (WalkingSpeed, 10.0, "mi/hr", 4.4704),
            (Speed, 10.0, "mph", 4.4704),
            // 70 × 0.0254
            (Height, 70.0, "in", 1.778),
            (WalkingStepLength, 71.0, "cm", 0.71),
            // 2 × 0.3048
            (StairSpeedUp, 2.0, "ft/s", 0.6096),
            (ElevationGain, 1000.0, "ft", 304.8),
            // 4184 / 4.184
            (ActiveEnergy, 4184.0, "kJ", 1000.0),
            (HeartRate, 72.0, "count/min", 72.0),
            (WalkingHeartRateAverage, 104.0, "count/min", 104.0),
            (Cadence, 172.0, "spm", 172.0),
            // 36 × 1000 / 3600
            (Speed, 36.0, "km/hr", 10.0),
            (Speed, 18.0, "kmph", 5.0),
            // metres per hour (swim speeds): 3600 / 3600
            (Speed, 3600.0, "m/hr", 1.0),
            (LeanBodyMass, 10.0, "lb", 4.5359237),
            (EnvironmentalAudioExposure, 70.0, "dBASPL", 70.0),
            (Met, 5.0, "kcal/hr·kg", 5.0),
            (Met, 5.0, "kcal/(hr·kg)", 5.0),
            // 30 × 60
            (ExerciseTime, 30.0, "min", 1800.0),
            (StandHours, 12.0, "count", 12.0),
            (StandHours, 12.0, "hr", 12.0),
            (BreathingDisturbances, 3.0, "count", 3.0),
            (Bmi, 24.1, "count", 24.1),
            // 5 × 18.0156
            (BloodGlucose, 5.0, "mmol<180.1558800000541>/L", 90.078),
            (BloodPressureSystolic, 120.0, "mmHg", 120.0),
            (Vo2Max, 44.6, "ml/(kg·min)", 44.6),
        ];
        for &(metric, value, unit, want) in cases {
            let got = to_canonical(metric, value, unit);
            assert!(
                close(got, want),
                "{metric} {value} {unit}: {got:?}, want {want}"
            );
        }
        assert_eq!(to_canonical(Metric::Distance, 1.0, "leagues"), None);
        assert_eq!(to_canonical(Metric::Weight, 48.0, "fl_oz_us"), None);
        assert_eq!(to_canonical(Metric::Speed, 1.0, "m/hr·kg"), None);
    }

    #[test]
    fn overflow_is_not_emitted() {
        assert_eq!(to_canonical(Metric::Distance, f64::MAX, "km"), None);
    }
}
