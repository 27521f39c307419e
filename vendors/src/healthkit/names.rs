//! Health Auto Export's names, as data: metric names to catalog metrics, workout names to
//! the session vocabulary. `MAPPING.md` beside this file is rendered from these tables
//! (a test fails when it is stale), so the documentation cannot drift from the code.
//!
//! Sources, cited per row by a letter:
//! - **D**: documented: the developer's reference server (`HealthyApps/health-auto-export-server`,
//!   `MetricName.ts`) and the export-format pages (help.healthyapps.dev, the app's wiki).
//! - **R**: seen in Health Auto Export payloads other projects published (samples, test
//!   fixtures) or in the name tables of their integrations: what the app writes today;
//!   some differ from `MetricName.ts`, e.g. `walking_heart_rate_average`.
//! - **A**: Apple's `HKWorkoutActivityType` display names (the app writes the name Apple
//!   Health shows), not seen in an export: unverified, listed to be liberal.

use bridge_core::model::{Activity, Metric};

/// How the entries of one metric are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `{date, qty}`: one reading of the metric.
    Qty(Metric),
    /// `{date, Min, Avg, Max}` (aggregated) or `{date, qty}` (unaggregated).
    HeartRate,
    /// `{date, systolic, diastolic}`: both in one entry.
    BloodPressure,
}

/// One Health Auto Export metric name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MetricName {
    /// The `name` the app writes.
    pub(crate) hae: &'static str,
    /// How its entries become readings.
    pub(crate) shape: Shape,
    /// Where the name comes from (see the module doc) and why it maps this way.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) note: &'static str,
}

const fn qty(hae: &'static str, metric: Metric, note: &'static str) -> MetricName {
    MetricName {
        hae,
        shape: Shape::Qty(metric),
        note,
    }
}

/// Every metric name that becomes readings (`sleep_analysis` is read by its own code).
/// Any other name is reported in `Normalized::unmapped`.
pub(crate) const METRICS: &[MetricName] = &[
    MetricName {
        hae: "heart_rate",
        shape: Shape::HeartRate,
        note: "D R; `Avg` (or `qty`) → heart_rate, `Min` → heart_rate_min, `Max` → heart_rate_max",
    },
    qty("resting_heart_rate", Metric::RestingHeartRate, "D R"),
    qty("heart_rate_variability", Metric::HrvSdnn, "D R; Apple measures SDNN"),
    qty(
        "heart_rate_variability_sdnn",
        Metric::HrvSdnn,
        "named in another project's notes, unverified",
    ),
    qty("walking_heart_rate_average", Metric::WalkingHeartRateAverage, "R"),
    qty("walking_heart_rate", Metric::WalkingHeartRateAverage, "D"),
    qty("cardio_recovery", Metric::HeartRateRecovery, "D R; Apple's one-minute heart-rate recovery"),
    qty("heart_rate_recovery_one_minute", Metric::HeartRateRecovery, "R (HealthKit's identifier)"),
    MetricName {
        hae: "blood_pressure",
        shape: Shape::BloodPressure,
        note: "D; `systolic` → blood_pressure_systolic, `diastolic` → blood_pressure_diastolic",
    },
    qty("respiratory_rate", Metric::RespiratoryRate, "D R"),
    qty("breathing_disturbances", Metric::BreathingDisturbances, "D R"),
    qty("blood_oxygen_saturation", Metric::OxygenSaturation, "D R; a `%` value ≤ 1 is a fraction"),
    qty("blood_glucose", Metric::BloodGlucose, "D; `mealTime` is not kept"),
    qty("apple_sleeping_wrist_temperature", Metric::SkinTemperature, "D R; absolute, not a deviation"),
    qty("body_temperature", Metric::BodyTemperature, "D"),
    qty("basal_body_temperature", Metric::BodyTemperature, "D; a body temperature taken at rest"),
    qty("step_count", Metric::StepCount, "D R"),
    qty("flights_climbed", Metric::FlightsClimbed, "D R"),
    qty("active_energy", Metric::ActiveEnergy, "D R"),
    qty("basal_energy_burned", Metric::BasalEnergy, "D R"),
    qty("physical_effort", Metric::Met, "D R; Apple writes kcal/hr·kg, which is a MET"),
    qty("walking_running_distance", Metric::Distance, "D R"),
    qty("cycling_distance", Metric::Distance, "D; one sample per modality, each its own row"),
    qty("swimming_distance", Metric::Distance, "D"),
    qty("wheelchair_distance", Metric::Distance, "D"),
    qty("downhill_snow_sports", Metric::Distance, "D; downhill snow sports distance"),
    qty("apple_exercise_time", Metric::ExerciseTime, "D R"),
    qty("apple_stand_time", Metric::StandTime, "D R"),
    qty("apple_stand_hour", Metric::StandHours, "D R"),
    qty("time_in_daylight", Metric::TimeInDaylight, "D R"),
    qty("walking_speed", Metric::WalkingSpeed, "D R"),
    qty("walking_step_length", Metric::WalkingStepLength, "D R"),
    qty("walking_double_support_percentage", Metric::WalkingDoubleSupport, "D R"),
    qty("walking_asymmetry_percentage", Metric::WalkingAsymmetry, "D R"),
    qty("stair_speed_up", Metric::StairSpeedUp, "D R"),
    qty("stair_speed_down", Metric::StairSpeedDown, "D R"),
    qty("running_speed", Metric::Speed, "D"),
    qty("cycling_speed", Metric::Speed, "D"),
    qty("running_power", Metric::Power, "D"),
    qty("cycling_power", Metric::Power, "D"),
    qty("cycling_cadence", Metric::Cadence, "D"),
    qty("environmental_audio_exposure", Metric::EnvironmentalAudioExposure, "R"),
    qty("environmental_audio", Metric::EnvironmentalAudioExposure, "D"),
    qty("headphone_audio_exposure", Metric::HeadphoneAudioExposure, "R"),
    qty("headphone_audio", Metric::HeadphoneAudioExposure, "D"),
    qty("weight_body_mass", Metric::Weight, "D R"),
    qty("height", Metric::Height, "D"),
    qty("body_mass_index", Metric::Bmi, "D"),
    qty("body_fat_percentage", Metric::BodyFatPercentage, "D R"),
    qty("lean_body_mass", Metric::LeanBodyMass, "D"),
    qty("vo2_max", Metric::Vo2Max, "D R"),
    qty("vo2max", Metric::Vo2Max, "an older `MetricName.ts` (vendors.md §4)"),
];

