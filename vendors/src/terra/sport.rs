//! Terra's `ActivityType` (the numeric `metadata.type` of an `activity` document) mapped
//! to the bridge's session vocabulary ([`Activity`]).
//!
//! Source: Terra's enum as published in `tryterra/openapi`
//! (`data_models/specs/data_models/enums.tsp`, `enum ActivityType`), which follows Google
//! Fit's activity ids (so 2, 6, 72, 107, 109–112 and 121 are absent). Names are Terra's,
//! as written there, typos included (`Nording Walking`, `Walkin Stroller`).
//!
//! - A row with `None` is a type Terra names that has no code here: the session is
//!   [`Activity::Other`] and `activity:<number>` goes into `Normalized::unmapped`, so the
//!   gap is counted in production. A number that is not in the table is treated the same.
//! - Terra's own `Unknown` (4) and `Other` (108) are [`Activity::Other`] and not counted:
//!   the vendor itself says it does not know.
//! - Rows marked `judgement` group a Terra type under the nearest broader code; the
//!   others are the same sport under another name.
//! - Some providers' integrations are said to send the type's name instead of its number
//!   (unverified); a string is looked up by name, ignoring case, spaces and underscores.

use bridge_core::model::Activity;
use serde_json::Value;

use Activity as A;

/// `(Terra number, Terra name, our code)`.
const TYPES: &[(i64, &str, Option<Activity>)] = &[
    (0, "In Vehicle", None),
    (1, "Biking", Some(A::Cycling)),
    (3, "Still", None),
    (4, "Unknown", Some(A::Other)),
    (5, "Tilting", None),
    (7, "Walking", Some(A::Walking)),
    (8, "Running", Some(A::Running)),
    // judgement: aerobics classes are mixed cardio.
    (9, "Aerobics", Some(A::CrossTraining)),
    (10, "Badminton", Some(A::Badminton)),
    (11, "Baseball", Some(A::Baseball)),
    (12, "Basketball", Some(A::Basketball)),
    // judgement: the skiing part dominates the session.
    (13, "Biathlon", Some(A::CrossCountrySkiing)),
    // judgement: hand cycling is cycling.
    (14, "Handbiking", Some(A::Cycling)),
    (15, "Mountain Biking", Some(A::Cycling)),
    (16, "Road Biking", Some(A::Cycling)),
    (17, "Spinning", Some(A::Cycling)),
    (18, "Stationary Biking", Some(A::Cycling)),
    (19, "Utility Biking", Some(A::Cycling)),
    (20, "Boxing", Some(A::Boxing)),
    // judgement: body-weight strength work.
    (21, "Calisthenics", Some(A::StrengthTraining)),
    // judgement: circuits are cross training.
    (22, "Circuit Training", Some(A::CrossTraining)),
    (23, "Cricket", Some(A::Cricket)),
    (24, "Dancing", Some(A::Dance)),
    (25, "Elliptical", Some(A::Elliptical)),
    (26, "Fencing", None),
    (27, "American Football", Some(A::AmericanFootball)),
    (28, "Australian Football", None),
    (29, "English Football", Some(A::Soccer)),
    (30, "Frisbee", None),
    (31, "Gardening", None),
    (32, "Golf", Some(A::Golf)),
    (33, "Gymnastics", None),
    (34, "Handball", None),
    (35, "Hiking", Some(A::Hiking)),
    (36, "Hockey", Some(A::Hockey)),
    (37, "Horseback Riding", None),
    (38, "Housework", None),
    (39, "Jumping Rope", None),
    (40, "Kayaking", Some(A::Paddling)),
    // judgement: kettlebell work is strength training.
    (41, "Kettlebell Training", Some(A::StrengthTraining)),
    (42, "Kickboxing", Some(A::Boxing)),
    // judgement: a surfing sport.
    (43, "Kitesurfing", Some(A::Surfing)),
    (44, "Martial Arts", Some(A::MartialArts)),
    (45, "Meditation", Some(A::MindAndBody)),
    (46, "Mixed Martial Arts", Some(A::MartialArts)),
    // judgement: a mixed home workout programme.
    (47, "P90X Exercises", Some(A::CrossTraining)),
    (48, "Paragliding", None),
    (49, "Pilates", Some(A::Pilates)),
    (50, "Polo", None),
    (51, "Racquetball", None),
    (52, "Rock Climbing", Some(A::Climbing)),
    (53, "Rowing", Some(A::Rowing)),
    (54, "Rowing Machine", Some(A::Rowing)),
    (55, "Rugby", Some(A::Rugby)),
    (56, "Jogging", Some(A::Running)),
    (57, "Running On Sand", Some(A::Running)),
    (58, "Treadmill Running", Some(A::Running)),
    (59, "Sailing", None),
    (60, "Scuba Diving", None),
    // judgement: HealthKit's skating sports include skateboarding.
    (61, "Skateboarding", Some(A::Skating)),
    (62, "Skating", Some(A::Skating)),
    (63, "Cross Skating", Some(A::Skating)),
    (64, "Indoor Rollerblading", Some(A::Skating)),
    // judgement: unqualified "skiing" is taken as downhill (resort) skiing.
    (65, "Skiing", Some(A::DownhillSkiing)),
    // judgement: ski touring is closest to cross-country skiing.
    (66, "Back Country Skiing", Some(A::CrossCountrySkiing)),
    (67, "Cross Country Skiing", Some(A::CrossCountrySkiing)),
    (68, "Downhill Skiing", Some(A::DownhillSkiing)),
    (69, "Kite Skiing", None),
    // judgement: cross-country skiing on rollers.
    (70, "Roller Skiing", Some(A::CrossCountrySkiing)),
    (71, "Sledding", None),
    (73, "Snowboarding", Some(A::Snowboarding)),
    (74, "Snowmobile", None),
    (75, "Snowshoeing", None),
    (76, "Squash", Some(A::Squash)),
    (77, "Stair Climbing", Some(A::StairClimbing)),
    (78, "Stair Climbing Machine", Some(A::StairClimbing)),
    (79, "Stand Up Paddleboarding", Some(A::Paddling)),
    (80, "Strength Training", Some(A::StrengthTraining)),
    (81, "Surfing", Some(A::Surfing)),
    (82, "Swimming", Some(A::Swimming)),
    (83, "Swimming In Pool", Some(A::Swimming)),
    (84, "Open Water Swimming", Some(A::Swimming)),
    (85, "Table Tennis", Some(A::TableTennis)),
    (86, "Team Sport", None),
    (87, "Tennis", Some(A::Tennis)),
    // Walking or running on a treadmill: Terra does not say which.
    (88, "Treadmill", None),
    (89, "Volleyball", Some(A::Volleyball)),
    (90, "Beach Volleyball", Some(A::Volleyball)),
    (91, "Indoor Volleyball", Some(A::Volleyball)),
    (92, "Wakeboarding", None),
    (93, "Walking Fitness", Some(A::Walking)),
    (94, "Nording Walking", Some(A::Walking)),
    (95, "Walking Treadmill", Some(A::Walking)),
    (96, "Waterpolo", None),
    (97, "Weightlifting", Some(A::StrengthTraining)),
    (98, "Wheelchair", Some(A::Wheelchair)),
    (99, "Windsurfing", None),
    (100, "Yoga", Some(A::Yoga)),
    // judgement: a dance fitness class.
    (101, "Zumba", Some(A::Dance)),
    (102, "Diving", None),
    // Rowing or cycling ergometer: Terra does not say which.
    (103, "Ergometer", None),
    (104, "Ice Skating", Some(A::Skating)),
    (105, "Indoor Skating", Some(A::Skating)),
    (106, "Curling", None),
    (108, "Other", Some(A::Other)),
    (113, "Crossfit", Some(A::CrossTraining)),
    (114, "HIIT", Some(A::Hiit)),
    // judgement: interval training is HIIT.
    (115, "Interval Training", Some(A::Hiit)),
    (116, "Walkin Stroller", Some(A::Walking)),
    (117, "Elevator", None),
    (118, "Escalator", None),
    (119, "Archery", None),
    (120, "Softball", Some(A::Baseball)),
    (122, "Guided Breathing", Some(A::MindAndBody)),
    // judgement: unspecified cardio is mixed cardio.
    (123, "Cardio Training", Some(A::CrossTraining)),
    (124, "Lacrosse", None),
    (125, "Stretching", Some(A::Flexibility)),
    (126, "Triathlon", None),
    (127, "INLINE_SKATING", Some(A::Skating)),
    (128, "SKY_DIVING", None),
    (129, "PADDLING", Some(A::Paddling)),
    (130, "MOUNTAINEERING", None),
    (131, "FISHING", None),
    (132, "WATER_SKIING", None),
    (133, "INDOOR_RUNNING", Some(A::Running)),
    (134, "PADEL_TENNIS", None),
    (135, "DRIVING", None),
    (136, "OFF_ROAD_DRIVING", None),
    (137, "MOTORBIKING", None),
    (138, "MOTOR_RACING", None),
    (139, "ENDURO", None),
    (140, "CANOEING", Some(A::Paddling)),
    (141, "ORIENTEERING", None),
    (142, "HANG_GLIDING", None),
    (143, "FLYING", None),
    (144, "HOT_AIR_BALLOONING", None),
    (145, "JET_SKIING", None),
    (146, "POWER_BOATING", None),
    (147, "GAELIC_FOOTBALL", None),
    (148, "HURLING", None),
];

