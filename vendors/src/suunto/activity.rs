//! Suunto `activityId` -> the session vocabulary ([`Activity`]).
//!
//! The ids are Suunto's documented activity list (its API Zone "Activities" document, as
//! Open Wearables' Suunto provider transcribes it; not checked against the PDF itself:
//! unverified). Ids Suunto leaves generic ("Sports", "Ball games", "Water sports") and
//! sports outside the vocabulary are `other` and reported as unmapped.

use bridge_core::model::Activity;

/// The activity of a Suunto `activityId`; `None` when no code fits.
fn known(id: i64) -> Option<Activity> {
    use Activity::*;
    Some(match id {
        0 | 24 => Walking, // 24: Nordic walking
        1 | 22 | 53 | 59 | 95 | 103 | 115 => Running, // trail, treadmill, track and field, obstacle, track, vertical
        2 | 10 | 52 | 99 | 105 | 106 | 109 | 114 => Cycling, // mountain, indoor, gravel, e-bike, e-MTB, hand, cyclocross
        3 | 56 | 117 | 118 => CrossCountrySkiing, // roller, skate, classic skiing
        11 | 70 | 83 => Hiking, // trekking, mountaineering
        12 | 49 => Skating, // roller skating, ice skating
        13 | 84 => DownhillSkiing, // telemark
        14 | 61 | 72 | 82 => Paddling, // standup paddling, kayaking, canoeing
        15 | 57 => Rowing, // indoor rowing
        16 => Golf,
        21 | 85 => Swimming, // open water
        23 | 63 | 73 | 104 => StrengthTraining, // gym, kettlebell, circuit training, calisthenics
        29 => Climbing,
        30 | 110 => Snowboarding, // splitboarding
        32 | 54 | 69 | 76 => CrossTraining, // fitness class, Crossfit, aerobics, cheerleading
        33 | 67 => Soccer, // futsal
        34 => Tennis,
        35 => Basketball,
        36 => Badminton,
        37 | 45 => Baseball, // softball
        38 => Volleyball,
        39 => AmericanFootball,
        40 => TableTennis,
        42 => Squash,
        43 | 50 | 113 => Hockey, // floorball, ice hockey, field hockey
        47 => Cricket,
        48 => Rugby,
        51 => Yoga, // "Yoga/pilates"
        55 => Elliptical, // crosstrainer
        58 => Flexibility, // stretching
        62 => MartialArts, // combat sport
        64 => Dance,
        77 => Boxing,
        91 => Surfing,
        102 => Hiit, // jump rope: interval cardio is the nearest code
        108 => Wheelchair,
        112 => MindAndBody, // meditation
        120 => Pilates,
        121 => Yoga,
        _ => return None,
    })
}

/// The activity of a workout, and the name to report as unmapped when none fits.
pub(crate) fn activity(id: Option<i64>) -> (Activity, Option<String>) {
    match id {
        Some(id) => match known(id) {
            Some(a) => (a, None),
            None => (Activity::Other, Some(format!("activity:{id}"))),
        },
        None => (Activity::Other, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_ids_map_and_generic_ones_are_reported() {
        assert_eq!(activity(Some(1)), (Activity::Running, None));
        assert_eq!(activity(Some(3)), (Activity::CrossCountrySkiing, None));
        assert_eq!(activity(Some(22)), (Activity::Running, None));
        assert_eq!(activity(Some(121)), (Activity::Yoga, None));
        // 4..9 are generic "Sports": no code, reported.
        assert_eq!(activity(Some(4)), (Activity::Other, Some("activity:4".into())));
        assert_eq!(activity(None), (Activity::Other, None));
    }
}
