//! Suunto webhooks (accounts.md §4): the 24/7 events carry their samples inline, and
//! `WORKOUT_CREATED` a summary that is fetched again by `workoutKey` only when the
//! copy lacks what its readings need. Suunto names its user by `username`, which only
//! the linked account maps to ours, so every event goes through the fetch engine even
//! when nothing is fetched.

use serde_json::Value;

use super::normalize::{
    Event, normalize_samples, normalize_workout, workout_is_complete, workout_key,
};
use crate::fetch::{
    Api, BoxFuture, Job, MAX_ID_LEN, Notify, Prepared, Resolved, Stop, checked_id, extend,
};
use crate::normalize::NormalizeError;

/// Suunto's webhooks.
pub struct SuuntoNotify;

impl Notify for SuuntoNotify {
    fn prepare(&self, body: &[u8]) -> Result<Prepared, NormalizeError> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| NormalizeError::InvalidJson(e.to_string()))?;
        let username = v
            .get("username")
            .and_then(Value::as_str)
            // Usernames never reach a URL; they key the linked account, so anything
            // printable is accepted [unverified: Suunto's username alphabet].
            .filter(|u| !u.is_empty() && u.len() <= MAX_ID_LEN && u.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or(NormalizeError::MissingUserId("suunto event without username"))?
            .to_owned();
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| NormalizeError::UnsupportedShape("suunto event without type".into()))?;
        let job: Option<Box<dyn Job>> = match Event::of(kind)? {
            Event::Route => None,
            Event::Workout => {
                let workout = v.get("workout").cloned().unwrap_or(Value::Null);
                let key = workout_key(&workout).ok_or_else(|| {
                    NormalizeError::UnsupportedShape("WORKOUT_CREATED without workoutKey".into())
                })?;
                Some(Box::new(Workout {
                    key: checked_id(&key, "workoutKey")?,
                    inline: workout,
                }))
            }
            event => Some(Box::new(Inline { event, body: v })),
        };
        Ok(Prepared {
            vendor_user_id: username,
            job,
        })
    }
}

/// Samples carried by the webhook: nothing to fetch.
struct Inline {
    event: Event,
    body: Value,
}

impl Job for Inline {
    fn run<'a>(
        self: Box<Self>,
        _api: &'a mut dyn Api,
        user_id: &'a str,
        out: &'a mut Resolved,
    ) -> BoxFuture<'a, Result<(), Stop>> {
        let result = normalize_samples(user_id, self.event, &self.body)
            .map(|n| extend(&mut out.normalized, n))
            .map_err(Stop::from);
        Box::pin(std::future::ready(result))
    }
}

/// A workout: the webhook's copy when complete, else `GET /v2/workouts/{workoutKey}`.
struct Workout {
    key: String,
    inline: Value,
}

impl Job for Workout {
    fn run<'a>(
        self: Box<Self>,
        api: &'a mut dyn Api,
        user_id: &'a str,
        out: &'a mut Resolved,
    ) -> BoxFuture<'a, Result<(), Stop>> {
        Box::pin(async move {
            if workout_is_complete(&self.inline) {
                extend(&mut out.normalized, normalize_workout(user_id, &self.inline)?);
                return Ok(());
            }
            let doc = api.get(&format!("/v2/workouts/{}", self.key)).await?;
            // `{error, metadata, payload}`; payload is the workout (or, in some
            // clients' experience, a list of one) [C].
            let payloads = match doc.get("payload") {
                Some(Value::Array(items)) => items.as_slice(),
                Some(item @ Value::Object(_)) => std::slice::from_ref(item),
                _ => {
                    return Err(Stop::Reject(
                        "unsupported_shape",
                        "suunto workout response without payload".into(),
                    ));
                }
            };
            for workout in payloads {
                extend(&mut out.normalized, normalize_workout(user_id, workout)?);
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fetch::testing::{Recorded, run};

    fn prepare(body: Value) -> Prepared {
        SuuntoNotify
            .prepare(body.to_string().as_bytes())
            .expect("parses")
    }

    #[test]
    fn complete_workout_copy_is_not_fetched_and_an_incomplete_one_is() {
        let complete = json!({"type":"WORKOUT_CREATED","username":"u1","workout":{
            "workoutKey":"6760abc","startTime":1702729200000_i64,"totalTime":3600.0,"totalDistance":10000.0}});
        let mut api = Recorded::default();
        let (out, result) = run(prepare(complete).job.expect("job"), &mut api, "alice");
        assert!(result.is_ok());
        assert!(api.paths.is_empty(), "{:?}", api.paths);
        assert_eq!(out.normalized.readings.len(), 2);

        let partial = json!({"type":"WORKOUT_CREATED","username":"u1","workout":{"workoutKey":"6760abc"}});
        let fetched = json!({"error":null,"payload":{"workoutKey":"6760abc",
            "startTime":1702729200000_i64,"totalTime":1800.0}});
        let mut api = Recorded::default().on("/v2/workouts/6760abc", fetched);
        let (out, result) = run(prepare(partial).job.expect("job"), &mut api, "alice");
        assert!(result.is_ok());
        assert_eq!(api.paths, ["/v2/workouts/6760abc"]);
        assert_eq!(out.normalized.readings.len(), 1);
        assert_eq!(out.normalized.readings[0].value, 1800.0);
    }

    #[test]
    fn routes_are_acknowledged_and_hostile_input_refused() {
        assert!(prepare(json!({"type":"ROUTE_CREATED","username":"u1"})).job.is_none());
        let err = |body: Value| {
            SuuntoNotify
                .prepare(body.to_string().as_bytes())
                .unwrap_err()
                .reason()
        };
        assert_eq!(err(json!({"type":"WORKOUT_CREATED","username":"u1","workout":{"workoutKey":"../x"}})), "unsupported_shape");
        assert_eq!(err(json!({"type":"SUUNTO_247_SLEEP_CREATED"})), "missing_user_id");
        assert_eq!(err(json!({"type":"SOMETHING_NEW","username":"u1"})), "unsupported_type");
    }
}
