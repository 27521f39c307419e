//! Polar AccessLink notifications (polar-spec.md §2) turned into GETs of the
//! non-transactional v3 endpoints, and the user registration `link-account` makes.
//!
//! Every request is built from the notification's validated entity id or date. The
//! notification's `url` is never read: a signed-but-hostile or misconfigured body cannot
//! point the processor at another host or path.

use chrono::NaiveDate;
use serde_json::{Value, json};

use super::normalize::{PolarDocKind, normalize_document, normalize_night};
use crate::fetch::{
    Api, BoxFuture, FetchOne, Job, LinkStep, Note, Notify, ParkReason, Prepared, Resolved, Stop, checked_id,
    notification_object,
};
use crate::normalize::{NormalizeError, parse_date};

const VENDOR: &str = "polar";

/// Polar's webhooks.
pub struct PolarNotify;

impl Notify for PolarNotify {
    fn prepare(&self, body: &[u8]) -> Result<Prepared, NormalizeError> {
        let (v, vendor_user_id) = notification_object(body, "user_id")?;
        // Polar user ids are int64 (sent as a number; some clients model a string).
        if !vendor_user_id.bytes().all(|b| b.is_ascii_digit()) || vendor_user_id.len() > 20 {
            return Err(shape("polar user_id is not an integer"));
        }
        Ok(Prepared {
            vendor_user_id,
            job: job(&v)?,
        })
    }
}

fn shape(msg: &str) -> NormalizeError {
    NormalizeError::UnsupportedShape(msg.into())
}

fn job(v: &Value) -> Result<Option<Box<dyn Job>>, NormalizeError> {
    let event = v
        .get("event")
        .and_then(Value::as_str)
        .ok_or_else(|| shape("polar notification without event"))?;
    let fetch = |kind: PolarDocKind, path| -> Option<Box<dyn Job>> {
        Some(Box::new(FetchOne {
            path,
            normalize: move |user: &str, doc: &Value| normalize_document(user, kind, doc),
        }))
    };
    Ok(match event {
        "EXERCISE" => {
            let id = v
                .get("entity_id")
                .and_then(Value::as_str)
                .ok_or_else(|| shape("polar EXERCISE without entity_id"))?;
            let id = checked_id(id, "entity_id")?;
            fetch(PolarDocKind::Exercise, format!("/v3/exercises/{id}"))
        }
        "SLEEP" => Some(Box::new(Night { date: date(v)? })),
        "CONTINUOUS_HEART_RATE" => fetch(
            PolarDocKind::ContinuousHeartRate,
            format!("/v3/users/continuous-heart-rate/{}", date(v)?),
        ),
        "ACTIVITY_SUMMARY" => fetch(
            PolarDocKind::Activity,
            format!("/v3/users/activities/{}", date(v)?),
        ),
        "PHYSICAL_INFORMATION" => fetch(PolarDocKind::PhysicalInfo, "/v3/users/physical-info".into()),
        // SleepWise alertness and bedtime have no canonical metric; a PING that reaches
        // the processor (the edge answers it) carries no data.
        "SLEEP_WISE_ALERTNESS" | "SLEEP_WISE_CIRCADIAN_BEDTIME" | "PING" => None,
        other => {
            return Err(NormalizeError::UnsupportedType {
                vendor: VENDOR,
                kind: other.chars().take(32).collect(),
            });
        }
    })
}

/// The notification's `date`, written back from the parsed calendar date so the path
/// carries nothing but `YYYY-MM-DD`.
fn date(v: &Value) -> Result<String, NormalizeError> {
    let raw = v
        .get("date")
        .and_then(Value::as_str)
        .ok_or_else(|| shape("polar notification without date"))?;
    let day: NaiveDate = parse_date("date", raw)?;
    let s = day.format("%Y-%m-%d").to_string();
    if s.len() == 10 && s.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        Ok(s)
    } else {
        Err(shape("polar date out of range"))
    }
}

/// A `SLEEP` notification: the night, then its Nightly Recharge (which has no event of
/// its own). A night without a recharge (404) is complete; a recharge that cannot be
/// fetched now parks the notification with the night already written.
struct Night {
    date: String,
}