/// The mapping of a metric name, if it has one.
pub(crate) fn metric(name: &str) -> Option<Shape> {
    METRICS.iter().find(|m| m.hae == name).map(|m| m.shape)
}

/// Names the app documents that have no catalog metric (listed in `MAPPING.md` so a
/// reader sees they are known, not forgotten; they are still reported as unmapped).
#[cfg(test)]
pub(crate) const KNOWN_UNMAPPED: &[&str] = &[
    "apple_move_time",
    "atrial_fibrillation_burden",
    "six_minute_walking_test_distance",
    "running_ground_contact_time",
    "running_stride_length",
    "running_vertical_oscillation",
    "cycling_functional_threshold_power",
    "waist_circumference",
    "wheelchair_push_count",
    "swim_stroke_count",
    "forced_vital_capacity",
    "forced_expiratory_volume",
    "peak_expiratory_flow_rate",
    "peripheral_perfusion_index",
    "inhaler_usage",
    "insulin_delivery",
    "electrodermal_activity",
    "uv_exposure",
    "under_water_depth",
    "under_water_temperature",
    "mindful_minutes",
    "sexual_activity",
    "handwashing",
    "toothbrushing",
    "blood_alcohol_content",
    "number_of_alcoholic_beverages",
    "number_of_time_fallen",
    "dietary_energy (and every other nutrition name)",
];

/// One workout name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WorkoutName {
    /// The name as the app writes it (matched case-insensitively, spaces collapsed).
    pub(crate) hae: &'static str,
    /// The session type.
    pub(crate) activity: Activity,
    /// Where the name comes from (see the module doc).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) note: &'static str,
}

const fn w(hae: &'static str, activity: Activity, note: &'static str) -> WorkoutName {
    WorkoutName {
        hae,
        activity,
        note,
    }
}