/// The session's activity for `metadata.type`, and the unmapped name to count when the
/// type has no code here. An absent type is [`Activity::Other`] with nothing to count.
pub(crate) fn sport(kind: Option<&Value>) -> (Activity, Option<String>) {
    let unmapped = |label: String| (Activity::Other, Some(format!("activity:{label}")));
    let row = match kind {
        None => return (Activity::Other, None),
        // `8.0` is 8: a serializer that writes every number as a float changes nothing.
        Some(Value::Number(n)) => match n.as_f64().filter(|f| f.fract() == 0.0) {
            Some(code) => TYPES.iter().find(|row| row.0 as f64 == code),
            None => return unmapped(crate::normalize::clip(&n.to_string())),
        },
        Some(Value::String(s)) => {
            let trimmed = s.trim();
            match trimmed.parse::<i64>() {
                Ok(code) => TYPES.iter().find(|row| row.0 == code),
                Err(_) => {
                    let key = squash(trimmed);
                    TYPES.iter().find(|row| squash(row.1) == key)
                }
            }
        }
        Some(other) => return unmapped(crate::normalize::clip(&other.to_string())),
    };
    match row {
        Some((_, _, Some(activity))) => (*activity, None),
        Some((code, _, None)) => unmapped(code.to_string()),
        None => unmapped(label_of(kind)),
    }
}

