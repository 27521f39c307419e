//! Sport names by the words they contain -> the session vocabulary ([`Activity`]).
//!
//! For vendors that name sports in free-ish upper-case words (Polar's
//! `RUNNING_ROAD`, Google Health's exercise types) and publish no complete list: the
//! first entry one of whose words the name contains wins, so more specific entries come
//! first. Vendors with a documented closed list (Suunto's ids, Terra's enum) keep exact
//! tables of their own.

use bridge_core::model::Activity;

/// Words of a sport name and the activity they mean, most specific first (a
/// `TRAIL_RUNNING` is running, a `CROSS_COUNTRY_SKIING` is not downhill skiing).
const WORDS: &[(&[&str], Activity)] = &[
    (
        &["CROSS_COUNTRY_SKI", "NORDIC_SKI", "XC_SKI", "ROLLER_SKI"],
        Activity::CrossCountrySkiing,
    ),
    (
        &["DOWNHILL_SKI", "ALPINE_SKI", "SKIING_DOWNHILL", "TELEMARK"],
        Activity::DownhillSkiing,
    ),
    (&["SNOWBOARD"], Activity::Snowboarding),
    (&["NORDIC_WALK", "WALK"], Activity::Walking),
    (&["HIK", "TREKK", "MOUNTAINEER"], Activity::Hiking),
    (
        &["RUN", "JOG", "TREADMILL", "ORIENTEERING"],
        Activity::Running,
    ),
    (&["CYCL", "BIK", "SPINNING", "BMX"], Activity::Cycling),
    (&["SWIM"], Activity::Swimming),
    (&["ROW"], Activity::Rowing),
    (
        &["ELLIPTICAL", "CROSS_TRAINER", "CROSSTRAINER"],
        Activity::Elliptical,
    ),
    (&["STAIR", "STEP_MACHINE"], Activity::StairClimbing),
    (
        &[
            "STRENGTH",
            "WEIGHT",
            "GYM",
            "KETTLEBELL",
            "CORE",
            "CIRCUIT",
            "BODY_AND_MIND_CORE",
        ],
        Activity::StrengthTraining,
    ),
    (&["HIIT", "HIGH_INTENSITY"], Activity::Hiit),
    (
        &["CROSSFIT", "CROSS_TRAINING", "BOOTCAMP", "FUNCTIONAL"],
        Activity::CrossTraining,
    ),
    (&["YOGA"], Activity::Yoga),
    (&["PILATES"], Activity::Pilates),
    (&["STRETCH", "MOBILITY"], Activity::Flexibility),
    (&["MEDITAT", "BREATH"], Activity::MindAndBody),
    (&["DANC", "ZUMBA"], Activity::Dance),
    (&["BOX"], Activity::Boxing),
    (
        &["MARTIAL", "KARATE", "JUDO", "TAEKWONDO", "COMBAT"],
        Activity::MartialArts,
    ),
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
    // FOOTBALL alone is association football (Polar is Finnish; unverified).
    (&["SOCCER", "FOOTBALL", "FUTSAL"], Activity::Soccer),
    (&["BASKETBALL"], Activity::Basketball),
    (&["VOLLEYBALL"], Activity::Volleyball),
    (&["BASEBALL", "SOFTBALL"], Activity::Baseball),
    (&["HOCKEY", "FLOORBALL", "BANDY"], Activity::Hockey),
    (&["RUGBY"], Activity::Rugby),
    (&["CRICKET"], Activity::Cricket),
    (&["WHEELCHAIR"], Activity::Wheelchair),
];

pub(crate) fn by_words(name: &str) -> Option<Activity> {
    let name = name.trim().to_ascii_uppercase();
    WORDS
        .iter()
        .find(|(words, _)| words.iter().any(|w| name.contains(w)))
        .map(|(_, a)| *a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specific_words_win() {
        assert_eq!(by_words("TRAIL_RUNNING"), Some(Activity::Running));
        assert_eq!(
            by_words("cross_country_skiing"),
            Some(Activity::CrossCountrySkiing)
        );
        assert_eq!(by_words("TABLE_TENNIS"), Some(Activity::TableTennis));
        assert_eq!(
            by_words("AMERICAN_FOOTBALL"),
            Some(Activity::AmericanFootball)
        );
        assert_eq!(by_words("WATERSPORTS_WATERSKI"), None);
    }
}
