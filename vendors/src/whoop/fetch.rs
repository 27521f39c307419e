//! WHOOP notifications (vendors.md §2.3) turned into document fetches or deletions.

use serde_json::Value;

use super::normalize::{ScoreState, WhoopDocKind, normalize_document, score_state};
use crate::fetch::{
    Api, BoxFuture, Delete, Job, Note, Notify, ParkReason, Prepared, Resolved, Stop, checked_id,
    extend, notification_object,
};
use crate::normalize::NormalizeError;

const VENDOR: &str = "whoop";

/// A WHOOP id: v2 sleeps and workouts are UUIDs, cycles (and v1 everything) integers.
/// Only a cycle id may be an integer here (v1 sleep and workout ids are refused).
#[derive(Debug, Clone, PartialEq, Eq)]
enum WhoopId {
    /// An integer id (a cycle id for `recovery.*`).
    Int(i64),
    /// A UUID (or any other opaque string id).
    Uuid(String),
}

impl std::fmt::Display for WhoopId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WhoopId::Int(i) => write!(f, "{i}"),
            WhoopId::Uuid(s) => f.write_str(s),
        }
    }
}

/// What a WHOOP notification asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    /// `sleep.updated`.
    Sleep(WhoopId),
    /// `workout.updated`.
    Workout(WhoopId),
    /// `recovery.updated`: an integer is the cycle id; a UUID is (most likely) the sleep
    /// id, whose `cycle_id` leads to the recovery (vendors.md §2.3).
    Recovery(WhoopId),
    /// `recovery.deleted` with a UUID: the recovery's id is `recovery:<cycle_id>` and
    /// only the (deleted) sleep knew the cycle; resolved by trying the sleep.
    RecoveryDeletedBySleep(String),
}

/// WHOOP's webhooks.
pub struct WhoopNotify;

impl Notify for WhoopNotify {
    fn prepare(&self, body: &[u8]) -> Result<Prepared, NormalizeError> {
        let (v, vendor_user_id) = notification_object(body, "user_id")?;
        Ok(Prepared {
            vendor_user_id,
            job: Some(job(&v)?),
        })
    }
}

fn shape(msg: &str) -> NormalizeError {
    NormalizeError::UnsupportedShape(msg.into())
}

fn job(v: &Value) -> Result<Box<dyn Job>, NormalizeError> {
    let kind = v
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| shape("whoop without type"))?;
    let id = match v.get("id") {
        Some(Value::Number(n)) => WhoopId::Int(n.as_i64().ok_or_else(|| shape("whoop id"))?),
        // v1 sent integers; tolerate one written as a string.
        Some(Value::String(s)) => match s.parse::<i64>() {
            Ok(i) => WhoopId::Int(i),
            Err(_) => WhoopId::Uuid(checked_id(s, "id")?),
        },
        _ => return Err(shape("whoop without id")),
    };
    let delete = |ids: Vec<String>| -> Box<dyn Job> {
        Box::new(Delete {
            vendor: VENDOR,
            source_record_ids: ids,
        })
    };
    // A v1-model webhook (WHOOP's legacy setting) names sleeps and workouts by their
    // integer v1 id. The v2 API only takes the UUID, the v1 API is retired, and v2
    // documents carried the old id (`v1_id`) only until 09/01/2025, so no request can
    // find the document, and a delete keyed by the integer would match no row (rows are
    // keyed by the UUID). Refused loudly, never fetched into a 404 and closed as
    // not_found. Cycles kept their integer ids in v2, so `recovery.*` with an integer
    // (the cycle id, as v1 documented) is still resolved.
    let keyed_by_uuid = kind.starts_with("sleep.") || kind.starts_with("workout.");
    if let (true, WhoopId::Int(n)) = (keyed_by_uuid, &id) {
        return Err(v1_webhook(kind, *n));
    }
    Ok(match kind {
        "sleep.updated" => Box::new(Action::Sleep(id)),
        "workout.updated" => Box::new(Action::Workout(id)),
        "recovery.updated" => Box::new(Action::Recovery(id)),
        // The normalizers key sleeps and workouts by their id.
        "sleep.deleted" | "workout.deleted" => delete(vec![id.to_string()]),
        "recovery.deleted" => match id {
            WhoopId::Int(cycle) => delete(vec![format!("recovery:{cycle}")]),
            WhoopId::Uuid(sleep) => Box::new(Action::RecoveryDeletedBySleep(sleep)),
        },
        other => {
            return Err(NormalizeError::UnsupportedType {
                vendor: VENDOR,
                kind: other.chars().take(64).collect(),
            });
        }
    })
}

/// The dead-letter for a v1-model webhook: a reason of its own (`unsupported_version`),
/// so the DLQ record, its metric label and the processor's log say what happened and
/// what the operator must change.
fn v1_webhook(kind: &str, id: i64) -> NormalizeError {
    NormalizeError::UnsupportedVersion {
        vendor: VENDOR,
        detail: format!(
            "v1 webhook {} with integer id {id}: the v2 API needs the UUID; set the app's \
             webhook model version to v2 in the WHOOP developer dashboard",
            kind.chars().take(32).collect::<String>()
        ),
    }
}

