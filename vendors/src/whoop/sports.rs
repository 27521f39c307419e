//! WHOOP sports → the session vocabulary ([`Activity`]).
//!
//! WHOOP v2 workouts name their sport in `sport_name` (lower case, e.g. `running`,
//! `functional-fitness` in WHOOP's examples); v1 workouts only had the integer `sport_id`
//! (deprecated, "will not exist past 09/01/2025"), read only when `sport_name` is absent.
//! Names are compared after lower-casing and turning spaces, hyphens and `&` into `_`,
//! so `Functional Fitness`, `functional-fitness` and `functional_fitness` are one name.
//!
//! WHOOP publishes no complete list of sport names. The names below are WHOOP's sports
//! as its app lists them, written the way `sport_name` writes them; the ones seen in
//! WHOOP's own documentation examples are marked \[V\], the rest \[U\] (the app's list,
//! normalized by the rule above; liberal on purpose). A name not in the table becomes
//! [`Activity::Other`] and `activity:<sport_name>` in `Normalized::unmapped`, so a gap is
//! counted in production rather than guessed.
//!
//! | `sport_name` | Activity |
//! |---|---|
//! | `running` \[V\], `track_&_field`, `treadmill` | running |
//! | `cycling` \[V\], `mountain_biking`, `spin`, `assault_bike` | cycling |
//! | `walking`, `stroller_walking`, `dog_walking` | walking |
//! | `hiking`, `hiking/rucking`, `rucking` | hiking |
//! | `swimming`, `water_polo` | swimming |
//! | `rowing` | rowing |
//! | `elliptical` | elliptical |
//! | `stairmaster`, `stair_climber` | stair_climbing |
//! | `weightlifting` \[V\], `powerlifting`, `strength_trainer`, `bodybuilding` | strength_training |
//! | `functional_fitness` \[V\], `crossfit`, `obstacle_course_racing`, `f45_training`, `bootcamp` | cross_training |
//! | `hiit` | hiit |
//! | `yoga`, `hot_yoga` | yoga |
//! | `pilates` | pilates |
//! | `stretching`, `mobility` | flexibility |
//! | `meditation`, `breathwork` | mind_and_body |
//! | `dance`, `barre` | dance |
//! | `boxing`, `kickboxing` | boxing |
//! | `martial_arts`, `jiu_jitsu`, `wrestling`, `fencing` | martial_arts |
//! | `climber`, `rock_climbing` | climbing |
//! | `skiing`, `cross_country_skiing`, `snowboarding`, `ice_skating`, `inline_skating`, `skateboarding`, `surfing`, `kayaking`, `paddleboarding`, `canoeing` | their own codes |
//! | `golf`, `tennis`, `badminton`, `squash`, `table_tennis`, `pickleball`, `padel`, `soccer`, `basketball`, `volleyball`, `football`, `baseball`, `softball`, `ice_hockey`, `field_hockey`, `lacrosse`, `rugby`, `cricket` | their own codes |
//! | `wheelchair_pushing` | wheelchair |
//! | `activity`, `other` | other (WHOOP's own generic activity: no unmapped count) |
//!
//! `sport_id` (v1): only the ids community code has matched against real workouts \[U\]:
//! -1 activity, 0 running, 1 cycling, 16 baseball, 17 basketball, 18 rowing, 19 fencing,
//! 20 field hockey, 21 football, 22 golf, 24 ice hockey, 25 lacrosse, 27 rugby,
//! 29 skiing, 30 soccer, 31 softball, 32 squash, 33 swimming, 34 tennis, 43 pilates,
//! 44 yoga, 45 weightlifting, 48 functional fitness, 52 hiking, 63 walking, 71 other,
//! 96 HIIT. Any other id is unmapped as `activity:sport_id:<id>`.

use bridge_core::model::Activity;

/// A sport name in the form the table uses.
fn key(name: &str) -> String {
    name.trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| match c {
            ' ' | '-' | '&' => '_',
            c => c,
        })
        .collect::<String>()
        .split('_')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("_")
}