/// Workout `name` → activity. A name not here is `other` and reported as
/// `activity:<name>` in `Normalized::unmapped`; the app's own `Other` is `other` without
/// a report.
pub(crate) const WORKOUTS: &[WorkoutName] = &[
    w("Running", Activity::Running, "D"),
    w("Outdoor Run", Activity::Running, "R"),
    w("Indoor Run", Activity::Running, "R"),
    w("Walking", Activity::Walking, "D"),
    w("Outdoor Walk", Activity::Walking, "R"),
    w("Indoor Walk", Activity::Walking, "R"),
    w("Outdoor Spaziergang", Activity::Walking, "R (German)"),
    w("Hiking", Activity::Hiking, "R"),
    w("Cycling", Activity::Cycling, "D"),
    w("Outdoor Cycling", Activity::Cycling, "R"),
    w("Indoor Cycling", Activity::Cycling, "R"),
    w("Hand Cycling", Activity::Cycling, "A"),
    w("Swimming", Activity::Swimming, "D"),
    w("Pool Swim", Activity::Swimming, "R"),
    w("Open Water Swim", Activity::Swimming, "R"),
    w("Schwimmbad Schwimmen", Activity::Swimming, "R (German pool swim)"),
    w("Rowing", Activity::Rowing, "A"),
    w("Rower", Activity::Rowing, "R"),
    w("Elliptical", Activity::Elliptical, "R"),
    w("Stair Climbing", Activity::StairClimbing, "A"),
    w("Stairs", Activity::StairClimbing, "A"),
    w("Stair Stepper", Activity::StairClimbing, "R"),
    w("Step Training", Activity::StairClimbing, "A"),
    w("Traditional Strength Training", Activity::StrengthTraining, "R"),
    w("Functional Strength Training", Activity::StrengthTraining, "R"),
    w("Strength Training", Activity::StrengthTraining, "R"),
    w("Core Training", Activity::StrengthTraining, "R"),
    w("High Intensity Interval Training", Activity::Hiit, "R"),
    w("HIIT", Activity::Hiit, "R"),
    w("Cross Training", Activity::CrossTraining, "R"),
    w("Mixed Cardio", Activity::CrossTraining, "R"),
    w("Mixed Metabolic Cardio Training", Activity::CrossTraining, "A"),
    w("Jump Rope", Activity::CrossTraining, "A"),
    w("Yoga", Activity::Yoga, "R"),
    w("Pilates", Activity::Pilates, "R"),
    w("Barre", Activity::Pilates, "A; floor and barre conditioning, closest to pilates"),
    w("Flexibility", Activity::Flexibility, "A"),
    w("Cooldown", Activity::Flexibility, "R"),
    w("Preparation and Recovery", Activity::Flexibility, "A"),
    w("Mind and Body", Activity::MindAndBody, "R"),
    w("Tai Chi", Activity::MindAndBody, "A"),
    w("Dance", Activity::Dance, "R"),
    w("Cardio Dance", Activity::Dance, "A"),
    w("Social Dance", Activity::Dance, "A"),
    w("Dance Inspired Training", Activity::Dance, "A"),
    w("Boxing", Activity::Boxing, "A"),
    w("Kickboxing", Activity::Boxing, "A"),
    w("Martial Arts", Activity::MartialArts, "A"),
    w("Climbing", Activity::Climbing, "A"),
    w("Downhill Skiing", Activity::DownhillSkiing, "A"),
    w("Cross Country Skiing", Activity::CrossCountrySkiing, "A"),
    w("Snowboarding", Activity::Snowboarding, "A"),
    w("Skating", Activity::Skating, "A"),
    w("Skating Sports", Activity::Skating, "A"),
    w("Surfing", Activity::Surfing, "A"),
    w("Surfing Sports", Activity::Surfing, "A"),
    w("Paddle Sports", Activity::Paddling, "A"),
    w("Paddling", Activity::Paddling, "A"),
    w("Golf", Activity::Golf, "A"),
    w("Tennis", Activity::Tennis, "R"),
    w("Badminton", Activity::Badminton, "A"),
    w("Squash", Activity::Squash, "A"),
    w("Table Tennis", Activity::TableTennis, "A"),
    w("Soccer", Activity::Soccer, "R"),
    w("Basketball", Activity::Basketball, "A"),
    w("Volleyball", Activity::Volleyball, "A"),
    w("American Football", Activity::AmericanFootball, "A"),
    w("Baseball", Activity::Baseball, "A"),
    w("Softball", Activity::Baseball, "A"),
    w("Hockey", Activity::Hockey, "A"),
    w("Rugby", Activity::Rugby, "A"),
    w("Cricket", Activity::Cricket, "A"),
    w("Wheelchair Walk Pace", Activity::Wheelchair, "A"),
    w("Wheelchair Run Pace", Activity::Wheelchair, "A"),
    w("Other", Activity::Other, "R; the app's own \"other\", not reported as unmapped"),
];