/// A note when a document is not scored yet (fetched again) or never will be.
fn score_note(doc: &Value, what: &str) -> Option<Note> {
    let (reason, state) = match score_state(doc) {
        ScoreState::Scored => return None,
        ScoreState::Pending => (ParkReason::PendingScore, "PENDING_SCORE"),
        ScoreState::Unscorable => (ParkReason::Unscorable, "UNSCORABLE"),
        ScoreState::Missing => (ParkReason::NoScoreState, "missing"),
    };
    Some(Note {
        reason,
        retry_after: None,
        detail: format!("whoop {what} score_state {state}"),
    })
}

/// The integer `cycle_id` of a WHOOP sleep (also a URL path segment, so integers only).
fn cycle_id(sleep: &Value) -> Result<i64, Stop> {
    sleep
        .get("cycle_id")
        .and_then(Value::as_i64)
        .ok_or_else(|| {
            Stop::Reject(
                "unsupported_shape",
                "whoop sleep without an integer cycle_id".into(),
            )
        })
}

impl Job for Action {
    fn run<'a>(
        self: Box<Self>,
        api: &'a mut dyn Api,
        user_id: &'a str,
        out: &'a mut Resolved,
    ) -> BoxFuture<'a, Result<(), Stop>> {
        Box::pin(async move {
            match *self {
                Action::Sleep(id) => {
                    let doc = api.get(&format!("/v2/activity/sleep/{id}")).await?;
                    out.note = score_note(&doc, "sleep");
                    out.normalized = normalize_document(user_id, WhoopDocKind::Sleep, &doc)?;
                }
                Action::Workout(id) => {
                    let doc = api.get(&format!("/v2/activity/workout/{id}")).await?;
                    out.note = score_note(&doc, "workout");
                    out.normalized = normalize_document(user_id, WhoopDocKind::Workout, &doc)?;
                }
                Action::Recovery(id) => recovery(api, user_id, id, out).await?,
                Action::RecoveryDeletedBySleep(sleep) => {
                    // The recovery's rows are keyed by cycle; only the sleep knows it. If
                    // the sleep is gone too, the rows cannot be located (closed as not_found).
                    let doc = api.get(&format!("/v2/activity/sleep/{sleep}")).await?;
                    let cycle = cycle_id(&doc)?;
                    out.normalized.tombstones.push(bridge_core::model::Tombstone {
                        user_id: user_id.to_owned(),
                        vendor: VENDOR.into(),
                        source_record_id: format!("recovery:{cycle}"),
                    });
                }
            }
            Ok(())
        })
    }
}