impl Job for Night {
    fn run<'a>(
        self: Box<Self>,
        api: &'a mut dyn Api,
        user_id: &'a str,
        out: &'a mut Resolved,
    ) -> BoxFuture<'a, Result<(), Stop>> {
        Box::pin(async move {
            let sleep = api.get(&format!("/v3/users/sleep/{}", self.date)).await?;
            out.normalized = normalize_night(user_id, &sleep, None)?;
            let recharge = match api
                .get(&format!("/v3/users/nightly-recharge/{}", self.date))
                .await
            {
                Ok(doc) => doc,
                Err(Stop::NotFound(_)) => return Ok(()),
                Err(stop) => return Err(stop),
            };
            match normalize_night(user_id, &sleep, Some(&recharge)) {
                Ok(n) => out.normalized = n,
                // The night stands on its own: keep it, close the rest with the reason.
                Err(e) => {
                    out.note = Some(Note {
                        reason: ParkReason::Rejected,
                        retry_after: None,
                        detail: format!("nightly recharge: {e}"),
                    });
                }
            }
            Ok(())
        })
    }
}

/// AccessLink's mandatory registration (`POST /v3/users {"member-id"}`): data uploaded
/// before it is never served. `member-id` is our user id.
pub fn registration(user_id: &str) -> LinkStep {
    LinkStep {
        path: "/v3/users".into(),
        body: json!({ "member-id": user_id }),
        check: registration_answer,
    }
}