/// The type as written, for the unmapped counter (numbers as numbers, strings clipped).
fn label_of(kind: Option<&Value>) -> String {
    match kind {
        Some(Value::String(s)) => crate::normalize::clip(s.trim()),
        Some(v) => crate::normalize::clip(&v.to_string()),
        None => String::new(),
    }
}

/// Lower case without spaces or underscores: `Mountain Biking` = `MOUNTAIN_BIKING`.
fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace() && *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use serde_json::json;

    use super::*;

    #[test]
    fn numbers_and_names_are_unique() {
        let codes: HashSet<i64> = TYPES.iter().map(|r| r.0).collect();
        assert_eq!(codes.len(), TYPES.len());
        let names: HashSet<String> = TYPES.iter().map(|r| squash(r.1)).collect();
        assert_eq!(names.len(), TYPES.len());
    }

    #[test]
    fn mapped_unmapped_and_vendor_unknown() {
        assert_eq!(sport(Some(&json!(8))), (Activity::Running, None));
        assert_eq!(sport(Some(&json!("8"))), (Activity::Running, None));
        assert_eq!(sport(Some(&json!(8.0))), (Activity::Running, None));
        assert_eq!(
            sport(Some(&json!("MOUNTAIN_BIKING"))),
            (Activity::Cycling, None)
        );
        assert_eq!(
            sport(Some(&json!("open water swimming"))),
            (Activity::Swimming, None)
        );
        assert_eq!(sport(Some(&json!(108))), (Activity::Other, None));
        assert_eq!(sport(Some(&json!(4))), (Activity::Other, None));
        assert_eq!(sport(None), (Activity::Other, None));
        let other = |s: &str| (Activity::Other, Some(s.to_owned()));
        assert_eq!(sport(Some(&json!(26))), other("activity:26"));
        assert_eq!(sport(Some(&json!("Fencing"))), other("activity:26"));
        assert_eq!(sport(Some(&json!(999))), other("activity:999"));
        assert_eq!(sport(Some(&json!(8.5))), other("activity:8.5"));
        assert_eq!(sport(Some(&json!("kite flying"))), other("activity:kite flying"));
        assert_eq!(sport(Some(&json!(true))), other("activity:true"));
    }
}