/// `name` lower-cased with runs of whitespace collapsed to one space.
fn fold(name: &str) -> String {
    name.split_whitespace()
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The activity of a workout name, if the table has it.
pub(crate) fn workout(name: &str) -> Option<Activity> {
    let folded = fold(name);
    WORKOUTS
        .iter()
        .find(|w| fold(w.hae) == folded)
        .map(|w| w.activity)
}

/// `MAPPING.md`, rendered from the tables.
#[cfg(test)]
pub(crate) fn render_mapping() -> String {
    let mut md = String::from(
        "# Health Auto Export names\n\n\
         Generated from `names.rs` (`cargo test -p vendors --features processor \
         healthkit::names` fails when this file is stale; `UPDATE_MAPPING=1` rewrites it). \
         Sources: **D** documented (reference server `MetricName.ts`, export-format pages), \
         **R** seen in payloads or name tables of other projects' integrations, **A** Apple's workout display name, unverified in an export.\n\n\
         ## Metrics\n\n| Health Auto Export `name` | Catalog metric | Source, notes |\n|---|---|---|\n",
    );
    for m in METRICS {
        let target = match m.shape {
            Shape::Qty(metric) => format!("`{}`", metric.as_str()),
            Shape::HeartRate => "`heart_rate`, `heart_rate_min`, `heart_rate_max`".to_owned(),
            Shape::BloodPressure => {
                "`blood_pressure_systolic`, `blood_pressure_diastolic`".to_owned()
            }
        };
        md.push_str(&format!("| `{}` | {target} | {} |\n", m.hae, m.note));
    }
    md.push_str(
        "| `sleep_analysis` | `sleep_session`, `sleep_stage`, `sleep_total`, `sleep_light`, \
         `sleep_deep`, `sleep_rem`, `sleep_awake`, `time_in_bed`, `sleep_efficiency` | D R; \
         see `normalize.rs` |\n\n\
         Documented names without a catalog metric (reported in `unmapped`, like any other \
         name): ",
    );
    let known: Vec<String> = KNOWN_UNMAPPED.iter().map(|n| format!("`{n}`")).collect();
    md.push_str(&known.join(", "));
    md.push_str(
        ".\n\n## Workouts\n\n\
         Matched case-insensitively with whitespace collapsed. Any other name is `other` and \
         reported as `activity:<name>` in `unmapped`.\n\n\
         | Workout `name` | Activity | Source, notes |\n|---|---|---|\n",
    );
    for w in WORKOUTS {
        md.push_str(&format!(
            "| {} | `{}` | {} |\n",
            w.hae,
            w.activity.as_str(),
            w.note
        ));
    }
    md
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn mapping_md_is_rendered_from_the_tables() {
        let want = render_mapping();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/healthkit/MAPPING.md");
        if std::env::var_os("UPDATE_MAPPING").is_some() {
            std::fs::write(path, &want).expect("write MAPPING.md");
        }
        let have = std::fs::read_to_string(path).expect("read MAPPING.md");
        assert!(
            have == want,
            "vendors/src/healthkit/MAPPING.md is stale; its text should be:\n{want}"
        );
    }

    #[test]
    fn names_are_unique_and_unmapped_names_have_no_mapping() {
        let mut seen = HashSet::new();
        for m in METRICS {
            assert!(seen.insert(m.hae), "duplicate metric {}", m.hae);
            assert_eq!(metric(m.hae), Some(m.shape));
        }
        for n in KNOWN_UNMAPPED {
            assert_eq!(metric(n), None, "{n}");
        }
        let mut seen = HashSet::new();
        for w in WORKOUTS {
            assert!(seen.insert(fold(w.hae)), "duplicate workout {}", w.hae);
        }
    }

    #[test]
    fn workout_names_match_loosely_but_not_partially() {
        assert_eq!(workout("outdoor  RUN"), Some(Activity::Running));
        assert_eq!(
            workout(" Traditional Strength Training "),
            Some(Activity::StrengthTraining)
        );
        assert_eq!(workout("Outdoor"), None);
        assert_eq!(workout("Running Club"), None);
        assert_eq!(workout("Other"), Some(Activity::Other));
    }
}