/// 200 registers (and names the Polar user, which must be the one being linked); 409 is
/// "already registered" (a re-link); 403 means the user has not accepted Polar's
/// mandatory consents.
fn registration_answer(status: u16, body: Option<&Value>, vendor_user_id: &str) -> Result<(), String> {
    match status {
        200 | 201 => {
            let polar_user = body.and_then(|b| crate::fetch::id_field(b, "polar-user-id"));
            match polar_user {
                Some(id) if id != vendor_user_id => Err(format!(
                    "Polar registered this token as user {id}, not {vendor_user_id}: pass --vendor-user-id {id}"
                )),
                _ => Ok(()),
            }
        }
        409 => Ok(()),
        403 => Err("the user has not accepted Polar's mandatory consents (HTTP 403); they must do so at account.polar.com, then link again".into()),
        401 => Err("Polar refused the access token (HTTP 401)".into()),
        204 => Err("Polar knows no user for this access token (HTTP 204)".into()),
        s => Err(format!("Polar user registration answered HTTP {s}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::testing::{Recorded, run};

    fn prepare(body: &str) -> Result<Prepared, NormalizeError> {
        PolarNotify.prepare(body.as_bytes())
    }

    fn paths(body: &str) -> Vec<String> {
        let n = prepare(body).unwrap();
        assert_eq!(n.vendor_user_id, "475");
        let mut api = Recorded::default();
        let _ = run(n.job.expect("a job"), &mut api, "alice");
        api.paths
    }

    #[test]
    fn each_event_fetches_its_endpoint_never_the_url() {
        let evil = r#""url":"http://127.0.0.1:1/v3/users/sleep/2025-01-01/../../../admin""#;
        assert_eq!(
            paths(&format!(
                r#"{{"event":"EXERCISE","user_id":475,"entity_id":"aQlC83",{evil}}}"#
            )),
            ["/v3/exercises/aQlC83"]
        );
        assert_eq!(
            paths(&format!(r#"{{"event":"CONTINUOUS_HEART_RATE","user_id":"475","date":"2025-01-01",{evil}}}"#)),
            ["/v3/users/continuous-heart-rate/2025-01-01"]
        );
        assert_eq!(
            paths(r#"{"event":"ACTIVITY_SUMMARY","user_id":475,"date":"2025-01-01"}"#),
            ["/v3/users/activities/2025-01-01"]
        );
        assert_eq!(
            paths(r#"{"event":"PHYSICAL_INFORMATION","user_id":475}"#),
            ["/v3/users/physical-info"]
        );
        // The night 404s here, so the recharge is not asked for.
        assert_eq!(
            paths(r#"{"event":"SLEEP","user_id":475,"date":"2025-01-01"}"#),
            ["/v3/users/sleep/2025-01-01"]
        );
    }

    #[test]
    fn sleep_fetches_the_recharge_and_a_missing_one_is_fine() {
        let sleep = json!({"date": "2025-01-01", "sleep_start_time": "2025-01-01T00:00:00Z",
                           "sleep_end_time": "2025-01-01T08:00:00Z", "sleep_score": 80});
        let recharge = json!({"date": "2025-01-01", "heart_rate_avg": 50});
        let body = r#"{"event":"SLEEP","user_id":475,"date":"2025-01-01"}"#;
        let mut api = Recorded::default()
            .on("/v3/users/sleep/2025-01-01", sleep.clone())
            .on("/v3/users/nightly-recharge/2025-01-01", recharge);
        let (out, result) = run(prepare(body).unwrap().job.unwrap(), &mut api, "alice");
        assert!(result.is_ok());
        assert_eq!(
            api.paths,
            [
                "/v3/users/sleep/2025-01-01",
                "/v3/users/nightly-recharge/2025-01-01"
            ]
        );
        // The sleep's session row and score, the recharge's heart rate.
        assert_eq!(out.normalized.readings.len(), 3);

        let mut api = Recorded::default().on("/v3/users/sleep/2025-01-01", sleep.clone());
        let (out, result) = run(prepare(body).unwrap().job.unwrap(), &mut api, "alice");
        assert!(result.is_ok() && out.note.is_none());
        assert_eq!(out.normalized.readings.len(), 2);

        // A broken recharge keeps the night and closes the notification with the reason.
        let mut api = Recorded::default()
            .on("/v3/users/sleep/2025-01-01", sleep)
            .on("/v3/users/nightly-recharge/2025-01-01", json!([]));
        let (out, result) = run(prepare(body).unwrap().job.unwrap(), &mut api, "alice");
        assert!(result.is_ok());
        assert_eq!(out.normalized.readings.len(), 2);
        assert_eq!(out.note.map(|n| n.reason), Some(ParkReason::Rejected));
    }

    #[test]
    fn hostile_and_unknown_notifications_are_refused() {
        for body in [
            r#"{"event":"EXERCISE","user_id":475,"entity_id":"../users/1"}"#,
            r#"{"event":"EXERCISE","user_id":475,"entity_id":"a?b=c"}"#,
            r#"{"event":"EXERCISE","user_id":475}"#,
            r#"{"event":"SLEEP","user_id":475,"date":"2025-01-01/../../x"}"#,
            r#"{"event":"SLEEP","user_id":475,"date":"+12345-01-01"}"#,
            r#"{"event":"SLEEP","user_id":475}"#,
            r#"{"event":"SLEEP","user_id":"abc","date":"2025-01-01"}"#,
            r#"{"user_id":475}"#,
        ] {
            assert!(prepare(body).is_err(), "{body}");
        }
        assert_eq!(
            prepare(r#"{"event":"SLEEP","date":"2025-01-01"}"#)
                .unwrap_err()
                .reason(),
            "missing_user_id"
        );
        assert_eq!(
            prepare(r#"{"event":"NIGHTLY_RECHARGE","user_id":475}"#)
                .unwrap_err()
                .reason(),
            "unsupported_type"
        );
        for quiet in ["SLEEP_WISE_ALERTNESS", "SLEEP_WISE_CIRCADIAN_BEDTIME"] {
            let body = format!(r#"{{"event":"{quiet}","user_id":475,"from":"2025-01-01","to":"2025-01-02"}}"#);
            assert!(prepare(&body).unwrap().job.is_none());
        }
    }

    #[test]
    fn registration_answers() {
        let step = registration("alice");
        assert_eq!(step.path, "/v3/users");
        assert_eq!(step.body, json!({"member-id": "alice"}));
        let ok = json!({"polar-user-id": 475, "member-id": "alice"});
        assert!((step.check)(200, Some(&ok), "475").is_ok());
        let other = (step.check)(200, Some(&ok), "476").unwrap_err();
        assert!(other.contains("--vendor-user-id 475"), "{other}");
        assert!((step.check)(409, None, "475").is_ok());
        assert!((step.check)(403, None, "475").unwrap_err().contains("consents"));
        for s in [204, 400, 401, 500] {
            assert!((step.check)(s, None, "475").is_err(), "{s}");
        }
    }
}