/// The activity for a WHOOP `sport_name`; `None` when the table does not know it.
pub fn by_name(name: &str) -> Option<Activity> {
    use Activity::*;
    Some(match key(name).as_str() {
        "running" | "track_field" | "track_and_field" | "treadmill" => Running,
        "cycling" | "mountain_biking" | "spin" | "spinning" | "assault_bike" | "bike" => Cycling,
        "walking" | "stroller_walking" | "dog_walking" => Walking,
        "hiking" | "hiking/rucking" | "rucking" => Hiking,
        "swimming" | "water_polo" => Swimming,
        "rowing" => Rowing,
        "elliptical" => Elliptical,
        "stairmaster" | "stair_climber" | "stairs" => StairClimbing,
        "weightlifting" | "powerlifting" | "strength_trainer" | "strength_training"
        | "weight_training" | "bodybuilding" => StrengthTraining,
        "functional_fitness" | "crossfit" | "circus_arts" | "obstacle_course_racing"
        | "f45_training" | "bootcamp" | "box_fitness" => CrossTraining,
        "hiit" | "high_intensity_interval_training" => Hiit,
        "yoga" | "hot_yoga" => Yoga,
        "pilates" => Pilates,
        "stretching" | "mobility" | "flexibility" => Flexibility,
        "meditation" | "breathwork" => MindAndBody,
        "dance" | "dancing" | "barre" => Dance,
        "boxing" | "kickboxing" => Boxing,
        "martial_arts" | "jiu_jitsu" | "wrestling" | "fencing" | "mma" => MartialArts,
        "climber" | "rock_climbing" | "climbing" | "bouldering" => Climbing,
        "skiing" | "downhill_skiing" => DownhillSkiing,
        "cross_country_skiing" => CrossCountrySkiing,
        "snowboarding" => Snowboarding,
        "ice_skating" | "inline_skating" | "skating" | "skateboarding" => Skating,
        "surfing" | "kite_boarding" | "wakeboarding" => Surfing,
        "kayaking" | "paddleboarding" | "canoeing" | "paddling" => Paddling,
        "golf" | "disc_golf" => Golf,
        "tennis" | "pickleball" | "padel" => Tennis,
        "badminton" => Badminton,
        "squash" | "racquetball" => Squash,
        "table_tennis" => TableTennis,
        "soccer" => Soccer,
        "basketball" => Basketball,
        "volleyball" => Volleyball,
        "football" | "american_football" => AmericanFootball,
        "baseball" | "softball" => Baseball,
        "ice_hockey" | "field_hockey" | "hockey" | "lacrosse" => Hockey,
        "rugby" => Rugby,
        "cricket" => Cricket,
        "wheelchair_pushing" | "wheelchair" => Wheelchair,
        "activity" | "other" | "misc" => Other,
        _ => return None,
    })
}

/// The activity for a v1 `sport_id`; `None` when the id is not in the table.
pub fn by_id(id: i64) -> Option<Activity> {
    use Activity::*;
    Some(match id {
        -1 | 71 => Other,
        0 => Running,
        1 => Cycling,
        16 | 31 => Baseball,
        17 => Basketball,
        18 => Rowing,
        19 => MartialArts,
        20 | 24 | 25 => Hockey,
        21 => AmericanFootball,
        22 => Golf,
        27 => Rugby,
        29 => DownhillSkiing,
        30 => Soccer,
        32 => Squash,
        33 => Swimming,
        34 => Tennis,
        43 => Pilates,
        44 => Yoga,
        45 => StrengthTraining,
        48 => CrossTraining,
        52 => Hiking,
        63 => Walking,
        96 => Hiit,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_compared_in_one_form() {
        assert_eq!(by_name("running"), Some(Activity::Running));
        assert_eq!(by_name("Functional Fitness"), Some(Activity::CrossTraining));
        assert_eq!(by_name("functional-fitness"), Some(Activity::CrossTraining));
        assert_eq!(by_name(" Track & Field "), Some(Activity::Running));
        assert_eq!(by_name("activity"), Some(Activity::Other));
        assert_eq!(by_name("underwater-basket-weaving"), None);
        assert_eq!(by_id(0), Some(Activity::Running));
        assert_eq!(by_id(12345), None);
    }
}
