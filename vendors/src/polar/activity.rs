//! Polar sport names -> the session vocabulary ([`Activity`]).
//!
//! AccessLink names an exercise's sport twice: `sport` (a coarse class such as `RUNNING`,
//! `CYCLING`, `OTHER`) and `detailed_sport_info` (`RUNNING_ROAD`, `WATERSPORTS_WATERSKI`,
//! …). Polar publishes no complete list of either (unverified), so the mapping is liberal:
//! the detailed name is matched first, by the words it contains, then the coarse one. A
//! name neither matches is `other`, and the caller reports it as unmapped.

use bridge_core::model::Activity;

use crate::normalize::activity::by_words;

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
