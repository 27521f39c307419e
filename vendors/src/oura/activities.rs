//! Oura workout `activity` names → the session vocabulary ([`Activity`]).
//!
//! Oura's OpenAPI types `activity` as a free string and publishes no list. The names below
//! are the workout types the Oura app offers, written as the API writes them; `walking`,
//! `running` and `cycling` are seen in Oura's examples and community clients \[C\], the rest
//! are the app's list \[U\], liberal on purpose. Names are compared after splitting
//! camelCase and lower-casing, with spaces and hyphens as `_` (`strengthTraining`,
//! `strength training` and `strength_training` are one name). A name not in the table
//! becomes [`Activity::Other`] and `activity:<name>` in `Normalized::unmapped`.
//!
//! | `activity` | Activity |
//! |---|---|
//! | `running`, `treadmill_running`, `trail_running` | running |
//! | `walking`, `nordic_walking` | walking |
//! | `hiking` | hiking |
//! | `cycling`, `indoor_cycling`, `mountain_biking`, `spinning` | cycling |
//! | `swimming`, `open_water_swimming` | swimming |
//! | `rowing`, `indoor_rowing` | rowing |
//! | `elliptical`, `cross_trainer` | elliptical |
//! | `stair_climbing`, `stair_stepper` | stair_climbing |
//! | `strength_training`, `weightlifting`, `weight_training`, `bodyweight` | strength_training |
//! | `hiit`, `interval_training` | hiit |
//! | `crossfit`, `cross_training`, `bootcamp`, `circuit_training`, `functional_training` | cross_training |
//! | `yoga`, `pilates`, `stretching` | yoga, pilates, flexibility |
//! | `meditation`, `breathwork` | mind_and_body |
//! | `dancing`, `dance`, `barre`, `aerobics` | dance |
//! | `boxing`, `kickboxing`, `martial_arts` | boxing, martial_arts |
//! | `climbing`, `bouldering` | climbing |
//! | `skiing`, `downhill_skiing`, `cross_country_skiing`, `snowboarding`, `ice_skating`, `skating`, `surfing`, `kayaking`, `paddling`, `stand_up_paddling`, `canoeing` | their own codes |
//! | `golf`, `tennis`, `padel`, `pickleball`, `badminton`, `squash`, `table_tennis`, `soccer`, `football`, `basketball`, `volleyball`, `american_football`, `baseball`, `softball`, `hockey`, `ice_hockey`, `rugby`, `cricket` | their own codes (`football` is soccer: Oura is Finnish) |
//! | `wheelchair` | wheelchair |
//! | `other`, `unknown` | other (no unmapped count) |

use bridge_core::model::Activity;

/// An activity name in the form the table uses (`strengthTraining` → `strength_training`).
fn key(name: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in name.trim().chars() {
        if c.is_ascii_uppercase() && prev_lower {
            out.push('_');
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        match c {
            ' ' | '-' => out.push('_'),
            c => out.push(c.to_ascii_lowercase()),
        }
    }
    out.split('_')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("_")
}

/// The activity for an Oura workout `activity`; `None` when the table does not know it.
pub fn by_name(name: &str) -> Option<Activity> {
    use Activity::*;
    Some(match key(name).as_str() {
        "running" | "treadmill_running" | "trail_running" | "jogging" => Running,
        "walking" | "nordic_walking" => Walking,
        "hiking" => Hiking,
        "cycling" | "indoor_cycling" | "mountain_biking" | "spinning" | "biking" => Cycling,
        "swimming" | "open_water_swimming" => Swimming,
        "rowing" | "indoor_rowing" => Rowing,
        "elliptical" | "cross_trainer" => Elliptical,
        "stair_climbing" | "stair_stepper" => StairClimbing,
        "strength_training" | "weightlifting" | "weight_training" | "bodyweight" => {
            StrengthTraining
        }
        "hiit" | "interval_training" => Hiit,
        "crossfit" | "cross_training" | "bootcamp" | "circuit_training" | "functional_training" => {
            CrossTraining
        }
        "yoga" => Yoga,
        "pilates" => Pilates,
        "stretching" | "mobility" => Flexibility,
        "meditation" | "breathwork" => MindAndBody,
        "dancing" | "dance" | "barre" | "aerobics" => Dance,
        "boxing" | "kickboxing" => Boxing,
        "martial_arts" => MartialArts,
        "climbing" | "bouldering" => Climbing,
        "skiing" | "downhill_skiing" => DownhillSkiing,
        "cross_country_skiing" => CrossCountrySkiing,
        "snowboarding" => Snowboarding,
        "ice_skating" | "skating" | "inline_skating" => Skating,
        "surfing" => Surfing,
        "kayaking" | "paddling" | "stand_up_paddling" | "canoeing" => Paddling,
        "golf" => Golf,
        "tennis" | "padel" | "pickleball" => Tennis,
        "badminton" => Badminton,
        "squash" => Squash,
        "table_tennis" => TableTennis,
        "soccer" | "football" => Soccer,
        "basketball" => Basketball,
        "volleyball" => Volleyball,
        "american_football" => AmericanFootball,
        "baseball" | "softball" => Baseball,
        "hockey" | "ice_hockey" | "floorball" => Hockey,
        "rugby" => Rugby,
        "cricket" => Cricket,
        "wheelchair" => Wheelchair,
        "other" | "unknown" => Other,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_compared_in_one_form() {
        assert_eq!(by_name("cycling"), Some(Activity::Cycling));
        assert_eq!(by_name("strengthTraining"), Some(Activity::StrengthTraining));
        assert_eq!(by_name("Strength training"), Some(Activity::StrengthTraining));
        assert_eq!(by_name("cross-country-skiing"), Some(Activity::CrossCountrySkiing));
        assert_eq!(by_name("other"), Some(Activity::Other));
        assert_eq!(by_name("sauna"), None);
    }
}