async fn recovery(
    api: &mut dyn Api,
    user_id: &str,
    id: WhoopId,
    out: &mut Resolved,
) -> Result<(), Stop> {
    let cycle = match id {
        WhoopId::Int(c) => c,
        WhoopId::Uuid(sleep) => {
            // v2 recovery ids are (most likely) sleep ids: the sleep names its cycle. Its
            // readings come along at no extra request.
            let doc = api.get(&format!("/v2/activity/sleep/{sleep}")).await?;
            if score_note(&doc, "sleep").is_none() {
                extend(
                    &mut out.normalized,
                    normalize_document(user_id, WhoopDocKind::Sleep, &doc)?,
                );
            }
            cycle_id(&doc)?
        }
    };
    let doc = api.get(&format!("/v2/cycle/{cycle}/recovery")).await?;
    out.note = score_note(&doc, "recovery");
    extend(
        &mut out.normalized,
        normalize_document(user_id, WhoopDocKind::Recovery, &doc)?,
    );
    // Day strain and energy; a cycle still running yields nothing yet.
    let doc = api.get(&format!("/v2/cycle/{cycle}")).await?;
    extend(
        &mut out.normalized,
        normalize_document(user_id, WhoopDocKind::Cycle, &doc)?,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fetch::testing::{Recorded, run};

    fn paths(body: &str, api: Recorded) -> (Vec<String>, Result<Resolved, Stop>) {
        let n = WhoopNotify.prepare(body.as_bytes()).expect("parses");
        let mut api = api;
        let (resolved, result) = run(n.job.expect("a job"), &mut api, "alice");
        (api.paths, result.map(|()| resolved))
    }

    #[test]
    fn types_and_ids() {
        let n = WhoopNotify.prepare(br#"{"user_id":10129,"id":"ecfc6a15-4661-442f-a9a4-f160dd7afae8","type":"sleep.updated","trace_id":"t"}"#).unwrap();
        assert_eq!(n.vendor_user_id, "10129");
        let (p, _) = paths(
            r#"{"user_id":1,"id":"ecfc6a15-4661-442f-a9a4-f160dd7afae8","type":"sleep.updated"}"#,
            Recorded::answering(json!({"score_state":"PENDING_SCORE"})),
        );
        assert_eq!(p, ["/v2/activity/sleep/ecfc6a15-4661-442f-a9a4-f160dd7afae8"]);
        let (p, r) = paths(
            r#"{"user_id":1,"id":93845,"type":"recovery.updated"}"#,
            Recorded::answering(json!({"score_state":"PENDING_SCORE"})),
        );
        assert_eq!(p, ["/v2/cycle/93845/recovery", "/v2/cycle/93845"]);
        assert_eq!(
            r.expect("resolved").note.map(|n| n.reason),
            Some(ParkReason::PendingScore)
        );
        let (p, r) = paths(
            r#"{"user_id":1,"id":93845,"type":"recovery.deleted"}"#,
            Recorded::default(),
        );
        assert!(p.is_empty());
        assert_eq!(
            r.expect("resolved").normalized.tombstones[0].source_record_id,
            "recovery:93845"
        );
        let (p, r) = paths(
            r#"{"user_id":1,"id":"abc-1","type":"recovery.deleted"}"#,
            Recorded::default().on("/v2/activity/sleep/abc-1", json!({"cycle_id": 77})),
        );
        assert_eq!(p, ["/v2/activity/sleep/abc-1"]);
        assert_eq!(
            r.expect("resolved").normalized.tombstones[0].source_record_id,
            "recovery:77"
        );
        let (p, r) = paths(
            r#"{"user_id":1,"id":"w-1","type":"workout.deleted"}"#,
            Recorded::default(),
        );
        assert!(p.is_empty());
        assert_eq!(
            r.expect("resolved").normalized.tombstones[0].source_record_id,
            "w-1"
        );
        assert_eq!(
            WhoopNotify
                .prepare(br#"{"user_id":1,"id":1,"type":"cycle.updated"}"#)
                .unwrap_err()
                .reason(),
            "unsupported_type"
        );
    }

    /// A v1-model webhook's integer sleep or workout id used to be fetched from the v2
    /// path, answered 404 and closed as not_found: silently nothing. It is refused before
    /// any request, with a reason and a detail the operator can act on.
    #[test]
    fn v1_sleep_and_workout_ids_are_dead_lettered_not_fetched() {
        for kind in [
            "sleep.updated",
            "workout.updated",
            "sleep.deleted",
            "workout.deleted",
        ] {
            for id in [json!(10235), json!("10235")] {
                let body = json!({"user_id": 10129, "id": id, "type": kind, "trace_id": "t"});
                let e = WhoopNotify
                    .prepare(body.to_string().as_bytes())
                    .expect_err(kind);
                assert_eq!(e.reason(), "unsupported_version", "{kind}");
                let msg = e.to_string();
                assert!(msg.contains("v1 webhook") && msg.contains("10235"), "{msg}");
                assert!(msg.contains("model version to v2"), "{msg}");
            }
        }
        // A v2 UUID of the same events still fetches; a cycle id still resolves.
        let (p, _) = paths(
            r#"{"user_id":1,"id":"7bfc6a15-4661-442f-a9a4-f160dd7a0001","type":"workout.updated"}"#,
            Recorded::answering(json!({"score_state": "PENDING_SCORE"})),
        );
        assert_eq!(p, ["/v2/activity/workout/7bfc6a15-4661-442f-a9a4-f160dd7a0001"]);
        assert!(
            WhoopNotify
                .prepare(br#"{"user_id":1,"id":93845,"type":"recovery.updated"}"#)
                .is_ok()
        );
    }

    #[test]
    fn a_recovery_whose_cycle_is_missing_keeps_what_was_resolved() {
        let n = WhoopNotify
            .prepare(br#"{"user_id":1,"id":93845,"type":"recovery.updated"}"#)
            .expect("parses");
        let recovery = json!({"cycle_id": 93845, "sleep_id": "s-1", "user_id": 1,
            "created_at": "2025-01-02T07:00:00Z", "updated_at": "2025-01-02T07:00:00Z",
            "score_state": "SCORED",
            "score": {"recovery_score": 44.0, "resting_heart_rate": 64.0, "hrv_rmssd_milli": 31.8}});
        let mut api = Recorded::default().on("/v2/cycle/93845/recovery", recovery);
        let (partial, result) = run(n.job.expect("a job"), &mut api, "alice");
        let Err(stop) = result else {
            panic!("the cycle is missing");
        };
        assert!(matches!(stop, Stop::NotFound(ref p) if p == "/v2/cycle/93845"), "{stop:?}");
        assert!(
            !partial.normalized.readings.is_empty(),
            "the recovery's readings are kept"
        );
    }

    #[test]
    fn hostile_ids_are_refused() {
        for id in ["../../v2/x", "a/b", "", "a b", "%2e%2e"] {
            let body = format!(r#"{{"user_id":1,"id":"{id}","type":"sleep.updated"}}"#);
            assert!(WhoopNotify.prepare(body.as_bytes()).is_err(), "{id}");
        }
        assert_eq!(
            WhoopNotify
                .prepare(br#"{"id":1,"type":"sleep.updated"}"#)
                .unwrap_err()
                .reason(),
            "missing_user_id"
        );
    }
}
