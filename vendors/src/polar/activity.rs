//! Polar sport names -> the session vocabulary ([`Activity`]).
//!
//! AccessLink names an exercise's sport twice: `sport` (a coarse class such as `RUNNING`,
//! `CYCLING`, `OTHER`) and `detailed_sport_info` (`RUNNING_ROAD`, `WATERSPORTS_WATERSKI`,
//! …). Polar publishes no complete list of either (unverified), so the mapping is liberal:
//! the detailed name is matched first, by the words it contains, then the coarse one. A
//! name neither matches is `other`, and the caller reports it as unmapped.

use bridge_core::model::Activity;

/// Words of a Polar sport name and the activity they mean, most specific first (a
/// `TRAIL_RUNNING` is running, a `CROSS_COUNTRY_SKIING` is not downhill skiing).
const WORDS: &[(&[&str], Activity)] = &[
    (&["CROSS_COUNTRY_SKI", "NORDIC_SKI", "XC_SKI", "ROLLER_SKI"], Activity::CrossCountrySkiing),
    (&["DOWNHILL_SKI", "ALPINE_SKI", "SKIING_DOWNHILL", "TELEMARK"], Activity::DownhillSkiing),
    (&["SNOWBOARD"], Activity::Snowboarding),
    (&["NORDIC_WALK", "WALK"], Activity::Walking),
    (&["HIK", "TREKK", "MOUNTAINEER"], Activity::Hiking),
    (&["RUN", "JOG", "TREADMILL", "ORIENTEERING"], Activity::Running),
    (&["CYCL", "BIK", "SPINNING", "BMX"], Activity::Cycling),
    (&["SWIM"], Activity::Swimming),
    (&["ROW"], Activity::Rowing),
    (&["ELLIPTICAL", "CROSS_TRAINER", "CROSSTRAINER"], Activity::Elliptical),
    (&["STAIR", "STEP_MACHINE"], Activity::StairClimbing),
    (&["STRENGTH", "WEIGHT", "GYM", "KETTLEBELL", "CORE", "CIRCUIT", "BODY_AND_MIND_CORE"], Activity::StrengthTraining),
    (&["HIIT", "HIGH_INTENSITY"], Activity::Hiit),
    (&["CROSSFIT", "CROSS_TRAINING", "BOOTCAMP", "FUNCTIONAL"], Activity::CrossTraining),
    (&["YOGA"], Activity::Yoga),
    (&["PILATES"], Activity::Pilates),
    (&["STRETCH", "MOBILITY"], Activity::Flexibility),
    (&["MEDITAT", "BREATH"], Activity::MindAndBody),
    (&["DANC", "ZUMBA"], Activity::Dance),
    (&["BOX"], Activity::Boxing),
    (&["MARTIAL", "KARATE", "JUDO", "TAEKWONDO", "COMBAT"], Activity::MartialArts),
    (&["CLIMB", "BOULDER"], Activity::Climbing),
    (&["SKAT"], Activity::Skating),
    (&["SURF"], Activity::Surfing),
    (&["PADDL", "KAYAK", "CANOE", "SUP"], Activity::Paddling),
    (&["GOLF"], Activity::Golf),
    (&["TABLE_TENNIS"], Activity::TableTennis),
    (&["TENNIS"], Activity::Tennis),
    (&["BADMINTON"], Activity::Badminton),
    (&["SQUASH"], Activity::Squash),
    (&["AMERICAN_FOOTBALL"], Activity::AmericanFootball),
    // Polar is Finnish: its FOOTBALL is association football (unverified).
    (&["SOCCER", "FOOTBALL", "FUTSAL"], Activity::Soccer),
    (&["BASKETBALL"], Activity::Basketball),
    (&["VOLLEYBALL"], Activity::Volleyball),
    (&["BASEBALL", "SOFTBALL"], Activity::Baseball),
    (&["HOCKEY", "FLOORBALL", "BANDY"], Activity::Hockey),
    (&["RUGBY"], Activity::Rugby),
    (&["CRICKET"], Activity::Cricket),
    (&["WHEELCHAIR"], Activity::Wheelchair),
];

fn by_words(name: &str) -> Option<Activity> {
    let name = name.trim().to_ascii_uppercase();
    WORDS
        .iter()
        .find(|(words, _)| words.iter().any(|w| name.contains(w)))
        .map(|(_, a)| *a)
}

/// The activity of an exercise, and the name to report as unmapped when none fits.
pub(crate) fn activity(sport: Option<&str>, detailed: Option<&str>) -> (Activity, Option<String>) {
    if let Some(a) = detailed.and_then(by_words).or_else(|| sport.and_then(by_words)) {
        return (a, None);
    }
    let name = detailed.or(sport).filter(|n| !n.trim().is_empty());
    (Activity::Other, name.map(|n| format!("activity:{}", n.trim())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detailed_names_win_and_unknown_names_are_reported() {
        assert_eq!(activity(Some("RUNNING"), Some("RUNNING_ROAD")), (Activity::Running, None));
        assert_eq!(activity(Some("RUNNING"), Some("TRAIL_RUNNING")), (Activity::Running, None));
        assert_eq!(
            activity(Some("OTHER"), Some("CROSS_COUNTRY_SKIING")),
            (Activity::CrossCountrySkiing, None)
        );
        assert_eq!(activity(Some("CYCLING"), None), (Activity::Cycling, None));
        assert_eq!(activity(None, Some("TABLE_TENNIS")), (Activity::TableTennis, None));
        assert_eq!(
            activity(Some("OTHER"), Some("WATERSPORTS_WATERSKI")),
            (Activity::Other, Some("activity:WATERSPORTS_WATERSKI".into()))
        );
        assert_eq!(activity(None, None), (Activity::Other, None));
    }
}
